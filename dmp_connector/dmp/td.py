"""The DMP-specific transactions ("TD") as sans-I/O operations, and their typed requests and results.

| TD | operation | service | answer |
|---|---|---|---|
| TD0.2 | :class:`PatientQueryOperation` (``TEST_EXST``) | ``patients`` | :class:`DmpStatus` |
| TD0.3 | :class:`SetAuthorisationOperation` | ``habilitations`` | ``DMPOK`` or a typed refusal |
| — | :class:`ListAuthorisationsOperation` | ``habilitations`` | :class:`AuthorisedProfessional` rows |
| TD0.4 | :class:`PatientListOperation` | ``patientsSpecific`` | :class:`RecentDmp` rows |
| TD0.5 | :class:`FindCandidatesOperation` (PDQv3) | ``patientsPDQ`` | :class:`PatientCandidate` rows |
| TD1.1–1.4 | :class:`RegistrationOperation` | ``patients`` | accepted, or ``DMPFound`` / ``DMPClosed`` … |
| TD1.3a | :class:`PatientQueryOperation` (``CNSLT_DATA``) | ``patients`` | :class:`AdministrativeData` |

The XML of each lives in :mod:`dmp_connector.dmp._td`, built on public client implementations
(reference ``dmp_td.md``); what is not public is marked [I] there, and the choices it leaves open
are settings (``dmp.close_registration_status``, ``dmp.patient_list_date_format``, ``dmp.patient_list_elements``,
``dmp.authorisation_list_mode``, ``dmp.authorisation_role_element``, ``dmp.test_existence_action``).
A refusal (HL7 v3 ``AE``/``AR``, a ``status`` other than ``DMPOK``, a SOAP fault) raises the
typed error of :mod:`dmp_connector.dmp.errors` inside the retry loop; only the read-only
transactions are safe to repeat.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final

from dmp_connector._deprecation import deprecated_getattr
from dmp_connector._transport import CallContext, SoapRequest
from dmp_connector.config import DmpService, Settings
from dmp_connector.errors import PatientMismatchError
from dmp_connector.ins import INS
from dmp_connector.soap import SoapMessage, WsSecurity

from ._td import (
    AckDetail,
    Acknowledgement,
    AckType,
    Address,
    AdministrativeData,
    AuthorisationAction,
    AuthorisationStatus,
    AuthorisedProfessional,
    Closure,
    ClosureReason,
    DmpState,
    DmpStatus,
    Hl7Header,
    Oppositions,
    PatientCandidate,
    PatientQuery,
    PatientQueryAnswer,
    PatientSearch,
    QueryReason,
    RecentDmp,
    RecentDmpKind,
    RegistrationAnswer,
    RegistrationAuthor,
    RegistrationKind,
    RegistrationRequest,
    ServiceStatus,
    TdAction,
    VitaleCard,
    build_find_candidates_request,
    build_list_authorisations_request,
    build_patient_list_request,
    build_patient_query_request,
    build_registration_request,
    build_set_authorisation_request,
    parse_find_candidates_response,
    parse_list_authorisations_response,
    parse_patient_list_response,
    parse_patient_query_response,
    parse_registration_response,
    parse_set_authorisation_response,
)
from .errors import DmpNotFoundError, error_for_codes
from .mapping import source_id
from .operations import DmpOperation

__all__ = [
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
    "FindCandidatesOperation",
    "ListAuthorisationsOperation",
    "Oppositions",
    "PatientCandidate",
    "PatientListOperation",
    "PatientQueryAnswer",
    "PatientQueryOperation",
    "PatientSearch",
    "QueryReason",
    "RecentDmp",
    "RecentDmpKind",
    "RegistrationAnswer",
    "RegistrationAuthor",
    "RegistrationKind",
    "RegistrationOperation",
    "RegistrationRequest",
    "ServiceStatus",
    "SetAuthorisationOperation",
    "TdAction",
    "VitaleCard",
]

_URN_UUID: Final = "urn:uuid:"


def hl7_header(call: CallContext) -> Hl7Header:
    """The HL7 v3 wrapper of a request: the call's ``wsa:MessageID`` as message id, the software as sender."""
    settings: Settings = call.settings
    root = source_id(settings)
    message_id = call.message_id[len(_URN_UUID) :] if call.message_id.startswith(_URN_UUID) else call.message_id
    return Hl7Header(
        message_id=message_id,
        id_root=root,
        creation_time=dt.datetime.now(dt.UTC),
        sender_root=root,
        sender_name=settings.software.name,
        processing_code=settings.dmp.hl7_processing_code,
    )


def _refused(acknowledgement: Acknowledgement, operation: str) -> None:
    if acknowledgement.accepted:
        return
    codes = acknowledgement.codes or (acknowledgement.type_code.value,)
    text = next((d.text for d in acknowledgement.details if d.text), None)
    raise error_for_codes(codes, text=text, operation=operation)


