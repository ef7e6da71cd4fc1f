"""The XDS.b metadata model: document entries, submission sets, folders and associations.

One typed model for what the DMP client deposits and reads back, what the sandbox stores, and
what MSSanté's XDM packages carry. It says nothing about XML: :mod:`dmp_connector.xds.ebrim`
writes and reads it as ebRIM 3.0.

Two levels of checks, because the same model holds what we build and what others send:

* the **shape** of every value is checked when a model is made (a CX, an XCN, an XDS time, a
  hash), by pydantic: a bad value raises pydantic's ``ValidationError`` naming the field;
* the **rules** of a submission (mandatory attributes, one patient, OIDs, associations that
  point somewhere) are checked by :class:`SubmissionRequest` when you make one, and listed in
  one :class:`~dmp_connector.errors.ValidationError` whose ``problems`` name each rule broken.
  What the parser reads from the wire is not refused for breaking those rules (a registry
  answer is what it is); :meth:`SubmissionRequest.problems` lists them on demand.
  :meth:`SubmissionRequest.check` adds the DMP's own rules (``MetadataProfile.DMP``).

Problem messages name entries by their id and attribute, never by a value: a patient id or a
title is health data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final, Protocol, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError

from .vocabulary import (
    AssociationType,
    AvailabilityStatus,
    DocumentEntryType,
    SubmissionSetStatus,
)

__all__ = [
    "RECEIVED",
    "SUBMISSION_SET_ID",
    "AnyCode",
    "Association",
    "AssociationValues",
    "Author",
    "Classification",
    "Cx",
    "DocumentEntry",
    "Folder",
    "ForeignCode",
    "MetadataProfile",
    "ObjectRef",
    "SignatureEntryValues",
    "Slot",
    "SubmissionRequest",
    "SubmissionSet",
    "TextAttributes",
    "TimePrecision",
    "Xcn",
    "XdsTime",
    "Xon",
    "coded_value",
    "content_problems",
    "is_oid",
    "new_entry_uuid",
    "symbolic_id",
    "xds_code",
]

_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

SUBMISSION_SET_ID: Final = "SubmissionSet01"
"""The symbolic id of the submission set in a deposit, as the DMP implementations write it."""

RECEIVED: Final[Mapping[str, bool]] = MappingProxyType({"received": True})
"""Validation context for metadata read from the wire: its shape is checked, not the submission rules."""

_OID_RE: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_UUID_URN_RE: Final = re.compile(
    r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_HL7_SEPARATORS: Final = frozenset("^&~\\|")
_HL7_SEPARATOR: Final = re.compile(r"[\^&~\\|]")
_SPACE: Final = re.compile(r"\s")  # the characters str.isspace() names
_MAX_OID: Final = 64
_LONG_NAME: Final = 256  # rim:LongName: slot values, nodeRepresentation, external identifier values
_FREE_FORM: Final = 1024  # rim:FreeFormText: LocalizedString values (title, comments, display names)


def is_oid(value: str, *, max_length: int = _MAX_OID) -> bool:
    """True for a dotted OID (no leading zero in an arc) of at most ``max_length`` characters."""
    return len(value) <= max_length and _OID_RE.match(value) is not None


def new_entry_uuid() -> str:
    """A fresh ``urn:uuid:`` entryUUID, for an entry that must keep its id in the registry."""
    return f"urn:uuid:{uuid.uuid4()}"


def symbolic_id(kind: str, number: int) -> str:
    """A symbolic id, ``symbolic_id("Document", 1) == "Document01"``: the registry gives it a UUID.

    Symbolic ids make a retried deposit send the same metadata bytes and cannot collide with an
    entry already in the registry, which is why deposits use them.
    """
    if not kind.isidentifier() or number < 0:
        raise ValidationError("a symbolic id is a name (letters, digits, _) and a non-negative number")
    return f"{kind}{number:02d}"


def _xml_chars(value: str) -> str:
    if value.isascii() and value.isprintable():  # U+0020 to U+007E only: all XML characters, no search needed
        return value
    if _NOT_XML_CHAR.search(value):
        raise ValueError("holds a character XML 1.0 cannot carry (a control character or a lone surrogate)")
    return value


def _hl7_component(value: str) -> str:
    _xml_chars(value)
    # A regex search, not a Python loop per character: this runs for every component read.
    if _HL7_SEPARATOR.search(value):
        raise ValueError("holds an HL7 separator (^ & ~ \\ |), which an XDS value cannot escape")
    return value


def _entry_id(value: str) -> str:
    if value.isascii() and value.isalnum():  # a symbolic id (Document01): not empty, no space, no urn:uuid: prefix
        return value
    _xml_chars(value)
    if not value or _SPACE.search(value):
        raise ValueError("an entry id is a non-empty string without spaces (a symbolic id or a urn:uuid:)")
    if value.lower().startswith("urn:uuid:") and not _UUID_URN_RE.match(value):
        raise ValueError("an id that starts with urn:uuid: must be a UUID")
    return value


def _urn(value: str) -> str:
    _xml_chars(value)
    if not value or _SPACE.search(value):
        raise ValueError("is not a URN: empty or with spaces")
    return value


Text = Annotated[str, AfterValidator(_xml_chars)]
"""Free text that XML can carry (no control characters)."""
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_xml_chars)]
"""Non-empty free text; the length is checked by pydantic's core, before the Python check of the characters."""
Component = Annotated[str, Field(min_length=1), AfterValidator(_hl7_component)]
"""One HL7 v2 component: non-empty, without separators."""
EntryId = Annotated[str, AfterValidator(_entry_id)]
"""An entry's id: symbolic (``Document01``) in a submission, ``urn:uuid:…`` in the registry."""


def _known(enum_type: type[StrEnum]) -> BeforeValidator:
    """Turn a known value into its enum member and keep any other string as it came."""

    def convert(value: object) -> object:
        if isinstance(value, str) and not isinstance(value, enum_type):
            try:
                return enum_type(value)
            except ValueError:
                return value
        return value

    return BeforeValidator(convert)


Status = Annotated[AvailabilityStatus | str, _known(AvailabilityStatus), AfterValidator(_xml_chars)]
"""An availability status: an :class:`AvailabilityStatus` member, or a URN this SDK does not know."""


# --------------------------------------------------------------------------------------------
# Time


class TimePrecision(IntEnum):
    """How many digits an XDS time carries: ``YYYY[MM[DD[hh[mm[ss]]]]]``."""

    YEAR = 4
    MONTH = 6
    DAY = 8
    HOUR = 10
    MINUTE = 12
    SECOND = 14


_SECOND: Final = TimePrecision.SECOND
_SECOND_DIGITS: Final = int(TimePrecision.SECOND)
_DTM_RE: Final = re.compile(r"^[0-9]{4}(?:[0-9]{2}){0,5}$")


class XdsTime(BaseModel):
    """An XDS time (HL7 DTM in UTC): a moment and the precision it was given with.

    XDS times carry no time zone: they are UTC, truncated to 4 to 14 digits
    (``20051224`` is a day, ``200412230800`` a minute). The precision is kept so that a
    time read as a day is written back as a day. Build one from an aware ``datetime``
    (``XdsTime.of(moment)``, seconds), a ``date`` (day precision) or the text itself
    (``XdsTime.parse("20051224")``)::

        XdsTime.of(datetime(2025, 1, 2, 4, 5, 6, tzinfo=ZoneInfo("Europe/Paris"))).text == "20250102030506"
    """

    model_config = _FROZEN

    moment: dt.datetime
    """The start of the interval the value names, in UTC (a day precision time is that day at 00:00)."""
    precision: TimePrecision = TimePrecision.SECOND
    """Number of digits written."""

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, str):
            return _parse_dtm(data)
        if isinstance(data, dt.datetime):
            data = {"moment": data}
        elif isinstance(data, dt.date):
            return {"moment": dt.datetime(data.year, data.month, data.day, tzinfo=dt.UTC), "precision": 8}
        if isinstance(data, dict) and isinstance(data.get("moment"), dt.datetime):
            moment: dt.datetime = data["moment"]
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError("an XDS time needs a timezone-aware datetime (XDS times are UTC)")
            given = data.get("precision", _SECOND)
            # A member is its own TimePrecision(int(…)): no enum lookup for the usual call (XdsTime.of).
            precision = given if type(given) is TimePrecision else TimePrecision(int(given))
            data = {**data, "moment": _truncate(moment.astimezone(dt.UTC), precision), "precision": precision}
        return data

    @classmethod
    def of(cls, moment: dt.datetime, precision: TimePrecision = TimePrecision.SECOND) -> XdsTime:
        """The time of an aware ``datetime``, truncated to ``precision``."""
        return cls(moment=moment, precision=precision)

    @classmethod
    def parse(cls, text: str) -> XdsTime:
        """Read ``YYYY[MM[DD[hh[mm[ss]]]]]``; anything else is refused."""
        return cls.model_validate(text)

    @classmethod
    def now(cls) -> XdsTime:
        """The current time to the second (a submissionTime, say)."""
        return cls(moment=dt.datetime.now(dt.UTC))

    @property
    def text(self) -> str:
        """The wire form, e.g. ``20250102030506``."""
        m = self.moment
        year = m.year
        if year >= 1000:  # fourteen digits as one integer written in C: a third of the formatting's cost (issue 22)
            full = str(((((year * 100 + m.month) * 100 + m.day) * 100 + m.hour) * 100 + m.minute) * 100 + m.second)
        else:
            full = f"{year:04d}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}"
        return full[: self.precision]

    def __str__(self) -> str:
        return self.text


