"""The Pro Santé Connect client: discovery, browser and CIBA logins, refresh, introspection, logout.

Each flow is written once, without I/O, as a generator that yields what it needs (a
:class:`~dmp_connector._rest.RestRequest`, or a pause while a CIBA request is pending)
and receives the answer; :class:`PscClient` and :class:`AsyncPscClient` only run that
loop on the shared REST core (deadlines, retries of what is safe to repeat, audit with
no token nor form field in it).

Where this runs: PSC requires an **intermediate server** for installed software (a thick
client must not call PSC itself) [V]. This client is that server's library; web software
uses it in its back end for the browser flow.

Tokens live in the session object's memory only: nothing here writes one to disk or to
a log, and ``repr`` hides them. Lifetimes are read from the tokens (``exp``) and from the
token answer (``refresh_expires_in``), never assumed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from dmp_connector._rest import AsyncRestClient, JsonObject, RestClient, RestRequest
from dmp_connector.audit import AuditSink
from dmp_connector.config import PscClientAuth, PscSettings, Settings, TlsCredentials
from dmp_connector.errors import ConfigurationError, MalformedResponseError

from ._jose import KeySet, UnknownKey, load_keys, validate
from .errors import (
    CibaDeniedError,
    CibaExpiredError,
    InvalidGrantError,
    InvalidTokenError,
    PscError,
    PscSessionClosedError,
)
from .identity import Professional

__all__ = [
    "AsyncPscClient",
    "AsyncPscSession",
    "AuthorizationRequest",
    "CibaRequest",
    "Introspection",
    "ProviderMetadata",
    "PscClient",
    "PscSession",
]

T = TypeVar("T")
_SERVICE = "psc"
_CIBA_GRANT = "urn:openid:params:grant-type:ciba"
_OAUTH_ERRORS = frozenset({400, 401, 403})


@dataclass(frozen=True)
class _Pause:
    seconds: float


_Step = RestRequest | _Pause
Flow = Generator[_Step, JsonObject | None, T]


def _https_aliases(aliases: object) -> dict[str, str]:
    """RFC 8705 aliases, where tokens and codes go in mutual-TLS mode: https only, like every endpoint."""
    if not isinstance(aliases, Mapping):
        return {}
    found: dict[str, str] = {}
    for key, value in aliases.items():
        if not isinstance(value, str) or not value.startswith("https://"):
            raise MalformedResponseError(f"PSC discovery: mtls_endpoint_aliases.{key} is not an https URL")
        found[str(key)] = value
    return found


@dataclass(frozen=True)
class ProviderMetadata:
    """What PSC's discovery document says (its ``wallet-openid-configuration``)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    introspection_endpoint: str | None
    end_session_endpoint: str | None
    backchannel_authentication_endpoint: str | None
    mtls_endpoint_aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], expected_issuer: str) -> ProviderMetadata:
        """Read the discovery document; its ``issuer`` must be the one configured (OIDC Discovery §4.3)."""

        def url(key: str, required: bool = True) -> str | None:
            value = data.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not value.startswith("https://"):
                raise MalformedResponseError(f"PSC discovery: {key} is missing or not an https URL")
            return value

        if data.get("issuer") != expected_issuer:
            raise MalformedResponseError(
                "PSC discovery names another issuer than psc.issuer", hint="check psc.issuer (no trailing slash)"
            )
        aliases = data.get("mtls_endpoint_aliases")
        return cls(
            issuer=expected_issuer,
            authorization_endpoint=url("authorization_endpoint") or "",
            token_endpoint=url("token_endpoint") or "",
            userinfo_endpoint=url("userinfo_endpoint") or "",
            jwks_uri=url("jwks_uri") or "",
            introspection_endpoint=url("introspection_endpoint", False),
            end_session_endpoint=url("end_session_endpoint", False),
            backchannel_authentication_endpoint=url("backchannel_authentication_endpoint", False),
            mtls_endpoint_aliases=_https_aliases(aliases),
        )


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    """A browser login under way: send the user to ``url``; keep the object (server side) for the callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return "AuthorizationRequest(<hidden>)"


@dataclass(frozen=True, repr=False)
class CibaRequest:
    """A CIBA request waiting for the professional's approval on their e-CPS."""

    auth_req_id: str
    binding_message: str
    """The code the user must see both on screen and on their phone (two digits)."""
    expires_at: float
    """``time.monotonic()`` after which PSC forgets the request (from its ``expires_in``)."""
    interval: float
    """Seconds between two polls (PSC's ``interval``, raised by ``slow_down``)."""

    def __repr__(self) -> str:
        return f"CibaRequest(binding_message={self.binding_message!r}, interval={self.interval})"


