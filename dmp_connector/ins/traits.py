"""Identity traits: what the identity-vigilance rules (RNIV) say a patient's identity is made of.

The five *traits INS* are the birth name, the list of birth first names, the sex, the birth
date and the birth place (INSEE COG code). The used name and used first name are
*complementary* traits: kept, shown, never sent to INSi.

Names are normalised the way INSi writes them: upper-case ASCII letters A–Z, with only a
space, a hyphen, a double hyphen (``--``, double surnames registered 2004–2011) or an
apostrophe between letters. Accents are removed, ``Œ``/``Æ`` become ``OE``/``AE``,
typographic apostrophes and dashes become ``'`` and ``-``. Anything else (digits, other
symbols, letters of other scripts) is refused with an error naming the character, because
guessing would send INSi a name the person does not have.

Birth dates are not ``datetime.date``: INSi's ``DateLunaire`` is ``YYYY-MM-DD`` with no
calendar check, and civil records hold unknown parts (``00``) and impossible days (a
30 February). :class:`BirthDate` keeps them as they are.

Traits are health data: the ``repr()`` of :class:`IdentityTraits` and of a
:class:`TraitDifference` hides the values.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import date
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector.errors import InvalidIdentifierError, ValidationError

__all__ = [
    "BirthDate",
    "DifferenceKind",
    "IdentityTraits",
    "Sex",
    "TraitComparison",
    "TraitDifference",
    "compare_birth_dates",
    "first_name_coherent",
    "normalize_name",
    "split_first_names",
]


class _Hidden(str):
    """A placeholder whose repr is itself, so that reprs show a mask and never the data."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{self!s}>"


# --------------------------------------------------------------------------- names

# Letters that Unicode decomposition leaves alone but that have a usual ASCII spelling.
_LETTERS = str.maketrans(
    {
        "Œ": "OE",
        "œ": "oe",
        "Æ": "AE",
        "æ": "ae",
        "ß": "ss",
        "ẞ": "SS",
        "Ø": "O",
        "ø": "o",
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Ð": "D",
        "ð": "d",
        "Þ": "TH",
        "þ": "th",
        "ı": "i",
    }
)
_APOSTROPHES = "'’‘ʼʹ`´′"
_DASHES = "-‐‑‒–—―−﹣－"
_NAME = re.compile(r"^[A-Z]+(?:(?:--?|[' ])[A-Z]+)*$")
_RUN = re.compile(r"[A-Z]+|[^A-Z]+")


def _fold(value: str) -> str:
    """Upper-case ASCII where possible; separators mapped to their plain form; nothing checked yet."""
    decomposed = unicodedata.normalize("NFKD", value.translate(_LETTERS))
    out = []
    for char in decomposed:
        if unicodedata.combining(char):
            continue
        if char.isspace():
            out.append(" ")
        elif char in _APOSTROPHES:
            out.append("'")
        elif char in _DASHES:
            out.append("-")
        else:
            out.append(char.upper())
    return "".join(out)


def _describe(char: str) -> str:
    name = unicodedata.name(char, "unnamed character")
    return f"{char!r} (U+{ord(char):04X} {name})"


def normalize_name(value: str, *, what: str = "a name") -> str:
    """A name or first name the way INSi writes it, or :class:`ValidationError` saying why not.

    ``"  Müller-D’Arc  "`` becomes ``"MULLER-D'ARC"``; spaces collapse to one, ``" - "``
    becomes ``"-"``, ``"- -"`` becomes ``"--"``. Refused: an empty name, any character
    other than a letter (after removing accents), space, hyphen or apostrophe; a name that
    starts or ends with a hyphen or apostrophe; three hyphens, two apostrophes or an
    apostrophe next to a hyphen. ``what`` names the trait in the message ("the birth name").
    The result is unchanged by a second call.
    """
    if not isinstance(value, str):
        raise TypeError("normalize_name takes a str")
    folded = _fold(value).strip(" ")
    for char in folded:
        if not ("A" <= char <= "Z" or char in " -'"):
            raise ValidationError(
                f"{what} contains a character that a name may not hold: {_describe(char)}",
                hint="names hold letters, spaces, hyphens and apostrophes only",
            )
    if not folded:
        raise ValidationError(f"{what} is empty")
    runs = _RUN.findall(folded)
    if not runs[0][0].isalpha() or not runs[-1][0].isalpha():
        raise ValidationError(f"{what} starts or ends with a hyphen or apostrophe")
    parts = []
    for run in runs:
        if run[0].isalpha():
            parts.append(run)
            continue
        hyphens, apostrophes = run.count("-"), run.count("'")
        if apostrophes and hyphens:
            raise ValidationError(f"{what} has an apostrophe next to a hyphen")
        if apostrophes > 1:
            raise ValidationError(f"{what} has two apostrophes in a row")
        if hyphens > 2:
            raise ValidationError(f"{what} has more than two hyphens in a row")
        parts.append("'" if apostrophes else "-" * hyphens if hyphens else " ")
    result = "".join(parts)
    assert _NAME.match(result), "normalisation produced a name outside the INSi alphabet"
    return result


