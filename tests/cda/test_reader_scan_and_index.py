"""Issue 22 (session 7): the PDF body's base64 scan over the whole document, the reader's child index made in C and
its value memory without a raised KeyError, against what they replace."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from dmp_connector import xml
from dmp_connector.cda import extract_metadata
from dmp_connector.errors import DmpConnectorError, ValidationError

_parse = sys.modules["dmp_connector.cda.parse"]

_NEAR = st.sampled_from(list(b"AZaz09+/= \t\n\r\f\v\x00\x1c\x85\xa0-_.<&%"))


def _former_spaces(data: bytes | bytearray, start: int, end: int) -> int | None:
    """``xml._base64_spaces`` as it was (1 MiB at a time, isalnum), verbatim."""
    view = memoryview(data)
    spaces = 0
    for i in range(start, end, 1 << 20):
        j = min(i + (1 << 20), end)
        piece = data[i:j] if type(data) is bytes else bytes(view[i:j])
        core = piece
        for space in (b"\n", b"\r", b" ", b"\t"):
            if space in core:
                core = core.replace(space, b"")
        if core:
            for other in (b"+", b"/", b"="):
                if other in core:
                    core = core.replace(other, b"A")
            if not core.isalnum():
                return None
        spaces += len(piece) - len(core)
    return spaces


@given(
    st.lists(_NEAR, max_size=48).map(bytes),
    st.binary(max_size=12),
    st.binary(max_size=12),
    st.integers(-4, 4),
    st.integers(-4, 4),
)
def test_the_whole_document_scan_gives_what_the_former_scan_gave(
    text: bytes, before: bytes, after: bytes, start_shift: int, end_shift: int
) -> None:
    """Any bytes around the text (markup, base64, white space), and offsets off the text, past its ends, reversed or
    negative: the same count or None, for bytes (the whole scan) and a bytearray (the pieces)."""
    data = before + text + after
    start, end = len(before) + start_shift, len(before) + len(text) + end_shift
    expected = _former_spaces(data, start, end)
    assert xml._base64_spaces(data, start, end) == expected
    assert xml._base64_spaces(bytearray(data), start, end) == expected


def test_offsets_outside_the_document_are_not_scanned_whole() -> None:
    """The guard's offsets: the whole scan takes the bytes before ``start`` off, which a negative ``start`` or one past
    ``end`` would not mean (the former scan read nothing, or a piece counted from the end)."""
    data = b"QUJD<t>QUJD\n</t>"
    for start, end in ((-9, 11), (-4, -1), (11, 7), (7, 99)):
        assert xml._base64_spaces(data, start, end) == _former_spaces(data, start, end)
    # An end before the start: the former scan read nothing; the whole scan would read "<t>" and more.
    assert xml._base64_spaces(data, 0, -2) == _former_spaces(data, 0, -2) == 0
    assert xml._whole_scan_spaces(data, 0, -2) is None


def test_a_document_over_the_bound_is_scanned_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole scan allocates the document's length: over 4 MiB, the former pieces (no big allocation)."""
    body = b"QUJD" * 64 + b"\r\n"
    data = b"<t>" + body + b"</t>"
    start, end = 3, 3 + len(body)
    whole: list[int] = []
    real = xml._whole_scan_spaces

    def counted(data: bytes, start: int, end: int) -> int | None:
        whole.append(len(data))
        return real(data, start, end)

    monkeypatch.setattr(xml, "_whole_scan_spaces", counted)
    assert xml._base64_spaces(data, start, end) == 2
    assert whole == [len(data)]
    monkeypatch.setattr(xml, "_WHOLE_SCAN_MAX", len(data) - 1)
    assert xml._base64_spaces(data, start, end) == 2
    assert whole == [len(data)]  # not again: scanned in pieces
    monkeypatch.undo()
    assert xml._WHOLE_SCAN_MAX == 4 << 20  # 4 MiB


