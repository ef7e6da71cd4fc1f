"""Requests as INSi expects them (ins.md §2.2–2.3), captured with respx before they leave."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import respx
from lxml import etree

from dmp_connector.audit import MemorySink
from dmp_connector.config import Environment, InsiAuthMode, InsiSettings
from dmp_connector.errors import ConfigurationError, IdentityNotQualifiedError, ValidationError
from dmp_connector.ins import BirthDate, IdentityTraits, Sex
from dmp_connector.ins.insi import (
    ACTION_SEARCH_CARTE_VITALE,
    ACTION_SEARCH_TRAITS,
    CTXBAM_NS,
    CTXLPS_NS,
    INSI_RECSANS_NS,
    INSI_RECVIT_NS,
    CarteVitaleBeneficiary,
    SearchByTraits,
    SearchCriteria,
    VitaleNir,
    search_plan,
)
from dmp_connector.soap import namespaces as ns
from dmp_connector.xml import parse_xml

from . import fixtures
from .helpers import ADRUN, AEION, ECETINSI, IDAM, INSTANCE, MODES, URL, call, identity, settings, traits

SOAP_OK = {"Content-Type": "application/soap+xml; charset=utf-8"}
TEMPS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def ok(body: bytes = fixtures.NOT_FOUND) -> httpx.Response:
    return httpx.Response(200, headers=SOAP_OK, content=body)


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def children(element: etree._Element) -> list[str]:
    return [local(child) for child in element if isinstance(child.tag, str)]


def sent(route: respx.Route, index: int = 0) -> tuple[httpx.Request, etree._Element]:
    request = route.calls[index].request
    return request, parse_xml(request.content)


def header(envelope: etree._Element) -> etree._Element:
    found = envelope.find(f"{{{ns.SOAP12_ENV}}}Header")
    assert found is not None
    return found


def body_payload(envelope: etree._Element) -> etree._Element:
    body = envelope.find(f"{{{ns.SOAP12_ENV}}}Body")
    assert body is not None
    return body[0]


@MODES
@respx.mock
def test_traits_search_envelope_matches_the_reference(mode: str) -> None:
    route = respx.post(URL).mock(return_value=ok())
    call(mode, settings(), "search", ADRUN, criteria=SearchCriteria())
    request, envelope = sent(route)

    assert request.headers["Content-Type"] == f'application/soap+xml; charset=utf-8; action="{ACTION_SEARCH_TRAITS}"'
    head = header(envelope)
    # WS-Addressing first (from the transport), then the two contexts; no wsse:Security in mTLS mode.
    assert children(head) == ["MessageID", "To", "Action", "ContexteBAM", "ContexteLPS"]
    message_id = head.findtext(f"{{{ns.WSA}}}MessageID") or ""
    assert message_id.startswith("uuid:") and not message_id.startswith("urn:")
    call_uuid = message_id.removeprefix("uuid:")
    uuid.UUID(call_uuid)
    assert head.findtext(f"{{{ns.WSA}}}Action") == ACTION_SEARCH_TRAITS
    assert head.findtext(f"{{{ns.WSA}}}To") == URL

    bam = head.find(f"{{{CTXBAM_NS}}}ContexteBAM")
    assert bam is not None
    assert dict(bam.attrib.items()) == {"Version": "01_02"}
    assert children(bam) == ["Id", "Temps", "Emetteur", "COUVERTURE"]
    assert bam.findtext(f"{{{CTXBAM_NS}}}Id") == call_uuid
    assert TEMPS.match(bam.findtext(f"{{{CTXBAM_NS}}}Temps") or "")
    assert bam.findtext(f"{{{CTXBAM_NS}}}Emetteur") == "1123456789"  # the organisation's national id
    couverture = bam.find(f"{{{CTXBAM_NS}}}COUVERTURE")
    assert couverture is not None and len(couverture) == 0

    lps = head.find(f"{{{CTXLPS_NS}}}ContexteLPS")
    assert lps is not None
    assert dict(lps.attrib.items()) == {"Nature": "CTXLPS", "Version": "01_00"}
    assert children(lps) == ["Id", "Temps", "Emetteur", "LPS"]
    assert lps.findtext(f"{{{CTXLPS_NS}}}Id") == call_uuid
    assert lps.findtext(f"{{{CTXLPS_NS}}}Temps") == bam.findtext(f"{{{CTXBAM_NS}}}Temps")
    software = lps.find(f"{{{CTXLPS_NS}}}LPS")
    assert software is not None
    assert children(software) == ["IDAM", "Version", "Instance", "Nom"]
    idam = software.find(f"{{{CTXLPS_NS}}}IDAM")
    assert idam is not None and idam.text == IDAM and dict(idam.attrib.items()) == {"R": "4"}
    assert software.findtext(f"{{{CTXLPS_NS}}}Version") == "1.0"
    assert software.findtext(f"{{{CTXLPS_NS}}}Instance") == INSTANCE
    assert software.findtext(f"{{{CTXLPS_NS}}}Nom") == "urn:lps:TestLPS:1.0"

    payload = body_payload(envelope)
    assert payload.tag == f"{{{INSI_RECSANS_NS}}}RECSANSVITALE"
    assert children(payload) == ["NomNaissance", "Prenom", "Sexe", "DateNaissance"]
    assert [child.text for child in payload] == ["ADRUN", "ZOE", "F", "1975-12-31"]


@respx.mock
def test_criteria_add_every_first_name_and_the_birth_place_in_order() -> None:
    route = respx.post(URL).mock(return_value=ok())
    call("sync", settings(), "search", ECETINSI, criteria=SearchCriteria(all_first_names=True, birth_place=True))
    payload = body_payload(sent(route)[1])
    assert children(payload) == ["NomNaissance", "Prenom", "Sexe", "DateNaissance", "LieuNaissance"]
    assert payload[1].text == "PIERRE-ALAIN MURIEL FLORIANT"
    assert payload[4].text == "63220"


def test_search_plan_follows_the_ans_order() -> None:
    assert search_plan(ECETINSI) == (
        SearchCriteria(),
        SearchCriteria(all_first_names=True),
        SearchCriteria(all_first_names=True, birth_place=True),
    )
    assert search_plan(traits("ADRUN", "ZOE", "F", "1975-12-31")) == (SearchCriteria(),)
    assert search_plan(ADRUN) == (SearchCriteria(), SearchCriteria(birth_place=True))


@respx.mock
def test_an_ambiguous_answer_is_refined_until_it_is_not() -> None:
    route = respx.post(URL).mock(side_effect=[ok(fixtures.AMBIGUOUS), ok(fixtures.AMBIGUOUS), ok(fixtures.NOT_FOUND)])
    result = call("sync", settings(), "search", ECETINSI)
    assert route.call_count == 3
    assert result.code.value == "01"
    assert result.criteria == SearchCriteria(all_first_names=True, birth_place=True)
    prenoms = [children(body_payload(sent(route, i)[1])) for i in range(3)]
    assert prenoms[0] == prenoms[1] == ["NomNaissance", "Prenom", "Sexe", "DateNaissance"]
    assert prenoms[2][-1] == "LieuNaissance"
    # Each search of the plan is its own logical call, with its own MessageID.
    ids = {sent(route, i)[1].findtext(f".//{{{ns.WSA}}}MessageID") for i in range(3)}
    assert len(ids) == 3


@respx.mock
def test_apostrophe_in_a_name_is_escaped_as_xml_requires() -> None:
    route = respx.post(URL).mock(return_value=ok())
    call("sync", settings(), "search", AEION)
    request, envelope = sent(route)
    assert b"D'AEION" in request.content or b"D&apos;AEION" in request.content
    assert body_payload(envelope)[0].text == "D'AEION"


@respx.mock
def test_message_id_form_is_a_setting() -> None:
    route = respx.post(URL).mock(return_value=ok())
    config = settings(insi=InsiSettings(message_id_prefix="urn:uuid:", emitter="10B0152872"))
    sink = MemorySink()
    call("sync", config, "search", ADRUN, audit=[sink])
    head = header(sent(route)[1])
    message_id = head.findtext(f"{{{ns.WSA}}}MessageID") or ""
    assert message_id.startswith("urn:uuid:")
    assert sink.events[0].correlation_id == message_id
    assert head.findtext(f"{{{CTXBAM_NS}}}ContexteBAM/{{{CTXBAM_NS}}}Emetteur") == "10B0152872"
    assert head.findtext(f"{{{CTXLPS_NS}}}ContexteLPS/{{{CTXLPS_NS}}}Emetteur") == "10B0152872"


def test_temps_comes_from_the_clock_in_utc() -> None:
    from dmp_connector._transport import CallContext

    fixed = datetime(2022, 3, 1, 10, 29, 58, 604000, tzinfo=UTC)
    operation = SearchByTraits(ADRUN, clock=lambda: fixed)
    request = operation.build(
        CallContext(settings=settings(), message_id="urn:uuid:0f6c0000-0000-4000-8000-000000000000")
    )
    bam = request.headers[0]
    assert bam.findtext(f"{{{CTXBAM_NS}}}Temps") == "2022-03-01T10:29:58.604Z"
    assert bam.findtext(f"{{{CTXBAM_NS}}}Id") == "0f6c0000-0000-4000-8000-000000000000"
    assert request.patient is None


@respx.mock
def test_missing_authorisation_number_is_a_configuration_error_before_any_call() -> None:
    route = respx.post(URL).mock(return_value=ok())
    config = settings(software=SOFTWARE_WITHOUT_IDAM)
    with pytest.raises(ConfigurationError, match="IDAM") as info:
        call("sync", config, "search", ADRUN)
    assert "insi_authorisation_id" in str(info.value)
    assert route.call_count == 0


@respx.mock
def test_no_organisation_and_no_emitter_is_a_configuration_error() -> None:
    respx.post(URL).mock(return_value=ok())
    with pytest.raises(ConfigurationError, match="emitter"):
        call("sync", settings(organisation=None), "search", ADRUN)


@MODES
@respx.mock
def test_doubtful_or_fictitious_identity_never_reaches_insi(mode: str) -> None:
    route = respx.post(URL).mock(return_value=ok())
    for subject in (identity(ADRUN, doubtful=True), identity(ADRUN, fictitious=True)):
        with pytest.raises(IdentityNotQualifiedError, match="EXI SI 09"):
            call(mode, settings(), "search", subject)
    stored = identity(ADRUN, status=None, doubtful=True)
    with pytest.raises(IdentityNotQualifiedError):
        call(mode, settings(), "verify", stored)
    assert route.call_count == 0


def test_sex_i_cannot_be_searched() -> None:
    odd = IdentityTraits(
        birth_name="ADRUN", birth_first_names=("ZOE",), sex=Sex.I, birth_date=BirthDate.parse("1975-12-31")
    )
    with pytest.raises(ValidationError) as info:
        SearchByTraits(odd)
    assert any("M or F" in problem for problem in info.value.problems)


@MODES
@respx.mock
def test_search_of_traits_carries_no_patient_and_verify_carries_a_pseudonym(mode: str) -> None:
    respx.post(URL).mock(return_value=ok(fixtures.FOUND_PREFIXED))
    sink = MemorySink()
    call(mode, settings(), "search", ADRUN, audit=[sink])
    stored = identity(ADRUN, "275126322074974")
    call(mode, settings(), "verify", stored, audit=[sink])
    assert sink.events[0].patient is None
    assert sink.events[1].patient is not None and sink.events[1].patient.startswith("hmac-sha256:")
    for event in sink.events:
        text = event.to_json()
        for secret in ("ADRUN", "ZOE", "1975-12-31", "275126322074974", "2751263220749"):
            assert secret not in text


@respx.mock
def test_assertion_mode_puts_the_assertion_in_wsse_security_and_uses_the_cpx_host() -> None:
    environment = Environment.test()
    cpx = respx.post(environment.insi_url).mock(return_value=ok())
    mtls = respx.post(environment.insi_mtls_url).mock(return_value=ok())
    assertion = etree.Element(f"{{{ns.SAML2}}}Assertion", nsmap={"saml2": ns.SAML2}, ID="_a1")
    calls = []

    def provider() -> etree._Element:
        calls.append(1)
        return assertion

    config = settings(environment=environment, insi=InsiSettings(auth_mode=InsiAuthMode.ASSERTION))
    for mode in ("sync", "async"):
        call(mode, config, "search", ADRUN, assertion_provider=provider, criteria=SearchCriteria())
    assert cpx.call_count == 2 and mtls.call_count == 0 and len(calls) == 2
    head = header(sent(cpx)[1])
    security = head.find(f"{{{ns.WSSE}}}Security")
    assert security is not None
    assert [child.get("ID") for child in security] == ["_a1"]
    assert children(head)[-1] == "Security"


@respx.mock
def test_mtls_mode_uses_the_mtls_host() -> None:
    environment = Environment.test()
    mtls = respx.post(environment.insi_mtls_url).mock(return_value=ok())
    call("sync", settings(environment=environment), "search", ADRUN)
    assert mtls.call_count == 1


def test_auth_mode_and_provider_must_agree() -> None:
    assertion_mode = settings(insi=InsiSettings(auth_mode=InsiAuthMode.ASSERTION))
    with pytest.raises(ConfigurationError, match="no assertion provider"):
        call("sync", assertion_mode, "search", ADRUN)
    element = etree.Element("x")
    with pytest.raises(ConfigurationError, match="mtls"):
        call("sync", settings(), "search", ADRUN, assertion_provider=lambda: element)


@MODES
@respx.mock
def test_carte_vitale_search_fills_recvitale_and_couverture(mode: str) -> None:
    route = respx.post(URL).mock(return_value=ok())
    card = CarteVitaleBeneficiary(
        holder=VitaleNir(number="2780563220123", key="29"),
        beneficiary=VitaleNir(number="1100863220830"),
        birth_date="2010-08-07",
        birth_rank=1,
        birth_name="Nessi",
    )
    call(mode, settings(), "search_carte_vitale", card)
    request, envelope = sent(route)
    assert f'action="{ACTION_SEARCH_CARTE_VITALE}"' in request.headers["Content-Type"]
    head = header(envelope)
    assert head.findtext(f"{{{ns.WSA}}}Action") == ACTION_SEARCH_CARTE_VITALE
    payload = body_payload(envelope)
    assert payload.tag == f"{{{INSI_RECVIT_NS}}}RECVITALE"
    assert children(payload) == ["MatriculeIndividu", "MatriculeOD", "NomNaissance", "DateNaissance", "RangNaissance"]
    assert children(payload[0]) == ["NumIdentifiant"]
    assert children(payload[1]) == ["NumIdentifiant", "Cle"]
    assert [payload[2].text, payload[3].text, payload[4].text] == ["NESSI", "2010-08-07", "1"]
    couverture = head.find(f"{{{CTXBAM_NS}}}ContexteBAM/{{{CTXBAM_NS}}}COUVERTURE")
    assert couverture is not None
    assert children(couverture) == ["ASSURE", "BENEFICIAIRE"]
    assert couverture.findtext(f"{{{CTXBAM_NS}}}ASSURE/{{{CTXBAM_NS}}}Id/{{{CTXBAM_NS}}}Num") == "2780563220123"
    beneficiary = couverture.find(f"{{{CTXBAM_NS}}}BENEFICIAIRE")
    assert beneficiary is not None
    assert children(beneficiary) == ["Nir", "DateNai", "Rang"]


@respx.mock
def test_carte_vitale_assertion_goes_after_the_professional_one() -> None:
    route = respx.post(URL).mock(return_value=ok())
    professional = etree.Element(f"{{{ns.SAML2}}}Assertion", ID="_ps")
    vitale = etree.Element(f"{{{ns.SAML2}}}Assertion", ID="_cv")
    config = settings(insi=InsiSettings(auth_mode=InsiAuthMode.ASSERTION))
    card = CarteVitaleBeneficiary(holder=VitaleNir(number="2751263220749"), birth_date="1975-12-31")
    call("sync", config, "search_carte_vitale", card, assertion_provider=lambda: professional, vitale_assertion=vitale)
    security = header(sent(route)[1]).find(f"{{{ns.WSSE}}}Security")
    assert security is not None and [child.get("ID") for child in security] == ["_ps", "_cv"]


def test_repr_of_an_operation_shows_no_trait() -> None:
    text = repr(SearchByTraits(ADRUN)) + repr(ADRUN)
    assert "ADRUN" not in text and "ZOE" not in text


SOFTWARE_WITHOUT_IDAM = settings().software.model_copy(update={"insi_authorisation_id": None})
