"""DMP clients: :class:`DmpClient` and its async twin, one method per DMP operation.

The logic of each method — which operations to send, in what order, what to make of the
answers — is written once, as a *flow*: a generator that yields operations and receives their
results (or their errors, thrown back into it). :class:`DmpClient` drives a flow with
:meth:`dmp_connector.transport.Client.send`, :class:`AsyncDmpClient` with ``await AsyncClient.send``; so
the two cannot drift apart, and a test keeps their signatures identical.

Each deposit ends with one audit *outcome* event (``kind="outcome"``: ``success``, ``already_done``
for a replay, or ``failure`` with the error's type), sharing the ``correlation_id`` of its
ProvideAndRegister attempts, so that a journal holds one final word per document and call. The other
calls are one operation whose last attempt already is their outcome (queries change nothing, and
updates and DMP transactions are never repeated), so they leave attempt events only.

Every call carries a VIHF for the patient concerned: the patient is an
:class:`~dmp_connector.ins.Identity` whose status must be QUAL (refused before anything is
sent), and consultations take ``access=`` — :class:`Access` or an
:class:`~dmp_connector.signature.AccessMode` (``bris_de_glace`` needs a reason:
``Access.bris_de_glace("patient inconscient")``).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector._audit_trail import AuditTrail, error_code_of
from dmp_connector._deadline import call_scope
from dmp_connector._transport import AsyncClient, Client, Operation, _keep
from dmp_connector.audit import AuditDispatcher, AuditEvent, AuditEventKind, AuditSink, Outcome, endpoint_of
from dmp_connector.cda import ClinicalDocument, NonXmlBody
from dmp_connector.cda.model import author_specialty
from dmp_connector.codes import Code
from dmp_connector.config import DmpService, DmpTransaction, Settings, Timeouts, client_repr
from dmp_connector.errors import (
    DmpConnectorError,
    HttpStatusError,
    LimitExceededError,
    MalformedResponseError,
    ValidationError,
)
from dmp_connector.ins import INS, Identity
from dmp_connector.ins.client import AsyncHttpClient, SyncHttpClient
from dmp_connector.retries import RetryPolicy
from dmp_connector.signature import (
    AccessMode,
    AuthenticationMode,
    FileSigner,
    Signer,
    VihfRequest,
    VihfSecurity,
    new_unique_id,
)
from dmp_connector.soap import Attachment, new_message_id
from dmp_connector.xds import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    AdhocQueryRequest,
    AnyCode,
    AvailabilityStatus,
    Cx,
    DocumentEntry,
    DocumentIntegrityError,
    DocumentRequest,
    FindDocumentsQuery,
    FindSubmissionSetsQuery,
    GetDocumentsQuery,
    MetadataProfile,
    RegistryError,
    RegistryErrorCode,
    RegistryResponse,
    ResponseStatus,
    RetrieveDocumentSetRequest,
    RetrieveDocumentSetResponse,
    ReturnType,
    SubmissionRequest,
    SubmissionSet,
    XdsTime,
)

from ._td import (
    Address,
    AdministrativeData,
    AuthorisationAction,
    AuthorisedProfessional,
    Closure,
    ClosureReason,
    DmpStatus,
    Oppositions,
    PatientCandidate,
    PatientSearch,
    QueryReason,
    RecentDmp,
    RecentDmpKind,
    RegistrationAuthor,
    RegistrationKind,
    RegistrationRequest,
    ServiceStatus,
    VitaleCard,
)
from .errors import DmpRegistryError, DmpServiceError, DocumentConflictError, error_codes, registry_error
from .mapping import DOCUMENT_ENTRY_ID, PreparedDeposit, prepare_deposit, source_id, submission_author
from .operations import ProvideAndRegister, RegistryStoredQuery, RetrieveDocumentSet, UpdateDocumentSet
from .td import (
    FindCandidatesOperation,
    ListAuthorisationsOperation,
    PatientListOperation,
    PatientQueryOperation,
    RegistrationOperation,
    SetAuthorisationOperation,
)

__all__ = [
    "Access",
    "AsyncDmpClient",
    "DepositResult",
    "DmpClient",
    "DocumentList",
    "RetrievedDmpDocument",
]

R = TypeVar("R")


@dataclass(frozen=True)
class _Blocking:
    """CPU-heavy or blocking work a flow asks its driver to run: inline (sync), in a worker thread (async).

    Preparing a deposit digests and signs the document — milliseconds for a report, a third of a
    second for a 20 MB PDF, and a smart card's time for its PIN — which must not stall an event loop.
    """

    job: Callable[[], Any]


_HEAVY_DOCUMENT: Final = 1 << 20
"""From this size on, preparing a deposit (digest, base64, MTOM) is worth a worker thread in the async client."""


def _signs_quickly(signer: Signer) -> bool:
    """An in-memory key signs in about a millisecond; any other signer (card, HSM, service) may wait."""
    return isinstance(signer, FileSigner)


def _size_of(document: bytes | ClinicalDocument) -> int:
    if isinstance(document, bytes):
        return len(document)
    body = document.body
    return len(body.data) if isinstance(body, NonXmlBody) else 0


Flow = Generator[Operation[Any] | _Blocking, Any, R]
"""A client method's logic: yields operations (or blocking work), receives their results, returns its result."""

_audit_logger = logging.getLogger("dmp_connector.audit")

_APPROVED: Final = (AvailabilityStatus.APPROVED,)
_TOO_MANY: Final = RegistryErrorCode.TOO_MANY_RESULTS.value
_DUPLICATE: Final = RegistryErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY
_SIGNATURE_FORMAT: Final = "http://www.w3.org/2000/09/xmldsig#"


class Access(BaseModel):
    """How the professional reaches the DMP for one call: normal, bris de glace (with its reason), centre 15."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    mode: AccessMode = AccessMode.NORMAL
    """The TRE_R248 access mode, carried in the VIHF ``purposeofuse``."""
    reason: str | None = None
    """The professional's free-text reason: mandatory for bris de glace, refused otherwise."""

    @model_validator(mode="after")
    def _reason(self) -> Self:
        if self.mode is AccessMode.BRIS_DE_GLACE and not (self.reason or "").strip():
            raise ValidationError(
                "an emergency (bris de glace) access needs the reason the professional gave",
                problems=["access.reason: missing for bris_de_glace"],
                hint="ask the user for a free-text reason: Access.bris_de_glace(reason)",
            )
        if self.mode is not AccessMode.BRIS_DE_GLACE and self.reason is not None:
            raise ValidationError("an access reason goes with bris de glace only")
        return self

    @classmethod
    def normal(cls) -> Access:
        """Normal access (the authorisation is required for consultation)."""
        return cls()

    @classmethod
    def bris_de_glace(cls, reason: str) -> Access:
        """Emergency access, with the reason the professional gave."""
        return cls(mode=AccessMode.BRIS_DE_GLACE, reason=reason)

    @classmethod
    def centre_15(cls) -> Access:
        """Access by a medical regulation centre (the authorisation is not checked)."""
        return cls(mode=AccessMode.CENTRE_15)


_NORMAL: Final = Access()

AccessLike = Access | AccessMode | str
"""An :class:`Access`, or a mode alone (``"normal"``, ``"centre_15"``; ``"bris_de_glace"`` needs :class:`Access`)."""


