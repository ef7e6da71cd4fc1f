"""ITI-18 parsing: an AdhocQueryResponse of 1, 100 and 5,000 document entries read into typed results.

The reply is what the DMP answers to FindDocuments with ``returnType="LeafClass"``: a SOAP 1.2
envelope whose ``query:AdhocQueryResponse`` carries one ``rim:ExtrinsicObject`` per entry with
the full metadata (classCode, typeCode, formatCode, practiceSetting, healthcareFacilityType,
confidentiality with the DMP visibility codes, an author with person, institution, role and
specialty, legalAuthenticator, sourcePatientId/Info, hash, size, creation and service times,
uniqueId, patientId, repositoryUniqueId, version, logicalId, and two slots outside the XDS set,
kept in ``extra_slots``). Authors come from a pool of 25 professionals in 13 structures, as in a
real record; ``--all-distinct`` gives every entry its own. It is written by our own builders
(:func:`~dmp_connector.xds.build_adhoc_query_response` inside
:func:`~dmp_connector.soap.build_envelope`), so it is valid ebRIM.

Measured, for each size, in the same run:

* **time** of the path a vendor pays — bytes → hardened :func:`~dmp_connector.soap.parse_envelope`
  → :meth:`RegistryStoredQuery.parse <dmp_connector.dmp.RegistryStoredQuery.parse>` (what
  ``DmpClient.find_documents`` runs on the answer) → a tuple of typed ``DocumentEntry`` — beside
  **lxml's raw parse** of the same bytes (``etree.fromstring`` with lxml's default parser: no
  limits, no typing). Goal: typed ≤ 2× raw. Rounds alternate the two jobs; medians of wall time
  are reported, with CPU time beside them (steadier on a shared machine).
* **memory**, each in a fresh child process so that one measurement cannot warm the next:
  the resident memory the typed result keeps versus the memory the raw lxml tree keeps, the peak
  resident memory while parsing (``VmHWM`` reset before), and the peak of the Python heap
  (tracemalloc: Python objects only — libxml2's own allocations are not traced, hence RSS).

    .venv/bin/python benchmarks/bench_parse.py [--quick] [--json PATH] [--sizes 1,100,5000] [--all-distinct]
    .venv/bin/python benchmarks/bench_parse.py --profile 500

``--profile N`` prints cProfile's top functions for the typed parse of N entries instead.
Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import gc
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _bench import Figure, peak_rss_mib, report, reset_peak_rss, rss_mib, timed
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.dmp import RegistryStoredQuery
from dmp_connector.soap.envelope import Addressing, build_envelope, parse_envelope
from dmp_connector.xds import (
    DMP_REPOSITORY_UNIQUE_ID,
    MASQUE_PS,
    Action,
    AdhocQueryRequest,
    AdhocQueryResponse,
    Author,
    AvailabilityStatus,
    Cx,
    DocumentEntry,
    FindDocumentsQuery,
    RegistryResponse,
    ResponseStatus,
    Slot,
    Xcn,
    XdsTime,
    Xon,
    build_adhoc_query_response,
    coded_value,
)
from dmp_connector.xml import to_bytes

GOAL_RATIO = 2.0
SIZES = (1, 100, 5000)

PATIENT = Cx.ins("279035121518989", "1.2.250.1.213.1.4.10")
LOINC = "2.16.840.1.113883.6.1"
_TYPES = [
    (Code.of("11488-4", LOINC, "Compte rendu de consultation"), Code.of("11", "1.2.250.1.213.1.1.4.1", "Compte rendu")),
    (Code.of("11502-2", LOINC, "CR d'examens biologiques"), Code.of("13", "1.2.250.1.213.1.1.4.1", "Résultat")),
    (Code.of("34133-9", LOINC, "Synthèse d'épisode de soins"), Code.of("10", "1.2.250.1.213.1.1.4.1", "Synthèse")),
]
_FORMATS = [
    Code.of("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "Document à corps non structuré en PDF"),
    Code.of("urn:asip:ci-sis:2010", "1.2.250.1.213.1.1.4.2.282", "Document à corps structuré"),
]
_FACILITY = Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
_PRACTICE = Code.of("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement de santé")
_NORMAL = Code.of("N", "2.16.840.1.113883.5.25", "Normal")
_SPECIALTY = coded_value(Code.of("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecine générale"))
_ROLE = coded_value(Code.of("ATTENDING", "2.16.840.1.113883.5.88", "Médecin traitant"))


AUTHORS = 25
"""Distinct authors in a patient's record (each in one of ``AUTHORS // 2 + 1`` structures): a DMP
answer names the same professionals, structures and codes again and again. ``--all-distinct``
gives every entry its own author, structure and IPP instead (the worst case for the parser)."""


def make_entry(index: int, *, distinct: bool = False) -> DocumentEntry:
    """One document entry as the DMP returns it: every attribute filled, ids of the registry."""
    who = index if distinct else index % AUTHORS
    where = index if distinct else who // 2
    doctor = Xcn.national_professional(f"8100{who:08d}", "DUPONT", "Jean")
    cabinet = Xon.national_structure(f"Cabinet médical {where}", f"1{where:09d}")
    type_code, class_code = _TYPES[index % len(_TYPES)]
    when = XdsTime.parse(f"2025{1 + index % 12:02d}{1 + index % 28:02d}103000")
    confidentiality = (_NORMAL, MASQUE_PS) if index % 7 == 0 else (_NORMAL,)
    return DocumentEntry(
        entry_uuid=f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
        logical_id=f"urn:uuid:00000000-0000-4000-9000-{index:012d}",
        version="1",
        availability_status=AvailabilityStatus.APPROVED,
        unique_id=f"1.2.250.1.999.7.{index}^{index:08d}",
        patient_id=PATIENT,
        source_patient_id=Cx(id=f"IPP-{where:06d}", assigning_authority=f"1.2.250.1.999.1.{where}", id_type="PI"),
        source_patient_info=("PID-5|DUPONT^Marie^^^^^L", "PID-7|19790301", "PID-8|F"),
        mime_type="application/pdf" if index % 2 else "text/xml",
        title=f"{type_code.display_name} n°{index}",
        comments="Consultation de suivi",
        class_code=class_code,
        type_code=type_code,
        format_code=_FORMATS[index % len(_FORMATS)],
        healthcare_facility_type_code=_FACILITY,
        practice_setting_code=_PRACTICE,
        confidentiality_codes=confidentiality,
        authors=(Author(person=doctor, institutions=(cabinet,), roles=(_ROLE,), specialties=(_SPECIALTY,)),),
        legal_authenticator=doctor,
        creation_time=when,
        service_start_time=when,
        service_stop_time=when,
        language_code="fr-FR",
        hash=f"{index:040x}",
        size=20_000 + index,
        repository_unique_id=DMP_REPOSITORY_UNIQUE_ID,
        extra_slots=(
            Slot(name="documentAvailability", values=("urn:ihe:iti:2010:DocumentAvailability:Online",)),
            Slot(name="submissionSetUniqueId", values=(f"1.2.250.1.999.7.1.{index}",)),
        ),
    )


def make_reply(count: int, *, distinct: bool = False) -> bytes:
    """The SOAP 1.2 answer to FindDocuments with ``count`` entries, as bytes on the wire."""
    answer = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.SUCCESS),
        documents=tuple(make_entry(i, distinct=distinct) for i in range(count)),
    )
    envelope = build_envelope(
        build_adhoc_query_response(answer),
        addressing=Addressing(
            action=Action.REGISTRY_STORED_QUERY_RESPONSE.value, to="http://www.w3.org/2005/08/addressing/anonymous"
        ),
    )
    return to_bytes(envelope)


def operation() -> RegistryStoredQuery:
    """The ITI-18 operation whose ``parse`` reads the answer, as ``DmpClient.find_documents`` sends it."""
    request = AdhocQueryRequest(query=FindDocumentsQuery(patient_id=PATIENT))
    return RegistryStoredQuery(request, security=None, patient=PATIENT.id)


def typed_parse(data: bytes, op: RegistryStoredQuery) -> tuple[DocumentEntry, ...]:
    """What a vendor pays: hardened parse, SOAP checks, typed entries."""
    return op.parse(parse_envelope(data, operation=op.name)).documents


def raw_parse(data: bytes) -> etree._Element:
    """The floor: lxml's own parser, no limits and no typing."""
    return etree.fromstring(data)  # noqa: TID251 - the baseline, in the benchmark only


