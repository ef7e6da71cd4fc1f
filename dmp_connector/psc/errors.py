"""Typed errors of the Pro Santé Connect client.

No message, hint or cause chain carries a token, a code, a national id or a name: PSC's
own ``error`` code (``invalid_grant``, ``access_denied`` …) is kept in ``code``; its free
``error_description`` is not, since a provider may quote the user in it.
"""

from __future__ import annotations

from typing import Literal

from dmp_connector.errors import ServiceError, ValidationError

__all__ = [
    "CibaDeniedError",
    "CibaExpiredError",
    "InvalidGrantError",
    "InvalidTokenError",
    "NoMatchingActivityError",
    "PscError",
    "PscSessionClosedError",
    "TokenProblem",
]

TokenProblem = Literal[
    "malformed", "signature", "unknown_key", "issuer", "audience", "expired", "not_yet_valid", "nonce", "acr", "claims"
]
"""Why a token was refused."""


class PscError(ServiceError):
    """Pro Santé Connect refused a request (OAuth ``error`` code in ``code``)."""

    def __init__(
        self, message: str, *, code: str, operation: str | None = None, transient: bool = False, hint: str | None = None
    ) -> None:
        super().__init__(message, service="psc", code=code, operation=operation, transient=transient, hint=hint)


class InvalidTokenError(PscError):
    """A token from PSC failed validation (signature, issuer, audience, dates, nonce or acr); ``reason`` says which."""

    def __init__(self, message: str, *, reason: TokenProblem, operation: str | None = None) -> None:
        super().__init__(
            message,
            code="invalid_token",
            operation=operation,
            hint="a token that fails these checks is never used: log in again; if it persists, check psc.issuer, "
            "psc.client_id and the server's clock",
        )
        self.reason: TokenProblem = reason


class InvalidGrantError(PscError):
    """PSC refused a grant: an authorisation code already used or expired, a refresh token no longer valid."""


class CibaDeniedError(PscError):
    """The professional refused the CIBA request on their e-CPS (``access_denied``)."""


class CibaExpiredError(PscError):
    """The CIBA request expired before the professional answered (``expired_token``, or our own wait ran out)."""


class PscSessionClosedError(PscError):
    """The PSC session is over (refresh refused, logout, refresh token expired): log the professional in again.

    Mail sessions that use its token stop here too (SC.MSS/CONF.10).
    """


class NoMatchingActivityError(ValidationError):
    """None of the professional's PSC activities is at the practice's structure."""
