"""Whether an issuer signed a certificate is kept per pair of certificate objects (issue 22n, the sandbox's CPU).

``_xmldsig._issued_by`` keeps the verdict of ``_check_issued_by`` (the RSA shortcut, then
cryptography's ``verify_directly_issued_by``) in the certificate's memo, read only for the very
issuer object it was computed for. Compared here with the check it keeps: for every pair of a pool
of certificates (other keys under the same names, tampered, PSS, EC, SHA-512 …) in any order and
from several threads; through ``verify_vihf`` and ``verify_submission_set_signature``, the same
results and errors with and without the memo, whatever was verified before; and the RSA check runs
once per pair.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.errors import SignatureVerificationError
from dmp_connector.sandbox import TestPki
from dmp_connector.signature import (
    FileSigner,
    VihfRequest,
    build_vihf,
    sign_submission_set,
    verify_submission_set_signature,
    verify_vihf,
)
from dmp_connector.signature import _xmldsig as xmldsig
from dmp_connector.signature.keys import certificate_memo
from dmp_connector.xml import to_bytes
from tests.signature import test_xades as xades_tests
from tests.signature.test_verification_fast_paths import (
    _CA,
    _CHAINS,
    _FOREIGN_CA,
    _NOT_CA,
    _OTHER_KEY,
    _SHORT_CA,
    _certificate,
    _directly_issued_by,
    _other_certificates,
)
from tests.signature.test_vihf import INS_CX, make_settings

# A CA named "CA" whose key is the one that signed the "foreign" leaf (the pool's CAs all hold the other key).
_OTHER_CA = _certificate(
    "CA", issuer="CA", days=(-10, 10), ca=True, signing=None, key=_OTHER_KEY, subject_key=_OTHER_KEY
)


_POOL: list[x509.Certificate] = [
    _CA,
    _SHORT_CA,
    _NOT_CA,
    _FOREIGN_CA,
    *(c for chain in _CHAINS.values() for c in chain),
    *_other_certificates(),
    _OTHER_CA,
]


def _fresh(cert: x509.Certificate) -> x509.Certificate:
    """An equal certificate, as another object (nothing kept for it)."""
    return x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_POOL) - 1), st.integers(0, len(_POOL) - 1)), max_size=60))
def test_a_kept_verdict_is_the_verdict_of_cryptography(pairs: list[tuple[int, int]]) -> None:
    """Any order of questions, repeated ones and more issuers than are kept: always cryptography's answer."""
    for cert_index, issuer_index in pairs:
        cert, issuer = _POOL[cert_index], _POOL[issuer_index]
        assert xmldsig._issued_by(cert, issuer) is _directly_issued_by(cert, issuer), (cert_index, issuer_index)


def test_every_pair_twice_in_both_orders() -> None:
    for order in (_POOL, list(reversed(_POOL))):
        for _ in range(2):
            for cert in order:
                for issuer in order:
                    assert xmldsig._issued_by(cert, issuer) is _directly_issued_by(cert, issuer)


def test_a_verdict_is_read_for_its_own_issuer_object_only() -> None:
    """An entry under an issuer's id that holds another object is not read (the ``is`` guard)."""
    leaf = _fresh(_CHAINS["foreign"][0])  # signed by _OTHER_KEY
    verdicts = certificate_memo(leaf, "issued_by", xmldsig._no_verdicts)
    verdicts[id(_CA)] = (_OTHER_CA, True)  # as if the id of a former issuer object were reused
    assert xmldsig._issued_by(leaf, _CA) is False
    verdicts[id(_OTHER_CA)] = (_CA, False)
    assert xmldsig._issued_by(leaf, _OTHER_CA) is True


def test_another_issuer_under_the_same_name_gets_its_own_verdict() -> None:
    leaf = _fresh(_CHAINS["foreign"][0])
    assert _CA.subject == _OTHER_CA.subject
    assert xmldsig._issued_by(leaf, _OTHER_CA) is True
    assert xmldsig._issued_by(leaf, _CA) is False  # same subject "CA", another key
    assert xmldsig._issued_by(leaf, _fresh(_OTHER_CA)) is True
    assert xmldsig._issued_by(leaf, _OTHER_CA) is True
    assert xmldsig._issued_by(leaf, _CA) is False