@dataclass(frozen=True, repr=False)
class Introspection:
    """PSC's answer on a token (RFC 7662): whether it is active, for whom and until when."""

    active: bool
    subject: str | None = None
    national_id: str | None = None
    """``preferred_username`` (``SubjectNameID``)."""
    client_id: str | None = None
    scope: str | None = None
    acr: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"Introspection(active={self.active}, acr={self.acr!r})"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Introspection:
        """Read an introspection answer; anything but ``active: true`` is inactive."""
        if data.get("active") is not True:
            return cls(active=False)
        exp = data.get("exp")

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) and value else None

        return cls(
            active=True,
            subject=text("sub"),
            national_id=text("preferred_username") or text("SubjectNameID"),
            client_id=text("client_id") or text("azp"),
            scope=text("scope"),
            acr=text("acr"),
            expires_at=datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None,
        )


@dataclass(repr=False)
class _Tokens:
    access_token: str
    id_token: str | None
    refresh_token: str | None
    access_expires_at: float
    """Epoch seconds, the access token's ``exp``."""
    refresh_expires_at: float | None
    """Epoch seconds, from ``refresh_expires_in``; None when PSC gave no lifetime."""
    id_claims: dict[str, Any]
    access_claims: dict[str, Any]
    nonce: str | None


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _PscCore:
    """Everything that is not I/O: requests, answers, checks, caches."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.psc: PscSettings = settings.psc
        if self.psc.client_id is None:
            raise ConfigurationError("Pro Santé Connect needs a client id", hint="set psc.client_id")
        secret_mode = self.psc.client_auth is not PscClientAuth.MTLS
        if secret_mode and self.psc.client_secret is None:
            raise ConfigurationError(
                f"psc.client_auth = {self.psc.client_auth.value!r} needs psc.client_secret",
                hint="or use tls_client_auth with the organisation's certificate (required in production)",
            )
        if not secret_mode and not self._tls().has_client_certificate:
            raise ConfigurationError(
                "psc.client_auth = 'tls_client_auth' needs a client certificate", hint="set psc.tls (or tls)"
            )
        self.client_id: str = self.psc.client_id
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None

    def _tls(self) -> TlsCredentials:
        return self.psc.tls if self.psc.tls is not None else self.settings.tls

    # --------------------------------------------------------------------------------- requests

    def _endpoint(self, meta: ProviderMetadata, name: str, url: str) -> str:
        if self.psc.client_auth is PscClientAuth.MTLS:
            return meta.mtls_endpoint_aliases.get(name, url)
        return url

    def _client_auth(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(secret headers, form) with the client's authentication added."""
        headers: dict[str, str] = {}
        secret = self.psc.client_secret.get_secret_value() if self.psc.client_secret is not None else ""
        if self.psc.client_auth is PscClientAuth.CLIENT_SECRET_BASIC:
            pair = f"{urllib.parse.quote(self.client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif self.psc.client_auth is PscClientAuth.CLIENT_SECRET_POST:
            form = {**form, "client_id": self.client_id, "client_secret": secret}
        else:
            form = {**form, "client_id": self.client_id}
        return headers, form

    def _post(
        self, operation: str, url: str, form: dict[str, str], *, safe: bool, expect_json: bool = True
    ) -> RestRequest:
        headers, body = self._client_auth(form)
        return RestRequest(
            service=_SERVICE,
            operation=operation,
            url=url,
            method="POST",
            form=body,
            secret_headers=headers,
            safe_to_repeat=safe,
            error_statuses=_OAUTH_ERRORS if expect_json else frozenset(),
            expect_json=expect_json,
        )

    @staticmethod
    def _oauth_error(data: JsonObject, operation: str) -> PscError | None:
        code = data.get("error")
        if code is None:
            return None
        code = code if isinstance(code, str) and code.isascii() and len(code) < 64 else "invalid_answer"
        if code == "invalid_grant":
            return InvalidGrantError(
                f"PSC refused the grant of {operation} (invalid_grant)",
                code=code,
                operation=operation,
                hint="an authorisation code is single use and short-lived; a refresh token ends with the session",
            )
        if code == "access_denied":
            return CibaDeniedError("the professional refused the PSC login", code=code, operation=operation)
        if code == "expired_token":
            return CibaExpiredError(
                "the PSC login request expired before the professional answered", code=code, operation=operation
            )
        hint = (
            "check psc.client_id and the client authentication"
            if code in ("invalid_client", "unauthorized_client")
            else None
        )
        return PscError(f"PSC refused {operation} ({code})", code=code, operation=operation, hint=hint)

    # ------------------------------------------------------------------------------------ flows

    def _metadata_flow(self) -> Flow[ProviderMetadata]:
        if self._metadata is None:
            answer = yield RestRequest(
                service=_SERVICE, operation="discovery", url=self.psc.issuer + self.psc.discovery_path
            )
            assert answer is not None
            self._metadata = ProviderMetadata.from_json(answer, self.psc.issuer)
        return self._metadata

    def _keys_flow(self, refresh: bool) -> Flow[KeySet]:
        if self._keys is None or refresh:
            meta = yield from self._metadata_flow()
            answer = yield RestRequest(service=_SERVICE, operation="jwks", url=meta.jwks_uri)
            assert answer is not None
            self._keys = load_keys(answer)
        return self._keys

    def _validate_flow(self, token: str, what: str, required: dict[str, dict[str, Any]]) -> Flow[dict[str, Any]]:
        keys = yield from self._keys_flow(refresh=False)
        algorithms, leeway = self.psc.algorithms, self.psc.leeway_seconds
        try:
            return validate(token, keys, what=what, algorithms=algorithms, leeway=leeway, required=required)
        except UnknownKey:
            pass
        keys = yield from self._keys_flow(refresh=True)  # PSC may have rotated its keys: once
        try:
            return validate(token, keys, what=what, algorithms=algorithms, leeway=leeway, required=required)
        except UnknownKey:
            raise InvalidTokenError(
                f"the PSC {what} is signed by a key PSC does not publish", reason="unknown_key"
            ) from None

    def _claims_rules(self, nonce: str | None, *, id_token: bool, refresh: bool = False) -> dict[str, dict[str, Any]]:
        rules: dict[str, dict[str, Any]] = {"iss": {"essential": True, "value": self.psc.issuer}}
        if id_token:
            rules["aud"] = {"essential": True, "value": self.client_id}
        else:
            rules["azp"] = {"essential": True, "value": self.client_id}
        rules["acr"] = {"essential": True, "values": list(self.psc.accepted_acr)}
        if nonce is not None and (id_token or self.psc.check_access_token_nonce):
            # A refreshed token may leave the nonce out (OIDC Core §12.2); when there, it must be the login's.
            rules["nonce"] = {"essential": not refresh, "value": nonce}
        return rules

    def _tokens_flow(self, answer: JsonObject, nonce: str | None, operation: str) -> Flow[_Tokens]:
        access = answer.get("access_token")
        id_token = answer.get("id_token")
        if not isinstance(access, str) or not access:
            raise MalformedResponseError(f"PSC answered {operation} without an access token")
        if str(answer.get("token_type", "")).lower() != "bearer":
            raise MalformedResponseError(f"PSC answered {operation} with a token type other than Bearer")
        id_claims: dict[str, Any] = {}
        if isinstance(id_token, str) and id_token:
            rules = self._claims_rules(nonce, id_token=True, refresh=operation == "refresh")
            id_claims = yield from self._validate_flow(id_token, "ID token", rules)
        elif operation != "refresh":
            raise MalformedResponseError(f"PSC answered {operation} without an ID token", hint="check psc.scope")
        access_claims = yield from self._validate_flow(
            access, "access token", self._claims_rules(nonce, id_token=False, refresh=operation == "refresh")
        )
        if id_claims and id_claims.get("sub") != access_claims.get("sub"):
            raise InvalidTokenError("the PSC ID and access tokens name different subjects", reason="claims")
        at_hash = id_claims.get("at_hash")
        if at_hash is not None and not secrets.compare_digest(str(at_hash), _at_hash(access)):
            # OIDC Core §3.1.3.6: the ID token names the access token it came with (RS/PS/ES256: SHA-256).
            raise InvalidTokenError("the PSC access token is not the one its ID token names", reason="claims")
        refresh = answer.get("refresh_token")
        refresh_in = answer.get("refresh_expires_in")
        return _Tokens(
            access_token=access,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            access_expires_at=float(access_claims["exp"]),
            refresh_expires_at=time.time() + refresh_in
            if isinstance(refresh_in, int | float) and refresh_in > 0
            else None,
            id_claims=id_claims,
            access_claims=access_claims,
            nonce=nonce,
        )

    def _userinfo_flow(self, access_token: str) -> Flow[Professional]:
        meta = yield from self._metadata_flow()
        answer = yield RestRequest(
            service=_SERVICE,
            operation="userinfo",
            url=self._endpoint(meta, "userinfo_endpoint", meta.userinfo_endpoint),
            secret_headers={"Authorization": f"Bearer {access_token}"},
            error_statuses=_OAUTH_ERRORS,
        )
        assert answer is not None
        error = self._oauth_error(answer, "userinfo")
        if error is not None:
            raise error
        return Professional.from_userinfo(answer)

    def _login_flow(self, answer: JsonObject, nonce: str | None, operation: str) -> Flow[tuple[_Tokens, Professional]]:
        tokens = yield from self._tokens_flow(answer, nonce, operation)
        professional = yield from self._userinfo_flow(tokens.access_token)
        if professional.subject != tokens.access_claims.get("sub"):
            raise InvalidTokenError("PSC's userinfo names another subject than the tokens", reason="claims")
        return tokens, professional

    def authorization_request(
        self, meta: ProviderMetadata, *, redirect_uri: str | None = None, state: str | None = None
    ) -> AuthorizationRequest:
        """The browser login's URL, with PKCE (S256), a fresh ``state`` and ``nonce``."""
        redirect = redirect_uri or self.psc.redirect_uri
        if redirect is None:
            raise ConfigurationError("the browser login needs a redirect URI", hint="set psc.redirect_uri")
        verifier = secrets.token_urlsafe(48)
        state = state or secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect,
            "scope": self.psc.scope,
            "acr_values": self.psc.acr_values,
            "state": state,
            "nonce": nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
        url = meta.authorization_endpoint + ("&" if "?" in meta.authorization_endpoint else "?")
        return AuthorizationRequest(url + urllib.parse.urlencode(query), state, nonce, verifier, redirect)

    def _authorization_flow(self, redirect_uri: str | None, state: str | None) -> Flow[AuthorizationRequest]:
        meta = yield from self._metadata_flow()
        return self.authorization_request(meta, redirect_uri=redirect_uri, state=state)

    def _code_flow(
        self, request: AuthorizationRequest, callback: Mapping[str, str] | str
    ) -> Flow[tuple[_Tokens, Professional]]:
        params = (
            dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
            if isinstance(callback, str)
            else dict(callback)
        )
        if "error" in params:
            code = params["error"] if params["error"].isascii() and len(params["error"]) < 64 else "invalid_answer"
            raise PscError(f"PSC ended the browser login with {code}", code=code, operation="authorize")
        if not secrets.compare_digest(params.get("state", ""), request.state):
            raise InvalidGrantError(
                "the login callback's state is not the request's (forged or mixed-up callback)",
                code="invalid_state",
                operation="authorize",
            )
        auth_code = params.get("code")
        if not auth_code:
            raise MalformedResponseError("the login callback has no authorisation code")
        meta = yield from self._metadata_flow()
        answer = yield self._post(
            "token",
            self._endpoint(meta, "token_endpoint", meta.token_endpoint),
            {
                "grant_type": "authorization_code",
                "code": auth_code,
                "redirect_uri": request.redirect_uri,
                "code_verifier": request.code_verifier,
            },
            safe=False,  # a code is single use: never sent twice
        )
        assert answer is not None
        error = self._oauth_error(answer, "token")
        if error is not None:
            raise error
        return (yield from self._login_flow(answer, request.nonce, "token"))

    def _ciba_start_flow(self, login_hint: str, binding_message: str | None) -> Flow[CibaRequest]:
        meta = yield from self._metadata_flow()
        if meta.backchannel_authentication_endpoint is None:
            raise ConfigurationError("PSC's discovery names no CIBA endpoint", hint="CIBA must be enabled per service")
        binding = binding_message if binding_message is not None else f"{secrets.randbelow(100):02d}"
        form = {"scope": self.psc.scope, "acr_values": self.psc.acr_values, "login_hint": login_hint}
        form["binding_message"] = binding
        if self.psc.ciba_channel is not None:
            form["channel"] = self.psc.ciba_channel
        url = self._endpoint(meta, "backchannel_authentication_endpoint", meta.backchannel_authentication_endpoint)
        answer = yield self._post("ciba", url, form, safe=False)
        assert answer is not None
        error = self._oauth_error(answer, "ciba")
        if error is not None:
            raise error
        req_id, expires_in = answer.get("auth_req_id"), answer.get("expires_in")
        if not isinstance(req_id, str) or not req_id or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise MalformedResponseError("PSC's CIBA acknowledgement lacks auth_req_id or expires_in")
        interval = answer.get("interval")
        wait = min(float(expires_in), self.psc.ciba_max_wait_seconds)
        return CibaRequest(
            auth_req_id=req_id,
            binding_message=binding,
            expires_at=time.monotonic() + wait,
            interval=float(interval) if isinstance(interval, int | float) and interval > 0 else 5.0,
        )

    def _ciba_poll_flow(self, request: CibaRequest) -> Flow[tuple[_Tokens, Professional]]:
        meta = yield from self._metadata_flow()
        interval = request.interval
        url = self._endpoint(meta, "token_endpoint", meta.token_endpoint)
        while True:
            if time.monotonic() + interval > request.expires_at:
                raise CibaExpiredError(
                    "the PSC login request expired before the professional answered",
                    code="expired_token",
                    operation="ciba-poll",
                )
            yield _Pause(interval)
            answer = yield self._post(
                "ciba-poll", url, {"grant_type": _CIBA_GRANT, "auth_req_id": request.auth_req_id}, safe=True
            )
            assert answer is not None
            code = answer.get("error")
            if code == "authorization_pending":
                continue
            if code == "slow_down":
                interval += self.psc.ciba_slow_down_seconds  # CIBA Core §11
                continue
            error = self._oauth_error(answer, "ciba-poll")
            if error is not None:
                raise error
            return (yield from self._login_flow(answer, None, "ciba-poll"))

    def _refresh_flow(self, tokens: _Tokens) -> Flow[_Tokens]:
        if tokens.refresh_token is None:
            raise PscSessionClosedError("PSC gave no refresh token", code="no_refresh_token", operation="refresh")
        meta = yield from self._metadata_flow()
        answer = yield self._post(
            "refresh",
            self._endpoint(meta, "token_endpoint", meta.token_endpoint),
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
            safe=False,  # PSC may rotate the refresh token: a repeat would present a spent one
        )
        assert answer is not None
        error = self._oauth_error(answer, "refresh")
        if error is not None:
            raise error
        fresh = yield from self._tokens_flow(answer, tokens.nonce, "refresh")
        if fresh.access_claims.get("sub") != tokens.access_claims.get("sub"):
            raise InvalidTokenError("the refreshed PSC token names another subject", reason="claims")
        if fresh.id_token is None:
            fresh.id_token, fresh.id_claims = tokens.id_token, tokens.id_claims
        if fresh.refresh_token is None:
            fresh.refresh_token, fresh.refresh_expires_at = tokens.refresh_token, tokens.refresh_expires_at
        return fresh

    def _introspect_flow(self, token: str) -> Flow[Introspection]:
        meta = yield from self._metadata_flow()
        if meta.introspection_endpoint is None:
            raise ConfigurationError("PSC's discovery names no introspection endpoint")
        url = self._endpoint(meta, "introspection_endpoint", meta.introspection_endpoint)
        answer = yield self._post("introspect", url, {"token": token}, safe=True)
        assert answer is not None
        error = self._oauth_error(answer, "introspect")
        if error is not None:
            raise error
        return Introspection.from_json(answer)

    def _logout_flow(self, tokens: _Tokens) -> Flow[None]:
        meta = yield from self._metadata_flow()
        if meta.end_session_endpoint is None:
            return None
        form: dict[str, str] = {}
        if tokens.id_token is not None:
            form["id_token_hint"] = tokens.id_token
        if tokens.refresh_token is not None:
            form["refresh_token"] = tokens.refresh_token
        url = self._endpoint(meta, "end_session_endpoint", meta.end_session_endpoint)
        yield self._post("logout", url, form, safe=True, expect_json=False)
        return None