def _parse_dtm(text: str) -> dict[str, object]:
    if not _DTM_RE.match(text):
        raise ValueError("is not an XDS time: YYYY[MM[DD[hh[mm[ss]]]]] in UTC, 4 to 14 digits, no time zone")
    digits = [int(text[i : i + 2]) for i in range(4, len(text), 2)]
    parts = [int(text[:4]), *digits]
    defaults = [1, 1, 1, 0, 0, 0]
    year, month, day, hour, minute, second = parts + defaults[len(parts) :]
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        raise ValueError("is not an XDS time: a field is out of range (month 13, day 32 …)") from None
    return {"moment": moment, "precision": TimePrecision(len(text))}


def _truncate(moment: dt.datetime, precision: TimePrecision) -> dt.datetime:
    moment = moment.replace(microsecond=0)
    if precision >= _SECOND_DIGITS:  # to the second, the usual precision: nothing more to cut
        return moment
    if precision < TimePrecision.SECOND:
        moment = moment.replace(second=0)
    if precision < TimePrecision.MINUTE:
        moment = moment.replace(minute=0)
    if precision < TimePrecision.HOUR:
        moment = moment.replace(hour=0)
    if precision < TimePrecision.DAY:
        moment = moment.replace(day=1)
    if precision < TimePrecision.MONTH:
        moment = moment.replace(month=1)
    return moment


# --------------------------------------------------------------------------------------------
# HL7 v2 data types carried in XDS values


def _components(text: str, count: int, what: str) -> list[str]:
    """Split ``text`` on ``^`` into ``count`` components; trailing empty components may be left out."""
    if not isinstance(text, str):
        raise TypeError(f"{what} is read from a string")
    parts = text.split("^")
    if len(parts) > count and any(parts[count:]):
        raise ValueError(f"is not an XDS {what}: more than {count} components")
    parts = parts[:count]
    return parts + [""] * (count - len(parts))


def _parse_hd(text: str, what: str) -> str | None:
    """An HL7 HD as XDS allows it, ``&<OID>&ISO``: the universal id, or None when empty."""
    if not text:
        return None
    sub = text.split("&")
    if len(sub) != 3 or sub[0] or sub[2] != "ISO" or not sub[1]:
        raise ValueError(f"is not an XDS {what}: the assigning authority must be &<OID>&ISO")
    return sub[1]


def _format(components: Sequence[str | None]) -> str:
    """The components joined by ``^``, the empty ones (None or "") at the end left out."""
    values = ["" if c is None else c for c in components]
    while values and not values[-1]:
        values.pop()
    return "^".join(values)


def _joined(values: tuple[str, ...]) -> str:
    """:func:`_format` of components already written as strings ("" for an absent one), in C loops.

    When no component holds a ``^`` (a validated one never does: ``^`` is an HL7 separator), the
    ``^`` at the end of the joined text are the separators of the empty components at the end,
    which ``rstrip`` takes off; otherwise :func:`_format` decides.
    """
    text = "^".join(values)
    if text.count("^") == len(values) - 1:
        return text.rstrip("^")
    return _format(values)


def _hd(universal_id: str | None) -> str | None:
    return None if universal_id is None else f"&{universal_id}&ISO"


def _empty(parts: Sequence[str], positions: Sequence[int], what: str) -> None:
    for position in positions:
        if parts[position - 1]:
            raise ValueError(f"is not an XDS {what}: component {position} must be empty")


_Parsed = TypeVar("_Parsed", bound=BaseModel)
_KEPT_PARSES: Final = 64
_PARSES: dict[tuple[type[BaseModel], str], BaseModel] = {}
_PARSES_LOCK: Final = threading.Lock()
_IDNAT_PS_HD: Final = "&1.2.250.1.71.4.2.1&ISO"
"""The assigning authority of an XCN that :meth:`Xcn.parse` keeps: a professional's national id, never a patient's."""


def _parse_kept(cls: type[_Parsed], text: str) -> _Parsed:
    """``cls.model_validate(text)``, the value kept for the same text of the same class (issue 22).

    A deposit reads its author and legal authenticator (often the same person, the same at every deposit of
    a practice) and its institution from their XCN and XON texts: the value is frozen, so the one read for a
    text is the value of every later read of that text. Only ``str`` texts are kept, the
    :data:`_KEPT_PARSES` last ones (the oldest goes first); a text that is refused raises each time, as it did.
    """
    if type(text) is not str:
        return cls.model_validate(text)
    key = (cls, text)
    kept = _PARSES.get(key)
    if kept is not None:
        return kept  # type: ignore[return-value]  # stored under its own class just below
    value = cls.model_validate(text)
    with _PARSES_LOCK:
        while len(_PARSES) >= _KEPT_PARSES:
            del _PARSES[next(iter(_PARSES))]
        _PARSES[key] = value
    return value


class Cx(BaseModel):
    """A patient identifier in HL7 CX form, ``<id>^^^&<OID>&ISO[^<type>]``.

    XDS allows only the id, the assigning authority (an OID) and, as the French rules add, the
    identifier type: ``NH`` for the INS, ``PI`` for a local IPP::

        Cx.parse("248092327650415^^^&1.2.250.1.213.1.4.8&ISO^NH").id_type == "NH"
    """

    model_config = _FROZEN

    id: Component
    """The identifier (the INS matricule, an IPP …)."""
    assigning_authority: Component
    """OID of the authority that issued it (``1.2.250.1.213.1.4.8`` for the production INS-NIR)."""
    id_type: Component | None = None
    """HL7 identifier type code (component 5): ``NH`` for the INS."""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        parts = _components(data, 5, "CX")
        _empty(parts, (2, 3), "CX")
        authority = _parse_hd(parts[3], "CX")
        if authority is None:
            raise ValueError("is not an XDS CX: the assigning authority (component 4) is missing")
        return {"id": parts[0], "assigning_authority": authority, "id_type": parts[4] or None}

    @classmethod
    def parse(cls, text: str) -> Cx:
        """Read a CX string."""
        return cls.model_validate(text)

    @classmethod
    def ins(cls, matricule: str, oid: str) -> Cx:
        """The CX of an INS: ``<matricule>^^^&<oid>&ISO^NH`` (the OID says NIR or NIA, production or test)."""
        return cls(id=matricule, assigning_authority=oid, id_type="NH")

    @property
    def text(self) -> str:
        """The wire form."""
        authority, id_type = self.assigning_authority, self.id_type
        if authority is None or self.id is None:  # only a model_construct'ed CX: the general form
            return _format([self.id, None, None, _hd(authority), id_type])
        # _format's result when component 4 is there (never empty): nothing before it is dropped.
        text = f"{self.id}^^^&{authority}&ISO"
        return f"{text}^{id_type}" if id_type else text

    def __str__(self) -> str:
        return self.text


