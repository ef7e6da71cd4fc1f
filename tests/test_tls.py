"""Client certificates and CA bundles: loaded, checked, and refused with a clear error."""

from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path

import pytest

from dmp_connector._tls import build_ssl_context
from dmp_connector.config import TlsCredentials
from dmp_connector.errors import ConfigurationError
from dmp_connector.sandbox import TestPki

from .conftest import PkiFiles


def test_pem_pair_and_ca_bundle_build_a_verifying_context(pki_files: PkiFiles) -> None:
    ctx = build_ssl_context(
        TlsCredentials(cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=pki_files.ca_bundle)
    )
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_no_client_certificate_still_verifies_the_server() -> None:
    ctx = build_ssl_context(TlsCredentials())
    assert ctx.verify_mode is ssl.CERT_REQUIRED


def test_encrypted_pem_key_needs_its_password(pki_files: PkiFiles, tmp_path: Path) -> None:
    cert, key = pki_files.client.write_pem(tmp_path, "enc", password=b"pw-123")
    build_ssl_context(TlsCredentials(cert_file=cert, key_file=key, key_password="pw-123"))
    with pytest.raises(ConfigurationError, match="cannot be decrypted") as info:
        build_ssl_context(TlsCredentials(cert_file=cert, key_file=key))
    assert "key_password" in str(info.value)
    with pytest.raises(ConfigurationError, match="password is wrong"):
        build_ssl_context(TlsCredentials(cert_file=cert, key_file=key, key_password="nope"))


def test_pkcs12(pki_files: PkiFiles, tmp_path: Path) -> None:
    p12 = tmp_path / "org.p12"
    p12.write_bytes(pki_files.client.pkcs12(b"p12-pass", chain=(pki_files.pki.ca.certificate,)))
    build_ssl_context(TlsCredentials(pkcs12_file=p12, pkcs12_password="p12-pass"))
    with pytest.raises(ConfigurationError, match="wrong password") as info:
        build_ssl_context(TlsCredentials(pkcs12_file=p12, pkcs12_password="bad"))
    assert "p12-pass" not in str(info.value)


def test_missing_files_are_named(pki_files: PkiFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"client certificate file .*nope.crt does not exist"):
        build_ssl_context(TlsCredentials(cert_file=tmp_path / "nope.crt", key_file=pki_files.client_key))
    with pytest.raises(ConfigurationError, match=r"CA bundle .*ca-missing.pem does not exist"):
        build_ssl_context(TlsCredentials(ca_bundle=tmp_path / "ca-missing.pem"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_named(pki_files: PkiFiles, tmp_path: Path) -> None:
    key = tmp_path / "locked.key"
    key.write_bytes(pki_files.client.key_pem())
    key.chmod(0)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        build_ssl_context(TlsCredentials(cert_file=pki_files.client_cert, key_file=key))


def test_unreadable_path_is_named(pki_files: PkiFiles, tmp_path: Path) -> None:
    # A directory in place of a file cannot be read, even by root.
    folder = tmp_path / "a-directory.key"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match="cannot be read"):
        build_ssl_context(TlsCredentials(cert_file=pki_files.client_cert, key_file=folder))


def test_expired_and_not_yet_valid_certificates(pki_files: PkiFiles, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = pki_files.pki.issue_client(
        "old", not_before=now - dt.timedelta(days=800), not_after=now - dt.timedelta(days=1)
    )
    cert, key = old.write_pem(tmp_path, "old")
    with pytest.raises(ConfigurationError, match="expired on"):
        build_ssl_context(TlsCredentials(cert_file=cert, key_file=key))
    future = pki_files.pki.issue_client("future", not_before=now + dt.timedelta(days=2))
    cert, key = future.write_pem(tmp_path, "future")
    with pytest.raises(ConfigurationError, match="not valid before"):
        build_ssl_context(TlsCredentials(cert_file=cert, key_file=key))


def test_key_that_does_not_match_the_certificate(pki_files: PkiFiles, tmp_path: Path) -> None:
    other = pki_files.pki.issue_client("other")
    _, other_key = other.write_pem(tmp_path, "other")
    with pytest.raises(ConfigurationError, match="does not match"):
        build_ssl_context(TlsCredentials(cert_file=pki_files.client_cert, key_file=other_key))


def test_garbage_and_expired_ca_bundles(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        build_ssl_context(TlsCredentials(ca_bundle=garbage))
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    old_ca = TestPki.create(now=long_ago)
    expired = tmp_path / "expired-ca.pem"
    expired.write_bytes(old_ca.ca_pem)
    with pytest.raises(ConfigurationError, match="has expired"):
        build_ssl_context(TlsCredentials(ca_bundle=expired))


def test_certificate_file_without_pem(pki_files: PkiFiles, tmp_path: Path) -> None:
    der = tmp_path / "cert.der"
    der.write_bytes(b"\x30\x82garbage")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        build_ssl_context(TlsCredentials(cert_file=der, key_file=pki_files.client_key))


def test_ssl_cause_finds_the_tls_error_and_survives_a_looping_chain() -> None:
    from dmp_connector._tls import ssl_cause

    tls = ssl.SSLError(1, "certificate verify failed")
    outer = OSError("connection failed")
    outer.__cause__ = tls
    assert ssl_cause(outer) is tls
    first, second = OSError("a"), OSError("b")
    first.__context__, second.__context__ = second, first
    assert ssl_cause(first) is None
