"""The LDL-EES 2022.01 builder: valid admission letters, clear refusals, the ANS example read back."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

import pytest
from lxml import etree

from dmp_connector.cda import ClinicalDocument, Narrative, RawEntry, Section, StructuredBody, build, parse
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import (
    JDV_ABSENT_OR_UNKNOWN_ALLERGY,
    AllergyAbsence,
    AllergyClinicalStatus,
    DocumentStatus,
    MedicationAbsence,
    PracticeSetting,
    ProblemClinicalStatus,
)
from dmp_connector.cda.volets import (
    LDL_EES_FORMAT_CODE,
    LDL_EES_SERVICE_CODE,
    LDL_EES_TEMPLATE,
    Allergy,
    AllergyReaction,
    AllergySeverity,
    LdlEesContent,
    Medication,
    NoMedication,
    Problem,
    Procedure,
    Quantity,
    as_ldl_ees,
    ldl_ees_document,
    ldl_ees_problems,
)
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from .conftest import PARIS
from .kit_engine import KIT  # the 2025 ANS kit (../shared/cda-2025)
from .xmldiff import differences, document_differences

CIS = "1.2.250.1.213.2.3.1"
CIM10 = "2.16.840.1.113883.6.3"
SNOMED = "2.16.840.1.113883.6.96"
SA01 = Code.of("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé")
ADMISSION = datetime(2024, 2, 20, 11, 17, tzinfo=PARIS)


def full_content() -> LdlEesContent:
    return LdlEesContent(
        reason_for_admission="Episode psychotique - cachexie/anorexie",
        admission_medications=(
            Medication(
                name="SOLIAN 100 mg",
                product=Code.of("60019927", CIS, "SOLIAN 100 mg, comprimé sécable"),
                start=date(2018, 8, 1),
                period=Quantity.of(1, "d"),
                dose=Quantity.of(1, "{tbl}"),
            ),
        ),
        admission_medications_note="Observance irrégulière.",
        allergies=(
            Allergy(
                kind=Code.of("416098002", SNOMED, "allergie médicamenteuse"),
                agent=Code.of("67017786", CIS, "PARACETAMOL"),
                agent_name="Paracétamol",
                start=date(2018, 6, 3),
                reactions=(AllergyReaction(value=Code.of("126485001", SNOMED, "urticaire"), start=date(2018, 6, 3)),),
                severity=AllergySeverity(code=Code.of("6736007", SNOMED, "modéré")),
                clinical_status=AllergyClinicalStatus.ACTIVE,
            ),
        ),
        medical_history=(
            Problem(
                value=Code.of("I20.0", CIM10, "Angine de poitrine instable"),
                start=date(2017, 8, 1),
                end=date(2017, 8, 2),
                clinical_status=ProblemClinicalStatus.RESOLVED,
            ),
        ),
        comment="Patient accompagné de sa soeur.",
    )


def minimal_content() -> LdlEesContent:
    return LdlEesContent(reason_for_admission="Chute à domicile")


CONTENTS: dict[str, Callable[[], LdlEesContent]] = {"full": full_content, "minimal": minimal_content}


@pytest.fixture
def make_letter(cda_settings: Settings, effective_time: datetime) -> Callable[..., ClinicalDocument]:
    def make(content: LdlEesContent, patient: Identity, **fields: Any) -> ClinicalDocument:
        return ldl_ees_document(
            content,
            settings=cda_settings,
            patient=patient,
            effective_time=effective_time,
            admission=ADMISSION,
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


def test_letter_header(make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = make_letter(minimal_content(), qualified_patient)
    assert (document.type_code.code, document.type_code.code_system) == ("18761-7", "2.16.840.1.113883.6.1")
    assert document.template_ids[-1] == LDL_EES_TEMPLATE
    assert LDL_EES_TEMPLATE.extension == "2022.01"
    event = document.service_events[0]
    assert event.code == LDL_EES_SERVICE_CODE
    assert event.effective_time is not None and event.effective_time.low == ADMISSION
    assert LDL_EES_FORMAT_CODE.code == "urn:asip:ci-sis:ldl-ees:2017"
    assert ldl_ees_problems(document) == []


def test_letter_body_layout() -> None:
    body = full_content().to_body()
    assert [s.template_ids[-1].root for s in body.sections] == [
        "1.2.250.1.213.1.1.2.127",
        "1.2.250.1.213.1.1.2.144",
        "1.2.250.1.213.1.1.2.137",
        "1.2.250.1.213.1.1.2.134",
        "1.2.250.1.213.1.1.2.73",
    ]
    assert [type(s.entries[0]) for s in body.sections[1:4]] == [Medication, Allergy, Problem]
    assert body.sections[4].text is not None and "accompagné de sa soeur" in body.sections[4].text.xml


def test_minimal_letter_states_what_is_not_known() -> None:
    body = minimal_content().to_body()
    assert len(body.sections) == 4
    (none,) = body.sections[1].entries
    assert isinstance(none, NoMedication) and none.code == MedicationAbsence.NO_INFORMATION
    (no_allergy,) = body.sections[2].entries
    assert isinstance(no_allergy, Allergy) and no_allergy.reaction == AllergyAbsence.NO_INFORMATION
    assert no_allergy.reaction in JDV_ABSENT_OR_UNKNOWN_ALLERGY
    comment = body.sections[3].text
    assert comment is not None and "Non renseigné" in comment.xml


def test_none_known_is_said_when_the_caller_says_it(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    content = LdlEesContent(reason_for_admission="Bilan", no_admission_medication=True, no_known_allergy=True)
    document = parse(build(make_letter(content, qualified_patient)))
    sections = _body(document).sections
    (none,) = sections[1].entries
    assert isinstance(none, NoMedication) and none.code == MedicationAbsence.NO_KNOWN_MEDICATIONS
    (no_allergy,) = sections[2].entries
    assert isinstance(no_allergy, Allergy) and no_allergy.reaction == AllergyAbsence.NO_KNOWN_ALLERGIES


def test_contradictions_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        LdlEesContent.model_validate(
            {
                **full_content().model_dump(),
                "no_admission_medication": True,
                "no_known_allergy": True,
            }
        )
    assert caught.value.problems == ("no_admission_medication", "no_known_allergy")


def test_missing_reason_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        LdlEesContent(reason_for_admission="")
    assert any("reason_for_admission" in p for p in caught.value.problems)
    with pytest.raises(ValidationError):
        LdlEesContent.model_validate({})


def test_codes_outside_their_value_sets_are_refused() -> None:
    wrong_status = Allergy(
        kind=Code.of("416098002", SNOMED, "allergie médicamenteuse"), clinical_status=DocumentStatus.DONE
    )
    content = LdlEesContent(reason_for_admission="Chute", allergies=(wrong_status,))
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == (
        "allergies[0].clinical_status: 398166005 is not in JDV_HL7_allergyintolerance_clinical_CISIS",
    )


def test_an_absence_code_outside_the_allergy_set_is_found(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_letter(minimal_content(), qualified_patient)
    sections = list(_body(document).sections)
    (no_allergy,) = sections[2].entries
    assert isinstance(no_allergy, Allergy)
    wrong = no_allergy.model_copy(update={"reaction": MedicationAbsence.NO_KNOWN_MEDICATIONS})
    sections[2] = sections[2].model_copy(update={"entries": (wrong,)})
    with pytest.raises(ValidationError) as caught:
        as_ldl_ees(document.model_copy(update={"body": StructuredBody(sections=tuple(sections))}))
    assert caught.value.problems == (
        "body.sections[2].entries[0].reaction: no-known-medications is not in JDV_AbsentOrUnknownAllergy_CISIS",
    )


def test_a_body_without_the_required_sections_is_refused(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_letter(minimal_content(), qualified_patient)
    sections = _body(document).sections
    without_allergies = StructuredBody(sections=(*sections[:2], sections[3]))
    with pytest.raises(ValidationError) as caught:
        as_ldl_ees(document.model_copy(update={"body": without_allergies}))
    assert caught.value.problems == (
        "body: the section 'Allergies et hypersensibilités' (1.3.6.1.4.1.19376.1.5.3.1.3.13) is missing",
    )
    lone = StructuredBody(sections=(Section(title="Notes", text=Narrative.from_text("texte")),))
    with pytest.raises(ValidationError) as all_missing:
        as_ldl_ees(document.model_copy(update={"body": lone}))
    assert len(all_missing.value.problems) == 4


def test_another_volet_made_an_ldl_ees_gets_the_volet_header(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_letter(minimal_content(), qualified_patient)
    event = document.service_events[0].model_copy(update={"code": None})
    stripped = document.model_copy(update={"service_events": (event,), "template_ids": document.template_ids[:2]})
    again = as_ldl_ees(stripped)
    assert again.service_events[0].code == LDL_EES_SERVICE_CODE
    assert again.template_ids[-1] == LDL_EES_TEMPLATE


# --------------------------------------------------------------------------- the ANS example


def test_ans_letter_reads_into_typed_entries(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    document = parsed_examples["LDL-EES_2022.01.xml"]
    assert ldl_ees_problems(document) == []
    assert document.service_events[0].code is not None
    assert document.service_events[0].code.code == "IMP"
    sections = {s.title: s for s in _sections(_body(document).sections)}
    assert list(sections) == [
        "Motif d'hospitalisation",
        "Traitements à l'admission",
        "Allergies et hypersensibilités connues",
        "Antécédents médicaux",
        "Antécédents chirurgicaux",
        "Autres informations",
    ]
    # All four entries read typed, the allergy with its reaction, severity and status sub-entries.
    entries = [e for s in sections.values() for e in s.entries]
    assert [type(e) for e in entries] == [Medication, Allergy, Problem, Procedure]
    medication, allergy, problem, procedure = entries
    assert isinstance(allergy, Allergy)
    assert (allergy.kind.code, allergy.agent, allergy.agent_name) == (
        "416098002",
        Code.of("67017786", CIS, "PARACETAMOL"),
        "Paracétamol",
    )
    assert (allergy.start, allergy.concern_start, allergy.reaction, allergy.value_pointer) == (
        date(2018, 2, 21),
        date(2018, 2, 21),
        None,  # the value names no manifestation: nothing is invented for it
        "#",  # as the kit writes it: kept, not mended
    )
    (reaction,) = allergy.reactions
    # the kit's reaction is negated (negationInd="true"): urticaria was *not* observed; read and kept as such
    assert (reaction.value.code, reaction.negated, reaction.start) == ("126485001", True, date(2018, 2, 21))
    assert allergy.severity is not None and allergy.severity.code.code == "6736007"
    assert allergy.clinical_status == Code.of("active", "2.16.840.1.113883.4.642.4.1373", "actif")
    assert (allergy.negation_written, allergy.status_negation_written) == (False, False)
    assert isinstance(medication, Medication) and isinstance(problem, Problem) and isinstance(procedure, Procedure)
    assert (medication.name, medication.dose, medication.dose_references) == (
        "SOLIAN 100 mg",
        Quantity.of(1, "{count}"),
        ("doseMin-001", "doseMax-001"),
    )
    assert medication.rate == Quantity.of(100, "mg/d") and medication.period == Quantity.of(1, "d")
    assert medication.template_ids[0] == "1.2.250.1.213.1.1.3.42"  # the order the kit writes, kept
    assert (problem.value.code, problem.start, problem.end, problem.end_unknown) == (
        "N10",
        date(2018, 10, 1),
        None,
        True,
    )
    assert problem.value_pointer == "ant-med-001-pb"  # as the kit writes it, without "#": kept, not mended
    assert (procedure.code.code, procedure.start, procedure.end) == ("DDAF004", date(2017, 8, 1), date(2017, 8, 2))


def _normalised(element: etree._Element) -> etree._Element:
    """A copy without comments, white-space-only text and ``codeSystemName`` (which no typed entry holds)."""
    copy = etree.fromstring(etree.tostring(element))  # noqa: TID251 - already parsed
    for node in list(copy.iter()):
        if not isinstance(node.tag, str):
            parent = node.getparent()
            assert parent is not None
            assert not (node.tail or "").strip()
            parent.remove(node)
    for node in copy.iter():
        if "codeSystemName" in node.attrib:
            del node.attrib["codeSystemName"]
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return copy


def test_ans_letter_typed_entries_rewrite_element_by_element(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    """Each typed entry, written afresh from its fields alone, is the kit's element."""
    root = etree.fromstring(example_files["LDL-EES_2022.01.xml"])  # noqa: TID251 - the kit's file
    originals = list(root.iter("{urn:hl7-org:v3}entry"))
    entries = [e for s in _sections(_body(parsed_examples["LDL-EES_2022.01.xml"]).sections) for e in s.entries]
    assert len(originals) == len(entries) == 4
    compared = 0
    for original, entry in zip(originals, entries, strict=True):
        if isinstance(entry, Medication | Allergy | Problem | Procedure):
            fresh = entry.model_copy().to_element()
            assert differences(_normalised(original), _normalised(fresh), "/entry") == [], type(entry).__name__
            compared += 1
    assert compared == 4


