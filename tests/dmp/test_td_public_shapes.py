"""The TD answer readers on fixtures written from the public evidence, not from our own builders.

Each fixture is written by hand in the shape public client implementations read (reference notes
``dmp_td.md``): the element paths and values are the ones the ANS/CNAM editor kit, Mediboard,
DRIMbox, MagicDMP and Dehempe use; the surrounding HL7 wrapper is the transmission wrapper every
one of them sends. No code is copied: only the facts (paths, codes, values). A reader that still
expected the shapes the SDK guessed before the evidence fails here.
"""

from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from dmp_connector.dmp import _td
from dmp_connector.dmp.errors import DmpAlreadyExistsError, DmpClosedError, DmpServiceError
from dmp_connector.dmp.td import (
    AuthorisationAction,
    AuthorisationStatus,
    ClosureReason,
    DmpState,
    FindCandidatesOperation,
    ListAuthorisationsOperation,
    PatientListOperation,
    PatientQueryOperation,
    PatientSearch,
    QueryReason,
    RecentDmpKind,
    RegistrationKind,
    RegistrationOperation,
    RegistrationRequest,
    SetAuthorisationOperation,
)
from dmp_connector.errors import MalformedResponseError
from dmp_connector.ins import BirthDate, Sex
from dmp_connector.soap.envelope import SoapMessage, parse_envelope
from dmp_connector.xml import parse_xml, to_bytes
from tests.dmp.client_support import INS_TEST, envelope

V3 = "urn:hl7-org:v3"
WRAPPER = """<id root="1.2.250.1.213.4.1.1.1" extension="a1b2"/><creationTime value="20250102030405"/>
  <interactionId root="2.16.840.1.113883.1.6" extension="{interaction}"/>
  <processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="NE"/>
  <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.999"/></device>
  </receiver>
  <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.213.4.1.1.1"/>
  <softwareName>DMP</softwareName></device></sender>"""


def hl7(interaction: str, inner: str) -> SoapMessage:
    """An HL7 v3 answer in a SOAP envelope, through bytes and the hardened parser."""
    text = (
        f'<{interaction} xmlns="{V3}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ITSVersion="XML_1.0">'
        f"{WRAPPER.format(interaction=interaction)}{inner}</{interaction}>"
    )
    return parse_envelope(to_bytes(envelope(parse_xml(text.encode()))))


def plain(text: str) -> SoapMessage:
    return parse_envelope(to_bytes(envelope(parse_xml(text.encode()))))


def attention(authorisation: str | None = "VALIDE", treating: str | None = "false") -> str:
    """``attentionLine`` rows as Mediboard and Dehempe read them (keyWordText/@code; value/@code or /@value)."""
    rows = ""
    if authorisation is not None:
        rows += (
            '<attentionLine><keyWordText code="AUTORISATION"/>'
            f'<value xsi:type="CV" code="{authorisation}"/></attentionLine>'
        )
    if treating is not None:
        rows += (
            f'<attentionLine><keyWordText code="STATUT_MT"/><value xsi:type="BL" value="{treating}"/></attentionLine>'
        )
    return rows


ACK_AA = '<acknowledgement typeCode="AA"><targetMessage><id root="1.2.250.1.999" extension="q"/></targetMessage>'
ACK_AA += "</acknowledgement>"


def existence_answer(
    *,
    lines: str = "",
    patient_status: str = "active",
    event_extra: str = "",
    control_extra: str = "",
    patient_extra: str = "",
    reason: str = "TEST_EXST",
) -> SoapMessage:
    """A TD0.2/TD1.3a answer: state in patient/statusCode, INS and INS-C ids, queryAck OK [V Mediboard, kit]."""
    return hl7(
        "PRPA_IN201308UV02",
        f"""{lines}{ACK_AA}
        <controlActProcess classCode="CACT" moodCode="EVN">
          <reasonCode code="{reason}" codeSystem="1.2.250.1.213.1.1.4.11"/>
          <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN">
            <statusCode code="active"/>{event_extra}
            <subject1 typeCode="SBJ"><patient classCode="PAT">
              <id root="1.2.250.1.213.1.4.2" extension="1234567890123456789012"/>
              <id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
              <statusCode code="{patient_status}"/>{patient_extra}
            </patient></subject1>
          </registrationEvent></subject>
          {control_extra}
          <queryAck><queryId root="1.2.250.1.999" extension="q"/><queryResponseCode code="OK"/></queryAck>
        </controlActProcess>""",
    )


