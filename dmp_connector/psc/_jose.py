"""Token validation through joserfc: signature by the provider's JWKS, then the claims.

The signature, the key choice and the date arithmetic are joserfc's; this module only
says which claims must hold and turns joserfc's errors into :class:`InvalidTokenError`
with a ``reason`` (and without the token or its claims in the message).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from joserfc import jwt
    from joserfc.errors import (
        BadSignatureError,
        ClaimError,
        ExpiredTokenError,
        InvalidKeyIdError,
        JoseError,
        MissingClaimError,
    )
    from joserfc.jwk import KeySet
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("dmp_connector.psc needs the psc extra: pip install 'dmp-connector[psc]'") from exc

from .errors import InvalidTokenError, TokenProblem

__all__ = ["KeySet", "UnknownKey", "load_keys", "validate"]

_CLAIM_REASONS: dict[str, TokenProblem] = {
    "iss": "issuer",
    "aud": "audience",
    "azp": "audience",
    "exp": "expired",
    "nbf": "not_yet_valid",
    "iat": "not_yet_valid",
    "nonce": "nonce",
    "acr": "acr",
}


class UnknownKey(Exception):
    """The token names a key the cached JWKS does not hold (the provider may have rotated its keys)."""


def load_keys(jwks: Mapping[str, Any]) -> KeySet:
    """The provider's JWKS, or :class:`InvalidTokenError` when it is not one."""
    try:
        return KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidTokenError("the PSC key set (JWKS) cannot be read", reason="unknown_key") from exc


def validate(
    token: str,
    keys: KeySet,
    *,
    what: str,
    algorithms: Sequence[str],
    leeway: int,
    required: Mapping[str, Mapping[str, Any]],
    now: float | None = None,
) -> dict[str, Any]:
    """Check ``token``'s signature against ``keys`` and its claims against ``required`` (joserfc claim options).

    Raises :class:`UnknownKey` when its ``kid`` is not in ``keys`` and :class:`InvalidTokenError` otherwise.
    """
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except InvalidKeyIdError:
        raise UnknownKey from None
    except BadSignatureError:
        raise InvalidTokenError(f"the PSC {what} has an invalid signature", reason="signature") from None
    except (JoseError, ValueError, TypeError, KeyError):
        # joserfc's message may quote the token's header: not chained.
        raise InvalidTokenError(f"the PSC {what} is not a well-formed signed JWT", reason="malformed") from None
    registry = jwt.JWTClaimsRegistry(
        now=int(now if now is not None else time.time()),
        leeway=leeway,
        exp={"essential": True},
        iat={"essential": True},
        **{name: dict(option) for name, option in required.items()},  # type: ignore[arg-type]
    )
    try:
        registry.validate(decoded.claims)
    except ExpiredTokenError:
        raise InvalidTokenError(f"the PSC {what} has expired", reason="expired") from None
    except MissingClaimError as exc:
        reason = _CLAIM_REASONS.get(exc.claim, "claims")
        raise InvalidTokenError(f"the PSC {what} lacks the claim {exc.claim!r}", reason=reason) from None
    except ClaimError as exc:
        reason = _CLAIM_REASONS.get(exc.claim, "claims")
        raise InvalidTokenError(f"the PSC {what} has a wrong {exc.claim!r} claim", reason=reason) from None
    return dict(decoded.claims)
