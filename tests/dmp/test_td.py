"""The DMP transactions (TD): every message built and read back both ways, the operations' facts and refusals."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from lxml import etree

from dmp_connector._transport import CallContext
from dmp_connector.codes import Code
from dmp_connector.config import DmpService, DmpSettings
from dmp_connector.dmp import _td
from dmp_connector.dmp.errors import (
    DmpAccessDeniedError,
    DmpAlreadyExistsError,
    DmpClosedError,
    DmpNotFoundError,
    DmpServiceError,
)
from dmp_connector.dmp.td import (
    AckDetail,
    Acknowledgement,
    AckType,
    AdministrativeData,
    AuthorisationAction,
    AuthorisationStatus,
    AuthorisedProfessional,
    Closure,
    ClosureReason,
    DmpState,
    DmpStatus,
    FindCandidatesOperation,
    ListAuthorisationsOperation,
    Oppositions,
    PatientCandidate,
    PatientListOperation,
    PatientQueryOperation,
    PatientSearch,
    QueryReason,
    RecentDmp,
    RecentDmpKind,
    RegistrationKind,
    RegistrationOperation,
    RegistrationRequest,
    ServiceStatus,
    SetAuthorisationOperation,
)
from dmp_connector.errors import MalformedResponseError, PatientMismatchError, ValidationError
from dmp_connector.ins import BirthDate, Sex
from dmp_connector.sandbox.dmp import DmpSimulator
from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.xml import parse_xml, to_bytes
from tests.dmp.client_support import INS_TEST, SETTINGS, envelope

CALL = CallContext(settings=SETTINGS, message_id="urn:uuid:0f6c5b6e-4a2b-4b5d-9d1e-3a2b1c0d9e8f")
HEADER = _td.Hl7Header(
    message_id="m-1",
    id_root="1.2.250.1.999",
    creation_time=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    sender_root="1.2.250.1.999",
    sender_name="TestLPS",
)
ANSWER = HEADER.model_copy(
    update={"sender_root": _td.DMP_DEVICE_ROOT, "receiver_root": "1.2.250.1.999", "target_message_id": "m-1"}
)
ACCEPT = Acknowledgement(type_code=AckType.ACCEPT)
DATA = AdministrativeData(
    ins=INS_TEST,
    birth_name="PAT-TROIS",
    used_name="MARTIN",
    given_names="DOMINIQUE MARIE",
    sex=Sex.F,
    birth_date=BirthDate.parse("19790301"),
    email="dominique@example.org",
    mobile_phone="+33600000000",
    oppositions=Oppositions(bris_de_glace=True),
)


def wire(element: etree._Element) -> etree._Element:
    """Through bytes and the hardened parser, as the other side reads it."""
    return parse_xml(to_bytes(element))


def message(element: etree._Element) -> object:
    return parse_envelope(to_bytes(envelope(element)))


# ------------------------------------------------------------------------------------------ TD0.2 / TD1.3a


@pytest.mark.parametrize("reason", list(QueryReason))
def test_patient_query_round_trip(reason: QueryReason) -> None:
    query = _td.PatientQuery(ins=INS_TEST, reason=reason, query_id="q-1")
    element = _td.build_patient_query_request(query, HEADER)
    assert element.tag == f"{{{_td.HL7}}}PRPA_IN201307UV02"
    value = element.find(".//{urn:hl7-org:v3}patientIdentifier/{urn:hl7-org:v3}value")
    assert value is not None and (value.get("root"), value.get("extension")) == (INS_TEST.oid.value, INS_TEST.matricule)
    receiver = element.find("{urn:hl7-org:v3}receiver/{urn:hl7-org:v3}device/{urn:hl7-org:v3}id")
    assert receiver is not None and receiver.get("root") == "1.2.250.1.213.4.1.1.1"
    back, header = _td.parse_patient_query_request(wire(element))
    assert back == query and header == HEADER


@pytest.mark.parametrize(
    "status",
    [
        DmpStatus(exists=False),
        DmpStatus(
            exists=True,
            ins=INS_TEST,
            state=DmpState.ACTIVE,
            authorisation=AuthorisationStatus.VALID,
            treating_doctor=True,
            attached_to_mes=True,
        ),
        DmpStatus(exists=True, ins=INS_TEST, state=DmpState.ACTIVE, authorisation=AuthorisationStatus.FORBIDDEN),
        DmpStatus(exists=True, ins=INS_TEST, state=DmpState.ACTIVE, authorisation=AuthorisationStatus.EXPIRED),
        DmpStatus(exists=True, ins=INS_TEST, state=DmpState.ACTIVE, authorisation=AuthorisationStatus.NONE),
        DmpStatus(
            exists=True,
            ins=INS_TEST,
            state=DmpState.CLOSED,
            closure=Closure(reason=ClosureReason.PATIENT_REQUEST, text="à sa demande", date=dt.date(2024, 6, 1)),
        ),
    ],
)
def test_patient_query_answer_round_trip(status: DmpStatus) -> None:
    element = _td.build_patient_query_response(ANSWER, ACCEPT, status, query_id="q-1")
    answer = _td.parse_patient_query_response(wire(element))
    assert answer.acknowledgement.accepted and answer.status == status and answer.administrative is None
    code = element.find(".//{urn:hl7-org:v3}queryResponseCode")
    assert code is not None and code.get("code") == ("OK" if status.exists else "NF")


def test_administrative_data_round_trip() -> None:
    status = DmpStatus(exists=True, ins=INS_TEST, state=DmpState.ACTIVE)
    element = _td.build_patient_query_response(
        ANSWER, ACCEPT, status, administrative=DATA, reason=QueryReason.ADMINISTRATIVE_DATA
    )
    answer = _td.parse_patient_query_response(wire(element))
    assert answer.administrative == DATA


def test_patient_query_answers_that_break_the_shape_are_malformed() -> None:
    good = _td.build_patient_query_response(ANSWER, ACCEPT, DmpStatus(exists=True, ins=INS_TEST, state=DmpState.ACTIVE))
    status = good.find(".//{urn:hl7-org:v3}patient/{urn:hl7-org:v3}statusCode")
    assert status is not None
    status.set("code", "weird")
    with pytest.raises(MalformedResponseError, match="state"):
        _td.parse_patient_query_response(wire(good))
    with pytest.raises(MalformedResponseError, match="PRPA_IN201308UV02"):
        _td.parse_patient_query_response(wire(etree.Element("{urn:hl7-org:v3}PRPA_IN201306UV02")))
    no_ack = _td.build_patient_query_response(ANSWER, ACCEPT, DmpStatus(exists=False))
    ack = no_ack.find("{urn:hl7-org:v3}acknowledgement")
    assert ack is not None
    ack.set("typeCode", "XX")
    with pytest.raises(MalformedResponseError, match="typeCode"):
        _td.parse_patient_query_response(wire(no_ack))


def test_patient_query_operation_facts_and_answers() -> None:
    operation = PatientQueryOperation(INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None)
    assert operation.endpoint(SETTINGS.environment) == SETTINGS.environment.dmp_url(DmpService.PATIENTS)
    assert operation.action == "urn:hl7-org:v3:PRPA_IN201307UV02" and operation.safe_to_repeat
    body = operation.build(CALL).body[0]
    query, header = _td.parse_patient_query_request(wire(body))
    assert header.message_id == "0f6c5b6e-4a2b-4b5d-9d1e-3a2b1c0d9e8f" and query.query_id == header.message_id
    assert header.sender_name == "TestLPS" and header.processing_code == "P"
    nf = _td.build_patient_query_response(ANSWER, ACCEPT, DmpStatus(exists=False))
    assert operation.parse(message(nf)).status.exists is False  # type: ignore[arg-type]
    kit = PatientQueryOperation(
        INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None, action="urn:hl7-org:v3:PRPA_IN201308UV02"
    )
    assert kit.action == "urn:hl7-org:v3:PRPA_IN201308UV02"


def test_a_found_answer_naming_no_ins_is_refused_unless_the_setting_accepts_it() -> None:
    found = _td.build_patient_query_response(ANSWER, ACCEPT, DmpStatus(exists=True))
    assert _td.parse_patient_query_response(wire(found)).status.ins is None
    operation = PatientQueryOperation(INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None)
    with pytest.raises(PatientMismatchError) as info:
        operation.parse(message(found))  # type: ignore[arg-type]
    assert info.value.problems == ("the answer names no patient id to compare with the INS asked",)
    assert SETTINGS.dmp.accept_found_without_ins is False
    lenient = PatientQueryOperation(
        INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None, accept_found_without_ins=True
    )
    assert lenient.parse(message(found)).status.exists  # type: ignore[arg-type]
    named = _td.build_patient_query_response(ANSWER, ACCEPT, DmpStatus(exists=True, ins=INS_TEST))
    operation = PatientQueryOperation(INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None)
    assert operation.parse(message(named)).status.exists  # type: ignore[arg-type]


def test_administrative_read_of_a_patient_without_dmp_raises_not_found() -> None:
    operation = PatientQueryOperation(INS_TEST, reason=QueryReason.ADMINISTRATIVE_DATA, security=None)
    nf = _td.build_patient_query_response(ANSWER, ACCEPT, DmpStatus(exists=False))
    with pytest.raises(DmpNotFoundError):
        operation.parse(message(nf))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("DMPClosed", DmpClosedError),
        ("DMPFound", DmpAlreadyExistsError),
        ("DMPAccessDenied", DmpAccessDeniedError),
        ("DMPNotFound", DmpNotFoundError),
        ("SOMETHING_ELSE", DmpServiceError),
    ],
)
def test_hl7_refusals_are_typed(code: str, kind: type[DmpServiceError]) -> None:
    refusal = Acknowledgement(type_code=AckType.ERROR, details=(AckDetail(code=code, text="explication"),))
    operation = PatientQueryOperation(INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None)
    element = _td.build_patient_query_response(ANSWER, refusal, DmpStatus(exists=False))
    with pytest.raises(kind) as info:
        operation.parse(message(element))  # type: ignore[arg-type]
    assert type(info.value) is kind and info.value.codes == (code,) and info.value.text == "explication"
    assert "explication" not in str(info.value)


# ------------------------------------------------------------------------------------------ TD1.x


def _request(kind: RegistrationKind) -> RegistrationRequest:
    return RegistrationRequest(
        kind=kind,
        ins=INS_TEST,
        data=DATA if kind in (RegistrationKind.CREATE, RegistrationKind.UPDATE) else None,
        consent=True if kind in (RegistrationKind.CREATE, RegistrationKind.REACTIVATE) else None,
        vitale=_td.VitaleCard(birth_name="PAT-TROIS", given_name="DOMINIQUE", birth_date="790301")
        if kind is RegistrationKind.CREATE
        else None,
        closure=Closure(reason=ClosureReason.PATIENT_REQUEST, text="à sa demande")
        if kind is RegistrationKind.CLOSE
        else None,
        author=_td.RegistrationAuthor(
            national_id="899700000001",
            specialty=Code.of("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecine générale"),
            family_name="SANDBOX",
            given_name="JEANNE",
            organisation_id="10B0167011",
            organisation_name="Cabinet",
        ),
    )


@pytest.mark.parametrize("kind", list(RegistrationKind))
def test_registration_round_trip(kind: RegistrationKind) -> None:
    request = _request(kind)
    element = _td.build_registration_request(request, HEADER)
    assert etree.QName(element).localname == kind.interaction
    back, header = _td.parse_registration_request(wire(element))
    assert back == request and header == HEADER
    operation = RegistrationOperation(request, security=None)
    expected = (
        "urn:hl7-org:v3:PRPA_IN201311UV02" if kind is RegistrationKind.CREATE else "urn:hl7-org:v3:PRPA_IN201314UV02"
    )
    assert operation.action == expected and not operation.safe_to_repeat
    assert operation.endpoint(SETTINGS.environment).endswith("/services/patients")
    for accepted, local in (
        (True, ("PRPA_IN201312UV02", "PRPA_IN201315UV02")),
        (False, ("PRPA_IN201313UV02", "PRPA_IN201316UV02")),
    ):
        ack = ACCEPT if accepted else Acknowledgement(type_code=AckType.REJECT, details=(AckDetail(code="DMPFound"),))
        answer_element = _td.build_registration_response(ANSWER, kind, ack)
        parsed = _td.parse_registration_response(wire(answer_element))
        assert parsed.interaction == local[0 if kind is RegistrationKind.CREATE else 1]
        if accepted:
            assert operation.parse(message(answer_element)).acknowledgement.accepted  # type: ignore[arg-type]
        else:
            with pytest.raises(DmpAlreadyExistsError):
                operation.parse(message(answer_element))  # type: ignore[arg-type]


def test_registration_needs_its_data() -> None:
    with pytest.raises(ValidationError):
        _td.build_registration_request(RegistrationRequest(kind=RegistrationKind.CREATE, ins=INS_TEST), HEADER)
    with pytest.raises(ValidationError):
        _td.build_registration_request(RegistrationRequest(kind=RegistrationKind.CLOSE, ins=INS_TEST), HEADER)
    for kind in (RegistrationKind.CREATE, RegistrationKind.REACTIVATE):
        without = RegistrationRequest(kind=kind, ins=INS_TEST, data=DATA, consent=False)
        with pytest.raises(ValidationError, match="consent"):
            _td.build_registration_request(without, HEADER)
    close = RegistrationRequest(kind=RegistrationKind.CLOSE, ins=INS_TEST, closure=Closure())
    with pytest.raises(ValidationError, match="completed or terminated"):
        _td.build_registration_request(close, HEADER, close_status="closed")
    mediboard = _td.build_registration_request(close, HEADER, close_status="terminated")
    registration_status = mediboard.find(".//{urn:hl7-org:v3}registrationRequest/{urn:hl7-org:v3}statusCode")
    assert registration_status is not None and registration_status.get("code") == "terminated"


def test_an_answer_whose_ack_contradicts_its_interaction_is_malformed() -> None:
    element = _td.build_registration_response(ANSWER, RegistrationKind.CREATE, ACCEPT)
    ack = element.find("{urn:hl7-org:v3}acknowledgement")
    assert ack is not None
    ack.set("typeCode", "AE")
    with pytest.raises(MalformedResponseError, match="contradicts"):
        _td.parse_registration_response(wire(element))


# ------------------------------------------------------------------------------------------ TD0.5


def test_pdq_round_trip() -> None:
    search = PatientSearch(
        family_name="PAT-TROIS",
        given_name="DOMINIQUE",
        sex=Sex.F,
        birth_date=BirthDate.parse("1979"),
        postal_code="63220",
        city="Arlanc",
        approximate=True,
        max_results=10,
        query_id="q-2",
    )
    back, _ = _td.parse_find_candidates_request(wire(_td.build_find_candidates_request(search, HEADER)))
    assert back == search
    candidates = [
        PatientCandidate(
            ins=INS_TEST,
            family_name="PAT-TROIS",
            used_name="MARTIN",
            given_name="DOMINIQUE",
            sex=Sex.F,
            birth_date=BirthDate.parse("19790301"),
            postal_code="63220",
        ),
        PatientCandidate(family_name="ANONYME"),
    ]
    element = _td.build_find_candidates_response(ANSWER, ACCEPT, candidates, query_id="q-2")
    ack, found = _td.parse_find_candidates_response(wire(element))
    assert ack.accepted and list(found) == candidates
    empty = _td.build_find_candidates_response(ANSWER, ACCEPT, [])
    assert _td.parse_find_candidates_response(wire(empty))[1] == ()
    operation = FindCandidatesOperation(PatientSearch(family_name="X"), security=None)
    assert operation.action == "urn:ihe:iti:pdqv3:2007:PDQSupplier_Service:findCandidatesQuery"
    assert operation.endpoint(SETTINGS.environment).endswith("/services/patientsPDQ")
    sent, header = _td.parse_find_candidates_request(wire(operation.build(CALL).body[0]))
    assert sent.query_id == header.message_id


# ------------------------------------------------------------------------------------------ habilitations, TD0.4


@pytest.mark.parametrize("treating", [True, False])
@pytest.mark.parametrize("action", list(AuthorisationAction))
def test_set_authorization_round_trip(action: AuthorisationAction, treating: bool) -> None:
    element = _td.build_set_authorisation_request(action, treating_doctor=treating)
    assert element.tag == f"{{{_td.HABILITATIONS_NS}}}setAuthorization"
    assert [etree.QName(child).localname for child in element] == (["action", "role"] if treating else ["action"])
    assert _td.parse_set_authorisation_request(wire(element)) == (action, treating)


def test_the_unconfirmed_element_names_are_settings() -> None:
    dmp = SETTINGS.dmp.model_copy(
        update={"authorisation_role_element": "roleType", "patient_list_elements": ("dateDebut", "dateType")}
    )
    call = CallContext(settings=SETTINGS.model_copy(update={"dmp": dmp}), message_id=CALL.message_id)
    operation = SetAuthorisationOperation(INS_TEST, AuthorisationAction.ADD, treating_doctor=True, security=None)
    body = operation.build(call).body[0]
    assert [etree.QName(child).localname for child in body] == ["action", "roleType"]
    assert _td.parse_set_authorisation_request(wire(body), role_element="roleType") == (AuthorisationAction.ADD, True)
    assert _td.parse_set_authorisation_request(wire(body)) == (AuthorisationAction.ADD, False)
    listing = PatientListOperation(dt.date(2025, 1, 2), RecentDmpKind.LAST_DOCUMENT, security=None).build(call)
    assert [etree.QName(child).localname for child in listing.body[0]] == ["dateDebut", "dateType"]
    with pytest.raises(MalformedResponseError, match="no date"):
        _td.parse_patient_list_request(wire(listing.body[0]))


def test_the_simulator_reads_the_wire_forms_the_client_settings_default_to() -> None:
    """The simulator's defaults are DmpSettings' own objects, not copies that could drift from them."""
    parameters = inspect.signature(DmpSimulator).parameters
    for name in ("patient_list_date_format", "patient_list_elements", "authorisation_role_element"):
        assert parameters[name].default is DmpSettings.model_fields[name].default, name


@pytest.mark.parametrize("status", ["DMPOK", "DMPOk"])
def test_dmpok_in_both_spellings_is_success(status: str) -> None:
    operation = SetAuthorisationOperation(INS_TEST, AuthorisationAction.ADD, treating_doctor=False, security=None)
    assert operation.action == "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"
    assert operation.endpoint(SETTINGS.environment).endswith("/services/habilitations")
    assert not operation.safe_to_repeat
    element = _td.build_set_authorisation_response(ServiceStatus(status=status))
    assert operation.parse(message(element)).ok  # type: ignore[arg-type]


def test_a_status_other_than_dmpok_is_a_typed_refusal_with_its_context() -> None:
    operation = SetAuthorisationOperation(INS_TEST, AuthorisationAction.ADD, treating_doctor=True, security=None)
    element = _td.build_set_authorisation_response(ServiceStatus(status="DMPClosed", context="le DMP est fermé"))
    with pytest.raises(DmpClosedError) as info:
        operation.parse(message(element))  # type: ignore[arg-type]
    assert info.value.text == "le DMP est fermé" and info.value.code == "DMPClosed"


def test_list_authorizations_round_trip() -> None:
    request = _td.build_list_authorisations_request()
    assert [etree.QName(child).localname for child in request] == ["mode"]  # no patient id
    assert _td.parse_list_authorisations_request(wire(request)) == "TOUTE"
    rows = [
        AuthorisedProfessional(national_id="899700000001", family_name="SANDBOX", given_name="JEANNE"),
        AuthorisedProfessional(national_id="810001234567"),
    ]
    element = _td.build_list_authorisations_response(ServiceStatus(status="DMPOK"), rows)
    status, found = _td.parse_list_authorisations_response(wire(element))
    assert status.ok and list(found) == rows
    operation = ListAuthorisationsOperation(INS_TEST, security=None)
    assert operation.safe_to_repeat and operation.parse(message(element)) == tuple(rows)  # type: ignore[arg-type]
    assert _td.parse_list_authorisations_request(wire(operation.build(CALL).body[0])) == "TOUTE"
    other = SETTINGS.model_copy(update={"dmp": SETTINGS.dmp.model_copy(update={"authorisation_list_mode": "ACTIVE"})})
    built = operation.build(CallContext(settings=other, message_id=CALL.message_id)).body[0]
    assert _td.parse_list_authorisations_request(wire(built)) == "ACTIVE"


def test_recent_dmps_round_trip() -> None:
    since = dt.date(2025, 1, 1)
    for kind in RecentDmpKind:
        assert _td.parse_patient_list_request(wire(_td.build_patient_list_request(since, kind))) == (since, kind)
        iso = _td.build_patient_list_request(since, kind, date_format="%Y%m%d")
        assert _td._child_text(iso, "date") == "20250101"
        assert _td.parse_patient_list_request(wire(iso), date_format="%Y%m%d") == (since, kind)
    rows = [
        RecentDmp(
            family_name="PAT-TROIS",
            given_name="DOMINIQUE",
            birth_date=BirthDate.parse("19790301"),
            birth_date_text="19790301",
            message="Autorisation du 02/01/2025",
        )
    ]
    element = _td.build_patient_list_response(ServiceStatus(status="DMPOK"), rows)
    assert _td.parse_patient_list_response(wire(element))[1] == tuple(rows)
    operation = PatientListOperation(since, RecentDmpKind.LAST_DOCUMENT, security=None)
    assert operation.action == "urn:si-dmp-patients:PatientSpecificEndPoint:patientList"
    assert operation.endpoint(SETTINGS.environment).endswith("/services/patientsSpecific")
    assert operation.parse(message(element)) == tuple(rows)  # type: ignore[arg-type]


def test_non_hl7_answers_of_the_wrong_shape_are_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="status"):
        _td.parse_set_authorisation_response(wire(etree.Element(f"{{{_td.HABILITATIONS_NS}}}setAuthorizationResponse")))
    with pytest.raises(MalformedResponseError, match="not a patientList answer"):
        _td.parse_patient_list_response(wire(etree.Element(f"{{{_td.PATIENTS_NS}}}somethingElse")))
    bad = _td.build_list_authorisations_response(ServiceStatus(status="DMPOK"))
    etree.SubElement(bad, f"{{{_td.HABILITATIONS_NS}}}listOfAuthorizationByPatient")
    with pytest.raises(MalformedResponseError, match="nationalId"):
        _td.parse_list_authorisations_response(wire(bad))
