"""The DMP's submission-set signature: build it, and verify one.

Every ITI-41 deposit to the DMP carries one extra XDS document, ``Signature01``: an
*enveloping* XML-DSig/XAdES signature whose ``ds:Manifest`` names the submission set and each
document by ``urn:oid:`` unique id, with the digest of each document. The shape below is the
one the two public DMP implementations send (reference notes, ``dmp_xds.md`` §4); signxml
cannot produce it (a Manifest over raw bytes, XAdES 1.1.1), so it is built here with lxml and
signed through the :class:`~dmp_connector.signature.Signer` seam::

    <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="1.2.250.1.999.7.3">
      <ds:SignedInfo>
        <ds:CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"/>
        <ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
        <ds:Reference Type="http://www.w3.org/2000/09/xmldsig#Manifest" URI="#IHEManifest">…</ds:Reference>
        <ds:Reference Type="http://uri.etsi.org/01903/v1.1.1#SignedProperties" URI="#S0-SignedProperties">…
      </ds:SignedInfo>
      <ds:SignatureValue>…</ds:SignatureValue>
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>MIIC…</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
      <ds:Object><ds:SignatureProperties>
        <ds:SignatureProperty Id="purposeOfSignature" Target="#1.2.250.1.999.7.3">1.2.840.10065.1.12.1.14…
      </ds:SignatureProperties></ds:Object>
      <ds:Object><ds:Manifest Id="IHEManifest">
        <ds:Reference URI="urn:oid:1.2.250.1.999.7.1">…<ds:DigestValue>AA==</ds:DigestValue></ds:Reference>
        <ds:Reference URI="urn:oid:1.2.250.1.999.7.2"><ds:Transforms><ds:Transform Algorithm="…#WithComments"/>…
      </ds:Manifest></ds:Object>
      <ds:Object><xades:QualifyingProperties xmlns:xades="http://uri.etsi.org/01903/v1.1.1#" Target="#…">
        <xades:SignedProperties Id="S0-SignedProperties">SigningTime, SigningCertificate, policy implied…
      </xades:QualifyingProperties></ds:Object>
    </ds:Signature>

Verification checks every part itself (structure and signature wrapping, signature value,
signed properties, certificate chain and dates, each manifest digest against the documents)
and raises :class:`~dmp_connector.errors.SignatureVerificationError` with a stable ``reason``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.codes import Code
from dmp_connector.config import SigningSettings
from dmp_connector.errors import (
    ConfigurationError,
    InvalidIdentifierError,
    MalformedResponseError,
    SignatureVerificationError,
    UnsafeXmlError,
    ValidationError,
)
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml, to_bytes

from ._manifest import (
    C14N,
    C14N_ALGORITHMS,
    C14N_WITH_COMMENTS,
    DS_NS,
    MANIFEST_TYPE,
    NotXmlError,
    b64,
    canonicalize,
    digest,
    digest_equal,
    document_digest,
    unb64,
)
from ._xmldsig import certificate_base64, certificate_path, check_key_usage, check_validity, load_certificate
from .keys import certificate_memo
from .signer import DigestAlgorithm, SignatureAlgorithm, Signer, check_signer, signs_with_key_of

__all__ = [
    "SIGNATURE_ENTRY_ID",
    "Association",
    "SigningCertificateScope",
    "SubmissionSetSignature",
    "SubmissionSetSignatureProfile",
    "SubmittedDocument",
    "VerifiedSignature",
    "XadesVersion",
    "new_unique_id",
    "sign_submission_set",
    "verify_submission_set_signature",
]

SIGNATURE_ENTRY_ID = "Signature01"
"""The signature's XDS entry id, which its MTOM ``xdsb:Document/@id`` repeats."""

PURPOSE_OF_SIGNATURE = "1.2.840.10065.1.12.1.14"
"""ASTM E1762 "Source" signature: the purpose the DMP's signature states."""

MANIFEST_ID = "IHEManifest"
SIGNED_PROPERTIES_ID = "S0-SignedProperties"
PURPOSE_PROPERTY_ID = "purposeOfSignature"
SUBMISSION_SET_DUMMY_DIGEST = "AA=="
"""The submission set is no byte stream: its manifest reference carries a placeholder digest."""

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_MAX_OID_LENGTH = 64  # XDS uniqueId limit


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


class XadesVersion(StrEnum):
    """The XAdES namespace of the qualifying properties.

    1.1.1 is what DRIMbox sends; 1.3.2 is probably what the ANS/CNAM kit's library sends [I].
    Both were accepted by the DMP test platforms, per the reference notes.
    """

    V1_1_1 = "http://uri.etsi.org/01903/v1.1.1#"
    V1_3_2 = "http://uri.etsi.org/01903/v1.3.2#"

    @classmethod
    def from_setting(cls, name: str) -> XadesVersion:
        """``1.1.1`` / ``1.3.2`` (as :class:`SigningSettings` spells them) or the namespace itself."""
        by_name = {"1.1.1": cls.V1_1_1, "1.3.2": cls.V1_3_2}
        try:
            return by_name.get(name) or cls(name)
        except ValueError:
            raise ConfigurationError(f"unknown XAdES version {name!r}", hint="use 1.1.1 (default) or 1.3.2") from None

    @property
    def cert_digest_namespace(self) -> str:
        """Namespace of ``CertDigest/DigestMethod`` and ``DigestValue``: XAdES's own in 1.1.1, ``ds:`` from 1.2.2."""
        return self.value if self is XadesVersion.V1_1_1 else DS_NS

    @property
    def signed_properties_type(self) -> str:
        """``Reference/@Type`` of the reference to ``SignedProperties`` (1.3.2 dropped the version)."""
        if self is XadesVersion.V1_1_1:
            return "http://uri.etsi.org/01903/v1.1.1#SignedProperties"
        return "http://uri.etsi.org/01903#SignedProperties"


class SigningCertificateScope(StrEnum):
    """Which certificates ``xades:SigningCertificate`` lists."""

    SIGNER = "signer"
    """The signing certificate only (DRIMbox; the default)."""
    CHAIN = "chain"
    """Every certificate the signer gives, signer first (the editor kit); KeyInfo carries them too."""


_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")


def _check_oid(value: str, what: str) -> str:
    if len(value) > _MAX_OID_LENGTH or not _OID.match(value):
        raise InvalidIdentifierError(
            f"{what} is not an OID of at most {_MAX_OID_LENGTH} characters (digits and dots, no leading zero)"
        )
    return value


class SubmittedDocument(BaseModel):
    """One document of the submission set, as the signature covers it."""

    model_config = _FROZEN

    unique_id: str = Field(pattern=_OID.pattern, max_length=_MAX_OID_LENGTH)
    """The document's XDS uniqueId (for a CDA, ``ClinicalDocument/id/@root``) — an OID."""
    content: bytes = Field(repr=False)
    """The exact bytes deposited (the MTOM part); never shown in reprs or messages."""
    is_cda: bool
    """True for a CDA (XML): digested after C14N with comments; False for raw bytes (PDF, DICOM KOS)."""


def new_unique_id(root: str = "2.25") -> str:
    """A fresh OID under ``root`` that fits the 64 characters XDS allows.

    Under the default ``2.25`` (ITU-T X.667) the arc is a 128-bit random number, as a UUID would
    give; under a longer root (your software's OID) the random arc is shortened to fit. Make the
    ids once per logical deposit and reuse them on every retry.
    """
    _check_oid(root, "the unique id root")
    room = _MAX_OID_LENGTH - len(root) - 1
    digits = min(room, 39)
    if digits < 12:
        raise InvalidIdentifierError(
            f"the unique id root is too long to leave room for a unique arc ({room} characters left, 12 needed)"
        )
    low = 10 ** (digits - 1)
    return f"{root}.{low + secrets.randbelow(9 * low)}"


