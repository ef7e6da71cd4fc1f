"""Reading any CI-SIS CDA R2 document into :class:`~dmp_connector.cda.model.ClinicalDocument`.

Input goes through the hardened parser (:func:`dmp_connector.xml.parse_xml`): a DTD, an
entity or too deep a tree is refused unread. What the model types is read into it; what
it does not is kept so that :func:`~dmp_connector.cda.build` writes it back:

* header elements without a typed field (``dataEnterer``, ``informant``, ``authenticator``,
  ``inFulfillmentOf``, ``authorization``) and untyped children of ``patient``,
  ``patientRole``, ``serviceEvent``, ``encompassingEncounter`` and ``section`` are kept as
  XML (:class:`~dmp_connector.cda.model.RawElement`);
* narrative blocks are kept as they are; entries go to the reader registered for their
  templateId, or are kept as :class:`~dmp_connector.cda.model.RawEntry`.

Nothing is dropped: every model read from an element remembers that element (see
``_source.py``), so that :func:`~dmp_connector.cda.build` writes back what the model does not
type (``codeSystemName``, ``translation``, null flavors, comments, the base64 layout of a PDF
body, the processing instructions around the root …) wherever the model was not changed.

A self-presenting document (an ``xsl:stylesheet`` holding the ``ClinicalDocument``) is read
as the document inside; its stylesheet is not kept.

Large PDF bodies: libxml2 refuses a text node over 10 MB (the base64 of a 7.5 MB PDF) unless
``huge_tree`` is on, which the hardened parser never turns on. So before parsing, the base64
text of a ``nonXMLBody`` is cut out of the bytes (it holds no markup: only base64 characters
and white space, checked), the rest is parsed, and the base64 is decoded from the input
without a second copy. A PDF is then limited only by :attr:`dmp_connector.xml.XmlLimits.max_bytes`
(64 MB of XML by default, a 47 MB PDF).
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import pydantic
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.errors import MalformedResponseError, ValidationError
from dmp_connector.ins import INS, BirthDate, Identity, IdentityStatus, IdentityTraits, InsOid, Sex
from dmp_connector.xml import (
    DEFAULT_LIMITS,
    XML_WHITE_SPACE,
    XmlLimits,
    base64_spaces,
    non_xml_body_text,
    parse_xml,
)

from ._namespaces import HL7, hl7, local_name
from ._source import Source
from .model import (
    _READING,
    OTHER_HEADER_ELEMENTS,
    Address,
    AddressPart,
    AddressPartKind,
    AssignedEntity,
    AssociatedEntity,
    Author,
    ClinicalDocument,
    Device,
    Encounter,
    HealthCareFacility,
    InformationRecipient,
    InstanceId,
    LegalAuthenticator,
    Narrative,
    NonXmlBody,
    Organization,
    Participant,
    Patient,
    Performer,
    Period,
    PersonName,
    RawElement,
    Section,
    ServiceEvent,
    StructuredBody,
    Telecom,
    _Model,
    _reading,
    read_entry,
)

__all__ = ["Base64Layout", "parse", "parse_file", "parse_ts"]

_M = TypeVar("_M", bound=_Model)
_V = TypeVar("_V")

_INS_ROOTS: Final = frozenset(oid.value for oid in InsOid)
_ADDRESS_PARTS: Final = frozenset(kind.value for kind in AddressPartKind)
_TS: Final = re.compile(
    r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"
    r"(?:(?P<H>\d{2})(?P<M>\d{2})?(?P<S>\d{2})?(?:\.(?P<f>\d{1,6})\d*)?)?"
    r"(?P<z>[+-]\d{3,4})?$"
)
_WHITE_SPACE: Final = XML_WHITE_SPACE


def _only_base64(data: bytes | bytearray, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` holds base64 and XML white space alone (checked 1 MiB at a time: no big copy)."""
    return base64_spaces(data, start, end) is not None


# --------------------------------------------------------------------------- public


def parse(data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS) -> ClinicalDocument:
    """Read a CDA document (bytes of the XML file) into the model.

    Hostile XML raises :class:`~dmp_connector.errors.UnsafeXmlError`, XML that is not
    well-formed :class:`~dmp_connector.errors.MalformedResponseError`, a document that is
    not a CDA or lacks what every CDA has :class:`~dmp_connector.errors.ValidationError`.
    """
    return _parse(data, limits, keep_layout=True)


def _parse(data: bytes, limits: XmlLimits, *, keep_layout: bool) -> ClinicalDocument:
    """:func:`parse`; without ``keep_layout`` the PDF body's base64 layout is not recorded, nor any model's source
    (the model is read for its metadata and never rebuilt: re-encoding 200 kB to compare costs more than the rest
    of the body)."""
    return _read(data, limits, _document, keep_layout=keep_layout)


def _read(
    data: bytes,
    limits: XmlLimits,
    reader: Callable[[etree._Element, bytes | None, Base64Layout | bytes | None], _V],
    *,
    keep_layout: bool,
) -> _V:
    """``reader`` (:func:`_document`, or the metadata reader of ``_header.py``) run on the ``ClinicalDocument``
    element of ``data`` as :func:`parse` runs it: same tree, same reading mode, same errors."""
    root, pdf, layout = _parse_tree(data, limits, keep_layout=keep_layout)
    document = _find_document(root)
    token = _SOURCES.set(keep_layout)
    try:
        with _reading(), _values_kept():
            return reader(document, pdf, layout)
    except pydantic.ValidationError as exc:  # from models of other packages (Code, IdentityTraits …)
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)]
        raise ValidationError(
            "the CDA document has invalid values: " + "; ".join(problems), problems=problems
        ) from None
    finally:
        _SOURCES.reset(token)


