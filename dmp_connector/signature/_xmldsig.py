"""XML-DSig built with lxml and signed through a :class:`~dmp_connector.signature.Signer`; verified with signxml.

Why the SDK writes ``ds:SignedInfo`` itself instead of handing a key to signxml's
``XMLSigner``: signxml wants a private-key object, and a CPS card or an HSM has none to
give. Wrapping a :class:`Signer` in a subclass of ``rsa.RSAPrivateKey`` whose ``sign()``
delegates would work today, but it must also stub ``decrypt``, ``private_numbers``,
``private_bytes`` … and breaks whenever cryptography adds an abstract method. Building
the signature with lxml instead gives one call, ``signer.sign(c14n(SignedInfo))``, which
is exactly what a PKCS#11 ``CKM_SHA256_RSA_PKCS`` mechanism takes, and full control of
what signxml does not offer: the signature right after ``saml:Issuer``, the
``ec:InclusiveNamespaces`` list of ANS's VIHF example, and the ``ds:Manifest`` and XAdES
properties of the submission-set signature. Verification stays with signxml (and, in the
tests, xmlsec1), so our builder is always checked by someone else's code.

API (shared with the submission-set XAdES module)::

    C14nMethod                    the four canonicalisation URIs (.exclusive, .with_comments)
    DS, EC, ENVELOPED_SIGNATURE   namespace and transform URIs
    Transform(algorithm, inclusive_prefixes=())
    Reference(uri, digest_value, transforms=(), type=None, id=None)

    canonicalize(element, method=C14nMethod.EXC_C14N, *, inclusive_prefixes=()) -> bytes
        the element as the given c14n renders it *in its current context* (in-scope namespaces kept)
    digest(data, algorithm: DigestAlgorithm) -> bytes                     raw digest bytes
    append_reference(parent, reference, digest_algorithm) -> ds:Reference
        adds <ds:Reference> to ds:SignedInfo or a ds:Manifest (same prefix as the parent)
    signature_skeleton(*, c14n_method, signature_algorithm, digest_algorithm, references=(),
                       signature_id=None, prefix="ds", c14n_prefixes=()) -> ds:Signature
        <ds:Signature [Id]><ds:SignedInfo>…</ds:SignedInfo></ds:Signature>, not signed yet;
        append ds:Object children, then more references, before completing it
    complete_signature(signature, signer, signature_algorithm, *, include_chain=False) -> bytes
        canonicalises SignedInfo where it now stands, calls signer.sign() once, inserts
        ds:SignatureValue and ds:KeyInfo/ds:X509Data right after SignedInfo; returns the value
    sign_enveloped(element, signer, *, signature_algorithm, digest_algorithm, position=0,
                   id_attribute="ID", inclusive_prefixes=(), prefix="ds", include_chain=False)
        enveloped signature of ``element`` referenced by ``#<its id>``, inserted at ``position``
    certificate_base64(cert) -> str                                         DER, base64, one line

    verify_certificate_path(chain, trusted, *, now=None) -> leaf certificate
        path from the leaf to one of ``trusted`` (signatures, CA flags, dates, leaf key usage);
        SignatureVerificationError reason untrusted_certificate / expired_certificate
    key_info_certificates(signature) -> list[x509.Certificate]              from ds:KeyInfo/ds:X509Data
    verify_with_signxml(root, *, certificate, expect_references=1, location="./",
                        id_attribute=None, allow_sha1=True, now=None, uri_resolver=None)
        signxml's check of every reference and of the signature value, errors translated to
        SignatureVerificationError (digest_mismatch, bad_signature, malformed); returns signxml's
        VerifyResult list — trust only their ``signed_xml``

Order of work for an enveloping signature (XAdES): make the skeleton, append the
``ds:Object`` children, compute each reference's digest with :func:`canonicalize` *once
the object is in place* (inclusive c14n renders the namespaces in scope), append the
references, then :func:`complete_signature`.

Caveat: lxml drops ``#default`` from an InclusiveNamespaces list (libxml2 itself and
xmlsec1 honour it). It only matters when a default namespace is in scope at the apex and
not used there; the VIHF avoids it by putting the assertion itself in the default namespace.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from signxml.algorithms import DigestAlgorithm as SxDigest
from signxml.algorithms import SignatureMethod as SxMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from dmp_connector.errors import MalformedResponseError, SignatureVerificationError, UnsafeXmlError, ValidationError
from dmp_connector.xml import parse_xml

from .keys import certificate_memo
from .signer import DigestAlgorithm, SignatureAlgorithm, Signer

__all__ = [
    "DS",
    "EC",
    "ENVELOPED_SIGNATURE",
    "C14nMethod",
    "Reference",
    "Transform",
    "append_reference",
    "canonicalize",
    "certificate_base64",
    "certificate_path",
    "check_key_usage",
    "check_validity",
    "complete_signature",
    "digest",
    "key_info_certificates",
    "load_certificate",
    "sign_enveloped",
    "signature_skeleton",
    "verify_certificate_path",
    "verify_with_signxml",
]

DS: Final = "http://www.w3.org/2000/09/xmldsig#"
"""XML-DSig namespace."""
EC: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
"""Exclusive c14n namespace (``ec:InclusiveNamespaces``)."""
ENVELOPED_SIGNATURE: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
"""The enveloped-signature transform."""

_MAX_PATH = 8


class _NoCanonicalContent(logging.Filter):
    """Drops signxml's DEBUG records of each canonicalised element.

    signxml logs the whole canonical form of what it checks: for a VIHF, the patient's INS
    and the professional's name; for a document, its content. A vendor who turns DEBUG on
    for the root logger must not find health data in the log, so those records are dropped
    (signxml's other records pass).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and str(record.msg).startswith("Canonicalized"))


_SIGNXML_LOGGER = logging.getLogger("signxml.processor")
if not any(isinstance(f, _NoCanonicalContent) for f in _SIGNXML_LOGGER.filters):
    _SIGNXML_LOGGER.addFilter(_NoCanonicalContent())


class C14nMethod(StrEnum):
    """Canonicalisation algorithms: exclusive for the VIHF, inclusive with comments for the DMP's XAdES."""

    C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    C14N_WITH_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
    EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
    EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"

    @property
    def exclusive(self) -> bool:
        """True for the exclusive variants."""
        return self.value.startswith(EC)

    @property
    def with_comments(self) -> bool:
        """True for the variants that keep comments."""
        return self.value.endswith("#WithComments")


@dataclass(frozen=True)
class Transform:
    """One ``ds:Transform``; ``inclusive_prefixes`` becomes ``ec:InclusiveNamespaces/@PrefixList``."""

    algorithm: str
    inclusive_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reference:
    """One ``ds:Reference``: what it points at, its digest, and how the digest was made."""

    uri: str
    digest_value: bytes
    transforms: tuple[Transform, ...] = ()
    type: str | None = None
    id: str | None = None


def _ds(local: str) -> str:
    return f"{{{DS}}}{local}"


def canonicalize(
    element: etree._Element, method: C14nMethod = C14nMethod.EXC_C14N, *, inclusive_prefixes: Sequence[str] = ()
) -> bytes:
    """The canonical form of ``element`` and its descendants, namespaces in scope included.

    The element is serialised (lxml copies the in-scope namespace declarations onto it)
    and read back through the hardened parser before canonicalisation: lxml silently drops
    InclusiveNamespaces prefixes unknown to a tree's dictionary, which a tree built in code
    may be, and a parsed tree is what verifiers canonicalise too.
    """
    method = C14nMethod(method)
    copy = parse_xml(etree.tostring(element, with_tail=False), what="the XML to canonicalise")
    return etree.tostring(
        copy,
        method="c14n",
        exclusive=method.exclusive,
        with_comments=method.with_comments,
        inclusive_ns_prefixes=list(inclusive_prefixes) or None,
    )


def digest(data: bytes, algorithm: DigestAlgorithm) -> bytes:
    """The raw digest of ``data`` (base64 it for ``ds:DigestValue``)."""
    hasher = hashes.Hash(DigestAlgorithm(algorithm).hash)
    hasher.update(data)
    return hasher.finalize()


def certificate_base64(cert: x509.Certificate) -> str:
    """The DER certificate in base64 on one line, as ``ds:X509Certificate`` holds it."""
    return certificate_memo(cert, "der_base64", _der_base64)


def _der_base64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _append_transform(transforms: etree._Element, transform: Transform) -> None:
    element = etree.SubElement(transforms, _ds("Transform"), Algorithm=transform.algorithm)
    if transform.inclusive_prefixes:
        inclusive = etree.SubElement(element, f"{{{EC}}}InclusiveNamespaces", nsmap={"ec": EC})
        inclusive.set("PrefixList", " ".join(transform.inclusive_prefixes))


def append_reference(parent: etree._Element, reference: Reference, digest_algorithm: DigestAlgorithm) -> etree._Element:
    """Add a ``ds:Reference`` to ``parent`` (``ds:SignedInfo`` or ``ds:Manifest``) and return it.

    ::

        <ds:Reference URI="#_0f3c…">
          <ds:Transforms>
            <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
            <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">
              <ec:InclusiveNamespaces xmlns:ec="…xml-exc-c14n#" PrefixList="ds saml #default xsi"/>
            </ds:Transform>
          </ds:Transforms>
          <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
          <ds:DigestValue>uJdsyFXk…</ds:DigestValue>
        </ds:Reference>
    """
    element = etree.SubElement(parent, _ds("Reference"))
    if reference.id is not None:
        element.set("Id", reference.id)
    element.set("URI", reference.uri)
    if reference.type is not None:
        element.set("Type", reference.type)
    if reference.transforms:
        transforms = etree.SubElement(element, _ds("Transforms"))
        for transform in reference.transforms:
            _append_transform(transforms, transform)
    etree.SubElement(element, _ds("DigestMethod"), Algorithm=DigestAlgorithm(digest_algorithm).value)
    etree.SubElement(element, _ds("DigestValue")).text = base64.b64encode(reference.digest_value).decode("ascii")
    return element


def signature_skeleton(
    *,
    c14n_method: C14nMethod,
    signature_algorithm: SignatureAlgorithm,
    digest_algorithm: DigestAlgorithm,
    references: Sequence[Reference] = (),
    signature_id: str | None = None,
    prefix: str | None = "ds",
    c14n_prefixes: Sequence[str] = (),
) -> etree._Element:
    """A ``ds:Signature`` holding only its ``ds:SignedInfo``; :func:`complete_signature` signs it.

    ::

        <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
          <ds:SignedInfo>
            <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
            <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
            <ds:Reference …/>
          </ds:SignedInfo>
        </ds:Signature>

    ``prefix=None`` puts XML-DSig in the default namespace, as ANS's VIHF example does.
    """
    # lxml-stubs type nsmap as Mapping[str, str]; lxml takes None for the default namespace.
    signature = etree.Element(_ds("Signature"), nsmap=cast("dict[str, str]", {prefix: DS}))
    if signature_id is not None:
        signature.set("Id", signature_id)
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    c14n = etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=C14nMethod(c14n_method).value)
    if c14n_prefixes:
        inclusive = etree.SubElement(c14n, f"{{{EC}}}InclusiveNamespaces", nsmap={"ec": EC})
        inclusive.set("PrefixList", " ".join(c14n_prefixes))
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=SignatureAlgorithm(signature_algorithm).value)
    for reference in references:
        append_reference(signed_info, reference, digest_algorithm)
    return signature