def _access(value: AccessLike) -> Access:
    if isinstance(value, Access):
        return value
    try:
        mode = AccessMode(value)
    except ValueError:
        raise ValidationError(f"unknown access mode {value!r}: normal, bris_de_glace or centre_15") from None
    return Access(mode=mode)


class DocumentList(list[DocumentEntry]):
    """The entries a search found, with the registry's answer: a PartialSuccess is never hidden.

    It is a plain list of :class:`~dmp_connector.xds.DocumentEntry`; ``response`` holds the status
    and the errors and warnings the registry gave (for a paged search, those of every page).
    """

    def __init__(self, entries: Iterable[DocumentEntry] = (), *, response: RegistryResponse | None = None) -> None:
        super().__init__(entries)
        self.response = response or RegistryResponse(status=ResponseStatus.SUCCESS)

    @property
    def partial(self) -> bool:
        """True when the registry answered PartialSuccess: some entries may be missing (see ``errors``)."""
        return self.response.status is ResponseStatus.PARTIAL_SUCCESS

    @property
    def errors(self) -> tuple[RegistryError, ...]:
        """The registry's errors and warnings."""
        return self.response.errors


class DepositResult(BaseModel):
    """The outcome of a deposit: the ids stored, and whether it was there already (a replay)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    document_unique_id: str
    """The document's uniqueId (the CDA id)."""
    submission_set_unique_id: str
    """The submission set's uniqueId (derived, see :mod:`dmp_connector.dmp.mapping`)."""
    signature_unique_id: str
    """The submission-set signature's uniqueId (derived)."""
    hash: str
    """SHA-1 of the document deposited (hex)."""
    size: int
    """Size of the document deposited, in bytes."""
    already_deposited: bool = False
    """True when the DMP already held this very document (same uniqueId, same hash): nothing new was stored."""
    confirmed_by: Literal["registry", "lookup"] | None = None
    """For a replay, how the same content was established: the registry's error named our derived
    ids or hash, or the stored entry was read back (GetDocuments) and its hash compared."""
    entry_uuid: str | None = None
    """The stored entry's entryUUID, when known (after a look-up)."""
    replaced: str | None = None
    """The entryUUID of the entry this document replaced (RPLC), if any."""
    warnings: tuple[RegistryError, ...] = ()
    """Warnings the registry gave (``XDSExtraMetadataNotSaved`` …)."""


class RetrievedDmpDocument(BaseModel):
    """A retrieved document (ITI-43): its ids, and its bytes in memory or in the file asked for."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    unique_id: str
    """The document's uniqueId."""
    repository_unique_id: str
    """The repository it came from."""
    mime_type: str
    """Its mimeType (``text/xml`` for a CDA)."""
    size: int
    """Its size in bytes."""
    sha1: str
    """SHA-1 of its bytes (hex), checked against the entry's ``hash`` when the entry was given."""
    path: Path | None = None
    """Where it was written, when ``to=`` was given."""
    content: bytes | None = Field(default=None, repr=False)
    """The bytes, when kept in memory (no ``to=``); never shown in reprs."""

    def read(self) -> bytes:
        """The bytes, from memory or from the file."""
        if self.content is not None:
            return self.content
        if self.path is None:  # pragma: no cover - one of the two is always set
            raise ValueError("the document was neither kept in memory nor written")
        return self.path.read_bytes()


# ======================================================================= the shared logic


@dataclass
class _DepositCall:
    """What a deposit's outcome event needs, filled in as the call goes (the patient already pseudonymised)."""

    correlation_id: str = field(default_factory=new_message_id)
    """The call's id, also the ``wsa:MessageID`` of its ProvideAndRegister (every attempt shares it)."""
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    started: float = field(default_factory=time.monotonic)
    patient: str | None = None
    """The patient's pseudonym (never the matricule: this object lives as long as the call)."""
    document_ids: tuple[str, ...] = ()
    result: DepositResult | None = None


class _IdentifiedDeposit(ProvideAndRegister):
    """ITI-41 with the ``wsa:MessageID`` the deposit call chose, so that its outcome event shares it."""

    def __init__(self, prepared: PreparedDeposit, *, security: VihfSecurity, message_id: str) -> None:
        super().__init__(prepared, security=security)
        self._message_id = message_id

    def new_message_id(self, settings: Settings) -> str:
        """The call's id, made before the first attempt (and kept on every retry, as always)."""
        return self._message_id


