"""``dmp-connector ins check``: exit codes, human and JSON output, OIDs, lenient reading."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_OK, EXIT_VALIDATION, main


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    return CliRunner()


def test_a_valid_matricule_with_spaces_prints_it_normalised(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ins", "check", "2 90 05 2A 004 012 66"])
    assert result.exit_code == EXIT_OK, result.output
    assert result.output.startswith("290052A00401266")
    assert "valid NIR" in result.output


def test_an_unquoted_matricule_is_joined(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ins", "check", "2", "90", "05", "2A", "004", "012", "66"])
    assert result.exit_code == EXIT_OK, result.output
    assert "290052A00401266" in result.output


def test_json_output(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--json", "ins", "check", "2.97.02.2a.020.778.78"])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert data == {
        "valid": True,
        "matricule": "297022A02077878",
        "formatted": "2 97 02 2A 020 778 78",
        "oid": "1.2.250.1.213.1.4.8",
        "kind": "NIR",
        "test": False,
        "key": "78",
        "key_valid": True,
        "expected_key": "78",
    }


@pytest.mark.parametrize(
    ("oid", "kind", "value"),
    [
        ("nia", "NIA", "1.2.250.1.213.1.4.9"),
        ("test", "NIR", "1.2.250.1.213.1.4.10"),
        ("DEMO", "NIR", "1.2.250.1.213.1.4.11"),
        ("urn:oid:1.2.250.1.213.1.4.9", "NIA", "1.2.250.1.213.1.4.9"),
    ],
)
def test_the_oid_option(runner: CliRunner, oid: str, kind: str, value: str) -> None:
    result = runner.invoke(main, ["--json", "ins", "check", "--oid", oid, "109076322088835"])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert (data["kind"], data["oid"]) == (kind, value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2 90 05 2A 004 012 67", "key does not match"),
        ("2 90 05 2A 004 012", "key is missing"),
        ("2 90 05", "15 characters"),
        ("7 90 05 2A 004 012 66", "NNP"),
        ("2 90 13 2A 004 012 66", "month"),
        ("2 90 05 2C 004 012 66", "only digits"),
    ],
)
def test_invalid_input_exits_4_with_the_reason(runner: CliRunner, text: str, reason: str) -> None:
    result = runner.invoke(main, ["ins", "check", text])
    assert result.exit_code == EXIT_VALIDATION
    assert reason in result.output
    assert result.output.startswith("error:")


def test_invalid_input_as_json(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--json", "ins", "check", "290052A00401267"])
    assert result.exit_code == EXIT_VALIDATION
    error = json.loads(result.output)["error"]
    assert error["type"] == "InvalidIdentifierError"
    assert "key" in error["message"]


def test_lenient_reads_a_wrong_key_and_flags_it(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ins", "check", "--lenient", "--oid", "test", "221042545611404"])
    assert result.exit_code == EXIT_OK, result.output
    assert "WRONG KEY 04" in result.output
    assert "gives 83" in result.output
    as_json = runner.invoke(main, ["--json", "ins", "check", "--lenient", "221042545611404"])
    data = json.loads(as_json.output)
    assert (data["valid"], data["key_valid"], data["key"], data["expected_key"]) == (False, False, "04", "83")


def test_production_refuses_test_oids(runner: CliRunner) -> None:
    refused = runner.invoke(main, ["--env", "prod", "ins", "check", "--oid", "test", "279035121518989"])
    assert refused.exit_code == EXIT_VALIDATION
    assert "refused in production" in refused.output
    accepted = runner.invoke(main, ["--env", "test", "ins", "check", "--oid", "nir", "279035121518989"])
    assert accepted.exit_code == EXIT_OK, accepted.output


@pytest.mark.parametrize(("oid", "reason"), [("1.2.250.1.213.1.4.13", "social-security"), ("nope", "not an INS OID")])
def test_a_wrong_oid_exits_4(runner: CliRunner, oid: str, reason: str) -> None:
    result = runner.invoke(main, ["ins", "check", "--oid", oid, "279035121518989"])
    assert result.exit_code == EXIT_VALIDATION
    assert reason in result.output


def test_a_matricule_is_required(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ins", "check"])
    assert result.exit_code == 2
