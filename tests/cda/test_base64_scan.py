"""The PDF body's base64 check (issue 22): the translate scan accepts base64 and XML's white space, as a regex would.

The regex it replaced (``\\s``) also took form feed and vertical tab, which are not XML characters.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.cda.parse import _only_base64

_REGEX = re.compile(rb"[A-Za-z0-9+/= \t\n\r]*")
_NEAR = st.sampled_from(list(b"AZaz09+/= \t\n\r\f\v\x00\x1c\x1d\x1e\x1f\x85\xa0-_.<&%"))


@given(st.lists(_NEAR, max_size=64).map(bytes), st.integers(0, 8), st.integers(0, 8))
def test_the_scan_accepts_what_the_regex_accepts(text: bytes, before: int, after: int) -> None:
    data = b"<" * before + text + b"<" * after
    start, end = before, before + len(text)
    assert _only_base64(data, start, end) is (_REGEX.fullmatch(data, start, end) is not None)
