"""A throw-away PKI for the sandbox and for tests: a root CA, server and client certificates.

It stands in for IGC-Santé on loopback so that mutual TLS is real in tests and in
the examples: the server checks the client certificate, the client checks the server
against the test CA, nothing is turned off. Keys are RSA (the national services sign
with RSA). Never use these certificates outside a sandbox.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["IssuedCertificate", "TestPki"]


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, ready to be written as PEM or PKCS#12."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key in PKCS#8 PEM, encrypted when ``password`` is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def pkcs12(self, password: bytes | None, *, chain: tuple[x509.Certificate, ...] = ()) -> bytes:
        """The key and certificate as a PKCS#12 file."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            b"dmp-connector", self.key, self.certificate, list(chain) or None, encryption
        )

    def write_pem(self, directory: Path, stem: str, *, password: bytes | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.crt`` and ``<stem>.key`` (mode 0600) and return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem(password))
        key_path.chmod(0o600)
        return cert_path, key_path


class TestPki:
    """A root CA that issues server and client certificates on demand."""

    __test__ = False  # not a pytest test class

    def __init__(self, ca: IssuedCertificate) -> None:
        self.ca = ca

    @classmethod
    def create(cls, *, name: str = "dmp_connector sandbox root CA", now: dt.datetime | None = None) -> TestPki:
        """A new root CA valid for ten years from ``now``."""
        start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
        key = _new_key()
        subject = _name(name, "dmp_connector sandbox")
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(IssuedCertificate(cert, key))

    @property
    def ca_pem(self) -> bytes:
        """The root certificate in PEM, to use as a CA bundle."""
        return self.ca.cert_pem

    def _issue(
        self,
        subject: x509.Name,
        *,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName],
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
    ) -> IssuedCertificate:
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        end = not_after or start + dt.timedelta(days=365)
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return IssuedCertificate(builder.sign(self.ca.key, hashes.SHA256()), key)

    def issue_server(
        self,
        hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A TLS server certificate for the given host names and IP addresses."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(
            _name(hosts[0], "dmp_connector sandbox"),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=sans,
            not_before=not_before,
            not_after=not_after,
        )

    def issue_client(
        self,
        common_name: str,
        *,
        organisation: str = "dmp_connector sandbox",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A TLS client certificate (an organisation's authentication certificate)."""
        return self._issue(
            _name(common_name, organisation),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[],
            not_before=not_before,
            not_after=not_after,
        )