_SOURCES: ContextVar[bool] = ContextVar("dmp_connector_cda_sources", default=True)
"""Whether the models read remember their elements (:func:`_kept`): not when read for metadata only, never
built again (issue 22: a source per model, with a copy of its values, for a model that is dropped unread)."""


def parse_file(path: str | Path, *, limits: XmlLimits = DEFAULT_LIMITS) -> ClinicalDocument:
    """Read a CDA file; at most ``limits.max_bytes + 1`` bytes are read."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise MalformedResponseError(f"cannot read CDA file {p.name}: {exc.strerror or exc}") from exc
    return parse(data, limits=limits)


def parse_ts(text: str, *, lenient: bool = False) -> datetime | date:
    """A CDA ``TS`` value: ``YYYYMMDD`` gives a date, longer values a datetime (aware when ``±ZZZZ`` is given).

    ``lenient`` reads a 3-digit zone ``+100`` as ``+0100``: some ANS examples carry one, and
    :func:`parse` uses it for received documents (which :func:`build` then writes as ``+0100``).
    """
    match = _TS.match(text.strip())
    if match is None:
        raise ValidationError(
            "a CDA time is YYYYMMDD or YYYYMMDDHH[MM[SS]][.f]±ZZZZ", problems=("time: unsupported format",)
        )
    y, m, d, hour, minute, second, fraction, z = match.groups()
    try:
        if hour is None:
            return date(int(y), int(m), int(d))
        zone = None
        if z is not None:
            if len(z) == 4 and not lenient:
                raise ValidationError("a CDA time zone is ±HHMM", problems=("time: time zone of 3 digits",))
            zone = _ZONES.get(z) or _zone(z)
        micro = int(fraction.ljust(6, "0")) if fraction is not None else 0
        return datetime(int(y), int(m), int(d), int(hour), int(minute or 0), int(second or 0), micro, tzinfo=zone)
    except ValueError:
        raise ValidationError("a CDA time is not on the calendar", problems=("time: impossible date",)) from None


_ZONES: Final[dict[str, timezone]] = {}
_ZONES_MAX: Final = 64


def _zone(z: str) -> timezone:
    """The time zone ``±HHMM`` (or ``±HMM``) names; ValueError when it is a day or more (kept: a few distinct ones)."""
    digits = z[1:].rjust(4, "0")  # "+100" read as +0100, as the ANS BIO-TROD examples mean it
    sign = -1 if z[0] == "-" else 1
    zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    if len(_ZONES) < _ZONES_MAX:
        _ZONES[z] = zone
    return zone


# --------------------------------------------------------------------------- tree


def _parse_tree(
    data: bytes, limits: XmlLimits, *, keep_layout: bool = True
) -> tuple[etree._Element, bytes | None, Base64Layout | bytes | None]:
    """The parsed tree and, when its base64 was cut out before parsing, the decoded PDF body and its layout."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse takes bytes; read the file in binary mode")
    if isinstance(data, memoryview):
        data = data.tobytes()
    if len(data) > limits.max_bytes:
        return parse_xml(bytes(data), limits=limits, what="the CDA document"), None, None  # refused there
    cut = _cut_base64(data)
    if cut is not None:
        start, end, spaces = cut
        # The cut text is replaced by a marker nobody can predict: only if the parser then reads the
        # marker as the whole text of the body's <text> was the cut that text (not, say, a copy in a
        # comment, with the real body elsewhere under a prefix the byte scan does not know).
        marker = "DMPC" + secrets.token_hex(12)
        reduced = bytes(data[:start]) + marker.encode("ascii") + bytes(data[end:])
        root = parse_xml(reduced, limits=limits, what="the CDA document")
        text = _body_text(_find_document(root))
        if text is not None and text.text == marker and len(text) == 0:
            text.text = None
            if not keep_layout:
                ends = _pdf_ends(data, start, end, spaces)
                if ends is not None:
                    return root, ends, None
            text_bytes = memoryview(data)[start:end]
            pdf = _decode_base64(text_bytes)
            return root, pdf, base64_layout(text_bytes, pdf) if keep_layout else None
    return parse_xml(bytes(data), limits=limits, what="the CDA document"), None, None


def _cut_base64(data: bytes | bytearray) -> tuple[int, int, int] | None:
    """Offsets of the base64 text of the one ``nonXMLBody`` and its count of white-space bytes, or None when it
    cannot be cut safely."""
    span = non_xml_body_text(bytes(data))
    if span is None:
        return None
    start, end = span
    spaces = base64_spaces(data, start, end)
    if spaces is None:
        return None
    return start, end, spaces


_ENDS_MIN: Final = 16 * 1024
_ENDS_SPAN: Final = 2048
_TAIL_CHARS: Final = 1400
"""Base64 characters the tail must hold: at least 1047 bytes once decoded, more than the last kilobyte
(``_PDF_TAIL``) in which :class:`NonXmlBody` looks for ``%%EOF`` (issue 22: decoding 4 kB was twice that)."""
_PADDING_SPAN: Final = 256