class SubmissionSetSignatureProfile(BaseModel):
    """The algorithm and XAdES choices of a submission-set signature.

    The default is RSA-SHA256 / SHA-256 with XAdES 1.1.1 and the signer's certificate only.
    Whether the DMP accepts SHA-256 is not shown publicly [I]; :meth:`sha1` gives the profile both
    public implementations send. Build it from the configuration with :meth:`from_settings`.
    """

    model_config = _FROZEN

    signature_algorithm: SignatureAlgorithm = SignatureAlgorithm.RSA_SHA256
    """SignatureMethod of SignedInfo."""
    digest_algorithm: DigestAlgorithm = DigestAlgorithm.SHA256
    """DigestMethod of every reference (SignedInfo and Manifest)."""
    certificate_digest_algorithm: DigestAlgorithm | None = None
    """DigestMethod of ``xades:CertDigest``; None follows :attr:`digest_algorithm` [I] (DRIMbox: SHA-1)."""
    xades_version: XadesVersion = XadesVersion.V1_1_1
    """The XAdES namespace: 1.1.1 as DRIMbox (default), or 1.3.2 [I]."""
    certificate_scope: SigningCertificateScope = SigningCertificateScope.SIGNER
    """Whether SigningCertificate (and KeyInfo) list the signer only (default) or the signer's chain."""

    @classmethod
    def sha1(cls, **overrides: object) -> SubmissionSetSignatureProfile:
        """The profile of the public DMP implementations: RSA-SHA1 and SHA-1 everywhere."""
        data: dict[str, object] = {
            "signature_algorithm": SignatureAlgorithm.RSA_SHA1,
            "digest_algorithm": DigestAlgorithm.SHA1,
            **overrides,
        }
        return cls.model_validate(data)

    @classmethod
    def from_settings(cls, signing: SigningSettings) -> SubmissionSetSignatureProfile:
        """The profile ``[signing]`` describes (algorithms, XAdES version, certificate scope)."""
        values = (
            signing.signature_algorithm,
            signing.digest_algorithm,
            signing.xades_version,
            signing.xades_signing_certificate,
        )
        if all(type(value) is str for value in values):
            return _profile_from_settings(cls, *values)
        return cls._from_values(*values)

    @classmethod
    def _from_values(
        cls, signature_algorithm: str, digest_algorithm: str, xades_version: str, certificate_scope: str
    ) -> SubmissionSetSignatureProfile:
        return cls(
            signature_algorithm=SignatureAlgorithm.from_setting(signature_algorithm),
            digest_algorithm=DigestAlgorithm.from_setting(digest_algorithm),
            xades_version=XadesVersion.from_setting(xades_version),
            certificate_scope=SigningCertificateScope(certificate_scope),
        )

    @property
    def cert_digest(self) -> DigestAlgorithm:
        """The CertDigest algorithm in effect."""
        return self.certificate_digest_algorithm or self.digest_algorithm


@functools.lru_cache(maxsize=16)
def _profile_from_settings(
    cls: type[SubmissionSetSignatureProfile],
    signature_algorithm: str,
    digest_algorithm: str,
    xades_version: str,
    certificate_scope: str,
) -> SubmissionSetSignatureProfile:
    """:meth:`SubmissionSetSignatureProfile.from_settings` made once for the same four settings (a frozen value, one
    a deposit, issue 22). Invalid values raise as they did, and nothing is kept for them."""
    return cls._from_values(signature_algorithm, digest_algorithm, xades_version, certificate_scope)


DEFAULT_PROFILE = SubmissionSetSignatureProfile()


CLASS_CODE = Code.of("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
TYPE_CODE = Code.of("E1762", "ASTM", "Full Document")
FORMAT_CODE = Code.of("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style")
EVENT_CODE = Code(code=PURPOSE_OF_SIGNATURE, code_system="1.2.840.10065.1.12", display_name="Source")
CONFIDENTIALITY_CODES = (
    Code(code="N", code_system="2.16.840.1.113883.5.25", display_name="Normal"),
    Code(code="MASQUE_PS", code_system="1.2.250.1.213.1.1.4.13", display_name="Masqué aux professionnels de santé"),
    Code(code="INVISIBLE_PATIENT", code_system="1.2.250.1.213.1.1.4.13", display_name="Non visible par le patient"),
)


class Association(BaseModel):
    """An XDS association, as plain values for the ebRIM writer to render."""

    model_config = _FROZEN

    association_type: str = Field(min_length=1)
    """``associationType``, e.g. ``urn:ihe:iti:2007:AssociationType:signs``."""
    source_object: str = Field(min_length=1)
    """``sourceObject``: the entryUUID (or symbolic id) of the source entry."""
    target_object: str = Field(min_length=1)
    """``targetObject``: the entryUUID (or symbolic id) of the target entry."""
    submission_set_status: str | None = "Original"
    """Value of the ``SubmissionSetStatus`` slot; every association of a DMP deposit carries ``Original``."""


SIGNS_ASSOCIATION_TYPE = "urn:ihe:iti:2007:AssociationType:signs"


class SubmissionSetSignature(BaseModel):
    """The signature document of one deposit, with the values of its XDS DocumentEntry.

    Keep this object for the whole logical deposit: a retried ITI-41 must send the same bytes
    and ids, not a new signature. The fields the deposit takes from elsewhere
    (healthcareFacilityType and practiceSetting copied from the CDA, legalAuthenticator = the
    submission set's author, creation and service times) are left to the deposit builder.
    """

    model_config = _FROZEN

    xml: bytes = Field(repr=False)
    """The signature document, UTF-8, exactly as it must be deposited."""
    unique_id: str
    """The signature entry's XDS uniqueId (an OID)."""
    entry_id: str = SIGNATURE_ENTRY_ID
    """The entry's id in the submission (``ExtrinsicObject/@id`` and ``xdsb:Document/@id``)."""
    submission_set_unique_id: str
    """The uniqueId of the submission set it signs."""
    document_unique_ids: tuple[str, ...]
    """The uniqueIds of the signed documents, in manifest order."""
    signing_time: dt.datetime
    """The XAdES SigningTime (UTC); also a sensible creationTime for the entry."""
    profile: SubmissionSetSignatureProfile
    """The algorithms and XAdES choices it was made with."""
    mime_type: str = "text/xml"
    """The entry's mimeType."""
    title: str = "Source"
    """The entry's title (the purpose's display name)."""
    language_code: str = "art"
    """The entry's languageCode (``art``: artificial language)."""
    class_code: Code = CLASS_CODE
    """classCode ``urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1`` "Digital Signature", scheme ``URN``."""
    type_code: Code = TYPE_CODE
    """typeCode ``E1762`` "Full Document", scheme ``ASTM``."""
    format_code: Code = FORMAT_CODE
    """formatCode ``http://www.w3.org/2000/09/xmldsig#`` "Default Signature Style", scheme ``URN``."""
    event_codes: tuple[Code, ...] = (EVENT_CODE,)
    """eventCodeList: ``1.2.840.10065.1.12.1.14`` "Source"."""
    confidentiality_codes: tuple[Code, ...] = CONFIDENTIALITY_CODES
    """``N`` plus the DMP masking codes ``MASQUE_PS`` and ``INVISIBLE_PATIENT``: nobody browses a signature."""

    @property
    def size(self) -> int:
        """The XDS ``size`` slot: length of :attr:`xml` in bytes."""
        return len(self.xml)

    @property
    def sha1(self) -> str:
        """The XDS ``hash`` slot: SHA-1 of :attr:`xml`, lowercase hex (XDS.b fixes SHA-1 here)."""
        return hashlib.sha1(self.xml).hexdigest()  # noqa: S324 - the XDS hash slot is SHA-1 by definition

    def signs_association(self, signature_entry_uuid: str, submission_set_entry_uuid: str) -> Association:
        """The ``signs`` association: source = this signature's entry, target = the submission set."""
        return Association(
            association_type=SIGNS_ASSOCIATION_TYPE,
            source_object=signature_entry_uuid,
            target_object=submission_set_entry_uuid,
        )


# --------------------------------------------------------------------------------------------
# Building


def _reference(
    parent: etree._Element,
    uri: str,
    digest_algorithm: DigestAlgorithm,
    *,
    type_: str | None = None,
    transform: str | None = None,
    digest_value: str = "",
) -> etree._Element:
    """Append a ``ds:Reference`` and return its ``ds:DigestValue`` (to fill later)::

    <ds:Reference URI="urn:oid:1.2.3"><ds:Transforms><ds:Transform Algorithm="…"/></ds:Transforms>
      <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>…</ds:DigestValue>
    </ds:Reference>
    """
    reference = etree.SubElement(parent, _ds("Reference"))
    if type_ is not None:
        reference.set("Type", type_)
    reference.set("URI", uri)
    if transform is not None:
        transforms = etree.SubElement(reference, _ds("Transforms"))
        etree.SubElement(transforms, _ds("Transform"), Algorithm=transform)
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=digest_algorithm.value)
    value = etree.SubElement(reference, _ds("DigestValue"))
    value.text = digest_value
    return value