# --------------------------------------------------------------------------------------------
# Time


def _tag(distinct: bool) -> str:
    return ", all authors distinct" if distinct else ""


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_figures(sizes: tuple[int, ...], rounds: int, *, distinct: bool = False) -> list[Figure]:
    figures = []
    op = operation()
    for count in sizes:
        data = make_reply(count, distinct=distinct)
        assert len(typed_parse(data, op)) == count
        typed: list[float] = []
        raw: list[float] = []
        repeat = max(3, rounds if count < 1000 else rounds // 3)
        # Each round times a batch of calls so that the small sizes are measured above the timer's noise.
        batch = max(1, 2000 // max(count, 1)) if count < 1000 else 1

        def raw_batch(data: bytes = data, batch: int = batch) -> None:
            for _ in range(batch):
                raw_parse(data)

        def typed_batch(data: bytes = data, batch: int = batch) -> None:
            for _ in range(batch):
                typed_parse(data, op)

        # Rounds alternate the two jobs, so that a burst of load from elsewhere hits both. CPU time
        # is kept beside wall time: on a shared machine it is the steadier of the two.
        typed_cpu: list[float] = []
        raw_cpu: list[float] = []
        for _ in range(repeat):
            for job, wall, cpu in ((raw_batch, raw, raw_cpu), (typed_batch, typed, typed_cpu)):
                started = time.process_time()
                wall += [t / batch for t in timed(job, repeat=1, warmup=0)]
                cpu.append((time.process_time() - started) / batch)
        typed_ms, raw_ms = _median_ms(typed), _median_ms(raw)
        ratio = typed_ms / raw_ms
        figures.append(
            Figure(
                benchmark=f"ITI-18 parse, {count:,} entries ({len(data) / 1024:,.0f} KiB){_tag(distinct)}",
                value=typed_ms,
                unit="ms",
                baseline=raw_ms,
                baseline_label="lxml raw parse",
                ratio=ratio,
                goal=f"≤ {GOAL_RATIO:g}× lxml",
                met=ratio <= GOAL_RATIO,
                extra={
                    "entries_per_s": count / (typed_ms / 1000),
                    "typed_min_ms": min(typed) * 1000,
                    "raw_min_ms": min(raw) * 1000,
                    "typed_cpu_ms": _median_ms(typed_cpu),
                    "raw_cpu_ms": _median_ms(raw_cpu),
                    "cpu_ratio": statistics.median(typed_cpu) / statistics.median(raw_cpu),
                    "rounds": repeat,
                    "calls_per_round": batch,
                    "bytes": len(data),
                },
            )
        )
    return figures


# --------------------------------------------------------------------------------------------
# Memory, each measurement in a fresh process


def _trim() -> None:
    """Give freed heap back to the system (glibc), so that RSS shows what is still held, not what was."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def memory_child(mode: str, path: str) -> dict[str, float]:
    """Run in a child: parse the reply at ``path`` one way and say what it cost in memory."""
    data = Path(path).read_bytes()
    op = operation()
    job: Callable[[], object] = (lambda: typed_parse(data, op)) if mode == "typed" else (lambda: raw_parse(data))
    warm = make_reply(1)  # import and warm every code path on a tiny reply first
    typed_parse(warm, op), raw_parse(warm)
    del warm
    gc.collect()
    _trim()
    reset = reset_peak_rss()
    before = rss_mib()
    tracemalloc.start()
    result = job()
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gc.collect()  # the typed path has dropped the lxml tree by now; the raw path holds it in `result`
    _trim()
    after = rss_mib()
    peak = peak_rss_mib()
    assert result is not None
    return {
        "kept_mib": after - before,
        "peak_mib": peak - before if reset else float("nan"),
        "heap_peak_mib": heap_peak / (1 << 20),
    }


def _in_child(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-child", mode, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def memory_figures(sizes: tuple[int, ...], repeat: int, *, distinct: bool = False) -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in sizes:
            if count < 100:
                continue  # a few KiB: below what RSS, counted in pages, can show
            path = Path(tmp) / f"reply-{count}.xml"
            path.write_bytes(make_reply(count, distinct=distinct))
            typed = [_in_child("typed", path) for _ in range(repeat)]
            raw = [_in_child("raw", path) for _ in range(repeat)]

            def med(rows: list[dict[str, float]], key: str) -> float:
                return statistics.median(row[key] for row in rows)

            typed_kept, raw_kept = med(typed, "kept_mib"), med(raw, "kept_mib")
            typed_peak, raw_peak = med(typed, "peak_mib"), med(raw, "peak_mib")
            figures.append(
                Figure(
                    benchmark=f"ITI-18 parse, {count:,} entries{_tag(distinct)}: peak RSS while parsing",
                    value=typed_peak,
                    unit="MiB",
                    baseline=raw_peak,
                    baseline_label="lxml raw parse",
                    ratio=typed_peak / raw_peak if raw_peak > 0.05 else None,
                    extra={"typed_heap_peak_mib": med(typed, "heap_peak_mib"), "children": repeat},
                )
            )
            figures.append(
                Figure(
                    benchmark=f"ITI-18 parse, {count:,} entries{_tag(distinct)}: memory kept by the result",
                    value=typed_kept,
                    unit="MiB",
                    baseline=raw_kept,
                    baseline_label="lxml tree",
                    ratio=typed_kept / raw_kept if raw_kept > 0.05 else None,
                    extra={
                        "typed_kib_per_entry": typed_kept * 1024 / count,
                        "raw_kib_per_entry": raw_kept * 1024 / count,
                    },
                )
            )
    return figures


# --------------------------------------------------------------------------------------------


def profile(count: int, top: int = 30, *, distinct: bool = False) -> None:
    data = make_reply(count, distinct=distinct)
    op = operation()
    typed_parse(data, op)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    typed_parse(data, op)
    profiler.disable()
    print(f"typed parse of {count} entries: {(time.perf_counter() - started) * 1000:.0f} ms (under cProfile)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run; figures are noisier)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="entry counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=0, help="timing rounds per size (default 15, quick 5)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    parser.add_argument("--all-distinct", action="store_true", help="every entry with its own author (worst case)")
    parser.add_argument("--profile", type=int, metavar="N", help="profile the typed parse of N entries and stop")
    parser.add_argument("--memory-child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child)))
        return 0
    if args.profile:
        profile(args.profile, distinct=args.all_distinct)
        return 0
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rounds = args.rounds or (5 if args.quick else 15)
    figures = time_figures(sizes, rounds, distinct=args.all_distinct)
    if not args.no_memory:
        figures += memory_figures(sizes, 1 if args.quick else 3, distinct=args.all_distinct)
    ok = report("ITI-18 AdhocQueryResponse → typed DocumentEntry (vs lxml raw parse)", figures, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
