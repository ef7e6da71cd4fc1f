"""The deposit queue through its public API, on SQLite and on PostgreSQL, against the in-process sandbox.

What is checked is the simulator's store (documents stored, once) and the queue's own rows as a
monitoring tool reads them; the patient never appears in clear in the queue's history.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from dmp_connector.config import Settings
from dmp_connector.dmp import AsyncDmpClient, DmpClient
from dmp_connector.errors import ConfigurationError, HttpStatusError, IdentityNotQualifiedError, RequestTimeout
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.outbox import (
    SCHEMA_VERSION,
    AsyncWorker,
    CountingMetrics,
    FailureReason,
    ItemState,
    Outbox,
    RetrySchedule,
    Worker,
    classify,
    store,
)
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import (
    HttpRequest,
    HttpResponse,
    ScriptedHandler,
    as_async_transport,
    as_transport,
    in_process_dmp,
)
from dmp_connector.sandbox.dmp import DmpFault, DmpSimulator
from tests.conftest import PkiFiles
from tests.dmp.client_support import cda_document
from tests.dmp.test_sandbox_integration import ADRUN, NO_DMP, identity
from tests.dmp.test_sandbox_rules import CLOSED, organisation_signer
from tests.dmp.test_sandbox_rules import settings as base_settings
from tests.outbox.postgres import PostgresCluster
from tests.reliability.support import census, document

KEY = "k" * 32
ONE_TRY = RetryPolicy(max_attempts=1)
QUICK = RetrySchedule.of_seconds([0, 0, 0])


def config() -> Settings:
    return base_settings(retry=ONE_TRY, audit={"pseudonym_key": KEY})


@contextmanager
def sandbox(pki_files: PkiFiles) -> Iterator[tuple[DmpSimulator, DmpClient]]:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    try:
        with in_process_dmp(config(), simulator, signer=organisation_signer(pki_files.pki)) as client:
            yield simulator, client
    finally:
        simulator.store.close()


def test_enqueue_returns_at_once_and_a_worker_deposits_each_document_once(
    database_url: str, pki_files: PkiFiles
) -> None:
    metrics = CountingMetrics()
    with (
        Outbox(database_url, settings=config(), schedule=QUICK, metrics=metrics) as outbox,
        sandbox(pki_files) as (
            simulator,
            client,
        ),
    ):
        ids = [outbox.enqueue(document(n), ADRUN) for n in range(5)]
        assert len(set(ids)) == 5
        assert outbox.status().counts[ItemState.WAITING] == 5
        assert census(simulator.store, 5).stored == 0  # nothing sent at enqueue
        worker = Worker(outbox, client, name="w1")
        assert worker.run(until_idle=True) == 5
        found = census(simulator.store, 5)
        assert found.missing == [] and found.duplicated == []
        status = outbox.status()
        assert status.counts[ItemState.DEPOSITED] == 5 and status.pending == 0 and status.oldest_waiting is None
        item = outbox.get(ids[0])
        assert item.state is ItemState.DEPOSITED and item.already_deposited is False
        assert item.document_unique_id and [a.outcome for a in item.history] == ["deposited"]
        assert item.history[0].worker == "w1" and (item.history[0].seconds or 0) > 0
        assert metrics.counts["enqueued"] == 5 and metrics.counts["attempted:deposited"] == 5


def test_the_patient_is_only_pseudonymised_in_the_queue_and_purged_once_deposited(
    database_url: str, pki_files: PkiFiles
) -> None:
    with Outbox(database_url, settings=config(), schedule=QUICK) as outbox, sandbox(pki_files) as (_, client):
        item_id = outbox.enqueue(document(0), ADRUN)
        item = outbox.get(item_id)
        assert ADRUN.ins is not None
        # The audit trail's pseudonym (same key), never the matricule.
        from dmp_connector.audit import Pseudonymizer

        assert item.patient == Pseudonymizer(KEY.encode()).patient(ADRUN.ins.matricule)
        assert ADRUN.ins.matricule not in repr(item)
        Worker(outbox, client).run(until_idle=True)
        engine = create_engine(database_url)
        with engine.connect() as connection:
            row = connection.execute(text("SELECT document, patient FROM dmp_outbox_items")).one()
            history = connection.execute(text("SELECT * FROM dmp_outbox_attempts")).all()
        engine.dispose()
        assert row.document is None and row.patient is None  # purged once deposited
        assert ADRUN.ins.matricule not in repr(history) and ADRUN.traits.birth_name not in repr(history)


def test_an_answer_lost_after_storing_is_retried_and_found_already_deposited(
    database_url: str, pki_files: PkiFiles
) -> None:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    script = ScriptedHandler(simulator).then(DmpFault.drop_after_processing().entry(simulator))
    settings = config()
    http = httpx.Client(transport=as_transport(script))
    with (
        Outbox(database_url, settings=settings, schedule=QUICK) as outbox,
        DmpClient(settings, signer=organisation_signer(pki_files.pki), http_client=http) as client,
    ):
        item_id = outbox.enqueue(document(1), ADRUN)
        Worker(outbox, client).run(until_idle=True)
        item = outbox.get(item_id)
        assert item.state is ItemState.DEPOSITED and item.already_deposited is True
        assert [a.outcome for a in item.history] == ["transient", "already_deposited"]
        assert item.attempts == 2
        assert census(simulator.store, 2).by_title["Rapport fiabilité n° 0001"] == 1
    http.close()
    simulator.store.close()


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        (NO_DMP, FailureReason.NO_DMP),
        (identity(CLOSED), FailureReason.DMP_CLOSED),
    ],
)
def test_what_retrying_cannot_fix_ends_failed_with_its_reason_and_can_be_retried_or_cancelled(
    database_url: str, pki_files: PkiFiles, who: Identity, reason: FailureReason
) -> None:
    with Outbox(database_url, settings=config(), schedule=QUICK) as outbox, sandbox(pki_files) as (simulator, client):
        item_id = outbox.enqueue(cda_document("refusé", patient=who), who)
        Worker(outbox, client).run(until_idle=True)
        item = outbox.get(item_id)
        assert item.state is ItemState.FAILED and item.reason is reason and item.attempts == 1
        assert item.detail and who.traits.birth_name not in item.detail
        status = outbox.status()
        assert status.last_errors[0][0] == item_id and status.last_errors[0][1].outcome == "failed"
        again = outbox.retry(item_id)
        assert again.state is ItemState.WAITING and again.attempts == 0
        assert outbox.cancel(item_id).state is ItemState.CANCELLED
        assert [a.outcome for a in outbox.get(item_id).history] == ["failed", "retried", "cancelled"]
        with pytest.raises(ValueError, match="cancelled"):
            outbox.retry(item_id)
        assert simulator.store.entry_count() == 0


def test_an_identity_not_qualified_is_refused_at_enqueue(database_url: str) -> None:
    # Queued, it could only fail: a retry reuses the stored identity, and the same key would
    # return that failed item. So nothing is queued and the caller hears it at once.
    provisional = Identity(traits=ADRUN.traits, status=IdentityStatus.PROV)
    recup = Identity(traits=ADRUN.traits, ins=ADRUN.ins, status=IdentityStatus.RECUP)
    with Outbox(database_url, settings=config(), schedule=QUICK) as outbox:
        for unqualified in (provisional, recup):
            with pytest.raises(IdentityNotQualifiedError):
                outbox.enqueue(document(2), unqualified, key=KEY)
        assert outbox.status().pending == 0 and not any(outbox.status().counts.values())
        assert outbox.get(outbox.enqueue(document(2), ADRUN, key=KEY)).state is ItemState.WAITING


def test_a_document_about_another_patient_fails_as_a_patient_mismatch(database_url: str, pki_files: PkiFiles) -> None:
    with Outbox(database_url, settings=config(), schedule=QUICK) as outbox, sandbox(pki_files) as (simulator, client):
        item_id = outbox.enqueue(document(2), NO_DMP)  # the document names ADRUN
        Worker(outbox, client).run(until_idle=True)
        item = outbox.get(item_id)
        assert item.state is ItemState.FAILED and item.reason is FailureReason.PATIENT_MISMATCH
        assert item.history[-1].code == "PatientMismatchError"
        assert simulator.store.entry_count() == 0


def test_transient_failures_follow_the_schedule_then_end_exhausted(database_url: str, pki_files: PkiFiles) -> None:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    script = ScriptedHandler(simulator)
    for _ in range(10):
        script.then(DmpFault.unavailable().entry(simulator))
    settings = config()
    http = httpx.Client(transport=as_transport(script))
    schedule = RetrySchedule.of_seconds([0.0, 0.3])
    with (
        Outbox(database_url, settings=settings, schedule=schedule) as outbox,
        DmpClient(settings, signer=organisation_signer(pki_files.pki), http_client=http) as client,
    ):
        item_id = outbox.enqueue(document(3), ADRUN)
        worker = Worker(outbox, client, idle_wait=0.05)
        assert worker.run_once() and worker.run_once()  # first retry is due at once
        item = outbox.get(item_id)
        assert item.state is ItemState.WAITING and item.attempts == 2
        assert item.history[-1].code == "503" and item.history[-1].next_due is not None
        assert not worker.run_once()  # the second wait (0.3 s) is not over
        time.sleep(0.35)
        assert worker.run_once()
        item = outbox.get(item_id)
        assert item.state is ItemState.FAILED and item.reason is FailureReason.EXHAUSTED
        assert [a.outcome for a in item.history] == ["transient", "transient", "transient"]
    http.close()
    simulator.store.close()


def test_the_same_key_enqueued_twice_is_one_item(database_url: str) -> None:
    with Outbox(database_url, settings=config()) as outbox:
        first = outbox.enqueue(document(4), ADRUN, key="lps-doc-42")
        assert outbox.enqueue(document(4), ADRUN, key="lps-doc-42") == first
        assert outbox.status().counts[ItemState.WAITING] == 1


def test_a_key_reused_for_another_document_or_patient_is_refused_not_dropped(database_url: str) -> None:
    from dmp_connector.errors import ValidationError

    with Outbox(database_url, settings=config()) as outbox:
        outbox.enqueue(document(4), ADRUN, key="lps-doc-43")
        with pytest.raises(ValidationError, match="another document or patient"):
            outbox.enqueue(document(5), ADRUN, key="lps-doc-43")
        assert outbox.status().counts[ItemState.WAITING] == 1


def test_a_claim_never_shows_the_document_or_the_patient_in_its_repr(database_url: str) -> None:
    with Outbox(database_url, settings=config()) as outbox:
        outbox.enqueue(document(6), ADRUN)
        claim = outbox.claim("w")
        assert claim is not None and claim.document and claim.patient
        shown = repr(claim)
        assert "ClinicalDocument" not in shown and "patient=" not in shown and claim.token not in shown


def test_a_lease_that_expires_gives_the_item_to_another_worker_and_the_stale_one_cannot_write(
    database_url: str,
) -> None:
    with Outbox(database_url, settings=config(), lease=0.3) as outbox:
        item_id = outbox.enqueue(document(5), ADRUN)
        dead = outbox.claim("dead-worker")
        assert dead is not None and outbox.claim("other") is None  # held
        assert outbox.status().expired_leases == 0
        time.sleep(0.4)
        assert outbox.status().expired_leases == 1
        taken = outbox.claim("other")
        assert taken is not None and taken.id == item_id and taken.attempt == 2
        stale = outbox.record_success(
            dead,
            worker="dead-worker",
            seconds=1.0,
            document_unique_id="1.2.3",
            entry_uuid=None,
            already_deposited=False,
        )
        assert stale is False
        assert outbox.get(item_id).state is ItemState.IN_FLIGHT
        assert outbox.release(taken, worker="other")
        item = outbox.get(item_id)
        assert item.state is ItemState.WAITING and item.attempts == 1 and item.lease_until is None
        # The stale worker's outcome is kept in the history, marked, but changed nothing.
        assert [a.outcome for a in item.history] == ["lease_expired", "deposited", "released"]
        assert item.history[1].detail == "recorded after the lease was lost"


def test_a_failure_recorded_after_the_lease_was_lost_is_marked_and_changes_nothing(database_url: str) -> None:
    with Outbox(database_url, settings=config(), lease=0.3, schedule=QUICK) as outbox:
        item_id = outbox.enqueue(document(8), ADRUN)
        dead = outbox.claim("dead-worker")
        assert dead is not None
        time.sleep(0.4)
        taken = outbox.claim("other")
        assert taken is not None and taken.id == item_id
        state = outbox.record_failure(
            dead, classify(HttpStatusError("service unavailable", status_code=503)), worker="dead-worker", seconds=1.0
        )
        assert state is ItemState.WAITING  # what the stale worker would have done …
        item = outbox.get(item_id)
        assert item.state is ItemState.IN_FLIGHT and item.worker == "other"  # … but the item is the other's
        stale = item.history[-1]
        assert stale.outcome == "transient" and stale.worker == "dead-worker"
        assert stale.detail is not None and stale.detail.startswith("recorded after the lease was lost: ")
        assert stale.next_due is None  # no due time that never applied


class _HostClockAhead:
    """The ``time`` module as a host whose clock runs an hour ahead of the others sees it."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    @staticmethod
    def time() -> float:
        return time.time() + 3600.0


