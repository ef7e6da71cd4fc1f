"""MTOM/XOP: encoding with exact length, incremental decoding across chunk edges, limits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.errors import MalformedResponseError, UnsafeXmlError, ValidationError
from dmp_connector.soap import (
    Addressing,
    Attachment,
    MtomMessageParts,
    MultipartRelatedParser,
    build_envelope,
    decode_mtom,
    encode_mtom,
    is_multipart,
    parse_envelope,
    resolve_xop,
    xop_include,
)
from dmp_connector.soap.mtom import ROOT_CONTENT_ID
from dmp_connector.soap.namespaces import SOAP12_ENV, XDSB
from dmp_connector.xml import XmlLimits

ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
TO = "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services/repository"
MB = 1024 * 1024


def _envelope(*attachments: Attachment) -> etree._Element:
    request = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB})
    for number, attachment in enumerate(attachments):
        document = etree.SubElement(request, f"{{{XDSB}}}Document", id=f"Doc{number}")
        document.append(xop_include(attachment.content_id))
    return build_envelope(request, addressing=Addressing(action=ACTION, to=TO))


def _feed(payload: bytes, content_type: str, cuts: Iterable[int], **options: int) -> MtomMessageParts:
    parser = MultipartRelatedParser(content_type, max_root_bytes=options.pop("max_root_bytes", MB), **options)
    previous = 0
    for cut in sorted(set(cuts)):
        parser.feed(payload[previous:cut])
        previous = cut
    parser.feed(payload[previous:])
    return parser.close()


def _odd_chunks(payload: bytes, content_type: str, size: int = 7919, **options: int) -> MtomMessageParts:
    return _feed(payload, content_type, range(size, len(payload), size), **options)


# --------------------------------------------------------------------------- encoding


def test_encode_and_decode_3mb_attachment_from_bytes() -> None:
    data = os.urandom(3 * MB)
    attachment = Attachment.from_bytes(data, content_type="application/pdf")
    payload = encode_mtom(_envelope(attachment), [attachment], action=ACTION)

    body = b"".join(payload.iter_bytes())
    assert payload.content_length == len(body)
    assert b"".join(payload.iter_bytes()) == body  # a retry produces the same bytes
    assert all(len(chunk) <= 64 * 1024 for chunk in payload.iter_bytes())

    parts = _odd_chunks(body, payload.content_type)
    received = parts.attachments[attachment.content_id]
    assert received.read() == data
    assert received.size == len(data)
    assert received.content_type == "application/pdf"
    assert received.sha256() == hashlib.sha256(data).hexdigest() == attachment.sha256()
    assert received.sha1() == hashlib.sha1(data).hexdigest()

    message = parse_envelope(parts.root, attachments=parts.attachments)
    document = message.payload.find(f"{{{XDSB}}}Document")
    assert document is not None
    assert resolve_xop(document, message.attachments).read() == data
    parts.close()


def test_encode_from_path_streams_the_file(tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 17)
    source = tmp_path / "document.pdf"
    source.write_bytes(data)
    attachment = Attachment.from_path(source, content_type="application/pdf", content_id="<doc-1@lps.example>")
    assert attachment.content_id == "doc-1@lps.example"
    assert attachment.size == len(data)

    payload = encode_mtom(_envelope(attachment), [attachment])
    chunks = list(payload.iter_bytes())
    assert max(len(chunk) for chunk in chunks) <= 64 * 1024
    body = b"".join(chunks)
    assert payload.content_length == len(body)
    assert b"".join(payload.iter_bytes()) == body

    # a small spool threshold sends the received part to a real temporary file
    parts = _odd_chunks(body, payload.content_type, size=65_537, spool_threshold=MB)
    received = parts.attachments["doc-1@lps.example"]
    assert received.sha256() == hashlib.sha256(data).hexdigest()
    target = tmp_path / "copy.pdf"
    received.save(target)
    assert target.read_bytes() == data
    with received.open() as first, received.open() as second:
        assert first.read(10) == data[:10]
        assert second.read(5) == data[:5]
        assert first.read(3) == data[10:13]
    parts.close()


def test_content_type_and_part_headers() -> None:
    attachment = Attachment.from_bytes(b"abc", content_type="text/plain", content_id="a@b")
    payload = encode_mtom(_envelope(attachment), [attachment], boundary="test-boundary", action=ACTION)
    assert payload.content_type == (
        f'multipart/related; type="application/xop+xml"; start="<{ROOT_CONTENT_ID}>"; '
        f'start-info="application/soap+xml; action=\\"{ACTION}\\""; boundary="test-boundary"'
    )
    body = b"".join(payload.iter_bytes())
    assert body.startswith(
        b"--test-boundary\r\n"
        b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml; action=\\"'
        + ACTION.encode()
        + b'\\""\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"Content-ID: <root.message@dmp-connector>\r\n\r\n<?xml"
    )
    assert (
        b"\r\n--test-boundary\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: <a@b>\r\n\r\nabc\r\n--test-boundary--\r\n"
    ) in body
    assert body.endswith(b"abc\r\n--test-boundary--\r\n")


def test_content_type_without_action() -> None:
    payload = encode_mtom(_envelope(), [], boundary="b")
    assert 'start-info="application/soap+xml";' in payload.content_type
    assert b'type="application/soap+xml"\r\n' in b"".join(payload.iter_bytes())


def test_aiter_bytes_gives_the_same_bytes() -> None:
    attachment = Attachment.from_bytes(os.urandom(200_000))
    payload = encode_mtom(_envelope(attachment), [attachment])

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in payload.aiter_bytes()])

    assert asyncio.run(collect()) == b"".join(payload.iter_bytes())


def test_encoder_refuses_bad_input() -> None:
    attachment = Attachment.from_bytes(b"x", content_id="same@x")
    twin = Attachment.from_bytes(b"y", content_id="same@x")
    with pytest.raises(ValidationError, match="same Content-ID"):
        encode_mtom(_envelope(), [attachment, twin])
    with pytest.raises(ValidationError, match="boundary"):
        encode_mtom(_envelope(), [], boundary="x" * 71)
    with pytest.raises(ValidationError, match="action"):
        encode_mtom(_envelope(), [], action='urn:"quoted"')
    with pytest.raises(ValidationError):
        Attachment.from_bytes(b"x", content_type="text/plain\r\nX-Injected: 1")
    with pytest.raises(ValidationError):
        Attachment.from_bytes(b"x", content_id="a\r\nb")


def test_file_changed_after_attaching_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "doc.bin"
    source.write_bytes(b"0123456789")
    attachment = Attachment.from_path(source)
    payload = encode_mtom(_envelope(attachment), [attachment])
    source.write_bytes(b"0123")
    with pytest.raises(ValidationError, match="shorter"):
        b"".join(payload.iter_bytes())
    source.write_bytes(b"0123456789ABC")
    with pytest.raises(ValidationError, match="longer"):
        b"".join(payload.iter_bytes())


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Attachment.from_path(tmp_path / "absent.pdf")


def test_generated_content_ids_are_unique() -> None:
    first, second = Attachment.from_bytes(b""), Attachment.from_bytes(b"")
    assert first.content_id.endswith("@dmp-connector")
    assert first.content_id != second.content_id
    assert "size=0" in repr(first)


# --------------------------------------------------------------------------- decoding


def _small_message() -> tuple[bytes, str, dict[str, bytes]]:
    # data full of near-delimiters: CRLF, "--", and the boundary's own prefix
    tricky = b"\r\n--\r\n--MIME\r\n--MIMEBoundary_\r\n-" * 5 + os.urandom(300) + b"\r\n--MIMEBoundary_tes"
    attachments = {
        "one@x": Attachment.from_bytes(tricky, content_type="application/octet-stream", content_id="one@x"),
        "two@x": Attachment.from_bytes(b"second part \r\n", content_type="text/plain", content_id="two@x"),
        "empty@x": Attachment.from_bytes(b"", content_id="empty@x"),
    }
    payload = encode_mtom(_envelope(*attachments.values()), list(attachments.values()), boundary="MIMEBoundary_test")
    return b"".join(payload.iter_bytes()), payload.content_type, {k: v.read() for k, v in attachments.items()}


SMALL_BODY, SMALL_TYPE, SMALL_PARTS = _small_message()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SMALL_BODY)), max_size=40))
def test_split_points_do_not_matter(cuts: list[int]) -> None:
    parts = _feed(SMALL_BODY, SMALL_TYPE, cuts)
    assert {cid: attachment.read() for cid, attachment in parts.attachments.items()} == SMALL_PARTS
    assert parse_envelope(parts.root).payload.tag == f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest"
    parts.close()


def test_byte_by_byte_feeding() -> None:
    parts = _feed(SMALL_BODY, SMALL_TYPE, range(len(SMALL_BODY)))
    assert {cid: attachment.read() for cid, attachment in parts.attachments.items()} == SMALL_PARTS


def test_decode_mtom_wrapper() -> None:
    parts = decode_mtom(SMALL_TYPE, SMALL_BODY)
    assert set(parts.attachments) == set(SMALL_PARTS)
    assert parts.root.startswith(b"<?xml")
    assert parts.root_content_type.startswith("application/xop+xml")


def test_missing_closing_boundary_is_malformed() -> None:
    truncated = SMALL_BODY[: SMALL_BODY.rindex(b"--MIMEBoundary_test--")]
    with pytest.raises(MalformedResponseError, match="closing boundary"):
        decode_mtom(SMALL_TYPE, truncated)
    cut_in_part = SMALL_BODY[: len(SMALL_BODY) // 2]
    with pytest.raises(MalformedResponseError, match="closing boundary"):
        decode_mtom(SMALL_TYPE, cut_in_part)


def test_body_without_any_boundary_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="no boundary delimiter"):
        decode_mtom(SMALL_TYPE, b"<html>Gateway Timeout</html>")


def test_content_type_without_boundary_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="no boundary"):
        MultipartRelatedParser('multipart/related; type="application/xop+xml"', max_root_bytes=MB)
    with pytest.raises(MalformedResponseError, match="multipart/related"):
        MultipartRelatedParser("text/xml; charset=utf-8", max_root_bytes=MB)


def test_oversized_root_is_unsafe() -> None:
    with pytest.raises(UnsafeXmlError, match="over the 100-byte limit") as info:
        _odd_chunks(SMALL_BODY, SMALL_TYPE, max_root_bytes=100)
    assert "ProvideAndRegister" not in str(info.value)
    with pytest.raises(UnsafeXmlError):
        decode_mtom(SMALL_TYPE, SMALL_BODY, limits=XmlLimits(max_bytes=100))


def test_total_limit_is_unsafe() -> None:
    with pytest.raises(UnsafeXmlError, match="over the 1000-byte limit"):
        _odd_chunks(SMALL_BODY, SMALL_TYPE, size=100, max_total_bytes=1000)


def test_feed_after_error_or_close_is_refused() -> None:
    parser = MultipartRelatedParser(SMALL_TYPE, max_root_bytes=10)
    with pytest.raises(UnsafeXmlError):
        parser.feed(SMALL_BODY)
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_is_multipart() -> None:
    assert is_multipart('Multipart/Related; type="application/xop+xml"; boundary=x')
    assert not is_multipart("application/soap+xml; charset=utf-8")
    assert not is_multipart("")


# --------------------------------------------------------------------------- answers as servers write them


AXIS2_TYPE = (
    "multipart/related; boundary=MIMEBoundaryurn_uuid_6F2AE21A3CA4B9F13E1712134561234; "
    'type="application/xop+xml"; start="<0.urn:uuid:6F2AE21A3CA4B9F13E1712134561235@apache.org>"; '
    'start-info="application/soap+xml"; action="urn:ihe:iti:2007:RetrieveDocumentSetResponse"'
)


def _axis2_answer(document: bytes) -> bytes:
    envelope = f"""<?xml version='1.0' encoding='UTF-8'?><soapenv:Envelope xmlns:soapenv="{SOAP12_ENV}"
 xmlns:wsa="http://www.w3.org/2005/08/addressing"><soapenv:Header>
