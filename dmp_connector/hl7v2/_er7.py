"""HL7 v2 ER7 ("pipe and hat") encoding: the one place that splits and joins delimiters.

Why our own and not a library: both HL7 v2 libraries on PyPI were tried on the ANS samples
(tests/data/hl7v2). python-hl7 0.4.5 escapes ``é`` as ``\\Xe9\\`` in a UTF-8 message (a
Latin-1 code point written as if it were the message's bytes) and turns CR/LF into broken
sequences; hl7apy 1.3.5 refuses the volet's own MDM^T02 sample (``PRT`` is a v2.9 segment the
volet pre-adopts in v2.6: ``InvalidName`` even in tolerant mode). What the SDK needs is small:
the four delimiters and the escape character from MSH-1/MSH-2, repetitions, components,
subcomponents, the escape sequences of HL7 v2.6 §2.7 (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``
and ``\\Xhh…\\`` in the message's character set), and a message split into segments on CR.

A field is held as a tuple of repetitions, a repetition as a tuple of components, a
component as a tuple of subcomponents (unescaped text)::

    PID|1||000003^^^CHU-X&000897406&N^PI~279…^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS
    segment.field(3) == ((("000003",), ("",), ("",), ("CHU-X", "000897406", "N"), ("PI",)), (…))

Unknown escape sequences (formatting commands ``\\.br\\``, ``\\H\\`` …) are kept as they came:
they belong to formatted-text fields this SDK does not render, and rewriting them would alter
content.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .errors import Hl7ParseError

__all__ = [
    "CHARSETS",
    "Component",
    "Delimiters",
    "Field",
    "Message",
    "Repetition",
    "Segment",
    "charset_of",
    "decode",
    "parse",
    "rep",
]

Component = tuple[str, ...]
"""A component: its subcomponents, unescaped."""
Repetition = tuple[Component, ...]
"""One repetition of a field: its components."""
Field = tuple[Repetition, ...]
"""A field: its repetitions (empty tuple: the field is empty)."""

CHARSETS = {"UNICODE UTF-8": "utf-8", "8859/15": "iso8859-15", "8859/1": "iso8859-1", "ASCII": "ascii", "": "utf-8"}
"""MSH-18 values read (HL7 table 0211) → Python codec. No MSH-18 means ASCII in HL7; UTF-8 is its superset."""

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True)
class Delimiters:
    """MSH-1 and MSH-2: the field, component, repetition, escape and subcomponent characters."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written."""
        return self.component + self.repetition + self.escape + self.subcomponent

    def escape_text(self, text: str, codec: str) -> str:
        """``text`` with every delimiter and line break written as an escape sequence."""
        esc = self.escape
        out: list[str] = []
        for char in text:
            if char == esc:
                out.append(f"{esc}E{esc}")
            elif char == self.field:
                out.append(f"{esc}F{esc}")
            elif char == self.component:
                out.append(f"{esc}S{esc}")
            elif char == self.subcomponent:
                out.append(f"{esc}T{esc}")
            elif char == self.repetition:
                out.append(f"{esc}R{esc}")
            elif char < " " or char == "\x7f":
                out.append(f"{esc}X{char.encode(codec).hex().upper()}{esc}")
            else:
                out.append(char)
        return "".join(out)

    def unescape_text(self, text: str, codec: str) -> str:
        """The text an escaped value stands for; unknown sequences are kept verbatim."""
        esc = self.escape
        if esc not in text:
            return text
        out: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            end = text.find(esc, i + 1) if char == esc else -1
            if end < 0:
                out.append(char)
                i += 1
                continue
            body = text[i + 1 : end]
            simple = {
                "F": self.field,
                "S": self.component,
                "T": self.subcomponent,
                "R": self.repetition,
                "E": esc,
            }.get(body)
            if simple is not None:
                out.append(simple)
            elif body[:1] == "X" and len(body) > 1 and len(body) % 2 == 1 and _HEX.match(body[1:]):
                try:
                    out.append(bytes.fromhex(body[1:]).decode(codec))
                except UnicodeDecodeError as exc:
                    raise Hl7ParseError(
                        "an \\X\\ escape sequence holds bytes that are not text in the message's character set"
                    ) from exc
            else:
                out.append(text[i : end + 1])
            i = end + 1
        return "".join(out)


