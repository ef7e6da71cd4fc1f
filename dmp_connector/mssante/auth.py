"""How the mail transport authenticates to the MSSanté operator.

Two modes, chosen by ``settings.mssante.auth_mode``:

* **certificate** — an applicative mailbox (BAL APP) is the software itself: it presents
  the organisation's IGC-Santé authentication certificate in the TLS handshake that
  follows STARTTLS. What comes after is not documented in anything public (reference
  notes §1.3): we use SASL ``EXTERNAL`` when the server offers it (IMAP needs an
  authenticated state; SMTP uses it when advertised), else nothing more on SMTP.
* **xoauth2** — a personal or organisational mailbox acts for a person: SASL
  ``XOAUTH2`` carrying their Pro Santé Connect access token. PSC tokens live a few
  minutes and operators sometimes refuse one that is still valid, so a refusal makes
  the transport ask the :class:`TokenProvider` for a fresh token and reconnect
  **once**; a second refusal is a :class:`MailAuthenticationError`.

The token is never stored by the SDK (SC.MSS/CONF.28): the provider is asked for it at
each connection.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from dmp_connector._deadline import Budget
from dmp_connector._tls import build_ssl_context
from dmp_connector.config import MssanteAuthMode, Settings
from dmp_connector.errors import ConfigurationError, RequestTimeout, ServiceError

__all__ = [
    "AsyncTokenProvider",
    "MailAuthenticationError",
    "MailCredentials",
    "StaticTokenProvider",
    "TokenProvider",
    "mail_credentials",
    "xoauth2_initial_response",
]

T = TypeVar("T")

AUTH_DELAY_HINT = (
    "mail servers hold the answer to a login after a refused one (Dovecot's auth_failure_delay, 2 s by "
    "default, and its auth penalty, doubling per failure from one address up to 15 s): raise timeouts.call "
    "(or deadline(call=...)), and mssante.auth_failure_delay to what your operator's server waits"
)
"""The hint of a timeout met while authenticating: it is most often the server's auth-failure delay."""


@runtime_checkable
class TokenProvider(Protocol):
    """Gives the Pro Santé Connect access token of the mailbox's user.

    ``force_refresh`` is True after the operator refused the previous token: the
    provider must then return a new one (refresh it with PSC), not a cached copy.
    """

    def get_token(self, force_refresh: bool = False) -> str:
        """The current access token (a JWT), without the ``Bearer`` prefix."""
        ...


@runtime_checkable
class AsyncTokenProvider(Protocol):
    """Asynchronous twin of :class:`TokenProvider`, for :class:`AsyncMailTransport`."""

    async def get_token(self, force_refresh: bool = False) -> str:
        """The current access token (a JWT), without the ``Bearer`` prefix."""
        ...