def td02() -> PatientQueryOperation:
    return PatientQueryOperation(INS_TEST, reason=QueryReason.TEST_EXISTENCE, security=None)


# ----------------------------------------------------------------------------------------------- TD0.2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("VALIDE", AuthorisationStatus.VALID),
        ("INTERDIT", AuthorisationStatus.FORBIDDEN),
        ("EXPIRE", AuthorisationStatus.EXPIRED),
        ("NON_EXISTE", AuthorisationStatus.NONE),
    ],
)
def test_td02_reads_the_authorisation_from_the_attention_line(value: str, expected: AuthorisationStatus) -> None:
    status = td02().parse(existence_answer(lines=attention(value, "true"))).status
    assert status.exists and status.state is DmpState.ACTIVE and status.active
    assert status.authorisation is expected and status.treating_doctor is True
    assert status.ins == INS_TEST  # the INS id, not the INS-C beside it
    assert status.closure is None


@pytest.mark.parametrize("value", ["EXPIREE", "AUCUNE", "valide", "AUTRE"])
def test_an_unknown_authorisation_value_is_an_error_never_no_authorisation(value: str) -> None:
    with pytest.raises(MalformedResponseError, match="authorisation"):
        td02().parse(existence_answer(lines=attention(value)))


def test_an_answer_without_the_authorisation_line_says_nothing_about_it() -> None:
    status = td02().parse(existence_answer(lines=attention(None, None))).status
    assert status.authorisation is None and status.treating_doctor is None  # unknown, not NON_EXISTE


def test_a_guessed_shape_is_not_read_as_an_authorisation() -> None:
    """The SDK's former guess (``subjectOf/observation AUTORISATION``) is not where the DMP puts it."""
    guessed = (
        '<subjectOf typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN">'
        '<code code="AUTORISATION" codeSystem="1.2.250.1.213.1.1.4.11"/><value xsi:type="CS" code="VALIDE"/>'
        "</observation></subjectOf>"
    )
    status = td02().parse(existence_answer(event_extra=guessed)).status
    assert status.authorisation is None


def test_two_authorisation_lines_or_a_non_boolean_treating_status_are_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="two attentionLine"):
        td02().parse(existence_answer(lines=attention("VALIDE", None) + attention("INTERDIT", None)))
    with pytest.raises(MalformedResponseError, match="STATUT_MT"):
        td02().parse(existence_answer(lines=attention("VALIDE", "oui")))


def test_a_closed_dmp_is_read_with_its_date_and_reason() -> None:
    answer = existence_answer(
        lines=attention("VALIDE", "false"),
        patient_status="terminated",
        event_extra='<effectiveTime value="20240601103000"/>',
        control_extra=(
            '<reasonOf typeCode="RSON"><detectedIssueEvent classCode="ALRT" moodCode="EVN">'
            '<code code="FERMETURE_DEMANDE_PATIENT" codeSystem="1.2.250.1.213.4.1.2.4"/>'
            "<text>Raison de clôture sur demande du patient</text></detectedIssueEvent></reasonOf>"
        ),
    )
    status = td02().parse(answer).status
    assert status.exists and status.state is DmpState.CLOSED and not status.active
    assert status.closure is not None and status.closure.date == dt.date(2024, 6, 1)
    assert status.closure.reason is ClosureReason.PATIENT_REQUEST
    assert status.closure.text == "Raison de clôture sur demande du patient"