def _inclusive_prefixes(method_element: etree._Element) -> tuple[str, ...]:
    inclusive = method_element.find(f"{{{EC}}}InclusiveNamespaces")
    if inclusive is None:
        return ()
    return tuple((inclusive.get("PrefixList") or "").split())


def complete_signature(
    signature: etree._Element,
    signer: Signer,
    signature_algorithm: SignatureAlgorithm,
    *,
    include_chain: bool = False,
) -> bytes:
    """Sign ``ds:SignedInfo`` where it stands and insert ``ds:SignatureValue`` and ``ds:KeyInfo`` after it.

    Call it last, once the signature sits in its final document: SignedInfo is
    canonicalised in place. ``signer.sign`` is called exactly once. ``include_chain`` adds
    the signer's issuers after its certificate in ``ds:X509Data``.
    ::

        <ds:SignedInfo>…</ds:SignedInfo>
        <ds:SignatureValue>Qm9u…</ds:SignatureValue>
        <ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIID…</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    """
    signed_info = signature.find(_ds("SignedInfo"))
    if signed_info is None or signature.find(_ds("SignatureValue")) is not None:
        raise ValidationError("complete_signature needs a ds:Signature with a ds:SignedInfo and no value yet")
    method_element = signed_info.find(_ds("CanonicalizationMethod"))
    algorithm_element = signed_info.find(_ds("SignatureMethod"))
    if method_element is None or algorithm_element is None:
        raise ValidationError("ds:SignedInfo needs its CanonicalizationMethod and SignatureMethod")
    algorithm = SignatureAlgorithm(signature_algorithm)
    if algorithm_element.get("Algorithm") != algorithm.value:
        raise ValidationError("the SignatureMethod of ds:SignedInfo is not the algorithm asked for")
    method = C14nMethod(method_element.get("Algorithm") or "")
    signed_bytes = canonicalize(signed_info, method, inclusive_prefixes=_inclusive_prefixes(method_element))
    value = signer.sign(signed_bytes, algorithm)

    signature_value = etree.SubElement(signature, _ds("SignatureValue"))
    signature_value.text = base64.b64encode(value).decode("ascii")
    signed_info.addnext(signature_value)
    chain = list(signer.certificate_chain())
    if chain:
        key_info = etree.SubElement(signature, _ds("KeyInfo"))
        x509_data = etree.SubElement(key_info, _ds("X509Data"))
        for cert in chain if include_chain else chain[:1]:
            etree.SubElement(x509_data, _ds("X509Certificate")).text = certificate_base64(cert)
        signature_value.addnext(key_info)
    return value


