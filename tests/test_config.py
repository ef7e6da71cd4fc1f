"""Configuration from code, environment variables and TOML, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmp_connector.codes import Code
from dmp_connector.config import (
    DmpService,
    Environment,
    EnvironmentName,
    Organisation,
    Professional,
    ProfessionalIdKind,
    Settings,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.errors import ConfigurationError

TOML = """
[software]
name = "MonLogiciel"
version = "2.3"
editor = "Editeur SA"
dmp_homologation_id = "DMP-123"
insi_authorisation_id = "CNDA-456"

[environment]
name = "test"
platform = "dev9"

[organisation]
id = "123456789"
id_kind = "1"
name = "Centre de santé"
activity_sector = { code = "SA07", code_system = "1.2.250.1.71.4.2.4" }

[professional]
id = "10001234567"
family_name = "MARTIN"
given_name = "Claire"
profession = { code = "10", code_system = "1.2.250.1.71.1.2.7", display_name = "Médecin" }

[retry]
max_attempts = 5
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for key in list(os.environ):
        if key.startswith("DMP_CONNECTOR_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_presets_hold_every_endpoint() -> None:
    prod = Environment.production()
    assert prod.is_production
    assert prod.dmp_url(DmpService.REGISTRY) == "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services/registry"
    test = Environment.test("dev6")
    assert test.name is EnvironmentName.TEST and not test.is_production
    assert test.dmp_url(DmpService.REPOSITORY) == "https://dev6.lps2.dmp.gouv.fr/si-dmp-server/v2/services/repository"
    assert test.insi_mtls_url == "https://qualiflps-services-ps-tlsm.ameli.fr:443/lps"
    box = Environment.sandbox("https://127.0.0.1:9999")
    assert box.insi_url.startswith("https://127.0.0.1:9999/")
    assert box.require_smtp().port == 8587


def test_operator_mail_servers_have_no_preset() -> None:
    with pytest.raises(ConfigurationError, match="SMTP"):
        Environment.production().require_smtp()
    with pytest.raises(ConfigurationError, match="IMAP"):
        Environment.test().require_imap()


def test_plain_http_is_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        Environment(name=EnvironmentName.TEST, insi_url="http://x", insi_mtls_url="https://x", dmp_base_url="https://x")


def test_national_ids_carry_their_prefix() -> None:
    org = Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="X")
    assert org.national_id == "1123456789"
    siret = Organisation(id="12345678901234", id_kind=StructureIdKind.SIRET, name="X")
    assert siret.national_id == "312345678901234"
    pro = Professional(
        id="10001234567", family_name="A", given_name="B", profession=Code(code="10", code_system="1.2.250.1.71.1.2.7")
    )
    assert pro.national_id == "810001234567"
    assert pro.id_kind is ProfessionalIdKind.RPPS


def test_wrong_id_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="FINESS id has 9 digits"):
        Organisation(id="12345", id_kind=StructureIdKind.FINESS, name="X")
    with pytest.raises(ValueError, match="RPPS number has 11 digits"):
        Professional(id="123", family_name="A", given_name="B", profession=Code(code="10", code_system="1.2.3"))


def test_load_from_toml(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text(TOML, encoding="utf-8")
    settings = Settings.load(path)
    assert settings.software.insi_authorisation_id == "CNDA-456"
    assert settings.environment.dmp_base_url == "https://dev9.lps2.dmp.gouv.fr/si-dmp-server/v2/services"
    assert settings.require_organisation().national_id == "1123456789"
    assert settings.require_professional().profession.display_name == "Médecin"
    assert settings.retry.max_attempts == 5


def test_environment_variables_override_the_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text(TOML, encoding="utf-8")
    clean_env.setenv("DMP_CONNECTOR_SOFTWARE__VERSION", "9.9")
    clean_env.setenv("DMP_CONNECTOR_ENVIRONMENT", "production")
    settings = Settings.load(path)
    assert settings.software.version == "9.9"
    assert settings.software.name == "MonLogiciel"
    assert settings.environment.is_production


def test_code_overrides_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text(TOML, encoding="utf-8")
    clean_env.setenv("DMP_CONNECTOR_CONFIG", str(path))
    clean_env.setenv("DMP_CONNECTOR_ENVIRONMENT", "production")
    settings = Settings.load(environment="sandbox")
    assert settings.environment.name is EnvironmentName.SANDBOX


def test_environment_table_overrides_one_url(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text(
        TOML.replace('platform = "dev9"', 'platform = "dev9"\ninsi_url = "https://proxy.example/insi"'),
        encoding="utf-8",
    )
    settings = Settings.load(path)
    assert settings.environment.insi_url == "https://proxy.example/insi"
    assert settings.environment.dmp_base_url.startswith("https://dev9.")


def test_missing_file_is_a_clear_error(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


def test_invalid_settings_name_each_problem_without_secrets(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text(
        '[software]\nname = "X"\n[tls]\npkcs12_file = "a.p12"\npkcs12_password = "hunter2-secret"\ncert_file = "c"\n'
        'key_file = "k"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as info:
        Settings.load(path)
    text = str(info.value)
    assert "software.version" in text and "software.editor" in text
    assert "not both" in text
    assert "hunter2" not in text


def test_broken_toml_is_a_configuration_error(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text("[software\nname=", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="cannot read"):
        Settings.load(path)


def test_secrets_are_hidden_in_repr() -> None:
    creds = TlsCredentials(pkcs12_file=Path("x.p12"), pkcs12_password="s3cr3t-value")
    assert "s3cr3t-value" not in repr(creds)


def test_missing_organisation_and_professional_say_what_to_set(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.load(software={"name": "A", "version": "1", "editor": "E"})
    assert settings.environment.name is EnvironmentName.SANDBOX
    with pytest.raises(ConfigurationError, match=r"\[organisation\]"):
        settings.require_organisation()
    with pytest.raises(ConfigurationError, match=r"\[professional\]"):
        settings.require_professional()


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "dmp.toml"
    path.write_text(
        TOML
        + '\n[tls]\ncert_file = "certs/auth.crt"\nkey_file = "/abs/auth.key"\n[audit]\njsonl_path = "audit.jsonl"\n',
        encoding="utf-8",
    )
    settings = Settings.load(path)
    assert settings.tls.cert_file == folder / "certs" / "auth.crt"
    assert settings.tls.key_file == Path("/abs/auth.key")
    assert settings.audit.jsonl_path == folder / "audit.jsonl"


def test_instance_id_is_stable_from_run_to_run() -> None:
    first = Settings.load(software={"name": "A", "version": "1", "editor": "E"}).software.instance_id
    again = Settings.load(software={"name": "A", "version": "2", "editor": "E"}).software.instance_id
    other = Settings.load(software={"name": "B", "version": "1", "editor": "E"}).software.instance_id
    assert first == again != other
    chosen = Settings.load(software={"name": "A", "version": "1", "editor": "E", "instance_id": "x-1"})
    assert chosen.software.instance_id == "x-1"


def test_code_takes_an_oid_or_an_xds_symbolic_scheme() -> None:
    assert Code.of("E1762", "ASTM", "Full Document").code_system == "ASTM"
    assert Code.of("SA07", "1.2.250.1.71.4.2.4").display_name is None
    with pytest.raises(ValueError, match="code_system"):
        Code.of("X", "not-an-oid")
