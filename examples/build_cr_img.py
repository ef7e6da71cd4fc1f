"""Build an imaging report (CR-IMG 2024.01) from typed values, read it back, and derive its DMP metadata.

Run it with ``python examples/build_cr_img.py [OUTPUT.xml]``. It needs no network: the
radiology practice and the radiologist are set in code. When the ANS conformance kit is
found (``DMP_CONNECTOR_CDA__KIT_DIR``, or ``../shared/cda-2025`` next to the project), the
report is also checked against the CDA schema. It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from dmp_connector.cda import InstanceId, PersonName, StructuredBody, build, extract_metadata, parse
from dmp_connector.cda.valuesets import PracticeSetting
from dmp_connector.cda.volets import (
    CR_IMG_FORMAT_CODE,
    ClinicalInformation,
    CrImgContent,
    ImagingAct,
    ImagingSeries,
    Quantity,
    RadiationDose,
    RadiationExposure,
    SopInstance,
    cr_img_acts,
    cr_img_document,
    cr_img_problems,
)
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import Organisation, Professional, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.errors import ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.xml import parse_xml

PARIS = ZoneInfo("Europe/Paris")
LOINC, DCM, SNOMED = "2.16.840.1.113883.6.1", "1.2.840.10008.2.16.4", "2.16.840.1.113883.6.96"
STUDY = "1.2.250.1.925.994044.27.123.1876360"


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def find_kit() -> Path | None:
    configured = os.environ.get("DMP_CONNECTOR_CDA__KIT_DIR")
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "cda-2025")
    return next((p for p in candidates if (p / "infrastructure" / "cda" / "CDA_extended.xsd").is_file()), None)


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else None

    step("1. Settings: the radiology practice and the radiologist who signs")
    settings = Settings(
        software=SoftwareIdentity(name="ExampleRIS", version="0.1", editor="Example Editor"),
        organisation=Organisation(
            id="750512345",
            id_kind=StructureIdKind.FINESS,
            name="Centre de radiologie Ambroise",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="10001234567",
            family_name="BIDEAULT",
            given_name="Jacques",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM44", "Radio-diagnostic"),
        ),
    )
    traits = IdentityTraits.build(
        birth_name="Adrtrois",
        birth_first_names="Dominique Marie",
        sex="F",
        birth_date="1997-02-26",
        birth_place="2A020",
    )
    patient = Identity(traits=traits, ins=INS.parse("297022A02077878", oid=InsOid.NIR_TEST), status=IdentityStatus.QUAL)

    step("2. What the report says: one CT act, its DICOM study, the request, the findings, the conclusion")
    ct = Code.of("CT", DCM, "Tomodensitométrie")
    act = ImagingAct(
        code=Code.of("24727-0", LOINC, "CT tête avec contraste IV"),
        ccam=Code.of("ACQH004", "1.2.250.1.215.300.1", "Scanographie du crâne, avec injection"),
        modalities=(ct,),  # JDV_ModaliteAcquisition
        target_sites=(Code.of("302548004", SNOMED, "tête entière"),),  # JDV_LocalisationAnatomique
        regions=(Code.of("774007", SNOMED, "tête et cou"),),  # JDV_RegionAnatomique
        start=datetime(2024, 3, 12, 10, 25, tzinfo=PARIS),
        end=datetime(2024, 3, 12, 11, 17, tzinfo=PARIS),
        parameters="Scanner GE Lightspeed, 120 kV",
        study_uid=InstanceId(root=STUDY),  # the DICOM Study Instance UID
        study_time=datetime(2024, 3, 12, 10, 25, tzinfo=PARIS),
        series=ImagingSeries(
            uid=InstanceId(root=f"{STUDY}.1"),
            modality=ct,
            instance=SopInstance(
                uid=InstanceId(root=f"{STUDY}.1.1"),
                sop_class=Code.of("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.2.6.1", "CT Image Storage"),
                url=f"https://pacs.example.org/wado?requestType=WADO&studyUID={STUDY}",
            ),
        ),
        exposure=RadiationExposure(  # the dose of an ionising examination
            authorised_by=PersonName(family="BIDEAULT", given="Jacques", prefix="DR"),
            authoriser_id=InstanceId(root="1.2.250.1.71.4.2.1", extension="810001234567"),
            pregnancy=Code.of("60001007", SNOMED, "absence de grossesse"),  # jdv-statut-grossesse-cisis
            doses=(
                RadiationDose(
                    code=Code.of("113813", DCM, "PDL Total : Produit Dose Longueur Total"),
                    quantity=Quantity.of("1140.26", "mGy.cm"),
                    target_site=Code.of("302548004", SNOMED, "tête entière"),
                ),
            ),
        ),
    )
    content = CrImgContent(
        acts=(act,),
        clinical_information=ClinicalInformation(
            request="Céphalées inhabituelles depuis trois semaines",
            medical_history="Migraine",
            surgical_history="Appendicectomie",
            contraindications=(
                Code.of("MED-1109", "1.2.250.1.213.1.1.4.322", "Patient claustrophobe"),
            ),  # jdv-contre-indication-cisis
        ),
        findings="Pas de lésion intra-crânienne décelable.",
        conclusion="Scanner cérébral normal.",
    )

    step("3. The document: header, one service event per act, the DICOM Part 20 sections")
    document = cr_img_document(
        content,
        settings=settings,
        patient=patient,
        effective_time=datetime(2024, 3, 12, 12, 0, tzinfo=PARIS),
        practice_setting=PracticeSetting.AMBULATORY,
    )
    data = build(document)
    check(cr_img_problems(document) == [], "type 18748-4, the CR-IMG templateIds, the required sections")
    again = parse(data)
    check(again == document, f"built ({len(data)} bytes) and parsed back to the same model")
    (technique,) = cr_img_acts(again)
    check(technique.ccam is not None and technique.ccam.code == "ACQH004", "the act reads back typed, with its CCAM")
    assert isinstance(again.body, StructuredBody)
    doses = [
        e for s in again.body.sections for sub in s.subsections for e in sub.entries if isinstance(e, RadiationDose)
    ]
    check([str(d.quantity.value) for d in doses] == ["1140.26"], "the dose reads back typed: 1140.26 mGy.cm")
    if output is not None:
        output.write_bytes(data)
        print(f"   written to {output}")

    step("4. The CDA schema (CDA_extended.xsd of the ANS kit)")
    kit = find_kit()
    if kit is None:
        print("   skipped: set DMP_CONNECTOR_CDA__KIT_DIR to the ANS TestContenuCDA kit to run this check")
    else:
        schema_file = kit / "infrastructure" / "cda" / "CDA_extended.xsd"
        xsd = etree.XMLSchema(etree.parse(str(schema_file)))  # noqa: TID251 - the kit's own schema, a local file
        valid = xsd.validate(parse_xml(data, what="the built document"))
        check(valid, "valid against CDA_extended.xsd" if valid else f"schema errors: {xsd.error_log}")

    step("5. XDS metadata for the DMP deposit, from the document itself")
    meta = extract_metadata(document)
    check(meta.format_code == CR_IMG_FORMAT_CODE, f"formatCode {meta.format_code.code}")
    check(meta.class_code.code == "31", f"classCode {meta.class_code.code} {meta.class_code.display_name}")
    check([c.code for c in meta.event_codes] == ["24727-0"], "eventCode: the act")

    step("6. What the builder refuses")
    try:
        CrImgContent(
            acts=(act.model_copy(update={"modalities": (Code.of("XX", DCM, "?"),)}),), conclusion="x"
        ).to_body()
    except ValidationError as exc:
        check("JDV_ModaliteAcquisition" in exc.message, f"a modality outside its value set: {exc.problems[0]}")
    else:
        check(False, "a modality outside its value set was refused")
    try:
        CrImgContent(acts=(act,), conclusion="")
    except ValidationError as exc:
        check(True, f"a report without conclusion: {exc.problems[0]}")
    else:
        check(False, "a report without conclusion was refused")

    print("\nCR-IMG example finished: every check passed.")


if __name__ == "__main__":
    main()
