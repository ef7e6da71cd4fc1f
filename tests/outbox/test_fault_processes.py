"""Worker processes on PostgreSQL against a faulty sandbox, two of them SIGKILLed: nothing lost, nothing twice.

The sandbox (in this process, served over loopback mutual TLS) drops 10% of the answers after
storing the deposit and answers 5% with a 503. Four worker processes share one PostgreSQL queue;
one is killed with SIGKILL while it holds an item, a fresh one takes its place, and again later.
The census reads the simulator's store by the number each document carries in its title: every
document stored exactly once, every item final (``deposited``), no lease left behind. The items
held by the killed workers come back through their expired leases (``lease_expired`` in their history).

300 items by default (CI time); ``DMPC_OUTBOX_FAULT_ITEMS=2000`` runs the issue's full size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmp_connector.outbox import ItemState, Outbox
from tests.conftest import PkiFiles
from tests.dmp.test_sandbox_integration import Credentials
from tests.dmp.test_sandbox_rules import settings as base_settings
from tests.outbox.postgres import PostgresCluster
from tests.reliability.support import PATIENT, census, document, served

ITEMS = int(os.environ.get("DMPC_OUTBOX_FAULT_ITEMS", "300"))
WORKERS = 4
LEASE = 6.0
MIX = {"drop_after_processing": 0.10, "unavailable": 0.05, "latency": (0.0, 0.004), "seed": 20261207}
ROOT = Path(__file__).resolve().parents[2]
KEY = "fault-test-pseudonym-key-0123456789"


def _start(config: Path, name: str) -> subprocess.Popen[str]:
    """Start worker ``name``, its stderr in a file beside the configuration (read when the test fails)."""
    with (config.parent / f"{name}.stderr").open("w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.outbox.worker_process", str(config), name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def _ready(config: Path, name: str, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line == "ready", f"worker {name} did not start: {(config.parent / f'{name}.stderr').read_text()[-2000:]}"


def _kill_while_holding(outbox: Outbox, process: subprocess.Popen[str], name: str, deadline: float) -> bool:
    """SIGKILL ``process`` at a moment it holds an item (its name on an in-flight row); True if it did.

    The worker is stopped (SIGSTOP) before the look, and a statement it had already sent is given time
    to finish on the server: what the look sees is then what the kill leaves. Looking at a running
    worker raced with it (its outcome recorded between the look and the kill, no lease left to expire).
    """
    while time.monotonic() < deadline:
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        if any(item.worker == name for item in outbox.items(ItemState.IN_FLIGHT, limit=50)):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        process.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return False


def _wait_for(outbox: Outbox, deposited: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if outbox.status(errors=0).counts[ItemState.DEPOSITED] >= deposited:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {deposited} items deposited in time: {outbox.status()}")


def test_worker_processes_killed_mid_run_store_every_document_exactly_once(
    postgres: PostgresCluster, pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    url = postgres.database()
    sign = pki_files.pki.issue_organisation_sign(organisation="Cabinet Test", structure_id="1123456789")
    sign_cert, sign_key = sign.write_pem(tmp_path, "org-sign")
    settings = base_settings(audit={"pseudonym_key": KEY})
    end = time.monotonic() + 60 + ITEMS * 0.3
    with (
        served(pki_files, tmp_path, MIX) as (simulator, mix, _log, server),
        Outbox(url, settings=settings, lease=LEASE) as outbox,
    ):
        for number in range(ITEMS):
            outbox.enqueue(document(number), PATIENT)
        config = tmp_path / "worker.json"
        config.write_text(
            json.dumps(
                {
                    "server": server.url,
                    "cert": str(credentials.tls.cert_file),
                    "key": str(credentials.tls.key_file),
                    "ca": str(credentials.tls.ca_bundle),
                    "sign_cert": str(sign_cert),
                    "sign_key": str(sign_key),
                    "database": url,
                    "lease": LEASE,
                    "schedule": [0.05] * 12,
                    "pseudonym_key": KEY,
                }
            )
        )
        names = [f"w{i}" for i in range(WORKERS)]
        processes = {name: _start(config, name) for name in names}
        for name, process in processes.items():
            _ready(config, name, process)
        killed: list[bool] = []
        try:
            # Kill early enough that the run is far from done: a replacement takes seconds to start.
            for round_, victim in enumerate(["w0", "w1"], start=1):
                _wait_for(outbox, ITEMS * round_ // 5, end)
                killed.append(_kill_while_holding(outbox, processes[victim], victim, end))
                processes[f"{victim}-bis"] = _start(config, f"{victim}-bis")
            assert outbox.wait_idle(timeout=max(1.0, end - time.monotonic()), poll=0.2), outbox.status()
        finally:
            for name, process in processes.items():
                if name.endswith("-bis") and process.poll() is None and process.stdout is not None:
                    # A replacement sets its SIGTERM handler before it says ready: one still starting
                    # when the run ends (a fast run, a loaded machine) would die of the signal.
                    process.stdout.readline()
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            codes = {name: process.wait(timeout=30) for name, process in processes.items()}
            for process in processes.values():
                if process.stdout is not None:
                    process.stdout.close()

        status = outbox.status()
        items = outbox.items(limit=ITEMS + 10)
        found = census(simulator.store, ITEMS)
        counts = mix.counts
        histories = [outbox.get(item.id).history for item in items if item.attempts > 1]

    # The killed workers died by SIGKILL; the others stopped cleanly on SIGTERM.
    assert codes["w0"] == -signal.SIGKILL and codes["w1"] == -signal.SIGKILL
    assert all(code == 0 for name, code in codes.items() if name not in ("w0", "w1")), codes
    # Faults happened, as many as asked (roughly), and a killed worker held an item each time.
    assert counts.drop_after_processing > ITEMS * 0.05 and counts.unavailable > ITEMS * 0.02, counts
    assert killed == [True, True]
    # Every document stored exactly once, by the store's own count.
    assert found.missing == [] and found.duplicated == [] and found.stray == ()
    assert all(count == 1 for count in found.by_unique_id.values()) and len(found.by_unique_id) == ITEMS
    # Every item final, deposited; none in flight, no lease left.
    assert status.counts[ItemState.DEPOSITED] == ITEMS and status.pending == 0 and status.expired_leases == 0
    assert all(item.state is ItemState.DEPOSITED and item.lease_until is None for item in items)
    # The lost answers came back as replays; the killed workers' items through their expired leases.
    assert sum(1 for item in items if item.already_deposited) > 0
    outcomes = [attempt.outcome for history in histories for attempt in history]
    assert outcomes.count("lease_expired") >= 2, outcomes.count("lease_expired")
    assert outcomes.count("transient") >= counts.unavailable


@pytest.fixture(scope="module")
def credentials(pki_files: PkiFiles, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    from tests.dmp.test_sandbox_integration import organisation_credentials

    return organisation_credentials(pki_files.pki, tmp_path_factory)