class _DmpCore:
    """Everything the two clients share without I/O: checks, VIHFs, and every method's flow."""

    _trail: AuditTrail

    def __init__(self, settings: Settings, signer: Signer | None) -> None:
        self.settings = settings
        self._signer: Signer = signer if signer is not None else FileSigner.from_settings(settings.signing)
        self._endpoints: dict[str, str] = {}

    def __repr__(self) -> str:
        return client_repr(self, self.settings.environment, dmp=self.settings.environment.dmp_base_url)

    # ------------------------------------------------------------------ outcome events

    @contextmanager
    def _deposit_call(self) -> Iterator[_DepositCall]:
        """The block of one deposit: its outcome event is emitted when the block ends, however it ends.

        A cancellation or an interrupt is a ``failure`` too: the call did not learn whether the
        document was stored; depositing it again tells (``already_done`` if it was).
        """
        call = _DepositCall()
        with self._trail.dispatcher.tally(call.correlation_id) as tally:
            try:
                yield call
            except BaseException as exc:
                self._emit_outcome(call, tally.count, error=exc)
                raise
        self._emit_outcome(call, tally.count, error=None)

    def _emit_outcome(self, call: _DepositCall, attempts: int, *, error: BaseException | None) -> None:
        if error is not None:
            outcome = Outcome.FAILURE
        elif call.result is not None and call.result.already_deposited:
            outcome = Outcome.ALREADY_DONE
        else:
            outcome = Outcome.SUCCESS
        trail = self._trail
        try:
            event = self._outcome_event(call, attempts, outcome, error)
        except Exception:  # like a failing sink: never let the audit replace the call's own result or error
            _audit_logger.exception("the outcome event of a deposit could not be built (%s)", call.correlation_id)
            return
        trail.dispatcher.emit(event)

    def _outcome_event(
        self, call: _DepositCall, attempts: int, outcome: Outcome, error: BaseException | None
    ) -> AuditEvent:
        trail = self._trail
        return AuditEvent(
            kind=AuditEventKind.OUTCOME,
            timestamp=call.timestamp,
            service="dmp",
            operation="deposit",
            endpoint=self._audit_endpoint(self.settings.environment.dmp_url(DmpService.REPOSITORY)),
            correlation_id=call.correlation_id,
            attempt=attempts,
            actor=trail.actor,
            patient=call.patient,
            document_ids=call.document_ids,
            outcome=outcome,
            error_type=type(error).__name__ if error is not None else None,
            error_code=error_code_of(error),
            http_status=error.status_code if isinstance(error, HttpStatusError) else None,
            duration_ms=(time.monotonic() - call.started) * 1000.0,
        )

    def _audit_endpoint(self, url: str) -> str:
        """``endpoint_of(url)``, split once per URL rather than at every deposit's outcome event."""
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = endpoint_of(url)
            _keep(self._endpoints, url, endpoint)
        return endpoint

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _qualified(patient: Identity) -> INS:
        if not isinstance(patient, Identity):
            raise TypeError("DMP calls take the patient's Identity (status QUAL), so that its status can be checked")
        return patient.require_qualified("a DMP call")

    def _vihf(
        self, ins: INS | None, access: Access = _NORMAL, *, transaction: DmpTransaction = "consultation"
    ) -> VihfSecurity:
        dmp = self.settings.dmp
        mode = AuthenticationMode(dmp.authentication_modes.get(transaction, dmp.authentication_mode))
        reinforced = mode is AuthenticationMode.INDIRECTE_RENFORCEE
        request = VihfRequest(
            patient_resource_id=ins.to_xds_cx() if ins is not None else None,
            access_mode=access.mode,
            access_reason=access.reason,
            authentication_mode=mode,
            authn_context_class=dmp.reinforced_context_class if reinforced else None,
            authn_instant=self.settings.signing.vihf_authn_instant,
        )
        return VihfSecurity(self.settings, self._signer, request)

    def _query(self, ins: INS, query: Any, access: Access, return_type: ReturnType) -> RegistryStoredQuery:
        return RegistryStoredQuery(
            AdhocQueryRequest(query=query, return_type=return_type),
            security=self._vihf(ins, access, transaction="consultation"),
            patient=ins.matricule,
            patient_id=ins.to_xds_cx(),
            max_references=self.settings.dmp.max_references,
        )

    def _get_documents(
        self, ins: INS, access: Access, *, entry_uuids: Sequence[str] = (), unique_ids: Sequence[str] = ()
    ) -> Flow[DocumentList]:
        """GetDocuments in batches of ``settings.dmp.page_size``, in the order asked, at most ``dmp.max_pages`` batches.

        Each page is checked by its operation (the asked patient, the asked ids only): a page about
        another patient fails the whole call, never a partial list.
        """
        size = self.settings.dmp.page_size
        entries: list[DocumentEntry] = []
        responses: list[RegistryResponse] = []
        key = "entry_uuids" if entry_uuids else "unique_ids"
        wanted = list(dict.fromkeys(entry_uuids or unique_ids))
        pages = -(-len(wanted) // size)
        if pages > self.settings.dmp.max_pages:
            raise LimitExceededError(
                f"{len(wanted)} entries would take {pages} GetDocuments pages of {size}, over the "
                f"{self.settings.dmp.max_pages} allowed",
                limit="dmp.max_pages",
                hint="narrow the search (dates, codes), or raise dmp.max_pages or dmp.page_size",
            )
        for start in range(0, len(wanted), size):
            batch = tuple(wanted[start : start + size])
            query = GetDocumentsQuery.model_validate({key: batch})
            answer = yield self._query(ins, query, access, ReturnType.LEAF_CLASS)
            entries.extend(answer.documents)
            responses.append(answer.response)
        if entry_uuids:
            order = {uuid: index for index, uuid in enumerate(entry_uuids)}
            entries.sort(key=lambda e: order.get(e.entry_uuid, len(order)))
        return DocumentList(entries, response=_merged(responses))

    def _current_entry(self, ins: INS, entry: DocumentEntry | str, access: Access) -> Flow[DocumentEntry]:
        """The entry as the registry holds it now (with entryUUID, logicalID, version, status)."""
        if isinstance(entry, DocumentEntry) and _is_registry_entry(entry):
            return entry
        ident = entry if isinstance(entry, str) else entry.unique_id
        by_uuid = ident.startswith("urn:uuid:")
        found = yield from self._get_documents(
            ins, access, entry_uuids=(ident,) if by_uuid else (), unique_ids=() if by_uuid else (ident,)
        )
        current = [e for e in found if e.availability_status == AvailabilityStatus.APPROVED] or list(found)
        if not current:
            raise ValidationError("no document with this id is in the patient's DMP (or it is masked to you)")
        return max(current, key=lambda e: int(e.version or "0") if (e.version or "").isdigit() else 0)

    def _update_submission_set(self, ins: INS) -> SubmissionSet:
        return SubmissionSet(
            unique_id=new_unique_id(self.settings.dmp.unique_id_root),
            source_id=source_id(self.settings),
            patient_id=Cx.parse(ins.to_xds_cx()),
            submission_time=XdsTime.now(),
            content_type_code=self.settings.dmp.content_type_code,
            authors=(submission_author(self.settings),),
        )

    # ------------------------------------------------------------------ deposit

    def _deposit_flow(
        self,
        document: bytes | ClinicalDocument,
        patient: Identity,
        replaces: str | None,
        content_type: Code | None,
        confidentiality: Sequence[Code],
        submission_time: dt.datetime | None,
        call: _DepositCall,
    ) -> Flow[DepositResult]:
        ins = self._qualified(patient)
        call.patient = self._trail.pseudonymizer.patient(ins.matricule)
        moment = submission_time or dt.datetime.now(dt.UTC)

        def prepare(target: str | None) -> PreparedDeposit:
            return prepare_deposit(
                document,
                settings=self.settings,
                signer=self._signer,
                patient=patient,
                replaces=target,
                content_type_code=content_type,
                confidentiality=confidentiality,
                submission_time=moment,
            )

        target = replaces if replaces is None or replaces.startswith("urn:uuid:") else None
        if replaces is not None and target is None:
            current = yield from self._current_entry(ins, replaces, _NORMAL)
            target = current.entry_uuid
        if _signs_quickly(self._signer) and _size_of(document) < _HEAVY_DOCUMENT:
            prepared = prepare(target)
        else:
            prepared = yield _Blocking(functools.partial(prepare, target))
        call.document_ids = (prepared.ids.document, prepared.ids.signature)
        response: RegistryResponse = yield _IdentifiedDeposit(
            prepared, security=self._vihf(ins, transaction="deposit"), message_id=call.correlation_id
        )
        result = {
            "document_unique_id": prepared.ids.document,
            "submission_set_unique_id": prepared.ids.submission_set,
            "signature_unique_id": prepared.ids.signature,
            "hash": prepared.entry.hash or "",
            "size": prepared.entry.size or 0,
            "replaced": prepared.replaces,
            "warnings": response.warnings,
        }
        if response.status is ResponseStatus.SUCCESS:
            return DepositResult.model_validate(result)
        return (yield from self._confirm_replay(ins, prepared, response, result))

    def _confirm_replay(
        self, ins: INS, prepared: PreparedDeposit, response: RegistryResponse, result: dict[str, Any]
    ) -> Flow[DepositResult]:
        """A deposit answered ``XDSDuplicateUniqueIdInRegistry``: the same document again, or another one?

        1. The registry's error names one of our *derived* ids (submission set, signature) or our
           hash: those are functions of the content, so it is the same document.
        2. Otherwise (``settings.dmp.confirm_duplicates``) the stored entry is read back by uniqueId
           and its hash and size compared: same → already deposited, other → DocumentConflictError.
        3. Otherwise, or when the look-up finds nothing, the registry's error is raised as it came.
        """
        said = " ".join(f"{e.location or ''} {e.code_context}" for e in response.errors if e.error_code == _DUPLICATE)
        ours = (prepared.ids.submission_set, prepared.ids.signature, (prepared.entry.hash or "").lower())
        if any(value and value in said.lower() for value in (o.lower() for o in ours)):
            return DepositResult.model_validate({**result, "already_deposited": True, "confirmed_by": "registry"})
        with error_codes(self.settings.dmp.error_codes):  # read outside the operation: the settings' table
            error = registry_error(response, operation=ProvideAndRegister.name)
        if not self.settings.dmp.confirm_duplicates:
            raise error
        try:
            found = yield from self._get_documents(ins, _NORMAL, unique_ids=(prepared.ids.document,))
        except DmpServiceError as exc:
            raise error from exc
        if not found:
            raise error
        stored = found[0]
        if (stored.hash or "").lower() == (prepared.entry.hash or "").lower() and stored.size in (
            None,
            prepared.entry.size,
        ):
            return DepositResult.model_validate(
                {**result, "already_deposited": True, "confirmed_by": "lookup", "entry_uuid": stored.entry_uuid}
            )
        raise DocumentConflictError(response, operation=ProvideAndRegister.name)

    # ------------------------------------------------------------------ queries

    def _find_documents_flow(
        self, patient: Identity, access: AccessLike, filters: dict[str, Any], include_signatures: bool
    ) -> Flow[DocumentList]:
        ins = self._qualified(patient)
        how = _access(access)
        query = FindDocumentsQuery(patient_id=Cx.parse(ins.to_xds_cx()), **filters)
        try:
            answer = yield self._query(ins, query, how, ReturnType.LEAF_CLASS)
        except DmpRegistryError as exc:
            if _TOO_MANY not in exc.codes:
                raise
            refs = yield self._query(ins, query, how, ReturnType.OBJECT_REF)
            ids = [ref.id for ref in refs.object_refs]
            found = yield from self._get_documents(ins, how, entry_uuids=ids)
            entries, response = list(found), _merged([refs.response, found.response])
        else:
            entries, response = list(answer.documents), answer.response
        if not include_signatures:
            entries = [e for e in entries if not _is_signature(e)]
        return DocumentList(entries, response=response)

    def _find_submission_sets_flow(
        self, patient: Identity, access: AccessLike, filters: dict[str, Any]
    ) -> Flow[list[SubmissionSet]]:
        ins = self._qualified(patient)
        query = FindSubmissionSetsQuery(patient_id=Cx.parse(ins.to_xds_cx()), **filters)
        answer = yield self._query(ins, query, _access(access), ReturnType.LEAF_CLASS)
        return list(answer.submission_sets)

    def _get_documents_flow(
        self, patient: Identity, entry_uuids: Sequence[str], unique_ids: Sequence[str], access: AccessLike
    ) -> Flow[DocumentList]:
        ins = self._qualified(patient)
        if bool(entry_uuids) == bool(unique_ids):
            raise ValidationError("get_documents takes entry_uuids or unique_ids (one of the two, not empty)")
        return (yield from self._get_documents(ins, _access(access), entry_uuids=entry_uuids, unique_ids=unique_ids))

    # ------------------------------------------------------------------ retrieve

    def _retrieve_flow(
        self, patient: Identity, document: DocumentEntry | tuple[str, str], access: AccessLike, to: Path | str | None
    ) -> Flow[RetrievedDmpDocument]:
        ins = self._qualified(patient)
        expected: DocumentEntry | None = None
        if isinstance(document, DocumentEntry):
            expected = document
            if document.repository_unique_id is None:
                raise ValidationError("the entry has no repositoryUniqueId; give (repository_id, unique_id)")
            repository, unique_id = document.repository_unique_id, document.unique_id
        else:
            repository, unique_id = document
        request = RetrieveDocumentSetRequest(
            documents=(DocumentRequest(repository_unique_id=repository, document_unique_id=unique_id),)
        )
        operation = RetrieveDocumentSet(
            request,
            security=self._vihf(ins, _access(access), transaction="consultation"),
            patient=ins.matricule,
            patient_id=ins.to_xds_cx(),
        )
        answer: RetrieveDocumentSetResponse = yield operation
        with error_codes(self.settings.dmp.error_codes):  # _deliver reads refusals outside the operation
            return _deliver(answer, unique_id, expected, Path(to) if to is not None else None)

    # ------------------------------------------------------------------ updates (ITI-57)

    def _visibility_flow(
        self, patient: Identity, entry: DocumentEntry | str, add: Sequence[Code], remove: Sequence[Code], access: Access
    ) -> Flow[RegistryResponse]:
        ins = self._qualified(patient)
        current = yield from self._current_entry(ins, entry, access)
        dropped = {(c.code, c.code_system) for c in remove}
        codes: list[AnyCode] = [c for c in current.confidentiality_codes if (c.code, c.code_system) not in dropped]
        for code in add:
            if (code.code, code.code_system) not in {(c.code, c.code_system) for c in codes}:
                codes.append(code)
        data = current.model_dump()
        data.update(
            entry_uuid=DOCUMENT_ENTRY_ID,
            logical_id=current.logical_id or current.entry_uuid,
            version=None,
            availability_status=None,
            confidentiality_codes=tuple(c.model_dump() for c in codes),
        )
        new_version = DocumentEntry.model_validate(data)
        request = SubmissionRequest.metadata_update(
            self._update_submission_set(ins), new_version, previous_version=current.version or "1"
        ).check(MetadataProfile.DMP)
        operation = UpdateDocumentSet(
            request,
            security=self._vihf(ins, access, transaction="delete"),
            patient=ins.matricule,
            document_ids=(current.unique_id,),
        )
        response: RegistryResponse = yield operation
        return response

    def _status_flow(
        self, patient: Identity, entry: DocumentEntry | str, new_status: AvailabilityStatus, access: Access
    ) -> Flow[RegistryResponse]:
        ins = self._qualified(patient)
        current = yield from self._current_entry(ins, entry, access)
        request = SubmissionRequest.status_update(
            self._update_submission_set(ins),
            current.entry_uuid,
            original_status=current.availability_status or AvailabilityStatus.APPROVED,
            new_status=new_status,
        ).check(MetadataProfile.DMP)
        operation = UpdateDocumentSet(
            request,
            security=self._vihf(ins, access, transaction="delete"),
            patient=ins.matricule,
            document_ids=(current.unique_id,),
        )
        response: RegistryResponse = yield operation
        return response

    # ------------------------------------------------------------------ TD

    def _existence_flow(self, patient: Identity) -> Flow[DmpStatus]:
        ins = self._qualified(patient)
        operation = PatientQueryOperation(
            ins,
            reason=QueryReason.TEST_EXISTENCE,
            security=self._vihf(ins, transaction="consultation"),
            action=self.settings.dmp.test_existence_action,
            accept_found_without_ins=self.settings.dmp.accept_found_without_ins,
        )
        answer = yield operation
        return cast("DmpStatus", answer.status)

    def _authorisation_flow(self, patient: Identity, add: bool, as_treating_doctor: bool) -> Flow[ServiceStatus]:
        ins = self._qualified(patient)
        action = AuthorisationAction.ADD if add else AuthorisationAction.REMOVE
        status: ServiceStatus = yield SetAuthorisationOperation(
            ins, action, treating_doctor=as_treating_doctor, security=self._vihf(ins, transaction="administration")
        )
        return status

    def _list_authorisations_flow(self, patient: Identity) -> Flow[tuple[AuthorisedProfessional, ...]]:
        ins = self._qualified(patient)
        professionals: tuple[AuthorisedProfessional, ...] = yield ListAuthorisationsOperation(
            ins, security=self._vihf(ins, transaction="consultation")
        )
        return professionals

    def _recent_flow(self, since: dt.date, kind: RecentDmpKind | str) -> Flow[tuple[RecentDmp, ...]]:
        day = since.date() if isinstance(since, dt.datetime) else since
        patients: tuple[RecentDmp, ...] = yield PatientListOperation(
            day, RecentDmpKind(kind), security=self._vihf(None, transaction="consultation")
        )
        return patients

    def _find_patients_flow(self, search: PatientSearch) -> Flow[tuple[PatientCandidate, ...]]:
        if not any(
            (search.family_name, search.given_name, search.sex, search.birth_date, search.postal_code, search.city)
        ):
            raise ValidationError("a patient search needs at least one trait (name, sex, birth date, place)")
        candidates: tuple[PatientCandidate, ...] = yield FindCandidatesOperation(
            search, security=self._vihf(None, transaction="consultation")
        )
        return candidates

    def _registration_flow(
        self,
        patient: Identity,
        kind: RegistrationKind,
        data: AdministrativeData | None = None,
        closure: Closure | None = None,
        *,
        consent: bool | None = None,
        vitale: VitaleCard | None = None,
    ) -> Flow[None]:
        ins = self._qualified(patient)
        if data is not None and data.ins != ins:
            raise ValidationError("the administrative data are about another patient than the identity given")
        if kind in (RegistrationKind.CREATE, RegistrationKind.REACTIVATE) and consent is not True:
            raise ValidationError(
                "creating or reactivating a DMP needs the patient's consent, collected by you: pass consent=True",
                problems=["consent: not given"],
            )
        if data is None and kind in (RegistrationKind.REACTIVATE, RegistrationKind.CLOSE):
            data = self._administrative_data(patient, None, None, None)  # the names the kit sends with them
        request = RegistrationRequest(
            kind=kind,
            ins=ins,
            data=data,
            consent=consent,
            vitale=vitale,
            closure=closure,
            author=_registration_author(self.settings),
        )
        yield RegistrationOperation(request, security=self._vihf(ins, transaction="administration"))

    def _administrative_flow(self, patient: Identity) -> Flow[AdministrativeData]:
        ins = self._qualified(patient)
        answer = yield PatientQueryOperation(
            ins,
            reason=QueryReason.ADMINISTRATIVE_DATA,
            security=self._vihf(ins, transaction="consultation"),
            accept_found_without_ins=self.settings.dmp.accept_found_without_ins,
        )
        if answer.administrative is None:
            raise MalformedResponseError("the DMP answered the administrative-data read without the data")
        return cast("AdministrativeData", answer.administrative)

    def _administrative_data(
        self,
        patient: Identity,
        oppositions: Oppositions | None,
        email: str | None,
        mobile_phone: str | None,
        **more: Any,
    ) -> AdministrativeData:
        ins = self._qualified(patient)
        traits = patient.traits
        return AdministrativeData(
            ins=ins,
            birth_name=traits.birth_name,
            used_name=traits.used_name,
            given_names=" ".join(traits.birth_first_names),
            sex=traits.sex,
            birth_date=traits.birth_date,
            email=email,
            mobile_phone=mobile_phone,
            oppositions=oppositions or Oppositions(),
            **more,
        )


def _registration_author(settings: Settings) -> RegistrationAuthor | None:
    """TD1.x ``author/assignedEntity`` from the configured professional and organisation [V kit]."""
    professional = settings.professional
    if professional is None:
        return None
    try:
        specialty: Code | None = author_specialty(professional)
    except DmpConnectorError:
        specialty = None  # a combination JDV_J01 lacks: sent without a specialty rather than an invented one
    organisation = settings.organisation
    return RegistrationAuthor(
        national_id=professional.national_id,
        specialty=specialty,
        family_name=professional.family_name,
        given_name=professional.given_name,
        organisation_id=organisation.national_id if organisation is not None else None,
        organisation_name=organisation.name if organisation is not None else None,
    )


def _is_signature(entry: DocumentEntry) -> bool:
    """A submission-set signature entry (formatCode ``http://www.w3.org/2000/09/xmldsig#``), not a clinical document."""
    return entry.format_code is not None and entry.format_code.code == _SIGNATURE_FORMAT


def _is_registry_entry(entry: DocumentEntry) -> bool:
    return entry.entry_uuid.startswith("urn:uuid:") and entry.version is not None


def _merged(responses: Sequence[RegistryResponse]) -> RegistryResponse:
    """One response for several pages: the worst status, every error."""
    errors = tuple(e for r in responses for e in r.errors)
    statuses = {r.status for r in responses}
    status = ResponseStatus.SUCCESS
    if ResponseStatus.FAILURE in statuses or ResponseStatus.PARTIAL_SUCCESS in statuses:
        status = ResponseStatus.PARTIAL_SUCCESS
    return RegistryResponse(status=status, errors=errors)


def _deliver(
    answer: RetrieveDocumentSetResponse, unique_id: str, expected: DocumentEntry | None, to: Path | None
) -> RetrievedDmpDocument:
    """The retrieved document, checked against its entry (hash, size) and written to ``to`` or kept in memory."""
    document = next((d for d in answer.documents if d.document_unique_id == unique_id), None)
    if document is None or document.content is None:
        raise registry_error(
            answer.response
            if answer.response.errors
            else RegistryResponse(
                status=ResponseStatus.FAILURE,
                errors=(RegistryError(error_code="XDSDocumentUniqueIdError", code_context="document not returned"),),
            ),
            operation=RetrieveDocumentSet.name,
        )
    content: Attachment = document.content
    try:
        sha1 = content.sha1()
        if expected is not None:
            problems = []
            if expected.size is not None and expected.size != content.size:
                problems.append("size differs from the document's length (XDSNonIdenticalSize)")
            if expected.hash is not None and expected.hash.lower() != sha1:
                problems.append("hash differs from the SHA-1 of the document (XDSNonIdenticalHash)")
            if problems:
                raise DocumentIntegrityError(
                    "the retrieved document does not match its entry: " + "; ".join(problems),
                    problems=problems,
                    hint="its bytes were dropped; retry, and report it if it persists",
                )
        if to is not None:
            content.save(to)
            data = None
        else:
            data = content.read()
    finally:
        for other in answer.documents:
            if other.content is not None:
                other.content.close()
    return RetrievedDmpDocument(
        unique_id=unique_id,
        repository_unique_id=document.repository_unique_id,
        mime_type=document.mime_type,
        size=content.size,
        sha1=sha1,
        path=to,
        content=data,
    )


def _find_filters(
    statuses: Sequence[AvailabilityStatus | str],
    class_codes: Sequence[Code],
    type_codes: Sequence[Code],
    practice_setting_codes: Sequence[Code],
    healthcare_facility_type_codes: Sequence[Code],
    format_codes: Sequence[Code],
    confidentiality_codes: Sequence[Code],
    event_codes: Sequence[Code],
    author_persons: Sequence[str],
    created_from: dt.datetime | dt.date | None,
    created_to: dt.datetime | dt.date | None,
    service_from: dt.datetime | dt.date | None,
    service_to: dt.datetime | dt.date | None,
) -> dict[str, Any]:
    return {
        "statuses": tuple(statuses),
        "class_codes": tuple(class_codes),
        "type_codes": tuple(type_codes),
        "practice_setting_codes": tuple(practice_setting_codes),
        "healthcare_facility_type_codes": tuple(healthcare_facility_type_codes),
        "format_codes": tuple(format_codes),
        "confidentiality_codes": tuple(confidentiality_codes),
        "event_codes": tuple(event_codes),
        "author_persons": tuple(author_persons),
        "creation_time_from": _xds_time(created_from),
        "creation_time_to": _xds_time(created_to),
        "service_start_time_from": _xds_time(service_from),
        "service_stop_time_to": _xds_time(service_to),
    }


def _xds_time(value: dt.datetime | dt.date | None) -> XdsTime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime) and value.utcoffset() is None:
        raise ValidationError("search times must be timezone-aware (XDS times are UTC)")
    return XdsTime.model_validate(value)


