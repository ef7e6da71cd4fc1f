"""The signature writers' fast paths of issue 22 (second pass) against the code they replace.

* the VIHF's ``_text`` / ``_attribute`` and the XAdES writer's ``_plain`` tell printable ASCII with substring
  tests, without their regular expressions: the same values, escaped the same way, refused the same way;
* the VIHF's ``_instant`` writes a time with ``isoformat`` from the year 1000 on: the same text as ``strftime``;
* ``SubmissionSetSignatureProfile.from_settings`` is made once for the same four settings: the same profile,
  the same refusals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.config import SigningSettings
from dmp_connector.errors import ConfigurationError
from dmp_connector.signature import vihf as vihf_mod
from dmp_connector.signature import xades as xades_mod
from dmp_connector.signature.signer import DigestAlgorithm, SignatureAlgorithm
from dmp_connector.signature.xades import SigningCertificateScope, SubmissionSetSignatureProfile, XadesVersion

_VALUES = st.text() | st.text(st.sampled_from('ab &<>"\t\n\r\x00\x1f\x7f\x80é\ud800\ufffe😀'), max_size=8)


def _outcome(function: Callable[[object], str], value: object) -> str | None:
    try:
        return function(value)
    except (vihf_mod._NotText, xades_mod._NotPlain):
        return None


def _former_text(value: object) -> str:
    if type(value) is not str or not value or vihf_mod._OUTSIDE_XML.search(value):
        raise vihf_mod._NotText
    return value.translate(vihf_mod._TEXT_ESCAPES) if vihf_mod._TEXT_SPECIAL.search(value) else value


def _former_attribute(value: object) -> str:
    if type(value) is not str or vihf_mod._OUTSIDE_XML.search(value):
        raise vihf_mod._NotText
    return value.translate(vihf_mod._ATTRIBUTE_ESCAPES) if vihf_mod._ATTRIBUTE_SPECIAL.search(value) else value


def _former_plain(value: object) -> str:
    if type(value) is not str or not xades_mod._PLAIN.match(value) or xades_mod._OUTSIDE_XML.search(value):
        raise xades_mod._NotPlain
    return value


@given(_VALUES)
def test_vihf_values_are_written_and_refused_as_before(value: str) -> None:
    assert _outcome(vihf_mod._text, value) == _outcome(_former_text, value)
    assert _outcome(vihf_mod._attribute, value) == _outcome(_former_attribute, value)


@given(_VALUES)
def test_xades_values_are_taken_and_refused_as_before(value: str) -> None:
    assert _outcome(xades_mod._plain, value) == _outcome(_former_plain, value)


@pytest.mark.parametrize(
    ("value", "text", "attribute", "plain"),
    [
        ("a&b", "a&amp;b", "a&amp;b", None),
        ("a<b", "a&lt;b", "a&lt;b", None),
        ("a>b", "a&gt;b", "a>b", None),
        ('a"b', 'a"b', "a&quot;b", None),
        ("", None, "", None),
        ("plain", "plain", "plain", "plain"),
    ],
)
def test_printable_ascii_is_escaped_and_refused_as_the_forms_want(
    value: str, text: str | None, attribute: str | None, plain: str | None
) -> None:
    # The guarding rules of the fast path: the characters each form escapes, and an empty text or plain value.
    assert _outcome(vihf_mod._text, value) == text
    assert _outcome(vihf_mod._attribute, value) == attribute
    assert _outcome(xades_mod._plain, value) == plain


@pytest.mark.parametrize("value", [b"bytes", 3, None])
def test_a_value_that_is_not_text_is_refused(value: object) -> None:
    assert _outcome(vihf_mod._text, value) is None
    assert _outcome(vihf_mod._attribute, value) is None
    assert _outcome(xades_mod._plain, value) is None


def _former_instant(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@given(
    st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31)),
    st.none() | st.integers(-14 * 60, 14 * 60),
)
def test_an_instant_is_written_as_before(naive: dt.datetime, offset: int | None) -> None:
    moment = naive if offset is None else naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
    assert vihf_mod._instant(moment) == _former_instant(moment)


@pytest.mark.parametrize("year", [5, 999, 1000, 2026])
def test_an_instant_before_the_year_1000_is_written_by_strftime(year: int) -> None:
    # The guarding rule: isoformat pads the year to four digits, strftime does not.
    moment = dt.datetime(year, 3, 4, 5, 6, 7, 891234, tzinfo=dt.UTC)
    assert vihf_mod._instant(moment) == _former_instant(moment)


_SETTINGS = st.builds(
    SigningSettings,
    signature_algorithm=st.sampled_from(["rsa-sha256", "rsa-sha1"]),
    digest_algorithm=st.sampled_from(["sha256", "sha1"]),
    xades_version=st.sampled_from(["1.1.1", "1.3.2"]),
    xades_signing_certificate=st.sampled_from(["signer", "chain"]),
)


def _former_profile(signing: SigningSettings) -> SubmissionSetSignatureProfile:
    return SubmissionSetSignatureProfile(
        signature_algorithm=SignatureAlgorithm.from_setting(signing.signature_algorithm),
        digest_algorithm=DigestAlgorithm.from_setting(signing.digest_algorithm),
        xades_version=XadesVersion.from_setting(signing.xades_version),
        certificate_scope=SigningCertificateScope(signing.xades_signing_certificate),
    )


@given(_SETTINGS)
def test_the_profile_of_the_settings_is_the_one_made_each_time(signing: SigningSettings) -> None:
    assert SubmissionSetSignatureProfile.from_settings(signing) == _former_profile(signing)


def test_each_setting_counts_in_the_profile_kept() -> None:
    # The guarding rule: the profile is kept for the four values together, not for the settings seen first.
    base = SigningSettings()
    changes: list[dict[str, str]] = [
        {"signature_algorithm": "rsa-sha1"},
        {"digest_algorithm": "sha1"},
        {"xades_version": "1.3.2"},
        {"xades_signing_certificate": "chain"},
    ]
    first = SubmissionSetSignatureProfile.from_settings(base)
    for change in changes:
        changed = base.model_copy(update=change)
        assert SubmissionSetSignatureProfile.from_settings(changed) == _former_profile(changed) != first


def test_invalid_settings_are_refused_each_time() -> None:
    for _ in range(2):
        bad = SigningSettings.model_construct(
            signature_algorithm="rsa-md5", digest_algorithm="sha256", xades_version="1.1.1"
        )
        with pytest.raises(ConfigurationError, match="unknown signature algorithm"):
            SubmissionSetSignatureProfile.from_settings(bad)
        odd = SigningSettings.model_construct(xades_signing_certificate="all")
        with pytest.raises(ValueError, match="'all' is not a valid SigningCertificateScope"):
            SubmissionSetSignatureProfile.from_settings(odd)


def test_a_value_that_is_not_text_fails_as_before() -> None:
    odd = SigningSettings.model_construct(signature_algorithm=["rsa-sha256"])  # type: ignore[arg-type]  # not text
    with pytest.raises(AttributeError):
        SubmissionSetSignatureProfile.from_settings(odd)
