"""Bounded fuzzing of the readers that take bytes from the network or from a mail: XML, MTOM, MIME, XDM.

Property, for each: the reader returns its typed result or raises a
:class:`~dmp_connector.errors.DmpConnectorError` — never another exception type (a bare
``ValueError``, ``IndexError``, ``UnicodeError`` …), never a hang (pytest-timeout bounds each
test). Inputs are random bytes and mutations of valid messages (flipped, cut, duplicated and
inserted bytes), and for MTOM random boundaries and chunkings. ``max_examples`` keeps the whole
module under about 20 s; ``derandomize`` keeps a run reproducible (set ``HYPOTHESIS_SEED`` style
profiles locally to explore further).
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.errors import DmpConnectorError
from dmp_connector.mssante.message import parse_message
from dmp_connector.mssante.receipts import parse_receipt
from dmp_connector.mssante.xdm import ArchiveLimits, read_package
from dmp_connector.soap.envelope import Addressing, build_envelope, parse_envelope, xop_include
from dmp_connector.soap.mtom import Attachment, MultipartRelatedParser, encode_mtom
from dmp_connector.xml import XmlLimits, parse_xml, to_bytes

from .hostile import envelope
from .test_xdm_hostile import GOOD, mail_with, rezip

FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
LIMITS = XmlLimits(max_bytes=256 * 1024, max_depth=64, max_attachment_bytes=64 * 1024)


def _mtom_body() -> tuple[str, bytes]:
    answer = etree.Element("{urn:x}Answer")
    answer.append(xop_include("doc@x"))
    root = build_envelope(answer, addressing=Addressing(action="urn:a", to="urn:anon"))
    payload = encode_mtom(root, [Attachment.from_bytes(b"%PDF-1.4 " * 50, content_id="doc@x")], boundary="b-fuzz")
    return payload.content_type, b"".join(payload.iter_bytes())


SOAP = to_bytes(build_envelope(etree.Element("{urn:x}Ping"), addressing=Addressing(action="urn:a", to="urn:b")))
CDA = next(c for n, c in GOOD if n.endswith("DOC00001.XML"))[:20_000]
MTOM_TYPE, MTOM = _mtom_body()
ARCHIVE = rezip(GOOD)
MAIL = mail_with(rezip(GOOD))


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few random edits: flips, deletions, insertions, duplicated slices, truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(
                st.sampled_from([b"<", b">", b"&", b"<!DOCTYPE x>", b"]]>", b"\r\n--", b"\x00", b"\xff"])
            )
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
        else:
            del data[at:]
    return bytes(data)


def typed(call: Callable[[], object]) -> None:
    """Run ``call``: a typed result or a DmpConnectorError is fine, anything else fails the test."""
    with contextlib.suppress(DmpConnectorError):
        call()


@FUZZ
@given(st.one_of(st.binary(max_size=2048), mutated(SOAP), mutated(CDA), mutated(envelope("&amp;<a/>"))))
def test_the_xml_parser(data: bytes) -> None:
    typed(lambda: parse_xml(data, limits=LIMITS))
    typed(lambda: parse_envelope(data, limits=LIMITS))


@FUZZ
@given(
    st.one_of(mutated(MTOM), st.binary(max_size=1024)),
    st.lists(st.integers(1, 4096), min_size=1, max_size=8),
    st.sampled_from(
        [MTOM_TYPE, MTOM_TYPE.replace("b-fuzz", "b"), 'multipart/related; boundary=""', "multipart/related"]
    ),
)
def test_the_mtom_parser(body: bytes, cuts: list[int], content_type: str) -> None:
    def run() -> None:
        parser = MultipartRelatedParser(content_type, max_root_bytes=LIMITS.max_bytes, max_part_bytes=64 * 1024)
        position, index = 0, 0
        while position < len(body):
            size = cuts[index % len(cuts)]
            parser.feed(body[position : position + size])
            position, index = position + size, index + 1
        with parser.close() as parts:
            parse_envelope(parts.root, attachments=parts.attachments, limits=LIMITS)

    typed(run)


@FUZZ
@given(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=80),
    st.binary(max_size=512),
)
def test_the_mtom_parser_with_random_boundaries(boundary: str, junk: bytes) -> None:
    body = f"--{boundary}\r\nContent-ID: <r>\r\n\r\n".encode() + junk + f"\r\n--{boundary}--\r\n".encode()

    def run() -> None:
        parser = MultipartRelatedParser(f'multipart/related; boundary="{boundary}"', max_root_bytes=4096)
        parser.feed(body)
        parser.close().close()

    typed(run)


HEADER_TEXT = st.lists(
    st.sampled_from([*"abcXYZ019 <>@,;:\\\"()[].=?*%'\t-_/", "=?utf-8?q?", "=?", "?=", "\u00e9", "\r\n ", "\r\n"]),
    max_size=30,
).map("".join)


@st.composite
def mails(draw: st.DrawFn) -> bytes:
    """A message whose every header, and the parts' types and parameters, is drawn at random."""
    names = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "X-MSS-INS", "X-MSS-CODECDA"]
    names += ["Disposition-Notification-To", "Content-Type", "Content-Disposition", "Content-Transfer-Encoding"]
    lines = [f"{name}: {draw(HEADER_TEXT)}" for name in draw(st.lists(st.sampled_from(names), max_size=12))]
    kind = draw(st.sampled_from(["multipart/mixed", "multipart/report", "text/plain", "message/delivery-status"]))
    lines.append(f'Content-Type: {kind}; boundary="zz"; report-type={draw(HEADER_TEXT)}; charset={draw(HEADER_TEXT)}')
    body = "\r\n".join(
        [
            "--zz",
            f"Content-Type: {draw(st.sampled_from(['text/plain', 'application/zip', 'message/rfc822', 'text/html']))}"
            f"; charset={draw(HEADER_TEXT)}; name={draw(HEADER_TEXT)}",
            f"Content-Disposition: {draw(st.sampled_from(['attachment', 'inline', '']))}; filename={draw(HEADER_TEXT)}",
            f"Content-Transfer-Encoding: {draw(st.sampled_from(['base64', 'quoted-printable', '8bit', 'x-uue']))}",
            "",
            draw(HEADER_TEXT),
            "--zz--",
            "",
        ]
    )
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")


@FUZZ
@given(st.one_of(mutated(MAIL), st.binary(max_size=2048), mails()))
def test_the_mime_reader(raw: bytes) -> None:
    typed(lambda: parse_message(raw, limits=ArchiveLimits(max_total_bytes=4 * 1024 * 1024)))
    typed(lambda: parse_receipt(raw))


@FUZZ
@given(st.one_of(mutated(ARCHIVE), st.binary(max_size=1024)))
def test_the_xdm_reader(data: bytes) -> None:
    typed(lambda: read_package(data, limits=ArchiveLimits(max_total_bytes=4 * 1024 * 1024), xml_limits=LIMITS))


def test_the_seeds_are_valid() -> None:
    assert parse_envelope(SOAP).payload.tag == "{urn:x}Ping"
    assert read_package(ARCHIVE).documents
    assert parse_message(MAIL).xdm is not None
    parser = MultipartRelatedParser(MTOM_TYPE, max_root_bytes=LIMITS.max_bytes)
    parser.feed(MTOM)
    with parser.close() as parts:
        assert "doc@x" in parts.attachments
    assert zipfile.is_zipfile(io.BytesIO(ARCHIVE))
