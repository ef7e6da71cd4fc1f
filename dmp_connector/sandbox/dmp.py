"""The DMP simulator: an XDS.b registry and repository plus the DMP's own transactions, over the real endpoints.

:class:`DmpSimulator` is a handler ``HttpRequest -> HttpResponse`` for the DMP's SOAP services
under ``/si-dmp-server/v2/services/<service>`` — exactly what ``Environment.sandbox(url).dmp_url(…)``
gives — so it runs in-process (:func:`~dmp_connector.sandbox.as_transport`), on a loopback HTTPS
server with mutual TLS (:meth:`DmpSimulator.serve`), or behind a
:class:`~dmp_connector.sandbox.ScriptedHandler` that queues faults (:class:`DmpFault`)::

    simulator = DmpSimulator(trusted=[pki.ca.certificate])
    script = ScriptedHandler(simulator).then(DmpFault.drop_after_processing().entry(simulator))

or behind a :class:`FaultMix` that draws those faults at random, seeded, over many requests::

    mix = FaultMix(simulator, drop_after_processing=0.10, unavailable=0.05, latency=(0.0, 0.02), seed=7)

What it keeps (patients and their DMP, authorisations, submission sets, entries, associations,
document bytes) lives in a :class:`DmpStore`: SQLite in memory, or in a file (``path=``) that
survives a restart.

It enforces what the real service enforces, as far as the reference notes (``dmp_xds.md`` §7) say:

* **caller** — a VIHF in ``wsse:Security``, verified with
  :func:`~dmp_connector.signature.verify_vihf` against ``trusted`` (signature, chain, dates, every
  mandatory attribute, a known ``purposeofuse``), ``Ressource_URN`` = ``urn:dmp``; on a TLS
  connection a client certificate, whose OU (indirect mode) must be the VIHF's
  ``Identifiant_Structure`` and whose CN (direct mode) the VIHF subject. A refused caller gets a
  SOAP 1.2 Sender fault over HTTP 500 with a WS-Security subcode;
* **identity** — every entry's patientId = the submission set's = the VIHF ``resource-id``
  (``XDSPatientIdDoesNotMatch``); an unknown patient (``XDSUnknownPatientId``), a patient without
  a DMP (``DMPNotFound``) or with a closed one (``DMPClosed``) is refused;
* **authorisation** — consultation (ITI-18, ITI-43, ITI-57) needs ``VALIDE`` unless the access is
  ``bris_de_glace`` (with its reason) or ``centre_15``, modes a patient may oppose; a professional
  the patient blocked (``INTERDIT``) has no access at all. Deposits need no authorisation;
* **deposit** — the submission-set signature present, its ``signs`` association pointing at the
  submission set, its manifest matching the documents and its signature verifying
  (:func:`~dmp_connector.signature.verify_submission_set_signature`); every metadata rule of
  ``SubmissionRequest.problems(MetadataProfile.DMP)``; hash and size equal to the MTOM part's; in
  indirect mode an authorInstitution equal to ``Identifiant_Structure``; a uniqueId never reused
  (``XDSDuplicateUniqueIdInRegistry`` when the same bytes come again, ``XDSNonIdenticalHash`` when
  others do); RPLC deprecates the replaced entry;
* **queries** — ``MASQUE_PS`` entries hidden from professionals other than their authors,
  ``INVISIBLE_PATIENT`` ones returned to professionals; filters on status, times, codes and
  authors; ``XDSUnknownStoredQuery`` and the other ITI-18 errors; deleted entries are gone;
* **updates** — ITI-57 status changes (``Deleted``, ``Archived``) and new metadata versions
  (masking), checked against the current status and version;
* **DMP transactions** — TD0.2 existence and standing, TD0.3 authorisations, TD0.4 recent DMPs,
  TD0.5 patient search, TD1.1–TD1.4 create, reactivate, update, close — read and answered with the
  client's own wire functions (:mod:`dmp_connector.dmp._td`), in the shapes public client
  implementations read (reference ``dmp_td.md``): TD0.2's authorisation (``VALIDE``, ``INTERDIT``,
  ``EXPIRE``, ``NON_EXISTE``) and médecin-traitant status in ``attentionLine``, a closed DMP as
  ``patient/statusCode terminated`` with its date and ``reasonOf``; TD0.3 and the authorisation
  list on the VIHF's patient (their bodies name none); TD1.1 and TD1.2 refused without the
  patient's consent; HL7 v3 acknowledgements (``AA``, ``AE`` with ``DMPFound`` / ``DMPClosed`` …)
  or ``status`` ``DMPOK``.

The DMP's own error codes are not public: ``DMPNotFound``, ``DMPAccessDenied`` and
``DMPPatientOpposition`` are the simulator's [I] (see :class:`DmpErrorCode`); ``DMPClosed`` is
the code the DMP's HL7v3 acknowledgements are known to carry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import threading
import unicodedata
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

import httpx
from cryptography import x509
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.audit import AuditSink
from dmp_connector.codes import Code
from dmp_connector.config import DmpSettings, Settings
from dmp_connector.dmp._td import (
    DMP_DEVICE_ROOT,
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
    Hl7Header,
    Oppositions,
    PatientCandidate,
    PatientSearch,
    QueryReason,
    RecentDmp,
    RecentDmpKind,
    RegistrationKind,
    RegistrationRequest,
    ServiceStatus,
    TdAction,
    build_find_candidates_response,
    build_list_authorisations_response,
    build_patient_list_response,
    build_patient_query_response,
    build_registration_response,
    build_set_authorisation_response,
    parse_find_candidates_request,
    parse_list_authorisations_request,
    parse_patient_list_request,
    parse_patient_query_request,
    parse_registration_request,
    parse_set_authorisation_request,
)
from dmp_connector.dmp.client import AsyncDmpClient, DmpClient
from dmp_connector.errors import DmpConnectorError, MalformedResponseError, SignatureVerificationError
from dmp_connector.ins.identity import INS, IdentityTraits
from dmp_connector.retries import RetryPolicy
from dmp_connector.signature.signer import Signer
from dmp_connector.signature.vihf import AccessMode, AuthenticationMode, VihfClaims, verify_vihf
from dmp_connector.signature.xades import verify_submission_set_signature
from dmp_connector.soap import namespaces as ns
from dmp_connector.soap.envelope import Addressing, SoapMessage, build_envelope, parse_envelope, resolve_xop
from dmp_connector.soap.mtom import Attachment, decode_mtom, encode_mtom, is_multipart
from dmp_connector.xds.ebrim import (
    RetrievedDocument,
    RetrieveDocumentSetResponse,
    build_registry_response,
    build_retrieve_document_set_response,
    parse_provide_and_register_request,
    parse_retrieve_document_set_request,
    parse_submit_objects_request,
)
from dmp_connector.xds.errors import RegistryError, RegistryResponse, StoredQueryError
from dmp_connector.xds.model import (
    AnyCode,
    Association,
    Cx,
    DocumentEntry,
    MetadataProfile,
    ObjectRef,
    SubmissionRequest,
    SubmissionSet,
    XdsTime,
)
from dmp_connector.xds.queries import (
    AdhocQueryRequest,
    AdhocQueryResponse,
    FindDocumentsQuery,
    FindSubmissionSetsQuery,
    GetAssociationsQuery,
    GetDocumentsAndAssociationsQuery,
    GetDocumentsQuery,
    GetRelatedDocumentsQuery,
    GetSubmissionSetAndContentsQuery,
    GetSubmissionSetsQuery,
    StoredQuery,
    build_adhoc_query_response,
    parse_adhoc_query_request,
)
from dmp_connector.xds.vocabulary import (
    DMP_REPOSITORY_UNIQUE_ID,
    MASQUE_PS,
    Action,
    AssociationType,
    AvailabilityStatus,
    ErrorSeverity,
    RegistryErrorCode,
    ResponseStatus,
    ReturnType,
    StoredQueryId,
)
from dmp_connector.xml import to_bytes

from ._dmp_store import (
    AuthorisationRecord,
    DmpStore,
    PatientRecord,
    ProfessionalRecord,
    StoredContent,
    StoredEntry,
    StoredSubmissionSet,
    patient_key,
)
from ._http import (
    Handler,
    HttpRequest,
    HttpResponse,
    LoopbackServer,
    as_async_transport,
    as_transport,
    server_ssl_context,
)
from .insi import DEFAULT_INSI_IDENTITIES
from .pki import IssuedCertificate, TestPki, client_subject

__all__ = [
    "DEFAULT_DMP_AUTHORISATIONS",
    "DEFAULT_DMP_PATIENTS",
    "DEFAULT_DMP_PROFESSIONALS",
    "DMP_SERVICE_PATH",
    "AuthorisationRecord",
    "DmpCaller",
    "DmpErrorCode",
    "DmpFault",
    "DmpSimulator",
    "DmpStore",
    "FaultCounts",
    "FaultKind",
    "FaultMix",
    "PatientRecord",
    "ProfessionalRecord",
    "StoredContent",
    "StoredEntry",
    "StoredSubmissionSet",
    "in_process_async_dmp",
    "in_process_dmp",
]

DMP_SERVICE_PATH: Final = "/si-dmp-server/v2/services"
"""Where the services live under the sandbox's base URL (as ``Environment.sandbox`` builds the DMP URLs)."""

_SOAP_CONTENT_TYPE: Final = "application/soap+xml; charset=utf-8"
_ANONYMOUS: Final = "http://www.w3.org/2005/08/addressing/anonymous"
_ENV: Final = ns.SOAP12_ENV
_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")
_XML_MIME_TYPES: Final = frozenset({"text/xml", "application/xml", "application/xslt+xml"})
_REGISTRY_STATUSES: Final = frozenset(
    {
        AvailabilityStatus.APPROVED,
        AvailabilityStatus.DEPRECATED,
        AvailabilityStatus.ARCHIVED,
        AvailabilityStatus.DELETED,
    }
)


class DmpErrorCode(StrEnum):
    """The DMP-specific ``RegistryError`` codes the simulator answers with.

    The real codes of the XDS services are not public (reference §6): only ``DMPClosed`` is known,
    from the HL7v3 acknowledgements. The others are the simulator's own [I], named in the DMP's
    style so that a client maps them to typed errors while keeping the code.
    """

    DMP_CLOSED = "DMPClosed"
    """The patient's DMP is closed."""
    DMP_NOT_FOUND = "DMPNotFound"
    """The patient is known but has no DMP (TD0.2 would answer ``NF``) [I]."""
    ACCESS_DENIED = "DMPAccessDenied"
    """Consultation without an authorisation (``VALIDE``) in normal access mode [I]."""
    PATIENT_OPPOSITION = "DMPPatientOpposition"
    """The patient blocked this professional, or opposed this access mode (bris de glace, centre 15) [I]."""
    FOUND = "DMPFound"
    """The DMP exists already (TD1.1) or is already open (TD1.2), as the DMP's acknowledgements say."""


# --------------------------------------------------------------------------------------------------
# Seeds


def _insi_seed(matricule: str) -> tuple[INS, IdentityTraits]:
    for seed in DEFAULT_INSI_IDENTITIES:
        if seed.ins is not None and seed.ins.matricule == matricule:
            return seed.ins, seed.traits
    raise LookupError(matricule)  # pragma: no cover - the seeds below name INSi seeds only


def _patient(matricule: str, **fields: Any) -> PatientRecord:
    ins, traits = _insi_seed(matricule)
    created = dt.datetime(2022, 1, 1, tzinfo=dt.UTC) if fields.get("dmp", DmpState.ACTIVE) is not None else None
    return PatientRecord.model_validate({"ins": ins, "traits": traits, "created": created, **fields})