def test_the_kit_bodies_are_scanned_as_before(example_files: Mapping[str, bytes]) -> None:
    scanned = 0
    for data in example_files.values():
        span = xml._non_xml_body_text(data)
        if span is None:
            continue
        scanned += 1
        assert xml._base64_spaces(data, *span) == _former_spaces(data, *span)
        damaged = data[: span[0] + 5] + b"\x00" + data[span[0] + 6 :]
        assert xml._base64_spaces(damaged, *span) is None
    assert scanned


# --------------------------------------------------------------------------- the child index


def _elements(data: bytes) -> Iterator[etree._Element]:
    """The first 80 elements in document order: the header's, which the reader indexes."""
    root, _, _ = _parse._parse_tree(data, xml.DEFAULT_LIMITS, keep_layout=False)
    yield from itertools.islice(root.iter(), 80)


_ASKED = ("id", "code", "templateId", "author", "addr", "telecom", "component", "entry", "name", "given", "low")


def _former_by_tag(element: etree._Element) -> dict[object, list[etree._Element]]:
    by_tag: dict[object, list[etree._Element]] = {}
    for child in element:
        by_tag.setdefault(child.tag, []).append(child)
    return by_tag


def test_the_child_index_answers_as_the_lists_by_tag_did(example_files: Mapping[str, bytes]) -> None:
    """The header elements of every example of the kit (comments and processing instructions among the children),
    the questions the reader asks: the first child of a tag, all of them in order, a missing one refused with the
    same message."""
    repeated = 0
    for data in example_files.values():
        for element in _elements(data):
            index = _parse._ChildIndex(element)
            former = _former_by_tag(element)
            repeated += any(len(found) > 1 for found in former.values())
            for name in _ASKED:
                found = former.get(_parse.hl7(name), [])
                assert index.child(name) is (found[0] if found else None)
                assert index.children(name) == found
                if found:
                    assert index.require(name, "here") is found[0]
            with pytest.raises(ValidationError, match=r"^the CDA document has no here/nothing$"):
                index.require("nothing", "here")
            assert index.local_named(("title", "id")) == [
                c for c in element if isinstance(c.tag, str) and c.tag.rsplit("}", 1)[-1] in ("title", "id")
            ]
    assert repeated  # elements with several children of one tag were asked about


def test_the_first_child_of_a_repeated_tag_is_the_first_in_document_order() -> None:
    element = xml.parse_xml(
        b'<a xmlns="urn:hl7-org:v3"><!-- c --><id root="1"/><x/><id root="2"/><?p?><id root="3"/></a>'
    )
    index = _parse._ChildIndex(element)
    first = index.child("id")
    assert first is not None and first.get("root") == "1"
    assert [e.get("root") for e in index.children("id")] == ["1", "2", "3"]
    assert index.child("y") is None and index.children("y") == []


# --------------------------------------------------------------------------- the value memory


def test_a_value_is_made_once_and_a_refusal_each_time() -> None:
    made: list[str] = []

    def make(text: str) -> object:
        made.append(text)
        if text == "bad":
            raise ValidationError("refused")
        return object()

    with _parse._values_kept():
        first = _parse._kept_value(("k", "a"), make, "a")
        assert _parse._kept_value(("k", "a"), make, "a") is first
        for _ in range(2):
            with pytest.raises(ValidationError):
                _parse._kept_value(("k", "bad"), make, "bad")
    assert made == ["a", "bad", "bad"]
    assert _parse._kept_value(("k", "a"), make, "a") is not first  # outside a read: nothing kept


def test_the_metadata_of_the_kit_are_unchanged_by_the_value_memory(
    example_files: Mapping[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value made afresh (no memory) gives the same metadata and the same refusals."""

    def read_all() -> list[object]:
        out: list[object] = []
        for data in example_files.values():
            try:
                out.append(extract_metadata(data))
            except DmpConnectorError as exc:
                out.append((type(exc), exc.message))
        return out

    kept = read_all()
    monkeypatch.setattr(_parse, "_kept_value", lambda key, make, *args: make(*args))
    assert read_all() == kept
