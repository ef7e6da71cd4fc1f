"""The test PKI: IGC-Santé-shaped certificates, files that load as signer and as TLS identity, a real handshake."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from dmp_connector._tls import build_ssl_context
from dmp_connector.codes import Code
from dmp_connector.config import Settings, SoftwareIdentity
from dmp_connector.errors import ConfigurationError
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox.pki import INSI_AUTO, TestPkiFiles, generate_test_pki
from dmp_connector.signature import FileSigner, VihfRequest, build_vihf, load_certificates, verify_vihf
from dmp_connector.signature import _xmldsig as xmldsig
from dmp_connector.xml import to_bytes
from tests.conftest import ORGANISATION, PkiFiles


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> TestPkiFiles:
    return generate_test_pki(tmp_path_factory.mktemp("generated") / "pki")


def _cert(path: Path) -> x509.Certificate:
    return load_certificates(path)[0]


def _name(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_files_written_and_keys_private(generated: TestPkiFiles) -> None:
    files = generated.files()
    assert set(files) == {
        "ca_cert",
        "ca_key",
        "server_cert",
        "server_key",
        "org_auth_cert",
        "org_auth_key",
        "org_auth_p12",
        "org_sign_cert",
        "org_sign_key",
        "org_sign_p12",
        "professional_cert",
        "professional_key",
    }
    for role, path in files.items():
        assert path.is_file() and path.parent == generated.directory
        if role.endswith(("_key", "_p12")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, role


def test_reloaded_ca_issues_certificates_that_chain_to_the_original(generated: TestPkiFiles) -> None:
    pki = generated.load_pki()
    original = _cert(generated.ca_cert)
    assert pki.ca.certificate == original
    assert TestPki.load(generated.ca_cert, generated.ca_key or "").ca_pem == pki.ca_pem
    issued = pki.issue_client("AGAIN")
    assert issued.certificate.issuer == original.subject
    issued.certificate.verify_directly_issued_by(original)  # raises if the signature does not chain


def test_load_refuses_a_key_that_is_not_the_ca_s(generated: TestPkiFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is not the key of"):
        TestPki.load(generated.ca_cert, generated.server_key)
    with pytest.raises(ConfigurationError, match="cannot read"):
        TestPki.load(generated.ca_cert, tmp_path / "missing.key")
    older = dataclasses.replace(generated, ca_key=None)  # a PKI written before the CA key was kept
    with pytest.raises(ConfigurationError, match="no CA key"):
        older.load_pki()


def test_subjects_are_shaped_like_igc_sante(generated: TestPkiFiles) -> None:
    ca = _cert(generated.ca_cert)
    auth = _cert(generated.org_auth_cert)
    assert _name(auth, NameOID.COMMON_NAME) == [INSI_AUTO]
    assert _name(auth, NameOID.ORGANIZATIONAL_UNIT_NAME) == [generated.structure_id] == ["1123456789"]
    assert _name(auth, NameOID.ORGANIZATION_NAME) == ["CABINET SANDBOX"]
    eku = auth.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    sign = _cert(generated.org_sign_cert)
    assert _name(sign, NameOID.COMMON_NAME) == ["DMP SIGN"]
    usage = sign.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        sign.extensions.get_extension_for_class(x509.ExtendedKeyUsage)

    pro = _cert(generated.professional_cert)
    assert _name(pro, NameOID.COMMON_NAME) == [generated.professional_id] == ["899700000001"]
    assert _name(pro, NameOID.SURNAME) == ["SANDBOX"]
    assert _name(pro, NameOID.GIVEN_NAME) == ["JEANNE"]

    server = _cert(generated.server_cert)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    for cert in (auth, sign, pro, server):
        assert xmldsig.verify_certificate_path([cert], [ca]) == cert


def test_files_load_as_signer_and_as_tls_identity(generated: TestPkiFiles) -> None:
    pem = FileSigner.from_files(generated.signing_credentials())
    p12 = FileSigner.from_files(generated.signing_credentials(pkcs12=True))
    assert pem.certificate_chain()[0] == p12.certificate_chain()[0] == _cert(generated.org_sign_cert)
    assert list(p12.certificate_chain())[1:] == [_cert(generated.ca_cert)]
    FileSigner.from_files(
        generated.signing_credentials().model_copy(
            update={"cert_file": generated.professional_cert, "key_file": generated.professional_key}
        )
    )
    ctx = build_ssl_context(generated.tls_credentials())
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    p12_tls = generated.tls_credentials().model_copy(
        update={"cert_file": None, "key_file": None, "pkcs12_file": generated.org_auth_p12}
    )
    with pytest.raises(ConfigurationError):  # the p12 is password-protected
        build_ssl_context(p12_tls)
    build_ssl_context(p12_tls.model_copy(update={"pkcs12_password": SecretStr(generated.p12_password)}))


def test_generated_files_sign_a_vihf_that_verifies(generated: TestPkiFiles) -> None:
    settings = Settings(
        software=SoftwareIdentity(name="LPS", version="1", editor="E", dmp_homologation_id="H"),
        organisation=ORGANISATION.model_copy(
            update={"activity_sector": Code(code="SA07", code_system="1.2.250.1.71.4.2.4")}
        ),
        professional={
            "id": "99700000001",
            "family_name": "SANDBOX",
            "given_name": "JEANNE",
            "profession": {"code": "60", "code_system": "1.2.250.1.71.1.2.7"},
        },
    )
    signer = FileSigner.from_files(generated.signing_credentials(pkcs12=True))
    data = to_bytes(build_vihf(settings, signer, VihfRequest()))
    claims = verify_vihf(data, trusted=load_certificates(generated.ca_cert))
    assert claims.structure_id == generated.structure_id


def test_mutual_tls_handshake_with_the_generated_files(generated: TestPkiFiles) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(generated.server_cert, generated.server_key)
    server_ctx.load_verify_locations(generated.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = build_ssl_context(generated.tls_credentials())
    left, right = socket.socketpair()
    peer: dict[str, object] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(right, server_side=True) as tls:
            peer["cert"] = tls.getpeercert()
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(left, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
    finally:
        thread.join(timeout=10)
    subject = dict(x[0] for x in peer["cert"]["subject"])  # type: ignore[index]
    assert subject["commonName"] == INSI_AUTO


def test_existing_files_are_not_overwritten(generated: TestPkiFiles) -> None:
    before = generated.ca_cert.read_bytes()
    with pytest.raises(ConfigurationError, match="already exists"):
        generate_test_pki(generated.directory)
    assert generated.ca_cert.read_bytes() == before


def test_overwrite_and_custom_identities(tmp_path: Path) -> None:
    first = generate_test_pki(tmp_path, structure_id="312345678901234", organisation="CLINIQUE")
    first_ca = first.ca_cert.read_bytes()
    second = generate_test_pki(tmp_path, overwrite=True, structure_id="312345678901234", professional_id="810001234567")
    assert first_ca != second.ca_cert.read_bytes()
    assert _name(_cert(second.professional_cert), NameOID.COMMON_NAME) == ["810001234567"]
    assert _name(_cert(second.org_auth_cert), NameOID.ORGANIZATIONAL_UNIT_NAME) == ["312345678901234"]


def test_existing_methods_still_work(pki_files: PkiFiles) -> None:
    client = pki_files.pki.issue_client("Cabinet AUTH_CLI", organisation="Cabinet")
    assert _name(client.certificate, NameOID.COMMON_NAME) == ["Cabinet AUTH_CLI"]
    eku = client.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    server = pki_files.pki.issue_server(("localhost",))
    eku = server.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    manu = pki_files.pki.issue_organisation_auth(organisation="C", structure_id="1123456789", common_name="INSI-MANU")
    assert _name(manu.certificate, NameOID.COMMON_NAME) == ["INSI-MANU"]


def test_validity_dates_can_be_chosen(pki_files: PkiFiles) -> None:
    now = dt.datetime.now(dt.UTC)
    old = pki_files.pki.issue_professional(
        "899700000005",
        family_name="A",
        given_name="B",
        not_after=now - dt.timedelta(days=1),
        not_before=now - dt.timedelta(days=10),
    )
    assert old.certificate.not_valid_after_utc < now
    assert isinstance(TestPki.create(now=now).ca.certificate, x509.Certificate)
