"""``dmp-connector mss send`` / ``mss inbox``: in-process sandbox operator, a served one, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cda import parse as parse_cda
from dmp_connector.cli import EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, main
from dmp_connector.sandbox.mssante import SandboxMailOperator

from .conftest import APP_MAILBOX, PRO_MAILBOX

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
N1_PATH = EXAMPLES / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"
PATIENT = parse_cda(N1_PATH.read_bytes()).patient.identity

CONFIG = """
[software]
name = "CliLPS"
version = "1.2"
editor = "Editeur"

[organisation]
id = "123456789"
id_kind = "1"
name = "Cabinet"
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    return CliRunner()


def config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "dmp.toml"
    path.write_text(CONFIG + extra, encoding="utf-8")
    return str(path)


def test_send_then_inbox_through_the_in_process_sandbox(runner: CliRunner, tmp_path: Path) -> None:
    cfg, box = config(tmp_path), str(tmp_path / "boxes")
    sent = runner.invoke(
        main,
        ["--config", cfg, "--json", "mss", "send", "--to", PRO_MAILBOX, "--cda", str(N1_PATH), "--sandbox-dir", box],
    )
    assert sent.exit_code == EXIT_OK, sent.output
    data = json.loads(sent.output)
    assert data["accepted"] == [PRO_MAILBOX] and data["refused"] == []

    listed = runner.invoke(
        main, ["--config", cfg, "mss", "inbox", "--json", "--mailbox", PRO_MAILBOX, "--sandbox-dir", box]
    )
    assert listed.exit_code == EXIT_OK, listed.output
    [message] = json.loads(listed.output)["messages"]
    assert message["message_id"] == data["message_id"]
    assert message["subject"].startswith("XDM/1.0/DDM+CR d’imagerie médicale ")
    assert message["from"].endswith("lps@sandbox.mssante.fr") and not message["seen"]

    human = runner.invoke(main, ["--config", cfg, "mss", "inbox", "--mailbox", PRO_MAILBOX, "--sandbox-dir", box])
    assert human.exit_code == EXIT_OK, human.output
    assert "1 message(s) in INBOX (unread)" in human.output
    assert "XDM/1.0/DDM+" not in human.output and "CR d’imagerie médicale" in human.output
    own = runner.invoke(main, ["--config", cfg, "mss", "inbox", "--sandbox-dir", box])
    assert own.exit_code == EXIT_OK and "0 message(s)" in own.output


