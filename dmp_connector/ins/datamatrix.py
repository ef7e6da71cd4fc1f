"""The INS Datamatrix printed on documents: its text payload, written from a qualified identity and read back.

Pure Python, no image library (images: :mod:`dmp_connector.ins.datamatrix_image`, extra
``datamatrix``). The layout, as two independent implementations and the ANS validator's bug
reports show it (the ANS specification v2.2 itself was not read; see ``docs/ins.md``)::

    IS01 + 22 × "0"                   26-character header, 2D-Doc style   (DatamatrixFormat.header)
    S1 <matricule>                    15 characters, key included
    S2 <OID>       [GS]               up to 20 characters, GS (0x1D) when shorter
    S3 <birth first names> [GS]       up to 100, the INSi list, space-separated
    S4 <birth name> [GS]              up to 100
    S5 <sex>                          1 character, M or F
    S6 <birth date>                   DD-MM-YYYY (00 for an unknown part)
    S7 <birth place>                  5-character INSEE COG code

Only a qualified (QUAL) identity may be printed (:func:`encode_payload`). Reading
(:func:`decode_payload`) checks every field and the matricule's key, and gives an
:class:`InsDatamatrix`: what a scan says, which is *not* a qualified identity until INSi
confirms it (:meth:`InsDatamatrix.to_identity` gives a PROV identity holding the INS).
Every error is a :class:`DatamatrixError` naming the field and the rule, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.errors import DmpConnectorError, PatientMismatchError, ValidationError

from .identity import Identity, IdentityStatus
from .matricule import INS, InsOid
from .traits import BirthDate, IdentityTraits, Sex, TraitComparison, normalize_name

__all__ = [
    "GS",
    "DatamatrixError",
    "DatamatrixFormat",
    "InsDatamatrix",
    "decode_payload",
    "encode_payload",
]

GS = "\x1d"
"""The group separator (ASCII 29) that ends a variable field shorter than its maximum."""

_COG = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")
_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")


class DatamatrixError(ValidationError):
    """A Datamatrix payload (or an identity to print) breaks the format; ``field`` names which part (S1…S7)."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, problems=(message,), hint=hint)
        self.field = field


class DatamatrixFormat(BaseModel):
    """The format's facts that the public sources give without the ANS text: settings, with their defaults.

    The header (``IS`` + version ``01`` + 22 zeros) is modelled on the 2D-Doc header and taken
    from two implementations [I]; the maximum lengths (OID 20, names 100) from the same
    sources. ``sexes`` is M and F (INSi answers only those); add ``I`` if a reader must
    accept it. ``production=True`` refuses the test and demonstration OIDs (.10/.11).
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    marker: str = Field(default="IS", min_length=2, max_length=2)
    """The two characters that start the payload."""
    version: str = Field(default="01", min_length=2, max_length=2)
    """The format version after the marker."""
    header_length: int = Field(default=26, ge=4, le=64)
    """Length of the whole header (marker, version, zero padding)."""
    max_oid: int = Field(default=20, ge=19, le=64)
    """Longest OID in S2; shorter ones end with GS."""
    max_name: int = Field(default=100, ge=1, le=255)
    """Longest S3 (first names) and S4 (birth name); shorter ones end with GS."""
    sexes: frozenset[str] = frozenset({"M", "F"})
    """Accepted S5 values."""
    production: bool = False
    """Refuse the test (.10) and demonstration (.11) OIDs when True."""

    @property
    def header(self) -> str:
        """The header this format writes and expects, e.g. ``IS01`` + 22 zeros."""
        return (self.marker + self.version).ljust(self.header_length, "0")


DEFAULT_FORMAT = DatamatrixFormat()


class InsDatamatrix(BaseModel):
    """What an INS Datamatrix says: the INS and the five INS traits. Not a qualified identity by itself."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    ins: INS
    """The matricule and its OID (S1, S2)."""
    traits: IdentityTraits
    """Birth first names (S3), birth name (S4), sex (S5), birth date (S6), birth place (S7)."""

    def matches(self, identity: Identity) -> TraitComparison:
        """Compare with the patient asked: the traits' differences (empty when they agree).

        The INS itself is checked first: another INS (or a patient asked without one) raises
        :class:`~dmp_connector.errors.PatientMismatchError` — a document of another patient —
        whatever the traits say.
        """
        if identity.ins is None or not identity.ins.matches(self.ins):
            raise PatientMismatchError(
                "the Datamatrix names another INS than the patient asked's",
                service="INS Datamatrix",
                problems=("the Datamatrix INS is not the INS asked",),
                hint="this document is not this patient's (identity vigilance): do not attach it",
            )
        return identity.traits.compare(self.traits)

    def to_identity(self) -> Identity:
        """A PROV identity holding the scanned INS: a scan alone qualifies nobody (verify it with INSi)."""
        return Identity(traits=self.traits, ins=self.ins, status=IdentityStatus.PROV)

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "ins", self.ins
        yield "traits", self.traits