DEFAULT_DMP_PATIENTS: tuple[PatientRecord, ...] = (
    _patient("275126322074974", note="ADRUN ZOE: an open DMP, no authorisation yet (the main test patient)"),
    _patient("181016322075140", dmp=None, note="ADRDEUX LAURENT: no DMP (TD0.2 answers NF; TD1.1 creates it)"),
    _patient(
        "160012B02077713",
        dmp=DmpState.CLOSED,
        closed=dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
        closing_reason=ClosureReason.PATIENT_REQUEST.value,
        closing_text="Fermeture à la demande du patient",
        note="ADRTROIS TOUSSAINT: a closed DMP (DMPClosed; TD1.2 reactivates it)",
    ),
    _patient(
        "297022A02077878",
        oppositions=frozenset({AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15}),
        note="ADRTROIS DOMINIQUE: opposed emergency and regulation-centre access",
    ),
    _patient("279035121518989", note="PAT-TROIS DOMINIQUE (ANS test patient, OID .10): an open DMP"),
    _patient("236066322083656", mes_attached=False, note="TCHITCHI CATARINA: a DMP not attached to Mon espace santé"),
    _patient("110086322083060", note="NESSI MICHELANGELO: a minor with an open DMP"),
)
"""The patients of a default :class:`DmpSimulator`: INSi seeds (same INS and traits as
:data:`~dmp_connector.sandbox.DEFAULT_INSI_IDENTITIES`), each showing one case. Extend with
``[*DEFAULT_DMP_PATIENTS, PatientRecord(...)]``."""

_MEDECIN = Code.of("10", "1.2.250.1.71.1.2.7", "Médecin")

DEFAULT_DMP_PROFESSIONALS: tuple[ProfessionalRecord, ...] = (
    ProfessionalRecord(
        national_id="899700000001",
        family_name="SANDBOX",
        given_name="JEANNE",
        profession=_MEDECIN,
        note="the professional of generate_test_pki",
    ),
    ProfessionalRecord(
        national_id="810001234567", family_name="DUPONT", given_name="Jean", profession=_MEDECIN, note="XDS examples"
    ),
    ProfessionalRecord(
        national_id="810002422979", family_name="CHARLES", given_name="Pascal", profession=_MEDECIN, note="radiologist"
    ),
)
"""Professionals the simulator knows by name. Any other VIHF subject is accepted too; the authorisation
lists then give its national id without a name."""

DEFAULT_DMP_AUTHORISATIONS: tuple[AuthorisationRecord, ...] = (
    AuthorisationRecord(
        patient=DEFAULT_DMP_PATIENTS[4].key,
        professional_id="810001234567",
        attending_physician=True,
        since=dt.datetime(2023, 5, 2, tzinfo=dt.UTC),
    ),
    AuthorisationRecord(
        patient=DEFAULT_DMP_PATIENTS[4].key,
        professional_id="810002422979",
        status=AuthorisationStatus.FORBIDDEN,
        since=dt.datetime(2023, 9, 12, tzinfo=dt.UTC),
    ),
    AuthorisationRecord(
        patient=DEFAULT_DMP_PATIENTS[5].key,
        professional_id="899700000001",
        status=AuthorisationStatus.EXPIRED,
        since=dt.datetime(2021, 3, 4, tzinfo=dt.UTC),
    ),
)
"""PAT-TROIS has DUPONT as authorised médecin traitant and has blocked CHARLES; the sandbox's own
professional (SANDBOX JEANNE) has an expired authorisation on TCHITCHI CATARINA (TD0.2 reads ``EXPIRE``)."""


# --------------------------------------------------------------------------------------------------
# Faults on demand


class DmpFault(BaseModel):
    """A reliability fault to queue in front of the simulator through a :class:`~dmp_connector.sandbox.ScriptedHandler`.

    ``script.then(DmpFault.unavailable().entry(simulator))`` answers the next request with a 503;
    :meth:`drop_after_processing` lets the simulator do its work (store a deposit) and then closes
    the connection without an answer — the case an idempotent deposit must survive.
    """

    model_config = _FROZEN

    kind: Literal[
        "unavailable", "latency", "timeout", "drop_after_processing", "drop", "malformed", "soap_fault", "busy"
    ]
    """What happens."""
    delay: float = Field(default=0.0, ge=0.0)
    """Seconds to wait before answering (``latency``, ``timeout``)."""
    status: int = Field(default=503, ge=400, le=599)
    """HTTP status of ``unavailable``."""
    retry_after: float | None = Field(default=None, ge=0.0)
    """``Retry-After`` of ``unavailable``, in seconds."""
    malformed: Literal["not_xml", "html", "soap11", "truncated_mtom", "unknown_payload", "bad_status"] = "not_xml"
    """Which broken answer ``malformed`` sends."""
    fault_code: Literal["Sender", "Receiver"] = "Receiver"
    """``env:Code`` of ``soap_fault``."""
    reason: str = "Le service est temporairement indisponible"
    """``env:Reason`` of ``soap_fault``."""

    @classmethod
    def unavailable(cls, *, status: int = 503, retry_after: float | None = None) -> DmpFault:
        """An HTTP error with no SOAP answer, as a gateway sends when the service is down."""
        return cls(kind="unavailable", status=status, retry_after=retry_after)

    @classmethod
    def latency(cls, seconds: float) -> DmpFault:
        """The simulator's own answer, ``seconds`` late."""
        return cls(kind="latency", delay=seconds)

    @classmethod
    def timeout(cls, seconds: float) -> DmpFault:
        """No answer for ``seconds`` and then a dropped connection: set the client's read timeout below it."""
        return cls(kind="timeout", delay=seconds)

    @classmethod
    def drop_after_processing(cls) -> DmpFault:
        """The simulator processes the request (a deposit is stored), then the answer is lost."""
        return cls(kind="drop_after_processing")

    @classmethod
    def drop(cls) -> DmpFault:
        """The connection is closed before the simulator sees the request."""
        return cls(kind="drop")

    @classmethod
    def malformed_reply(
        cls, which: Literal["not_xml", "html", "soap11", "truncated_mtom", "unknown_payload", "bad_status"] = "not_xml"
    ) -> DmpFault:
        """A 200 answer that is not what the protocol says (garbage, an HTML page, SOAP 1.1, a cut MTOM …)."""
        return cls(kind="malformed", malformed=which)

    @classmethod
    def soap_fault(cls, code: Literal["Sender", "Receiver"] = "Receiver", reason: str | None = None) -> DmpFault:
        """A SOAP 1.2 fault over HTTP 500 instead of the answer."""
        return cls(kind="soap_fault", fault_code=code, reason=reason or cls.model_fields["reason"].default)

    @classmethod
    def busy(cls) -> DmpFault:
        """A registry answer ``Failure`` with ``XDSRegistryBusy`` (transient, 200 OK)."""
        return cls(kind="busy")

    def entry(self, simulator: Handler) -> HttpResponse | Handler:
        """What to give :meth:`ScriptedHandler.then <dmp_connector.sandbox.ScriptedHandler.then>`."""
        if self.kind == "unavailable":
            headers = {"Content-Type": "text/html"}
            if self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            return HttpResponse(self.status, headers, b"<html><body>Service Unavailable</body></html>")
        if self.kind == "drop":
            return HttpResponse(drop=True)
        if self.kind == "timeout":
            return HttpResponse(delay=self.delay, drop=True)
        if self.kind == "soap_fault":
            return _fault_response(self.fault_code, _SANDBOX_SUBCODE, self.reason)
        if self.kind == "busy":
            return _busy
        if self.kind == "malformed":
            return _malformed(self.malformed)
        delay, drop = self.delay, self.kind == "drop_after_processing"

        def handle(request: HttpRequest) -> HttpResponse:
            answer = simulator(request)
            answer.delay = max(answer.delay, delay)
            answer.drop = answer.drop or drop
            return answer

        return handle


FaultKind = Literal["drop_after_processing", "unavailable"]
"""The faults a :class:`FaultMix` draws (latency comes on top of either, or of a plain answer)."""


@dataclass(frozen=True)
class FaultCounts:
    """What a :class:`FaultMix` saw and injected so far, so that a test can show its faults happened."""

    requests: int
    """Requests that reached the mix."""
    drop_after_processing: int
    """Requests processed by the handler whose answer was then dropped."""
    unavailable: int
    """Requests answered with an HTTP error (503 by default) without reaching the handler."""
    delayed: int
    """Answers (or drops) held back by a non-zero latency."""
    total_delay: float
    """Sum of the latencies drawn, in seconds."""


class FaultMix:
    """A seeded, random mix of faults in front of a handler (the :class:`DmpSimulator`, say); a handler itself.

    Why: a :class:`~dmp_connector.sandbox.ScriptedHandler` proves one fault on one request; a mix over
    hundreds of calls proves what a vendor needs before going live — that retries, idempotent
    deposits and the audit trail still hold when faults land anywhere, overlap and recur::

        mix = FaultMix(simulator, drop_after_processing=0.10, unavailable=0.05, latency=(0.0, 0.02), seed=7)
        with simulator.serve(pki, workdir=tmp, handler=mix) as server: ...
        assert mix.counts.drop_after_processing > 0

    Each request draws one number: below ``drop_after_processing`` the handler does its work (a
    deposit is stored) and the answer is lost (:meth:`DmpFault.drop_after_processing`); within the
    next ``unavailable`` it is refused with ``status`` before the handler sees it
    (:meth:`DmpFault.unavailable`); otherwise the handler answers. Every answer, faulty or not, is
    then held back by a latency drawn uniformly in ``latency`` (seconds). The faults are
    :class:`DmpFault` entries, so a mix injects exactly what a scripted test would.

    ``seed`` makes the sequence of draws reproducible; under concurrent requests, which request
    gets which draw follows their arrival order. Thread-safe (the loopback server answers in one
    thread per connection). :attr:`counts` says what was injected; ``on_fault`` is called with the
    kind and the request of each fault (outside the lock), to tell which calls were hit.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        drop_after_processing: float = 0.0,
        unavailable: float = 0.0,
        latency: tuple[float, float] = (0.0, 0.0),
        seed: int | None = None,
        status: int = 503,
        retry_after: float | None = None,
        on_fault: Callable[[FaultKind, HttpRequest], None] | None = None,
    ) -> None:
        for name, rate in (("drop_after_processing", drop_after_processing), ("unavailable", unavailable)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} is a probability, between 0 and 1 (got {rate})")
        if drop_after_processing + unavailable > 1.0:
            raise ValueError("drop_after_processing + unavailable cannot exceed 1")
        low, high = latency
        if not 0.0 <= low <= high:
            raise ValueError(f"latency is (low, high) seconds with 0 <= low <= high (got {latency})")
        self.handler = handler
        self.drop_after_processing = drop_after_processing
        self.unavailable = unavailable
        self.latency = (low, high)
        self.status = status
        self.retry_after = retry_after
        self.on_fault = on_fault
        self._faults: dict[FaultKind, DmpFault] = {
            "drop_after_processing": DmpFault.drop_after_processing(),
            "unavailable": DmpFault.unavailable(status=status, retry_after=retry_after),  # checks the status too
        }
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "drop_after_processing": 0, "unavailable": 0, "delayed": 0}
        self._total_delay = 0.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(drop_after_processing={self.drop_after_processing}, "
            f"unavailable={self.unavailable}, latency={self.latency})"
        )

    @property
    def counts(self) -> FaultCounts:
        """A snapshot of what the mix saw and injected."""
        with self._lock:
            return FaultCounts(total_delay=self._total_delay, **self._counts)

    def _draw(self) -> tuple[FaultKind | None, float]:
        low, high = self.latency
        with self._lock:
            draw = self._random.random()
            delay = self._random.uniform(low, high) if high > 0.0 else 0.0
            kind: FaultKind | None = None
            if draw < self.drop_after_processing:
                kind = "drop_after_processing"
            elif draw < self.drop_after_processing + self.unavailable:
                kind = "unavailable"
            self._counts["requests"] += 1
            if kind is not None:
                self._counts[kind] += 1
            if delay > 0.0:
                self._counts["delayed"] += 1
                self._total_delay += delay
        return kind, delay

    def __call__(self, request: HttpRequest) -> HttpResponse:
        kind, delay = self._draw()
        fault = self._faults[kind] if kind is not None else DmpFault.latency(delay)
        entry = fault.entry(self.handler)  # a fresh answer each time: the delay below is set on it alone
        answer = entry if isinstance(entry, HttpResponse) else entry(request)
        answer.delay = max(answer.delay, delay)
        if kind is not None and self.on_fault is not None:
            self.on_fault(kind, request)
        return answer


def _busy(request: HttpRequest) -> HttpResponse:
    """``XDSRegistryBusy`` in the answer type of the request's transaction (a RegistryResponse by default)."""
    error = RegistryError(
        error_code=RegistryErrorCode.REGISTRY_BUSY, code_context="Le registre est momentanément surchargé"
    )
    failure = RegistryResponse(status=ResponseStatus.FAILURE, errors=(error,))
    action = _media_action(request.header("Content-Type")) or ""
    if action == Action.REGISTRY_STORED_QUERY.value:
        body = build_adhoc_query_response(AdhocQueryResponse(response=failure))
        return _soap_response(body, Action.REGISTRY_STORED_QUERY_RESPONSE.value, None)
    if action == Action.RETRIEVE_DOCUMENT_SET.value:
        body = build_retrieve_document_set_response(RetrieveDocumentSetResponse(response=failure))
        return _soap_response(body, Action.RETRIEVE_DOCUMENT_SET_RESPONSE.value, None)
    return _soap_response(build_registry_response(failure), action + "Response", None)


