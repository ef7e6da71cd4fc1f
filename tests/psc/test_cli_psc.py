"""``dmp-connector psc login`` / ``psc whoami`` against the in-process PSC simulator (sandbox environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_ERROR, EXIT_OK, EXIT_VALIDATION, main

pytest.importorskip("joserfc")

CONFIG = '[software]\nname = "DemoLPS"\nversion = "1.0"\neditor = "Demo"\n'


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    path = tmp_path / "dmp-connector.toml"
    path.write_text(CONFIG)
    return str(path)


def test_login_shows_the_binding_message_and_the_session(config: str) -> None:
    result = CliRunner().invoke(
        main, ["--config", config, "psc", "login", "--login-hint", "899700000001", "--binding-message", "42"]
    )
    assert result.exit_code == EXIT_OK, result.output
    assert "e-CPS : 42" in result.output
    assert "acr: eidas1" in result.output and "logged out" in result.output
    assert "eyJ" not in result.output  # no JWT printed


def test_whoami_json_lists_exercises_and_the_activity_at_the_structure(config: str) -> None:
    result = CliRunner().invoke(
        main,
        ["--config", config, "--json", "psc", "whoami", "--login-hint", "899700000001", "--structure", "123456789"],
    )
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert [e["profession"] for e in data["exercises"]] == ["10", "40"]
    assert data["activity_at_structure"]["structure_id"] == "1123456789"  # matched by FINESS
    assert "eyJ" not in result.output


@pytest.mark.parametrize(("answer", "code"), [("deny", EXIT_ERROR), ("expire", EXIT_ERROR)])
def test_refused_or_expired_login_fails_typed(config: str, answer: str, code: int) -> None:
    result = CliRunner().invoke(
        main,
        ["--config", config, "--json", "psc", "login", "--login-hint", "899700000001", "--sandbox-answer", answer],
    )
    assert result.exit_code == code
    error = json.loads(result.stdout)["error"]
    assert error["type"] == {"deny": "CibaDeniedError", "expire": "CibaExpiredError"}[answer]


def test_whoami_without_an_activity_at_the_structure(config: str) -> None:
    result = CliRunner().invoke(
        main, ["--config", config, "psc", "whoami", "--login-hint", "899700366240", "--structure", "1123456789"]
    )
    assert result.exit_code == EXIT_VALIDATION
    assert "none of the professional's 1 PSC activities" in result.output


def test_login_writes_nothing_to_disk(config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens stay in memory: a login leaves the working, home and cache directories as they were."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.chdir(home)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["--config", config, "psc", "login", "--login-hint", "899700000001"])
    assert result.exit_code == EXIT_OK, result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
