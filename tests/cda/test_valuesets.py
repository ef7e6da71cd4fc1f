"""The generated value sets: up to date with the ANS files, and their lookups."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dmp_connector.cda import valuesets
from dmp_connector.cda.valuesets import (
    JDV_J01_XDS_AUTHOR_SPECIALTY,
    JDV_J07_XDS_TYPE_CODE,
    JDV_J08_XDS_CONFIDENTIALITY_CODE,
    JDV_J47_FUNCTION_CODE,
    JDV_MODALITE_ENTREE,
    VALUE_SETS,
    Confidentiality,
    DocumentType,
    ValueSet,
    by_oid,
)
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
JDV_DIR = ROOT.parent / "shared" / "cda-2025" / "jeuxDeValeurs"
needs_kit = pytest.mark.skipif(not JDV_DIR.is_dir(), reason="the ANS value-set files (../shared/cda-2025) are not here")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_valuesets", ROOT / "scripts" / "gen_valuesets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_valuesets", module)
    spec.loader.exec_module(module)
    return module


@needs_kit
def test_committed_module_is_what_the_generator_writes(tmp_path: Path) -> None:
    generator = _generator()
    out = tmp_path / "valuesets.py"
    assert generator.main(["--source", str(JDV_DIR), "--output", str(out)]) == 0
    committed = Path(valuesets.__file__).read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == committed, "run scripts/gen_valuesets.py"
    assert generator.main(["--source", str(JDV_DIR), "--output", str(Path(valuesets.__file__)), "--check"]) == 0


@needs_kit
def test_check_mode_reports_a_stale_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "valuesets.py"
    stale.write_text(Path(valuesets.__file__).read_text(encoding="utf-8").replace("Synthèse", "Synthese"))
    assert _generator().main(["--source", str(JDV_DIR), "--output", str(stale), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


@needs_kit
def test_a_missing_file_stops_the_generator(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="missing"):
        _generator().main(["--source", str(tmp_path), "--output", str(tmp_path / "x.py")])
    # One renamed set absent (the 2025 kit's kebab-case name): it is named, never taken from elsewhere.
    for path in JDV_DIR.glob("*.xml"):
        if path.name != "jdv-code-probleme-cisis.xml":
            (tmp_path / path.name).symlink_to(path)
    with pytest.raises(SystemExit, match=r"missing from .*: jdv-code-probleme-cisis\.xml$"):
        _generator().main(["--source", str(tmp_path), "--output", str(tmp_path / "x.py")])


@needs_kit
def test_the_2025_kit_renamed_sets_keep_their_names() -> None:
    """Nine sets the 2025 kit renamed in kebab-case: read from their new files, published under their names."""
    renamed = _generator().SOURCE_FILES
    # the nine renamed inputs and the header's x_BasicConfidentialityKind, then the sets of later volets
    assert len(renamed) >= 10
    for name, file in renamed.items():
        assert (JDV_DIR / f"{file}.xml").is_file(), file
        assert not (JDV_DIR / f"{name}.xml").exists(), name
        assert VALUE_SETS[name].name == name
    assert VALUE_SETS["JDV_ProblemCodes_CISIS"].oid == "1.2.250.1.213.1.1.5.172"
    assert valuesets.JDV_HL7_XBASIC_CONFIDENTIALITY_KIND.oid == "2.16.840.1.113883.1.11.16926"
    assert list(valuesets.JDV_HL7_XBASIC_CONFIDENTIALITY_KIND.codes()) == ["N", "R", "V"]


def test_value_set_identity_and_lookup() -> None:
    assert JDV_J07_XDS_TYPE_CODE.oid == "1.2.250.1.213.1.1.5.471"
    assert JDV_J07_XDS_TYPE_CODE.name == "JDV_J07_XdsTypeCode_CISIS"
    synth = JDV_J07_XDS_TYPE_CODE["SYNTH"]
    assert synth == Code.of("SYNTH", "1.2.250.1.213.1.1.4.12", "Synthèse")
    assert JDV_J07_XDS_TYPE_CODE.get("11490-0", "2.16.840.1.113883.6.1") == DocumentType.DISCHARGE_LETTER
    assert JDV_J07_XDS_TYPE_CODE.get("11490-0", "1.2.3") is None
    assert JDV_J07_XDS_TYPE_CODE.get("nope") is None
    with pytest.raises(KeyError, match="nope"):
        JDV_J07_XDS_TYPE_CODE["nope"]


def test_membership_needs_the_code_system_to_match() -> None:
    assert Code.of("N", "2.16.840.1.113883.5.25") in JDV_J08_XDS_CONFIDENTIALITY_CODE
    assert Code.of("N", "1.2.250.1.213.1.1.4.13") not in JDV_J08_XDS_CONFIDENTIALITY_CODE
    assert "N" in JDV_J08_XDS_CONFIDENTIALITY_CODE
    assert 42 not in JDV_J08_XDS_CONFIDENTIALITY_CODE
    assert JDV_J08_XDS_CONFIDENTIALITY_CODE.contains("MASQUE_PS")
    assert JDV_J08_XDS_CONFIDENTIALITY_CODE.contains("MASQUE_PS", "1.2.250.1.213.1.1.4.13")
    assert not JDV_J08_XDS_CONFIDENTIALITY_CODE.contains("MASQUE_PS", "2.16.840.1.113883.5.25")
    assert JDV_J08_XDS_CONFIDENTIALITY_CODE.contains(Confidentiality.NORMAL)


def test_display_names_do_not_matter_for_membership() -> None:
    assert Code.of("SYNTH", "1.2.250.1.213.1.1.4.12", "Synthèse médicale") in JDV_J07_XDS_TYPE_CODE


def test_require_returns_the_code_or_says_which_set_and_field() -> None:
    given = Code.of("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecin généraliste")
    assert JDV_J01_XDS_AUTHOR_SPECIALTY.require(given, field="author.specialty") is given
    bare = Code.of("PCP", "2.16.840.1.113883.5.88")
    assert JDV_J47_FUNCTION_CODE.require(bare, field="f").display_name == "Médecin traitant"
    with pytest.raises(ValidationError) as caught:
        JDV_MODALITE_ENTREE.require(Code.of("999", "2.16.840.1.113883.6.96"), field="admission_mode")
    message = str(caught.value)
    assert "admission_mode" in message
    assert "JDV_ModaliteEntree_CISIS" in message
    assert caught.value.problems


def test_concepts_are_sorted_and_unique() -> None:
    for value_set in VALUE_SETS.values():
        keys = [(c.code_system, c.code) for c in value_set.concepts]
        assert keys == sorted(keys), value_set.name
        assert len(set(keys)) == len(keys), value_set.name
        assert len(value_set) == len(keys)
        assert list(value_set.codes()) == [c.code for c in value_set.concepts]


def test_registry_by_name_and_oid() -> None:
    assert VALUE_SETS["JDV_J07_XdsTypeCode_CISIS"] is JDV_J07_XDS_TYPE_CODE
    assert by_oid("1.2.250.1.213.1.1.5.463") is JDV_J08_XDS_CONFIDENTIALITY_CODE
    assert by_oid("9.9.9") is None
    assert all(isinstance(v, ValueSet) for v in VALUE_SETS.values())


def test_value_sets_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        JDV_J07_XDS_TYPE_CODE.name = "other"  # type: ignore[misc]


def test_named_constants_belong_to_their_sets() -> None:
    named = {
        "DocumentType": valuesets.JDV_J07_XDS_TYPE_CODE,
        "Confidentiality": valuesets.JDV_J08_XDS_CONFIDENTIALITY_CODE,
        "PracticeSetting": valuesets.JDV_J04_XDS_PRACTICE_SETTING_CODE,
        "EncounterType": valuesets.JDV_J142_TYPE_RENCONTRE,
        "AdministrativeGender": valuesets.JDV_J143_ADMINISTRATIVE_GENDER,
        "ParticipationType": valuesets.JDV_J144_PARTICIPATION_TYPE,
        "FunctionCode": valuesets.JDV_J47_FUNCTION_CODE,
        "Civility": valuesets.JDV_J245_CIVILITE,
        "Title": valuesets.JDV_J246_TITRE,
        "ProblemKind": valuesets.JDV_PROBLEM_CODES,
        "ProblemClinicalStatus": valuesets.JDV_HL7_CONDITION_CLINICAL,
        "AllergyClinicalStatus": valuesets.JDV_HL7_ALLERGYINTOLERANCE_CLINICAL,
        "AllergyCriticality": valuesets.JDV_HL7_ALLERGY_INTOLERANCE_CRITICALITY,
        "DocumentStatus": valuesets.JDV_STATUT_DOC,
        "AdmissionMode": valuesets.JDV_MODALITE_ENTREE,
        "DischargeMode": valuesets.JDV_MODALITE_SORTIE,
    }
    for class_name, value_set in named.items():
        holder = getattr(valuesets, class_name)
        codes = [v for k, v in vars(holder).items() if k.isupper()]
        assert codes, class_name
        for code in codes:
            assert isinstance(code, Code)
            assert value_set.get(code.code, code.code_system) == code, (class_name, code)


def test_all_lists_the_public_names() -> None:
    defined = {
        name
        for name, value in vars(valuesets).items()
        if not name.startswith("_")
        and (isinstance(value, ValueSet) or getattr(value, "__module__", None) == valuesets.__name__)
    }
    assert set(valuesets.__all__) == defined | {"VALUE_SETS", "ValueSet"}  # ValueSet is re-exported