def test_send_to_a_patient_from_their_qualified_traits(runner: CliRunner, tmp_path: Path) -> None:
    traits = PATIENT.traits
    assert PATIENT.ins is not None
    result = runner.invoke(
        main,
        [
            "--config", config(tmp_path), "mss", "send", "--to-patient",
            "--patient-ins", PATIENT.ins.matricule, "--patient-oid", "test",
            "--birth-name", traits.birth_name, "--first-names", traits.first_names_text,
            "--sex", traits.sex.value, "--birth-date", traits.birth_date.iso(),
            "--cda", str(N1_PATH), "--end-conversation", "--delivery-receipt",
            "--sandbox-dir", str(tmp_path / "boxes"),
        ],
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert "sent <" in result.output and "@patient.mssante.fr" in result.output
    assert PATIENT.ins.matricule not in result.output


def test_rule_breaking_messages_exit_4_and_usage_errors_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    cfg, box = config(tmp_path), str(tmp_path / "boxes")
    outside = runner.invoke(main, ["--config", cfg, "mss", "send", "--to", "x@gmail.com", "--sandbox-dir", box])
    assert outside.exit_code == EXIT_VALIDATION
    assert "trust space" in outside.output
    no_traits = runner.invoke(main, ["--config", cfg, "mss", "send", "--patient-ins", "279035121518989"])
    assert no_traits.exit_code == EXIT_USAGE
    nobody = runner.invoke(main, ["--config", cfg, "mss", "send", "--body", "x"])
    assert nobody.exit_code == EXIT_USAGE
    prod = runner.invoke(main, ["--config", cfg, "--env", "prod", "mss", "inbox", "--smtp", "h:1"])
    assert prod.exit_code == EXIT_USAGE


def test_send_through_a_served_operator_with_the_client_certificate(
    runner: CliRunner, tmp_path: Path, certificate_toml: str, mail_operator: SandboxMailOperator
) -> None:
    servers = ["--smtp", f"127.0.0.1:{mail_operator.smtp_port}", "--imap", f"127.0.0.1:{mail_operator.imap_port}"]
    cfg = config(tmp_path, certificate_toml)
    result = runner.invoke(main, ["--config", cfg, "mss", "send", "--to", PRO_MAILBOX, "--body", "Bonjour", *servers])
    assert result.exit_code == EXIT_OK, result.output
    [stored] = mail_operator.stored(PRO_MAILBOX)
    assert b"Bonjour" in stored.content and b"X-MSS-NIL: SANDBOX" in stored.content
    listed = runner.invoke(main, ["--config", cfg, "--json", "mss", "inbox", "--all", *servers])
    assert listed.exit_code == EXIT_OK, listed.output
    assert json.loads(listed.output)["messages"] == []


HOSTILE_SUBJECT = (
    f"From: Patient <279035121518989@patient.mssante.fr>\r\nTo: {APP_MAILBOX}\r\n"
    "Message-ID: <h1@patient.mssante.fr>\r\n"
    "Subject: =?utf-8?q?Bonjour=1B[2J=0D=0A*_____99__2026-01-01_00:00__forged=C2=9B31m=E2=80=AEtxt.exe?=\r\n"
    "\r\nbody\r\n"
).encode()
"""A patient's mail whose subject clears the screen, forges a listing line and turns text around."""
CRLF_FROM = (
    f"From: =?utf-8?q?Dr=0D=0AEvil?= <evil@hopital.mssante.fr>\r\nTo: {APP_MAILBOX}\r\nSubject: x\r\n\r\nbody\r\n"
).encode()
"""A From display name with an encoded CRLF, which the email package refuses."""


def assert_inbox_escaped_and_masked(runner: CliRunner, cfg: str, servers: list[str]) -> None:
    """``mss inbox`` of a mailbox holding HOSTILE_SUBJECT then CRLF_FROM, as text and as JSON."""
    human = runner.invoke(main, ["--config", cfg, "mss", "inbox", *servers])
    assert human.exit_code == EXIT_OK, human.output
    lines = human.stdout.splitlines()
    assert len(lines) == 3  # the count and one line per message: nothing forged
    assert human.stderr.startswith("MSSanté: sandbox environment at SMTP 127.0.0.1:")  # which servers it talks to
    assert "\x1b" not in human.output and "\x9b" not in human.output and "\u202e" not in human.output
    assert "\\x1b[2J\\x0d\\x0a" in lines[1] and "\\x9b" in lines[1] and "\\u202e" in lines[1]
    assert "***@patient.mssante.fr" in lines[1] and "279035121518989" not in human.output
    assert "evil@hopital.mssante.fr" in lines[2] and "[unreadable: header]" in lines[2]

    listed = runner.invoke(main, ["--config", cfg, "--json", "mss", "inbox", *servers])
    assert listed.exit_code == EXIT_OK, listed.output
    assert "279035121518989" not in listed.output  # masked as in the text output
    assert "\x9b" not in listed.output and "\u202e" not in listed.output and "\x1b" not in listed.output
    first, second = json.loads(listed.output)["messages"]
    assert first["from"] == "***@patient.mssante.fr" and first["subject"].startswith("Bonjour\x1b[2J\r\n")
    assert second["from"] == "evil@hopital.mssante.fr" and second["error"] == {
        "type": "UnreadableMessageError",
        "reason": "header",
    }


def test_inbox_escapes_control_characters_and_json_masks_what_text_masks(
    runner: CliRunner, tmp_path: Path, certificate_toml: str, mail_operator: SandboxMailOperator
) -> None:
    mail_operator.deliver(APP_MAILBOX, HOSTILE_SUBJECT)
    mail_operator.deliver(APP_MAILBOX, CRLF_FROM)
    servers = ["--smtp", f"127.0.0.1:{mail_operator.smtp_port}", "--imap", f"127.0.0.1:{mail_operator.imap_port}"]
    assert_inbox_escaped_and_masked(runner, config(tmp_path, certificate_toml), servers)