def _der(cert: x509.Certificate) -> bytes:
    return certificate_memo(cert, "der", _read_der)


def _read_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _der_base64(cert: x509.Certificate) -> str:
    """``ds:X509Certificate``: the DER in base64, made once per certificate (the VIHF's KeyInfo shares it)."""
    return certificate_base64(cert)


def _cert_digest(cert: x509.Certificate, algorithm: DigestAlgorithm) -> str:
    """``xades:CertDigest``'s value in base64, computed once per certificate and algorithm (issue 22)."""
    algorithm = DigestAlgorithm(algorithm)
    return certificate_memo(cert, f"xades_cert_digest_{algorithm.name}", lambda c: b64(digest(_der(c), algorithm)))


def _issuer_name(cert: x509.Certificate) -> str:
    return certificate_memo(cert, "issuer_rfc4514", _read_issuer_name)


def _read_issuer_name(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string()


def _signed_properties(
    parent: etree._Element,
    version: XadesVersion,
    *,
    signing_time: str,
    certificates: Sequence[x509.Certificate],
    cert_digest: DigestAlgorithm,
) -> etree._Element:
    """Append ``SignedProperties`` (XAdES-EPES with an implied policy)::

    <xades:SignedProperties Id="S0-SignedProperties"><xades:SignedSignatureProperties>
      <xades:SigningTime>2025-01-02T03:04:05Z</xades:SigningTime>
      <xades:SigningCertificate><xades:Cert>
        <xades:CertDigest><xades:DigestMethod Algorithm="…"/><xades:DigestValue>…</xades:DigestValue></xades:CertDigest>
        <xades:IssuerSerial><ds:X509IssuerName>CN=…</ds:X509IssuerName><ds:X509SerialNumber>4242…
      </xades:Cert></xades:SigningCertificate>
      <xades:SignaturePolicyIdentifier><xades:SignaturePolicyImplied/></xades:SignaturePolicyIdentifier>
    </xades:SignedSignatureProperties><xades:SignedDataObjectProperties/></xades:SignedProperties>

    CertDigest's children are in the XAdES namespace in 1.1.1 (as above) and ``ds:`` in 1.3.2.
    """

    def x(tag: str) -> str:
        return f"{{{version.value}}}{tag}"

    def d(tag: str) -> str:
        return f"{{{version.cert_digest_namespace}}}{tag}"

    props = etree.SubElement(parent, x("SignedProperties"), Id=SIGNED_PROPERTIES_ID)
    ssp = etree.SubElement(props, x("SignedSignatureProperties"))
    etree.SubElement(ssp, x("SigningTime")).text = signing_time
    signing_certificate = etree.SubElement(ssp, x("SigningCertificate"))
    for cert in certificates:
        cert_node = etree.SubElement(signing_certificate, x("Cert"))
        cert_digest_node = etree.SubElement(cert_node, x("CertDigest"))
        etree.SubElement(cert_digest_node, d("DigestMethod"), Algorithm=cert_digest.value)
        etree.SubElement(cert_digest_node, d("DigestValue")).text = _cert_digest(cert, cert_digest)
        issuer_serial = etree.SubElement(cert_node, x("IssuerSerial"))
        etree.SubElement(issuer_serial, _ds("X509IssuerName")).text = _issuer_name(cert)
        etree.SubElement(issuer_serial, _ds("X509SerialNumber")).text = str(cert.serial_number)
    policy = etree.SubElement(ssp, x("SignaturePolicyIdentifier"))
    etree.SubElement(policy, x("SignaturePolicyImplied"))
    etree.SubElement(props, x("SignedDataObjectProperties"))
    return props


ManifestReference = tuple[str, str | None, str]
"""One manifest reference: its URI, its transform (or None) and its digest value in base64."""


def _manifest_references(
    submission_set_unique_id: str,
    documents: Sequence[SubmittedDocument],
    digest_algorithm: DigestAlgorithm,
    limits: XmlLimits,
) -> list[ManifestReference]:
    """The manifest's references: the submission set (placeholder digest), then each document with its digest."""
    references: list[ManifestReference] = [(f"urn:oid:{submission_set_unique_id}", None, SUBMISSION_SET_DUMMY_DIGEST)]
    for doc in documents:
        transform = C14N_WITH_COMMENTS if doc.is_cda else None
        try:
            value = document_digest(doc.content, digest_algorithm, transform=transform, limits=limits)
        except NotXmlError as exc:
            raise ValidationError(
                f"document {doc.unique_id} is declared as a CDA but is not XML the parser accepts",
                hint="set is_cda=False for a non-XML document, or fix the document",
            ) from exc
        references.append((f"urn:oid:{doc.unique_id}", transform, b64(value)))
    return references


def _manifest(
    parent: etree._Element, references: Sequence[ManifestReference], digest_algorithm: DigestAlgorithm
) -> etree._Element:
    """Append the manifest: the submission set (placeholder digest), then each document::

    <ds:Manifest Id="IHEManifest">
      <ds:Reference URI="urn:oid:1.2.250.1.999.7.1"><ds:DigestMethod …/><ds:DigestValue>AA==</ds:DigestValue>
      </ds:Reference>
      <ds:Reference URI="urn:oid:1.2.250.1.999.7.2"><ds:Transforms><ds:Transform
          Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"/></ds:Transforms>
        <ds:DigestMethod …/><ds:DigestValue>I1Znq0hK…</ds:DigestValue></ds:Reference>
      <ds:Reference URI="urn:oid:1.2.250.1.999.7.3"><ds:DigestMethod …/><ds:DigestValue>22b/zDSO…
    </ds:Manifest>
    """
    manifest = etree.SubElement(parent, _ds("Manifest"), Id=MANIFEST_ID)
    for uri, transform, value in references:
        _reference(manifest, uri, digest_algorithm, transform=transform, digest_value=value)
    return manifest


def _format_time(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC)
    if utc.year >= 1000:  # strftime's %Y has four digits from year 1000 on (glibc pads no shorter year)
        return f"{utc.year}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    return utc.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_submission_set(
    *,
    submission_set_unique_id: str,
    documents: Sequence[SubmittedDocument],
    signer: Signer,
    unique_id: str | None = None,
    unique_id_root: str = "2.25",
    profile: SubmissionSetSignatureProfile = DEFAULT_PROFILE,
    signing_time: dt.datetime | None = None,
    signature_xml_id: str | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> SubmissionSetSignature:
    """Sign a submission set as the DMP expects; return the signature document with its entry values.

    ``unique_id`` is the signature entry's uniqueId: give the one stored for this deposit so that a
    retry reuses it, or let one be drawn under ``unique_id_root`` (your software's OID, or ``2.25``).
    ``profile`` holds the algorithms and XAdES choices (:meth:`SubmissionSetSignatureProfile.sha1`
    for the SHA-1 profile). ``signing_time`` defaults to now and must be timezone-aware; the
    signer's certificate must be valid then. ``signature_xml_id`` overrides ``ds:Signature/@Id``:
    by default it is the uniqueId, as the public implementations send it, which is not an XML
    NCName, so strict schema validators flag it — ``"_" + unique_id`` gives a schema-valid document.
    The signer is called exactly once, with the canonical ``ds:SignedInfo``.
    """
    _check_oid(submission_set_unique_id, "the submission set uniqueId")
    sig_unique_id = _check_oid(unique_id, "the signature uniqueId") if unique_id else new_unique_id(unique_id_root)
    if not documents:
        raise ValidationError("a submission-set signature needs at least one document")
    ids = [doc.unique_id for doc in documents]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates or submission_set_unique_id in ids or sig_unique_id in ids:
        raise ValidationError(
            "the submission set, the signature and the documents need distinct uniqueIds",
            problems=[f"uniqueId {i} is used more than once" for i in duplicates],
        )
    moment = signing_time or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        raise ValidationError("signing_time must be timezone-aware (UTC recommended)")
    certificate = check_signer(signer, now=moment)
    chain = tuple(signer.certificate_chain())
    listed = chain if profile.certificate_scope is SigningCertificateScope.CHAIN else (certificate,)
    digest_algorithm = profile.digest_algorithm
    xades_version = profile.xades_version
    xml_id = signature_xml_id or sig_unique_id

    references = _manifest_references(submission_set_unique_id, documents, digest_algorithm, limits)
    parts = _XadesParts(
        xml_id=xml_id,
        signature_algorithm=profile.signature_algorithm,
        digest_algorithm=digest_algorithm,
        xades_version=xades_version,
        certificates=listed,
        cert_digest=profile.cert_digest,
        signing_time=_format_time(moment),
        references=tuple(references),
    )
    document = _text_document(parts) or _tree_document(parts)
    signed_info_c14n = document.signed_info
    raw = signer.sign(signed_info_c14n, profile.signature_algorithm)
    if not signs_with_key_of(signer, certificate) and not _signature_matches(
        certificate, raw, signed_info_c14n, profile.signature_algorithm
    ):
        raise ConfigurationError(
            "the signer's signature does not verify with its own certificate",
            hint="the Signer signs with a key that does not belong to certificate_chain()[0], "
            "or not with RSA PKCS#1 v1.5 over the given algorithm's hash",
        )
    return SubmissionSetSignature(
        xml=document.finish(b64(raw)),
        unique_id=sig_unique_id,
        submission_set_unique_id=submission_set_unique_id,
        document_unique_ids=tuple(ids),
        signing_time=moment.astimezone(dt.UTC).replace(microsecond=0),
        profile=profile,
    )


@dataclass(frozen=True)
class _XadesParts:
    """What one submission-set signature says, decided before it is written: both writers write exactly this."""

    xml_id: str
    signature_algorithm: SignatureAlgorithm
    digest_algorithm: DigestAlgorithm
    xades_version: XadesVersion
    certificates: tuple[x509.Certificate, ...]
    cert_digest: DigestAlgorithm
    signing_time: str
    references: tuple[ManifestReference, ...]


@dataclass(frozen=True)
class _Document:
    """A signature document before its value: the canonical ``ds:SignedInfo`` to sign, and how to finish it."""

    signed_info: bytes
    finish: Callable[[str], bytes]
    """The document's bytes (as :func:`~dmp_connector.xml.to_bytes` writes them) given the base64 signature value."""


def _tree_document(parts: _XadesParts) -> _Document:
    """The signature built element by element, canonicalised by libxml2: the reference of the text writer.

    Every value the text writer does not take (one that XML would escape, an empty one) comes here.
    """
    digest_algorithm = parts.digest_algorithm
    xades_version = parts.xades_version
    xml_id = parts.xml_id
    root = etree.Element(_ds("Signature"), nsmap={"ds": DS_NS})
    root.set("Id", xml_id)
    signed_info = etree.SubElement(root, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=C14N_WITH_COMMENTS)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=parts.signature_algorithm.value)
    manifest_digest = _reference(signed_info, f"#{MANIFEST_ID}", digest_algorithm, type_=MANIFEST_TYPE)
    properties_digest = _reference(
        signed_info, f"#{SIGNED_PROPERTIES_ID}", digest_algorithm, type_=xades_version.signed_properties_type
    )
    signature_value = etree.SubElement(root, _ds("SignatureValue"))
    x509_data = etree.SubElement(etree.SubElement(root, _ds("KeyInfo")), _ds("X509Data"))
    for cert in parts.certificates:
        etree.SubElement(x509_data, _ds("X509Certificate")).text = _der_base64(cert)

    properties = etree.SubElement(etree.SubElement(root, _ds("Object")), _ds("SignatureProperties"))
    purpose = etree.SubElement(properties, _ds("SignatureProperty"), Id=PURPOSE_PROPERTY_ID, Target=f"#{xml_id}")
    purpose.text = PURPOSE_OF_SIGNATURE

    manifest = _manifest(etree.SubElement(root, _ds("Object")), parts.references, digest_algorithm)

    qualifying = etree.SubElement(
        etree.SubElement(root, _ds("Object")),
        f"{{{xades_version.value}}}QualifyingProperties",
        nsmap={"xades": xades_version.value},
        Target=f"#{xml_id}",
    )
    signed_properties = _signed_properties(
        qualifying,
        xades_version,
        signing_time=parts.signing_time,
        certificates=parts.certificates,
        cert_digest=parts.cert_digest,
    )

    # Same-document references without transforms are digested after C14N 1.0 without comments
    # (XML-DSig §4.3.3.3); the manifest and the properties hold no comment, so DRIMbox's
    # with-comments digest is the same value.
    manifest_digest.text = b64(digest(canonicalize(manifest, C14N), digest_algorithm))
    properties_digest.text = b64(digest(canonicalize(signed_properties, C14N), digest_algorithm))

    def finish(value: str) -> bytes:
        signature_value.text = value
        return to_bytes(root)

    return _Document(canonicalize(signed_info, C14N_WITH_COMMENTS), finish)


