"""The wire form of the DMP-specific transactions ("TD"), both directions, in one place.

The DMP's integration guide, which defines the SOAP bodies of these transactions, is not public.
What the public sources show (reference notes ``dmp_xds.md`` §1, §6):

* TD0.2 is an HL7 v3 ``PRPA_IN201307UV02`` query with ``reasonCode TEST_EXST`` and the INS as
  ``patientIdentifier``, answered by ``PRPA_IN201308UV02`` with an acknowledgement (``AA`` …) and
  ``queryResponseCode`` ``OK`` / ``NF`` [V DRIMbox];
* TD0.3 and the list of authorised professionals are ``setAuthorization`` /
  ``listAuthorizationByPatient`` in the ``urn:si-dmp-habilitations`` namespace, answered by a
  ``status`` (``DMPOK``) and a ``context``;
* TD0.4 is ``patientList`` on the ``patientsSpecific`` service, with a date and a type
  ``LASTAUTORIZATION`` / ``LASTDOC``;
* TD0.5 is IHE PDQv3 (``PRPA_IN201305UV02`` → ``PRPA_IN201306UV02``) [K];
* TD1.1 is ``PRPA_IN201311UV02`` → ``…12UV02`` / ``…13UV02``; TD1.2, TD1.3b and TD1.4 are
  ``PRPA_IN201314UV02`` → ``…15UV02`` / ``…16UV02``; refusals carry ``DMPFound`` / ``DMPClosed``.

Everything else here is **inferred [I]**: the children of the non-HL7 bodies, where the DMP's
own data (authorisation status, "médecin traitant DMP", closure, oppositions) sits in the HL7
messages (``subjectOf/observation`` rows coded in :data:`DMP_INFO_SYSTEM`), the ``reasonCode``
values that tell the TD1.x revisions and the administrative-data read apart. Each message is
built and read by one pair of functions below, so that a guide's real shape replaces ours in
one place; the sandbox (``dmp_connector.sandbox.dmp``) reads our requests and writes its answers
with the same functions, so client and simulator cannot drift apart.

Builders return lxml elements (the SOAP body); readers take an element already parsed by
:func:`dmp_connector.xml.parse_xml` (``SoapMessage.payload``) and raise
:class:`~dmp_connector.errors.MalformedResponseError` for a shape they do not know. Nothing here
decides whether an answer is a refusal: :mod:`dmp_connector.dmp.td` does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Final, Literal, cast

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.errors import DmpConnectorError, MalformedResponseError, ValidationError
from dmp_connector.ins import INS, BirthDate, Sex

__all__ = [
    "DMP_DEVICE_ROOT",
    "DMP_INFO_SYSTEM",
    "HABILITATIONS_NS",
    "HL7",
    "PATIENTS_NS",
    "REASON_SYSTEM",
    "AckDetail",
    "AckType",
    "Acknowledgement",
    "AdministrativeData",
    "AuthorizationAction",
    "AuthorizationStatus",
    "AuthorizedProfessional",
    "Closure",
    "ClosureReason",
    "DmpState",
    "DmpStatus",
    "Hl7Header",
    "Oppositions",
    "PatientCandidate",
    "PatientQuery",
    "PatientQueryAnswer",
    "PatientSearch",
    "QueryReason",
    "RecentDmp",
    "RecentDmpKind",
    "RegistrationAnswer",
    "RegistrationKind",
    "RegistrationRequest",
    "ServiceStatus",
    "TdAction",
    "build_find_candidates_request",
    "build_find_candidates_response",
    "build_list_authorizations_request",
    "build_list_authorizations_response",
    "build_patient_list_request",
    "build_patient_list_response",
    "build_patient_query_request",
    "build_patient_query_response",
    "build_registration_request",
    "build_registration_response",
    "build_set_authorization_request",
    "build_set_authorization_response",
    "parse_find_candidates_request",
    "parse_find_candidates_response",
    "parse_list_authorizations_request",
    "parse_list_authorizations_response",
    "parse_patient_list_request",
    "parse_patient_list_response",
    "parse_patient_query_request",
    "parse_patient_query_response",
    "parse_registration_request",
    "parse_registration_response",
    "parse_set_authorization_request",
    "parse_set_authorization_response",
]

HL7: Final = "urn:hl7-org:v3"
"""HL7 v3 namespace of TD0.2, TD0.5 and TD1.x."""
HABILITATIONS_NS: Final = "urn:si-dmp-habilitations"
"""Namespace of the ``habilitations`` service (TD0.3, list of authorisations)."""
PATIENTS_NS: Final = "urn:si-dmp-patients"
"""Namespace of the ``patientsSpecific`` service (TD0.4) [I: from its SOAP action]."""
XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
DMP_DEVICE_ROOT: Final = "1.2.250.1.213.4.1.1.1"
"""The DMP as HL7 v3 receiver device (``device/id/@root``), softwareName ``DMP``."""
REASON_SYSTEM: Final = "1.2.250.1.213.1.1.4.11"
"""Code system of the ``controlActProcess/reasonCode`` (``TEST_EXST`` [V DRIMbox])."""
DMP_INFO_SYSTEM: Final = REASON_SYSTEM
"""Code system of the DMP data rows (``AUTORISATION``, ``MEDECIN_TRAITANT_DMP`` …) [I]."""
_INTERACTION_SYSTEM: Final = "2.16.840.1.113883.1.6"
_IDNAT_PS: Final = "1.2.250.1.71.4.2.1"
_OK_STATUSES: Final = frozenset({"DMPOK"})


class TdAction(StrEnum):
    """``wsa:Action`` of each TD transaction (reference table, ``dmp_xds.md`` §1)."""

    PATIENT_QUERY = "urn:hl7-org:v3:PRPA_IN201307UV02"
    """TD0.2 (and the administrative-data read); the kit's proxy sends ``…PRPA_IN201308UV02`` (a setting)."""
    SET_AUTHORIZATION = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"
    LIST_AUTHORIZATIONS = "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient"
    PATIENT_LIST = "urn:si-dmp-patients:PatientSpecificEndPoint:patientList"
    FIND_CANDIDATES = "urn:ihe:iti:pdqv3:2007:PDQSupplier_Service:findCandidatesQuery"
    CREATE = "urn:hl7-org:v3:PRPA_IN201311UV02"
    REVISE = "urn:hl7-org:v3:PRPA_IN201314UV02"


_FROZEN = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# ============================================================================ models


class Hl7Header(BaseModel):
    """The transmission wrapper of an HL7 v3 message: its id, time, sender and receiver devices.

    For a request the sender is the software and the receiver the DMP (:data:`DMP_DEVICE_ROOT`);
    for an answer the other way round, with :attr:`target_message_id` naming the request.
    """

    model_config = _FROZEN

    message_id: str = Field(min_length=1)
    """``id/@extension`` (a UUID: the call's ``wsa:MessageID`` without ``urn:uuid:``)."""
    id_root: str = Field(min_length=1)
    """``id/@root``: the sender's root OID."""
    creation_time: dt.datetime
    """``creationTime`` (written in UTC, to the second)."""
    sender_root: str = Field(min_length=1)
    """``sender/device/id/@root``."""
    sender_name: str | None = None
    """``sender/device/softwareName``."""
    receiver_root: str = DMP_DEVICE_ROOT
    """``receiver/device/id/@root``."""
    receiver_name: str | None = "DMP"
    """``receiver/device/softwareName``."""
    processing_code: Literal["P", "D", "T"] = "P"
    """``processingCode``: production, debugging (DRIMbox on test platforms) or training."""
    target_message_id: str | None = None
    """Answers only: ``acknowledgement/targetMessage/id/@extension``, the request's message id."""


class AckType(StrEnum):
    """``acknowledgement/@typeCode``."""

    ACCEPT = "AA"
    """Application accept."""
    ERROR = "AE"
    """Application error."""
    REJECT = "AR"
    """Application reject."""


class AckDetail(BaseModel):
    """One ``acknowledgementDetail``: the DMP's code (``DMPFound``, ``DMPClosed`` …) and its text."""

    model_config = _FROZEN

    code: str = Field(min_length=1)
    """``code/@code``."""
    text: str | None = None
    """``text``: the service's explanation; may quote request data, never log it blindly."""
    type_code: Literal["E", "W", "I"] = "E"
    """Error, warning or information."""


