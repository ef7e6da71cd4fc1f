"""Instructions per deposit (callgrind), sync and async: the client's CPU cost as a count that repeats.

``bench_deposit_cpu.py`` times the client with ``time.process_time()``; on a shared 2-core machine
those figures move by ±20 % from one run to the next. Valgrind's callgrind counts the instructions
the client process executes (user space: not the kernel's share of the socket calls), and the
count is the same to a fraction of a percent from run to run, so two versions can be compared.

The deposits of ``bench_deposit_cpu.py`` (200 KiB PDF, mutual TLS, the sandbox in another process,
which callgrind does not follow): one warm-up deposit, then ``--deposits`` deposits with the
instrumentation switched on around them only (``callgrind_control -i on``), so that imports,
building the documents and starting the sandbox do not count. With ``--baseline REV`` the package
as committed at ``REV`` is measured the same way (extracted with ``git archive``), beside the
working tree. Not run by ``run.py`` (about 2 minutes per measurement); needs ``valgrind``.

    .venv/bin/python benchmarks/deposit_instructions.py [--deposits 10] [--baseline REV] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _hold_connection(client: Any) -> None:
    """Keep the pool's connection for the whole run: under valgrind a deposit takes seconds, and an idle
    connection expiring (5 s) would put a new mutual-TLS handshake (~13 M instructions) in the count."""
    transport = client._client._http._transport  # private attributes: this benchmark fails loudly if they move
    if hasattr(transport, "_pool"):
        transport._pool._keepalive_expiry = 3600.0  # httpx's sync transport (httpcore's pool)
    elif hasattr(transport, "_expiry"):
        transport._expiry = 3600.0  # the SDK's own async transport
    else:
        raise RuntimeError("the transport has neither _pool nor _expiry any more: update _hold_connection")


def _child(mode: str, count: int) -> None:
    """Run under callgrind: deposit ``count`` documents with the instrumentation on around them."""
    from _sandbox import make_pdf, pdf_report, sandbox_process

    from dmp_connector.cda import build
    from dmp_connector.dmp import AsyncDmpClient, DmpClient

    def instrument(state: str) -> None:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)

    pdf = make_pdf(200 * 1024)
    with sandbox_process(0.0) as sandbox:
        documents = [build(pdf_report(sandbox.settings, sandbox.patient, pdf)) for _ in range(count + 1)]
        if mode == "sync":
            with DmpClient(sandbox.settings, signer=sandbox.signer) as client:
                _hold_connection(client)
                client.deposit(documents[0], patient=sandbox.patient)
                instrument("on")
                for document in documents[1:]:
                    client.deposit(document, patient=sandbox.patient)
                instrument("off")
            return

        async def go() -> None:
            async with AsyncDmpClient(sandbox.settings, signer=sandbox.signer) as client:
                _hold_connection(client)
                await client.deposit(documents[0], patient=sandbox.patient)
                instrument("on")
                for document in documents[1:]:
                    await client.deposit(document, patient=sandbox.patient)
                instrument("off")

        asyncio.run(go())


def count_instructions(mode: str, count: int, source: Path) -> int:
    """Instructions per deposit of the package found in ``source`` (its ``dmp_connector``)."""
    with tempfile.TemporaryDirectory(prefix="dmpc-callgrind-") as tmp:
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join([str(source), str(HERE)])}
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                mode,
                "--deposits",
                str(count),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed ({done.returncode}): {done.stderr[-2000:]}")
    return int(found.group(1)) // count


def _extract(revision: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "dmp_connector"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deposits", type=int, default=10)
    parser.add_argument("--baseline", default=None, help="a git revision to measure beside the working tree")
    parser.add_argument("--child", choices=["sync", "async"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.deposits)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian package valgrind)", file=sys.stderr)
        return 2
    from _bench import Figure, report

    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="dmpc-baseline-") as tmp:
        sources = {"working tree": ROOT}
        if args.baseline:
            _extract(args.baseline, Path(tmp))
            sources[args.baseline] = Path(tmp)
        for name, source in sources.items():
            counts[name] = {mode: count_instructions(mode, args.deposits, source) for mode in ("sync", "async")}
    here = counts["working tree"]
    figures = []
    for mode in ("sync", "async"):
        base = counts[args.baseline][mode] if args.baseline else here["sync"]
        label = f"the package at {args.baseline}, same run" if args.baseline else "sync, same run"
        figures.append(
            Figure(
                benchmark=f"client instructions per deposit, {mode}, 200 KiB PDF, mutual TLS (callgrind)",
                value=round(here[mode] / 1e6, 2),
                unit="M instructions",
                baseline=round(base / 1e6, 2),
                baseline_label=label,
                ratio=round(here[mode] / base, 3),
                extra={"deposits": args.deposits, "async_over_sync": round(here["async"] / here["sync"], 3)},
            )
        )
    report("Client instructions per deposit", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