def _letters(value: str) -> str:
    """Only the letters of a folded name: two names equal here differ at most by their separators."""
    return "".join(c for c in _fold(value) if "A" <= c <= "Z")


def _words(value: str) -> list[str]:
    """Words of a name where hyphen and apostrophe count as spaces (the rule of RNIV EXI ID 10)."""
    return [w for w in re.split(r"[ \-']+", _fold(value)) if w]


def split_first_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """The birth first names, normalised: a string (INSi ``ListePrenom``) splits on spaces and commas.

    A sequence keeps its items, so a compound first name given as one item ("JEAN PIERRE")
    stays one first name.
    """
    if isinstance(value, str):
        items: Sequence[str] = [p for p in re.split(r"[\s,]+", value) if p]
    else:
        items = list(value)
    names = tuple(normalize_name(item, what="a birth first name") for item in items)
    if not names:
        raise ValidationError("the list of birth first names is empty", hint="INSi needs at least one first name")
    return names


def first_name_coherent(first_name: str, birth_first_names: str | Sequence[str]) -> bool:
    """True when ``first_name`` is the start of the list of birth first names (RNIV EXI ID 10).

    Hyphen and apostrophe count as spaces: with the list ``JEAN CHRISTOPHE PIERRE``,
    ``JEAN``, ``JEAN-CHRISTOPHE`` and ``JEAN CHRISTOPHE`` are coherent, ``CHRISTOPHE`` is not.
    """
    listed = birth_first_names if isinstance(birth_first_names, str) else " ".join(birth_first_names)
    chosen, words = _words(first_name), _words(listed)
    return bool(chosen) and words[: len(chosen)] == chosen


# --------------------------------------------------------------------------- sex and date


class Sex(StrEnum):
    """Administrative sex. ``I`` (indeterminate) is a valid trait, but INSi searches take M or F only."""

    M = "M"
    F = "F"
    I = "I"  # noqa: E741 - the code itself

    @classmethod
    def parse(cls, value: Sex | str) -> Sex:
        """The sex for ``M``, ``F`` or ``I`` in any case."""
        if isinstance(value, Sex):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise ValidationError("the sex is M, F or I (indeterminate)") from None

    @property
    def insi_searchable(self) -> bool:
        """True for M and F, the only values an INSi search takes."""
        return self is not Sex.I


_DATE_FORMATS = (
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})$"),
    re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$"),
    re.compile(r"^(?P<d>\d{2})/(?P<m>\d{2})/(?P<y>\d{4})$"),
    re.compile(r"^(?P<d>\d{2})-(?P<m>\d{2})-(?P<y>\d{4})$"),
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})$"),
    re.compile(r"^(?P<y>\d{4})$"),
)