def encode_payload(identity: Identity, *, fmt: DatamatrixFormat = DEFAULT_FORMAT) -> str:
    """The Datamatrix text for a qualified identity; :class:`IdentityNotQualifiedError` for any other.

    Also refused (:class:`DatamatrixError`): no birth place, a sex the format does not take,
    a name longer than ``fmt.max_name`` or holding GS, a test OID when ``fmt.production``.
    Names are written normalised (upper case, no accents), as INSi gives them.
    """
    ins = identity.require_qualified("an INS Datamatrix")
    if fmt.production and ins.is_test:
        raise DatamatrixError("a test or demonstration INS is refused in production", field="S2")
    traits = identity.traits
    if traits.birth_place is None:
        raise DatamatrixError("an INS Datamatrix carries the birth place (S7); this identity has none", field="S7")
    if traits.sex.value not in fmt.sexes:
        raise DatamatrixError(f"the sex (S5) must be one of {', '.join(sorted(fmt.sexes))}", field="S5")
    try:
        first_names = " ".join(normalize_name(n, what="a birth first name") for n in traits.birth_first_names)
        birth_name = normalize_name(traits.birth_name, what="the birth name")
    except ValidationError as exc:
        raise DatamatrixError("a name cannot be written in an INS Datamatrix: " + exc.message, field="S3/S4") from None
    oid = ins.oid.value
    if len(oid) > fmt.max_oid:
        raise DatamatrixError(f"the OID (S2) is longer than {fmt.max_oid} characters", field="S2")
    for tag, value in (("S3", first_names), ("S4", birth_name)):
        if len(value) > fmt.max_name:
            raise DatamatrixError(f"{tag} is longer than {fmt.max_name} characters", field=tag)
    parts = [
        fmt.header,
        "S1",
        ins.matricule,
        "S2",
        _variable(oid, fmt.max_oid),
        "S3",
        _variable(first_names, fmt.max_name),
        "S4",
        _variable(birth_name, fmt.max_name),
        "S5",
        traits.sex.value,
        "S6",
        traits.birth_date.datamatrix(),
        "S7",
        traits.birth_place,
    ]
    return "".join(parts)


def _variable(value: str, maximum: int) -> str:
    return value if len(value) == maximum else value + GS


