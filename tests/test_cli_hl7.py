"""``dmp-connector ins from-hl7``: the identity of an HL7 v2 message, as PAM-FR lets it be read."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dmp_connector.cli import EXIT_OK, EXIT_VALIDATION, main

DATA = Path(__file__).resolve().parent / "data" / "hl7v2"


def test_the_ans_admission_sample_prints_the_qualified_identity() -> None:
    result = CliRunner().invoke(main, ["ins", "from-hl7", str(DATA / "pam_admission_A01.er7")])
    assert result.exit_code == EXIT_OK, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ADT^A01: identity QUAL (PID-32 VALI)"
    assert "  INS         279035121518989  NIR test, OID 1.2.250.1.213.1.4.10" in lines
    assert "  birth place 63220" in lines
    assert "  PI          000003  (CHU-X)" in lines


def test_json_and_mask() -> None:
    result = CliRunner().invoke(main, ["--json", "ins", "from-hl7", "--mask", str(DATA / "mdm_T02_initial.er7")])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert data["message"] == "MDM^T02"
    assert data["ins"]["matricule"] == "2 ** ** ** *** *** 89"
    assert "PAT-TROIS" not in result.output and "1979" not in result.output and "279035121518989" not in result.output


def test_an_ins_without_vali_is_reported_dropped(tmp_path: Path) -> None:
    text = (DATA / "pam_admission_A01.er7").read_text(encoding="utf-8").replace("|N||VALI|", "|N||PROV|")
    path = tmp_path / "prov.er7"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["ins", "from-hl7", str(path)])
    assert result.exit_code == EXIT_OK, result.output
    assert "identity PROV" in result.output
    assert "dropped" in result.output
    assert "279035121518989" not in result.output


def test_a_pid_breaking_the_rules_exits_4_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.er7"
    path.write_text("MSH|^~\\&|A|B|C|D|1||ADT^A28|1|P|2.5\rPID|1||1^^^X^PI||^ZOE^^^^^L||19790328|F\r", encoding="utf-8")
    result = CliRunner().invoke(main, ["ins", "from-hl7", str(path)])
    assert result.exit_code == EXIT_VALIDATION
    assert "type L" in result.output
    assert "ZOE" not in result.output


def test_control_characters_from_the_file_never_reach_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "hostile.er7"
    path.write_text(
        "MSH|^~\\&|A|B|C|D|1||ADT^A28|1|P|2.5\rPID|1||1^^^X^PI||EVIL\\X1B\\[2J^ZOE^^^^^L||19790328|F\r",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["ins", "from-hl7", str(path)])
    assert result.exit_code == EXIT_OK, result.output
    assert "\x1b" not in result.output
    assert "EVIL\\x1b[2J" in result.output
