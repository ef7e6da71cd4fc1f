"""Metadata of a large PDF-body document read from its bytes without decoding the PDF (issue 22).

``extract_metadata(bytes)`` checks the base64 and the ``%PDF-``/``%%EOF`` ends of the body without
decoding the whole: it must accept and refuse exactly what :func:`dmp_connector.cda.parse` does.
"""

from __future__ import annotations

import binascii
import random
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.cda import ClinicalDocument, NonXmlBody, build, extract_metadata, parse
from dmp_connector.cda.metadata import PDF_FORMAT
from dmp_connector.cda.parse import _pdf_ends
from dmp_connector.errors import MalformedResponseError, ValidationError
from dmp_connector.xml import base64_spaces, non_xml_body_text, start_tags

MakeDocument = Callable[..., ClinicalDocument]
_TEXT = re.compile(rb'(representation="B64"[^>]*>)([^<]*)(</)')


def _big_pdf(size: int = 60_000) -> bytes:
    return b"%PDF-1.4\n%" + random.Random(22).randbytes(size) + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def big_document(make_pdf_document: MakeDocument) -> tuple[ClinicalDocument, bytes]:
    document = make_pdf_document(body=NonXmlBody(data=_big_pdf()))
    return document, build(document)


def _outcome(read: Callable[[], object]) -> object:
    try:
        return read()
    except ValidationError as exc:
        return ("refused", exc.message, tuple(exc.problems))


def _rewrite_text(data: bytes, change: Callable[[bytes], bytes]) -> bytes:
    found = _TEXT.search(data)
    assert found is not None
    return data[: found.start(2)] + change(found.group(2)) + data[found.end(2) :]


def _reencoded(pdf: bytes) -> Callable[[bytes], bytes]:
    return lambda _: binascii.b2a_base64(pdf, newline=False)


_CHANGES: dict[str, Callable[[bytes], bytes]] = {
    "as built": lambda t: t,
    "one character less": lambda t: t.rstrip(b"=\n ")[:-1],
    "two characters less": lambda t: t.rstrip(b"=\n ")[:-2],
    "three characters less": lambda t: t.rstrip(b"=\n ")[:-3],
    "padding removed": lambda t: t.replace(b"=", b""),
    "one more =": lambda t: t + b"=",
    "data after the padding": lambda t: t + b"QUJD",
    "padding then data": lambda t: t + b"==QQ==",
    "lines of 76": lambda t: b"\n".join(t[i : i + 76] for i in range(0, len(t), 76)) + b"\n",
    "CRLF lines of 64": lambda t: b"\r\n".join(t[i : i + 64] for i in range(0, len(t), 64)),
    "not a PDF": _reencoded(b"%PDX-1.4\n" + _big_pdf()[9:]),
    "no %%EOF": _reencoded(_big_pdf()[:-7] + b"\n"),
    "%%EOF too far from the end": _reencoded(_big_pdf() + b" " * 1100),
    "short": _reencoded(b"%PDF-1.4\n%%EOF\n"),
}


@pytest.mark.parametrize("change", list(_CHANGES), ids=list(_CHANGES))
def test_metadata_from_bytes_refuses_what_parse_refuses(
    big_document: tuple[ClinicalDocument, bytes], change: str
) -> None:
    data = _rewrite_text(big_document[1], _CHANGES[change])
    fast = _outcome(lambda: extract_metadata(data))
    full = _outcome(lambda: extract_metadata(parse(data), data=data))
    assert fast == full
    if change == "as built":
        assert fast == extract_metadata(big_document[0])
        assert getattr(fast, "format_code", None) == PDF_FORMAT


