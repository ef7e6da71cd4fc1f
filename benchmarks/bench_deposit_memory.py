"""Peak memory of the client to deposit a 20 MB PDF through ``DmpClient``, against a sandbox in another process.

What is measured is the client process alone: the DMP simulator runs in a child process (see
``_sandbox.py``), so its copies of the received document do not count. Each measurement runs in
a fresh process (``--child``), so that memory kept by the allocator from an earlier measurement
cannot hide or inflate this one:

1. start the sandbox, open a ``DmpClient`` and deposit a small document (TLS connection open,
   every code path imported and warm);
2. reset the peak (``/proc/self/clear_refs``) and note the RSS;
3. read the PDF from disk, build the consultation report around it and deposit it
   (``DmpClient.deposit`` with the ``ClinicalDocument``: build the CDA, hash it, sign the
   submission set, encode MTOM, stream the request over mutual TLS, read the answer);
4. peak RSS growth = ``VmHWM`` − the RSS of step 2; the PDF read into memory counts.

A second fresh process does the same under ``tracemalloc`` (Python-heap peak: it does not see
what libxml2 allocates for lxml trees, the RSS figure does). ``--repeat`` times each; medians.

    .venv/bin/python benchmarks/bench_deposit_memory.py [--size-mb 20] [--repeat 3]
        [--json benchmarks/results/latest/bench_deposit_memory.json]

Goal: peak RSS growth ≤ 4× the file size. Baseline: the file size itself (one copy).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from _bench import Figure, peak_rss_mib, report, reset_peak_rss, rss_mib
from _sandbox import make_pdf, pdf_report, sandbox_process

from dmp_connector import DmpClient

_MIB = 1 << 20


def child(pdf_path: Path, trace: bool) -> dict[str, float]:
    """One measurement in this (fresh) process; see the module docstring."""
    with sandbox_process() as sandbox, DmpClient(sandbox.settings, signer=sandbox.signer) as client:
        client.deposit(pdf_report(sandbox.settings, sandbox.patient, make_pdf(20_000)), patient=sandbox.patient)
        gc.collect()
        reset = reset_peak_rss()
        before = rss_mib()
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        pdf = pdf_path.read_bytes()
        result = client.deposit(pdf_report(sandbox.settings, sandbox.patient, pdf), patient=sandbox.patient)
        elapsed = time.perf_counter() - started
        traced = tracemalloc.get_traced_memory()[1] / _MIB if trace else 0.0
        if trace:
            tracemalloc.stop()
        peak = peak_rss_mib()
        assert not result.already_deposited and result.size > len(pdf)
        return {
            "rss_before_mib": before,
            "peak_rss_mib": peak,
            "growth_mib": peak - before,
            "tracemalloc_peak_mib": traced,
            "seconds": elapsed,
            "peak_reset": float(reset),
            "cda_bytes": float(result.size),
        }


def _run_child(pdf_path: Path, trace: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(pdf_path)] + (["--trace"] if trace else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    parsed: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return parsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=20.0, help="PDF size in MB (10^6 bytes)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.trace)))
        return 0
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="dmpc-bench-") as tmp:
        pdf_path = Path(tmp) / "report.pdf"
        pdf_path.write_bytes(make_pdf(int(args.size_mb * 1_000_000)))
        size_mib = pdf_path.stat().st_size / _MIB
        rss_runs = [_run_child(pdf_path, trace=False) for _ in range(repeat)]
        traced_runs = [_run_child(pdf_path, trace=True) for _ in range(repeat)]
    growth = statistics.median(r["growth_mib"] for r in rss_runs)
    traced = statistics.median(r["tracemalloc_peak_mib"] for r in traced_runs)
    seconds = statistics.median(r["seconds"] for r in rss_runs)
    multiple = growth / size_mib
    label = f"{args.size_mb:g} MB PDF"
    figures = [
        Figure(
            benchmark=f"deposit {label}: client peak RSS growth",
            value=growth,
            unit="MiB",
            baseline=size_mib,
            baseline_label="the file size",
            ratio=multiple,
            goal="≤ 4× file size",
            met=multiple <= 4.0,
            extra={
                "runs_growth_mib": [round(r["growth_mib"], 1) for r in rss_runs],
                "rss_before_mib": round(statistics.median(r["rss_before_mib"] for r in rss_runs), 1),
                "cda_mib": round(rss_runs[0]["cda_bytes"] / _MIB, 2),
                "deposit_seconds": round(seconds, 2),
                "peak_reset_by_clear_refs": bool(rss_runs[0]["peak_reset"]),
                "median_of": repeat,
            },
        ),
        Figure(
            benchmark=f"deposit {label}: client tracemalloc peak",
            value=traced,
            unit="MiB",
            baseline=size_mib,
            baseline_label="the file size",
            ratio=traced / size_mib,
            extra={
                "runs_peak_mib": [round(r["tracemalloc_peak_mib"], 1) for r in traced_runs],
                "note": "Python heap only: lxml/libxml2 trees are not traced",
                "median_of": repeat,
            },
        ),
    ]
    report("Peak memory to deposit a large PDF (client process only; sandbox in another process)", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
