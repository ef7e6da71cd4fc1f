"""Build a PDF-body CI-SIS CDA document for a qualified patient, check it, and derive its DMP metadata.

Run it with ``python examples/build_cda.py [OUTPUT.xml]``. It needs no network: the
organisation and the professional are set in code, the PDF is a one-page PDF made on the
fly. When the ANS conformance kit is found (``DMP_CONNECTOR_CDA__KIT_DIR``, or
``../shared/cda-2025`` next to the project), the document is also checked against the CDA schema
(``CDA_extended.xsd``). It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from dmp_connector import (
    INS,
    Code,
    Identity,
    IdentityNotQualifiedError,
    IdentityStatus,
    IdentityTraits,
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    ValidationError,
)
from dmp_connector.cda import ClinicalDocument, NonXmlBody, build, extract_metadata, parse, xds_time
from dmp_connector.codes import professional_specialty
from dmp_connector.ins import InsOid
from dmp_connector.xml import parse_xml

PARIS = ZoneInfo("Europe/Paris")
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
MASQUE_PS = Code.of("MASQUE_PS", "1.2.250.1.213.1.1.4.13", "Masqué aux professionnels de santé")


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def one_page_pdf(text: str) -> bytes:
    """A minimal well-formed PDF (a real deposit carries the report the software printed, PDF/A)."""
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

    step("1. Settings: the organisation (FINESS) and the professional (RPPS) who signs")
    settings = Settings(
        software=SoftwareIdentity(name="ExampleLPS", version="0.1", editor="Example Editor"),
        organisation=Organisation(
            id="750512345",
            id_kind=StructureIdKind.FINESS,
            name="Cabinet du Dr Martin",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="10001234567",
            family_name="MARTIN",
            given_name="Paul",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
    )
    doctor, organisation = settings.require_professional(), settings.require_organisation()
    print(f"   {doctor.given_name} {doctor.family_name}, {organisation.name}")

    step("2. A qualified patient: INS retrieved from INSi and an identity document checked")
    traits = IdentityTraits.build(
        birth_name="Adrtrois",
        birth_first_names="Dominique Marie",
        sex="F",
        birth_date="1997-02-26",
        birth_place="2A020",
    )
    patient = Identity(traits=traits, ins=INS.parse("297022A02077878", oid=InsOid.NIR_TEST), status=IdentityStatus.QUAL)
    print(f"   {patient.ins}")

    step("3. The document: a consultation report carried as a PDF")
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=CONSULTATION,
        title="Compte rendu de consultation",
        body=NonXmlBody(data=one_page_pdf("Compte rendu de consultation du 12 mars 2024")),
        effective_time=datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
        service_start=datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
        service_end=datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
        practice_setting=AMBULATOIRE,
    )
    data = build(document)
    check(data.startswith(b"<?xml") and b"<nonXMLBody>" in data, f"built: {len(data)} bytes of UTF-8 XML")
    check(parse(data) == document, "parsed back to the same model")
    check(build(document) == data, "the same model always gives the same bytes")
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
    meta = extract_metadata(document, confidentiality=(MASQUE_PS,))
    check(meta.class_code.code == "10" and meta.format_code.code == "urn:ihe:iti:xds-sd:pdf:2008", "class and format")
    for name, value in (
        ("uniqueId", meta.unique_id),
        ("typeCode", f"{meta.type_code.code} {meta.type_code.display_name}"),
        ("classCode", f"{meta.class_code.code} {meta.class_code.display_name}"),
        ("formatCode", meta.format_code.code),
        ("practiceSettingCode", meta.practice_setting_code.code),
        ("healthcareFacilityTypeCode", meta.healthcare_facility_type_code.code),
        ("confidentialityCode", " ".join(c.code for c in meta.confidentiality_codes)),
        ("creationTime", xds_time(meta.creation_time)),
        ("serviceStartTime", xds_time(meta.service_start_time) if meta.service_start_time else "-"),
        ("authorPerson", meta.authors[0].person.xcn() if meta.authors[0].person else "-"),
        ("authorInstitution", meta.authors[0].xon() or "-"),
        ("authorSpecialty", meta.authors[0].specialty_cne() or "-"),
        ("patientId", meta.patient_id),
        ("hash / size", f"{meta.hash} / {meta.size}"),
    ):
        print(f"   {name:27} {value}")

    step("6. What the builder refuses")
    try:
        ClinicalDocument.from_settings(
            settings,
            patient=patient.updated(status=IdentityStatus.RECUP),
            type_code=CONSULTATION,
            title="CR",
            body=NonXmlBody(data=one_page_pdf("x")),
            effective_time=datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
            service_start=datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
            practice_setting=AMBULATOIRE,
        )
    except IdentityNotQualifiedError as exc:
        check(True, f"an identity not yet qualified: {exc.message}")
    else:
        check(False, "an identity not yet qualified was refused")
    try:
        NonXmlBody(data=b"<html>not a pdf</html>")
    except ValidationError as exc:
        check(True, f"a file that is not a PDF: {exc.message}")
    else:
        check(False, "a file that is not a PDF was refused")

    print("\nCDA example finished: every check passed.")


if __name__ == "__main__":
    main()
