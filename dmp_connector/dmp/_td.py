"""The wire form of the DMP-specific transactions ("TD"), both directions, in one place.

The DMP's integration guide is not public. The bodies here follow public client implementations
that ran against the DMP (reference notes ``dmp_td.md``: the ANS/CNAM C# editor kit, Mediboard,
DRIMbox, MagicDMP, DmpConnect-JS); each builder and reader says which parts are confirmed [V] and
which are inferred [I]. In short:

* TD0.2 / TD1.3a: ``PRPA_IN201307UV02`` (``reasonCode`` ``TEST_EXST`` / ``CNSLT_DATA``) answered by
  ``PRPA_IN201308UV02``: the authorisation and the médecin-traitant status in the message's
  ``attentionLine`` (``AUTORISATION`` = ``VALIDE``/``INTERDIT``/``EXPIRE``/``NON_EXISTE``,
  ``STATUT_MT``), the DMP's state in ``patient/statusCode`` (``active``/``terminated``), the
  closing date in ``registrationEvent/effectiveTime`` and its reason in
  ``controlActProcess/reasonOf/detectedIssueEvent`` [V];
* TD1.x: ``PRPA_IN201311UV02`` (``CREA_RD``) and ``PRPA_IN201314UV02`` (``REAC``, ``MODIF_DATA``,
  ``FERM``), consents and oppositions as ``patient/subjectOf/administrativeObservation``, closing
  as ``reasonOf/detectedIssueEvent FERMETURE_DEMANDE_PATIENT`` [V];
* TD0.3 / list of authorisations: ``setAuthorization`` (``action``, ``role``) and
  ``listAuthorizationByPatient`` (``mode``) with no patient id — the VIHF names the patient —
  answered by ``status``/``context`` and ``listOfAuthorizationByPatient`` rows [V; ``role`` I];
* TD0.4: ``patientList`` answered by ``patientlistData`` rows [V]; the request's element names and
  date format are not public [I, the format is a setting];
* TD0.5: IHE PDQv3, whose answer carries ``acknowledgement/typeCode`` as an element [V].

Builders return lxml elements (the SOAP body); readers take an element already parsed by
:func:`dmp_connector.xml.parse_xml` (``SoapMessage.payload``) and raise
:class:`~dmp_connector.errors.MalformedResponseError` for a shape they do not know — strictly where
a wrong reading would mislead (an unknown authorisation value is an error, never "none"), tolerantly
where the sources differ (``DMPOK``/``DMPOk``, the acknowledgement's typeCode as attribute or
element). The sandbox (``dmp_connector.sandbox.dmp``) reads our requests and writes its answers with
the same functions. Nothing here decides whether an answer is a refusal: :mod:`dmp_connector.dmp.td` does.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Final, Literal, cast

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.codes import Code
from dmp_connector.errors import DmpConnectorError, MalformedResponseError, ValidationError
from dmp_connector.ins import INS, BirthDate, Sex

__all__ = [
    "CLOSURE_SYSTEM",
    "DMP_DEVICE_ROOT",
    "DMP_INFO_SYSTEM",
    "HABILITATIONS_NS",
    "HL7",
    "PATIENTS_NS",
    "REASON_SYSTEM",
    "SPECIALTY_SYSTEM",
    "VITALE_SYSTEM",
    "AckDetail",
    "AckType",
    "Acknowledgement",
    "Address",
    "AdministrativeData",
    "AuthorisationAction",
    "AuthorisationStatus",
    "AuthorisedProfessional",
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
    "RegistrationAuthor",
    "RegistrationKind",
    "RegistrationRequest",
    "ServiceStatus",
    "TdAction",
    "VitaleCard",
    "build_find_candidates_request",
    "build_find_candidates_response",
    "build_list_authorisations_request",
    "build_list_authorisations_response",
    "build_patient_list_request",
    "build_patient_list_response",
    "build_patient_query_request",
    "build_patient_query_response",
    "build_registration_request",
    "build_registration_response",
    "build_set_authorisation_request",
    "build_set_authorisation_response",
    "parse_find_candidates_request",
    "parse_find_candidates_response",
    "parse_list_authorisations_request",
    "parse_list_authorisations_response",
    "parse_patient_list_request",
    "parse_patient_list_response",
    "parse_patient_query_request",
    "parse_patient_query_response",
    "parse_registration_request",
    "parse_registration_response",
    "parse_set_authorisation_request",
    "parse_set_authorisation_response",
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
"""Code system of the ``controlActProcess/reasonCode`` (``TEST_EXST``, ``CREA_RD`` … [V kit, Mediboard])."""
DMP_INFO_SYSTEM: Final = "1.2.250.1.213.4.1.2.3"
"""Code system of the consents and oppositions (``patient/subjectOf/administrativeObservation/code``) [V kit]."""
CLOSURE_SYSTEM: Final = "1.2.250.1.213.4.1.2.4"
"""Code system of the closing reason (``reasonOf/detectedIssueEvent/code``) [V kit]."""
VITALE_SYSTEM: Final = "1.2.250.1.213.4.1.2.5"
"""Code system of the Carte Vitale ``contactParty`` (``CARTE_SESAM_VITALE``) of TD1.1 [V kit]."""
SPECIALTY_SYSTEM: Final = "1.2.250.1.213.1.1.4.5"
"""Code system of the author's specialty (``G15_10/SM04`` …) [V kit]."""
_IDNAT_ST: Final = "1.2.250.1.71.4.2.2"
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


_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)


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
    """``controlActProcess/reasonCode`` of a ``PRPA_IN201307UV02`` query [V kit, Mediboard, DRIMbox]."""

    TEST_EXISTENCE = "TEST_EXST"
    """TD0.2: does the patient have a DMP, and this professional's authorisation."""
    ADMINISTRATIVE_DATA = "CNSLT_DATA"
    """TD1.3a: "consultation des données de gestion de dossier" (administrative data and oppositions)."""


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
    """State of an existing DMP: ``patient/statusCode`` of the TD0.2 answer [V Mediboard, kit]."""

    ACTIVE = "active"
    """Open: documents can be deposited and consulted."""
    CLOSED = "terminated"
    """Closed (TD1.4); it can be reactivated (TD1.2)."""


class AuthorisationStatus(StrEnum):
    """This professional's authorisation on the DMP: ``attentionLine AUTORISATION`` of TD0.2 [V MagicDMP, DevBox].

    The member names are English, their values the DMP's words: ``VALID`` is ``"VALIDE"``,
    ``FORBIDDEN`` ``"INTERDIT"``, ``EXPIRED`` ``"EXPIRE"``, ``NONE`` ``"NON_EXISTE"``
    (``AuthorisationStatus("VALIDE") is AuthorisationStatus.VALID``).
    """

    VALID = "VALIDE"
    """``"VALIDE"``: authorised, consultation allowed."""
    FORBIDDEN = "INTERDIT"
    """``"INTERDIT"``: blocked by the patient, no access, even with bris de glace."""
    EXPIRED = "EXPIRE"
    """``"EXPIRE"``: the authorisation has expired."""
    NONE = "NON_EXISTE"
    """``"NON_EXISTE"``: no authorisation exists."""


class ClosureReason(StrEnum):
    """``reasonOf/detectedIssueEvent/code`` of a closure (code system :data:`CLOSURE_SYSTEM`).

    Only the patient's request is public [V kit]; another code the DMP answers with is kept as a string.
    """

    PATIENT_REQUEST = "FERMETURE_DEMANDE_PATIENT"
    """The patient asked for it."""


class Closure(BaseModel):
    """A DMP closure: its reason, free text, and (in answers) its date."""

    model_config = _FROZEN

    reason: ClosureReason | str | None = ClosureReason.PATIENT_REQUEST
    """``ClosureReason`` code (an unknown code is kept as a string); None when an answer gives none."""
    text: str | None = None
    """``detectedIssueEvent/text``: the free-text explanation."""
    date: dt.date | None = None
    """When the DMP was closed (answers only: ``registrationEvent/effectiveTime/@value``)."""


