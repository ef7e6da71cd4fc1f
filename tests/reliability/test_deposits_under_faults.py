"""1,000 deposits through a fault mix over loopback mutual TLS: each document stored once, none lost.

The sandbox drops 10% of the answers after storing the deposit, refuses 5% with a 503 before it,
and delays every answer by a few milliseconds. The async client deposits with bounded concurrency
and a retry budget of 10 attempts per call: a call fails only if all ten meet a fault
(0.15^10 ≈ 6e-9, so ≈ 6e-6 over the run), which is why there is no redrive pass — a single failure
fails the test rather than being papered over.

What is checked is the simulator's store (by a number each document carries in its title, not by
the ids the client chose), the mix's own fault counters, and the audit trail; then that they agree:
the documents reported ``already_deposited`` are exactly those whose deposit answer was dropped.

The controls below run the same census on a client that does *not* deposit idempotently, to show
that it catches duplicates and losses: a check that cannot fail proves nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from dmp_connector.audit import AuditEventKind, MemorySink, Outcome, Pseudonymizer
from dmp_connector.dmp.client import AsyncDmpClient, DepositResult, DmpClient
from dmp_connector.errors import DmpConnectorError
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import FaultMix, as_transport
from dmp_connector.sandbox.dmp import DmpSimulator
from tests.conftest import PkiFiles
from tests.dmp.test_sandbox_integration import Credentials
from tests.dmp.test_sandbox_rules import organisation_signer
from tests.dmp.test_sandbox_rules import settings as base_settings

from .support import PATIENT, FaultLog, census, document, outcomes, sandbox_settings, served, unique_id

COUNT = 1000
CONCURRENCY = 8
PATIENCE = RetryPolicy(max_attempts=10, initial_delay=0.001, max_delay=0.004, jitter=0.0)
MIX = {"drop_after_processing": 0.10, "unavailable": 0.05, "latency": (0.0, 0.004), "seed": 20261125}


def test_a_thousand_deposits_under_faults_are_each_stored_exactly_once(
    pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    sink = MemorySink()
    with served(pki_files, tmp_path, MIX) as (simulator, mix, log, server):
        config = sandbox_settings(server, credentials, retry=PATIENCE)
        documents = [document(n) for n in range(COUNT)]

        async def deposit_all() -> list[DepositResult | BaseException]:
            async with AsyncDmpClient(config, signer=credentials.signer, audit=[sink]) as client:
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one(data: bytes) -> DepositResult:
                    async with gate:
                        return await client.deposit(data, patient=PATIENT)

                return await asyncio.gather(*(one(data) for data in documents), return_exceptions=True)

        results = asyncio.run(deposit_all())
        counts = mix.counts
        stored = census(simulator.store, COUNT)

    # Every call ended well (no redrive: see the module docstring).
    failures = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    assert not failures, failures
    deposited = [r for r in results if isinstance(r, DepositResult)]
    assert [r.document_unique_id for r in deposited] == [unique_id(n) for n in range(COUNT)]

    # The store, counted by the number each document carries: all there, once; nothing else.
    assert stored.missing == [] and stored.duplicated == [] and stored.stray == ()
    assert stored.stored == COUNT and set(stored.by_unique_id) == {unique_id(n) for n in range(COUNT)}
    assert set(stored.by_unique_id.values()) == {1}
    assert stored.submission_sets == COUNT and stored.signatures == COUNT

    # The faults happened, near their rates (3 standard deviations and more).
    assert counts.requests >= COUNT
    assert 0.07 * counts.requests <= counts.drop_after_processing <= 0.13 * counts.requests, counts
    assert 0.03 * counts.requests <= counts.unavailable <= 0.07 * counts.requests, counts
    assert counts.delayed >= 0.95 * counts.requests, counts
    assert len(log.hits) == counts.drop_after_processing + counts.unavailable

    # The audit: one outcome per document, never a failure; its attempts account for every request.
    by_document = outcomes(sink.events)
    assert set(by_document) == {unique_id(n) for n in range(COUNT)}
    assert {len(events) for events in by_document.values()} == {1}
    finals = {doc: events[0] for doc, events in by_document.items()}
    assert {e.outcome for e in finals.values()} <= {Outcome.SUCCESS, Outcome.ALREADY_DONE}
    assert {e.patient for e in finals.values()} == {Pseudonymizer().patient(PATIENT.ins.matricule)}  # type: ignore[union-attr]
    attempts = [e for e in sink.events if e.kind is AuditEventKind.ATTEMPT]
    assert sum(log.received.values()) == counts.requests == len(attempts)  # every request is in the audit
    assert Counter(e.correlation_id for e in attempts) == Counter({mid: n for (_, mid), n in log.received.items()})
    # Each outcome counts the deposit requests that reached the server under its correlation id.
    assert all(e.attempt == log.received[("repository", e.correlation_id)] for e in finals.values())
    assert sum(e.outcome is Outcome.FAILURE for e in attempts) == counts.drop_after_processing + counts.unavailable

    # They agree: replayed = exactly the documents whose deposit answer was dropped after storing.
    dropped_calls = {mid for kind, _, mid in log.hits if kind == "drop_after_processing"}
    dropped_documents = {doc for doc, e in finals.items() if e.correlation_id in dropped_calls}
    replayed = {r.document_unique_id for r in deposited if r.already_deposited}
    assert replayed == dropped_documents
    assert replayed == {doc for doc, e in finals.items() if e.outcome is Outcome.ALREADY_DONE}
    assert 0 < len(replayed) <= counts.drop_after_processing
    assert {r.confirmed_by for r in deposited if r.already_deposited} <= {"registry", "lookup"}


# ----------------------------------------------------------------------------------------------- controls

CONTROL_COUNT = 120
CONTROL_MIX = {"drop_after_processing": 0.25, "unavailable": 0.15, "seed": 7}
NO_RETRY = RetryPolicy(max_attempts=1)


def _control(pki_files: PkiFiles, *, rebuild_on_failure: bool) -> tuple[DmpSimulator, FaultLog, MemorySink]:
    """A naive batch in-process: one attempt per call; on failure, optionally a *rebuilt* document (new uniqueId)."""
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    log = FaultLog()
    mix = FaultMix(simulator, on_fault=log, **CONTROL_MIX)  # type: ignore[arg-type]
    config = base_settings(retry=NO_RETRY)
    sink = MemorySink()
    with (
        httpx.Client(transport=as_transport(mix)) as http,
        DmpClient(config, signer=organisation_signer(pki_files.pki), http_client=http, audit=[sink]) as client,
    ):
        for number in range(CONTROL_COUNT):
            for generation in range(3 if rebuild_on_failure else 1):
                try:
                    client.deposit(document(number, generation=generation), patient=PATIENT)
                except DmpConnectorError:
                    continue
                break
    return simulator, log, sink


def test_control_the_census_catches_the_duplicates_of_a_non_idempotent_retry(pki_files: PkiFiles) -> None:
    """Rebuilding a document after a lost answer (a new uniqueId) stores it twice: the census sees it."""
    simulator, log, _ = _control(pki_files, rebuild_on_failure=True)
    stored = census(simulator.store, CONTROL_COUNT)
    dropped = sum(1 for kind, _, _ in log.hits if kind == "drop_after_processing")
    assert dropped > 0 and stored.duplicated  # the very check the main test passes
    assert len(stored.duplicated) <= dropped
    simulator.store.close()


def test_control_the_census_and_the_audit_catch_the_losses_of_a_batch_without_retries(pki_files: PkiFiles) -> None:
    """Without retries, a refused deposit is lost: missing from the store, a failure in the audit."""
    simulator, log, sink = _control(pki_files, rebuild_on_failure=False)
    stored = census(simulator.store, CONTROL_COUNT)
    refused = sum(1 for kind, _, _ in log.hits if kind == "unavailable")
    assert refused > 0 and len(stored.missing) == refused
    failed = [e for events in outcomes(sink.events).values() for e in events if e.outcome is Outcome.FAILURE]
    assert {e.error_type for e in failed} >= {"HttpStatusError"}
    assert len(failed) == refused + sum(1 for kind, _, _ in log.hits if kind == "drop_after_processing")
    simulator.store.close()
