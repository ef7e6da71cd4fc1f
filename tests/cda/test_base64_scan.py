"""The PDF body's base64 check (issue 22): the translate scan accepts base64 and XML's white space, as a regex would.

The regex it replaced (``\\s``) also took form feed and vertical tab, which are not XML characters.
"""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector import xml
from dmp_connector.cda.parse import _only_base64

_REGEX = re.compile(rb"[A-Za-z0-9+/= \t\n\r]*")
_NEAR = st.sampled_from(list(b"AZaz09+/= \t\n\r\f\v\x00\x1c\x1d\x1e\x1f\x85\xa0-_.<&%"))


@given(st.lists(_NEAR, max_size=64).map(bytes), st.integers(0, 8), st.integers(0, 8))
def test_the_scan_accepts_what_the_regex_accepts(text: bytes, before: int, after: int) -> None:
    data = b"<" * before + text + b"<" * after
    start, end = before, before + len(text)
    assert _only_base64(data, start, end) is (_REGEX.fullmatch(data, start, end) is not None)


_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _reference_spaces(data: bytes, start: int, end: int) -> int | None:
    """The scan as it was before issue 22's third pass: delete the base64 bytes, what is left must be white space."""
    left = data[start:end].translate(None, _BASE64)
    return None if left.translate(None, b" \t\n\r") else len(left)


def test_isalnum_is_ascii_letters_and_digits_whatever_the_byte() -> None:
    alnum = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    assert {b for b in range(256) if bytes([b]).isalnum()} == alnum


@given(st.lists(_NEAR, max_size=64).map(bytes), st.integers(0, 8), st.integers(0, 8), st.integers(1, 9))
def test_the_scan_counts_white_space_as_the_translate_scan_did(text: bytes, before: int, after: int, step: int) -> None:
    data = b"<" * before + text + b"<" * after
    start, end = before, before + len(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xml, "_SCAN_STEP", step)  # pieces of a few bytes: every cut between pieces
        assert xml._base64_spaces(data, start, end) == _reference_spaces(data, start, end)
        assert xml._base64_spaces(bytearray(data), start, end) == _reference_spaces(data, start, end)


def test_a_large_text_is_scanned_once_per_bytes_object_within_a_block() -> None:
    body = b"\n  " + b"QUJD" * 4000 + b"\n"
    data = b"<t>" + body + b"</t>"
    start, end = 3, 3 + len(body)
    with xml.base64_scans_kept():
        assert xml.base64_spaces(data, start, end) == 4
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(xml, "_base64_spaces", lambda *args: pytest.fail("scanned again"))
            assert xml.base64_spaces(data, start, end) == 4
        # An equal copy, other offsets, a mutable buffer: scanned.
        bad = data.replace(b"QUJD", b"QU\x00D", 1)
        assert xml.base64_spaces(bad, start, end) is None
        assert xml.base64_spaces(data, start, end) == 4
        assert xml.base64_spaces(bytes(bytearray(data)), start, end) == 4
        assert xml.base64_spaces(data, start + 1, end) == 3
        assert xml.base64_spaces(bytearray(bad), start, end) is None
        assert xml.base64_spaces(bad, start, end) is None


def test_outside_a_block_nothing_is_kept_and_a_block_lets_its_document_go() -> None:
    body = b"QUJD" * 4000
    data = b"<t>" + body + b"</t>"
    start, end = 3, 3 + len(body)
    scans: list[int] = []
    real = xml._base64_spaces

    def counted(*args: object) -> int | None:
        scans.append(1)
        return real(*args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xml, "_base64_spaces", counted)
        assert xml.base64_spaces(data, start, end) == 0
        assert xml.base64_spaces(data, start, end) == 0
        assert len(scans) == 2  # no block: scanned each time, nothing held
        with xml.base64_scans_kept():
            xml.base64_spaces(data, start, end)
            with xml.base64_scans_kept():  # a nested block starts empty and gives the outer its memory back
                xml.base64_spaces(data, start, end)
            xml.base64_spaces(data, start, end)
        assert len(scans) == 4
    # The document is no longer referenced by the module: only this test's name and getrefcount's argument.
    assert getattr(xml._LOCAL, "base64_memo", None) is xml._OFF
    assert sys.getrefcount(data) == 2
