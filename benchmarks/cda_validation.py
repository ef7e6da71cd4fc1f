"""CDA validation times: compiling each schematron of the kit, and running it on the kit's examples.

For every schematron (the kit-wide ones, then each volet's): the time to generate its XSLT
(Python), to compile that with Saxon, and to run it on the examples it applies to; then the
time of a whole ``validate()`` (all layers) per example.

    .venv/bin/python benchmarks/cda_validation.py --kit ../shared/cda-2025 [--only VSM]

Prints a table; exits 1 if a schematron cannot be compiled, apart from the kit's known defects (none now).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dmp_connector.cda._schematron import KitDefectError, SchematronEngine, compile_schematron, select_volets
from dmp_connector.cda.validation import GENERIC_SCHEMATRONS, CdaValidator
from dmp_connector.config import CdaSettings
from dmp_connector.xml import parse_xml

KNOWN_DEFECTS: set[str] = set()  # the 2025 kit runs every schematron (the 2025-02 kit could not run one)
HL7 = "urn:hl7-org:v3"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "cda-2025")
    parser.add_argument("--only", default="", help="only schematrons whose name contains this")
    args = parser.parse_args()
    kit: Path = args.kit
    examples = {p.name: p.read_bytes() for p in sorted((kit / "ExemplesCDA").glob("*.xml"))}

    with tempfile.TemporaryDirectory() as cache:
        engine = SchematronEngine(kit, cache_dir=None)
        catalog = engine.catalog()
        targets: dict[str, list[str]] = {name: list(examples) for name in GENERIC_SCHEMATRONS}
        for name, data in examples.items():
            root = parse_xml(data)
            document = (
                root if root.tag == f"{{{HL7}}}ClinicalDocument" else next(root.iter(f"{{{HL7}}}ClinicalDocument"))
            )
            template_ids = [(t.get("root", ""), t.get("extension")) for t in document.findall(f"{{{HL7}}}templateId")]
            code = document.find(f"{{{HL7}}}code")
            for entry in select_volets(catalog, template_ids, None if code is None else code.get("code")):
                targets.setdefault(entry.name, []).append(name)
        for entry in catalog:
            targets.setdefault(entry.name, [])

        failures = 0
        print(f"{'schematron':32} {'generate':>9} {'saxon':>7} {'runs':>5} {'mean run':>9} {'max run':>8}")
        documents = {name: engine.document(parse_xml_text(data)) for name, data in examples.items()}
        for name, docs in targets.items():
            if args.only not in name:
                continue
            path = kit / "schematrons" / (GENERIC_SCHEMATRONS.get(name) or f"CI-SIS_{name}.sch")
            started = time.perf_counter()
            try:
                generated = compile_schematron(path, name=name, value_sets=engine.value_sets()).seconds
                loaded = engine.load(path, name)
            except KitDefectError as exc:
                print(f"{name:32} cannot be compiled: {exc.message}")
                failures += name not in KNOWN_DEFECTS
                continue
            saxon = time.perf_counter() - started - generated
            runs = [engine.run(loaded, documents[doc])[1] for doc in docs]
            mean = statistics.mean(runs) if runs else 0.0
            print(f"{name:32} {generated:8.2f}s {saxon:6.2f}s {len(runs):5d} {mean:8.3f}s {max(runs, default=0):7.3f}s")

        validator = CdaValidator(CdaSettings(kit_dir=kit, cache_dir=Path(cache)))
        validator.warm_up()
        started = time.perf_counter()
        per_document = []
        for data in examples.values():
            begin = time.perf_counter()
            validator.validate(data)
            per_document.append(time.perf_counter() - begin)
        total = time.perf_counter() - started
        print(
            f"\nvalidate() on {len(examples)} examples, all layers, schematrons compiled:"
            f" {total:.1f}s in all, mean {statistics.mean(per_document):.3f}s, max {max(per_document):.3f}s"
        )
    return 1 if failures else 0


def parse_xml_text(data: bytes) -> str:
    from lxml import etree

    return etree.tostring(parse_xml(data), encoding="unicode")


if __name__ == "__main__":
    sys.exit(main())
