"""Run every benchmark, each in its own process, and print the combined table.

Each script writes its figures as JSON into ``--out`` (``benchmarks/results/latest`` by default,
``<name>.json``), its console output beside it (``<name>.log``); this script then reads them all
back and prints one table per benchmark, and ``index.json`` records the machine, the commands
and their exit statuses. A goal that is missed is reported, not an error: the exit status is 1
only when a script fails to run.

    .venv/bin/python benchmarks/run.py            # the full run (about 5 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run: fewer repeats, same scripts
    .venv/bin/python benchmarks/run.py --only bench_deposits bench_documents
    .venv/bin/python benchmarks/run.py --all      # also cda_validation.py (needs ../shared/cda-2025; minutes)

Benchmarks are never run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _bench import Figure, machine, report

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest"


@dataclass(frozen=True)
class Script:
    """One benchmark script and how to run it."""

    name: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ("--quick",)
    json: bool = True
    """Whether it takes ``--json PATH``."""
    optional: bool = False
    """Run only with ``--all`` (slow, or needs files outside the repository)."""


SCRIPTS = (
    Script("bench_documents"),
    Script("bench_deposit_memory"),
    Script(
        "bench_deposits",
        args=("--service-latency-ms", "0", "100"),
        quick=("--quick", "--service-latency-ms", "0", "100"),
    ),
    Script("bench_parse"),
    Script("bench_zeep"),
    Script("mtom_memory", quick=("--size-mib", "16")),
    Script("cda_pdf_memory", quick=()),
    Script("bench_cda_roundtrip"),
    Script("bench_outbox", quick=("--quick",)),
    Script("bench_deposit_cpu", quick=("--quick",)),
    Script("cda_validation", quick=(), json=False, optional=True),
)


def run_one(script: Script, out: Path, quick: bool) -> dict[str, object]:
    path = HERE / f"{script.name}.py"
    command = [sys.executable, str(path), *(script.quick if quick else script.args)]
    json_path = out / f"{script.name}.json"
    if script.json:
        command += ["--json", str(json_path)]
    print(f"\n### {script.name}: {' '.join(Path(c).name if c == sys.executable else c for c in command[1:])}")
    started = time.perf_counter()
    with (out / f"{script.name}.log").open("w", encoding="utf-8") as log:
        process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        log.write(process.stdout)
    elapsed = time.perf_counter() - started
    tail = process.stdout.strip().splitlines()[-3:]
    print("\n".join(f"    {line}" for line in tail))
    print(f"    exit {process.returncode} in {elapsed:.0f} s")
    return {
        "name": script.name,
        "command": ["python", f"benchmarks/{script.name}.py", *(_relative(c) for c in command[2:])],
        "exit_code": process.returncode,
        "seconds": round(elapsed, 1),
        "json": json_path.name if script.json and json_path.exists() else None,
    }


def _relative(argument: str) -> str:
    """A path argument relative to the working directory when it lies below it (for index.json)."""
    path = Path(argument)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd()))
    return argument


def combined(out: Path, runs: list[dict[str, object]]) -> None:
    print("\n\n# Combined results\n")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine().items()))
    for run in runs:
        name = run["json"]
        if not isinstance(name, str):
            print(f"\n## {run['name']}: no JSON (exit {run['exit_code']}; see {run['name']}.log)")
            continue
        document = json.loads((out / name).read_text(encoding="utf-8"))
        report(document["title"], [Figure(**figure) for figure in document["figures"]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (fewer repeats)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON and logs go")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts")
    parser.add_argument("--all", action="store_true", help="also the optional scripts (cda_validation)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    selected = [
        s
        for s in SCRIPTS
        if (HERE / f"{s.name}.py").exists() and (s.name in args.only if args.only else (args.all or not s.optional))
    ]
    runs = [run_one(script, args.out, args.quick) for script in selected]
    index = {"machine": machine(), "quick": args.quick, "runs": runs}
    (args.out / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    combined(args.out, runs)
    failed = [str(r["name"]) for r in runs if r["exit_code"] != 0]
    if failed:
        print(f"\nfailed to run (or exited non-zero): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
