"""A deposit's ITI-41 body as markup spliced into the envelope (issue 22) against the element it replaces.

``_provide_and_register_body`` is what ``ProvideAndRegister.build`` sends: the markup that
``build_provide_and_register_request``'s element serialises to, never parsed unless asked for. Its bytes
must be that element's, its element must be that element, and it must refuse what the builder refuses
with the builder's own errors, now that no parser looks at the markup.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.xds import SubmissionRequest, build_provide_and_register_request
from dmp_connector.xds import ebrim as ebrim_mod
from dmp_connector.xds.ebrim import _NOT_LXML_TEXT, _lxml_text, _provide_and_register_body
from dmp_connector.xml import to_bytes
from tests.xds.conftest import make_document, make_submission_set
from tests.xds.test_markup_writer import _corpus_requests, submissions


def element_bytes(request: SubmissionRequest) -> bytes:
    return to_bytes(build_provide_and_register_request(request), xml_declaration=False)


def assert_same(request: SubmissionRequest) -> None:
    expected = element_bytes(request)
    body = _provide_and_register_body(request)
    assert body.data == expected
    assert not body.parsed
    assert to_bytes(body[0], xml_declaration=False) == expected  # its element, read when asked for


def test_the_corpus_bodies_are_the_builders_bytes() -> None:
    compared = 0
    for _, request, _ in _corpus_requests():
        if not request.documents:
            continue
        contents = {d.entry_uuid: f"part {n}/%?#&'@x" for n, d in enumerate(request.documents)}
        assert_same(request.model_copy(update={"contents": contents}))
        compared += 1
    assert compared > 100


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=submissions())
def test_generated_bodies_are_the_builders_bytes(request: SubmissionRequest) -> None:
    assert_same(request)


def outcome(build: Any, request: SubmissionRequest) -> tuple[str, str, tuple[str, ...]]:
    try:
        build(request)
    except Exception as exc:
        return type(exc).__name__, str(exc), tuple(getattr(exc, "problems", ()))
    return "ok", "", ()


@pytest.mark.parametrize(
    "bad",
    ["a\x01b", "a\x0bb", "\x1f", "a\ud800b", "\udfff", "a\ufffeb", "a\uffffb", "\x00", "é\ufffe", "\u00e9\uffff"],
)
@pytest.mark.parametrize("where", ["title", "comments"])
def test_a_value_lxml_refuses_is_refused_with_the_builders_error(bad: str, where: str) -> None:
    entry = make_document().model_copy(update={where: bad})
    request = SubmissionRequest.build(make_submission_set(), [entry], contents={entry.entry_uuid: "d@x"})
    body = outcome(_provide_and_register_body, request)
    assert body == outcome(build_provide_and_register_request, request)
    assert body[0] == "ValidationError"
    assert body[1].startswith("build_provide_and_register_request: a value holds characters XML cannot carry")


@pytest.mark.parametrize("contents", [{}, {"Document01": " "}, {"Document01": "<>"}])
def test_missing_or_empty_content_ids_are_refused_as_by_the_builder(contents: dict[str, str]) -> None:
    entry = make_document()
    request = SubmissionRequest.build(make_submission_set(), [entry]).model_copy(update={"contents": contents})
    body = outcome(_provide_and_register_body, request)
    assert body == outcome(build_provide_and_register_request, request)
    assert body[0] == "ValidationError"


def test_a_refused_value_is_found_before_a_missing_content_id_as_before() -> None:
    entry = make_document().model_copy(update={"title": "x\x01"})
    request = SubmissionRequest.build(make_submission_set(), [entry]).model_copy(
        update={"contents": {entry.entry_uuid: "  "}}
    )
    assert outcome(_provide_and_register_body, request) == outcome(build_provide_and_register_request, request)


def test_the_character_check_is_what_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the check the markup would go out holding a character no XML parser takes.
    entry = make_document().model_copy(update={"title": "a\x01b"})
    request = SubmissionRequest.build(make_submission_set(), [entry], contents={entry.entry_uuid: "d@x"})
    monkeypatch.setattr(ebrim_mod, "_lxml_text", lambda data, text=None: True)
    assert b"a\x01b" in _provide_and_register_body(request).data


@given(st.text() | st.text(st.sampled_from("a\x00\x08\x09\x0a\x0b\x0d\x1f\x20\x7f\ue000\ufffd\ufffe\uffff😀é")))
def test_the_byte_check_finds_what_the_expression_finds(value: str) -> None:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        assert _NOT_LXML_TEXT.search(value) is not None  # a lone surrogate: refused before the check
        return
    assert _lxml_text(data) == (_NOT_LXML_TEXT.search(value) is None)


def _lxml_takes(value: str) -> bool:
    try:
        etree.Element("x").text = value
        etree.Element("x").set("a", value)
    except ValueError:
        return False
    return True


def test_the_byte_check_refuses_what_lxml_itself_refuses() -> None:
    # lxml as the reference (review): every BMP character but the surrogates, which UTF-8 cannot carry, and
    # characters beyond it, alone and between plain text.
    points = [*range(0xD800), *range(0xE000, 0x10000), 0x10000, 0x1F600, 0xEFFFF, 0xFFFFE, 0x10FFFF]
    differ = [p for p in points if _lxml_text(f"a{chr(p)}b".encode()) != _lxml_takes(f"a{chr(p)}b")]
    assert differ == []
    assert not _lxml_takes("a\x01b") and _lxml_takes("a\tb")  # the reference refuses something
