"""Signature keys and certificates: loaded from PEM or PKCS#12, checked, refused with a clear error.

The TLS module reads the *authentication* certificate; this one reads the *signature*
certificate (IGC-Santé "SIGN", or a professional's card certificate seen through a
:class:`~dmp_connector.signature.Signer`). The checks are the ones a signature needs:

* the certificate is inside its validity window (expired and not-yet-valid are told apart);
* the private key is the certificate's own (a mismatched pair is refused before any signing);
* the key is RSA — the national services sign with RSA PKCS#1 v1.5;
* the key usage, when stated, allows ``digitalSignature`` or ``nonRepudiation``.

Every failure is a :class:`~dmp_connector.errors.ConfigurationError` that names the file
and the setting to fix, never a secret.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from dmp_connector.config import CertificateFiles
from dmp_connector.errors import ConfigurationError

__all__ = [
    "certificate_dn",
    "certificate_memo",
    "check_signing_certificate",
    "leaf_certificate",
    "load_certificates",
    "load_signing_identity",
]

_DN_NAMES = {NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN", NameOID.STATE_OR_PROVINCE_NAME: "ST"}

_T = TypeVar("_T")
_KEPT_CERTIFICATES: Final = 16
_MEMO_LOCK = threading.Lock()
_MEMOS: dict[int, tuple[x509.Certificate, dict[str, object]]] = {}


def certificate_memo(cert: x509.Certificate, name: str, compute: Callable[[x509.Certificate], _T]) -> _T:
    """``compute(cert)``, computed once per certificate *object* and kept while that object is kept here.

    Signing reads the same facts of the same certificate for every deposit (its DER, its subject and
    issuer strings, its dates, its key type and usage): they are kept per certificate object, found by
    identity. The entry holds the object itself, so its ``id`` cannot be reused while the entry
    lives, and an entry is used only when it holds that very object (``is``): another certificate,
    even an equal one, never reads an entry it did not fill. A certificate object is immutable, so
    what is kept is what ``compute`` would give again; what depends on the moment (is it valid
    now?) is never kept, only its inputs. A ``compute`` that raises keeps nothing (the next call
    raises again). ``name`` tells the facts apart: one name, one ``compute``. Thread-safe; at most
    :data:`_KEPT_CERTIFICATES` certificates are kept (the oldest goes first).
    """
    key = id(cert)
    entry = _MEMOS.get(key)
    if entry is None or entry[0] is not cert:
        with _MEMO_LOCK:
            entry = _MEMOS.get(key)
            if entry is None or entry[0] is not cert:
                while len(_MEMOS) >= _KEPT_CERTIFICATES:
                    del _MEMOS[next(iter(_MEMOS))]
                entry = _MEMOS[key] = (cert, {})
    memo = entry[1]
    try:
        return memo[name]  # type: ignore[return-value]  # filled by the same ``compute`` under this name
    except KeyError:
        value = compute(cert)
        memo[name] = value
        return value


def _subject_dn(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string(_DN_NAMES)


def _validity(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _key_facts(cert: x509.Certificate) -> tuple[bool, bool]:
    """(the key is RSA, the key usage allows signing): what :func:`check_signing_certificate` asks, in its order."""
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        return False, False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True, True  # no restriction stated
    return True, bool(usage.digital_signature or usage.content_commitment)


def certificate_dn(name: x509.Name | x509.Certificate) -> str:
    """The RFC 2253 string of a certificate's subject, with ``GN=``/``SN=``/``ST=`` names.

    This is the VIHF ``Issuer`` form: the editor kit rewrites .NET's ``G=``/``S=`` to
    ``GN=``/``ST=`` (CI-SIS synchronous transport volet); ``SN=`` for the surname is the
    usual OpenSSL name [I]. Most specific first, as RFC 2253 orders it::

        CN=DMP SIGN,OU=1123456789,O=CABINET MARTIN,ST=Paris (75),C=FR
    """
    if isinstance(name, x509.Certificate):
        return certificate_memo(name, "subject_dn", _subject_dn)
    return name.rfc4514_string(_DN_NAMES)


def _read(path: Path, what: str, *, hint: str = "check the path in [signing.credentials]") -> bytes:
    if not path.exists():
        raise ConfigurationError(f"{what} {path} does not exist", hint=hint)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{what} {path} cannot be read: {exc.strerror or exc}", hint="check the file's permissions"
        ) from exc


def load_certificates(path: str | Path, *, what: str = "certificate file") -> list[x509.Certificate]:
    """Every PEM certificate in ``path`` (a CA bundle, a chain), or a clear error naming the file."""
    p = Path(path)
    data = _read(p, what, hint="check the path")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigurationError(
            f"{what} {p} holds no PEM certificate",
            hint="give a PEM file (-----BEGIN CERTIFICATE-----); convert DER with `openssl x509 -inform der`",
        ) from exc


def _load_chain(path: Path) -> list[x509.Certificate]:
    data = _read(path, "signature certificate file")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigurationError(
            f"signature certificate file {path} holds no PEM certificate",
            hint="give a PEM file (-----BEGIN CERTIFICATE-----), or pkcs12_file for a .p12",
        ) from exc


def _load_pem(files: CertificateFiles) -> tuple[list[x509.Certificate], PrivateKeyTypes, str]:
    assert files.cert_file is not None
    assert files.key_file is not None
    chain = _load_chain(files.cert_file)
    key_data = _read(files.key_file, "signature key file")
    password = files.key_password.get_secret_value().encode() if files.key_password else None
    try:
        key = serialization.load_pem_private_key(key_data, password=password)
    except TypeError as exc:
        hint = (
            "set signing.credentials.key_password"
            if password is None
            else "remove signing.credentials.key_password: the key is not encrypted"
        )
        raise ConfigurationError(f"signature key file {files.key_file} cannot be decrypted", hint=hint) from exc
    except ValueError as exc:
        raise ConfigurationError(
            f"signature key file {files.key_file} is not a readable PEM private key (or the password is wrong)",
            hint="check signing.credentials.key_password and the file's format",
        ) from exc
    return chain, key, str(files.cert_file)


def _load_pkcs12(files: CertificateFiles) -> tuple[list[x509.Certificate], PrivateKeyTypes, str]:
    assert files.pkcs12_file is not None
    data = _read(files.pkcs12_file, "signature PKCS#12 file")
    password = files.pkcs12_password.get_secret_value().encode() if files.pkcs12_password else None
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise ConfigurationError(
            f"signature PKCS#12 file {files.pkcs12_file} cannot be opened: wrong password, not a PKCS#12 file, "
            "or a legacy encryption (RC2-40) that OpenSSL 3 no longer reads",
            hint="check signing.credentials.pkcs12_password; re-export an old file with "
            "`openssl pkcs12 -legacy -in old.p12 -out new.pem -nodes` and give cert_file + key_file",
        ) from exc
    if key is None or cert is None:
        raise ConfigurationError(
            f"signature PKCS#12 file {files.pkcs12_file} does not hold both a private key and its certificate"
        )
    return [cert, *extra], key, str(files.pkcs12_file)


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_signing_certificate(cert: x509.Certificate, *, what: str, now: dt.datetime | None = None) -> None:
    """Refuse a certificate that cannot sign now: dates, RSA key, key usage. ``what`` names it in errors."""
    moment = now or dt.datetime.now(dt.UTC)
    not_before, not_after = certificate_memo(cert, "validity", _validity)
    if moment < not_before:
        raise ConfigurationError(
            f"{what} is not valid before {not_before:%Y-%m-%d %H:%M} UTC",
            hint="check the machine's clock or sign once the certificate is valid",
        )
    if moment > not_after:
        raise ConfigurationError(
            f"{what} expired on {not_after:%Y-%m-%d %H:%M} UTC",
            hint="renew it (IGC-Santé certificates are renewed from the ANS portal) and update [signing.credentials]",
        )
    is_rsa, may_sign = certificate_memo(cert, "signing_key", _key_facts)
    if not is_rsa:
        raise ConfigurationError(f"{what} does not hold an RSA key; the national services sign with RSA")
    if not may_sign:
        raise ConfigurationError(
            f"the key usage of {what} allows neither digitalSignature nor nonRepudiation",
            hint="use the organisation's signature (SIGN) certificate, not its authentication one",
        )


def load_signing_identity(
    files: CertificateFiles, *, now: dt.datetime | None = None
) -> tuple[list[x509.Certificate], rsa.RSAPrivateKey]:
    """Load a signature certificate (then its chain, if the file has it) and its RSA key, all checked.

    PEM (``cert_file`` + ``key_file``, the key optionally encrypted) or PKCS#12
    (``pkcs12_file``). Raises :class:`ConfigurationError` naming the file on an expired or
    not-yet-valid certificate, a key that is not the certificate's, a key that is not RSA,
    or a key usage that does not allow signing.
    """
    if files.pkcs12_file is not None:
        chain, key, source = _load_pkcs12(files)
    elif files.cert_file is not None:
        chain, key, source = _load_pem(files)
    else:
        raise ConfigurationError(
            "no signature certificate is configured",
            hint="set [signing.credentials] (cert_file + key_file, or pkcs12_file), or plug your own Signer",
        )
    leaf = chain[0]
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise ConfigurationError(
            f"the private key does not match the signature certificate in {source}",
            hint="pair the certificate with the key it was issued for",
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(
            f"the signature key in {source} is not an RSA key; the national services sign with RSA"
        )
    check_signing_certificate(leaf, what=f"the signature certificate in {source}", now=now)
    return chain, key


def leaf_certificate(chain: Sequence[x509.Certificate], *, what: str = "the signer") -> x509.Certificate:
    """The first certificate of a signer's chain, or a clear error when the signer gave none."""
    if not chain:
        raise ConfigurationError(
            f"{what} gave no certificate", hint="Signer.certificate_chain() must return the signing certificate first"
        )
    return chain[0]