class Acknowledgement(BaseModel):
    """An HL7 v3 acknowledgement: accepted or not, and why."""

    model_config = _FROZEN

    type_code: AckType
    """AA, AE or AR."""
    details: tuple[AckDetail, ...] = ()
    """``acknowledgementDetail`` rows."""

    @property
    def accepted(self) -> bool:
        """True for AA."""
        return self.type_code is AckType.ACCEPT

    @property
    def codes(self) -> tuple[str, ...]:
        """Every detail code, in order."""
        return tuple(d.code for d in self.details)


class ServiceStatus(BaseModel):
    """The ``status`` / ``context`` pair of the non-HL7 services (``habilitations``, ``patientsSpecific``)."""

    model_config = _FROZEN

    status: str = Field(min_length=1)
    """``DMPOK`` (also seen as ``DMPOk``) or an error code."""
    context: str | None = None
    """The explanation of an error; may quote request data."""

    @property
    def ok(self) -> bool:
        """True for ``DMPOK`` in any case."""
        return self.status.upper() in _OK_STATUSES


class QueryReason(StrEnum):
    """``controlActProcess/reasonCode`` of a ``PRPA_IN201307UV02`` query."""

    TEST_EXISTENCE = "TEST_EXST"
    """TD0.2: does the patient have a DMP, and this professional's authorisation [V DRIMbox]."""
    ADMINISTRATIVE_DATA = "DONNEES_ADMIN"
    """TD1.3a: read the administrative data and the patient's oppositions [I]."""


class PatientQuery(BaseModel):
    """A ``PRPA_IN201307UV02`` query about one patient (TD0.2, TD1.3a)."""

    model_config = _FROZEN

    ins: INS
    """The patient's INS (``parameterList/patientIdentifier/value``)."""
    reason: QueryReason = QueryReason.TEST_EXISTENCE
    """What is asked."""
    query_id: str = Field(min_length=1)
    """``queryByParameter/queryId/@extension``."""


class DmpState(StrEnum):
    """State of an existing DMP (``registrationEvent/statusCode``) [I: HL7 ActStatus values]."""

    ACTIVE = "active"
    """Open: documents can be deposited and consulted."""
    CLOSED = "completed"
    """Closed (TD1.4); it can be reactivated (TD1.2)."""


class AuthorizationStatus(StrEnum):
    """This professional's authorisation on the DMP (EF_DMP04_01)."""

    VALID = "VALIDE"
    """Authorised: consultation allowed."""
    FORBIDDEN = "INTERDIT"
    """Blocked by the patient: no access, even with bris de glace."""
    EXPIRED = "EXPIREE"
    """Authorisation expired [I]."""
    NONE = "AUCUNE"
    """Never authorised [I]."""


class ClosureReason(StrEnum):
    """Why a DMP is closed (TD1.4) [I: codes not public]."""

    PATIENT_REQUEST = "DEMANDE_PATIENT"
    """The patient asked for it."""
    DEATH = "DECES"
    """The patient died."""
    OTHER = "AUTRE"
    """Another reason, given as text."""


class Closure(BaseModel):
    """A DMP closure: its reason, free text, and (in answers) its date."""

    model_config = _FROZEN

    reason: ClosureReason | str
    """``ClosureReason`` code (an unknown code is kept as a string)."""
    text: str | None = None
    """Free-text explanation."""
    date: dt.date | None = None
    """When the DMP was closed (answers only)."""


class Oppositions(BaseModel):
    """The patient's oppositions to the exceptional access modes (TD1.3)."""

    model_config = _FROZEN

    bris_de_glace: bool = False
    """The patient refuses emergency (bris de glace) access."""
    centre_15: bool = False
    """The patient refuses access by a regulation centre (centre 15)."""


class AdministrativeData(BaseModel):
    """A DMP's administrative data: civil status, contact details, oppositions (TD1.1, TD1.3)."""

    model_config = _FROZEN

    ins: INS
    """The patient's INS."""
    birth_name: str = Field(min_length=1)
    """Nom de naissance."""
    given_names: str = Field(min_length=1)
    """Prénoms (first one first)."""
    sex: Sex
    """Administrative sex."""
    birth_date: BirthDate
    """Birth date (partial dates are kept)."""
    used_name: str | None = None
    """Nom d'usage."""
    email: str | None = None
    """Contact address for the DMP's notifications."""
    mobile_phone: str | None = None
    """Mobile phone for the DMP's notifications."""
    oppositions: Oppositions = Field(default_factory=Oppositions)
    """Oppositions to bris de glace and centre 15 access."""


class DmpStatus(BaseModel):
    """What TD0.2 says: does a DMP exist, its state, and this professional's standing on it."""

    model_config = _FROZEN

    exists: bool
    """``queryResponseCode`` OK (True) or NF (False)."""
    ins: INS | None = None
    """The INS the DMP answered for."""
    state: DmpState | None = None
    """Active or closed; None when there is no DMP."""
    authorization: AuthorizationStatus | None = None
    """This professional's authorisation (VALIDE, INTERDIT …)."""
    treating_doctor: bool | None = None
    """True when this professional is the patient's "médecin traitant DMP"."""
    attached_to_mes: bool | None = None
    """True when the DMP is attached to the patient's Mon espace santé."""
    closure: Closure | None = None
    """Closing date, reason and text of a closed DMP."""

    @property
    def active(self) -> bool:
        """True when the DMP exists and is open."""
        return self.exists and self.state is DmpState.ACTIVE


class PatientQueryAnswer(BaseModel):
    """A ``PRPA_IN201308UV02`` answer: acknowledgement, status, and (TD1.3a) administrative data."""

    model_config = _FROZEN

    acknowledgement: Acknowledgement
    """AA, or a refusal with its codes."""
    status: DmpStatus
    """The DMP's status (``exists=False`` for NF)."""
    administrative: AdministrativeData | None = None
    """The administrative data, when asked for."""


class RegistrationKind(StrEnum):
    """What a ``PRPA_IN201311UV02`` / ``PRPA_IN201314UV02`` request does (``reasonCode``, [I] for TD1.x)."""

    CREATE = "CREATION"
    """TD1.1: create the DMP (``PRPA_IN201311UV02``)."""
    REACTIVATE = "REACTIVATION"
    """TD1.2: reopen a closed DMP."""
    UPDATE = "MAJ_DONNEES_ADMIN"
    """TD1.3b: replace the administrative data (and oppositions)."""
    CLOSE = "FERMETURE"
    """TD1.4: close the DMP."""

    @property
    def interaction(self) -> str:
        """The HL7 interaction of the request."""
        return "PRPA_IN201311UV02" if self is RegistrationKind.CREATE else "PRPA_IN201314UV02"


class RegistrationRequest(BaseModel):
    """A TD1.x request: create, reactivate, update or close a patient's DMP."""

    model_config = _FROZEN

    kind: RegistrationKind
    """What to do."""
    ins: INS
    """The patient's INS."""
    data: AdministrativeData | None = None
    """The administrative data: required to create and to update."""
    closure: Closure | None = None
    """The closure's reason: required to close."""
    author_id: str | None = None
    """The acting professional's IdNat_PS (``author/assignedEntity/id``)."""


class RegistrationAnswer(BaseModel):
    """The answer to a TD1.x request (``…12UV02``/``…15UV02`` accept, ``…13UV02``/``…16UV02`` reject)."""

    model_config = _FROZEN

    interaction: str
    """The answer's interaction id (``PRPA_IN201312UV02`` …)."""
    acknowledgement: Acknowledgement
    """AA, or AE/AR with ``DMPFound`` / ``DMPClosed`` …"""


class AuthorizationAction(StrEnum):
    """``action`` of ``setAuthorization`` (TD0.3)."""

    ADD = "AJOUT"
    REMOVE = "SUPPRESSION"


class AuthorizedProfessional(BaseModel):
    """One professional authorised on a DMP (``listAuthorizationByPatient``)."""

    model_config = _FROZEN

    national_id: str = Field(min_length=1)
    """IdNat_PS (``8`` + RPPS …)."""
    family_name: str | None = None
    """``lastName``."""
    given_name: str | None = None
    """``firstName``."""
    treating_doctor: bool = False
    """True when authorised as ``MEDECIN_TRAITANT``."""


class RecentDmpKind(StrEnum):
    """``type`` of ``patientList`` (TD0.4)."""

    LAST_AUTHORIZATION = "LASTAUTORIZATION"
    """DMPs on which this professional was authorised since the date."""
    LAST_DOCUMENT = "LASTDOC"
    """DMPs where this professional deposited a document since the date."""


