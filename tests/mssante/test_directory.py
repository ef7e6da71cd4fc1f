"""Annuaire Santé look-ups with respx: no network, realistic bundles, paging, rate limit, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from dmp_connector._rest import RestClient, RestRequest, TokenBucket
from dmp_connector.audit import MemorySink
from dmp_connector.config import DirectorySettings, Environment, Settings, SoftwareIdentity
from dmp_connector.errors import (
    ConfigurationError,
    ConnectError,
    HttpStatusError,
    InvalidIdentifierError,
    MalformedResponseError,
    RequestTimeout,
    ValidationError,
)
from dmp_connector.mssante.address import MailboxKind
from dmp_connector.mssante.directory import AsyncDirectoryClient, DirectoryClient
from dmp_connector.retries import RetryPolicy

BASE = "https://annuaire.test.invalid/fhir/v2"
KEY = "secret-api-key-123"
SOFTWARE = SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor")


def settings(**directory: Any) -> Settings:
    return Settings.model_validate(
        {
            "software": SOFTWARE,
            "environment": Environment.sandbox().model_copy(update={"annuaire_url": BASE}),
            "retry": RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, jitter=0.0),
            "directory": DirectorySettings(api_key=KEY, **directory),
        }
    )


def mss(address: str, kind: str | None = "PER", *, description: str | None = None) -> dict[str, Any]:
    meta: list[dict[str, Any]] = []
    if kind:
        meta.append(
            {
                "url": "type",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL",
                            "code": kind,
                        }
                    ]
                },
            }
        )
    if description:
        meta.append({"url": "description", "valueString": description})
    meta.append({"url": "digitization", "valueBoolean": False})
    return {
        "extension": [
            {
                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type",
                "valueCoding": {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie",
                    "code": "MSSANTE",
                },
            },
            {
                "url": "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata",
                "extension": meta,
            },
        ],
        "system": "email",
        "value": address,
    }


PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "003-1234",
    "active": True,
    "identifier": [
        {
            "type": {
                "coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "IDNPS"}]
            },
            "system": "urn:oid:1.2.250.1.71.4.2.1",
            "value": "810003461033",
        },
        {
            "type": {
                "coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "RPPS"}]
            },
            "system": "https://rpps.esante.gouv.fr",
            "value": "10003461033",
        },
    ],
    "name": [{"prefix": ["M"], "family": "SAUCIER", "given": ["Arthur"]}],
    "telecom": [
        {"system": "phone", "value": "0603590791"},
        {"system": "email", "value": "arthur@hotmail.fr"},
        mss("arthur.saucier@medecin.mssante.fr", "PER", description="BAL perso"),
    ],
}
ROLE = {
    "resourceType": "PractitionerRole",
    "id": "role-1",
    "practitioner": {"reference": "Practitioner/003-1234"},
    "telecom": [mss("a.saucier@ch-x.mssante.fr", "PER"), mss("arthur.saucier@medecin.mssante.fr", "PER")],
}
ORGANISATION = {
    "resourceType": "Organization",
    "id": "org-1",
    "name": "CENTRE DE SANTE DR HOUSE",
    "telecom": [
        mss("secretariat.drhouse@aura.mssante.fr", "ORG", description="DR HOUSE Secrétariat"),
        mss("lgc.drhouse@aura.mssante.fr", "APP"),
        {"system": "email", "value": "contact@drhouse.fr"},
    ],
}


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "self", "url": f"{BASE}/x"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": r} for r in resources],
    }


def test_a_practitioner_by_rpps_with_the_mailboxes_of_their_roles() -> None:
    sink = MemorySink()
    with respx.mock(assert_all_called=True) as router:
        route = router.get(f"{BASE}/Practitioner").respond(json=bundle(PRACTITIONER, ROLE))
        with DirectoryClient(settings(), audit=[sink]) as directory:
            found = directory.practitioner_by_rpps("10003461033")
    assert found is not None
    assert (found.rpps, found.idnps, found.family_name, found.given_names) == (
        "10003461033",
        "810003461033",
        "SAUCIER",
        ("Arthur",),
    )
    assert found.active is True
    assert [(b.address, b.source) for b in found.mailboxes] == [
        ("arthur.saucier@medecin.mssante.fr", "Practitioner"),
        ("a.saucier@ch-x.mssante.fr", "PractitionerRole"),
        ("arthur.saucier@medecin.mssante.fr", "PractitionerRole"),
    ]
    first = found.mailboxes[0]
    assert first.kind is MailboxKind.PERSONAL and first.description == "BAL perso" and first.digitization is False
    assert first.to_address().display_name == "Arthur SAUCIER"
    request = route.calls.last.request
    assert request.headers["ESANTE-API-KEY"] == KEY
    assert request.url.params["identifier"] == "10003461033"
    assert request.url.params["_revinclude"] == "PractitionerRole:practitioner"
    assert request.url.params["_count"] == "50"
    [event] = sink.events
    assert (event.service, event.operation, event.http_status) == ("annuaire", "practitioner-by-rpps", 200)
    assert KEY not in event.to_json()
    assert "identifier" not in event.endpoint


def test_an_unknown_rpps_gives_none_and_a_bad_one_is_refused_unsent() -> None:
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").respond(json=bundle())
        with DirectoryClient(settings()) as directory:
            assert directory.practitioner_by_rpps("810003461033") is None
            with pytest.raises(InvalidIdentifierError):
                directory.practitioner_by_rpps("1234")
        assert len(router.calls) == 1


def test_a_search_by_name_follows_next_links() -> None:
    second = dict(PRACTITIONER, id="p2", identifier=[], telecom=[mss("b@x.mssante.fr", None)])
    with respx.mock() as router:
        route = router.get(url__startswith=f"{BASE}/Practitioner").mock(
            side_effect=[
                httpx.Response(200, json=bundle(PRACTITIONER, next_url=f"{BASE}/Practitioner?_page=2")),
                httpx.Response(200, json=bundle(second)),
            ]
        )
        with DirectoryClient(settings()) as directory:
            found = directory.search_practitioners(family="Saucier", given="Arthur")
    assert [p.resource_id for p in found] == ["003-1234", "p2"]
    assert found[1].mailboxes[0].kind is None and found[1].rpps is None
    first, second_call = route.calls
    assert first.request.url.params["family"] == "Saucier"
    assert first.request.url.params["mailbox-mss:contains"] == "@"
    assert str(second_call.request.url) == f"{BASE}/Practitioner?_page=2"
    assert second_call.request.headers["ESANTE-API-KEY"] == KEY


def test_a_search_by_name_needs_a_name() -> None:
    with DirectoryClient(settings()) as directory, pytest.raises(ValidationError):
        directory.search_practitioners()


def test_paging_stops_at_max_pages() -> None:
    with respx.mock() as router:
        route = router.get(url__startswith=f"{BASE}/Practitioner").respond(
            json=bundle(PRACTITIONER, next_url=f"{BASE}/Practitioner?_page=n")
        )
        with DirectoryClient(settings(max_pages=3)) as directory:
            directory.search_practitioners(family="X")
    assert len(route.calls) == 3


def test_a_next_link_to_another_host_is_not_followed() -> None:
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").respond(json=bundle(PRACTITIONER, next_url="https://evil.example/steal"))
        with DirectoryClient(settings()) as directory, pytest.raises(MalformedResponseError, match="another host"):
            directory.search_practitioners(family="X")
        assert len(router.calls) == 1


def test_organisation_mailboxes_skip_plain_email() -> None:
    with respx.mock() as router:
        route = router.get(f"{BASE}/Organization").respond(json=bundle(ORGANISATION))
        with DirectoryClient(settings()) as directory:
            boxes = directory.organisation_mailboxes("123456789")
    assert [(b.address, b.kind, b.organisation_name) for b in boxes] == [
        ("secretariat.drhouse@aura.mssante.fr", MailboxKind.ORGANISATIONAL, "CENTRE DE SANTE DR HOUSE"),
        ("lgc.drhouse@aura.mssante.fr", MailboxKind.APPLICATIVE, "CENTRE DE SANTE DR HOUSE"),
    ]
    assert route.calls.last.request.url.params["identifier"] == "123456789"


def test_find_address_searches_the_three_resources() -> None:
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").respond(json=bundle(PRACTITIONER))
        router.get(f"{BASE}/PractitionerRole").respond(json=bundle(ROLE))
        router.get(f"{BASE}/Organization").respond(json=bundle())
        with DirectoryClient(settings()) as directory:
            boxes = directory.find_address("Arthur.Saucier@medecin.mssante.fr")
        assert router.calls[0].request.url.params["mailbox-mss:exact"] == "Arthur.Saucier@medecin.mssante.fr"
    assert [(b.source, b.rpps) for b in boxes] == [("Practitioner", "10003461033"), ("PractitionerRole", None)]


def test_a_missing_api_key_is_a_configuration_error() -> None:
    plain = settings().model_copy(update={"directory": DirectorySettings()})
    with pytest.raises(ConfigurationError, match="API key"):
        DirectoryClient(plain)


def test_unauthorised_is_not_retried_and_names_the_key_setting() -> None:
    sink = MemorySink()
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").respond(401, json={"resourceType": "OperationOutcome"})
        with DirectoryClient(settings(), audit=[sink]) as directory, pytest.raises(HttpStatusError) as caught:
            directory.practitioner_by_rpps("10003461033")
        assert len(router.calls) == 1
    assert caught.value.status_code == 401
    assert caught.value.hint is not None and "api_key" in caught.value.hint
    assert KEY not in str(caught.value)
    assert sink.events[0].error_code == "401"


def test_too_many_requests_and_gateway_errors_are_retried() -> None:
    sink = MemorySink()
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "0"}),
                httpx.Response(503),
                httpx.Response(200, json=bundle(PRACTITIONER)),
            ]
        )
        with DirectoryClient(settings(), audit=[sink]) as directory:
            assert directory.practitioner_by_rpps("10003461033") is not None
    assert [e.attempt for e in sink.events] == [1, 2, 3]
    assert len({e.correlation_id for e in sink.events}) == 1
    assert [e.http_status for e in sink.events] == [429, 503, 200]


def test_transport_failures_are_translated() -> None:
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").mock(side_effect=httpx.ConnectError("refused"))
        with DirectoryClient(settings()) as directory, pytest.raises(ConnectError) as caught:
            directory.practitioner_by_rpps("10003461033")
        assert caught.value.attempts == 3
        router.get(f"{BASE}/Organization").mock(side_effect=httpx.ReadTimeout("slow"))
        with DirectoryClient(settings()) as directory, pytest.raises(RequestTimeout):
            directory.organisation_mailboxes("123")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html/>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b"{not json", headers={"content-type": "application/fhir+json"}),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"resourceType": "OperationOutcome"}),
    ],
)
def test_answers_that_are_not_bundles_are_malformed(response: httpx.Response) -> None:
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").mock(return_value=response)
        with DirectoryClient(settings()) as directory, pytest.raises(MalformedResponseError):
            directory.practitioner_by_rpps("10003461033")


def test_an_oversized_answer_is_refused() -> None:
    with respx.mock() as router:
        router.get(f"{BASE}/x").respond(json={"pad": "x" * 5000})
        with RestClient(settings(), max_response_bytes=1000) as rest, pytest.raises(MalformedResponseError):
            rest.get_json(RestRequest(service="annuaire", operation="t", url=f"{BASE}/x"))


def test_the_token_bucket_paces_requests() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, capacity=2, clock=lambda: now[0])
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)
    now[0] = 10.0
    assert bucket.reserve() == 0.0
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_the_client_paces_at_the_configured_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("dmp_connector._rest.time.sleep", slept.append)
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").respond(json=bundle())
        with DirectoryClient(settings(requests_per_second=1.0)) as directory:
            for _ in range(3):
                directory.practitioner_by_rpps("10003461033")
    assert len(slept) == 2 and all(s > 0.5 for s in slept)


def test_the_pace_never_waits_past_the_calls_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from dmp_connector.errors import RequestTimeout
    from dmp_connector.transport import deadline

    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the clock moves as if the wait had happened
        slept.append(seconds)
        clock[0] += seconds

    clock = [1000.0]
    monkeypatch.setattr("dmp_connector._rest.time.sleep", sleep)
    monkeypatch.setattr("dmp_connector._deadline.time.monotonic", lambda: clock[0])
    with respx.mock() as router:
        router.get(f"{BASE}/Practitioner").respond(json=bundle())
        with DirectoryClient(settings(requests_per_second=0.1)) as directory:
            directory.practitioner_by_rpps("10003461033")  # takes the one token: the next one comes in 10 s
            with deadline(2.0), pytest.raises(RequestTimeout):
                directory.practitioner_by_rpps("10003461033")
    assert slept and max(slept) <= 2.0


def test_the_rate_cannot_be_set_over_the_api_limit() -> None:
    with pytest.raises(ValueError):
        DirectorySettings(requests_per_second=18)


def test_the_async_client_mirrors_the_sync_one() -> None:
    async def run() -> Any:
        with respx.mock() as router:
            router.get(f"{BASE}/Practitioner").respond(json=bundle(PRACTITIONER, ROLE))
            router.get(f"{BASE}/Organization").respond(json=bundle(ORGANISATION))
            router.get(f"{BASE}/PractitionerRole").respond(json=bundle())
            async with AsyncDirectoryClient(settings()) as directory:
                practitioner = await directory.practitioner_by_rpps("10003461033")
                named = await directory.search_practitioners(family="Saucier")
                boxes = await directory.organisation_mailboxes("123456789")
                found = await directory.find_address("lgc.drhouse@aura.mssante.fr")
        return practitioner, named, boxes, found

    practitioner, named, boxes, found = asyncio.run(run())
    assert practitioner is not None and len(practitioner.mailboxes) == 3
    assert len(named) == 1 and len(boxes) == 2
    assert [b.kind for b in found] == [MailboxKind.APPLICATIVE]


def test_sync_and_async_directory_clients_have_the_same_methods() -> None:
    import inspect

    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(m) for n, m in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")
        }

    sync, asyn = public(DirectoryClient), public(AsyncDirectoryClient)
    assert {"aclose" if n == "close" else n for n in sync} == set(asyn)
    for name, signature in sync.items():
        twin = asyn["aclose" if name == "close" else name]
        assert list(twin.parameters) == list(signature.parameters)
    assert list(inspect.signature(DirectoryClient.__init__).parameters) == list(
        inspect.signature(AsyncDirectoryClient.__init__).parameters
    )
