"""The deposit queue: deposits per second with 1, 2, 4, 8 worker processes on PostgreSQL, and the queue's own cost.

Each worker is a process of its own (``_outbox_worker.py``: an ``Outbox`` on PostgreSQL, a
``DmpClient``, a ``Worker``), as hosts would run them; the sandbox runs in another process with
``--service-latency-ms`` (100 by default) before every answer, as the real DMP answers over a
network. A run enqueues ``--per-worker × N`` fresh PDF-body reports (``--pdf-kib``), starts N
workers, waits until each is ready, then times from "go" until every item is deposited: until the
last worker reports that it found the queue empty (not until the processes have exited). The
baseline is one worker in the same run. Goal: ≥ 3.5× with 4 workers.

The queue's own cost per item — claim (``UPDATE … SELECT … FOR UPDATE SKIP LOCKED``) plus the
record of the outcome — is timed on the same PostgreSQL with no deposit, beside one bare
``DmpClient.deposit`` against the same sandbox.

PostgreSQL: the server binaries of Debian's ``postgresql`` package (a throwaway cluster in a
temporary directory, as the tests do).

    .venv/bin/python benchmarks/bench_outbox.py [--workers 1 2 4 8] [--per-worker 30] [--service-latency-ms 100]
        [--json benchmarks/results/latest/bench_outbox.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import Figure, report
from _sandbox import Sandbox, child_environment, make_pdf, pdf_report, sandbox_process

import dmp_connector
from dmp_connector.cda import build
from dmp_connector.dmp import DmpClient
from dmp_connector.outbox import ItemState, Outbox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.outbox.postgres import PostgresCluster, postgres_cluster  # noqa: E402

HERE = Path(__file__).resolve().parent
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _documents(sandbox: Sandbox, count: int, pdf: bytes) -> list[bytes]:
    return [build(pdf_report(sandbox.settings, sandbox.patient, pdf)) for _ in range(count)]


def _worker_config(sandbox: Sandbox, workdir: Path, url: str) -> Path:
    cert, key = sandbox.sign_certificate.write_pem(workdir, "bench-sign")
    tls = sandbox.settings.tls
    config = workdir / f"worker-{abs(hash(url))}.json"
    config.write_text(
        json.dumps(
            {
                "server": sandbox.url,
                "cert": str(tls.cert_file),
                "key": str(tls.key_file),
                "ca": str(tls.ca_bundle),
                "sign_cert": str(cert),
                "sign_key": str(key),
                "database": url,
            }
        )
    )
    return config


def throughput(
    cluster: PostgresCluster, sandbox: Sandbox, workers: int, items: int, pdf: bytes, workdir: Path
) -> tuple[float, dict[str, float]]:
    """Deposits per second with ``workers`` processes draining ``items`` queued reports, and CPU per deposit:
    the workers' (the drain only), the sandbox's, and the machine's load — a run bound by CPU shows as one."""
    url = cluster.database()
    with Outbox(url, settings=sandbox.settings) as outbox:
        for document in _documents(sandbox, items, pdf):
            outbox.enqueue(document, sandbox.patient)
        config = _worker_config(sandbox, workdir, url)
        processes = [
            subprocess.Popen(
                [sys.executable, str(HERE / "_outbox_worker.py"), str(config), f"w{n}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=child_environment(),
            )
            for n in range(workers)
        ]
        for process in processes:
            assert process.stdout is not None
            said = process.stdout.readline().strip().split(maxsplit=1)
            if said[:1] != ["ready"]:
                raise RuntimeError("a worker did not start")
            if said[1:] != [dmp_connector.__file__]:  # the package measured is this checkout's
                raise RuntimeError(f"a worker imported {said[1:]}, not {dmp_connector.__file__}")
        server_cpu = _cpu_of(sandbox.process.pid)
        started = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        workers_cpu = 0.0
        for process in processes:  # each says "cpu …" as soon as the queue is empty for it
            assert process.stdout is not None
            said = process.stdout.readline().split()
            workers_cpu += float(said[1]) if said[:1] == ["cpu"] else float("nan")
        # The drain ends when the last worker finds the queue empty: its process exit (closing the
        # pool and the client, the interpreter's shutdown: 0.3-1 s on 2 cores) is not a deposit.
        elapsed = time.perf_counter() - started
        server_cpu = _cpu_of(sandbox.process.pid) - server_cpu
        for process in processes:
            process.wait(timeout=600)
            if process.returncode != 0:
                raise RuntimeError(f"a worker exited with status {process.returncode}")
            if process.stdin is not None:
                process.stdin.close()
            if process.stdout is not None:
                process.stdout.close()
        status = outbox.status()
        if status.counts[ItemState.DEPOSITED] != items:
            raise RuntimeError(f"not every item was deposited: {status}")
    return items / elapsed, {
        "worker_cpu_ms_per_deposit": round(workers_cpu * 1000 / items, 1),
        "sandbox_cpu_ms_per_deposit": round(server_cpu * 1000 / items, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def queue_overhead(cluster: PostgresCluster, sandbox: Sandbox, count: int, pdf: bytes) -> tuple[float, float]:
    """Milliseconds per item of claim + record (no deposit), and of one bare deposit."""
    documents = _documents(sandbox, count, pdf)
    with Outbox(cluster.database(), settings=sandbox.settings) as outbox:
        for document in documents:
            outbox.enqueue(document, sandbox.patient)
        started = time.perf_counter()
        for n in range(count):
            claim = outbox.claim("bench")
            assert claim is not None
            outbox.record_success(
                claim,
                worker="bench",
                seconds=0.0,
                document_unique_id=f"1.2.3.{n}",
                entry_uuid=None,
                already_deposited=False,
            )
        queue_ms = (time.perf_counter() - started) * 1000 / count
    with DmpClient(sandbox.settings, signer=sandbox.signer) as client:
        client.deposit(documents[0], patient=sandbox.patient)  # warm the connection
        samples = []
        for document in documents[1:]:
            started = time.perf_counter()
            client.deposit(document, patient=sandbox.patient)
            samples.append((time.perf_counter() - started) * 1000)
    return queue_ms, statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--per-worker", type=int, default=30, help="items queued per worker in a run")
    parser.add_argument("--pdf-kib", type=int, default=200)
    parser.add_argument("--service-latency-ms", type=float, default=100.0)
    parser.add_argument("--quick", action="store_true", help="fewer items (a smoke run)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    per_worker = 8 if args.quick else args.per_worker
    pdf = make_pdf(args.pdf_kib * 1024)
    figures: list[Figure] = []
    with (
        postgres_cluster() as cluster,
        sandbox_process(args.service_latency_ms) as sandbox,
        tempfile.TemporaryDirectory(prefix="dmpc-bench-outbox-") as tmp,
    ):
        rates: dict[int, float] = {}
        costs: dict[int, dict[str, float]] = {}
        for workers in sorted({1, *args.workers}):
            rates[workers], costs[workers] = throughput(
                cluster, sandbox, workers, per_worker * max(workers, 2), pdf, Path(tmp)
            )
            print(f"{workers} worker(s): {rates[workers]:.1f} deposits/s", file=sys.stderr)
        for workers in sorted(args.workers):
            ratio = rates[workers] / rates[1]
            goal = "≥ 3.5× one worker" if workers == 4 else ""
            figures.append(
                Figure(
                    benchmark=f"outbox PostgreSQL, {workers} worker process(es), {args.pdf_kib} KiB PDF, "
                    f"{args.service_latency_ms:g} ms service latency",
                    value=round(rates[workers], 2),
                    unit="deposits/s",
                    baseline=round(rates[1], 2),
                    baseline_label="1 worker, same run",
                    ratio=round(ratio, 2),
                    goal=goal,
                    met=(ratio >= 3.5) if workers == 4 else None,
                    extra={"items": per_worker * max(workers, 2), **costs[workers]},
                )
            )
        queue_ms, deposit_ms = queue_overhead(cluster, sandbox, 6 if args.quick else 20, pdf)
        figures.append(
            Figure(
                benchmark="outbox overhead per item: claim (SKIP LOCKED) + record, PostgreSQL",
                value=round(queue_ms, 2),
                unit="ms",
                baseline=round(deposit_ms, 1),
                baseline_label="one bare DmpClient.deposit, median",
                ratio=round(queue_ms / deposit_ms, 3),
            )
        )
    report("Deposit queue (outbox)", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
