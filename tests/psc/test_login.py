"""The PSC client against the PSC simulator on loopback (real TLS): discovery, CIBA, the browser flow,
refresh, introspection, logout, and every refusal typed."""

from __future__ import annotations

import logging
import re
import ssl
import urllib.parse

import httpx
import pytest

from dmp_connector.config import Settings
from dmp_connector.psc import (
    AsyncPscClient,
    AuthorizationRequest,
    CibaDeniedError,
    CibaExpiredError,
    InvalidGrantError,
    InvalidTokenError,
    PscClient,
    PscError,
    PscSession,
    PscSessionClosedError,
)
from dmp_connector.pytest_plugin import DMPC_PSC_LOGIN_HINT, PendingCiba
from dmp_connector.sandbox.psc import PscSimulator

pytest.importorskip("joserfc")


def _browser_login(sim: PscSimulator, settings: Settings, request: AuthorizationRequest, professional: str) -> str:
    """Drive the simulator's login page as a browser would; the callback URL PSC redirects to."""
    verify = ssl.create_default_context(cafile=str(settings.tls.ca_bundle))
    with httpx.Client(verify=verify, follow_redirects=False) as browser:
        page = browser.get(request.url)
        assert page.status_code == 200 and "Pro Santé Connect" in page.text
        login = re.search(r'name="login" value="([^"]+)"', page.text)
        assert login is not None
        answer = browser.post(
            sim.base_url + "/auth/login",
            data={"login": login.group(1), "professional": professional, "decision": "approve"},
        )
    assert answer.status_code == 302
    return answer.headers["location"]


def test_discovery_is_read_at_psc_own_path(dmpc_psc: PscSimulator, dmpc_psc_client: PscClient) -> None:
    meta = dmpc_psc_client.discover()
    assert meta.issuer == dmpc_psc.issuer
    assert meta.backchannel_authentication_endpoint is not None
    assert "GET /auth/realms/esante-wallet/.well-known/wallet-openid-configuration" in dmpc_psc.requests
    assert not any("openid-configuration" in r and "wallet" not in r for r in dmpc_psc.requests)


def test_ciba_login_gives_the_professional_and_lifetimes_from_the_tokens(dmpc_psc_ciba: PendingCiba) -> None:
    sim, client, request = dmpc_psc_ciba.simulator, dmpc_psc_ciba.client, dmpc_psc_ciba.request
    [pending] = sim.pending_ciba()
    assert pending.binding_message == request.binding_message and re.fullmatch(r"\d\d", request.binding_message)
    sim.approve()
    session = client.wait_ciba(request)
    pro = session.professional
    assert pro.national_id == DMPC_PSC_LOGIN_HINT
    assert len(pro.exercises) == 2 and len(pro.activities()) == 3
    assert session.acr == "eidas1"
    lifetime = (session.access_expires_at - session.auth_time).total_seconds() if session.auth_time else 0
    assert 100 <= lifetime <= 125  # the simulator's 120 s, read from exp
    assert "CIBA" not in repr(session) and session.get_token() not in repr(session)
    polls = [r for r in sim.requests if r.endswith("/token")]
    assert len(polls) >= 1


def test_ciba_waits_while_pending_then_succeeds(dmpc_psc_ciba: PendingCiba) -> None:
    import threading

    sim = dmpc_psc_ciba.simulator
    timer = threading.Timer(0.3, sim.approve)
    timer.start()
    try:
        session = dmpc_psc_ciba.client.wait_ciba(dmpc_psc_ciba.request)
    finally:
        timer.join()
    assert session.professional.national_id == DMPC_PSC_LOGIN_HINT
    assert sum(1 for r in sim.requests if r.endswith("/token")) >= 3  # pending answers were polled through


def test_denied_ciba_is_typed(dmpc_psc_ciba: PendingCiba) -> None:
    dmpc_psc_ciba.simulator.deny()
    with pytest.raises(CibaDeniedError) as caught:
        dmpc_psc_ciba.client.wait_ciba(dmpc_psc_ciba.request)
    assert caught.value.code == "access_denied"