def _pdf_ends(data: bytes | bytearray, start: int, end: int, spaces: int) -> bytes | None:
    """The first and last bytes of the PDF whose base64 is ``data[start:end]``, for a model read for metadata only.

    Metadata need the body's kind, not the PDF (issue 22: decoding 270 kB of base64 was a tenth of
    a deposit's instructions), but the deposit still refuses what :func:`parse` refuses: base64
    that ``binascii.a2b_base64`` rejects, and a body that does not start with ``%PDF-`` or lacks
    ``%%EOF`` in its last kilobyte (the :class:`NonXmlBody` checks, run on these bytes). The text
    holds base64 characters and ``spaces`` white-space bytes alone (checked). When the ``=`` are
    all at its end, ``a2b_base64`` accepts it exactly when the count of the other characters is a
    multiple of 4, or 2 more with two ``=``, or 3 more with one (it stops at a complete padding);
    then the first 8 characters give the first 6 bytes, and the last ~2 kB, cut on a group of 4,
    the last ~1.5 kB. None (decode the whole) for a short text or ``=`` anywhere else.
    """
    if end - start < _ENDS_MIN:
        return None
    first_pad = data.find(b"=", start, end)
    pads = 0
    data_end = end
    if first_pad >= 0:
        if end - first_pad > _PADDING_SPAN:
            return None
        padding = bytes(data[first_pad:end])
        if padding.translate(None, b"=" + _WHITE_SPACE):
            return None  # base64 after a "=": a2b_base64's own rules decide
        pads = padding.count(b"=")
        data_end = first_pad
    count = (end - start) - spaces - pads
    remainder = count % 4
    if remainder == 1 or (remainder == 2 and pads < 2) or (remainder == 3 and pads < 1):
        _decode_base64(memoryview(data)[start:end])  # raises the error parse raises
        return None  # pragma: no cover - a2b_base64 refuses every such text
    head = bytes(data[start : start + 64]).translate(None, _WHITE_SPACE)[:8]
    tail = bytes(data[max(start, data_end - _ENDS_SPAN) : data_end]).translate(None, _WHITE_SPACE)
    if len(head) < 8 or len(tail) < _TAIL_CHARS:
        return None
    tail = tail[(len(tail) - count) % 4 :] + b"=" * (-count % 4)
    return binascii.a2b_base64(head) + binascii.a2b_base64(tail)


def _decode_base64(text: memoryview) -> bytes:
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:
        raise ValidationError(
            "the document's PDF body is not valid base64", problems=("body: invalid base64",)
        ) from None


@dataclass(frozen=True)
class Base64Layout:
    """How a PDF body's base64 was laid out, so that an unchanged body is written back as it came.

    Base64 ignores white space, so the layout is not content; but a document written back
    must be the document read, so :func:`parse` records it (the one-line form most
    producers write, or lines of one width) and :func:`~dmp_connector.cda.build` reproduces
    it. A layout that fits neither is kept as the text itself.
    """

    leading: bytes
    """White space before the base64."""
    trailing: bytes
    """White space after it."""
    width: int | None
    """Characters per line; None for one line."""
    separator: bytes
    """What separates the lines (``\n``, ``\r\n`` …)."""

    def encode(self, data: bytes | memoryview, slice_size: int = 3 * 256 * 1024) -> Iterator[bytes]:
        """The laid-out base64 of ``data``, in pieces of about ``slice_size`` * 4/3 bytes."""
        yield self.leading
        view = memoryview(data)
        width, first, carry = self.width, True, b""
        for start in range(0, len(view), slice_size):
            encoded = binascii.b2a_base64(view[start : start + slice_size], newline=False)
            if width is None:
                yield encoded
                continue
            carry += encoded
            full = len(carry) // width * width
            if full:
                lines = [carry[i : i + width] for i in range(0, full, width)]
                yield (b"" if first else self.separator) + self.separator.join(lines)
                first, carry = False, carry[full:]
        if carry:
            yield (b"" if first else self.separator) + carry
        yield self.trailing


_SPACE: Final = re.compile(rb"\s+")


def base64_layout(text: bytes | memoryview, pdf: bytes) -> Base64Layout | bytes:
    """The layout of ``text`` (the base64 of ``pdf``), or the text itself when no layout reproduces it."""
    view = memoryview(text)
    head = bytes(view[:256])
    leading = head[: len(head) - len(head.lstrip())]
    tail = bytes(view[-256:])
    trailing = tail[len(tail.rstrip()) :]
    inner = view[len(leading) : len(view) - len(trailing)]
    space = _SPACE.search(bytes(inner[: 64 * 1024]))
    layout = Base64Layout(
        leading=leading,
        trailing=trailing,
        width=space.start() if space is not None else None,
        separator=space.group() if space is not None else b"",
    )
    if layout.width == 0:
        return view.tobytes()
    position = 0
    for piece in layout.encode(pdf):
        if view[position : position + len(piece)] != piece:
            return view.tobytes()
        position += len(piece)
    if position != len(view):
        return view.tobytes()
    return layout


def _kept(model: _M, element: etree._Element, extra: object = None) -> _M:
    """``model`` remembering the element it was read from (see ``_source.py``); as it is when read for metadata."""
    if not _SOURCES.get():
        return model
    source = Source(element, dict(model.__dict__), extra)
    private = model.__pydantic_private__
    if private is not None:  # what pydantic's __setattr__ does for a private attribute, without its handler lookup
        private["_source"] = source
    else:  # pragma: no cover - every model here has its private attributes set by its post-init
        model._source = source
    return model