def _media_action(content_type: str) -> str | None:
    """The SOAP 1.2 ``action`` parameter of a Content-Type (also inside ``start-info`` / ``type`` for MTOM)."""
    match = re.search(r'action=\\?"([^"\\]+)', content_type)
    return match.group(1) if match else None


def _malformed(which: str) -> HttpResponse:
    if which == "html":
        return HttpResponse(200, {"Content-Type": "text/html"}, b"<html><body><h1>Maintenance</h1></body></html>")
    if which == "soap11":
        body = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><x/></s:Body></s:Envelope>'
        return HttpResponse(200, {"Content-Type": _SOAP_CONTENT_TYPE}, body)
    if which == "truncated_mtom":
        content_type = 'multipart/related; type="application/xop+xml"; boundary="MIMEBoundary_cut"; start="<root>"'
        body = (
            b"--MIMEBoundary_cut\r\nContent-Type: application/xop+xml; charset=UTF-8\r\nContent-ID: <root>\r\n\r\n"
            b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>'
        )
        return HttpResponse(200, {"Content-Type": content_type}, body)
    if which == "unknown_payload":
        envelope = build_envelope(
            etree.Element("{urn:dmp-connector:sandbox}Unexpected"),
            addressing=Addressing(action="urn:dmp-connector:sandbox:Unexpected", to=_ANONYMOUS),
        )
        return HttpResponse(200, {"Content-Type": _SOAP_CONTENT_TYPE}, to_bytes(envelope))
    if which == "bad_status":
        payload = f'<rs:RegistryResponse xmlns:rs="{ns.RS}" status="urn:sandbox:Maybe"/>'
        text = f'<env:Envelope xmlns:env="{_ENV}"><env:Body>{payload}</env:Body></env:Envelope>'
        return HttpResponse(200, {"Content-Type": _SOAP_CONTENT_TYPE}, text.encode())
    return HttpResponse(200, {"Content-Type": _SOAP_CONTENT_TYPE}, b"\x00\x01 this is not XML <<<")


# --------------------------------------------------------------------------------------------------
# Answers


_SANDBOX_SUBCODE: Final = ("urn:dmp-connector:sandbox", "ServiceUnavailable")
_WSSE_INVALID: Final = (ns.WSSE, "InvalidSecurity")
_WSSE_FAILED: Final = (ns.WSSE, "FailedAuthentication")
_WSSE_TOKEN: Final = (ns.WSSE, "InvalidSecurityToken")
_WSA_ACTION: Final = (ns.WSA, "ActionNotSupported")
_WSA_HEADER: Final = (ns.WSA, "InvalidAddressingHeader")
_BAD_REQUEST: Final = ("urn:dmp-connector:sandbox", "InvalidRequest")
_INTERNAL: Final = ("urn:dmp-connector:sandbox", "InternalError")


def _fault_response(code: str, subcode: tuple[str, str], reason: str, *, lang: str = "fr") -> HttpResponse:
    """A SOAP 1.2 fault over HTTP 500, the subcode a QName in its own namespace."""
    namespace, local = subcode
    root = etree.Element(f"{{{_ENV}}}Envelope", nsmap={"env": _ENV})
    body = etree.SubElement(root, f"{{{_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{_ENV}}}Fault")
    code_element = etree.SubElement(fault, f"{{{_ENV}}}Code")
    etree.SubElement(code_element, f"{{{_ENV}}}Value").text = f"env:{code}"
    sub = etree.SubElement(code_element, f"{{{_ENV}}}Subcode")
    etree.SubElement(sub, f"{{{_ENV}}}Value", nsmap={"sub": namespace}).text = f"sub:{local}"
    text = etree.SubElement(etree.SubElement(fault, f"{{{_ENV}}}Reason"), f"{{{_ENV}}}Text")
    text.set(f"{{{ns.XML}}}lang", lang)
    text.text = reason
    return HttpResponse(500, {"Content-Type": _SOAP_CONTENT_TYPE}, to_bytes(root))


def _relates(message_id: str | None) -> list[etree._Element]:
    if not message_id:
        return []
    relates = etree.Element(f"{{{ns.WSA}}}RelatesTo", nsmap={"wsa": ns.WSA})
    relates.text = message_id
    return [relates]


def _soap_response(body: etree._Element, action: str, message_id: str | None) -> HttpResponse:
    envelope = build_envelope(body, addressing=Addressing(action=action, to=_ANONYMOUS), headers=_relates(message_id))
    return HttpResponse(200, {"Content-Type": f'{_SOAP_CONTENT_TYPE}; action="{action}"'}, to_bytes(envelope))


def _mtom_response(
    body: etree._Element, action: str, message_id: str | None, attachments: Sequence[Attachment]
) -> HttpResponse:
    envelope = build_envelope(body, addressing=Addressing(action=action, to=_ANONYMOUS), headers=_relates(message_id))
    payload = encode_mtom(envelope, attachments, action=action)
    return HttpResponse(200, {"Content-Type": payload.content_type}, b"".join(payload.iter_bytes()))


