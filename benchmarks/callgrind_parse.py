"""Instructions per ITI-18 read, the package at a git revision against the working tree's (valgrind).

Timed A/Bs (``ab_parse.py``) do not resolve a few percent on a shared machine; an instruction
count does: the same code on the same bytes executes the same instructions, whatever else runs.
Each side runs in its own process under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``, so
that dict and set layouts repeat), reads the answer once to warm its caches, then reads it
``--repeat`` times with callgrind's instrumentation on: a small C helper, compiled on the spot
with ``cc`` against valgrind's ``callgrind.h``, switches it on and dumps the counters (callgrind
client requests), so the count holds the reads alone, without the interpreter's start or the
imports (which run uninstrumented, much faster). Objects alive before the reads are frozen
(``gc.freeze``), so that where the cyclic collector's full passes fall does not move the count.
The jobs are those of ``ab_parse.py`` (``parse``: bytes → ``parse_envelope`` →
``RegistryStoredQuery.parse``; ``read``: ``read_registry_objects``).

    .venv/bin/python benchmarks/callgrind_parse.py --baseline 33599ca [--sizes 1,100] [--jobs parse,read]

A few minutes for the two sizes. Linux, valgrind (with its headers) and a C compiler.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


_HELPER = """
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_DUMP_STATS_AT("reads"); CALLGRIND_STOP_INSTRUMENTATION; }
"""


def build_helper(into: Path) -> Path:
    source, library = into / "cg_helper.c", into / "cg_helper.so"
    source.write_text(_HELPER)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def child(side: str, count: int, job: str, repeat: int, baseline_dir: str) -> None:
    """Run under callgrind: warm up, then ``repeat`` reads with the instrumentation on."""
    import ctypes

    from ab_parse import import_baseline, jobs

    helper = ctypes.CDLL(str(Path(baseline_dir) / "cg_helper.so"))
    old = import_baseline(Path(baseline_dir))
    before, after = jobs(count, old)[job]
    run = before if side == "before" else after
    # Everything imported so far (two packages, pydantic's schemas) moved out of the collector's
    # reach: otherwise a full collection falling inside the counted reads, or not, moves the count
    # by half a million instructions for reasons that have nothing to do with the code read.
    gc.collect()
    gc.freeze()
    run()
    helper.cg_start()
    for _ in range(repeat):
        run()
    helper.cg_stop()


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def count(side: str, size: int, job: str, repeat: int, baseline_dir: Path, out: Path) -> float:
    """Instructions per read of one side, from the dump between the two markers."""
    prefix = out / f"{side}-{job}-{size}.cg"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={prefix}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            side,
            str(size),
            job,
            str(repeat),
            str(baseline_dir),
        ],
        check=True,
        env=env,
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Dump 1: the reads (cg_stop); the last dump, at exit, holds nothing instrumented.
    return _totals(Path(f"{prefix}.1")) / repeat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="the git revision to compare with (e.g. 33599ca)")
    parser.add_argument("--sizes", default="1,100", help="entry counts, comma-separated")
    parser.add_argument("--jobs", default="parse", help="which jobs: parse, read")
    parser.add_argument("--repeat", type=int, default=3, help="reads counted per side and size")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, size, job, repeat, baseline_dir = args.child
        child(side, int(size), job, int(repeat), baseline_dir)
        return 0
    if not args.baseline:
        parser.error("--baseline is required")
    from ab_parse import extract_baseline

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cg-parse-") as tmp:
        extract_baseline(args.baseline, Path(tmp))
        build_helper(Path(tmp))
        out = Path(tmp) / "out"
        out.mkdir()
        print(f"baseline {args.baseline} vs working tree, instructions per call (callgrind, {args.repeat} calls)")
        print(f"{'entries':>7} {'job':>5} {'before':>14} {'after':>14} {'after/before':>13}")
        for size in (int(s) for s in args.sizes.split(",")):
            for job in args.jobs.split(","):
                before = count("before", size, job, args.repeat, Path(tmp), out)
                after = count("after", size, job, args.repeat, Path(tmp), out)
                results.append({"entries": size, "job": job, "before": before, "after": after})
                print(f"{size:>7} {job:>5} {before:>14,.0f} {after:>14,.0f} {after / before:>13.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": args.baseline, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
