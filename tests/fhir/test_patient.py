"""FR Core Patient ↔ Identity: published examples, both FR Core releases, the INS rule, hostile input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.errors import InvalidIdentifierError, PatientMismatchError
from dmp_connector.fhir import (
    FhirMappingError,
    FhirStructureError,
    FrCoreSettings,
    FrCoreVersion,
    check_patient,
    identity_from_patient,
    identity_to_patient,
    to_model,
)
from dmp_connector.ins import (
    INS,
    BirthDate,
    Identity,
    IdentityDocumentKind,
    IdentityStatus,
    IdentityTraits,
    InsOid,
    Sex,
)
from tests.ins.identities import identities

DATA = Path(__file__).resolve().parents[1] / "data" / "fhir"
V22 = FrCoreSettings(version=FrCoreVersion.V2_2_0)
INS_SYSTEMS = {f"urn:oid:{oid.value}" for oid in InsOid}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


def dark(status: IdentityStatus = IdentityStatus.QUAL) -> Identity:
    traits = IdentityTraits.build(
        birth_name="Dark",
        birth_first_names="Jeanne Marie Cécile",
        sex="F",
        birth_date="1960-05-30",
        birth_place="88154",
    )
    ins = INS.parse("260058815400233", oid=InsOid.NIR) if status.ins_retrieved else None
    return Identity(traits=traits, ins=ins, status=status)


# --------------------------------------------------------------------------- published examples


def test_fr_core_2_2_qual_example_reads_as_the_qualified_identity() -> None:
    identity = identity_from_patient(example("Patient-FRCorePatientINSExampleRNIV-QUAL.json"))
    assert identity.status is IdentityStatus.QUAL
    assert identity.ins is not None and identity.ins.oid is InsOid.NIR and identity.ins.key_valid
    assert identity.traits.birth_name == "Dark"
    assert identity.traits.birth_first_names == ("Jeanne", "Marie", "Cécile")
    assert (identity.traits.sex, identity.traits.birth_date.iso(), identity.traits.birth_place) == (
        Sex.F,
        "1960-05-30",
        "88154",
    )
    # The same person, typed at a desk and normalised, is the patient of that example.
    assert check_patient(example("Patient-FRCorePatientINSExampleRNIV-QUAL.json"), dark()).ins == dark().ins


def test_fr_core_2_2_qual_example_is_what_the_writer_writes_for_that_identity() -> None:
    published = example("Patient-FRCorePatientINSExampleRNIV-QUAL.json")
    read = identity_from_patient(published)
    ours = identity_to_patient(read, settings=V22)
    assert ours["identifier"] == published["identifier"]
    assert ours["name"] == published["name"]
    assert (ours["gender"], ours["birthDate"]) == (published["gender"], published["birthDate"])
    status = [e for e in ours["extension"] if e["url"].endswith("fr-core-identity-reliability")]
    assert status == [e for e in published["extension"] if e["url"].endswith("fr-core-identity-reliability")]
    place = next(e for e in ours["extension"] if e["url"].endswith("patient-birthPlace"))
    assert place["valueAddress"]["extension"] == published["extension"][0]["valueAddress"]["extension"]
    assert ours["meta"] == published["meta"]


def test_fr_core_2_2_prov_example_reads_without_ins_and_ignores_management_comments() -> None:
    identity = identity_from_patient(example("Patient-FRCorePatientINSExampleRNIV-PROV.json"))
    assert identity.status is IdentityStatus.PROV
    assert identity.ins is None
    assert not (identity.doubtful or identity.fictitious or identity.homonym)


def test_fr_core_2_1_coding_example_has_a_wrong_key_and_is_read_only_leniently() -> None:
    with pytest.raises(FhirMappingError) as caught:
        identity_from_patient(example("Patient-FRCorePatientExample-v2-0445.json"))
    assert "123456789012244" not in str(caught.value)
    identity = identity_from_patient(example("Patient-FRCorePatientExample-v2-0445.json"), lenient=True)
    # HL7 table 0445 VALI is what the RNIV calls qualified.
    assert identity.status is IdentityStatus.QUAL
    assert identity.ins is not None and not identity.ins.key_valid
    assert identity.traits.birth_first_names == ("Pierre", "Yves")
    with pytest.raises(InvalidIdentifierError):
        identity_to_patient(identity)


# --------------------------------------------------------------------------- writing


def test_published_release_writes_qual_as_table_0445_vali() -> None:
    patient = identity_to_patient(dark())
    reliability = patient["extension"][0]["extension"][0]["valueCoding"]
    assert reliability == {"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445", "code": "VALI"}
    identifier = patient["identifier"][0]
    assert identifier["system"] == "urn:oid:1.2.250.1.213.1.4.8"
    assert identifier["type"]["coding"][0]["code"] == "INS-NIR"
    assert identifier["use"] == "official"


def test_nia_and_test_oids_get_their_slice_system_and_type() -> None:
    for oid, type_code in ((InsOid.NIA, "INS-NIA"), (InsOid.NIR_TEST, "INS-NIR")):
        identity = dark().updated(ins=INS.parse("260058815400233", oid=oid))
        identifier = identity_to_patient(identity)["identifier"][0]
        assert identifier["system"] == f"urn:oid:{oid.value}"
        assert identifier["type"]["coding"][0]["code"] == type_code
    with pytest.raises(FhirMappingError):
        identity_to_patient(
            dark().updated(ins=INS.parse("260058815400233", oid=InsOid.NIR_TEST)),
            settings=FrCoreSettings(production=True),
        )


@pytest.mark.parametrize("status", [IdentityStatus.PROV, IdentityStatus.RECUP, IdentityStatus.VALI])
def test_no_ins_leaves_with_a_status_that_is_not_qual(status: IdentityStatus) -> None:
    identity = dark(status).updated(ins=INS.parse("260058815400233", oid=InsOid.NIR))
    for version in FrCoreVersion:
        patient = identity_to_patient(identity, settings=FrCoreSettings(version=version))
        assert "identifier" not in patient
        assert "260058815400233" not in json.dumps(patient)
        assert patient["meta"]["profile"] == ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"]


def test_names_uses_document_and_attributes() -> None:
    traits = IdentityTraits.build(
        birth_name="Dark",
        birth_first_names="Jeanne Marie",
        sex="F",
        birth_date="1960-05-00",
        birth_place="99134",
        used_name="Martin",
        used_first_name="Jeannette",
    )
    identity = Identity(traits=traits, ins=INS.parse("260058815400233"), status=IdentityStatus.RECUP).qualify(
        IdentityDocumentKind.PASSPORT
    )
    patient = identity_to_patient(identity, settings=V22)
    assert patient["name"][1] == {"use": "usual", "family": "MARTIN", "given": ["JEANNETTE"]}
    assert patient["birthDate"] == "1960-05"
    subs = {s["url"]: s for s in patient["extension"][0]["extension"]}
    assert subs["validationMode"]["valueCoding"]["code"] == "PA"
    place = patient["extension"][1]["valueAddress"]["extension"][0]["valueCoding"]
    assert place == {"system": "https://mos.esante.gouv.fr/NOS/TRE_R20-Pays/FHIR/TRE-R20-Pays", "code": "99134"}
    doubtful = dark(IdentityStatus.PROV).updated(doubtful=True, homonym=True)
    for version in FrCoreVersion:
        back = identity_from_patient(identity_to_patient(doubtful, settings=FrCoreSettings(version=version)))
        assert back.doubtful and back.homonym and back.status is IdentityStatus.PROV


def test_a_qualified_identity_without_birth_place_is_not_written() -> None:
    no_place = dark().traits.model_copy(update={"birth_place": None})
    with pytest.raises(FhirMappingError):
        identity_to_patient(dark().updated(traits=no_place))
    assert "extension" in identity_to_patient(dark(IdentityStatus.PROV).updated(traits=no_place))


def test_dates_fhir_cannot_hold_are_refused() -> None:
    lunar = dark().traits.model_copy(update={"birth_date": BirthDate(year=1960, month=2, day=30)})
    with pytest.raises(FhirMappingError):
        identity_to_patient(dark().updated(traits=lunar))
    no_month = dark().traits.model_copy(update={"birth_date": BirthDate(year=1960, day=3)})
    with pytest.raises(FhirMappingError):
        identity_to_patient(dark().updated(traits=no_month))


def test_writer_output_is_a_valid_fhir_model() -> None:
    model = to_model(identity_to_patient(dark(), settings=V22))
    assert type(model).__name__ == "Patient"
    assert model.birthDate.isoformat() == "1960-05-30"


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(identities(statuses=(IdentityStatus.PROV, IdentityStatus.VALI, IdentityStatus.QUAL)))
def test_identity_to_fr_core_2_2_and_back_is_lossless(identity: Identity) -> None:
    assert identity_from_patient(identity_to_patient(identity, settings=V22)) == identity


@settings(max_examples=60, deadline=None)
@given(identities(statuses=(IdentityStatus.PROV, IdentityStatus.QUAL)))
def test_identity_to_fr_core_2_1_and_back_is_lossless_for_prov_and_qual(identity: Identity) -> None:
    assert identity_from_patient(identity_to_patient(identity)) == identity


@settings(max_examples=80, deadline=None)
@given(identities(), st.sampled_from(list(FrCoreVersion)))
def test_the_ins_never_leaves_with_a_status_that_is_not_qual(identity: Identity, version: FrCoreVersion) -> None:
    patient = identity_to_patient(identity, settings=FrCoreSettings(version=version))
    systems = {i.get("system") for i in patient.get("identifier", [])}
    assert bool(systems & INS_SYSTEMS) == (identity.status is IdentityStatus.QUAL)
    if identity.ins is not None and identity.status is not IdentityStatus.QUAL:
        assert identity.ins.matricule not in json.dumps(patient)


# --------------------------------------------------------------------------- hostile input


def test_an_ins_with_a_status_that_is_not_qualified_is_refused_on_reading() -> None:
    patient = identity_to_patient(dark(), settings=V22)
    patient["extension"][0]["extension"][0]["valueCoding"]["code"] = "VALI"
    with pytest.raises(FhirMappingError) as caught:
        identity_from_patient(patient)
    assert "260058815400233" not in str(caught.value) and "DARK" not in str(caught.value).upper()


NSS_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}]}


def test_the_nss_is_never_read_as_the_ins() -> None:
    """FR Core's NSS slice shares the INS-NIR system (…1.4.8) with type NH; for a child it is often a parent's NIR."""
    parent = INS.parse("160058815400283", oid=InsOid.NIR)  # a valid NIR that is not the patient's
    nss = {"use": "official", "type": NSS_TYPE, "system": "urn:oid:1.2.250.1.213.1.4.8", "value": parent.matricule}
    # Qualified with its INS and the insured parent's NSS beside it: the INS is the patient's, the NSS is ignored.
    both = identity_to_patient(dark(), settings=V22)
    both["identifier"].append(nss)
    read = identity_from_patient(both)
    assert read.ins == dark().ins
    # A Patient saying qualified with only the NSS: no INS, refused (never the parent's NIR as the patient's INS).
    only = copy.deepcopy(both)
    only["identifier"] = [nss]
    with pytest.raises(FhirMappingError) as caught:
        identity_from_patient(only)
    assert "160058815400283" not in str(caught.value)
    # A provisional identity with an NSS reads as provisional, without an INS.
    provisional = identity_to_patient(dark(IdentityStatus.PROV), settings=V22)
    provisional["identifier"] = [nss]
    assert identity_from_patient(provisional).ins is None
    # An identifier on an INS system without the INS type is not taken either.
    untyped = copy.deepcopy(both)
    del untyped["identifier"][0]["type"]
    untyped["identifier"].pop()
    with pytest.raises(FhirMappingError):
        identity_from_patient(untyped)


def test_qual_without_ins_and_recup_are_refused() -> None:
    patient = identity_to_patient(dark(), settings=V22)
    without = copy.deepcopy(patient)
    del without["identifier"]
    with pytest.raises(FhirMappingError):
        identity_from_patient(without)
    with pytest.raises(FhirMappingError):
        identity_from_patient(identity_to_patient(dark(IdentityStatus.RECUP), settings=V22))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.update(gender="unknown"),
        lambda p: p.pop("birthDate"),
        lambda p: p.update(name=[{"use": "usual", "family": "X"}]),
        lambda p: p["identifier"].append(dict(p["identifier"][0], value="160058815400283")),
        lambda p: p["identifier"][0].update(value="260058815400234"),
        lambda p: p["extension"][0]["extension"][0]["valueCoding"].update(system="http://example.org/other"),
    ],
)
def test_damaged_patients_raise_mapping_errors_without_identity(damage: Any) -> None:
    patient = identity_to_patient(dark())
    damage(patient)
    with pytest.raises(FhirMappingError) as caught:
        identity_from_patient(patient)
    text = str(caught.value) + repr(caught.value.__cause__)
    assert "26005881540023" not in text and "DARK" not in text.upper() and "1960" not in text


def test_invalid_fhir_is_a_structure_error_without_its_content() -> None:
    patient = identity_to_patient(dark())
    patient["birthDate"] = "1960-13-45"
    patient["name"][0]["family"] = {"not": "a string"}
    with pytest.raises(FhirStructureError) as caught:
        identity_from_patient(patient)
    assert "1960-13-45" not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(FhirStructureError):
        identity_from_patient(b"{not json")
    with pytest.raises(FhirStructureError):
        identity_from_patient({"resourceType": "Practitioner"})


def test_check_patient_refuses_another_patient_naming_only_traits() -> None:
    other = dark().traits.model_copy(update={"birth_name": "DURAND"})
    with pytest.raises(PatientMismatchError) as caught:
        check_patient(identity_to_patient(dark()), dark().updated(traits=other))
    assert caught.value.problems == ("birth_name differs",)
    assert "DURAND" not in str(caught.value) and "DARK" not in str(caught.value)


def test_the_package_imports_without_the_extras_and_names_them_when_used() -> None:
    import subprocess
    import sys

    script = """
