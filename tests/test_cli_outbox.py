"""``dmp-connector outbox …`` on a SQLite queue, deposited into the in-process DMP simulator kept under ``--data``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_ERROR, EXIT_OK, main
from dmp_connector.outbox import ItemState, Outbox
from tests.test_cli_dmp import CONFIG, MATRICULE, write_documents


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    monkeypatch.delenv("DMP_CONNECTOR_OUTBOX_URL", raising=False)
    return CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "dmp.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_enqueue_run_status_show_retry_cancel(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    write_documents(config, tmp_path / "reports", 6)
    db = ["--db", f"sqlite:///{tmp_path / 'queue.db'}"]
    base = ["--config", str(config)]
    queued = runner.invoke(
        main, [*base, "--json", "outbox", "enqueue", str(tmp_path / "reports"), "--patient-ins", MATRICULE, *db]
    )
    assert queued.exit_code == EXIT_OK, queued.output + queued.stderr
    ids = [entry["id"] for entry in json.loads(queued.stdout)["queued"]]
    assert len(ids) == 6

    waiting = runner.invoke(main, [*base, "--json", "outbox", "status", *db])
    assert json.loads(waiting.stdout)["counts"]["waiting"] == 6

    # One item cancelled before any worker runs: it is never deposited.
    cancelled = runner.invoke(main, [*base, "outbox", "cancel", ids[5], *db])
    assert cancelled.exit_code == EXIT_OK and "cancelled" in cancelled.stdout

    data = ["--data", str(tmp_path / "sandbox")]
    ran = runner.invoke(main, [*base, "outbox", "run", "--workers", "2", "--until-idle", *db, *data])
    assert ran.exit_code == EXIT_OK, ran.output + ran.stderr
    assert "5 attempt(s)" in ran.stdout and "deposited 5" in ran.stdout

    shown = runner.invoke(main, [*base, "--json", "outbox", "show", ids[0], *db])
    item = json.loads(shown.stdout)
    assert item["state"] == "deposited" and item["history"][0]["outcome"] == "deposited"
    assert MATRICULE not in shown.stdout and item["patient"].startswith("hmac-sha256:")

    refused = runner.invoke(main, [*base, "outbox", "retry", ids[0], *db])
    assert refused.exit_code != EXIT_OK and "only a failed or waiting item" in refused.output
    missing = runner.invoke(main, [*base, "outbox", "cancel", "nope", *db])
    assert missing.exit_code != EXIT_OK and "no item nope" in missing.output

    status = runner.invoke(main, [*base, "outbox", "status", *db])
    assert "deposited 5" in status.stdout and "cancelled 1" in status.stdout


def test_a_failed_item_is_reported_and_retried_by_hand(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    write_documents(config, tmp_path / "reports", 1)
    db = ["--db", f"sqlite:///{tmp_path / 'queue.db'}"]
    base = ["--config", str(config)]
    # ADRDEUX LAURENT has no DMP (and the documents name another patient): the item fails for good.
    queued = runner.invoke(
        main, [*base, "--json", "outbox", "enqueue", str(tmp_path / "reports"), "--patient-ins", "181016322075140", *db]
    )
    assert queued.exit_code == EXIT_OK, queued.output + queued.stderr
    item_id = json.loads(queued.stdout)["queued"][0]["id"]
    ran = runner.invoke(main, [*base, "outbox", "run", "--until-idle", *db, "--data", str(tmp_path / "sandbox")])
    assert ran.exit_code == EXIT_ERROR
    status = runner.invoke(main, [*base, "--json", "outbox", "status", *db])
    found = json.loads(status.stdout)
    assert found["counts"]["failed"] == 1 and found["last_errors"][0]["id"] == item_id
    retried = runner.invoke(main, [*base, "--json", "outbox", "retry", item_id, *db])
    assert json.loads(retried.stdout)["state"] == "waiting"


def test_run_stops_on_sigterm_and_leaves_no_lease(config: Path, tmp_path: Path) -> None:
    write_documents(config, tmp_path / "reports", 3)
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_CONNECTOR_")}
    cli = [sys.executable, "-m", "dmp_connector", "--config", str(config), "outbox"]
    subprocess.run(
        [*cli, "enqueue", str(tmp_path / "reports"), "--patient-ins", MATRICULE, "--db", url],
        check=True,
        env=env,
        capture_output=True,
    )
    process = subprocess.Popen(
        [*cli, "run", "--db", url, "--data", str(tmp_path / "sandbox")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with Outbox(url) as queue:
        end = time.monotonic() + 60
        while queue.status().pending and time.monotonic() < end:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        assert process.returncode == EXIT_OK, err
        assert "SIGTERM: stopping" in err
        found = queue.status()
        assert found.counts[ItemState.DEPOSITED] == 3 and found.counts[ItemState.IN_FLIGHT] == 0