def sign_enveloped(
    element: etree._Element,
    signer: Signer,
    *,
    signature_algorithm: SignatureAlgorithm,
    digest_algorithm: DigestAlgorithm,
    position: int = 0,
    id_attribute: str = "ID",
    inclusive_prefixes: Sequence[str] = (),
    prefix: str | None = "ds",
    include_chain: bool = False,
) -> etree._Element:
    """Sign ``element`` with an enveloped signature (exclusive c14n) inserted as its child at ``position``.

    The reference is ``#<element's id_attribute>``; its digest is taken before the
    signature is inserted, which is what the enveloped-signature transform gives back.
    Returns the ``ds:Signature``.
    """
    element_id = element.get(id_attribute)
    if not element_id:
        raise ValidationError(f"an enveloped signature needs the element's {id_attribute} attribute")
    if element.find(f".//{_ds('Signature')}") is not None:
        raise ValidationError("the element to sign already holds a ds:Signature")
    exclusive = C14nMethod.EXC_C14N
    digest_value = digest(canonicalize(element, exclusive, inclusive_prefixes=inclusive_prefixes), digest_algorithm)
    reference = Reference(
        uri=f"#{element_id}",
        digest_value=digest_value,
        transforms=(Transform(ENVELOPED_SIGNATURE), Transform(exclusive.value, tuple(inclusive_prefixes))),
    )
    signature = signature_skeleton(
        c14n_method=exclusive,
        signature_algorithm=signature_algorithm,
        digest_algorithm=digest_algorithm,
        references=[reference],
        prefix=prefix,
    )
    element.insert(position, signature)
    complete_signature(signature, signer, signature_algorithm, include_chain=include_chain)
    return signature


