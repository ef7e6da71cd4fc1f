"""The VSM 2023.01 builder: valid documents for several patients and authors, typed entries read back."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.cda import (
    Author,
    ClinicalDocument,
    Narrative,
    RawEntry,
    Section,
    StructuredBody,
    build,
    parse,
    read_entry,
)
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import (
    AllergyClinicalStatus,
    MedicationAbsence,
    PracticeSetting,
    ProblemClinicalStatus,
    ProblemKind,
)
from dmp_connector.cda.volets import (
    VSM_FORMAT_CODE,
    VSM_SERVICE_CODE,
    VSM_TEMPLATE,
    Allergy,
    InternalReference,
    Medication,
    NoMedication,
    Problem,
    Quantity,
    VsmContent,
    as_vsm,
    vsm_document,
    vsm_problems,
)
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from .conftest import PARIS
from .kit_engine import KIT  # the 2025 ANS kit (../shared/cda-2025)

CIM10 = "2.16.840.1.113883.6.3"
SNOMED = "2.16.840.1.113883.6.96"
CIS = "1.2.250.1.213.2.3.1"
EDQM = "0.4.0.127.0.16.1.1.2.1"
HL7 = "{urn:hl7-org:v3}"

ANGINA = Code.of("I20.0", CIM10, "Angine de poitrine instable")
TIA = Code.of("G45.9", CIM10, "Accident ischémique cérébral transitoire, sans précision")
DRUG_ALLERGY = Code.of("416098002", SNOMED, "allergie médicamenteuse")
PARACETAMOL = Code.of("60234100", CIS, "PARACETAMOL")
ORAL = Code.of("20053000", EDQM, "Voie orale")


def full_content() -> VsmContent:
    """Every part of a VSM filled in, as the ANS example does."""
    angina = Problem(value=ANGINA, start=date(2019, 8, 11), clinical_status=ProblemClinicalStatus.ACTIVE)
    return VsmContent(
        active_problems=(angina, Problem(value=TIA, start=date(2019, 8, 11))),
        medical_history=(
            Problem(
                value=Code.of("N10", CIM10, "Pyélonéphrite aiguë"),
                start=date(2018, 4, 22),
                end=date(2018, 4, 30),
                kind=ProblemKind.DISEASE,
            ),
        ),
        allergies=(
            Allergy(
                kind=DRUG_ALLERGY,
                agent=PARACETAMOL,
                start=date(2018, 6, 3),
                clinical_status=AllergyClinicalStatus.ACTIVE,
            ),
        ),
        history_note="Appendicectomie en 1990.",
        risk_factors="Tabagisme : 25 paquets-années. Mère : drépanocytose.",
        occupational_risk_factors="Exposition à l'amiante à contrôler.",
        vigilance_points=("ECG : hémibloc antérieur gauche", "Hypertriglycéridémie"),
        medications=(
            Medication(
                name="PLAVIX 75 mg",
                product=Code.of("63564053", CIS, "PLAVIX 75 mg, comprimé pelliculé"),
                product_translations=(Code.of("3400938022209", "1.2.250.1.213.2.3.2", "PLAVIX 75 mg x30"),),
                start=date(2019, 8, 11),
                period=Quantity.of(1, "d"),
                route=ORAL,
                dose=Quantity.of(1, "{tablet}"),
                reason=InternalReference(code=ANGINA, id=angina.concern_id),
                entry_type_code="DRIV",
            ),
            Medication(name="Préparation magistrale", start=datetime(2024, 1, 5, 8, 0, tzinfo=PARIS)),
        ),
        treatment_note="Pas d'automédication.",
    )


CONTENTS: dict[str, Callable[[], VsmContent]] = {
    "full": full_content,
    "empty": VsmContent,
    "no treatment": lambda: VsmContent(no_long_term_treatment=True, allergies=full_content().allergies),
}


@pytest.fixture
def make_vsm(cda_settings: Settings, effective_time: datetime) -> Callable[..., ClinicalDocument]:
    def make(content: VsmContent, patient: Identity, **fields: Any) -> ClinicalDocument:
        return vsm_document(
            content,
            settings=cda_settings,
            patient=patient,
            effective_time=effective_time,
            service_start=date(2024, 3, 12),
            practice_setting=PracticeSetting.AMBULATORY,
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


# --------------------------------------------------------------------------- valid documents


@pytest.mark.parametrize("content", sorted(CONTENTS))
@pytest.mark.parametrize("patient_fixture", ["qualified_patient", "second_patient"])
def test_vsm_is_schema_valid_and_reads_back(
    content: str,
    patient_fixture: str,
    request: pytest.FixtureRequest,
    make_vsm: Callable[..., ClinicalDocument],
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    document = make_vsm(CONTENTS[content](), request.getfixturevalue(patient_fixture))
    data = build(document)
    assert_schema_valid(data)
    again = parse(data)
    assert again == document
    assert build(again) == data


def test_vsm_with_several_authors(
    make_vsm: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    author: Author,
    other_author: Author,
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    single = make_vsm(full_content(), qualified_patient)
    document = as_vsm(single.model_copy(update={"authors": (author, other_author)}))
    assert len(document.authors) == 2
    data = build(document)
    assert_schema_valid(data)
    assert parse(data) == document


def test_vsm_header(make_vsm: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = make_vsm(VsmContent(), qualified_patient)
    assert (document.type_code.code, document.type_code.code_system) == ("SYNTH", "1.2.250.1.213.1.1.4.12")
    assert document.template_ids[-1] == VSM_TEMPLATE
    assert VSM_TEMPLATE.extension == "2023.01"
    assert document.service_events[0].code == VSM_SERVICE_CODE
    assert VSM_SERVICE_CODE.display_name == "Historique et clinique"
    assert VSM_FORMAT_CODE.code == "urn:asip:ci-sis:vsm:2012"
    assert vsm_problems(document) == []


def test_vsm_body_layout() -> None:
    body = full_content().to_body()
    top = [s.template_ids[0].root for s in body.sections]
    assert top == ["1.2.250.1.213.1.1.2.29", "1.3.6.1.4.1.19376.1.5.3.1.3.27", "1.2.250.1.213.1.1.2.32"]
    history, risks = body.sections[0].subsections
    assert [s.code.code for s in history.subsections if s.code] == ["11450-4", "11348-0", "48765-2"]
    assert [s.code.code for s in risks.subsections if s.code] == ["10161-8"]
    plan = body.sections[2]
    assert plan.text is None, "the ANS rule forbids a text next to the Traitements subsection"
    assert all(s.id is not None for s in _sections(body.sections)), "the ANS section rules want an id"


def test_empty_vsm_says_not_informed() -> None:
    body = VsmContent().to_body()
    texts = [s.text.xml for s in _sections(body.sections) if s.text is not None]
    assert len(texts) == 4
    assert all("Non renseigné" in t for t in texts)
    assert not any(s.entries for s in _sections(body.sections))


def test_a_vsm_without_long_term_treatment_says_so(
    make_vsm: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = parse(build(make_vsm(VsmContent(no_long_term_treatment=True), qualified_patient)))
    (medications,) = _body(document).sections[2].subsections
    (none,) = medications.entries
    assert isinstance(none, NoMedication) and none.code == MedicationAbsence.NO_KNOWN_MEDICATIONS
    with pytest.raises(ValidationError, match="contradicts"):
        VsmContent(no_long_term_treatment=True, medications=full_content().medications)


def test_every_narrative_reference_has_its_anchor(
    make_vsm: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    tree = etree.fromstring(build(make_vsm(full_content(), qualified_patient)))  # noqa: TID251 - our own output
    anchors = {e.get("ID") for e in tree.iter() if e.get("ID")}
    references = {r.get("value", "").lstrip("#") for r in tree.iter(f"{HL7}reference")}
    assert references
    assert references <= anchors
    content = tree.find(f".//{HL7}content[@ID='trt-1']")
    assert content is not None and content.text == "PLAVIX 75 mg"


def test_entries_read_back_typed(make_vsm: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = parse(build(make_vsm(full_content(), qualified_patient)))
    entries = [e for s in _sections(_body(document).sections) for e in s.entries]
    assert [type(e).__name__ for e in entries] == [
        "Problem",
        "Problem",
        "Problem",
        "Allergy",
        "Medication",
        "Medication",
    ]
    medication = entries[4]
    assert isinstance(medication, Medication)
    assert medication.dose == Quantity(value=Decimal("1"), unit="{tablet}")
    assert medication.reason is not None and medication.reason.code == ANGINA
    assert medication.entry_type_code == "DRIV"


# --------------------------------------------------------------------------- invalid inputs


def test_problem_kind_outside_its_value_set() -> None:
    content = VsmContent(active_problems=(Problem(value=ANGINA, kind=Code.of("12345", SNOMED, "autre")),))
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == ("active_problems[0].kind: 12345 is not in JDV_ProblemCodes_CISIS",)


def test_status_and_route_outside_their_value_sets() -> None:
    content = VsmContent(
        allergies=(Allergy(kind=DRUG_ALLERGY, clinical_status=ProblemClinicalStatus.REMISSION),),
        medications=(Medication(name="X", route=Code.of("99999999", EDQM, "voie inconnue")),),
    )
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert len(caught.value.problems) == 2
    assert "allergies[0].clinical_status" in caught.value.problems[0]
    assert "JDV_RouteofAdministration" in caught.value.problems[1]


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda: Allergy(kind=PARACETAMOL), "allergy.kind.code_system"),
        (lambda: Medication(name="X", product=Code.of("3400938022209", "1.2.250.1.213.2.3.2")), "medication.product"),
        (lambda: Medication(name="X", route=Code.of("PO", "2.16.840.1.113883.5.999")), "medication.route"),
        (lambda: Problem(value=ANGINA, start=date(2020, 1, 2), end=date(2020, 1, 1)), "problem.end"),
        (lambda: Medication(name="X", reference="1-not-an-id"), "reference"),
        (lambda: Medication(name=""), "name"),
    ],
)
def test_entries_refuse_what_the_volet_forbids(make: Callable[[], object], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make()
    assert any(where in problem for problem in caught.value.problems), caught.value.problems


def test_a_body_without_the_required_sections_is_refused(
    make_vsm: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_vsm(VsmContent(), qualified_patient)
    lone = Section(title="Notes", text=Narrative.from_text("texte libre"))
    with pytest.raises(ValidationError) as caught:
        as_vsm(document.model_copy(update={"body": StructuredBody(sections=(lone,))}))
    missing = [p for p in caught.value.problems if "is missing" in p]
    assert len(missing) == 3
    assert "Traitement au long cours" in caught.value.message


def test_vsm_problems_names_header_errors(
    make_vsm: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_vsm(VsmContent(), qualified_patient)
    wrong = document.model_copy(
        update={
            "type_code": Code.of("11490-0", "2.16.840.1.113883.6.1", "Lettre"),
            "template_ids": document.template_ids[:2],
            "service_events": (document.service_events[0].model_copy(update={"code": None}),),
        }
    )
    found = vsm_problems(wrong)
    assert [p.split(":")[0] for p in found] == ["type_code", "template_ids", "service_events[0].code"]


# --------------------------------------------------------------------------- readers


def test_reader_declines_what_the_model_cannot_hold() -> None:
    element = Problem(value=ANGINA, reference="pb-1").to_element()
    observation = element.find(f".//{HL7}observation")
    assert observation is not None
    observation.set("negationInd", "true")
    assert isinstance(read_entry(element), RawEntry)
    element = Medication(name="X").to_element()
    administration = element[0]
    etree.SubElement(administration, f"{HL7}precondition")
    assert isinstance(read_entry(element), RawEntry)


def test_entry_elements_read_back_to_the_same_model() -> None:
    for entry in (*full_content().active_problems, *full_content().allergies, *full_content().medications):
        assert read_entry(entry.to_element()) == entry


def test_ans_vsm_example_reads_into_typed_entries(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    document = parsed_examples["VSM_1.4_2022.01.xml"]
    entries = [e for s in _sections(_body(document).sections) for e in s.entries]
    problems = [e for e in entries if isinstance(e, Problem)]
    assert [p.value.code for p in problems] == ["G45.9", "I20.0", "N10", "I21.1"]
    assert problems[2].end == date(2018, 4, 30)
    allergy = next(e for e in entries if isinstance(e, Allergy))
    assert allergy.agent is not None and allergy.agent.code == "60234100"
    assert allergy.clinical_status is not None and allergy.clinical_status.code == "inactive"
    medications = [e for e in entries if isinstance(e, Medication)]
    assert [m.name for m in medications] == ["PLAVIX 75 mg", "COUMADINE 5mg"]
    assert medications[0].period == Quantity.of(1, "d")
    assert medications[1].period == Quantity.of(6, "h")
    assert medications[0].reason is not None and medications[0].reason.code.code == "I20.0"
    kept = [e for e in entries if isinstance(e, RawEntry)]
    assert len(kept) == 4, "social history, procedure and family history stay as they came"
    assert re.search(r"organizer|procedure", " ".join(k.xml for k in kept))


def test_vsm_metadata_for_the_dmp(make_vsm: Callable[..., ClinicalDocument], second_patient: Identity) -> None:
    metadata = extract_metadata(make_vsm(full_content(), second_patient))
    assert metadata.format_code == VSM_FORMAT_CODE
    assert metadata.type_code.code == "SYNTH"
    assert metadata.class_code.code == "11"


_day = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
# Fixed offsets: a zoneinfo time in the repeated hour of a DST change never equals its fixed-offset twin (PEP 495).
_moment = st.datetimes(
    min_value=datetime(1950, 1, 1),
    max_value=datetime(2090, 1, 1),
    timezones=st.sampled_from([timezone(timedelta(hours=1)), timezone(timedelta(hours=2))]),
).map(lambda d: d.replace(microsecond=0))
_quantity = st.builds(
    Quantity,
    value=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10_000), places=3),
    unit=st.sampled_from(["1", "mg", "{tablet}", "d", "h", "mL/h"]),
)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(
    start=st.none() | _day | _moment,
    days=st.none() | st.integers(min_value=0, max_value=3650),
    name=_text,
    dose=st.none() | _quantity,
    period=st.none() | _quantity,
    rate=st.none() | _quantity,
)
def test_any_medication_reads_back(
    start: date | None,
    days: int | None,
    name: str,
    dose: Quantity | None,
    period: Quantity | None,
    rate: Quantity | None,
) -> None:
    end = start + timedelta(days=days) if start is not None and days is not None else None
    medication = Medication(name=name.strip() or "x", start=start, end=end, dose=dose, period=period, rate=rate)
    assert read_entry(medication.to_element()) == medication


@settings(max_examples=40, deadline=None)
@given(start=st.none() | _day | _moment, label=_text, ended=st.booleans())
def test_any_problem_reads_back(start: date | datetime | None, label: str, ended: bool) -> None:
    end = start if ended and start is not None else None
    problem = Problem(value=Code.of("R69", CIM10, label), start=start, end=end, reference="pb-x")
    assert read_entry(problem.to_element()) == problem


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
    make_vsm: Callable[..., ClinicalDocument],
    validator: CdaValidator,
) -> None:
    document = make_vsm(CONTENTS[content](), request.getfixturevalue(patient_fixture))
    report = validator.validate(build(document))
    assert report.ok, report.to_text()
    assert report.volet == "VSM_2023.01"
    assert set(report.schematrons) == {"VSM_2023.01", *GENERIC_SCHEMATRONS}


def test_clashing_narrative_references_are_refused() -> None:
    first = Problem(value=ANGINA, reference="mon-pb")
    content = VsmContent(active_problems=(first, Problem(value=TIA, reference="mon-pb")))
    with pytest.raises(ValidationError, match="'mon-pb' is used twice"):
        content.to_body()
    clash = VsmContent(active_problems=(Problem(value=ANGINA), Problem(value=TIA, reference="pb-actif-1")))
    with pytest.raises(ValidationError, match="used twice"):
        clash.to_body()