class BirthDate(BaseModel):
    """A birth date as civil records and INSi hold it: parts may be unknown or off the calendar.

    An unknown month or day is ``None`` (written ``00``). A *lunar* date is one whose known
    parts are not a calendar date (30 February, month 13 …): INSi's ``DateLunaire`` type does
    no calendar check, so such dates exist and are kept as given.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    year: int = Field(ge=1, le=9999)
    """Four-digit year; an unknown year is not representable (no source shows one)."""
    month: int | None = Field(default=None, ge=1, le=99)
    """Month 1–12, above 12 for a lunar date, ``None`` when unknown."""
    day: int | None = Field(default=None, ge=1, le=99)
    """Day of month, past the month's end for a lunar date, ``None`` when unknown."""

    @classmethod
    def parse(cls, text: str, *, allow_lunar: bool = True) -> BirthDate:
        """Read ``YYYY-MM-DD``, ``YYYYMMDD``, ``DD/MM/YYYY``, ``DD-MM-YYYY``, ``YYYY-MM`` or ``YYYY``.

        ``00`` stands for an unknown month or day. ``allow_lunar=False`` refuses a date that
        is not on the calendar; the default keeps it, as INSi does.
        """
        raw = text.strip()
        for pattern in _DATE_FORMATS:
            match = pattern.match(raw)
            if match is None:
                continue
            parts = match.groupdict()
            year = int(parts["y"])
            month = int(parts.get("m") or 0) or None
            day = int(parts.get("d") or 0) or None
            if year == 0:
                raise ValidationError("the birth year is unknown (0000), which a birth date cannot hold")
            result = cls(year=year, month=month, day=day)
            if result.is_lunar and not allow_lunar:
                raise ValidationError(
                    "the birth date is not a calendar date",
                    hint="pass allow_lunar=True to keep a date as the civil record gives it",
                )
            return result
        raise ValidationError(
            "a birth date is written YYYY-MM-DD or DD/MM/YYYY (00 for an unknown month or day)",
        )

    @classmethod
    def from_date(cls, value: date) -> BirthDate:
        """A complete calendar date."""
        return cls(year=value.year, month=value.month, day=value.day)

    @property
    def is_partial(self) -> bool:
        """True when the month or the day is unknown."""
        return self.month is None or self.day is None

    @property
    def is_lunar(self) -> bool:
        """True when the known parts cannot be a calendar date (month over 12, day past the month's end)."""
        if self.month is not None and self.month > 12:
            return True
        if self.day is None:
            return False
        if self.month is None:
            return self.day > 31
        return self.day > calendar.monthrange(self.year, self.month)[1]

    def as_date(self) -> date:
        """The calendar date, or :class:`ValidationError` for a partial or lunar one."""
        if self.is_partial or self.is_lunar or self.month is None or self.day is None:
            raise ValidationError("this birth date is partial or not on the calendar; it has no datetime.date")
        return date(self.year, self.month, self.day)

    def iso(self) -> str:
        """``YYYY-MM-DD`` with ``00`` for unknown parts: INSi's ``DateNaissance``."""
        return f"{self.year:04d}-{self.month or 0:02d}-{self.day or 0:02d}"

    def cda(self) -> str:
        """The CDA ``birthTime`` value with the ANS convention for unknown parts.

        Day unknown → ``YYYYMM01``; month unknown → ``YYYY01DD``; both → ``YYYY1231``. A lunar
        date is written with its digits as given, since no convention covers it.
        """
        if self.month is None and self.day is None:
            return f"{self.year:04d}1231"
        return f"{self.year:04d}{self.month or 1:02d}{self.day or 1:02d}"

    def datamatrix(self) -> str:
        """``DD-MM-YYYY`` as the INS Datamatrix (field S6) carries it, ``00`` for unknown parts."""
        return f"{self.day or 0:02d}-{self.month or 0:02d}-{self.year:04d}"

    def __str__(self) -> str:
        return self.iso()


# --------------------------------------------------------------------------- traits

_COG = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


def _check_cog(value: str) -> str:
    cog = value.strip().upper()
    if not _COG.match(cog):
        raise InvalidIdentifierError(
            "the birth place is a 5-character INSEE COG code",
            hint="5 digits; 2A or 2B + 3 digits in Corsica; 99 + the country code for a birth abroad",
        )
    return cog