class Oppositions(BaseModel):
    """The patient's oppositions to the exceptional access modes (TD1.1, TD1.3)."""

    model_config = _FROZEN

    bris_de_glace: bool = False
    """``OPPOSITION_BRIS_DE_GLACE``: the patient refuses emergency (bris de glace) access."""
    centre_15: bool = False
    """``OPPOSITION_ACCES_URGENCE``: the patient refuses access by a regulation centre (centre 15)."""


class Address(BaseModel):
    """A postal address (``patientPerson/addr``) [V kit: street line, postal code, city, country]."""

    model_config = _FROZEN

    street_lines: tuple[str, ...] = ()
    """``streetAddressLine`` parts, in order."""
    postal_code: str | None = None
    """``postalCode``."""
    city: str | None = None
    """``city``."""
    country: str | None = None
    """``country`` (as text, e.g. ``France``)."""


class VitaleCard(BaseModel):
    """The Carte Vitale holder's traits sent with TD1.1 (``contactParty`` coded ``CARTE_SESAM_VITALE``) [V kit].

    Give them as read from the card: the birth date stays the card's text (it may be a lunar date).
    """

    model_config = _FROZEN

    birth_name: str | None = Field(default=None, min_length=1)
    """``family[@qualifier=BR]``."""
    used_name: str | None = Field(default=None, min_length=1)
    """``family[@qualifier=SP]``."""
    given_name: str | None = Field(default=None, min_length=1)
    """``given``."""
    birth_date: str | None = Field(default=None, pattern=r"^[0-9]{6,8}$")
    """``birthTime/@value`` as on the card (``YYMMDD`` in the kit's example, or ``YYYYMMDD``)."""


class AdministrativeData(BaseModel):
    """A DMP's administrative data: civil status, contact details, oppositions (TD1.1, TD1.3)."""

    model_config = _FROZEN

    ins: INS
    """The patient's INS."""
    birth_name: str = Field(min_length=1)
    """Nom de naissance (``family[@qualifier=BR]``)."""
    given_names: str = Field(min_length=1)
    """Prénoms (first one first)."""
    sex: Sex
    """Administrative sex."""
    birth_date: BirthDate
    """Birth date (partial dates are kept)."""
    used_name: str | None = None
    """Nom d'usage (``family[@qualifier=SP]``). The DMP requires one: the birth name is sent when None."""
    civility: str | None = None
    """Civilité (``name/prefix``), as the DMP's vocabulary spells it (the kit sends ``M``) [I: list not public]."""
    email: str | None = None
    """Contact address for the DMP's notifications (``telecom mailto:``)."""
    mobile_phone: str | None = None
    """Mobile phone for the DMP's notifications (``telecom use=MC``)."""
    home_phone: str | None = None
    """Home phone (``telecom use=HP``)."""
    address: Address | None = None
    """Postal address."""
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
    authorisation: AuthorisationStatus | None = None
    """This professional's authorisation (``VALID`` = "VALIDE", ``FORBIDDEN`` = "INTERDIT", ``EXPIRED`` = "EXPIRE",
    ``NONE`` = "NON_EXISTE"); None when the answer has none."""
    treating_doctor: bool | None = None
    """``attentionLine STATUT_MT``: True when this professional is the patient's "médecin traitant DMP"."""
    attached_to_mes: bool | None = None
    """``administrativeObservation RATTACHEMENT_ENS`` when present [single source]."""
    closure: Closure | None = None
    """Closing date, reason and text of a closed DMP."""

    @property
    def active(self) -> bool:
        """True when the DMP exists and is open."""
        return self.exists and self.state is DmpState.ACTIVE

    @property
    def authorization(self) -> AuthorisationStatus | None:
        """Deprecated spelling of :attr:`authorisation` (removed in the next release)."""
        warnings.warn(
            "DmpStatus.authorization is deprecated: use DmpStatus.authorisation", DeprecationWarning, stacklevel=2
        )
        return self.authorisation


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
    """``controlActProcess/reasonCode`` of a TD1.x request [V kit, Mediboard]."""

    CREATE = "CREA_RD"
    """TD1.1: create the DMP (``PRPA_IN201311UV02``)."""
    REACTIVATE = "REAC"
    """TD1.2: reopen a closed DMP."""
    UPDATE = "MODIF_DATA"
    """TD1.3b: replace the administrative data (and oppositions)."""
    CLOSE = "FERM"
    """TD1.4: close the DMP."""

    @property
    def interaction(self) -> str:
        """The HL7 interaction of the request."""
        return "PRPA_IN201311UV02" if self is RegistrationKind.CREATE else "PRPA_IN201314UV02"


class RegistrationAuthor(BaseModel):
    """``registrationRequest/author/assignedEntity``: the professional and their organisation [V kit]."""

    model_config = _FROZEN

    national_id: str = Field(min_length=1)
    """IdNat_PS (``id`` root ``1.2.250.1.71.4.2.1``)."""
    specialty: Code | None = None
    """``code``: the specialty (``G15_10/SM04`` in ``1.2.250.1.213.1.1.4.5`` in the kit)."""
    family_name: str | None = None
    """``assignedPerson/name/family``."""
    given_name: str | None = None
    """``assignedPerson/name/given``."""
    organisation_id: str | None = None
    """Struct_IdNat (``representedOrganization/id`` root ``1.2.250.1.71.4.2.2``)."""
    organisation_name: str | None = None
    """``representedOrganization/name``."""


class RegistrationRequest(BaseModel):
    """A TD1.x request: create, reactivate, update or close a patient's DMP."""

    model_config = _FROZEN

    kind: RegistrationKind
    """What to do."""
    ins: INS
    """The patient's INS."""
    data: AdministrativeData | None = None
    """The administrative data: required to create and to update; its names go with a reactivation or closure."""
    consent: bool | None = None
    """The patient's consent (``CONSENTEMENT_OUVERTURE_DMP`` / ``CONSENTEMENT_REACTIVATION_DMP``):
    required, and True, to create and to reactivate."""
    consent_time: dt.datetime | None = None
    """When the consent was collected (``administrativeObservation/effectiveTime``)."""
    vitale: VitaleCard | None = None
    """TD1.1: the Carte Vitale holder (``contactParty CARTE_SESAM_VITALE``)."""
    closure: Closure | None = None
    """The closure's reason: required to close."""
    author: RegistrationAuthor | None = None
    """The acting professional and their organisation."""


class RegistrationAnswer(BaseModel):
    """The answer to a TD1.x request (``…12UV02``/``…15UV02`` accept, ``…13UV02``/``…16UV02`` reject)."""

    model_config = _FROZEN

    interaction: str
    """The answer's interaction id (``PRPA_IN201312UV02`` …)."""
    acknowledgement: Acknowledgement
    """AA, or AE/AR with ``DMPFound`` / ``DMPClosed`` …"""


class AuthorisationAction(StrEnum):
    """``action`` of ``setAuthorization`` (TD0.3) [V DRIMbox, kit]."""

    ADD = "AJOUT"
    REMOVE = "SUPPRESSION"


class AuthorisedProfessional(BaseModel):
    """One row of ``listOfAuthorizationByPatient`` [V kit: nationalId, firstName, lastName]."""

    model_config = _FROZEN

    national_id: str = Field(min_length=1)
    """``nationalId``: IdNat_PS (``8`` + RPPS …)."""
    family_name: str | None = None
    """``lastName``."""
    given_name: str | None = None
    """``firstName``."""
    treating_doctor: bool | None = None
    """Whether authorised as médecin traitant: not in the public rows, so None unless a ``role`` child says it [I]."""