class StaticTokenProvider:
    """A token obtained elsewhere, for scripts and tests: refreshing gives the same token back."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=<hidden>)"

    def get_token(self, force_refresh: bool = False) -> str:
        """The token given at construction."""
        return self._token


class MailAuthenticationError(ServiceError):
    """The operator refused the authentication (SMTP 535, IMAP ``NO [AUTHENTICATIONFAILED]``).

    With XOAUTH2 it is raised after one refresh of the token was tried; ``code`` is the
    server's code (``535``, ``AUTHENTICATIONFAILED`` …).
    """

    def __init__(self, message: str, *, code: str, text: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, service="mssante", code=code, text=text, operation="authenticate", hint=hint)


@dataclass(frozen=True)
class MailCredentials:
    """What a mail session needs to authenticate: the mode, the SASL identity and the TLS context."""

    mode: MssanteAuthMode
    user: str | None
    """XOAUTH2 user; in certificate mode the optional SASL EXTERNAL authorisation identity."""
    ssl_context: ssl.SSLContext
    """Verifying context (TLS ≥ 1.2), presenting the client certificate when one is configured."""

    def __repr__(self) -> str:
        return f"MailCredentials(mode={self.mode.value!r}, user={self.user!r})"


def mail_credentials(settings: Settings) -> MailCredentials:
    """Check the settings for the chosen mode and build the TLS context, or raise :class:`ConfigurationError`."""
    mss = settings.mssante
    tls = mss.tls if mss.tls is not None else settings.tls
    if mss.auth_mode is MssanteAuthMode.CERTIFICATE:
        if not tls.has_client_certificate:
            raise ConfigurationError(
                "MSSanté certificate authentication needs a client certificate",
                hint="set mssante.tls (or tls) to the organisation's IGC-Santé authentication certificate, "
                "or mssante.auth_mode = 'xoauth2' for a personal or organisational mailbox",
            )
        return MailCredentials(mode=mss.auth_mode, user=mss.login or mss.mailbox, ssl_context=build_ssl_context(tls))
    return MailCredentials(mode=mss.auth_mode, user=mss.identity(), ssl_context=build_ssl_context(tls))


def xoauth2_initial_response(user: str, token: str) -> bytes:
    """The SASL XOAUTH2 client response, before base64: ``user=<user>^Aauth=Bearer <token>^A^A``."""
    if not token or any(c in token for c in "\x01\r\n "):
        raise ConfigurationError(
            "the token provider returned an empty or malformed access token",
            hint="the provider must return the bare PSC access token, without 'Bearer'",
        )
    if "\x01" in user:
        raise ConfigurationError("the MSSanté login contains a control character")
    return b"user=" + user.encode("utf-8") + b"\x01auth=Bearer " + token.encode("ascii") + b"\x01\x01"


def _checked(token: object) -> str:
    if not isinstance(token, str):
        raise ConfigurationError(f"the token provider returned a {type(token).__name__}, not a str")
    return token


def get_token(provider: TokenProvider, force_refresh: bool) -> str:
    """The provider's token, checked to be a string."""
    return _checked(provider.get_token(force_refresh))


async def get_token_async(provider: TokenProvider | AsyncTokenProvider, force_refresh: bool) -> str:
    """The provider's token; a sync provider runs in a thread, since it may block on an HTTP call to PSC."""
    if inspect.iscoroutinefunction(provider.get_token):
        return _checked(await provider.get_token(force_refresh))
    value = await asyncio.to_thread(provider.get_token, force_refresh)
    if inspect.isawaitable(value):
        value = await value
    return _checked(value)


def _no_time_to_retry(budget: Budget, reserve: float) -> RequestTimeout:
    error = RequestTimeout(
        f"MSSanté: the token was refused and {budget.left:.1f} s are left of the call's "
        f"{budget.call_seconds:g} s, less than the {reserve:g} s the server is expected to hold a login "
        "after a refused one (mssante.auth_failure_delay): no retry with a refreshed token",
        hint=AUTH_DELAY_HINT,
    )
    error.retryable = False  # nor with the same token: this call has no time left for a login
    return error


def with_refresh(
    attempt: Callable[[bool], T], *, refreshable: bool, budget: Budget | None = None, reserve: float = 0.0
) -> T:
    """Run ``attempt(force_refresh=False)``; if the server refuses the authentication and the
    credential can be refreshed (XOAUTH2), run ``attempt(True)`` once more, whose refusal is final.

    The second attempt is started only when the call's ``budget`` has more than ``reserve`` seconds
    left (the server's expected auth-failure delay), else the refusal becomes a
    :class:`~dmp_connector.errors.RequestTimeout` naming that delay. The attempt itself asks the
    provider for a token only when it has to open a connection.
    """
    try:
        return attempt(False)
    except MailAuthenticationError as refused:
        if not refreshable:
            raise
        if budget is not None and budget.left <= reserve:
            raise _no_time_to_retry(budget, reserve) from refused
    return attempt(True)


async def with_refresh_async(
    attempt: Callable[[bool], Awaitable[T]], *, refreshable: bool, budget: Budget | None = None, reserve: float = 0.0
) -> T:
    """Async twin of :func:`with_refresh`."""
    try:
        return await attempt(False)
    except MailAuthenticationError as refused:
        if not refreshable:
            raise
        if budget is not None and budget.left <= reserve:
            raise _no_time_to_retry(budget, reserve) from refused
    return await attempt(True)
