"""The DMP sandbox in another process, and the documents the deposit benchmarks send (private).

The deposit benchmarks measure the *client*: its CPU time (deposits per second) and its memory
(the peak to deposit a large PDF). Serving the simulator in the benchmark's own process would
mix the server's work into both figures — its CPU competes for the GIL with the client, its
copies of the received document count in the client's RSS — so the simulator runs here, in a
child process of its own, on loopback with mutual TLS, exactly as ``DmpSimulator.serve`` does
in the tests. On a 2-core machine the client and the server then each get a core.

``--service-latency-ms`` makes every answer wait that long after the simulator did its work
(the server is thread-per-connection, so waits overlap): the real DMP answers over a network,
after its own processing, which the loopback sandbox does not.

    python benchmarks/_sandbox.py --pki DIR [--service-latency-ms 0]   # prints the URL, serves until stdin closes
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dmp_connector import (
    Code,
    Environment,
    Identity,
    IdentityStatus,
    Organisation,
    Professional,
    RetryPolicy,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.cda import ClinicalDocument, NonXmlBody, Problem, VsmContent, vsm_document
from dmp_connector.codes import professional_specialty
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator
from dmp_connector.sandbox.pki import IssuedCertificate
from dmp_connector.signature import FileSigner

__all__ = ["Sandbox", "child_environment", "make_pdf", "pdf_report", "sandbox_process", "vsm_summary"]

ROOT = Path(__file__).resolve().parents[1]


def child_environment() -> dict[str, str]:
    """The environment of a benchmark's child process: this checkout's package first on its path.

    A child runs a script of ``benchmarks/``, whose own directory heads ``sys.path``: without this, it
    would import whichever ``dmp_connector`` is installed (an editable install of another checkout).
    """
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), path] if path else [str(ROOT)])}


PARIS = ZoneInfo("Europe/Paris")
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
STRUCTURE = "1123456789"
"""The organisation's national id: ``1`` + its FINESS; the TLS certificate's OU must be the same."""


def make_pdf(size: int) -> bytes:
    """A well-formed PDF padded with comment lines to about ``size`` bytes (never less)."""
    head = b"%PDF-1.4\n"
    body = (
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    )
    line = b"%" + b"0123456789" * 7 + b"abcdefgh\n"
    padding = line * max(0, -(-(size - len(head) - len(body) - 64) // len(line)))
    offset = len(head) + len(padding)
    xref = b"xref\n0 3\n0000000000 65535 f \n%010d 00000 n \n%010d 00000 n \n" % (offset, offset + 49)
    trailer = b"trailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (offset + len(body))
    return head + padding + body + xref + trailer


def patient() -> Identity:
    """The sandbox's first patient, who has an open DMP."""
    record = DEFAULT_DMP_PATIENTS[0]
    return Identity(traits=record.traits, ins=record.ins, status=IdentityStatus.QUAL)


def pdf_report(settings: Settings, who: Identity, pdf: bytes) -> ClinicalDocument:
    """A consultation report with ``pdf`` as its body; a fresh document id each call."""
    return ClinicalDocument.from_settings(
        settings,
        patient=who,
        type_code=CONSULTATION,
        title="Compte rendu de consultation",
        body=NonXmlBody(data=pdf),
        effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
        service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
        service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
        practice_setting=AMBULATOIRE,
    )


def vsm_summary(settings: Settings, who: Identity) -> ClinicalDocument:
    """A structured medical summary (VSM volet); a fresh document id each call."""
    content = VsmContent(
        active_problems=(
            Problem(value=Code.of("E11", "2.16.840.1.113883.6.3", "Diabète de type 2"), start=dt.date(2015, 4, 1)),
            Problem(
                value=Code.of("I10", "2.16.840.1.113883.6.3", "Hypertension essentielle"), start=dt.date(2018, 1, 9)
            ),
        ),
        risk_factors="Tabagisme ancien",
        no_long_term_treatment=True,
    )
    return vsm_document(
        content,
        settings=settings,
        patient=who,
        effective_time=dt.datetime(2024, 5, 2, 9, 0, tzinfo=PARIS),
        service_start=dt.date(2024, 5, 2),
        practice_setting=AMBULATOIRE,
    )


