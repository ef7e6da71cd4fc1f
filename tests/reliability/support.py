"""What the reliability tests share: many small documents, a served sandbox behind a fault mix, a census of the store.

The census reads the simulator's store, never the client's report: each document carries its own
number in its title (``Rapport fiabilité n° 0042``), so a document stored twice under two
uniqueIds (a vendor that rebuilds the document on failure) is counted twice, and one never stored
is missing, whatever the client believed.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dmp_connector.audit import AuditEvent, AuditEventKind
from dmp_connector.cda import InstanceId
from dmp_connector.config import Settings
from dmp_connector.ins import Identity
from dmp_connector.sandbox import FaultKind, FaultMix, Handler, HttpRequest, HttpResponse, LoopbackServer
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpFault, DmpSimulator, DmpStore
from tests.conftest import PkiFiles
from tests.dmp.client_support import cda_document
from tests.dmp.test_sandbox_integration import ADRUN, Credentials
from tests.dmp.test_sandbox_rules import PRACTICE
from tests.dmp.test_sandbox_rules import settings as base_settings

PATIENT: Identity = ADRUN
"""ADRUN ZOE: an open DMP (deposits need no authorisation)."""
PATIENT_KEY = DEFAULT_DMP_PATIENTS[0].key
SIGNATURE_FORMAT = "http://www.w3.org/2000/09/xmldsig#"
_TITLE = re.compile(r"Rapport fiabilité n° (\d{4})")


def title(number: int) -> str:
    """The title that names document ``number`` in the store, whatever its uniqueId."""
    return f"Rapport fiabilité n° {number:04d}"


def document(number: int, *, root: str = "1.2.250.1.999.77", generation: int = 0) -> bytes:
    """A small PDF-body CDA for the patient (:func:`~tests.dmp.client_support.cda_document`), titled by ``number``.

    ``generation`` > 0 gives the same document a new uniqueId (what a non-idempotent batch does).
    """
    unique = unique_id(number, root=root) if generation == 0 else f"{unique_id(number, root=root)}.{generation}"
    return cda_document(
        f"Rapport {number}",
        patient=PATIENT,
        title=title(number),
        practice_setting=PRACTICE,
        document_id=InstanceId(root=unique),
    )


def unique_id(number: int, *, root: str = "1.2.250.1.999.77") -> str:
    """The uniqueId :func:`document` gives document ``number`` (first generation)."""
    return f"{root}.{number + 1}"


@dataclass(frozen=True)
class Census:
    """How many times the store holds each numbered document, counted from the store alone."""

    wanted: int
    by_title: Counter[str]
    """Clinical entries (not signatures) per document number."""
    by_unique_id: Counter[str]
    """Clinical entries per uniqueId."""
    submission_sets: int
    signatures: int
    stray: tuple[str, ...] = ()
    """Titles of entries that are none of the numbered documents."""

    @property
    def missing(self) -> list[int]:
        return [n for n in range(self.wanted) if self.by_title[title(n)] == 0]

    @property
    def duplicated(self) -> list[int]:
        return [n for n in range(self.wanted) if self.by_title[title(n)] > 1]

    @property
    def stored(self) -> int:
        return sum(self.by_title.values())


def census(store: DmpStore, wanted: int) -> Census:
    """Count the patient's entries in the store by the number in their title, and by uniqueId."""
    by_title: Counter[str] = Counter()
    by_unique_id: Counter[str] = Counter()
    signatures = 0
    stray: list[str] = []
    for stored in store.entries(patient=PATIENT_KEY):
        entry = stored.entry
        if entry.format_code is not None and entry.format_code.code == SIGNATURE_FORMAT:
            signatures += 1
            continue
        match = _TITLE.fullmatch(entry.title or "")
        if match is None or int(match.group(1)) >= wanted:
            stray.append(entry.title or "")
            continue
        by_title[entry.title or ""] += 1
        by_unique_id[entry.unique_id] += 1
    return Census(
        wanted=wanted,
        by_title=by_title,
        by_unique_id=by_unique_id,
        submission_sets=len(store.submission_sets(PATIENT_KEY)),
        signatures=signatures,
        stray=tuple(stray),
    )