_PLAIN: Final = re.compile(r"[^&<>\"\t\n\r]+\Z")
"""A value that canonical XML and lxml's serialisation both write as it is (nothing to escape)."""
_OUTSIDE_XML: Final = re.compile("[^\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _plain(value: object) -> str:
    if type(value) is not str:
        raise _NotPlain
    # Printable ASCII (U+0020 to U+007E: XML characters, no white space to escape) needs four substring tests
    # rather than the two regular expressions (eight values a signature, issue 22).
    if value.isascii() and value.isprintable():
        if not value or "&" in value or "<" in value or ">" in value or '"' in value:
            raise _NotPlain
        return value
    if not _PLAIN.match(value) or _OUTSIDE_XML.search(value):
        raise _NotPlain
    return value


class _NotPlain(Exception):
    """A value the text writer does not take; the tree builder decides."""


def _empty(tag: str, attribute: str, value: str, *, canonical: bool) -> str:
    """An empty element with one attribute: start and end tags in canonical XML, one tag as lxml writes it."""
    if canonical:
        return f'<{tag} {attribute}="{value}"></{tag}>'
    return f'<{tag} {attribute}="{value}"/>'


@dataclass(frozen=True)
class _SignerText:
    """The parts of the text writer's output that depend only on the signer's certificates and the profile.

    Written once for each list of certificate objects, CertDigest algorithm and XAdES version (issue 22):
    the SignedProperties around their SigningTime in both forms (canonical, then as lxml writes it), and
    the KeyInfo's certificates.
    """

    properties_head: tuple[str, str]
    """From ``<xades:SignedProperties`` to the ``<xades:SigningTime>`` start tag, canonical and not."""
    properties_tail: tuple[str, str]
    """From the ``</xades:SigningTime>`` end tag to ``</xades:SignedProperties>``, canonical and not."""
    key_info: str
    """The ``ds:X509Certificate`` elements."""


_KEPT_SIGNER_TEXTS: Final = 16
_SIGNER_TEXTS: dict[tuple[object, ...], tuple[tuple[x509.Certificate, ...], _SignerText | None]] = {}
_SIGNER_TEXTS_LOCK: Final = threading.Lock()


def _signer_text(
    certificates: tuple[x509.Certificate, ...], cert_digest: DigestAlgorithm, xades_version: XadesVersion
) -> _SignerText | None:
    """:func:`_write_signer_text`, kept for these very certificate objects (found by identity, never another
    certificate's, even an equal one: the entry holds the objects, so their ids are not reused while it lives)."""
    key = (*map(id, certificates), cert_digest, xades_version)
    entry = _SIGNER_TEXTS.get(key)
    if (
        entry is not None
        and len(entry[0]) == len(certificates)
        and all(kept is cert for kept, cert in zip(entry[0], certificates, strict=True))
    ):
        return entry[1]
    text = _write_signer_text(certificates, cert_digest, xades_version)
    with _SIGNER_TEXTS_LOCK:
        while len(_SIGNER_TEXTS) >= _KEPT_SIGNER_TEXTS:
            del _SIGNER_TEXTS[next(iter(_SIGNER_TEXTS))]
        _SIGNER_TEXTS[key] = (certificates, text)
    return text


def _write_signer_text(
    certificates: tuple[x509.Certificate, ...], cert_digest: DigestAlgorithm, xades_version: XadesVersion
) -> _SignerText | None:
    """The certificates' share of the text writer's output; None when a value is not plain (the tree decides)."""
    try:
        facts = [
            (
                _cert_digest(cert, cert_digest),
                _plain(_issuer_name(cert)),
                _plain(str(cert.serial_number)),
                _der_base64(cert),
            )
            for cert in certificates
        ]
    except _NotPlain:
        return None
    x = "xades:"
    d = "xades:" if xades_version is XadesVersion.V1_1_1 else "ds:"

    def head(canonical: bool) -> str:
        namespaces = f' xmlns:ds="{DS_NS}" xmlns:xades="{xades_version.value}"' if canonical else ""
        return (
            f'<{x}SignedProperties{namespaces} Id="{SIGNED_PROPERTIES_ID}"><{x}SignedSignatureProperties>'
            f"<{x}SigningTime>"
        )

    def tail(canonical: bool) -> str:
        items = [f"</{x}SigningTime><{x}SigningCertificate>"]
        for digest_value, issuer, serial, _ in facts:
            items.append(
                f"<{x}Cert><{x}CertDigest>"
                f"{_empty(d + 'DigestMethod', 'Algorithm', cert_digest.value, canonical=canonical)}"
                f"<{d}DigestValue>{digest_value}</{d}DigestValue></{x}CertDigest><{x}IssuerSerial>"
                f"<ds:X509IssuerName>{issuer}</ds:X509IssuerName><ds:X509SerialNumber>{serial}</ds:X509SerialNumber>"
                f"</{x}IssuerSerial></{x}Cert>"
            )
        implied = (
            f"<{x}SignaturePolicyImplied></{x}SignaturePolicyImplied>" if canonical else f"<{x}SignaturePolicyImplied/>"
        )
        objects = (
            f"<{x}SignedDataObjectProperties></{x}SignedDataObjectProperties>"
            if canonical
            else f"<{x}SignedDataObjectProperties/>"
        )
        items.append(
            f"</{x}SigningCertificate><{x}SignaturePolicyIdentifier>{implied}</{x}SignaturePolicyIdentifier>"
            f"</{x}SignedSignatureProperties>{objects}</{x}SignedProperties>"
        )
        return "".join(items)

    return _SignerText(
        properties_head=(head(True), head(False)),
        properties_tail=(tail(True), tail(False)),
        key_info="".join(f"<ds:X509Certificate>{der}</ds:X509Certificate>" for *_, der in facts),
    )


def _text_document(parts: _XadesParts) -> _Document | None:
    """The signature written as text, in its canonical form for the digests and lxml's form for the document.

    Every value written is plain (no character that either form escapes, none that XML refuses, not
    empty), so the two forms differ only where the forms themselves do: the namespace declarations
    inclusive C14N repeats on the apex of each canonicalised part, and empty elements (start and
    end tags when canonical, one tag in the document). None when a value is not plain: the tree
    builder then writes it. What depends on the certificates alone is written once (:func:`_signer_text`).
    """
    try:
        xml_id = _plain(parts.xml_id)
        references = [(_plain(uri), transform, _plain(value)) for uri, transform, value in parts.references]
        signing_time = _plain(parts.signing_time)
    except _NotPlain:
        return None
    signer = _signer_text(parts.certificates, parts.cert_digest, parts.xades_version)
    if signer is None:
        return None
    digest_method = parts.digest_algorithm.value
    ds_declaration = f' xmlns:ds="{DS_NS}"'

    def manifest(canonical: bool) -> str:
        items = [f'<ds:Manifest{ds_declaration if canonical else ""} Id="{MANIFEST_ID}">']
        for uri, transform, value in references:
            items.append(f'<ds:Reference URI="{uri}">')
            if transform is not None:
                items.append(f"<ds:Transforms>{_empty('ds:Transform', 'Algorithm', transform, canonical=canonical)}")
                items.append("</ds:Transforms>")
            items.append(_empty("ds:DigestMethod", "Algorithm", digest_method, canonical=canonical))
            items.append(f"<ds:DigestValue>{value}</ds:DigestValue></ds:Reference>")
        items.append("</ds:Manifest>")
        return "".join(items)

    def signed_properties(canonical: bool) -> str:
        form = 0 if canonical else 1
        return f"{signer.properties_head[form]}{signing_time}{signer.properties_tail[form]}"

    def signed_info(canonical: bool, manifest_value: str, properties_value: str) -> str:
        return (
            f"<ds:SignedInfo{ds_declaration if canonical else ''}>"
            f"{_empty('ds:CanonicalizationMethod', 'Algorithm', C14N_WITH_COMMENTS, canonical=canonical)}"
            f"{_empty('ds:SignatureMethod', 'Algorithm', parts.signature_algorithm.value, canonical=canonical)}"
            f'<ds:Reference Type="{MANIFEST_TYPE}" URI="#{MANIFEST_ID}">'
            f"{_empty('ds:DigestMethod', 'Algorithm', digest_method, canonical=canonical)}"
            f"<ds:DigestValue>{manifest_value}</ds:DigestValue></ds:Reference>"
            f'<ds:Reference Type="{parts.xades_version.signed_properties_type}" URI="#{SIGNED_PROPERTIES_ID}">'
            f"{_empty('ds:DigestMethod', 'Algorithm', digest_method, canonical=canonical)}"
            f"<ds:DigestValue>{properties_value}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        )

    manifest_value = b64(digest(manifest(True).encode("utf-8"), parts.digest_algorithm))
    properties_value = b64(digest(signed_properties(True).encode("utf-8"), parts.digest_algorithm))
    key_info = signer.key_info

    def finish(value: str) -> bytes:
        return (
            f"<?xml version='1.0' encoding='UTF-8'?>\n"
            f'<ds:Signature xmlns:ds="{DS_NS}" Id="{xml_id}">{signed_info(False, manifest_value, properties_value)}'
            f"<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>{key_info}</ds:X509Data>"
            f"</ds:KeyInfo><ds:Object><ds:SignatureProperties>"
            f'<ds:SignatureProperty Id="{PURPOSE_PROPERTY_ID}" Target="#{xml_id}">{PURPOSE_OF_SIGNATURE}'
            f"</ds:SignatureProperty></ds:SignatureProperties></ds:Object><ds:Object>{manifest(False)}</ds:Object>"
            f'<ds:Object><xades:QualifyingProperties xmlns:xades="{parts.xades_version.value}" Target="#{xml_id}">'
            f"{signed_properties(False)}</xades:QualifyingProperties></ds:Object></ds:Signature>"
        ).encode()

    return _Document(signed_info(True, manifest_value, properties_value).encode("utf-8"), finish)


def _signature_matches(cert: x509.Certificate, raw: bytes, data: bytes, algorithm: SignatureAlgorithm) -> bool:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(raw, data, padding.PKCS1v15(), algorithm.hash)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Verifying


class VerifiedSignature(BaseModel):
    """What a verified submission-set signature proves: who signed which documents, and when."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", arbitrary_types_allowed=True)

    signature_id: str
    """``ds:Signature/@Id`` (the signature entry's uniqueId in the usual shape)."""
    submission_set_unique_id: str
    """The submission set the manifest names (checked against the expected one)."""
    document_unique_ids: tuple[str, ...]
    """The signed documents' uniqueIds, in manifest order; each digest was checked."""
    signing_time: dt.datetime
    """The signed XAdES SigningTime, in UTC."""
    certificate: x509.Certificate
    """The signing certificate (checked against ``trusted`` at SigningTime and now)."""
    signature_algorithm: SignatureAlgorithm
    """The SignatureMethod."""
    digest_algorithm: DigestAlgorithm
    """The DigestMethod of the manifest reference in SignedInfo."""
    xades_version: XadesVersion
    """The XAdES namespace found."""


def _fail(reason: str, message: str, *, hint: str | None = None) -> SignatureVerificationError:
    return SignatureVerificationError(f"submission-set signature: {message}", reason=reason, hint=hint)


def _signed_text(node: etree._Element | None) -> str | None:
    """The text of a signed element as its canonical form has it: comments left out, not cut at.

    Under C14N 1.0 without comments a comment is not signed, so one can be slipped into a signed
    value without breaking the signature; ``node.text`` would then stop at it (a SigningTime of
    ``2026-11-25<!---->T19:35:06Z`` read as midnight). Joining the text around comments reads
    exactly what was signed.
    """
    if node is None:
        return None
    return "".join(str(text) for text in node.itertext())


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname


def _elements(node: etree._Element) -> list[etree._Element]:
    """Element children only (comments and processing instructions are skipped)."""
    return [child for child in node if isinstance(child.tag, str)]


@dataclass(frozen=True)
class _Parts:
    """The signature's parts, each found at its one allowed position."""

    signature_id: str
    signed_info: etree._Element
    c14n_method: str | None
    signature_method: str | None
    references: tuple[tuple[etree._Element, etree._Element], ...]
    """(SignedInfo reference, the element it resolves to)."""
    signature_value: etree._Element
    certificates: tuple[x509.Certificate, ...]
    manifest: etree._Element
    signed_properties: etree._Element
    xades_version: XadesVersion


_ID_NAMES = frozenset({"Id", "ID", "id"})
_SINGLETONS = {
    _ds("Signature"): "ds:Signature",
    _ds("SignedInfo"): "ds:SignedInfo",
    _ds("SignatureValue"): "ds:SignatureValue",
    _ds("KeyInfo"): "ds:KeyInfo",
    _ds("Manifest"): "ds:Manifest",
    _ds("SignatureProperties"): "ds:SignatureProperties",
} | {
    f"{{{version.value}}}{name}": f"xades:{name}"
    for version in XadesVersion
    for name in ("QualifyingProperties", "SignedProperties")
}


def _scan(root: etree._Element) -> dict[str, etree._Element]:
    """Index every Id of the document, refusing a repeated Id or a repeated signature part."""
    seen_ids: dict[str, etree._Element] = {}
    counts: dict[str, int] = {}
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        label = _SINGLETONS.get(node.tag)
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
        for name, raw_value in node.attrib.items():
            if etree.QName(name).localname in _ID_NAMES:
                value = str(raw_value)
                if value in seen_ids:
                    raise _fail("wrapping", f"the Id {value!r} is used by more than one element")
                seen_ids[value] = node
    repeated = sorted(label for label, count in counts.items() if count > 1)
    if repeated:
        raise _fail("wrapping", f"the document holds more than one {', '.join(repeated)}")
    return seen_ids


_OBJECT_KINDS = ("SignatureProperties", "Manifest", "QualifyingProperties")


def _objects(objects: Sequence[etree._Element]) -> dict[str, etree._Element]:
    """The content of the ``ds:Object`` elements: one purpose property, one Manifest, one QualifyingProperties."""
    found: dict[str, etree._Element] = {}
    for obj in objects:
        content = _elements(obj)
        if len(content) != 1:
            raise _fail("malformed", "each ds:Object must hold exactly one element")
        element = content[0]
        kind = _local(element) if element.tag in _SINGLETONS else None
        if kind not in _OBJECT_KINDS:
            raise _fail("malformed", f"unexpected {_local(element)} in a ds:Object")
        if kind in found:
            raise _fail("wrapping", f"the signature holds more than one {kind}")
        found[kind] = element
    missing = [k for k in _OBJECT_KINDS if k not in found]
    if missing:
        raise _fail("malformed", f"missing {', '.join(missing)}")
    return found


def _resolve(
    references: Sequence[etree._Element], seen_ids: Mapping[str, etree._Element], expected: Mapping[int, str]
) -> tuple[tuple[etree._Element, etree._Element], ...]:
    """Pair each SignedInfo reference with its target, which must be one of ``expected`` (by identity)."""
    resolved: list[tuple[etree._Element, etree._Element]] = []
    for reference in references:
        uri = reference.get("URI") or ""
        target = seen_ids.get(uri[1:]) if uri.startswith("#") else None
        if target is None or id(target) not in expected:
            raise _fail("wrapping", f"a SignedInfo reference ({uri or 'no URI'}) points outside this signature's parts")
        ref_type = reference.get("Type")
        if ref_type is not None and ref_type != expected[id(target)]:
            raise _fail("malformed", f"the reference {uri} has Type {ref_type}, expected {expected[id(target)]}")
        resolved.append((reference, target))
    if {id(target) for _, target in resolved} != set(expected):
        raise _fail("wrapping", "SignedInfo must cover both the Manifest and the SignedProperties")
    return tuple(resolved)


def _key_info_certificates(key_info: etree._Element) -> tuple[x509.Certificate, ...]:
    x509_data = _elements(key_info)
    if len(x509_data) != 1 or x509_data[0].tag != _ds("X509Data"):
        raise _fail("malformed", "KeyInfo must hold one X509Data")
    certificates: list[x509.Certificate] = []
    for node in _elements(x509_data[0]):
        if node.tag != _ds("X509Certificate"):
            continue
        certificates.append(load_certificate(node.text))
    if not certificates:
        raise _fail("malformed", "KeyInfo carries no X509Certificate")
    return tuple(certificates)


def _locate(root: etree._Element) -> _Parts:
    """Find each part at its fixed position, refusing every shape a wrapping attack needs.

    A reference is resolved only among this signature's own parts: each Id must be unique in the
    whole document, and each element a reference may point to must sit where the profile puts it
    and nowhere else (one SignedInfo, one Manifest, one SignedProperties in the whole document).
    """
    if root.tag != _ds("Signature"):
        raise _fail("malformed", "the document's root is not ds:Signature")
    signature_id = root.get("Id")
    if not signature_id:
        raise _fail("malformed", "ds:Signature has no Id")
    seen_ids = _scan(root)

    children = _elements(root)
    names = [child.tag for child in children]
    if names[:3] != [_ds("SignedInfo"), _ds("SignatureValue"), _ds("KeyInfo")] or any(
        tag != _ds("Object") for tag in names[3:]
    ):
        raise _fail("malformed", "ds:Signature must hold SignedInfo, SignatureValue, KeyInfo, then ds:Object elements")
    signed_info, signature_value, key_info = children[:3]
    found = _objects(children[3:])

    manifest = found["Manifest"]
    qualifying = found["QualifyingProperties"]
    version = XadesVersion(etree.QName(qualifying).namespace)
    if qualifying.get("Target") != f"#{signature_id}":
        raise _fail("wrapping", "QualifyingProperties does not target this signature")
    qualifying_children = _elements(qualifying)
    if not qualifying_children or qualifying_children[0].tag != f"{{{version.value}}}SignedProperties":
        raise _fail("malformed", "QualifyingProperties does not start with SignedProperties")
    if any(_local(c) != "UnsignedProperties" for c in qualifying_children[1:]):
        raise _fail("malformed", "QualifyingProperties holds something other than Signed/UnsignedProperties")
    signed_properties = qualifying_children[0]

    info = _elements(signed_info)
    if (
        len(info) != 4
        or info[0].tag != _ds("CanonicalizationMethod")
        or info[1].tag != _ds("SignatureMethod")
        or any(r.tag != _ds("Reference") for r in info[2:])
    ):
        raise _fail(
            "malformed", "SignedInfo must hold CanonicalizationMethod, SignatureMethod and exactly two References"
        )
    expected = {id(manifest): MANIFEST_TYPE, id(signed_properties): version.signed_properties_type}
    references = _resolve(info[2:], seen_ids, expected)
    _check_purpose(found["SignatureProperties"], signature_id)

    return _Parts(
        signature_id=signature_id,
        signed_info=signed_info,
        c14n_method=info[0].get("Algorithm"),
        signature_method=info[1].get("Algorithm"),
        references=references,
        signature_value=signature_value,
        certificates=_key_info_certificates(key_info),
        manifest=manifest,
        signed_properties=signed_properties,
        xades_version=version,
    )


def _check_purpose(properties: etree._Element, signature_id: str) -> None:
    """Shape of the purpose property. The profile does not sign it (nor KeyInfo): only its form is checked."""
    items = _elements(properties)
    if len(items) != 1 or items[0].tag != _ds("SignatureProperty"):
        raise _fail("malformed", "SignatureProperties must hold one SignatureProperty")
    purpose = items[0]
    if _elements(purpose) or purpose.get("Id") != PURPOSE_PROPERTY_ID:
        raise _fail("malformed", f"the purpose property must be Id={PURPOSE_PROPERTY_ID!r} and hold text only")
    if purpose.get("Target") != f"#{signature_id}":
        raise _fail("wrapping", "the purpose-of-signature property does not target this signature")
    if (_signed_text(purpose) or "").strip() != PURPOSE_OF_SIGNATURE:
        raise _fail("malformed", f"the purpose of signature is not {PURPOSE_OF_SIGNATURE} (Source)")


def _transform_of(reference: etree._Element) -> str | None:
    """The reference's one canonicalisation transform, or None; anything else is refused."""
    transforms = reference.find(_ds("Transforms"))
    if transforms is None:
        return None
    items = _elements(transforms)
    algorithm = items[0].get("Algorithm") if len(items) == 1 and items[0].tag == _ds("Transform") else None
    if algorithm not in C14N_ALGORITHMS:
        raise _fail("malformed", "a reference carries a transform other than one C14N 1.0 canonicalisation")
    return algorithm


def _digest_of(reference: etree._Element, ns: str = DS_NS) -> tuple[DigestAlgorithm, bytes]:
    method = reference.find(f"{{{ns}}}DigestMethod")
    value = reference.find(f"{{{ns}}}DigestValue")
    if method is None or value is None:
        raise _fail("malformed", "a reference lacks DigestMethod or DigestValue")
    try:
        return DigestAlgorithm(method.get("Algorithm", "")), unb64(_signed_text(value))
    except ValueError as exc:
        raise _fail("malformed", f"unsupported digest method or bad digest value ({method.get('Algorithm')})") from exc


def _check_signature_value(parts: _Parts) -> SignatureAlgorithm:
    c14n_method = parts.c14n_method
    if c14n_method not in C14N_ALGORITHMS:
        raise _fail("malformed", f"unsupported CanonicalizationMethod {c14n_method}")
    try:
        algorithm = SignatureAlgorithm(parts.signature_method or "")
        raw = unb64(parts.signature_value.text)
    except ValueError as exc:
        raise _fail("malformed", "unsupported SignatureMethod or SignatureValue not in base64") from exc
    if not _signature_matches(parts.certificates[0], raw, canonicalize(parts.signed_info, c14n_method), algorithm):
        raise _fail("bad_signature", "the SignatureValue does not verify with the signing certificate")
    return algorithm


def _check_signed_references(parts: _Parts) -> DigestAlgorithm:
    manifest_algorithm = DigestAlgorithm.SHA256
    for reference, target in parts.references:
        transform = _transform_of(reference) or C14N
        algorithm, expected = _digest_of(reference)
        if not digest_equal(expected, digest(canonicalize(target, transform), algorithm)):
            what = "Manifest" if target is parts.manifest else "SignedProperties"
            raise _fail("bad_signature", f"the {what} was changed after signing (its digest in SignedInfo differs)")
        if target is parts.manifest:
            manifest_algorithm = algorithm
    return manifest_algorithm


def _signing_time(parts: _Parts) -> dt.datetime:
    ns = parts.xades_version.value
    node = parts.signed_properties.find(f"{{{ns}}}SignedSignatureProperties/{{{ns}}}SigningTime")
    try:
        moment = dt.datetime.fromisoformat((_signed_text(node) or "").strip()) if node is not None else None
    except ValueError:
        moment = None
    if moment is None:
        raise _fail("malformed", "SigningTime is missing or not an xsd:dateTime")
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _check_signing_certificate(parts: _Parts) -> None:
    """The signed SigningCertificate must name the certificate whose key made the signature."""
    ns = parts.xades_version.value
    signer = parts.certificates[0]
    for cert in parts.signed_properties.iterfind(
        f"{{{ns}}}SignedSignatureProperties/{{{ns}}}SigningCertificate/{{{ns}}}Cert"
    ):
        digest_node = cert.find(f"{{{ns}}}CertDigest")
        serial = _signed_text(cert.find(f"{{{ns}}}IssuerSerial/{_ds('X509SerialNumber')}"))
        if digest_node is None:
            continue
        # 1.1.1 puts DigestMethod/DigestValue in its own namespace; some producers use ds: there too.
        digest_ns = ns if digest_node.find(f"{{{ns}}}DigestMethod") is not None else DS_NS
        algorithm, value = _digest_of(digest_node, digest_ns)
        if digest_equal(value, digest(_der(signer), algorithm)) and (serial or "").strip() == str(signer.serial_number):
            return
    raise _fail("bad_signature", "SigningCertificate does not name the certificate that signed")


def _check_trust(
    certificates: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    signing_time: dt.datetime,
    now: dt.datetime,
) -> None:
    """The signer must chain up to ``trusted``, with every certificate valid when it signed and now.

    There is no time-stamp to prove when it signed, so a certificate that expired since is refused.
    """
    # verify_certificate_path at the signing time, then now: the path (its signatures and CA flags)
    # and the key usage do not depend on the moment, so they are checked once, in the same order
    # (path, dates at the signing time, key usage, dates now) and with the same errors.
    path = certificate_path(certificates, trusted)
    for index, (moment, when) in enumerate(((signing_time, "at the signing time"), (now, "now"))):
        try:
            check_validity(path, moment)
        except SignatureVerificationError as exc:
            raise _fail("expired_certificate", f"{exc.message} (checked {when})", hint=exc.hint) from exc
        if index == 0:
            check_key_usage(path[0])


def _cda_rule(is_cda: Mapping[str, bool] | Callable[[str], bool] | None, unique_id: str) -> bool | None:
    if is_cda is None:
        return None
    if isinstance(is_cda, Mapping):
        return is_cda.get(unique_id)
    return is_cda(unique_id)


def _check_manifest(
    parts: _Parts,
    *,
    documents: Mapping[str, bytes],
    submission_set_unique_id: str,
    is_cda: Mapping[str, bool] | Callable[[str], bool] | None,
    limits: XmlLimits,
) -> tuple[str, ...]:
    references = _elements(parts.manifest)
    if not references or any(r.tag != _ds("Reference") for r in references):
        raise _fail("malformed", "the Manifest must hold only References, at least one")
    if references[0].get("URI") != f"urn:oid:{submission_set_unique_id}":
        raise _fail("manifest_mismatch", "the Manifest's first reference is not the expected submission set")
    listed: list[str] = []
    for reference in references[1:]:
        uri = reference.get("URI") or ""
        if not uri.startswith("urn:oid:"):
            raise _fail("manifest_mismatch", "a document reference is not a urn:oid: uniqueId")
        listed.append(uri.removeprefix("urn:oid:"))
    missing = sorted(set(documents) - set(listed))
    extra = sorted(set(listed) - set(documents))
    if missing or extra or len(set(listed)) != len(listed):
        problems = [f"not signed: {i}" for i in missing] + [f"signed but not supplied: {i}" for i in extra]
        if len(set(listed)) != len(listed):
            problems.append("a document is listed twice")
        raise SignatureVerificationError(
            "submission-set signature: the signed documents are not the documents of the submission",
            reason="manifest_mismatch",
            problems=problems,
        )
    for unique_id, reference in zip(listed, references[1:], strict=True):
        transform = _transform_of(reference)
        cda = _cda_rule(is_cda, unique_id)
        if cda is not None and (transform == C14N_WITH_COMMENTS) != cda:
            expected = "C14N with comments" if cda else "no transform"
            raise _fail("manifest_mismatch", f"the reference to {unique_id} should carry {expected}")
        algorithm, expected_digest = _digest_of(reference)
        try:
            actual = document_digest(documents[unique_id], algorithm, transform=transform, limits=limits)
        except NotXmlError as exc:
            raise _fail("digest_mismatch", f"document {unique_id} is not the XML document that was signed") from exc
        if not digest_equal(expected_digest, actual):
            raise _fail("digest_mismatch", f"document {unique_id} is not the document that was signed")
    return tuple(listed)


def _refuse_sha1(root: etree._Element) -> None:
    sha1 = {SignatureAlgorithm.RSA_SHA1.value, DigestAlgorithm.SHA1.value}
    for node in root.iter():
        is_method = isinstance(node.tag, str) and _local(node) in ("SignatureMethod", "DigestMethod")
        if is_method and node.get("Algorithm") in sha1:
            raise _fail("malformed", "the signature uses SHA-1, which allow_sha1=False refuses")


def verify_submission_set_signature(
    xml: bytes,
    *,
    documents: Mapping[str, bytes],
    submission_set_unique_id: str,
    trusted: Sequence[x509.Certificate],
    now: dt.datetime | None = None,
    is_cda: Mapping[str, bool] | Callable[[str], bool] | None = None,
    allow_sha1: bool = True,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> VerifiedSignature:
    """Verify a submission-set signature against the documents deposited with it.

    ``documents`` maps each document's uniqueId to its bytes; the manifest must list exactly
    these, after the submission set ``submission_set_unique_id``. ``trusted`` are the CA (or
    pinned) certificates the signer must chain up to; every certificate of the path must be
    valid at the signed SigningTime and at ``now``. With ``is_cda`` (a mapping or a predicate on
    the uniqueId) each reference must also follow the profile: C14N with comments for a CDA, no
    transform otherwise; without it the declared transform is applied. SHA-1 (the profile of the
    public implementations) is accepted unless ``allow_sha1=False``.

    Raises :class:`~dmp_connector.errors.SignatureVerificationError` whose ``reason`` is
    ``malformed``, ``wrapping``, ``bad_signature``, ``untrusted_certificate``,
    ``expired_certificate``, ``manifest_mismatch`` or ``digest_mismatch``.
    """
    try:
        root = parse_xml(xml, limits=limits, what="the submission-set signature")
    except (MalformedResponseError, UnsafeXmlError) as exc:
        raise _fail("malformed", f"not acceptable XML ({exc.message})") from exc
    parts = _locate(root)
    if not allow_sha1:
        _refuse_sha1(root)
    signature_algorithm = _check_signature_value(parts)
    digest_algorithm = _check_signed_references(parts)
    _check_signing_certificate(parts)
    signing_time = _signing_time(parts)
    _check_trust(parts.certificates, trusted, signing_time, (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    listed = _check_manifest(
        parts, documents=documents, submission_set_unique_id=submission_set_unique_id, is_cda=is_cda, limits=limits
    )
    return VerifiedSignature(
        signature_id=parts.signature_id,
        submission_set_unique_id=submission_set_unique_id,
        document_unique_ids=listed,
        signing_time=signing_time,
        certificate=parts.certificates[0],
        signature_algorithm=signature_algorithm,
        digest_algorithm=digest_algorithm,
        xades_version=parts.xades_version,
    )
