"""The single hardened XML parser.

Everything dmp_connector reads as XML — SOAP answers, MTOM root parts, CDA documents,
XDM metadata, files read from disk — goes through :func:`parse_xml`. It is the only
place in the package that calls lxml's parser (ruff's banned-api rule keeps it so).

The parser refuses rather than repairs:

* a document type declaration of any kind (so no entity can be declared, expanded or
  fetched: billion-laughs and XXE are refused, not defused);
* more bytes than :attr:`XmlLimits.max_bytes`, checked before parsing;
* nesting deeper than :attr:`XmlLimits.max_depth`;
* anything libxml2 itself finds too large with ``huge_tree`` off (a text node over
  10 MB, for instance).

Error messages name what failed and where (line), never the content: the piece of input
libxml2 quotes in some messages (a comment, a CDATA section, undecodable bytes) is cut.

Network access and DTD loading are off in libxml2 as well, so that nothing is fetched
even before the declaration is seen.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from .errors import MalformedResponseError, UnsafeXmlError

__all__ = [
    "XmlLimits",
    "base64_scans_kept",
    "base64_spaces",
    "non_xml_body_text",
    "parse_xml",
    "parse_xml_file",
    "parse_xml_head",
    "start_tags",
    "to_bytes",
]


class XmlLimits(BaseModel):
    """Bounds applied to every XML input; the defaults suit SOAP answers and CDA documents."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest XML input accepted, in bytes (MTOM attachments are not counted)."""
    max_depth: int = Field(default=128, gt=0, le=256)
    """Deepest element nesting accepted; a CDA document rarely goes past 30."""
    max_attachment_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    """Largest MTOM/XOP attachment accepted in an answer, in bytes after any base64 decoding.

    An XOP part is the content of an XML element moved out of the envelope, so it is bounded
    here too; a retrieved DMP document is far below the default (256 MiB). Over it the answer
    is refused with :class:`~dmp_connector.errors.UnsafeXmlError` while it streams in."""
    max_fault_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest error answer read (an HTTP status of 300 or more: a SOAP fault, an error page), in
    bytes, whatever its parts. A fault is a code and a sentence: 1 MiB is generous, and a hostile
    50 MB fault is refused while it streams in rather than parsed (a parsed tree costs about seven
    times its size). Over it the attempt fails with :class:`~dmp_connector.errors.LimitExceededError`."""


DEFAULT_LIMITS = XmlLimits()


@functools.cache
def _start_tag(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?" + re.escape(name) + rb"\b[^>]*>")


XML_WHITE_SPACE: Final = b" \t\n\r"
"""XML's white space (form feed and vertical tab are not XML characters at all)."""
_SCAN_STEP: Final = 1 << 20
_WHITE_SPACE_BYTES: Final = (b"\n", b"\r", b" ", b"\t")
_NOT_ALNUM_BASE64: Final = (b"+", b"/", b"=")


def base64_spaces(data: bytes | bytearray, start: int, end: int) -> int | None:
    """How many white-space bytes ``data[start:end]`` holds when it holds base64 and XML white space alone, else None.

    For a PDF body's text, which the CDA reader and the signature's manifest both cut out rather
    than parse: one definition for both, so that they never disagree on what may be cut. Inside
    :func:`base64_scans_kept` (a deposit reads, then signs, the same document) the answer for the
    last ``bytes`` object asked about (immutable, held while remembered) is given again without a
    second scan; the block forgets it, so that no document outlives its call.
    """
    memo: object = getattr(_LOCAL, "base64_memo", _OFF)
    if memo is _OFF or type(data) is not bytes or end - start < _MEMO_MIN or end - start > _MEMO_MAX:
        return _base64_spaces(data, start, end)
    if isinstance(memo, tuple) and memo[0] is data and memo[1] == start and memo[2] == end:
        return memo[3]  # type: ignore[no-any-return]
    spaces = _base64_spaces(data, start, end)
    _LOCAL.base64_memo = (data, start, end, spaces)
    return spaces


@contextlib.contextmanager
def base64_scans_kept() -> Iterator[None]:
    """Within the block, :func:`base64_spaces` and :func:`non_xml_body_text` answer again for the same ``bytes``
    without scanning them; at its end, the document they held is let go (this thread's memory, nested blocks
    restore the outer's)."""
    outer = getattr(_LOCAL, "base64_memo", _OFF)
    outer_body = getattr(_LOCAL, "body_memo", _OFF)
    _LOCAL.base64_memo = None
    _LOCAL.body_memo = None
    try:
        yield
    finally:
        _LOCAL.base64_memo = outer
        _LOCAL.body_memo = outer_body


_OFF: Final = object()
"""No :func:`base64_scans_kept` block is open on this thread: nothing is remembered."""
_MEMO_MIN: Final = 4096
_MEMO_MAX: Final = 16 * 1024 * 1024


