"""The console script: global options, JSON output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector import __version__
from dmp_connector.cli import EXIT_CONFIG, EXIT_OK, main

from .conftest import PkiFiles

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


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "dmp.toml"
    path.write_text(CONFIG + extra, encoding="utf-8")
    return path


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == EXIT_OK
    assert __version__ in result.output


def test_config_show_human_and_json(runner: CliRunner, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    human = runner.invoke(main, ["--config", str(path), "config", "show"])
    assert human.exit_code == EXIT_OK, human.output
    assert "CliLPS 1.2" in human.output
    assert "1123456789" in human.output
    as_json = runner.invoke(main, ["--config", str(path), "--env", "prod", "--json", "config", "show"])
    assert as_json.exit_code == EXIT_OK
    data = json.loads(as_json.output)
    assert data["environment"]["name"] == "production"
    assert data["environment"]["dmp_base_url"] == "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services"


def test_config_from_environment_variable(runner: CliRunner, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = runner.invoke(main, ["--json", "config", "show"], env={"DMP_CONNECTOR_CONFIG": str(path)})
    assert result.exit_code == EXIT_OK
    assert json.loads(result.output)["software"]["name"] == "CliLPS"


def test_missing_configuration_exits_with_the_config_code(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--config", str(tmp_path / "none.toml"), "config", "show"])
    assert result.exit_code == EXIT_CONFIG
    assert "does not exist" in result.output


def test_json_errors_are_json(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[software]\nname = "x"\n', encoding="utf-8")
    result = runner.invoke(main, ["--config", str(path), "--json", "config", "show"])
    assert result.exit_code == EXIT_CONFIG
    error = json.loads(result.output)["error"]
    assert error["type"] == "ConfigurationError"
    assert "software.version" in error["message"]


def test_config_check_opens_the_certificates(runner: CliRunner, tmp_path: Path, pki_files: PkiFiles) -> None:
    good = write_config(
        tmp_path,
        f'\n[tls]\ncert_file = "{pki_files.client_cert}"\nkey_file = "{pki_files.client_key}"\n'
        f'ca_bundle = "{pki_files.ca_bundle}"\n',
    )
    ok = runner.invoke(main, ["--config", str(good), "--json", "config", "check"])
    assert ok.exit_code == EXIT_OK, ok.output
    assert json.loads(ok.output) == {"ok": True, "environment": "sandbox", "client_certificate": True}
    (tmp_path / "b").mkdir()
    bad = write_config(
        tmp_path / "b", f'\n[tls]\ncert_file = "{pki_files.client_cert}"\nkey_file = "{tmp_path / "missing.key"}"\n'
    )
    failed = runner.invoke(main, ["--config", str(bad), "config", "check"])
    assert failed.exit_code == EXIT_CONFIG
    assert "missing.key does not exist" in failed.output


def test_usage_error_exit_code(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--env", "nowhere", "config", "show"])
    assert result.exit_code == 2


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "dmp_connector", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert __version__ in done.stdout
