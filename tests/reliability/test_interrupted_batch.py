"""A batch deposit interrupted mid-way, then started again: the rest is deposited, nothing twice.

The interruption comes at the worst moment: the sandbox has stored a document and holds its answer
(:class:`~tests.reliability.support.HoldDeposit`), so the caller dies not knowing. Then:

* the ``dmp deposit FOLDER`` command, run as a real process against a sandbox served by the test
  over mutual TLS, is SIGKILLed and run again;
* an async batch is cancelled and run again.

Each time the store (counted by the number each document carries) must hold every document
exactly once, the second run must report the ones already there — the one in flight included —
and the audit journal must say what each run knew, one outcome per document and run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dmp_connector.audit import AuditEvent, MemorySink, Outcome
from dmp_connector.dmp.client import AsyncDmpClient, DepositResult
from dmp_connector.sandbox import LoopbackServer
from dmp_connector.sandbox.dmp import DmpSimulator
from tests.conftest import PkiFiles
from tests.dmp.test_sandbox_integration import Credentials
from tests.dmp.test_sandbox_rules import STRUCTURE

from .support import PATIENT, Census, HoldDeposit, census, document, message_id, outcomes, sandbox_settings, unique_id

BATCH = 30
HELD = 12
"""The deposit held (1-based): documents 0 … HELD-2 are answered, HELD-1 is stored unanswered."""
WAIT = 60.0

CONFIG = """
[software]
name = "ReliabilityLPS"
version = "1.0"
editor = "Test Editor"
dmp_homologation_id = "HOMOLOG-TEST"

[environment]
name = "sandbox"
base_url = "https://127.0.0.1:1"

[organisation]
id = "123456789"
id_kind = "1"
name = "Cabinet Test"
activity_sector = {{ code = "SA07", code_system = "1.2.250.1.71.4.2.4" }}

[professional]
id = "99700000001"
id_kind = "8"
family_name = "SANDBOX"
given_name = "JEANNE"
profession = {{ code = "10", code_system = "1.2.250.1.71.1.2.7" }}
specialty = {{ code = "SM26", code_system = "1.2.250.1.71.4.2.5" }}

[tls]
cert_file = {tls_cert}
key_file = {tls_key}
ca_bundle = {ca}

[signing.credentials]
cert_file = {sign_cert}
key_file = {sign_key}

[audit]
jsonl_path = {journal}

