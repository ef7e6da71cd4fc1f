"""The digest of a PDF-body CDA taken around its base64 text equals the digest of the whole parsed document."""

from __future__ import annotations

import base64
import hashlib

import pytest

from dmp_connector.signature._manifest import (
    C14N,
    C14N_WITH_COMMENTS,
    EXC_C14N,
    EXC_C14N_WITH_COMMENTS,
    _digest_around_base64,
    canonicalize,
    document_digest,
)
from dmp_connector.signature.signer import DigestAlgorithm
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml

PAYLOAD = base64.b64encode(bytes(range(256)) * 40).decode("ascii")


def cda(text: str, *, prefix: str = "", extra: str = "") -> bytes:
    p = f"{prefix}:" if prefix else ""
    xmlns = f"xmlns:{prefix}" if prefix else "xmlns"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- head -->\n'
        f'<{p}ClinicalDocument {xmlns}="urn:hl7-org:v3" b="2" a="1"><{p}id root="1.2"/>{extra}'
        f"<{p}component><{p}nonXMLBody>\n  <{p}text mediaType='application/pdf' representation=\"B64\">{text}"
        f"</{p}text></{p}nonXMLBody></{p}component></{p}ClinicalDocument>\n"
    ).encode()


def whole(data: bytes, algorithm: str) -> bytes:
    return hashlib.sha256(canonicalize(parse_xml(data).getroottree(), algorithm)).digest()


@pytest.mark.parametrize("algorithm", [C14N, C14N_WITH_COMMENTS, EXC_C14N, EXC_C14N_WITH_COMMENTS])
@pytest.mark.parametrize(
    "data",
    [
        cda(PAYLOAD),
        cda("\r\n".join(PAYLOAD[i : i + 76] for i in range(0, len(PAYLOAD), 76)) + "\r"),
        cda("\n  " + "\n  ".join(PAYLOAD[i : i + 64] for i in range(0, len(PAYLOAD), 64)) + "\n\t"),
        cda(PAYLOAD, prefix="hl7", extra="<!-- a comment --><?pi data?>"),
        cda(""),
    ],
    ids=["one-line", "crlf", "indented", "prefixed", "empty"],
)
def test_same_digest_as_the_whole_document(data: bytes, algorithm: str) -> None:
    around = _digest_around_base64(data, DigestAlgorithm.SHA256, algorithm, DEFAULT_LIMITS)
    assert around is not None
    assert around == whole(data, algorithm)
    assert document_digest(data, DigestAlgorithm.SHA256, transform=algorithm) == around


@pytest.mark.parametrize(
    "data",
    [
        cda("QUJD&amp;"),  # not base64 alone
        cda(PAYLOAD, extra="<component><nonXMLBody/></component>"),  # two bodies
        cda(PAYLOAD).replace(b"<id root", b"<!DOCTYPE x><id root"),  # refused by the parser: its error decides
    ],
    ids=["entity", "two-bodies", "malformed"],
)
def test_falls_back_to_the_whole_document(data: bytes) -> None:
    assert _digest_around_base64(data, DigestAlgorithm.SHA256, C14N_WITH_COMMENTS, DEFAULT_LIMITS) is None


def test_a_text_over_libxml2s_limit_is_digested() -> None:
    """The base64 of an 8 MB PDF is a text node over 10 MB, which the hardened parser refuses whole."""
    big = base64.b64encode(b"%PDF" * (2 << 20)).decode("ascii")
    data = cda(big)
    value = document_digest(
        data, DigestAlgorithm.SHA256, transform=C14N_WITH_COMMENTS, limits=XmlLimits(max_bytes=len(data) + 1)
    )
    head, _, tail = canonicalize(parse_xml(cda("X")).getroottree(), C14N_WITH_COMMENTS).partition(b">X<")
    assert value == hashlib.sha256(head + b">" + big.encode() + b"<" + tail).digest()


def test_a_large_document_is_digested_around_its_text_with_the_same_value() -> None:
    big = base64.b64encode(bytes(range(256)) * 6000).decode("ascii")
    data = cda("\r\n".join(big[i : i + 76] for i in range(0, len(big), 76)))
    assert len(data) > 1 << 20
    value = document_digest(data, DigestAlgorithm.SHA256, transform=C14N_WITH_COMMENTS)
    assert value == whole(data, C14N_WITH_COMMENTS)
