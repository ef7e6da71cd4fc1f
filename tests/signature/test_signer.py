"""Signature keys and the ``Signer`` seam: files loaded and refused clearly, any Signer signs XML that verifies."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from dmp_connector.config import CertificateFiles, SigningSettings
from dmp_connector.errors import ConfigurationError, SignatureVerificationError
from dmp_connector.sandbox import IssuedCertificate, TestPki
from dmp_connector.signature import (
    DigestAlgorithm,
    FileSigner,
    SignatureAlgorithm,
    Signer,
    algorithms_from_settings,
    certificate_dn,
    check_signer,
    load_certificates,
)
from dmp_connector.signature import _xmldsig as xmldsig
from dmp_connector.xml import parse_xml, to_bytes
from tests.conftest import PkiFiles

NOW = dt.datetime.now(dt.UTC)
XMLSEC1 = shutil.which("xmlsec1")
needs_xmlsec1 = pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 is not installed (Debian package xmlsec1)")


class CountingSigner:
    """A Signer that is not a FileSigner: it keeps its key to itself and counts the calls, like a card."""

    def __init__(self, issued: IssuedCertificate, chain: Sequence[x509.Certificate] = ()) -> None:
        self._key = issued.key
        self._chain = (issued.certificate, *chain)
        self.calls: list[tuple[bytes, SignatureAlgorithm]] = []

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        self.calls.append((data, algorithm))
        return self._key.sign(data, padding.PKCS1v15(), SignatureAlgorithm(algorithm).hash)

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        return self._chain


@pytest.fixture(scope="module")
def sign_cert(pki_files: PkiFiles) -> IssuedCertificate:
    return pki_files.pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")


@pytest.fixture(scope="module")
def sign_files(sign_cert: IssuedCertificate, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return sign_cert.write_pem(tmp_path_factory.mktemp("sign"), "org-sign")


# --- loading and refusing ---------------------------------------------------------------------------------


def test_pem_pair_loads_and_signs(sign_files: tuple[Path, Path], sign_cert: IssuedCertificate) -> None:
    cert, key = sign_files
    signer = FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=key))
    assert isinstance(signer, Signer)
    assert signer.certificate_chain()[0] == sign_cert.certificate
    value = signer.sign(b"payload", SignatureAlgorithm.RSA_SHA256)
    public = sign_cert.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(value, b"payload", padding.PKCS1v15(), hashes.SHA256())


def test_pkcs12_loads_with_its_chain(sign_cert: IssuedCertificate, pki_files: PkiFiles, tmp_path: Path) -> None:
    p12 = tmp_path / "sign.p12"
    p12.write_bytes(sign_cert.pkcs12(b"s3cret", chain=(pki_files.pki.ca.certificate,)))
    signer = FileSigner.from_files(CertificateFiles(pkcs12_file=p12, pkcs12_password="s3cret"))
    assert list(signer.certificate_chain()) == [sign_cert.certificate, pki_files.pki.ca.certificate]
    with pytest.raises(ConfigurationError, match=r"PKCS#12 file .*sign\.p12 cannot be opened") as info:
        FileSigner.from_files(CertificateFiles(pkcs12_file=p12, pkcs12_password="Zq-not-it"))
    assert "s3cret" not in str(info.value) and "Zq-not-it" not in str(info.value)
    assert "pkcs12_password" in str(info.value)


def test_encrypted_pem_key(sign_cert: IssuedCertificate, tmp_path: Path) -> None:
    cert, key = sign_cert.write_pem(tmp_path, "enc", password=b"pw-123")
    FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=key, key_password="pw-123"))
    with pytest.raises(ConfigurationError, match=r"signature key file .*enc\.key cannot be decrypted") as info:
        FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=key))
    assert "signing.credentials.key_password" in str(info.value)


def test_expired_and_not_yet_valid_certificates_name_the_file(pki_files: PkiFiles, tmp_path: Path) -> None:
    pki = pki_files.pki
    old = pki.issue_organisation_sign(
        organisation="OLD",
        structure_id="1",
        not_before=NOW - dt.timedelta(days=800),
        not_after=NOW - dt.timedelta(days=1),
    )
    cert, key = old.write_pem(tmp_path, "old")
    with pytest.raises(ConfigurationError, match=r"certificate in .*old\.crt expired on"):
        FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=key))
    future = pki.issue_organisation_sign(organisation="NEW", structure_id="1", not_before=NOW + dt.timedelta(days=2))
    cert, key = future.write_pem(tmp_path, "future")
    with pytest.raises(ConfigurationError, match=r"certificate in .*future\.crt is not valid before"):
        FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=key))


def test_mismatched_pair_is_refused(sign_files: tuple[Path, Path], pki_files: PkiFiles) -> None:
    cert, _ = sign_files
    with pytest.raises(ConfigurationError, match=r"does not match the signature certificate in .*org-sign\.crt"):
        FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=pki_files.client_key))


def test_missing_file_and_no_credentials(tmp_path: Path, sign_files: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigurationError, match=r"signature certificate file .*nope\.crt does not exist"):
        FileSigner.from_files(CertificateFiles(cert_file=tmp_path / "nope.crt", key_file=sign_files[1]))
    with pytest.raises(ConfigurationError, match="no signature certificate is configured"):
        FileSigner.from_settings(SigningSettings())
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        FileSigner.from_files(CertificateFiles(cert_file=garbage, key_file=sign_files[1]))


def test_key_usage_must_allow_signing(pki_files: PkiFiles, tmp_path: Path) -> None:
    encipher_only = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    issued = pki_files.pki._issue(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ENC ONLY")]),
        usage=None,
        sans=[],
        not_before=None,
        not_after=None,
        key_usage=encipher_only,
    )
    cert, key = issued.write_pem(tmp_path, "enc-only")
    with pytest.raises(ConfigurationError, match="allows neither digitalSignature nor nonRepudiation"):
        FileSigner.from_files(CertificateFiles(cert_file=cert, key_file=key))


def test_a_non_rsa_key_is_refused(pki_files: PkiFiles, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = pki_files.pki.ca
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "EC SIGN")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    (tmp_path / "ec.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ec.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(ConfigurationError, match="not an RSA key"):
        FileSigner.from_files(CertificateFiles(cert_file=tmp_path / "ec.crt", key_file=tmp_path / "ec.key"))


def test_check_signer_refuses_an_expired_card(pki_files: PkiFiles) -> None:
    expired = pki_files.pki.issue_professional(
        "899700000002",
        family_name="OLD",
        given_name="CARD",
        not_before=NOW - dt.timedelta(days=400),
        not_after=NOW - dt.timedelta(days=3),
    )
    with pytest.raises(ConfigurationError, match="signature certificate expired on"):
        check_signer(CountingSigner(expired))

    class Empty(CountingSigner):
        def certificate_chain(self) -> Sequence[x509.Certificate]:
            return ()

    with pytest.raises(ConfigurationError, match="gave no certificate"):
        check_signer(Empty(expired))


def test_algorithm_settings() -> None:
    assert algorithms_from_settings(SigningSettings()) == (SignatureAlgorithm.RSA_SHA256, DigestAlgorithm.SHA256)
    sha1 = SigningSettings(signature_algorithm="rsa-sha1", digest_algorithm="sha1")
    assert algorithms_from_settings(sha1) == (SignatureAlgorithm.RSA_SHA1, DigestAlgorithm.SHA1)
    assert SignatureAlgorithm.from_setting(SignatureAlgorithm.RSA_SHA1.value) is SignatureAlgorithm.RSA_SHA1
    with pytest.raises(ConfigurationError, match="unknown signature algorithm"):
        SignatureAlgorithm.from_setting("ecdsa-sha256")
    with pytest.raises(ConfigurationError, match="unknown digest algorithm"):
        DigestAlgorithm.from_setting("md5")


def test_certificate_dn_uses_gn_sn_st(pki_files: PkiFiles) -> None:
    pro = pki_files.pki.issue_professional("899700000003", family_name="MARTIN", given_name="LUC", organisation="CAB")
    assert certificate_dn(pro.certificate) == "CN=899700000003,GN=LUC,SN=MARTIN,O=CAB,C=FR"
    org = pki_files.pki.issue_organisation_sign(organisation="CAB", structure_id="1123456789")
    assert certificate_dn(org.certificate) == "CN=DMP SIGN,OU=1123456789,O=CAB,ST=Paris (75),C=FR"


# --- the XML-DSig helper, driven by a Signer that is not a FileSigner ------------------------------------------


def _xmlsec1_verify(document: bytes, ca: bytes, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert XMLSEC1 is not None
    (tmp_path / "doc.xml").write_bytes(document)
    (tmp_path / "ca.pem").write_bytes(ca)
    return subprocess.run(
        [XMLSEC1, "--verify", "--trusted-pem", str(tmp_path / "ca.pem"), *extra, str(tmp_path / "doc.xml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_enveloped_signature_by_a_counting_signer_verifies(sign_cert: IssuedCertificate, pki_files: PkiFiles) -> None:
    signer = CountingSigner(sign_cert)
    assert isinstance(signer, Signer) and not isinstance(signer, FileSigner)
    doc = parse_xml(b'<r:Doc xmlns:r="urn:test" ID="_d1"><r:Item>one</r:Item><!-- kept --></r:Doc>')
    xmldsig.sign_enveloped(
        doc, signer, signature_algorithm=SignatureAlgorithm.RSA_SHA256, digest_algorithm=DigestAlgorithm.SHA256
    )
    assert len(signer.calls) == 1
    data, algorithm = signer.calls[0]
    assert algorithm is SignatureAlgorithm.RSA_SHA256
    assert data.startswith(b'<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">')
    result = XMLVerifier().verify(
        to_bytes(doc), x509_cert=sign_cert.certificate, id_attribute="ID", expect_config=SignatureConfiguration()
    )
    assert not isinstance(result, list)
    assert result.signed_xml is not None and result.signed_xml.findtext("{urn:test}Item") == "one"
    leaf = xmldsig.verify_certificate_path(
        xmldsig.key_info_certificates(doc[0]), [pki_files.pki.ca.certificate], now=NOW
    )
    assert leaf == sign_cert.certificate


@needs_xmlsec1
def test_enveloping_signature_with_comments_verifies_with_xmlsec1(
    sign_cert: IssuedCertificate, pki_files: PkiFiles, tmp_path: Path
) -> None:
    """The order of work the XAdES module follows: skeleton, ds:Object, digests in place, then the value."""
    signer = CountingSigner(sign_cert, chain=(pki_files.pki.ca.certificate,))
    method = xmldsig.C14nMethod.C14N_WITH_COMMENTS
    signature = xmldsig.signature_skeleton(
        c14n_method=method,
        signature_algorithm=SignatureAlgorithm.RSA_SHA1,
        digest_algorithm=DigestAlgorithm.SHA1,
        signature_id="sig-1",
    )
    obj = etree.SubElement(signature, f"{{{xmldsig.DS}}}Object")
    manifest = etree.SubElement(obj, f"{{{xmldsig.DS}}}Manifest", Id="IHEManifest")
    xmldsig.append_reference(
        manifest, xmldsig.Reference(uri="urn:oid:1.2.3", digest_value=b"\x00"), DigestAlgorithm.SHA1
    )
    signed_info = signature[0]
    digest_value = xmldsig.digest(xmldsig.canonicalize(manifest, method), DigestAlgorithm.SHA1)
    xmldsig.append_reference(
        signed_info,
        xmldsig.Reference(
            uri="#IHEManifest",
            digest_value=digest_value,
            transforms=(xmldsig.Transform(method.value),),
            type="http://www.w3.org/2000/09/xmldsig#Manifest",
        ),
        DigestAlgorithm.SHA1,
    )
    value = xmldsig.complete_signature(signature, signer, SignatureAlgorithm.RSA_SHA1, include_chain=True)
    assert base64.b64decode(signature[1].text or "") == value
    assert [etree.QName(c).localname for c in signature] == ["SignedInfo", "SignatureValue", "KeyInfo", "Object"]
    assert len(signature.findall(".//{*}X509Certificate")) == 2
    document = to_bytes(signature)
    result = _xmlsec1_verify(document, pki_files.pki.ca_pem, tmp_path, "--ignore-manifests")
    assert result.returncode == 0, result.stderr
    verified = xmldsig.verify_with_signxml(
        parse_xml(document), certificate=sign_cert.certificate, location="./", allow_sha1=True
    )
    assert len(verified) == 1
    with pytest.raises(SignatureVerificationError) as refused:
        xmldsig.verify_with_signxml(parse_xml(document), certificate=sign_cert.certificate, allow_sha1=False)
    assert refused.value.reason == "malformed"


def test_certificate_path_reasons(sign_cert: IssuedCertificate, pki_files: PkiFiles) -> None:
    other = TestPki.create(name="another CA")
    ca = [pki_files.pki.ca.certificate]
    with pytest.raises(SignatureVerificationError) as info:
        xmldsig.verify_certificate_path([sign_cert.certificate], [other.ca.certificate])
    assert info.value.reason == "untrusted_certificate"
    with pytest.raises(SignatureVerificationError) as info:
        xmldsig.verify_certificate_path([sign_cert.certificate], ca, now=NOW + dt.timedelta(days=400))
    assert info.value.reason == "expired_certificate"
    with pytest.raises(SignatureVerificationError) as info:
        xmldsig.verify_certificate_path([], ca)
    assert info.value.reason == "malformed"
    # A pinned leaf is its own anchor.
    assert xmldsig.verify_certificate_path([sign_cert.certificate], [sign_cert.certificate]) == sign_cert.certificate


def test_load_certificates(pki_files: PkiFiles, tmp_path: Path) -> None:
    assert load_certificates(pki_files.ca_bundle) == [pki_files.pki.ca.certificate]
    with pytest.raises(ConfigurationError, match=r"missing\.pem does not exist"):
        load_certificates(tmp_path / "missing.pem")


def test_rsa_key_type_is_what_file_signer_holds(sign_cert: IssuedCertificate) -> None:
    assert isinstance(sign_cert.key, rsa.RSAPrivateKey)
    signer = FileSigner([sign_cert.certificate], sign_cert.key)
    signer.check_dates()
    with pytest.raises(ConfigurationError, match="expired on"):
        signer.check_dates(now=NOW + dt.timedelta(days=800))
