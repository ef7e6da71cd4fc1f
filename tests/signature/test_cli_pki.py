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


def test_the_pki_is_issued_for_the_configured_practice(runner: CliRunner, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    config = tmp_path / "dmp.toml"
    config.write_text(
        '[software]\nname = "MonLogiciel"\nversion = "1"\neditor = "Editeur"\n\n'
        '[organisation]\nid = "12345678901234"\nid_kind = "3"\nname = "CABINET DU PARC"\n\n'
        '[professional]\nid = "10101234567"\nfamily_name = "MARTIN"\ngiven_name = "CLAIRE"\n'
        'profession = { code = "10", code_system = "1.2.250.1.71.1.2.7" }\n',
        encoding="utf-8",
    )
    result = runner.invoke(main, ["--config", str(config), "--json", "sandbox", "pki", str(tmp_path / "pki")])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert (data["structure_id"], data["professional_id"]) == ("312345678901234", "810101234567")
    auth = x509.load_pem_x509_certificate((tmp_path / "pki" / "org-auth.crt").read_bytes())
    assert auth.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "312345678901234"
    assert auth.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "CABINET DU PARC"
    card = x509.load_pem_x509_certificate((tmp_path / "pki" / "professional.crt").read_bytes())
    assert card.subject.get_attributes_for_oid(NameOID.SURNAME)[0].value == "MARTIN"