def test_expired_ciba_is_typed(dmpc_psc_ciba: PendingCiba) -> None:
    dmpc_psc_ciba.simulator.expire()
    with pytest.raises(CibaExpiredError):
        dmpc_psc_ciba.client.wait_ciba(dmpc_psc_ciba.request)


def test_browser_login_with_pkce_and_nonce(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    with PscClient(dmpc_psc_settings) as client:
        request = client.start_authorization()
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
        assert query["code_challenge_method"] == "S256" and query["acr_values"] == "eidas1"
        assert query["nonce"] == request.nonce and "code_verifier" not in query
        callback = _browser_login(dmpc_psc, dmpc_psc_settings, request, "899700366240")
        session = client.complete_authorization(request, callback)
        assert session.professional.national_id == "899700366240"
        [(exercise, activity)] = session.professional.activities()
        assert activity.structure_id == "499700366240007" and exercise.skill == "SM26"


def test_replayed_code_is_refused_and_revokes_the_session(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    with PscClient(dmpc_psc_settings) as client:
        request = client.start_authorization()
        callback = _browser_login(dmpc_psc, dmpc_psc_settings, request, DMPC_PSC_LOGIN_HINT)
        session = client.complete_authorization(request, callback)
        with pytest.raises(InvalidGrantError) as caught:
            client.complete_authorization(request, callback)
        assert caught.value.code == "invalid_grant"
        with pytest.raises(PscSessionClosedError):  # the session the code opened is revoked at PSC
            session.refresh()
        assert session.closed


def test_forged_state_is_refused_before_any_exchange(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    with PscClient(dmpc_psc_settings) as client:
        request = client.start_authorization()
        callback = _browser_login(dmpc_psc, dmpc_psc_settings, request, DMPC_PSC_LOGIN_HINT)
        forged = re.sub(r"state=[^&]+", "state=forged", callback)
        before = len(dmpc_psc.requests)
        with pytest.raises(InvalidGrantError) as caught:
            client.complete_authorization(request, forged)
        assert caught.value.code == "invalid_state"
        assert not any(r.endswith("/token") for r in dmpc_psc.requests[before:])


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"audience": "another-client"}, "audience"),
        ({"nonce": "another-nonce"}, "nonce"),
        ({"expired": True}, "expired"),
        ({"foreign_key": True}, "signature"),
        ({"acr": "eidas0"}, "acr"),
    ],
)
def test_bad_tokens_from_the_browser_flow_are_refused_typed(
    dmpc_psc: PscSimulator, dmpc_psc_settings: Settings, fault: dict[str, object], reason: str
) -> None:
    with PscClient(dmpc_psc_settings) as client:
        request = client.start_authorization()
        callback = _browser_login(dmpc_psc, dmpc_psc_settings, request, DMPC_PSC_LOGIN_HINT)
        dmpc_psc.misissue(**fault)  # type: ignore[arg-type]
        with pytest.raises(InvalidTokenError) as caught:
            client.complete_authorization(request, callback)
        assert caught.value.reason == reason


def test_tampered_token_is_refused(dmpc_psc: PscSimulator, dmpc_psc_session: PscSession) -> None:
    """A token whose payload was changed after signing fails joserfc's signature check."""
    import base64
    import json

    from dmp_connector.psc._jose import load_keys, validate

    token = dmpc_psc_session.get_token()
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["preferred_username"] = "899700366240"  # someone else
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError) as caught:
        validate(
            f"{header}.{forged}.{signature}",
            load_keys(dmpc_psc.jwks()),
            what="access token",
            algorithms=["RS256"],
            leeway=0,
            required={},
        )
    assert caught.value.reason == "signature"
    assert dmpc_psc.introspect(f"{header}.{forged}.{signature}") == {"active": False}