class RecentDmp(BaseModel):
    """One DMP of a TD0.4 answer."""

    model_config = _FROZEN

    ins: INS
    """The patient's INS."""
    family_name: str | None = None
    """``lastName``."""
    given_name: str | None = None
    """``firstName``."""
    birth_date: BirthDate | None = None
    """``birthDate``."""
    date: dt.datetime | None = None
    """When the authorisation or the last document happened (UTC)."""


class PatientSearch(BaseModel):
    """Partial traits for a PDQv3 search (TD0.5); at least one is needed."""

    model_config = _FROZEN

    family_name: str | None = Field(default=None, min_length=1)
    """``livingSubjectName/value/family`` (the DMP matches birth or used name [I])."""
    given_name: str | None = Field(default=None, min_length=1)
    """``livingSubjectName/value/given``."""
    sex: Sex | None = None
    """``livingSubjectAdministrativeGender``."""
    birth_date: BirthDate | None = None
    """``livingSubjectBirthTime``."""
    postal_code: str | None = Field(default=None, min_length=1)
    """``patientAddress/value/postalCode``."""
    city: str | None = Field(default=None, min_length=1)
    """``patientAddress/value/city``."""
    query_id: str = ""
    """``queryId/@extension``; the operation sets it to the message id when empty."""
    max_results: int | None = Field(default=None, ge=1)
    """``initialQuantity``: the most candidates wanted."""


class PatientCandidate(BaseModel):
    """One patient of a PDQv3 answer."""

    model_config = _FROZEN

    ins: INS | None = None
    """The INS, when the DMP gives one."""
    family_name: str | None = None
    """Family name (birth name)."""
    given_name: str | None = None
    """Given name."""
    sex: Sex | None = None
    """Administrative sex."""
    birth_date: BirthDate | None = None
    """Birth date."""
    postal_code: str | None = None
    """Postal code."""
    city: str | None = None
    """City."""


# ============================================================================ helpers


def _h(tag: str) -> str:
    return f"{{{HL7}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, _h(tag), attributes)
    if text is not None:
        element.text = text
    return element


def _ts(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return utc.strftime("%Y%m%d%H%M%S")


def _read_ts(text: str | None, where: str) -> dt.datetime:
    value = (text or "").strip()
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?", value)
    if match is None:
        raise MalformedResponseError(f"{where} is not an HL7 time (YYYYMMDD[hhmmss])")
    parts = [int(p) if p else 0 for p in match.groups()]
    try:
        return dt.datetime(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], tzinfo=dt.UTC)
    except ValueError:
        raise MalformedResponseError(f"{where} is not a valid HL7 time") from None


def _read_birth_date(text: str | None, where: str) -> BirthDate:
    try:
        return BirthDate.parse((text or "")[:8])
    except DmpConnectorError:
        raise MalformedResponseError(f"{where} is not a birth date (YYYYMMDD)") from None


def _birth_text(value: BirthDate) -> str:
    return f"{value.year:04d}{value.month or 0:02d}{value.day or 0:02d}"


def _read_ins(root: str | None, extension: str | None, where: str) -> INS:
    try:
        return INS.parse(extension or "", oid=root or "")
    except DmpConnectorError:
        raise MalformedResponseError(f"{where} is not an INS (root = INS OID, extension = matricule)") from None


def _is_ins_root(root: str | None) -> bool:
    return bool(root) and (root or "").startswith("1.2.250.1.213.1.4.")


def _need(parent: etree._Element, path: str, where: str) -> etree._Element:
    found = parent.find(path, namespaces={"v3": HL7})
    if found is None:
        raise MalformedResponseError(f"{where} has no {path.replace('v3:', '')}")
    return found


def _opt(parent: etree._Element, path: str) -> etree._Element | None:
    return parent.find(path, namespaces={"v3": HL7})


def _check_root(element: etree._Element, namespace: str, local: str, what: str) -> None:
    if not isinstance(element, etree._Element) or element.tag != f"{{{namespace}}}{local}":
        shown = etree.QName(element).localname if isinstance(element, etree._Element) else type(element).__name__
        raise MalformedResponseError(f"{what} is not a {local}: its root element is {shown}")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _read_bool(text: str | None, where: str) -> bool:
    value = (text or "").strip().lower()
    if value not in ("true", "false"):
        raise MalformedResponseError(f"{where} is not a boolean (true/false)")
    return value == "true"


# ---------------------------------------------------------------------------- HL7 wrapper


def _wrapper(interaction: str, header: Hl7Header) -> etree._Element:
    """The transmission wrapper common to every HL7 v3 message here::

    <PRPA_IN201307UV02 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0">
      <id root="1.2.250.1.999" extension="0f6c…"/>
      <creationTime value="20250102030405"/>
      <interactionId root="2.16.840.1.113883.1.6" extension="PRPA_IN201307UV02"/>
      <processingCode code="P"/><processingModeCode code="T"/><acceptAckCode code="AL"/>
      <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE">
        <id root="1.2.250.1.213.4.1.1.1"/><softwareName>DMP</softwareName></device></receiver>
      <sender typeCode="SND">…the software…</sender>
    </PRPA_IN201307UV02>
    """
    root = etree.Element(_h(interaction), nsmap=cast("dict[str, str]", {None: HL7, "xsi": XSI}))
    root.set("ITSVersion", "XML_1.0")
    _sub(root, "id", root=header.id_root, extension=header.message_id)
    _sub(root, "creationTime", value=_ts(header.creation_time))
    _sub(root, "interactionId", root=_INTERACTION_SYSTEM, extension=interaction)
    _sub(root, "processingCode", code=header.processing_code)
    _sub(root, "processingModeCode", code="T")
    _sub(root, "acceptAckCode", code="AL" if header.target_message_id is None else "NE")
    for role, type_code, device_root, name in (
        ("receiver", "RCV", header.receiver_root, header.receiver_name),
        ("sender", "SND", header.sender_root, header.sender_name),
    ):
        device = _sub(_sub(root, role, typeCode=type_code), "device", classCode="DEV", determinerCode="INSTANCE")
        _sub(device, "id", root=device_root)
        if name:
            _sub(device, "softwareName", name)
    return root


def _read_wrapper(root: etree._Element, what: str) -> Hl7Header:
    ident = _need(root, "v3:id", what)
    creation = _need(root, "v3:creationTime", what)
    sender = _need(root, "v3:sender/v3:device/v3:id", what)
    receiver = _opt(root, "v3:receiver/v3:device/v3:id")
    target = _opt(root, "v3:acknowledgement/v3:targetMessage/v3:id")
    sender_name = _opt(root, "v3:sender/v3:device/v3:softwareName")
    receiver_name = _opt(root, "v3:receiver/v3:device/v3:softwareName")
    processing = _opt(root, "v3:processingCode")
    code = processing.get("code") if processing is not None else "P"
    return Hl7Header(
        message_id=ident.get("extension") or ident.get("root") or "?",
        id_root=ident.get("root") or "?",
        creation_time=_read_ts(creation.get("value"), f"{what}: creationTime"),
        sender_root=sender.get("root") or "?",
        sender_name=(sender_name.text or None) if sender_name is not None else None,
        receiver_root=(receiver.get("root") or "?") if receiver is not None else "?",
        receiver_name=(receiver_name.text or None) if receiver_name is not None else None,
        processing_code=cast("Literal['P', 'D', 'T']", code if code in ("P", "D", "T") else "P"),
        target_message_id=(target.get("extension") or target.get("root")) if target is not None else None,
    )


def _acknowledgement(root: etree._Element, header: Hl7Header, ack: Acknowledgement) -> None:
    """``<acknowledgement typeCode="AE"><targetMessage><id …/></targetMessage>
    <acknowledgementDetail typeCode="E"><code code="DMPClosed" codeSystem="…"/><text>…</text>…``"""
    element = _sub(root, "acknowledgement", typeCode=ack.type_code.value)
    target = _sub(element, "targetMessage")
    _sub(target, "id", root=header.receiver_root, extension=header.target_message_id or "")
    for detail in ack.details:
        row = _sub(element, "acknowledgementDetail", typeCode=detail.type_code)
        _sub(row, "code", code=detail.code, codeSystem=REASON_SYSTEM)
        if detail.text:
            _sub(row, "text", detail.text)