def _base64_spaces(data: bytes | bytearray, start: int, end: int) -> int | None:
    """:func:`base64_spaces` without its memory: a document of at most 4 MiB in one pass
    (:func:`_whole_scan_spaces`), a larger one 1 MiB at a time (no big copy).

    Each piece of a larger one loses its white space (``replace`` of each of the four bytes: a ``memchr`` per
    occurrence, nothing for a byte absent), then ``+``, ``/`` and ``=`` become ``A`` (``memchr``
    again, a few per 100 bytes) and what is left must be ASCII letters and digits: ``isalnum``,
    one table test per byte (issue 22: a third fewer instructions than ``translate``'s deletion
    loop, which wrote every byte it kept). Its white space is what the replacements removed.
    """
    if type(data) is bytes and 0 <= start < end <= len(data) <= _WHOLE_SCAN_MAX:
        return _whole_scan_spaces(data, start, end)
    view = memoryview(data)
    spaces = 0
    for i in range(start, end, _SCAN_STEP):
        j = min(i + _SCAN_STEP, end)
        piece = data[i:j] if type(data) is bytes else bytes(view[i:j])
        core = piece
        for space in _WHITE_SPACE_BYTES:
            if space in core:
                core = core.replace(space, b"")
        if core:
            for other in _NOT_ALNUM_BASE64:
                if other in core:
                    core = core.replace(other, b"A")
            if not core.isalnum():
                return None
        spaces += len(piece) - len(core)
    return spaces


_WHOLE_SCAN_MAX: Final = 4 << 20
_BASE64_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _whole_scan_spaces(data: bytes, start: int, end: int) -> int | None:
    """:func:`_base64_spaces` of a document of at most 4 MiB, without a copy of its text.

    ``translate`` deleting the base64 bytes keeps what is left in order, so what is left of the text is
    what is left of the whole document once what is left of the bytes before and after it is taken
    off; it must be XML white space alone. The whole is translated rather than a slice of it: the
    slice (and the isalnum scan's two replacements) were copies of the text in fresh memory, which
    cost more than the scan itself on a loaded machine (issue 22: 0.39 ms against 0.13 ms for a
    277 kB document, though it runs a few more instructions a byte).
    """
    left = data.translate(None, _BASE64_BYTES)
    before = len(data[:start].translate(None, _BASE64_BYTES))
    after = len(data[end:].translate(None, _BASE64_BYTES))
    text = left[before : len(left) - after]
    if text and text.translate(None, XML_WHITE_SPACE):
        return None
    return len(text)


def start_tags(data: bytes, name: bytes) -> list[re.Match[bytes]]:
    r"""The start tags ``<[prefix:]name …>`` in raw bytes, as ``re.finditer`` of their pattern finds them.

    The pattern is ``<(?:([A-Za-z_][\w.-]*):)?NAME\b[^>]*>`` (group 1: the prefix). Run over a
    whole CDA, the regex engine steps through every byte of a 270 kB base64 body looking for a
    ``<`` (1.4 M instructions, issue 22); here the name is looked for first (a ``memchr`` search)
    and the pattern tried only where a match can start. The result is the same list: a match
    holds the name after its ``<`` and an optional prefix, neither of which contains ``<``, so it
    starts at the last ``<`` before an occurrence of the name; those positions are tried in
    order, skipping the ones a previous match covers, as ``finditer`` does.
    """
    return list(_start_tags(data, name))


def _start_tags(data: bytes, name: bytes) -> Iterator[re.Match[bytes]]:
    pattern = _start_tag(name)
    position = 0
    last_opening = -1
    at = data.find(name)
    while at >= 0:
        opening = data.rfind(b"<", 0, at)
        if opening >= position and opening != last_opening:
            last_opening = opening
            match = pattern.match(data, opening)
            if match is not None:
                yield match
                position = match.end()
        at = data.find(name, at + 1)


def non_xml_body_text(data: bytes) -> tuple[int, int] | None:
    """Offsets of the text of a CDA's ``nonXMLBody/text`` in raw bytes, found without reading the text through.

    Inside :func:`base64_scans_kept` (the CDA reader, then the signature's manifest, look for the same
    document's body) the answer for the last ``bytes`` object asked about is given again, as
    :func:`base64_spaces` does.
    """
    memo: object = getattr(_LOCAL, "body_memo", _OFF)
    if memo is _OFF or type(data) is not bytes or len(data) < _MEMO_MIN:
        return _non_xml_body_text(data)
    if isinstance(memo, tuple) and memo[0] is data:
        return memo[1]  # type: ignore[no-any-return]
    span = _non_xml_body_text(data)
    _LOCAL.body_memo = (data, span)
    return span