# ------------------------------------------------------------------------------------------ sessions


class _SessionBase:
    def __init__(self, tokens: _Tokens, professional: Professional, margin: float) -> None:
        self._tokens: _Tokens | None = tokens
        self.professional = professional
        """Who logged in (read from userinfo)."""
        self._margin = margin

    def __repr__(self) -> str:
        state = "closed" if self._tokens is None else "open"
        return f"{type(self).__name__}({state})"

    @property
    def closed(self) -> bool:
        """True once logged out, or after a refresh PSC refused."""
        return self._tokens is None

    def _live(self) -> _Tokens:
        if self._tokens is None:
            raise PscSessionClosedError(
                "the PSC session is closed", code="session_closed", hint="log the professional in again"
            )
        return self._tokens

    @property
    def access_expires_at(self) -> datetime:
        """When the current access token expires (its ``exp``)."""
        return datetime.fromtimestamp(self._live().access_expires_at, UTC)

    @property
    def refresh_expires_at(self) -> datetime | None:
        """When the refresh token expires (from ``refresh_expires_in``), if PSC said."""
        at = self._live().refresh_expires_at
        return datetime.fromtimestamp(at, UTC) if at is not None else None

    @property
    def acr(self) -> str | None:
        """The ``acr`` of the login (``eidas1``)."""
        value = self._live().access_claims.get("acr")
        return value if isinstance(value, str) else None

    @property
    def auth_time(self) -> datetime | None:
        """When the professional authenticated (``auth_time``): the VIHF's ``AuthnInstant``."""
        tokens = self._live()
        value = tokens.id_claims.get("auth_time", tokens.access_claims.get("auth_time"))
        return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None

    def _needs_refresh(self, force: bool) -> bool:
        tokens = self._live()
        if tokens.refresh_expires_at is not None and time.time() >= tokens.refresh_expires_at:
            self._tokens = None
            raise PscSessionClosedError(
                "the PSC session expired (refresh token past its lifetime)",
                code="session_expired",
                hint="log the professional in again",
            )
        return force or time.time() >= tokens.access_expires_at - self._margin

    def _closed_by(self, exc: PscError) -> PscSessionClosedError:
        self._tokens = None
        return PscSessionClosedError(
            f"PSC refused to refresh the session ({exc.code}): it is closed",
            code=exc.code,
            operation="refresh",
            hint="log the professional in again",
        )