def _read_acknowledgement(root: etree._Element, what: str) -> Acknowledgement:
    element = _need(root, "v3:acknowledgement", what)
    try:
        type_code = AckType(element.get("typeCode") or "")
    except ValueError:
        raise MalformedResponseError(f"{what} has an acknowledgement typeCode other than AA, AE or AR") from None
    details = []
    for row in element.iterfind("v3:acknowledgementDetail", namespaces={"v3": HL7}):
        code = _opt(row, "v3:code")
        text = _opt(row, "v3:text")
        kind = row.get("typeCode") or "E"
        details.append(
            AckDetail(
                code=(code.get("code") if code is not None else None) or "UNKNOWN",
                text=_text(text),
                type_code=cast("Literal['E', 'W', 'I']", kind if kind in ("E", "W", "I") else "E"),
            )
        )
    return Acknowledgement(type_code=type_code, details=tuple(details))


def _patient_id(parent: etree._Element, ins: INS) -> None:
    root, extension = ins.to_cda_id()
    _sub(parent, "id", root=root, extension=extension)


def _observation(parent: etree._Element, code: str, value_type: str, value: str) -> None:
    """One DMP data row [I]::

    <subjectOf typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN">
      <code code="AUTORISATION" codeSystem="1.2.250.1.213.1.1.4.11"/>
      <value xsi:type="CS" code="VALIDE"/>
    </observation></subjectOf>
    """
    observation = _sub(_sub(parent, "subjectOf", typeCode="SUBJ"), "observation", classCode="OBS", moodCode="EVN")
    _sub(observation, "code", code=code, codeSystem=DMP_INFO_SYSTEM)
    holder = _sub(observation, "value")
    holder.set(f"{{{XSI}}}type", value_type)
    if value_type == "CS":
        holder.set("code", value)
    elif value_type in ("BL", "TS"):
        holder.set("value", value)
    else:
        holder.text = value


def _observations(parent: etree._Element) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    for observation in parent.iterfind("v3:subjectOf/v3:observation", namespaces={"v3": HL7}):
        code = _opt(observation, "v3:code")
        value = _opt(observation, "v3:value")
        if code is not None and value is not None and code.get("code"):
            found[code.get("code") or ""] = value
    return found


def _person(parent: etree._Element, data: AdministrativeData) -> None:
    person = _sub(parent, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
    name = _sub(person, "name")
    _sub(name, "family", data.birth_name, qualifier="BR")
    if data.used_name:
        _sub(name, "family", data.used_name, qualifier="SP")
    _sub(name, "given", data.given_names)
    if data.email:
        _sub(person, "telecom", value=f"mailto:{data.email}")
    if data.mobile_phone:
        _sub(person, "telecom", value=f"tel:{data.mobile_phone}", use="MC")
    _sub(person, "administrativeGenderCode", code=_GENDER[data.sex], codeSystem="2.16.840.1.113883.5.1")
    _sub(person, "birthTime", value=_birth_text(data.birth_date))


_GENDER: Final = {Sex.M: "M", Sex.F: "F", Sex.I: "UN"}
_SEX_OF: Final = {"M": Sex.M, "F": Sex.F, "UN": Sex.I, "U": Sex.I}


def _read_person(patient: etree._Element, ins: INS, oppositions: Oppositions, where: str) -> AdministrativeData:
    person = _need(patient, "v3:patientPerson", where)
    birth_name = used_name = None
    for family in person.iterfind("v3:name/v3:family", namespaces={"v3": HL7}):
        if family.get("qualifier") == "SP":
            used_name = (family.text or "").strip() or None
        elif birth_name is None:
            birth_name = (family.text or "").strip() or None
    given = _opt(person, "v3:name/v3:given")
    email = phone = None
    for telecom in person.iterfind("v3:telecom", namespaces={"v3": HL7}):
        value = telecom.get("value") or ""
        if value.startswith("mailto:"):
            email = value[len("mailto:") :]
        elif value.startswith("tel:"):
            phone = value[len("tel:") :]
    gender = _need(person, "v3:administrativeGenderCode", where).get("code") or ""
    if gender not in _SEX_OF:
        raise MalformedResponseError(f"{where}: administrativeGenderCode is not M, F or UN")
    birth = _need(person, "v3:birthTime", where).get("value")
    if not birth_name or given is None or not (given.text or "").strip():
        raise MalformedResponseError(f"{where}: the patient's name lacks a family or given name")
    return AdministrativeData(
        ins=ins,
        birth_name=birth_name,
        used_name=used_name,
        given_names=(given.text or "").strip(),
        sex=_SEX_OF[gender],
        birth_date=_read_birth_date(birth, f"{where}: birthTime"),
        email=email,
        mobile_phone=phone,
        oppositions=oppositions,
    )


def _write_oppositions(parent: etree._Element, oppositions: Oppositions) -> None:
    _observation(parent, "OPPOSITION_BRIS_DE_GLACE", "BL", _bool(oppositions.bris_de_glace))
    _observation(parent, "OPPOSITION_CENTRE_15", "BL", _bool(oppositions.centre_15))


def _read_oppositions(rows: dict[str, etree._Element], where: str) -> Oppositions:
    def flag(code: str) -> bool:
        value = rows.get(code)
        return _read_bool(value.get("value"), f"{where}: {code}") if value is not None else False

    return Oppositions(bris_de_glace=flag("OPPOSITION_BRIS_DE_GLACE"), centre_15=flag("OPPOSITION_CENTRE_15"))


# ============================================================================ TD0.2 / TD1.3a


def build_patient_query_request(query: PatientQuery, header: Hl7Header) -> etree._Element:
    """TD0.2 (``TEST_EXST``) or the administrative-data read (``DONNEES_ADMIN`` [I])::

    <PRPA_IN201307UV02 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0">…wrapper…
      <controlActProcess classCode="CACT" moodCode="EVN">
        <reasonCode code="TEST_EXST" codeSystem="1.2.250.1.213.1.1.4.11" displayName="Test d'existence de dossier"/>
        <queryByParameter><queryId root="…" extension="…"/><statusCode code="new"/>
          <parameterList><patientIdentifier>
            <value root="1.2.250.1.213.1.4.10" extension="279035121518989"/><semanticsText>Patient.id</semanticsText>
          </patientIdentifier></parameterList>
        </queryByParameter>
      </controlActProcess>
    </PRPA_IN201307UV02>
    """
    root = _wrapper("PRPA_IN201307UV02", header)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    display = "Test d'existence de dossier" if query.reason is QueryReason.TEST_EXISTENCE else "Données administratives"
    _sub(control, "reasonCode", code=query.reason.value, codeSystem=REASON_SYSTEM, displayName=display)
    by_parameter = _sub(control, "queryByParameter")
    _sub(by_parameter, "queryId", root=header.id_root, extension=query.query_id)
    _sub(by_parameter, "statusCode", code="new")
    identifier = _sub(_sub(by_parameter, "parameterList"), "patientIdentifier")
    ins_root, ins_extension = query.ins.to_cda_id()
    _sub(identifier, "value", root=ins_root, extension=ins_extension)
    _sub(identifier, "semanticsText", "Patient.id")
    return root


def parse_patient_query_request(element: etree._Element) -> tuple[PatientQuery, Hl7Header]:
    """Read a ``PRPA_IN201307UV02`` (the sandbox's side)."""
    what = "the PRPA_IN201307UV02 query"
    _check_root(element, HL7, "PRPA_IN201307UV02", what)
    header = _read_wrapper(element, what)
    control = _need(element, "v3:controlActProcess", what)
    reason = _need(control, "v3:reasonCode", what).get("code") or ""
    try:
        kind = QueryReason(reason)
    except ValueError:
        raise MalformedResponseError(f"{what} has an unknown reasonCode") from None
    query_id = _need(control, "v3:queryByParameter/v3:queryId", what)
    value = _need(control, "v3:queryByParameter/v3:parameterList/v3:patientIdentifier/v3:value", what)
    ins = _read_ins(value.get("root"), value.get("extension"), f"{what}: patientIdentifier")
    query = PatientQuery(ins=ins, reason=kind, query_id=query_id.get("extension") or query_id.get("root") or "?")
    return query, header


def build_patient_query_response(
    header: Hl7Header,
    acknowledgement: Acknowledgement,
    status: DmpStatus,
    *,
    administrative: AdministrativeData | None = None,
    query_id: str | None = None,
    reason: QueryReason = QueryReason.TEST_EXISTENCE,
) -> etree._Element:
    """The ``PRPA_IN201308UV02`` answer (the sandbox's side); the DMP's data as rows [I]::

    <PRPA_IN201308UV02 …>…wrapper…<acknowledgement typeCode="AA">…</acknowledgement>
      <controlActProcess classCode="CACT" moodCode="EVN">
        <reasonCode code="TEST_EXST" …/>
        <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN">
          <statusCode code="active"/>                                  (completed: closed)
          <effectiveTime><high value="20250102"/></effectiveTime>      (closing date)
          <subject1 typeCode="SBJ"><patient classCode="PAT"><id root="<INS OID>" extension="<matricule>"/>
            <statusCode code="active"/><patientPerson>…(DONNEES_ADMIN only)…</patientPerson></patient></subject1>
          <custodian typeCode="CST"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.213.4.1.1.1"/>…
          <subjectOf typeCode="SUBJ"><observation …><code code="AUTORISATION" …/><value xsi:type="CS" code="VALIDE"/>…
          …MEDECIN_TRAITANT_DMP (BL), RATTACHEMENT_MES (BL), MOTIF_FERMETURE (CS), RAISON_FERMETURE (ST),
          OPPOSITION_BRIS_DE_GLACE (BL), OPPOSITION_CENTRE_15 (BL)…
        </registrationEvent></subject>
        <queryAck><queryId …/><queryResponseCode code="OK"/></queryAck>       (NF: no DMP)
      </controlActProcess>
    </PRPA_IN201308UV02>
    """
    root = _wrapper("PRPA_IN201308UV02", header)
    _acknowledgement(root, header, acknowledgement)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "reasonCode", code=reason.value, codeSystem=REASON_SYSTEM)
    if status.exists:
        event = _sub(_sub(control, "subject", typeCode="SUBJ"), "registrationEvent", classCode="REG", moodCode="EVN")
        _sub(event, "statusCode", code=(status.state or DmpState.ACTIVE).value)
        closure = status.closure
        if closure is not None and closure.date is not None:
            _sub(_sub(event, "effectiveTime"), "high", value=closure.date.strftime("%Y%m%d"))
        patient = _sub(_sub(event, "subject1", typeCode="SBJ"), "patient", classCode="PAT")
        ins = status.ins or (administrative.ins if administrative is not None else None)
        if ins is not None:
            _patient_id(patient, ins)
        _sub(patient, "statusCode", code="active")
        if administrative is not None:
            _person(patient, administrative)
        custodian = _sub(_sub(event, "custodian", typeCode="CST"), "assignedEntity", classCode="ASSIGNED")
        _sub(custodian, "id", root=DMP_DEVICE_ROOT)
        if status.authorization is not None:
            _observation(event, "AUTORISATION", "CS", status.authorization.value)
        if status.treating_doctor is not None:
            _observation(event, "MEDECIN_TRAITANT_DMP", "BL", _bool(status.treating_doctor))
        if status.attached_to_mes is not None:
            _observation(event, "RATTACHEMENT_MES", "BL", _bool(status.attached_to_mes))
        if closure is not None:
            _observation(event, "MOTIF_FERMETURE", "CS", str(closure.reason))
            if closure.text:
                _observation(event, "RAISON_FERMETURE", "ST", closure.text)
        if administrative is not None:
            _write_oppositions(event, administrative.oppositions)
    ack = _sub(control, "queryAck")
    _sub(ack, "queryId", root=header.receiver_root, extension=query_id or "")
    _sub(ack, "queryResponseCode", code="OK" if status.exists else "NF")
    return root


