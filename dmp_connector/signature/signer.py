"""The ``Signer`` seam: whatever holds the private key signs bytes for the SDK.

The SDK never needs the private key itself. A vendor plugs a smart card (CPS, through
PKCS#11), an HSM or a remote signing service by implementing two methods; the
file-based :class:`FileSigner` is the default, loaded from :class:`CertificateFiles`.

XML signatures are built around this seam, not around a key object: the SDK writes
``ds:SignedInfo`` itself, canonicalises it and hands those bytes to :meth:`Signer.sign`
(see :mod:`dmp_connector.signature._xmldsig` for why). A card or HSM therefore sees
exactly one call per signature, with the bytes a PKCS#11 ``CKM_SHA256_RSA_PKCS``
mechanism expects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from dmp_connector.config import CertificateFiles, SigningSettings
from dmp_connector.errors import ConfigurationError

from .keys import check_signing_certificate, leaf_certificate, load_signing_identity

__all__ = ["DigestAlgorithm", "FileSigner", "SignatureAlgorithm", "Signer", "algorithms_from_settings", "check_signer"]


class SignatureAlgorithm(StrEnum):
    """XML-DSig signature algorithms the national services accept (RSA PKCS#1 v1.5)."""

    RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    """The older profile used by public DMP implementations; available, not the default."""

    @property
    def hash(self) -> hashes.HashAlgorithm:
        """The hash function under the signature."""
        return hashes.SHA256() if self is SignatureAlgorithm.RSA_SHA256 else hashes.SHA1()  # noqa: S303

    @classmethod
    def from_setting(cls, name: str) -> SignatureAlgorithm:
        """``rsa-sha256`` / ``rsa-sha1`` (as :class:`SigningSettings` spells them) or the URI itself."""
        by_name = {"rsa-sha256": cls.RSA_SHA256, "rsa-sha1": cls.RSA_SHA1}
        try:
            return by_name.get(name.lower()) or cls(name)
        except ValueError:
            raise ConfigurationError(
                f"unknown signature algorithm {name!r}", hint="use rsa-sha256 (default) or rsa-sha1"
            ) from None


class DigestAlgorithm(StrEnum):
    """XML-DSig digest algorithms for references."""

    SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
    SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"

    @property
    def hash(self) -> hashes.HashAlgorithm:
        """The hash function of the digest."""
        return hashes.SHA256() if self is DigestAlgorithm.SHA256 else hashes.SHA1()  # noqa: S303

    @classmethod
    def from_setting(cls, name: str) -> DigestAlgorithm:
        """``sha256`` / ``sha1`` (as :class:`SigningSettings` spells them) or the URI itself."""
        by_name = {"sha256": cls.SHA256, "sha1": cls.SHA1}
        try:
            return by_name.get(name.lower()) or cls(name)
        except ValueError:
            raise ConfigurationError(
                f"unknown digest algorithm {name!r}", hint="use sha256 (default) or sha1"
            ) from None


def algorithms_from_settings(signing: SigningSettings) -> tuple[SignatureAlgorithm, DigestAlgorithm]:
    """The signature and digest algorithms the settings ask for (RSA-SHA256 / SHA-256 by default)."""
    return (
        SignatureAlgorithm.from_setting(signing.signature_algorithm),
        DigestAlgorithm.from_setting(signing.digest_algorithm),
    )


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
        self._key_memo: tuple[object, x509.Certificate, bool] | None = None

    @classmethod
    def from_files(cls, files: CertificateFiles, *, now: dt.datetime | None = None) -> FileSigner:
        """Load and check the files: dates, key matching the certificate, RSA key, signing usage.

        Every refusal is a :class:`ConfigurationError` that names the file (see
        :func:`~dmp_connector.signature.keys.load_signing_identity`).
        """
        chain, key = load_signing_identity(files, now=now)
        return cls(chain, key)

    @classmethod
    def from_settings(cls, signing: SigningSettings, *, now: dt.datetime | None = None) -> FileSigner:
        """The signer ``[signing.credentials]`` describes, or a clear error when none is configured."""
        if signing.credentials is None:
            raise ConfigurationError(
                "no signature certificate is configured",
                hint="set [signing.credentials] (cert_file + key_file, or pkcs12_file), or plug your own Signer",
            )
        return cls.from_files(signing.credentials, now=now)

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """RSA PKCS#1 v1.5 signature of ``data``."""
        try:
            return self._key.sign(data, padding.PKCS1v15(), SignatureAlgorithm(algorithm).hash)
        except UnsupportedAlgorithm as exc:  # pragma: no cover - SHA-1/SHA-256 are always there
            raise ConfigurationError(f"this system cannot sign with {algorithm}") from exc

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        """The certificate read from the files, then the chain that came with it."""
        return self._chain

    def _holds_key_of(self, cert: x509.Certificate) -> bool:
        """Whether this signer's key is ``cert``'s RSA key: compared once per key and certificate object (issue 22)."""
        key = self._key
        memo = self._key_memo
        if memo is not None and memo[0] is key and memo[1] is cert:
            return memo[2]
        public = cert.public_key()
        holds = (
            isinstance(key, rsa.RSAPrivateKey)
            and isinstance(public, rsa.RSAPublicKey)
            and key.public_key().public_numbers() == public.public_numbers()
        )
        self._key_memo = (key, cert, holds)  # one tuple, replaced whole: a thread reads the old one or the new
        return holds

    def check_dates(self, *, now: dt.datetime | None = None) -> None:
        """Refuse to sign with a certificate that expired since it was loaded."""
        check_signing_certificate(self._chain[0], what="the signature certificate", now=now)


_FILE_SIGNER_SIGN: Final = FileSigner.sign
"""``FileSigner.sign`` as defined here: a signer whose ``sign`` was replaced since is verified like any other."""


def check_signer(signer: Signer, *, now: dt.datetime | None = None) -> x509.Certificate:
    """The signer's certificate, checked before each signature: dates, RSA key, key usage.

    A card or HSM signer is checked like a file one, so that an expired card certificate
    fails here, with a clear message, rather than at the national service.
    """
    cert = leaf_certificate(signer.certificate_chain())
    check_signing_certificate(cert, what="the signature certificate", now=now)
    return cert


def signs_with_key_of(signer: Signer, cert: x509.Certificate) -> bool:
    """True when ``signer`` is a :class:`FileSigner` itself (a subclass's ``sign`` may do anything) holding
    ``cert``'s RSA key.

    Its PKCS#1 v1.5 signatures then verify with ``cert`` by construction (and OpenSSL checks each RSA-CRT
    result against the public exponent before handing it out), so the XAdES builder need not verify each
    one again (0.35 M instructions a deposit, issue 22). Any other signer (a card, an HSM) is verified.
    """
    return (
        type(signer) is FileSigner
        and FileSigner.sign is _FILE_SIGNER_SIGN  # not patched on the class …
        and "sign" not in vars(signer)  # … nor replaced on this object
        and signer._holds_key_of(cert)
    )