def _check_status(status: ServiceStatus, operation: str) -> None:
    if not status.ok:
        raise error_for_codes([status.status], text=status.context, operation=operation)


class PatientQueryOperation(DmpOperation[PatientQueryAnswer]):
    """TD0.2 test of existence (or TD1.3a administrative-data read): ``PRPA_IN201307UV02``.

    An NF answer to TD0.2 is a result (``exists=False``), not an error; to the administrative-data
    read it raises :class:`~dmp_connector.dmp.errors.DmpNotFoundError`.
    """

    name = "PatientQuery"
    action = TdAction.PATIENT_QUERY.value
    safe_to_repeat = True
    dmp_service = DmpService.PATIENTS

    def __init__(
        self,
        ins: INS,
        *,
        reason: QueryReason,
        security: WsSecurity | None,
        action: str | None = None,
        accept_found_without_ins: bool = False,
    ) -> None:
        super().__init__(security=security, patient=ins.matricule)
        self.ins = ins
        self.reason = reason
        self.accept_found_without_ins = accept_found_without_ins  # settings.dmp.accept_found_without_ins
        if action is not None:
            self.action = action  # type: ignore[misc]  # the test-existence action is a setting

    def build(self, call: CallContext) -> SoapRequest:
        """``PRPA_IN201307UV02`` with the reason and the INS."""
        header = hl7_header(call)
        query = PatientQuery(ins=self.ins, reason=self.reason, query_id=header.message_id)
        return self._request(build_patient_query_request(query, header))

    def parse(self, message: SoapMessage) -> PatientQueryAnswer:
        """The status (and data); a refusal raises."""
        answer = parse_patient_query_response(message.payload, reason=self.reason)
        _refused(answer.acknowledgement, self.name)
        administrative = answer.administrative.ins if answer.administrative is not None else None
        named = [ins for ins in (answer.status.ins, administrative) if ins is not None]
        if not all(self.ins.matches(ins) for ins in named):
            raise PatientMismatchError(
                f"the DMP answered {self.name} about another patient than the INS asked: the answer is refused",
                service=self.service,
                operation=self.name,
                problems=["the answer's patient id is not the INS asked"],
            )
        if answer.status.exists and not named and not self.accept_found_without_ins:
            raise PatientMismatchError(
                f"the DMP answered {self.name} that a DMP exists without naming its INS, which cannot be checked "
                "against the INS asked: the answer is refused",
                service=self.service,
                operation=self.name,
                problems=["the answer names no patient id to compare with the INS asked"],
                hint="settings.dmp.accept_found_without_ins=True takes such an answer as the asked patient's",
            )
        if self.reason is QueryReason.ADMINISTRATIVE_DATA and not answer.status.exists:
            raise DmpNotFoundError(
                "the patient has no DMP (TD1.3a answered NF)",
                code="NF",
                operation=self.name,
                hint="create the DMP (create_dmp) if the patient agrees",
            )
        return answer


class SetAuthorisationOperation(DmpOperation[ServiceStatus]):
    """TD0.3: add or remove this professional's authorisation (optionally as médecin traitant).

    The body names no patient: the VIHF's ``resource-id`` does [V DRIMbox, kit]. Not repeated on
    failure: whether the DMP answers a second AJOUT as success is not public.
    """

    name = "setAuthorization"
    action = TdAction.SET_AUTHORIZATION.value
    dmp_service = DmpService.HABILITATIONS

    def __init__(
        self, ins: INS, action: AuthorisationAction, *, treating_doctor: bool, security: WsSecurity | None
    ) -> None:
        super().__init__(security=security, patient=ins.matricule)
        self.ins = ins
        self.change = action
        self.treating_doctor = treating_doctor

    def build(self, call: CallContext) -> SoapRequest:
        """``setAuthorization``."""
        body = build_set_authorisation_request(
            self.change,
            treating_doctor=self.treating_doctor,
            role_element=call.settings.dmp.authorisation_role_element,
        )
        return self._request(body)

    def parse(self, message: SoapMessage) -> ServiceStatus:
        """``DMPOK``, or a typed refusal."""
        status = parse_set_authorisation_response(message.payload)
        _check_status(status, self.name)
        return status