def base_settings(server_url: str = "https://127.0.0.1:1", tls: TlsCredentials | None = None) -> Settings:
    """The organisation and professional the sandbox knows; TLS files when a server is used."""
    extra: dict[str, Any] = {"tls": tls} if tls is not None else {}
    return Settings(
        software=SoftwareIdentity(name="BenchLPS", version="0.1", editor="Bench Editor", dmp_homologation_id="HOM"),
        environment=Environment.sandbox(server_url),
        organisation=Organisation(
            id=STRUCTURE[1:],
            id_kind=StructureIdKind.FINESS,
            name="Cabinet Test",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="99700000001",
            family_name="SANDBOX",
            given_name="JEANNE",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
        retry=RetryPolicy(max_attempts=1),
        **extra,
    )


@dataclass
class Sandbox:
    """A running sandbox process and what a client needs to talk to it."""

    url: str
    settings: Settings
    signer: FileSigner
    sign_certificate: IssuedCertificate
    patient: Identity
    process: subprocess.Popen[str]


@contextmanager
def sandbox_process(service_latency_ms: float = 0.0) -> Iterator[Sandbox]:
    """Start the DMP simulator in a child process; yield the client's settings; stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="dmpc-bench-") as tmp:
        workdir = Path(tmp)
        pki = TestPki.create()
        (workdir / "ca.crt").write_bytes(pki.ca_pem)
        (workdir / "ca.key").write_bytes(pki.ca.key_pem())
        auth = pki.issue_organisation_auth(organisation="Cabinet Test", structure_id=STRUCTURE)
        cert, key = auth.write_pem(workdir, "org-auth")
        sign = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=STRUCTURE)
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__)),
                "--pki",
                str(workdir),
                "--service-latency-ms",
                str(service_latency_ms),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_environment(),
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            if not url.startswith("https://"):
                raise RuntimeError(f"the sandbox process did not start (it said {url!r})")
            tls = TlsCredentials(cert_file=cert, key_file=key, ca_bundle=workdir / "ca.crt")
            yield Sandbox(
                url=url,
                settings=base_settings(url, tls),
                signer=FileSigner([sign.certificate], sign.key),
                sign_certificate=sign,
                patient=patient(),
                process=process,
            )
        finally:
            if process.stdin is not None:
                process.stdin.close()  # the server stops when its stdin closes
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _serve(pki_dir: Path, latency: float) -> None:
    from dmp_connector.sandbox import HttpRequest, HttpResponse

    pki = TestPki.load(pki_dir / "ca.crt", pki_dir / "ca.key")
    simulator = DmpSimulator(trusted=[pki.ca.certificate])

    # DMPC_SANDBOX_PROFILE=FILE: the server's own CPU per request, profiled (cProfile, CPU time) and
    # written to FILE when the server stops. One request at a time: a sequential client only.
    profile_to = os.environ.get("DMPC_SANDBOX_PROFILE")
    profiler = cProfile.Profile(time.process_time) if profile_to else None

    def handler(request: HttpRequest) -> HttpResponse:
        answer = simulator(request) if profiler is None else profiler.runcall(simulator, request)
        answer.delay = max(answer.delay, latency)
        return answer

    with simulator.serve(pki, workdir=pki_dir, handler=handler) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the benchmark closes the pipe (or dies)
    if profiler is not None and profile_to:
        profiler.dump_stats(profile_to)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pki", type=Path, required=True, help="directory holding ca.crt and ca.key")
    parser.add_argument("--service-latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    _serve(args.pki, args.service_latency_ms / 1000.0)


if __name__ == "__main__":
    main()