# --- verification ---------------------------------------------------------------------------


def key_info_certificates(signature: etree._Element) -> list[x509.Certificate]:
    """The certificates of ``ds:KeyInfo/ds:X509Data``, in document order; ``malformed`` if unreadable."""
    return [
        load_certificate(text_element.text)
        for text_element in signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")
    ]


def load_certificate(text: str | None) -> x509.Certificate:
    """Read a base64 ``ds:X509Certificate`` and parse, now, every field the checks use.

    cryptography parses extensions, names and the key lazily; a forged certificate must fail
    here as ``malformed``, not later with a foreign exception in the middle of a check.
    """
    cleaned = "".join((text or "").split())
    try:
        # Only certificates of a usual size are kept: a sender cannot fill the cache with big ones.
        read = _read_certificate if len(cleaned) <= _KEPT_CERTIFICATE else _read_certificate.__wrapped__
        return read(cleaned)
    except Exception as exc:  # cryptography raises ValueError, TypeError, InvalidVersion, DuplicateExtension…
        raise SignatureVerificationError(
            "a ds:X509Certificate of the signature is not a readable certificate", reason="malformed"
        ) from exc


_KEPT_CERTIFICATE: Final = 16 * 1024
"""Base64 characters of the largest certificate whose parsing is kept (IGC-Santé ones are about 2,000)."""


