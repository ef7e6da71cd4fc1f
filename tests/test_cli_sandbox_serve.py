"""``dmp-connector sandbox serve`` in a subprocess: clients use the configuration it writes, Ctrl-C stops it.

INSi, the DMP and the MSSanté operator (when the ``sandbox`` extra is installed) all answer from one start.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector import Settings
from dmp_connector.cli import main
from dmp_connector.cli.sandbox_serve import _mail_operator
from dmp_connector.dmp import DmpClient
from dmp_connector.ins import Identity, IdentityStatus, IdentityTraits, InsiClient, InsiResultCode
from dmp_connector.mssante import MssanteAddress, MssanteClient, MssanteMessage
from dmp_connector.sandbox.pki import generate_test_pki

HAS_MAIL = find_spec("aiosmtpd") is not None and find_spec("pymap") is not None

MATRICULE = "275126322074974"
TRAITS = IdentityTraits.build(
    birth_name="ADRUN", birth_first_names="ZOE", sex="F", birth_date="1975-12-31", birth_place="63220"
)


def start(data: Path, cwd: Path | None = None) -> tuple[subprocess.Popen[str], Path]:
    process, config, _lines = start_with_output(data, cwd)
    return process, config


def start_with_output(data: Path, cwd: Path | None = None) -> tuple[subprocess.Popen[str], Path, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_CONNECTOR_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dmp_connector", "sandbox", "serve", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("config "):
            return process, Path(line.split(None, 1)[1].strip()), lines
    process.kill()
    raise AssertionError(
        "no config path printed: " + "".join(lines) + (process.stderr.read() if process.stderr else "")
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    return err


def test_serve_then_search_and_test_existence(tmp_path: Path) -> None:
    data = tmp_path / "sandbox"
    process, config = start(data)
    try:
        settings = Settings.load(config)
        with InsiClient(settings) as insi:
            result = insi.search(TRAITS)
        assert result.code is InsiResultCode.FOUND and result.identity is not None
        assert result.identity.active.matricule == MATRICULE
        patient = Identity(traits=TRAITS, ins=result.identity.active, status=IdentityStatus.QUAL)
        with DmpClient(settings) as client:
            status = client.test_existence(patient)
        assert status.exists
        if HAS_MAIL:
            assert settings.mssante.mailbox is not None and settings.environment.mssante_smtp is not None
            with MssanteClient(settings) as mss:  # the applicative mailbox, by the organisation's certificate
                sent = mss.send(
                    MssanteMessage(
                        to=(MssanteAddress.parse(settings.mssante.mailbox),), subject="Essai", text="Bonjour\n"
                    )
                )
                [summary] = mss.inbox()
                received = mss.fetch(summary.uid)
            assert received.message_id == sent.message_id
    finally:
        err = stop(process)
    assert "sandbox stopped" in err
    assert (data / "dmp.sqlite").is_file() and (data / "pki" / "ca.crt").is_file()

    ca = (data / "pki" / "ca.crt").read_bytes()
    again, config_again = start(data)
    try:
        assert config_again == config
        assert (data / "pki" / "ca.crt").read_bytes() == ca  # the persisted PKI is reused, not regenerated
        settings_again = Settings.load(config_again)
        with DmpClient(settings_again) as client:
            assert client.test_existence(patient).exists
        if HAS_MAIL:
            with MssanteClient(settings_again) as mss:  # the mailboxes were kept under --data too
                assert [s.message_id for s in mss.inbox(unseen_only=False)] == [sent.message_id]
    finally:
        stop(again)


def test_a_relative_data_directory_and_the_cli_on_the_configured_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--data ./sbx`` from one directory, the CLI from another: the configuration's files and servers are used."""
    process, config, lines = start_with_output(Path("./sbx"), cwd=tmp_path)
    try:
        assert config == tmp_path / "sbx" / "dmp-connector.toml"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        for key in [k for k in os.environ if k.startswith("DMP_CONNECTOR_")]:
            monkeypatch.delenv(key)
        settings = Settings.load(config)
        runner = CliRunner()
        relative = ["--config", "../sbx/dmp-connector.toml"]
        traits = ["--birth-name", "ADRUN", "--first-names", "ZOE", "--sex", "F", "--birth-date", "1975-12-31"]
        found = runner.invoke(main, [*relative, "ins", "search", *traits])
        assert found.exit_code == 0, found.output
        assert MATRICULE[:13] in found.stdout.replace(" ", "")
        assert found.stderr == f"INSi: sandbox environment at {settings.environment.insi_mtls_url}\n"
        authorised = runner.invoke(main, [*relative, "dmp", "authorise", "--patient-ins", MATRICULE])
        assert authorised.exit_code == 0, authorised.output
        assert authorised.stderr == f"DMP: sandbox environment at {settings.environment.dmp_base_url}\n"
        if HAS_MAIL:
            smtp, imap = settings.environment.mssante_smtp, settings.environment.mssante_imap
            assert smtp is not None and imap is not None
            colleague = "dr.sandbox@medecin.mssante.fr"
            send = ["mss", "send", "--to", colleague, "--subject", "Essai relatif", "--body", "Bonjour"]
            sent = runner.invoke(main, [*relative, *send])
            assert sent.exit_code == 0, sent.output
            assert f"SMTP {smtp.host}:{smtp.port}" in sent.stderr  # the served operator, not an in-process one
            token_line = next(line for line in lines if "XOAUTH2 token for" in line)
            token = elsewhere / "token"
            token.write_text(token_line.rsplit(": ", 1)[1].strip())
            imap_option = ["--imap", f"{imap.host}:{imap.port}"]
            read = runner.invoke(
                main, [*relative, "mss", "inbox", "--mailbox", colleague, *imap_option, "--token-file", str(token)]
            )
            assert read.exit_code == 0, read.output
            assert "1 message(s)" in read.stdout and "Essai relatif" in read.stdout
            own = runner.invoke(main, [*relative, "mss", "inbox"])  # the configured mailbox has no such mail
            assert own.exit_code == 0, own.output
            assert "0 message(s)" in own.stdout
    finally:
        stop(process)


def test_mail_operator_is_skipped_with_a_clear_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = generate_test_pki(tmp_path / "pki")
    operator, why = _mail_operator(dataclasses.replace(files, ca_key=None), tmp_path, 0, 0)
    assert operator is None and "no CA key" in why
    monkeypatch.setitem(sys.modules, "dmp_connector.sandbox.mssante", None)  # the sandbox extra is missing
    operator, why = _mail_operator(files, tmp_path, 0, 0)
    assert operator is None and "install the sandbox extra" in why
