"""Fast checks of the PSC client in-process (the simulator behind an httpx transport, faults queued in front)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from dmp_connector.config import PscClientAuth, PscSettings, Settings, SoftwareIdentity
from dmp_connector.errors import ConfigurationError, HttpStatusError, MalformedResponseError
from dmp_connector.psc import CibaExpiredError, InvalidTokenError, PscClient, PscError
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import HttpResponse, ScriptedHandler, as_transport
from dmp_connector.sandbox.psc import PscSimulator

pytest.importorskip("joserfc")
HINT = "899700000001"


def _settings(sim: PscSimulator, **psc: object) -> Settings:
    return Settings(
        software=SoftwareIdentity(name="LPS", version="1", editor="E"),
        psc=PscSettings.model_validate(
            {"issuer": sim.issuer, "client_id": "sandbox-lps", "client_secret": SecretStr("sandbox-secret"), **psc}
        ),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0),
    )


@pytest.fixture
def sim() -> PscSimulator:
    return PscSimulator(ciba_interval=0.01)


@pytest.fixture
def script(sim: PscSimulator) -> ScriptedHandler:
    return ScriptedHandler(sim)


@pytest.fixture
def client(sim: PscSimulator, script: ScriptedHandler) -> Iterator[PscClient]:
    with PscClient(_settings(sim), http_client=httpx.Client(transport=as_transport(script))) as psc:
        yield psc


def _json(data: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def test_configuration_is_checked_up_front(sim: PscSimulator) -> None:
    with pytest.raises(ConfigurationError, match="client id"):
        PscClient(_settings(sim).model_copy(update={"psc": PscSettings()}))
    with pytest.raises(ConfigurationError, match="client_secret"):
        PscClient(_settings(sim, client_secret=None))
    with pytest.raises(ConfigurationError, match="client certificate"):
        PscClient(_settings(sim, client_auth=PscClientAuth.MTLS))


def test_discovery_naming_another_issuer_is_refused(client: PscClient, script: ScriptedHandler) -> None:
    script.then(_json({"issuer": "https://evil.example/auth/realms/esante-wallet"}))
    with pytest.raises(MalformedResponseError, match="another issuer"):
        client.discover()


def test_discovery_with_a_cleartext_mtls_alias_is_refused(client: PscClient, script: ScriptedHandler) -> None:
    """In mutual-TLS mode tokens and codes go to the aliases: an http:// one would send them in clear."""
    from dmp_connector.psc import ProviderMetadata

    base = {
        "issuer": "https://psc.example/auth/realms/esante-wallet",
        "authorization_endpoint": "https://psc.example/a",
        "token_endpoint": "https://psc.example/t",
        "userinfo_endpoint": "https://psc.example/u",
        "jwks_uri": "https://psc.example/k",
    }
    issuer = base["issuer"]
    good = ProviderMetadata.from_json({**base, "mtls_endpoint_aliases": {"token_endpoint": "https://m/t"}}, issuer)
    assert good.mtls_endpoint_aliases == {"token_endpoint": "https://m/t"}
    with pytest.raises(MalformedResponseError, match=r"mtls_endpoint_aliases\.token_endpoint"):
        ProviderMetadata.from_json({**base, "mtls_endpoint_aliases": {"token_endpoint": "http://m/t"}}, issuer)


def test_discovery_is_retried_after_a_503(client: PscClient, script: ScriptedHandler, sim: PscSimulator) -> None:
    script.then(HttpResponse(503))
    assert client.discover().issuer == sim.issuer
    assert len(script.requests) == 2


def test_a_code_exchange_is_never_sent_twice(client: PscClient, script: ScriptedHandler) -> None:
    """A 503 on the token endpoint is not retried for a single-use authorisation code."""
    request = client.start_authorization(redirect_uri="https://lps.example/cb")
    script.then(HttpResponse(503))
    before = len(script.requests)
    with pytest.raises(HttpStatusError):
        client.complete_authorization(request, {"code": "c", "state": request.state})
    assert len(script.requests) == before + 1


def test_malformed_ciba_acknowledgement(client: PscClient, script: ScriptedHandler) -> None:
    client.discover()
    script.then(_json({"expires_in": 120}))
    with pytest.raises(MalformedResponseError, match="auth_req_id"):
        client.start_ciba(HINT)


def test_ciba_stops_at_its_own_expiry(sim: PscSimulator, script: ScriptedHandler) -> None:
    sim.ciba_expires_in = 1
    with PscClient(_settings(sim), http_client=httpx.Client(transport=as_transport(script))) as psc:
        request = psc.start_ciba(HINT)
        started = time.monotonic()
        with pytest.raises(CibaExpiredError):
            psc.wait_ciba(request)  # never approved: PSC says authorization_pending until expires_in
        assert time.monotonic() - started < 1.5


def test_a_token_type_other_than_bearer(client: PscClient, script: ScriptedHandler, sim: PscSimulator) -> None:
    request = client.start_ciba(HINT)
    sim.approve()
    script.then(_json({"access_token": "x", "token_type": "DPoP", "id_token": "y"}))
    with pytest.raises(MalformedResponseError, match="Bearer"):
        client.wait_ciba(request)


def test_userinfo_of_another_subject_is_refused(client: PscClient, script: ScriptedHandler, sim: PscSimulator) -> None:
    request = client.start_ciba(HINT)
    sim.approve()

    def other_userinfo(req: object) -> HttpResponse:
        return _json(sim.professionals["899700366240"].userinfo())

    original = script.handler

    def route(req: object) -> HttpResponse:
        from dmp_connector.sandbox import HttpRequest

        assert isinstance(req, HttpRequest)
        return other_userinfo(req) if req.path.endswith("/userinfo") else original(req)

    script.handler = route
    with pytest.raises(InvalidTokenError) as caught:
        client.wait_ciba(request)
    assert caught.value.reason == "claims"


def test_unknown_error_code_is_a_psc_error_without_its_description(client: PscClient, script: ScriptedHandler) -> None:
    client.discover()
    script.then(_json({"error": "unknown_user_id", "error_description": "Dr KIT DOC0036624 inconnu"}, 400))
    with pytest.raises(PscError) as caught:
        client.start_ciba("899700366240")
    assert caught.value.code == "unknown_user_id"
    assert "DOC0036624" not in str(caught.value) and "899700366240" not in str(caught.value)