def test_the_signature_check_runs_once_per_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[x509.Certificate, x509.Certificate]] = []
    check = xmldsig._check_issued_by

    def counted(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        calls.append((cert, issuer))
        return check(cert, issuer)

    monkeypatch.setattr(xmldsig, "_check_issued_by", counted)
    leaf, short_ca = _fresh(_CHAINS["via short CA"][0]), _fresh(_SHORT_CA)
    for _ in range(3):
        assert xmldsig.certificate_path([leaf, short_ca], [_CA]) == [leaf, short_ca, _CA]
    assert [(c is leaf, i) for c, i in calls] == [(True, _CA), (True, short_ca), (False, _CA)]


def test_the_verdicts_kept_per_certificate_are_bounded() -> None:
    leaf = _fresh(_CHAINS["good"][0])
    issuers = [_fresh(_CA) for _ in range(3 * xmldsig._KEPT_VERDICTS)]
    for issuer in issuers:
        assert xmldsig._issued_by(leaf, issuer) is True
    assert 0 < len(certificate_memo(leaf, "issued_by", xmldsig._no_verdicts)) <= xmldsig._KEPT_VERDICTS


def test_verdicts_from_many_threads() -> None:
    expected = {(i, j): _directly_issued_by(c, d) for i, c in enumerate(_POOL) for j, d in enumerate(_POOL)}
    failures: list[tuple[int, int]] = []

    def work(seed: int) -> None:
        for step in range(400):
            i, j = (seed * 7 + step * 13) % len(_POOL), (seed * 11 + step * 5) % len(_POOL)
            if xmldsig._issued_by(_POOL[i], _POOL[j]) is not expected[i, j]:
                failures.append((i, j))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --------------------------------------------------------------------------------------------
# Through the public verifiers: the same outcome with the memo as with the check it keeps


def _outcome(verify: Callable[[], object]) -> object:
    try:
        result = verify()
    except SignatureVerificationError as exc:
        return (exc.reason, exc.message, exc.hint, exc.problems)
    return ("accepted", type(result).__name__)


def _outcomes_with_and_without_memo(
    monkeypatch: pytest.MonkeyPatch, checks: Sequence[Callable[[], object]]
) -> tuple[list[Any], list[Any]]:
    with monkeypatch.context() as patched:
        patched.setattr(xmldsig, "_issued_by", xmldsig._check_issued_by)
        former = [_outcome(check) for check in checks]
    return former, [_outcome(check) for check in checks]


@dataclass(frozen=True)
class _Pkis:
    pki: TestPki
    twin: TestPki  # a CA of the same name, another key


@pytest.fixture(scope="module")
def pkis() -> _Pkis:
    return _Pkis(TestPki.create(), TestPki.create())


def test_vihf_outcomes_do_not_depend_on_what_was_verified_before(pkis: _Pkis, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pkis.pki.ca.certificate.subject == pkis.twin.ca.certificate.subject
    sign = pkis.pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    document = to_bytes(
        build_vihf(make_settings(), FileSigner([sign.certificate], sign.key), VihfRequest(patient_resource_id=INS_CX))
    )
    moment = dt.datetime.now(dt.UTC)
    trusted_lists = [
        [pkis.pki.ca.certificate],
        [pkis.twin.ca.certificate],
        [pkis.twin.ca.certificate, pkis.pki.ca.certificate],
        [],
        [_fresh(pkis.pki.ca.certificate)],
    ]
    checks = [
        (lambda trusted=trusted: verify_vihf(document, trusted=trusted, now=moment))
        for trusted in trusted_lists + list(reversed(trusted_lists))
    ]
    former, kept = _outcomes_with_and_without_memo(monkeypatch, checks)
    assert kept == former
    assert kept[0] == ("accepted", "VihfClaims")
    assert kept[1][0] == "untrusted_certificate"


def test_xades_outcomes_do_not_depend_on_what_was_verified_before(pkis: _Pkis, monkeypatch: pytest.MonkeyPatch) -> None:
    signing = pkis.pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    own_ca = pkis.pki.ca.certificate
    signer = FileSigner([signing.certificate, own_ca], signing.key)  # the chain: the CA is in the pool too
    signed = sign_submission_set(
        submission_set_unique_id=xades_tests.SUBMISSION_SET,
        documents=xades_tests._documents(),
        signer=signer,
        unique_id=xades_tests.SIGNATURE_ID,
    ).xml
    documents = {xades_tests.CDA_ID: xades_tests.CDA, xades_tests.PDF_ID: xades_tests.PDF}
    trusted_lists = [[own_ca], [pkis.twin.ca.certificate], [pkis.twin.ca.certificate, own_ca], [], [_fresh(own_ca)]]
    checks = [
        (
            lambda trusted=trusted: verify_submission_set_signature(
                signed,
                documents=documents,
                submission_set_unique_id=xades_tests.SUBMISSION_SET,
                trusted=trusted,
                is_cda=xades_tests.IS_CDA,
            )
        )
        for trusted in trusted_lists + list(reversed(trusted_lists))
    ]
    former, kept = _outcomes_with_and_without_memo(monkeypatch, checks)
    assert kept == former
    assert kept[0] == ("accepted", "VerifiedSignature")
    assert kept[1][0] == "untrusted_certificate", kept[1]