def outcomes(events: list[AuditEvent]) -> dict[str, list[AuditEvent]]:
    """The outcome events by document uniqueId (the first of their ``document_ids``)."""
    found: dict[str, list[AuditEvent]] = {}
    for event in events:
        if event.kind is AuditEventKind.OUTCOME:
            key = event.document_ids[0] if event.document_ids else ""
            found.setdefault(key, []).append(event)
    return found


_MESSAGE_ID = re.compile(rb"<(?:\w+:)?MessageID[^>]*>([^<]+)<")


def message_id(request: HttpRequest) -> str:
    """The request's ``wsa:MessageID`` as it went on the wire (the audit's correlation id), or ""."""
    match = _MESSAGE_ID.search(request.body)
    return match.group(1).decode() if match else ""


def service(request: HttpRequest) -> str:
    """The DMP service a request was sent to: ``repository``, ``registry`` …"""
    return request.path.rsplit("/", 1)[-1]


@dataclass
class FaultLog:
    """Which calls a :class:`FaultMix` hit, and every request the server received, by ``wsa:MessageID``."""

    hits: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, service path, message id) per fault."""
    received: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Requests per (service path, message id), faulty or not, counted in front of the mix (:meth:`recording`)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, kind: FaultKind, request: HttpRequest) -> None:
        self.hits.append((kind, service(request), message_id(request)))

    def recording(self, handler: Handler) -> Handler:
        """``handler`` with every request counted in :attr:`received` first (the server answers in many threads)."""

        def record(request: HttpRequest) -> HttpResponse:
            with self._lock:
                self.received[(service(request), message_id(request))] += 1
            return handler(request)

        return record


def sandbox_settings(server: LoopbackServer, credentials: Credentials, **overrides: object) -> Settings:
    from dmp_connector.config import Environment

    data: dict[str, object] = {"environment": Environment.sandbox(server.url), "tls": credentials.tls}
    data.update(overrides)
    return base_settings(**data)


@contextmanager
def served(
    pki_files: PkiFiles, workdir: Path, mix_options: dict[str, object]
) -> Iterator[tuple[DmpSimulator, FaultMix, FaultLog, LoopbackServer]]:
    """A fresh simulator behind a fault mix, served over loopback HTTPS with mutual TLS."""
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    log = FaultLog()
    mix = FaultMix(simulator, on_fault=log, **mix_options)  # type: ignore[arg-type]
    try:
        with simulator.serve(
            pki_files.pki, workdir=workdir, handler=log.recording(mix), server_certificate=pki_files.server
        ) as server:
            yield simulator, mix, log, server
    finally:
        simulator.store.close()


class HoldDeposit:
    """A handler that lets deposit number ``number`` (1-based) be stored, then holds its answer until released.

    The moment a batch is interrupted in the worst place: the document is in the DMP, the caller
    does not know it. Once :attr:`holding` is set the test kills or cancels the caller, then sets
    :attr:`release`; the held answer is dropped (:meth:`DmpFault.drop_after_processing`).
    """

    def __init__(self, handler: Handler, number: int) -> None:
        self.handler = handler
        self.number = number
        self.deposits = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.held: HttpRequest | None = None
        """The request whose answer is held (then dropped): its ``wsa:MessageID`` is the lost call's."""
        self._lock = threading.Lock()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.endswith("/repository"):
            with self._lock:
                self.deposits += 1
                held = self.deposits == self.number
            if held:
                entry = DmpFault.drop_after_processing().entry(self.handler)
                answer = entry if isinstance(entry, HttpResponse) else entry(request)
                self.held = request
                self.holding.set()
                self.release.wait(timeout=60)
                return answer
        return self.handler(request)
