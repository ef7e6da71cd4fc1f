"""The submission-set signature's certificate values and signing time, made without redoing per-deposit work
(issue 22): the same text as before, per certificate and per algorithm."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.signature import FileSigner
from dmp_connector.signature import xades as xades_mod
from dmp_connector.signature.signer import DigestAlgorithm
from dmp_connector.xml import parse_xml
from tests.conftest import PkiFiles

CDA = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.250.1.999.7.2"/></ClinicalDocument>'
XADES = "http://uri.etsi.org/01903/v1.1.1#"


@given(
    moment=st.datetimes(
        min_value=dt.datetime(1, 1, 2), timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5))])
    )
)
def test_the_signing_time_is_written_as_strftime_wrote_it(moment: dt.datetime) -> None:
    expected = moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert xades_mod._format_time(moment) == expected


def test_a_year_before_1000_is_written_as_strftime_writes_it() -> None:
    """The guard of the f-string: strftime does not pad a year of three digits here, the f-string would."""
    moment = dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert xades_mod._format_time(moment) == moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert xades_mod._format_time(dt.datetime(1000, 1, 2, tzinfo=dt.UTC)) == "1000-01-02T00:00:00Z"


def _cert_digest(xml: bytes) -> str:
    return parse_xml(xml).findtext(f".//{{{XADES}}}CertDigest/{{{XADES}}}DigestValue") or ""


@pytest.mark.parametrize("tree", [False, True], ids=["text", "tree"])
def test_cert_digests_are_per_certificate_and_per_algorithm(
    tree: bool, pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tree:
        monkeypatch.setattr(xades_mod, "_text_document", lambda parts: None)
    now = dt.datetime.now(dt.UTC)
    issued = [
        pki_files.pki.issue_organisation_sign(organisation=f"CABINET {n}", structure_id=f"100000000{n}") for n in (1, 2)
    ]
    for _ in range(2):  # the second round reads what the first kept
        for sign in issued:
            der = sign.certificate.public_bytes(serialization.Encoding.DER)
            for profile, hasher in (
                (xades_mod.SubmissionSetSignatureProfile(), hashlib.sha256),
                (xades_mod.SubmissionSetSignatureProfile.sha1(), hashlib.sha1),
                (
                    xades_mod.SubmissionSetSignatureProfile(certificate_digest_algorithm=DigestAlgorithm.SHA1),
                    hashlib.sha1,
                ),
            ):
                signature = xades_mod.sign_submission_set(
                    submission_set_unique_id="1.2.250.1.999.7.1",
                    documents=[xades_mod.SubmittedDocument(unique_id="1.2.250.1.999.7.2", content=CDA, is_cda=True)],
                    signer=FileSigner([sign.certificate], sign.key),
                    unique_id="1.2.250.1.999.7.3",
                    profile=profile,
                    signing_time=now,
                )
                assert _cert_digest(signature.xml) == base64.b64encode(hasher(der).digest()).decode("ascii")
                certificate = parse_xml(signature.xml).findtext(".//{*}X509Certificate")
                assert certificate == base64.b64encode(der).decode("ascii")
