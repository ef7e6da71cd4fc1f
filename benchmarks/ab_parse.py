"""The ITI-18 read path of an earlier commit against the working tree's, alternated in one process.

On a shared machine two runs of ``bench_parse.py`` minutes apart differ by more than a few
percent, so "is the read path still as fast as it was?" is answered here by an A/B in one
process: the package as committed at ``--baseline`` is extracted (``git archive``) into a
temporary folder under another name (``dmp_baseline``, every ``dmp_connector`` import rewritten)
and imported beside the working tree's. Both read the same bytes (the answer ``bench_parse.py``
builds), round after round, the order of the two swapped every round, and each call is timed in
CPU time (``process_time``), steadier than wall time when other work shares the cores.

Two jobs per size:

* ``parse``: what ``bench_parse.py`` times — bytes → ``parse_envelope`` (hardened parser, depth
  check, SOAP checks) → ``RegistryStoredQuery.parse`` → typed entries, each side with its own code;
* ``read``: ``read_registry_objects`` alone, on a list element both sides get from one parse.

Reported per size and job: min and median of each side, and the median of the per-round ratios
new / baseline (below 1: the working tree is faster).

    .venv/bin/python benchmarks/ab_parse.py --baseline 33599ca [--sizes 1,100] [--rounds 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_parse import make_reply, operation

from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.soap.namespaces import QUERY, RIM
from dmp_connector.xds import read_registry_objects

ROOT = Path(__file__).resolve().parents[1]
BASELINE_NAME = "dmp_baseline"


def extract_baseline(revision: str, into: Path) -> None:
    """``dmp_connector`` as committed at ``revision``, importable as ``dmp_baseline`` from ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "dmp_connector"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "dmp_connector"
    word = re.compile(r"\bdmp_connector\b")
    for source in package.rglob("*.py"):
        source.write_text(word.sub(BASELINE_NAME, source.read_text(encoding="utf-8")), encoding="utf-8")
    package.rename(into / BASELINE_NAME)


def import_baseline(into: Path) -> dict[str, ModuleType]:
    sys.path.insert(0, str(into))
    import importlib

    return {
        name: importlib.import_module(f"{BASELINE_NAME}.{name}")
        for name in ("dmp", "soap.envelope", "xds", "xds.model")
    }


def _registry_object_list(data: bytes) -> Any:
    payload = parse_envelope(data, operation="RegistryStoredQuery").payload
    found = payload.find(f"{{{RIM}}}RegistryObjectList")
    assert found is not None and payload.tag == f"{{{QUERY}}}AdhocQueryResponse"
    return found


def jobs(count: int, old: dict[str, ModuleType]) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """For each job, (baseline, new) callables reading the same ``count``-entry answer."""
    data = make_reply(count)
    new_op = operation()
    old_patient = old["xds.model"].Cx.ins("279035121518989", "1.2.250.1.213.1.4.10")
    old_request = old["xds"].AdhocQueryRequest(query=old["xds"].FindDocumentsQuery(patient_id=old_patient))
    old_op = old["dmp"].RegistryStoredQuery(old_request, security=None, patient=old_patient.id)
    old_parse_envelope = old["soap.envelope"].parse_envelope
    old_read = old["xds"].read_registry_objects
    objects = _registry_object_list(data)
    made: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "parse": (
            lambda: old_op.parse(old_parse_envelope(data, operation=old_op.name)).documents,
            lambda: new_op.parse(parse_envelope(data, operation=new_op.name)).documents,
        ),
        "read": (lambda: old_read(objects).documents, lambda: read_registry_objects(objects).documents),
    }
    for job, (before, after) in made.items():
        assert len(before()) == len(after()) == count, job
    return made


def measure(before: Callable[[], Any], after: Callable[[], Any], rounds: int, batch: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"before": [], "after": []}
    ratios: list[float] = []
    for index in range(rounds):
        order = (("before", before), ("after", after)) if index % 2 == 0 else (("after", after), ("before", before))
        this: dict[str, float] = {}
        for side, job in order:
            started = time.process_time()
            for _ in range(batch):
                job()
            this[side] = (time.process_time() - started) / batch
            times[side].append(this[side])
        ratios.append(this["after"] / this["before"])
    return {
        "before_min_ms": min(times["before"]) * 1000,
        "before_median_ms": statistics.median(times["before"]) * 1000,
        "after_min_ms": min(times["after"]) * 1000,
        "after_median_ms": statistics.median(times["after"]) * 1000,
        "ratio_of_medians": statistics.median(times["after"]) / statistics.median(times["before"]),
        "ratio_of_mins": min(times["after"]) / min(times["before"]),
        "median_paired_ratio": statistics.median(ratios),
        "rounds": rounds,
        "calls_per_round": batch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with (e.g. 33599ca)")
    parser.add_argument("--sizes", default="1,100", help="entry counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=60, help="alternations per size and job")
    parser.add_argument("--jobs", default="parse,read", help="which jobs: parse, read")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ab-parse-") as tmp:
        extract_baseline(args.baseline, Path(tmp))
        old = import_baseline(Path(tmp))
        print(f"baseline {args.baseline} vs working tree, CPU time per call, {args.rounds} alternations")
        print(
            f"{'entries':>7} {'job':>5} {'before min/median ms':>22} {'after min/median ms':>22} {'after/before':>13}"
        )
        for count in (int(s) for s in args.sizes.split(",")):
            made = jobs(count, old)
            batch = max(1, 400 // count)
            for job in args.jobs.split(","):
                before, after = made[job]
                figures = measure(before, after, args.rounds, batch)
                results.append({"entries": count, "job": job, **figures})
                print(
                    f"{count:>7} {job:>5} {figures['before_min_ms']:>10.4g} / {figures['before_median_ms']:<9.4g}"
                    f" {figures['after_min_ms']:>10.4g} / {figures['after_median_ms']:<9.4g}"
                    f" {figures['median_paired_ratio']:>12.3f}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": args.baseline, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
