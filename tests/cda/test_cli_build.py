"""``dmp-connector cda build``: a PDF-body document from a PDF and a TOML or JSON description."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("dmp_connector.cli.cda", reason="the cda command group is not there yet")

from dmp_connector.cda import NonXmlBody, parse
from dmp_connector.cli import EXIT_OK, EXIT_VALIDATION, main

from .conftest import make_pdf

SchemaCheck = Callable[[bytes], None]

DESCRIPTION = """
title = "Compte rendu de consultation"
type_code = "11488-4"
effective_time = 2024-03-12T10:30:00+01:00
service_start = 2024-03-12T09:45:00+01:00
service_end = 2024-03-12T10:15:00+01:00
practice_setting = "AMBULATOIRE"
facility_type = "SA07"

[patient]
ins = "2 97 02 2A 020 778 78"
ins_oid = "test"
status = "QUAL"
birth_name = "Adrtrois"
birth_first_names = "Dominique Marie"
sex = "F"
birth_date = "1997-02-26"
birth_place = "2A020"
ipp = { root = "1.2.3.4.567.8.9.10", extension = "IPP-42" }

[author]
id = "10001234567"
id_kind = "RPPS"
family_name = "MARTIN"
given_name = "Paul"
profession = { code = "10", code_system = "1.2.250.1.71.1.2.7", display_name = "Médecin" }
specialty = { code = "SM26", code_system = "1.2.250.1.71.4.2.5", display_name = "Médecine générale" }

[organisation]
id = "750512345"
id_kind = "FINESS"
name = "Cabinet du Dr Martin"
"""

CONFIG = """
[software]
name = "TestLPS"
version = "1.0"
editor = "Test Editor"

[organisation]
id = "750512345"
id_kind = "1"
name = "Cabinet du Dr Martin"
activity_sector = { code = "SA07", code_system = "1.2.250.1.71.4.2.4", display_name = "Cabinet individuel" }

[professional]
id = "10001234567"
family_name = "MARTIN"
given_name = "Paul"
profession = { code = "10", code_system = "1.2.250.1.71.1.2.7", display_name = "Médecin" }
specialty = { code = "SM26", code_system = "1.2.250.1.71.4.2.5", display_name = "Médecine générale" }
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    return CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    pdf = tmp_path / "cr.pdf"
    pdf.write_bytes(make_pdf())
    toml = tmp_path / "cr.toml"
    toml.write_text(DESCRIPTION, encoding="utf-8")
    config = tmp_path / "dmp-connector.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return {"pdf": pdf, "toml": toml, "config": config, "dir": tmp_path}


def test_build_from_a_toml_description(
    runner: CliRunner, files: dict[str, Path], assert_schema_valid: SchemaCheck
) -> None:
    out = files["dir"] / "cr.xml"
    result = runner.invoke(
        main,
        [
            "cda",
            "build",
            "--pdf",
            str(files["pdf"]),
            "--pdfa",
            "off",
            "--description",
            str(files["toml"]),
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    assert "uniqueId" in result.output and "SHA-1" in result.output
    data = out.read_bytes()
    assert_schema_valid(data)
    document = parse(data)
    assert isinstance(document.body, NonXmlBody) and document.body.data == files["pdf"].read_bytes()
    assert document.type_code.display_name == "CR ou fiche de consultation ou de visite"
    assert document.patient.other_ids[0].extension == "IPP-42"


def test_build_from_json_with_the_configured_author(
    runner: CliRunner, files: dict[str, Path], assert_schema_valid: SchemaCheck
) -> None:
    description = {
        "title": "CR",
        "type_code": {"code": "11488-4", "display_name": "CR de consultation"},
        "effective_time": "2024-03-12T10:30:00+01:00",
        "service_start": "2024-03-12",
        "practice_setting": "AMBULATOIRE",
        "patient": {
            "ins": "297022A02077878",
            "ins_oid": "1.2.250.1.213.1.4.10",
            "birth_name": "ADRTROIS",
            "birth_first_names": ["DOMINIQUE", "MARIE"],
            "sex": "F",
            "birth_date": "26/02/1997",
            "birth_place": "2A020",
        },
    }
    path = files["dir"] / "cr.json"
    path.write_text(json.dumps(description), encoding="utf-8")
    out = files["dir"] / "cr.xml"
    args = ["--config", str(files["config"]), "--json", "cda", "build", "--pdf", str(files["pdf"]), "--pdfa", "off"]
    result = runner.invoke(main, [*args, "--description", str(path), "--output", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.output)
    assert report["class_code"] == "10" and report["format_code"] == "urn:ihe:iti:xds-sd:pdf:2008"
    assert_schema_valid(out.read_bytes())


def test_without_output_the_document_goes_to_stdout(runner: CliRunner, files: dict[str, Path]) -> None:
    result = runner.invoke(
        main, ["cda", "build", "--pdf", str(files["pdf"]), "--pdfa", "off", "--description", str(files["toml"])]
    )
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout_bytes.startswith(b"<?xml")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (('ins_oid = "test"\nstatus = "QUAL"', 'ins_oid = "test"\nstatus = "RECUP"'), "qualified (QUAL)"),
        (("2024-03-12T10:30:00+01:00", "2024-03-12T10:30:00"), "without time zone"),
        (('type_code = "11488-4"', 'type_code = "99999-9"'), "not a code of JDV_J07"),
        (("service_end = 2024-03-12T10:15:00+01:00", "service_end = 2024-03-12T08:00:00+01:00"), "before its start"),
        (("title = ", "titre = "), "description cr.toml is invalid"),
        (("[patient]", "[patient"), "not valid TOML"),
    ],
)
def test_invalid_descriptions_exit_4_with_a_reason(
    runner: CliRunner, files: dict[str, Path], change: tuple[str, str], reason: str
) -> None:
    files["toml"].write_text(DESCRIPTION.replace(*change), encoding="utf-8")
    result = runner.invoke(
        main, ["cda", "build", "--pdf", str(files["pdf"]), "--pdfa", "off", "--description", str(files["toml"])]
    )
    assert result.exit_code == EXIT_VALIDATION, result.output
    assert reason in result.output


def test_a_file_that_is_not_a_pdf_exits_4(runner: CliRunner, files: dict[str, Path]) -> None:
    files["pdf"].write_bytes(b"just text")
    result = runner.invoke(
        main, ["cda", "build", "--pdf", str(files["pdf"]), "--pdfa", "off", "--description", str(files["toml"])]
    )
    assert result.exit_code == EXIT_VALIDATION
    assert "not a PDF" in result.output
