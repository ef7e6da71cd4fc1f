"""The LDL-SES 2022.01 builder: valid discharge letters, clear refusals, the ANS example read back."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from dmp_connector.cda import (
    Author,
    ClinicalDocument,
    Narrative,
    RawEntry,
    Section,
    StructuredBody,
    build,
    parse,
)
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import (
    AdmissionMode,
    DischargeMode,
    DocumentStatus,
    EncounterType,
    MedicationAbsence,
    PracticeSetting,
)
from dmp_connector.cda.volets import (
    LDL_SES_FORMAT_CODE,
    LDL_SES_TEMPLATE,
    LdlSesContent,
    MaxDose,
    Medication,
    NoMedication,
    Quantity,
    SimpleObservation,
    StaySummary,
    as_ldl_ses,
    ldl_ses_document,
    ldl_ses_problems,
)
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from .conftest import PARIS
from .kit_engine import KIT  # the 2025 ANS kit (../shared/cda-2025)

CIS = "1.2.250.1.213.2.3.1"
SA01 = Code.of("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé")
ADMITTED = datetime(2024, 2, 20, 11, 17, tzinfo=PARIS)
DISCHARGED = datetime(2024, 3, 12, 9, 30, tzinfo=PARIS)


def stay(**changes: object) -> StaySummary:
    values: dict[str, object] = {
        "admission_mode": AdmissionMode.EMERGENCY,
        "admission_date": ADMITTED,
        "discharge_mode": DischargeMode.HOME,
        "discharge_date": DISCHARGED,
        "summary": "Pneumopathie communautaire traitée par amoxicilline, évolution favorable.",
        "mdro_screening": True,
        "transfusion": False,
        "blood_derivatives": False,
    }
    values.update(changes)
    return StaySummary.model_validate(values)


def full_content() -> LdlSesContent:
    return LdlSesContent(
        status=DocumentStatus.DONE,
        reason_for_admission="Dyspnée fébrile",
        stay=stay(
            adverse_events="Aucun",
            mdro_identified="Klebsiella pneumoniae BLSE",
            transfusion=True,
            transfusion_accidents="Aucun",
            blood_derivatives=True,
            blood_derivative_adverse_events="Aucun",
        ),
        discharge_medications=(
            Medication(
                name="AMOXICILLINE 1 g",
                product=Code.of("60234100", CIS, "AMOXICILLINE 1 g"),
                product_translations=(Code.of("J01CA04", "2.16.840.1.113883.6.73", "Amoxicilline"),),
                start=date(2024, 3, 12),
                end=date(2024, 3, 19),
                period=Quantity.of(8, "h"),
                dose=Quantity.of(1, "{tbl}"),
                rate=Quantity.of(3, "g/d"),
                max_dose=MaxDose(numerator=Quantity.of(3, "g"), denominator=Quantity.of(1, "d")),
            ),
        ),
        discharge_medications_note="Reprise du traitement habituel.",
        pending_results=("Hémocultures en cours",),
    )


def minimal_content() -> LdlSesContent:
    return LdlSesContent(status=DocumentStatus.IN_PROGRESS, reason_for_admission="Chute", stay=stay())


CONTENTS: dict[str, Callable[[], LdlSesContent]] = {"full": full_content, "minimal": minimal_content}


@pytest.fixture
def make_letter(cda_settings: Settings, effective_time: datetime) -> Callable[..., ClinicalDocument]:
    def make(content: LdlSesContent, patient: Identity, **fields: Any) -> ClinicalDocument:
        return ldl_ses_document(
            content,
            settings=cda_settings,
            patient=patient,
            effective_time=effective_time,
            practice_setting=PracticeSetting.HOSPITAL,
            facility_type=SA01,
            **fields,
        )

    return make


def _sections(sections: tuple[Section, ...]) -> Iterator[Section]:
    for section in sections:
        yield section
        yield from _sections(section.subsections)


def _body(document: ClinicalDocument) -> StructuredBody:
    assert isinstance(document.body, StructuredBody)
    return document.body


@pytest.mark.parametrize("content", sorted(CONTENTS))
@pytest.mark.parametrize("patient_fixture", ["qualified_patient", "second_patient"])
def test_letter_is_schema_valid_and_reads_back(
    content: str,
    patient_fixture: str,
    request: pytest.FixtureRequest,
    make_letter: Callable[..., ClinicalDocument],
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    document = make_letter(CONTENTS[content](), request.getfixturevalue(patient_fixture))
    data = build(document)
    assert_schema_valid(data)
    again = parse(data)
    assert again == document
    assert build(again) == data


def test_letter_with_several_authors(
    make_letter: Callable[..., ClinicalDocument],
    second_patient: Identity,
    author: Author,
    other_author: Author,
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    single = make_letter(full_content(), second_patient)
    document = as_ldl_ses(single.model_copy(update={"authors": (other_author, author)}))
    data = build(document)
    assert_schema_valid(data)
    assert parse(data) == document


def test_letter_header(make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = make_letter(minimal_content(), qualified_patient)
    assert (document.type_code.code, document.type_code.code_system) == ("11490-0", "2.16.840.1.113883.6.1")
    assert document.template_ids[-1] == LDL_SES_TEMPLATE
    assert LDL_SES_TEMPLATE.extension == "2022.01"
    event = document.service_events[0].effective_time
    assert event is not None and (event.low, event.high) == (ADMITTED, DISCHARGED)
    assert document.encounter.code == EncounterType.INPATIENT
    assert LDL_SES_FORMAT_CODE.code == "urn:asip:ci-sis:ldl-ses:2017"
    assert ldl_ses_problems(document) == []


def test_letter_body_layout() -> None:
    body = full_content().to_body()
    assert [s.template_ids[-1].root for s in body.sections] == [
        "1.2.250.1.213.1.1.2.35.1",
        "1.2.250.1.213.1.1.2.127",
        "1.2.250.1.213.1.1.2.163.1",
        "1.2.250.1.213.1.1.2.146",
        "1.2.250.1.213.1.1.2.150",
    ]
    events = body.sections[2].entries
    codes = [e.code.code for e in events if isinstance(e, SimpleObservation)]
    assert codes == [
        "ORG-070",
        "ORG-074",
        "MED-142",
        "MED-143",
        "MED-309",
        "MED-144",
        "MED-145",
        "MED-146",
        "MED-147",
        "MED-148",
    ]
    values = {e.code.code: e.value for e in events if isinstance(e, SimpleObservation)}
    assert values["ORG-070"] == AdmissionMode.EMERGENCY
    assert values["MED-309"] is True
    assert values["MED-144"] == "Klebsiella pneumoniae BLSE"


def test_minimal_letter_leaves_optional_observations_out() -> None:
    body = minimal_content().to_body()
    assert len(body.sections) == 4
    assert len(body.sections[2].entries) == 6
    discharge = body.sections[3]
    (none,) = discharge.entries
    assert isinstance(none, NoMedication)
    assert (none.code, none.reference) == (MedicationAbsence.NO_INFORMATION, "trt-sortie-aucun")
    assert discharge.text is not None and "Pas d'information" in discharge.text.xml


def test_a_letter_without_treatment_says_so(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    content = LdlSesContent(
        status=DocumentStatus.DONE,
        reason_for_admission="Bilan",
        stay=stay(),
        no_discharge_medication=True,
        discharge_medications_note="Arrêt de tous les traitements.",
    )
    document = parse(build(make_letter(content, qualified_patient)))
    (none,) = _body(document).sections[3].entries
    assert isinstance(none, NoMedication) and none.code == MedicationAbsence.NO_KNOWN_MEDICATIONS
    with pytest.raises(ValidationError, match="contradicts"):
        LdlSesContent.model_validate(
            {**content.model_dump(), "discharge_medications": full_content().discharge_medications}
        )


def test_entries_read_back_typed(make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = parse(build(make_letter(full_content(), qualified_patient)))
    entries = [e for s in _sections(_body(document).sections) for e in s.entries]
    assert sum(isinstance(e, SimpleObservation) for e in entries) == 11
    medication = next(e for e in entries if isinstance(e, Medication))
    assert medication.max_dose == MaxDose(numerator=Quantity.of(3, "g"), denominator=Quantity.of(1, "d"))
    assert medication.rate == Quantity(value=Decimal("3"), unit="g/d")


# --------------------------------------------------------------------------- invalid inputs


def test_admission_mode_outside_its_value_set() -> None:
    content = LdlSesContent(
        status=DocumentStatus.DONE,
        reason_for_admission="Chute",
        stay=stay(admission_mode=DischargeMode.HOME),
    )
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == ("stay.admission_mode: 160849004 is not in JDV_ModaliteEntree_CISIS",)


def test_status_outside_its_value_set() -> None:
    content = LdlSesContent(status=AdmissionMode.TRANSFER, reason_for_admission="Chute", stay=stay())
    with pytest.raises(ValidationError, match="JDV_StatutDoc_CISIS"):
        content.to_body()


def test_missing_reason_and_inverted_stay_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        LdlSesContent(status=DocumentStatus.DONE, reason_for_admission="", stay=stay())
    assert any("reason_for_admission" in p for p in caught.value.problems)
    with pytest.raises(ValidationError, match="discharge is before the admission"):
        stay(discharge_date=date(2024, 1, 1))
    with pytest.raises(ValidationError) as missing:
        LdlSesContent.model_validate({"status": DocumentStatus.DONE, "reason_for_admission": "Chute"})
    assert any("stay" in p for p in missing.value.problems)


def test_a_body_without_the_required_sections_is_refused(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_letter(minimal_content(), qualified_patient)
    sections = _body(document).sections
    without_reason = StructuredBody(sections=(sections[0], *sections[2:]))
    with pytest.raises(ValidationError) as caught:
        as_ldl_ses(document.model_copy(update={"body": without_reason}))
    assert caught.value.problems == (
        "body: the section 'Motif de l'hospitalisation' (1.3.6.1.4.1.19376.1.5.3.1.3.1) is missing",
    )
    lone = StructuredBody(sections=(Section(title="Notes", text=Narrative.from_text("texte")),))
    with pytest.raises(ValidationError) as all_missing:
        as_ldl_ses(document.model_copy(update={"body": lone}))
    assert len(all_missing.value.problems) == 4


# --------------------------------------------------------------------------- the ANS example


def test_ans_letter_reads_into_typed_entries(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    document = parsed_examples["LDL-SES_2022.01.xml"]
    assert ldl_ses_problems(document) == []
    entries = [e for s in _sections(_body(document).sections) for e in s.entries]
    observations = {e.code.code: e for e in entries if isinstance(e, SimpleObservation)}
    assert observations["GEN-065"].value == Code.of("385651009", "2.16.840.1.113883.6.96", "en cours d'exécution")
    assert observations["ORG-074"].value == Code.of(
        "GEN-092.06.01", "1.2.250.1.213.1.1.4.322", "Autre établissement de santé"
    )
    assert observations["MED-309"].value is True
    assert observations["MED-145"].value is False
    assert observations["MED-144"].value == "Streptococcus pneumoniae"
    assert "ORG-070" not in observations, "the admission mode has an author, which the model does not hold"
    medications = [e for e in entries if isinstance(e, Medication)]
    assert [m.name for m in medications] == ["SOLIAN 100 mg", "LEPONEX 100 mg"]
    assert medications[1].product_translations[0].code == "N05AH02"
    assert medications[1].max_dose == MaxDose(numerator=Quantity.of(300, "mg"), denominator=Quantity.of(1, "d"))
    assert any(isinstance(e, RawEntry) for e in entries)


def test_letter_metadata_for_the_dmp(make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    metadata = extract_metadata(make_letter(full_content(), qualified_patient))
    assert metadata.format_code == LDL_SES_FORMAT_CODE
    assert metadata.class_code.code == "10"
    assert metadata.healthcare_facility_type_code == SA01


# --------------------------------------------------------------------------- the ANS schematrons


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    """Validation against the kit: structural checks, the XSD, the volet and the five kit-wide schematrons."""
    pytest.importorskip("saxonche")
    if not KIT.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    cache = tmp_path_factory.getbasetemp() / "volet-schematrons"  # shared by both volet modules
    cache.mkdir(exist_ok=True)
    return CdaValidator(CdaSettings(kit_dir=KIT, cache_dir=cache))


@pytest.mark.parametrize("content", sorted(CONTENTS))
@pytest.mark.parametrize("patient_fixture", ["qualified_patient", "second_patient"])
def test_passes_every_schematron(
    content: str,
    patient_fixture: str,
    request: pytest.FixtureRequest,
    make_letter: Callable[..., ClinicalDocument],
    validator: CdaValidator,
) -> None:
    document = make_letter(CONTENTS[content](), request.getfixturevalue(patient_fixture))
    report = validator.validate(build(document))
    assert report.ok, report.to_text()
    assert report.volet == "LDL-SES_2022.01"
    assert set(report.schematrons) == {"LDL-SES_2022.01", *GENERIC_SCHEMATRONS}