def _non_xml_body_text(data: bytes) -> tuple[int, int] | None:
    """:func:`non_xml_body_text` without its memory.

    Given when the bytes hold exactly one ``nonXMLBody`` start tag (as :func:`start_tags` finds
    them), followed, after white space, by a ``text`` start tag of the same prefix that is not
    self-closed, whose content runs to ``</[prefix:]text`` with no other ``<``; else None. The
    content is not checked further: the callers check its characters (a base64 PDF body).

    The same as looking for every start tag and for the end tag over the whole input, without
    scanning a 270 kB base64 text three times for them (issue 22): the content holds no ``<``, so
    no tag starts in it, a tag that starts before it ends before it (at the ``>`` that opens it),
    and its end is the first ``<`` after its start (a ``memchr``).
    """
    first = next(_start_tags(data, b"nonXMLBody"), None)
    if first is None:
        return None
    prefix = first.group(1)
    name = (prefix + b":" if prefix else b"") + b"text"
    opening = re.compile(rb"\s*<" + re.escape(name) + rb"\b[^>]*(?<!/)>").match(data, first.end())
    if opening is None:
        return None
    start = opening.end()
    end = data.find(b"<", start)
    if end < 0 or not data.startswith(b"</" + name, end):
        return None
    if start_tags(data[first.end() : start], b"nonXMLBody") or start_tags(data[end:], b"nonXMLBody"):
        return None
    return start, end


_HARDENED: Final[dict[str, Any]] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "collect_ids": False,
    "remove_comments": False,
}


_LOCAL = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers keep state and are not thread-safe: one per thread, reused from call to call as
    # lxml reuses its own default parser (building one costs more than parsing a small answer).
    parser: etree.XMLParser | None = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(**_HARDENED)
    return parser


