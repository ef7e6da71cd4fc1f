"""The CR-IMG 2024.01 builder and reader: valid imaging reports, clear refusals, the ANS examples read typed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import pytest
from lxml import etree

from dmp_connector.cda import ClinicalDocument, InstanceId, PersonName, RawEntry, Section, StructuredBody, build, parse
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.cda.valuesets import PracticeSetting
from dmp_connector.cda.volets import (
    CR_IMG_FORMAT_CODE,
    CR_IMG_TEMPLATE,
    ClinicalInformation,
    ContrastAdministration,
    CrImgContent,
    DicomObservation,
    ImagingAct,
    ImagingSeries,
    ImagingStudy,
    ImagingTechnique,
    PatientExposure,
    Quantity,
    RadiationDose,
    RadiationExposure,
    RadiopharmaceuticalAdministration,
    SopInstance,
    as_cr_img,
    cr_img_acts,
    cr_img_document,
    cr_img_problems,
)
from dmp_connector.codes import Code
from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from .conftest import KIT, PARIS
from .kit_engine import kit_findings, volet_schematron
from .xmldiff import differences, document_differences

LOINC = "2.16.840.1.113883.6.1"
DCM = "1.2.840.10008.2.16.4"
SNOMED = "2.16.840.1.113883.6.96"
CT = Code.of("CT", DCM, "Tomodensitométrie")
HEAD = Code.of("302548004", SNOMED, "tête entière")
HEAD_AND_NECK = Code.of("774007", SNOMED, "tête et cou")
CT_IMAGE = Code.of("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.2.6.1", "CT Image Storage")
PREGNANT = Code.of("77386006", SNOMED, "Enceinte")
STUDY = "1.2.250.1.925.994044.27.123.1876360"
STARTED = datetime(2024, 3, 12, 10, 25, tzinfo=PARIS)
ENDED = datetime(2024, 3, 12, 11, 17, tzinfo=PARIS)
IMG_EXAMPLES = ("IMG_CR_IMG_2024.01.xml",)
IMG_N1 = "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"


def act(**changes: object) -> ImagingAct:
    values: dict[str, object] = {
        "code": Code.of("24727-0", LOINC, "CT tête avec contraste IV"),
        "ccam": Code.of("ACQH004", "1.2.250.1.215.300.1", "Scanographie du crâne avec injection"),
        "modalities": (CT,),
        "target_sites": (HEAD,),
        "regions": (HEAD_AND_NECK,),
        "start": STARTED,
        "end": ENDED,
        "description": "Acquisition hélicoïdale après injection.",
        "parameters": "Scanner GE Lightspeed",
        "study_uid": InstanceId(root=STUDY),
        "study_time": STARTED,
        "series": ImagingSeries(
            uid=InstanceId(root=STUDY + ".1"),
            modality=CT,
            effective_time=STARTED,
            instance=SopInstance(
                uid=InstanceId(root=STUDY + ".1.1"),
                sop_class=CT_IMAGE,
                url="https://pacs.example.org/wado?studyUID=1.2.250.1.925.994044.27.123.1876360",
                effective_time=STARTED,
            ),
        ),
    }
    values.update(changes)
    return ImagingAct.model_validate(values)


DLP = Code.of("113813", DCM, "PDL Total : Produit Dose Longueur Total")


def exposure() -> RadiationExposure:
    return RadiationExposure(
        authorised_by=PersonName(family="BIDEAULT", given="Jacques", prefix="DR"),
        authoriser_id=InstanceId(root="1.2.250.1.71.4.2.1", extension="801234560801"),
        pregnancy=Code.of("60001007", SNOMED, "absence de grossesse"),
        doses=(RadiationDose(code=DLP, quantity=Quantity.of("1140.26", "mGy.cm"), target_site=HEAD),),
        radiopharmaceuticals=(
            RadiopharmaceuticalAdministration(
                route=INTRAVENOUS,
                dose=Quantity.of(200, "MBq"),
                product_translations=(Code.of("V09AX01", ATC, "111In-indium acide pentétique"),),
                name="111In-indium acide pentétique",
                lot_number="0001512",
            ),
        ),
    )


def contrast() -> ContrastAdministration:
    return ContrastAdministration(
        id=InstanceId(root="A5ECB39E-843F-11EC-A8A3-0242AC120002"),
        route=INTRAVENOUS,
        dose=Quantity.of(150, "mL"),
        product_translations=(
            Code.of("3400936915657", "1.2.250.1.213.2.3.2", "XENETIX 350 SOL INJ POC150ML PP"),
            Code.of("V08AB11", ATC, "IOBITRIDOL"),
        ),
        name="XENETIX 350",
        lot_number="0002034",
    )


INTRAVENOUS = Code.of("20045000", "0.4.0.127.0.16.1.1.2.1", "Voie intraveineuse")
ATC = "2.16.840.1.113883.6.73"


def full_content() -> CrImgContent:
    return CrImgContent(
        acts=(act(exposure=exposure(), contrast_products=(contrast(),)),),
        clinical_information=ClinicalInformation(
            request="Céphalées inhabituelles depuis 3 semaines",
            purpose="Éliminer un processus expansif",
            medical_history="Migraine",
            surgical_history="Appendicectomie",
            contraindications=(PREGNANT,),
        ),
        findings="Pas de lésion intra-crânienne décelable.",
        conclusion="Scanner cérébral normal.",
    )


def minimal_content() -> CrImgContent:
    bare = act(ccam=None, regions=(), end=None, description=None, parameters=None)
    return CrImgContent(acts=(bare,), conclusion="Examen normal.")


CONTENTS: dict[str, Callable[[], CrImgContent]] = {"full": full_content, "minimal": minimal_content}


@pytest.fixture
def make_report(cda_settings: Settings, effective_time: datetime) -> Callable[..., ClinicalDocument]:
    def make(content: CrImgContent, patient: Identity, **fields: Any) -> ClinicalDocument:
        return cr_img_document(
            content,
            settings=cda_settings,
            patient=patient,
            effective_time=effective_time,
            practice_setting=PracticeSetting.AMBULATORY,
            **fields,
        )

    return make


def _sections(sections: tuple[Section, ...]) -> Iterator[Section]:
    for section in sections:
        yield section
        yield from _sections(section.subsections)


def _entries(document: ClinicalDocument) -> list[object]:
    assert isinstance(document.body, StructuredBody)
    return [e for s in _sections(document.body.sections) for e in s.entries]


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
    assert not any(isinstance(e, RawEntry) for e in _entries(again)), "every entry the builder writes reads back typed"


def test_report_header(make_report: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    two = full_content().model_copy(update={"acts": (act(), act(study_uid=InstanceId(root=STUDY + "9")))})
    document = parse(build(make_report(two, qualified_patient)))
    assert (document.type_code.code, document.type_code.code_system) == ("18748-4", LOINC)
    assert document.template_ids[-1] == CR_IMG_TEMPLATE and CR_IMG_TEMPLATE.extension == "2024.01"
    assert [e.ids[0].root for e in document.service_events] == [STUDY, STUDY + "9"]
    event = document.service_events[0]
    assert event.code is not None and event.code.code == "24727-0"
    translations = [etree.fromstring(t.xml) for t in event.code_translations]  # noqa: TID251 - our own output
    assert [t.get("code") for t in translations] == ["ACQH004", "CT", "774007"]
    assert translations[1].find("{urn:hl7-org:v3}qualifier/{urn:hl7-org:v3}name").get("code") == "121139"  # type: ignore[union-attr]
    assert event.effective_time is not None and (event.effective_time.low, event.effective_time.high) == (
        STARTED,
        ENDED,
    )
    assert event.performer is not None
    assert cr_img_problems(document) == []


def test_entries_read_back_typed(make_report: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    document = parse(build(make_report(full_content(), qualified_patient)))
    (technique,) = cr_img_acts(document)
    assert technique.code.code == "24727-0" and technique.ccam is not None and technique.ccam.code == "ACQH004"
    assert technique.modalities == (CT,) and technique.target_sites == (HEAD,)
    assert technique.comment_reference == "acte-1-parametres"
    (study,) = [e for e in _entries(document) if isinstance(e, ImagingStudy)]
    assert study.id.root == STUDY and study.series.instance.sop_class == CT_IMAGE
    observations = [e for e in _entries(document) if isinstance(e, DicomObservation)]
    assert [o.code.code for o in observations] == ["11348-0", "47519-4", "64100-1", "364320009"]
    assert observations[2].value == PREGNANT
    assert observations[3].target_site_null_flavor == "NA"
    (authorisation,) = [e for e in _entries(document) if isinstance(e, PatientExposure)]
    assert authorisation.authorised_by.family == "BIDEAULT"
    (dose,) = [e for e in _entries(document) if isinstance(e, RadiationDose)]
    assert dose.quantity == Quantity.of("1140.26", "mGy.cm") and str(dose.quantity.value) == "1140.26"
    (product,) = [e for e in _entries(document) if isinstance(e, ContrastAdministration)]
    assert product == contrast().model_copy(
        update={
            "reference": "acte-1-produit-1",
            "product_reference": "acte-1-produit-1",
            "dose_reference": "acte-1-produit-1-dose",
        }
    )
    (tracer,) = [e for e in _entries(document) if isinstance(e, RadiopharmaceuticalAdministration)]
    assert (tracer.id, tracer.dose, tracer.lot_number) == (None, Quantity.of(200, "MBq"), "0001512")


def test_report_metadata_for_the_dmp(make_report: Callable[..., ClinicalDocument], qualified_patient: Identity) -> None:
    metadata = extract_metadata(make_report(full_content(), qualified_patient))
    assert metadata.format_code == CR_IMG_FORMAT_CODE
    assert CR_IMG_FORMAT_CODE.code == "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013"
    assert metadata.class_code.code == "31"
    assert metadata.type_code.code == "18748-4"
    assert [c.code for c in metadata.event_codes] == ["24727-0"]


# --------------------------------------------------------------------------- invalid inputs


def test_modality_outside_its_value_set_is_refused() -> None:
    content = CrImgContent(acts=(act(modalities=(Code.of("XX", DCM, "?"),)),), conclusion="Normal.")
    with pytest.raises(ValidationError) as caught:
        content.to_body()
    assert caught.value.problems == ("acts[0].modalities[0]: XX is not in JDV_ModaliteAcquisition_CISIS",)


def test_a_dose_or_pregnancy_status_outside_its_value_set_is_refused() -> None:
    wrong = exposure().model_copy(
        update={
            "pregnancy": PREGNANT.model_copy(update={"code": "1234"}),
            "doses": (RadiationDose(code=CT, quantity=Quantity.of(1, "mGy"), target_site=HEAD),),
        }
    )
    with pytest.raises(ValidationError) as caught:
        CrImgContent(acts=(act(exposure=wrong),), conclusion="Normal.").to_body()
    assert caught.value.problems == (
        "acts[0].exposure.pregnancy: 1234 is not in JDV_StatutGrossesse_CISIS",
        "acts[0].exposure.doses[0].code: CT is not in JDV_QuantiteExpositionRayonnements_CISIS",
    )


def test_missing_or_wrong_values_are_refused_not_invented() -> None:
    with pytest.raises(ValidationError) as no_modality:
        act(modalities=())
    assert any("modalities" in p for p in no_modality.value.problems)
    with pytest.raises(ValidationError, match="CCAM"):
        act(ccam=Code.of("24727-0", LOINC))
    with pytest.raises(ValidationError, match="ends before it starts"):
        act(end=datetime(2024, 3, 11, tzinfo=PARIS))
    with pytest.raises(ValidationError) as no_conclusion:
        CrImgContent(acts=(act(),), conclusion="")
    assert any("conclusion" in p for p in no_conclusion.value.problems)
    with pytest.raises(ValidationError) as no_contraindication:
        ClinicalInformation(request="r", medical_history="m", surgical_history="s", contraindications=())
    assert any("contraindications" in p for p in no_contraindication.value.problems)
    with pytest.raises(ValidationError, match="coded value or a narrative reference"):
        DicomObservation(code=Code.of("11348-0", LOINC))


def test_a_body_without_the_required_sections_is_refused(
    make_report: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    document = make_report(minimal_content(), qualified_patient)
    assert isinstance(document.body, StructuredBody)
    without_conclusion = StructuredBody(sections=document.body.sections[:-1])
    with pytest.raises(ValidationError) as caught:
        as_cr_img(document.model_copy(update={"body": without_conclusion}))
    assert caught.value.problems == ("body: the section 'Conclusion' (1.2.250.1.213.1.1.2.209) is missing",)
    bare_event = document.service_events[0].model_copy(update={"code_translations": ()})
    with pytest.raises(ValidationError, match="modality translation"):
        as_cr_img(document.model_copy(update={"service_events": (bare_event,)}))


# --------------------------------------------------------------------------- the ANS examples


def _normalised(element: etree._Element) -> etree._Element:
    """A copy without comments, white-space-only text and ``codeSystemName`` (which no typed entry holds)."""
    copy = etree.fromstring(etree.tostring(element))  # noqa: TID251 - already parsed
    for node in list(copy.iter()):
        if not isinstance(node.tag, str):
            parent = node.getparent()
            assert parent is not None
            if node.tail and node.tail.strip():
                previous = node.getprevious()
                if previous is not None:
                    previous.tail = (previous.tail or "") + node.tail
                else:
                    parent.text = (parent.text or "") + node.tail
            parent.remove(node)
    for node in copy.iter():
        if "codeSystemName" in node.attrib:
            del node.attrib["codeSystemName"]
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return copy


@pytest.mark.parametrize("name", IMG_EXAMPLES)
def test_ans_report_reads_into_typed_entries_that_rebuild_element_by_element(
    name: str, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    document = parsed_examples[name]
    assert cr_img_problems(document) == []
    techniques = cr_img_acts(document)
    assert [t.code.code for t in techniques] == ["24727-0", "36235-0", "24979-7"]
    assert techniques[0].ccam is not None and techniques[0].ccam.code == "ACQH004"
    studies = [e for e in _entries(document) if isinstance(e, ImagingStudy)]
    assert studies[0].id.root == STUDY
    assert len(studies) == 3
    kinds = (
        ImagingTechnique
        | ImagingStudy
        | DicomObservation
        | RadiationDose
        | PatientExposure
        | ContrastAdministration
        | RadiopharmaceuticalAdministration
    )
    typed = [e for e in _entries(document) if isinstance(e, kinds)]
    # 3 acts, 3 studies, 6 observations (history, contraindication, pregnancy), 5 doses, 3 authorisations,
    # 3 contrast products, 3 radiopharmaceuticals; the act's supply and the organizer stay raw
    assert len(typed) == 26
    doses = [e for e in typed if isinstance(e, RadiationDose)]
    assert (doses[0].code.code, doses[0].quantity) == ("113813", Quantity.of("1140.26", "mGy.cm"))
    exposure = next(e for e in typed if isinstance(e, PatientExposure))
    assert exposure.id is None  # the kit's exposure has no id: none is invented
    assert (exposure.authorised_by.family, exposure.authoriser_id.extension) == ("BIDEAULT", "980003719")
    assert exposure.authorisation.display_name == "Autorisation d’irradiation"  # as the kit writes it
    contrast = next(e for e in typed if isinstance(e, ContrastAdministration))
    assert (contrast.name, contrast.lot_number, contrast.dose) == ("XENETIX 350", "0002034", Quantity.of(150, "mL"))
    assert contrast.product is None and [t.code for t in contrast.product_translations] == ["3400936915657", "V08AB11"]
    assert contrast.comment_reference == "acte-01-traitement-commentaire"
    tracer = next(e for e in typed if isinstance(e, RadiopharmaceuticalAdministration))
    assert (tracer.id, tracer.dose, tracer.dose_reference) == (
        None,
        Quantity.of(200, "MBq"),
        "acte-01-radiopharmaceutique-activite",
    )
    # Each typed entry, written afresh from its fields alone, is the kit's element (paired in document order:
    # the kit reuses some entry ids).
    root = etree.fromstring(example_files[name])  # noqa: TID251 - the kit's file
    originals = list(root.iter("{urn:hl7-org:v3}entry"))
    entries = _entries(document)
    assert len(originals) == len(entries)
    compared = 0
    for original, entry in zip(originals, entries, strict=True):
        if isinstance(entry, kinds):
            fresh = entry.model_copy().to_element()
            assert differences(_normalised(original), _normalised(fresh), "/entry") == [], type(entry).__name__
            compared += 1
    assert compared == 26


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        # an administration still under way (the model writes a completed one)
        (
            '<text><reference value="#acte-01-traitement"/></text>\n              <statusCode code="completed"/>',
            '<text><reference value="#acte-01-traitement"/></text><statusCode code="active"/>',
            ContrastAdministration,
        ),
        # a product without classCode: read, but the rewrite would add it, so declined
        (
            '<manufacturedProduct classCode="MANU">\n                  <manufacturedMaterial>\n                    \n',
            "<manufacturedProduct><manufacturedMaterial>",
            ContrastAdministration,
        ),
        # a radiopharmaceutical consumed otherwise than CSM
        ('<consumable typeCode="CSM">', "<consumable>", RadiopharmaceuticalAdministration),
        # a dose that is not a number
        (
            '<doseQuantity value="200" unit="MBq">',
            '<doseQuantity value="deux" unit="MBq">',
            RadiopharmaceuticalAdministration,
        ),
        # an exposure whose role is another than the authorisation
        ('<code code="113850"', '<code code="113851"', PatientExposure),
        # an exposure with a null id: the rewrite would leave it out, so declined
        (
            '<templateId root="1.2.250.1.213.1.1.3.165"/> ',
            '<templateId root="1.2.250.1.213.1.1.3.165"/><id nullFlavor="UNK"/>',
            PatientExposure,
        ),
    ],
)
def test_what_the_imaging_models_do_not_hold_stays_raw(
    example_files: Mapping[str, bytes], old: str, new: str, kind: type
) -> None:
    """The first such entry of the kit's report, changed as shown, stays as written; the report rebuilds as it came."""
    text = example_files[IMG_EXAMPLES[0]].decode().replace("\r\n", "\n")
    assert old in text
    changed = text.replace(old, new, 1).encode()
    document = parse(changed)
    before = [e for e in _entries(parse(text.encode())) if isinstance(e, kind)]
    after = [e for e in _entries(document) if isinstance(e, kind)]
    assert len(after) == len(before) - 1
    assert document_differences(changed, build(document)) == []


