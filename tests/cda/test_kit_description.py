"""``describe_kit`` / ``dmp-connector cda kit``: which ANS kit a folder holds and what it lacks, on the real kits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cda.kit import TESTED_KIT, describe_kit
from dmp_connector.cli import EXIT_CONFIG, main

SHARED = Path(__file__).resolve().parents[3] / "shared"
KIT_2025 = SHARED / "cda-2025"
OLD_KIT = SHARED / "cda"


@pytest.mark.skipif(not KIT_2025.is_dir(), reason="../shared/cda-2025 (the ANS kit 2025-10) is not there")
def test_the_tested_kit_is_recognised_with_what_it_holds() -> None:
    found = describe_kit(KIT_2025)
    assert found.kit == TESTED_KIT and found.tested and found.usable
    assert found.examples == len(list((KIT_2025 / "ExemplesCDA").glob("*.xml"))) == 107
    assert found.volet_schematrons == len(list((KIT_2025 / "schematrons").glob("CI-SIS_*.sch")))
    assert found.engine and found.schema
    assert len(found.generic_schematrons) == 5
    # Value sets some schematrons still name under their old spelling are absent from the 2025-10 kit.
    assert found.missing_value_sets and not any(
        (KIT_2025 / "jeuxDeValeurs" / n).exists() for n in found.missing_value_sets
    )


@pytest.mark.skipif(not OLD_KIT.is_dir(), reason="../shared/cda (the older kit) is not there")
def test_an_older_kit_is_named_as_such_and_its_missing_engine_reported() -> None:
    found = describe_kit(OLD_KIT)
    assert not found.tested and "older than 2025-10" in found.kit
    assert found.usable  # it still validates
    assert not found.engine and any("schematrons/moteur" in line for line in found.lacks)


def test_an_incomplete_folder_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "schematrons").mkdir()
    (tmp_path / "schematrons" / "CI-SIS_CANCER-FRCP_2025.01.sch").write_text(
        '<schema><let name="jdv" value="../jeuxDeValeurs/JDV_Absent-CISIS.xml"/></schema>'
    )
    found = describe_kit(tmp_path)
    assert found.tested and not found.usable
    assert found.missing_value_sets == ("JDV_Absent-CISIS.xml",)
    assert "the CDA schema infrastructure/cda/CDA_extended.xsd" in found.lacks
    assert "the examples ExemplesCDA/*.xml" in found.lacks
    result = CliRunner().invoke(main, ["--json", "cda", "kit", str(tmp_path)])
    assert result.exit_code == EXIT_CONFIG
    data = json.loads(result.stdout)
    assert data["tested"] and not data["usable"] and data["missing_value_sets"] == ["JDV_Absent-CISIS.xml"]


@pytest.mark.skipif(not KIT_2025.is_dir(), reason="../shared/cda-2025 (the ANS kit 2025-10) is not there")
def test_the_command_on_the_tested_kit() -> None:
    result = CliRunner().invoke(main, ["cda", "kit", str(KIT_2025)])
    assert result.exit_code == 0, result.output
    assert f"{TESTED_KIT} (the kit this SDK is tested with)" in result.stdout
    assert "examples            107" in result.stdout
