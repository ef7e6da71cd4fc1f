"""The DMP's XDS.b transactions as sans-I/O operations: ITI-41, ITI-18, ITI-43, ITI-57.

Each is a small :class:`~dmp_connector._transport.Operation`: its endpoint (one DMP service),
its ``wsa:Action``, whether it is safe to repeat, how it builds its body and how it reads the
answer. The send loop (retries, audit, TLS, MTOM) is :class:`dmp_connector.transport.Client`'s; the
sequencing (paging, duplicate checks, version look-ups) is :mod:`dmp_connector.dmp.client`'s.

Every operation carries its own WS-Security: a VIHF (:class:`~dmp_connector.signature.VihfSecurity`)
naming the patient and the access mode, signed when the envelope is built — once per logical
call, so a retry resends the same assertion.

Answers are read strictly; a registry Failure becomes a typed error
(:func:`~dmp_connector.dmp.errors.registry_error`) *inside* the retry loop, so that a
``…Busy`` answer is retried like a 503 when the operation is safe to repeat.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any, ClassVar, Final, TypeVar, cast

from lxml import etree

from dmp_connector._transport import CallContext, Operation, SoapRequest
from dmp_connector.cda._namespaces import HL7
from dmp_connector.config import DmpService, Environment, Settings
from dmp_connector.errors import DmpConnectorError, LimitExceededError, PatientMismatchError, SoapFaultError
from dmp_connector.ins import INS, InsOid
from dmp_connector.soap import Attachment, SoapMessage, WsSecurity
from dmp_connector.soap.envelope import _MarkupBody
from dmp_connector.xds import (
    Action,
    AdhocQueryRequest,
    AdhocQueryResponse,
    Cx,
    GetDocumentsQuery,
    RegistryError,
    RegistryErrorCode,
    RegistryResponse,
    ResponseStatus,
    RetrievedDocument,
    RetrieveDocumentSetRequest,
    RetrieveDocumentSetResponse,
    SubmissionRequest,
    build_adhoc_query_request,
    build_retrieve_document_set_request,
    build_submit_objects_request,
    parse_adhoc_query_response,
    parse_registry_response,
    parse_retrieve_document_set_response,
)
from dmp_connector.xds.ebrim import _provide_and_register_body
from dmp_connector.xml import XmlLimits, parse_xml_head

from .errors import (
    DepositedDocument,
    PartialDepositError,
    credential_mismatch,
    error_codes,
    fault_error,
    registry_error,
)
from .mapping import PreparedDeposit

__all__ = [
    "DmpOperation",
    "ProvideAndRegister",
    "RegistryStoredQuery",
    "RetrieveDocumentSet",
    "UpdateDocumentSet",
    "check_query_answer",
]

T = TypeVar("T")

_DUPLICATE: Final = RegistryErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY
_NON_IDENTICAL_HASH: Final = RegistryErrorCode.NON_IDENTICAL_HASH


class DmpOperation(Operation[T]):
    """What every DMP operation shares: the service, the VIHF security, the audit facts, the fault mapping."""

    service: ClassVar[str] = "dmp"
    dmp_service: ClassVar[DmpService]
    """The DMP service the operation posts to (``<dmp_base_url>/<service>``)."""

    def __init__(
        self, *, security: WsSecurity | None, patient: str | None = None, document_ids: Sequence[str] = ()
    ) -> None:
        self.security = security
        self.patient = patient
        self.document_ids = tuple(document_ids)

    def endpoint(self, environment: Environment) -> str:
        """``<dmp_base_url>/<service>`` of the environment."""
        return environment.dmp_url(self.dmp_service)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every operation reads the DMP's refusal codes with the table of the settings it was built with
        (``settings.dmp.error_codes``): ``build`` keeps the table, ``parse`` and ``map_fault`` use it."""
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        parse = cls.__dict__.get("parse")
        if build is not None:

            @functools.wraps(build)
            def keep_table(self: DmpOperation[Any], call: CallContext) -> SoapRequest:
                self._error_codes = dict(call.settings.dmp.error_codes)
                self._settings = call.settings
                return cast("SoapRequest", build(self, call))

            cls.build = keep_table  # type: ignore[method-assign,assignment]
        if parse is not None:

            @functools.wraps(parse)
            def use_table(self: DmpOperation[Any], message: SoapMessage) -> Any:
                with self._codes():
                    return parse(self, message)

            cls.parse = use_table  # type: ignore[method-assign,assignment]

    _error_codes: dict[str, str] | None = None
    _settings: Settings | None = None

    def _codes(self) -> contextlib.AbstractContextManager[None]:
        return error_codes(self._error_codes) if self._error_codes is not None else contextlib.nullcontext()

    def map_fault(self, fault: SoapFaultError) -> DmpConnectorError:
        """A SOAP fault as a DMP error: transient when ``env:Receiver``, typed when a subcode names a DMP refusal."""
        with self._codes():
            error = fault_error(fault, operation=self.name)
        authentication = any(code.rsplit("}", 1)[-1].endswith("FailedAuthentication") for code in fault.subcodes)
        mismatch = credential_mismatch(self._settings) if authentication and self._settings is not None else None
        if mismatch is not None:
            error.message = f"{error.message}: {mismatch[0]}"
            error.hint = mismatch[1]
            error.args = (error.message,)
        return error

    def _request(self, body: etree._Element | _MarkupBody, attachments: Sequence[Attachment] = ()) -> SoapRequest:
        return SoapRequest(
            body=body if isinstance(body, _MarkupBody) else [body],
            attachments=attachments,
            security=self.security,
            patient=self.patient,
            document_ids=self.document_ids,
        )