class PscSession(_SessionBase):
    """A logged-in professional: the tokens (in memory), who it is, and a :class:`TokenProvider`.

    :meth:`get_token` is the MSSanté transport's token provider: it refreshes the access
    token shortly before it expires (``psc.refresh_margin_seconds``) or when asked to, and
    closes the session when PSC refuses the refresh (:class:`PscSessionClosedError`).
    """

    def __init__(self, client: PscClient, tokens: _Tokens, professional: Professional) -> None:
        super().__init__(tokens, professional, client.psc.refresh_margin_seconds)
        self._client = client
        self._lock = threading.Lock()

    def get_token(self, force_refresh: bool = False) -> str:
        """The current access token, refreshed first when it is about to expire or ``force_refresh``."""
        with self._lock:
            if self._needs_refresh(force_refresh):
                self._refresh_locked()
            return self._live().access_token

    def refresh(self) -> None:
        """Refresh the tokens now."""
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        try:
            self._tokens = self._client._run(self._client._refresh_flow(self._live()))
        except (InvalidGrantError, InvalidTokenError) as exc:
            raise self._closed_by(exc) from None

    def introspect(self) -> Introspection:
        """PSC's view of the current access token."""
        return self._client.introspect(self._live().access_token)

    def logout(self) -> None:
        """End the session at PSC (``end_session``). The tokens are forgotten first: if PSC cannot be
        reached the error is raised, but the session is closed all the same."""
        with self._lock:
            tokens, self._tokens = self._tokens, None
        if tokens is not None:
            self._client._run(self._client._logout_flow(tokens))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.logout()


