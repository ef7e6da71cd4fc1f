"""A qualified identity on the hospital's other wires: an FR Core Patient and the INS Datamatrix of a printout.

Run it with ``python examples/ins_fhir_datamatrix.py`` (extras ``fhir`` and ``datamatrix``). It
qualifies an identity (INS from INSi — here a test INS — and an ID card checked at the desk),
writes it as an FR Core Patient in both FR Core releases and reads it back, shows that a
non-qualified identity leaves without its INS, prints the INS Datamatrix on a PDF page, reads
the symbol back from the image and checks it names the patient asked. Exits 0 only if every
check holds.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from dmp_connector.errors import DmpConnectorError
from dmp_connector.fhir import FrCoreSettings, FrCoreVersion, identity_from_patient, identity_to_patient
from dmp_connector.ins import INS, Identity, IdentityDocumentKind, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.ins.datamatrix import DatamatrixError, decode_payload, encode_payload
from dmp_connector.ins.datamatrix_image import read_image, stamp_pdf, to_pdf_page, to_png

FAILURES: list[str] = []


def check(what: str, ok: bool) -> None:
    print(f"  {'ok' if ok else 'FAILED'}  {what}")
    if not ok:
        FAILURES.append(what)


def main() -> int:
    traits = IdentityTraits.build(
        birth_name="Dark",
        birth_first_names="Jeanne Marie Cécile",
        sex="F",
        birth_date="1960-05-30",
        birth_place="88154",
        used_name="Martin",
    )
    retrieved = Identity(
        traits=traits, ins=INS.parse("260058815400233", oid=InsOid.NIR_TEST), status=IdentityStatus.RECUP
    )
    patient_asked = retrieved.qualify(IdentityDocumentKind.NATIONAL_ID_CARD)
    print("1. FR Core Patient")
    for version in FrCoreVersion:
        resource = identity_to_patient(patient_asked, settings=FrCoreSettings(version=version))
        back = identity_from_patient(json.dumps(resource))
        check(f"FR Core {version.value}: written and read back unchanged", back == patient_asked)
    withheld = identity_to_patient(retrieved)
    check("a RECUP identity leaves without its INS", "identifier" not in withheld)

    print("2. INS Datamatrix on a printed page")
    payload = encode_payload(patient_asked)
    try:
        encode_payload(retrieved)
        check("a RECUP identity is not printed", False)
    except DmpConnectorError:
        check("a RECUP identity is not printed", True)
    with tempfile.TemporaryDirectory() as folder:
        png = Path(folder) / "ins.png"
        png.write_bytes(to_png(payload))
        scanned = decode_payload(read_image(png))
        check("the symbol reads back to the payload's INS", scanned.ins == patient_asked.ins)
        check("the scanned traits match the patient asked", scanned.matches(patient_asked).matches)
        page = stamp_pdf(to_pdf_page(payload), payload, x_mm=160, y_mm=250)
        (Path(folder) / "printout.pdf").write_bytes(page)
        check("the stamped PDF is a PDF", page.startswith(b"%PDF"))
    try:
        decode_payload(payload.replace("S5F", "S5X"))
        check("a damaged payload is refused", False)
    except DatamatrixError as exc:
        check(f"a damaged payload is refused at {exc.field}", exc.field == "S5")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) FAILED")
        return 1
    print("every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
