"""CDA round trip: ``parse()`` then ``build()`` of every ANS example, beside lxml's own parse + serialise.

For each example of the kit (``ExemplesCDA``, 107 in the 2025 kit), in the same run:

* **ours**: ``dmp_connector.cda.parse(data)`` then ``dmp_connector.cda.build(document)`` — the
  public API only, the typed model in between;
* **baseline**: lxml parsing the same bytes (the SDK's hardened parser, ``parse_xml``) and
  serialising the tree back (``etree.tostring``): the floor any round trip through lxml pays.

Times are the median of ``--repeat`` runs per example; the figures are the sum over the examples,
and the per-example ratio's median, 95th percentile and worst. Memory is measured per example in
this process: the peak of the Python heap (tracemalloc: the model, and the bytes both sides hold)
and the growth of the peak resident set (``VmHWM``, reset before each step: libxml2's own
allocations, which tracemalloc does not see), the worst example reported beside lxml's.

    .venv/bin/python benchmarks/bench_cda_roundtrip.py [--kit ../shared/cda-2025] [--repeat 5] [--json PATH]

An example that ``parse`` or ``build`` refuses is counted and named, not timed. No goal: the
ratio to lxml is the figure. Exits 1 only when the kit is missing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _bench import Figure, peak_rss_mib, percentile, report, reset_peak_rss, rss_mib, timed
from lxml import etree

from dmp_connector.cda import build, parse
from dmp_connector.xml import parse_xml

KIT = Path(__file__).resolve().parents[2] / "shared" / "cda-2025"


def ours(data: bytes) -> bytes:
    return build(parse(data))


def lxml_only(data: bytes) -> bytes:
    return etree.tostring(parse_xml(data), encoding="UTF-8", xml_declaration=True)


def heap_peak_mib(job: Callable[[], object]) -> float:
    """Peak of the Python heap while ``job`` runs, in MiB (what was allocated before excluded)."""
    gc.collect()
    tracemalloc.start()
    try:
        job()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def rss_growth_mib(job: Callable[[], object]) -> float | None:
    """How far the resident set's peak rose above its level before ``job``, in MiB; None if it cannot be reset."""
    gc.collect()
    if not reset_peak_rss():
        return None
    before = rss_mib()
    job()
    return max(0.0, peak_rss_mib() - before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, default=KIT, help="the ANS kit (its ExemplesCDA/ is read)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per example (the median is kept)")
    parser.add_argument("--quick", action="store_true", help="one timed run per example")
    parser.add_argument("--json", help="write the figures as JSON here")
    args = parser.parse_args()
    folder = args.kit / "ExemplesCDA"
    if not folder.is_dir():
        print(f"no ANS examples at {folder}", file=sys.stderr)
        return 1
    repeat = 1 if args.quick else args.repeat
    examples = {p.name: p.read_bytes() for p in sorted(folder.glob("*.xml"))}

    mine: dict[str, float] = {}
    floor: dict[str, float] = {}
    heap: dict[str, tuple[float, float]] = {}
    rss: dict[str, tuple[float, float]] = {}
    refused: dict[str, str] = {}
    started = time.perf_counter()
    for name, data in examples.items():
        try:
            ours(data)
        except Exception as exc:  # a refusal is a result of the round trip: named, not timed
            refused[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            continue
        job, baseline = partial(ours, data), partial(lxml_only, data)
        mine[name] = statistics.median(timed(job, repeat=repeat))
        floor[name] = statistics.median(timed(baseline, repeat=repeat))
        heap[name] = (heap_peak_mib(job), heap_peak_mib(baseline))
        ours_rss, lxml_rss = rss_growth_mib(job), rss_growth_mib(baseline)
        if ours_rss is not None and lxml_rss is not None:
            rss[name] = (ours_rss, lxml_rss)
    elapsed = time.perf_counter() - started

    if not mine:
        print("every example was refused", file=sys.stderr)
        for name, why in refused.items():
            print(f"  {name}: {why}", file=sys.stderr)
        return 1
    ratios = sorted(mine[n] / floor[n] for n in mine)
    largest = max(mine, key=lambda n: len(examples[n]))
    total_ours, total_floor = sum(mine.values()), sum(floor.values())
    sizes_mib = sum(len(examples[n]) for n in mine) / 2**20
    worst_heap = max(heap, key=lambda n: heap[n][0])
    figures = [
        Figure(
            benchmark=f"parse+build of {len(mine)} ANS examples ({sizes_mib:.1f} MiB), median of {repeat}",
            value=round(total_ours * 1000, 1),
            unit="ms (sum)",
            baseline=round(total_floor * 1000, 1),
            baseline_label="lxml parse_xml + tostring",
            ratio=round(total_ours / total_floor, 2),
            extra={
                "examples": len(examples),
                "refused": len(refused),
                "refused_examples": refused,
                "ratio_p50": round(percentile(ratios, 50), 2),
                "ratio_p95": round(percentile(ratios, 95), 2),
                "ratio_max": round(ratios[-1], 2),
                "slowest_ms": round(max(mine.values()) * 1000, 2),
                "slowest": max(mine, key=lambda n: mine[n]),
                "wall_seconds": round(elapsed, 1),
            },
        ),
        Figure(
            benchmark=f"parse+build of the largest example ({largest}, {len(examples[largest]) / 1024:.0f} KiB)",
            value=round(mine[largest] * 1000, 2),
            unit="ms",
            baseline=round(floor[largest] * 1000, 2),
            baseline_label="lxml parse_xml + tostring",
            ratio=round(mine[largest] / floor[largest], 2),
        ),
        Figure(
            benchmark=f"peak Python heap, worst example ({worst_heap})",
            value=round(heap[worst_heap][0], 2),
            unit="MiB",
            baseline=round(heap[worst_heap][1], 2),
            baseline_label="lxml parse_xml + tostring (tracemalloc)",
            ratio=round(heap[worst_heap][0] / heap[worst_heap][1], 2) if heap[worst_heap][1] else None,
            extra={"file_kib": round(len(examples[worst_heap]) / 1024, 1)},
        ),
    ]
    if rss:
        worst_rss = max(rss, key=lambda n: rss[n][0])
        figures.append(
            Figure(
                benchmark=f"peak RSS growth, worst example ({worst_rss})",
                value=round(rss[worst_rss][0], 2),
                unit="MiB",
                baseline=round(rss[worst_rss][1], 2),
                baseline_label="lxml parse_xml + tostring (VmHWM)",
                ratio=round(rss[worst_rss][0] / rss[worst_rss][1], 2) if rss[worst_rss][1] >= 0.1 else None,
                extra={"file_kib": round(len(examples[worst_rss]) / 1024, 1), "note": "RSS rounds to pages"},
            )
        )
    report("CDA round trip on the ANS examples (parse + build vs lxml)", figures, args.json)
    for name, why in refused.items():
        print(f"refused: {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
