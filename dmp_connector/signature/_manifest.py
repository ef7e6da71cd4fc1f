"""Canonicalisation and digests for the submission-set signature (private).

The DMP's signature covers its documents through a ``ds:Manifest``: each reference names a
document by ``urn:oid:`` and carries the digest of its bytes, after C14N *with comments* for
a CDA. signxml cannot digest raw bytes behind such a URI, so the builder and the verifier in
:mod:`.xades` both compute every digest here, with one code path, so that what is signed and
what is checked cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

from lxml import etree

from dmp_connector.errors import MalformedResponseError, UnsafeXmlError
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, base64_spaces, non_xml_body_text, parse_xml

from .signer import DigestAlgorithm

__all__ = [
    "C14N",
    "C14N_ALGORITHMS",
    "C14N_WITH_COMMENTS",
    "DS_NS",
    "EXC_C14N",
    "EXC_C14N_WITH_COMMENTS",
    "MANIFEST_TYPE",
    "NotXmlError",
    "b64",
    "canonicalize",
    "digest",
    "digest_equal",
    "document_digest",
    "unb64",
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
"""The XML-DSig namespace (``ds:``)."""
MANIFEST_TYPE = DS_NS + "Manifest"
"""``Reference/@Type`` of a reference to a ``ds:Manifest``."""

C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_WITH_COMMENTS = C14N + "#WithComments"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_WITH_COMMENTS = EXC_C14N + "WithComments"

C14N_ALGORITHMS: dict[str, tuple[bool, bool]] = {
    C14N: (False, False),
    C14N_WITH_COMMENTS: (False, True),
    EXC_C14N: (True, False),
    EXC_C14N_WITH_COMMENTS: (True, True),
}
"""The canonicalisations libxml2 implements, as (exclusive, with comments).

C14N 1.1 is missing on purpose: libxml2 does not implement it, so a signature that names it is
refused rather than checked with a look-alike.
"""

_HASHES = {DigestAlgorithm.SHA256: hashlib.sha256, DigestAlgorithm.SHA1: hashlib.sha1}

_AROUND_MIN: Final = 64 << 10
"""Documents from this size on are digested around their base64 text: at 270 kB (a 200 KiB PDF) it costs
0.85 ms of CPU against 1.16 ms to parse and canonicalise the whole (issue 22); below, the two are alike."""


class NotXmlError(ValueError):
    """A document declared as XML (a CDA) could not be parsed; the cause is chained."""


def canonicalize(node: etree._Element | etree._ElementTree, algorithm: str) -> bytes:
    """Canonical bytes of ``node`` (a subtree in its context, or a whole document).

    A subtree keeps the namespace declarations in scope from its ancestors, as inclusive C14N
    requires; a document keeps the comments and processing instructions around its root element
    (a CDA's ``<?xml-stylesheet?>``) and drops the XML declaration.
    """
    exclusive, with_comments = C14N_ALGORITHMS[algorithm]
    return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=with_comments)


def digest(data: bytes, algorithm: DigestAlgorithm) -> bytes:
    """The raw digest of ``data``."""
    return _HASHES[DigestAlgorithm(algorithm)](data).digest()


def digest_equal(expected: bytes, actual: bytes) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(expected, actual)


def document_digest(
    content: bytes, algorithm: DigestAlgorithm, *, transform: str | None, limits: XmlLimits = DEFAULT_LIMITS
) -> bytes:
    """Digest of one document as a manifest reference covers it.

    Without ``transform`` the bytes are digested as they are (a PDF, a DICOM KOS). With a
    canonicalisation transform (a CDA) the bytes are parsed by the hardened parser and the whole
    document is canonicalised first, so that the digest does not depend on the XML declaration,
    attribute order or quoting of the copy at hand. Raises :class:`NotXmlError` when such a
    document is not XML the parser accepts.
    """
    if transform is None:
        return digest(content, algorithm)
    if isinstance(content, bytes) and _AROUND_MIN <= len(content) <= limits.max_bytes:
        around = _digest_around_base64(content, algorithm, transform, limits)
        if around is not None:
            return around
    try:
        root = parse_xml(content, limits=limits, what="a document declared as XML")
    except (MalformedResponseError, UnsafeXmlError) as exc:
        raise NotXmlError(str(exc)) from exc
    return digest(canonicalize(root.getroottree(), transform), algorithm)


def _base64_span(data: bytes) -> tuple[int, int] | None:
    """Offsets of the text of the one ``nonXMLBody/text`` when it is base64 alone, else None."""
    span = non_xml_body_text(data)
    if span is None or base64_spaces(data, *span) is None:
        return None
    return span


def _digest_around_base64(
    content: bytes, algorithm: DigestAlgorithm, transform: str, limits: XmlLimits
) -> bytes | None:
    """The canonical digest of a PDF-body CDA without parsing or canonicalising its base64 text.

    The base64 text (ASCII letters, digits, ``+/=`` and white space: nothing canonicalisation
    escapes, and no markup) is swapped for a random marker, the rest is parsed and canonicalised,
    and the digest runs over the canonical head, the text as the parser would have read it (line
    ends normalised) and the canonical tail. Same value as parsing the whole document; no tree
    holds the text and no canonical copy of it is made, and a text node over libxml2's 10 MB
    limit (the base64 of a 7.5 MB PDF) is no obstacle. None when the shortcut does not apply:
    the caller then parses the whole document.
    """
    span = _base64_span(content)
    if span is None:
        return None
    start, end = span
    marker = b"dmpc" + secrets.token_hex(16).encode("ascii")
    # Only outside the text: the text is swapped for the marker (and looking through it costs a scan of 270 kB).
    if content.find(marker, 0, start) >= 0 or content.find(marker, end) >= 0:  # pragma: no cover - 128 random bits
        return None
    view = memoryview(content)
    try:
        root = parse_xml(b"".join((view[:start], marker, view[end:])), limits=limits, what="a document declared as XML")
    except (MalformedResponseError, UnsafeXmlError):
        return None  # the whole document decides, and its error is the one reported
    head, found, tail = canonicalize(root.getroottree(), transform).partition(marker)
    if not found or marker in tail:
        return None
    text: bytes | memoryview = view[start:end]
    if content.find(b"\r", start, end) >= 0:
        text = bytes(text).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    hasher = _HASHES[DigestAlgorithm(algorithm)]()
    hasher.update(head)
    hasher.update(text)
    hasher.update(tail)
    return hasher.digest()


def b64(data: bytes) -> str:
    """Base64 on one line, as ``ds:DigestValue`` and ``ds:SignatureValue`` carry it."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    """Decode base64 text that may be wrapped on several lines; raises ``ValueError`` if it is not base64."""
    cleaned = "".join((text or "").split())
    try:
        return base64.b64decode(cleaned, validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