def test_the_state_falls_back_to_the_registration_event_and_an_unknown_state_is_malformed() -> None:
    answer = existence_answer(lines=attention())
    patient_status = answer.payload.find(f".//{{{V3}}}patient/{{{V3}}}statusCode")
    assert patient_status is not None
    patient_status.getparent().remove(patient_status)  # type: ignore[union-attr]
    assert td02().parse(answer).status.state is DmpState.ACTIVE  # registrationEvent/statusCode active
    with pytest.raises(MalformedResponseError, match="state"):
        td02().parse(existence_answer(patient_status="nullified"))


def test_no_dmp_and_a_refusal() -> None:
    nf = hl7(
        "PRPA_IN201308UV02",
        f"""{ACK_AA}<controlActProcess classCode="CACT" moodCode="EVN">
          <queryAck><queryId root="1.2.250.1.999" extension="q"/><queryResponseCode code="NF"/></queryAck>
        </controlActProcess>""",
    )
    assert td02().parse(nf).status.exists is False
    refusal = hl7(
        "PRPA_IN201308UV02",
        """<acknowledgement typeCode="AE"><targetMessage><id root="1.2.250.1.999" extension="q"/></targetMessage>
          <acknowledgementDetail typeCode="E"><code code="DMPClosed"/><text>Le DMP est fermé</text>
          </acknowledgementDetail></acknowledgement>""",
    )
    with pytest.raises(DmpClosedError) as info:
        td02().parse(refusal)
    assert info.value.text == "Le DMP est fermé"


def test_td13a_reads_the_administrative_data_and_oppositions() -> None:
    person = """<patientPerson classCode="PSN" determinerCode="INSTANCE">
        <name><prefix>M</prefix><family qualifier="SP">PAT-TROIS</family><family qualifier="BR">PAT-TROIS</family>
          <given>DOMINIQUE</given></name>
        <telecom use="HP" value="tel:0102030405"/><telecom use="MC" value="tel:0607080901"/>
        <administrativeGenderCode code="F"/><birthTime value="19790328"/>
        <addr><streetAddressLine>1, rue du Chat qui Peche</streetAddressLine><postalCode>75005</postalCode>
          <city>Paris</city><country>France</country></addr>
      </patientPerson>
      <subjectOf typeCode="SBJ"><administrativeObservation classCode="OBS" moodCode="EVN">
        <code code="OPPOSITION_BRIS_DE_GLACE" codeSystem="1.2.250.1.213.4.1.2.3"/><value xsi:type="BL" value="false"/>
      </administrativeObservation></subjectOf>
      <subjectOf typeCode="SBJ"><administrativeObservation classCode="OBS" moodCode="EVN">
        <code code="OPPOSITION_ACCES_URGENCE" codeSystem="1.2.250.1.213.4.1.2.3"/><value xsi:type="BL" value="true"/>
      </administrativeObservation></subjectOf>"""
    operation = PatientQueryOperation(INS_TEST, reason=QueryReason.ADMINISTRATIVE_DATA, security=None)
    data = operation.parse(existence_answer(patient_extra=person, reason="CNSLT_DATA")).administrative
    assert data is not None and data.ins == INS_TEST
    assert (data.birth_name, data.used_name, data.given_names, data.civility) == ("PAT-TROIS", None, "DOMINIQUE", "M")
    assert (data.sex, data.birth_date) == (Sex.F, BirthDate.parse("19790328"))
    assert (data.home_phone, data.mobile_phone) == ("0102030405", "0607080901")
    assert data.address is not None and data.address.city == "Paris" and data.address.postal_code == "75005"
    assert data.oppositions.centre_15 and not data.oppositions.bris_de_glace
    # the existence test does not read (nor fail on) a partial patientPerson
    partial = '<patientPerson classCode="PSN" determinerCode="INSTANCE"><name><given>X</given></name></patientPerson>'
    assert td02().parse(existence_answer(lines=attention(), patient_extra=partial)).administrative is None