[retry]
max_attempts = 3
initial_delay = 0.01
max_delay = 0.02
jitter = 0.0
"""


@contextmanager
def held_sandbox(pki_files: PkiFiles, workdir: Path) -> Iterator[tuple[DmpSimulator, HoldDeposit, LoopbackServer]]:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    hold = HoldDeposit(simulator, HELD)
    try:
        with simulator.serve(
            pki_files.pki, workdir=workdir, handler=hold, server_certificate=pki_files.server
        ) as server:
            yield simulator, hold, server
    finally:
        hold.release.set()
        simulator.store.close()


def journal(path: Path, start: int = 0) -> list[AuditEvent]:
    with path.open("rb") as file:
        file.seek(start)
        return [AuditEvent.model_validate_json(line) for line in file.read().splitlines() if line.strip()]


def write_config(directory: Path, pki_files: PkiFiles, credentials: Credentials) -> Path:
    signing = pki_files.pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=STRUCTURE)
    sign_cert, sign_key = signing.write_pem(directory, "org-sign")
    tls = credentials.tls
    path = directory / "dmp.toml"
    path.write_text(
        CONFIG.format(
            tls_cert=json.dumps(str(tls.cert_file)),
            tls_key=json.dumps(str(tls.key_file)),
            ca=json.dumps(str(tls.ca_bundle)),
            sign_cert=json.dumps(str(sign_cert)),
            sign_key=json.dumps(str(sign_key)),
            journal=json.dumps(str(directory / "audit.jsonl")),
        ),
        encoding="utf-8",
    )
    return path


def test_a_killed_cli_batch_started_again_deposits_the_rest_and_nothing_twice(
    pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    config_path = write_config(tmp_path, pki_files, credentials)
    folder = tmp_path / "reports"
    folder.mkdir()
    for number in range(BATCH):
        (folder / f"cr-{number:03d}.xml").write_bytes(document(number))
    audit_path = tmp_path / "audit.jsonl"

    with held_sandbox(pki_files, tmp_path) as (simulator, hold, server):
        command = [
            sys.executable,
            "-m",
            "dmp_connector",
            "--config",
            str(config_path),
            "--json",
            "dmp",
            "deposit",
            str(folder),
            "--patient-ins",
            PATIENT.ins.matricule,  # type: ignore[union-attr]
            "--server",
            server.url,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_CONNECTOR_")}
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.monotonic() + WAIT
            while not hold.holding.wait(0.05):
                assert first.poll() is None, first.communicate()
                assert time.monotonic() < deadline, "the batch never reached the held deposit"
            interrupted = census(simulator.store, BATCH)
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=WAIT)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
            hold.release.set()
        assert first.returncode == -signal.SIGKILL

        # Some but not all are in: the ones answered, and the one whose answer never came.
        assert interrupted.stored == HELD and interrupted.missing == list(range(HELD, BATCH))
        assert interrupted.duplicated == []
        before = journal(audit_path)
        said = outcomes(before)
        assert set(said) == {unique_id(n) for n in range(HELD - 1)}  # the killed call had no last word
        assert {e.outcome for events in said.values() for e in events} == {Outcome.SUCCESS}

        offset = audit_path.stat().st_size
        second = subprocess.run(command, capture_output=True, env=env, timeout=WAIT, check=False)
        assert second.returncode == 0, second.stderr.decode(errors="replace")
        final = census(simulator.store, BATCH)

    report = json.loads(second.stdout)
    there = sorted(Path(d["file"]).name for d in report["already_deposited"])
    new = sorted(Path(d["file"]).name for d in report["deposited"])
    assert report["failed"] == [] and report["total"] == BATCH
    assert there == [f"cr-{n:03d}.xml" for n in range(HELD)]  # the one in flight included
    assert new == [f"cr-{n:03d}.xml" for n in range(HELD, BATCH)]
    assert final.missing == [] and final.duplicated == [] and final.stray == () and final.stored == BATCH
    assert set(final.by_unique_id.values()) == {1} and final.submission_sets == BATCH

    again = outcomes(journal(audit_path, offset))
    assert set(again) == {unique_id(n) for n in range(BATCH)}
    assert all(len(events) == 1 for events in again.values())
    kinds = {doc: events[0].outcome for doc, events in again.items()}
    assert [n for n in range(BATCH) if kinds[unique_id(n)] is Outcome.ALREADY_DONE] == list(range(HELD))


def test_a_cancelled_async_batch_started_again_deposits_the_rest_and_nothing_twice(
    pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    sink = MemorySink()
    with held_sandbox(pki_files, tmp_path) as (simulator, hold, server):
        config = sandbox_settings(server, credentials)
        documents = [document(n) for n in range(BATCH)]

        async def batch(client: AsyncDmpClient) -> list[DepositResult]:
            return [await client.deposit(data, patient=PATIENT) for data in documents]

        async def scenario() -> tuple[list[DepositResult], int]:
            async with AsyncDmpClient(config, signer=credentials.signer, audit=[sink]) as client:
                task = asyncio.create_task(batch(client))
                deadline = time.monotonic() + WAIT
                while not hold.holding.is_set():
                    assert not task.done() and time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                interrupted.append(census(simulator.store, BATCH))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                hold.release.set()
                cut = len(sink.events)
                return await batch(client), cut

        interrupted: list[Census] = []
        results, cut = asyncio.run(scenario())
        final = census(simulator.store, BATCH)

    assert interrupted[0].stored == HELD and interrupted[0].missing == list(range(HELD, BATCH))

    assert [r.document_unique_id for r in results] == [unique_id(n) for n in range(BATCH)]
    assert [r.already_deposited for r in results] == [True] * HELD + [False] * (BATCH - HELD)
    assert final.missing == [] and final.duplicated == [] and final.stray == () and final.stored == BATCH
    assert set(final.by_unique_id.values()) == {1} and final.submission_sets == BATCH

    first = outcomes(sink.events[:cut])
    assert set(first) == {unique_id(n) for n in range(HELD)}
    cancelled = first[unique_id(HELD - 1)]
    assert [(e.outcome, e.error_type) for e in cancelled] == [(Outcome.FAILURE, "CancelledError")]
    # (its ``attempt`` reads 0, not 1: see test_an_interrupted_deposit_counts_the_attempt_it_sent)
    assert hold.held is not None and cancelled[0].correlation_id == message_id(hold.held)  # the call on the wire
    assert all(events[0].outcome is Outcome.SUCCESS for doc, events in first.items() if doc != unique_id(HELD - 1))
    second = outcomes(sink.events[cut:])
    assert set(second) == {unique_id(n) for n in range(BATCH)} and all(len(e) == 1 for e in second.values())
    assert sum(events[0].outcome is Outcome.ALREADY_DONE for events in second.values()) == HELD
