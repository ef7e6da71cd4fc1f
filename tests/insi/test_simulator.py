"""The INSi simulator, in-process and on a loopback HTTPS server with mutual TLS, sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.audit import MemorySink
from dmp_connector.config import Environment, Settings
from dmp_connector.errors import SoapFaultError
from dmp_connector.ins import INS, IdentityTraits, InsOid
from dmp_connector.ins.insi import (
    ACTION_SEARCH_TRAITS,
    CTXLPS_NS,
    INSI_RECSANS_NS,
    CarteVitaleBeneficiary,
    InsiResult,
    InsiServiceError,
    SearchCriteria,
    VerificationVerdict,
    VitaleNir,
    map_insi_fault,
)
from dmp_connector.sandbox import HttpRequest, HttpResponse, LoopbackServer, ScriptedHandler, server_ssl_context
from dmp_connector.sandbox.insi import DEFAULT_INSI_IDENTITIES, InsiSimulator, SeededIdentity, SimulatedFault
from dmp_connector.soap import namespaces as ns
from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.xml import parse_xml, to_bytes
from tests.conftest import PkiFiles, make_settings

from .helpers import ADRUN, AEION, ECETINSI, FAST_RETRY, HOUILLES, MODES, SOFTWARE, call, identity, settings, traits


@dataclass
class Target:
    """Where the simulator runs: in-process (``handler``) or behind a loopback server (``config`` points at it)."""

    script: ScriptedHandler
    config: Settings
    handler: ScriptedHandler | None

    def call(self, mode: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return call(mode, self.config, method, *args, handler=self.handler, **kwargs)


@pytest.fixture(scope="module")
def loopback(pki_files: PkiFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    script = ScriptedHandler(InsiSimulator())
    context = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path_factory.mktemp("insi-server"))
    with LoopbackServer(script, ssl_context=context) as server:
        config = make_settings(
            pki_files, software=SOFTWARE, environment=Environment.sandbox(server.url), retry=FAST_RETRY
        )
        yield Target(script, config, None)


@pytest.fixture(params=["in-process", "loopback"])
def target(request: pytest.FixtureRequest, loopback: Target) -> Target:
    if request.param == "loopback":
        loopback.script.requests.clear()
        return loopback
    script = ScriptedHandler(InsiSimulator())
    return Target(script, settings(), script)


SEARCHES = [
    ("qualification identity", ADRUN, "00", "275126322074974"),
    ("accents and case are normalised", traits("Adrtrois", "Dominique", "f", "1997-02-26"), "00", "297022A02077878"),
    ("born in 2B", traits("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"), "00", "160012B02077713"),
    ("born abroad", traits("DOS SANTOS", "ANA MARIA", "F", "1985-04-12", "99139"), "00", "285049913901202"),
    ("a second first name alone", traits("TCHITCHI", "OLA", "F", "1936-06-21"), "01", None),
    ("the first first name", traits("TCHITCHI", "CATARINA", "F", "1936-06-21"), "00", "236066322083656"),
    ("several first names", ECETINSI, "00", "109076322083489"),
    ("unknown person", HOUILLES, "01", None),
    ("shared traits without place", traits("DE VINCI", "LEONARDO", "M", "2014-02-01"), "02", None),
    ("shared traits, place given", traits("DE VINCI", "LEONARDO", "M", "2014-02-01", "13055"), "00", "114021305503474"),
    ("a NIA", traits("PROVISOIRE", "MATRICULE", "M", "2009-07-01"), "00", "109076322088835"),
]


@MODES
@pytest.mark.parametrize(("case", "subject", "code", "matricule"), SEARCHES, ids=[s[0] for s in SEARCHES])
def test_searches(mode: str, target: Target, case: str, subject: Any, code: str, matricule: str | None) -> None:
    result: InsiResult = target.call(mode, "search", subject)
    assert result.code.value == code, case
    if matricule is None:
        assert result.identity is None
    else:
        assert result.identity is not None and result.identity.active.matricule == matricule
        assert result.identity.traits.birth_name == subject.birth_name


@MODES
def test_the_refinement_plan_runs_against_the_simulator(mode: str, target: Target) -> None:
    result = target.call(mode, "search", traits("DE VINCI", "LEONARDO", "M", "2014-02-01", "75056"))
    assert result.criteria == SearchCriteria(birth_place=True)
    assert result.identity is not None and result.identity.active.matricule == "114027505601241"
    assert len(target.script.requests) == 2


@MODES
def test_history_wrong_keys_and_placeholders_as_seeded(mode: str, target: Target) -> None:
    ecetinsi = target.call(mode, "search", ECETINSI).identity
    assert [ins.matricule for ins in ecetinsi.replaced] == ["209076322083439", "209066322012355"]
    assert ecetinsi.history[0].dates_inverted
    corse = target.call(mode, "search", traits("CORSE", "ANTHONY", "M", "1980-03-02")).identity
    assert corse.first_name == "ANTHONY" and len(corse.history) == 1 and corse.replaced == ()
    hermann = target.call(mode, "search", traits("HERMANN", "GATIEN", "M", "1981-03-24")).identity
    assert not hermann.active.key_valid and not hermann.all_keys_valid
    nia = target.call(mode, "search", traits("PROVISOIRE", "MATRICULE", "M", "2009-07-01")).identity
    assert nia.is_nia and nia.placeholder_traits
    pat = target.call(mode, "search", traits("PAT-TROIS", "DOMINIQUE", "F", "1979-03-28")).identity
    assert pat.active.oid is InsOid.NIR_TEST


@MODES
def test_seeded_technical_fault_is_retried_then_raised(mode: str, target: Target) -> None:
    with pytest.raises(InsiServiceError) as info:
        target.call(mode, "search", AEION)
    assert info.value.code == "insi_102" and info.value.transient and info.value.attempts == 3
    assert len(target.script.requests) == 3


@MODES
def test_queued_fault_then_success(mode: str, target: Target) -> None:
    target.script.then(SimulatedFault.technical().respond)
    sink = MemorySink()
    result = target.call(mode, "search", ADRUN, audit=[sink])
    assert result.found
    assert len(target.script.requests) == 2
    assert target.script.requests[0].body == target.script.requests[1].body
    assert [e.error_code for e in sink.events] == ["insi_102", None]


@MODES
def test_queued_refusal_names_the_request_message_id(mode: str, target: Target) -> None:
    target.script.then(SimulatedFault.unknown_idam().respond)
    with pytest.raises(InsiServiceError) as info:
        target.call(mode, "search", ADRUN)
    sent_id = parse_envelope(target.script.requests[0].body).message_id
    assert info.value.code == "desir_550" and info.value.fault_message_id == sent_id
    assert sent_id is not None and sent_id.startswith("uuid:")
    assert len(target.script.requests) == 1


VERDICTS = [
    ("confirmed", ADRUN, "275126322074974", InsOid.NIR, VerificationVerdict.CONFIRMED, ()),
    ("traits differ", traits("ADRUN", "ZOE", "F", "1975-12-31", "63113"), "275126322074974", InsOid.NIR,
     VerificationVerdict.TRAITS_DIFFER, ("birth_place",)),
    ("replaced", ECETINSI, "209076322083439", InsOid.NIR, VerificationVerdict.MATRICULE_REPLACED, ()),
    ("another matricule", ADRUN, "275126322075073", InsOid.NIR, VerificationVerdict.MATRICULE_DIFFERS, ()),
    ("another OID", traits("PAT-TROIS", "DOMINIQUE MARIE-LOUISE", "F", "1979-03-28", "51215"), "279035121518989",
     InsOid.NIR, VerificationVerdict.MATRICULE_DIFFERS, ()),
    ("wrong key returned", traits("HERMANN", "GATIEN", "M", "1981-03-24", "63220"), "181036322045676", InsOid.NIR,
     VerificationVerdict.KEY_INVALID, ()),
    ("not found", HOUILLES, "193017512300172", InsOid.NIR, VerificationVerdict.NOT_FOUND, ()),
    ("ambiguous", traits("DE VINCI", "LEONARDO", "M", "2014-02-01"), "114027505601241", InsOid.NIR,
     VerificationVerdict.AMBIGUOUS, ()),
    ("NIA with placeholder traits", traits("PROVISOIRE", "MATRICULE", "M", "2009-07-01", "63220"), "109076322088835",
     InsOid.NIA, VerificationVerdict.CONFIRMED, ()),
]  # fmt: skip


@MODES
@pytest.mark.parametrize(
    ("case", "subject", "matricule", "oid", "verdict", "differing"), VERDICTS, ids=[v[0] for v in VERDICTS]
)
def test_verification_verdicts(
    mode: str,
    case: str,
    subject: Any,
    matricule: str,
    oid: InsOid,
    verdict: VerificationVerdict,
    differing: tuple[str, ...],
) -> None:
    script = ScriptedHandler(InsiSimulator())
    sink = MemorySink()
    result = call(mode, settings(), "verify", identity(subject, matricule, oid=oid), handler=script, audit=[sink])
    assert result.verdict is verdict, case
    assert result.differing_traits == differing
    assert result.confirmed is (verdict is VerificationVerdict.CONFIRMED)
    assert result.stored.matricule == matricule
    for event in sink.events:
        assert matricule not in event.to_json() and subject.birth_name not in event.to_json()
        assert event.patient is not None


def test_verification_notes_say_why() -> None:
    script = ScriptedHandler(InsiSimulator())
    pat = traits("PAT-TROIS", "DOMINIQUE MARIE-LOUISE", "F", "1979-03-28", "51215")
    other_oid = call("sync", settings(), "verify", identity(pat, "279035121518989"), handler=script)
    assert any("OID differs" in note for note in other_oid.notes)
    nia = traits("PROVISOIRE", "MATRICULE", "M", "2009-07-01", "63220")
    placeholder = call("sync", settings(), "verify", identity(nia, "109076322088835", oid=InsOid.NIA), handler=script)
    assert any("placeholder" in note for note in placeholder.notes)
    shared = traits("DE VINCI", "LEONARDO", "M", "2014-02-01", "13055")
    refined = call("sync", settings(), "verify", identity(shared, "114021305503474"), handler=script)
    assert refined.verdict is VerificationVerdict.CONFIRMED and refined.searches == 2


def test_verify_needs_an_ins() -> None:
    from dmp_connector.errors import ValidationError

    with pytest.raises(ValidationError, match="no INS"):
        call("sync", settings(), "verify", identity(ADRUN), handler=InsiSimulator())


CARDS = [
    ("own card", CarteVitaleBeneficiary(holder=VitaleNir(number="2751263220749"), birth_date="1975-12-31"),
     "275126322074974"),
    ("child on a parent's card",
     CarteVitaleBeneficiary(holder=VitaleNir(number="2780563220123"), birth_date="2010-08-07"), "110086322083060"),
    ("former NIR on the card",
     CarteVitaleBeneficiary(holder=VitaleNir(number="2780563220123"), beneficiary=VitaleNir(number="2090763220834"),
                            birth_date="2009-07-14"), "109076322083489"),
    ("wrong rank", CarteVitaleBeneficiary(holder=VitaleNir(number="2780563220123"), birth_date="2010-08-07",
                                          birth_rank=2), None),
]  # fmt: skip


@MODES
@pytest.mark.parametrize(("case", "card", "matricule"), CARDS, ids=[c[0] for c in CARDS])
def test_carte_vitale_searches(mode: str, target: Target, case: str, card: Any, matricule: str | None) -> None:
    result = target.call(mode, "search_carte_vitale", card)
    if matricule is None:
        assert result.code.value == "01"
    else:
        assert result.identity is not None and result.identity.active.matricule == matricule, case


def test_seeds_can_be_extended() -> None:
    mine = SeededIdentity(
        traits=traits("NOUVEAU", "JEAN", "M", "1993-01-01", "75123"),
        ins=INS.from_parts("1930175123001", None, InsOid.NIR),
        note="a vendor's own test person",
    )
    simulator = InsiSimulator([*DEFAULT_INSI_IDENTITIES, mine])
    assert call("sync", settings(), "search", mine.traits, handler=simulator).found
    empty = InsiSimulator([])
    assert call("sync", settings(), "search", mine.traits, handler=empty).code.value == "01"
    empty.identities.append(mine)
    assert call("sync", settings(), "search", mine.traits, handler=empty).found
    with pytest.raises(ValueError, match="needs an INS"):
        SeededIdentity(traits=mine.traits)


def test_unknown_idam_when_the_simulator_knows_its_idams() -> None:
    script = ScriptedHandler(InsiSimulator(known_idams={"ANOTHER-IDAM"}))
    with pytest.raises(InsiServiceError) as info:
        call("sync", settings(), "search", ADRUN, handler=script)
    assert info.value.code == "desir_550" and not info.value.transient
    assert len(script.requests) == 1


def test_certificate_cn_is_checked_on_a_tls_connection(pki_files: PkiFiles, tmp_path: Any) -> None:
    simulator = InsiSimulator(required_client_cn={"INSI-AUTO", "INSI-MANU"})
    context = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path)
    with LoopbackServer(simulator, ssl_context=context) as server:
        environment = Environment.sandbox(server.url)
        refused = make_settings(pki_files, software=SOFTWARE, environment=environment, retry=FAST_RETRY)
        with pytest.raises(InsiServiceError) as info:
            call("sync", refused, "search", ADRUN)
        assert info.value.code == "DESIR_560" and not info.value.transient
        assert info.value.hint is not None and "INSI-AUTO" in info.value.hint
        cert, key = pki_files.pki.issue_client("INSI-AUTO").write_pem(tmp_path, "insi-auto")
        accepted = make_settings(
            pki_files,
            software=SOFTWARE,
            environment=environment,
            retry=FAST_RETRY,
            tls={"cert_file": cert, "key_file": key, "ca_bundle": pki_files.ca_bundle},
        )
        assert call("async", accepted, "search", ADRUN).found
    # In-process there is no certificate to check.
    assert call("sync", settings(), "search", ADRUN, handler=simulator).found


def test_card_mode_simulator_requires_an_assertion() -> None:
    with pytest.raises(InsiServiceError) as info:
        call("sync", settings(), "search", ADRUN, handler=InsiSimulator(require_assertion=True))
    assert info.value.text is not None and "assertion" in info.value.text  # the reason: on the error, not its message


# --- Requests the simulator refuses, sent to it directly ----------------------------------------------


def valid_request() -> HttpRequest:
    script = ScriptedHandler(InsiSimulator())
    call("sync", settings(), "search", ADRUN, handler=script, criteria=SearchCriteria())
    return script.requests[0]


def refusal(response: HttpResponse) -> InsiServiceError:
    assert response.status == 500
    assert isinstance(response.body, bytes)
    with pytest.raises(SoapFaultError) as info:
        parse_envelope(response.body)
    return map_insi_fault(info.value)


def edited(request: HttpRequest, edit: Any) -> HttpRequest:
    envelope = parse_xml(request.body)
    edit(envelope)
    return replace(request, body=to_bytes(envelope))


def _remove(path: str) -> Any:
    def edit(envelope: etree._Element) -> None:
        element = envelope.find(path)
        assert element is not None
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)

    return edit


HEADER = f"{{{ns.SOAP12_ENV}}}Header"
BODY = f"{{{ns.SOAP12_ENV}}}Body/{{{INSI_RECSANS_NS}}}RECSANSVITALE"


def _swap_first_two(envelope: etree._Element) -> None:
    body = envelope.find(BODY)
    assert body is not None
    first = body[0]
    body.remove(first)
    body.insert(1, first)


def _wrong_action(envelope: etree._Element) -> None:
    action = envelope.find(f"{HEADER}/{{{ns.WSA}}}Action")
    assert action is not None
    action.text = ACTION_SEARCH_TRAITS.replace("TraitsIdentite", "CarteVitale")


EDITS = [
    ("no ContexteLPS", _remove(f"{HEADER}/{{{CTXLPS_NS}}}ContexteLPS"), "sandbox_invalid_request"),
    ("no IDAM", _remove(f"{HEADER}/{{{CTXLPS_NS}}}ContexteLPS/{{{CTXLPS_NS}}}LPS/{{{CTXLPS_NS}}}IDAM"), "desir_550"),
    ("no MessageID", _remove(f"{HEADER}/{{{ns.WSA}}}MessageID"), "sandbox_invalid_request"),
    ("action does not match the body", _wrong_action, "sandbox_invalid_request"),
    ("body out of order", _swap_first_two, "sandbox_invalid_request"),
    ("no Prenom", _remove(f"{BODY}/{{{INSI_RECSANS_NS}}}Prenom"), "sandbox_invalid_request"),
]


@pytest.mark.parametrize(("case", "edit", "code"), EDITS, ids=[e[0] for e in EDITS])
def test_malformed_requests_get_a_sender_fault(case: str, edit: Any, code: str) -> None:
    error = refusal(InsiSimulator()(edited(valid_request(), edit)))
    assert error.fault_code == "Sender" and error.code == code and not error.transient, case


def test_requests_that_are_not_insi_soap() -> None:
    request = valid_request()
    simulator = InsiSimulator()
    assert simulator(replace(request, method="GET")).status == 405
    assert simulator(replace(request, path="/other")).status == 404
    assert simulator(replace(request, headers={"Content-Type": "text/xml"})).status == 415
    hostile = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    assert refusal(simulator(replace(request, body=hostile))).code == "sandbox_invalid_request"
    wrong_media_action = {"Content-Type": 'application/soap+xml; action="urn:other"'}
    assert refusal(simulator(replace(request, headers=wrong_media_action))).code == "sandbox_invalid_request"


def test_answers_relate_to_the_request() -> None:
    request = valid_request()
    answer = parse_envelope(InsiSimulator()(request).body)  # type: ignore[arg-type]
    assert answer.action == ACTION_SEARCH_TRAITS + "Response"
    assert answer.relates_to == parse_envelope(request.body).message_id


# --- Round trip: whatever the simulator is seeded with comes back through the wire and the parser ----------

NAME = r"[A-Z]{1,10}(?:(?: |-|--|')[A-Z]{1,8})?"
# One first name holds no space: ListePrenom separates the first names by spaces, so a first
# name with a space inside comes back as two (a limit of the wire format, not of the SDK).
FIRST_NAME = r"[A-Z]{1,10}(?:(?:-|')[A-Z]{1,8})?"


@st.composite
def seeded_people(draw: st.DrawFn) -> SeededIdentity:
    first_names = draw(st.lists(st.from_regex(FIRST_NAME, fullmatch=True), min_size=1, max_size=3))
    sex = draw(st.sampled_from(["M", "F"]))
    year, month = draw(st.integers(1900, 2024)), draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    place = draw(st.one_of(st.none(), st.from_regex(r"(?:[0-8][0-9]|2[AB]|9[0-9])[0-9]{3}", fullmatch=True)))
    body = f"{1 if sex == 'M' else 2}{year % 100:02d}{month:02d}{draw(st.integers(1, 95)):02d}"
    body += f"{draw(st.integers(1, 999)):03d}{draw(st.integers(1, 999)):03d}"
    subject = IdentityTraits.build(
        birth_name=draw(st.from_regex(NAME, fullmatch=True)),
        birth_first_names=first_names,
        sex=sex,
        birth_date=f"{year:04d}-{month:02d}-{day:02d}",
        birth_place=place,
    )
    ins = INS.from_parts(body, None, InsOid.NIR)
    return SeededIdentity(traits=subject, ins=ins, send_first_name=draw(st.booleans()))


@settings_(max_examples=40, deadline=None)
@given(seeded_people())
def test_any_seeded_person_is_found_with_the_same_ins_and_traits(person: SeededIdentity) -> None:
    result = call("sync", settings(), "search", person.traits, handler=InsiSimulator([person]))
    assert result.found and result.identity is not None
    assert result.identity.active == person.ins
    assert result.identity.traits.compare(person.traits).matches
    assert result.identity.first_name == (person.traits.first_first_name if person.send_first_name else None)
