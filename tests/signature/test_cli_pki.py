"""``dmp-connector sandbox pki DIR``: writes the test PKI, says what it wrote, refuses to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_CONFIG, EXIT_OK, main
from dmp_connector.config import CertificateFiles
from dmp_connector.signature import FileSigner


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    return CliRunner()


def test_human_output_lists_the_files(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "pki"
    result = runner.invoke(main, ["sandbox", "pki", str(target)])
    assert result.exit_code == EXIT_OK, result.output
    for name in ("ca.crt", "server.key", "org-auth.p12", "org-sign.crt", "professional.crt"):
        assert str(target / name) in result.output
        assert (target / name).is_file()
    assert "dmp-connector-sandbox" in result.output
    FileSigner.from_files(CertificateFiles(cert_file=target / "org-sign.crt", key_file=target / "org-sign.key"))


def test_json_output_and_refusal_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "pki"
    result = runner.invoke(main, ["sandbox", "pki", str(target), "--json", "--structure-id", "312345678901234"])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert data["structure_id"] == "312345678901234"
    assert Path(data["files"]["org_auth_cert"]) == target / "org-auth.crt"
    assert set(data["files"]) >= {"ca_cert", "server_cert", "org_sign_p12", "professional_key"}

    again = runner.invoke(main, ["--json", "sandbox", "pki", str(target)])
    assert again.exit_code == EXIT_CONFIG
    error = json.loads(again.output)["error"]
    assert error["type"] == "ConfigurationError" and "already exists" in error["message"]

    forced = runner.invoke(main, ["--json", "sandbox", "pki", str(target), "--force"])
    assert forced.exit_code == EXIT_OK, forced.output
    assert json.loads(forced.output)["directory"] == str(target)


def test_help_names_the_command(runner: CliRunner) -> None:
    result = runner.invoke(main, ["sandbox", "--help"])
    assert result.exit_code == EXIT_OK
    assert "pki" in result.output