class ListAuthorisationsOperation(DmpOperation[tuple[AuthorisedProfessional, ...]]):
    """The professionals authorised on a DMP (``listAuthorizationByPatient``); the VIHF names the patient.

    ``mode``: ``TOUTE`` [V kit] unless given; None takes ``settings.dmp.authorisation_list_mode``.
    """

    name = "listAuthorizationByPatient"
    action = TdAction.LIST_AUTHORIZATIONS.value
    safe_to_repeat = True
    dmp_service = DmpService.HABILITATIONS

    def __init__(self, ins: INS, *, security: WsSecurity | None, mode: str | None = None) -> None:
        super().__init__(security=security, patient=ins.matricule)
        self.ins = ins
        self.mode = mode

    def build(self, call: CallContext) -> SoapRequest:
        """``listAuthorizationByPatient``."""
        mode = self.mode or call.settings.dmp.authorisation_list_mode
        return self._request(build_list_authorisations_request(mode=mode))

    def parse(self, message: SoapMessage) -> tuple[AuthorisedProfessional, ...]:
        """The professionals, or a typed refusal."""
        status, professionals = parse_list_authorisations_response(message.payload)
        _check_status(status, self.name)
        return professionals


class PatientListOperation(DmpOperation[tuple[RecentDmp, ...]]):
    """TD0.4: the DMPs recently accessible to this professional (``patientList``)."""

    name = "patientList"
    action = TdAction.PATIENT_LIST.value
    safe_to_repeat = True
    dmp_service = DmpService.PATIENTS_SPECIFIC

    def __init__(self, since: dt.date, kind: RecentDmpKind, *, security: WsSecurity | None) -> None:
        super().__init__(security=security)
        self.since = since
        self.kind = kind

    def build(self, call: CallContext) -> SoapRequest:
        """``patientList``."""
        options = call.settings.dmp
        body = build_patient_list_request(
            self.since,
            self.kind,
            date_format=options.patient_list_date_format,
            elements=options.patient_list_elements,
        )
        return self._request(body)

    def parse(self, message: SoapMessage) -> tuple[RecentDmp, ...]:
        """The DMPs, or a typed refusal."""
        status, patients = parse_patient_list_response(message.payload)
        _check_status(status, self.name)
        return patients


class FindCandidatesOperation(DmpOperation[tuple[PatientCandidate, ...]]):
    """TD0.5: patients matching partial traits (IHE PDQv3 ``findCandidatesQuery``)."""

    name = "findCandidatesQuery"
    action = TdAction.FIND_CANDIDATES.value
    safe_to_repeat = True
    dmp_service = DmpService.PATIENTS_PDQ

    def __init__(self, search: PatientSearch, *, security: WsSecurity | None) -> None:
        super().__init__(security=security)
        self.search = search

    def build(self, call: CallContext) -> SoapRequest:
        """``PRPA_IN201305UV02``."""
        header = hl7_header(call)
        search = self.search if self.search.query_id else self.search.model_copy(update={"query_id": header.message_id})
        return self._request(build_find_candidates_request(search, header))

    def parse(self, message: SoapMessage) -> tuple[PatientCandidate, ...]:
        """The candidates, or a typed refusal."""
        acknowledgement, candidates = parse_find_candidates_response(message.payload)
        _refused(acknowledgement, self.name)
        return candidates


class RegistrationOperation(DmpOperation[RegistrationAnswer]):
    """TD1.1 create, TD1.2 reactivate, TD1.3b update, TD1.4 close: ``PRPA_IN201311UV02`` / ``…14UV02``.

    Not safe to repeat: a replayed creation meets ``DMPFound``.
    """

    name = "PatientRegistration"
    action = TdAction.REVISE.value
    dmp_service = DmpService.PATIENTS

    def __init__(self, request: RegistrationRequest, *, security: WsSecurity | None) -> None:
        super().__init__(security=security, patient=request.ins.matricule)
        self.request = request
        self.action = (  # type: ignore[misc]  # one class, two interactions
            TdAction.CREATE.value if request.kind is RegistrationKind.CREATE else TdAction.REVISE.value
        )

    def build(self, call: CallContext) -> SoapRequest:
        """The registration request."""
        close_status = call.settings.dmp.close_registration_status
        return self._request(build_registration_request(self.request, hl7_header(call), close_status=close_status))

    def parse(self, message: SoapMessage) -> RegistrationAnswer:
        """The acceptance; ``DMPFound`` / ``DMPClosed`` … raise their typed errors."""
        answer = parse_registration_response(message.payload)
        _refused(answer.acknowledgement, f"{self.name} {self.request.kind.value}")
        return answer


# The American spellings, kept for one release (issue 18): one spelling, "authorisation", in the API.
_RENAMED: dict[str, str] = {
    "AuthorizationStatus": "AuthorisationStatus",
    "AuthorizationAction": "AuthorisationAction",
    "AuthorizedProfessional": "AuthorisedProfessional",
    "SetAuthorizationOperation": "SetAuthorisationOperation",
    "ListAuthorizationsOperation": "ListAuthorisationsOperation",
}

if not TYPE_CHECKING:
    # Hidden from type checkers, so that the old names are errors for them and warnings at run time.

    __getattr__ = deprecated_getattr(
        __name__,
        {old: f"{__name__}:{new}" for old, new in _RENAMED.items()},
        "{home}.{name} is deprecated: use {home}.{new} (removed in the next release)",
    )


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
