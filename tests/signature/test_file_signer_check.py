"""The submission-set signature skips verifying its own value only for a FileSigner holding its certificate's key.

``sign_submission_set`` verified every signature value with the certificate, to refuse a signer whose key is
not its certificate's. A :class:`FileSigner` signs with the RSA key it holds: once that key is known to be the
certificate's (compared once per key and certificate object), its signatures verify by construction and the
check is skipped (issue 22). Every other signer, a subclass included, is still verified, with the same refusal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from dmp_connector.errors import ConfigurationError
from dmp_connector.sandbox import IssuedCertificate
from dmp_connector.signature import FileSigner, SignatureAlgorithm, SubmittedDocument
from dmp_connector.signature import xades as xades_mod
from dmp_connector.signature.signer import signs_with_key_of
from dmp_connector.signature.xades import sign_submission_set, verify_submission_set_signature
from tests.conftest import PkiFiles

SUBMISSION_SET = "1.2.250.1.999.8.1"
DOCUMENT_ID = "1.2.250.1.999.8.2"
CONTENT = b"%PDF-1.4 a document that is not a CDA"
REFUSAL = "does not verify with its own certificate"


@pytest.fixture(scope="module")
def signing(pki_files: PkiFiles) -> IssuedCertificate:
    return pki_files.pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")


@pytest.fixture(scope="module")
def other(pki_files: PkiFiles) -> IssuedCertificate:
    return pki_files.pki.issue_organisation_sign(organisation="CABINET AUTRE", structure_id="1987654321")


def _sign(signer: object) -> bytes:
    return sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=[SubmittedDocument(unique_id=DOCUMENT_ID, content=CONTENT, is_cda=False)],
        signer=signer,  # type: ignore[arg-type]  # FileSigner or a test double
    ).xml


def _verified(pki_files: PkiFiles, xml: bytes) -> None:
    verify_submission_set_signature(
        xml,
        documents={DOCUMENT_ID: CONTENT},
        submission_set_unique_id=SUBMISSION_SET,
        trusted=[pki_files.pki.ca.certificate],
        is_cda={DOCUMENT_ID: False},
    )


def _no_verification(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of the verification (the builder's, and the verifier's when a test verifies)."""
    calls: list[int] = []
    real = xades_mod._signature_matches

    def counted(cert: x509.Certificate, raw: bytes, data: bytes, algorithm: SignatureAlgorithm) -> bool:
        calls.append(1)
        return real(cert, raw, data, algorithm)

    monkeypatch.setattr(xades_mod, "_signature_matches", counted)
    return calls


def test_a_file_signer_with_its_certificates_key_is_not_verified_again(
    pki_files: PkiFiles, signing: IssuedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_verification(monkeypatch)
    signer = FileSigner([signing.certificate], signing.key)
    made = [_sign(signer) for _ in range(2)]
    assert calls == []  # (verifying the documents below calls it)
    for xml in made:
        _verified(pki_files, xml)


def test_a_file_signer_with_another_key_is_refused_as_before(
    signing: IssuedCertificate, other: IssuedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_verification(monkeypatch)
    signer = FileSigner([signing.certificate], other.key)
    for _ in range(2):  # the memo keeps "not its key": refused the second time too
        with pytest.raises(ConfigurationError, match=REFUSAL):
            _sign(signer)
    assert calls == [1, 1]
    assert not signs_with_key_of(signer, signing.certificate)


def test_the_memo_follows_the_key_and_the_certificate(
    signing: IssuedCertificate, other: IssuedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = FileSigner([signing.certificate], signing.key)
    assert signs_with_key_of(signer, signing.certificate)
    assert not signs_with_key_of(signer, other.certificate)  # another certificate object: compared again
    assert signs_with_key_of(signer, signing.certificate)
    monkeypatch.setattr(signer, "_key", other.key)  # a key swapped under the signer: compared again
    assert not signs_with_key_of(signer, signing.certificate)
    with pytest.raises(ConfigurationError, match=REFUSAL):
        _sign(signer)


class _OtherKeySigner(FileSigner):
    """A subclass whose ``sign`` does not use the key it was given: it must still be verified."""

    def __init__(self, chain: Sequence[x509.Certificate], key: rsa.RSAPrivateKey, used: rsa.RSAPrivateKey) -> None:
        super().__init__(chain, key)
        self._used = used

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return self._used.sign(data, padding.PKCS1v15(), SignatureAlgorithm(algorithm).hash)


class _PlainSigner:
    """A signer that is no FileSigner (a card, an HSM)."""

    def __init__(self, chain: Sequence[x509.Certificate], key: rsa.RSAPrivateKey) -> None:
        self._chain, self._key = tuple(chain), key

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), SignatureAlgorithm(algorithm).hash)

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        return self._chain


def test_a_subclass_and_any_other_signer_are_verified(
    pki_files: PkiFiles, signing: IssuedCertificate, other: IssuedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_verification(monkeypatch)
    with pytest.raises(ConfigurationError, match=REFUSAL):
        _sign(_OtherKeySigner([signing.certificate], signing.key, other.key))
    xml = _sign(_PlainSigner([signing.certificate], signing.key))
    with pytest.raises(ConfigurationError, match=REFUSAL):
        _sign(_PlainSigner([signing.certificate], other.key))
    assert calls == [1, 1, 1]
    _verified(pki_files, xml)


def test_the_skipped_check_gives_the_same_document(signing: IssuedCertificate) -> None:
    """Same signature document whether the value was verified (a plain signer) or not (a FileSigner)."""
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0)
    made = [
        sign_submission_set(
            submission_set_unique_id=SUBMISSION_SET,
            documents=[SubmittedDocument(unique_id=DOCUMENT_ID, content=CONTENT, is_cda=False)],
            signer=signer,
            unique_id="1.2.250.1.999.8.8",
            signing_time=moment,
        ).xml
        for signer in (FileSigner([signing.certificate], signing.key), _PlainSigner([signing.certificate], signing.key))
    ]
    assert made[0] == made[1]


def test_a_file_signer_whose_sign_was_replaced_is_verified(
    signing: IssuedCertificate, other: IssuedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sign`` replaced on the object, or patched on the class (a test double, a wrapper): verified as before."""

    def with_other_key(data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return other.key.sign(data, padding.PKCS1v15(), SignatureAlgorithm(algorithm).hash)

    on_object = FileSigner([signing.certificate], signing.key)
    monkeypatch.setattr(on_object, "sign", with_other_key)
    assert not signs_with_key_of(on_object, signing.certificate)
    with pytest.raises(ConfigurationError, match=REFUSAL):
        _sign(on_object)
    monkeypatch.undo()

    on_class = FileSigner([signing.certificate], signing.key)
    monkeypatch.setattr(FileSigner, "sign", lambda self, data, algorithm: with_other_key(data, algorithm))
    assert not signs_with_key_of(on_class, signing.certificate)
    with pytest.raises(ConfigurationError, match=REFUSAL):
        _sign(on_class)