class AsyncPscSession(_SessionBase):
    """Asynchronous twin of :class:`PscSession` (an ``AsyncTokenProvider``)."""

    def __init__(self, client: AsyncPscClient, tokens: _Tokens, professional: Professional) -> None:
        super().__init__(tokens, professional, client.psc.refresh_margin_seconds)
        self._client = client
        self._lock = asyncio.Lock()

    async def get_token(self, force_refresh: bool = False) -> str:
        """The current access token, refreshed first when it is about to expire or ``force_refresh``."""
        async with self._lock:
            if self._needs_refresh(force_refresh):
                await self._refresh_locked()
            return self._live().access_token

    async def refresh(self) -> None:
        """Refresh the tokens now."""
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        try:
            self._tokens = await self._client._run(self._client._refresh_flow(self._live()))
        except (InvalidGrantError, InvalidTokenError) as exc:
            raise self._closed_by(exc) from None

    async def introspect(self) -> Introspection:
        """PSC's view of the current access token."""
        return await self._client.introspect(self._live().access_token)

    async def logout(self) -> None:
        """End the session at PSC and forget the tokens."""
        async with self._lock:
            tokens, self._tokens = self._tokens, None
        if tokens is not None:
            await self._client._run(self._client._logout_flow(tokens))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.logout()


