"""``dmp-connector dmp …`` against the in-process DMP simulator, its state kept under ``--data``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector import Code, Settings
from dmp_connector.cda import ClinicalDocument, InstanceId, NonXmlBody, build
from dmp_connector.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from tests.cda.conftest import make_pdf

CONFIG = """
[software]
name = "CliLPS"
version = "1.2"
editor = "Editeur"
dmp_homologation_id = "HOMOLOG-TEST"

[organisation]
id = "123456789"
id_kind = "1"
name = "CABINET SANDBOX"
activity_sector = { code = "SA07", code_system = "1.2.250.1.71.4.2.4" }

[professional]
id = "99700000001"
id_kind = "8"
family_name = "SANDBOX"
given_name = "JEANNE"
profession = { code = "10", code_system = "1.2.250.1.71.1.2.7" }
specialty = { code = "SM26", code_system = "1.2.250.1.71.4.2.5" }
"""

MATRICULE = "275126322074974"
PATIENT = Identity(
    traits=IdentityTraits.build(
        birth_name="ADRUN", birth_first_names="ZOE", sex="F", birth_date="1975-12-31", birth_place="63220"
    ),
    ins=INS.parse(MATRICULE, oid=InsOid.NIR),
    status=IdentityStatus.QUAL,
)
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
PARIS = dt.timezone(dt.timedelta(hours=1))


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    return CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "dmp.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def write_documents(config: Path, folder: Path, count: int) -> list[bytes]:
    """``count`` small PDF-body CDAs for the seeded patient ADRUN ZOE."""
    settings = Settings.load(config)
    folder.mkdir()
    written = []
    for number in range(count):
        document = ClinicalDocument.from_settings(
            settings,
            patient=PATIENT,
            type_code=CONSULTATION,
            title=f"Compte rendu {number}",
            body=NonXmlBody(data=make_pdf(f"Compte rendu {number}")),
            effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
            service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
            service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
            practice_setting=AMBULATOIRE,
            document_id=InstanceId(root=f"1.2.250.1.999.7.{number + 1}"),
        )
        data = build(document)
        (folder / f"cr-{number:02d}.xml").write_bytes(data)
        written.append(data)
    return written


def test_deposit_a_folder_twice_then_find_get_mask_delete(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    documents = write_documents(config, tmp_path / "reports", 50)
    data = tmp_path / "sandbox"
    base = ["--config", str(config)]
    patient = ["--patient-ins", MATRICULE, "--data", str(data)]

    first = runner.invoke(main, [*base, "dmp", "deposit", str(tmp_path / "reports"), *patient])
    assert first.exit_code == EXIT_OK, first.output + first.stderr
    assert "50 document(s): 50 deposited, 0 already there, 0 failed" in first.stdout
    assert "depositing" in first.stderr  # the progress bar, on stderr

    second = runner.invoke(main, [*base, "--json", "dmp", "deposit", str(tmp_path / "reports"), *patient])
    assert second.exit_code == EXIT_OK, second.output + second.stderr
    summary = json.loads(second.stdout)
    assert summary["total"] == 50
    assert len(summary["already_deposited"]) == 50
    assert summary["deposited"] == [] and summary["failed"] == []
    assert second.stderr == ""  # no progress bar with --json

    authorised = runner.invoke(main, [*base, "dmp", "authorise", *patient])
    assert authorised.exit_code == EXIT_OK, authorised.output + authorised.stderr
    found = runner.invoke(main, [*base, "--json", "dmp", "find", *patient, "--type", "11488-4"])
    assert found.exit_code == EXIT_OK, found.output + found.stderr
    listed = json.loads(found.stdout)
    assert listed["count"] == 50
    unique_id = "1.2.250.1.999.7.1"
    assert unique_id in {d["unique_id"] for d in listed["documents"]}

    out = tmp_path / "got.xml"
    got = runner.invoke(main, [*base, "dmp", "get", unique_id, "--output", str(out), *patient])
    assert got.exit_code == EXIT_OK, got.output + got.stderr
    assert out.read_bytes() == documents[0]

    masked = runner.invoke(main, [*base, "dmp", "mask", unique_id, *patient])
    assert masked.exit_code == EXIT_OK, masked.output + masked.stderr
    assert "masked" in masked.stdout

    deleted = runner.invoke(main, [*base, "--json", "dmp", "delete", "1.2.250.1.999.7.2", *patient])
    assert deleted.exit_code == EXIT_OK, deleted.output + deleted.stderr
    assert json.loads(deleted.stdout)["action"] == "delete"
    left = runner.invoke(main, [*base, "--json", "dmp", "find", *patient])
    assert json.loads(left.stdout)["count"] == 49


def test_a_failed_document_is_reported_and_exits_non_zero(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.xml").write_bytes(b"<not-a-cda/>")
    result = runner.invoke(main, ["--config", str(config), "dmp", "deposit", str(folder), "--patient-ins", MATRICULE])
    assert result.exit_code == EXIT_ERROR
    assert "0 deposited, 0 already there, 1 failed" in result.stdout
    assert "FAILED" in result.stdout and "broken.xml" in result.stdout


def test_usage_errors(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--config", str(config), "dmp", "deposit"]
    assert runner.invoke(main, [*base, str(empty), "--patient-ins", MATRICULE]).exit_code == EXIT_USAGE
    unknown = runner.invoke(main, ["--config", str(config), "dmp", "find", "--patient-ins", "181016322075149"])
    assert unknown.exit_code == EXIT_USAGE  # not a seed, and no traits given
    assert "traits" in unknown.stderr
