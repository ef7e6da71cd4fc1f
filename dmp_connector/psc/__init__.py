"""Pro Santé Connect: the professional's OpenID Connect login, and what it opens (DMP AIR, MSSanté).

* :class:`PscClient` / :class:`AsyncPscClient`: discovery at PSC's own path, the browser
  flow (authorization code + PKCE + nonce), CIBA in poll mode for installed software
  (through an intermediate server), refresh, introspection, logout; client
  authentication by mutual TLS or client secret (``[psc]`` settings).
* :class:`PscSession`: the tokens in memory, the :class:`Professional` from userinfo, and
  a token provider for MSSanté's XOAUTH2 (refreshed before expiry, closed when PSC refuses).
* :func:`air_settings`: settings for DMP calls in reinforced indirect mode (AIR).

Needs the ``psc`` extra (joserfc) for token validation.
"""

from __future__ import annotations

from .air import DEFAULT_AIR_MODES, air_settings
from .client import (
    AsyncPscClient,
    AsyncPscSession,
    AuthorizationRequest,
    CibaRequest,
    Introspection,
    ProviderMetadata,
    PscClient,
    PscSession,
)
from .errors import (
    CibaDeniedError,
    CibaExpiredError,
    InvalidGrantError,
    InvalidTokenError,
    NoMatchingActivityError,
    PscError,
    PscSessionClosedError,
    TokenProblem,
)
from .identity import Activity, Exercise, Professional

__all__ = [
    "DEFAULT_AIR_MODES",
    "Activity",
    "AsyncPscClient",
    "AsyncPscSession",
    "AuthorizationRequest",
    "CibaDeniedError",
    "CibaExpiredError",
    "CibaRequest",
    "Exercise",
    "Introspection",
    "InvalidGrantError",
    "InvalidTokenError",
    "NoMatchingActivityError",
    "Professional",
    "ProviderMetadata",
    "PscClient",
    "PscError",
    "PscSession",
    "PscSessionClosedError",
    "TokenProblem",
    "air_settings",
]