# ------------------------------------------------------------------------------------------ clients


class PscClient(_PscCore):
    """Synchronous PSC client (on the shared REST core)."""

    def __init__(self, settings: Settings, *, audit: Iterable[AuditSink] = (), http_client: Any = None) -> None:
        super().__init__(settings)
        self._rest = RestClient(settings, http_client=http_client, tls=self._tls(), audit=audit)

    def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, _Pause):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(self._rest.get_json(step))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def discover(self) -> ProviderMetadata:
        """PSC's discovery document (fetched once, at PSC's own path)."""
        return self._run(self._metadata_flow())

    def start_authorization(self, *, redirect_uri: str | None = None, state: str | None = None) -> AuthorizationRequest:
        """Begin a browser login: redirect the user to the returned ``url``."""
        return self._run(self._authorization_flow(redirect_uri, state))

    def complete_authorization(self, request: AuthorizationRequest, callback: Mapping[str, str] | str) -> PscSession:
        """Finish it with the callback's URL or query parameters: checks state, PKCE, nonce, tokens."""
        tokens, professional = self._run(self._code_flow(request, callback))
        return PscSession(self, tokens, professional)

    def start_ciba(self, login_hint: str, *, binding_message: str | None = None) -> CibaRequest:
        """Ask PSC to reach the professional's e-CPS; show ``binding_message`` to the user."""
        return self._run(self._ciba_start_flow(login_hint, binding_message))

    def wait_ciba(self, request: CibaRequest) -> PscSession:
        """Poll until the professional approves (a session), refuses or lets it expire (typed errors)."""
        tokens, professional = self._run(self._ciba_poll_flow(request))
        return PscSession(self, tokens, professional)

    def login_ciba(self, login_hint: str, *, binding_message: str | None = None) -> PscSession:
        """:meth:`start_ciba` then :meth:`wait_ciba`."""
        return self.wait_ciba(self.start_ciba(login_hint, binding_message=binding_message))

    def introspect(self, token: str) -> Introspection:
        """Ask PSC about ``token`` (access or refresh)."""
        return self._run(self._introspect_flow(token))

    def close(self) -> None:
        """Close the HTTP client."""
        self._rest.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncPscClient(_PscCore):
    """Asynchronous twin of :class:`PscClient`."""

    def __init__(self, settings: Settings, *, audit: Iterable[AuditSink] = (), http_client: Any = None) -> None:
        super().__init__(settings)
        self._rest = AsyncRestClient(settings, http_client=http_client, tls=self._tls(), audit=audit)

    async def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(await self._rest.get_json(step))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def discover(self) -> ProviderMetadata:
        """PSC's discovery document."""
        return await self._run(self._metadata_flow())

    async def start_authorization(
        self, *, redirect_uri: str | None = None, state: str | None = None
    ) -> AuthorizationRequest:
        """Begin a browser login."""
        return await self._run(self._authorization_flow(redirect_uri, state))

    async def complete_authorization(
        self, request: AuthorizationRequest, callback: Mapping[str, str] | str
    ) -> AsyncPscSession:
        """Finish a browser login."""
        tokens, professional = await self._run(self._code_flow(request, callback))
        return AsyncPscSession(self, tokens, professional)

    async def start_ciba(self, login_hint: str, *, binding_message: str | None = None) -> CibaRequest:
        """Start a CIBA login."""
        return await self._run(self._ciba_start_flow(login_hint, binding_message))

    async def wait_ciba(self, request: CibaRequest) -> AsyncPscSession:
        """Poll a CIBA login to its end."""
        tokens, professional = await self._run(self._ciba_poll_flow(request))
        return AsyncPscSession(self, tokens, professional)

    async def login_ciba(self, login_hint: str, *, binding_message: str | None = None) -> AsyncPscSession:
        """:meth:`start_ciba` then :meth:`wait_ciba`."""
        return await self.wait_ciba(await self.start_ciba(login_hint, binding_message=binding_message))

    async def introspect(self, token: str) -> Introspection:
        """Ask PSC about ``token``."""
        return await self._run(self._introspect_flow(token))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._rest.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
