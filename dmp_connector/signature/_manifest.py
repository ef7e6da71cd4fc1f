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

from lxml import etree

from dmp_connector.errors import MalformedResponseError, UnsafeXmlError
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml

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
    try:
        root = parse_xml(content, limits=limits, what="a document declared as XML")
    except (MalformedResponseError, UnsafeXmlError) as exc:
        raise NotXmlError(str(exc)) from exc
    return digest(canonicalize(root.getroottree(), transform), algorithm)


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
