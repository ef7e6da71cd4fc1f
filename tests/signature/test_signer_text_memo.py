"""The XAdES text writer writes the certificates' share of a signature once per certificate objects (issue 22).

The SignedProperties around their SigningTime and the KeyInfo depend only on the certificates, the CertDigest
algorithm and the XAdES version: ``_signer_text`` keeps them per list of certificate *objects* (another
certificate, even an equal one, never reads an entry it did not fill). The tree builder is the reference: the
text writer's document is compared with it for several signers and profiles, one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dmp_connector.signature import FileSigner
from dmp_connector.signature import xades as xades_mod
from tests.conftest import PkiFiles
from tests.signature.test_signing_fast_paths import CDA_BYTES, NOW, PROFILES, sign_both_ways


@pytest.fixture
def empty_texts() -> Iterator[None]:
    saved = dict(xades_mod._SIGNER_TEXTS)
    xades_mod._SIGNER_TEXTS.clear()
    yield
    xades_mod._SIGNER_TEXTS.clear()
    xades_mod._SIGNER_TEXTS.update(saved)


def _both(monkeypatch: pytest.MonkeyPatch, signer: FileSigner, profile: Any) -> bytes:
    fast, reference, written = sign_both_ways(
        monkeypatch,
        submission_set_unique_id="1.2.250.1.999.7.1",
        documents=[xades_mod.SubmittedDocument(unique_id="1.2.250.1.999.7.2", content=CDA_BYTES, is_cda=True)],
        signer=signer,
        unique_id="1.2.250.1.999.7.3",
        profile=profile,
        signing_time=NOW,
    )
    assert written == [True]
    assert fast[0] == reference[0] == "ok"
    assert fast[1].xml == reference[1].xml
    xml: bytes = fast[1].xml
    return xml


def test_each_signer_and_profile_gets_its_own_text(
    pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch, empty_texts: None
) -> None:
    one = pki_files.pki.issue_organisation_sign(organisation="CABINET UN", structure_id="1000000001")
    two = pki_files.pki.issue_organisation_sign(organisation="CABINET DEUX", structure_id="1000000002")
    signers = [
        FileSigner([one.certificate, pki_files.pki.ca.certificate], one.key),
        FileSigner([two.certificate, pki_files.pki.ca.certificate], two.key),
    ]
    own = {id(signer): xades_mod._der_base64(signer.certificate_chain()[0]).encode() for signer in signers}
    for _ in range(2):  # the second round reads every text from the memo
        for signer, other in (signers, signers[::-1]):
            for profile in PROFILES:
                xml = _both(monkeypatch, signer, profile)
                assert own[id(signer)] in xml and own[id(other)] not in xml  # its own certificate, not the other's
    assert len(xades_mod._SIGNER_TEXTS) == len(signers) * 4  # (leaf, chain) x (digest, version) as the profiles ask


def test_written_once_per_certificate_objects(
    pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch, empty_texts: None
) -> None:
    sign = pki_files.pki.issue_organisation_sign(organisation="CABINET UN", structure_id="1000000001")
    writes: list[int] = []
    original = xades_mod._write_signer_text

    def counted(*arguments: Any) -> Any:
        writes.append(1)
        return original(*arguments)

    monkeypatch.setattr(xades_mod, "_write_signer_text", counted)
    signer = FileSigner([sign.certificate], sign.key)
    first = _both(monkeypatch, signer, PROFILES[0])
    _both(monkeypatch, signer, PROFILES[0])
    assert writes == [1]
    # An equal certificate, another object: written for it, not read from the first one's entry.
    again = x509.load_der_x509_certificate(sign.certificate.public_bytes(serialization.Encoding.DER))
    assert again == sign.certificate and again is not sign.certificate
    assert _both(monkeypatch, FileSigner([again], sign.key), PROFILES[0]) == first
    assert writes == [1, 1]


def test_at_most_the_last_signers_are_kept(pki_files: PkiFiles, empty_texts: None) -> None:
    sign = pki_files.pki.issue_organisation_sign(organisation="CABINET UN", structure_id="1000000001")
    der = sign.certificate.public_bytes(serialization.Encoding.DER)
    copies = [x509.load_der_x509_certificate(der) for _ in range(xades_mod._KEPT_SIGNER_TEXTS + 3)]
    profile = PROFILES[0]
    for cert in copies:
        assert xades_mod._signer_text((cert,), profile.cert_digest, profile.xades_version) is not None
    assert len(xades_mod._SIGNER_TEXTS) == xades_mod._KEPT_SIGNER_TEXTS