_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def rep(*components: str | Sequence[str]) -> Repetition:
    """A repetition from its components: a string, or a sequence of subcomponents."""
    return tuple((c,) if isinstance(c, str) else tuple(c) for c in components)


@dataclass
class Segment:
    """One segment: its name and fields (``fields[0]`` is field 1; MSH-1 and MSH-2 are not held here)."""

    name: str
    fields: list[Field] = field(default_factory=list)

    def field(self, number: int) -> Field:
        """Field ``number`` (1-based), ``()`` when absent or empty."""
        if number < 1 or number > len(self.fields):
            return ()
        return self.fields[number - 1]

    def get(self, number: int, repetition: int = 1, component: int = 1, subcomponent: int = 1) -> str:
        """One value (all positions 1-based), ``""`` when absent."""
        reps = self.field(number)
        if repetition > len(reps):
            return ""
        comps = reps[repetition - 1]
        if component > len(comps):
            return ""
        subs = comps[component - 1]
        return subs[subcomponent - 1] if subcomponent <= len(subs) else ""

    def set(self, number: int, *repetitions: Repetition | str) -> Segment:
        """Set field ``number`` to ``repetitions`` (a string is one component); returns the segment."""
        while len(self.fields) < number:
            self.fields.append(())
        self.fields[number - 1] = tuple(rep(r) if isinstance(r, str) else r for r in repetitions)
        return self


def component_text(comps: Repetition, index: int) -> str:
    """Component ``index`` (1-based) of a repetition, first subcomponent, ``""`` if absent."""
    return comps[index - 1][0] if index <= len(comps) and comps[index - 1] else ""


def sub_text(comps: Repetition, index: int, sub: int) -> str:
    """Subcomponent ``sub`` of component ``index`` (1-based), ``""`` if absent."""
    if index > len(comps) or sub > len(comps[index - 1]):
        return ""
    return comps[index - 1][sub - 1]


@dataclass
class Message:
    """A parsed or built message: its segments in order, its delimiters and character set."""

    segments: list[Segment]
    delimiters: Delimiters = field(default_factory=Delimiters)

    def first(self, name: str) -> Segment | None:
        """The first segment named ``name``."""
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        """Every segment named ``name``, in order."""
        return [s for s in self.segments if s.name == name]

    def require(self, name: str) -> Segment:
        """The first segment named ``name``, or :class:`Hl7ParseError`."""
        found = self.first(name)
        if found is None:
            raise Hl7ParseError(f"the message has no {name} segment")
        return found

    @property
    def msh(self) -> Segment:
        """The MSH segment (MSH-3 is ``msh.field(3)``, as in the standard's numbering)."""
        return self.require("MSH")

    @property
    def charset(self) -> str:
        """MSH-18, as written."""
        return self.msh.get(18)

    def encode(self, *, segment_end: str = "\r") -> str:
        """The ER7 text, segments ended by CR (the standard's segment terminator)."""
        d = self.delimiters
        codec = charset_of(self.charset)
        lines: list[str] = []
        for segment in self.segments:
            values = [_encode_field(f, d, codec) for f in segment.fields]
            if segment.name == "MSH":
                # MSH-1 is the field separator itself and MSH-2 the encoding characters, unescaped.
                lines.append("MSH" + d.field + d.encoding_characters + d.field + d.field.join(values[2:]))
            else:
                lines.append(d.field.join([segment.name, *values]))
        return segment_end.join(lines) + segment_end

    def to_bytes(self) -> bytes:
        """The encoded message in the character set MSH-18 names.

        A value that character set cannot hold raises :class:`Hl7ParseError` naming the segment and
        field, never the value (the codec's own error carries the whole message, an identity).
        """
        codec = charset_of(self.charset)
        try:
            return self.encode().encode(codec)
        except UnicodeEncodeError:
            pass
        where = "a segment"
        d = self.delimiters
        for segment in self.segments:
            for number, value in enumerate(segment.fields, 1):
                try:
                    _encode_field(value, d, codec).encode(codec)
                except UnicodeEncodeError:
                    where = f"{segment.name}-{number}"
                    break
            else:
                continue
            break
        raise Hl7ParseError(
            f"{where} holds a character the message's character set (MSH-18) cannot write",
            hint="send the message in UNICODE UTF-8 (Hl7Settings(charset='UNICODE UTF-8'))",
        ) from None