def parse_patient_query_response(element: etree._Element) -> PatientQueryAnswer:
    """Read a ``PRPA_IN201308UV02``: the acknowledgement, the DMP status and any administrative data."""
    what = "the PRPA_IN201308UV02 answer"
    _check_root(element, HL7, "PRPA_IN201308UV02", what)
    acknowledgement = _read_acknowledgement(element, what)
    control = _opt(element, "v3:controlActProcess")
    response_code = _opt(control, "v3:queryAck/v3:queryResponseCode") if control is not None else None
    if response_code is None:
        if acknowledgement.accepted:
            raise MalformedResponseError(f"{what} is accepted but has no queryAck/queryResponseCode")
        return PatientQueryAnswer(acknowledgement=acknowledgement, status=DmpStatus(exists=False))
    code = response_code.get("code") or ""
    if code not in ("OK", "NF"):
        if code in ("AE", "QE") or not acknowledgement.accepted:
            return PatientQueryAnswer(acknowledgement=acknowledgement, status=DmpStatus(exists=False))
        raise MalformedResponseError(f"{what} has a queryResponseCode other than OK or NF")
    event = _opt(control, "v3:subject/v3:registrationEvent") if control is not None else None
    if code == "NF" or event is None:
        if code == "OK":
            raise MalformedResponseError(f"{what} says OK but carries no registrationEvent")
        return PatientQueryAnswer(acknowledgement=acknowledgement, status=DmpStatus(exists=False))
    where = f"{what}: registrationEvent"
    state_code = _need(event, "v3:statusCode", where).get("code") or ""
    try:
        state = DmpState(state_code)
    except ValueError:
        raise MalformedResponseError(f"{where} has an unknown statusCode") from None
    patient = _need(event, "v3:subject1/v3:patient", where)
    ident = _opt(patient, "v3:id")
    ins = _read_ins(ident.get("root"), ident.get("extension"), f"{where}: patient id") if ident is not None else None
    rows = _observations(event)
    authorization = None
    if "AUTORISATION" in rows:
        raw = rows["AUTORISATION"].get("code") or ""
        try:
            authorization = AuthorizationStatus(raw)
        except ValueError:
            raise MalformedResponseError(f"{where} has an unknown authorisation status") from None

    def flag(name: str) -> bool | None:
        value = rows.get(name)
        return _read_bool(value.get("value"), f"{where}: {name}") if value is not None else None

    closure = None
    high = _opt(event, "v3:effectiveTime/v3:high")
    if "MOTIF_FERMETURE" in rows or high is not None:
        reason_raw = rows["MOTIF_FERMETURE"].get("code") if "MOTIF_FERMETURE" in rows else None
        text_row = rows.get("RAISON_FERMETURE")
        reason: ClosureReason | str = ClosureReason.OTHER
        if reason_raw:
            reason = ClosureReason(reason_raw) if reason_raw in ClosureReason._value2member_map_ else reason_raw
        closure = Closure(
            reason=reason,
            text=_text(text_row),
            date=_read_ts(high.get("value"), f"{where}: closing date").date() if high is not None else None,
        )
    status = DmpStatus(
        exists=True,
        ins=ins,
        state=state,
        authorization=authorization,
        treating_doctor=flag("MEDECIN_TRAITANT_DMP"),
        attached_to_mes=flag("RATTACHEMENT_MES"),
        closure=closure,
    )
    administrative = None
    if _opt(patient, "v3:patientPerson") is not None:
        if ins is None:
            raise MalformedResponseError(f"{where}: administrative data without the patient's INS")
        administrative = _read_person(patient, ins, _read_oppositions(rows, where), where)
    return PatientQueryAnswer(acknowledgement=acknowledgement, status=status, administrative=administrative)


# ============================================================================ TD1.x