def _per_document(response: RegistryResponse, prepared: PreparedDeposit) -> list[DepositedDocument]:
    """Each deposited document with the errors that name it (by uniqueId or entry id in location or context).

    An error that names no document is counted against every one: the registry did not say which.
    """
    documents = [
        (prepared.entry.entry_uuid, prepared.entry.unique_id),
        (prepared.signature.entry_id, prepared.signature.unique_id),
    ]
    found: dict[str, list[RegistryError]] = {entry_id: [] for entry_id, _ in documents}
    for error in response.errors:
        where = f"{error.location or ''} {error.code_context}"
        named = [entry_id for entry_id, unique_id in documents if entry_id in where or unique_id in where]
        for entry_id in named or [entry_id for entry_id, _ in documents]:
            found[entry_id].append(error)
    return [DepositedDocument(entry_id, unique_id, found[entry_id]) for entry_id, unique_id in documents]


class ProvideAndRegister(DmpOperation[RegistryResponse]):
    """ITI-41 Provide and Register Document Set-b over MTOM (TD2.1 deposit, TD2.2 replacement).

    Safe to repeat: the ids of a prepared deposit are stable (see :mod:`dmp_connector.dmp.mapping`)
    and the same bytes are sent on every attempt, so a replay cannot create a second document —
    it meets ``XDSDuplicateUniqueIdInRegistry``, which :meth:`parse` returns rather than raises,
    for the client to confirm as "already deposited". Other Failures raise typed errors; a
    PartialSuccess raises :class:`~dmp_connector.dmp.errors.PartialDepositError` with each
    document's outcome.
    """

    name = "ProvideAndRegisterDocumentSet-b"
    action = Action.PROVIDE_AND_REGISTER.value
    safe_to_repeat = True
    dmp_service = DmpService.REPOSITORY

    def __init__(self, prepared: PreparedDeposit, *, security: WsSecurity | None) -> None:
        super().__init__(
            security=security,
            patient=prepared.ins.matricule,
            document_ids=(prepared.ids.document, prepared.ids.signature),
        )
        self.prepared = prepared

    def build(self, call: CallContext) -> SoapRequest:
        """``xdsb:ProvideAndRegisterDocumentSetRequest`` with an ``xop:Include`` per document part."""
        # Its markup, which the envelope takes as it is; the element is parsed from it only if asked for.
        body = _provide_and_register_body(self.prepared.request)
        return self._request(body, attachments=self.prepared.attachments)

    def parse(self, message: SoapMessage) -> RegistryResponse:
        """The registry response; raises on a Failure that is not only duplicate uniqueIds, and on PartialSuccess."""
        response = parse_registry_response(message.payload)
        if response.status is ResponseStatus.SUCCESS:
            return response
        if response.status is ResponseStatus.PARTIAL_SUCCESS:
            raise PartialDepositError(response, _per_document(response, self.prepared), operation=self.name)
        errors = [e for e in response.errors if e.is_error]
        if errors and all(e.error_code == _DUPLICATE or self._resigned(e) for e in errors):
            return response
        raise registry_error(response, operation=self.name)

    def _resigned(self, error: RegistryError) -> bool:
        """A replay made by a new call signs again: the signature's bytes differ (its SigningTime),
        so the registry answers ``XDSNonIdenticalHash`` for our derived signature id. That is no
        conflict: the document itself decides, and the client confirms it by its hash."""
        return error.error_code == _NON_IDENTICAL_HASH and (error.location or "") == self.prepared.ids.signature


def _same_patient(found: Cx | None, asked: Cx) -> bool:
    """The same patient identifier: same id, same assigning authority (the identifier type may be left out).

    An object without patientId (limited metadata, which XDR/XDM allow) names nobody: in a DMP
    answer about one patient it is not that patient's.
    """
    if found is None:
        return False
    return found.id == asked.id and found.assigning_authority == asked.assigning_authority


