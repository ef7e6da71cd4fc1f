"""Quickstart: what the foundation of dmp_connector already does, end to end, on loopback.

Run it with ``python3 scripts/dev.py quickstart``. It needs no network and no
certificate of your own: it creates a throw-away PKI, serves the sandbox's SOAP echo
service on 127.0.0.1 over HTTPS with mutual TLS, and calls it with the synchronous and
the asynchronous clients, printing each step. It exits with status 0 only if every
check holds. The national simulators (INSi, DMP, MSSanté) will take the echo service's
place as they are written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from dmp_connector import (
    AsyncClient,
    Attachment,
    AuditSettings,
    Client,
    Code,
    Environment,
    MemorySink,
    Organisation,
    Professional,
    RetryPolicy,
    Settings,
    SoapFaultError,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
    UnsafeXmlError,
)
from dmp_connector.sandbox import (
    EchoOperation,
    HttpRequest,
    HttpResponse,
    LoopbackServer,
    ScriptedHandler,
    TestPki,
    echo_service,
    server_ssl_context,
)

HOSTILE = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def make_settings(workdir: Path, pki: TestPki, server_url: str) -> Settings:
    ca = workdir / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    cert, key = pki.issue_client("Cabinet Dr Martin AUTH_CLI").write_pem(workdir, "auth-cli")
    return Settings(
        software=SoftwareIdentity(name="QuickstartLPS", version="0.1", editor="Example Editor"),
        environment=Environment.sandbox(server_url),
        organisation=Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Dr Martin"),
        professional=Professional(
            id="10001234567",
            family_name="MARTIN",
            given_name="Claire",
            profession=Code(code="10", code_system="1.2.250.1.71.1.2.7", display_name="Médecin"),
        ),
        tls=TlsCredentials(cert_file=cert, key_file=key, ca_bundle=ca),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05),
        audit=AuditSettings(jsonl_path=workdir / "audit.jsonl"),
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dmp-connector-quickstart-") as tmp:
        workdir = Path(tmp)
        step("1. A throw-away PKI: a root CA, a server certificate for 127.0.0.1, an organisation certificate")
        pki = TestPki.create()
        script = ScriptedHandler(echo_service)
        tls = server_ssl_context(pki.issue_server(), pki, workdir=workdir)

        with LoopbackServer(script, ssl_context=tls) as server:
            step(f"2. Sandbox SOAP echo service on {server.url} (HTTPS, client certificate required)")
            settings = make_settings(workdir, pki, server.url)
            sink = MemorySink()

            step("3. Sync client: a 3 MB report sent and received back as MTOM/XOP parts")
            report = workdir / "compte-rendu.pdf"
            data = b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024)
            report.write_bytes(data)
            with Client(settings, audit=[sink]) as client:
                result = client.send(
                    EchoOperation("Bonjour", [Attachment.from_path(report, content_type="application/pdf")])
                )
                echoed = result.documents[0]
                check(echoed.read() == data, f"{echoed.size} bytes came back identical")
                check(result.reported_sha256[0] == hashlib.sha256(data).hexdigest(), "the server saw the same SHA-256")
                check(script.requests[-1].client_subject is not None, "the server authenticated our client certificate")

                step("4. A 503 from the service, then success: retried with the same wsa:MessageID")
                script.then(HttpResponse(503, {"Retry-After": "0", "Content-Type": "text/plain"}, b"busy"))
                before = len(sink.events)
                client.send(EchoOperation("encore"))
                attempts = sink.events[before:]
                check([e.attempt for e in attempts] == [1, 2], "two attempts, audited one by one")
                check(len({e.correlation_id for e in attempts}) == 1, "one correlation id for the logical call")

                step("5. A SOAP fault becomes a typed error")
                try:
                    client.send(EchoOperation("x", fail=("Sender", "Requête refusée")))
                except SoapFaultError as exc:
                    check(exc.reason == "Requête refusée", f"SoapFaultError: {exc}")
                else:
                    check(False, "the fault was raised")

                step("6. A hostile answer (XXE) is refused by the hardened parser")
                script.then(HttpResponse(200, {"Content-Type": "application/soap+xml"}, HOSTILE))
                try:
                    client.send(EchoOperation("x"))
                except UnsafeXmlError as exc:
                    check("document type declaration" in exc.message, f"UnsafeXmlError: {exc.message}")
                else:
                    check(False, "the hostile answer was refused")

                step("7. The patient's INS never appears in clear in the audit trail")
                client.send(EchoOperation("x", patient="279035121518989"))
                check(sink.events[-1].patient is not None, f"patient pseudonym: {sink.events[-1].patient}")

            step("8. Async client: three calls at once, one slowed down by the server")

            def slow(request: HttpRequest) -> HttpResponse:
                return replace(echo_service(request), delay=0.3)

            script.then(slow)

            async def concurrent() -> list[str]:
                async with AsyncClient(settings, audit=[sink]) as client:
                    results = await asyncio.gather(*(client.send(EchoOperation(f"appel {i}")) for i in range(3)))
                return [r.text for r in results]

            texts = asyncio.run(concurrent())
            check(texts == ["appel 0", "appel 1", "appel 2"], f"answers: {texts}")

        step("9. Audit trail")
        journal = workdir / "audit.jsonl"
        lines = journal.read_text(encoding="utf-8").splitlines()
        check(len(lines) == len(sink.events), f"{len(lines)} events in {journal.name}, one per attempt")
        check("279035121518989" not in journal.read_text(encoding="utf-8"), "no matricule in the journal")
        for event in sink.events:
            print(
                f"   {event.timestamp:%H:%M:%S} {event.operation} attempt {event.attempt} "
                f"{event.outcome.value:7} {event.error_type or '':15} {event.duration_ms:7.1f} ms"
            )
    print("\nQuickstart finished: every check passed.")


if __name__ == "__main__":
    main()