<wsa:Action>urn:ihe:iti:2007:RetrieveDocumentSetResponse</wsa:Action>
<wsa:RelatesTo>urn:uuid:1a2b</wsa:RelatesTo></soapenv:Header><soapenv:Body>
<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="urn:ihe:iti:xds-b:2007">
<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
 status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>
<xdsb:DocumentResponse><xdsb:RepositoryUniqueId>1.2.250.1.213.4.1.1.1.2</xdsb:RepositoryUniqueId>
<xdsb:DocumentUniqueId>1.2.3.4.5</xdsb:DocumentUniqueId><xdsb:mimeType>text/xml</xdsb:mimeType>
<xdsb:Document><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include"
 href="cid:1.urn:uuid:6F2AE21A3CA4B9F13E1712134561236@apache.org"/></xdsb:Document>
</xdsb:DocumentResponse></xdsb:RetrieveDocumentSetResponse></soapenv:Body></soapenv:Envelope>""".encode()
    boundary = b"--MIMEBoundaryurn_uuid_6F2AE21A3CA4B9F13E1712134561234"
    return (
        b"\r\n" + boundary + b'\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        b"Content-Transfer-Encoding: binary\r\n"
        b"Content-ID: <0.urn:uuid:6F2AE21A3CA4B9F13E1712134561235@apache.org>\r\n\r\n"
        + envelope
        + b"\r\n"
        + boundary
        + b"\r\nContent-Type: text/xml\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: <1.urn:uuid:6F2AE21A3CA4B9F13E1712134561236@apache.org>\r\n\r\n"
        + document
        + b"\r\n"
        + boundary
        + b"--\r\n"
    )


def test_axis2_style_answer_parses() -> None:
    document = b"<?xml version='1.0'?><ClinicalDocument xmlns='urn:hl7-org:v3'/>"
    parts = _odd_chunks(_axis2_answer(document), AXIS2_TYPE, size=97)
    message = parse_envelope(parts.root, attachments=parts.attachments, operation="ITI-43")
    assert message.relates_to == "urn:uuid:1a2b"
    found = message.payload.find(f"{{{XDSB}}}DocumentResponse/{{{XDSB}}}Document")
    assert found is not None
    assert resolve_xop(found, message.attachments).read() == document


CXF_TYPE = (
    'multipart/related; type="application/xop+xml"; boundary="uuid:0c9e3b2a-8f6f-4c55-9d0d-3f1f0b0e6a11"; '
    'start="<rootpart*0c9e3b2a-8f6f-4c55-9d0d-3f1f0b0e6a11@example.jaxws.sun.com>"; '
    'start-info="application/soap+xml; action=\\"urn:ihe:iti:2007:RetrieveDocumentSetResponse\\""'
)


def test_cxf_metro_style_answer_with_rootpart_star_and_folded_headers() -> None:
    boundary = b"--uuid:0c9e3b2a-8f6f-4c55-9d0d-3f1f0b0e6a11"
    document = os.urandom(5000)
    envelope = f"""<S:Envelope xmlns:S="{SOAP12_ENV}"><S:Body><xdsb:RetrieveDocumentSetResponse
 xmlns:xdsb="urn:ihe:iti:xds-b:2007"><xdsb:DocumentResponse><xdsb:Document><Include
 xmlns="http://www.w3.org/2004/08/xop/include" href="cid:8a0f@example.jaxws.sun.com"/></xdsb:Document>
