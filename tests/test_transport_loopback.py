"""The SOAP/MTOM transport against a real HTTPS server on loopback, with mutual TLS.

Every test runs with the synchronous and the asynchronous client through the same
helper, so that the two send loops are held to the same behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dmp_connector._transport import AsyncClient, Client, Operation
from dmp_connector.audit import MemorySink, Outcome
from dmp_connector.config import Environment, Settings, Timeouts, TlsCredentials
from dmp_connector.errors import (
    ConnectError,
    HttpStatusError,
    MalformedResponseError,
    RequestTimeout,
    SoapFaultError,
    TlsError,
    UnsafeXmlError,
)
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox._http import HttpRequest, HttpResponse, LoopbackServer, ScriptedHandler, server_ssl_context
from dmp_connector.sandbox.echo import EchoOperation, echo_service
from dmp_connector.soap.mtom import Attachment

from .conftest import PkiFiles, make_settings
from .test_xml import BILLION_LAUGHS

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0.0)


@pytest.fixture
def script() -> ScriptedHandler:
    return ScriptedHandler(echo_service)


@pytest.fixture
def server(pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path) -> Iterator[LoopbackServer]:
    ctx = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path)
    with LoopbackServer(script, ssl_context=ctx) as srv:
        yield srv


def settings_for(pki_files: PkiFiles, server: LoopbackServer, **overrides: Any) -> Settings:
    data: dict[str, Any] = {"environment": Environment.sandbox(server.url), "retry": FAST_RETRY}
    data.update(overrides)
    return make_settings(pki_files, **data)


def call(mode: str, settings: Settings, operation: Operation[Any], sink: MemorySink) -> Any:
    """Send through the sync or the async client; the same assertions follow either way."""
    if mode == "sync":
        with Client(settings, audit=[sink]) as client:
            return client.send(operation)

    async def run() -> Any:
        async with AsyncClient(settings, audit=[sink]) as client:
            return await client.send(operation)

    return asyncio.run(run())


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
def test_three_megabyte_attachment_round_trips_through_mtom(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    doc = Attachment.from_path(path, content_type="application/pdf")
    sink = MemorySink()
    result = call(mode, settings_for(pki_files, server), EchoOperation("bonjour", [doc]), sink)

    assert result.text == "bonjour"
    assert len(result.documents) == 1
    echoed = result.documents[0]
    assert echoed.size == len(data)
    assert echoed.read() == data
    assert result.reported_sha256 == (hashlib.sha256(data).hexdigest(),)
    # The request went as MTOM with an exact length (no chunked encoding) and mutual TLS.
    request = script.requests[0]
    assert request.header("Content-Type").startswith("multipart/related")
    assert 'type="application/xop+xml"' in request.header("Content-Type")
    assert int(request.header("Content-Length")) == len(request.body)
    assert request.header("Transfer-Encoding") == ""
    assert request.client_subject is not None and "Cabinet Test AUTH_CLI" in request.client_subject
    # The raw request carries the document once, in binary, not base64.
    assert request.body.count(data[:64]) == 1
    # One successful attempt, audited with the request's MessageID, which the answer relates to.
    assert [e.outcome for e in sink.events] == [Outcome.SUCCESS]
    assert result.relates_to == sink.events[0].correlation_id


@MODES
def test_soap_fault_becomes_a_typed_error_and_is_not_retried(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    sink = MemorySink()
    with pytest.raises(SoapFaultError) as info:
        call(mode, settings_for(pki_files, server), EchoOperation("x", fail=("Sender", "Requête invalide")), sink)
    assert info.value.code == "{http://www.w3.org/2003/05/soap-envelope}Sender"
    assert info.value.reason == "Requête invalide"
    assert info.value.operation == "echo"
    assert len(script.requests) == 1
    assert [(e.outcome, e.error_type, e.http_status) for e in sink.events] == [(Outcome.FAILURE, "SoapFaultError", 500)]


@MODES
def test_503_then_success_is_retried_with_the_same_message_id(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    script.then(HttpResponse(503, {"Retry-After": "0", "Content-Type": "text/plain"}, b"busy"))
    sink = MemorySink()
    result = call(mode, settings_for(pki_files, server), EchoOperation("again"), sink)
    assert result.text == "again"
    assert len(script.requests) == 2
    assert script.requests[0].body == script.requests[1].body
    assert [(e.attempt, e.outcome, e.http_status) for e in sink.events] == [
        (1, Outcome.FAILURE, 503),
        (2, Outcome.SUCCESS, 200),
    ]
    assert len({e.correlation_id for e in sink.events}) == 1


@MODES
def test_timeout_exhausts_the_retries(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    def slow(request: HttpRequest) -> HttpResponse:
        return replace(echo_service(request), delay=1.0)

    script.then(slow, slow, slow)
    settings = settings_for(pki_files, server, timeouts=Timeouts(read=0.2))
    sink = MemorySink()
    with pytest.raises(RequestTimeout) as info:
        call(mode, settings, EchoOperation("slow"), sink)
    assert info.value.attempts == 3
    assert len(script.requests) == 3
    assert [e.attempt for e in sink.events] == [1, 2, 3]
    assert all(e.error_type == "RequestTimeout" for e in sink.events)


@MODES
def test_dropped_answer_is_a_connection_error_then_retried(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    script.then(lambda request: replace(echo_service(request), drop=True))
    sink = MemorySink()
    result = call(mode, settings_for(pki_files, server), EchoOperation("dropped"), sink)
    assert result.text == "dropped"
    assert [e.error_type for e in sink.events] == ["ConnectError", None]


class UnsafeEcho(EchoOperation):
    safe_to_repeat = False


@MODES
def test_an_operation_not_safe_to_repeat_is_sent_once(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    script.then(HttpResponse(503, {"Content-Type": "text/plain"}, b"busy"))
    with pytest.raises(HttpStatusError) as info:
        call(mode, settings_for(pki_files, server), UnsafeEcho("once"), MemorySink())
    assert info.value.status_code == 503
    assert len(script.requests) == 1


@MODES
def test_hostile_xml_answer_is_refused(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    script.then(HttpResponse(200, {"Content-Type": "application/soap+xml"}, BILLION_LAUGHS))
    with pytest.raises(UnsafeXmlError):
        call(mode, settings_for(pki_files, server), EchoOperation("x"), MemorySink())
    assert len(script.requests) == 1


@MODES
def test_html_error_page_is_an_http_status_error(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    script.then(HttpResponse(404, {"Content-Type": "text/html"}, b"<html>not here</html>"))
    with pytest.raises(HttpStatusError) as info:
        call(mode, settings_for(pki_files, server), EchoOperation("x"), MemorySink())
    assert info.value.status_code == 404 and not info.value.retryable


@MODES
def test_non_soap_success_is_malformed(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    script.then(HttpResponse(200, {"Content-Type": "text/html"}, b"<html/>"))
    with pytest.raises(MalformedResponseError, match=r"not a SOAP 1\.2 message"):
        call(mode, settings_for(pki_files, server), EchoOperation("x"), MemorySink())


@MODES
def test_broken_audit_sink_never_breaks_the_call(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("disk full")

    good = MemorySink()
    settings = settings_for(pki_files, server)
    if mode == "sync":
        with Client(settings, audit=[broken, good]) as client:
            result = client.send(EchoOperation("ok"))
            failures = client.audit.failures
    else:

        async def run() -> tuple[Any, int]:
            async with AsyncClient(settings, audit=[broken, good]) as client:
                return await client.send(EchoOperation("ok")), client.audit.failures

        result, failures = asyncio.run(run())
    assert result.text == "ok"
    assert failures == 1
    assert len(good.events) == 1
    assert any(good.events[0].event_id in r.getMessage() for r in caplog.records if r.name == "dmp_connector.audit")


@MODES
def test_patient_is_pseudonymised_in_audit_events(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, tmp_path: Path
) -> None:
    matricule = "279035121518989"
    journal = tmp_path / "audit.jsonl"
    settings = settings_for(
        pki_files, server, audit={"jsonl_path": journal, "pseudonym_key": "0123456789abcdef0123456789abcdef"}
    )
    sink = MemorySink()
    call(mode, settings, EchoOperation("x", patient=matricule), sink)
    event = sink.events[0]
    assert event.patient is not None and event.patient.startswith("hmac-sha256:")
    assert matricule not in event.to_json()
    text = journal.read_text()
    assert event.event_id in text and matricule not in text
    assert event.actor.organisation_id == "1123456789"


@MODES
def test_client_without_certificate_is_refused_by_a_tls12_server(
    mode: str, pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path
) -> None:
    ctx = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path, maximum_version=ssl.TLSVersion.TLSv1_2)
    with LoopbackServer(script, ssl_context=ctx) as tls12:
        settings = settings_for(pki_files, tls12, tls=TlsCredentials(ca_bundle=pki_files.ca_bundle))
        with pytest.raises(TlsError) as info:
            call(mode, settings, EchoOperation("x"), MemorySink())
    assert info.value.attempts == 1
    assert script.requests == []


@MODES
def test_client_without_certificate_is_refused_by_a_tls13_server(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler
) -> None:
    # Under TLS 1.3 the server's refusal comes after the client's handshake: the client
    # sees either the alert (TlsError) or only a dropped connection (ConnectError).
    settings = settings_for(pki_files, server, tls=TlsCredentials(ca_bundle=pki_files.ca_bundle))
    with pytest.raises((TlsError, ConnectError)):
        call(mode, settings, EchoOperation("x"), MemorySink())
    assert script.requests == []


@MODES
def test_server_from_an_unknown_ca_is_refused(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(TestPki.create(name="another CA").ca_pem)
    tls = TlsCredentials(cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=other_ca)
    sink = MemorySink()
    with pytest.raises(TlsError) as info:
        call(mode, settings_for(pki_files, server, tls=tls), EchoOperation("x"), sink)
    assert info.value.attempts == 1  # a TLS failure is never retried
    assert "ca_bundle" in str(info.value)


@MODES
def test_connection_refused(mode: str, pki_files: PkiFiles) -> None:
    settings = make_settings(pki_files, environment=Environment.sandbox("https://127.0.0.1:9"), retry=FAST_RETRY)
    with pytest.raises(ConnectError) as info:
        call(mode, settings, EchoOperation("x"), MemorySink())
    assert info.value.attempts == 3
