"""TLS credentials: load, check and turn into an :class:`ssl.SSLContext`.

This module is the crypto boundary for transport credentials: it alone reads
certificate and key files for TLS, and it turns every failure (missing file, wrong
password, expired certificate, key that does not match) into a
:class:`~dmp_connector.errors.ConfigurationError` that names the file.

Server verification is always on: there is no switch to turn it off.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from .config import CertificateFiles, TlsCredentials
from .errors import ConfigurationError

__all__ = [
    "build_ssl_context",
    "certificate_subject_names",
    "check_certificate_dates",
    "load_client_identity",
    "ssl_cause",
]


def _read(path: Path, what: str) -> bytes:
    if not path.exists():
        raise ConfigurationError(f"{what} {path} does not exist", hint="check the path in the tls settings")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{what} {path} cannot be read: {exc.strerror or exc}", hint="check the file's permissions"
        ) from exc


def check_certificate_dates(cert: x509.Certificate, what: str, *, now: dt.datetime | None = None) -> None:
    """Refuse a certificate outside its validity window, saying which bound and when."""
    moment = now or dt.datetime.now(dt.UTC)
    if moment < cert.not_valid_before_utc:
        raise ConfigurationError(
            f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            hint="check the machine's clock or use the certificate once it is valid",
        )
    if moment > cert.not_valid_after_utc:
        raise ConfigurationError(
            f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            hint="renew it (IGC-Santé certificates are renewed from the ANS portal) and update the tls settings",
        )


def _public_bytes(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _load_pem_pair(creds: CertificateFiles) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    assert creds.cert_file is not None
    assert creds.key_file is not None
    cert_data = _read(creds.cert_file, "client certificate file")
    key_data = _read(creds.key_file, "client key file")
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError as exc:
        raise ConfigurationError(
            f"client certificate file {creds.cert_file} holds no PEM certificate",
            hint="give a PEM file (-----BEGIN CERTIFICATE-----), or use pkcs12_file for a .p12",
        ) from exc
    password = creds.key_password.get_secret_value().encode() if creds.key_password else None
    try:
        key = serialization.load_pem_private_key(key_data, password=password)
    except TypeError as exc:
        hint = "set tls.key_password" if password is None else "remove tls.key_password: the key is not encrypted"
        raise ConfigurationError(f"client key file {creds.key_file} cannot be decrypted", hint=hint) from exc
    except ValueError as exc:
        raise ConfigurationError(
            f"client key file {creds.key_file} is not a readable PEM private key (or the password is wrong)",
            hint="check tls.key_password and the file's format",
        ) from exc
    return chain, key


def _load_pkcs12(creds: CertificateFiles) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    assert creds.pkcs12_file is not None
    data = _read(creds.pkcs12_file, "PKCS#12 file")
    password = creds.pkcs12_password.get_secret_value().encode() if creds.pkcs12_password else None
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise ConfigurationError(
            f"PKCS#12 file {creds.pkcs12_file} cannot be opened: wrong password or not a PKCS#12 file",
            hint="check tls.pkcs12_password",
        ) from exc
    if key is None or cert is None:
        raise ConfigurationError(
            f"PKCS#12 file {creds.pkcs12_file} does not hold both a private key and its certificate"
        )
    return [cert, *extra], key


def load_client_identity(
    creds: CertificateFiles, *, now: dt.datetime | None = None
) -> tuple[list[x509.Certificate], PrivateKeyTypes] | None:
    """Load and check a certificate chain and its key, or ``None`` when none is configured.

    Used for the TLS client certificate and, by the signature package, for the signature
    certificate: same files, same checks, same errors.
    """
    if creds.pkcs12_file is not None:
        chain, key = _load_pkcs12(creds)
        source = str(creds.pkcs12_file)
    elif creds.cert_file is not None:
        chain, key = _load_pem_pair(creds)
        source = str(creds.cert_file)
    else:
        return None
    leaf = chain[0]
    check_certificate_dates(leaf, f"client certificate in {source}", now=now)
    if _public_bytes(key) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigurationError(
            f"the private key does not match the client certificate in {source}",
            hint="pair the certificate with the key it was issued for",
        )
    return chain, key


_SHORT_NAMES = {
    x509.NameOID.COMMON_NAME: "CN",
    x509.NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    x509.NameOID.ORGANIZATION_NAME: "O",
}


def certificate_subject_names(creds: CertificateFiles) -> dict[str, str]:
    """The CN, OU and O of the configured certificate's subject; empty when none is configured or readable.

    For diagnoses after a refusal: a file that cannot be read here has its own error elsewhere.
    """
    try:
        identity = load_client_identity(creds)
    except ConfigurationError:
        return {}
    if identity is None:
        return {}
    names: dict[str, str] = {}
    for attribute in identity[0][0].subject:
        short = _SHORT_NAMES.get(attribute.oid)
        if short is not None:
            names[short] = str(attribute.value)
    return names


def _load_ca_bundle(path: Path, *, now: dt.datetime | None) -> bytes:
    data = _read(path, "CA bundle")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigurationError(
            f"CA bundle {path} holds no PEM certificate", hint="give the PEM chain of the CAs to trust"
        ) from exc
    moment = now or dt.datetime.now(dt.UTC)
    if all(moment > c.not_valid_after_utc for c in certs):
        raise ConfigurationError(
            f"every certificate in the CA bundle {path} has expired",
            hint="download the current chain (IGC-Santé for national services)",
        )
    return data


@contextmanager
def _private_pem_files(
    chain: list[x509.Certificate], key: PrivateKeyTypes, password: bytes
) -> Iterator[tuple[str, str]]:
    # ssl.SSLContext only loads a client identity from files: write it to a private
    # directory, the key encrypted with a one-time password, and remove it at once.
    with tempfile.TemporaryDirectory(prefix="dmpc-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as fh:
            for cert in chain:
                fh.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(password),
                )
            )
        yield cert_path, key_path


def build_ssl_context(creds: TlsCredentials, *, now: dt.datetime | None = None) -> ssl.SSLContext:
    """An SSL context that verifies the server (TLS ≥ 1.2) and presents the client certificate if any."""
    if creds.ca_bundle is not None:
        ctx = ssl.create_default_context(cadata=_load_ca_bundle(creds.ca_bundle, now=now).decode("ascii"))
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    identity = load_client_identity(creds, now=now)
    if identity is not None:
        chain, key = identity
        password = secrets.token_bytes(24)
        with _private_pem_files(chain, key, password) as (cert_path, key_path):
            try:
                ctx.load_cert_chain(cert_path, key_path, password=password)
            except ssl.SSLError as exc:  # pragma: no cover - checked above, kept as a boundary
                raise ConfigurationError(f"the client certificate cannot be used for TLS: {exc.reason}") from exc
    return ctx


def ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a transport failure, if any; safe on cause chains that loop."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None
