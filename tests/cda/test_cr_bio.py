"""The CR-BIO 2024.01 lab results report: the kit's examples read typed, built reports pass the kit, bad input refused.

The proofs, in the order of the issue:

1. every BIO-CR-BIO_2024.01 example of the kit parses and comes back losslessly (the whole
   document: ``test_examples_roundtrip``); here, each results entry the reader types is
   rewritten *from the model alone* and compared with the kit's element, and the entries
   left untyped are named with the reason (``UNTYPED``);
2. a report built from typed values passes the CR-BIO schematron and the kit-wide ones,
   by the project's validator and by the kit's own engine (``kit_engine``);
3. bad input (a numeric result without unit, a malformed LOINC code …) is refused with a
   typed error naming the field; nothing is fixed or filled in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from dmp_connector.cda import (
    Address,
    AssignedEntity,
    ClinicalDocument,
    InstanceId,
    LegalAuthenticator,
    Organization,
    PersonName,
    RawEntry,
    Section,
    StructuredBody,
    Telecom,
    build,
    parse,
)
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.model import _reading, read_entry
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import Interpretation, PracticeSetting, SpecimenType
from dmp_connector.cda.volets import (
    CR_BIO_FORMAT_CODE,
    CR_BIO_TEMPLATE,
    CrBioContent,
    LabBattery,
    LabChapter,
    LabComment,
    LabImage,
    LabPerformer,
    LabReportEntry,
    LabResult,
    LabValidator,
    PreviousResult,
    Quantity,
    QuantityRange,
    ReferenceRange,
    Specimen,
    SpecimenCollection,
    as_cr_bio,
    cr_bio_authenticators,
    cr_bio_document,
    cr_bio_problems,
    loinc_problem,
)
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from .conftest import KIT, PARIS, make_pdf
from .kit_engine import kit_findings, volet_schematron
from .xmldiff import differences, document_differences

H = "{urn:hl7-org:v3}"
LOINC = "2.16.840.1.113883.6.1"
ENTRY_TEMPLATE = "1.2.250.1.213.1.1.3.21"
PREFIX = "BIO-CR-BIO_2024.01_"
SA25 = Code.of("SA25", "1.2.250.1.71.4.2.4", "Laboratoire de biologie médicale")
COLLECTED = datetime(2024, 3, 11, 7, 35, tzinfo=PARIS)
PERFORMED = datetime(2024, 3, 11, 15, 20, tzinfo=PARIS)

# Bytes standing for the PNG an analyser attaches (FR-Image-illustrative): only carried, never decoded.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)

UNTYPED = {
    ("BIO-CR-BIO_2024.01_Electrophorese.xml", 2): "a kit defect: the time 20092012081500+0100 is not on the calendar",
    ("BIO-CR-BIO_2024.01_TSH_2.xml", 0): "a kit defect: an originalText reference without '#'",
}
"""The results entries of the 2024.01 examples that stay raw (rebuilt as they came), and why."""


def _sections(sections: tuple[Section, ...]) -> Iterator[Section]:
    for section in sections:
        yield section
        yield from _sections(section.subsections)


def _results_entries(document: ClinicalDocument) -> list[Any]:
    body = document.body
    if not isinstance(body, StructuredBody):
        return []
    return [
        entry
        for section in _sections(body.sections)
        for entry in section.entries
        if isinstance(entry, LabReportEntry) or (isinstance(entry, RawEntry) and ENTRY_TEMPLATE in entry.xml)
    ]


def _normalised(element: etree._Element) -> etree._Element:
    """The element without what the typed model does not keep: comments, white space, codeSystemName.

    And what says the same: the schema's default classCode/moodCode of an observationRange, base64 over lines.
    """
    copy = etree.fromstring(etree.tostring(element))  # noqa: TID251 - our own serialisation
    for comment in list(copy.iter(etree.Comment)):
        parent = comment.getparent()
        assert parent is not None and not (comment.tail or "").strip(), "no text after a comment"
        parent.remove(comment)
    for node in copy.iter():
        if "codeSystemName" in node.attrib:
            del node.attrib["codeSystemName"]
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.get("representation") == "B64":
            node.text = "".join((node.text or "").split())
        if node.tag == f"{H}observationRange":
            node.set("classCode", node.get("classCode", "OBS"))
            node.set("moodCode", node.get("moodCode", "EVN.CRT"))
        node.tail = None
    return copy


def _kit_entries(data: bytes) -> list[etree._Element]:
    root = etree.fromstring(data)  # noqa: TID251 - the kit's file
    return [
        e for e in root.iter(f"{H}entry") if any(t.get("root") == ENTRY_TEMPLATE for t in e.findall(f"{H}templateId"))
    ]


BIO_NAMES = [
    "CR-2nde-intention-PDF",
    "CRP_non_LOINC",
    "DEP-CCU-HPV-structure-CYTO-pdf",
    "DEP-CCU-tout-structure",
    "Electrophorese",
    "Folates_nmol_par_Litre_2",
    "Folates_ug_par_Litre_1",
    "Glycemie_deux_unites_principales_mole_masse",
    "Glycemie_g_par_Litre_2",
    "Glycemie_mmol_par_Litre_1",
    "Glycemie_mole",
    "Hemoglobine_g_par_Litre_1",
    "Hemoglobine_g_par_dL_2",
    "Microbiologie_V1",
    "Microbiologie_V2",
    "TSH_1",
    "TSH_2",
    "TSH_date_1",
    "TSH_date_2",
]


def test_the_kit_has_the_19_cr_bio_2024_examples(example_files: Mapping[str, bytes]) -> None:
    assert sorted(n for n in example_files if n.startswith(PREFIX)) == sorted(f"{PREFIX}{n}.xml" for n in BIO_NAMES)


@pytest.mark.parametrize("name", BIO_NAMES)
def test_kit_example_results_are_typed_and_rebuild_from_the_model(
    name: str, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    file = f"{PREFIX}{name}.xml"
    document = parsed_examples[file]
    assert cr_bio_problems(document) == [], "every 2024.01 example is a CR-BIO"
    entries = _results_entries(document)
    originals = _kit_entries(example_files[file])
    assert len(entries) == len(originals) >= 1
    for index, (entry, original) in enumerate(zip(entries, originals, strict=True)):
        if (file, index) in UNTYPED:
            assert isinstance(entry, RawEntry), UNTYPED[file, index]
            continue
        assert isinstance(entry, LabReportEntry), f"entry {index} stayed raw"
        rebuilt = entry.to_element()  # written from the model's fields (the element read is not consulted)
        assert differences(_normalised(original), _normalised(rebuilt), "/entry") == []
        with _reading():  # as parse reads: some examples' times have no time zone
            assert read_entry(rebuilt) == entry


def test_kit_figures(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    entries = [e for n in BIO_NAMES for e in _results_entries(parsed_examples[f"{PREFIX}{n}.xml"])]
    typed = [e for e in entries if isinstance(e, LabReportEntry)]
    assert (len(typed), len(entries)) == (21, 23)
    results = [r for e in typed for r in e.results()]
    assert len(results) == 74
    assert sum(isinstance(r.value, Quantity) for r in results) == 39


def test_kit_glycemia_reads_as_typed_values(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    (entry,) = _results_entries(parsed_examples[f"{PREFIX}Glycemie_g_par_Litre_2.xml"])
    assert isinstance(entry, LabReportEntry)
    assert entry.code == Code.of("18719-5", LOINC, "Biochimie")
    (result,) = entry.results()
    assert result.code is not None and result.code.code == "53049-3"
    assert result.value == Quantity(value=Decimal("0.95"), unit="g/L")
    assert result.interpretations == (Code.of("N", "2.16.840.1.113883.5.83", "Normal"),)
    assert result.reference_range == ReferenceRange(low=Quantity.of("0.63", "g/L"), high=Quantity.of("1.1", "g/L"))
    assert result.reference == "glucose_02"
    assert result.effective_time == datetime(2024, 11, 10, 14, 55, 21, tzinfo=timezone(timedelta(hours=2)))


def test_kit_microbiology_reads_isolates_and_comments(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    entries = _results_entries(parsed_examples[f"{PREFIX}Microbiologie_V2.xml"])
    typed = [e for e in entries if isinstance(e, LabReportEntry)]
    assert typed
    isolates = [i for e in typed for i in e.items if isinstance(i, LabBattery) and i.isolate]
    assert len(isolates) == 2
    antibiograms = [c for i in isolates for c in i.components if isinstance(c, LabBattery)]
    assert len(antibiograms) == 2 and all(not a.isolate for a in antibiograms)
    assert isolates and all(i.specimen is not None and i.specimen.code is not None for i in isolates)
    assert any(isinstance(i, LabComment) and i.type_code == "SUBJ" for e in typed for i in e.items)
    collections = [i for e in typed for i in e.items if isinstance(i, SpecimenCollection)]
    assert collections and collections[0].received is not None


def test_a_corrected_result_rewrites_its_entry_and_nothing_else(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    file = f"{PREFIX}Glycemie_g_par_Litre_2.xml"
    document = parsed_examples[file]
    body = document.body
    assert isinstance(body, StructuredBody)
    chapter = body.sections[0]
    subchapter = chapter.subsections[0]
    (entry,) = subchapter.entries
    assert isinstance(entry, LabReportEntry)
    result = entry.items[0]
    assert isinstance(result, LabResult)
    corrected = entry.model_copy(update={"items": (result.model_copy(update={"value": Quantity.of("0.97", "g/L")}),)})
    sections = (
        chapter.model_copy(update={"subsections": (subchapter.model_copy(update={"entries": (corrected,)}),)}),
        *body.sections[1:],
    )
    rebuilt = build(document.model_copy(update={"body": body.model_copy(update={"sections": sections})}))
    entry_path = (
        "/ClinicalDocument/component[1]/structuredBody[1]/component[1]/section[1]/component[1]/section[1]/entry[1]"
    )
    changed = document_differences(example_files[file], rebuilt)
    assert changed and all(path.startswith(entry_path) for path in changed)
    again = _results_entries(parse(rebuilt))[0]
    assert isinstance(again, LabReportEntry) and again == corrected
    assert again.results()[0].value == Quantity.of("0.97", "g/L")


# --------------------------------------------------------------------------- building


def biologist() -> AssignedEntity:
    """The responsible biologist and the laboratory, with all the CR-BIO header asks for."""
    address = Address.of(house_number="8", street_name="Rue Frédéric Bastia", postal_code="92100", city="BOULOGNE")
    return AssignedEntity(
        id=InstanceId.of("1.2.250.1.71.4.2.1", "801234534765"),
        code=Code.of("G15_10/SM03", "1.2.250.1.213.1.1.4.5", "Médecin - Biologie médicale (SM)"),
        addresses=(address,),
        telecoms=(Telecom(value="tel:0174589607", use="WP"),),
        person=PersonName(family="CAMPARINI", given="Marcel", prefix="M", suffix="DR"),
        organization=Organization(
            id=InstanceId.of("1.2.250.1.71.4.2.2", "1120459876"),
            name="Laboratoire des charmes",
            telecoms=(Telecom(value="tel:0174589607", use="WP"),),
            addresses=(address,),
        ),
    )


def performing_laboratory() -> LabPerformer:
    """Another laboratory that did some of the tests (FR-Laboratoire-executant), with its practice setting."""
    entity = biologist()
    assert entity.organization is not None
    org = entity.organization.model_copy(update={"industry_class": PracticeSetting.AMBULATORY})
    return LabPerformer(entity=entity.model_copy(update={"organization": org}), time=PERFORMED)


def validator_biologist() -> LabValidator:
    return LabValidator(
        id=InstanceId.of("1.2.250.1.71.4.2.1", "801234567898"),
        name=PersonName(family="DE SANTS", given="Jean", prefix="M", suffix="DR"),
        time=PERFORMED,
        telecoms=(Telecom(value="tel:0174589607", use="WP"),),
    )


def glucose(**changes: Any) -> LabResult:
    values: dict[str, Any] = {
        "code": Code.of("2345-7", LOINC, "Glucose [Masse/Volume] Sérum/Plasma ; Numérique"),
        "value": Quantity.of("1.32", "g/L"),
        "effective_time": COLLECTED,
        "interpretations": (Interpretation.HIGH,),
        "reference_range": ReferenceRange(low=Quantity.of("0.70", "g/L"), high=Quantity.of("1.10", "g/L")),
        "previous": (
            PreviousResult(
                code=Code.of("2345-7", LOINC, "Glucose [Masse/Volume] Sérum/Plasma ; Numérique"),
                effective_time=datetime(2023, 9, 2, 8, 0, tzinfo=PARIS),
                value=Quantity.of("1.05", "g/L"),
            ),
        ),
    }
    values.update(changes)
    return LabResult.model_validate(values)


def full_content() -> CrBioContent:
    blood = SpecimenCollection(
        specimen_type=SpecimenType.BLOOD,
        specimen_id=InstanceId.of("1.2.250.1.213.1.1.9", "24031100042"),
        collected=COLLECTED,
        received=PERFORMED,
    )
    hemogram = LabBattery(
        code=Code.of("58410-2", LOINC, "Hémogramme"),
        effective_time=COLLECTED,
        specimen=Specimen(code=SpecimenType.BLOOD),
        components=(
            LabResult(
                code=Code.of("718-7", LOINC, "Hémoglobine [Masse/Volume] Sang ; Numérique"),
                value=Quantity.of("13.9", "g/dL"),
                effective_time=COLLECTED,
                interpretations=(Interpretation.NORMAL,),
                reference_range=ReferenceRange(low=Quantity.of("12", "g/dL"), high=Quantity.of("16", "g/dL")),
            ),
            LabResult(
                code=Code.of("26464-8", LOINC, "Leucocytes [Nombre/Volume] Sang ; Numérique"),
                value=Quantity.of("6.2", "10*9/L"),
                effective_time=COLLECTED,
            ),
            LabComment(text="Pas d'anomalie morphologique."),
            LabImage(xml_id="courbe-1", data=PNG),
        ),
    )
    crp = LabResult(
        code=Code.of("1988-5", LOINC, "Protéine C réactive [Masse/Volume] Sérum/Plasma ; Numérique"),
        value=QuantityRange(high=Quantity.of("1.0", "mg/L"), high_inclusive=False),
        effective_time=COLLECTED,
        interpretations=(Interpretation.NORMAL,),
        comments=(LabComment(text="Résultat inférieur au seuil de quantification."),),
    )
    hbs = LabResult(
        code=Code.of("5196-1", LOINC, "Antigène HBs [Présence] Sérum ; Qualitatif"),
        value=Code.of("260385009", "2.16.840.1.113883.6.96", "Négatif"),
        effective_time=COLLECTED,
    )
    return CrBioContent(
        chapters=(
            LabChapter(
                code=Code.of("18719-5", LOINC, "Biochimie"),
                title="Biochimie",
                items=(blood, glucose(), crp),
                validator=validator_biologist(),
            ),
            LabChapter(
                code=Code.of("18723-7", LOINC, "Hématologie"),
                title="Hématologie",
                items=(hemogram,),
                performer=performing_laboratory(),  # a laboratory of its own
            ),
            LabChapter(code=Code.of("18727-8", LOINC, "Sérologie"), title="Sérologie", items=(hbs,)),
        ),
        pdf_copy=make_pdf("Compte rendu d'examens biologiques"),
    )


def minimal_content() -> CrBioContent:
    return CrBioContent(
        chapters=(LabChapter(code=Code.of("18719-5", LOINC, "Biochimie"), title="Biochimie", items=(glucose(),)),),
        pdf_copy=make_pdf(),
    )


CONTENTS: dict[str, Callable[[], CrBioContent]] = {"full": full_content, "minimal": minimal_content}


@pytest.fixture
def make_report(cda_settings: Settings, effective_time: datetime) -> Callable[..., ClinicalDocument]:
    def make(content: CrBioContent, patient: Identity, **fields: Any) -> ClinicalDocument:
        return cr_bio_document(
            content,
            settings=cda_settings,
            patient=patient,
            effective_time=effective_time,
            biologist=biologist(),
            collected=COLLECTED,
            performed=PERFORMED,
            practice_setting=PracticeSetting.AMBULATORY,
            facility_type=SA25,
            **{"authenticators": (LegalAuthenticator(time=PERFORMED, entity=biologist()),), **fields},
        )

    return make


@pytest.mark.parametrize("content", sorted(CONTENTS))
def test_report_is_schema_valid_and_reads_back(
    content: str,
    make_report: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    document = make_report(CONTENTS[content](), qualified_patient)
    data = build(document)
    assert_schema_valid(data)
    again = parse(data)
    assert again == document
    assert build(again) == data
    assert all(isinstance(e, LabReportEntry) for e in _results_entries(again))


def test_report_header_and_metadata(make_report: Callable[..., ClinicalDocument], second_patient: Identity) -> None:
    document = make_report(full_content(), second_patient)
    assert (document.type_code.code, document.type_code.display_name) == ("11502-2", "CR d'examens biologiques")
    assert document.title == "Compte rendu d'examens biologiques"
    assert document.template_ids[-1] == CR_BIO_TEMPLATE and CR_BIO_TEMPLATE.extension == "2024.01"
    assert "1.3.6.1.4.1.19376.1.3.3" in {t.root for t in document.template_ids}
    event = document.service_events[0]
    assert event.code == Code.of("18719-5", LOINC, "Biochimie"), "the first chapter's specialty by default"
    assert event.effective_time is not None and (event.effective_time.low, event.effective_time.high) == (
        COLLECTED,
        PERFORMED,
    )
    metadata = extract_metadata(document)
    assert metadata.format_code == CR_BIO_FORMAT_CODE
    assert CR_BIO_FORMAT_CODE.code == "urn:ihe:lab:xd-lab:2008"
    assert metadata.class_code.code == "10"
    assert metadata.type_code.code == "11502-2"
    assert metadata.healthcare_facility_type_code == SA25


def test_the_validating_biologists_come_back(
    make_report: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    parsed_examples: Mapping[str, ClinicalDocument],
) -> None:
    document = parse(build(make_report(minimal_content(), qualified_patient)))
    assert cr_bio_authenticators(document) == (LegalAuthenticator(time=PERFORMED, entity=biologist()),)
    (kit,) = cr_bio_authenticators(parsed_examples[f"{PREFIX}Microbiologie_V2.xml"])
    assert kit.entity.person is not None and kit.entity.person.family == "DE SANTS"
    assert kit.entity.id == InstanceId.of("1.2.250.1.71.4.2.1", "801234567898")
    no_phone = LegalAuthenticator(time=PERFORMED, entity=biologist().model_copy(update={"telecoms": ()}))
    with pytest.raises(ValidationError) as caught:
        make_report(minimal_content(), qualified_patient, authenticators=(no_phone,))
    assert caught.value.problems == ("authenticators[0].entity.telecoms",)


def test_built_narrative_holds_what_the_entries_point_to(
    make_report: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = parse(build(make_report(full_content(), qualified_patient)))
    first = _results_entries(document)[0]
    assert isinstance(first, LabReportEntry)
    comment = first.results()[1].comments[0]
    assert comment.reference is not None and comment.text is None
    body = document.body
    assert isinstance(body, StructuredBody) and body.sections[0].text is not None
    narrative = body.sections[0].text.xml
    assert f'ID="{comment.reference}">Résultat inférieur au seuil de quantification.' in narrative
    assert "1.32 g/L" in narrative and "0.70 - 1.10 g/L" in narrative
    hematology = body.sections[1]
    assert hematology.text is not None and 'referencedObject="courbe-1"' in hematology.text.xml
    (entry,) = hematology.entries
    assert isinstance(entry, LabReportEntry)
    assert entry.performer == performing_laboratory()
    lab = performing_laboratory().entity.model_copy(update={"organization": biologist().organization})
    with pytest.raises(ValidationError) as caught:
        LabPerformer(entity=lab, time=PERFORMED)
    assert caught.value.problems == ("performer.entity.organization.industry_class",)
    battery = entry.items[0]
    assert isinstance(battery, LabBattery) and battery.components[-1] == LabImage(xml_id="courbe-1", data=PNG)


# --------------------------------------------------------------------------- refusals


def test_a_numeric_result_without_unit_is_refused() -> None:
    content = CrBioContent(
        chapters=(
            LabChapter(
                code=Code.of("18719-5", LOINC, "Biochimie"),
                title="Biochimie",
                items=(glucose(value=Quantity(value=Decimal("1.32"))),),
            ),
        ),
        pdf_copy=make_pdf(),
    )
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == (
        "chapters[0].items[0].value: a numeric result of 2345-7 has no unit (give its UCUM unit, '1' for none)",
    )


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("2345-8", "2345-8: wrong LOINC check digit (expected 7)"),
        ("2345", "2345 is not a LOINC code (digits, a hyphen, a check digit)"),
        ("GLU", "GLU is not a LOINC code (digits, a hyphen, a check digit)"),
    ],
)
def test_a_malformed_loinc_code_is_refused(code: str, problem: str) -> None:
    result = glucose(code=Code.of(code, LOINC, "Glucose"))
    content = minimal_content().model_copy(
        update={"chapters": (minimal_content().chapters[0].model_copy(update={"items": (result,)}),)}
    )
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == (f"chapters[0].items[0].code: {problem}",)


def test_loinc_check_digits_of_known_codes() -> None:
    for code in ("2345-7", "53049-3", "18719-5", "11502-2", "718-7", "26464-8", "1988-5", "5196-1", "58410-2"):
        assert loinc_problem(Code.of(code, LOINC, "x")) is None, code


def test_unit_interpretation_and_specimen_outside_the_rules() -> None:
    result = glucose(
        value=Quantity.of("1.32", "g / L"),
        interpretations=(Code.of("HIGH", "2.16.840.1.113883.5.83", "Haut"),),
    )
    collection = SpecimenCollection(
        specimen_type=Code.of("SANG", "1.2.3.4", "Sang"), specimen_id=InstanceId.of("1.2.3")
    )
    chapter = LabChapter(code=Code.of("18719-5", LOINC, "Biochimie"), title="Biochimie", items=(collection, result))
    with pytest.raises(ValidationError) as caught:
        CrBioContent(chapters=(chapter,), pdf_copy=make_pdf()).to_body()
    assert caught.value.problems == (
        "chapters[0].items[0].specimen_type: SANG is not in JDV_SpecimenType_CISIS",
        "chapters[0].items[1].value: 'g / L' is not a UCUM unit",
        "chapters[0].items[1].interpretations: HIGH is not in JDV_HL7_ObservationInterpretation_CISIS",
    )


def test_what_the_model_cannot_hold_is_refused_not_filled_in(
    make_report: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    effective_time: datetime,
    cda_settings: Settings,
) -> None:
    with pytest.raises(ValidationError, match="names its test"):
        LabResult(code=None, value=Quantity.of(1, "g/L"))
    with pytest.raises(ValidationError, match="isolate names its organism"):
        LabBattery(isolate=True, components=(glucose(),))
    with pytest.raises(ValidationError, match="not a PDF"):
        CrBioContent(chapters=minimal_content().chapters, pdf_copy=b"<html/>").to_body()
    with pytest.raises(ValidationError) as caught:
        cr_bio_document(
            minimal_content(),
            settings=cda_settings,
            patient=qualified_patient,
            effective_time=effective_time,
            biologist=biologist().model_copy(update={"telecoms": (), "addresses": ()}),
            collected=COLLECTED,
            performed=PERFORMED,
            practice_setting=PracticeSetting.AMBULATORY,
        )
    assert caught.value.problems == ("biologist.addresses", "biologist.telecoms")
    comment = LabReportEntry(code=Code.of("18719-5", LOINC, "Biochimie"), items=(LabComment(text="Texte"),))
    with pytest.raises(ValidationError, match="written in the section's narrative"):
        comment.to_element()


def test_a_document_that_is_not_a_cr_bio_is_refused(
    make_report: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_report(minimal_content(), qualified_patient)
    body = document.body
    assert isinstance(body, StructuredBody)
    without_copy = StructuredBody(sections=body.sections[:1])
    with pytest.raises(ValidationError) as caught:
        as_cr_bio(document.model_copy(update={"body": without_copy}))
    assert caught.value.problems == ("body: the PDF copy section (1.2.250.1.213.1.1.2.243) is missing",)


def test_the_reader_declines_what_the_model_does_not_hold() -> None:
    entry = full_content().chapters[0].to_section("t").entries[0]
    element = entry.to_element()
    assert isinstance(read_entry(element), LabReportEntry)
    observation = element.find(f".//{H}observation")
    assert observation is not None
    etree.SubElement(observation, f"{H}targetSiteCode", code="X", codeSystem="1.2.3")
    assert isinstance(read_entry(element), RawEntry)


def test_text_after_a_reference_keeps_the_entry_raw_and_comes_back(example_files: Mapping[str, bytes]) -> None:
    """Mixed content the model does not hold (text after ``<reference/>``) is never dropped: the entry stays raw."""
    source = example_files["BIO-CR-BIO_2024.01_Glycemie_g_par_Litre_2.xml"]
    marker = b'<reference value="#glucose_02"/>'
    assert source.count(marker) == 1
    changed = source.replace(marker, marker + b" RESULTAT NON VALIDE ")
    assert any(isinstance(entry, LabReportEntry) for entry in _results_entries(parse(source)))
    document = parse(changed)
    raw = [entry for entry in _results_entries(document) if isinstance(entry, RawEntry)]
    assert len(raw) == 1 and "RESULTAT NON VALIDE" in raw[0].xml
    assert b"RESULTAT NON VALIDE" in build(document)


# --------------------------------------------------------------------------- the ANS schematrons


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    """Validation against the kit: structural checks, the XSD, the volet and the kit-wide schematrons."""
    pytest.importorskip("saxonche")
    if not KIT.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    cache = tmp_path_factory.getbasetemp() / "volet-schematrons"  # shared by the volet modules
    cache.mkdir(exist_ok=True)
    return CdaValidator(CdaSettings(kit_dir=KIT, cache_dir=cache))


@pytest.mark.parametrize("content", sorted(CONTENTS))
def test_passes_every_schematron(
    content: str, make_report: Callable[..., ClinicalDocument], qualified_patient: Identity, validator: CdaValidator
) -> None:
    report = validator.validate(build(make_report(CONTENTS[content](), qualified_patient)))
    assert report.ok, report.to_text()
    assert report.volet == "BIO-CR-BIO_2024.01"
    assert set(report.schematrons) == {"BIO-CR-BIO_2024.01", *GENERIC_SCHEMATRONS}


QUICK = ("IHE", "Modeles_ANS", "ModelesDeContenusCDA", "terminologie")


def test_passes_the_kits_own_engine(
    make_report: Callable[..., ClinicalDocument], qualified_patient: Identity, validator: CdaValidator
) -> None:
    data = build(make_report(full_content(), qualified_patient))
    volet = volet_schematron(data, validator)
    assert volet is not None and volet.name == "CI-SIS_BIO-CR-BIO_2024.01.sch"
    for path in (volet, *(KIT / "schematrons" / GENERIC_SCHEMATRONS[name] for name in QUICK)):
        assert kit_findings(data, path) == frozenset(), path.name


@pytest.mark.kit_exhaustive
def test_passes_every_kit_schematron_by_the_kits_engine(
    make_report: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    validator: CdaValidator,
    request: pytest.FixtureRequest,
) -> None:
    if "kit_exhaustive" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("StrucMin through the kit's engine runs with -m kit_exhaustive (as .ci/run does)")
    data = build(make_report(full_content(), qualified_patient))
    for name, file in GENERIC_SCHEMATRONS.items():
        assert kit_findings(data, KIT / "schematrons" / file) == frozenset(), name
