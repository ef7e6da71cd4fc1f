"""The ``Signer`` seam: whatever holds the private key signs bytes for the SDK.

The SDK never needs the private key itself. A vendor plugs a smart card (CPS, through
PKCS#11), an HSM or a remote signing service by implementing two methods; the
file-based :class:`FileSigner` is the default, loaded from :class:`CertificateFiles`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from dmp_connector._tls import check_certificate_dates, load_client_identity
from dmp_connector.config import CertificateFiles
from dmp_connector.errors import ConfigurationError

__all__ = ["DigestAlgorithm", "FileSigner", "SignatureAlgorithm", "Signer"]


class SignatureAlgorithm(StrEnum):
    """XML-DSig signature algorithms the national services accept (RSA PKCS#1 v1.5)."""

    RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    """The older profile used by public DMP implementations; available, not the default."""

    @property
    def hash(self) -> hashes.HashAlgorithm:
        """The hash function under the signature."""
        return hashes.SHA256() if self is SignatureAlgorithm.RSA_SHA256 else hashes.SHA1()  # noqa: S303


class DigestAlgorithm(StrEnum):
    """XML-DSig digest algorithms for references."""

    SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
    SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


@runtime_checkable
class Signer(Protocol):
    """Signs bytes with a private key it keeps to itself.

    ``sign`` returns the raw signature value (RSA PKCS#1 v1.5 over the hash that
    ``algorithm`` names) of ``data`` — the canonicalised ``ds:SignedInfo`` when used for
    XML-DSig. ``certificate_chain`` returns the signing certificate first, then its
    issuers if known.
    """

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """Sign ``data``; a card may ask for its PIN here."""
        ...

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        """The signing certificate, then its issuers."""
        ...


class FileSigner:
    """A :class:`Signer` over a certificate and key read from PEM or PKCS#12 files."""

    def __init__(self, chain: Sequence[x509.Certificate], key: rsa.RSAPrivateKey) -> None:
        if not chain:
            raise ConfigurationError("a signer needs its certificate")
        self._chain = tuple(chain)
        self._key = key

    @classmethod
    def from_files(cls, files: CertificateFiles, *, now: dt.datetime | None = None) -> FileSigner:
        """Load and check the files: dates, key matching the certificate, RSA key, signing usage."""
        identity = load_client_identity(files, now=now)
        if identity is None:
            raise ConfigurationError(
                "no signature certificate is configured",
                hint="set [signing.credentials] (cert_file + key_file, or pkcs12_file), or plug your own Signer",
            )
        chain, key = identity
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("the signature key is not an RSA key; the national services sign with RSA")
        _check_signing_usage(chain[0])
        return cls(chain, key)

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """RSA PKCS#1 v1.5 signature of ``data``."""
        try:
            return self._key.sign(data, padding.PKCS1v15(), SignatureAlgorithm(algorithm).hash)
        except UnsupportedAlgorithm as exc:  # pragma: no cover - SHA-1/SHA-256 are always there
            raise ConfigurationError(f"this system cannot sign with {algorithm}") from exc

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        """The certificate read from the files, then the chain that came with it."""
        return self._chain

    def check_dates(self, *, now: dt.datetime | None = None) -> None:
        """Refuse to sign with a certificate that expired since it was loaded."""
        check_certificate_dates(self._chain[0], "signature certificate", now=now)


def _check_signing_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return  # no restriction stated
    if not (usage.digital_signature or usage.content_commitment):
        raise ConfigurationError(
            "the signature certificate's key usage allows neither digitalSignature nor nonRepudiation",
            hint="use the organisation's signature (SIGN) certificate, not its authentication one",
        )
