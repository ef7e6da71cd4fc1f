"""Fast unit tests of the send loops with respx: no socket, canned answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from lxml import etree

from dmp_connector._transport import AsyncClient, Client
from dmp_connector.audit import MemorySink
from dmp_connector.config import AuditSettings, Environment, Settings
from dmp_connector.errors import (
    ConfigurationError,
    ConnectError,
    DmpConnectorError,
    HttpStatusError,
    MalformedResponseError,
    RequestTimeout,
    ServiceError,
    SoapFaultError,
)
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox._http import as_async_transport, as_transport
from dmp_connector.sandbox.echo import ECHO_ACTION, ECHO_NS, EchoOperation, echo_service
from dmp_connector.soap import namespaces as ns
from dmp_connector.soap.envelope import Addressing, build_envelope, xop_include
from dmp_connector.soap.mtom import Attachment, encode_mtom
from dmp_connector.xml import to_bytes

from .conftest import SOFTWARE

URL = "https://dmp.test.invalid/echo"
SETTINGS = Settings.model_validate(
    {
        "software": SOFTWARE,
        "environment": Environment.sandbox("https://dmp.test.invalid"),
        "retry": RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, jitter=0.0),
    }
)

FAULT = b"""<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:s="urn:siram">
<env:Body><env:Fault>
 <env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value>s:insi_102</env:Value></env:Subcode></env:Code>
 <env:Reason><env:Text xml:lang="fr">Requete invalide</env:Text></env:Reason>
 <env:Detail><s:Erreur>detail that may echo request data</s:Erreur></env:Detail>
</env:Fault></env:Body></env:Envelope>"""


def soap(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"Content-Type": "application/soap+xml; charset=utf-8"}, content=body)


def send(mode: str, operation: EchoOperation, **kwargs: Any) -> Any:
    if mode == "sync":
        with Client(SETTINGS, **kwargs) as client:
            return client.send(operation)

    async def run() -> Any:
        async with AsyncClient(SETTINGS, **kwargs) as client:
            return await client.send(operation)

    return asyncio.run(run())


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
@respx.mock
def test_fault_keeps_code_subcode_reason_and_detail(mode: str) -> None:
    route = respx.post(URL).mock(return_value=soap(FAULT, 500))
    with pytest.raises(SoapFaultError) as info:
        send(mode, EchoOperation("x"))
    err = info.value
    assert err.code == "{http://www.w3.org/2003/05/soap-envelope}Sender"
    assert err.subcodes == ("{urn:siram}insi_102",)
    assert err.reason == "Requete invalide"
    assert err.detail is not None and b"Erreur" in err.detail
    assert "detail that may echo" not in str(err)
    assert route.call_count == 1
    request = route.calls[0].request
    assert request.headers["Content-Type"] == f'application/soap+xml; charset=utf-8; action="{ECHO_ACTION}"'
    sent = etree.fromstring(request.content)  # noqa: TID251 - reading our own request in a test
    header = sent.find(f"{{{ns.SOAP12_ENV}}}Header")
    assert header is not None
    assert [etree.QName(h).localname for h in header] == ["MessageID", "To", "Action"]
    assert header[1].text == URL


@MODES
@respx.mock
def test_503_then_success(mode: str) -> None:
    ok = echo_service_response("fine")
    route = respx.post(URL).mock(side_effect=[httpx.Response(503, headers={"Retry-After": "0"}), ok])
    assert send(mode, EchoOperation("fine")).text == "fine"
    assert route.call_count == 2


@MODES
@respx.mock
def test_timeouts_exhaust_retries(mode: str) -> None:
    route = respx.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    sink = MemorySink()
    with pytest.raises(RequestTimeout) as info:
        send(mode, EchoOperation("x"), audit=[sink])
    assert info.value.attempts == 3 and route.call_count == 3
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert [e.attempt for e in sink.events] == [1, 2, 3]


@MODES
@respx.mock
def test_a_failed_call_made_while_handling_the_callers_error_leaves_that_error_whole(mode: str) -> None:
    # The SDK drops the locals its own failed attempts keep alive, never the caller's (an implicit __context__).
    respx.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))

    def vendor_code() -> None:
        patient_row = {"kept": True}
        raise LookupError(patient_row)

    try:
        vendor_code()
    except LookupError as mine:
        with pytest.raises(RequestTimeout):
            send(mode, EchoOperation("x"))
        tb = mine.__traceback__
        assert tb is not None and tb.tb_next is not None
        assert tb.tb_next.tb_frame.f_locals.get("patient_row") == {"kept": True}


@MODES
@respx.mock
def test_retry_after_too_long_gives_up_at_once(mode: str) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(503, headers={"Retry-After": "3600"}))
    with pytest.raises(HttpStatusError) as info:
        send(mode, EchoOperation("x"))
    assert info.value.retry_after == 3600 and route.call_count == 1


@MODES
@respx.mock
def test_truncated_soap_answer_is_malformed(mode: str) -> None:
    respx.post(URL).mock(return_value=soap(b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'>"))
    with pytest.raises(MalformedResponseError):
        send(mode, EchoOperation("x"))


@MODES
@respx.mock
def test_mtom_answer_is_decoded(mode: str) -> None:
    data = b"%PDF-1.4 fake" * 1000
    part = Attachment.from_bytes(data, content_type="application/pdf")
    answer = etree.Element(f"{{{ECHO_NS}}}EchoResponse")
    etree.SubElement(answer, f"{{{ECHO_NS}}}Text").text = "with part"
    doc = etree.SubElement(answer, f"{{{ECHO_NS}}}Document", sha256="x")
    doc.append(xop_include(part.content_id))
    envelope = build_envelope(answer, addressing=Addressing(action="urn:r", to="urn:anon"))
    payload = encode_mtom(envelope, [part])
    respx.post(URL).mock(
        return_value=httpx.Response(
            200, headers={"Content-Type": payload.content_type}, content=b"".join(payload.iter_bytes())
        )
    )
    result = send(mode, EchoOperation("x"))
    assert result.text == "with part" and result.documents[0].read() == data


def echo_service_response(text: str, status: int = 200) -> httpx.Response:
    """An echo answer carrying ``text``, as the simulator would send it."""
    envelope = build_envelope(
        _echo_response(text), addressing=Addressing(action=ECHO_ACTION + "Response", to="urn:anon")
    )
    return soap(to_bytes(envelope), status)


def _echo_response(text: str) -> etree._Element:
    answer = etree.Element(f"{{{ECHO_NS}}}EchoResponse")
    etree.SubElement(answer, f"{{{ECHO_NS}}}Text").text = text
    return answer


def test_own_http_client_is_used_and_left_open() -> None:
    http = httpx.Client(transport=as_transport(echo_service))
    with Client(SETTINGS, http_client=http) as client:
        assert client.send(EchoOperation("in-process")).text == "in-process"
    assert not http.is_closed
    http.close()


def test_own_async_http_client_is_used_and_left_open() -> None:
    async def run() -> None:
        http = httpx.AsyncClient(transport=as_async_transport(echo_service))
        async with AsyncClient(SETTINGS, http_client=http) as client:
            assert (await client.send(EchoOperation("in-process"))).text == "in-process"
        assert not http.is_closed
        await http.aclose()

    asyncio.run(run())


class MappedEcho(EchoOperation):
    """An operation that reads its service's fault codes, as INSi and the DMP will."""

    def map_fault(self, fault: SoapFaultError) -> DmpConnectorError:
        transient = fault.code.endswith("}Receiver")
        return ServiceError(
            f"echo refused: {fault.reason}", service="sandbox", code=fault.subcodes[0], transient=transient
        )


