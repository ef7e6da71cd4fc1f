"""Oversized MTOM answers: the SOAP root part over ``xml.max_bytes``, an attachment over ``xml.max_attachment_bytes``.

Both are refused with :class:`UnsafeXmlError` while the answer streams in, through the real
send loop (sync and async): the client stops reading at the limit, so a hostile or broken
server cannot make it spool gigabytes. The parser's own unit tests (``tests/soap/test_soap_mtom.py``)
cover the root and total limits on :class:`MultipartRelatedParser` alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from lxml import etree

from dmp_connector._transport import AsyncClient, Client
from dmp_connector.config import Environment, Settings
from dmp_connector.errors import UnsafeXmlError
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox.echo import ECHO_NS, EchoOperation
from dmp_connector.soap.envelope import Addressing, build_envelope, xop_include
from dmp_connector.soap.mtom import MultipartRelatedParser, decode_mtom
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, to_bytes
from tests.conftest import SOFTWARE

BOUNDARY = "MIMEBoundary_security"
CONTENT_TYPE = (
    f'multipart/related; type="application/xop+xml"; start="<root@x>"; start-info="application/soap+xml"; '
    f'boundary="{BOUNDARY}"'
)
MiB = 1024 * 1024


def settings(**xml: int) -> Settings:
    return Settings.model_validate(
        {
            "software": SOFTWARE,
            "environment": Environment.sandbox("https://dmp.test.invalid"),
            "retry": RetryPolicy(max_attempts=1),
            "xml": XmlLimits(**xml),
        }
    )


def root_part() -> bytes:
    answer = etree.Element(f"{{{ECHO_NS}}}EchoResponse")
    etree.SubElement(answer, f"{{{ECHO_NS}}}Text").text = "big"
    etree.SubElement(answer, f"{{{ECHO_NS}}}Document", sha256="x").append(xop_include("doc@x"))
    return to_bytes(build_envelope(answer, addressing=Addressing(action="urn:r", to="urn:anon")))


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A multipart answer produced lazily: ``filler`` bytes of padding in the root or the attachment part."""

    def __init__(self, *, root_filler: int = 0, attachment: int = 0, chunk: int = 64 * 1024) -> None:
        self.root_filler = root_filler
        self.attachment = attachment
        self.chunk = chunk
        self.sent = 0

    def _pieces(self) -> Iterator[bytes]:
        root = root_part()
        if self.root_filler:
            root = root.replace(b"<env:Body>", b"<env:Body><!--", 1)
        yield (
            f'--{BOUNDARY}\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n'
            "Content-ID: <root@x>\r\n\r\n"
        ).encode()
        yield root
        for _ in range(0, self.root_filler, self.chunk):
            yield b" " * self.chunk
        yield f"\r\n--{BOUNDARY}\r\nContent-Type: application/pdf\r\nContent-ID: <doc@x>\r\n\r\n".encode()
        for _ in range(0, self.attachment, self.chunk):
            yield b"%" * self.chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces():
            self.sent += len(piece)
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self:
            yield piece


def send(mode: str, config: Settings, body: Body) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": CONTENT_TYPE}, stream=body)

    if mode == "sync":
        with (
            httpx.Client(transport=httpx.MockTransport(handler)) as http,
            Client(config, http_client=http) as client,
        ):
            return client.send(EchoOperation("x"))

    async def run() -> Any:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
            AsyncClient(config, http_client=http) as client,
        ):
            return await client.send(EchoOperation("x"))

    return asyncio.run(run())


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
def test_an_attachment_within_the_limit_is_read(mode: str) -> None:
    body = Body(attachment=2 * MiB)
    result = send(mode, settings(max_attachment_bytes=4 * MiB), body)
    assert result.documents[0].size == 2 * MiB


@MODES
def test_an_attachment_over_the_configured_maximum_stops_the_read(mode: str) -> None:
    body = Body(attachment=1024 * MiB)  # a gigabyte announced, produced only as far as it is read
    with pytest.raises(UnsafeXmlError, match="attachment") as info:
        send(mode, settings(max_attachment_bytes=1 * MiB), body)
    assert "max_attachment_bytes" in str(info.value)
    assert body.sent < 4 * MiB


@MODES
def test_a_root_part_over_its_limit_stops_the_read(mode: str) -> None:
    body = Body(root_filler=1024 * MiB)
    with pytest.raises(UnsafeXmlError, match="SOAP part"):
        send(mode, settings(max_bytes=1 * MiB), body)
    assert body.sent < 4 * MiB


def test_the_attachment_limit_has_a_documented_default_and_reaches_the_parser() -> None:
    assert DEFAULT_LIMITS.max_attachment_bytes == 256 * MiB
    assert settings().xml.max_attachment_bytes == DEFAULT_LIMITS.max_attachment_bytes
    assert settings(max_attachment_bytes=1000).xml.max_attachment_bytes == 1000
    whole = b"".join(Body(attachment=200 * 1024, chunk=1024))
    with pytest.raises(UnsafeXmlError, match="attachment"):
        decode_mtom(CONTENT_TYPE, whole, limits=XmlLimits(max_attachment_bytes=100 * 1024))
    parser = MultipartRelatedParser(CONTENT_TYPE, max_root_bytes=MiB, max_part_bytes=100 * 1024)
    with pytest.raises(UnsafeXmlError, match="attachment"):
        parser.feed(whole)
    with decode_mtom(CONTENT_TYPE, whole, limits=XmlLimits(max_attachment_bytes=200 * 1024)) as parts:
        assert parts.attachments["doc@x"].size == 200 * 1024


def test_a_base64_attachment_is_counted_after_decoding() -> None:
    encoded = (
        f"--{BOUNDARY}\r\nContent-ID: <root@x>\r\n\r\n".encode()
        + root_part()
        + f"\r\n--{BOUNDARY}\r\nContent-ID: <doc@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + b"QUFB" * 30_000  # 90 000 decoded bytes in 120 000 encoded ones
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    with decode_mtom(CONTENT_TYPE, encoded, limits=XmlLimits(max_attachment_bytes=90_000)) as parts:
        assert parts.attachments["doc@x"].size == 90_000
    with pytest.raises(UnsafeXmlError):
        decode_mtom(CONTENT_TYPE, encoded, limits=XmlLimits(max_attachment_bytes=89_999))
