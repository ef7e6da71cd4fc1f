"""Build an admission letter (LDL-EES 2022.01) for a qualified patient, check it, and derive its DMP metadata.

Run it with ``python examples/build_ldl_ees.py [OUTPUT.xml]``. It needs no network. When the
ANS conformance kit is found (``DMP_CONNECTOR_CDA__KIT_DIR``, or ``../shared/cda-2025`` next to
the project) the letter is also checked against the CDA schema and, with the ``validation``
extra, the LDL-EES and kit-wide schematrons. It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dmp_connector.cda import build, parse
from dmp_connector.cda.metadata import extract_metadata
from dmp_connector.cda.validation import CdaValidator
from dmp_connector.cda.valuesets import AllergyClinicalStatus, PracticeSetting, ProblemClinicalStatus
from dmp_connector.cda.volets import (
    LDL_EES_FORMAT_CODE,
    Allergy,
    LdlEesContent,
    Medication,
    Problem,
    Quantity,
    ldl_ees_document,
    ldl_ees_problems,
)
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import CdaSettings, Organisation, Professional, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.errors import ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid

PARIS = ZoneInfo("Europe/Paris")
CIS = "1.2.250.1.213.2.3.1"
CIM10 = "2.16.840.1.113883.6.3"
SNOMED = "2.16.840.1.113883.6.96"


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

    step("1. Settings: the referring doctor's practice and the doctor who signs")
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
    traits = IdentityTraits.build(
        birth_name="Adrtrois",
        birth_first_names="Dominique Marie",
        sex="F",
        birth_date="1997-02-26",
        birth_place="2A020",
    )
    patient = Identity(traits=traits, ins=INS.parse("297022A02077878", oid=InsOid.NIR_TEST), status=IdentityStatus.QUAL)

    step("2. What the letter says: reason, treatment, allergies, history, other information")
    content = LdlEesContent(
        reason_for_admission="Episode psychotique, cachexie",
        admission_medications=(
            Medication(
                name="SOLIAN 100 mg",
                product=Code.of("60019927", CIS, "SOLIAN 100 mg, comprimé sécable"),
                start=date(2018, 8, 1),
                period=Quantity.of(1, "d"),
                dose=Quantity.of(1, "{tbl}"),
            ),
        ),
        allergies=(
            Allergy(
                kind=Code.of("416098002", SNOMED, "allergie médicamenteuse"),
                agent=Code.of("67017786", CIS, "PARACETAMOL"),
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
        comment="Patiente accompagnée de sa soeur.",
    )
    letter = ldl_ees_document(
        content,
        settings=settings,
        patient=patient,
        effective_time=datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
        admission=datetime(2024, 3, 12, 14, 0, tzinfo=PARIS),
        practice_setting=PracticeSetting.HOSPITAL,
    )
    check(ldl_ees_problems(letter) == [], "an LDL-EES 2022.01: type 18761-7, service event IMP, the 4 sections")
    data = build(letter)
    check(parse(data) == letter, f"built ({len(data)} bytes) and parsed back to the same model")
    if output is not None:
        output.write_bytes(data)
        print(f"   written to {output}")

    step("3. The ANS kit: schema, then the LDL-EES and kit-wide schematrons")
    kit = find_kit()
    if kit is None:
        print("   skipped: set DMP_CONNECTOR_CDA__KIT_DIR to the ANS TestContenuCDA kit to run this check")
    else:
        try:
            import saxonche  # noqa: F401
        except ImportError:
            schematron = False
            print("   (schematrons skipped: pip install 'dmp-connector[validation]')")
        else:
            schematron = True
        report = CdaValidator(CdaSettings(kit_dir=kit)).validate(data, schematron=schematron)
        check(report.ok, f"valid: {', '.join(report.schematrons) or 'schema'}" if report.ok else report.to_text())

    step("4. XDS metadata for the DMP deposit, from the letter itself")
    meta = extract_metadata(letter)
    check(meta.format_code == LDL_EES_FORMAT_CODE, f"formatCode {meta.format_code.code}")
    check(meta.class_code.code == "11" and meta.type_code.code == "18761-7", "classCode 11, typeCode 18761-7")

    step("5. What the builder refuses")
    try:
        LdlEesContent(reason_for_admission="Chute", allergies=content.allergies, no_known_allergy=True)
    except ValidationError as exc:
        check(exc.problems == ("no_known_allergy",), f"allergies listed and 'none known': {exc.message}")
    else:
        check(False, "a contradiction was refused")
    try:
        LdlEesContent(reason_for_admission="")
    except ValidationError:
        check(True, "a letter without its reason")
    else:
        check(False, "a letter without its reason was refused")

    print("\nLDL-EES example finished: every check passed.")


if __name__ == "__main__":
    main()