def _find_document(root: etree._Element) -> etree._Element:
    if root.tag == hl7("ClinicalDocument"):
        return root
    inner = root.find(f".//{hl7('ClinicalDocument')}")
    if inner is None:
        raise ValidationError(
            f"this XML is not a CDA document: its root is <{local_name(root)}>, and no ClinicalDocument is inside",
            problems=("ClinicalDocument: missing",),
        )
    return inner


def _body_text(document: etree._Element) -> etree._Element | None:
    return document.find(f"{hl7('component')}/{hl7('nonXMLBody')}/{hl7('text')}")


# --------------------------------------------------------------------------- helpers


class _Tags(dict[str, str]):
    """Clark names of CDA elements by local name, made once (``_TAGS["id"]`` is ``hl7("id")``)."""

    def __missing__(self, name: str) -> str:
        tag = self[name] = hl7(name)
        return tag


_TAGS: Final = _Tags()


def _children(parent: _Parent, name: str) -> Iterable[etree._Element]:
    if isinstance(parent, _ChildIndex):
        return parent.children(name)
    return parent.iterchildren(_TAGS[name])


def _child(parent: _Parent, name: str) -> etree._Element | None:
    if isinstance(parent, _ChildIndex):
        return parent.child(name)
    # The first child of that tag, as element.find(tag) gives it, without the ElementPath machinery: half the time.
    return next(parent.iterchildren(_TAGS[name]), None)


def _require(parent: _Parent, name: str, where: str) -> etree._Element:
    found = _child(parent, name)
    if found is None:
        raise _missing(name, where)
    return found


def _missing(name: str, where: str) -> ValidationError:
    return ValidationError(f"the CDA document has no {where}/{name}", problems=(f"{where}/{name}: missing",))