import sys
for name in ("fhir", "fhir.resources", "zxingcpp", "PIL", "pypdf"):
    sys.modules[name] = None
import dmp_connector.fhir, dmp_connector.ins, dmp_connector.ins.datamatrix_image, dmp_connector.cli
from dmp_connector.errors import ConfigurationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits
from dmp_connector.ins.datamatrix_image import read_image, to_png
traits = IdentityTraits.build(
    birth_name="A", birth_first_names="B", sex="F", birth_date="2000-01-01", birth_place="88154"
)
identity = Identity(traits=traits, ins=INS.parse("260058815400233"), status=IdentityStatus.QUAL)
for call in (lambda: dmp_connector.fhir.identity_to_patient(identity), lambda: read_image(b"x")):
    try:
        call()
    except ConfigurationError as exc:
        print(exc.hint)
print(len(to_png(dmp_connector.ins.encode_payload(identity))) > 100)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [
        "pip install 'dmp-connector[fhir]'",
        "pip install 'dmp-connector[datamatrix]'",
        "True",
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["extension", "identifier", "name", "gender", "birthDate"]), json_values)
def test_any_damage_to_a_patient_is_read_or_refused_with_a_typed_error(key: str, value: Any) -> None:
    patient = identity_to_patient(dark())
    patient[key] = value
    message = ""
    try:
        identity_from_patient(patient)
    except (FhirMappingError, FhirStructureError) as exc:
        message = str(exc)
    assert "260058815400233" not in message