class Xcn(BaseModel):
    """A person in HL7 XCN form, as XDS carries an author or a legal authenticator.

    The French rules write a health professional as
    ``<IdNat_PS>^<NOM>^<Prénom>^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS``
    (:meth:`national_professional`). Components 8, 11, 12 and beyond 13 are not used by XDS
    and are refused when they are not empty.
    """

    model_config = _FROZEN

    id: Component | None = None
    """Component 1, the person's identifier (IdNat_PS: ``8`` + RPPS …)."""
    family_name: Component | None = None
    """Component 2."""
    given_name: Component | None = None
    """Component 3."""
    further_given_names: Component | None = None
    """Component 4."""
    suffix: Component | None = None
    """Component 5."""
    prefix: Component | None = None
    """Component 6 (``Dr``, ``Pr`` …)."""
    degree: Component | None = None
    """Component 7."""
    assigning_authority: Component | None = None
    """Component 9 as an OID (written ``&<OID>&ISO``): who issued :attr:`id`."""
    name_type_code: Component | None = None
    """Component 10 (``D`` for the French professional form)."""
    identifier_type_code: Component | None = None
    """Component 13 (``IDNPS`` for a national professional id)."""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        parts = _components(data, 13, "XCN")
        _empty(parts, (8, 11, 12), "XCN")
        names = (
            "id",
            "family_name",
            "given_name",
            "further_given_names",
            "suffix",
            "prefix",
            "degree",
        )
        values: dict[str, object] = {name: parts[i] or None for i, name in enumerate(names)}
        values["assigning_authority"] = _parse_hd(parts[8], "XCN")
        values["name_type_code"] = parts[9] or None
        values["identifier_type_code"] = parts[12] or None
        return values

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if self.id is None and self.family_name is None and self.given_name is None:
            raise ValueError("an XCN needs an identifier or a name")
        return self

    @classmethod
    def parse(cls, text: str) -> Xcn:
        """Read an XCN string; a professional's (IdNat_PS) value is kept for the same text (:func:`_parse_kept`).

        Only a professional's: an author may be the patient, whose INS and names no process-wide memo may hold.
        """
        if type(text) is str and text.split("^", 9)[8:9] == [_IDNAT_PS_HD]:
            return _parse_kept(cls, text)
        return cls.model_validate(text)

    @classmethod
    def national_professional(cls, national_id: str, family_name: str, given_name: str) -> Xcn:
        """A professional as the DMP wants it: IdNat_PS, names, ``&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS``."""
        return cls(
            id=national_id,
            family_name=family_name,
            given_name=given_name,
            assigning_authority="1.2.250.1.71.4.2.1",
            name_type_code="D",
            identifier_type_code="IDNPS",
        )

    @property
    def text(self) -> str:
        """The wire form."""
        authority = self.assigning_authority
        return _joined(
            (
                self.id or "",
                self.family_name or "",
                self.given_name or "",
                self.further_given_names or "",
                self.suffix or "",
                self.prefix or "",
                self.degree or "",
                "",
                "" if authority is None else f"&{authority}&ISO",
                self.name_type_code or "",
                "",
                "",
                self.identifier_type_code or "",
            )
        )

    def __str__(self) -> str:
        return self.text


class Xon(BaseModel):
    """An organisation in HL7 XON form, as XDS carries an author's institution.

    French form: ``<name>^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^<IdNat_Struct>``
    (:meth:`national_structure`). In indirect mode the submission set's institution must be
    the VIHF's ``Identifiant_Structure``, or the DMP refuses the deposit.
    """

    model_config = _FROZEN

    organization_name: Component
    """Component 1, the name."""
    assigning_authority: Component | None = None
    """Component 6 as an OID (written ``&<OID>&ISO``)."""
    identifier_type_code: Component | None = None
    """Component 7 (``IDNST`` for a national structure id)."""
    organization_identifier: Component | None = None
    """Component 10, the organisation's id (IdNat_Struct: ``1`` + FINESS, ``3`` + SIRET …)."""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        parts = _components(data, 10, "XON")
        _empty(parts, (2, 3, 4, 5, 8, 9), "XON")
        return {
            "organization_name": parts[0],
            "assigning_authority": _parse_hd(parts[5], "XON"),
            "identifier_type_code": parts[6] or None,
            "organization_identifier": parts[9] or None,
        }

    @classmethod
    def parse(cls, text: str) -> Xon:
        """Read an XON string (the value read for the same text is kept: :func:`_parse_kept`)."""
        return _parse_kept(cls, text)

    @classmethod
    def national_structure(cls, name: str, national_id: str) -> Xon:
        """An organisation as the DMP wants it: name, ``&1.2.250.1.71.4.2.2&ISO^IDNST``, IdNat_Struct."""
        return cls(
            organization_name=name,
            assigning_authority="1.2.250.1.71.4.2.2",
            identifier_type_code="IDNST",
            organization_identifier=national_id,
        )

    @property
    def text(self) -> str:
        """The wire form."""
        authority = self.assigning_authority
        return _joined(
            (
                self.organization_name or "",
                "",
                "",
                "",
                "",
                "" if authority is None else f"&{authority}&ISO",
                self.identifier_type_code or "",
                "",
                "",
                self.organization_identifier or "",
            )
        )

    def __str__(self) -> str:
        return self.text


def coded_value(code: Code) -> str:
    """A code as an authorRole/authorSpecialty value, ``<code>^<display>^<system>``.

    The French rules write a specialty so: ``G15_10/SM26^Médecine générale^1.2.250.1.213.1.1.4.5``.
    """
    for part in (code.code, code.display_name, code.code_system):
        if part and any(char in _HL7_SEPARATORS for char in part):
            raise ValidationError("a code written as an XDS value cannot hold an HL7 separator (^ & ~ \\ |)")
    return f"{code.code}^{code.display_name or ''}^{code.code_system}"


# --------------------------------------------------------------------------------------------
# Codes, authors, slots


class ForeignCode(BaseModel):
    """A code whose coding scheme is a name, not an OID: kept as another registry sent it.

    :class:`~dmp_connector.codes.Code` holds an OID (or the symbolic ``URN``/``ASTM``); IHE test
    data and some affinity domains name their schemes instead (``LOINC``, ``Connect-a-thon
    classCodes``). The parser keeps such a code as a ``ForeignCode`` rather than refusing the
    whole answer; the DMP profile refuses it in what you send (:class:`MetadataProfile`).
    """

    model_config = _FROZEN

    code: NonEmptyText
    """The code itself (``nodeRepresentation``)."""
    code_system: NonEmptyText
    """The ``codingScheme`` slot, as sent."""
    display_name: Text | None = None
    """The classification's ``Name``."""


AnyCode = Code | ForeignCode
"""A code as XDS metadata holds it: with an OID scheme (:class:`Code`) or a named one (:class:`ForeignCode`)."""


def xds_code(code: str, code_system: str, display_name: str | None = None) -> AnyCode:
    """A :class:`Code` when ``code_system`` is an OID (or ``URN``/``ASTM``), else a :class:`ForeignCode`."""
    if code_system in ("URN", "ASTM") or _OID_RE.match(code_system):
        return Code(code=code, code_system=code_system, display_name=display_name)
    return ForeignCode(code=code, code_system=code_system, display_name=display_name)


class Slot(BaseModel):
    """A ``rim:Slot`` this model has no field for, kept so that nothing read is lost."""

    model_config = _FROZEN

    name: NonEmptyText
    """The slot's name."""
    values: tuple[Text, ...] = ()
    """Its values, in order."""


class Author(BaseModel):
    """One ``author`` classification: a person, their institutions, roles and specialties.

    Roles and specialties are kept as the strings XDS carries (the DMP writes a specialty as
    ``G15_10/SM26^Médecine générale^1.2.250.1.213.1.1.4.5``: :func:`coded_value` makes one).
    """

    model_config = _FROZEN

    person: Xcn | None = None
    """``authorPerson`` (at most one)."""
    institutions: tuple[Xon, ...] = ()
    """``authorInstitution`` values."""
    roles: tuple[NonEmptyText, ...] = ()
    """``authorRole`` values (the CDA ``functionCode/@displayName`` for the DMP)."""
    specialties: tuple[NonEmptyText, ...] = ()
    """``authorSpecialty`` values."""
    telecommunications: tuple[NonEmptyText, ...] = ()
    """``authorTelecommunication`` values (XTN, e.g. ``^^Internet^jean.dupont@medecin.mssante.fr``)."""
    extra_slots: tuple[Slot, ...] = ()
    """Slots of the author classification outside TF-3's five (a misspelt ``authorSpeciality`` …), kept as read."""


class TextAttributes(BaseModel):
    """``xml:lang`` and ``charset`` of one ``rim:LocalizedString``, kept so that the entry is written back as read.

    ``part`` names the string: ``Name`` (title), ``Description`` (comments), or
    ``<classificationScheme>#<n>`` for the display name of the n-th code (from 0) of that scheme.
    """

    model_config = _FROZEN

    part: NonEmptyText
    """Which string of the object."""
    lang: Text | None = None
    """``xml:lang``."""
    charset: Text | None = None
    """``charset``."""


class Classification(BaseModel):
    """A ``rim:Classification`` no field holds (an association's documentation …), kept as read."""

    model_config = _FROZEN

    scheme: Text | None = None
    """``classificationScheme`` (external classification)."""
    node: Text | None = None
    """``classificationNode`` (internal classification)."""
    node_representation: Text | None = None
    """``nodeRepresentation``: the code."""
    slots: tuple[Slot, ...] = ()
    """Its slots (``codingScheme`` …)."""
    name: Text | None = None
    """Its ``Name``: the display name."""
    name_lang: Text | None = None
    """``xml:lang`` of the name."""
    name_charset: Text | None = None
    """``charset`` of the name."""


