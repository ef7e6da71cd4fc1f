"""Instructions the DMP sandbox executes per deposit (callgrind), on captured requests.

The sandbox's CPU per deposit competes with the outbox workers for the same cores
(``bench_outbox.py``). This counts it as instructions, which repeat from run to run on a shared
machine where timings do not. Two steps, each in its own process:

``capture``: a :class:`~dmp_connector.dmp.DmpClient` deposits ``--deposits`` + 1 reports (200 KiB
PDF bodies, as ``bench_deposit_cpu.py``) into an in-process simulator; every HTTP request the
simulator sees is pickled, with the test CA, to ``--requests``.

``replay`` (run under ``valgrind --tool=callgrind --instr-atstart=no``): a fresh simulator trusting
that CA answers the first request (warm-up: imports, caches), then the others with the
instrumentation switched on around them only (``callgrind_control -i on/off``); every answer must
be an ITI-41 success, or the run fails. The count is the server's request handling alone: no
TLS, no socket (the loopback server's share is not counted).

    PYTHONPATH=. .venv/bin/python benchmarks/sandbox_instructions.py capture --requests /tmp/req.pkl
    PYTHONHASHSEED=0 PYTHONPATH=. valgrind --tool=callgrind --instr-atstart=no \\
        --callgrind-out-file=/tmp/cg.out .venv/bin/python benchmarks/sandbox_instructions.py replay \\
        --requests /tmp/req.pkl
    callgrind_annotate /tmp/cg.out | head      # "PROGRAM TOTALS" / deposits = instructions per deposit

``replay --profile FILE`` instead runs the replay under cProfile (CPU time), without valgrind.
The VIHFs are valid for an hour: replay within the hour of the capture.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def capture(path: Path, count: int) -> None:
    import httpx
    from _sandbox import STRUCTURE, base_settings, make_pdf, patient, pdf_report

    from dmp_connector import TlsCredentials
    from dmp_connector.cda import build
    from dmp_connector.dmp import DmpClient
    from dmp_connector.sandbox import HttpRequest, HttpResponse, TestPki, as_transport, client_subject
    from dmp_connector.sandbox.dmp import DmpSimulator
    from dmp_connector.signature import FileSigner

    with tempfile.TemporaryDirectory(prefix="dmpc-sbx-") as tmp:
        workdir = Path(tmp)
        pki = TestPki.create()
        (workdir / "ca.crt").write_bytes(pki.ca_pem)
        auth = pki.issue_organisation_auth(organisation="Cabinet Test", structure_id=STRUCTURE)
        cert, key = auth.write_pem(workdir, "org-auth")
        sign = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=STRUCTURE)
        settings = base_settings("https://127.0.0.1:1", TlsCredentials(cert_file=cert, key_file=key))
        simulator = DmpSimulator(trusted=[pki.ca.certificate])
        captured: list[HttpRequest] = []

        def handler(request: HttpRequest) -> HttpResponse:
            captured.append(request)
            return simulator(request)

        pdf = make_pdf(200 * 1024)
        who = patient()
        documents = [build(pdf_report(settings, who, pdf)) for _ in range(count + 1)]
        signer = FileSigner([sign.certificate], sign.key)
        transport = as_transport(handler, client_subject=client_subject(settings.tls))
        with httpx.Client(transport=transport) as http, DmpClient(settings, signer=signer, http_client=http) as client:
            for document in documents:
                client.deposit(document, patient=who)
        handler_requests = [r for r in captured if r.path.endswith("/repository")]
        assert len(handler_requests) == count + 1, [r.path for r in captured]
        path.write_bytes(pickle.dumps({"ca": pki.ca_pem, "requests": handler_requests}))


def replay(path: Path, profile: str | None) -> None:
    from cryptography import x509

    from dmp_connector.sandbox.dmp import DmpSimulator

    data = pickle.loads(path.read_bytes())
    simulator = DmpSimulator(trusted=[x509.load_pem_x509_certificate(data["ca"])])
    first, *rest = data["requests"]

    def check(answer: object) -> None:
        body = getattr(answer, "body", b"")
        if getattr(answer, "status", 0) != 200 or b"ResponseStatusType:Success" not in body:
            raise SystemExit(f"a deposit was not accepted: {body[:2000]!r}")

    check(simulator(first))
    gc.collect()
    gc.freeze()
    if profile:
        profiler = cProfile.Profile(time.process_time)
        for request in rest:
            check(profiler.runcall(simulator, request))
        profiler.dump_stats(profile)
        return
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    answers = [simulator(request) for request in rest]
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    for answer in answers:
        check(answer)
    print(f"replayed {len(rest)} deposits")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["capture", "replay"])
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--deposits", type=int, default=10)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    if args.step == "capture":
        capture(args.requests, args.deposits)
    else:
        replay(args.requests, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
