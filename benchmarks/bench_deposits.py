"""Deposits per second against the loopback DMP sandbox: sync client vs async client, 1, 8 and 32 at once.

Each deposit is a fresh PDF-body consultation report (``--pdf-kib``, 200 KiB by default) sent
through the public API — ``DmpClient.deposit`` / ``AsyncDmpClient.deposit`` — so one deposit
costs the client what it costs in production: build the CDA, extract its metadata, sign the
submission set (XAdES) and the VIHF, encode MTOM, send over HTTPS with mutual TLS, read the
registry response.

The sandbox runs in a child process (see ``_sandbox.py``): its CPU is not the client's, and on
a 2-core machine each gets a core. ``--service-latency-ms`` makes the sandbox wait that long
before every answer, as the real DMP does (network round trips and its own processing); with 0
the server answers at once and the client is CPU-bound, so concurrency cannot multiply the
throughput — the figures at a realistic latency (100 ms) show what concurrency buys.

Modes: ``sync ×1`` (the baseline: one deposit after the other), ``sync threads ×8/×32`` (one
``DmpClient`` shared by a thread pool), ``async ×1/×8/×32`` (one ``AsyncDmpClient``, that many
deposits in flight). Every mode runs ``--repeat`` times; the median run is reported, p50/p95
are per-deposit latencies of that run.

    .venv/bin/python benchmarks/bench_deposits.py [--service-latency-ms 0 100] [--deposits 64] [--repeat 3]
        [--json benchmarks/results/latest/bench_deposits.json]

Goal: async at 32 ≥ 8× sync at 1 (at the given service latency).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from _bench import Figure, percentile, report
from _sandbox import Sandbox, make_pdf, pdf_report, sandbox_process

from dmp_connector import AsyncDmpClient, DmpClient
from dmp_connector.cda import ClinicalDocument

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One timed batch of deposits."""

    rate: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float
    client_wait: float = 0.0
    """Seconds per deposit the client's threads waited for a CPU."""
    server_wait: float = 0.0


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _run_delay(pid: int | str = "self") -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU (Linux schedstat).

    High when the machine is busy (the other process of the benchmark, or other work on it): the
    deposits then wait for a core, not for the network or for our code.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def _documents(sandbox: Sandbox, pdf: bytes, count: int) -> list[ClinicalDocument]:
    return [pdf_report(sandbox.settings, sandbox.patient, pdf) for _ in range(count)]


def _measure(sandbox: Sandbox, job: Callable[[], list[float]], count: int) -> Run:
    pid = sandbox.process.pid
    server_before, server_wait = _cpu_of(pid), _run_delay(pid)
    cpu_before, client_wait = time.process_time(), _run_delay()
    started = time.perf_counter()
    latencies = job()
    wall = time.perf_counter() - started
    assert len(latencies) == count
    return Run(
        rate=count / wall,
        latencies=latencies,
        client_cpu=(time.process_time() - cpu_before) / count,
        server_cpu=(_cpu_of(pid) - server_before) / count,
        client_wait=(_run_delay() - client_wait) / count,
        server_wait=(_run_delay(pid) - server_wait) / count,
    )


def run_sync(sandbox: Sandbox, pdf: bytes, concurrency: int, count: int, repeat: int) -> list[Run]:
    runs = []
    with DmpClient(sandbox.settings, signer=sandbox.signer) as client, ThreadPoolExecutor(concurrency) as pool:

        def one(document: ClinicalDocument) -> float:
            started = time.perf_counter()
            result = client.deposit(document, patient=sandbox.patient)
            assert not result.already_deposited
            return time.perf_counter() - started

        def batch(documents: list[ClinicalDocument]) -> list[float]:
            if concurrency == 1:
                return [one(d) for d in documents]
            return list(pool.map(one, documents))

        batch(_documents(sandbox, pdf, concurrency))  # warm-up: connections open, code paths hot
        for _ in range(repeat):
            documents = _documents(sandbox, pdf, count)
            runs.append(_measure(sandbox, lambda documents=documents: batch(documents), count))  # type: ignore[misc]
    return runs