class RecentDmpKind(StrEnum):
    """``type`` of ``patientList`` (TD0.4) [V kit ``dateTypeEnum``]."""

    LAST_AUTHORISATION = "LASTAUTORIZATION"
    """``"LASTAUTORIZATION"``: DMPs on which this professional was authorised since the date."""
    LAST_AUTHORIZATION = "LASTAUTORIZATION"
    """Deprecated alias of ``LAST_AUTHORISATION`` (an enum alias cannot warn; removed in the next release)."""
    LAST_DOCUMENT = "LASTDOC"
    """DMPs where this professional deposited a document since the date."""


class RecentDmp(BaseModel):
    """One ``patientlistData`` row of a TD0.4 answer [V kit: firstName, lastName, dateOfBirth, message].

    The public rows name no INS: check the patient with TD0.2 before using the DMP.
    """

    model_config = _FROZEN

    ins: INS | None = None
    """The patient's INS, when the row carries one [I: not in the kit's rows]."""
    family_name: str | None = None
    """``lastName``."""
    given_name: str | None = None
    """``firstName``."""
    birth_date: BirthDate | None = None
    """``dateOfBirth`` when it reads as ``YYYYMMDD``, ``YYYY-MM-DD`` or ``DD/MM/YYYY``."""
    birth_date_text: str | None = None
    """``dateOfBirth`` as the DMP wrote it (its format is not public)."""
    message: str | None = None
    """``message``: the DMP's note on the row."""
    date: dt.datetime | None = None
    """When the authorisation or the last document happened, when the row says it [I]."""


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
    approximate: bool = False
    """Approximate matching of names and address (``use="SRCH"`` [V Mediboard])."""
    query_id: str = ""
    """``queryId/@extension``; the operation sets it to the message id when empty."""
    max_results: int | None = Field(default=None, ge=1)
    """``initialQuantity``: the most candidates wanted (neither public client sends it: off by default)."""


class PatientCandidate(BaseModel):
    """One patient of a PDQv3 answer."""

    model_config = _FROZEN

    ins: INS | None = None
    """The INS, when the DMP gives one (an id whose root is an INS OID)."""
    family_name: str | None = None
    """Birth name (``family[@qualifier=BR]``, else the unqualified family)."""
    used_name: str | None = None
    """Used name (``family[@qualifier=SP]``)."""
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


def _acknowledgement(
    root: etree._Element, header: Hl7Header, ack: Acknowledgement, *, type_code_element: bool = False
) -> None:
    """``<acknowledgement typeCode="AE"><targetMessage><id …/></targetMessage>
    <acknowledgementDetail typeCode="E"><code code="DMPClosed" codeSystem="…"/><text>…</text>…``

    ``type_code_element``: write ``<typeCode code="AA"/>`` as a child instead (the PDQv3 answer's
    form, NE2008 schema [V Mediboard, kit]).
    """
    element = _sub(root, "acknowledgement")
    if type_code_element:
        _sub(element, "typeCode", code=ack.type_code.value)
    else:
        element.set("typeCode", ack.type_code.value)
    target = _sub(element, "targetMessage")
    _sub(target, "id", root=header.receiver_root, extension=header.target_message_id or "")
    for detail in ack.details:
        row = _sub(element, "acknowledgementDetail", typeCode=detail.type_code)
        _sub(row, "code", code=detail.code, codeSystem=REASON_SYSTEM)
        if detail.text:
            _sub(row, "text", detail.text)


def _read_acknowledgement(root: etree._Element, what: str) -> Acknowledgement:
    """The acknowledgement, its typeCode as an attribute (TD0.2, TD1.x) or a child element (TD0.5):
    the public sources show both, so both are read; two that disagree are malformed."""
    element = _need(root, "v3:acknowledgement", what)
    attribute = element.get("typeCode")
    child = _opt(element, "v3:typeCode")
    child_code = child.get("code") if child is not None else None
    if attribute is not None and child_code is not None and attribute != child_code:
        raise MalformedResponseError(f"{what} has two acknowledgement typeCodes that disagree")
    try:
        type_code = AckType(attribute if attribute is not None else (child_code or ""))
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


def _administrative_observation(
    patient: etree._Element, code: str, value: bool, *, display: str | None = None, when: dt.datetime | None = None
) -> None:
    """One consent or opposition [V kit]::

    <subjectOf typeCode="SBJ"><administrativeObservation classCode="OBS" moodCode="EVN">
      <code code="OPPOSITION_ACCES_URGENCE" codeSystem="1.2.250.1.213.4.1.2.3"/>
      <effectiveTime value="20250102030405"/>                         (consents: when it was collected)
      <value xsi:type="BL" value="false"/>
    </administrativeObservation></subjectOf>
    """
    observation = _sub(
        _sub(patient, "subjectOf", typeCode="SBJ"), "administrativeObservation", classCode="OBS", moodCode="EVN"
    )
    attributes = {"code": code, "codeSystem": DMP_INFO_SYSTEM}
    if display:
        attributes["displayName"] = display
    _sub(observation, "code", **attributes)
    if when is not None:
        _sub(observation, "effectiveTime", value=_ts(when))
    holder = _sub(observation, "value", value=_bool(value))
    holder.set(f"{{{XSI}}}type", "BL")


def _administrative_observations(patient: etree._Element, where: str) -> dict[str, bool]:
    """``patient/subjectOf/administrativeObservation`` rows as code → boolean (a non-boolean value is malformed)."""
    found: dict[str, bool] = {}
    path = "v3:subjectOf/v3:administrativeObservation"
    for observation in patient.iterfind(path, namespaces={"v3": HL7}):
        code = _opt(observation, "v3:code")
        value = _opt(observation, "v3:value")
        name = code.get("code") if code is not None else None
        if name and value is not None:
            found[name] = _read_bool(value.get("value"), f"{where}: {name}")
    return found


_CONSENT: Final = {
    "CREA_RD": ("CONSENTEMENT_OUVERTURE_DMP", "Consentement à l'ouverture du DMP"),
    "REAC": ("CONSENTEMENT_REACTIVATION_DMP", "Consentement à la réactivation du DMP"),
}
_OPPOSITION_BDG: Final = "OPPOSITION_BRIS_DE_GLACE"
_OPPOSITION_C15: Final = "OPPOSITION_ACCES_URGENCE"


def _write_oppositions(patient: etree._Element, oppositions: Oppositions) -> None:
    _administrative_observation(patient, _OPPOSITION_BDG, oppositions.bris_de_glace)
    _administrative_observation(patient, _OPPOSITION_C15, oppositions.centre_15)


def _read_oppositions(rows: dict[str, bool]) -> Oppositions:
    return Oppositions(bris_de_glace=rows.get(_OPPOSITION_BDG, False), centre_15=rows.get(_OPPOSITION_C15, False))


def _name(person: etree._Element, data: AdministrativeData, *, civility: bool = True) -> None:
    """``<name><prefix>M</prefix><family qualifier="SP">…</family><family qualifier="BR">…</family><given>…</given>``:
    the used name is mandatory (the birth name stands in for it) [V kit, MagicDMP "Nom d'usage obligatoire"]."""
    name = _sub(person, "name")
    if civility and data.civility:
        _sub(name, "prefix", data.civility)
    _sub(name, "family", data.used_name or data.birth_name, qualifier="SP")
    _sub(name, "family", data.birth_name, qualifier="BR")
    _sub(name, "given", data.given_names)


def _address(parent: etree._Element, address: Address) -> None:
    element = _sub(parent, "addr")
    for line in address.street_lines:
        _sub(element, "streetAddressLine", line)
    if address.postal_code:
        _sub(element, "postalCode", address.postal_code)
    if address.city:
        _sub(element, "city", address.city)
    if address.country:
        _sub(element, "country", address.country)


def _read_address(person: etree._Element) -> Address | None:
    element = _opt(person, "v3:addr")
    if element is None:
        return None
    lines = tuple(
        text for line in element.iterfind("v3:streetAddressLine", namespaces={"v3": HL7}) if (text := _text(line))
    )
    return Address(
        street_lines=lines,
        postal_code=_text(_opt(element, "v3:postalCode")),
        city=_text(_opt(element, "v3:city")),
        country=_text(_opt(element, "v3:country")),
    )


