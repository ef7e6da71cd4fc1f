"""The envelope written as text (issue 22) against the tree it replaces: ``to_bytes(build_envelope(...))``.

``_envelope_bytes`` splices a body already written as markup (``_MarkupBody``) and the tokens a
security writes itself (``wsse_token_bytes``) into the envelope's bytes. Whatever it is given, its
bytes (or its error) must be those of the tree path; an addressing value that needs escaping, an
extra header, a body already read as elements, or a security that only fills a tree take that path.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.soap import envelope as envelope_mod
from dmp_connector.soap.envelope import Addressing, AssertionSecurity, _envelope_bytes, _MarkupBody, build_envelope
from dmp_connector.soap.namespaces import XOP
from dmp_connector.xml import parse_xml, to_bytes

BODY = (
    '<p:Request xmlns:p="urn:test:p" xmlns:xop="' + XOP + '" a="x &amp; y &#9;"><p:Item>é &lt;&gt; &#13;</p:Item>'
    '<p:Empty/><p:Text></p:Text><xop:Include href="cid:a%20b@x"/></p:Request>'
).encode()


def parse_body(data: bytes) -> etree._Element:
    root = parse_xml(data)
    text = root.find("{urn:test:p}Text")
    assert text is not None
    text.text = ""  # as the ebRIM writer does for an empty rim:Value: <p:Text></p:Text> back
    return root


def markup() -> _MarkupBody:
    return _MarkupBody(BODY, parse_body)


class TokenSecurity:
    """A security that writes its tokens as text too, as VihfSecurity does."""

    def __init__(self) -> None:
        self.token = parse_xml(b'<t:Token xmlns:t="urn:test:t" ID="_1"><t:V>a</t:V><t:E/></t:Token>')
        self.applied = 0
        self.written = 0

    def apply(self, envelope: etree._Element, security: etree._Element) -> None:
        self.applied += 1
        security.append(copy.deepcopy(self.token))

    def wsse_token_bytes(self) -> bytes:
        self.written += 1
        return etree.tostring(self.token, encoding="UTF-8")


def outcome(build: Any) -> tuple[str, bytes | str]:
    try:
        return "ok", build()
    except Exception as exc:
        return type(exc).__name__, str(exc)


def both(addressing: Addressing, security: Any) -> tuple[tuple[str, bytes | str], tuple[str, bytes | str]]:
    fast = outcome(lambda: _envelope_bytes(markup(), addressing=addressing, security=security))
    tree = outcome(lambda: to_bytes(build_envelope(markup(), addressing=addressing, security=security)))
    return fast, tree


def test_the_body_markup_is_the_bytes_of_its_element() -> None:
    assert etree.tostring(parse_body(BODY), encoding="UTF-8") == BODY


def test_a_plain_envelope_is_written_without_a_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    security = TokenSecurity()
    expected = to_bytes(build_envelope(markup(), addressing=addressing, security=security))
    monkeypatch.setattr(envelope_mod, "build_envelope", None)  # the text path needs none
    body = markup()
    assert _envelope_bytes(body, addressing=addressing, security=security) == expected
    assert not body.parsed and security.written == 1 and security.applied == 1  # (the reference's apply)


values = st.one_of(
    st.sampled_from(["urn:x", "a&b", "<x>", "c\rd", "e\nf", "t\tt", 'q"q', "é😀", "x\x01", "\ufffe", "\ud800", " "]),
    st.text(min_size=1, max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(
    action=values,
    to=values,
    message_id=values,
    reply_to=st.none() | values,
    must_understand=st.booleans(),
    with_security=st.booleans(),
)
def test_every_addressing_is_written_as_the_tree_writes_it(
    action: str, to: str, message_id: str, reply_to: str | None, must_understand: bool, with_security: bool
) -> None:
    addressing = Addressing(
        action=action, to=to, message_id=message_id, reply_to=reply_to, must_understand_action=must_understand
    )
    fast, tree = both(addressing, TokenSecurity() if with_security else None)
    assert fast == tree


def test_escaped_addressing_values_take_the_tree_path() -> None:
    # Without the check the text path would write "a&b" as it is: not XML, and not the tree's "a&amp;b".
    addressing = Addressing(action="a&b", to="https://h/?a=1&b=<2>", message_id="urn:uuid:\r1")
    fast, tree = both(addressing, None)
    assert fast == tree and fast[0] == "ok"
    assert b"a&amp;b" in fast[1]


def test_what_lxml_refuses_in_an_addressing_value_is_refused_as_before() -> None:
    fast, tree = both(Addressing(action="urn:\x01", to="https://h", message_id="urn:uuid:1"), TokenSecurity())
    assert fast == tree and fast[0] == "ValueError"


def test_a_body_read_as_elements_takes_the_tree_path() -> None:
    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    body = markup()
    body[0].set("changed", "yes")  # the markup no longer speaks for the element
    assert body.parsed
    written = _envelope_bytes(body, addressing=addressing)
    assert b'changed="yes"' in written
    assert written == to_bytes(build_envelope(body, addressing=addressing))


def test_extra_headers_and_tree_only_securities_take_the_tree_path() -> None:
    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    header = parse_xml(b'<h:Ctx xmlns:h="urn:test:h">1</h:Ctx>')
    with_header = _envelope_bytes(markup(), addressing=addressing, headers=[header])
    assert with_header == to_bytes(build_envelope(markup(), addressing=addressing, headers=[header]))
    assert b"<h:Ctx" in with_header
    token = parse_xml(b'<t:Token xmlns:t="urn:test:t"/>')
    tree_only = AssertionSecurity(token)  # no wsse_token_bytes: apply() fills the tree
    written = _envelope_bytes(markup(), addressing=addressing, security=tree_only)
    assert written == to_bytes(build_envelope(markup(), addressing=addressing, security=tree_only))
    assert b'<t:Token xmlns:t="urn:test:t"/></wsse:Security>' in written


def test_elements_and_other_sequences_take_the_tree_path() -> None:
    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    element = parse_body(BODY)
    assert _envelope_bytes(element, addressing=addressing) == to_bytes(build_envelope(element, addressing=addressing))
    assert _envelope_bytes([element], addressing=addressing) == to_bytes(
        build_envelope([element], addressing=addressing)
    )


def test_a_markup_body_is_a_sequence_of_its_one_element() -> None:
    body = markup()
    assert len(body) == 1 and not body.parsed
    first = body[0]
    assert list(body) == [first] and body[:1] == [first] and body[-1] is first
    with pytest.raises(IndexError):
        body[1]


def test_a_security_that_declines_to_write_its_tokens_fills_the_tree() -> None:
    class Declining(TokenSecurity):
        def wsse_token_bytes(self) -> bytes | None:  # type: ignore[override]
            self.written += 1
            return None

    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    security = Declining()
    written = _envelope_bytes(markup(), addressing=addressing, security=security)
    assert (security.written, security.applied) == (1, 1)
    assert written == to_bytes(build_envelope(markup(), addressing=addressing, security=TokenSecurity()))


@given(st.text(st.sampled_from("aZ09_.~-!$&'()*+,;=:@ %/?#<>é\x00")) | st.text())
def test_a_cid_url_is_the_quoted_content_id(content_id: str) -> None:
    from urllib.parse import quote

    from dmp_connector.soap.envelope import _CID_SAFE, _cid_url

    cid = content_id.strip()
    if cid.startswith("<") and cid.endswith(">"):
        cid = cid[1:-1]
    if not cid:
        return
    try:
        expected = "cid:" + quote(cid, safe=_CID_SAFE)
    except UnicodeEncodeError:  # a lone surrogate: quote() refuses it, and so must the shortcut
        with pytest.raises(UnicodeEncodeError):
            _cid_url(content_id)
        return
    assert _cid_url(content_id) == expected


class Delegating:
    """A wrapper that answers every attribute from the security it wraps and adds a token of its own."""

    def __init__(self, inner: TokenSecurity) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(self, envelope: etree._Element, security: etree._Element) -> None:
        self.inner.apply(envelope, security)
        etree.SubElement(security, "{urn:test:t}Stamp")


def test_a_wrapper_answering_every_attribute_is_asked_through_its_apply() -> None:
    # Review finding: the writer was found on the instance (through __getattr__) and the wrapper's own token was lost.
    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    fast, tree = both(addressing, Delegating(TokenSecurity()))
    assert fast == tree and fast[0] == "ok" and b"Stamp" in fast[1]


def test_an_instance_attribute_named_like_the_writer_is_not_taken_for_it() -> None:
    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    security = TokenSecurity()
    security.wsse_token_bytes = lambda: b"<t:Other/>"  # type: ignore[method-assign]
    fast, tree = both(addressing, security)
    assert fast == tree and b"Other" not in fast[1]


@pytest.mark.parametrize("written", [b"", "<t:Token/>", bytearray(b"<t:Token/>"), 1])
def test_tokens_that_are_not_bytes_or_are_empty_are_asked_through_apply(written: object) -> None:
    class Writes(TokenSecurity):
        def wsse_token_bytes(self) -> Any:
            return written

    class Empty(Writes):
        def apply(self, envelope: etree._Element, security: etree._Element) -> None:
            """Appends nothing: lxml writes <wsse:Security …/>."""

    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    for security in (Writes(), Empty()):
        fast, tree = both(addressing, security)
        assert fast == tree and fast[0] == "ok"


def test_a_mock_security_gives_what_the_tree_path_gives() -> None:
    from unittest import mock

    addressing = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")
    fast, tree = both(addressing, mock.Mock())
    assert fast == tree