# --------------------------------------------------------------------------------------------
# Entries


_DOCUMENT_SLOTS: Final = frozenset(
    {
        "creationTime",
        "hash",
        "languageCode",
        "legalAuthenticator",
        "repositoryUniqueId",
        "serviceStartTime",
        "serviceStopTime",
        "size",
        "sourcePatientId",
        "sourcePatientInfo",
        "urn:ihe:iti:xds:2013:referenceIdList",
    }
)
_CODE_FIELDS: Final = (
    "class_code",
    "type_code",
    "format_code",
    "healthcare_facility_type_code",
    "practice_setting_code",
)
"""The single-code attributes of a DocumentEntry, in the order of :meth:`DocumentEntry.codes`."""


_SUBMISSION_SET_SLOTS: Final = frozenset({"submissionTime", "intendedRecipient"})
_FOLDER_SLOTS: Final = frozenset({"lastUpdateTime"})
_ASSOCIATION_SLOTS: Final = frozenset({"SubmissionSetStatus", "PreviousVersion", "OriginalStatus", "NewStatus"})


def _no_modelled_slot(slots: tuple[Slot, ...], modelled: frozenset[str], what: str) -> None:
    if not slots:  # the usual case, on every entry of an answer: nothing to compare
        return
    clashes = sorted({slot.name for slot in slots} & modelled)
    if clashes:
        raise ValueError(f"extra_slots repeats {', '.join(clashes)}, which {what} holds as a field")
    names = [slot.name for slot in slots]
    if len(set(names)) != len(names):
        raise ValueError("extra_slots holds two slots with the same name")