def _person(parent: etree._Element, data: AdministrativeData) -> etree._Element:
    """The full ``patientPerson`` of TD1.1 / TD1.3b (and of the TD1.3a answer) [V kit]."""
    person = _sub(parent, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
    _name(person, data)
    if data.home_phone:
        _sub(person, "telecom", value=f"tel:{data.home_phone}", use="HP")
    if data.mobile_phone:
        _sub(person, "telecom", value=f"tel:{data.mobile_phone}", use="MC")
    if data.email:
        _sub(person, "telecom", value=f"mailto:{data.email}")
    _sub(person, "administrativeGenderCode", code=_GENDER[data.sex], codeSystem="2.16.840.1.113883.5.1")
    _sub(person, "birthTime", value=_birth_text(data.birth_date))
    if data.address is not None:
        _address(person, data.address)
    return person


_GENDER: Final = {Sex.M: "M", Sex.F: "F", Sex.I: "UN"}
_SEX_OF: Final = {"M": Sex.M, "F": Sex.F, "UN": Sex.I, "U": Sex.I}


def _read_person(patient: etree._Element, ins: INS, oppositions: Oppositions, where: str) -> AdministrativeData:
    person = _need(patient, "v3:patientPerson", where)
    birth_name = used_name = plain = None
    for family in person.iterfind("v3:name/v3:family", namespaces={"v3": HL7}):
        text = (family.text or "").strip() or None
        qualifier = family.get("qualifier")
        if qualifier == "SP":
            used_name = used_name or text
        elif qualifier == "BR":
            birth_name = birth_name or text
        else:
            plain = plain or text
    birth_name = birth_name or plain or used_name
    given = _opt(person, "v3:name/v3:given")
    prefix = _opt(person, "v3:name/v3:prefix")
    email = mobile = home = None
    for telecom in person.iterfind("v3:telecom", namespaces={"v3": HL7}):
        value = telecom.get("value") or ""
        if value.startswith("mailto:"):
            email = value[len("mailto:") :]
        elif value.startswith("tel:") and telecom.get("use") == "HP":
            home = value[len("tel:") :]
        elif value.startswith("tel:"):
            mobile = value[len("tel:") :]
    gender = _need(person, "v3:administrativeGenderCode", where).get("code") or ""
    if gender not in _SEX_OF:
        raise MalformedResponseError(f"{where}: administrativeGenderCode is not M, F or UN")
    birth = _need(person, "v3:birthTime", where).get("value")
    if not birth_name or given is None or not (given.text or "").strip():
        raise MalformedResponseError(f"{where}: the patient's name lacks a family or given name")
    return AdministrativeData(
        ins=ins,
        birth_name=birth_name,
        used_name=used_name if used_name != birth_name else None,
        given_names=(given.text or "").strip(),
        civility=_text(prefix),
        sex=_SEX_OF[gender],
        birth_date=_read_birth_date(birth, f"{where}: birthTime"),
        email=email,
        mobile_phone=mobile,
        home_phone=home,
        address=_read_address(person),
        oppositions=oppositions,
    )


def _attention_line(root: etree._Element, keyword: str, value_type: str, **value: str) -> None:
    """``<attentionLine><keyWordText code="AUTORISATION"/><value xsi:type="CV" code="VALIDE"/></attentionLine>``
    [V Mediboard, Dehempe: keyword and value attribute; the value's xsi:type is ours]."""
    line = _sub(root, "attentionLine")
    _sub(line, "keyWordText", code=keyword)
    holder = _sub(line, "value", **value)
    holder.set(f"{{{XSI}}}type", value_type)


def _attention_value(root: etree._Element, keyword: str, attribute: str, where: str) -> str | None:
    """The ``attentionLine`` whose ``keyWordText/@code`` is ``keyword``: its value's ``attribute``."""
    found = None
    for line in root.iterfind("v3:attentionLine", namespaces={"v3": HL7}):
        key = _opt(line, "v3:keyWordText")
        if key is None or key.get("code") != keyword:
            continue
        if found is not None:
            raise MalformedResponseError(f"{where} has two attentionLine {keyword}")
        value = _opt(line, "v3:value")
        found = (value.get(attribute) if value is not None else None) or ""
        if not found:
            raise MalformedResponseError(f"{where}: attentionLine {keyword} has no value")
    return found


_MES_ATTACHMENT: Final = "RATTACHEMENT_ENS"
"""The DMP's attachment to Mon espace santé (one public source: Dehempe) [I]."""


# ============================================================================ TD0.2 / TD1.3a


def build_patient_query_request(query: PatientQuery, header: Hl7Header) -> etree._Element:
    """TD0.2 (``TEST_EXST``) or TD1.3a (``CNSLT_DATA``) [V kit, Mediboard, DRIMbox]::

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
    display = (
        "Test d'existence de dossier"
        if query.reason is QueryReason.TEST_EXISTENCE
        else "Consultation des données de gestion de dossier"
    )
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
    """The ``PRPA_IN201308UV02`` answer (the sandbox's side), as the public readers find it [V Mediboard, kit]::

    <PRPA_IN201308UV02 …>…wrapper…
      <attentionLine><keyWordText code="AUTORISATION"/><value xsi:type="CV" code="VALIDE"/></attentionLine>
      <attentionLine><keyWordText code="STATUT_MT"/><value xsi:type="BL" value="true"/></attentionLine>
      <acknowledgement typeCode="AA">…</acknowledgement>
      <controlActProcess classCode="CACT" moodCode="EVN">
        <reasonCode code="TEST_EXST" …/>
        <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN">
          <statusCode code="active"/>                                (completed once closed [I])
          <effectiveTime value="20240601"/>                          (closed: the closing date)
          <subject1 typeCode="SBJ"><patient classCode="PAT"><id root="<INS OID>" extension="<matricule>"/>
            <statusCode code="active"/>                              (terminated: closed)
            <patientPerson>…(CNSLT_DATA)…</patientPerson>
            <subjectOf><administrativeObservation>…OPPOSITION_BRIS_DE_GLACE / OPPOSITION_ACCES_URGENCE (CNSLT_DATA),
              RATTACHEMENT_ENS…</administrativeObservation></subjectOf>
          </patient></subject1>
          <custodian typeCode="CST"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.213.4.1.1.1"/>…
        </registrationEvent></subject>
        <reasonOf typeCode="RSON"><detectedIssueEvent classCode="ALRT" moodCode="EVN">
          <code code="FERMETURE_DEMANDE_PATIENT" codeSystem="1.2.250.1.213.4.1.2.4"/><text>…</text>
        </detectedIssueEvent></reasonOf>                             (closed)
        <queryAck><queryId …/><queryResponseCode code="OK"/></queryAck>       (NF: no DMP)
      </controlActProcess>
    </PRPA_IN201308UV02>
    """
    root = _wrapper("PRPA_IN201308UV02", header)
    if status.exists and status.authorisation is not None:
        _attention_line(root, "AUTORISATION", "CV", code=status.authorisation.value)
    if status.exists and status.treating_doctor is not None:
        _attention_line(root, "STATUT_MT", "BL", value=_bool(status.treating_doctor))
    _acknowledgement(root, header, acknowledgement)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "reasonCode", code=reason.value, codeSystem=REASON_SYSTEM)
    closure = status.closure
    if status.exists:
        closed = status.state is DmpState.CLOSED
        event = _sub(_sub(control, "subject", typeCode="SUBJ"), "registrationEvent", classCode="REG", moodCode="EVN")
        _sub(event, "statusCode", code="completed" if closed else "active")
        if closure is not None and closure.date is not None:
            _sub(event, "effectiveTime", value=closure.date.strftime("%Y%m%d"))
        patient = _sub(_sub(event, "subject1", typeCode="SBJ"), "patient", classCode="PAT")
        ins = status.ins or (administrative.ins if administrative is not None else None)
        if ins is not None:
            _patient_id(patient, ins)
        _sub(patient, "statusCode", code=(status.state or DmpState.ACTIVE).value)
        if administrative is not None:
            _person(patient, administrative)
            _write_oppositions(patient, administrative.oppositions)
        if status.attached_to_mes is not None:
            _administrative_observation(patient, _MES_ATTACHMENT, status.attached_to_mes)
        custodian = _sub(_sub(event, "custodian", typeCode="CST"), "assignedEntity", classCode="ASSIGNED")
        _sub(custodian, "id", root=DMP_DEVICE_ROOT)
        if closure is not None and closure.reason:
            _closure_reason(control, closure)
    ack = _sub(control, "queryAck")
    _sub(ack, "queryId", root=header.receiver_root, extension=query_id or "")
    _sub(ack, "queryResponseCode", code="OK" if status.exists else "NF")
    return root


def _closure_reason(control: etree._Element, closure: Closure) -> None:
    """``<reasonOf typeCode="RSON"><detectedIssueEvent classCode="ALRT" moodCode="EVN"><code …/><text>…``"""
    event = _sub(_sub(control, "reasonOf", typeCode="RSON"), "detectedIssueEvent", classCode="ALRT", moodCode="EVN")
    _sub(event, "code", code=str(closure.reason), codeSystem=CLOSURE_SYSTEM)
    if closure.text:
        _sub(event, "text", closure.text)


def _read_closure_reason(control: etree._Element) -> tuple[ClosureReason | str, str | None] | None:
    code = _opt(control, "v3:reasonOf/v3:detectedIssueEvent/v3:code")
    if code is None or not code.get("code"):
        return None
    raw = code.get("code") or ""
    reason: ClosureReason | str = ClosureReason(raw) if raw in ClosureReason._value2member_map_ else raw
    return reason, _text(_opt(control, "v3:reasonOf/v3:detectedIssueEvent/v3:text"))


_EVENT_STATES: Final = {"active": DmpState.ACTIVE, "completed": DmpState.CLOSED, "terminated": DmpState.CLOSED}


def parse_patient_query_response(element: etree._Element, *, reason: QueryReason | None = None) -> PatientQueryAnswer:
    """Read a ``PRPA_IN201308UV02``: the acknowledgement, the DMP status and any administrative data.

    The state is ``patient/statusCode`` (``active``/``terminated``) [V Mediboard]; without it,
    ``registrationEvent/statusCode`` (the kit logs both). An authorisation value outside
    ``VALIDE``/``INTERDIT``/``EXPIRE``/``NON_EXISTE`` is malformed, never read as "no authorisation".
    ``reason``: the patient's data are read (strictly) for ``CNSLT_DATA``, left aside for
    ``TEST_EXST``; None reads them when present.
    """
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
    if code == "NF" or event is None or control is None:
        if code == "OK":
            raise MalformedResponseError(f"{what} says OK but carries no registrationEvent")
        return PatientQueryAnswer(acknowledgement=acknowledgement, status=DmpStatus(exists=False))
    where = f"{what}: registrationEvent"
    patient = _need(event, "v3:subject1/v3:patient", where)
    state_element = _opt(patient, "v3:statusCode")
    state_code = state_element.get("code") if state_element is not None else None
    if state_code is None:
        fallback = _opt(event, "v3:statusCode")
        state_code = fallback.get("code") if fallback is not None else None
    state = _EVENT_STATES.get(state_code or "")
    if state is None:
        raise MalformedResponseError(f"{where} has no known DMP state (patient/statusCode active or terminated)")
    ident = None
    for candidate in patient.iterfind("v3:id", namespaces={"v3": HL7}):
        if _is_ins_root(candidate.get("root")) and candidate.get("root") != _INS_C_ROOT:
            ident = candidate
            break
    ins = _read_ins(ident.get("root"), ident.get("extension"), f"{where}: patient id") if ident is not None else None
    authorisation = None
    raw = _attention_value(element, "AUTORISATION", "code", what)
    if raw is not None:
        try:
            authorisation = AuthorisationStatus(raw)
        except ValueError:
            raise MalformedResponseError(
                f"{what} has an unknown authorisation status (not VALIDE, INTERDIT, EXPIRE or NON_EXISTE)"
            ) from None
    mt = _attention_value(element, "STATUT_MT", "value", what)
    treating = _read_bool(mt, f"{what}: attentionLine STATUT_MT") if mt is not None else None
    rows = _administrative_observations(patient, where)
    closure = None
    effective = _opt(event, "v3:effectiveTime")
    closed_on = effective.get("value") if effective is not None else None
    reason_of = _read_closure_reason(control)
    if reason_of is not None or (state is DmpState.CLOSED and closed_on):
        closure = Closure(
            reason=reason_of[0] if reason_of is not None else None,
            text=reason_of[1] if reason_of is not None else None,
            date=_read_ts(closed_on, f"{where}: closing date").date() if closed_on else None,
        )
    status = DmpStatus(
        exists=True,
        ins=ins,
        state=state,
        authorisation=authorisation,
        treating_doctor=treating,
        attached_to_mes=rows.get(_MES_ATTACHMENT),
        closure=closure,
    )
    administrative = None
    wanted = reason is QueryReason.ADMINISTRATIVE_DATA or (
        reason is None and _opt(patient, "v3:patientPerson") is not None
    )
    if wanted:
        if ins is None:
            raise MalformedResponseError(f"{where}: administrative data without the patient's INS")
        administrative = _read_person(patient, ins, _read_oppositions(rows), where)
    return PatientQueryAnswer(acknowledgement=acknowledgement, status=status, administrative=administrative)


_INS_C_ROOT: Final = "1.2.250.1.213.1.4.2"
"""INS-C, the former computed INS: answers may carry it beside the INS; it is not the patient's INS."""


# ============================================================================ TD1.x


def _author(registration: etree._Element, author: RegistrationAuthor) -> None:
    """``<author typeCode="AUT"><assignedEntity classCode="ASSIGNED">``: the professional and organisation [V kit]."""
    entity = _sub(_sub(registration, "author", typeCode="AUT"), "assignedEntity", classCode="ASSIGNED")
    _sub(entity, "id", root=_IDNAT_PS, extension=author.national_id)
    if author.specialty is not None:
        attributes = {"code": author.specialty.code, "codeSystem": author.specialty.code_system}
        if author.specialty.display_name:
            attributes["displayName"] = author.specialty.display_name
        _sub(entity, "code", **attributes)
    if author.family_name or author.given_name:
        person = _sub(entity, "assignedPerson", classCode="PSN", determinerCode="INSTANCE")
        name = _sub(person, "name")
        if author.family_name:
            _sub(name, "family", author.family_name)
        if author.given_name:
            _sub(name, "given", author.given_name)
    if author.organisation_id or author.organisation_name:
        organisation = _sub(entity, "representedOrganization", classCode="ORG", determinerCode="INSTANCE")
        if author.organisation_id:
            _sub(organisation, "id", root=_IDNAT_ST, extension=author.organisation_id)
        if author.organisation_name:
            _sub(organisation, "name", author.organisation_name)
        _sub(organisation, "contactParty", classCode="CON")


def _read_author(registration: etree._Element) -> RegistrationAuthor | None:
    entity = _opt(registration, "v3:author/v3:assignedEntity")
    ident = _opt(entity, "v3:id") if entity is not None else None
    if entity is None or ident is None or not ident.get("extension"):
        return None
    code = _opt(entity, "v3:code")
    specialty = None
    if code is not None and code.get("code") and code.get("codeSystem"):
        specialty = Code.of(code.get("code") or "", code.get("codeSystem") or "", code.get("displayName"))
    organisation_id = _opt(entity, "v3:representedOrganization/v3:id")
    return RegistrationAuthor(
        national_id=ident.get("extension") or "",
        specialty=specialty,
        family_name=_text(_opt(entity, "v3:assignedPerson/v3:name/v3:family")),
        given_name=_text(_opt(entity, "v3:assignedPerson/v3:name/v3:given")),
        organisation_id=organisation_id.get("extension") if organisation_id is not None else None,
        organisation_name=_text(_opt(entity, "v3:representedOrganization/v3:name")),
    )


def _vitale(person: etree._Element, card: VitaleCard) -> None:
    """``<contactParty classCode="CON"><code code="CARTE_SESAM_VITALE" …/><contactPerson>…`` [V kit]."""
    party = _sub(person, "contactParty", classCode="CON")
    _sub(party, "code", code="CARTE_SESAM_VITALE", codeSystem=VITALE_SYSTEM)
    contact = _sub(party, "contactPerson", classCode="PSN", determinerCode="INSTANCE")
    name = _sub(contact, "name")
    if card.birth_name:
        _sub(name, "family", card.birth_name, qualifier="BR")
    if card.used_name:
        _sub(name, "family", card.used_name, qualifier="SP")
    if card.given_name:
        _sub(name, "given", card.given_name)
    if card.birth_date:
        _sub(contact, "birthTime", value=card.birth_date)


def _read_vitale(person: etree._Element) -> VitaleCard | None:
    for party in person.iterfind("v3:contactParty", namespaces={"v3": HL7}):
        code = _opt(party, "v3:code")
        if code is None or code.get("code") != "CARTE_SESAM_VITALE":
            continue
        contact = _opt(party, "v3:contactPerson")
        if contact is None:
            return VitaleCard()
        names = {f.get("qualifier"): _text(f) for f in contact.iterfind("v3:name/v3:family", namespaces={"v3": HL7})}
        birth = _opt(contact, "v3:birthTime")
        return VitaleCard(
            birth_name=names.get("BR"),
            used_name=names.get("SP"),
            given_name=_text(_opt(contact, "v3:name/v3:given")),
            birth_date=birth.get("value") if birth is not None else None,
        )
    return None


def build_registration_request(
    request: RegistrationRequest, header: Hl7Header, *, close_status: str = "completed"
) -> etree._Element:
    """TD1.1 (``PRPA_IN201311UV02``) or TD1.2/1.3b/1.4 (``PRPA_IN201314UV02``), told apart by ``reasonCode`` [V kit]::

    <PRPA_IN201314UV02 xmlns="urn:hl7-org:v3" …>…wrapper…
      <controlActProcess classCode="CACT" moodCode="EVN">
        <reasonCode code="FERM" codeSystem="1.2.250.1.213.1.1.4.11" displayName="Fermeture de dossier"/>
        <subject typeCode="SUBJ" contextConductionInd="false"><registrationRequest classCode="REG" moodCode="RQO">
          <statusCode code="completed"/><effectiveTime value="…"/>   (close; active otherwise)
          <subject1 typeCode="SBJ"><patient classCode="PAT"><id root="<INS OID>" extension="<matricule>"/>
            <statusCode code="terminated"/>                            (close; active otherwise)
            <patientPerson classCode="PSN" determinerCode="INSTANCE">
              <name><prefix>M</prefix><family qualifier="SP">…</family><family qualifier="BR">…</family>
                <given>…</given></name>
              <telecom use="HP" value="tel:…"/><telecom use="MC" value="tel:…"/><telecom value="mailto:…"/>
              <administrativeGenderCode code="F"/><birthTime value="19790328"/><addr>…</addr>
              <contactParty classCode="CON"><code code="CARTE_SESAM_VITALE" …/><contactPerson>…</contactPerson>
              </contactParty>                                          (TD1.1, when the card was read)
            </patientPerson>
            <providerOrganization classCode="ORG" determinerCode="INSTANCE"/>      (TD1.1)
            <subjectOf typeCode="SBJ"><administrativeObservation classCode="OBS" moodCode="EVN">
              <code code="CONSENTEMENT_OUVERTURE_DMP" codeSystem="1.2.250.1.213.4.1.2.3"/>
              <effectiveTime value="…"/><value xsi:type="BL" value="true"/></administrativeObservation></subjectOf>
            …OPPOSITION_BRIS_DE_GLACE, OPPOSITION_ACCES_URGENCE (TD1.1, TD1.3b)…
          </patient></subject1>
          <author typeCode="AUT"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.71.4.2.1" extension="8…"/>
            <code code="G15_10/SM04" …/><assignedPerson><name>…</name></assignedPerson>
            <representedOrganization><id root="1.2.250.1.71.4.2.2" …/><name>…</name><contactParty classCode="CON"/>
          </representedOrganization></assignedEntity></author>
        </registrationRequest></subject>
        <reasonOf typeCode="RSON"><detectedIssueEvent classCode="ALRT" moodCode="EVN">      (close)
          <code code="FERMETURE_DEMANDE_PATIENT" codeSystem="1.2.250.1.213.4.1.2.4"/><text>…</text></…>
      </controlActProcess>
    </PRPA_IN201314UV02>

    The registration's status on closing is ``completed`` in the kit and ``terminated`` in
    Mediboard: ``close_status`` (the setting ``dmp.close_registration_status``) chooses.
    """
    if close_status not in ("completed", "terminated"):
        raise ValidationError("the closing registration status is completed or terminated", problems=[close_status])
    return _build_registration(request, header, close_status=close_status)


_DISPLAY: Final = {
    RegistrationKind.CREATE: "Création de dossier",
    RegistrationKind.REACTIVATE: "Réactivation de dossier",
    RegistrationKind.UPDATE: "Modification des données de gestion du dossier",
    RegistrationKind.CLOSE: "Fermeture de dossier",
}


def _build_registration(
    request: RegistrationRequest, header: Hl7Header, *, close_status: str = "completed"
) -> etree._Element:
    kind = request.kind
    if kind in (RegistrationKind.CREATE, RegistrationKind.UPDATE) and request.data is None:
        raise ValidationError(f"a {kind.value} request needs the administrative data", problems=["data: missing"])
    if kind in (RegistrationKind.CREATE, RegistrationKind.REACTIVATE) and request.consent is not True:
        raise ValidationError(f"a {kind.value} request needs the patient's consent", problems=["consent: not given"])
    if kind is RegistrationKind.CLOSE and request.closure is None:
        raise ValidationError("a closing request needs its reason", problems=["closure: missing"])
    root = _wrapper(kind.interaction, header)
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "reasonCode", code=kind.value, codeSystem=REASON_SYSTEM, displayName=_DISPLAY[kind])
    subject = _sub(control, "subject", typeCode="SUBJ", contextConductionInd="false")
    registration = _sub(subject, "registrationRequest", classCode="REG", moodCode="RQO")
    closing = kind is RegistrationKind.CLOSE
    _sub(registration, "statusCode", code=close_status if closing else "active")
    if closing:
        _sub(registration, "effectiveTime", value=_ts(header.creation_time))
    patient = _sub(_sub(registration, "subject1", typeCode="SBJ"), "patient", classCode="PAT")
    _patient_id(patient, request.ins)
    _sub(patient, "statusCode", code="terminated" if closing else "active")
    data = request.data
    if data is not None and kind in (RegistrationKind.CREATE, RegistrationKind.UPDATE):
        person = _person(patient, data)
        if kind is RegistrationKind.CREATE and request.vitale is not None:
            _vitale(person, request.vitale)
    elif data is not None:
        _name(_sub(patient, "patientPerson", classCode="PSN", determinerCode="INSTANCE"), data, civility=closing)
    if kind is RegistrationKind.CREATE:
        _sub(patient, "providerOrganization", classCode="ORG", determinerCode="INSTANCE")
    consent = _CONSENT.get(kind.value)
    if consent is not None:
        when = request.consent_time or header.creation_time
        _administrative_observation(patient, consent[0], True, display=consent[1], when=when)
    if data is not None and kind in (RegistrationKind.CREATE, RegistrationKind.UPDATE):
        _write_oppositions(patient, data.oppositions)
    if request.author is not None:
        _author(registration, request.author)
    if closing and request.closure is not None and request.closure.reason:
        _closure_reason(control, request.closure)
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
    rows = _administrative_observations(patient, what)
    data = vitale = None
    person = _opt(patient, "v3:patientPerson")
    if person is not None and kind in (RegistrationKind.CREATE, RegistrationKind.UPDATE):
        data = _read_person(patient, ins, _read_oppositions(rows), what)
        vitale = _read_vitale(person)
    consent = None
    if kind.value in _CONSENT:
        consent = rows.get(_CONSENT[kind.value][0])
    closure = None
    reason_of = _read_closure_reason(control)
    if reason_of is not None:
        closure = Closure(reason=reason_of[0], text=reason_of[1])
    request = RegistrationRequest(
        kind=kind,
        ins=ins,
        data=data,
        consent=consent,
        vitale=vitale,
        closure=closure,
        author=_read_author(registration),
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
    """TD0.5, IHE PDQv3 Patient Demographics Query [K; DMP usage V Mediboard, kit]::

    <PRPA_IN201305UV02 xmlns="urn:hl7-org:v3" …>…wrapper…
      <controlActProcess classCode="CACT" moodCode="EVN">
        <code code="PRPA_TE201305UV02" codeSystem="2.16.840.1.113883.1.6"/>
        <queryByParameter><queryId …/><statusCode code="new"/>
          <initialQuantity value="20"/>                          (only when max_results is set)
          <parameterList>
            <livingSubjectAdministrativeGender><value code="F"/><semanticsText>LivingSubject.administrativeGender</…>
            <livingSubjectBirthTime><value value="19970226"/>…
            <livingSubjectName><value use="SRCH"><family>ADRTROIS</family><given>DOMINIQUE</given></value>…
            <patientAddress><value use="SRCH"><postalCode>75001</postalCode></value>
              <semanticsText>LivingSubject.addr</semanticsText></patientAddress>    (use="SRCH": approximate)
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
        value = _sub(item, "value", **({"use": "SRCH"} if search.approximate else {}))
        if search.family_name:
            _sub(value, "family", search.family_name)
        if search.given_name:
            _sub(value, "given", search.given_name)
        _sub(item, "semanticsText", "LivingSubject.name")
    if search.postal_code or search.city:
        item = _sub(parameters, "patientAddress")
        value = _sub(item, "value", **({"use": "SRCH"} if search.approximate else {}))
        if search.postal_code:
            _sub(value, "postalCode", search.postal_code)
        if search.city:
            _sub(value, "city", search.city)
        _sub(item, "semanticsText", "LivingSubject.addr")
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
    name_value = _opt(parameters, "v3:livingSubjectName/v3:value")
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
        approximate=name_value is not None and name_value.get("use") == "SRCH",
        query_id=(query_id.get("extension") or "") if query_id is not None else "",
        max_results=int(quantity.get("value") or "0") or None if quantity is not None else None,
    )
    return search, header


def build_find_candidates_response(
    header: Hl7Header, acknowledgement: Acknowledgement, candidates: Sequence[PatientCandidate], *, query_id: str = ""
) -> etree._Element:
    """The PDQv3 answer ``PRPA_IN201306UV02`` (the sandbox's side)::

    <PRPA_IN201306UV02 …>…wrapper…<acknowledgement><typeCode code="AA"/>…</acknowledgement>  [V Mediboard, kit]
      <controlActProcess classCode="CACT" moodCode="EVN">
        <code code="PRPA_TE201306UV02" codeSystem="2.16.840.1.113883.1.6"/>
        <subject typeCode="SUBJ"><registrationEvent classCode="REG" moodCode="EVN"><statusCode code="active"/>
          <subject1 typeCode="SBJ"><patient classCode="PAT"><id root="<INS OID>" extension="…"/>
            <statusCode code="active"/><patientPerson><name><family qualifier="BR">…</family>
              <family qualifier="SP">…</family><given>…</given></name>
            <administrativeGenderCode code="F"/><birthTime value="19970226"/><addr>…</addr></patientPerson>
          </patient></subject1>
          <custodian typeCode="CST"><assignedEntity classCode="ASSIGNED"><id root="1.2.250.1.213.4.1.1.1"/>…
        </registrationEvent></subject>
        <queryAck><queryId …/><queryResponseCode code="OK"/></queryAck>            (NF: none found)
      </controlActProcess>
    </PRPA_IN201306UV02>
    """
    root = _wrapper("PRPA_IN201306UV02", header)
    _acknowledgement(root, header, acknowledgement, type_code_element=True)
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
            _sub(name, "family", candidate.family_name, qualifier="BR")
        if candidate.used_name:
            _sub(name, "family", candidate.used_name, qualifier="SP")
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
    _sub(ack, "resultTotalQuantity", value=str(len(candidates)))
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
            if _is_ins_root(ident.get("root")) and ident.get("root") != _INS_C_ROOT:
                ins = _read_ins(ident.get("root"), ident.get("extension"), where)
                break
        person = _opt(patient, "v3:patientPerson")
        if person is None:
            raise MalformedResponseError(f"{where} has no patientPerson")
        families: dict[str | None, str | None] = {}
        for family in person.iterfind("v3:name/v3:family", namespaces={"v3": HL7}):
            families.setdefault(family.get("qualifier"), _text(family))
        given = _opt(person, "v3:name/v3:given")
        gender = _opt(person, "v3:administrativeGenderCode")
        birth = _opt(person, "v3:birthTime")
        postal = _opt(person, "v3:addr/v3:postalCode")
        city = _opt(person, "v3:addr/v3:city")
        sex_code = gender.get("code") if gender is not None else None
        candidates.append(
            PatientCandidate(
                ins=ins,
                family_name=families.get("BR") or families.get(None) or families.get("SP"),
                used_name=families.get("SP"),
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


def _check_answer_root(element: etree._Element, operation: str, what: str) -> None:
    """The answer's root: the operation's name followed by anything (``…Response``, ``…Return``) in any
    namespace — the root names of these answers are not public [I] — holding a ``status``."""
    if not isinstance(element, etree._Element) or not isinstance(element.tag, str):
        raise MalformedResponseError(f"{what} is not an XML element")
    local = etree.QName(element).localname
    if not local.startswith(operation) or local == operation:
        raise MalformedResponseError(f"{what} is not a {operation} answer: its root element is {local}")


def _check_request_root(element: etree._Element, namespace: str, local: str, what: str) -> None:
    _check_root(element, namespace, local, what)


_ROLE: Final = "MEDECIN_TRAITANT"


def build_set_authorisation_request(
    action: AuthorisationAction, *, treating_doctor: bool = False, role_element: str = "role"
) -> etree._Element:
    """TD0.3 (``habilitations``): no patient id, the VIHF names the patient [V DRIMbox, kit]::

    <hab:setAuthorization xmlns:hab="urn:si-dmp-habilitations">
      <hab:action>AJOUT</hab:action>
      <hab:role>MEDECIN_TRAITANT</hab:role>          (as médecin traitant; element name from the kit's roleType [I])
    </hab:setAuthorization>

    ``role_element``: the role's element name (the setting ``dmp.authorisation_role_element``).
    """
    return _plain(
        HABILITATIONS_NS,
        "setAuthorization",
        [("action", action.value), (role_element, _ROLE if treating_doctor else None)],
    )


def parse_set_authorisation_request(
    element: etree._Element, *, role_element: str = "role"
) -> tuple[AuthorisationAction, bool]:
    """Read TD0.3 (the sandbox's side): the action and whether as médecin traitant."""
    what = "the setAuthorization request"
    _check_request_root(element, HABILITATIONS_NS, "setAuthorization", what)
    try:
        action = AuthorisationAction(_required_text(element, "action", what))
    except ValueError:
        raise MalformedResponseError(f"{what}: action is neither AJOUT nor SUPPRESSION") from None
    return action, _child_text(element, role_element) == _ROLE


def build_set_authorisation_response(status: ServiceStatus) -> etree._Element:
    """``<hab:setAuthorizationResponse><hab:status>DMPOK</hab:status><hab:context>…</hab:context>…`` [root name I]"""
    return _plain(HABILITATIONS_NS, "setAuthorizationResponse", _status_children(status))


def parse_set_authorisation_response(element: etree._Element) -> ServiceStatus:
    """Read the TD0.3 answer's status."""
    what = "the setAuthorization answer"
    _check_answer_root(element, "setAuthorization", what)
    return _read_status(element, what)


def build_list_authorisations_request(*, mode: str = "TOUTE") -> etree._Element:
    """The list of authorised professionals: no patient id, the VIHF names the patient [V kit ``modeType.TOUTE``]::

    <hab:listAuthorizationByPatient xmlns:hab="urn:si-dmp-habilitations"><hab:mode>TOUTE</hab:mode>
    </hab:listAuthorizationByPatient>

    Other modes (``ACTIVE``/``INTERDITE`` in MagicDMP's vocabulary) are not confirmed on the wire [I].
    """
    return _plain(HABILITATIONS_NS, "listAuthorizationByPatient", [("mode", mode)])


def parse_list_authorisations_request(element: etree._Element) -> str:
    """Read the list request (the sandbox's side): the mode."""
    what = "the listAuthorizationByPatient request"
    _check_request_root(element, HABILITATIONS_NS, "listAuthorizationByPatient", what)
    return _child_text(element, "mode") or "TOUTE"


def build_list_authorisations_response(
    status: ServiceStatus, professionals: Sequence[AuthorisedProfessional] = ()
) -> etree._Element:
    """The list answer [V kit: rows and their fields; root name I]::

    <hab:listAuthorizationByPatientResponse xmlns:hab="urn:si-dmp-habilitations">
      <hab:status>DMPOK</hab:status>
      <hab:listOfAuthorizationByPatient><hab:nationalId>810001234567</hab:nationalId>
        <hab:firstName>Jean</hab:firstName><hab:lastName>DUPONT</hab:lastName></hab:listOfAuthorizationByPatient>
    </hab:listAuthorizationByPatientResponse>
    """
    root = _plain(HABILITATIONS_NS, "listAuthorizationByPatientResponse", _status_children(status))
    for professional in professionals:
        row = etree.SubElement(root, f"{{{HABILITATIONS_NS}}}listOfAuthorizationByPatient")
        for tag, text in (
            ("nationalId", professional.national_id),
            ("firstName", professional.given_name),
            ("lastName", professional.family_name),
        ):
            if text is not None:
                etree.SubElement(row, f"{{{HABILITATIONS_NS}}}{tag}").text = text
    return root


def parse_list_authorisations_response(
    element: etree._Element,
) -> tuple[ServiceStatus, tuple[AuthorisedProfessional, ...]]:
    """Read the list answer: its status and the professionals (``listOfAuthorizationByPatient`` rows)."""
    what = "the listAuthorizationByPatient answer"
    _check_answer_root(element, "listAuthorizationByPatient", what)
    professionals = []
    for row in _children(element, "listOfAuthorizationByPatient"):
        role = _child_text(row, "role")
        professionals.append(
            AuthorisedProfessional(
                national_id=_required_text(row, "nationalId", f"{what}: a listOfAuthorizationByPatient row"),
                family_name=_child_text(row, "lastName"),
                given_name=_child_text(row, "firstName"),
                treating_doctor=(role == _ROLE) if role is not None else None,
            )
        )
    return _read_status(element, what), tuple(professionals)


def build_patient_list_request(
    since: dt.date,
    kind: RecentDmpKind,
    *,
    date_format: str = "%d%m%Y",
    elements: tuple[str, str] = ("date", "type"),
) -> etree._Element:
    """TD0.4 (``patientsSpecific``) [V kit: a date string and ``dateTypeEnum``; element names I]::

    <pat:patientList xmlns:pat="urn:si-dmp-patients">
      <pat:date>01012025</pat:date><pat:type>LASTAUTORIZATION</pat:type>
    </pat:patientList>

    The date's format is not public: the kit sends ``"01012018"`` (``DDMMYYYY`` read as a day),
    DmpConnect-JS documents its own input as ``YYYYMMDD``; ``date_format`` (the setting
    ``dmp.patient_list_date_format``) chooses; ``elements`` names the two children
    (``dmp.patient_list_elements``).
    """
    date_element, type_element = elements
    return _plain(PATIENTS_NS, "patientList", [(date_element, since.strftime(date_format)), (type_element, kind.value)])


def parse_patient_list_request(
    element: etree._Element, *, date_format: str = "%d%m%Y", elements: tuple[str, str] = ("date", "type")
) -> tuple[dt.date, RecentDmpKind]:
    """Read TD0.4 (the sandbox's side)."""
    what = "the patientList request"
    _check_request_root(element, PATIENTS_NS, "patientList", what)
    date_element, type_element = elements
    try:
        since = dt.datetime.strptime(_required_text(element, date_element, what), date_format).date()
    except ValueError:
        raise MalformedResponseError(f"{what}: date is not in the expected format") from None
    try:
        kind = RecentDmpKind(_required_text(element, type_element, what))
    except ValueError:
        raise MalformedResponseError(f"{what}: type is neither LASTAUTORIZATION nor LASTDOC") from None
    return since, kind


def build_patient_list_response(status: ServiceStatus, patients: Sequence[RecentDmp] = ()) -> etree._Element:
    """The TD0.4 answer [V kit: ``status`` and ``patientlistData`` rows; root name I]::

    <pat:patientListResponse xmlns:pat="urn:si-dmp-patients"><pat:status>DMPOk</pat:status>
      <pat:patientlistData><pat:firstName>…</pat:firstName><pat:lastName>…</pat:lastName>
        <pat:dateOfBirth>19970226</pat:dateOfBirth><pat:message>…</pat:message></pat:patientlistData>
    </pat:patientListResponse>
    """
    root = _plain(PATIENTS_NS, "patientListResponse", _status_children(status))
    for patient in patients:
        row = etree.SubElement(root, f"{{{PATIENTS_NS}}}patientlistData")
        birth = patient.birth_date_text or (_birth_text(patient.birth_date) if patient.birth_date else None)
        for tag, text in (
            ("firstName", patient.given_name),
            ("lastName", patient.family_name),
            ("dateOfBirth", birth),
            ("message", patient.message),
        ):
            if text is not None:
                etree.SubElement(row, f"{{{PATIENTS_NS}}}{tag}").text = text
    return root


def _row_birth_date(text: str | None) -> BirthDate | None:
    """``dateOfBirth`` when its form is unambiguous (``YYYYMMDD``, ``YYYY-MM-DD``, ``DD/MM/YYYY``); None otherwise."""
    value = (text or "").strip()
    for pattern, order in (
        (r"(\d{4})(\d{2})(\d{2})", (1, 2, 3)),
        (r"(\d{4})-(\d{2})-(\d{2})", (1, 2, 3)),
        (r"(\d{2})/(\d{2})/(\d{4})", (3, 2, 1)),
    ):
        match = re.fullmatch(pattern, value)
        if match is not None:
            try:
                return BirthDate.parse("".join(match.group(i) for i in order))
            except DmpConnectorError:
                return None
    return None


def parse_patient_list_response(element: etree._Element) -> tuple[ServiceStatus, tuple[RecentDmp, ...]]:
    """Read the TD0.4 answer: its status and ``patientlistData`` rows (no INS in the public rows)."""
    what = "the patientList answer"
    _check_answer_root(element, "patientList", what)
    patients = []
    for row in _children(element, "patientlistData"):
        birth = _child_text(row, "dateOfBirth")
        patients.append(
            RecentDmp(
                family_name=_child_text(row, "lastName"),
                given_name=_child_text(row, "firstName"),
                birth_date=_row_birth_date(birth),
                birth_date_text=birth,
                message=_child_text(row, "message"),
            )
        )
    return _read_status(element, what), tuple(patients)