# ----------------------------------------------------------------------------------------------- TD1.x answers


@pytest.mark.parametrize(
    ("kind", "interaction", "code", "error"),
    [
        (RegistrationKind.CREATE, "PRPA_IN201313UV02", "DMPFound", DmpAlreadyExistsError),
        (RegistrationKind.CLOSE, "PRPA_IN201316UV02", "DMPClosed", DmpClosedError),
        (RegistrationKind.REACTIVATE, "PRPA_IN201316UV02", "DMPFound", DmpAlreadyExistsError),
    ],
)
def test_td1_refusals_as_the_kit_reads_them(
    kind: RegistrationKind, interaction: str, code: str, error: type[DmpServiceError]
) -> None:
    answer = hl7(
        interaction,
        f"""<acknowledgement typeCode="AE"><targetMessage><id root="1.2.250.1.999" extension="q"/></targetMessage>
          <acknowledgementDetail typeCode="E"><code code="{code}"/><text>explication</text></acknowledgementDetail>
        </acknowledgement>""",
    )
    request = RegistrationRequest(kind=kind, ins=INS_TEST)
    with pytest.raises(error):
        RegistrationOperation(request, security=None).parse(answer)
    accepted = hl7("PRPA_IN201315UV02" if kind is not RegistrationKind.CREATE else "PRPA_IN201312UV02", ACK_AA)
    assert RegistrationOperation(request, security=None).parse(accepted).acknowledgement.accepted


# ----------------------------------------------------------------------------------------------- TD0.5


def pdq_answer(ack: str) -> SoapMessage:
    """A PDQv3 answer as Mediboard reads it: ``acknowledgement/typeCode`` an element, SP/BR names, INS + INS-C."""
    return hl7(
        "PRPA_IN201306UV02",
        f"""{ack}<controlActProcess classCode="CACT" moodCode="EVN">
          <code code="PRPA_TE201306UV02" codeSystem="2.16.840.1.113883.1.6"/>
          <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN"><statusCode code="active"/>
            <subject1 typeCode="SBJ"><patient classCode="PAT">
              <id root="1.2.250.1.213.1.4.2" extension="9876543210987654321098"/>
              <id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
              <statusCode code="active"/>
              <patientPerson classCode="PSN" determinerCode="INSTANCE">
                <name><family qualifier="SP">MARTIN</family><family qualifier="BR">PAT-TROIS</family>
                  <given>DOMINIQUE</given></name>
                <administrativeGenderCode code="F"/><birthTime value="19790328"/>
                <addr><postalCode>75005</postalCode><city>Paris</city></addr>
              </patientPerson></patient></subject1>
          </registrationEvent></subject>
          <queryAck><queryId root="1.2.250.1.999" extension="q"/><queryResponseCode code="OK"/>
            <resultTotalQuantity value="1"/></queryAck>
        </controlActProcess>""",
    )


def test_td05_answer_with_the_typecode_element_is_read() -> None:
    element_form = '<acknowledgement><typeCode code="AA"/><targetMessage><id root="1.2.250.1.999"/></targetMessage>'
    element_form += "</acknowledgement>"
    operation = FindCandidatesOperation(PatientSearch(family_name="PAT-TROIS"), security=None)
    (candidate,) = operation.parse(pdq_answer(element_form))
    assert candidate.ins == INS_TEST and candidate.family_name == "PAT-TROIS" and candidate.used_name == "MARTIN"
    assert candidate.birth_date == BirthDate.parse("19790328") and candidate.city == "Paris"
    assert len(operation.parse(pdq_answer(ACK_AA))) == 1  # the attribute form still reads
    both = '<acknowledgement typeCode="AA"><typeCode code="AE"/></acknowledgement>'
    with pytest.raises(MalformedResponseError, match="disagree"):
        operation.parse(pdq_answer(both))
    refused = '<acknowledgement><typeCode code="AE"/><acknowledgementDetail><code code="DMPKO"/>'
    refused += "</acknowledgementDetail></acknowledgement>"
    with pytest.raises(DmpServiceError):
        operation.parse(pdq_answer(refused))