def build_registration_request(request: RegistrationRequest, header: Hl7Header) -> etree._Element:
    """TD1.1 (``PRPA_IN201311UV02``) or TD1.2/1.3b/1.4 (``PRPA_IN201314UV02``), told apart by ``reasonCode`` [I]::

    <PRPA_IN201314UV02 xmlns="urn:hl7-org:v3" …>…wrapper…
      <controlActProcess classCode="CACT" moodCode="EVN">
        <reasonCode code="FERMETURE" codeSystem="1.2.250.1.213.1.1.4.11"/>
        <subject typeCode="SUBJ"><registrationRequest classCode="REG" moodCode="RQO">
          <statusCode code="completed"/>                         (active: create, reactivate, update)
          <subject1 typeCode="SBJ"><patient classCode="PAT"><id root="<INS OID>" extension="<matricule>"/>
            <statusCode code="active"/><patientPerson>…name, telecom, gender, birthTime…</patientPerson>
          </patient></subject1>
          <author typeCode="AUT"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.71.4.2.1" extension="8…"/>…
          <subjectOf …MOTIF_FERMETURE / RAISON_FERMETURE, or OPPOSITION_BRIS_DE_GLACE / OPPOSITION_CENTRE_15…/>
        </registrationRequest></subject>
      </controlActProcess>
    </PRPA_IN201314UV02>
    """
    kind = request.kind
    if kind in (RegistrationKind.CREATE, RegistrationKind.UPDATE) and request.data is None:
        raise ValidationError(f"a {kind.value} request needs the administrative data", problems=["data: missing"])
    if kind is RegistrationKind.CLOSE and request.closure is None:
        raise ValidationError("a closing request needs its reason", problems=["closure: missing"])
    root = _wrapper(kind.interaction, header)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "reasonCode", code=kind.value, codeSystem=REASON_SYSTEM)
    registration = _sub(_sub(control, "subject", typeCode="SUBJ"), "registrationRequest", classCode="REG")
    registration.set("moodCode", "RQO")
    _sub(registration, "statusCode", code="completed" if kind is RegistrationKind.CLOSE else "active")
    patient = _sub(_sub(registration, "subject1", typeCode="SBJ"), "patient", classCode="PAT")
    _patient_id(patient, request.ins)
    _sub(patient, "statusCode", code="active")
    if request.data is not None:
        _person(patient, request.data)
    if request.author_id:
        author = _sub(_sub(registration, "author", typeCode="AUT"), "assignedEntity", classCode="ASSIGNED")
        _sub(author, "id", root=_IDNAT_PS, extension=request.author_id)
    if request.closure is not None:
        _observation(registration, "MOTIF_FERMETURE", "CS", str(request.closure.reason))
        if request.closure.text:
            _observation(registration, "RAISON_FERMETURE", "ST", request.closure.text)
    if request.data is not None:
        _write_oppositions(registration, request.data.oppositions)
    return root


def parse_registration_request(element: etree._Element) -> tuple[RegistrationRequest, Hl7Header]:
    """Read a TD1.x request (the sandbox's side)."""
    local = etree.QName(element).localname if isinstance(element, etree._Element) else ""
    what = f"the {local or 'TD1'} request"
    if local not in ("PRPA_IN201311UV02", "PRPA_IN201314UV02"):
        _check_root(element, HL7, "PRPA_IN201314UV02", what)
    _check_root(element, HL7, local, what)
    header = _read_wrapper(element, what)
    control = _need(element, "v3:controlActProcess", what)
    try:
        kind = RegistrationKind(_need(control, "v3:reasonCode", what).get("code") or "")
    except ValueError:
        raise MalformedResponseError(f"{what} has an unknown reasonCode") from None
    if kind.interaction != local:
        raise MalformedResponseError(f"{what}: reasonCode {kind.value} does not go with {local}")
    registration = _need(control, "v3:subject/v3:registrationRequest", what)
    patient = _need(registration, "v3:subject1/v3:patient", what)
    ident = _need(patient, "v3:id", what)
    ins = _read_ins(ident.get("root"), ident.get("extension"), f"{what}: patient id")
    rows = _observations(registration)
    data = None
    if _opt(patient, "v3:patientPerson") is not None:
        data = _read_person(patient, ins, _read_oppositions(rows, what), what)
    closure = None
    if "MOTIF_FERMETURE" in rows:
        raw = rows["MOTIF_FERMETURE"].get("code") or ""
        text_row = rows.get("RAISON_FERMETURE")
        closure = Closure(
            reason=ClosureReason(raw) if raw in ClosureReason._value2member_map_ else raw,
            text=_text(text_row),
        )
    author = _opt(registration, "v3:author/v3:assignedEntity/v3:id")
    request = RegistrationRequest(
        kind=kind,
        ins=ins,
        data=data,
        closure=closure,
        author_id=author.get("extension") if author is not None else None,
    )
    return request, header


_ANSWERS: Final = {
    ("PRPA_IN201311UV02", True): "PRPA_IN201312UV02",
    ("PRPA_IN201311UV02", False): "PRPA_IN201313UV02",
    ("PRPA_IN201314UV02", True): "PRPA_IN201315UV02",
    ("PRPA_IN201314UV02", False): "PRPA_IN201316UV02",
}


def build_registration_response(
    header: Hl7Header, kind: RegistrationKind, acknowledgement: Acknowledgement
) -> etree._Element:
    """The TD1.x answer (the sandbox's side): ``…12``/``…15`` when accepted, ``…13``/``…16`` when not::

    <PRPA_IN201313UV02 …>…wrapper…
      <acknowledgement typeCode="AE"><targetMessage><id …/></targetMessage>
        <acknowledgementDetail typeCode="E"><code code="DMPFound" …/><text>Le DMP existe déjà</text></…>
      </acknowledgement>
      <controlActProcess classCode="CACT" moodCode="EVN"/>
    </PRPA_IN201313UV02>
    """
    interaction = _ANSWERS[(kind.interaction, acknowledgement.accepted)]
    root = _wrapper(interaction, header)
    _acknowledgement(root, header, acknowledgement)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "reasonCode", code=kind.value, codeSystem=REASON_SYSTEM)
    return root


def parse_registration_response(element: etree._Element) -> RegistrationAnswer:
    """Read a TD1.x answer (``PRPA_IN2013{12,13,15,16}UV02``)."""
    local = etree.QName(element).localname if isinstance(element, etree._Element) else ""
    what = f"the {local or 'TD1'} answer"
    if element.tag != f"{{{HL7}}}{local}" or local not in _ANSWERS.values():
        raise MalformedResponseError(f"{what} is not a PRPA_IN201312/13/15/16UV02 answer")
    acknowledgement = _read_acknowledgement(element, what)
    accepted_forms = {v for (_, ok), v in _ANSWERS.items() if ok}
    if acknowledgement.accepted != (local in accepted_forms):
        raise MalformedResponseError(f"{what}: its acknowledgement contradicts its interaction")
    return RegistrationAnswer(interaction=local, acknowledgement=acknowledgement)


# ============================================================================ TD0.5 PDQv3


def build_find_candidates_request(search: PatientSearch, header: Hl7Header) -> etree._Element:
    """TD0.5, IHE PDQv3 Patient Demographics Query [K]::

    <PRPA_IN201305UV02 xmlns="urn:hl7-org:v3" …>…wrapper…
      <controlActProcess classCode="CACT" moodCode="EVN">
        <code code="PRPA_TE201305UV02" codeSystem="2.16.840.1.113883.1.6"/>
        <queryByParameter><queryId …/><statusCode code="new"/>
          <responseModalityCode code="R"/><responsePriorityCode code="I"/><initialQuantity value="20"/>
          <parameterList>
            <livingSubjectAdministrativeGender><value code="F"/><semanticsText>LivingSubject.administrativeGender</…>
            <livingSubjectBirthTime><value value="19970226"/>…
            <livingSubjectName><value><family>ADRTROIS</family><given>DOMINIQUE</given></value>…
            <patientAddress><value><postalCode>75001</postalCode></value>…
          </parameterList>
        </queryByParameter>
      </controlActProcess>
    </PRPA_IN201305UV02>
    """
    root = _wrapper("PRPA_IN201305UV02", header)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "code", code="PRPA_TE201305UV02", codeSystem=_INTERACTION_SYSTEM)
    by_parameter = _sub(control, "queryByParameter")
    _sub(by_parameter, "queryId", root=header.id_root, extension=search.query_id or header.message_id)
    _sub(by_parameter, "statusCode", code="new")
    _sub(by_parameter, "responseModalityCode", code="R")
    _sub(by_parameter, "responsePriorityCode", code="I")
    if search.max_results is not None:
        _sub(by_parameter, "initialQuantity", value=str(search.max_results))
    parameters = _sub(by_parameter, "parameterList")
    if search.sex is not None:
        item = _sub(parameters, "livingSubjectAdministrativeGender")
        _sub(item, "value", code=_GENDER[search.sex])
        _sub(item, "semanticsText", "LivingSubject.administrativeGender")
    if search.birth_date is not None:
        item = _sub(parameters, "livingSubjectBirthTime")
        _sub(item, "value", value=_birth_text(search.birth_date))
        _sub(item, "semanticsText", "LivingSubject.birthTime")
    if search.family_name or search.given_name:
        item = _sub(parameters, "livingSubjectName")
        value = _sub(item, "value")
        if search.family_name:
            _sub(value, "family", search.family_name)
        if search.given_name:
            _sub(value, "given", search.given_name)
        _sub(item, "semanticsText", "LivingSubject.name")
    if search.postal_code or search.city:
        item = _sub(parameters, "patientAddress")
        value = _sub(item, "value")
        if search.postal_code:
            _sub(value, "postalCode", search.postal_code)
        if search.city:
            _sub(value, "city", search.city)
        _sub(item, "semanticsText", "Patient.addr")
    return root