@pytest.mark.parametrize(
    ("old", "new", "position"),
    [
        # a procedure with a target site the model does not hold
        (
            '<high value="20170802"/>\n                            </effectiveTime>',
            '<high value="20170802"/></effectiveTime><targetSiteCode code="X" codeSystem="1.2.3"/>',
            3,
        ),
        # a dose whose high bound points elsewhere than by a translation
        ('<originalText><reference value="#doseMax-001"/></originalText>', "", 0),
        # an allergy reaction whose value points elsewhere than its text
        (
            "<originalText><reference value='#allergie-reaction-001'/></originalText>",
            "<originalText><reference value='#allergie-type-001'/></originalText>",
            1,
        ),
        # an allergy sub-entry of a kind the model does not hold (a CAUS relationship)
        ("<entryRelationship typeCode='MFST' inversionInd='false'>", "<entryRelationship typeCode='CAUS'>", 1),
        # a reaction relationship without inversionInd: read, but the rewrite would add it, so declined
        ("<entryRelationship typeCode='MFST' inversionInd='false'>", "<entryRelationship typeCode='MFST'>", 1),
        # an allergy agent whose name has parts
        ("<name>Paracétamol</name>", "<name><given>Paracétamol</given></name>", 1),
        # an unknown end on an active problem: the concern does not say the problem is over
        (
            '<statusCode code="completed"/>\n                            <effectiveTime>\n'
            '                                <low value="20181001"/>',
            '<statusCode code="active"/><effectiveTime><low value="20181001"/>',
            2,
        ),
    ],
)
def test_what_the_widened_models_do_not_hold_stays_raw(
    example_files: Mapping[str, bytes], old: str, new: str, position: int
) -> None:
    text = example_files["LDL-EES_2022.01.xml"].decode().replace("\r\n", "\n")
    assert text.count(old) == 1
    document = parse(text.replace(old, new).encode())
    entries = [e for s in _sections(_body(document).sections) for e in s.entries]
    assert isinstance(entries[position], RawEntry)
    assert document_differences(text.replace(old, new).encode(), build(document)) == []


