"""The VAC-NOTE 2023.01 builder and reader: valid vaccination notes, clear refusals, the ANS example read typed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import pytest
from lxml import etree

from dmp_connector.cda import AssignedEntity, ClinicalDocument, Narrative, Section, StructuredBody, build, parse
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import JDV_IMMUNIZATION_ROUTE_CODE, JDV_J07_XDS_TYPE_CODE, PracticeSetting
from dmp_connector.cda.volets import (
    VAC_NOTE_FORMAT_CODE,
    VAC_NOTE_TEMPLATE,
    VAC_NOTE_TYPE_CODE,
    Vaccination,
    VaccinationReaction,
    VacNoteContent,
    as_vac_note,
    vac_note_document,
    vac_note_problems,
    vac_note_vaccination,
)
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from .conftest import AMBULATOIRE, KIT
from .kit_engine import kit_findings, volet_schematron
from .test_cr_img import _normalised
from .xmldiff import differences, document_differences

NAME = "VAC-NOTE_2023.01.xml"
FIRST_SERIES = Code.of("INITIMMUNIZ", "2.16.840.1.113883.5.4", "1ère série vaccinante")
INTRAMUSCULAR = Code.of("20035000", "0.4.0.127.0.16.1.1.2.1", "Voie intramusculaire")
LEFT_DELTOID = Code.of("16217701000119102", "2.16.840.1.113883.6.96", "deltoïde gauche")
TETANUS = Code.of("68747507", "1.2.250.1.213.2.3.1", "VACCIN TETANIQUE PASTEUR, suspension injectable")
TETANUS_ATC = Code.of("J07AM", "2.16.840.1.113883.6.73", "vaccins tétaniques")
FEVER = Code.of("R50.2", "2.16.840.1.113883.6.3", "Fièvre due à des médicaments")


def vaccination(**changes: object) -> Vaccination:
    values: dict[str, object] = {
        "code": FIRST_SERIES,
        "day": date(2024, 3, 12),
        "product": TETANUS,
        "atc": TETANUS_ATC,
        "cip": Code.of("3400932857241", "1.2.250.1.213.2.3.2", "VACCIN TETANIQUE PASTEUR 1 seringue"),
        "product_name": "vaccins tétaniques",
        "lot_number": "4456672",
        "route": INTRAMUSCULAR,
        "approach_site": LEFT_DELTOID,
        "dose_number": 2,
        "reactions": (VaccinationReaction(value=FEVER, start=date(2024, 3, 12)),),
        "comment": "Prise récente de prednisolone",
    }
    values.update(changes)
    return Vaccination.model_validate(values)


def minimal() -> Vaccination:
    return Vaccination(
        code=FIRST_SERIES,
        day=date(2024, 3, 12),
        product=TETANUS,
        atc=TETANUS_ATC,
        product_name="VACCIN TETANIQUE PASTEUR",
        lot_number="A1",
    )


@pytest.fixture
def performer(cda_settings: Settings) -> AssignedEntity:
    return AssignedEntity.from_professional(
        cda_settings.require_professional(),
        organisation=cda_settings.require_organisation(),
        industry_class=AMBULATOIRE,
    )


@pytest.fixture
def make_note(cda_settings: Settings, effective_time: datetime) -> Callable[..., ClinicalDocument]:
    def make(given: Vaccination, patient: Identity, **fields: Any) -> ClinicalDocument:
        return vac_note_document(
            VacNoteContent(vaccination=given),
            settings=cda_settings,
            patient=patient,
            effective_time=effective_time,
            practice_setting=PracticeSetting.AMBULATORY,
            **fields,
        )

    return make


@pytest.mark.parametrize("kind", ["full", "minimal"])
def test_note_is_schema_valid_and_reads_back(
    kind: str,
    make_note: Callable[..., ClinicalDocument],
    performer: AssignedEntity,
    qualified_patient: Identity,
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    given = vaccination(performer=performer) if kind == "full" else minimal()
    document = make_note(given, qualified_patient)
    data = build(document)
    assert_schema_valid(data)
    again = parse(data)
    assert again == document
    assert build(again) == data
    read = vac_note_vaccination(again)
    assert read is not None and read.lot_number == given.lot_number and read.day == date(2024, 3, 12)
    if kind == "full":
        assert read.dose_number == 2 and read.reactions[0].value == FEVER
        assert read.comment == "Prise récente de prednisolone" and read.performer == performer


def test_note_header_and_metadata(make_note: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = make_note(minimal(), qualified_patient)
    assert document.type_code == VAC_NOTE_TYPE_CODE and VAC_NOTE_TYPE_CODE in JDV_J07_XDS_TYPE_CODE
    assert document.template_ids[-1] == VAC_NOTE_TEMPLATE and VAC_NOTE_TEMPLATE.extension == "2023.01"
    assert vac_note_problems(document) == []
    read = vac_note_vaccination(document)
    assert read is not None and read.author is not None and read.author.entity == document.authors[0].entity
    metadata = extract_metadata(document)
    assert metadata.format_code == VAC_NOTE_FORMAT_CODE
    assert VAC_NOTE_FORMAT_CODE.code == "urn:asip:ci-sis:vac-note:2021"
    assert metadata.class_code.code == "52"
    assert metadata.type_code.code == "87273-9"


# --------------------------------------------------------------------------- invalid inputs


def test_wrong_or_missing_values_are_refused_not_invented() -> None:
    with pytest.raises(ValidationError, match="pass a date, not a date-time"):
        vaccination(day=datetime(2024, 3, 12, 10, 0))
    with pytest.raises(ValidationError) as systems:
        vaccination(product=TETANUS_ATC, atc=TETANUS)
    assert systems.value.problems == (
        "product: the code system must be 1.2.250.1.213.2.3.1",
        "atc: the code system must be 2.16.840.1.113883.6.73",
    )
    with pytest.raises(ValidationError, match="display name"):
        vaccination(code=Code.of("BOOSTER", "2.16.840.1.113883.5.4"))
    with pytest.raises(ValidationError) as name:
        vaccination(product_name="")
    assert any("product_name" in p for p in name.value.problems)
    with pytest.raises(ValidationError) as lot:
        vaccination(lot_number="")
    assert any("lot_number" in p for p in lot.value.problems)
    with pytest.raises(ValidationError) as rank:
        vaccination(dose_number=0)
    assert any("dose_number" in p for p in rank.value.problems)
    with pytest.raises(ValidationError, match="requires the vaccination's author"):
        minimal().to_element()


def test_route_outside_its_value_set_is_refused() -> None:
    oral = Code.of("20053000", "0.4.0.127.0.16.1.1.2.1", "Voie orale")
    assert oral in JDV_IMMUNIZATION_ROUTE_CODE
    nasal = Code.of("20049000", "0.4.0.127.0.16.1.1.2.1", "Voie nasale")
    content = VacNoteContent(vaccination=vaccination(route=nasal))
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == ("vaccination.route: 20049000 is not in JDV_ImmunizationRouteCode_CISIS",)


def test_a_note_without_its_section_is_refused(
    make_note: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_note(minimal(), qualified_patient)
    lone = StructuredBody(sections=(Section(title="Notes", text=Narrative.from_text("texte")),))
    with pytest.raises(ValidationError) as caught:
        as_vac_note(document.model_copy(update={"body": lone}))
    assert caught.value.problems == (
        "body: a VAC-NOTE has one vaccination section (1.3.6.1.4.1.19376.1.5.3.1.3.23), not 0",
    )


# --------------------------------------------------------------------------- the ANS example


def test_ans_note_reads_typed_and_rebuilds_element_by_element(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    document = parsed_examples[NAME]
    assert vac_note_problems(document) == []
    read = vac_note_vaccination(document)
    assert read is not None
    assert (read.code, read.product.code, read.atc, read.lot_number) == (
        FIRST_SERIES,
        "68747507",
        TETANUS_ATC,
        "4456672",
    )
    assert (read.route, read.approach_site, read.dose_number) == (INTRAMUSCULAR, LEFT_DELTOID, 2)
    assert read.reactions[0].value == FEVER and read.comment is not None and read.comment.startswith("Prise récente")
    assert read.performer is not None and read.author is not None
    root = etree.fromstring(example_files[NAME])  # noqa: TID251 - the kit's file
    original = root.find(".//{urn:hl7-org:v3}entry")
    assert original is not None
    assert differences(_normalised(original), _normalised(read.to_element()), "/entry") == []
    assert document_differences(example_files[NAME], build(document)) == []


# --------------------------------------------------------------------------- the ANS schematrons


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    pytest.importorskip("saxonche")
    if not KIT.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    cache = tmp_path_factory.getbasetemp() / "volet-schematrons"  # shared by the volet modules
    cache.mkdir(exist_ok=True)
    return CdaValidator(CdaSettings(kit_dir=KIT, cache_dir=cache))


QUICK = ("IHE", "Modeles_ANS", "ModelesDeContenusCDA", "terminologie")


@pytest.mark.parametrize("kind", ["full", "minimal"])
def test_passes_the_projects_validator_and_the_kits_own_engine(
    kind: str,
    make_note: Callable[..., ClinicalDocument],
    performer: AssignedEntity,
    qualified_patient: Identity,
    validator: CdaValidator,
) -> None:
    given = vaccination(performer=performer) if kind == "full" else minimal()
    data = build(make_note(given, qualified_patient))
    report = validator.validate(data)
    assert report.ok, report.to_text()
    assert report.volet == "VAC-NOTE_2023.01"
    assert set(report.schematrons) == {"VAC-NOTE_2023.01", *GENERIC_SCHEMATRONS}
    volet = volet_schematron(data, validator)
    assert volet is not None and volet.name == "CI-SIS_VAC-NOTE_2023.01.sch"
    for path in (volet, *(KIT / "schematrons" / GENERIC_SCHEMATRONS[n] for n in QUICK)):
        assert kit_findings(data, path) == frozenset(), path.name


def test_a_vaccination_the_model_cannot_hold_stays_raw_and_comes_back_whole(
    make_note: Callable[..., ClinicalDocument], performer: AssignedEntity, qualified_patient: Identity
) -> None:
    """A reaction whose start is 'no information' (NI): the model writes an unknown start as UNK, so it reads raw."""
    data = build(make_note(vaccination(performer=performer), qualified_patient))
    root = etree.fromstring(data)  # noqa: TID251 - our own output
    hl7 = "{urn:hl7-org:v3}"
    low = root.find(f".//{hl7}entryRelationship/{hl7}observation/{hl7}effectiveTime/{hl7}low")
    assert low is not None
    del low.attrib["value"]
    low.set("nullFlavor", "NI")
    changed = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    document = parse(changed)
    assert vac_note_vaccination(document) is None
    assert document_differences(changed, build(document)) == []