def _mismatch(operation: str, problems: Sequence[str]) -> PatientMismatchError:
    return PatientMismatchError(
        f"the DMP answered {operation} with {'; '.join(problems)}: the whole answer is refused",
        service="dmp",
        operation=operation,
        problems=problems,
    )


def check_query_answer(
    answer: AdhocQueryResponse, request: AdhocQueryRequest, patient_id: Cx | None, *, operation: str
) -> None:
    """Identity vigilance on an ITI-18 answer: every object is the asked patient's, and only the ids asked.

    Every document entry (its ``patientId``; its ``sourcePatientId`` may be a local id and is not
    compared), submission set and folder must name ``patient_id``; a GetDocuments answer may hold
    only the entryUUIDs or uniqueIds it asked for. Anything else raises
    :class:`~dmp_connector.errors.PatientMismatchError` with counts, never ids or values.
    """
    problems: list[str] = []
    if patient_id is not None:
        # Plain loops (no intermediate list, no generator): this runs on every entry of every answer.
        others = 0
        for objects in (answer.documents, answer.submission_sets, answer.folders):
            for obj in objects:
                if not _same_patient(obj.patient_id, patient_id):
                    others += 1
        if others:
            problems.append(f"{others} object(s) about another patient than the one asked")
    query = request.query
    if isinstance(query, GetDocumentsQuery):
        if query.entry_uuids:
            asked, key = set(query.entry_uuids), "entryUUID"
            unasked = sum(entry.entry_uuid not in asked for entry in answer.documents)
        else:
            asked, key = set(query.unique_ids), "uniqueId"
            unasked = sum(entry.unique_id not in asked for entry in answer.documents)
        unasked += len(answer.submission_sets) + len(answer.folders)
        if unasked:
            problems.append(f"{unasked} object(s) whose {key} was not asked for")
    if problems:
        raise _mismatch(operation, problems)


class RegistryStoredQuery(DmpOperation[AdhocQueryResponse]):
    """ITI-18 Registry Stored Query (TD3.1): FindDocuments, GetDocuments, FindSubmissionSets …

    Safe to repeat (it only reads). A Failure raises a typed error; a PartialSuccess is returned
    with its errors, for the caller to report next to what was found. Every answer is checked for
    the asked patient (``patient_id``) and, for GetDocuments, the asked ids
    (:func:`check_query_answer`); an ObjectRef answer holds at most ``max_references`` references.
    """

    name = "RegistryStoredQuery"
    action = Action.REGISTRY_STORED_QUERY.value
    safe_to_repeat = True
    dmp_service = DmpService.REGISTRY

    def __init__(
        self,
        request: AdhocQueryRequest,
        *,
        security: WsSecurity | None,
        patient: str | None,
        patient_id: Cx | str | None = None,
        max_references: int | None = None,
    ) -> None:
        super().__init__(security=security, patient=patient)
        self.request = request
        self.patient_id = Cx.parse(patient_id) if isinstance(patient_id, str) else patient_id
        self.max_references = max_references

    def build(self, call: CallContext) -> SoapRequest:
        """``query:AdhocQueryRequest``."""
        return self._request(build_adhoc_query_request(self.request))

    def parse(self, message: SoapMessage) -> AdhocQueryResponse:
        """The typed answer; a Failure raises, and so does an answer about another patient or ids not asked."""
        answer = parse_adhoc_query_response(message.payload)
        if answer.response.status is ResponseStatus.FAILURE:
            raise registry_error(answer.response, operation=self.name)
        check_query_answer(answer, self.request, self.patient_id, operation=self.name)
        if self.max_references is not None and len(answer.object_refs) > self.max_references:
            raise LimitExceededError(
                f"the DMP answered {self.name} with {len(answer.object_refs)} references, over the "
                f"{self.max_references} allowed",
                limit="dmp.max_references",
                hint="narrow the search (dates, codes), or raise dmp.max_references",
            )
        return answer


_HL7: Final = f"{{{HL7}}}"
_INS_OIDS: Final = frozenset(oid.value for oid in InsOid)
_CDA_HEAD_LIMITS: Final = XmlLimits(max_bytes=64 * 1024 * 1024)