def test_refresh_introspect_logout(dmpc_psc: PscSimulator, dmpc_psc_session: PscSession) -> None:
    first = dmpc_psc_session.get_token()
    assert dmpc_psc_session.get_token() == first  # not near expiry: no refresh
    assert dmpc_psc_session.get_token(force_refresh=True) != first
    seen = dmpc_psc_session.introspect()
    assert seen.active and seen.national_id == DMPC_PSC_LOGIN_HINT and seen.acr == "eidas1"
    dmpc_psc_session.logout()
    assert dmpc_psc_session.closed and dmpc_psc.sessions_open() == 0
    with pytest.raises(PscSessionClosedError):
        dmpc_psc_session.get_token()


def test_refresh_refused_closes_the_session(dmpc_psc: PscSimulator, dmpc_psc_session: PscSession) -> None:
    dmpc_psc.revoke_sessions()
    with pytest.raises(PscSessionClosedError):
        dmpc_psc_session.get_token(force_refresh=True)
    assert dmpc_psc_session.closed


def test_token_near_expiry_is_refreshed_before_use(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    psc = dmpc_psc_settings.psc.model_copy(update={"refresh_margin_seconds": 200.0})  # > the 120 s lifetime
    with PscClient(dmpc_psc_settings.model_copy(update={"psc": psc})) as client:
        request = client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        session = client.wait_ciba(request)
        first = session.get_token()
        assert session.get_token() != first  # within the margin: refreshed at each use


def test_no_token_nor_identity_in_logs(
    dmpc_psc: PscSimulator, dmpc_psc_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = dmpc_psc_settings.model_copy(  # no configured professional: the audit's actor names nobody
        update={"audit": dmpc_psc_settings.audit.model_copy(update={"log": True}), "professional": None}
    )
    with PscClient(settings) as client:
        request = client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        session = client.wait_ciba(request)
        token = session.get_token(force_refresh=True)
        session.introspect()
        dmpc_psc.revoke_sessions()
        with pytest.raises(PscSessionClosedError) as caught:
            session.get_token(force_refresh=True)
    text = caplog.text + str(caught.value) + repr(caught.value) + repr(session) + repr(session.professional)
    assert '"outcome":"failure"' in caplog.text  # the refused refresh is audited as a failure
    assert caplog.records, "the audit log was on: something must have been logged"
    for secret in (token, token.split(".")[1], DMPC_PSC_LOGIN_HINT, "SANDBOX", "JEANNE", "sandbox-secret"):
        assert secret not in text


@pytest.mark.asyncio
async def test_async_ciba_refresh_and_logout(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    async with AsyncPscClient(dmpc_psc_settings) as client:
        request = await client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        session = await client.wait_ciba(request)
        first = await session.get_token()
        assert await session.get_token(force_refresh=True) != first
        assert (await session.introspect()).active
        await session.logout()
        assert dmpc_psc.sessions_open() == 0


@pytest.mark.asyncio
async def test_async_denied_ciba(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    async with AsyncPscClient(dmpc_psc_settings) as client:
        request = await client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.deny()
        with pytest.raises(CibaDeniedError):
            await client.wait_ciba(request)


def test_slow_down_lengthens_the_polling_interval(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    import time

    psc = dmpc_psc_settings.psc.model_copy(update={"ciba_slow_down_seconds": 0.3})
    with PscClient(dmpc_psc_settings.model_copy(update={"psc": psc})) as client:
        request = client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        dmpc_psc.slow_down(2)
        started = time.monotonic()
        session = client.wait_ciba(request)
        elapsed = time.monotonic() - started
    assert session.professional.national_id == DMPC_PSC_LOGIN_HINT
    # three polls: after 0.05 s, then 0.35 s, then 0.65 s (each slow_down adds 0.3 s)
    assert elapsed >= 1.0
    assert sum(1 for r in dmpc_psc.requests if r.endswith("/token")) == 3


def test_mutual_tls_client_authentication(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    """The production form: the organisation's certificate authenticates the client, no secret is sent."""
    from dmp_connector.config import PscClientAuth, TlsCredentials
    from dmp_connector.errors import ConfigurationError

    dmpc_psc.mtls_clients["sandbox-lps-mtls"] = "organizationalUnitName=1123456789"
    psc = dmpc_psc_settings.psc.model_copy(
        update={"client_id": "sandbox-lps-mtls", "client_auth": PscClientAuth.MTLS, "client_secret": None}
    )
    settings = dmpc_psc_settings.model_copy(update={"psc": psc})
    with PscClient(settings) as client:
        request = client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        session = client.wait_ciba(request)
        assert session.introspect().active
    # the same client id with a secret instead of the certificate is not this client
    secret = dmpc_psc_settings.psc.model_copy(update={"client_id": "sandbox-lps-mtls"})
    with PscClient(dmpc_psc_settings.model_copy(update={"psc": secret})) as client:
        with pytest.raises(PscError) as caught:
            client.start_ciba(DMPC_PSC_LOGIN_HINT)
        assert caught.value.code == "invalid_client"
    no_cert = psc.model_copy(update={"tls": TlsCredentials(ca_bundle=dmpc_psc_settings.tls.ca_bundle)})
    with pytest.raises(ConfigurationError):
        PscClient(dmpc_psc_settings.model_copy(update={"psc": no_cert}))


def test_client_secret_post(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    from dmp_connector.config import PscClientAuth

    psc = dmpc_psc_settings.psc.model_copy(update={"client_auth": PscClientAuth.CLIENT_SECRET_POST})
    with PscClient(dmpc_psc_settings.model_copy(update={"psc": psc})) as client:
        request = client.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        assert client.wait_ciba(request).introspect().active


def test_wrong_secret_is_invalid_client(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    from pydantic import SecretStr

    psc = dmpc_psc_settings.psc.model_copy(update={"client_secret": SecretStr("wrong")})
    with PscClient(dmpc_psc_settings.model_copy(update={"psc": psc})) as client, pytest.raises(PscError) as caught:
        client.start_ciba(DMPC_PSC_LOGIN_HINT)
    assert caught.value.code == "invalid_client" and "wrong" not in str(caught.value)


def test_swapped_access_token_is_refused_by_at_hash(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    with PscClient(dmpc_psc_settings) as client:
        request = client.start_authorization()
        callback = _browser_login(dmpc_psc, dmpc_psc_settings, request, DMPC_PSC_LOGIN_HINT)
        dmpc_psc.misissue(swap_access=True)
        with pytest.raises(InvalidTokenError) as caught:
            client.complete_authorization(request, callback)
        assert caught.value.reason == "claims"


def test_key_rotation_is_followed_once(dmpc_psc: PscSimulator, dmpc_psc_session: PscSession) -> None:
    """PSC signs with a new kid: the client fetches the JWKS again and carries on."""
    before = sum(1 for r in dmpc_psc.requests if r.endswith("/certs"))
    dmpc_psc.rotate_keys()
    first = dmpc_psc_session.get_token()
    assert dmpc_psc_session.get_token(force_refresh=True) != first
    assert sum(1 for r in dmpc_psc.requests if r.endswith("/certs")) == before + 1


def test_nonce_on_refresh_may_be_absent_but_never_another(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    with PscClient(dmpc_psc_settings) as client:
        request = client.start_authorization()
        session = client.complete_authorization(
            request, _browser_login(dmpc_psc, dmpc_psc_settings, request, DMPC_PSC_LOGIN_HINT)
        )
        dmpc_psc.misissue(omit_nonce=True)
        session.refresh()  # OIDC Core §12.2: a refreshed token may leave the nonce out
        dmpc_psc.misissue(nonce="another-nonce")
        with pytest.raises(PscSessionClosedError):
            session.refresh()
        assert session.closed


@pytest.mark.asyncio
async def test_async_browser_login_and_replayed_code(dmpc_psc: PscSimulator, dmpc_psc_settings: Settings) -> None:
    async with AsyncPscClient(dmpc_psc_settings) as client:
        request = await client.start_authorization()
        callback = _browser_login(dmpc_psc, dmpc_psc_settings, request, "899700366240")
        session = await client.complete_authorization(request, callback)
        assert session.professional.national_id == "899700366240"
        with pytest.raises(InvalidGrantError):
            await client.complete_authorization(request, callback)
        with pytest.raises(PscSessionClosedError):
            await session.get_token(force_refresh=True)  # the replay revoked the session at PSC