@functools.lru_cache(maxsize=64)
def _read_certificate(text: str) -> x509.Certificate:
    """The certificate of one base64 text, parsed once: a sender signs every message with the same one.

    Only the parsing is kept (a certificate is immutable); every check on it (path, dates, key
    usage) runs for each message, and whether an issuer signed it is kept per pair of objects
    (:func:`_issued_by`). A text that fails is not kept.
    """
    cert = x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
    cert.public_key()
    _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc, cert.not_valid_after_utc)
    return cert


def _describe(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:  # pragma: no cover - a subject cryptography cannot print
        return f"serial {cert.serial_number}"


_KEPT_VERDICTS: Final = 8
"""Issuers whose verdict is kept per certificate (a sender's chain has one or two; a full memo is emptied)."""


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` (and names match), kept per pair of certificate objects.

    A sender signs every message with the same certificate (one object, see :func:`load_certificate`)
    and it is checked against the same trusted ones: the verdict, a pure function of the two
    immutable objects, is computed once (one RSA verification per pair, not per message). It is
    kept in ``cert``'s memo (:func:`~dmp_connector.signature.keys.certificate_memo`) under the
    issuer's ``id`` with the issuer object itself, and read only for that very object (``is``).
    The path, the dates and the key usage are still checked for every message.
    """
    verdicts = certificate_memo(cert, "issued_by", _no_verdicts)
    kept = verdicts.get(id(issuer))
    if kept is not None and kept[0] is issuer:
        return kept[1]
    verdict = _check_issued_by(cert, issuer)
    if len(verdicts) >= _KEPT_VERDICTS:
        verdicts.clear()
    verdicts[id(issuer)] = (issuer, verdict)
    return verdict


def _no_verdicts(_cert: x509.Certificate) -> dict[int, tuple[x509.Certificate, bool]]:
    return {}


def _check_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if _rsa_issued_by(cert, issuer):
        return True
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, CryptoInvalidSignature):
        return False
    return True


_RSA_PKCS1_HASHES: Final[dict[x509.ObjectIdentifier, type[hashes.HashAlgorithm]]] = {
    x509.SignatureAlgorithmOID.RSA_WITH_SHA256: hashes.SHA256,
    x509.SignatureAlgorithmOID.RSA_WITH_SHA384: hashes.SHA384,
    x509.SignatureAlgorithmOID.RSA_WITH_SHA512: hashes.SHA512,
}


def _rsa_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True only when ``cert.verify_directly_issued_by(issuer)`` would accept; False means "ask it".

    The same three checks for the usual case (an RSA issuer, RSA PKCS#1 v1.5 with SHA-2): the
    certificate's inner and outer signature algorithms are the same DER bytes, its issuer name is
    the issuer's subject name, byte for byte, and the issuer's key verifies the signature over the
    to-be-signed part. cryptography parses the issuer's key from its DER at every call (two thirds
    of the cost); here the key object the certificate keeps is used. Any other case, and any failure,
    is left to ``verify_directly_issued_by``, so that a refusal is always its refusal.
    """
    hash_type = _RSA_PKCS1_HASHES.get(cert.signature_algorithm_oid)
    if hash_type is None:
        return False
    parts = certificate_memo(cert, "der_parts", _der_parts)
    issuer_parts = certificate_memo(issuer, "der_parts", _der_parts)
    if parts is None or issuer_parts is None:
        return False
    inner_algorithm, outer_algorithm, issuer_name, _ = parts
    if inner_algorithm != outer_algorithm or issuer_name != issuer_parts[3]:
        return False
    try:
        key = issuer.public_key()  # after the names, as cryptography: an unreadable key of another CA is not read
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_type())
    except Exception:  # any failure is verify_directly_issued_by's to decide and to report
        return False
    return True


def _der_parts(cert: x509.Certificate) -> tuple[bytes, bytes, bytes, bytes] | None:
    """The DER of (tbs signature algorithm, outer signature algorithm, tbs issuer, tbs subject), or None.

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
    signature AlgorithmIdentifier, issuer Name, validity, subject Name, … }, signatureAlgorithm,
    signatureValue }. None for anything this short reader does not expect.
    """
    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        certificate = _tlv(der, 0, 0x30)
        tbs = _tlv(der, certificate[1], 0x30)
        outer_algorithm = _tlv(der, tbs[2], 0x30)
        fields: list[tuple[int, int, int]] = []
        at = tbs[1]
        while at < tbs[2] and len(fields) < 6:
            fields.append(_tlv(der, at, None))
            at = fields[-1][2]
        if der[fields[0][0]] == 0xA0:
            fields = fields[1:]
        serial, algorithm, issuer_name, validity, subject = fields[:5]
        if [der[f[0]] for f in (serial, algorithm, issuer_name, validity, subject)] != [2, 0x30, 0x30, 0x30, 0x30]:
            return None
    except (IndexError, ValueError):
        return None

    def raw(field: tuple[int, int, int]) -> bytes:
        return der[field[0] : field[2]]

    return raw(algorithm), raw(outer_algorithm), raw(issuer_name), raw(subject)


def _tlv(der: bytes, at: int, tag: int | None) -> tuple[int, int, int]:
    """(start, start of the content, end) of the DER element at ``at``, whose tag must be ``tag`` if given."""
    if tag is not None and der[at] != tag:
        raise ValueError("unexpected tag")
    length = der[at + 1]
    content = at + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unexpected length")
        length = int.from_bytes(der[content : content + count], "big")
        content += count
    end = content + length
    if end > len(der):
        raise ValueError("truncated")
    return at, content, end


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def verify_certificate_path(
    chain: Sequence[x509.Certificate], trusted: Sequence[x509.Certificate], *, now: dt.datetime | None = None
) -> x509.Certificate:
    """Check that ``chain[0]`` leads to one of ``trusted`` and that every certificate on the way is valid now.

    The path is built by signature (the other certificates of ``chain`` may serve as
    intermediates, in any order); each issuer on it must be a CA. A leaf that is itself in
    ``trusted`` (a pinned certificate) is accepted. The leaf's key usage, when stated,
    must allow signing. Raises :class:`SignatureVerificationError` with reason
    ``untrusted_certificate`` or ``expired_certificate``.
    """
    path = certificate_path(chain, trusted)
    check_validity(path, now or dt.datetime.now(dt.UTC))
    check_key_usage(path[0])
    return path[0]


def certificate_path(chain: Sequence[x509.Certificate], trusted: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The first step of :func:`verify_certificate_path`: the path from ``chain[0]`` to ``trusted``, leaf first.

    Every signature on the path is checked and every issuer must be a CA; the dates
    (:func:`check_validity`) and the leaf's key usage (:func:`check_key_usage`) are the caller's
    next steps, in that order. A signature checked at two moments (XAdES: its signing time and
    now) builds the path once and checks the dates twice.
    """
    if not chain:
        raise SignatureVerificationError("the signature carries no certificate", reason="malformed")
    if not trusted:
        raise SignatureVerificationError(
            "no trusted certificate was given to check the signer against", reason="untrusted_certificate"
        )
    return _certificate_path(chain[0], list(chain[1:]), trusted)


def _certificate_path(
    leaf: x509.Certificate, pool: list[x509.Certificate], trusted: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    path = [leaf]
    current = leaf
    for _ in range(_MAX_PATH):
        if current in trusted:
            break
        issuer = next((c for c in [*trusted, *pool] if _issued_by(current, c)), None)
        if issuer is None:
            raise SignatureVerificationError(
                f"the signing certificate ({_describe(leaf)}) does not chain to a trusted certificate",
                reason="untrusted_certificate",
                hint="give the CA that issued it (the IGC-Santé chain, or the test PKI's CA) as trusted",
            )
        if not _is_ca(issuer):
            raise SignatureVerificationError(
                f"{_describe(issuer)} issued the signing certificate but is not a CA", reason="untrusted_certificate"
            )
        path.append(issuer)
        current = issuer
    else:
        raise SignatureVerificationError("the certificate path is too long", reason="untrusted_certificate")
    return path


def check_validity(path: Sequence[x509.Certificate], moment: dt.datetime) -> None:
    """Every certificate of ``path`` must be valid at ``moment`` (``expired_certificate`` otherwise)."""
    for cert in path:
        if moment < cert.not_valid_before_utc:
            raise SignatureVerificationError(
                f"certificate {_describe(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                reason="expired_certificate",
            )
        if moment > cert.not_valid_after_utc:
            raise SignatureVerificationError(
                f"certificate {_describe(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                reason="expired_certificate",
            )


def check_key_usage(leaf: x509.Certificate) -> None:
    """The leaf's key usage, when stated, must allow signing (``untrusted_certificate`` otherwise)."""
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise SignatureVerificationError(
            f"the key usage of {_describe(leaf)} does not allow signing", reason="untrusted_certificate"
        )


_SIGNATURE_METHODS = {
    SignatureAlgorithm.RSA_SHA256: SxMethod.RSA_SHA256,
    SignatureAlgorithm.RSA_SHA1: SxMethod.RSA_SHA1,
}
_DIGESTS = {DigestAlgorithm.SHA256: SxDigest.SHA256, DigestAlgorithm.SHA1: SxDigest.SHA1}


def verify_with_signxml(
    root: etree._Element,
    *,
    certificate: x509.Certificate,
    expect_references: int | bool = 1,
    location: str = "./",
    id_attribute: str | None = None,
    allow_sha1: bool = True,
    now: dt.datetime | None = None,
    uri_resolver: Callable[[str], etree._Element | bytes | None] | None = None,
) -> list[VerifyResult]:
    """Verify the ``ds:Signature`` at ``location`` under ``root`` with signxml, against ``certificate``.

    ``certificate`` must already be trusted (see :func:`verify_certificate_path`): signxml
    is told to use it and nothing else. Only RSA-SHA256 / SHA-256 are accepted, plus
    RSA-SHA1 / SHA-1 when ``allow_sha1`` (the public DMP implementations sign with them).
    signxml's errors become :class:`SignatureVerificationError`: ``digest_mismatch`` for a
    reference whose digest differs, ``bad_signature`` for a signature value that does not
    verify, ``malformed`` for anything signxml cannot read.
    """
    methods = {SxMethod.RSA_SHA256} | ({SxMethod.RSA_SHA1} if allow_sha1 else set())
    digests = {SxDigest.SHA256} | ({SxDigest.SHA1} if allow_sha1 else set())
    config = SignatureConfiguration(
        location=location,
        expect_references=expect_references,
        signature_methods=frozenset(methods),
        digest_algorithms=frozenset(digests),
        verification_time=now or dt.datetime.now(dt.UTC),
    )
    try:
        result = XMLVerifier().verify(
            root,
            x509_cert=certificate,
            id_attribute=id_attribute,
            expect_config=config,
            uri_resolver=uri_resolver,
        )
    except InvalidDigest as exc:
        raise SignatureVerificationError(
            "a signed element was changed after signing (digest mismatch)", reason="digest_mismatch"
        ) from exc
    except InvalidCertificate as exc:
        raise SignatureVerificationError(
            f"the signing certificate is refused: {exc}", reason="expired_certificate"
        ) from exc
    except InvalidSignature as exc:
        raise SignatureVerificationError("the signature value does not verify", reason="bad_signature") from exc
    except (InvalidInput, SignXMLException, etree.DocumentInvalid, ValueError) as exc:
        raise SignatureVerificationError(f"the signature cannot be read: {exc}", reason="malformed") from exc
    except (UnsafeXmlError, MalformedResponseError) as exc:  # pragma: no cover - signxml parses itself
        raise SignatureVerificationError(str(exc), reason="malformed") from exc
    return result if isinstance(result, list) else [result]