def test_a_pdf_in_a_comment_is_never_read_as_the_body(big_document: tuple[ClinicalDocument, bytes]) -> None:
    # The real nonXMLBody under a prefix the byte scan does not take for a tag name (é:), its text
    # empty, and a comment holding what looks like the body with a PDF: every XML reader sees no
    # PDF, so neither may parse nor the metadata read (the cut text must be the parsed text).
    data = big_document[1]
    found = re.search(rb"<nonXMLBody>\s*<text([^>]*)>([^<]*)</text>\s*</nonXMLBody>", data)
    assert found is not None
    hidden = (
        b'<\xc3\xa9:nonXMLBody xmlns:\xc3\xa9="urn:hl7-org:v3"><\xc3\xa9:text' + found.group(1) + b"></\xc3\xa9:text>"
        b"</\xc3\xa9:nonXMLBody><!--<nonXMLBody><text>" + found.group(2) + b"</text>-->"
    )
    forged = data[: found.start()] + hidden + data[found.end() :]
    for read in (lambda: parse(forged), lambda: extract_metadata(forged)):
        with pytest.raises(ValidationError, match="not a PDF"):
            read()


def test_form_feed_in_the_base64_is_refused_as_xml_refuses_it(big_document: tuple[ClinicalDocument, bytes]) -> None:
    # Form feed and vertical tab are not XML characters: cutting the text out before parsing must
    # not make such a document readable.
    forged = _rewrite_text(big_document[1], lambda t: b"\x0c" + t + b"\x0b")
    for read in (lambda: parse(forged), lambda: extract_metadata(forged)):
        with pytest.raises(MalformedResponseError):
            read()


_BASE64 = st.sampled_from(list(b"AQgw+/" * 4 + b"= \n\r\t"))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.integers(13_000, 15_000), st.sampled_from([0, 64, 76]), st.lists(_BASE64, max_size=6))
def test_pdf_ends_agree_with_a2b_base64(seed: int, size: int, width: int, suffix: list[int]) -> None:
    text = binascii.b2a_base64(random.Random(seed).randbytes(size), newline=False)
    if width:
        text = b"\n".join(text[i : i + width] for i in range(0, len(text), width))
    text = b" \n" + text.rstrip(b"=") + bytes(suffix)
    data = b"<t>" + text + b"</t>"
    spaces = base64_spaces(data, 3, 3 + len(text))
    assert spaces is not None
    try:
        whole: bytes | None = binascii.a2b_base64(text)
    except binascii.Error:
        whole = None
    try:
        ends = _pdf_ends(data, 3, 3 + len(text), spaces)
    except ValidationError:
        assert whole is None
        return
    if ends is not None:
        assert whole is not None
        assert whole.startswith(ends[:6]) and whole.endswith(ends[6:]) and len(ends) > 6 + 1024


_TAGGY = st.sampled_from([b"<", b">", b"nonXMLBody", b"x:", b"a", b" ", b"cda:", b"-", b":", b"/", b"nonXMLBodyz"])


@given(st.lists(_TAGGY, max_size=16).map(b"".join))
def test_start_tags_finds_what_finditer_finds(data: bytes) -> None:
    pattern = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?nonXMLBody\b[^>]*>")
    expected = [(m.span(), m.group(1)) for m in pattern.finditer(data)]
    assert [(m.span(), m.group(1)) for m in start_tags(data, b"nonXMLBody")] == expected


_BODYISH = st.sampled_from(
    [
        *(b"<", b">", b"nonXMLBody", b"x:", b" ", b"<nonXMLBody>", b"<x:nonXMLBody>", b"cda:", b"QQ", b"<text>"),
        *(b"</text>", b"<x:text>", b"</x:text>", b"text", b"<text/>", b"<text:nonXMLBody>", b"</nonXMLBody>"),
    ]
)


@given(st.lists(_BODYISH, max_size=14).map(b"".join))
def test_the_body_text_is_found_as_a_scan_of_the_whole_finds_it(data: bytes) -> None:
    """One nonXMLBody start tag in all, then its text, which runs to the first ``<``: ``</text``."""
    tags = list(re.finditer(rb"<(?:([A-Za-z_][\w.-]*):)?nonXMLBody\b[^>]*>", data))
    expected = None
    if len(tags) == 1:
        name = (tags[0].group(1) + b":" if tags[0].group(1) else b"") + b"text"
        opening = re.compile(rb"\s*<" + re.escape(name) + rb"\b[^>]*(?<!/)>").match(data, tags[0].end())
        if opening is not None:
            end = data.find(b"</" + name, opening.end())
            if end >= 0 and b"<" not in data[opening.end() : end]:
                expected = (opening.end(), end)
    assert non_xml_body_text(data) == expected