class _Fault(Exception):
    """A request refused at the SOAP level (caller, addressing, unreadable body)."""

    def __init__(self, code: str, subcode: tuple[str, str], reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason

    def response(self) -> HttpResponse:
        return _fault_response(self.code, self.subcode, self.reason)


class _Refused(Exception):
    """A transaction refused by the registry or repository, answered as its own Failure response."""

    def __init__(self, *errors: RegistryError) -> None:
        super().__init__(", ".join(str(e.error_code) for e in errors))
        self.errors = errors


def _error(code: str, context: str, location: str | None = None) -> RegistryError:
    return RegistryError(error_code=code, code_context=context, location=location, severity=ErrorSeverity.ERROR)


def _refused(code: str, context: str, location: str | None = None) -> _Refused:
    return _Refused(_error(code, context, location))


# --------------------------------------------------------------------------------------------------
# The caller


@dataclass(frozen=True)
class DmpCaller:
    """Who calls, as the simulator established it from the VIHF and the TLS session."""

    claims: VihfClaims
    """The verified VIHF."""
    client_subject: str | None
    """The TLS client certificate's subject, when the request came over TLS."""

    @property
    def professional_id(self) -> str:
        """The VIHF subject: the professional's national id (or the person responsible for an automaton)."""
        return self.claims.subject_name_id

    @property
    def access_mode(self) -> AccessMode:
        """The VIHF ``purposeofuse`` (normal when absent, which verification does not let through)."""
        return self.claims.access_mode or AccessMode.NORMAL

    def patient(self) -> Cx:
        """The VIHF ``resource-id`` as a CX; a Sender fault when it is missing or not a CX."""
        text = self.claims.patient_resource_id
        if not text:
            raise _Fault("Sender", _WSSE_TOKEN, "Le VIHF ne désigne aucun patient (resource-id absent)")
        try:
            return Cx.parse(text)
        except ValueError as exc:
            raise _Fault("Sender", _WSSE_TOKEN, "Le resource-id du VIHF n'est pas un INS au format CX") from exc


def _subject_parts(subject: str | None) -> dict[str, str]:
    """``countryName=FR,organizationalUnitName=1123456789,commonName=…`` → short names (last value wins)."""
    names = {"commonName": "CN", "organizationalUnitName": "OU", "organizationName": "O"}
    parts: dict[str, str] = {}
    for item in (subject or "").split(","):
        key, _, value = item.strip().partition("=")
        if value:
            parts[names.get(key, key)] = value
    return parts


# --------------------------------------------------------------------------------------------------
# The simulator


_SERVICES: Final = frozenset(
    {"registry", "repository", "patients", "patientsPDQ", "patientsSpecific", "patientCertif", "habilitations"}
)
_PATIENT_QUERY_KIT_ACTION: Final = "urn:hl7-org:v3:PRPA_IN201308UV02"
"""The editor kit's proxy sends TD0.2 with this action (reference §1): accepted as well."""


def _dmp_default(name: str) -> Any:
    """A wire form the simulator reads as the client writes it: the client's setting's default, not a copy."""
    return DmpSettings.model_fields[name].default


class DmpSimulator:
    """The DMP simulator (see the module docstring).

    ``trusted``: the CA certificates that VIHF and submission-set signatures must chain to (the test
    PKI's CA). ``path``: a SQLite file to keep everything in (memory when None). ``patients``,
    ``professionals``, ``authorisations``: seeds, added to the store when not there yet.
    ``require_client_certificate``: refuse a request that came without a TLS client certificate
    (:meth:`serve` turns it on; in-process requests carry none). ``max_results``: a LeafClass query
    finding more entries is refused with ``XDSTooManyResults``. ``clock``: the simulator's now.
    ``patient_list_date_format``, ``patient_list_elements``, ``authorisation_role_element``: how TD0.4
    and TD0.3 are read (the client's settings of the same names).
    """

    def __init__(
        self,
        *,
        trusted: Iterable[x509.Certificate],
        path: str | Path | None = None,
        store: DmpStore | None = None,
        patients: Iterable[PatientRecord] = DEFAULT_DMP_PATIENTS,
        professionals: Iterable[ProfessionalRecord] = DEFAULT_DMP_PROFESSIONALS,
        authorisations: Iterable[AuthorisationRecord] = DEFAULT_DMP_AUTHORISATIONS,
        require_client_certificate: bool = False,
        max_results: int = 500,
        clock: Callable[[], dt.datetime] | None = None,
        patient_list_date_format: str = _dmp_default("patient_list_date_format"),
        patient_list_elements: tuple[str, str] = _dmp_default("patient_list_elements"),
        authorisation_role_element: str = _dmp_default("authorisation_role_element"),
        air_check: Callable[[str], bool] | None = None,
    ) -> None:
        self.trusted = tuple(trusted)
        if not self.trusted:
            raise ValueError("the DMP simulator needs the certificates VIHF signatures must chain to (trusted=)")
        self.store = store if store is not None else DmpStore(path)
        self.store.seed(patients=patients, professionals=professionals, authorisations=authorisations)
        self.require_client_certificate = require_client_certificate
        self.max_results = max_results
        self.patient_list_date_format = patient_list_date_format
        self.patient_list_elements = patient_list_elements
        self.authorisation_role_element = authorisation_role_element
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.air_check = air_check
        """Called with the NameID of a reinforced-indirect (AIR) VIHF: False refuses the call. Whether the
        real DMP checks anything against PSC is not public; the PSC simulator's ``has_session`` fits here."""
        self.callers: deque[VihfClaims] = deque(maxlen=100)
        """The claims of the last VIHFs accepted, newest last (to check what a client sent)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    def now(self) -> dt.datetime:
        """The simulator's clock."""
        return self._clock()

    # --- serving ------------------------------------------------------------------------------------

    @contextmanager
    def serve(
        self,
        pki: TestPki,
        *,
        workdir: Path,
        handler: Handler | None = None,
        server_certificate: IssuedCertificate | None = None,
    ) -> Iterator[LoopbackServer]:
        """Serve on ``127.0.0.1`` over HTTPS with mutual TLS from ``pki`` (a client certificate is required).

        ``handler`` is what the server calls (a :class:`ScriptedHandler` around this simulator, say);
        the simulator itself by default. ``server_certificate`` saves issuing one (an RSA key) per
        server. ``Environment.sandbox(server.url)`` points a client at it.
        """
        certificate = server_certificate or pki.issue_server()
        context = server_ssl_context(certificate, pki, workdir=workdir)
        self.require_client_certificate = True
        with LoopbackServer(handler or self, ssl_context=context) as server:
            yield server

    # --- dispatch -----------------------------------------------------------------------------------

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(405, {"Content-Type": "text/plain", "Allow": "POST"}, b"the DMP services take POST")
        path = request.path.split("?", 1)[0].rstrip("/")
        prefix, _, service = path.rpartition("/")
        if not prefix.endswith(DMP_SERVICE_PATH) or service not in _SERVICES:
            return HttpResponse(404, {"Content-Type": "text/plain"}, f"no DMP service at {path[:120]}".encode())
        try:
            message = self._read(request)
        except _Fault as fault:
            return fault.response()
        try:
            return self._dispatch(service, request, message)
        except _Fault as fault:
            return fault.response()
        except Exception as exc:  # a bug of the simulator: answered as the service's own failure, not a hang
            return _fault_response("Receiver", _INTERNAL, f"Erreur interne du bac à sable ({type(exc).__name__})")

    def _read(self, request: HttpRequest) -> SoapMessage:
        content_type = request.header("Content-Type")
        media = content_type.partition(";")[0].strip().lower()
        try:
            if is_multipart(content_type):
                parts = decode_mtom(content_type, request.body)
                return parse_envelope(parts.root, attachments=parts.attachments, operation="the DMP request")
            if media != "application/soap+xml":
                raise _Fault("Sender", _BAD_REQUEST, f"Type de contenu non accepté : {media or 'aucun'} (SOAP 1.2)")
            return parse_envelope(request.body, operation="the DMP request")
        except DmpConnectorError as exc:
            raise _Fault("Sender", _BAD_REQUEST, f"Requête illisible : {exc.message}") from exc

    def _dispatch(self, service: str, request: HttpRequest, message: SoapMessage) -> HttpResponse:
        action = message.action
        if not message.message_id:
            raise _Fault("Sender", _WSA_HEADER, "wsa:MessageID est absent")
        handler = self._handlers()[service].get(action or "")
        if handler is None:
            raise _Fault("Sender", _WSA_ACTION, f"Action non prise en charge par le service {service} : {action}")
        caller = self._authenticate(request, message)
        return handler(caller, message)

    def _handlers(self) -> dict[str, dict[str, Callable[[DmpCaller, SoapMessage], HttpResponse]]]:
        """The transactions of each service by ``wsa:Action``."""
        return {
            "registry": {
                Action.REGISTRY_STORED_QUERY.value: self._stored_query,
                Action.UPDATE_DOCUMENT_SET.value: self._update,
            },
            "repository": {
                Action.PROVIDE_AND_REGISTER.value: self._provide_and_register,
                Action.RETRIEVE_DOCUMENT_SET.value: self._retrieve,
            },
            "patients": {
                TdAction.PATIENT_QUERY.value: self._td_patient_query,
                _PATIENT_QUERY_KIT_ACTION: self._td_patient_query,
                TdAction.CREATE.value: self._td_registration,
                TdAction.REVISE.value: self._td_registration,
            },
            "patientsPDQ": {TdAction.FIND_CANDIDATES.value: self._td_find_candidates},
            "patientsSpecific": {TdAction.PATIENT_LIST.value: self._td_patient_list},
            "patientCertif": {},
            "habilitations": {
                TdAction.SET_AUTHORIZATION.value: self._td_set_authorization,
                TdAction.LIST_AUTHORIZATIONS.value: self._td_list_authorizations,
            },
        }

    # --- caller -------------------------------------------------------------------------------------

    def _authenticate(self, request: HttpRequest, message: SoapMessage) -> DmpCaller:
        if self.require_client_certificate and request.client_subject is None:
            raise _Fault("Sender", _WSSE_FAILED, "Certificat client TLS absent")
        assertions = [
            assertion
            for security in message.header_elements(ns.WSSE, "Security")
            for assertion in security.iterfind(f"{{{ns.SAML2}}}Assertion")
        ]
        if not assertions:
            raise _Fault("Sender", _WSSE_INVALID, "Aucun VIHF dans l'en-tête wsse:Security")
        try:
            claims = verify_vihf(message.envelope, trusted=self.trusted, now=self.now())
        except SignatureVerificationError as exc:
            subcode = _WSSE_TOKEN if exc.reason == "malformed" else _WSSE_FAILED
            raise _Fault("Sender", subcode, f"VIHF refusé ({exc.reason}) : {exc.message}") from exc
        if claims.resource_urn != "urn:dmp":
            raise _Fault("Sender", _WSSE_TOKEN, "Ressource_URN doit valoir urn:dmp")
        if claims.access_mode is None:
            raise _Fault("Sender", _WSSE_TOKEN, "purposeofuse n'est pas un mode d'accès connu (TRE_R248)")
        subject = _subject_parts(request.client_subject)
        mode = claims.authentication_mode
        indirect = mode in (AuthenticationMode.INDIRECTE, AuthenticationMode.INDIRECTE_RENFORCEE)
        if indirect and "OU" in subject and subject["OU"] != claims.structure_id:
            raise _Fault(
                "Sender",
                _WSSE_FAILED,
                "Erreur d'authentification de la personne morale : l'OU du certificat client TLS"
                f" ({subject['OU']}) n'est pas l'Identifiant_Structure du VIHF ({claims.structure_id})",
            )
        if mode is AuthenticationMode.DIRECTE and "CN" in subject and subject["CN"] != claims.subject_name_id:
            raise _Fault(
                "Sender",
                _WSSE_FAILED,
                f"Le CN du certificat de la carte ({subject['CN']}) n'est pas le sujet du VIHF"
                f" ({claims.subject_name_id})",
            )
        if mode is AuthenticationMode.INDIRECTE_RENFORCEE:
            if claims.authn_context_decl != "APP_BROWSER_AUTH":
                raise _Fault("Sender", _WSSE_TOKEN, "Le mode AIR demande AuthnContextDecl APP_BROWSER_AUTH")
            if self.air_check is not None and not self.air_check(claims.subject_name_id):
                raise _Fault("Sender", _WSSE_FAILED, "Aucune authentification Pro Santé Connect pour ce professionnel")
        self.callers.append(claims)
        return DmpCaller(claims=claims, client_subject=request.client_subject)

    # --- patients and access --------------------------------------------------------------------------

    def _patient_with_dmp(self, cx: Cx) -> PatientRecord:
        patient = self.store.patient(cx)
        if patient is None:
            raise _refused(RegistryErrorCode.UNKNOWN_PATIENT_ID, "Patient inconnu du DMP")
        if patient.dmp is None:
            raise _refused(DmpErrorCode.DMP_NOT_FOUND, "Le patient n'a pas de DMP")
        if patient.dmp is DmpState.CLOSED:
            raise _refused(DmpErrorCode.DMP_CLOSED, "Le DMP du patient est fermé")
        return patient

    def _check_consultation(self, caller: DmpCaller, patient: PatientRecord) -> None:
        """Consultation rules: an authorisation, or an emergency / regulation access the patient did not oppose."""
        standing = self.store.authorisation(patient.key, caller.professional_id)
        if standing is not None and standing.status is AuthorisationStatus.FORBIDDEN:
            raise _refused(DmpErrorCode.PATIENT_OPPOSITION, "Le patient a bloqué l'accès de ce professionnel")
        mode = caller.access_mode
        if mode is AccessMode.NORMAL:
            if standing is None or standing.status is not AuthorisationStatus.VALID:
                raise _refused(DmpErrorCode.ACCESS_DENIED, "Le professionnel n'est pas autorisé sur ce DMP")
            return
        if mode in patient.oppositions:
            raise _refused(DmpErrorCode.PATIENT_OPPOSITION, f"Le patient s'est opposé à l'accès {mode.value}")
        if mode is AccessMode.BRIS_DE_GLACE and not (caller.claims.access_reason or "").strip():
            raise _refused(DmpErrorCode.ACCESS_DENIED, "Un accès en bris de glace demande sa raison")

    def _consulted_patient(self, caller: DmpCaller, patient_id: Cx | None = None) -> PatientRecord:
        """The VIHF's patient, checked against ``patient_id`` (the request's), with a DMP open to this caller."""
        vihf_patient = caller.patient()
        if patient_id is not None and patient_key(patient_id) != patient_key(vihf_patient):
            raise _refused(
                RegistryErrorCode.PATIENT_ID_DOES_NOT_MATCH, "Le patient de la requête n'est pas celui du VIHF"
            )
        patient = self._patient_with_dmp(vihf_patient)
        self._check_consultation(caller, patient)
        return patient

    @staticmethod
    def _visible(caller: DmpCaller, stored: StoredEntry) -> bool:
        """Masking: MASQUE_PS shows an entry to its authors only; INVISIBLE_PATIENT does not hide from professionals."""
        if stored.entry.availability_status == AvailabilityStatus.DELETED:
            return False
        masked = any(_same_code(code, MASQUE_PS) for code in stored.entry.confidentiality_codes)
        return not masked or caller.professional_id in stored.author_ids

    # --- ITI-41 ---------------------------------------------------------------------------------------

    def _provide_and_register(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        action = Action.PROVIDE_AND_REGISTER_RESPONSE.value
        try:
            self._deposit(caller, message)
        except _Refused as refused:
            return _soap_response(_failure(refused), action, message.message_id)
        return _soap_response(_success(), action, message.message_id)

    def _deposit(self, caller: DmpCaller, message: SoapMessage) -> None:
        try:
            submission, elements = parse_provide_and_register_request(message.payload)
        except DmpConnectorError as exc:
            raise _refused(RegistryErrorCode.REGISTRY_METADATA_ERROR, exc.message) from exc
        ss = submission.submission_set
        vihf_patient = caller.patient()
        for where, patient_id in [("SubmissionSet", ss.patient_id)] + [
            (d.entry_uuid, d.patient_id) for d in submission.documents
        ]:
            if patient_id is None or patient_key(patient_id) != patient_key(vihf_patient) or patient_id.id_type != "NH":
                raise _refused(
                    RegistryErrorCode.PATIENT_ID_DOES_NOT_MATCH,
                    "Le patientId n'est pas l'INS du VIHF (lot de soumission, documents et VIHF : un seul patient)",
                    where,
                )
        if ss.patient_id is None:  # refused by the loop above; said again for the type checker
            raise _refused(RegistryErrorCode.PATIENT_ID_DOES_NOT_MATCH, "Le lot de soumission n'a pas de patientId")
        patient = self._patient_with_dmp(ss.patient_id)
        problems = submission.problems(MetadataProfile.DMP)
        if problems:
            raise _Refused(*(_error(RegistryErrorCode.REGISTRY_METADATA_ERROR, p) for p in problems))
        self._check_institution(caller, ss)
        contents, sha1s = self._contents(submission, elements, message)
        signature = self._check_signature(submission, contents)
        with self.store.transaction():
            self._check_unique_ids(submission, sha1s)
            replaced = self._replaced_entries(submission, patient)
            self._register(caller, submission, contents, sha1s, signature)
            for stored in replaced:
                self._set_status(stored, AvailabilityStatus.DEPRECATED)

    @staticmethod
    def _check_institution(caller: DmpCaller, ss: SubmissionSet) -> None:
        mode = caller.claims.authentication_mode
        if mode not in (AuthenticationMode.INDIRECTE, AuthenticationMode.INDIRECTE_RENFORCEE):
            return
        institutions = {
            institution.organization_identifier for author in ss.authors for institution in author.institutions
        }
        if caller.claims.structure_id not in institutions:
            raise _refused(
                RegistryErrorCode.REGISTRY_METADATA_ERROR,
                "Aucun AuthorInstitution ne correspond à l'utilisateur du VIHF",
                "SubmissionSet",
            )

    @staticmethod
    def _contents(
        submission: SubmissionRequest, elements: dict[str, etree._Element], message: SoapMessage
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        """Each document's bytes by entry id, checked against its hash and size, and its SHA-1 (hex) by entry id."""
        errors: list[RegistryError] = []
        contents: dict[str, bytes] = {}
        sha1s: dict[str, str] = {}
        entry_ids = {d.entry_uuid for d in submission.documents}
        for extra in sorted(set(elements) - entry_ids):
            errors.append(_error(RegistryErrorCode.MISSING_DOCUMENT_METADATA, "Document sans métadonnées", extra))
        for document in submission.documents:
            element = elements.get(document.entry_uuid)
            if element is None:
                errors.append(
                    _error(RegistryErrorCode.MISSING_DOCUMENT, "Métadonnées sans document", document.entry_uuid)
                )
                continue
            try:
                attachment = resolve_xop(element, message.attachments)
            except MalformedResponseError:
                errors.append(_error(RegistryErrorCode.MISSING_DOCUMENT, "Partie MTOM absente", document.entry_uuid))
                continue
            data = attachment.read()
            sha1 = hashlib.sha1(data).hexdigest()  # noqa: S324 - the XDS hash slot is SHA-1 by definition
            if document.hash is not None and document.hash.lower() != sha1:
                errors.append(
                    _error(RegistryErrorCode.NON_IDENTICAL_HASH, "hash ≠ SHA-1 du document", document.unique_id)
                )
            if document.size is not None and document.size != len(data):
                errors.append(
                    _error(RegistryErrorCode.NON_IDENTICAL_SIZE, "size ≠ taille du document", document.unique_id)
                )
            contents[document.entry_uuid] = data
            sha1s[document.entry_uuid] = sha1
        if errors:
            raise _Refused(*errors)
        return contents, sha1s

    def _check_signature(self, submission: SubmissionRequest, contents: dict[str, bytes]) -> str:
        """The signature entry's id, once the signature proves the other documents; refused otherwise."""
        ss = submission.submission_set
        signs = [a for a in submission.associations if a.association_type == AssociationType.SIGNS]
        documents = {d.entry_uuid: d for d in submission.documents}
        if len(signs) != 1:
            raise _refused(
                RegistryErrorCode.REGISTRY_METADATA_ERROR,
                "Le lot de soumission doit porter exactement une signature (association signs)",
                "SubmissionSet",
            )
        association = signs[0]
        if association.target_object != ss.entry_uuid or association.source_object not in documents:
            raise _refused(
                RegistryErrorCode.REGISTRY_METADATA_ERROR,
                "L'association signs doit aller du document de signature au lot de soumission",
                association.entry_uuid,
            )
        signature_entry = documents[association.source_object]
        signed = {d.unique_id: contents[d.entry_uuid] for d in submission.documents if d is not signature_entry}
        is_cda = {d.unique_id: d.mime_type in _XML_MIME_TYPES for d in submission.documents if d is not signature_entry}
        try:
            verify_submission_set_signature(
                contents[signature_entry.entry_uuid],
                documents=signed,
                submission_set_unique_id=ss.unique_id,
                trusted=self.trusted,
                now=self.now(),
                is_cda=is_cda,
            )
        except SignatureVerificationError as exc:
            raise _refused(
                RegistryErrorCode.REGISTRY_METADATA_ERROR,
                f"Signature du lot de soumission invalide ({exc.reason})",
                signature_entry.unique_id,
            ) from exc
        return signature_entry.entry_uuid

    def _check_unique_ids(self, submission: SubmissionRequest, sha1s: dict[str, str]) -> None:
        """A uniqueId is never reused: the same bytes again are a duplicate, other bytes a hash mismatch."""
        errors: list[RegistryError] = []
        ss = submission.submission_set
        if self.store.submission_set(unique_id=ss.unique_id) is not None:
            errors.append(
                _error(
                    RegistryErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY, "Lot de soumission déjà enregistré", ss.unique_id
                )
            )
        for document in submission.documents:
            kept = self.store.content(document.unique_id)
            if kept is None:
                continue
            if kept.sha1 == sha1s[document.entry_uuid]:
                errors.append(
                    _error(
                        RegistryErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY, "Document déjà déposé", document.unique_id
                    )
                )
            else:
                errors.append(
                    _error(
                        RegistryErrorCode.NON_IDENTICAL_HASH,
                        "Ce uniqueId désigne déjà un autre document",
                        document.unique_id,
                    )
                )
        if errors:
            raise _Refused(*errors)

    def _replaced_entries(self, submission: SubmissionRequest, patient: PatientRecord) -> list[StoredEntry]:
        replaced: list[StoredEntry] = []
        for association in submission.associations:
            if association.association_type not in (AssociationType.REPLACE, AssociationType.TRANSFORM_AND_REPLACE):
                continue
            stored = self.store.entry(association.target_object)
            if stored is None or patient_key(stored.entry.patient_id) != patient.key:
                raise _refused(
                    RegistryErrorCode.REGISTRY_METADATA_ERROR,
                    "Le document remplacé n'existe pas dans ce DMP",
                    association.entry_uuid,
                )
            if stored.entry.availability_status != AvailabilityStatus.APPROVED:
                raise _refused(
                    RegistryErrorCode.REGISTRY_METADATA_ERROR,
                    "Seul un document approuvé peut être remplacé",
                    association.entry_uuid,
                )
            replaced.append(stored)
        return replaced

    def _register(
        self,
        caller: DmpCaller,
        submission: SubmissionRequest,
        contents: dict[str, bytes],
        sha1s: dict[str, str],
        signature_id: str,
    ) -> None:
        """Store the submission: ids become urn:uuid, entries Approved version 1 in the DMP's repository."""
        now = self.now()
        ids = {submission.submission_set.entry_uuid: _new_uuid()}
        ids.update({d.entry_uuid: _new_uuid() for d in submission.documents})
        ids.update({a.entry_uuid: _new_uuid() for a in submission.associations})
        ss = submission.submission_set.model_copy(
            update={
                "entry_uuid": ids[submission.submission_set.entry_uuid],
                "availability_status": AvailabilityStatus.APPROVED,
            }
        )
        self.store.add_submission_set(
            StoredSubmissionSet(submission_set=ss, submitter=caller.professional_id, recorded=now)
        )
        for document in submission.documents:
            data = contents[document.entry_uuid]
            kept = self.store.put_content(
                document.unique_id, data, mime_type=document.mime_type, sha1=sha1s[document.entry_uuid]
            )
            entry_uuid = ids[document.entry_uuid]
            entry = document.model_copy(
                update={
                    "entry_uuid": entry_uuid,
                    "logical_id": entry_uuid,
                    "version": "1",
                    "availability_status": AvailabilityStatus.APPROVED,
                    "repository_unique_id": DMP_REPOSITORY_UNIQUE_ID,
                    "hash": kept.sha1,
                    "size": kept.size,
                }
            )
            self.store.add_entry(
                StoredEntry(entry=entry, submission_set=ss.entry_uuid, submitter=caller.professional_id, recorded=now)
            )
        for association in submission.associations:
            self.store.add_association(
                association.model_copy(
                    update={
                        "entry_uuid": ids[association.entry_uuid],
                        "source_object": ids.get(association.source_object, association.source_object),
                        "target_object": ids.get(association.target_object, association.target_object),
                        "availability_status": AvailabilityStatus.APPROVED,
                    }
                )
            )

    def _set_status(self, stored: StoredEntry, status: AvailabilityStatus | str) -> None:
        entry = stored.entry.model_copy(update={"availability_status": status})
        self.store.replace_entry(stored.model_copy(update={"entry": entry}))

    # --- ITI-43 ---------------------------------------------------------------------------------------

    def _retrieve(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        action = Action.RETRIEVE_DOCUMENT_SET_RESPONSE.value
        try:
            request = parse_retrieve_document_set_request(message.payload)
        except DmpConnectorError as exc:
            return self._retrieve_failure(_refused(RegistryErrorCode.REPOSITORY_ERROR, exc.message), message)
        try:
            patient = self._consulted_patient(caller)
        except _Refused as refused:
            return self._retrieve_failure(refused, message)
        found: list[tuple[RetrievedDocument, Attachment]] = []
        errors: list[RegistryError] = []
        for wanted in request.documents:
            uid = wanted.document_unique_id
            if wanted.repository_unique_id != DMP_REPOSITORY_UNIQUE_ID:
                errors.append(
                    _error(RegistryErrorCode.UNKNOWN_REPOSITORY_ID, "Entrepôt inconnu", wanted.repository_unique_id)
                )
                continue
            visible = [s for s in self.store.entries(unique_id=uid, patient=patient.key) if self._visible(caller, s)]
            content = self.store.content(uid) if visible else None
            if content is None:
                errors.append(_error(RegistryErrorCode.DOCUMENT_UNIQUE_ID_ERROR, "Document introuvable", uid))
                continue
            attachment = Attachment.from_bytes(content.data, content_type=content.mime_type)
            retrieved = RetrievedDocument(
                repository_unique_id=DMP_REPOSITORY_UNIQUE_ID,
                document_unique_id=uid,
                mime_type=content.mime_type,
                content_id=attachment.content_id,
            )
            found.append((retrieved, attachment))
        if not found:
            return self._retrieve_failure(_Refused(*errors), message)
        status = ResponseStatus.PARTIAL_SUCCESS if errors else ResponseStatus.SUCCESS
        response = RetrieveDocumentSetResponse(
            response=RegistryResponse(status=status, errors=tuple(errors)), documents=tuple(d for d, _ in found)
        )
        body = build_retrieve_document_set_response(response)
        return _mtom_response(body, action, message.message_id, [a for _, a in found])

    @staticmethod
    def _retrieve_failure(refused: _Refused, message: SoapMessage) -> HttpResponse:
        response = RetrieveDocumentSetResponse(
            response=RegistryResponse(status=ResponseStatus.FAILURE, errors=refused.errors)
        )
        body = build_retrieve_document_set_response(response)
        return _soap_response(body, Action.RETRIEVE_DOCUMENT_SET_RESPONSE.value, message.message_id)

    # --- ITI-18 ---------------------------------------------------------------------------------------

    def _stored_query(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        action = Action.REGISTRY_STORED_QUERY_RESPONSE.value
        try:
            request = parse_adhoc_query_request(message.payload)
            answer = self._answer_query(caller, request)
        except StoredQueryError as exc:
            answer = _query_failure(_refused(exc.error_code, exc.message))
        except _Refused as refused:
            answer = _query_failure(refused)
        except DmpConnectorError as exc:
            answer = _query_failure(_refused(RegistryErrorCode.REGISTRY_ERROR, exc.message))
        return _soap_response(build_adhoc_query_response(answer), action, message.message_id)

    def _answer_query(self, caller: DmpCaller, request: AdhocQueryRequest) -> AdhocQueryResponse:
        query = request.query
        documents: list[DocumentEntry] = []
        submission_sets: list[SubmissionSet] = []
        associations: list[Association] = []
        if isinstance(query, FindDocumentsQuery):
            patient = self._consulted_patient(caller, query.patient_id)
            documents = [s.entry for s in self.store.entries(patient=patient.key) if self._matches(caller, s, query)]
        elif isinstance(query, FindSubmissionSetsQuery):
            patient = self._consulted_patient(caller, query.patient_id)
            submission_sets = [
                s.submission_set
                for s in self.store.submission_sets(patient.key)
                if _submission_set_matches(s.submission_set, query)
            ]
        elif isinstance(query, GetDocumentsQuery | GetDocumentsAndAssociationsQuery):
            patient = self._consulted_patient(caller)
            found = self._entries_by_ids(caller, patient, query.entry_uuids, query.unique_ids)
            documents = [s.entry for s in found]
            if isinstance(query, GetDocumentsAndAssociationsQuery):
                associations = self._associations_of(caller, patient, [d.entry_uuid for d in documents])
        elif isinstance(query, GetSubmissionSetsQuery | GetAssociationsQuery):
            patient = self._consulted_patient(caller)
            touching = self._associations_of(caller, patient, query.uuids)
            if isinstance(query, GetAssociationsQuery):
                associations = touching
            else:
                member_of = [
                    a
                    for a in touching
                    if a.association_type == AssociationType.HAS_MEMBER and a.target_object in query.uuids
                ]
                wanted = {a.source_object for a in member_of}
                submission_sets = [
                    s.submission_set
                    for s in self.store.submission_sets(patient.key)
                    if s.submission_set.entry_uuid in wanted
                ]
                associations = member_of
        elif isinstance(query, GetSubmissionSetAndContentsQuery):
            patient = self._consulted_patient(caller)
            submission_sets, documents, associations = self._submission_set_and_contents(caller, patient, query)
        elif isinstance(query, GetRelatedDocumentsQuery):
            patient = self._consulted_patient(caller)
            documents, associations = self._related(caller, patient, query)
        elif isinstance(query, StoredQuery) and query.query_id in (
            StoredQueryId.FIND_FOLDERS,
            StoredQueryId.GET_FOLDERS,
            StoredQueryId.GET_FOLDER_AND_CONTENTS,
            StoredQueryId.GET_FOLDERS_FOR_DOCUMENT,
        ):
            self._consulted_patient(caller)  # the DMP keeps no folders: an empty answer for an authorised caller
        else:
            raise _refused(RegistryErrorCode.REGISTRY_ERROR, "Requête stockée non prise en charge par le bac à sable")
        if request.return_type is ReturnType.OBJECT_REF:
            ids = [o.entry_uuid for o in submission_sets] + [o.entry_uuid for o in documents]
            refs = [ObjectRef(id=i) for i in ids + [a.entry_uuid for a in associations]]
            return AdhocQueryResponse(response=RegistryResponse(status=ResponseStatus.SUCCESS), object_refs=tuple(refs))
        if len(documents) + len(submission_sets) > self.max_results:
            raise _refused(
                RegistryErrorCode.TOO_MANY_RESULTS,
                f"Plus de {self.max_results} résultats : demandez des ObjectRef puis GetDocuments par lots",
            )
        return AdhocQueryResponse(
            response=RegistryResponse(status=ResponseStatus.SUCCESS),
            documents=tuple(documents),
            submission_sets=tuple(submission_sets),
            associations=tuple(associations),
        )

    def _matches(self, caller: DmpCaller, stored: StoredEntry, query: FindDocumentsQuery) -> bool:
        entry = stored.entry
        if not self._visible(caller, stored) or str(entry.availability_status) not in {str(s) for s in query.statuses}:
            return False
        single_codes = (
            (query.class_codes, entry.class_code),
            (query.type_codes, entry.type_code),
            (query.practice_setting_codes, entry.practice_setting_code),
            (query.healthcare_facility_type_codes, entry.healthcare_facility_type_code),
            (query.format_codes, entry.format_code),
        )
        for wanted, code in single_codes:
            if wanted and (code is None or not any(_same_code(code, w) for w in wanted)):
                return False
        for wanted, codes in (
            (query.event_codes, entry.event_codes),
            (query.confidentiality_codes, entry.confidentiality_codes),
        ):
            if wanted and not any(_same_code(c, w) for c in codes for w in wanted):
                return False
        ranges = (
            (entry.creation_time, query.creation_time_from, query.creation_time_to),
            (entry.service_start_time, query.service_start_time_from, query.service_start_time_to),
            (entry.service_stop_time, query.service_stop_time_from, query.service_stop_time_to),
        )
        if not all(_in_range(value, low, high) for value, low, high in ranges):
            return False
        if query.author_persons:
            persons = [a.person.text for a in entry.authors if a.person is not None]
            if not any(_like(person, pattern) for person in persons for pattern in query.author_persons):
                return False
        return not query.entry_types or entry.object_type in query.entry_types

    def _entries_by_ids(
        self, caller: DmpCaller, patient: PatientRecord, entry_uuids: Sequence[str], unique_ids: Sequence[str]
    ) -> list[StoredEntry]:
        found: list[StoredEntry] = []
        for entry_uuid in entry_uuids:
            stored = self.store.entry(entry_uuid)
            if stored is not None and patient_key(stored.entry.patient_id) == patient.key:
                found.append(stored)
        for unique_id in unique_ids:
            versions = self.store.entries(unique_id=unique_id, patient=patient.key)
            latest: dict[str, StoredEntry] = {}
            for stored in versions:  # the newest version of each logical entry
                latest[stored.entry.logical_id or stored.entry.entry_uuid] = stored
            found.extend(latest.values())
        return [s for s in found if self._visible(caller, s)]

    def _associations_of(self, caller: DmpCaller, patient: PatientRecord, uuids: Sequence[str]) -> list[Association]:
        """Associations touching ``uuids`` whose other end is this patient's and visible."""
        result: list[Association] = []
        for association in self.store.associations(uuids):
            ends = (association.source_object, association.target_object)
            if all(self._end_visible(caller, patient, end) for end in ends):
                result.append(association)
        return result

    def _end_visible(self, caller: DmpCaller, patient: PatientRecord, entry_uuid: str) -> bool:
        stored = self.store.entry(entry_uuid)
        if stored is not None:
            return patient_key(stored.entry.patient_id) == patient.key and self._visible(caller, stored)
        ss = self.store.submission_set(entry_uuid=entry_uuid)
        return ss is not None and patient_key(ss.submission_set.patient_id) == patient.key

    def _submission_set_and_contents(
        self, caller: DmpCaller, patient: PatientRecord, query: GetSubmissionSetAndContentsQuery
    ) -> tuple[list[SubmissionSet], list[DocumentEntry], list[Association]]:
        if query.entry_uuid is not None:
            stored = self.store.submission_set(entry_uuid=query.entry_uuid)
        else:
            stored = self.store.submission_set(unique_id=query.unique_id)
        if stored is None or patient_key(stored.submission_set.patient_id) != patient.key:
            return [], [], []
        ss = stored.submission_set
        members = [
            a
            for a in self.store.associations([ss.entry_uuid])
            if a.association_type == AssociationType.HAS_MEMBER and a.source_object == ss.entry_uuid
        ]
        documents: list[DocumentEntry] = []
        kept: list[Association] = []
        for association in members:
            entry = self.store.entry(association.target_object)
            if entry is None or not self._visible(caller, entry):
                continue
            if query.format_codes and not any(
                entry.entry.format_code is not None and _same_code(entry.entry.format_code, w)
                for w in query.format_codes
            ):
                continue
            if query.confidentiality_codes and not any(
                _same_code(c, w) for c in entry.entry.confidentiality_codes for w in query.confidentiality_codes
            ):
                continue
            documents.append(entry.entry)
            kept.append(association)
        return [ss], documents, kept

    def _related(
        self, caller: DmpCaller, patient: PatientRecord, query: GetRelatedDocumentsQuery
    ) -> tuple[list[DocumentEntry], list[Association]]:
        if query.entry_uuid is not None:
            start = self.store.entry(query.entry_uuid)
        else:
            versions = self.store.entries(unique_id=query.unique_id, patient=patient.key)
            start = versions[-1] if versions else None
        if start is None or patient_key(start.entry.patient_id) != patient.key or not self._visible(caller, start):
            return [], []
        kinds = {str(k) for k in query.association_types}
        related = [a for a in self.store.associations([start.entry.entry_uuid]) if str(a.association_type) in kinds]
        documents: list[DocumentEntry] = []
        associations: list[Association] = []
        for association in related:
            other_id = (
                association.target_object
                if association.source_object == start.entry.entry_uuid
                else association.source_object
            )
            other = self.store.entry(other_id)
            if other is None or not self._visible(caller, other):
                continue
            documents.append(other.entry)
            associations.append(association)
        if documents:
            documents.insert(0, start.entry)
        return documents, associations

    # --- ITI-57 ---------------------------------------------------------------------------------------

    def _update(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        action = Action.UPDATE_DOCUMENT_SET_RESPONSE.value
        try:
            self._apply_update(caller, message)
        except _Refused as refused:
            return _soap_response(_failure(refused), action, message.message_id)
        return _soap_response(_success(), action, message.message_id)

    def _apply_update(self, caller: DmpCaller, message: SoapMessage) -> None:
        try:
            submission = parse_submit_objects_request(message.payload)
        except DmpConnectorError as exc:
            raise _refused(RegistryErrorCode.REGISTRY_METADATA_ERROR, exc.message) from exc
        patient = self._consulted_patient(caller, submission.submission_set.patient_id)
        problems = submission.problems(MetadataProfile.DMP)
        if problems:
            raise _Refused(*(_error(RegistryErrorCode.REGISTRY_METADATA_ERROR, p) for p in problems))
        with self.store.transaction():
            if self.store.submission_set(unique_id=submission.submission_set.unique_id) is not None:
                raise _refused(
                    RegistryErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY,
                    "Lot de soumission déjà enregistré",
                    submission.submission_set.unique_id,
                )
            status_changes = [
                (a, self._status_target(a, patient))
                for a in submission.associations
                if a.association_type == AssociationType.UPDATE_AVAILABILITY_STATUS
            ]
            versions = [(d, self._version_target(d, submission, patient)) for d in submission.documents]
            if not status_changes and not versions:
                raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "La mise à jour ne modifie rien")
            now = self.now()
            ss_uuid = _new_uuid()
            ss = submission.submission_set.model_copy(
                update={"entry_uuid": ss_uuid, "availability_status": AvailabilityStatus.APPROVED}
            )
            self.store.add_submission_set(
                StoredSubmissionSet(submission_set=ss, submitter=caller.professional_id, recorded=now)
            )
            for association, stored in status_changes:
                self._set_status(stored, association.new_status or "")
                self._record_association(association, {submission.submission_set.entry_uuid: ss_uuid})
            for document, previous in versions:
                new_uuid = _new_uuid()
                entry = document.model_copy(
                    update={
                        "entry_uuid": new_uuid,
                        "logical_id": previous.entry.logical_id or previous.entry.entry_uuid,
                        "version": str(int(previous.entry.version or "1") + 1),
                        "availability_status": AvailabilityStatus.APPROVED,
                        "repository_unique_id": previous.entry.repository_unique_id,
                        "hash": previous.entry.hash,
                        "size": previous.entry.size,
                    }
                )
                self.store.add_entry(
                    StoredEntry(entry=entry, submission_set=ss_uuid, submitter=previous.submitter, recorded=now)
                )
                self._set_status(previous, AvailabilityStatus.DEPRECATED)
                for association in submission.associations:
                    if association.target_object == document.entry_uuid:
                        self._record_association(
                            association, {submission.submission_set.entry_uuid: ss_uuid, document.entry_uuid: new_uuid}
                        )

    def _record_association(self, association: Association, ids: dict[str, str]) -> None:
        self.store.add_association(
            association.model_copy(
                update={
                    "entry_uuid": _new_uuid(),
                    "source_object": ids.get(association.source_object, association.source_object),
                    "target_object": ids.get(association.target_object, association.target_object),
                    "availability_status": AvailabilityStatus.APPROVED,
                }
            )
        )

    def _status_target(self, association: Association, patient: PatientRecord) -> StoredEntry:
        stored = self.store.entry(association.target_object)
        where = association.entry_uuid
        if stored is None or patient_key(stored.entry.patient_id) != patient.key:
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "Entrée inconnue dans ce DMP", where)
        if str(association.original_status) != str(stored.entry.availability_status):
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "OriginalStatus n'est pas le statut actuel", where)
        if (
            association.new_status not in _REGISTRY_STATUSES
            or association.new_status == stored.entry.availability_status
        ):
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "NewStatus n'est pas un changement admis", where)
        if stored.entry.availability_status == AvailabilityStatus.DELETED:
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "Un document supprimé ne change plus", where)
        return stored

    def _version_target(
        self, document: DocumentEntry, submission: SubmissionRequest, patient: PatientRecord
    ) -> StoredEntry:
        where = document.entry_uuid
        member = next(
            (
                a
                for a in submission.associations
                if a.association_type == AssociationType.HAS_MEMBER and a.target_object == document.entry_uuid
            ),
            None,
        )
        if member is None or member.previous_version is None or document.logical_id is None:
            raise _refused(
                RegistryErrorCode.METADATA_UPDATE_ERROR,
                "Une nouvelle version demande logicalId et PreviousVersion",
                where,
            )
        versions = self.store.entries(logical_id=document.logical_id)
        current = next(
            (s for s in reversed(versions) if s.entry.availability_status == AvailabilityStatus.APPROVED), None
        )
        if not versions or patient_key(versions[-1].entry.patient_id) != patient.key:
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "Entrée logique inconnue dans ce DMP", where)
        if current is None or current.entry.version != member.previous_version:
            raise _refused(
                RegistryErrorCode.METADATA_VERSION_ERROR,
                "PreviousVersion n'est pas la version approuvée actuelle",
                where,
            )
        if document.unique_id != current.entry.unique_id:
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "Le uniqueId ne peut pas changer", where)
        if document.hash is not None and document.hash.lower() != (current.entry.hash or "").lower():
            raise _refused(RegistryErrorCode.METADATA_UPDATE_ERROR, "Le hash ne peut pas changer", where)
        return current

    # --- TD: the DMP's own transactions -------------------------------------------------------------

    def _vihf_patient_is(self, caller: DmpCaller, ins: INS) -> None:
        """The patient a TD request names must be the VIHF's ``resource-id`` (a Sender fault otherwise)."""
        if patient_key(caller.patient()) != patient_key(ins):
            raise _Fault("Sender", _WSSE_TOKEN, "Le resource-id du VIHF n'est pas le patient de la requête")

    def _answer_header(self, request: Hl7Header) -> Hl7Header:
        return Hl7Header(
            message_id=str(uuid.uuid4()),
            id_root=DMP_DEVICE_ROOT,
            creation_time=self.now(),
            sender_root=DMP_DEVICE_ROOT,
            sender_name="DMP",
            receiver_root=request.sender_root,
            receiver_name=request.sender_name,
            processing_code=request.processing_code,
            target_message_id=request.message_id,
        )

    def _standing(self, caller: DmpCaller, patient: PatientRecord) -> AuthorisationRecord | None:
        return self.store.authorisation(patient.key, caller.professional_id)

    def _td_patient_query(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        """TD0.2 (``TEST_EXST``) and the administrative-data read (``CNSLT_DATA``)."""
        try:
            query, header = parse_patient_query_request(message.payload)
        except DmpConnectorError as exc:
            raise _Fault("Sender", _BAD_REQUEST, f"Requête TD0.2 illisible : {exc.message}") from exc
        self._vihf_patient_is(caller, query.ins)
        patient = self.store.patient(query.ins)
        acknowledgement = Acknowledgement(type_code=AckType.ACCEPT)
        administrative: AdministrativeData | None = None
        if patient is None or patient.dmp is None:
            status = DmpStatus(exists=False)
        else:
            standing = self._standing(caller, patient)
            status = DmpStatus(
                exists=True,
                ins=patient.ins,
                state=patient.dmp,
                authorisation=standing.status if standing is not None else AuthorisationStatus.NONE,
                treating_doctor=standing is not None
                and standing.attending_physician
                and standing.status is AuthorisationStatus.VALID,
                attached_to_mes=patient.mes_attached,
                closure=_closure(patient),
            )
            if query.reason is QueryReason.ADMINISTRATIVE_DATA:
                try:
                    self._check_open_and_consultable(caller, patient)
                    administrative = _administrative(patient)
                except _Refused as refused:
                    acknowledgement = _rejection(refused)
        body = build_patient_query_response(
            self._answer_header(header),
            acknowledgement,
            status,
            administrative=administrative,
            query_id=query.query_id,
            reason=query.reason,
        )
        return _soap_response(body, _PATIENT_QUERY_KIT_ACTION, message.message_id)

    def _check_open_and_consultable(self, caller: DmpCaller, patient: PatientRecord) -> None:
        if patient.dmp is DmpState.CLOSED:
            raise _refused(DmpErrorCode.DMP_CLOSED, "Le DMP du patient est fermé")
        self._check_consultation(caller, patient)

    def _td_registration(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        """TD1.1 create, TD1.2 reactivate, TD1.3b update the administrative data, TD1.4 close."""
        try:
            request, header = parse_registration_request(message.payload)
        except DmpConnectorError as exc:
            raise _Fault("Sender", _BAD_REQUEST, f"Requête TD1 illisible : {exc.message}") from exc
        self._vihf_patient_is(caller, request.ins)
        try:
            with self.store.transaction():
                self._register_patient(caller, request)
            acknowledgement = Acknowledgement(type_code=AckType.ACCEPT)
        except _Refused as refused:
            acknowledgement = _rejection(refused)
        body = build_registration_response(self._answer_header(header), request.kind, acknowledgement)
        answer = etree.QName(body).localname  # …12/…15 accepted, …13/…16 refused
        return _soap_response(body, f"urn:hl7-org:v3:{answer}", message.message_id)

    def _register_patient(self, caller: DmpCaller, request: RegistrationRequest) -> None:
        patient = self.store.patient(request.ins)
        kind = request.kind
        now = self.now()
        if kind is RegistrationKind.CREATE:
            if patient is not None and patient.dmp is DmpState.ACTIVE:
                raise _refused(DmpErrorCode.FOUND, "Le DMP existe déjà")
            if patient is not None and patient.dmp is DmpState.CLOSED:
                raise _refused(DmpErrorCode.DMP_CLOSED, "Le DMP existe et est fermé : réactivez-le")
            if request.data is None:
                raise _Fault("Sender", _BAD_REQUEST, "Une création de DMP demande les données administratives")
            if request.consent is not True:
                raise _Fault("Sender", _BAD_REQUEST, "Consentement à l'ouverture du DMP absent")
            created = _patient_from(request.data, patient, created=now)
            self.store.put_patient(created)
            self.store.put_authorisation(  # the professional who creates the DMP is authorised on it [I]
                AuthorisationRecord(patient=created.key, professional_id=caller.professional_id, since=now)
            )
            return
        if patient is None or patient.dmp is None:
            raise _refused(DmpErrorCode.DMP_NOT_FOUND, "Le patient n'a pas de DMP")
        if kind is RegistrationKind.REACTIVATE:
            if patient.dmp is DmpState.ACTIVE:
                raise _refused(DmpErrorCode.FOUND, "Le DMP est déjà actif")
            if request.consent is not True:
                raise _Fault("Sender", _BAD_REQUEST, "Consentement à la réactivation du DMP absent")
            reopened = {"dmp": DmpState.ACTIVE, "closed": None, "closing_reason": None, "closing_text": None}
            self.store.put_patient(patient.model_copy(update=reopened))
            return
        self._check_open_and_consultable(caller, patient)
        if kind is RegistrationKind.UPDATE:
            if request.data is None:
                raise _Fault("Sender", _BAD_REQUEST, "Une mise à jour demande les données administratives")
            self.store.put_patient(_patient_from(request.data, patient, created=patient.created))
            return
        closure = request.closure
        self.store.put_patient(
            patient.model_copy(
                update={
                    "dmp": DmpState.CLOSED,
                    "closed": now,
                    "closing_reason": str(closure.reason) if closure is not None else None,
                    "closing_text": closure.text if closure is not None else None,
                }
            )
        )

    def _td_set_authorization(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        """TD0.3: add or remove this professional's authorisation (optionally as médecin traitant)."""
        try:
            action, treating = parse_set_authorisation_request(
                message.payload, role_element=self.authorisation_role_element
            )
        except DmpConnectorError as exc:
            raise _Fault("Sender", _BAD_REQUEST, f"Requête TD0.3 illisible : {exc.message}") from exc
        patient_id = caller.patient()  # the body names no patient: the VIHF does
        try:
            with self.store.transaction():
                self._set_authorization(caller, patient_id, action, treating)
            status = ServiceStatus(status="DMPOK")
        except _Refused as refused:
            status = _service_status(refused)
        body = build_set_authorisation_response(status)
        return _soap_response(body, TdAction.SET_AUTHORIZATION.value + "Response", message.message_id)

    def _set_authorization(
        self, caller: DmpCaller, patient_id: Cx, action: AuthorisationAction, treating: bool
    ) -> None:
        patient = self._patient_with_dmp(patient_id)
        standing = self._standing(caller, patient)
        if standing is not None and standing.status is AuthorisationStatus.FORBIDDEN:
            raise _refused(DmpErrorCode.PATIENT_OPPOSITION, "Le patient a bloqué l'accès de ce professionnel")
        if action is AuthorisationAction.REMOVE:
            self.store.remove_authorisation(patient.key, caller.professional_id)
            return
        if treating:  # one médecin traitant DMP per patient [I]
            for other in self.store.authorisations(patient=patient.key):
                if other.attending_physician and other.professional_id != caller.professional_id:
                    self.store.put_authorisation(other.model_copy(update={"attending_physician": False}))
        self.store.put_authorisation(
            AuthorisationRecord(
                patient=patient.key,
                professional_id=caller.professional_id,
                attending_physician=treating,
                since=self.now(),
            )
        )

    def _td_list_authorizations(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        """The professionals authorised on a DMP (``listAuthorizationByPatient``)."""
        try:
            mode = parse_list_authorisations_request(message.payload)
        except DmpConnectorError as exc:
            raise _Fault(
                "Sender", _BAD_REQUEST, f"Requête listAuthorizationByPatient illisible : {exc.message}"
            ) from exc
        wanted = _LIST_MODES.get(mode)
        if wanted is None:
            raise _Fault("Sender", _BAD_REQUEST, "mode inconnu (TOUTE, ACTIVE ou INTERDITE)")
        professionals: list[AuthorisedProfessional] = []
        try:
            patient = self._consulted_patient(caller)
            for record in self.store.authorisations(patient=patient.key):
                if record.status not in wanted:
                    continue
                known = self.store.professional(record.professional_id)
                professionals.append(
                    AuthorisedProfessional(
                        national_id=record.professional_id,
                        family_name=known.family_name if known is not None else None,
                        given_name=known.given_name if known is not None else None,
                    )
                )
            status = ServiceStatus(status="DMPOK")
        except _Refused as refused:
            status, professionals = _service_status(refused), []
        body = build_list_authorisations_response(status, professionals)
        return _soap_response(body, TdAction.LIST_AUTHORIZATIONS.value + "Response", message.message_id)

    def _td_patient_list(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        """TD0.4: the DMPs this professional was recently authorised on, or deposited in."""
        try:
            since, kind = parse_patient_list_request(
                message.payload, date_format=self.patient_list_date_format, elements=self.patient_list_elements
            )
        except DmpConnectorError as exc:
            raise _Fault("Sender", _BAD_REQUEST, f"Requête TD0.4 illisible : {exc.message}") from exc
        dates: dict[str, dt.datetime] = {}
        if kind is RecentDmpKind.LAST_AUTHORISATION:
            for record in self.store.authorisations(professional_id=caller.professional_id):
                if record.status is AuthorisationStatus.VALID and record.since is not None:
                    dates[record.patient] = record.since
        else:
            for stored in self.store.entries():
                if stored.submitter == caller.professional_id:
                    key = patient_key(stored.entry.patient_id)
                    dates[key] = max(stored.recorded, dates.get(key, stored.recorded))
        recent: list[RecentDmp] = []
        for key, when in sorted(dates.items(), key=lambda item: item[1], reverse=True):
            patient = self.store.patient(key)
            if patient is None or patient.dmp is not DmpState.ACTIVE or when.date() < since:
                continue
            recent.append(  # the public rows carry names and birth date, no INS
                RecentDmp(
                    family_name=patient.traits.birth_name,
                    given_name=patient.traits.birth_first_names[0],
                    birth_date=patient.traits.birth_date,
                )
            )
        body = build_patient_list_response(ServiceStatus(status="DMPOk"), recent)  # the kit compares "DMPOk"
        return _soap_response(body, TdAction.PATIENT_LIST.value + "Response", message.message_id)

    def _td_find_candidates(self, caller: DmpCaller, message: SoapMessage) -> HttpResponse:
        """TD0.5: PDQv3 search among the patients with an open DMP (address criteria are not matched)."""
        try:
            search, header = parse_find_candidates_request(message.payload)
        except DmpConnectorError as exc:
            raise _Fault("Sender", _BAD_REQUEST, f"Requête TD0.5 illisible : {exc.message}") from exc
        found = [
            PatientCandidate(
                ins=patient.ins,
                family_name=patient.traits.birth_name,
                used_name=patient.traits.used_name,
                given_name=patient.traits.birth_first_names[0],
                sex=patient.traits.sex,
                birth_date=patient.traits.birth_date,
            )
            for patient in self.store.patients()
            if patient.dmp is DmpState.ACTIVE and _candidate_matches(patient, search)
        ]
        if search.max_results is not None:
            found = found[: search.max_results]
        body = build_find_candidates_response(
            self._answer_header(header),
            Acknowledgement(type_code=AckType.ACCEPT),
            found,
            query_id=search.query_id,
        )
        return _soap_response(body, "urn:hl7-org:v3:PRPA_IN201306UV02", message.message_id)


# --------------------------------------------------------------------------------------------------
# Helpers


def _new_uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _success() -> etree._Element:
    return build_registry_response(RegistryResponse(status=ResponseStatus.SUCCESS))


def _failure(refused: _Refused) -> etree._Element:
    return build_registry_response(RegistryResponse(status=ResponseStatus.FAILURE, errors=refused.errors))


def _query_failure(refused: _Refused) -> AdhocQueryResponse:
    return AdhocQueryResponse(response=RegistryResponse(status=ResponseStatus.FAILURE, errors=refused.errors))


def _same_code(code: AnyCode, wanted: AnyCode) -> bool:
    return code.code == wanted.code and code.code_system == wanted.code_system


def _in_range(value: XdsTime | None, low: XdsTime | None, high: XdsTime | None) -> bool:
    """``From`` inclusive, ``To`` exclusive (ITI-18); an entry without the time fails any bound."""
    if low is None and high is None:
        return True
    if value is None:
        return False
    if low is not None and value.moment < low.moment:
        return False
    return high is None or value.moment < high.moment


def _like(text: str, pattern: str) -> bool:
    """SQL LIKE as ITI-18 uses it: ``%`` any run, ``_`` one character, case-sensitive."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def _submission_set_matches(ss: SubmissionSet, query: FindSubmissionSetsQuery) -> bool:
    if str(ss.availability_status) not in {str(s) for s in query.statuses}:
        return False
    if query.source_ids and ss.source_id not in query.source_ids:
        return False
    if not _in_range(ss.submission_time, query.submission_time_from, query.submission_time_to):
        return False
    if query.author_person is not None:
        persons = [a.person.text for a in ss.authors if a.person is not None]
        if not any(_like(p, query.author_person) for p in persons):
            return False
    if query.content_type_codes:
        code = ss.content_type_code
        return code is not None and any(_same_code(code, w) for w in query.content_type_codes)
    return True


def _fold(text: str | None) -> str:
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join(plain.replace("-", " ").replace("'", " ").split())


def _candidate_matches(patient: PatientRecord, search: PatientSearch) -> bool:
    traits = patient.traits
    criteria = (search.family_name, search.given_name, search.sex, search.birth_date)
    if all(value is None for value in criteria):
        return False
    if search.family_name is not None and _fold(search.family_name) not in {
        _fold(traits.birth_name),
        _fold(traits.used_name),
    }:
        return False
    if search.given_name is not None and _fold(search.given_name) not in {
        *(_fold(name) for name in traits.birth_first_names),
        _fold(traits.used_first_name),
    }:
        return False
    if search.sex is not None and search.sex != traits.sex:
        return False
    return search.birth_date is None or search.birth_date == traits.birth_date


_LIST_MODES: Final = {
    "TOUTE": frozenset(AuthorisationStatus),
    "ACTIVE": frozenset({AuthorisationStatus.VALID}),
    "INTERDITE": frozenset({AuthorisationStatus.FORBIDDEN}),
}
"""``listAuthorizationByPatient`` modes: ``TOUTE`` [V kit]; ``ACTIVE``/``INTERDITE`` after MagicDMP's names [I]."""


def _closure(patient: PatientRecord) -> Closure | None:
    if patient.dmp is not DmpState.CLOSED:
        return None
    reason = patient.closing_reason
    known = reason in {r.value for r in ClosureReason}
    return Closure(
        reason=ClosureReason(reason) if reason is not None and known else reason,
        text=patient.closing_text,
        date=patient.closed.date() if patient.closed is not None else None,
    )


def _administrative(patient: PatientRecord) -> AdministrativeData:
    traits = patient.traits
    return AdministrativeData(
        ins=patient.ins,
        birth_name=traits.birth_name,
        given_names=" ".join(traits.birth_first_names),
        sex=traits.sex,
        birth_date=traits.birth_date,
        used_name=traits.used_name,
        civility=patient.civility,
        address=patient.address,
        home_phone=patient.home_phone,
        email=patient.email,
        mobile_phone=patient.mobile_phone,
        oppositions=Oppositions(
            bris_de_glace=AccessMode.BRIS_DE_GLACE in patient.oppositions,
            centre_15=AccessMode.CENTRE_15 in patient.oppositions,
        ),
    )


def _patient_from(
    data: AdministrativeData, known: PatientRecord | None, *, created: dt.datetime | None
) -> PatientRecord:
    """A patient record from TD1.1/TD1.3b administrative data (the known birth place is kept)."""
    traits = IdentityTraits.build(
        birth_name=data.birth_name,
        birth_first_names=data.given_names,
        sex=data.sex,
        birth_date=data.birth_date,
        birth_place=known.traits.birth_place if known is not None else None,
        used_name=data.used_name,
        used_first_name=known.traits.used_first_name if known is not None else None,
    )
    oppositions = {
        mode
        for mode, opposed in (
            (AccessMode.BRIS_DE_GLACE, data.oppositions.bris_de_glace),
            (AccessMode.CENTRE_15, data.oppositions.centre_15),
        )
        if opposed
    }
    base: dict[str, Any] = known.model_dump() if known is not None else {}
    base.update(
        {
            "ins": known.ins if known is not None else data.ins,
            "traits": traits,
            "dmp": DmpState.ACTIVE,
            "oppositions": frozenset(oppositions),
            "created": created,
            "closed": None,
            "closing_reason": None,
            "closing_text": None,
            "email": data.email,
            "mobile_phone": data.mobile_phone,
            "home_phone": data.home_phone,
            "civility": data.civility,
            "address": data.address,
        }
    )
    return PatientRecord.model_validate(base)


def _rejection(refused: _Refused) -> Acknowledgement:
    """An HL7 v3 AE acknowledgement carrying the refusal's codes and texts."""
    details = tuple(AckDetail(code=str(e.error_code), text=e.code_context or None) for e in refused.errors)
    return Acknowledgement(type_code=AckType.ERROR, details=details)


def _service_status(refused: _Refused) -> ServiceStatus:
    """The ``status``/``context`` of a refused non-HL7 transaction: the first code and its explanation."""
    first = refused.errors[0]
    return ServiceStatus(status=str(first.error_code), context=first.code_context or None)


# --------------------------------------------------------------------------------------------------
# In-process clients


@contextmanager
def in_process_dmp(
    settings: Settings,
    simulator: DmpSimulator,
    *,
    signer: Signer | None = None,
    audit: Iterable[AuditSink] = (),
    retry: RetryPolicy | None = None,
) -> Iterator[DmpClient]:
    """A :class:`~dmp_connector.dmp.DmpClient` wired to the simulator in-process (no socket, no TLS).

    Its requests present the subject of ``settings.tls``'s client certificate, so that the simulator
    checks it against the VIHF as over mutual TLS.
    ``signer`` signs the VIHFs and submission sets; it must chain to the simulator's ``trusted``.
    """
    http = httpx.Client(transport=as_transport(simulator, client_subject=client_subject(settings.tls)))
    try:
        with DmpClient(settings, signer=signer, http_client=http, audit=audit, retry=retry) as client:
            yield client
    finally:
        http.close()


@asynccontextmanager
async def in_process_async_dmp(
    settings: Settings,
    simulator: DmpSimulator,
    *,
    signer: Signer | None = None,
    audit: Iterable[AuditSink] = (),
    retry: RetryPolicy | None = None,
) -> AsyncIterator[AsyncDmpClient]:
    """An :class:`~dmp_connector.dmp.AsyncDmpClient` wired to the simulator in-process."""
    http = httpx.AsyncClient(transport=as_async_transport(simulator, client_subject=client_subject(settings.tls)))
    try:
        async with AsyncDmpClient(settings, signer=signer, http_client=http, audit=audit, retry=retry) as client:
            yield client
    finally:
        await http.aclose()