def _encode_field(value: Field, d: Delimiters, codec: str) -> str:
    return d.repetition.join(
        _strip(
            d.component.join(
                _strip(d.subcomponent.join(d.escape_text(s, codec) for s in comp), d.subcomponent)
                for comp in repetition
            ),
            d.component,
        )
        for repetition in value
    )


def _strip(text: str, separator: str) -> str:
    """Trailing empty components/subcomponents are not written (the receiver reads them as empty)."""
    return text.rstrip(separator)


def charset_of(msh18: str) -> str:
    """The Python codec for an MSH-18 value, or :class:`Hl7ParseError` for one this SDK does not read."""
    codec = CHARSETS.get(msh18.strip().upper() if msh18 else "")
    if codec is None:
        raise Hl7ParseError("MSH-18 names a character set this SDK does not read (UNICODE UTF-8, 8859/15, 8859/1)")
    return codec


def decode(data: bytes, *, max_bytes: int) -> Message:
    """Parse a message from bytes, in the character set its own MSH-18 names."""
    if len(data) > max_bytes:
        raise Hl7ParseError(f"the message is larger than {max_bytes} bytes")
    # MSH-18 is ASCII in every character set read here: find it before decoding the rest.
    head = data.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not head.startswith(b"MSH") or len(head) < 8:
        raise Hl7ParseError("an HL7 v2 message starts with an MSH segment")
    separator = head[3:4]
    parts = head.split(separator)
    msh18 = parts[17].decode("ascii", "replace") if len(parts) > 17 else ""
    codec = charset_of(msh18.split(chr(head[4]))[0] if len(head) > 4 else msh18)
    try:
        text: str | None = data.decode(codec)
    except UnicodeDecodeError:
        text = None
    if text is None:
        # Raised outside the handler: the codec's error holds the whole message (an identity) in its
        # .object, and neither __cause__ nor __context__ may carry it.
        raise Hl7ParseError("the message's bytes are not in the character set its MSH-18 names")
    return parse(text)


def parse(text: str) -> Message:
    """Parse ER7 text; segments may end with CR, LF or CRLF (files on disk often use LF).

    The delimiters come from MSH-1/MSH-2; every value is unescaped in the character set MSH-18 names.
    """
    text = text.lstrip("\ufeff")
    if not text.startswith("MSH") or len(text) < 8:
        raise Hl7ParseError("an HL7 v2 message starts with an MSH segment")
    sep = text[3]
    encoding = text[4:8]
    chars = encoding + sep
    if len(set(chars)) != 5 or any(c.isalnum() or c in "\r\n" for c in chars):
        raise Hl7ParseError("MSH-1/MSH-2 do not define five distinct delimiters")
    d = Delimiters(
        field=sep, component=encoding[0], repetition=encoding[1], escape=encoding[2], subcomponent=encoding[3]
    )
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    raw_segments = [line.split(sep) for line in lines]
    msh = raw_segments[0]
    msh18 = msh[17] if len(msh) > 17 else ""
    codec = charset_of(msh18.split(d.component)[0])
    segments: list[Segment] = []
    for index, raw in enumerate(raw_segments):
        name = raw[0]
        if not _SEGMENT_NAME.match(name):
            raise Hl7ParseError(f"segment {index + 1} does not start with a three-character segment name")
        if index == 0:
            values: list[Field] = [(((sep,),),), (((encoding,),),)]
            values += [_decode_field(v, d, codec) for v in raw[2:]]
        else:
            if name == "MSH":
                raise Hl7ParseError("a second MSH segment: one message at a time (batches are not read)")
            values = [_decode_field(v, d, codec) for v in raw[1:]]
        segments.append(Segment(name=name, fields=values))
    return Message(segments=segments, delimiters=d)


def _decode_field(raw: str, d: Delimiters, codec: str) -> Field:
    if raw == "":
        return ()
    return tuple(
        tuple(tuple(d.unescape_text(s, codec) for s in comp.split(d.subcomponent)) for comp in r.split(d.component))
        for r in raw.split(d.repetition)
    )


def iter_values(segment: Segment) -> Iterator[str]:
    """Every subcomponent value of a segment (for checks that no identity slipped in)."""
    for value in segment.fields:
        for repetition in value:
            for comp in repetition:
                yield from comp