def test_ans_examples_come_back_losslessly(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    for name in (*IMG_EXAMPLES, IMG_N1):  # the level-1 report goes through the untyped path (a PDF body)
        assert document_differences(example_files[name], build(parsed_examples[name])) == [], name


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


QUICK = ("IHE", "Modeles_ANS", "ModelesDeContenusCDA", "terminologie")


@pytest.mark.parametrize("content", sorted(CONTENTS))
def test_passes_the_projects_validator_and_the_kits_own_engine(
    content: str,
    make_report: Callable[..., ClinicalDocument],
    qualified_patient: Identity,
    validator: CdaValidator,
) -> None:
    data = build(make_report(CONTENTS[content](), qualified_patient))
    report = validator.validate(data)
    assert report.ok, report.to_text()
    assert report.volet == "IMG-CR-IMG_2024.01"
    assert set(report.schematrons) == {"IMG-CR-IMG_2024.01", *GENERIC_SCHEMATRONS}
    volet = volet_schematron(data, validator)
    assert volet is not None and volet.name == "CI-SIS_IMG-CR-IMG_2024.01.sch"
    for path in (volet, *(KIT / "schematrons" / GENERIC_SCHEMATRONS[n] for n in QUICK)):
        assert kit_findings(data, path) == frozenset(), path.name


def test_an_entry_the_model_cannot_hold_stays_raw_and_comes_back_whole(
    make_report: Callable[..., ClinicalDocument], qualified_patient: Identity
) -> None:
    """A null time where the model holds a time or nothing: read as it is (RawEntry), never dropped or rewritten."""
    data = build(make_report(full_content(), qualified_patient))
    root = etree.fromstring(data)  # noqa: TID251 - our own output
    hl7 = "{urn:hl7-org:v3}"
    procedure = root.find(f".//{hl7}procedure")
    assert procedure is not None
    time = procedure.find(f"{hl7}effectiveTime")
    assert time is not None
    del time.attrib["value"]
    time.set("nullFlavor", "NI")
    changed = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    document = parse(changed)
    assert cr_img_acts(document) == []
    raws = [e for e in _entries(document) if isinstance(e, RawEntry)]
    assert len(raws) == 1 and 'nullFlavor="NI"' in raws[0].xml
    assert document_differences(changed, build(document)) == []


_V3 = "{urn:hl7-org:v3}"


def _first_entry(data: bytes, template: str) -> etree._Element:
    root = etree.fromstring(data)  # noqa: TID251 - the kit's file
    for entry in root.iter(f"{_V3}entry"):
        if any(t.get("root") == template for t in entry.iter(f"{_V3}templateId")):
            return entry
    raise AssertionError(template)


def _two_comments(entry: etree._Element) -> None:
    comment = entry[0].find(f"{_V3}entryRelationship")
    assert comment is not None
    comment.addnext(etree.fromstring(etree.tostring(comment)))  # noqa: TID251 - a copy


def _name_with_parts(entry: etree._Element) -> None:
    name = next(entry.iter(f"{_V3}name"))
    etree.SubElement(name, f"{_V3}given").text = "XENETIX"


def _dose_without_value(entry: etree._Element) -> None:
    low = next(entry.iter(f"{_V3}low"))
    del low.attrib["value"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_two_comments, "an administration with more than one comment"),
        (_name_with_parts, "a <name> that is not plain text"),
        (_dose_without_value, "a dose without value"),
    ],
)
def test_a_product_the_model_cannot_hold_is_declined_with_its_reason(
    example_files: Mapping[str, bytes], change: Callable[[etree._Element], None], reason: str
) -> None:
    entry = _first_entry(example_files[IMG_EXAMPLES[0]], "1.2.250.1.213.1.1.3.151")
    assert isinstance(ContrastAdministration.from_element(entry), ContrastAdministration)
    change(entry)
    with pytest.raises(ValidationError) as caught:
        ContrastAdministration.from_element(entry)
    assert caught.value.problems == (reason,)