RECEIVER_FAULT = FAULT.replace(b"env:Sender", b"env:Receiver")


@MODES
@respx.mock
def test_transient_service_error_from_a_mapped_fault_is_retried(mode: str) -> None:
    route = respx.post(URL).mock(side_effect=[soap(RECEIVER_FAULT, 500), echo_service_response("after fault")])
    assert send(mode, MappedEcho("after fault")).text == "after fault"
    assert route.call_count == 2


@MODES
@respx.mock
def test_permanent_service_error_keeps_the_fault_as_cause(mode: str) -> None:
    route = respx.post(URL).mock(return_value=soap(FAULT, 500))
    with pytest.raises(ServiceError) as info:
        send(mode, MappedEcho("x"))
    assert info.value.code == "{urn:siram}insi_102"
    assert not info.value.transient
    assert isinstance(info.value.__cause__, SoapFaultError)
    assert route.call_count == 1


@MODES
@respx.mock
def test_error_status_with_a_non_fault_envelope_is_malformed(mode: str) -> None:
    respx.post(URL).mock(return_value=echo_service_response("looks fine", status=500))
    with pytest.raises(MalformedResponseError, match="not a fault"):
        send(mode, EchoOperation("x"))


def test_unopenable_audit_journal_is_a_configuration_error(tmp_path: Path) -> None:
    settings = SETTINGS.model_copy(update={"audit": AuditSettings(jsonl_path=tmp_path / "missing-dir" / "a.jsonl")})
    with pytest.raises(ConfigurationError, match="audit journal"):
        Client(settings)


def test_uppercase_media_type_is_understood() -> None:
    envelope = to_bytes(
        build_envelope(_echo_response("upper"), addressing=Addressing(action=ECHO_ACTION + "Response", to="urn:anon"))
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "Application/SOAP+XML; charset=UTF-8"}, content=envelope)

    with Client(SETTINGS, http_client=httpx.Client(transport=httpx.MockTransport(handler))) as client:
        assert client.send(EchoOperation("upper")).text == "upper"


@MODES
@respx.mock
def test_an_exception_chain_that_loops_is_still_translated(mode: str) -> None:
    def loop(request: httpx.Request) -> httpx.Response:
        first = httpx.ConnectError("refused", request=request)
        second = OSError("socket closed")
        first.__context__ = second
        second.__context__ = first
        raise first

    respx.post(URL).mock(side_effect=loop)
    with pytest.raises(ConnectError):
        send(mode, EchoOperation("x"))
