"""Build a vaccination note (VAC-NOTE 2023.01) from typed values, read it back, and derive its DMP metadata.

Run it with ``python examples/build_vac_note.py [OUTPUT.xml]``. It needs no network: the
practice and the vaccinating doctor are set in code. When the ANS conformance kit is found
(``DMP_CONNECTOR_CDA__KIT_DIR``, or ``../shared/cda-2025`` next to the project), the note is
also checked against the CDA schema. It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from dmp_connector.cda import AssignedEntity, build, extract_metadata, parse
from dmp_connector.cda.valuesets import PracticeSetting
from dmp_connector.cda.volets import (
    VAC_NOTE_FORMAT_CODE,
    Vaccination,
    VaccinationReaction,
    VacNoteContent,
    vac_note_document,
    vac_note_problems,
    vac_note_vaccination,
)
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import Organisation, Professional, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.errors import ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.xml import parse_xml

PARIS = ZoneInfo("Europe/Paris")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")


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

    step("1. Settings: the practice and the doctor who vaccinates and signs")
    settings = Settings(
        software=SoftwareIdentity(name="ExampleLPS", version="0.1", editor="Example Editor"),
        organisation=Organisation(
            id="750512345",
            id_kind=StructureIdKind.FINESS,
            name="Cabinet du Dr Muller",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="10001234567",
            family_name="MULLER",
            given_name="Charles",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
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
    doctor = AssignedEntity.from_professional(
        settings.require_professional(), organisation=settings.require_organisation(), industry_class=AMBULATOIRE
    )

    step("2. What the note says: one vaccine given, its lot, route, site, rank, a reaction")
    vaccination = Vaccination(
        code=Code.of("INITIMMUNIZ", "2.16.840.1.113883.5.4", "1ère série vaccinante"),
        day=date(2024, 3, 12),  # a day: the volet wants YYYYMMDD
        product=Code.of("68747507", "1.2.250.1.213.2.3.1", "VACCIN TETANIQUE PASTEUR"),  # CIS
        atc=Code.of("J07AM", "2.16.840.1.113883.6.73", "vaccins tétaniques"),  # required by the volet
        product_name="VACCIN TETANIQUE PASTEUR",
        lot_number="4456672",
        route=Code.of("20035000", "0.4.0.127.0.16.1.1.2.1", "Voie intramusculaire"),
        approach_site=Code.of("16217701000119102", "2.16.840.1.113883.6.96", "deltoïde gauche"),
        dose_number=2,
        reactions=(
            VaccinationReaction(value=Code.of("R50.2", "2.16.840.1.113883.6.3", "Fièvre due à des médicaments")),
        ),
        performer=doctor,
    )

    step("3. The document: header, the one vaccination section")
    document = vac_note_document(
        VacNoteContent(vaccination=vaccination),
        settings=settings,
        patient=patient,
        effective_time=datetime(2024, 3, 12, 12, 0, tzinfo=PARIS),
        practice_setting=PracticeSetting.AMBULATORY,
    )
    data = build(document)
    check(vac_note_problems(document) == [], "type 87273-9, the VAC-NOTE templateIds, one vaccination")
    again = parse(data)
    check(again == document, f"built ({len(data)} bytes) and parsed back to the same model")
    read = vac_note_vaccination(again)
    check(
        read is not None and read.lot_number == "4456672" and read.dose_number == 2, "the vaccination reads back typed"
    )
    check(read is not None and read.author is not None, "recorded by the configured professional")
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
    check(meta.format_code == VAC_NOTE_FORMAT_CODE, f"formatCode {meta.format_code.code}")
    check(meta.class_code.code == "52", f"classCode {meta.class_code.code} {meta.class_code.display_name}")
    check(meta.type_code.code == "87273-9", f"typeCode {meta.type_code.code} {meta.type_code.display_name}")

    step("6. What the builder refuses")
    try:
        vaccination.model_validate({**vaccination.model_dump(), "day": datetime(2024, 3, 12, 9, 0, tzinfo=PARIS)})
    except ValidationError as exc:
        check("date" in exc.message, f"a time instead of a day: {exc.problems[0]}")
    else:
        check(False, "a time instead of a day was refused")
    try:
        vaccination.model_validate({**vaccination.model_dump(), "lot_number": ""})
    except ValidationError as exc:
        check(True, f"a vaccination without lot number: {exc.problems[0]}")
    else:
        check(False, "a vaccination without lot number was refused")

    print("\nVAC-NOTE example finished: every check passed.")


if __name__ == "__main__":
    main()