def run_async(sandbox: Sandbox, pdf: bytes, concurrency: int, count: int, repeat: int) -> list[Run]:
    async def main() -> list[Run]:
        async with AsyncDmpClient(sandbox.settings, signer=sandbox.signer) as client:

            async def one(document: ClinicalDocument) -> float:
                started = time.perf_counter()
                result = await client.deposit(document, patient=sandbox.patient)
                assert not result.already_deposited
                return time.perf_counter() - started

            async def batch(documents: list[ClinicalDocument]) -> list[float]:
                gate = asyncio.Semaphore(concurrency)

                async def gated(document: ClinicalDocument) -> float:
                    async with gate:
                        return await one(document)

                return list(await asyncio.gather(*(gated(d) for d in documents)))

            await batch(_documents(sandbox, pdf, concurrency))  # warm-up
            runs = []
            pid = sandbox.process.pid
            for _ in range(repeat):
                documents = _documents(sandbox, pdf, count)
                server_before, server_wait = _cpu_of(pid), _run_delay(pid)
                cpu_before, client_wait = time.process_time(), _run_delay()
                started = time.perf_counter()
                latencies = await batch(documents)
                wall = time.perf_counter() - started
                runs.append(
                    Run(
                        rate=count / wall,
                        latencies=latencies,
                        client_cpu=(time.process_time() - cpu_before) / count,
                        server_cpu=(_cpu_of(pid) - server_before) / count,
                        client_wait=(_run_delay() - client_wait) / count,
                        server_wait=(_run_delay(pid) - server_wait) / count,
                    )
                )
            return runs

    return asyncio.run(main())


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def measure(latency_ms: float, pdf: bytes, deposits: int, repeat: int, concurrencies: list[int]) -> list[Figure]:
    figures: list[Figure] = []
    label = f"{latency_ms:g} ms service latency"
    with sandbox_process(latency_ms) as sandbox:
        modes: list[tuple[str, int, Callable[[], list[Run]]]] = []
        for c in concurrencies:
            count = max(deposits, 2 * c)
            modes.append(
                (f"sync ×{c}" if c == 1 else f"sync threads ×{c}", c, _bind(run_sync, sandbox, pdf, c, count, repeat))
            )
        for c in concurrencies:
            count = max(deposits, 2 * c)
            modes.append((f"async ×{c}", c, _bind(run_async, sandbox, pdf, c, count, repeat)))
        results: dict[str, tuple[int, list[Run]]] = {}
        for name, c, job in modes:
            runs = job()
            results[name] = (c, runs)
            best = _median_run(runs)
            print(
                f"  [{label}] {name}: {best.rate:.1f} deposits/s (runs: {', '.join(f'{r.rate:.1f}' for r in runs)})",
                file=sys.stderr,
            )
    baseline = _median_run(results["sync ×1"][1]).rate
    for name, (c, runs) in results.items():
        best = _median_run(runs)
        is_goal = name == f"async ×{max(concurrencies)}"
        ratio = best.rate / baseline
        figures.append(
            Figure(
                benchmark=f"deposits/s, {name}, {label}",
                value=best.rate,
                unit="deposits/s",
                baseline=baseline,
                baseline_label="sync ×1, same run",
                ratio=ratio,
                goal="≥ 8× sync ×1" if is_goal else "",
                met=(ratio >= 8.0) if is_goal else None,
                extra={
                    "concurrency": c,
                    "service_latency_ms": latency_ms,
                    "deposits": len(best.latencies),
                    "p50_ms": percentile(best.latencies, 50) * 1000,
                    "p95_ms": percentile(best.latencies, 95) * 1000,
                    "client_cpu_ms_per_deposit": best.client_cpu * 1000,
                    "server_cpu_ms_per_deposit": best.server_cpu * 1000,
                    "client_cpu_wait_ms_per_deposit": best.client_wait * 1000,
                    "server_cpu_wait_ms_per_deposit": best.server_wait * 1000,
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "runs_deposits_per_s": [round(r.rate, 2) for r in runs],
                    "median_of": len(runs),
                    "spread_pct": round(
                        100
                        * (max(r.rate for r in runs) - min(r.rate for r in runs))
                        / statistics.median([r.rate for r in runs]),
                        1,
                    ),
                },
            )
        )
    return figures


def _bind(
    fn: Callable[[Sandbox, bytes, int, int, int], list[Run]], sandbox: Sandbox, pdf: bytes, c: int, n: int, r: int
) -> Callable[[], list[Run]]:
    return lambda: fn(sandbox, pdf, c, n, r)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-latency-ms", type=float, nargs="+", default=[0.0])
    parser.add_argument("--pdf-kib", type=int, default=200)
    parser.add_argument("--deposits", type=int, default=64, help="deposits per timed run (at least 2× concurrency)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few deposits, one repeat")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.deposits, args.repeat = 16, 1
    if 1 not in args.concurrency:
        parser.error("--concurrency must include 1 (the baseline)")
    pdf = make_pdf(args.pdf_kib * 1024)
    figures: list[Figure] = []
    for latency in args.service_latency_ms:
        figures += measure(latency, pdf, args.deposits, args.repeat, sorted(args.concurrency))
    report(
        f"Deposits per second against the loopback sandbox (PDF {args.pdf_kib} KiB, sandbox in another process)",
        figures,
        args.json,
    )
    return 0  # a missed goal is a figure, not a failure


if __name__ == "__main__":
    sys.exit(main())
