"""The DMP's submission-set signature: shape, schemas, cross-checks by xmlsec1 and signxml, tampering, wrapping.

Which tool checks what:
* our verifier — everything: structure and wrapping, SignatureValue, SignedInfo digests,
  SigningCertificate, chain and dates, the manifest's document set and each document digest;
* ``xmlsec1 --verify --ignore-manifests`` — SignatureValue, the Manifest and SignedProperties
  digests, the certificate chain up to the test CA (it cannot dereference ``urn:oid:`` URIs, so
  the manifest's own references are left to…);
* ``xmlsec1 --sign`` over a template that names the documents by ``file://`` URI with the same
  transforms — an independent computation of every manifest digest (libxml2 C14N + OpenSSL);
* signxml ``XMLVerifier`` — SignatureValue and both SignedInfo digests, chain to the test CA;
  ``XAdESVerifier`` also checks SigningCertificate, for the 1.3.2 namespace it knows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureMethod
from signxml.algorithms import DigestAlgorithm as SignxmlDigest
from signxml.verifier import SignatureConfiguration, XMLVerifier
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from dmp_connector.config import SigningSettings
from dmp_connector.errors import ConfigurationError, InvalidIdentifierError, SignatureVerificationError, ValidationError
from dmp_connector.sandbox import IssuedCertificate, TestPki
from dmp_connector.signature import DigestAlgorithm, FileSigner, SignatureAlgorithm
from dmp_connector.signature._manifest import C14N, C14N_WITH_COMMENTS, document_digest
from dmp_connector.signature.xades import (
    SigningCertificateScope,
    SubmissionSetSignatureProfile,
    SubmittedDocument,
    VerifiedSignature,
    XadesVersion,
    new_unique_id,
    sign_submission_set,
    verify_submission_set_signature,
)
from dmp_connector.xml import parse_xml
from tests.conftest import PkiFiles

DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"ds": DS}
XADES_DATA = Path(__file__).resolve().parents[1] / "data" / "xades"
REAL_CDA = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA" / "AVC-SUNV_2022.01.xml"

SUBMISSION_SET = "1.2.250.1.999.7.1"
CDA_ID = "1.2.250.1.999.7.2"
PDF_ID = "1.2.250.1.999.7.3"
SIGNATURE_ID = "1.2.250.1.999.7.4"

CDA = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    b"<!-- a comment is signed content under C14N with comments -->"
    b'<id root="1.2.250.1.999.7.2"/><title>Compte rendu</title></ClinicalDocument>\n'
)
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\n%%EOF\n"

PROFILES = {
    "sha256-1.1.1": SubmissionSetSignatureProfile(),
    "sha1-1.1.1": SubmissionSetSignatureProfile.sha1(),
    "sha256-1.3.2": SubmissionSetSignatureProfile(xades_version=XadesVersion.V1_3_2),
    "sha256-chain": SubmissionSetSignatureProfile(certificate_scope=SigningCertificateScope.CHAIN),
}


@dataclass(frozen=True)
class Keys:
    pki: TestPki
    signing: IssuedCertificate
    signer: FileSigner
    ca_pem: Path
    other: IssuedCertificate
    old_pki: TestPki
    expired: IssuedCertificate


@pytest.fixture(scope="module")
def keys(pki_files: PkiFiles, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    pki = pki_files.pki
    signing = pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    other = TestPki.create(name="another root CA").issue_client("Cabinet Test SIGN")
    now = dt.datetime.now(dt.UTC)
    old_pki = TestPki.create(name="a root CA made long ago", now=now - dt.timedelta(days=500))
    expired = old_pki.issue_organisation_sign(
        organisation="CABINET TEST",
        structure_id="1123456789",
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=30),
    )
    ca_pem = tmp_path_factory.mktemp("xades") / "ca.pem"
    ca_pem.write_bytes(pki.ca_pem)
    signer = FileSigner([signing.certificate, pki.ca.certificate], signing.key)
    return Keys(pki, signing, signer, ca_pem, other, old_pki, expired)


def _documents(cda: bytes = CDA, pdf: bytes = PDF) -> list[SubmittedDocument]:
    return [
        SubmittedDocument(unique_id=CDA_ID, content=cda, is_cda=True),
        SubmittedDocument(unique_id=PDF_ID, content=pdf, is_cda=False),
    ]


def _sign(
    keys: Keys,
    profile: SubmissionSetSignatureProfile = PROFILES["sha256-1.1.1"],
    *,
    signature_xml_id: str | None = None,
) -> bytes:
    return sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=keys.signer,
        unique_id=SIGNATURE_ID,
        profile=profile,
        signature_xml_id=signature_xml_id,
    ).xml


IS_CDA = {CDA_ID: True, PDF_ID: False}


def _verify(
    keys: Keys,
    xml: bytes,
    *,
    documents: Mapping[str, bytes] | None = None,
    submission_set_unique_id: str = SUBMISSION_SET,
    trusted: Sequence[x509.Certificate] | None = None,
    now: dt.datetime | None = None,
    is_cda: Mapping[str, bool] | Callable[[str], bool] | None = IS_CDA,
    allow_sha1: bool = True,
) -> VerifiedSignature:
    return verify_submission_set_signature(
        xml,
        documents={CDA_ID: CDA, PDF_ID: PDF} if documents is None else documents,
        submission_set_unique_id=submission_set_unique_id,
        trusted=[keys.pki.ca.certificate] if trusted is None else trusted,
        now=now,
        is_cda=is_cda,
        allow_sha1=allow_sha1,
    )


def _refused(keys: Keys, xml: bytes, reason: str, **overrides: Any) -> SignatureVerificationError:
    with pytest.raises(SignatureVerificationError) as info:
        _verify(keys, xml, **overrides)
    assert info.value.reason == reason, str(info.value)
    return info.value


def _tree(xml: bytes) -> etree._Element:
    return parse_xml(xml)


def _text(root: etree._Element, path: str) -> str:
    found = root.xpath(path, namespaces={**NS, "x": XadesVersion.V1_1_1.value})
    assert isinstance(found, list) and found, path
    node = found[0]
    return node if isinstance(node, str) else (node.text or "")  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# Shape


def test_the_document_has_the_shape_the_dmp_receives(keys: Keys) -> None:
    moment = dt.datetime.now(dt.UTC)
    signature = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=keys.signer,
        unique_id=SIGNATURE_ID,
        signing_time=moment,
    )
    assert signature.signing_time == moment.replace(microsecond=0)
    root = _tree(signature.xml)
    assert root.tag == f"{{{DS}}}Signature"
    assert root.get("Id") == SIGNATURE_ID
    assert [etree.QName(c).localname for c in root] == [
        "SignedInfo",
        "SignatureValue",
        "KeyInfo",
        "Object",
        "Object",
        "Object",
    ]
    assert _text(root, "ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm") == C14N_WITH_COMMENTS
    assert _text(root, "ds:SignedInfo/ds:SignatureMethod/@Algorithm") == SignatureAlgorithm.RSA_SHA256
    refs = root.findall("ds:SignedInfo/ds:Reference", NS)
    assert [(r.get("URI"), r.get("Type")) for r in refs] == [
        ("#IHEManifest", f"{DS}Manifest"),
        ("#S0-SignedProperties", "http://uri.etsi.org/01903/v1.1.1#SignedProperties"),
    ]
    assert all(r.find("ds:Transforms", NS) is None for r in refs)
    cert_b64 = _text(root, "ds:KeyInfo/ds:X509Data/ds:X509Certificate")
    assert base64.b64decode(cert_b64) == keys.signing.certificate.public_bytes(serialization.Encoding.DER)

    prop = root.find("ds:Object/ds:SignatureProperties/ds:SignatureProperty", NS)
    assert prop is not None
    assert (prop.get("Id"), prop.get("Target"), prop.text) == (
        "purposeOfSignature",
        f"#{SIGNATURE_ID}",
        "1.2.840.10065.1.12.1.14",
    )

    manifest = root.find("ds:Object/ds:Manifest", NS)
    assert manifest is not None
    assert manifest.get("Id") == "IHEManifest"
    ss_ref, cda_ref, pdf_ref = manifest.findall("ds:Reference", NS)
    assert ss_ref.get("URI") == f"urn:oid:{SUBMISSION_SET}"
    assert ss_ref.find("ds:Transforms", NS) is None
    assert ss_ref.findtext("ds:DigestValue", namespaces=NS) == "AA=="
    assert cda_ref.get("URI") == f"urn:oid:{CDA_ID}"
    assert [t.get("Algorithm") for t in cda_ref.iterfind("ds:Transforms/ds:Transform", NS)] == [C14N_WITH_COMMENTS]
    assert pdf_ref.get("URI") == f"urn:oid:{PDF_ID}"
    assert pdf_ref.find("ds:Transforms", NS) is None
    assert base64.b64decode(pdf_ref.findtext("ds:DigestValue", namespaces=NS) or "") == hashlib.sha256(PDF).digest()

    x = XadesVersion.V1_1_1.value
    qualifying = root.find(f"ds:Object/{{{x}}}QualifyingProperties", NS)
    assert qualifying is not None
    assert qualifying.get("Target") == f"#{SIGNATURE_ID}"
    ssp = qualifying.find(f"{{{x}}}SignedProperties/{{{x}}}SignedSignatureProperties")
    assert ssp is not None
    assert [etree.QName(c).localname for c in ssp] == ["SigningTime", "SigningCertificate", "SignaturePolicyIdentifier"]
    assert ssp.findtext(f"{{{x}}}SigningTime") == moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    (cert,) = ssp.findall(f"{{{x}}}SigningCertificate/{{{x}}}Cert")
    der = keys.signing.certificate.public_bytes(serialization.Encoding.DER)
    # XAdES 1.1.1 puts CertDigest's children in its own namespace (1.3.2 moved them to ds:).
    assert cert.find(f"{{{x}}}CertDigest/{{{x}}}DigestMethod") is not None
    assert (
        base64.b64decode(cert.findtext(f"{{{x}}}CertDigest/{{{x}}}DigestValue") or "") == hashlib.sha256(der).digest()
    )
    assert cert.findtext(f"{{{x}}}IssuerSerial/ds:X509SerialNumber", namespaces=NS) == str(
        keys.signing.certificate.serial_number
    )
    assert cert.findtext(f"{{{x}}}IssuerSerial/ds:X509IssuerName", namespaces=NS) == (
        keys.pki.ca.certificate.subject.rfc4514_string()
    )
    assert ssp.find(f"{{{x}}}SignaturePolicyIdentifier/{{{x}}}SignaturePolicyImplied") is not None
    data_props = qualifying.find(f"{{{x}}}SignedProperties/{{{x}}}SignedDataObjectProperties")
    assert data_props is not None
    assert len(data_props) == 0


def test_the_entry_carries_the_signature_metadata(keys: Keys) -> None:
    signature = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET, documents=_documents(), signer=keys.signer, unique_id=SIGNATURE_ID
    )
    assert signature.entry_id == "Signature01"
    assert signature.unique_id == SIGNATURE_ID
    assert signature.document_unique_ids == (CDA_ID, PDF_ID)
    assert (signature.mime_type, signature.title, signature.language_code) == ("text/xml", "Source", "art")
    assert (signature.class_code.code, signature.class_code.code_system, signature.class_code.display_name) == (
        "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1",
        "URN",
        "Digital Signature",
    )
    assert (signature.type_code.code, signature.type_code.code_system) == ("E1762", "ASTM")
    assert (signature.format_code.code, signature.format_code.code_system) == (
        "http://www.w3.org/2000/09/xmldsig#",
        "URN",
    )
    assert [(c.code, c.code_system) for c in signature.event_codes] == [
        ("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12")
    ]
    assert [(c.code, c.code_system) for c in signature.confidentiality_codes] == [
        ("N", "2.16.840.1.113883.5.25"),
        ("MASQUE_PS", "1.2.250.1.213.1.1.4.13"),
        ("INVISIBLE_PATIENT", "1.2.250.1.213.1.1.4.13"),
    ]
    assert signature.size == len(signature.xml)
    assert signature.sha1 == hashlib.sha1(signature.xml).hexdigest()
    association = signature.signs_association("urn:uuid:sig", "urn:uuid:ss")
    assert (association.association_type, association.source_object, association.target_object) == (
        "urn:ihe:iti:2007:AssociationType:signs",
        "urn:uuid:sig",
        "urn:uuid:ss",
    )
    assert association.submission_set_status == "Original"
    assert "content" not in repr(_documents()[0])
    assert "xml=" not in repr(signature)


def test_caller_ids_are_kept_so_that_a_retry_reuses_them(keys: Keys) -> None:
    first = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET, documents=_documents(), signer=keys.signer, unique_id=SIGNATURE_ID
    )
    again = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET, documents=_documents(), signer=keys.signer, unique_id=SIGNATURE_ID
    )
    assert first.unique_id == again.unique_id == _tree(again.xml).get("Id") == SIGNATURE_ID
    drawn = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=keys.signer,
        unique_id_root="1.2.250.1.999.7",
    )
    assert drawn.unique_id.startswith("1.2.250.1.999.7.")
    assert len(drawn.unique_id) <= 64


def test_new_unique_ids_fit_xds() -> None:
    assert re.fullmatch(r"2\.25\.[1-9][0-9]{38}", new_unique_id())
    long_root = "1.2.250.1.213.1.4.1.2.3.4.5.6.7.8.9.10.11.12.13.14"
    generated = new_unique_id(long_root)
    assert generated.startswith(long_root + ".")
    assert len(generated) == 64
    assert new_unique_id() != new_unique_id()
    with pytest.raises(InvalidIdentifierError):
        new_unique_id(long_root + ".15.16.17.18.19.20")
    with pytest.raises(InvalidIdentifierError):
        new_unique_id("1.02.3")


def test_the_profile_comes_from_the_settings() -> None:
    assert SubmissionSetSignatureProfile.from_settings(SigningSettings()) == SubmissionSetSignatureProfile()
    profile = SubmissionSetSignatureProfile.from_settings(
        SigningSettings(
            signature_algorithm="rsa-sha1",
            digest_algorithm="sha1",
            xades_version="1.3.2",
            xades_signing_certificate="chain",
        )
    )
    assert profile == SubmissionSetSignatureProfile.sha1(
        xades_version=XadesVersion.V1_3_2, certificate_scope=SigningCertificateScope.CHAIN
    )
    assert profile.cert_digest is DigestAlgorithm.SHA1


# --------------------------------------------------------------------------------------------
# Schemas


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    # One entry point importing XML-DSig first (the VIHF tests' copy, tests/data/schemas), so that
    # the XAdES schemas' remote imports of the same namespace are skipped and the schema files
    # stay byte-identical to their sources.
    driver = (
        b'<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x-dmp-connector:test">'
        b'<xsd:import namespace="http://www.w3.org/2000/09/xmldsig#"'
        b' schemaLocation="../schemas/xmldsig-core-schema.xsd"/>'
        b'<xsd:import namespace="http://uri.etsi.org/01903/v1.1.1#" schemaLocation="XAdES-v1.1.1.xsd"/>'
        b'<xsd:import namespace="http://uri.etsi.org/01903/v1.3.2#" schemaLocation="XAdES-v1.3.2.xsd"/>'
        b"</xsd:schema>"
    )
    parser = etree.XMLParser(no_network=True, resolve_entities=False)  # noqa: TID251 - trusted test schemas
    return etree.XMLSchema(etree.fromstring(driver, parser, base_url=str(XADES_DATA / "driver.xsd")))  # noqa: TID251


# The two places where the DMP's shape (both public implementations) departs from the XML-DSig
# schema: an OID is no NCName (xs:ID), and SignatureProperty carries text where the schema wants
# an element. The first is avoidable (signature_xml_id); the second is the profile itself.
_ID_DEVIATION = re.compile(r"Signature', attribute 'Id': .* is not a valid value of the atomic type 'xs:ID'")
_PURPOSE_DEVIATION = re.compile(r"SignatureProperty': Missing child element\(s\)")


def _schema_errors(schema: etree.XMLSchema, root: etree._Element) -> list[str]:
    assert not schema.validate(root)
    entries = cast(Iterable[etree._LogEntry], schema.error_log)  # lxml-stubs lacks _ErrorLog.__iter__
    return [entry.message for entry in entries]


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_output_is_schema_valid_but_for_the_profiles_known_deviations(
    keys: Keys, schema: etree.XMLSchema, profile: SubmissionSetSignatureProfile
) -> None:
    strict_xml = _sign(keys, profile, signature_xml_id=f"_{SIGNATURE_ID}")
    assert _verify(keys, strict_xml).signature_id == f"_{SIGNATURE_ID}"
    strict = _schema_errors(schema, _tree(strict_xml))
    assert len(strict) == 1
    assert _PURPOSE_DEVIATION.search(strict[0])

    as_sent = _schema_errors(schema, _tree(_sign(keys, profile)))
    assert len(as_sent) == 2
    assert [m for m in as_sent if not (_PURPOSE_DEVIATION.search(m) or _ID_DEVIATION.search(m))] == []


def test_the_schema_check_does_see_other_errors(keys: Keys, schema: etree.XMLSchema) -> None:
    broken = _sign(keys).replace(b"Z</xades:SigningTime>", b"ZZ</xades:SigningTime>")
    assert any("SigningTime" in message for message in _schema_errors(schema, _tree(broken)))


# --------------------------------------------------------------------------------------------
# Verification: ours, xmlsec1, signxml


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_our_verifier_accepts_each_profile(keys: Keys, profile: SubmissionSetSignatureProfile) -> None:
    verified = _verify(keys, _sign(keys, profile))
    assert verified.signature_id == SIGNATURE_ID
    assert verified.document_unique_ids == (CDA_ID, PDF_ID)
    assert verified.signature_algorithm is profile.signature_algorithm
    assert verified.digest_algorithm is profile.digest_algorithm
    assert verified.xades_version is profile.xades_version
    assert verified.certificate == keys.signing.certificate


def test_the_sha1_profile_is_sha1_throughout(keys: Keys) -> None:
    root = _tree(_sign(keys, SubmissionSetSignatureProfile.sha1()))
    assert _text(root, "ds:SignedInfo/ds:SignatureMethod/@Algorithm") == "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    methods = {
        m.get("Algorithm") for m in root.iter(f"{{{DS}}}DigestMethod", f"{{{XadesVersion.V1_1_1.value}}}DigestMethod")
    }
    assert methods == {"http://www.w3.org/2000/09/xmldsig#sha1"}


def test_sha1_can_be_refused(keys: Keys) -> None:
    _verify(keys, _sign(keys), allow_sha1=False)
    error = _refused(keys, _sign(keys, SubmissionSetSignatureProfile.sha1()), "malformed", allow_sha1=False)
    assert "SHA-1" in error.message


def test_verification_without_is_cda_follows_the_declared_transforms(keys: Keys) -> None:
    _verify(keys, _sign(keys), is_cda=None)
    _verify(keys, _sign(keys), is_cda=lambda unique_id: unique_id == CDA_ID)


def test_a_pinned_signer_certificate_is_trusted(keys: Keys) -> None:
    _verify(keys, _sign(keys), trusted=[keys.signing.certificate])


def _xmlsec1() -> str:
    path = shutil.which("xmlsec1")
    if path is None:
        pytest.skip("xmlsec1 is not installed (Debian package xmlsec1; CI installs it)")
    return path


def _xmlsec1_verify(keys: Keys, xml: bytes, tmp_path: Path, version: XadesVersion) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "signature.xml"
    path.write_bytes(xml)
    command = [
        _xmlsec1(),
        "--verify",
        "--trusted-pem",
        str(keys.ca_pem),
        "--ignore-manifests",  # it cannot dereference urn:oid:, see the module docstring
        "--enabled-reference-uris",
        "same-doc",
        "--id-attr:Id",
        f"{DS}:Manifest",
        "--id-attr:Id",
        f"{version.value}:SignedProperties",
        str(path),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_xmlsec1_verifies_signed_info(keys: Keys, tmp_path: Path, profile: SubmissionSetSignatureProfile) -> None:
    result = _xmlsec1_verify(keys, _sign(keys, profile), tmp_path, profile.xades_version)
    assert result.returncode == 0, result.stderr
    assert "SignedInfo References (ok/all): 2/2" in result.stderr


def test_xmlsec1_refuses_a_changed_manifest_and_another_ca(keys: Keys, tmp_path: Path) -> None:
    xml = _sign(keys)
    changed = xml.replace(f"urn:oid:{PDF_ID}".encode(), b"urn:oid:1.2.250.1.999.7.9")
    assert _xmlsec1_verify(keys, changed, tmp_path, XadesVersion.V1_1_1).returncode != 0
    foreign = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=FileSigner([keys.other.certificate], keys.other.key),
    ).xml
    assert _xmlsec1_verify(keys, foreign, tmp_path, XadesVersion.V1_1_1).returncode != 0


def _xmlsec1_digests(
    tmp_path: Path, documents: Sequence[tuple[Path, str | None]], algorithm: DigestAlgorithm
) -> list[str]:
    """Let xmlsec1 digest each file, with the given transform, by signing a throw-away template."""
    references = "".join(
        f'<ds:Reference URI="{path.as_uri()}">'
        + (f'<ds:Transforms><ds:Transform Algorithm="{transform}"/></ds:Transforms>' if transform else "")
        + f'<ds:DigestMethod Algorithm="{algorithm.value}"/><ds:DigestValue/></ds:Reference>'
        for path, transform in documents
    )
    template = tmp_path / "template.xml"
    template.write_text(
        f'<ds:Signature xmlns:ds="{DS}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{C14N}"/>'
        f'<ds:SignatureMethod Algorithm="{SignatureAlgorithm.RSA_SHA256.value}"/>{references}'
        "</ds:SignedInfo><ds:SignatureValue/></ds:Signature>",
        encoding="utf-8",
    )
    key = tmp_path / "key.pem"
    key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    command = [_xmlsec1(), "--sign", "--privkey-pem", str(key), "--enabled-reference-uris", "local", str(template)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return re.findall(r"<ds:DigestValue>([^<]+)</ds:DigestValue>", result.stdout)


@pytest.mark.parametrize("profile", [PROFILES["sha256-1.1.1"], PROFILES["sha1-1.1.1"]], ids=["sha256", "sha1"])
def test_xmlsec1_computes_the_same_manifest_digests(
    keys: Keys, tmp_path: Path, profile: SubmissionSetSignatureProfile
) -> None:
    cda = REAL_CDA.read_bytes()
    (tmp_path / "cda.xml").write_bytes(cda)
    (tmp_path / "doc.pdf").write_bytes(PDF)
    xml = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(cda=cda),
        signer=keys.signer,
        profile=profile,
    ).xml
    ours = [
        r.findtext("ds:DigestValue", namespaces=NS)
        for r in _tree(xml).iterfind("ds:Object/ds:Manifest/ds:Reference", NS)
    ]
    theirs = _xmlsec1_digests(
        tmp_path,
        [(tmp_path / "cda.xml", C14N_WITH_COMMENTS), (tmp_path / "doc.pdf", None)],
        profile.digest_algorithm,
    )
    assert ours[1:] == theirs


_SIGNXML_CONFIG: dict[str, object] = {
    "expect_references": 2,
    "signature_methods": frozenset(SignatureMethod),
    "digest_algorithms": frozenset(SignxmlDigest),
    # XML-DSig's default for a same-document reference without transforms is C14N 1.0;
    # signxml's own default is 1.1 (the same bytes here, but say what the spec says).
    "default_reference_c14n_method": CanonicalizationMethod.CANONICAL_XML_1_0,
}


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_signxml_verifies_signed_info(keys: Keys, profile: SubmissionSetSignatureProfile) -> None:
    # Schema validation off: signxml's XML-DSig schema refuses the profile's text-only
    # SignatureProperty (see test_output_is_schema_valid_but_for_the_profiles_known_deviations).
    results = XMLVerifier().verify(
        _sign(keys, profile),
        ca_pem_file=str(keys.ca_pem),
        expect_config=SignatureConfiguration(**_SIGNXML_CONFIG),  # type: ignore[arg-type]
        validate_schema=False,
    )
    assert isinstance(results, list)
    assert [etree.QName(r.signed_xml).localname for r in results if r.signed_xml is not None] == [
        "Manifest",
        "SignedProperties",
    ]


def test_signxml_xades_verifier_checks_the_132_variant(keys: Keys) -> None:
    results = XAdESVerifier().verify(
        _sign(keys, PROFILES["sha256-1.3.2"]),
        ca_pem_file=str(keys.ca_pem),
        expect_config=XAdESSignatureConfiguration(**_SIGNXML_CONFIG),  # type: ignore[arg-type]
        validate_schema=False,
    )
    assert type(results[-1]).__name__ == "XAdESVerifyResult"


def test_signxml_refuses_a_changed_manifest(keys: Keys) -> None:
    changed = _sign(keys).replace(f"urn:oid:{PDF_ID}".encode(), b"urn:oid:1.2.250.1.999.7.9")
    with pytest.raises(Exception, match="Digest mismatch"):
        XMLVerifier().verify(
            changed,
            ca_pem_file=str(keys.ca_pem),
            expect_config=SignatureConfiguration(**_SIGNXML_CONFIG),  # type: ignore[arg-type]
            validate_schema=False,
        )


# --------------------------------------------------------------------------------------------
# Tampering


def _flip(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def test_a_changed_byte_in_a_document_is_a_digest_mismatch(keys: Keys) -> None:
    xml = _sign(keys)
    _refused(keys, xml, "digest_mismatch", documents={CDA_ID: CDA.replace(b"rendu", b"rendU"), PDF_ID: PDF})
    _refused(keys, xml, "digest_mismatch", documents={CDA_ID: CDA, PDF_ID: PDF[:-2] + b"G\n"})
    _refused(keys, xml, "digest_mismatch", documents={CDA_ID: b"not xml at all", PDF_ID: PDF})


def test_swapped_documents_are_a_digest_mismatch(keys: Keys) -> None:
    _refused(keys, _sign(keys), "digest_mismatch", documents={CDA_ID: PDF, PDF_ID: CDA}, is_cda=None)


def test_missing_extra_or_misnamed_documents_are_a_manifest_mismatch(keys: Keys) -> None:
    xml = _sign(keys)
    error = _refused(keys, xml, "manifest_mismatch", documents={CDA_ID: CDA})
    assert error.problems == (f"not signed: {PDF_ID}",) or error.problems == (f"signed but not supplied: {PDF_ID}",)
    _refused(keys, xml, "manifest_mismatch", documents={CDA_ID: CDA, PDF_ID: PDF, "1.2.250.1.999.7.9": PDF})
    _refused(keys, xml, "manifest_mismatch", submission_set_unique_id="1.2.250.1.999.7.9")
    _refused(keys, xml, "manifest_mismatch", is_cda={CDA_ID: False, PDF_ID: False})


def test_a_changed_byte_in_the_manifest_breaks_the_signature(keys: Keys) -> None:
    xml = _sign(keys)
    pdf_digest = base64.b64encode(hashlib.sha256(PDF).digest())
    forged = base64.b64encode(hashlib.sha256(b"another document").digest())
    _refused(
        keys, _flip(xml, pdf_digest, forged), "bad_signature", documents={CDA_ID: CDA, PDF_ID: b"another document"}
    )
    _refused(keys, _flip(xml, f'URI="urn:oid:{PDF_ID}"'.encode(), b'URI="urn:oid:1.2.250.1.999.7.5"'), "bad_signature")


def test_a_changed_signed_property_breaks_the_signature(keys: Keys) -> None:
    xml = _sign(keys)
    signing_time = _text(_tree(xml), "//x:SigningTime")
    later = (dt.datetime.fromisoformat(signing_time) + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _refused(keys, _flip(xml, f">{signing_time}<".encode(), f">{later}<".encode()), "bad_signature")
    serial = str(keys.signing.certificate.serial_number).encode()
    _refused(keys, _flip(xml, serial, serial[:-1] + (b"1" if serial[-1:] != b"1" else b"2")), "bad_signature")


def test_a_changed_signature_value_or_signed_info_is_a_bad_signature(keys: Keys) -> None:
    xml = _sign(keys)
    value = _text(_tree(xml), "ds:SignatureValue").encode()
    other = value[:10] + (b"A" if value[10:11] != b"A" else b"B") + value[11:]
    _refused(keys, _flip(xml, value, other), "bad_signature")
    refs = b'URI="#IHEManifest"'
    _refused(keys, _flip(xml, refs, b'URI="#IHEManifest" Id="r1"'), "bad_signature")


def test_another_certificate_in_key_info_is_refused(keys: Keys) -> None:
    xml = _sign(keys)
    ours = base64.b64encode(keys.signing.certificate.public_bytes(serialization.Encoding.DER))
    theirs = base64.b64encode(keys.other.certificate.public_bytes(serialization.Encoding.DER))
    _refused(keys, _flip(xml, ours, theirs), "bad_signature")


@pytest.fixture(scope="module")
def signed(keys: Keys) -> bytes:
    return _sign(keys)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # a mutated serial < 0
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_fails_or_changes_nothing_canonical(
    keys: Keys, signed: bytes, data: st.DataObject
) -> None:
    start = signed.index(b"<ds:Signature")  # the XML declaration's own spelling is not signed
    position = data.draw(st.integers(min_value=start, max_value=len(signed) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != signed[position]))
    mutated = signed[:position] + bytes([byte]) + signed[position + 1 :]
    try:
        verified = _verify(keys, mutated)
    except SignatureVerificationError:
        return
    # Accepted: then what the signature covers is unchanged, and so is what the verifier reports. The
    # change was one the XML data model does not see (whitespace between attributes) or in a part the
    # profile leaves unsigned (KeyInfo, the purpose property), whose form the verifier checks.
    assert _signed_parts(mutated) == _signed_parts(signed)
    assert verified == _verify(keys, signed)


def _signed_parts(xml: bytes) -> list[bytes]:
    root = _tree(xml)
    parts = [root.find("ds:SignedInfo", NS), root.find("ds:Object/ds:Manifest", NS)]
    parts += root.findall(f"ds:Object/*/{{{XadesVersion.V1_1_1.value}}}SignedProperties", NS)
    return [etree.tostring(part, method="c14n") for part in parts if part is not None]


# --------------------------------------------------------------------------------------------
# Signature wrapping


def _parts(xml: bytes) -> tuple[etree._Element, etree._Element]:
    root = _tree(xml)
    manifest = root.find("ds:Object/ds:Manifest", NS)
    assert manifest is not None
    return root, manifest


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def _forged_manifest(manifest: etree._Element, digest: bytes) -> etree._Element:
    forged = etree.fromstring(etree.tostring(manifest))  # noqa: TID251 - our own bytes, in a test
    last = forged.findall("ds:Reference", NS)[-1]
    value = last.find("ds:DigestValue", NS)
    assert value is not None
    value.text = base64.b64encode(digest).decode()
    return forged


def test_a_forged_manifest_first_in_document_order_is_wrapping(keys: Keys) -> None:
    root, manifest = _parts(_sign(keys))
    forged_object = etree.Element(f"{{{DS}}}Object")
    forged_object.append(_forged_manifest(manifest, hashlib.sha256(b"evil").digest()))
    root.insert(3, forged_object)
    # A naive lookup would now read the forged manifest:
    first = root.find(".//ds:Manifest", NS)
    assert first is not None and first.getparent() is forged_object
    _refused(keys, _serialize(root), "wrapping", documents={CDA_ID: CDA, PDF_ID: b"evil"})


def test_the_signed_manifest_moved_away_is_wrapping(keys: Keys) -> None:
    root, manifest = _parts(_sign(keys))
    holder = manifest.getparent()
    assert holder is not None
    forged = _forged_manifest(manifest, hashlib.sha256(b"evil").digest())
    property_ = root.find("ds:Object/ds:SignatureProperties/ds:SignatureProperty", NS)
    assert property_ is not None
    property_.append(manifest)  # the signed one hides inside the purpose property
    holder.append(forged)  # a forged one sits where the profile puts it
    _refused(keys, _serialize(root), "wrapping", documents={CDA_ID: CDA, PDF_ID: b"evil"})


def test_a_second_manifest_with_another_id_is_wrapping(keys: Keys) -> None:
    root, manifest = _parts(_sign(keys))
    forged = _forged_manifest(manifest, hashlib.sha256(b"evil").digest())
    forged.set("Id", "OtherManifest")
    extra = etree.SubElement(root, f"{{{DS}}}Object")
    extra.append(forged)
    _refused(keys, _serialize(root), "wrapping")


def test_qualifying_properties_of_another_xades_version_added_is_wrapping(keys: Keys) -> None:
    xml = _sign(keys)
    root = _tree(xml)
    qualifying = root.find(f"ds:Object/{{{XadesVersion.V1_1_1.value}}}QualifyingProperties", NS)
    assert qualifying is not None
    copy = etree.tostring(qualifying).replace(XadesVersion.V1_1_1.value.encode(), XadesVersion.V1_3_2.value.encode())
    forged = etree.fromstring(copy.replace(b'Id="S0-SignedProperties"', b'Id="S1"'))  # noqa: TID251 - test bytes
    etree.SubElement(root, f"{{{DS}}}Object").append(forged)
    _refused(keys, _serialize(root), "wrapping")


def test_a_reference_resolving_outside_the_expected_parts_is_wrapping(keys: Keys) -> None:
    xml = _sign(keys)
    moved = _flip(xml, b'Id="S0-SignedProperties"', b'Id="S1-SignedProperties"')
    moved = _flip(moved, b'Id="purposeOfSignature"', b'Id="S0-SignedProperties"')
    _refused(keys, moved, "wrapping")
    duplicate = _flip(xml, b'Id="purposeOfSignature"', b'Id="IHEManifest"')
    _refused(keys, duplicate, "wrapping")


def test_properties_targeting_another_signature_or_a_nested_signature_is_wrapping(keys: Keys) -> None:
    xml = _sign(keys)
    retargeted = xml.replace(f'Target="#{SIGNATURE_ID}"'.encode(), b'Target="#1.2.3"', 1)
    _refused(keys, retargeted, "wrapping")
    root = _tree(xml)
    nested = etree.fromstring(xml.split(b"?>", 1)[1])  # noqa: TID251 - our own bytes, in a test
    etree.SubElement(root, f"{{{DS}}}Object").append(nested)
    _refused(keys, _serialize(root), "wrapping")


def test_malformed_inputs_are_refused_as_such(keys: Keys) -> None:
    xml = _sign(keys)
    _refused(keys, b"not xml", "malformed")
    _refused(keys, b'<!DOCTYPE x [<!ENTITY a "b">]><x/>', "malformed")
    _refused(keys, b'<ds:Manifest xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>', "malformed")
    _refused(keys, xml.replace(C14N_WITH_COMMENTS.encode(), b"http://www.w3.org/2006/12/xml-c14n11", 1), "malformed")
    _refused(keys, xml.replace(b"1.2.840.10065.1.12.1.14<", b"1.2.840.10065.1.12.1.1<"), "malformed")
    certificate = base64.b64encode(keys.signing.certificate.public_bytes(serialization.Encoding.DER))
    _refused(keys, _flip(xml, certificate, b"MIIBAAAA"), "malformed")
    root = _tree(xml)
    etree.SubElement(etree.SubElement(root, f"{{{DS}}}Object"), "Unexpected")
    _refused(keys, _serialize(root), "malformed")


# --------------------------------------------------------------------------------------------
# Certificates


def test_an_expired_certificate_is_refused(keys: Keys) -> None:
    now = dt.datetime.now(dt.UTC)
    old = FileSigner([keys.expired.certificate], keys.expired.key)
    xml = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=old,
        signing_time=now - dt.timedelta(days=100),
    ).xml
    trusted = [keys.old_pki.ca.certificate]
    error = _refused(keys, xml, "expired_certificate", trusted=trusted)
    assert "expired" in error.message
    assert "checked now" in error.message
    _verify(keys, xml, trusted=trusted, now=now - dt.timedelta(days=50))  # valid when signed and at that "now"
    error = _refused(keys, xml, "expired_certificate", trusted=trusted, now=now - dt.timedelta(days=450))
    assert "not valid before" in error.message
    with pytest.raises(ConfigurationError):
        sign_submission_set(submission_set_unique_id=SUBMISSION_SET, documents=_documents(), signer=old)


def test_a_certificate_from_another_ca_is_untrusted(keys: Keys) -> None:
    xml = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=FileSigner([keys.other.certificate], keys.other.key),
    ).xml
    _refused(keys, xml, "untrusted_certificate")
    _refused(keys, _sign(keys), "untrusted_certificate", trusted=[])


# --------------------------------------------------------------------------------------------
# Canonicalisation: comments are signed content


def test_comments_matter_for_a_cda() -> None:
    cda = REAL_CDA.read_bytes()
    assert b"<!--" in cda
    with_comments = document_digest(cda, DigestAlgorithm.SHA256, transform=C14N_WITH_COMMENTS)
    without = document_digest(cda, DigestAlgorithm.SHA256, transform=C14N)
    assert with_comments != without
    assert with_comments != hashlib.sha256(cda).digest()


def test_a_changed_comment_in_a_cda_is_detected_but_not_its_serialisation(keys: Keys) -> None:
    xml = _sign(keys)
    _refused(keys, xml, "digest_mismatch", documents={CDA_ID: CDA.replace(b"a comment", b"A comment"), PDF_ID: PDF})
    reserialised = (
        b'<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>\n'
        b"<ClinicalDocument xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'   xmlns='urn:hl7-org:v3'>"
        b"<!-- a comment is signed content under C14N with comments -->"
        b"<id  root='1.2.250.1.999.7.2' /><title>Compte rendu</title></ClinicalDocument>"
    )
    assert reserialised != CDA
    _verify(keys, xml, documents={CDA_ID: reserialised, PDF_ID: PDF})


# --------------------------------------------------------------------------------------------
# The Signer seam


class CountingSigner:
    """A Signer that is not a FileSigner: a key held elsewhere (a card, an HSM), calls counted."""

    def __init__(self, key: rsa.RSAPrivateKey, chain: Sequence[x509.Certificate]) -> None:
        self._key = key
        self._chain = tuple(chain)
        self.calls: list[tuple[bytes, SignatureAlgorithm]] = []

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        self.calls.append((data, algorithm))
        return self._key.sign(data, padding.PKCS1v15(), algorithm.hash)

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        return self._chain


def test_any_signer_plugs_in_and_signs_once(keys: Keys) -> None:
    signer = CountingSigner(keys.signing.key, [keys.signing.certificate])
    xml = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=_documents(),
        signer=signer,
        profile=SubmissionSetSignatureProfile.sha1(),
    ).xml
    assert len(signer.calls) == 1
    data, algorithm = signer.calls[0]
    assert algorithm is SignatureAlgorithm.RSA_SHA1
    assert data.startswith(b'<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">')
    _verify(keys, xml)


def test_a_signer_whose_key_is_not_its_certificates_is_refused(keys: Keys) -> None:
    wrong = CountingSigner(keys.other.key, [keys.signing.certificate])
    with pytest.raises(ConfigurationError, match="does not verify with its own certificate"):
        sign_submission_set(submission_set_unique_id=SUBMISSION_SET, documents=_documents(), signer=wrong)


# --------------------------------------------------------------------------------------------
# Inputs


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"submission_set_unique_id": "1.2.03"}, InvalidIdentifierError),
        ({"unique_id": "not-an-oid"}, InvalidIdentifierError),
        ({"documents": []}, ValidationError),
        ({"documents": [*_documents(), _documents()[1]]}, ValidationError),
        ({"unique_id": CDA_ID}, ValidationError),
        ({"signing_time": dt.datetime(2025, 1, 1)}, ValidationError),  # naive on purpose
        ({"documents": [SubmittedDocument(unique_id=CDA_ID, content=PDF, is_cda=True)]}, ValidationError),
    ],
    ids=["bad-ss-oid", "bad-sig-oid", "no-documents", "duplicate", "id-clash", "naive-time", "cda-not-xml"],
)
def test_bad_inputs_are_refused(keys: Keys, kwargs: dict[str, object], error: type[Exception]) -> None:
    options: dict[str, object] = {
        "submission_set_unique_id": SUBMISSION_SET,
        "documents": _documents(),
        "signer": keys.signer,
        **kwargs,
    }
    with pytest.raises(error):
        sign_submission_set(**options)  # type: ignore[arg-type]