def test_on_postgresql_a_host_whose_clock_runs_ahead_cannot_take_a_live_lease(
    postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.database()
    with Outbox(url, settings=config(), lease=60) as here:
        item_id = here.enqueue(document(9), ADRUN)
        held = here.claim("here")
        assert held is not None and held.id == item_id
        monkeypatch.setattr(store, "time", _HostClockAhead)
        with Outbox(url, settings=config(), lease=60) as ahead:
            assert ahead.status().expired_leases == 0
            assert ahead.claim("ahead") is None  # the lease is live on the database's clock
        monkeypatch.undo()
        assert here.get(item_id).worker == "here"


def test_concurrent_claimers_never_take_the_same_item(database_url: str) -> None:
    with Outbox(database_url, settings=config()) as outbox:
        for n in range(40):
            outbox.enqueue(document(n), ADRUN)
        taken: list[str] = []
        lock = threading.Lock()

        def claimer(name: str) -> None:
            while (claim := outbox.claim(name)) is not None:
                with lock:
                    taken.append(claim.id)

        threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(taken) == 40 and len(set(taken)) == 40


def test_the_schema_is_created_once_and_versioned(database_url: str) -> None:
    Outbox(database_url, settings=config()).close()
    Outbox(database_url, settings=config()).close()  # a second start migrates nothing
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version FROM dmp_outbox_version")).scalar() == SCHEMA_VERSION
        assert {"dmp_outbox_items", "dmp_outbox_attempts"} <= set(inspect(connection).get_table_names())
        connection.execute(text("UPDATE dmp_outbox_version SET version = 99"))
        connection.commit()
    engine.dispose()
    with pytest.raises(RuntimeError, match="newer than this SDK"):
        Outbox(database_url, settings=config())


def test_the_sqlite_queue_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with Outbox(f"sqlite:///{path}", settings=config()) as outbox:
        outbox.enqueue(document(7), ADRUN)
    assert path.stat().st_mode & 0o077 == 0


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/wal.db"
    with Outbox(url, settings=config()) as outbox, outbox.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_the_async_worker_deposits_with_concurrency(database_url: str, pki_files: PkiFiles) -> None:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    settings = config()

    async def go(outbox: Outbox) -> int:
        http = httpx.AsyncClient(transport=as_async_transport(simulator))
        async with AsyncDmpClient(settings, signer=organisation_signer(pki_files.pki), http_client=http) as client:
            count = await AsyncWorker(outbox, client, concurrency=3).run(until_idle=True)
        await http.aclose()
        return count

    with Outbox(database_url, settings=settings, schedule=QUICK) as outbox:
        for n in range(6):
            outbox.enqueue(document(n), ADRUN)
        assert asyncio.run(go(outbox)) == 6
        assert outbox.status().counts[ItemState.DEPOSITED] == 6
    found = census(simulator.store, 6)
    assert found.missing == [] and found.duplicated == []
    simulator.store.close()


def test_errors_are_classified_transient_or_final() -> None:
    assert classify(HttpStatusError("busy", status_code=503, retry_after=7.0)).retry_after == 7.0
    assert classify(HttpStatusError("busy", status_code=503)).transient
    assert classify(HttpStatusError("no", status_code=400)).reason is FailureReason.REFUSED
    assert classify(RequestTimeout("slow")).transient
    with pytest.raises(ConfigurationError):
        classify(ConfigurationError("bad certificate"))


def test_the_schedule_is_data() -> None:
    schedule = RetrySchedule.parse("1m 5m 1h 1d", jitter=0.0)
    assert schedule.describe() == "1m 5m 1h 1d" and schedule.max_attempts == 5
    assert schedule.wait_after(1) == 60 and schedule.wait_after(4) == 86400 and schedule.wait_after(5) is None
    assert schedule.wait_after(1, retry_after=120) == 120
    with pytest.raises(ValueError, match="not a wait"):
        RetrySchedule.parse("5 minutes")
    assert RetrySchedule().describe().startswith("1m 5m 15m")


def test_stopping_a_worker_mid_deposit_lets_that_item_finish_and_leaves_the_others_waiting(
    database_url: str, pki_files: PkiFiles
) -> None:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    settings = config()
    workers: list[Worker] = []

    def stop_during_the_first_request(request: HttpRequest) -> HttpResponse:
        workers[0].stop()  # what the SIGTERM handler does, while the deposit is on the wire
        return simulator(request)

    http = httpx.Client(transport=as_transport(stop_during_the_first_request))
    with (
        Outbox(database_url, settings=settings, schedule=QUICK) as outbox,
        DmpClient(settings, signer=organisation_signer(pki_files.pki), http_client=http) as client,
    ):
        for n in range(3):
            outbox.enqueue(document(n), ADRUN)
        workers.append(Worker(outbox, client))
        assert workers[0].run() == 1
        status = outbox.status()
        assert status.counts[ItemState.DEPOSITED] == 1 and status.counts[ItemState.WAITING] == 2
        assert status.counts[ItemState.IN_FLIGHT] == 0 and status.expired_leases == 0
    assert census(simulator.store, 3).stored == 1
    http.close()
    simulator.store.close()


def test_a_failing_metrics_hook_changes_nothing(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from dmp_connector.outbox import OutboxMetrics

    class Broken(OutboxMetrics):
        def enqueued(self) -> None:
            raise RuntimeError("exporter down")

    with Outbox(database_url, settings=config(), metrics=Broken()) as outbox:
        item_id = outbox.enqueue(document(0), ADRUN)
        assert outbox.get(item_id).state is ItemState.WAITING
    assert "outbox metrics hook enqueued failed" in caplog.text
