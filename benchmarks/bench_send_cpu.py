"""The send path alone, sync against async: CPU per attempt of one prepared deposit, sent again and again.

``bench_deposit_cpu.py`` times whole deposits, of which the send (httpx, TLS, the 270 kB MTOM body,
reading and parsing the answer, the audit event) is a fifth; on a shared machine its noise hides a
difference of a millisecond in the async client's I/O. Here the request of one 200 KiB PDF deposit
is prepared once (envelope, VIHF, MTOM) and sent ``--sends`` times through the sync and the async
send loop (one attempt each, the sandbox in another process answering at once), in alternating
rounds so that both see the same load. The answer (the sandbox's verdict on a replayed deposit) is
read and parsed either way. Goal (issue 22): async ≤ sync.

    .venv/bin/python benchmarks/bench_send_cpu.py [--sends 200] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _bench import Figure, report
from _sandbox import Sandbox, make_pdf, pdf_report, sandbox_process

from dmp_connector._deadline import Budget
from dmp_connector._transport import AsyncClient, Client, Operation, _Prepared
from dmp_connector.cda import build
from dmp_connector.dmp import DmpClient
from dmp_connector.errors import DmpConnectorError


def prepared_deposit(sandbox: Sandbox, pdf: bytes) -> _Prepared:
    """The request of one deposit, as the send loops get it: the operation is caught on its way to ``send``."""
    seen: list[Operation[Any]] = []
    with DmpClient(sandbox.settings, signer=sandbox.signer) as client:
        inner = client._client
        send: Callable[[Operation[Any]], Any] = inner.send

        def recording(operation: Operation[Any]) -> Any:
            seen.append(operation)
            return send(operation)

        setattr(inner, "send", recording)  # noqa: B010 (an instance attribute over the method, for this run only)
        client.deposit(build(pdf_report(sandbox.settings, sandbox.patient, pdf)), patient=sandbox.patient)
        return inner._prepare(seen[-1])


def sync_cpu(sandbox: Sandbox, prepared: _Prepared, sends: int) -> float:
    with Client(sandbox.settings) as client:

        def once() -> None:
            with contextlib.suppress(DmpConnectorError):  # the sandbox's verdict on a replay, read and parsed
                client._attempt(prepared, 1, Budget.start(client.settings))

        once()  # connection
        started = time.process_time()
        for _ in range(sends):
            once()
        return (time.process_time() - started) * 1000 / sends


def async_cpu(sandbox: Sandbox, prepared: _Prepared, sends: int) -> float:
    async def go() -> float:
        async with AsyncClient(sandbox.settings) as client:

            async def once() -> None:
                with contextlib.suppress(DmpConnectorError):
                    await client._attempt(prepared, 1, Budget.start(client.settings))

            await once()
            started = time.process_time()
            for _ in range(sends):
                await once()
            return (time.process_time() - started) * 1000 / sends

    return asyncio.run(go())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pdf-kib", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    pdf = make_pdf(args.pdf_kib * 1024)
    sync_runs: list[float] = []
    async_runs: list[float] = []
    with sandbox_process(0.0) as sandbox:
        prepared = prepared_deposit(sandbox, pdf)
        for _ in range(args.rounds):
            sync_runs.append(sync_cpu(sandbox, prepared, args.sends))
            async_runs.append(async_cpu(sandbox, prepared, args.sends))
    sync_ms, async_ms = statistics.median(sync_runs), statistics.median(async_runs)
    ratios = [a / s for a, s in zip(async_runs, sync_runs, strict=True)]
    figures = [
        Figure(
            benchmark=f"client CPU per send of a prepared deposit, async, {args.pdf_kib} KiB PDF, mutual TLS",
            value=round(async_ms, 3),
            unit="ms CPU",
            baseline=round(sync_ms, 3),
            baseline_label="the sync send loop, same rounds",
            ratio=round(async_ms / sync_ms, 3),
            goal="≤ sync",
            met=async_ms <= sync_ms,
            extra={
                "sync_runs": [round(r, 3) for r in sync_runs],
                "async_runs": [round(r, 3) for r in async_runs],
                "ratios": [round(r, 3) for r in ratios],
            },
        )
    ]
    report("Send path CPU, sync and async", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