def parse_find_candidates_request(element: etree._Element) -> tuple[PatientSearch, Hl7Header]:
    """Read a PDQv3 query (the sandbox's side)."""
    what = "the PRPA_IN201305UV02 query"
    _check_root(element, HL7, "PRPA_IN201305UV02", what)
    header = _read_wrapper(element, what)
    by_parameter = _need(element, "v3:controlActProcess/v3:queryByParameter", what)
    parameters = _need(by_parameter, "v3:parameterList", what)
    gender = _opt(parameters, "v3:livingSubjectAdministrativeGender/v3:value")
    birth = _opt(parameters, "v3:livingSubjectBirthTime/v3:value")
    family = _opt(parameters, "v3:livingSubjectName/v3:value/v3:family")
    given = _opt(parameters, "v3:livingSubjectName/v3:value/v3:given")
    postal = _opt(parameters, "v3:patientAddress/v3:value/v3:postalCode")
    city = _opt(parameters, "v3:patientAddress/v3:value/v3:city")
    quantity = _opt(by_parameter, "v3:initialQuantity")
    query_id = _opt(by_parameter, "v3:queryId")
    sex_code = gender.get("code") if gender is not None else None
    if sex_code is not None and sex_code not in _SEX_OF:
        raise MalformedResponseError(f"{what}: the gender is not M, F or UN")
    search = PatientSearch(
        family_name=(family.text or "").strip() or None if family is not None else None,
        given_name=(given.text or "").strip() or None if given is not None else None,
        sex=_SEX_OF[sex_code] if sex_code is not None else None,
        birth_date=_read_birth_date(birth.get("value"), f"{what}: birthTime") if birth is not None else None,
        postal_code=(postal.text or "").strip() or None if postal is not None else None,
        city=(city.text or "").strip() or None if city is not None else None,
        query_id=(query_id.get("extension") or "") if query_id is not None else "",
        max_results=int(quantity.get("value") or "0") or None if quantity is not None else None,
    )
    return search, header


