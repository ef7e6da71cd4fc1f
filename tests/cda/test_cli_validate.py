"""``dmp-connector cda validate``: readable and JSON reports, exit codes, refused files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, main

KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025"
EXAMPLES = KIT / "ExemplesCDA"

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"the ANS kit is not at {KIT}")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    # The same cache folder as test_validation.py: schematrons compile once per session.
    monkeypatch.setenv("DMP_CONNECTOR_CDA__CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cda-schematron-cache"))
    return CliRunner()


def invalid_copy(tmp_path: Path) -> Path:
    """LDL-SES without the patient's birth place (an INS trait) and with a creation time without time zone."""
    text = (EXAMPLES / "LDL-SES_2022.01.xml").read_text(encoding="utf-8")
    start, end = text.index("<birthplace>"), text.index("</birthplace>") + len("</birthplace>")
    text = text[:start] + text[end:]
    text = text.replace('<effectiveTime value="20191203133000+0100"/>', '<effectiveTime value="20191203133000"/>')
    path = tmp_path / "invalid.xml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_example_exits_0(runner: CliRunner) -> None:
    pytest.importorskip("saxonche")
    result = runner.invoke(main, ["cda", "validate", "--kit", str(KIT), str(EXAMPLES / "LDL-SES_2022.01.xml")])
    assert result.exit_code == EXIT_OK, result.output
    assert result.output.startswith("LDL-SES_2022.01.xml (volet LDL-SES_2022.01): valid: 0 error(s)")
    assert "StrucMin" in result.output


def test_an_invalid_document_exits_4_with_a_readable_report(runner: CliRunner, tmp_path: Path) -> None:
    pytest.importorskip("saxonche")
    result = runner.invoke(main, ["cda", "validate", "--kit", str(KIT), str(invalid_copy(tmp_path))])
    assert result.exit_code == EXIT_VALIDATION, result.output
    assert "INVALID" in result.output
    assert "error [structural patient.ins-traits]" in result.output and "birth place" in result.output
    assert "error [structural dates.time-zone]" in result.output and "no time zone" in result.output
    assert "[schematron StrucMin:" in result.output


def test_json_report(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_CONNECTOR_CDA__KIT_DIR", str(KIT))
    result = runner.invoke(main, ["--json", "cda", "validate", "--no-schematron", str(invalid_copy(tmp_path))])
    assert result.exit_code == EXIT_VALIDATION, result.output
    data = json.loads(result.output)
    assert data["ok"] is False and data["schematrons"] == [] and data["file"].endswith("invalid.xml")
    rules = {f["rule"] for f in data["findings"] if f["severity"] == "error"}
    assert rules == {"patient.ins-traits", "dates.time-zone"}
    assert all(f["layer"] == "structural" and f["location"].startswith("/cda:") for f in data["findings"])


def test_verbose_lists_the_timings(runner: CliRunner) -> None:
    args = ["cda", "validate", "--kit", str(KIT), "--no-schematron", "-v", str(EXAMPLES / "VSM_1.4_2022.01.xml")]
    result = runner.invoke(main, args)
    assert result.exit_code == EXIT_OK, result.output
    assert "timings: parse" in result.output and "schema " in result.output


def test_a_forced_volet(runner: CliRunner) -> None:
    pytest.importorskip("saxonche")
    args = ["--json", "cda", "validate", "--kit", str(KIT), "--schematron", "VSM_2023.01", "--only-volet"]
    result = runner.invoke(main, [*args, str(EXAMPLES / "VSM_1.4_2022.01.xml")])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert data["volet"] == "VSM_2023.01" and data["schematrons"] == ["VSM_2023.01"]
    unknown = runner.invoke(main, [*args[:-3], "--schematron", "NOPE_2020.01", str(EXAMPLES / "VSM_1.4_2022.01.xml")])
    assert unknown.exit_code == EXIT_CONFIG and "no schematron named" in unknown.output


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>',
            "unsafe",
        ),
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>", "malformed"),
    ],
    ids=["xxe", "not-well-formed"],
)
def test_a_refused_file_is_reported_not_processed(runner: CliRunner, tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "hostile.xml"
    path.write_bytes(content)
    # No kit on purpose: the file is refused before anything needs it.
    result = runner.invoke(main, ["cda", "validate", str(path)])
    assert result.exit_code == EXIT_VALIDATION, result.output
    assert f"hostile.xml: REFUSED ({kind} XML, not processed)" in result.output
    as_json = runner.invoke(main, ["--json", "cda", "validate", str(path)])
    assert as_json.exit_code == EXIT_VALIDATION
    data = json.loads(as_json.output)
    assert data["ok"] is False and data["refused"] == kind and data["error"]["type"]


def test_no_kit_is_a_configuration_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["cda", "validate", str(EXAMPLES / "LDL-SES_2022.01.xml")])
    assert result.exit_code == EXIT_CONFIG
    assert "no CDA conformance kit is configured" in result.output
    assert "DMP_CONNECTOR_CDA__KIT_DIR" in result.output


def test_the_kit_from_the_configuration_file(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "dmp.toml"
    config.write_text(
        f'[software]\nname = "T"\nversion = "1"\neditor = "E"\n\n[cda]\nkit_dir = "{KIT}"\n', encoding="utf-8"
    )
    args = ["--config", str(config), "cda", "validate", "--no-schematron", str(EXAMPLES / "LDL-SES_2022.01.xml")]
    result = runner.invoke(main, args)
    assert result.exit_code == EXIT_OK, result.output


def test_a_missing_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["cda", "validate", str(tmp_path / "absent.xml")])
    assert result.exit_code == EXIT_USAGE