class _Reader:
    """A cursor over the payload; every failure names the field, never the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def tag(self, tag: str) -> None:
        if self.text[self.pos : self.pos + len(tag)] != tag:
            raise DatamatrixError(f"field {tag} is missing or out of order", field=tag)
        self.pos += len(tag)

    def fixed(self, tag: str, length: int) -> str:
        self.tag(tag)
        value = self.text[self.pos : self.pos + length]
        if len(value) != length or GS in value:
            raise DatamatrixError(f"field {tag} has {length} characters; the payload is cut short", field=tag)
        self.pos += length
        return value

    def variable(self, tag: str, maximum: int) -> str:
        self.tag(tag)
        end = self.text.find(GS, self.pos, self.pos + maximum + 1)
        if end == -1:
            value = self.text[self.pos : self.pos + maximum]
            if len(value) < maximum:
                raise DatamatrixError(f"field {tag} does not end with GS (0x1D)", field=tag)
            self.pos += maximum
        else:
            value = self.text[self.pos : end]
            self.pos = end + 1
        if not value:
            raise DatamatrixError(f"field {tag} is empty", field=tag)
        return value


def decode_payload(payload: str | bytes, *, fmt: DatamatrixFormat = DEFAULT_FORMAT) -> InsDatamatrix:
    """Read a scanned INS Datamatrix text; every check failed is a :class:`DatamatrixError`.

    Checked: the header, each field's tag, order and length, the matricule's key, the OID
    (an INS OID; test OIDs refused when ``fmt.production``), the name alphabet (INSi's), the
    sex, the date (``DD-MM-YYYY``, ``00`` for unknown parts), the COG code, nothing after S7.
    Scanners that print GS as the literal ``<GS>`` (zxing-cpp's ``text``) are read too.
    """
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("ascii")
        except UnicodeDecodeError:
            raise DatamatrixError("an INS Datamatrix payload is ASCII text") from None
    text = payload.replace("<GS>", GS).strip("\r\n")
    if len(text) > fmt.header_length + 2 * fmt.max_name + fmt.max_oid + 15 + 1 + 10 + 5 + 7 * 2 + 4:
        raise DatamatrixError("the payload is longer than any INS Datamatrix")
    if not text.startswith(fmt.header):
        if text.startswith(fmt.marker):
            raise DatamatrixError(f"the header is not {fmt.marker}{fmt.version} + zeros (another version?)")
        raise DatamatrixError(f"not an INS Datamatrix: the payload does not start with {fmt.marker}")
    reader = _Reader(text)
    reader.pos = fmt.header_length
    matricule = reader.fixed("S1", 15)
    oid_text = reader.variable("S2", fmt.max_oid)
    first_names = reader.variable("S3", fmt.max_name)
    birth_name = reader.variable("S4", fmt.max_name)
    sex = reader.fixed("S5", 1)
    date = reader.fixed("S6", 10)
    cog = reader.fixed("S7", 5)
    if reader.pos != len(text):
        raise DatamatrixError("characters follow the last field (S7)")
    try:
        oid = InsOid.parse(oid_text)
    except DmpConnectorError as exc:
        raise DatamatrixError("field S2 is not an INS OID: " + exc.message, field="S2", hint=exc.hint) from None
    try:
        ins = INS.parse(matricule, oid=oid, production=True if fmt.production else None)
    except DmpConnectorError as exc:
        raise DatamatrixError("field S1 is not a valid INS: " + exc.message, field="S1", hint=exc.hint) from None
    if sex not in fmt.sexes:
        raise DatamatrixError(f"field S5 (sex) must be one of {', '.join(sorted(fmt.sexes))}", field="S5")
    match = _DATE.match(date)
    if match is None:
        raise DatamatrixError("field S6 (birth date) is written DD-MM-YYYY", field="S6")
    day, month, year = (int(part) for part in match.groups())
    if year == 0 or month > 99 or day > 99:
        raise DatamatrixError("field S6 (birth date) has no year", field="S6")
    if not _COG.match(cog):
        raise DatamatrixError("field S7 (birth place) is a 5-character INSEE COG code", field="S7")
    names: list[str] = []
    for tag, value in (("S3", first_names), ("S4", birth_name)):
        try:
            normalized = normalize_name(value, what=f"field {tag}")
        except ValidationError as exc:
            raise DatamatrixError(exc.message, field=tag) from None
        if normalized != value:
            raise DatamatrixError(f"field {tag} is not written as INSi writes names (upper case, no accent)", field=tag)
        names.append(value)
    traits = IdentityTraits(
        birth_name=names[1],
        birth_first_names=tuple(names[0].split(" ")),
        sex=Sex(sex),
        birth_date=BirthDate(year=year, month=month or None, day=day or None),
        birth_place=cog,
    )
    return InsDatamatrix(ins=ins, traits=traits)