def parse_xml(data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS, what: str = "XML input") -> etree._Element:
    """Parse untrusted XML bytes and return the root element, or refuse them.

    ``what`` names the input in error messages ("the INSi answer", "CDA file …") so that
    the error says what failed without quoting the content.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_xml takes bytes; encode text yourself so that no encoding is guessed")
    size = len(data)
    if size > limits.max_bytes:
        raise UnsafeXmlError(
            f"{what} is {size} bytes, over the {limits.max_bytes}-byte limit",
            hint="raise XmlLimits.max_bytes if this size is legitimate",
        )
    if size == 0:
        raise MalformedResponseError(f"{what} is empty")
    try:
        root = etree.fromstring(raw := bytes(data), parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, what) from None  # libxml2 quotes the input: only its sanitised reason is kept
    if root is None:  # pragma: no cover - lxml raises on an empty document
        raise MalformedResponseError(f"{what} has no root element")
    _refuse_dtd(root, what)
    if not _too_short_to_nest(raw, limits.max_depth):
        _check_depth(root, limits.max_depth, what)
    return root


_COUNT_MAX: Final = 8192


def _too_short_to_nest(data: bytes, max_depth: int) -> bool:
    """Whether ``data`` (well-formed) is too short to nest deeper than ``max_depth``, told without its tree.

    An element at depth d has d - 1 ancestors, each written with a start and an end tag, and a tag
    of its own: 2d - 1 ``<`` at least (comments, CDATA sections and processing instructions only
    add some; a ``<`` is nowhere else in well-formed XML). For a short input (a SOAP answer, a kept
    CDA element) counting them costs less than the depth check's XPath, a fixed cost of some 40 k
    instructions (issue 22); a long one goes to the XPath.
    """
    return len(data) <= _COUNT_MAX and (data.count(b"<") + 1) // 2 <= max_depth


def _refuse_dtd(root: etree._Element, what: str) -> None:
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lacks DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXmlError(
            f"{what} carries a document type declaration (DTD), which is refused",
            hint="no protocol used here needs a DTD; the input may be an entity-expansion or XXE attempt",
        )


def parse_xml_head(
    chunks: Iterable[bytes], *, stop_after: str, limits: XmlLimits = DEFAULT_LIMITS, what: str = "XML input"
) -> etree._Element:
    """Parse the beginning of untrusted XML, up to the root's last ``stop_after`` child, and return the root.

    For a check that needs only a header (a retrieved CDA's ``recordTarget``) of a document that
    may be tens of megabytes: ``chunks`` are read only until the root's first child after its
    ``stop_after`` children starts; the root then holds its children up to there (that one begun). What
    is read gets the same refusals as :func:`parse_xml` (DTD, depth, libxml2's limits), and more
    than ``max_bytes`` read without reaching that point is refused; what follows is neither read
    nor checked. A document whose root has no ``stop_after`` child is read to its end.
    """
    parser = etree.XMLPullParser(events=("start", "end"), **_HARDENED)
    head = _Head(stop_after, limits.max_depth, what)
    read = 0
    for chunk in chunks:
        read += len(chunk)
        if read > limits.max_bytes:
            raise UnsafeXmlError(
                f"{what}: more than {limits.max_bytes} bytes read before the end of its head",
                hint="raise XmlLimits.max_bytes if this size is legitimate",
            )
        try:
            parser.feed(chunk)
        except etree.XMLSyntaxError as exc:
            # A chunk holds the head and more: what libxml2 read before the error still counts.
            if (root := head.ended(parser.read_events())) is not None:
                return root
            raise _syntax_error(exc, what) from None
        if (root := head.ended(parser.read_events())) is not None:
            return root
    try:
        closed = parser.close()
    except etree.XMLSyntaxError as exc:
        if (root := head.ended(parser.read_events())) is not None:
            return root
        raise _syntax_error(exc, what) from None
    head.ended(parser.read_events())
    return head.root if head.root is not None else closed


class _Head:
    """The events of :func:`parse_xml_head`: depth and DTD checked, and where the head ends."""

    def __init__(self, stop_after: str, max_depth: int, what: str) -> None:
        self.root: etree._Element | None = None
        self._stop_after, self._max_depth, self._what = stop_after, max_depth, what
        self._depth = 0
        self._seen = False

    def ended(self, events: Iterable[tuple[str, Any]]) -> etree._Element | None:
        """Take the parser's new events; the root once its first child after the head has started."""
        for event, element in events:
            if event == "end":
                self._depth -= 1
                continue
            self._depth += 1
            if self._depth > self._max_depth:
                raise UnsafeXmlError(f"{self._what} nests elements deeper than {self._max_depth} levels")
            if self.root is None:
                self.root = element
                _refuse_dtd(element, self._what)
            elif self._depth == 2:
                if element.tag == self._stop_after:
                    self._seen = True
                elif self._seen:
                    return self.root
        return None


def parse_xml_file(path: str | Path, *, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Read and parse an XML file with the same rules; reads at most ``max_bytes + 1`` bytes."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise MalformedResponseError(
            f"cannot read XML file {p.name}: {exc.strerror or exc}", hint="check the path and its permissions"
        ) from exc
    return parse_xml(data, limits=limits, what=f"XML file {p.name}")


def to_bytes(element: etree._Element, *, xml_declaration: bool = True) -> bytes:
    """Serialize an element as UTF-8 bytes, the only encoding the national services take."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=xml_declaration)


# libxml2 quotes up to 50 characters of the input after these (a comment, a CDATA section, the
# bytes that are not UTF-8): health data must not reach an error message, so the quote is cut.
_QUOTED_INPUT = re.compile(r"\n|<!--|<!\[CDATA\[|Bytes:")


def _reason(exc: etree.XMLSyntaxError) -> str:
    """libxml2's message without the piece of input it may quote, on one line and short."""
    text = _QUOTED_INPUT.split(str(exc.msg or ""), maxsplit=1)[0].strip().rstrip(":").strip()
    return text[:160] or "syntax error"


def _syntax_error(exc: etree.XMLSyntaxError, what: str) -> Exception:
    msg = _reason(exc)
    lowered = msg.lower()
    # libxml2's own hard limits (huge_tree off) and entity guards read as syntax errors;
    # name them as refusals so that callers do not retry or report them as corruption.
    if any(word in lowered for word in ("huge", "entity", "amplification", "depth", "too large", "excessive")):
        return UnsafeXmlError(f"{what} was refused by the XML limits: {msg}")
    line = getattr(exc, "lineno", None)
    return MalformedResponseError(f"{what} is not well-formed XML (line {line}): {msg}")


@functools.lru_cache(maxsize=8)
def _deeper_than(max_depth: int) -> etree.XPath:
    # ``*/*/…/*`` with max_depth steps from the root selects the elements at depth max_depth + 1:
    # libxml2 walks the tree in C, about twice as fast as a Python loop over iterwalk's events.
    return etree.XPath("boolean(" + "/".join(["*"] * max_depth) + ")")


_SHALLOW: Final = 16
"""Depth first looked past: most inputs (a CDA header, a narrative, a SOAP answer) end before it."""


def _check_depth(root: etree._Element, max_depth: int, what: str) -> None:
    # The full path costs one step per level whatever the tree's depth (about 50 k instructions for 128, issue 22):
    # a tree with no element under the first _SHALLOW levels has none under max_depth either (every element's
    # ancestors fill the levels above it), so the long path runs only for a tree that deep.
    if max_depth > _SHALLOW and not _deeper_than(_SHALLOW)(root):
        return
    if _deeper_than(max_depth)(root):
        raise UnsafeXmlError(
            f"{what} nests elements deeper than {max_depth} levels",
            hint="raise XmlLimits.max_depth if this depth is legitimate",
        )


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
