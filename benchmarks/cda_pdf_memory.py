"""CDA memory target: building a document around a 10 MB PDF holds at most three copies of the PDF.

Reads a PDF of ``--size-mib`` MiB (generated), builds a PDF-body CDA document around it with
``dmp_connector.cda.build`` and measures the peak of the Python heap with tracemalloc, the
PDF itself included. The output alone is 1.34 copies (base64), the PDF one copy: the target
leaves 0.66 of a copy for everything else. Parsing the document back is measured too, for
information (no target).

    .venv/bin/python benchmarks/cda_pdf_memory.py [--size-mib 10] [--max-copies 3] [--json PATH]

Exits 1 if the peak is over the target or the PDF does not come back intact.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from _bench import Figure, report

from dmp_connector.cda import (
    AssignedEntity,
    Author,
    ClinicalDocument,
    Encounter,
    HealthCareFacility,
    InstanceId,
    LegalAuthenticator,
    NonXmlBody,
    Organization,
    Patient,
    Period,
    PersonName,
    ServiceEvent,
    build,
    parse,
)
from dmp_connector.codes import Code
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.xml import XmlLimits

PARIS = ZoneInfo("Europe/Paris")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")


def make_pdf(size: int) -> bytes:
    """A well-formed PDF padded with comment lines to ``size`` bytes or a little more."""
    head = b"%PDF-1.4\n"
    body = (
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    )
    line = b"%" + b"0123456789" * 7 + b"abcdefgh\n"
    padding = line * max(0, (size - len(head) - len(body) - 64) // len(line))
    offset = len(head) + len(padding)
    xref = b"xref\n0 3\n0000000000 65535 f \n%010d 00000 n \n%010d 00000 n \n" % (offset, offset + 49)
    trailer = b"trailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (offset + len(body))
    return head + padding + body + xref + trailer


def document(pdf: bytes) -> ClinicalDocument:
    """A PDF-body consultation report around ``pdf``; the model holds the bytes without copying them."""
    now = datetime(2024, 3, 12, 10, 30, tzinfo=PARIS)
    traits = IdentityTraits.build(
        birth_name="Adrtrois", birth_first_names="Dominique", sex="F", birth_date="1997-02-26", birth_place="2A020"
    )
    identity = Identity(
        traits=traits, ins=INS.parse("297022A02077878", oid=InsOid.NIR_TEST), status=IdentityStatus.QUAL
    )
    org = Organization(id=InstanceId.of("1.2.250.1.71.4.2.2", "1750512345"), name="Cabinet")
    doctor = AssignedEntity(
        id=InstanceId.of("1.2.250.1.71.4.2.1", "810001234567"),
        code=Code.of("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecin - Qualifié en Médecine Générale (SM)"),
        person=PersonName(family="MARTIN", given="Paul"),
        organization=org,
    )
    return ClinicalDocument(
        id=InstanceId.of("1.2.250.1.213.1.1.9", "BENCH-1"),
        type_code=Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite"),
        title="Compte rendu",
        effective_time=now,
        patient=Patient.from_identity(identity),
        authors=(Author(time=now, entity=doctor),),
        custodian=org,
        legal_authenticator=LegalAuthenticator(time=now, entity=doctor),
        service_events=(
            ServiceEvent.of(
                start=now,
                performer=doctor,
                practice_setting=Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
            ),
        ),
        encounter=Encounter(
            effective_time=Period(low=now),
            facility=HealthCareFacility(code=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")),
        ),
        body=NonXmlBody(data=pdf),
    )


def measure_build(size: int) -> tuple[int, int, float, bytes, str]:
    """Peak heap while the document is built, the PDF included; the PDF's size, the time, the output, its hash.

    The PDF is made before tracing starts (making it is not what is measured), then counted
    as held: the peak is the PDF plus the peak of everything ``build`` allocates.
    """
    pdf = make_pdf(size)
    digest = hashlib.sha256(pdf).hexdigest()
    tracemalloc.start()
    started = time.perf_counter()
    data = build(document(pdf))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(pdf) + peak, len(pdf), elapsed, data, digest


def measure_parse(data: bytes) -> tuple[int, float, str]:
    """Peak heap (beyond the input already held) while parsing the document back, the time and the PDF's hash."""
    tracemalloc.start()
    started = time.perf_counter()
    parsed = parse(data, limits=XmlLimits(max_bytes=len(data) + 1))
    elapsed = time.perf_counter() - started
    body = parsed.body
    assert isinstance(body, NonXmlBody)
    digest = hashlib.sha256(body.data).hexdigest()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, elapsed, digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=float, default=10.0)
    parser.add_argument("--max-copies", type=float, default=3.0)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON (benchmarks/run.py)")
    args = parser.parse_args()
    peak, size, elapsed, data, digest = measure_build(int(args.size_mib * (1 << 20)))
    copies = peak / size
    print(
        f"build: PDF {size / (1 << 20):.1f} MiB, document {len(data) / (1 << 20):.1f} MiB, "
        f"peak heap {peak / (1 << 20):.1f} MiB = {copies:.2f} copies of the PDF, {elapsed:.2f} s"
    )
    parse_peak, parse_elapsed, parsed_digest = measure_parse(data)
    print(
        f"parse: peak heap {parse_peak / (1 << 20):.1f} MiB beyond the input "
        f"= {parse_peak / size:.2f} copies, {parse_elapsed:.2f} s (no target)"
    )
    if args.json is not None:
        mib = size / (1 << 20)
        figures = [
            Figure(
                benchmark=f"build a CDA around a {mib:.0f} MiB PDF: peak heap, PDF included",
                value=peak / (1 << 20),
                unit="MiB",
                baseline=mib,
                baseline_label="the PDF size",
                ratio=copies,
                goal=f"≤ {args.max_copies:g}× the PDF",
                met=copies <= args.max_copies,
                extra={"seconds": round(elapsed, 2)},
            ),
            Figure(
                benchmark=f"parse it back: peak heap beyond the input ({mib:.0f} MiB PDF)",
                value=parse_peak / (1 << 20),
                unit="MiB",
                baseline=mib,
                baseline_label="the PDF size",
                ratio=parse_peak / size,
                extra={"seconds": round(parse_elapsed, 2), "intact": parsed_digest == digest},
            ),
        ]
        report("CDA around a large PDF: memory (tracemalloc)", figures, args.json)
    if parsed_digest != digest:
        print("FAIL: the PDF read back differs from the PDF built in")
        return 1
    if copies > args.max_copies:
        print(f"FAIL: {copies:.2f} copies of the PDF, over the target of {args.max_copies}")
        return 1
    print(f"OK: at most {args.max_copies} copies of the PDF while building")
    return 0


if __name__ == "__main__":
    sys.exit(main())
