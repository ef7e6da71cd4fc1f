"""A Pro Santé Connect simulator: a real OpenID Connect provider, for loopback tests.

It answers at PSC's paths (Keycloak realm ``esante-wallet``; discovery at
``/.well-known/wallet-openid-configuration``, not ``openid-configuration``) with PSC's
claims (reference notes ``psc.md`` §6): RS256-signed ID and access tokens, JWKS,
userinfo with the RPPS exercises and activities, introspection, refresh, logout, the
authorisation-code flow behind a login page a test drives with plain HTTP, and CIBA in
poll mode with a simulated e-CPS that a test approves, denies or lets expire.

Serve it like any simulator (:class:`~dmp_connector.sandbox.LoopbackServer`, real TLS),
then set :attr:`PscSimulator.base_url` to the server's URL (:func:`serve_psc` does both).
Faults for client tests: :meth:`PscSimulator.misissue` (the next tokens carry a wrong
``aud``/``nonce``/``exp``, or a key PSC does not publish), :meth:`revoke_sessions`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from ._http import HttpRequest, HttpResponse, LoopbackServer
from .pki import TestPkiFiles

__all__ = [
    "DEFAULT_PSC_PROFESSIONALS",
    "PSC_REALM_PATH",
    "CibaView",
    "PscIntrospectionCheck",
    "PscSimulator",
    "PscTestProfessional",
    "serve_psc",
]

PSC_REALM_PATH: Final = "/auth/realms/esante-wallet"
"""The issuer's path, as on PSC's hosts."""
_OIDC = PSC_REALM_PATH + "/protocol/openid-connect"
_DISCOVERY = PSC_REALM_PATH + "/.well-known/wallet-openid-configuration"
_AUTHORIZE = "/auth"
_LOGIN = "/auth/login"
_CIBA_GRANT = "urn:openid:params:grant-type:ciba"
_SUB_PREFIX = "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:"


def _activity(
    name: str, structure_id: str, technical_id: str, sector: str, *, finess: str = "", postal_code: str = "75009"
) -> dict[str, str]:
    return {
        "codeModeExercice": "L" if sector == "SA07" else "S",
        "codeSecteurDactivite": sector,
        "codeSectionPharmacien": "",
        "codeRole": "",
        "codeGenreActivite": "GENR01",
        "numeroFinessSite": finess,
        "identifiantTechniqueDeLaStructure": technical_id,
        "raisonSocialeSite": name,
        "ancienIdentifiantDeLaStructure": structure_id,
        "autoriteDenregistrement": "CNOM/CNOM/CNOM",
        "codePostal": postal_code,
    }


@dataclass(frozen=True)
class PscTestProfessional:
    """A professional the simulator can log in: national id (``8`` + RPPS), names, exercises (PSC's JSON)."""

    national_id: str
    family_name: str
    given_name: str
    exercises: tuple[Mapping[str, Any], ...]
    auth_mode: str = "MOBILE"

    @property
    def subject(self) -> str:
        """The OIDC ``sub`` PSC gives (``f:<uuid>:<national id>``)."""
        return _SUB_PREFIX + self.national_id

    def userinfo(self) -> dict[str, Any]:
        """The userinfo answer, in PSC's shape (absent data as ``""``)."""
        first = self.exercises[0]["activities"][0] if self.exercises and self.exercises[0]["activities"] else {}
        return {
            "sub": self.subject,
            "SubjectNameID": self.national_id,
            "preferred_username": self.national_id,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "email_verified": False,
            "authMode": self.auth_mode,
            "SubjectOrganization": first.get("raisonSocialeSite", ""),
            "SubjectOrganizationID": first.get("identifiantTechniqueDeLaStructure", ""),
            "SubjectRole": [f"{e['codeProfession']}^1.2.250.1.213.1.1.5.5" for e in self.exercises],
            "Secteur_Activite": f"{first.get('codeSecteurDactivite', '')}^1.2.250.1.71.4.2.4",
            "Mode_Acces_Raison": "",
            "Acces_Regulation_Medicale": "FAUX",
            "UITVersion": "1.0",
            "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
            "PSI_Locale": "1.2.250.1.213.1.3.1.1",
            "otherIds": [{"identifiant": self.national_id[1:], "origine": "RPPS", "qualite": 1}],
            "SubjectRefPro": {"codeCivilite": "MME", "exercices": [dict(e) for e in self.exercises]},
        }


DEFAULT_PSC_PROFESSIONALS: tuple[PscTestProfessional, ...] = (
    PscTestProfessional(
        national_id="899700000001",
        family_name="SANDBOX",
        given_name="JEANNE",
        exercises=(
            {
                "codeProfession": "10",
                "codeCategorieProfessionnelle": "C",
                "codeCiviliteDexercice": "DR",
                "nomDexercice": "SANDBOX",
                "prenomDexercice": "JEANNE",
                "codeTypeSavoirFaire": "S",
                "codeSavoirFaire": "SM26",
                "activities": [
                    _activity("CENTRE DE SANTE SANDBOX", "499700000001001", "R10001", "SA05"),
                    _activity("CABINET SANDBOX", "1123456789", "F123456789", "SA07", finess="123456789"),
                ],
            },
            {
                "codeProfession": "40",
                "codeCategorieProfessionnelle": "C",
                "codeCiviliteDexercice": "DR",
                "nomDexercice": "SANDBOX",
                "prenomDexercice": "JEANNE",
                "codeTypeSavoirFaire": "",
                "codeSavoirFaire": "",
                "activities": [_activity("CABINET DENTAIRE SANDBOX", "499700000001002", "R10002", "SA07")],
            },
        ),
    ),
    PscTestProfessional(
        national_id="899700366240",
        family_name="DOC0036624",
        given_name="KIT",
        auth_mode="CARD",
        exercises=(
            {
                "codeProfession": "10",
                "codeCategorieProfessionnelle": "C",
                "codeCiviliteDexercice": "DR",
                "nomDexercice": "DOC0036624",
                "prenomDexercice": "KIT",
                "codeTypeSavoirFaire": "S",
                "codeSavoirFaire": "SM26",
                "activities": [_activity("CABINET M DOC0036624", "499700366240007", "R95141", "SA07")],
            },
        ),
    ),
)
"""Test professionals: SANDBOX JEANNE (the sandbox PKI's professional; two exercises, three activities,
one at the PKI's structure ``1123456789``) and KIT DOC0036624 (psc.md's userinfo example)."""


@dataclass(frozen=True)
class CibaView:
    """A CIBA request as the simulated e-CPS shows it."""

    auth_req_id: str
    login_hint: str
    binding_message: str
    status: Literal["pending", "approved", "denied", "expired", "issued"]


@dataclass
class _Ciba:
    client_id: str
    professional: PscTestProfessional
    login_hint: str
    binding_message: str
    expires_at: float
    status: Literal["pending", "approved", "denied", "expired", "issued"] = "pending"
    last_poll: float = 0.0


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    nonce: str | None
    professional: PscTestProfessional
    expires_at: float
    sid: str | None = None
    used: bool = False


@dataclass
class _Session:
    sid: str
    client_id: str
    professional: PscTestProfessional
    nonce: str | None
    auth_time: int
    scope: str
    revoked: bool = False
    refresh_tokens: set[str] = field(default_factory=set)


def _json(status: int, data: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def _oauth_error(code: str, status: int = 400) -> HttpResponse:
    return _json(status, {"error": code})


@functools.cache
def _sandbox_keys() -> tuple[RSAKey, RSAKey]:
    """The signing key and a foreign key of the same ``kid``, made once per process (RSA generation is slow)."""
    return (
        RSAKey.generate_key(2048, parameters={"kid": "psc-sandbox-1", "use": "sig", "alg": "RS256"}),
        RSAKey.generate_key(2048, parameters={"kid": "psc-sandbox-1", "use": "sig", "alg": "RS256"}),
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class PscSimulator:
    """The simulated PSC (a handler ``HttpRequest -> HttpResponse``); thread-safe.

    ``clients`` maps client ids to their secret (``client_secret_basic``/``_post``);
    ``mtls_clients`` maps client ids to a fragment the TLS client certificate's subject must
    contain (``tls_client_auth``). ``ciba_interval`` and the lifetimes are PSC's mock values by
    default; tests shorten them. ``auto_approve`` approves every CIBA request at once (demos).
    """

    def __init__(
        self,
        *,
        professionals: Sequence[PscTestProfessional] = DEFAULT_PSC_PROFESSIONALS,
        clients: Mapping[str, str] | None = None,
        mtls_clients: Mapping[str, str] | None = None,
        access_lifetime: int = 120,
        refresh_lifetime: int = 1800,
        ciba_expires_in: int = 120,
        ciba_interval: float = 1.0,
        code_lifetime: int = 60,
        auto_approve: bool = False,
        base_url: str = "https://psc.sandbox.invalid",
    ) -> None:
        self.professionals = {p.national_id: p for p in professionals}
        self.clients = dict(clients) if clients is not None else {"sandbox-lps": "sandbox-secret"}
        self.mtls_clients = dict(mtls_clients or {})
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.ciba_expires_in = ciba_expires_in
        self.ciba_interval = ciba_interval
        self.code_lifetime = code_lifetime
        self.auto_approve = auto_approve
        self.base_url = base_url.rstrip("/")
        """Scheme and host the simulator is reached at (set it to the loopback server's URL)."""
        self._key, self._foreign = _sandbox_keys()
        self._retired: list[RSAKey] = []
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._logins: dict[str, dict[str, str]] = {}
        self._ciba: dict[str, _Ciba] = {}
        self._sessions: dict[str, _Session] = {}
        self._refresh: dict[str, tuple[str, float]] = {}
        self._misissue: dict[str, Any] = {}
        self._slow_downs = 0
        self.requests: list[str] = []
        """``METHOD path`` of every request seen (no query string, no body)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url}, professionals={len(self.professionals)})"

    # --- what a test reads and drives ------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer (``<base_url>/auth/realms/esante-wallet``)."""
        return self.base_url + PSC_REALM_PATH

    def jwks(self) -> dict[str, Any]:
        """The published key set (the signing key, then the retired ones still published)."""
        return dict(KeySet([self._key, *self._retired]).as_dict(private=False))

    def rotate_keys(self) -> None:
        """Sign with a new key (new ``kid``) from now on; the old one stays published."""
        with self._lock:
            kid = f"psc-sandbox-{len(self._retired) + 2}"
            self._retired.insert(0, self._key)
            self._key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})

    def _keys(self) -> KeySet:
        return KeySet([self._key, *self._retired])

    def misissue(
        self,
        *,
        audience: str | None = None,
        nonce: str | None = None,
        expired: bool = False,
        foreign_key: bool = False,
        acr: str | None = None,
        swap_access: bool = False,
        omit_nonce: bool = False,
    ) -> None:
        """The next token answer carries a wrong ``aud``, ``nonce`` or ``acr``, is already expired, is
        signed by a key that is not in the JWKS (same ``kid``), or pairs its ID token with another
        access token (``swap_access``): the client must refuse it. ``omit_nonce`` leaves the nonce out, as a
        provider may on refresh."""
        with self._lock:
            self._misissue = {
                "aud": audience,
                "nonce": nonce,
                "expired": expired,
                "foreign": foreign_key,
                "acr": acr,
                "swap": swap_access,
                "omit_nonce": omit_nonce,
            }

    def slow_down(self, count: int = 1) -> None:
        """Answer the next ``count`` CIBA polls ``slow_down`` (the client must poll less often)."""
        with self._lock:
            self._slow_downs += count

    def pending_ciba(self) -> list[CibaView]:
        """CIBA requests waiting for the professional."""
        with self._lock:
            return [self._view(k, c) for k, c in self._ciba.items() if c.status == "pending"]

    def _view(self, key: str, ciba: _Ciba) -> CibaView:
        return CibaView(key, ciba.login_hint, ciba.binding_message, ciba.status)

    def _pick(self, auth_req_id: str | None) -> _Ciba:
        if auth_req_id is not None:
            return self._ciba[auth_req_id]
        pending = [c for c in self._ciba.values() if c.status == "pending"]
        if len(pending) != 1:
            raise LookupError(f"{len(pending)} CIBA requests are pending: name one")
        return pending[0]

    def approve(self, auth_req_id: str | None = None) -> None:
        """The professional approves on their e-CPS (the only pending request if none is named)."""
        with self._lock:
            self._pick(auth_req_id).status = "approved"

    def deny(self, auth_req_id: str | None = None) -> None:
        """The professional refuses."""
        with self._lock:
            self._pick(auth_req_id).status = "denied"

    def expire(self, auth_req_id: str | None = None) -> None:
        """The request runs out before the professional answers."""
        with self._lock:
            ciba = self._pick(auth_req_id)
            ciba.status = "expired"
            ciba.expires_at = 0.0

    def revoke_sessions(self) -> None:
        """End every session (as an SSO timeout or an administrator would): refreshes fail from now on."""
        with self._lock:
            for session in self._sessions.values():
                session.revoked = True

    def has_session(self, national_id: str) -> bool:
        """Whether ``national_id`` has a live session (the DMP simulator's ``air_check``)."""
        with self._lock:
            return any(not s.revoked and s.professional.national_id == national_id for s in self._sessions.values())

    def sessions_open(self) -> int:
        """How many sessions are live."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if not s.revoked)

    def introspect(self, token: str) -> dict[str, Any]:
        """The introspection answer for ``token`` (what the HTTP endpoint returns)."""
        with self._lock:
            return self._introspect(token)

    # --- HTTP --------------------------------------------------------------------------------------------

    def __call__(self, request: HttpRequest) -> HttpResponse:
        url = urllib.parse.urlsplit(request.path)
        path, query = url.path, dict(urllib.parse.parse_qsl(url.query))
        with self._lock:
            self.requests.append(f"{request.method} {path}")
            form = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"))) if request.body else {}
            routes: dict[str, Callable[[], HttpResponse]] = {
                _DISCOVERY: self._discovery,
                _OIDC + "/certs": lambda: _json(200, self.jwks()),
                _OIDC + "/token": lambda: self._token(request, form),
                _OIDC + "/userinfo": lambda: self._userinfo(request),
                _OIDC + "/token/introspect": lambda: self._introspect_http(request, form),
                _OIDC + "/logout": lambda: self._logout(request, {**query, **form}),
                _OIDC + "/ext/ciba/auth": lambda: self._ciba_auth(request, form),
                _AUTHORIZE: lambda: self._authorize(query),
                _LOGIN: lambda: self._login(form),
            }
            route = routes.get(path)
            if route is None:
                return HttpResponse(404, {"Content-Type": "text/plain"}, b"not found")
            return route()

    def _discovery(self) -> HttpResponse:
        oidc = self.issuer + "/protocol/openid-connect"
        endpoints = {
            "token_endpoint": oidc + "/token",
            "userinfo_endpoint": oidc + "/userinfo",
            "introspection_endpoint": oidc + "/token/introspect",
            "end_session_endpoint": oidc + "/logout",
            "backchannel_authentication_endpoint": oidc + "/ext/ciba/auth",
            "revocation_endpoint": oidc + "/revoke",
        }
        return _json(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.base_url + _AUTHORIZE,
                "jwks_uri": oidc + "/certs",
                **endpoints,
                "grant_types_supported": ["authorization_code", "refresh_token", _CIBA_GRANT],
                "backchannel_token_delivery_modes_supported": ["poll"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "tls_client_auth",
                ],
                "tls_client_certificate_bound_access_tokens": True,
                "mtls_endpoint_aliases": endpoints,
                "acr_values_supported": ["eidas1"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "scopes_supported": ["openid", "scope_all"],
            },
        )

    def _client(self, request: HttpRequest, form: Mapping[str, str]) -> str | None:
        """The authenticated client id, or None (Basic, form secret, or TLS client certificate)."""
        header = request.header("Authorization")
        if header.startswith("Basic "):
            try:
                pair = base64.b64decode(header[6:]).decode("utf-8")
            except ValueError:
                return None
            client_id, _, secret = pair.partition(":")
            client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
            expected = self.clients.get(client_id)
            return client_id if expected is not None and secrets.compare_digest(expected, secret) else None
        client_id = form.get("client_id", "")
        if "client_secret" in form:
            expected = self.clients.get(client_id)
            ok = expected is not None and secrets.compare_digest(expected, form["client_secret"])
            return client_id if ok else None
        fragment = self.mtls_clients.get(client_id)
        if fragment is not None and request.client_subject is not None and fragment in request.client_subject:
            return client_id
        return None

    # --- tokens ------------------------------------------------------------------------------------------

    def _issue(self, session: _Session, *, with_refresh: bool = True) -> HttpResponse:
        now = int(time.time())
        fault, self._misissue = self._misissue, {}
        lifetime = -60 if fault.get("expired") else self.access_lifetime
        key = self._foreign if fault.get("foreign") else self._key
        pro = session.professional
        nonce = None if fault.get("omit_nonce") else fault.get("nonce") or session.nonce
        common: dict[str, Any] = {
            "exp": now + lifetime,
            "iat": now - (120 if fault.get("expired") else 0),
            "iss": self.issuer,
            "sub": pro.subject,
            "azp": session.client_id,
            "session_state": session.sid,
            "sid": session.sid,
            "auth_time": session.auth_time,
            "acr": fault.get("acr") or "eidas1",
            "preferred_username": pro.national_id,
            "email_verified": False,
        }
        if nonce is not None:
            common["nonce"] = nonce
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        access_claims = {**common, "jti": secrets.token_hex(16), "typ": "Bearer", "scope": session.scope}
        access = jwt.encode(header, access_claims, key)
        at_hash = _b64url(hashlib.sha256(access.encode("ascii")).digest()[:16])
        id_claims = {
            **common,
            "jti": secrets.token_hex(16),
            "typ": "ID",
            "aud": fault.get("aud") or session.client_id,
            "at_hash": at_hash,
            "family_name": pro.family_name,
            "given_name": pro.given_name,
        }
        if fault.get("swap"):  # a valid access token of the same session, not the one the ID token names
            access = jwt.encode(header, {**access_claims, "jti": secrets.token_hex(16)}, key)
        answer: dict[str, Any] = {
            "access_token": access,
            "expires_in": lifetime,
            "token_type": "Bearer",
            "id_token": jwt.encode(header, id_claims, key),
            "scope": session.scope,
            "session_state": session.sid,
            "not-before-policy": 0,
        }
        if with_refresh:
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = (session.sid, time.time() + self.refresh_lifetime)
            session.refresh_tokens.add(refresh)
            answer["refresh_token"] = refresh
            answer["refresh_expires_in"] = self.refresh_lifetime
        return _json(200, answer)

    def _new_session(self, client_id: str, pro: PscTestProfessional, nonce: str | None, scope: str) -> _Session:
        session = _Session(secrets.token_hex(16), client_id, pro, nonce, int(time.time()), scope)
        self._sessions[session.sid] = session
        return session

    def _token(self, request: HttpRequest, form: Mapping[str, str]) -> HttpResponse:
        client_id = self._client(request, form)
        if client_id is None:
            return _oauth_error("invalid_client", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._code_grant(client_id, form)
        if grant == "refresh_token":
            entry = self._refresh.get(form.get("refresh_token", ""))
            session = self._sessions.get(entry[0]) if entry is not None else None
            if entry is None or session is None or session.revoked or entry[1] < time.time():
                return _oauth_error("invalid_grant")
            if session.client_id != client_id:
                return _oauth_error("invalid_grant")
            return self._issue(session)
        if grant == _CIBA_GRANT:
            return self._ciba_poll(client_id, form.get("auth_req_id", ""))
        return _oauth_error("unsupported_grant_type")

    def _code_grant(self, client_id: str, form: Mapping[str, str]) -> HttpResponse:
        grant = self._codes.get(form.get("code", ""))
        if grant is None or grant.client_id != client_id:
            return _oauth_error("invalid_grant")
        if grant.used:  # a replayed code: refused, and the session it opened is revoked (RFC 6749 §4.1.2)
            if grant.sid is not None and grant.sid in self._sessions:
                self._sessions[grant.sid].revoked = True
            return _oauth_error("invalid_grant")
        grant.used = True
        if grant.expires_at < time.time() or form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            if _b64url(hashlib.sha256(verifier.encode()).digest()) != grant.challenge:
                return _oauth_error("invalid_grant")
        session = self._new_session(client_id, grant.professional, grant.nonce, "openid scope_all")
        grant.sid = session.sid
        return self._issue(session)

    # --- CIBA --------------------------------------------------------------------------------------------

    def _ciba_auth(self, request: HttpRequest, form: Mapping[str, str]) -> HttpResponse:
        client_id = self._client(request, form)
        if client_id is None:
            return _oauth_error("invalid_client", 401)
        if "openid" not in form.get("scope", "").split():
            return _oauth_error("invalid_scope")
        hint = form.get("login_hint", "")
        pro = self.professionals.get(hint.split("/")[0])
        if pro is None:
            return _oauth_error("unknown_user_id")
        binding = form.get("binding_message", "")
        if not re.fullmatch(r"[0-9]{2}", binding):
            return _oauth_error("invalid_binding_message")
        auth_req_id = secrets.token_urlsafe(24)
        ciba = _Ciba(client_id, pro, hint, binding, time.monotonic() + self.ciba_expires_in)
        if self.auto_approve:
            ciba.status = "approved"
        self._ciba[auth_req_id] = ciba
        return _json(
            200, {"auth_req_id": auth_req_id, "expires_in": self.ciba_expires_in, "interval": self.ciba_interval}
        )

    def _ciba_poll(self, client_id: str, auth_req_id: str) -> HttpResponse:
        ciba = self._ciba.get(auth_req_id)
        if ciba is None or ciba.client_id != client_id or ciba.status == "issued":
            return _oauth_error("invalid_grant")
        now = time.monotonic()
        if self._slow_downs > 0 and ciba.status in ("pending", "approved"):
            self._slow_downs -= 1
            ciba.last_poll = now
            return _oauth_error("slow_down")
        if ciba.status == "denied":
            return _oauth_error("access_denied")
        if ciba.status == "expired" or now > ciba.expires_at:
            ciba.status = "expired"
            return _oauth_error("expired_token")
        if ciba.status == "pending":
            too_soon = now - ciba.last_poll < self.ciba_interval * 0.5
            ciba.last_poll = now
            return _oauth_error("slow_down" if too_soon else "authorization_pending")
        ciba.status = "issued"
        session = self._new_session(client_id, ciba.professional, None, "openid scope_all")
        return self._issue(session)

    # --- browser flow ------------------------------------------------------------------------------------

    def _authorize(self, query: Mapping[str, str]) -> HttpResponse:
        if query.get("client_id") not in self.clients and query.get("client_id") not in self.mtls_clients:
            return HttpResponse(400, {"Content-Type": "text/plain"}, b"unknown client")
        if query.get("response_type") != "code" or not query.get("redirect_uri"):
            return HttpResponse(400, {"Content-Type": "text/plain"}, b"bad request")
        if query.get("code_challenge") and query.get("code_challenge_method") != "S256":
            return HttpResponse(400, {"Content-Type": "text/plain"}, b"S256 only")
        login = secrets.token_urlsafe(16)
        self._logins[login] = dict(query)
        options = "".join(
            f'<option value="{html.escape(p.national_id)}">{html.escape(p.given_name)} {html.escape(p.family_name)}'
            "</option>"
            for p in self.professionals.values()
        )
        page = (
            "<!doctype html><html><body><h1>Pro Santé Connect (sandbox)</h1>"
            f'<form method="post" action="{_LOGIN}"><input type="hidden" name="login" value="{login}">'
            f'<select name="professional">{options}</select>'
            '<button name="decision" value="approve">Se connecter</button>'
            '<button name="decision" value="deny">Annuler</button></form></body></html>'
        )
        return HttpResponse(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())

    def _login(self, form: Mapping[str, str]) -> HttpResponse:
        query = self._logins.pop(form.get("login", ""), None)
        if query is None:
            return HttpResponse(400, {"Content-Type": "text/plain"}, b"unknown or used login")
        back: dict[str, str] = {"state": query.get("state", "")}
        pro = self.professionals.get(form.get("professional", ""))
        if form.get("decision") != "approve" or pro is None:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            self._codes[code] = _Code(
                query["client_id"],
                query["redirect_uri"],
                query.get("code_challenge"),
                query.get("nonce"),
                pro,
                time.time() + self.code_lifetime,
            )
            back["code"] = code
        redirect = query["redirect_uri"]
        location = redirect + ("&" if "?" in redirect else "?") + urllib.parse.urlencode(back)
        return HttpResponse(302, {"Location": location}, b"")

    # --- resource side -----------------------------------------------------------------------------------

    def _access_session(self, token: str) -> tuple[_Session, dict[str, Any]] | None:
        try:
            decoded = jwt.decode(token, self._keys(), algorithms=["RS256"])
        except (JoseError, ValueError, TypeError):
            return None
        claims = decoded.claims
        session = self._sessions.get(str(claims.get("sid")))
        if session is None or session.revoked or claims.get("typ") != "Bearer":
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            return None
        return session, dict(claims)

    def _userinfo(self, request: HttpRequest) -> HttpResponse:
        header = request.header("Authorization")
        found = self._access_session(header[7:]) if header.startswith("Bearer ") else None
        if found is None:
            return HttpResponse(
                401,
                {"Content-Type": "application/json", "WWW-Authenticate": 'Bearer error="invalid_token"'},
                b'{"error":"invalid_token"}',
            )
        return _json(200, found[0].professional.userinfo())

    def _introspect(self, token: str) -> dict[str, Any]:
        found = self._access_session(token)
        if found is not None:
            session, claims = found
            return {
                **claims,
                "client_id": session.client_id,
                "username": session.professional.national_id,
                "SubjectNameID": session.professional.national_id,
                "active": True,
            }
        entry = self._refresh.get(token)
        owner = self._sessions.get(entry[0]) if entry is not None else None
        if entry is not None and owner is not None and not owner.revoked and entry[1] > time.time():
            return {
                "active": True,
                "typ": "Refresh",
                "sub": owner.professional.subject,
                "client_id": owner.client_id,
                "exp": int(entry[1]),
            }
        return {"active": False}

    def _introspect_http(self, request: HttpRequest, form: Mapping[str, str]) -> HttpResponse:
        if self._client(request, form) is None:
            return _oauth_error("invalid_client", 401)
        return _json(200, self._introspect(form.get("token", "")))

    def _logout(self, request: HttpRequest, params: Mapping[str, str]) -> HttpResponse:
        sid: str | None = None
        hint = params.get("id_token_hint")
        if hint:
            try:
                sid = str(jwt.decode(hint, self._keys(), algorithms=["RS256"]).claims.get("sid"))
            except (JoseError, ValueError, TypeError):
                sid = None
        if sid is None and params.get("refresh_token") in self._refresh:
            sid = self._refresh[params["refresh_token"]][0]
        if sid is not None and sid in self._sessions:
            self._sessions[sid].revoked = True
        redirect = params.get("post_logout_redirect_uri")
        if redirect:
            return HttpResponse(302, {"Location": redirect}, b"")
        return HttpResponse(204)


class PscIntrospectionCheck:
    """An MSSanté operator's token check: introspect the bearer token at the PSC simulator over HTTPS.

    ``owners`` maps mailbox addresses to the national id of their owner. Called with the SASL
    user and the token, it returns the mailbox when PSC says the token is active and its
    ``preferred_username`` owns that mailbox; None otherwise.
    """

    def __init__(
        self, introspection_url: str, client_id: str, secret: str, ca_file: Path, owners: Mapping[str, str]
    ) -> None:
        self.url = introspection_url
        self._auth = (client_id, secret)
        self._ca = ssl.create_default_context(cafile=str(ca_file))
        self.owners = {k.strip().lower(): v for k, v in owners.items()}
        self.calls = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url})"

    def __call__(self, user: str, token: str) -> str | None:
        self.calls += 1
        mailbox = user.strip().lower()
        with httpx.Client(verify=self._ca, timeout=5.0) as http:
            answer = http.post(self.url, data={"token": token}, auth=self._auth)
        if answer.status_code != 200:
            return None
        data = answer.json()
        if data.get("active") is not True or data.get("typ") != "Bearer":
            return None
        return mailbox if self.owners.get(mailbox) == data.get("preferred_username") else None


@contextmanager
def serve_psc(files: TestPkiFiles, simulator: PscSimulator | None = None) -> Iterator[PscSimulator]:
    """Serve ``simulator`` (a new one by default) on 127.0.0.1 over TLS with the sandbox PKI's server
    certificate (client certificate optional, for ``tls_client_auth``); its ``base_url`` is set."""
    sim = simulator if simulator is not None else PscSimulator()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    context.load_verify_locations(cafile=files.ca_cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    with LoopbackServer(sim, ssl_context=context) as server:
        sim.base_url = server.url
        yield sim