# ----------------------------------------------------------------------------------------------- non-HL7


def test_set_authorization_answer_in_any_qualification() -> None:
    operation = SetAuthorisationOperation(INS_TEST, AuthorisationAction.ADD, treating_doctor=False, security=None)
    answer = '<setAuthorizationResponse xmlns="urn:si-dmp-habilitations"><status>DMPOK</status><context/>'
    assert operation.parse(plain(answer + "</setAuthorizationResponse>")).ok
    unqualified = "<ns2:setAuthorizationResponse xmlns:ns2='urn:si-dmp-habilitations'><status>DMPOk</status>"
    assert operation.parse(plain(unqualified + "</ns2:setAuthorizationResponse>")).ok


def test_list_rows_are_list_of_authorization_by_patient() -> None:
    answer = """<listAuthorizationByPatientResponse xmlns="urn:si-dmp-habilitations"><status>DMPOK</status>
      <listOfAuthorizationByPatient><nationalId>810001234567</nationalId><firstName>Jean</firstName>
        <lastName>DUPONT</lastName></listOfAuthorizationByPatient>
      <listOfAuthorizationByPatient><nationalId>899700000001</nationalId></listOfAuthorizationByPatient>
    </listAuthorizationByPatientResponse>"""
    rows = ListAuthorisationsOperation(INS_TEST, security=None).parse(plain(answer))
    assert [(r.national_id, r.family_name, r.given_name, r.treating_doctor) for r in rows] == [
        ("810001234567", "DUPONT", "Jean", None),
        ("899700000001", None, None, None),
    ]
    guessed = answer.replace("listOfAuthorizationByPatient>", "authorization>")  # the former guess: no rows
    assert ListAuthorisationsOperation(INS_TEST, security=None).parse(plain(guessed)) == ()


def test_td04_rows_are_patientlist_data() -> None:
    answer = """<patientListResponse xmlns="urn:si-dmp-patients"><status>DMPOk</status>
      <patientlistData><firstName>DOMINIQUE</firstName><lastName>PAT-TROIS</lastName>
        <dateOfBirth>19790328</dateOfBirth><message>dernier accès</message></patientlistData>
      <patientlistData><firstName>ZOE</firstName><lastName>ADRUN</lastName><dateOfBirth>31/12/1975</dateOfBirth>
      </patientlistData>
      <patientlistData><lastName>X</lastName><dateOfBirth>751231</dateOfBirth></patientlistData>
    </patientListResponse>"""
    rows = PatientListOperation(dt.date(2025, 1, 1), RecentDmpKind.LAST_AUTHORISATION, security=None).parse(
        plain(answer)
    )
    assert [(r.family_name, r.birth_date, r.message, r.ins) for r in rows] == [
        ("PAT-TROIS", BirthDate.parse("19790328"), "dernier accès", None),
        ("ADRUN", BirthDate.parse("19751231"), None, None),
        ("X", None, None, None),  # an ambiguous date is kept as text, never guessed
    ]
    assert rows[2].birth_date_text == "751231"


# ----------------------------------------------------------------------------------------------- TD1.x requests


def _path(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path.replace("v3:", f"{{{V3}}}"))
    assert found is not None, path
    return found