def build_find_candidates_response(
    header: Hl7Header, acknowledgement: Acknowledgement, candidates: Sequence[PatientCandidate], *, query_id: str = ""
) -> etree._Element:
    """The PDQv3 answer ``PRPA_IN201306UV02`` (the sandbox's side)::

    <PRPA_IN201306UV02 …>…wrapper…<acknowledgement typeCode="AA">…</acknowledgement>
      <controlActProcess classCode="CACT" moodCode="EVN">
        <code code="PRPA_TE201306UV02" codeSystem="2.16.840.1.113883.1.6"/>
        <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN"><statusCode code="active"/>
          <subject1 typeCode="SBJ"><patient classCode="PAT"><id root="<INS OID>" extension="…"/>
            <statusCode code="active"/><patientPerson><name><family>…</family><given>…</given></name>
            <administrativeGenderCode code="F"/><birthTime value="19970226"/><addr>…</addr></patientPerson>
          </patient></subject1>
          <custodian typeCode="CST"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.213.4.1.1.1"/>…
        </registrationEvent></subject>
        <queryAck><queryId …/><queryResponseCode code="OK"/></queryAck>            (NF: none found)
      </controlActProcess>
    </PRPA_IN201306UV02>
    """
    root = _wrapper("PRPA_IN201306UV02", header)
    _acknowledgement(root, header, acknowledgement)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "code", code="PRPA_TE201306UV02", codeSystem=_INTERACTION_SYSTEM)
    for candidate in candidates:
        event = _sub(_sub(control, "subject", typeCode="SUBJ"), "registrationEvent", classCode="REG", moodCode="EVN")
        _sub(event, "statusCode", code="active")
        patient = _sub(_sub(event, "subject1", typeCode="SBJ"), "patient", classCode="PAT")
        if candidate.ins is not None:
            _patient_id(patient, candidate.ins)
        _sub(patient, "statusCode", code="active")
        person = _sub(patient, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
        name = _sub(person, "name")
        if candidate.family_name:
            _sub(name, "family", candidate.family_name)
        if candidate.given_name:
            _sub(name, "given", candidate.given_name)
        if candidate.sex is not None:
            _sub(person, "administrativeGenderCode", code=_GENDER[candidate.sex])
        if candidate.birth_date is not None:
            _sub(person, "birthTime", value=_birth_text(candidate.birth_date))
        if candidate.postal_code or candidate.city:
            address = _sub(person, "addr")
            if candidate.postal_code:
                _sub(address, "postalCode", candidate.postal_code)
            if candidate.city:
                _sub(address, "city", candidate.city)
        custodian = _sub(_sub(event, "custodian", typeCode="CST"), "assignedEntity", classCode="ASSIGNED")
        _sub(custodian, "id", root=DMP_DEVICE_ROOT)
    ack = _sub(control, "queryAck")
    _sub(ack, "queryId", root=header.receiver_root, extension=query_id)
    _sub(ack, "queryResponseCode", code="OK" if candidates else "NF")
    return root


def parse_find_candidates_response(element: etree._Element) -> tuple[Acknowledgement, tuple[PatientCandidate, ...]]:
    """Read a PDQv3 answer into its acknowledgement and candidates."""
    what = "the PRPA_IN201306UV02 answer"
    _check_root(element, HL7, "PRPA_IN201306UV02", what)
    acknowledgement = _read_acknowledgement(element, what)
    candidates = []
    path = "v3:controlActProcess/v3:subject/v3:registrationEvent/v3:subject1/v3:patient"
    for index, patient in enumerate(element.iterfind(path, namespaces={"v3": HL7}), 1):
        where = f"{what}: candidate {index}"
        ins = None
        for ident in patient.iterfind("v3:id", namespaces={"v3": HL7}):
            if _is_ins_root(ident.get("root")):
                ins = _read_ins(ident.get("root"), ident.get("extension"), where)
                break
        person = _opt(patient, "v3:patientPerson")
        if person is None:
            raise MalformedResponseError(f"{where} has no patientPerson")
        family = _opt(person, "v3:name/v3:family")
        given = _opt(person, "v3:name/v3:given")
        gender = _opt(person, "v3:administrativeGenderCode")
        birth = _opt(person, "v3:birthTime")
        postal = _opt(person, "v3:addr/v3:postalCode")
        city = _opt(person, "v3:addr/v3:city")
        sex_code = gender.get("code") if gender is not None else None
        candidates.append(
            PatientCandidate(
                ins=ins,
                family_name=_text(family),
                given_name=_text(given),
                sex=_SEX_OF.get(sex_code or ""),
                birth_date=_read_birth_date(birth.get("value"), f"{where}: birthTime") if birth is not None else None,
                postal_code=_text(postal),
                city=_text(city),
            )
        )
    return acknowledgement, tuple(candidates)


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return "".join(t for t in element.itertext() if isinstance(t, str)).strip() or None


# ============================================================================ non-HL7 services


def _plain(namespace: str, local: str, children: Sequence[tuple[str, str | None]]) -> etree._Element:
    prefix = "hab" if namespace == HABILITATIONS_NS else "pat"
    root = etree.Element(f"{{{namespace}}}{local}", nsmap={prefix: namespace})
    for tag, text in children:
        if text is not None:
            etree.SubElement(root, f"{{{namespace}}}{tag}").text = text
    return root


def _children(element: etree._Element, local: str) -> Iterator[etree._Element]:
    """Children named ``local`` in any namespace (the body's own, or none) [I: qualification not public]."""
    for child in element:
        if isinstance(child.tag, str) and etree.QName(child).localname == local:
            yield child


def _child_text(element: etree._Element, local: str) -> str | None:
    for child in _children(element, local):
        return _text(child)
    return None


def _required_text(element: etree._Element, local: str, what: str) -> str:
    value = _child_text(element, local)
    if value is None:
        raise MalformedResponseError(f"{what} has no {local}")
    return value


def _status_children(status: ServiceStatus) -> list[tuple[str, str | None]]:
    return [("status", status.status), ("context", status.context)]


def _read_status(element: etree._Element, what: str) -> ServiceStatus:
    return ServiceStatus(status=_required_text(element, "status", what), context=_child_text(element, "context"))


def _read_cx(text: str, what: str) -> INS:
    try:
        return INS.from_xds_cx(text)
    except DmpConnectorError:
        raise MalformedResponseError(f"{what} is not an INS in CX form (<matricule>^^^&<OID>&ISO^NH)") from None


def build_set_authorization_request(
    ins: INS, action: AuthorizationAction, *, treating_doctor: bool = False
) -> etree._Element:
    """TD0.3 (``habilitations``) [I: children]::

    <hab:setAuthorization xmlns:hab="urn:si-dmp-habilitations">
      <hab:patientId>279035121518989^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH</hab:patientId>
      <hab:action>AJOUT</hab:action>
      <hab:role>MEDECIN_TRAITANT</hab:role>
    </hab:setAuthorization>
    """
    role = "MEDECIN_TRAITANT" if treating_doctor else None
    children = [("patientId", ins.to_xds_cx()), ("action", action.value), ("role", role)]
    return _plain(HABILITATIONS_NS, "setAuthorization", children)


def parse_set_authorization_request(element: etree._Element) -> tuple[INS, AuthorizationAction, bool]:
    """Read TD0.3 (the sandbox's side): the patient, the action and whether as médecin traitant."""
    what = "the setAuthorization request"
    _check_root(element, HABILITATIONS_NS, "setAuthorization", what)
    ins = _read_cx(_required_text(element, "patientId", what), f"{what}: patientId")
    try:
        action = AuthorizationAction(_required_text(element, "action", what))
    except ValueError:
        raise MalformedResponseError(f"{what}: action is neither AJOUT nor SUPPRESSION") from None
    return ins, action, _child_text(element, "role") == "MEDECIN_TRAITANT"


def build_set_authorization_response(status: ServiceStatus) -> etree._Element:
    """``<hab:setAuthorizationResponse><hab:status>DMPOK</hab:status><hab:context>…</hab:context>…``"""
    return _plain(HABILITATIONS_NS, "setAuthorizationResponse", _status_children(status))


def parse_set_authorization_response(element: etree._Element) -> ServiceStatus:
    """Read the TD0.3 answer's status."""
    what = "the setAuthorization answer"
    _check_root(element, HABILITATIONS_NS, "setAuthorizationResponse", what)
    return _read_status(element, what)


def build_list_authorizations_request(ins: INS, *, mode: str = "TOUTE") -> etree._Element:
    """The list of authorised professionals [I: children]::

    <hab:listAuthorizationByPatient xmlns:hab="urn:si-dmp-habilitations">
      <hab:patientId>…CX…</hab:patientId><hab:mode>TOUTE</hab:mode>
    </hab:listAuthorizationByPatient>
    """
    return _plain(HABILITATIONS_NS, "listAuthorizationByPatient", [("patientId", ins.to_xds_cx()), ("mode", mode)])


def parse_list_authorizations_request(element: etree._Element) -> tuple[INS, str]:
    """Read the list request (the sandbox's side): the patient and the mode."""
    what = "the listAuthorizationByPatient request"
    _check_root(element, HABILITATIONS_NS, "listAuthorizationByPatient", what)
    ins = _read_cx(_required_text(element, "patientId", what), f"{what}: patientId")
    return ins, _child_text(element, "mode") or "TOUTE"


def build_list_authorizations_response(
    status: ServiceStatus, professionals: Sequence[AuthorizedProfessional] = ()
) -> etree._Element:
    """The list answer [I]::

    <hab:listAuthorizationByPatientResponse xmlns:hab="urn:si-dmp-habilitations">
      <hab:status>DMPOK</hab:status>
      <hab:authorization><hab:nationalId>810001234567</hab:nationalId><hab:lastName>DUPONT</hab:lastName>
        <hab:firstName>Jean</hab:firstName><hab:role>MEDECIN_TRAITANT</hab:role></hab:authorization>
    </hab:listAuthorizationByPatientResponse>
    """
    root = _plain(HABILITATIONS_NS, "listAuthorizationByPatientResponse", _status_children(status))
    for professional in professionals:
        row = etree.SubElement(root, f"{{{HABILITATIONS_NS}}}authorization")
        for tag, text in (
            ("nationalId", professional.national_id),
            ("lastName", professional.family_name),
            ("firstName", professional.given_name),
            ("role", "MEDECIN_TRAITANT" if professional.treating_doctor else None),
        ):
            if text is not None:
                etree.SubElement(row, f"{{{HABILITATIONS_NS}}}{tag}").text = text
    return root


def parse_list_authorizations_response(
    element: etree._Element,
) -> tuple[ServiceStatus, tuple[AuthorizedProfessional, ...]]:
    """Read the list answer: its status and the professionals."""
    what = "the listAuthorizationByPatient answer"
    _check_root(element, HABILITATIONS_NS, "listAuthorizationByPatientResponse", what)
    professionals = tuple(
        AuthorizedProfessional(
            national_id=_required_text(row, "nationalId", f"{what}: an authorization"),
            family_name=_child_text(row, "lastName"),
            given_name=_child_text(row, "firstName"),
            treating_doctor=_child_text(row, "role") == "MEDECIN_TRAITANT",
        )
        for row in _children(element, "authorization")
    )
    return _read_status(element, what), professionals


def build_patient_list_request(since: dt.date, kind: RecentDmpKind) -> etree._Element:
    """TD0.4 (``patientsSpecific``) [I: children]::

    <pat:patientList xmlns:pat="urn:si-dmp-patients">
      <pat:date>20250101</pat:date><pat:type>LASTAUTORIZATION</pat:type>
    </pat:patientList>
    """
    return _plain(PATIENTS_NS, "patientList", [("date", since.strftime("%Y%m%d")), ("type", kind.value)])


def parse_patient_list_request(element: etree._Element) -> tuple[dt.date, RecentDmpKind]:
    """Read TD0.4 (the sandbox's side)."""
    what = "the patientList request"
    _check_root(element, PATIENTS_NS, "patientList", what)
    since = _read_ts(_required_text(element, "date", what), f"{what}: date").date()
    try:
        kind = RecentDmpKind(_required_text(element, "type", what))
    except ValueError:
        raise MalformedResponseError(f"{what}: type is neither LASTAUTORIZATION nor LASTDOC") from None
    return since, kind


def build_patient_list_response(status: ServiceStatus, patients: Sequence[RecentDmp] = ()) -> etree._Element:
    """The TD0.4 answer [I]::

    <pat:patientListResponse xmlns:pat="urn:si-dmp-patients"><pat:status>DMPOK</pat:status>
      <pat:patient><pat:patientId>…CX…</pat:patientId><pat:lastName>…</pat:lastName><pat:firstName>…</pat:firstName>
        <pat:birthDate>19970226</pat:birthDate><pat:date>20250102030405</pat:date></pat:patient>
    </pat:patientListResponse>
    """
    root = _plain(PATIENTS_NS, "patientListResponse", _status_children(status))
    for patient in patients:
        row = etree.SubElement(root, f"{{{PATIENTS_NS}}}patient")
        for tag, text in (
            ("patientId", patient.ins.to_xds_cx()),
            ("lastName", patient.family_name),
            ("firstName", patient.given_name),
            ("birthDate", _birth_text(patient.birth_date) if patient.birth_date is not None else None),
            ("date", _ts(patient.date) if patient.date is not None else None),
        ):
            if text is not None:
                etree.SubElement(row, f"{{{PATIENTS_NS}}}{tag}").text = text
    return root


def parse_patient_list_response(element: etree._Element) -> tuple[ServiceStatus, tuple[RecentDmp, ...]]:
    """Read the TD0.4 answer."""
    what = "the patientList answer"
    _check_root(element, PATIENTS_NS, "patientListResponse", what)
    patients = []
    for row in _children(element, "patient"):
        where = f"{what}: a patient"
        birth = _child_text(row, "birthDate")
        when = _child_text(row, "date")
        patients.append(
            RecentDmp(
                ins=_read_cx(_required_text(row, "patientId", where), where),
                family_name=_child_text(row, "lastName"),
                given_name=_child_text(row, "firstName"),
                birth_date=_read_birth_date(birth, f"{where}: birthDate") if birth else None,
                date=_read_ts(when, f"{where}: date") if when else None,
            )
        )
    return _read_status(element, what), tuple(patients)