class IdentityTraits(BaseModel):
    """The traits of an identity; :meth:`build` normalises them, :meth:`normalized` re-normalises.

    Constructing it directly checks the shapes only (non-empty names, COG format), so that
    data read as it is (a mixed-case CDA name) can be held and compared.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    birth_name: str = Field(min_length=1)
    """Nom de naissance (INSi ``NomNaissance``)."""
    birth_first_names: tuple[str, ...] = Field(min_length=1)
    """Birth first names in civil-record order (INSi ``ListePrenom``, space-separated there)."""
    sex: Sex
    """Administrative sex."""
    birth_date: BirthDate
    """Birth date, possibly partial or lunar."""
    birth_place: str | None = None
    """INSEE COG code of the birth place at birth: commune, ``2A``/``2B`` in Corsica, ``99xxx`` abroad."""
    used_name: str | None = None
    """Nom utilisé (complementary trait), when it differs from the birth name."""
    used_first_name: str | None = None
    """Prénom utilisé (complementary trait)."""

    @model_validator(mode="after")
    def _shapes(self) -> Self:
        if any(not name.strip() for name in self.birth_first_names):
            raise ValidationError("a birth first name is empty")
        if not self.birth_name.strip():
            raise ValidationError("the birth name is empty")
        if self.birth_place is not None and not _COG.match(self.birth_place):
            _check_cog(self.birth_place)
        return self

    @classmethod
    def build(
        cls,
        *,
        birth_name: str,
        birth_first_names: str | Sequence[str],
        sex: Sex | str,
        birth_date: str | BirthDate | date,
        birth_place: str | None = None,
        used_name: str | None = None,
        used_first_name: str | None = None,
    ) -> IdentityTraits:
        """Normalised traits from what a user typed or a service returned.

        Every problem with the names is reported at once in one :class:`ValidationError`
        (``problems`` names each trait); a malformed birth place raises
        :class:`InvalidIdentifierError`.
        """
        problems: list[str] = []

        def name(value: str | None, what: str) -> str | None:
            if value is None or not value.strip():
                return None
            try:
                return normalize_name(value, what=what)
            except ValidationError as exc:
                problems.append(exc.message)
                return None

        birth = name(birth_name, "the birth name")
        if birth is None and not problems:
            problems.append("the birth name is empty")
        try:
            first_names = split_first_names(birth_first_names)
        except ValidationError as exc:
            problems.append(exc.message)
            first_names = ()
        used = name(used_name, "the used name")
        used_first = name(used_first_name, "the used first name")
        parsed_sex: Sex | None = None
        try:
            parsed_sex = Sex.parse(sex)
        except ValidationError as exc:
            problems.append(exc.message)
        if isinstance(birth_date, BirthDate):
            parsed_date: BirthDate | None = birth_date
        elif isinstance(birth_date, date):
            parsed_date = BirthDate.from_date(birth_date)
        else:
            try:
                parsed_date = BirthDate.parse(birth_date)
            except ValidationError as exc:
                problems.append(exc.message)
                parsed_date = None
        if problems:
            raise ValidationError("the identity traits cannot be normalised: " + "; ".join(problems), problems=problems)
        assert birth is not None and parsed_sex is not None and parsed_date is not None
        return cls(
            birth_name=birth,
            birth_first_names=first_names,
            sex=parsed_sex,
            birth_date=parsed_date,
            birth_place=_check_cog(birth_place) if birth_place and birth_place.strip() else None,
            used_name=used,
            used_first_name=used_first,
        )

    def normalized(self) -> IdentityTraits:
        """The same traits with every name normalised (see :func:`normalize_name`)."""
        return IdentityTraits.build(
            birth_name=self.birth_name,
            birth_first_names=self.birth_first_names,
            sex=self.sex,
            birth_date=self.birth_date,
            birth_place=self.birth_place,
            used_name=self.used_name,
            used_first_name=self.used_first_name,
        )

    @property
    def first_first_name(self) -> str:
        """The first birth first name (CDA ``given@qualifier="BR"``, FR Core ``given``)."""
        return self.birth_first_names[0]

    @property
    def first_names_text(self) -> str:
        """The birth first names joined by spaces, as INSi's ``ListePrenom`` and the CDA ``given`` list."""
        return " ".join(self.birth_first_names)

    @property
    def born_abroad(self) -> bool:
        """True when the birth place is a country code (``99xxx``)."""
        return self.birth_place is not None and self.birth_place.startswith("99")

    @property
    def birth_place_unknown(self) -> bool:
        """True for COG ``99999`` (place unknown), which FR Core flags on a validated identity."""
        return self.birth_place == "99999"

    def compare(self, other: IdentityTraits) -> TraitComparison:
        """Which of the INS traits differ between ``self`` (ours) and ``other`` (theirs), and how.

        Both sides are normalised first. Compared: birth name, the list of birth first
        names, the first first name, sex, birth date, birth place. The used name and used
        first name are not INS traits and are not compared. Nothing is overwritten: the
        caller decides what a difference means.
        """
        ours, theirs = self.normalized(), other.normalized()
        found: list[TraitDifference] = []

        def names(trait: str, a: str, b: str, *, shorter_list: bool = False) -> None:
            if a == b:
                return
            if _letters(a) == _letters(b):
                kind = DifferenceKind.SEPARATORS
            elif shorter_list:
                kind = DifferenceKind.LESS_PRECISE
            else:
                kind = DifferenceKind.DIFFERENT
            found.append(TraitDifference(trait=trait, kind=kind, ours=a, theirs=b))

        a_list, b_list = ours.birth_first_names, theirs.birth_first_names
        n = min(len(a_list), len(b_list))
        names("birth_name", ours.birth_name, theirs.birth_name)
        names(
            "birth_first_names",
            ours.first_names_text,
            theirs.first_names_text,
            shorter_list=len(a_list) != len(b_list) and a_list[:n] == b_list[:n],
        )
        names("first_first_name", ours.first_first_name, theirs.first_first_name)
        if ours.sex is not theirs.sex:
            different = DifferenceKind.DIFFERENT
            found.append(TraitDifference(trait="sex", kind=different, ours=ours.sex.value, theirs=theirs.sex.value))
        date_kind = compare_birth_dates(ours.birth_date, theirs.birth_date)
        if date_kind is not None:
            found.append(
                TraitDifference(
                    trait="birth_date", kind=date_kind, ours=ours.birth_date.iso(), theirs=theirs.birth_date.iso()
                )
            )
        place_kind = _compare_places(ours.birth_place, theirs.birth_place)
        if place_kind is not None:
            found.append(
                TraitDifference(trait="birth_place", kind=place_kind, ours=ours.birth_place, theirs=theirs.birth_place)
            )
        return TraitComparison(differences=tuple(found))

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "birth_name", _Hidden("hidden")
        yield "birth_first_names", _Hidden(f"{len(self.birth_first_names)} hidden")
        yield "sex", self.sex.value
        yield "birth_date", _Hidden("hidden")
        if self.birth_place is not None:
            yield "birth_place", _Hidden("hidden")