def test_td1_requests_carry_what_the_kit_sends() -> None:
    header = _td.Hl7Header(
        message_id="m", id_root="1.2.250.1.999", creation_time=dt.datetime(2025, 1, 2, tzinfo=dt.UTC), sender_root="1"
    )
    data = _td.AdministrativeData(
        ins=INS_TEST,
        birth_name="PAT-TROIS",
        given_names="DOMINIQUE",
        sex=Sex.F,
        birth_date=BirthDate.parse("19790328"),
        civility="M",
        oppositions=_td.Oppositions(centre_15=True),
    )
    create = _td.build_registration_request(
        RegistrationRequest(
            kind=RegistrationKind.CREATE,
            ins=INS_TEST,
            data=data,
            consent=True,
            vitale=_td.VitaleCard(birth_name="DURAND", given_name="Marie", birth_date="780801"),
        ),
        header,
    )
    control = _path(create, "v3:controlActProcess")
    assert _path(control, "v3:reasonCode").get("code") == "CREA_RD"
    assert _path(control, "v3:subject").get("contextConductionInd") == "false"
    patient = _path(control, "v3:subject/v3:registrationRequest/v3:subject1/v3:patient")
    names = {f.get("qualifier"): f.text for f in patient.iterfind(f"{{{V3}}}patientPerson/{{{V3}}}name/{{{V3}}}family")}
    assert names == {"SP": "PAT-TROIS", "BR": "PAT-TROIS"}  # the used name is mandatory: the birth name stands in
    assert _path(patient, "v3:patientPerson/v3:name/v3:prefix").text == "M"
    vitale = _path(patient, "v3:patientPerson/v3:contactParty")
    assert _path(vitale, "v3:code").get("code") == "CARTE_SESAM_VITALE"
    assert _path(vitale, "v3:contactPerson/v3:birthTime").get("value") == "780801"
    observations = {
        _path(o, "v3:code").get("code"): (_path(o, "v3:code").get("codeSystem"), _path(o, "v3:value").get("value"))
        for o in patient.iterfind(f"{{{V3}}}subjectOf/{{{V3}}}administrativeObservation")
    }
    assert observations == {
        "CONSENTEMENT_OUVERTURE_DMP": ("1.2.250.1.213.4.1.2.3", "true"),
        "OPPOSITION_BRIS_DE_GLACE": ("1.2.250.1.213.4.1.2.3", "false"),
        "OPPOSITION_ACCES_URGENCE": ("1.2.250.1.213.4.1.2.3", "true"),
    }
    close = _td.build_registration_request(
        RegistrationRequest(kind=RegistrationKind.CLOSE, ins=INS_TEST, data=data, closure=_td.Closure(text="demande")),
        header,
    )
    assert _path(close, "v3:controlActProcess/v3:reasonCode").get("code") == "FERM"
    registration = _path(close, "v3:controlActProcess/v3:subject/v3:registrationRequest")
    assert _path(registration, "v3:statusCode").get("code") == "completed"
    assert _path(registration, "v3:subject1/v3:patient/v3:statusCode").get("code") == "terminated"
    issue = _path(close, "v3:controlActProcess/v3:reasonOf/v3:detectedIssueEvent")
    assert (issue.get("classCode"), issue.get("moodCode")) == ("ALRT", "EVN")
    assert _path(issue, "v3:code").get("code") == "FERMETURE_DEMANDE_PATIENT"
    assert _path(issue, "v3:code").get("codeSystem") == "1.2.250.1.213.4.1.2.4"
    assert _path(issue, "v3:text").text == "demande"
    reactivate = _td.build_registration_request(
        RegistrationRequest(kind=RegistrationKind.REACTIVATE, ins=INS_TEST, data=data, consent=True), header
    )
    assert _path(reactivate, "v3:controlActProcess/v3:reasonCode").get("code") == "REAC"
    consent = reactivate.find(f".//{{{V3}}}administrativeObservation/{{{V3}}}code")
    assert consent is not None and consent.get("code") == "CONSENTEMENT_REACTIVATION_DMP"
    update = _td.build_registration_request(
        RegistrationRequest(kind=RegistrationKind.UPDATE, ins=INS_TEST, data=data), header
    )
    assert _path(update, "v3:controlActProcess/v3:reasonCode").get("code") == "MODIF_DATA"
    read = _td.build_patient_query_request(
        _td.PatientQuery(ins=INS_TEST, reason=QueryReason.ADMINISTRATIVE_DATA, query_id="q"), header
    )
    assert _path(read, "v3:controlActProcess/v3:reasonCode").get("code") == "CNSLT_DATA"
