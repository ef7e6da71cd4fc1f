"""The INS matricule (a NIR or NIA with its 2-digit key) and the OID of its assigning authority.

An INS is useless without its OID: the OID says whether the 13 characters are a NIR or a
NIA, and whether they are real or belong to a test or demonstration base. So the value
type here, :class:`INS`, always holds both.

The key is ``97 − (N mod 97)`` where N is the 13-character body read as a number after
replacing ``2A`` by 19 and ``2B`` by 18 *at the department position only* (characters 6–7);
keys run from ``01`` to ``97``. Official test material sometimes carries wrong keys, so
reading can be lenient (the INS is kept and flagged with ``key_valid=False``), but every
writer (:meth:`INS.to_cda_id`, :meth:`INS.to_xds_cx`, :meth:`INS.mssante_address`) refuses
such an INS.

The matricule is health data: ``repr()`` and ``str()`` show :meth:`INS.masked`, and no
error message repeats it. ``INS.matricule`` is the one explicit accessor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from dmp_connector.errors import InvalidIdentifierError

__all__ = ["INS", "InsKind", "InsOid", "MatriculeRules", "compute_key"]


class InsKind(StrEnum):
    """What the 13 characters are: the person's own NIR, or a NIA given while the NIR is pending."""

    NIR = "NIR"
    NIA = "NIA"


_OID_PREFIX = "1.2.250.1.213.1.4."

# OIDs of the same family that are not an INS; named so that the error says what was given.
_NOT_INS_OIDS = {
    _OID_PREFIX + "2": "the historical INS-C computed from the Carte Vitale (production)",
    _OID_PREFIX + "6": "the historical INS-C computed from the Carte Vitale (test)",
    _OID_PREFIX + "7": "the historical INS-C computed from the Carte Vitale (demonstration)",
    _OID_PREFIX + "13": "a NIR used as social-security number (NSS), not an INS",
    _OID_PREFIX + "14": "a NIA used as social-security number (NSS), not an INS",
}


class InsOid(StrEnum):
    """The assigning authorities of an INS. ``.11`` is NIR *demonstration*, not "NIA test"."""

    NIR = "1.2.250.1.213.1.4.8"
    NIA = "1.2.250.1.213.1.4.9"
    NIR_TEST = "1.2.250.1.213.1.4.10"
    NIR_DEMO = "1.2.250.1.213.1.4.11"

    @property
    def is_test(self) -> bool:
        """True for the test (.10) and demonstration (.11) OIDs, which production refuses."""
        return self in (InsOid.NIR_TEST, InsOid.NIR_DEMO)

    @property
    def kind(self) -> InsKind:
        """NIA for .9, NIR for the others: the kind follows the OID, never the matricule's shape."""
        return InsKind.NIA if self is InsOid.NIA else InsKind.NIR

    @classmethod
    def parse(cls, value: InsOid | str) -> InsOid:
        """The OID for ``value`` (``urn:oid:`` prefix allowed), or an error naming what it is instead."""
        if isinstance(value, InsOid):
            return value
        text = str(value).strip()
        if text.lower().startswith("urn:oid:"):
            text = text[len("urn:oid:") :]
        try:
            return cls(text)
        except ValueError:
            pass
        known = _NOT_INS_OIDS.get(text)
        if known is not None:
            raise InvalidIdentifierError(
                f"OID {text} is {known}", hint="an INS uses 1.2.250.1.213.1.4.8 (NIR) or .9 (NIA); .10/.11 in tests"
            )
        raise InvalidIdentifierError(
            f"{text!r} is not an INS OID",
            hint="use 1.2.250.1.213.1.4.8 (NIR), .9 (NIA), .10 (NIR test) or .11 (NIR demonstration)",
        )