def compare_birth_dates(a: BirthDate, b: BirthDate) -> DifferenceKind | None:
    """How two birth dates differ: None (equal), LESS_PRECISE (an unknown part agrees) or DIFFERENT."""
    if a == b:
        return None
    if a.year != b.year:
        return DifferenceKind.DIFFERENT
    for x, y in ((a.month, b.month), (a.day, b.day)):
        if x is not None and y is not None and x != y:
            return DifferenceKind.DIFFERENT
    return DifferenceKind.LESS_PRECISE


def _compare_places(a: str | None, b: str | None) -> DifferenceKind | None:
    if a == b:
        return None
    if a is None or b is None:
        return DifferenceKind.MISSING
    if "99999" in (a, b):
        return DifferenceKind.LESS_PRECISE
    return DifferenceKind.DIFFERENT


# --------------------------------------------------------------------------- comparison


class DifferenceKind(StrEnum):
    """How two values of one trait differ, from harmless to serious."""

    SEPARATORS = "separators"
    """Same letters; only spaces, hyphens or apostrophes differ ("DE VINCI" / "DEVINCI")."""
    LESS_PRECISE = "less_precise"
    """One side says less but agrees: a partial birth date, a list of first names that is the start of the
    other list, COG 99999 (place unknown)."""
    MISSING = "missing"
    """One side has no value (a birth place not recorded)."""
    DIFFERENT = "different"
    """The values disagree."""


class TraitDifference(BaseModel):
    """One trait that differs. ``repr()`` hides the values; read ``ours``/``theirs`` explicitly."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    trait: str
    """The field name: ``birth_name``, ``birth_first_names``, ``first_first_name``, ``sex``, ``birth_date``,
    ``birth_place``."""
    kind: DifferenceKind
    """How the values differ."""
    ours: str | None
    """Our value, normalised (dates as ``YYYY-MM-DD``)."""
    theirs: str | None
    """Their value, normalised."""

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "trait", self.trait
        yield "kind", self.kind.value


class TraitComparison(BaseModel):
    """The outcome of :meth:`IdentityTraits.compare`: every trait that differs, or none."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    differences: tuple[TraitDifference, ...] = ()
    """The traits that differ, in the order birth name, first names, first first name, sex, date, place."""

    @property
    def matches(self) -> bool:
        """True when no trait differs."""
        return not self.differences

    @property
    def traits(self) -> tuple[str, ...]:
        """Names of the traits that differ."""
        return tuple(d.trait for d in self.differences)

    @property
    def minor_only(self) -> bool:
        """True when every difference is about separators or precision, none a disagreement or a gap."""
        return all(d.kind in (DifferenceKind.SEPARATORS, DifferenceKind.LESS_PRECISE) for d in self.differences)

    def get(self, trait: str) -> TraitDifference | None:
        """The difference on ``trait``, or None when it matches."""
        return next((d for d in self.differences if d.trait == trait), None)