def _cda_of(document: RetrievedDocument, patient_id: Cx) -> bool:
    """False when the document is a CDA whose ``recordTarget`` names an INS other than ``patient_id``.

    Only the CDA's head is read, up to its ``recordTarget``s (the rest of a large document is not
    parsed). Anything that is not a readable CDA with an INS in its header (a PDF, an unreadable
    head, a head not ended within 64 MiB) is not judged here: the entry's hash, when the caller
    gave the entry, still guards it.
    """
    content = document.content
    if content is None:
        return True
    # Judged on the bytes, not on the mime type the server declares: a CDA labelled application/pdf
    # is still a CDA (and read as one by whoever sniffs it).
    with content.open() as reader:
        first = reader.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not first.startswith(b"<"):
        return True
    try:
        root = parse_xml_head(
            content.iter_chunks(),
            stop_after=f"{_HL7}recordTarget",
            limits=_CDA_HEAD_LIMITS,
            what="the retrieved CDA",
        )
    except DmpConnectorError:
        return True
    if root.tag != f"{_HL7}ClinicalDocument":
        return True
    asked = _ins_of(patient_id)
    for element in root.iterfind(f"{_HL7}recordTarget/{_HL7}patientRole/{_HL7}id"):
        oid = element.get("root")
        if oid in _INS_OIDS and (asked is None or not asked.matches(_ins_or_none(oid, element.get("extension")))):
            return False
    return True


def _ins_of(patient_id: Cx) -> INS | None:
    """The asked patient's INS (None when the asked id is not an INS: then no CDA INS can be theirs)."""
    return _ins_or_none(patient_id.assigning_authority, patient_id.id)


def _ins_or_none(oid: str | None, matricule: str | None) -> INS | None:
    try:
        return INS.from_cda_id(oid or "", matricule or "", lenient=True)
    except (DmpConnectorError, ValueError):
        return None


class RetrieveDocumentSet(DmpOperation[RetrieveDocumentSetResponse]):
    """ITI-43 Retrieve Document Set (TD3.2); the documents come back as MTOM parts, spooled to disk when large."""

    name = "RetrieveDocumentSet"
    action = Action.RETRIEVE_DOCUMENT_SET.value
    safe_to_repeat = True
    dmp_service = DmpService.REPOSITORY

    def __init__(
        self,
        request: RetrieveDocumentSetRequest,
        *,
        security: WsSecurity | None,
        patient: str | None,
        patient_id: Cx | str | None = None,
    ) -> None:
        super().__init__(
            security=security, patient=patient, document_ids=[d.document_unique_id for d in request.documents]
        )
        self.request = request
        self.patient_id = Cx.parse(patient_id) if isinstance(patient_id, str) else patient_id

    def build(self, call: CallContext) -> SoapRequest:
        """``xdsb:RetrieveDocumentSetRequest``."""
        return self._request(build_retrieve_document_set_request(self.request))

    def parse(self, message: SoapMessage) -> RetrieveDocumentSetResponse:
        """The answer with each document's content resolved; a Failure raises, and so does a document not asked for."""
        answer = parse_retrieve_document_set_response(message.payload, message.attachments)
        asked = {(d.repository_unique_id, d.document_unique_id) for d in self.request.documents}
        unasked = sum((d.repository_unique_id, d.document_unique_id) not in asked for d in answer.documents)
        if unasked:
            for document in answer.documents:
                if document.content is not None:
                    document.content.close()
            raise _mismatch(self.name, [f"{unasked} document(s) that were not asked for"])
        if answer.response.status is ResponseStatus.FAILURE:
            raise registry_error(answer.response, operation=self.name)
        if self.patient_id is not None:
            others = sum(not _cda_of(document, self.patient_id) for document in answer.documents)
            if others:
                for document in answer.documents:
                    if document.content is not None:
                        document.content.close()
                raise _mismatch(self.name, [f"{others} CDA document(s) whose recordTarget is another patient's INS"])
        return answer


class UpdateDocumentSet(DmpOperation[RegistryResponse]):
    """ITI-57 Update Document Set (TD3.3a–d): a status change or a new metadata version.

    Not safe to repeat: a replayed status change meets an entry whose status already changed,
    and a replayed metadata update would add another version.
    """

    name = "UpdateDocumentSet"
    action = Action.UPDATE_DOCUMENT_SET.value
    safe_to_repeat = False
    dmp_service = DmpService.REGISTRY

    def __init__(
        self,
        request: SubmissionRequest,
        *,
        security: WsSecurity | None,
        patient: str | None,
        document_ids: Sequence[str] = (),
    ) -> None:
        super().__init__(security=security, patient=patient, document_ids=document_ids)
        self.request = request

    def build(self, call: CallContext) -> SoapRequest:
        """``lcm:SubmitObjectsRequest``."""
        return self._request(build_submit_objects_request(self.request))

    def parse(self, message: SoapMessage) -> RegistryResponse:
        """The registry response; anything but Success raises."""
        response = parse_registry_response(message.payload)
        if response.status is not ResponseStatus.SUCCESS:
            raise registry_error(response, operation=self.name)
        return response