class MatriculeRules(BaseModel):
    """Structure checks on the 13-character body, beyond the key.

    The defaults follow the CNAM's own NIR validator: sex digit 1 or 2, month 01–12 or
    20–99 when the birth month is unknown. Public sources disagree on the "unknown month"
    values (some give 20–42 and 50–99), and none says whether a NIA may carry another sex
    digit, so both are settings rather than constants. Pass them to :meth:`INS.parse` /
    :meth:`INS.from_parts`; ``INS.model_validate`` applies the defaults unless given
    ``context={"rules": rules}``.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    sex_digits: frozenset[str] = frozenset({"1", "2"})
    """Accepted first characters. 7/8 (provisional NNP) and 5/6 (MIG) numbers are not an INS."""
    unknown_months: tuple[tuple[int, int], ...] = ((20, 99),)
    """Inclusive ranges of month values that stand for an unknown birth month."""

    def month_allowed(self, month: int) -> bool:
        """True for a calendar month or a value standing for an unknown month."""
        return 1 <= month <= 12 or any(low <= month <= high for low, high in self.unknown_months)

    def describe_months(self) -> str:
        """The accepted month values, for error messages."""
        extra = ", ".join(f"{low:02d}–{high:02d}" for low, high in self.unknown_months)
        return f"01–12 or, when the birth month is unknown, {extra}" if extra else "01–12"


DEFAULT_RULES = MatriculeRules()

_SEPARATORS = re.compile(r"[\s.\-\u2010-\u2015\u2212_/]+")
_BODY = re.compile(r"^\d{5}(?:\d{2}|2[AB])\d{6}$")
_KEY = re.compile(r"^\d{2}$")


def _strip(text: str) -> str:
    return _SEPARATORS.sub("", text).upper()


def _check_body_shape(body: str) -> None:
    """Length and alphabet of a 13-character body; messages never quote the body."""
    if len(body) != 13:
        raise InvalidIdentifierError(
            f"a NIR or NIA has 13 characters before its key, not {len(body)}",
            hint="check for a missing or extra digit",
        )
    if not _BODY.match(body):
        raise InvalidIdentifierError(
            "a NIR or NIA holds only digits, except 2A or 2B at the department position (characters 6–7)",
            hint="check for a letter or symbol typed by mistake (O for 0, I for 1 …)",
        )


def _key_of(body: str) -> int:
    department = body[5:7]
    digits = body[:5] + {"2A": "19", "2B": "18"}.get(department, department) + body[7:]
    return 97 - int(digits) % 97


def compute_key(nir13: str) -> str:
    """The 2-digit key ("01".."97") of a 13-character NIR or NIA; spaces are ignored.

    ``2A``/``2B`` (Corsica) count as 19/18 at the department position only: a letter
    anywhere else is refused, unlike libraries that replace it throughout the string.
    """
    body = _strip(nir13)
    _check_body_shape(body)
    return f"{_key_of(body):02d}"


def _check_structure(body: str, rules: MatriculeRules) -> None:
    sex = body[0]
    if sex not in rules.sex_digits:
        allowed = " or ".join(sorted(rules.sex_digits))
        why = {
            "7": ": 7 and 8 start a provisional number (NNP), which is not an INS",
            "8": ": 7 and 8 start a provisional number (NNP), which is not an INS",
            "5": ": 5 and 6 start a MIG number, which is not an INS",
            "6": ": 5 and 6 start a MIG number, which is not an INS",
        }.get(sex, "")
        raise InvalidIdentifierError(f"the first character (sex) of a NIR or NIA must be {allowed}{why}")
    month = int(body[3:5])
    if not rules.month_allowed(month):
        raise InvalidIdentifierError(f"the birth month (characters 4–5) must be {rules.describe_months()}")


class _PatientId(Protocol):
    """What an XDS patient id (:class:`~dmp_connector.xds.Cx`) gives to be compared with an INS."""

    @property
    def id(self) -> str: ...
    @property
    def assigning_authority(self) -> str: ...


class INS(BaseModel):
    """A matricule INS (13 characters + 2-digit key) with the OID of its assigning authority.

    Build it with :meth:`parse` (free text) or :meth:`from_parts` (body and key apart, as
    INSi sends them). Constructing it directly checks the same rules on an already
    normalised matricule.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    matricule: str
    """15 characters, normalised: the 13-character NIR/NIA (``2A``/``2B`` kept as letters) and the key."""
    oid: InsOid
    """The assigning authority; it decides NIR or NIA and real or test."""
    key_valid: bool = True
    """False only for an INS read with ``lenient=True`` whose key is wrong; writers refuse it."""

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Self:
        context = info.context if isinstance(info.context, dict) else {}
        rules = context.get("rules") or DEFAULT_RULES
        if len(self.matricule) != 15:
            raise InvalidIdentifierError(
                f"a matricule INS has 15 characters (13 + a 2-digit key), not {len(self.matricule)}",
                hint="use INS.parse for text with spaces, or INS.from_parts for a body and a key apart",
            )
        body, key = self.matricule[:13], self.matricule[13:]
        _check_body_shape(body)
        _check_structure(body, rules)
        if not _KEY.match(key):
            raise InvalidIdentifierError("the key of a matricule INS is two digits (characters 14–15)")
        right = int(key) == _key_of(body)
        if self.key_valid and not right:
            raise InvalidIdentifierError(
                "the key (characters 14–15) does not match the 13 characters before it",
                hint="check the digits; to read material known to carry wrong keys, parse with lenient=True",
            )
        if not self.key_valid and right:
            raise InvalidIdentifierError("key_valid is False but the key is right")
        return self

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        oid: InsOid | str = InsOid.NIR,
        lenient: bool = False,
        production: bool | None = None,
        rules: MatriculeRules = DEFAULT_RULES,
    ) -> INS:
        """Read a 15-character matricule written the usual ways ("2 90 05 2A 004 012 66", dots, dashes).

        Refused, with the rule that failed: a length other than 15 (a 13-character body
        without key is refused, because the key is what catches a typo — use
        :meth:`from_parts` with ``key=None`` to compute one for data that has none), a
        character out of place, an impossible sex digit or month (see
        :class:`MatriculeRules`), and a wrong key unless ``lenient`` is set, in which case
        the INS comes back with ``key_valid=False``.

        ``production=True`` refuses the test and demonstration OIDs (.10/.11).
        ``production=False`` accepts every OID, because the INSi qualification platform
        returns the real OIDs (.8/.9) for its fictitious persons. ``None`` skips the check.
        """
        if not isinstance(text, str):
            raise TypeError("INS.parse takes a str")
        stripped = _strip(text)
        if len(stripped) == 13:
            raise InvalidIdentifierError(
                "this matricule has 13 characters: its 2-digit key is missing",
                hint="give the 15 characters; INS.from_parts(body, None, oid) computes a key for data that has none",
            )
        if len(stripped) != 15:
            raise InvalidIdentifierError(
                f"a matricule INS has 15 characters (13 + a 2-digit key), not {len(stripped)}",
                hint="spaces, dots and dashes are ignored; check for a missing or extra digit",
            )
        return cls.from_parts(stripped[:13], stripped[13:], oid, lenient=lenient, production=production, rules=rules)

    @classmethod
    def from_parts(
        cls,
        nir13: str,
        key: str | None,
        oid: InsOid | str,
        *,
        lenient: bool = False,
        production: bool | None = None,
        rules: MatriculeRules = DEFAULT_RULES,
    ) -> INS:
        """Build from a 13-character body and its key, as INSi returns them (``NumIdentifiant``, ``Cle``).

        ``key=None`` computes the key (INSi's ``Cle`` is optional); otherwise the key is
        checked as in :meth:`parse`.
        """
        authority = InsOid.parse(oid)
        if production is True and authority.is_test:
            raise InvalidIdentifierError(
                f"OID {authority.value} is a test or demonstration OID, refused in production",
                hint="production takes real INS only (OID .8 NIR or .9 NIA)",
            )
        body = _strip(nir13)
        _check_body_shape(body)
        _check_structure(body, rules)
        computed = _key_of(body)
        if key is None:
            given = f"{computed:02d}"
        else:
            given = key.strip()
            if not _KEY.match(given):
                raise InvalidIdentifierError("the key of a matricule INS is two digits")
        right = int(given) == computed
        if not right and not lenient:
            raise InvalidIdentifierError(
                "the key does not match the 13 characters before it",
                hint="check the digits; material known to carry wrong keys can be read with lenient=True (--lenient)",
            )
        data = {"matricule": body + given, "oid": authority, "key_valid": right}
        return cls.model_validate(data, context={"rules": rules})

    @classmethod
    def from_cda_id(cls, root: str, extension: str, *, lenient: bool = False) -> INS:
        """Read a CDA ``patientRole/id`` (``root`` = OID, ``extension`` = matricule)."""
        return cls.parse(extension, oid=root, lenient=lenient)

    @classmethod
    def from_xds_cx(cls, value: str, *, lenient: bool = False) -> INS:
        """Read an XDS ``patientId`` CX, ``<matricule>^^^&<OID>&ISO^NH`` (quotes and a CX.7 date tolerated)."""
        parts = value.strip().strip("'").split("^")
        if len(parts) < 5 or parts[1] or parts[2] or parts[4] != "NH":
            raise InvalidIdentifierError(
                "an XDS patient id is '<matricule>^^^&<OID>&ISO^NH'", hint="CX.1, CX.4 and CX.5 (NH) are mandatory"
            )
        authority = parts[3].split("&")
        if len(authority) != 3 or authority[0] or authority[2] != "ISO":
            raise InvalidIdentifierError("the assigning authority (CX.4) of an XDS patient id is '&<OID>&ISO'")
        return cls.parse(parts[0], oid=authority[1], lenient=lenient)

    @property
    def nir13(self) -> str:
        """The 13-character NIR or NIA, without key (INSi ``NumIdentifiant``)."""
        return self.matricule[:13]

    @property
    def key(self) -> str:
        """The 2-digit key as given (INSi ``Cle``)."""
        return self.matricule[13:]

    @property
    def expected_key(self) -> str:
        """The key the algorithm gives; differs from :attr:`key` only when ``key_valid`` is False."""
        return f"{_key_of(self.nir13):02d}"

    @property
    def kind(self) -> InsKind:
        """NIR or NIA, from the OID."""
        return self.oid.kind

    @property
    def is_test(self) -> bool:
        """True when the OID is the test or demonstration one."""
        return self.oid.is_test

    def _require_valid_key(self, what: str) -> None:
        if not self.key_valid:
            raise InvalidIdentifierError(
                f"an INS whose key is wrong cannot be written into {what}",
                hint="it was read with lenient=True; get the right matricule (e.g. from INSi) first",
            )

    def to_cda_id(self) -> tuple[str, str]:
        """``(root, extension)`` of the CDA ``recordTarget/patientRole/id``: the OID and the matricule."""
        self._require_valid_key("a CDA document")
        return self.oid.value, self.matricule

    def matches(self, other: INS | _PatientId | None) -> bool:
        """True when ``other`` names this INS: the same matricule under the same OID.

        ``other`` is another INS (read leniently or not) or an XDS patient id CX (its id and
        assigning authority; the identifier type may be left out). ``None`` names nobody and never
        matches. This is the one comparison identity vigilance makes wherever an answer, a
        document or a mail names a patient.
        """
        if other is None:
            return False
        if isinstance(other, INS):
            return other.matricule == self.matricule and other.oid is self.oid
        return other.id == self.matricule and other.assigning_authority == self.oid.value

    def to_xds_cx(self) -> str:
        """The XDS ``patientId`` (also the VIHF ``resource-id``): ``<matricule>^^^&<OID>&ISO^NH``."""
        self._require_valid_key("XDS metadata")
        return f"{self.matricule}^^^&{self.oid.value}&ISO^NH"

    def mssante_address(self) -> str:
        """The patient's MSSanté mailbox, ``<matricule>@patient.mssante.fr``.

        Only a qualified identity may use it: go through ``Identity.require_qualified``.
        """
        self._require_valid_key("an MSSanté address")
        return f"{self.matricule}@patient.mssante.fr"

    def formatted(self) -> str:
        """The matricule grouped for reading, ``2 90 05 2A 004 012 66`` (in clear: for the patient's own screen)."""
        m = self.matricule
        return f"{m[0]} {m[1:3]} {m[3:5]} {m[5:7]} {m[7:10]} {m[10:13]} {m[13:]}"

    def masked(self) -> str:
        """The matricule with all but the sex digit and the key hidden, for logs and reprs."""
        return f"{self.matricule[0]} ** ** ** *** *** {self.matricule[13:]}"

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "matricule", _Masked(self.masked())
        yield "oid", self.oid.name
        if not self.key_valid:
            yield "key_valid", False

    def __str__(self) -> str:
        return f"INS {self.masked()} ({self.oid.kind.value}{', test' if self.is_test else ''})"


class _Masked(str):
    """A string whose repr is itself, so that a masked value reads as masked and not as data."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{self!s}>"
