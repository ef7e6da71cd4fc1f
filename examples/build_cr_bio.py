"""Build a lab results report (CR-BIO 2024.01) from typed results, read it back, and derive its DMP metadata.

Run it with ``python examples/build_cr_bio.py [OUTPUT.xml]``. It needs no network: the
laboratory, the biologist and the results are set in code, the PDF copy the volet requires
is a one-page PDF made on the fly. When the ANS conformance kit is found
(``DMP_CONNECTOR_CDA__KIT_DIR``, or ``../shared/cda-2025`` next to the project), the report
is also checked against the CDA schema. It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from dmp_connector.cda import (
    Address,
    AssignedEntity,
    InstanceId,
    Organization,
    PersonName,
    StructuredBody,
    Telecom,
    build,
    extract_metadata,
    parse,
)
from dmp_connector.cda.valuesets import Interpretation, PracticeSetting, SpecimenType
from dmp_connector.cda.volets import (
    CrBioContent,
    LabBattery,
    LabChapter,
    LabComment,
    LabReportEntry,
    LabResult,
    LabValidator,
    PreviousResult,
    Quantity,
    ReferenceRange,
    SpecimenCollection,
    cr_bio_document,
    cr_bio_problems,
)
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import Organisation, Professional, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.errors import ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.xml import parse_xml

PARIS = ZoneInfo("Europe/Paris")
LOINC = "2.16.840.1.113883.6.1"
LABORATORY = Code.of("SA25", "1.2.250.1.71.4.2.4", "Laboratoire de biologie médicale")
COLLECTED = datetime(2024, 3, 11, 7, 35, tzinfo=PARIS)
VALIDATED = datetime(2024, 3, 11, 15, 20, tzinfo=PARIS)


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def one_page_pdf(text: str) -> bytes:
    """A minimal well-formed PDF (a real report carries what the laboratory printed, PDF/A)."""
    stream = f"BT /F1 14 Tf 72 760 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def find_kit() -> Path | None:
    configured = os.environ.get("DMP_CONNECTOR_CDA__KIT_DIR")
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "cda-2025")
    return next((p for p in candidates if (p / "infrastructure" / "cda" / "CDA_extended.xsd").is_file()), None)


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else None

    step("1. The laboratory (FINESS) and its biologist (RPPS), who authors and signs")
    settings = Settings(
        software=SoftwareIdentity(name="ExampleSIL", version="0.1", editor="Example Editor"),
        organisation=Organisation(
            id="920012345", id_kind=StructureIdKind.FINESS, name="Laboratoire des charmes", activity_sector=LABORATORY
        ),
        professional=Professional(
            id="10001234534",
            family_name="CAMPARINI",
            given_name="Marcel",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM03", "Biologie médicale"),
        ),
    )
    address = Address.of(house_number="8", street_name="Rue Frédéric Bastia", postal_code="92100", city="BOULOGNE")
    phone = Telecom(value="tel:0174589607", use="WP")
    biologist = AssignedEntity(
        id=InstanceId.of("1.2.250.1.71.4.2.1", "810001234534"),
        code=Code.of("G15_10/SM03", "1.2.250.1.213.1.1.4.5", "Médecin - Biologie médicale (SM)"),
        addresses=(address,),
        telecoms=(phone,),
        person=PersonName(family="CAMPARINI", given="Marcel", prefix="M", suffix="DR"),
        organization=Organization(
            id=InstanceId.of("1.2.250.1.71.4.2.2", "1920012345"),
            name="Laboratoire des charmes",
            telecoms=(phone,),
            addresses=(address,),
        ),
    )

    step("2. A qualified patient")
    traits = IdentityTraits.build(
        birth_name="Adrtrois",
        birth_first_names="Dominique Marie",
        sex="F",
        birth_date="1997-02-26",
        birth_place="2A020",
    )
    patient = Identity(traits=traits, ins=INS.parse("297022A02077878", oid=InsOid.NIR_TEST), status=IdentityStatus.QUAL)

    step("3. The results: LOINC codes, UCUM units, reference ranges, interpretations, an earlier value")
    glucose_code = Code.of("2345-7", LOINC, "Glucose [Masse/Volume] Sérum/Plasma ; Numérique")
    glucose = LabResult(
        code=glucose_code,
        value=Quantity.of("1.32", "g/L"),
        effective_time=COLLECTED,
        interpretations=(Interpretation.HIGH,),
        reference_range=ReferenceRange(low=Quantity.of("0.70", "g/L"), high=Quantity.of("1.10", "g/L")),
        previous=(
            PreviousResult(code=glucose_code, effective_time=date(2023, 9, 2), value=Quantity.of("1.05", "g/L")),
        ),
    )
    hemogram = LabBattery(
        code=Code.of("58410-2", LOINC, "Hémogramme"),
        effective_time=COLLECTED,
        components=(
            LabResult(
                code=Code.of("718-7", LOINC, "Hémoglobine [Masse/Volume] Sang ; Numérique"),
                value=Quantity.of("13.9", "g/dL"),
                effective_time=COLLECTED,
                interpretations=(Interpretation.NORMAL,),
                reference_range=ReferenceRange(low=Quantity.of("12", "g/dL"), high=Quantity.of("16", "g/dL")),
            ),
            LabComment(text="Pas d'anomalie morphologique."),
        ),
    )
    blood = SpecimenCollection(
        specimen_type=SpecimenType.BLOOD,
        specimen_id=InstanceId.of("1.2.250.1.213.1.1.9", "24031100042"),
        collected=COLLECTED,
    )
    validated_by = LabValidator(
        id=InstanceId.of("1.2.250.1.71.4.2.1", "810001234534"),
        name=PersonName(family="CAMPARINI", given="Marcel", prefix="M", suffix="DR"),
        time=VALIDATED,
    )
    content = CrBioContent(
        chapters=(
            LabChapter(
                code=Code.of("18719-5", LOINC, "Biochimie"),
                title="Biochimie",
                items=(blood, glucose),
                validator=validated_by,
            ),
            LabChapter(code=Code.of("18723-7", LOINC, "Hématologie"), title="Hématologie", items=(hemogram,)),
        ),
        pdf_copy=one_page_pdf("Compte rendu d'examens biologiques du 11 mars 2024"),
    )

    step("4. The report")
    document = cr_bio_document(
        content,
        settings=settings,
        patient=patient,
        effective_time=datetime(2024, 3, 11, 16, 0, tzinfo=PARIS),
        biologist=biologist,
        collected=COLLECTED,
        performed=VALIDATED,
        practice_setting=PracticeSetting.AMBULATORY,
    )
    data = build(document)
    check(cr_bio_problems(document) == [], "a CR-BIO 2024.01: type 11502-2, XD-LAB and CR-BIO templateIds, PDF copy")
    again = parse(data)
    check(again == document, "parsed back to the same model")
    assert isinstance(again.body, StructuredBody)
    entry = again.body.sections[0].entries[0]
    check(isinstance(entry, LabReportEntry), "the results entry reads back typed")
    assert isinstance(entry, LabReportEntry)
    value = entry.results()[0].value
    check(value == Quantity(value=Decimal("1.32"), unit="g/L"), f"glucose: {value}")
    if output is not None:
        output.write_bytes(data)
        print(f"   written to {output}")

    step("5. The CDA schema (CDA_extended.xsd of the ANS kit)")
    kit = find_kit()
    if kit is None:
        print("   skipped: set DMP_CONNECTOR_CDA__KIT_DIR to the ANS TestContenuCDA kit to run this check")
    else:
        schema_file = kit / "infrastructure" / "cda" / "CDA_extended.xsd"
        xsd = etree.XMLSchema(etree.parse(str(schema_file)))  # noqa: TID251 - the kit's own schema, a local file
        valid = xsd.validate(parse_xml(data, what="the built report"))
        check(valid, "valid against CDA_extended.xsd" if valid else f"schema errors: {xsd.error_log}")

    step("6. XDS metadata, derived: nothing typed by hand")
    meta = extract_metadata(document)
    check(meta.type_code.code == "11502-2" and meta.class_code.code == "10", "type 11502-2, class 10")
    check(meta.format_code.code == "urn:ihe:lab:xd-lab:2008", f"format {meta.format_code.code}")

    step("7. What the builder refuses")
    for label, bad in (
        ("a numeric result without unit", glucose.model_copy(update={"value": Quantity(value=Decimal("1.32"))})),
        ("a LOINC code with a wrong check digit", glucose.model_copy(update={"code": Code.of("2345-8", LOINC, "x")})),
    ):
        chapter = content.chapters[0].model_copy(update={"items": (bad,)})
        try:
            content.model_copy(update={"chapters": (chapter,)}).to_body()
        except ValidationError as exc:
            check(True, f"{label}: {exc.problems[0]}")
        else:
            check(False, f"{label} was refused")

    print("\nCR-BIO example finished: every check passed.")


if __name__ == "__main__":
    main()