def test_letter_metadata_for_the_dmp(make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    metadata = extract_metadata(make_letter(full_content(), qualified_patient))
    assert metadata.format_code == LDL_EES_FORMAT_CODE
    assert metadata.type_code.code == "18761-7"
    assert metadata.class_code.code == "11"  # JDV_J57: 18761-7 is filed with the summaries, not the reports
    assert metadata.healthcare_facility_type_code == SA01


# --------------------------------------------------------------------------- the ANS schematrons


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    """Validation against the kit: structural checks, the XSD, the volet and the five kit-wide schematrons."""
    pytest.importorskip("saxonche")
    if not KIT.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    cache = tmp_path_factory.getbasetemp() / "volet-schematrons"  # shared by the volet modules
    cache.mkdir(exist_ok=True)
    return CdaValidator(CdaSettings(kit_dir=KIT, cache_dir=cache))


@pytest.mark.parametrize("content", sorted(CONTENTS))
def test_passes_every_schematron(
    content: str,
    make_letter: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    validator: CdaValidator,
) -> None:
    document = make_letter(CONTENTS[content](), qualified_patient)
    report = validator.validate(build(document))
    assert report.ok, report.to_text()
    assert report.volet == "LDL-EES_2022.01"
    assert set(report.schematrons) == {"LDL-EES_2022.01", *GENERIC_SCHEMATRONS}


def _kit_allergy(example_files: Mapping[str, bytes]) -> etree._Element:
    root = etree.fromstring(example_files["LDL-EES_2022.01.xml"])  # noqa: TID251 - the kit's file
    return list(root.iter("{urn:hl7-org:v3}entry"))[1]


_V3 = "{urn:hl7-org:v3}"


def _sub_entries(entry: etree._Element) -> list[etree._Element]:
    """The allergy observation's own relationships: reaction, severity, status."""
    allergy = entry.find(f"{_V3}act/{_V3}entryRelationship/{_V3}observation")
    assert allergy is not None
    return allergy.findall(f"{_V3}entryRelationship")


def _status_before_severity(entry: etree._Element) -> None:
    _, severity, status = _sub_entries(entry)
    severity.addprevious(status)


def _reaction_as_intent(entry: etree._Element) -> None:
    _sub_entries(entry)[0][0].set("moodCode", "INT")


def _reaction_negation_unknown(entry: etree._Element) -> None:
    _sub_entries(entry)[0][0].set("negationInd", "maybe")


def _severity_points_to_narrative(entry: etree._Element) -> None:
    value = _sub_entries(entry)[1][0].find(f"{_V3}value")
    assert value is not None
    reference = etree.SubElement(etree.SubElement(value, f"{_V3}originalText"), f"{_V3}reference")
    reference.set("value", "#allergie-severite-001")


def _severity_without_value(entry: etree._Element) -> None:
    value = _sub_entries(entry)[1][0].find(f"{_V3}value")
    assert value is not None
    value.getparent().remove(value)  # type: ignore[union-attr]


def _agent_name_with_null_flavor(entry: etree._Element) -> None:
    name = next(entry.iter(f"{_V3}name"))
    name.set("nullFlavor", "UNK")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_status_before_severity, "an allergy relationship the model does not hold, or out of order"),
        (_reaction_as_intent, "a reaction that is not an event (moodCode)"),
        (_reaction_negation_unknown, "a reaction with negationInd 'maybe'"),
        (_severity_points_to_narrative, "a severity whose value points to the narrative"),
        (_severity_without_value, "<observation> has 0 <value>"),
        (_agent_name_with_null_flavor, "an allergy agent name with attributes"),
    ],
)
def test_an_allergy_the_model_cannot_hold_is_declined_with_its_reason(
    example_files: Mapping[str, bytes], change: Callable[[etree._Element], None], reason: str
) -> None:
    entry = _kit_allergy(example_files)
    assert isinstance(Allergy.from_element(entry), Allergy)  # as the kit writes it: typed
    change(entry)
    with pytest.raises(ValidationError) as caught:
        Allergy.from_element(entry)
    assert caught.value.problems == (reason,)


def test_an_allergy_with_several_reactions_is_written_and_read_back(
    make_letter: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    """Each reaction gets its own content in the reaction cell; a negated one is shown as such."""
    allergy = Allergy(
        kind=Code.of("416098002", SNOMED, "allergie médicamenteuse"),
        agent=Code.of("67017786", CIS, "PARACETAMOL"),
        reactions=(
            AllergyReaction(value=Code.of("126485001", SNOMED, "urticaire")),
            AllergyReaction(value=Code.of("39579001", SNOMED, "anaphylaxie"), negated=True),
        ),
    )
    document = make_letter(LdlEesContent(reason_for_admission="Chute", allergies=(allergy,)), qualified_patient)
    data = build(document)
    assert parse(data) == document
    (read,) = _body(parse(data)).sections[2].entries
    assert isinstance(read, Allergy)
    assert [(r.value.code, r.negated, r.reference) for r in read.reactions] == [
        ("126485001", False, "allergie-1-reaction-1"),
        ("39579001", True, "allergie-1-reaction-2"),
    ]
    text = _body(document).sections[2].text
    assert text is not None and "non observé(e) : anaphylaxie" in text.xml