# ======================================================================= the clients


class DmpClient(_DmpCore):
    """Synchronous DMP client: deposit, search, retrieve, update, and the DMP transactions (TD).

    ``signer`` signs the VIHFs and the submission sets (default: ``[signing.credentials]``).
    ``http_client`` (an ``httpx.Client``) stays yours to configure and close; ``audit`` sinks get
    one event per attempt and one outcome event per deposit, the patient pseudonymised; ``retry``
    overrides ``settings.retry`` for the operations that are safe to repeat (queries, retrieve, deposit).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        signer: Signer | None = None,
        http_client: SyncHttpClient | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, signer)
        self._client = Client(settings, http_client=cast(Any, http_client), audit=audit, retry=retry)
        self._trail = self._client._trail

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client with another deadline (seconds per call) or retry policy, for a call or a few.

        Shares this client's connection pool and audit sinks; closing the copy closes neither.
        ``dmp.with_options(timeout=5).find_documents(patient)``;
        see :meth:`dmp_connector.transport.Client.with_options`.
        """
        clone = copy.copy(self)
        clone._client = self._client.with_options(timeout=timeout, retry=retry)
        clone.settings = clone._client.settings
        return clone

    def _run(self, flow: Flow[R]) -> R:
        """Drive ``flow``; its requests share one ``timeouts.call`` (or the enclosing :func:`deadline`)."""
        with call_scope(self.settings):
            try:
                operation = next(flow)
                while True:
                    try:
                        result = operation.job() if isinstance(operation, _Blocking) else self._client.send(operation)
                    except DmpConnectorError as exc:
                        operation = flow.throw(exc)
                    else:
                        operation = flow.send(result)
            except StopIteration as stop:
                return cast("R", stop.value)

    @property
    def audit(self) -> AuditDispatcher:
        """The audit dispatcher: add a sink with ``client.audit.add(sink)``."""
        return self._client.audit

    # ---------------------------------------------------------------- documents

    def deposit(
        self,
        document: bytes | ClinicalDocument,
        *,
        patient: Identity,
        replaces: str | None = None,
        content_type: Code | None = None,
        confidentiality: Sequence[Code] = (),
        submission_time: dt.datetime | None = None,
    ) -> DepositResult:
        """Deposit a CDA document (TD2.1), or replace an earlier one (TD2.2, ``replaces`` = its entryUUID or uniqueId).

        The metadata come from the document; the submission set is signed. Safe to call again
        after a lost answer: the same document is reported ``already_deposited``, never stored
        twice. A patient without a DMP raises :class:`~dmp_connector.dmp.errors.DmpNotFoundError`.
        The call ends with one audit outcome event (``success``, ``already_done`` or ``failure``).
        """
        with self._deposit_call() as call:
            call.result = self._run(
                self._deposit_flow(document, patient, replaces, content_type, confidentiality, submission_time, call)
            )
        return call.result

    def find_documents(
        self,
        patient: Identity,
        *,
        statuses: Sequence[AvailabilityStatus | str] = _APPROVED,
        class_codes: Sequence[Code] = (),
        type_codes: Sequence[Code] = (),
        practice_setting_codes: Sequence[Code] = (),
        healthcare_facility_type_codes: Sequence[Code] = (),
        format_codes: Sequence[Code] = (),
        confidentiality_codes: Sequence[Code] = (),
        event_codes: Sequence[Code] = (),
        author_persons: Sequence[str] = (),
        created_from: dt.datetime | dt.date | None = None,
        created_to: dt.datetime | dt.date | None = None,
        service_from: dt.datetime | dt.date | None = None,
        service_to: dt.datetime | dt.date | None = None,
        include_signatures: bool = False,
        access: AccessLike = AccessMode.NORMAL,
    ) -> DocumentList:
        """The patient's documents matching every filter given (TD3.1 FindDocuments).

        Ranges: ``created_from`` ≤ creationTime < ``created_to``; ``service_from`` ≤ serviceStartTime,
        serviceStopTime < ``service_to``. The submission-set signatures deposited with each document are
        left out unless ``include_signatures``. A result too large for one answer (``XDSTooManyResults``)
        is fetched as references, then in GetDocuments batches of ``settings.dmp.page_size``.
        """
        filters = _find_filters(
            statuses,
            class_codes,
            type_codes,
            practice_setting_codes,
            healthcare_facility_type_codes,
            format_codes,
            confidentiality_codes,
            event_codes,
            author_persons,
            created_from,
            created_to,
            service_from,
            service_to,
        )
        return self._run(self._find_documents_flow(patient, access, filters, include_signatures))

    def get_documents(
        self,
        patient: Identity,
        *,
        entry_uuids: Sequence[str] = (),
        unique_ids: Sequence[str] = (),
        access: AccessLike = AccessMode.NORMAL,
    ) -> DocumentList:
        """Entries by entryUUID or by uniqueId (GetDocuments, in batches)."""
        return self._run(self._get_documents_flow(patient, entry_uuids, unique_ids, access))

    def find_submission_sets(
        self,
        patient: Identity,
        *,
        statuses: Sequence[AvailabilityStatus | str] = _APPROVED,
        submitted_from: dt.datetime | dt.date | None = None,
        submitted_to: dt.datetime | dt.date | None = None,
        author_person: str | None = None,
        content_type_codes: Sequence[Code] = (),
        source_ids: Sequence[str] = (),
        access: AccessLike = AccessMode.NORMAL,
    ) -> list[SubmissionSet]:
        """The patient's submission sets (FindSubmissionSets)."""
        filters = _submission_set_filters(
            statuses, submitted_from, submitted_to, author_person, content_type_codes, source_ids
        )
        return self._run(self._find_submission_sets_flow(patient, access, filters))

    def retrieve(
        self,
        patient: Identity,
        document: DocumentEntry | tuple[str, str],
        *,
        access: AccessLike = AccessMode.NORMAL,
        to: Path | str | None = None,
    ) -> RetrievedDmpDocument:
        """One document's bytes (TD3.2), byte for byte; checked against the entry's hash and size when given.

        ``document`` is an entry from a search, or ``(repository_unique_id, unique_id)``. With ``to``
        the bytes are streamed to that file, otherwise kept in memory.
        """
        return self._run(self._retrieve_flow(patient, document, access, to))

    # ---------------------------------------------------------------- updates

    def mask(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Mask a document from professionals other than its author (TD3.3a, ``MASQUE_PS``)."""
        return self._run(self._visibility_flow(patient, entry, [MASQUE_PS], [], _access(access)))

    def unmask(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Show a masked document to professionals again (TD3.3a)."""
        return self._run(self._visibility_flow(patient, entry, [], [MASQUE_PS], _access(access)))

    def hide_from_patient(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Hide a document from the patient until an announcement consultation (TD3.3b, ``INVISIBLE_PATIENT``)."""
        return self._run(self._visibility_flow(patient, entry, [INVISIBLE_PATIENT], [], _access(access)))

    def show_to_patient(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Make a hidden document visible to the patient (TD3.3b)."""
        return self._run(self._visibility_flow(patient, entry, [], [INVISIBLE_PATIENT], _access(access)))

    def hide_from_legal_representatives(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Hide a document from the patient's legal representatives (``INVISIBLE_REPRESENTANTS_LEGAUX``)."""
        return self._run(self._visibility_flow(patient, entry, [INVISIBLE_REPRESENTANTS_LEGAUX], [], _access(access)))

    def show_to_legal_representatives(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Make a document visible to the legal representatives again."""
        return self._run(self._visibility_flow(patient, entry, [], [INVISIBLE_REPRESENTANTS_LEGAUX], _access(access)))

    def archive(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Archive a document (TD3.3d: status ``urn:asip:ci-sis:2010:StatusType:Archived``)."""
        return self._run(self._status_flow(patient, entry, AvailabilityStatus.ARCHIVED, _access(access)))

    def delete(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Delete a document (TD3.3c: status ``urn:asip:ci-sis:2010:StatusType:Deleted``)."""
        return self._run(self._status_flow(patient, entry, AvailabilityStatus.DELETED, _access(access)))

    # ---------------------------------------------------------------- TD

    def test_existence(self, patient: Identity) -> DmpStatus:
        """TD0.2: does the patient have a DMP, its state, this professional's authorisation and standing."""
        return self._run(self._existence_flow(patient))

    def set_authorisation(
        self, patient: Identity, *, add: bool = True, as_treating_doctor: bool = False
    ) -> ServiceStatus:
        """TD0.3: add (or remove, ``add=False``) this professional's authorisation, optionally as médecin traitant."""
        return self._run(self._authorisation_flow(patient, add, as_treating_doctor))

    def list_authorisations(self, patient: Identity) -> tuple[AuthorisedProfessional, ...]:
        """The professionals authorised on the patient's DMP."""
        return self._run(self._list_authorisations_flow(patient))

    def recent_dmps(
        self, since: dt.date, kind: RecentDmpKind | str = RecentDmpKind.LAST_AUTHORISATION
    ) -> tuple[RecentDmp, ...]:
        """TD0.4: the DMPs this professional was authorised on (or deposited to, ``LASTDOC``) since a date."""
        return self._run(self._recent_flow(since, kind))

    def find_patients(self, search: PatientSearch) -> tuple[PatientCandidate, ...]:
        """TD0.5: patients matching partial traits (PDQv3)."""
        return self._run(self._find_patients_flow(search))

    def create_dmp(
        self,
        patient: Identity,
        *,
        oppositions: Oppositions | None = None,
        email: str | None = None,
        mobile_phone: str | None = None,
        consent: bool = False,
        civility: str | None = None,
        address: Address | None = None,
        home_phone: str | None = None,
        vitale: VitaleCard | None = None,
    ) -> None:
        """TD1.1: create the patient's DMP from the identity's traits; ``DMPFound`` raises DmpAlreadyExistsError.

        ``consent=True`` says the patient consented (``CONSENTEMENT_OUVERTURE_DMP``): required.
        ``vitale``: the Carte Vitale holder's traits as read from the card.
        """
        data = self._administrative_data(
            patient, oppositions, email, mobile_phone, civility=civility, address=address, home_phone=home_phone
        )
        self._run(self._registration_flow(patient, RegistrationKind.CREATE, data=data, consent=consent, vitale=vitale))

    def reactivate_dmp(self, patient: Identity, *, consent: bool = False) -> None:
        """TD1.2: reopen a closed DMP; ``consent=True`` (``CONSENTEMENT_REACTIVATION_DMP``) is required."""
        self._run(self._registration_flow(patient, RegistrationKind.REACTIVATE, consent=consent))

    def get_administrative_data(self, patient: Identity) -> AdministrativeData:
        """TD1.3a: the DMP's administrative data, with the patient's oppositions."""
        return self._run(self._administrative_flow(patient))

    def update_administrative_data(self, patient: Identity, data: AdministrativeData) -> None:
        """TD1.3b: replace the administrative data (oppositions to bris de glace / centre 15 included)."""
        self._run(self._registration_flow(patient, RegistrationKind.UPDATE, data=data))

    def close_dmp(self, patient: Identity, reason: ClosureReason | str, *, text: str | None = None) -> None:
        """TD1.4: close the patient's DMP."""
        self._run(self._registration_flow(patient, RegistrationKind.CLOSE, closure=Closure(reason=reason, text=text)))

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the HTTP client if this object created it, and the audit file."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncDmpClient(_DmpCore):
    """Asynchronous twin of :class:`DmpClient`: same constructor, same methods, awaited.

    File work (reading the retrieved part, writing ``to=``) runs in the event loop; the parts
    are already on local disk or in memory by then.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        signer: Signer | None = None,
        http_client: AsyncHttpClient | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, signer)
        self._client = AsyncClient(settings, http_client=cast(Any, http_client), audit=audit, retry=retry)
        self._client.build_in_thread = not _signs_quickly(self._signer)
        self._trail = self._client._trail

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client with another deadline (seconds per call) or retry policy, for a call or a few.

        Shares this client's connection pool and audit sinks; closing the copy closes neither.
        ``dmp.with_options(timeout=5).find_documents(patient)``;
        see :meth:`dmp_connector.transport.Client.with_options`.
        """
        clone = copy.copy(self)
        clone._client = self._client.with_options(timeout=timeout, retry=retry)
        clone.settings = clone._client.settings
        return clone

    async def _run(self, flow: Flow[R]) -> R:
        """Drive ``flow``; its requests share one ``timeouts.call`` (or the enclosing :func:`deadline`)."""
        with call_scope(self.settings):
            try:
                operation = next(flow)
                while True:
                    try:
                        if isinstance(operation, _Blocking):
                            result = await asyncio.to_thread(operation.job)
                        else:
                            result = await self._client.send(operation)
                    except DmpConnectorError as exc:
                        operation = flow.throw(exc)
                    else:
                        operation = flow.send(result)
            except StopIteration as stop:
                return cast("R", stop.value)

    @property
    def audit(self) -> AuditDispatcher:
        """The audit dispatcher: add a sink with ``client.audit.add(sink)``."""
        return self._client.audit

    async def deposit(
        self,
        document: bytes | ClinicalDocument,
        *,
        patient: Identity,
        replaces: str | None = None,
        content_type: Code | None = None,
        confidentiality: Sequence[Code] = (),
        submission_time: dt.datetime | None = None,
    ) -> DepositResult:
        """Deposit a CDA document; see :meth:`DmpClient.deposit`."""
        with self._deposit_call() as call:
            call.result = await self._run(
                self._deposit_flow(document, patient, replaces, content_type, confidentiality, submission_time, call)
            )
        return call.result

    async def find_documents(
        self,
        patient: Identity,
        *,
        statuses: Sequence[AvailabilityStatus | str] = _APPROVED,
        class_codes: Sequence[Code] = (),
        type_codes: Sequence[Code] = (),
        practice_setting_codes: Sequence[Code] = (),
        healthcare_facility_type_codes: Sequence[Code] = (),
        format_codes: Sequence[Code] = (),
        confidentiality_codes: Sequence[Code] = (),
        event_codes: Sequence[Code] = (),
        author_persons: Sequence[str] = (),
        created_from: dt.datetime | dt.date | None = None,
        created_to: dt.datetime | dt.date | None = None,
        service_from: dt.datetime | dt.date | None = None,
        service_to: dt.datetime | dt.date | None = None,
        include_signatures: bool = False,
        access: AccessLike = AccessMode.NORMAL,
    ) -> DocumentList:
        """The patient's documents; see :meth:`DmpClient.find_documents`."""
        filters = _find_filters(
            statuses,
            class_codes,
            type_codes,
            practice_setting_codes,
            healthcare_facility_type_codes,
            format_codes,
            confidentiality_codes,
            event_codes,
            author_persons,
            created_from,
            created_to,
            service_from,
            service_to,
        )
        return await self._run(self._find_documents_flow(patient, access, filters, include_signatures))

    async def get_documents(
        self,
        patient: Identity,
        *,
        entry_uuids: Sequence[str] = (),
        unique_ids: Sequence[str] = (),
        access: AccessLike = AccessMode.NORMAL,
    ) -> DocumentList:
        """Entries by entryUUID or uniqueId; see :meth:`DmpClient.get_documents`."""
        return await self._run(self._get_documents_flow(patient, entry_uuids, unique_ids, access))

    async def find_submission_sets(
        self,
        patient: Identity,
        *,
        statuses: Sequence[AvailabilityStatus | str] = _APPROVED,
        submitted_from: dt.datetime | dt.date | None = None,
        submitted_to: dt.datetime | dt.date | None = None,
        author_person: str | None = None,
        content_type_codes: Sequence[Code] = (),
        source_ids: Sequence[str] = (),
        access: AccessLike = AccessMode.NORMAL,
    ) -> list[SubmissionSet]:
        """The patient's submission sets; see :meth:`DmpClient.find_submission_sets`."""
        filters = _submission_set_filters(
            statuses, submitted_from, submitted_to, author_person, content_type_codes, source_ids
        )
        return await self._run(self._find_submission_sets_flow(patient, access, filters))

    async def retrieve(
        self,
        patient: Identity,
        document: DocumentEntry | tuple[str, str],
        *,
        access: AccessLike = AccessMode.NORMAL,
        to: Path | str | None = None,
    ) -> RetrievedDmpDocument:
        """One document's bytes; see :meth:`DmpClient.retrieve`."""
        return await self._run(self._retrieve_flow(patient, document, access, to))

    async def mask(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Mask a document from professionals; see :meth:`DmpClient.mask`."""
        return await self._run(self._visibility_flow(patient, entry, [MASQUE_PS], [], _access(access)))

    async def unmask(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Unmask a document; see :meth:`DmpClient.unmask`."""
        return await self._run(self._visibility_flow(patient, entry, [], [MASQUE_PS], _access(access)))

    async def hide_from_patient(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Hide a document from the patient; see :meth:`DmpClient.hide_from_patient`."""
        return await self._run(self._visibility_flow(patient, entry, [INVISIBLE_PATIENT], [], _access(access)))

    async def show_to_patient(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Show a document to the patient; see :meth:`DmpClient.show_to_patient`."""
        return await self._run(self._visibility_flow(patient, entry, [], [INVISIBLE_PATIENT], _access(access)))

    async def hide_from_legal_representatives(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Hide a document from legal representatives; see :meth:`DmpClient.hide_from_legal_representatives`."""
        return await self._run(
            self._visibility_flow(patient, entry, [INVISIBLE_REPRESENTANTS_LEGAUX], [], _access(access))
        )

    async def show_to_legal_representatives(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Show a document to legal representatives; see :meth:`DmpClient.show_to_legal_representatives`."""
        return await self._run(
            self._visibility_flow(patient, entry, [], [INVISIBLE_REPRESENTANTS_LEGAUX], _access(access))
        )

    async def archive(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Archive a document; see :meth:`DmpClient.archive`."""
        return await self._run(self._status_flow(patient, entry, AvailabilityStatus.ARCHIVED, _access(access)))

    async def delete(
        self, patient: Identity, entry: DocumentEntry | str, *, access: AccessLike = AccessMode.NORMAL
    ) -> RegistryResponse:
        """Delete a document; see :meth:`DmpClient.delete`."""
        return await self._run(self._status_flow(patient, entry, AvailabilityStatus.DELETED, _access(access)))

    async def test_existence(self, patient: Identity) -> DmpStatus:
        """TD0.2; see :meth:`DmpClient.test_existence`."""
        return await self._run(self._existence_flow(patient))

    async def set_authorisation(
        self, patient: Identity, *, add: bool = True, as_treating_doctor: bool = False
    ) -> ServiceStatus:
        """TD0.3; see :meth:`DmpClient.set_authorisation`."""
        return await self._run(self._authorisation_flow(patient, add, as_treating_doctor))

    async def list_authorisations(self, patient: Identity) -> tuple[AuthorisedProfessional, ...]:
        """The authorised professionals; see :meth:`DmpClient.list_authorisations`."""
        return await self._run(self._list_authorisations_flow(patient))

    async def recent_dmps(
        self, since: dt.date, kind: RecentDmpKind | str = RecentDmpKind.LAST_AUTHORISATION
    ) -> tuple[RecentDmp, ...]:
        """TD0.4; see :meth:`DmpClient.recent_dmps`."""
        return await self._run(self._recent_flow(since, kind))

    async def find_patients(self, search: PatientSearch) -> tuple[PatientCandidate, ...]:
        """TD0.5; see :meth:`DmpClient.find_patients`."""
        return await self._run(self._find_patients_flow(search))

    async def create_dmp(
        self,
        patient: Identity,
        *,
        oppositions: Oppositions | None = None,
        email: str | None = None,
        mobile_phone: str | None = None,
        consent: bool = False,
        civility: str | None = None,
        address: Address | None = None,
        home_phone: str | None = None,
        vitale: VitaleCard | None = None,
    ) -> None:
        """TD1.1; see :meth:`DmpClient.create_dmp`."""
        data = self._administrative_data(
            patient, oppositions, email, mobile_phone, civility=civility, address=address, home_phone=home_phone
        )
        await self._run(
            self._registration_flow(patient, RegistrationKind.CREATE, data=data, consent=consent, vitale=vitale)
        )

    async def reactivate_dmp(self, patient: Identity, *, consent: bool = False) -> None:
        """TD1.2; see :meth:`DmpClient.reactivate_dmp`."""
        await self._run(self._registration_flow(patient, RegistrationKind.REACTIVATE, consent=consent))

    async def get_administrative_data(self, patient: Identity) -> AdministrativeData:
        """TD1.3a; see :meth:`DmpClient.get_administrative_data`."""
        return await self._run(self._administrative_flow(patient))

    async def update_administrative_data(self, patient: Identity, data: AdministrativeData) -> None:
        """TD1.3b; see :meth:`DmpClient.update_administrative_data`."""
        await self._run(self._registration_flow(patient, RegistrationKind.UPDATE, data=data))

    async def close_dmp(self, patient: Identity, reason: ClosureReason | str, *, text: str | None = None) -> None:
        """TD1.4; see :meth:`DmpClient.close_dmp`."""
        await self._run(
            self._registration_flow(patient, RegistrationKind.CLOSE, closure=Closure(reason=reason, text=text))
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it, and the audit file."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _submission_set_filters(
    statuses: Sequence[AvailabilityStatus | str],
    submitted_from: dt.datetime | dt.date | None,
    submitted_to: dt.datetime | dt.date | None,
    author_person: str | None,
    content_type_codes: Sequence[Code],
    source_ids: Sequence[str],
) -> dict[str, Any]:
    return {
        "statuses": tuple(statuses),
        "submission_time_from": _xds_time(submitted_from),
        "submission_time_to": _xds_time(submitted_to),
        "author_person": author_person,
        "content_type_codes": tuple(content_type_codes),
        "source_ids": tuple(source_ids),
    }