class _ChildIndex:
    """The children of one element by tag, read in one pass, for :func:`_child`, :func:`_children`, :func:`_require`
    and :func:`_untyped` on an element asked about several times: each ``iterchildren(tag)`` builds its own tag
    matcher, which costs more than reading the few children of a header element once (issue 22)."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, element: etree._Element) -> None:
        pairs = [(child.tag, child) for child in element]
        self._pairs = pairs
        # The first child of each tag, made in C: dict() keeps the last value of a repeated key, and the pairs
        # are given last first (a dict of lists, made in a Python loop, cost as much as reading the children).
        self._first: dict[object, etree._Element] = dict(reversed(pairs))

    def child(self, name: str) -> etree._Element | None:
        return self._first.get(_TAGS[name])

    def children(self, name: str) -> list[etree._Element]:
        tag = _TAGS[name]
        if tag not in self._first:
            return []
        return [child for child_tag, child in self._pairs if child_tag == tag]

    def require(self, name: str, where: str) -> etree._Element:
        found = self._first.get(_TAGS[name])
        if found is None:
            raise _missing(name, where)
        return found

    def untyped(self, typed: frozenset[str]) -> list[etree._Element]:
        # A CDA tag "{urn:hl7-org:v3}x" has local name x ("}" is no name character): in the Clark set exactly when
        # _untyped's test (namespace HL7, local name in typed) holds.
        clark = _clark(typed)
        return [child for tag, child in self._pairs if isinstance(tag, str) and tag not in clark]

    def local_named(self, names: Iterable[str]) -> list[etree._Element]:
        """The children whose local name is one of ``names``, whatever their namespace, in document order."""
        wanted = {tag for tag in self._first if isinstance(tag, str) and tag.rsplit("}", 1)[-1] in names}
        return [child for tag, child in self._pairs if tag in wanted] if wanted else []


_Parent = etree._Element | _ChildIndex


@functools.cache
def _clark(names: frozenset[str]) -> frozenset[str]:
    return frozenset(hl7(name) for name in names)


def _path(elements: Iterable[etree._Element], *names: str) -> Iterator[etree._Element]:
    """What ``e.iterfind("n1/n2/…")`` finds for each ``e`` of ``elements`` in turn, in its order (``names``: the
    CDA local names ``n1``, ``n2`` …), without the ElementPath machinery; ``elements`` themselves without names."""
    if not names:
        yield from elements
        return
    for element in elements:
        yield from _path(element.iterchildren(_TAGS[names[0]]), *names[1:])


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    if not len(element):  # no child: its text is all itertext() gives, without an iterator and a generator
        return (element.text or "").strip() or None
    return "".join(str(t) for t in element.itertext()).strip() or None


def _ii(element: etree._Element | None, *, kept: bool = True) -> InstanceId | None:
    """The id ``element`` holds; ``kept=False`` for an id about the patient (their INS, IPP, stay or act numbers,
    their relatives'), which is validated each time rather than kept in :func:`_instance_id`'s memory."""
    root = element.get("root") if element is not None else None
    if element is None or root is None:
        return None
    if not kept:
        return InstanceId(root=root.strip(), extension=element.get("extension") or None)
    return _instance_id(root.strip(), element.get("extension") or None, _READING.get())


def _instance_id(root: str, extension: str | None, reading: bool) -> InstanceId:
    """``InstanceId(root=…, extension=…)``, validated once per value while one document is read (issue 22).

    Ids repeat within a document (the author's and the organisation's, the templateIds), and a
    model costs more to validate than to look up; the patient's are not kept (see :func:`_ii`). An
    InstanceId is frozen, and :func:`parse` never gives one a source, so one instance serves every
    reader. ``reading`` is the mode of :func:`~dmp_connector.cda.model._reading` the value is
    validated in (a received document's roots are read more leniently): part of the key only.
    A refused value raises each time (a raised error is not kept). See :func:`_values_kept`.
    """
    return _kept_value(("id", root, extension, reading), _new_id, root, extension)


def _new_id(root: str, extension: str | None) -> InstanceId:
    return InstanceId(root=root, extension=extension)


def _iis(parent: _Parent, name: str = "id", *, kept: bool = True) -> tuple[InstanceId, ...]:
    return _iis_of(_children(parent, name), kept=kept)


def _iis_of(elements: Iterable[etree._Element], *, kept: bool = True) -> tuple[InstanceId, ...]:
    return tuple(i for i in (_ii(e, kept=kept) for e in elements) if i is not None)


def _code(element: etree._Element | None) -> Code | None:
    if element is None:
        return None
    code, system = element.get("code"), element.get("codeSystem")
    if not code or not system:
        return None
    return _code_of(code, system.strip(), element.get("displayName") or None)


def _code_of(code: str, code_system: str, display_name: str | None) -> Code:
    """``Code(code=…, code_system=…, display_name=…)``, validated once per value while one document is read, as
    :func:`_instance_id` (a Code is frozen, its validation depends on its values alone, and codes repeat)."""
    return _kept_value(("code", code, code_system, display_name), _new_code, code, code_system, display_name)


def _new_code(code: str, code_system: str, display_name: str | None) -> Code:
    return Code(code=code, code_system=code_system, display_name=display_name)


def _ts(element: etree._Element | None) -> datetime | date | None:
    if element is None or not element.get("value"):
        return None
    return _read_ts(element.get("value") or "")


def _read_ts(text: str) -> datetime | date:
    """``parse_ts(text, lenient=True)`` once per value while one document is read: a document repeats its times
    (its effectiveTime is mostly its author's and its legal authenticator's time, its service event's period its
    encounter's); a date or a datetime is immutable, and a refused value raises each time."""
    return _kept_value(("ts", text), _lenient_ts, text)


def _lenient_ts(text: str) -> datetime | date:
    return parse_ts(text, lenient=True)


_VALUES: ContextVar[dict[tuple[object, ...], Any] | None] = ContextVar("dmp_connector_cda_values", default=None)


@contextmanager
def _values_kept() -> Iterator[None]:
    """While one document is read: its ids, codes and times validated once each (they repeat within it).

    Forgotten when the read ends, so that nothing of a document (its ids, its dates of care, the
    display names of its codes) outlives it in the process's memory.
    """
    token = _VALUES.set({})
    try:
        yield
    finally:
        _VALUES.reset(token)


def _kept_value(key: tuple[object, ...], make: Callable[..., _V], *args: Any) -> _V:
    """``make(*args)``, or what it gave for ``key`` earlier in this read (a refusal raises each time)."""
    values = _VALUES.get()
    if values is None:
        return make(*args)
    value = values.get(key, _NOT_KEPT)  # a miss without a KeyError raised and caught: most values come once
    if value is _NOT_KEPT:
        value = values[key] = make(*args)
    return value  # type: ignore[no-any-return]


_NOT_KEPT: Final = object()


def _period(element: etree._Element | None) -> Period | None:
    if element is None:
        return None
    kids = _ChildIndex(element)
    low, high, value = _ts(kids.child("low")), _ts(kids.child("high")), _ts(element)
    null_flavor = element.get("nullFlavor") or None
    if low is None and high is None and value is None and null_flavor is None:
        return None
    return Period(low=low, high=high, value=value, null_flavor=null_flavor)


def _raw(elements: Iterable[etree._Element]) -> tuple[RawElement, ...]:
    return tuple(RawElement.from_element(e) for e in elements)


def _untyped(parent: _Parent, typed: frozenset[str]) -> list[etree._Element]:
    if isinstance(parent, _ChildIndex):
        return parent.untyped(typed)
    return [
        c for c in parent if isinstance(c.tag, str) and not (c.tag.startswith(f"{{{HL7}}}") and local_name(c) in typed)
    ]


def _addresses(parent: _Parent) -> tuple[Address, ...]:
    out = []
    for addr in _children(parent, "addr"):
        parts = tuple(
            AddressPart(kind=AddressPartKind(local_name(p)), value=(p.text or "").strip())
            for p in addr
            if isinstance(p.tag, str) and local_name(p) in _ADDRESS_PARTS and (p.text or "").strip()
        )
        out.append(
            Address(
                parts=parts,
                text=(addr.text or "").strip() or None,
                use=addr.get("use") or None,
                null_flavor=addr.get("nullFlavor") or None,
            )
        )
    return tuple(out)


def _telecoms(parent: _Parent) -> tuple[Telecom, ...]:
    out = []
    for tel in _children(parent, "telecom"):
        value, flavor = tel.get("value") or None, tel.get("nullFlavor") or None
        if value is None and flavor is None:
            continue
        out.append(Telecom(value=value, use=tel.get("use") or None, null_flavor=None if value else flavor))
    return tuple(out)


def _person_name(element: etree._Element | None) -> PersonName | None:
    name = _child(element, "name") if element is not None else None
    if name is None:
        return None
    kids = _ChildIndex(name)
    family = _text(kids.child("family"))
    if family is None:
        return None
    return PersonName(
        family=family,
        given=_text(kids.child("given")),
        prefix=_text(kids.child("prefix")),
        suffix=_text(kids.child("suffix")),
    )


def _organization(element: etree._Element | None) -> Organization | None:
    if element is None:
        return None
    kids = _ChildIndex(element)
    organization = Organization(
        id=_ii(kids.child("id")),
        name=_text(kids.child("name")),
        telecoms=_telecoms(kids),
        addresses=_addresses(kids),
        industry_class=_code(kids.child("standardIndustryClassCode")),
    )
    return _kept(organization, element)


def _assigned(element: etree._Element) -> AssignedEntity:
    kids = _ChildIndex(element)
    ident = _ii(kids.child("id"))
    device_element = kids.child("assignedAuthoringDevice")
    device = None
    if device_element is not None:
        device = Device(
            manufacturer_model_name=_text(_child(device_element, "manufacturerModelName")),
            software_name=_text(_child(device_element, "softwareName")),
        )
    entity = AssignedEntity(
        id=ident,
        code=_code(kids.child("code")),
        addresses=_addresses(kids),
        telecoms=_telecoms(kids),
        person=_person_name(kids.child("assignedPerson")),
        device=device,
        organization=_organization(kids.child("representedOrganization")),
    )
    return _kept(entity, element)


# --------------------------------------------------------------------------- header


def _document(doc: etree._Element, pdf: bytes | None, layout: Base64Layout | bytes | None) -> ClinicalDocument:
    where = "ClinicalDocument"
    kids = _ChildIndex(doc)
    ident = _ii(kids.require("id", where))
    set_id = _ii(kids.child("setId"))
    version = kids.child("versionNumber")
    version_text = version.get("value") if version is not None else None
    type_code = _code(kids.require("code", where))
    effective = _ts(kids.require("effectiveTime", where))
    if ident is None or type_code is None or effective is None:
        raise ValidationError(
            "the CDA document lacks its id root, its type code or its effectiveTime value",
            problems=("ClinicalDocument: id/code/effectiveTime",),
        )
    replaces = None
    related = kids.child("relatedDocument")
    if related is not None:
        if related.get("typeCode") != "RPLC":
            raise ValidationError(
                "relatedDocument is only RPLC (replacement) in CI-SIS documents",
                problems=("relatedDocument/@typeCode",),
            )
        parent = _child(related, "parentDocument")
        replaces = _ii(_child(parent, "id")) if parent is not None else None
    custodian = next(_path(kids.children("custodian"), "assignedCustodian", "representedCustodianOrganization"), None)
    legal = kids.require("legalAuthenticator", where)
    encounter = next(_path(kids.children("componentOf"), "encompassingEncounter"), None)
    if custodian is None or encounter is None:
        raise ValidationError(
            "the CDA document lacks its custodian organisation or its encompassing encounter",
            problems=("custodian/componentOf: missing",),
        )
    confidentiality = _code(kids.child("confidentialityCode"))
    language = kids.child("languageCode")
    fields: dict[str, object] = {}
    if confidentiality is not None:
        fields["confidentiality"] = confidentiality
    if language is not None and language.get("code"):
        fields["language"] = language.get("code")
    document = ClinicalDocument(
        id=ident,
        type_code=type_code,
        title=_text(kids.child("title")) or "",
        effective_time=effective,
        set_id=set_id,
        version=int(version_text) if version_text and version_text.strip().isdigit() else 1,
        replaces=replaces,
        template_ids=_iis_of(kids.children("templateId")),
        patient=_patient(_require(kids.require("recordTarget", where), "patientRole", "recordTarget")),
        authors=tuple(_author(a) for a in kids.children("author")),
        custodian=_organization(custodian) or Organization(),
        legal_authenticator=_legal(legal),
        participants=tuple(_participant(p) for p in kids.children("participant")),
        information_recipients=tuple(_recipient(r) for r in kids.children("informationRecipient")),
        service_events=tuple(_service_event(e) for e in _path(kids.children("documentationOf"), "serviceEvent")),
        encounter=_encounter(encounter),
        body=_body(doc, pdf, layout),
        other_header=_raw(kids.local_named(OTHER_HEADER_ELEMENTS)),
        **fields,
    )
    if not _SOURCES.get():
        return document
    # The comments and processing instructions around the root (<?xml-stylesheet …?>) belong to the file we
    # write back; a self-presenting document's root is its stylesheet, which is not kept.
    prolog = (
        (tuple(reversed(list(doc.itersiblings(preceding=True)))), tuple(doc.itersiblings()))
        if doc.getparent() is None
        else ((), ())
    )
    return _kept(document, doc, prolog)


_PATIENT_TYPED: Final = frozenset({"name", "administrativeGenderCode", "birthTime", "birthplace"})
_ROLE_TYPED: Final = frozenset({"id", "addr", "telecom", "patient"})


class _PatientIdentity(NamedTuple):
    """What :func:`_patient_identity` reads of a ``patientRole``: the typed part of the patient."""

    ins: INS | None
    others: list[InstanceId]
    traits: IdentityTraits
    parts: dict[tuple[str, str | None], str]
    """The ``name`` parts by (element, qualifier), the first of each."""
    place: etree._Element | None
    """``birthplace/place/addr``."""
    role_kids: _ChildIndex
    person_kids: _ChildIndex


def _patient_identity(role: etree._Element) -> _PatientIdentity:
    """The INS, other ids and identity traits of a ``patientRole``: refused as :func:`parse` refuses them.

    Shared by the full reader and the metadata-only one (``_header``), so that both read the identity alike.
    """
    role_kids = _ChildIndex(role)
    person = _require(role_kids, "patient", "patientRole")
    person_kids = _ChildIndex(person)
    ins: INS | None = None
    others = []
    for element in role_kids.children("id"):
        ident = _ii(element, kept=False)
        if ident is None:
            continue
        if ins is None and ident.root in _INS_ROOTS and ident.extension:
            ins = INS.from_cda_id(ident.root, ident.extension, lenient=True)
        else:
            others.append(ident)
    name = _require(person_kids, "name", "patient")
    parts: dict[tuple[str, str | None], str] = {}
    for part in name:
        if isinstance(part.tag, str) and (text := _text(part)) is not None:
            parts.setdefault((local_name(part), part.get("qualifier")), text)
    birth_name = parts.get(("family", "BR")) or parts.get(("family", None)) or parts.get(("family", "CL"))
    if birth_name is None:
        raise ValidationError("the patient has no family name", problems=("patient/name/family: missing",))
    first_names = _first_names(parts.get(("given", None)), parts.get(("given", "BR")), parts.get(("given", "CL")))
    gender = person_kids.child("administrativeGenderCode")
    sex = _SEXES.get(gender.get("code") or "" if gender is not None else "")
    if sex is None:
        raise ValidationError("the patient has no administrative sex (M, F, UN)", problems=("patient/sex",))
    birth = person_kids.child("birthTime")
    birth_value = (birth.get("value") or "").strip() if birth is not None else ""
    if len(birth_value) < 4:
        raise ValidationError("the patient has no birth time", problems=("patient/birthTime: missing",))
    place = next(_path(person_kids.children("birthplace"), "place", "addr"), None)
    traits = IdentityTraits(
        birth_name=birth_name,
        birth_first_names=first_names,
        sex=sex,
        birth_date=_birth_date(birth_value),
        birth_place=_text(_child(place, "county")) if place is not None else None,
        used_name=parts.get(("family", "CL")),
        used_first_name=parts.get(("given", "CL")),
    )
    return _PatientIdentity(ins, others, traits, parts, place, role_kids, person_kids)


_SEXES: Final = {"M": Sex.M, "F": Sex.F, "UN": Sex.I}


def _patient(role: etree._Element) -> Patient:
    ins, others, traits, parts, place, role_kids, person_kids = _patient_identity(role)
    status = IdentityStatus.QUAL if ins is not None else IdentityStatus.PROV
    patient = Patient(
        identity=Identity(traits=traits, ins=ins, status=status),
        other_ids=tuple(others),
        addresses=_addresses(role_kids),
        telecoms=_telecoms(role_kids),
        name_prefix=parts.get(("prefix", None)),
        usage_name=parts.get(("family", "SP")),
        birth_place_name=_text(_child(place, "city")) if place is not None else None,
        extras=_raw(_untyped(person_kids, _PATIENT_TYPED)),
        role_extras=_raw(_untyped(role_kids, _ROLE_TYPED)),
    )
    return _kept(patient, role)


def _first_names(listed: str | None, first: str | None, used: str | None) -> tuple[str, ...]:
    """The birth first names from ``given`` (the list) and ``given@BR`` (the first, which may hold a space)."""
    if listed is None:
        if first is None and used is None:
            raise ValidationError("the patient has no first name", problems=("patient/name/given: missing",))
        return ((first or used) or "",)
    if first is not None and (listed == first or listed.startswith(first + " ")):
        rest = listed[len(first) :].split()
        return (first, *rest)
    return tuple(listed.split())


def _birth_date(value: str) -> BirthDate:
    digits = value[:8]
    if len(digits) == 6:
        return BirthDate.parse(f"{digits[:4]}-{digits[4:6]}")
    return BirthDate.parse(digits)


def _author(element: etree._Element) -> Author:
    kids = _ChildIndex(element)
    time = _ts(kids.child("time"))
    entity = kids.child("assignedAuthor")
    if time is None or entity is None:
        raise ValidationError("an author lacks its time or assignedAuthor", problems=("author: time/assignedAuthor",))
    author = Author(
        time=time,
        entity=_assigned(entity),
        function_code=_code(kids.child("functionCode")),
    )
    return _kept(author, element)


def _legal(element: etree._Element) -> LegalAuthenticator:
    kids = _ChildIndex(element)
    time = _ts(kids.child("time"))
    entity = kids.child("assignedEntity")
    if time is None or entity is None:
        raise ValidationError(
            "the legal authenticator lacks its time or assignedEntity", problems=("legalAuthenticator",)
        )
    return _kept(LegalAuthenticator(time=time, entity=_assigned(entity)), element)


def _participant(element: etree._Element) -> Participant:
    kids = _ChildIndex(element)
    participant = Participant(
        type_code=element.get("typeCode") or "",
        template_ids=_iis(kids, "templateId"),
        function_code=_code(kids.child("functionCode")),
        time=_period(kids.child("time")),
        entity=_associated(_require(kids, "associatedEntity", "participant")),
    )
    return _kept(participant, element)


def _associated(entity: etree._Element) -> AssociatedEntity:
    kids = _ChildIndex(entity)
    associated = AssociatedEntity(
        class_code=entity.get("classCode") or "",
        ids=_iis(kids, kept=False),
        code=_code(kids.child("code")),
        addresses=_addresses(kids),
        telecoms=_telecoms(kids),
        person=_person_name(kids.child("associatedPerson")),
        organization=_organization(kids.child("scopingOrganization")),
    )
    return _kept(associated, entity)


def _recipient(element: etree._Element) -> InformationRecipient:
    intended = _require(element, "intendedRecipient", "informationRecipient")
    kids = _ChildIndex(intended)
    recipient = InformationRecipient(
        type_code=element.get("typeCode") or "PRCP",
        ids=_iis(kids),
        addresses=_addresses(kids),
        telecoms=_telecoms(kids),
        person=_person_name(kids.child("informationRecipient")),
        organization=_organization(kids.child("receivedOrganization")),
    )
    return _kept(recipient, element)


_EVENT_TYPED: Final = frozenset({"id", "code", "effectiveTime"})


def _service_event(element: etree._Element) -> ServiceEvent:
    kids = _ChildIndex(element)
    performers = list(kids.children("performer"))
    performer = _performer(performers[0]) if performers else None
    extras = [e for e in _untyped(kids, _EVENT_TYPED) if e not in performers[:1]]
    code = kids.child("code")
    event = ServiceEvent(
        ids=_iis(kids, kept=False),
        code=_code(code),
        code_translations=_raw(_children(code, "translation")) if code is not None and _code(code) else (),
        effective_time=_period(kids.child("effectiveTime")),
        performer=performer,
        class_code=element.get("classCode") or None,
        extras=_raw(extras),
    )
    return _kept(event, element)


def _performer(element: etree._Element) -> Performer:
    kids = _ChildIndex(element)
    performer = Performer(
        template_ids=_iis(kids, "templateId"),
        function_code=_code(kids.child("functionCode")),
        time=_period(kids.child("time")),
        entity=_assigned(_require(kids, "assignedEntity", "performer")),
    )
    return _kept(performer, element)


_ENCOUNTER_TYPED: Final = frozenset({"id", "code", "effectiveTime", "location"})


def _encounter(element: etree._Element) -> Encounter:
    kids = _ChildIndex(element)
    period = _period(kids.child("effectiveTime"))
    hcf = element.find(f"{hl7('location')}/{hl7('healthCareFacility')}")
    encounter = Encounter(
        ids=_iis(kids, kept=False),
        code=_code(kids.child("code")),
        effective_time=period,
        facility=_facility(hcf) if hcf is not None else None,
        extras=_raw(_untyped(kids, _ENCOUNTER_TYPED)),
    )
    return _kept(encounter, element)


def _facility(hcf: etree._Element) -> HealthCareFacility:
    kids = _ChildIndex(hcf)
    place = kids.child("location")
    place_addresses = _addresses(place) if place is not None else ()
    facility = HealthCareFacility(
        id=_ii(kids.child("id")),
        code=_code(kids.child("code")),
        place_name=_text(_child(place, "name")) if place is not None else None,
        place_address=place_addresses[0] if place_addresses else None,
    )
    return _kept(facility, hcf)


# --------------------------------------------------------------------------- body


def _body(doc: etree._Element, pdf: bytes | None, layout: Base64Layout | bytes | None) -> StructuredBody | NonXmlBody:
    component = _require(doc, "component", "ClinicalDocument")
    structured = _child(component, "structuredBody")
    if structured is not None:
        return _structured(component)
    text = _body_text(doc)
    if text is None:
        raise ValidationError(
            "the document has neither a structuredBody nor a nonXMLBody/text", problems=("component",)
        )
    media_type = text.get("mediaType") or "text/plain"
    if media_type != "application/pdf" or text.get("representation") != "B64":
        raise ValidationError(
            f"only base64 PDF bodies are read; this one is {media_type} ({text.get('representation') or 'TXT'})",
            problems=("nonXMLBody/text",),
        )
    if pdf is None:
        content = (text.text or "").encode("ascii", "replace")
        if not _only_base64(content, 0, len(content)):
            raise ValidationError("the document's PDF body is not base64", problems=("body: invalid base64",))
        pdf = _decode_base64(memoryview(content))
        layout = base64_layout(content, pdf)
    return _kept(NonXmlBody(data=pdf, media_type=media_type), component, layout)


def _structured(component: etree._Element) -> StructuredBody:
    structured = _require(component, "structuredBody", "component")
    sections = tuple(_section(s) for s in structured.iterfind(f"{hl7('component')}/{hl7('section')}"))
    return _kept(StructuredBody(sections=sections), component)


_SECTION_TYPED: Final = frozenset({"templateId", "id", "code", "title", "text", "entry", "component"})


def _section(element: etree._Element) -> Section:
    kids = _ChildIndex(element)
    text = kids.child("text")
    section = Section(
        xml_id=element.get("ID") or None,
        template_ids=_iis(kids, "templateId"),
        id=_ii(kids.child("id")),
        code=_code(kids.child("code")),
        title=_text(kids.child("title")),
        text=Narrative.from_element(text) if text is not None else None,
        extras=_raw(_untyped(kids, _SECTION_TYPED)),
        entries=tuple(read_entry(e) for e in kids.children("entry")),
        subsections=tuple(_section(s) for s in _path(kids.children("component"), "section")),
    )
    return _kept(section, element)