class SignatureEntryValues(Protocol):
    """The entry values of a submission-set signature (what ``sign_submission_set`` returns)."""

    @property
    def unique_id(self) -> str: ...
    @property
    def entry_id(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def language_code(self) -> str: ...
    @property
    def class_code(self) -> Code: ...
    @property
    def type_code(self) -> Code: ...
    @property
    def format_code(self) -> Code: ...
    @property
    def event_codes(self) -> tuple[Code, ...]: ...
    @property
    def confidentiality_codes(self) -> tuple[Code, ...]: ...
    @property
    def size(self) -> int: ...
    @property
    def sha1(self) -> str: ...
    @property
    def signing_time(self) -> dt.datetime: ...


class DocumentEntry(BaseModel):
    """An XDS DocumentEntry (``rim:ExtrinsicObject``): the metadata of one document.

    Only the attributes every entry has are required here; what a *submission* must also carry
    (class, type, format, confidentiality, creation time …) is checked by
    :class:`SubmissionRequest`, because a registry may answer with less.
    """

    model_config = _FROZEN

    entry_uuid: EntryId
    """entryUUID: ``Document01`` in a deposit (the registry assigns the UUID), ``urn:uuid:…`` in an answer."""
    unique_id: NonEmptyText
    """uniqueId: an OID, or ``<OID>^<extension>`` (for a CDA: ``id/@root`` and ``@extension``)."""
    patient_id: Cx | None = None
    """patientId: the INS in the DMP (``<matricule>^^^&1.2.250.1.213.1.4.8&ISO^NH``).

    A rule, not a shape: a :class:`SubmissionRequest` refuses an entry without one, except under
    :attr:`limited_metadata` (XDR, XDM); the readers read it as it came.
    """
    limited_metadata: bool = False
    """The entry carries the limitedMetadata classification (XDR, XDM: ITI TF-3 §4.3.1, limited metadata)."""
    home: Text | None = None
    """``home``: the homeCommunityId of the community holding the entry (XCA answers)."""
    localized: tuple[TextAttributes, ...] = ()
    """``xml:lang``/``charset`` of its title, comments and code names, when the sender gave them."""
    mime_type: NonEmptyText
    """mimeType: ``text/xml`` for a CDA, ``application/pdf`` …"""
    object_type: DocumentEntryType = DocumentEntryType.STABLE
    """Stable (stored) or on-demand entry."""
    availability_status: Status | None = None
    """Approved, Deprecated (or the DMP's Deleted/Archived): set by the registry, absent in a deposit."""
    logical_id: EntryId | None = None
    """logicalID (``lid``): the entryUUID of the first version; needed for an ITI-57 metadata update."""
    version: Annotated[Text, Field(min_length=1, max_length=16)] | None = None
    """``VersionInfo/@versionName``: the entry's version number, given by the registry."""
    class_code: AnyCode | None = None
    """classCode (JDV_J57 for the DMP, derived from the typeCode)."""
    type_code: AnyCode | None = None
    """typeCode (LOINC, JDV_J07): the CDA ``code``."""
    format_code: AnyCode | None = None
    """formatCode (JDV_J60): ``urn:ihe:iti:xds-sd:pdf:2008`` for a PDF body …"""
    healthcare_facility_type_code: AnyCode | None = None
    """healthcareFacilityTypeCode (JDV_J02)."""
    practice_setting_code: AnyCode | None = None
    """practiceSettingCode (JDV_J04)."""
    confidentiality_codes: tuple[AnyCode, ...] = ()
    """confidentialityCode: the CDA's first, then the DMP visibility codes (MASQUE_PS …)."""
    event_codes: tuple[AnyCode, ...] = ()
    """eventCodeList."""
    authors: tuple[Author, ...] = ()
    """author classifications."""
    legal_authenticator: Xcn | None = None
    """legalAuthenticator."""
    creation_time: XdsTime | None = None
    """creationTime: the CDA ``effectiveTime``."""
    service_start_time: XdsTime | None = None
    """serviceStartTime."""
    service_stop_time: XdsTime | None = None
    """serviceStopTime."""
    language_code: Text | None = None
    """languageCode (``fr-FR``)."""
    hash: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{40}$")] | None = None
    """hash: SHA-1 of the document, hex (XDS.b fixes SHA-1 here)."""
    size: Annotated[int, Field(ge=0)] | None = None
    """size in bytes."""
    title: Text | None = None
    """title (``rim:Name``)."""
    comments: Text | None = None
    """comments (``rim:Description``)."""
    source_patient_id: Cx | None = None
    """sourcePatientId: the producer's local id (IPP), or the INS when there is none."""
    source_patient_info: tuple[NonEmptyText, ...] = ()
    """sourcePatientInfo lines, ``PID-5|DUPONT^Jean^^^^^L``, ``PID-7|19800101``, ``PID-8|M``."""
    repository_unique_id: Text | None = None
    """repositoryUniqueId: set by the repository (the DMP: ``1.2.250.1.213.4.1.1.1.2``); needed to retrieve."""
    reference_ids: tuple[NonEmptyText, ...] = ()
    """referenceIdList (CXi values)."""
    extra_slots: tuple[Slot, ...] = ()
    """Slots this model has no field for (``URI``, ``documentAvailability`` …), kept as read."""

    @model_validator(mode="after")
    def _extras(self) -> Self:
        _no_modelled_slot(self.extra_slots, _DOCUMENT_SLOTS, "a DocumentEntry")
        return self

    @classmethod
    def for_signature(
        cls,
        signature: SignatureEntryValues,
        *,
        patient_id: Cx,
        healthcare_facility_type_code: AnyCode,
        practice_setting_code: AnyCode,
        source_patient_id: Cx | None = None,
        legal_authenticator: Xcn | None = None,
        authors: Sequence[Author] = (),
        source_patient_info: Sequence[str] = (),
    ) -> DocumentEntry:
        """The entry of the submission-set signature document, from ``sign_submission_set``'s values.

        The DMP wants the signature's healthcareFacilityType and practiceSetting copied from the
        CDA, its legalAuthenticator set to the submission set's author, and its creation and
        service times set to when it was signed; the other values come with the signature.
        """
        when = XdsTime.of(signature.signing_time)
        return cls(
            entry_uuid=signature.entry_id,
            unique_id=signature.unique_id,
            patient_id=patient_id,
            source_patient_id=source_patient_id or patient_id,
            source_patient_info=tuple(source_patient_info),
            mime_type=signature.mime_type,
            title=signature.title,
            language_code=signature.language_code,
            class_code=signature.class_code,
            type_code=signature.type_code,
            format_code=signature.format_code,
            event_codes=tuple(signature.event_codes),
            confidentiality_codes=tuple(signature.confidentiality_codes),
            healthcare_facility_type_code=healthcare_facility_type_code,
            practice_setting_code=practice_setting_code,
            legal_authenticator=legal_authenticator,
            authors=tuple(authors),
            creation_time=when,
            service_start_time=when,
            service_stop_time=when,
            hash=signature.sha1,
            size=signature.size,
        )

    def codes(self) -> Iterator[tuple[str, AnyCode]]:
        """Every code of the entry with the attribute it sits in (for checks and filters)."""
        for name in _CODE_FIELDS:
            code = getattr(self, name)
            if code is not None:
                yield name, code
        for code in self.confidentiality_codes:
            yield "confidentiality_codes", code
        for code in self.event_codes:
            yield "event_codes", code


class SubmissionSet(BaseModel):
    """An XDS SubmissionSet (``rim:RegistryPackage``): who sent what, when, for which patient."""

    model_config = _FROZEN

    entry_uuid: EntryId = SUBMISSION_SET_ID
    """entryUUID: ``SubmissionSet01`` in a deposit, ``urn:uuid:…`` in an answer."""
    unique_id: NonEmptyText
    """uniqueId: an OID made once per logical deposit and reused on every retry."""
    source_id: NonEmptyText
    """sourceId: the sending system's root OID."""
    patient_id: Cx | None = None
    """patientId: the same as every entry's (required by the rules, as in :class:`DocumentEntry`)."""
    limited_metadata: bool = False
    """The submission set carries the limitedMetadata classification (XDR, XDM)."""
    logical_id: EntryId | None = None
    """``lid``, when the sender gave one."""
    home: Text | None = None
    """``home``: homeCommunityId."""
    localized: tuple[TextAttributes, ...] = ()
    """``xml:lang``/``charset`` of its title, comments and code names."""
    submission_time: XdsTime
    """submissionTime."""
    content_type_code: AnyCode | None = None
    """contentTypeCode (JDV_J59 for the DMP: ``07`` consultation …); required in a submission."""
    authors: tuple[Author, ...] = ()
    """author classifications: the DMP requires an authorPerson (the person or system sending)."""
    title: Text | None = None
    """title (``rim:Name``)."""
    comments: Text | None = None
    """comments (``rim:Description``)."""
    intended_recipients: tuple[NonEmptyText, ...] = ()
    """intendedRecipient values (``XON|XCN`` or ``|XTN``), as XDM and XDR use them."""
    availability_status: Status | None = None
    """Set by the registry in answers."""
    extra_slots: tuple[Slot, ...] = ()
    """Slots this model has no field for."""

    @model_validator(mode="after")
    def _extras(self) -> Self:
        _no_modelled_slot(self.extra_slots, _SUBMISSION_SET_SLOTS, "a SubmissionSet")
        return self


class Folder(BaseModel):
    """An XDS Folder (``rim:RegistryPackage``): a group of entries of one patient."""

    model_config = _FROZEN

    entry_uuid: EntryId
    """entryUUID: ``Folder01`` in a submission."""
    unique_id: NonEmptyText
    """uniqueId (an OID)."""
    patient_id: Cx
    """patientId."""
    codes: tuple[AnyCode, ...] = ()
    """codeList."""
    title: Text | None = None
    """title."""
    comments: Text | None = None
    """comments."""
    last_update_time: XdsTime | None = None
    """lastUpdateTime, set by the registry."""
    availability_status: Status | None = None
    """Set by the registry in answers."""
    logical_id: EntryId | None = None
    """``lid``: the entryUUID of the folder's first version (ITI-57 folder updates)."""
    home: Text | None = None
    """``home``: homeCommunityId."""
    localized: tuple[TextAttributes, ...] = ()
    """``xml:lang``/``charset`` of its title, comments and code names."""
    extra_slots: tuple[Slot, ...] = ()
    """Slots this model has no field for."""

    @model_validator(mode="after")
    def _extras(self) -> Self:
        _no_modelled_slot(self.extra_slots, _FOLDER_SLOTS, "a Folder")
        return self


class AssociationValues(Protocol):
    """An association as plain values (the signature package's ``Association`` is one)."""

    @property
    def association_type(self) -> str: ...
    @property
    def source_object(self) -> str: ...
    @property
    def target_object(self) -> str: ...
    @property
    def submission_set_status(self) -> str | None: ...


class Association(BaseModel):
    """An XDS Association (``rim:Association``) between two entries.

    ::

        <rim:Association id="Association01" associationType="urn:…:AssociationType:HasMember"
                         sourceObject="SubmissionSet01" targetObject="Document01">
          <rim:Slot name="SubmissionSetStatus"><rim:ValueList><rim:Value>Original</rim:Value>…
    """

    model_config = _FROZEN

    entry_uuid: EntryId
    """The association's id (``Association01`` in a submission)."""
    association_type: Annotated[AssociationType | str, _known(AssociationType), AfterValidator(_urn)]
    """HasMember, RPLC, signs, UpdateAvailabilityStatus …; an unknown type is kept as it came."""
    source_object: EntryId
    """sourceObject: an id in the same submission, or the ``urn:uuid:`` of a registry entry."""
    target_object: EntryId
    """targetObject: likewise."""
    submission_set_status: Annotated[SubmissionSetStatus | str, _known(SubmissionSetStatus)] | None = None
    """``SubmissionSetStatus`` slot of a HasMember from the submission set: ``Original`` in a deposit."""
    previous_version: NonEmptyText | None = None
    """``PreviousVersion`` slot (ITI-57): the version the new entry version replaces."""
    original_status: Status | None = None
    """``OriginalStatus`` slot of an UpdateAvailabilityStatus association."""
    new_status: Status | None = None
    """``NewStatus`` slot of an UpdateAvailabilityStatus association."""
    availability_status: Status | None = None
    """Set by the registry in answers."""
    home: Text | None = None
    """``home``: homeCommunityId."""
    classifications: tuple[Classification, ...] = ()
    """Its classifications (the documentation of an RPLC or XFRM …), kept as read."""
    extra_slots: tuple[Slot, ...] = ()
    """Slots this model has no field for."""

    @model_validator(mode="after")
    def _extras(self) -> Self:
        _no_modelled_slot(self.extra_slots, _ASSOCIATION_SLOTS, "an Association")
        return self

    @classmethod
    def has_member(
        cls, entry_uuid: str, source_object: str, target_object: str, *, previous_version: str | None = None
    ) -> Association:
        """HasMember from a submission set to one of its entries, ``SubmissionSetStatus = Original``."""
        return cls(
            entry_uuid=entry_uuid,
            association_type=AssociationType.HAS_MEMBER,
            source_object=source_object,
            target_object=target_object,
            submission_set_status=SubmissionSetStatus.ORIGINAL,
            previous_version=previous_version,
        )

    @classmethod
    def from_values(cls, values: AssociationValues, *, entry_uuid: str) -> Association:
        """An association from plain values, such as the signature's ``signs`` association."""
        return cls(
            entry_uuid=entry_uuid,
            association_type=values.association_type,
            source_object=values.source_object,
            target_object=values.target_object,
            submission_set_status=values.submission_set_status,
        )


class ObjectRef(BaseModel):
    """A ``rim:ObjectRef``: what a stored query with ``returnType="ObjectRef"`` answers."""

    model_config = _FROZEN

    id: EntryId
    """The entryUUID of the object."""
    home: Text | None = None
    """homeCommunityId, when the registry gives one."""


# --------------------------------------------------------------------------------------------
# The submission


class MetadataProfile(StrEnum):
    """Which rules :meth:`SubmissionRequest.problems` applies."""

    XDS = "xds"
    """IHE XDS.b: mandatory attributes, one patient, OIDs, associations that point somewhere."""
    DMP = "dmp"
    """XDS plus the DMP's rules: OID coding schemes, the INS as patient id, a submission-set authorPerson."""


_INS_AUTHORITIES: Final = frozenset({f"1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11)})
"""INS-NIR, INS-NIA (production), INS-NIR of test and of demonstration (``ins.md``)."""
_MANDATORY_IN_SUBMISSION: Final = (
    ("class_code", "classCode"),
    ("type_code", "typeCode"),
    ("format_code", "formatCode"),
    ("healthcare_facility_type_code", "healthcareFacilityTypeCode"),
    ("practice_setting_code", "practiceSettingCode"),
    ("creation_time", "creationTime"),
    ("language_code", "languageCode"),
    ("source_patient_id", "sourcePatientId"),
)


class SubmissionRequest(BaseModel):
    """Everything one ``lcm:SubmitObjectsRequest`` carries: a submission set, its entries and associations.

    The same object serves a deposit (ITI-41, with :attr:`contents` naming each document's MTOM
    part), a metadata update (ITI-57) and an XDM package. Making one checks the XDS rules and
    raises :class:`~dmp_connector.errors.ValidationError` listing every problem;
    :meth:`build` makes the HasMember associations for you.
    """

    model_config = _FROZEN

    submission_set: SubmissionSet
    """The submission set."""
    documents: tuple[DocumentEntry, ...] = ()
    """The document entries (for a DMP deposit: the documents, then the signature ``Signature01``)."""
    folders: tuple[Folder, ...] = ()
    """Folders, rarely used."""
    associations: tuple[Association, ...] = ()
    """Every association, HasMember included."""
    object_refs: tuple[ObjectRef, ...] = ()
    """``rim:ObjectRef``s: registry objects the submission refers to without carrying them."""
    contents: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    """For ITI-41: document entry id → Content-ID of its MTOM part (the bytes are not held here)."""

    _checked: tuple[Any, ...] | None = PrivateAttr(default=None)
    """What the XDS rules were found to hold for (see :meth:`_unchanged`)."""

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, Mapping) and info.context.get("received"):
            return self
        # pydantic runs an after-validator again whenever a model holding this one is built (a
        # PreparedDeposit): the rules already held for these very values are not walked again.
        if self._unchanged():
            return self
        problems = self.problems()
        if problems:
            raise _invalid(problems, "XDS")
        self._checked = self._fingerprint()
        return self

    def __eq__(self, other: object) -> bool:
        """Equal values are equal submissions, checked or not (the private memo of the check is not a value)."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = BaseModel.__hash__

    def _fingerprint(self) -> tuple[Any, ...]:
        """The field values themselves (frozen; compared by identity), and a copy of ``contents`` (a dict, mutable).

        The values, not their ``id()``: held here, none of them can be freed and its address given to
        another value that a ``model_copy(update=…)`` would then pass off as checked (review, issue 22).
        """
        return (*self.__dict__.values(), tuple(self.contents.items()))

    def _unchanged(self) -> bool:
        """True when the XDS rules were checked on exactly these values (not a ``model_copy(update=…)``).

        The memo is read from ``__pydantic_private__`` (where pydantic keeps it): pydantic's ``__getattr__``
        for a private attribute first asks its default for a ``__get__``, an AttributeError raised and
        caught at every read, three a deposit (issue 22).
        """
        private = self.__pydantic_private__
        checked = None if private is None else private.get("_checked")
        if checked is None:
            return False
        values = self.__dict__.values()
        return (
            len(checked) == len(values) + 1
            and all(kept is value for kept, value in zip(checked, values, strict=False))
            and checked[-1] == tuple(self.contents.items())
        )

    @classmethod
    def build(
        cls,
        submission_set: SubmissionSet,
        documents: Sequence[DocumentEntry],
        *,
        folders: Sequence[Folder] = (),
        associations: Sequence[Association | AssociationValues] = (),
        contents: Mapping[str, str] | None = None,
    ) -> SubmissionRequest:
        """A submission with a HasMember (``Original``) from the submission set to each document and folder.

        ``associations`` are added after them (the signature's ``signs``, an RPLC …); those that
        are not :class:`Association` objects get the next symbolic id (``Association03`` …).
        """
        made: list[Association] = []
        members: list[DocumentEntry | Folder] = [*documents, *folders]
        for entry in members:
            made.append(
                Association.has_member(
                    symbolic_id("Association", len(made) + 1), submission_set.entry_uuid, entry.entry_uuid
                )
            )
        for extra in associations:
            if isinstance(extra, Association):
                made.append(extra)
            else:
                made.append(Association.from_values(extra, entry_uuid=symbolic_id("Association", len(made) + 1)))
        return cls(
            submission_set=submission_set,
            documents=tuple(documents),
            folders=tuple(folders),
            associations=tuple(made),
            contents=dict(contents or {}),
        )

    @classmethod
    def status_update(
        cls,
        submission_set: SubmissionSet,
        entry_uuid: str,
        *,
        original_status: AvailabilityStatus | str,
        new_status: AvailabilityStatus | str,
    ) -> SubmissionRequest:
        """ITI-57 status change of one registry entry (DMP delete or archive, TD3.3c/d).

        One UpdateAvailabilityStatus association from the submission set to the entry's
        ``urn:uuid:``, with the ``OriginalStatus`` and ``NewStatus`` slots.
        """
        association = Association(
            entry_uuid=symbolic_id("Association", 1),
            association_type=AssociationType.UPDATE_AVAILABILITY_STATUS,
            source_object=submission_set.entry_uuid,
            target_object=entry_uuid,
            original_status=original_status,
            new_status=new_status,
        )
        return cls(submission_set=submission_set, associations=(association,))

    @classmethod
    def metadata_update(
        cls, submission_set: SubmissionSet, entry: DocumentEntry, *, previous_version: str
    ) -> SubmissionRequest:
        """ITI-57 metadata update: ``entry`` as a new version of a registry entry (DMP masking, TD3.3a/b).

        ``entry`` carries the complete new metadata, a new id, and the ``logical_id`` of the
        entry it updates; the HasMember association carries ``PreviousVersion``.
        """
        association = Association.has_member(
            symbolic_id("Association", 1),
            submission_set.entry_uuid,
            entry.entry_uuid,
            previous_version=previous_version,
        )
        return cls(submission_set=submission_set, documents=(entry,), associations=(association,))

    # ---------------------------------------------------------------------------- checks

    def problems(self, profile: MetadataProfile = MetadataProfile.XDS) -> list[str]:
        """Every rule this submission breaks, one sentence each (empty when it is valid)."""
        found: list[str] = []
        found += _submission_set_problems(self.submission_set)
        patient = self.submission_set.patient_id
        for document in self.documents:
            found += _document_problems(document, patient)
        for folder in self.folders:
            found += _folder_problems(folder, patient)
        found += self._graph_problems()
        if profile is MetadataProfile.DMP:
            found += self._dmp_problems()
        return found

    def check(self, profile: MetadataProfile = MetadataProfile.DMP) -> Self:
        """Raise :class:`~dmp_connector.errors.ValidationError` listing every problem under ``profile``."""
        if profile is MetadataProfile.DMP and self._unchanged():
            problems = self._dmp_problems()  # the XDS rules held when it was built, for these values
        else:
            problems = self.problems(profile)
        if problems:
            raise _invalid(problems, profile.value.upper())
        return self

    def _graph_problems(self) -> list[str]:
        """The association rules of ITI TF-3 §4.2.2 (and of ITI-57 for updates), one sentence each."""
        found: list[str] = []
        ss_id = self.submission_set.entry_uuid
        documents = {d.entry_uuid: d for d in self.documents}
        folders = {f.entry_uuid: f for f in self.folders}
        association_ids = [a.entry_uuid for a in self.associations]
        counted = [ss_id, *(d.entry_uuid for d in self.documents), *(f.entry_uuid for f in self.folders)]
        counted += association_ids
        if len(set(counted)) != len(counted):
            for repeated in sorted({i for i in counted if counted.count(i) > 1}):
                found.append(f"the id {repeated} is used by more than one object of the submission")
        unique_ids = [self.submission_set.unique_id, *(d.unique_id for d in self.documents)]
        unique_ids += [f.unique_id for f in self.folders]
        if len(set(unique_ids)) != len(unique_ids):
            for repeated in sorted({i for i in unique_ids if unique_ids.count(i) > 1}):
                found.append(f"the uniqueId {repeated} is used by more than one entry of the submission")

        known = set(counted) | {ref.id for ref in self.object_refs}
        members: set[str] = set()
        versions: dict[str, str | None] = {}
        # ITI-57 submits an association between registry entries on its own (SubmitAssociation).
        submitted_alone = {
            a.target_object
            for a in self.associations
            if a.association_type == _SUBMIT_ASSOCIATION and a.source_object == ss_id
        }
        for association in self.associations:
            where = f"association {association.entry_uuid}"
            for end, value in (
                ("sourceObject", association.source_object),
                ("targetObject", association.target_object),
            ):
                if value not in known and not _UUID_URN_RE.match(value):
                    found.append(f"{where}: {end} {value} is neither in the submission nor a urn:uuid: registry entry")
            kind = association.association_type
            if not isinstance(kind, AssociationType):
                found.append(f"{where}: associationType {kind} is not an XDS association type")
                continue
            if kind == _HAS_MEMBER and association.target_object == ss_id:
                found.append(f"{where}: the submission set cannot be a member (HasMember target) of anything")
            if kind == _HAS_MEMBER and association.source_object == ss_id:
                found += self._has_member_problems(association, where, documents, folders, association_ids)
                members.add(association.target_object)
                versions[association.target_object] = association.previous_version
            elif kind == _UPDATE_AVAILABILITY_STATUS:
                found += _status_update_problems(association, where, ss_id)
            elif (
                kind in _DOCUMENT_RELATIONS
                and association.source_object not in documents
                and association.entry_uuid not in submitted_alone
            ):
                found.append(
                    f"{where}: the source of a {_short(kind)} association must be a document of the submission"
                )
            if kind != _HAS_MEMBER and association.submission_set_status is not None:
                found += _submission_set_status_problems(association, where)
            if kind != _HAS_MEMBER and association.previous_version is not None:
                found.append(f"{where}: PreviousVersion belongs on the HasMember of a new version only")
            if association.extra_slots:
                found += _propagation_problems(association, where)
        entries: list[DocumentEntry | Folder] = [*self.documents, *self.folders]
        for entry in entries:
            if entry.entry_uuid not in members:
                found.append(
                    f"entry {entry.entry_uuid} is not a member of the submission set (no HasMember association)"
                )
                continue
            new_version = entry.logical_id is not None and entry.logical_id != entry.entry_uuid
            if new_version and versions.get(entry.entry_uuid) is None:
                found.append(
                    f"entry {entry.entry_uuid}: a new version (logicalId of another entry) needs PreviousVersion"
                    " on its HasMember association"
                )
        lids = [e.logical_id for e in entries if e.logical_id is not None and e.logical_id != e.entry_uuid]
        for repeated in sorted({lid for lid in lids if lids.count(lid) > 1}):
            found.append(f"two entries of the submission are new versions of the same logicalId {repeated}")
        for entry_id in self.contents:
            if entry_id not in documents:
                found.append(f"contents names {entry_id}, which is not a document entry of the submission")
        return found

    def document_problems(self, documents: Mapping[str, bytes | None]) -> list[str]:
        """ITI-41: each entry has its document and each document its entry; hash and size match the bytes.

        ``documents`` maps the ``xdsb:Document`` ids of the request to their bytes (``None`` when
        they are not at hand, e.g. an MTOM part not read): the repository's checks of ITI TF-2b
        §3.41.4.1.3 (XDSMissingDocument, XDSMissingDocumentMetadata, XDSNonIdenticalHash/Size).
        """
        found: list[str] = []
        entries = {d.entry_uuid: d for d in self.documents}
        for entry_id in entries:
            if entry_id not in documents:
                found.append(f"document {entry_id} has no xdsb:Document (XDSMissingDocument)")
        for entry_id, data in documents.items():
            entry = entries.get(entry_id)
            if entry is None:
                found.append(f"the xdsb:Document {entry_id} has no DocumentEntry (XDSMissingDocumentMetadata)")
            elif data is not None:
                found += [f"document {entry_id}: {problem}" for problem in content_problems(entry, data)]
        return found

    def _has_member_problems(
        self,
        association: Association,
        where: str,
        documents: Mapping[str, DocumentEntry],
        folders: Mapping[str, Folder],
        association_ids: Sequence[str],
    ) -> list[str]:
        """A HasMember from the submission set: SubmissionSetStatus for documents, PreviousVersion well formed."""
        found: list[str] = []
        target = association.target_object
        status = association.submission_set_status
        if target in documents and status is None:
            found.append(f"{where}: a HasMember from the submission set to a document needs SubmissionSetStatus")
        if status is not None:
            found += _submission_set_status_problems(association, where)
        previous = association.previous_version
        if previous is not None:
            if not _VERSION_RE.match(previous):
                found.append(f"{where}: PreviousVersion is not a version number (a positive integer)")
            entry = documents.get(target) or folders.get(target)
            if entry is None:
                found.append(f"{where}: PreviousVersion names a new version, which must be an entry of the submission")
            elif entry.logical_id is None:
                found.append(f"entry {target}: a new version (PreviousVersion) needs the logicalId it updates")
        return found

    def _dmp_problems(self) -> list[str]:
        found: list[str] = []
        ss = self.submission_set
        # Each object named only when one of its codes is foreign: the usual submission builds no name.
        if isinstance(ss.content_type_code, ForeignCode):
            found.append("submission set: the coding scheme of content_type_code is not an OID (the DMP wants OIDs)")
        for d in self.documents:
            for attribute, code in d.codes():
                if isinstance(code, ForeignCode):
                    found.append(
                        f"document {d.entry_uuid}: the coding scheme of {attribute} is not an OID (the DMP wants OIDs)"
                    )
        for f in self.folders:
            for code in f.codes:
                if isinstance(code, ForeignCode):
                    found.append(
                        f"folder {f.entry_uuid}: the coding scheme of codes is not an OID (the DMP wants OIDs)"
                    )
        patients: list[tuple[str | DocumentEntry, Cx | None]] = [("submission set", ss.patient_id)]
        patients += [(d, d.patient_id) for d in self.documents]
        for where, patient in patients:
            if patient is None or patient.id_type != "NH" or patient.assigning_authority not in _INS_AUTHORITIES:
                name = where if isinstance(where, str) else f"document {where.entry_uuid}"
                found.append(f"{name}: the patientId must be an INS (^^^&1.2.250.1.213.1.4.8&ISO^NH or a test OID)")
        if not any(author.person is not None for author in ss.authors):
            found.append("submission set: the DMP requires an author with authorPerson (who or what sends)")
        return found


def _invalid(problems: Sequence[str], profile: str) -> ValidationError:
    """One error for every problem; the first three are in the message (they hold ids, never patient data)."""
    shown = "; ".join(problems[:3]) + ("; …" if len(problems) > 3 else "")
    plural = "s" if len(problems) > 1 else ""
    return ValidationError(
        f"the XDS submission breaks {len(problems)} {profile} rule{plural}: {shown}",
        problems=problems,
        hint="each problem names the entry and the attribute to fix; .problems lists them all",
    )


_DOCUMENT_RELATIONS: Final = frozenset(
    {
        AssociationType.REPLACE,
        AssociationType.APPEND,
        AssociationType.TRANSFORM,
        AssociationType.TRANSFORM_AND_REPLACE,
        AssociationType.SIGNS,
    }
)


_HAS_MEMBER: Final = AssociationType.HAS_MEMBER
_SUBMIT_ASSOCIATION: Final = AssociationType.SUBMIT_ASSOCIATION
_UPDATE_AVAILABILITY_STATUS: Final = AssociationType.UPDATE_AVAILABILITY_STATUS
"""Association types the graph rules compare with, read once (an enum member read from its class is a call)."""
_VERSION_RE: Final = re.compile(r"^[1-9][0-9]*$")


def _submission_set_status_problems(association: Association, where: str) -> list[str]:
    status = association.submission_set_status
    if status is not None and not isinstance(status, SubmissionSetStatus):
        return [f"{where}: SubmissionSetStatus {status} is neither Original nor Reference"]
    return []


def _status_update_problems(association: Association, where: str, ss_id: str) -> list[str]:
    """ITI-57 UpdateAvailabilityStatus: from the submission set, two known statuses that differ."""
    found: list[str] = []
    if association.source_object != ss_id:
        found.append(f"{where}: an UpdateAvailabilityStatus association starts at the submission set")
    original, new = association.original_status, association.new_status
    if original is None or new is None:
        found.append(f"{where}: an UpdateAvailabilityStatus association needs OriginalStatus and NewStatus")
    for name, value in (("OriginalStatus", original), ("NewStatus", new)):
        if value is not None and not isinstance(value, AvailabilityStatus):
            found.append(f"{where}: {name} {value} is not an availability status (Approved, Deprecated …)")
    if original is not None and original == new:
        found.append(f"{where}: NewStatus equals OriginalStatus (nothing to update)")
    return found


_PROPAGATION: Final = frozenset({"yes", "no"})


def _propagation_problems(association: Association, where: str) -> list[str]:
    """ITI-57: ``AssociationPropagation`` is ``yes`` or ``no``, one value."""
    for slot in association.extra_slots:
        if slot.name == "AssociationPropagation" and (len(slot.values) != 1 or slot.values[0] not in _PROPAGATION):
            return [f"{where}: AssociationPropagation is neither yes nor no"]
    return []


def content_problems(entry: DocumentEntry, data: bytes) -> list[str]:
    """Where ``data`` contradicts the entry's ``size`` and ``hash`` (SHA-1) slots (empty when it matches)."""
    found: list[str] = []
    if entry.size is not None and entry.size != len(data):
        found.append("size differs from the document's length (XDSNonIdenticalSize)")
    if entry.hash is not None and entry.hash.lower() != hashlib.sha1(data, usedforsecurity=False).hexdigest():
        found.append("hash differs from the SHA-1 of the document (XDSNonIdenticalHash)")
    return found


def _short(kind: str) -> str:
    return kind.rsplit(":", 1)[-1]


def _check_unique_id(value: str, where: str) -> list[str]:
    root, caret, extension = value.partition("^")
    if not is_oid(root) or (caret and not 0 < len(extension) <= 16):
        return [f"{where}: uniqueId {value} is not an OID of at most 64 characters (with an optional ^extension)"]
    return []


def _check_oid(value: str | None, where: str, attribute: str) -> list[str]:
    if value is not None and not is_oid(value):
        return [f"{where}: {attribute} {value} is not an OID of at most 64 characters"]
    return []


def _check_lengths(where: str, values: Iterator[tuple[str, str | None, int]]) -> list[str]:
    return [
        f"{where}: {attribute} is longer than the {limit} characters ebRIM allows"
        for attribute, value, limit in values
        if value is not None and len(value) > limit
    ]


def _code_lengths(name: str, code: AnyCode) -> Iterator[tuple[str, str | None, int]]:
    yield name, code.code, _LONG_NAME
    yield f"{name} coding scheme", code.code_system, _LONG_NAME
    yield f"{name} display name", code.display_name, _FREE_FORM


def _code_length_problems(where: str, name: str, code: AnyCode) -> list[str]:
    """``_check_lengths(where, _code_lengths(name, code))``, without naming the three values when all fit."""
    system, display = code.code_system, code.display_name
    if (
        len(code.code) <= _LONG_NAME
        and (system is None or len(system) <= _LONG_NAME)
        and (display is None or len(display) <= _FREE_FORM)
    ):
        return []
    return _check_lengths(where, _code_lengths(name, code))


def _author_problems(authors: Sequence[Author], where: str) -> list[str]:
    found: list[str] = []
    for index, author in enumerate(authors, 1):
        person, institutions = author.person, author.institutions
        if person is None and not institutions and not author.telecommunications:
            found.append(f"{where}: author {index} has neither authorPerson, authorInstitution nor telecommunication")
        person_text = person.text if person is not None else None
        texts = [x.text for x in institutions]
        if (person_text is None or len(person_text) <= _LONG_NAME) and _longest(
            texts, author.roles, author.specialties, author.telecommunications
        ) <= _LONG_NAME:
            continue  # the usual author: every value fits, no list of them to make
        values: list[tuple[str, str | None, int]] = [("authorPerson", person_text, _LONG_NAME)]
        values += [("authorInstitution", text, _LONG_NAME) for text in texts]
        values += [("authorRole", r, _LONG_NAME) for r in author.roles]
        values += [("authorSpecialty", s, _LONG_NAME) for s in author.specialties]
        values += [("authorTelecommunication", t, _LONG_NAME) for t in author.telecommunications]
        found += _check_lengths(f"{where} author {index}", iter(values))
    return found


def _longest(*groups: Sequence[str]) -> int:
    """The length of the longest string of ``groups`` (0 when there is none): one C loop for the usual all-fit case."""
    return max(map(len, itertools.chain(*groups)), default=0)


def _patient_problems(patient: Cx, where: str, attribute: str = "patientId") -> list[str]:
    authority = patient.assigning_authority
    found = (
        _check_oid(authority, where, f"{attribute} assigning authority")
        if authority is not None and not is_oid(authority)
        else []
    )
    text = patient.text
    if len(text) > _LONG_NAME:
        found += _check_lengths(where, iter([(attribute, text, _LONG_NAME)]))
    return found


def _submission_set_problems(ss: SubmissionSet) -> list[str]:
    where = "submission set"
    found = _check_oid(ss.unique_id, where, "uniqueId") + _check_oid(ss.source_id, where, "sourceId")
    if ss.patient_id is not None:
        found += _patient_problems(ss.patient_id, where)
    elif not ss.limited_metadata:
        found.append(f"{where}: patientId is missing")
    if ss.content_type_code is None and not ss.limited_metadata:
        found.append(f"{where}: contentTypeCode is missing")
    found += _author_problems(ss.authors, where)
    title, comments = ss.title, ss.comments
    if (
        (title is not None and len(title) > _FREE_FORM)
        or (comments is not None and len(comments) > _FREE_FORM)
        or _longest(ss.intended_recipients) > _LONG_NAME
    ):
        lengths: list[tuple[str, str | None, int]] = [("title", title, _FREE_FORM), ("comments", comments, _FREE_FORM)]
        lengths += [("intendedRecipient", r, _LONG_NAME) for r in ss.intended_recipients]
        found += _check_lengths(where, iter(lengths))
    if ss.content_type_code is not None:
        found += _code_length_problems(where, "contentTypeCode", ss.content_type_code)
    if ss.extra_slots:
        found += _check_lengths(
            where, iter([(f"slot {s.name}", v, _LONG_NAME) for s in ss.extra_slots for v in s.values])
        )
    return found


def _document_problems(document: DocumentEntry, patient: Cx | None) -> list[str]:
    where = f"document {document.entry_uuid}"
    unique_id = document.unique_id
    found = _check_unique_id(unique_id, where)
    if not document.limited_metadata:  # TF-3 Table 4.3.1-3: limited metadata makes these R2
        on_demand = document.object_type is DocumentEntryType.ON_DEMAND
        for field, name in _MANDATORY_IN_SUBMISSION:
            # An On-Demand entry has no creationTime.
            if getattr(document, field) is None and not (on_demand and field == "creation_time"):
                found.append(f"{where}: {name} is missing")
        if not document.confidentiality_codes:
            found.append(f"{where}: confidentialityCode is missing")
    patient_id = document.patient_id
    if patient_id is None:
        if not document.limited_metadata:
            found.append(f"{where}: patientId is missing")
    else:
        if patient is not None and patient_id is not patient and patient_id != patient:
            found.append(f"{where}: patientId differs from the submission set's (one submission, one patient)")
        found += _patient_problems(patient_id, where)
    if document.source_patient_id is not None:
        found += _patient_problems(document.source_patient_id, where, "sourcePatientId")
    if document.repository_unique_id is not None:
        found += _check_oid(document.repository_unique_id, where, "repositoryUniqueId")
    start, stop = document.service_start_time, document.service_stop_time
    if start is not None and stop is not None and start.moment > stop.moment:
        found.append(f"{where}: serviceStartTime is after serviceStopTime")
    found += _author_problems(document.authors, where)
    title, comments, language = document.title, document.comments, document.language_code
    legal = document.legal_authenticator
    legal_text = legal.text if legal is not None else None
    if (
        (title is not None and len(title) > _FREE_FORM)
        or (comments is not None and len(comments) > _FREE_FORM)
        or len(unique_id) > _LONG_NAME
        or len(document.mime_type) > _LONG_NAME
        or (language is not None and len(language) > _LONG_NAME)
        or (legal_text is not None and len(legal_text) > _LONG_NAME)
    ):
        lengths: list[tuple[str, str | None, int]] = [
            ("title", title, _FREE_FORM),
            ("comments", comments, _FREE_FORM),
            ("uniqueId", unique_id, _LONG_NAME),
            ("mimeType", document.mime_type, _LONG_NAME),
            ("languageCode", language, _LONG_NAME),
            ("legalAuthenticator", legal_text, _LONG_NAME),
        ]
        found += _check_lengths(where, iter(lengths))
    # The problems in the order of the values: the six above, each code's three (in the order of codes()),
    # then the lists.
    for name, code in document.codes():
        system, display = code.code_system, code.display_name
        if (
            len(code.code) > _LONG_NAME
            or (system is not None and len(system) > _LONG_NAME)
            or (display is not None and len(display) > _FREE_FORM)
        ):  # the test of _code_length_problems, without a call for each code that fits
            found += _code_length_problems(where, name, code)
    if _longest(document.source_patient_info, document.reference_ids) > _LONG_NAME or document.extra_slots:
        lengths = [("sourcePatientInfo", v, _LONG_NAME) for v in document.source_patient_info]
        lengths += [("referenceIdList", v, _LONG_NAME) for v in document.reference_ids]
        lengths += [(f"slot {s.name}", v, _LONG_NAME) for s in document.extra_slots for v in s.values]
        found += _check_lengths(where, iter(lengths))
    return found


def _folder_problems(folder: Folder, patient: Cx | None) -> list[str]:
    where = f"folder {folder.entry_uuid}"
    found = _check_oid(folder.unique_id, where, "uniqueId") + _patient_problems(folder.patient_id, where)
    if patient is not None and folder.patient_id != patient:
        found.append(f"{where}: patientId differs from the submission set's")
    lengths: list[tuple[str, str | None, int]] = [("title", folder.title, _FREE_FORM)]
    lengths += [("comments", folder.comments, _FREE_FORM)]
    found += _check_lengths(where, iter(lengths))
    for code in folder.codes:
        found += _code_length_problems(where, "codeList", code)
    return found