</xdsb:DocumentResponse></xdsb:RetrieveDocumentSetResponse></S:Body></S:Envelope>""".encode()
    body = (
        b"preamble to ignore\r\n"
        + boundary
        + b"  \r\ncontent-id: <rootpart*0c9e3b2a-8f6f-4c55-9d0d-3f1f0b0e6a11@example.jaxws.sun.com>\r\n"
        b'CONTENT-TYPE: application/xop+xml;charset=utf-8;\r\n\ttype="application/soap+xml"\r\n'
        b"content-transfer-encoding: binary\r\n\r\n"
        + envelope
        + b"\r\n"
        + boundary
        + b"\r\nContent-Id: <8a0f@example.jaxws.sun.com>\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(document)
        + b"\r\n"
        + boundary
        + b"--\r\nepilogue to ignore"
    )
    parts = _odd_chunks(body, CXF_TYPE, size=61)
    assert parts.root_content_type == 'application/xop+xml;charset=utf-8; type="application/soap+xml"'
    message = parse_envelope(parts.root, attachments=parts.attachments)
    found = message.payload.find(f"{{{XDSB}}}DocumentResponse/{{{XDSB}}}Document")
    assert found is not None
    assert resolve_xop(found, message.attachments).read() == document


def test_root_found_by_start_even_when_not_first() -> None:
    boundary = b"--b"
    body = (
        boundary
        + b"\r\nContent-ID: <att@x>\r\n\r\nATTACHMENT"
        + b"\r\n"
        + boundary
        + b"\r\nContent-ID: <root@x>\r\n\r\n<root/>"
        + b"\r\n"
        + boundary
        + b"--"
    )
    parts = decode_mtom('multipart/related; boundary=b; start="<root@x>"', body)
    assert parts.root == b"<root/>"
    assert parts.attachments["att@x"].read() == b"ATTACHMENT"
    assert parts.attachments["att@x"].content_type == "application/octet-stream"


def test_start_not_found_is_malformed() -> None:
    body = b"--b\r\nContent-ID: <att@x>\r\n\r\nA\r\n--b--\r\n"
    with pytest.raises(MalformedResponseError, match="start Content-ID"):
        decode_mtom('multipart/related; boundary=b; start="<root@x>"', body)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (b"Content-ID: <a@x>\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nA", "quoted-printable"),
        (b"Content-Type: text/plain\r\n\r\nno id", "no Content-ID"),
        (b"Content-ID: <root@x>\r\n\r\nagain", "share the Content-ID"),
        (b"Content-ID: <a@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!", "not valid base64"),
        (b"Content-ID: <a@x>\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\nQQ", "middle of a base64 group"),
        (b" folded: first\r\n\r\nA", "continuation line"),
        (b"no colon here\r\n\r\nA", "without a name"),
    ],
)
def test_bad_parts_are_malformed(part: bytes, message: str) -> None:
    body = b"--b\r\nContent-ID: <root@x>\r\n\r\n<root/>\r\n--b\r\n" + part + b"\r\n--b--\r\n"
    with pytest.raises(MalformedResponseError, match=message):
        decode_mtom("multipart/related; boundary=b", body)


def test_text_after_delimiter_is_malformed() -> None:
    body = b"--b\r\nContent-ID: <root@x>\r\n\r\n<root/>\r\n--bogus\r\n\r\nA\r\n--b--\r\n"
    with pytest.raises(MalformedResponseError, match="follow a multipart boundary"):
        decode_mtom("multipart/related; boundary=b", body)


def test_closed_attachment_cannot_be_read_again() -> None:
    with decode_mtom(SMALL_TYPE, SMALL_BODY) as parts:
        attachment = parts.attachments["one@x"]
    with pytest.raises(ValueError, match="closed"):
        attachment.read()


def test_closed_in_memory_attachment_cannot_be_read_again() -> None:
    with Attachment.from_bytes(b"abc") as attachment:
        assert attachment.read() == b"abc"
    assert attachment.size == 3
    with pytest.raises(ValueError, match="closed"):
        attachment.read()
