"""A SOAP 1.2 echo service and its client operation: the transport's own simulator.

It exercises everything the national simulators will rely on — WS-Addressing, MTOM in
both directions, SOAP faults with HTTP 500 — without any national protocol, so that the
foundation is tested end to end on a real socket and the quickstart has something to
call before the INSi and DMP simulators exist.

Request payload (namespace :data:`ECHO_NS`)::

    <e:Echo>
      <e:Text>hello</e:Text>
      <e:Document><xop:Include href="cid:…"/></e:Document>   (0..n, MTOM)
    </e:Echo>

The answer is ``e:EchoResponse`` with the same text, the caller's ``wsa:MessageID`` and,
for each document, its size and SHA-256 plus the same bytes back in an MTOM part.
``<e:Fail code="Sender|Receiver">reason</e:Fail>`` answers with that fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lxml import etree

from dmp_connector._transport import CallContext, Operation, SoapRequest
from dmp_connector.config import Environment
from dmp_connector.errors import DmpConnectorError
from dmp_connector.soap import namespaces as ns
from dmp_connector.soap.envelope import (
    Addressing,
    SoapMessage,
    build_envelope,
    parse_envelope,
    resolve_xop,
    xop_include,
)
from dmp_connector.soap.mtom import Attachment, decode_mtom, encode_mtom, is_multipart
from dmp_connector.xml import to_bytes

from ._http import HttpRequest, HttpResponse

__all__ = ["ECHO_ACTION", "ECHO_NS", "EchoOperation", "EchoResult", "echo_service"]

ECHO_NS = "urn:dmp-connector:sandbox:echo"
ECHO_ACTION = "urn:dmp-connector:sandbox:echo:Echo"
_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"


def _e(local: str) -> str:
    return f"{{{ECHO_NS}}}{local}"


@dataclass(frozen=True)
class EchoResult:
    """What the echo service sent back."""

    text: str
    relates_to: str | None
    """The ``wsa:RelatesTo`` of the answer: the request's MessageID."""
    documents: tuple[Attachment, ...]
    """The documents echoed back, as received attachments (spooled, not base64)."""
    reported_sha256: tuple[str, ...]
    """The SHA-256 the service computed over each document it received."""


class EchoOperation(Operation[EchoResult]):
    """Send text and documents to the echo service; safe to repeat."""

    service: ClassVar[str] = "sandbox"
    name: ClassVar[str] = "echo"
    action: ClassVar[str] = ECHO_ACTION
    safe_to_repeat: ClassVar[bool] = True

    def __init__(
        self,
        text: str,
        documents: Sequence[Attachment] = (),
        *,
        fail: tuple[str, str] | None = None,
        path: str = "/echo",
        patient: str | None = None,
    ) -> None:
        self.text = text
        self.patient = patient
        self.documents = tuple(documents)
        self.fail = fail
        self.path = path

    def endpoint(self, environment: Environment) -> str:
        """The echo service sits beside the sandbox's other services."""
        base = environment.dmp_base_url.split("/si-dmp-server", 1)[0]
        return base + self.path

    def build(self, call: CallContext) -> SoapRequest:
        """``e:Echo`` with one ``xop:Include`` per document."""
        root = etree.Element(_e("Echo"), nsmap={"e": ECHO_NS})
        etree.SubElement(root, _e("Text")).text = self.text
        for doc in self.documents:
            etree.SubElement(root, _e("Document")).append(xop_include(doc.content_id))
        if self.fail is not None:
            fail = etree.SubElement(root, _e("Fail"), code=self.fail[0])
            fail.text = self.fail[1]
        return SoapRequest(
            body=[root],
            attachments=self.documents,
            patient=self.patient,
            document_ids=tuple(d.content_id for d in self.documents),
        )

    def parse(self, message: SoapMessage) -> EchoResult:
        """Read ``e:EchoResponse`` and resolve its documents."""
        payload = message.payload
        docs = tuple(resolve_xop(el, message.attachments) for el in payload.iterfind(_e("Document")))
        hashes = tuple(el.get("sha256", "") for el in payload.iterfind(_e("Document")))
        return EchoResult(
            text=payload.findtext(_e("Text")) or "",
            relates_to=message.relates_to,
            documents=docs,
            reported_sha256=hashes,
        )


def _fault(code: str, reason: str) -> HttpResponse:
    envelope = etree.Element(f"{{{ns.SOAP12_ENV}}}Envelope", nsmap={"env": ns.SOAP12_ENV})
    body = etree.SubElement(envelope, f"{{{ns.SOAP12_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{ns.SOAP12_ENV}}}Fault")
    value = etree.SubElement(etree.SubElement(fault, f"{{{ns.SOAP12_ENV}}}Code"), f"{{{ns.SOAP12_ENV}}}Value")
    value.text = f"env:{code}"
    text = etree.SubElement(etree.SubElement(fault, f"{{{ns.SOAP12_ENV}}}Reason"), f"{{{ns.SOAP12_ENV}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = reason
    return HttpResponse(500, {"Content-Type": "application/soap+xml; charset=utf-8"}, to_bytes(envelope))


def echo_service(request: HttpRequest) -> HttpResponse:
    """The echo service as a simulator handler (see the module docstring)."""
    content_type = request.header("Content-Type")
    try:
        if is_multipart(content_type):
            parts = decode_mtom(content_type, request.body)
            message = parse_envelope(parts.root, attachments=parts.attachments)
        else:
            message = parse_envelope(request.body)
        payload = message.payload
    except DmpConnectorError as exc:
        return _fault("Sender", f"unreadable request: {exc.message}")
    if payload.tag != _e("Echo"):
        return _fault("Sender", f"unknown operation {payload.tag}")
    fail = payload.find(_e("Fail"))
    if fail is not None:
        return _fault(fail.get("code", "Sender"), fail.text or "requested fault")

    answer = etree.Element(_e("EchoResponse"), nsmap={"e": ECHO_NS})
    etree.SubElement(answer, _e("Text")).text = payload.findtext(_e("Text")) or ""
    echoed: list[Attachment] = []
    for doc_el in payload.iterfind(_e("Document")):
        try:
            received = resolve_xop(doc_el, message.attachments)
        except DmpConnectorError as exc:
            return _fault("Sender", exc.message)
        out = Attachment.from_bytes(received.read(), content_type=received.content_type)
        echoed.append(out)
        el = etree.SubElement(answer, _e("Document"), size=str(received.size), sha256=received.sha256())
        el.append(xop_include(out.content_id))
    envelope = build_envelope(
        answer,
        addressing=Addressing(action=ECHO_ACTION + "Response", to=_ANONYMOUS),
        headers=[_relates_to(message.message_id)],
    )
    if not echoed:
        return HttpResponse(200, {"Content-Type": "application/soap+xml; charset=utf-8"}, to_bytes(envelope))
    mtom = encode_mtom(envelope, echoed, action=ECHO_ACTION + "Response")
    return HttpResponse(200, {"Content-Type": mtom.content_type}, b"".join(mtom.iter_bytes()))


def _relates_to(message_id: str | None) -> etree._Element:
    el = etree.Element(f"{{{ns.WSA}}}RelatesTo", nsmap={"wsa": ns.WSA})
    el.text = message_id or ""
    return el
