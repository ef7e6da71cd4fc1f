"""A patient identity ↔ the PAM-FR PID segment (IHE PAM, French extension 2.11).

What the profile says, and what this module enforces both ways::

    PID-3   <matricule>^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS   the INS, only if qualified
            000003^^^CHU-X&000897406&N^PI                                  local ids (IPP …)
    PID-5   BIRTHNAME^FIRST^ALL BIRTH FIRST NAMES^^^^L                     L = birth name (required with INS)
            USEDNAME^USEDFIRST^^^^^D                                       D = used name, only if known
    PID-7   19790328           PID-8  F|M|U                               required with INS
    PID-11  ^^^^^^BDL^^63220   the birth place: XAD-7 BDL, XAD-9 the INSEE (COG) code, required with INS
    PID-32  VALI (+ DOUT/FICT/HOMA)                                       the reliability code

``NH`` (the NIR as a billing number) shares the INS-NIR OID but is never the INS. A receiver
that gets an INS without PID-32 = ``VALI`` keeps the message and drops the INS (PAM-FR); the
reader does that and says so (:attr:`PidPatient.ins_dropped`).

HL7 table 0445 predates the RNIV's four statuses: HL7 ``VALI`` ("validée") is the RNIV's
QUAL when an INS travels with it. How the RNIV's VALI and RECUP are written is not stated by
PAM-FR; :class:`StatusMapping` holds the defaults (RECUP → ``PROV``, since its INS may not
travel; RNIV VALI → HL7 ``VALI`` without an INS) and can be changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.errors import DmpConnectorError, InvalidIdentifierError, ValidationError
from dmp_connector.ins import INS, BirthDate, Identity, IdentityStatus, IdentityTraits, InsOid, Sex

from ._er7 import Field as Er7Field
from ._er7 import Repetition, Segment, component_text, rep, sub_text
from .errors import Hl7IdentityError

__all__ = ["ASSIGNING_AUTHORITY_NAMES", "LocalId", "PidPatient", "StatusMapping", "pid_segment", "read_pid"]

ASSIGNING_AUTHORITY_NAMES = {
    InsOid.NIR: "ASIP-SANTE-INS-NIR",
    InsOid.NIA: "ASIP-SANTE-INS-NIA",
    InsOid.NIR_TEST: "ASIP-SANTE-INS-NIR",
    InsOid.NIR_DEMO: "ASIP-SANTE-INS-NIR",
}
"""CX-4.1 namespace written for each INS OID. PAM-FR names the NIR and NIA ones; the ANS samples use
``ASIP-SANTE-INS-NIR`` with the test OID (.10); the demonstration OID (.11) is given the same [I]."""

_INS_TYPE = "INS"
_BILLING_NIR_TYPE = "NH"


class StatusMapping(BaseModel):
    """RNIV status ↔ PID-32 code. The defaults follow PAM-FR where it speaks, and are [I] where it does not.

    PAM-FR: the INS travels only with PID-32 = ``VALI``, so QUAL → ``VALI`` and ``VALI`` with an INS
    → QUAL. Not stated: RECUP (written ``PROV``: its INS must not travel; PAM-FR's QUAL → RECUP
    downgrade example sends ``PROV``) and the RNIV's VALI (written ``VALI`` without an INS, read back
    as VALI). Attributes go as extra repetitions: doubtful ``DOUT``, fictitious ``FICT``, homonym ``HOMA``.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    written: dict[IdentityStatus, str] = Field(
        default_factory=lambda: {
            IdentityStatus.PROV: "PROV",
            IdentityStatus.RECUP: "PROV",
            IdentityStatus.VALI: "VALI",
            IdentityStatus.QUAL: "VALI",
        }
    )
    """The PID-32 code written for each status."""
    qualified_code: str = "VALI"
    """The PID-32 code that lets an INS travel (PAM-FR: ``VALI``)."""
    doubtful: str = "DOUT"
    """Attribute "identité douteuse"."""
    fictitious: str = "FICT"
    """Attribute "identité fictive"."""
    homonym: str = "HOMA"
    """Attribute "identité homonyme"."""


DEFAULT_STATUS_MAPPING = StatusMapping()


class LocalId(BaseModel):
    """A local patient identifier in PID-3 (IPP ``PI``, billing NIR ``NH``, account ``AN`` …)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(min_length=1)
    """CX-1."""
    namespace: str = ""
    """CX-4.1, e.g. ``CHU-X``."""
    authority_id: str = ""
    """CX-4.2, e.g. an OID or a FINESS."""
    authority_id_type: str = ""
    """CX-4.3: ``ISO`` for an OID, ``M`` or ``N`` as the ANS samples write a FINESS."""
    type_code: str = Field(default="PI", min_length=1)
    """CX-5: ``PI`` (IPP), ``NH`` (NIR as a billing number, never the INS), ``AN`` …; not ``INS``."""

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "type_code", self.type_code
        yield "namespace", self.namespace

    def cx(self) -> Repetition:
        """The CX repetition."""
        return rep(self.id, "", "", (self.namespace, self.authority_id, self.authority_id_type), self.type_code)


class PidPatient(BaseModel):
    """What a PID segment says about a patient, read under the PAM-FR rules."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    identity: Identity
    """The identity; it holds the INS only when PID-32 allowed it (QUAL)."""
    local_ids: tuple[LocalId, ...] = ()
    """PID-3's other identifiers, in order."""
    ins_dropped: bool = False
    """True when PID-3 carried an INS that PID-32 did not allow: PAM-FR says to integrate the message without it."""
    other_ins: tuple[INS, ...] = ()
    """Further INS sent beside the one kept (a NIA next to the NIR during an A31: the NIR is kept)."""
    reliability_codes: tuple[str, ...] = ()
    """PID-32, every repetition as sent (``VALI``, ``DOUT`` …)."""


def _ins_cx(ins: INS) -> Repetition:
    return rep(ins.matricule, "", "", (ASSIGNING_AUTHORITY_NAMES[ins.oid], ins.oid.value, "ISO"), _INS_TYPE)


def _birth_date(value: BirthDate) -> str:
    """PID-7: ``YYYYMMDD``; ``YYYYMM`` day unknown, ``YYYY`` both unknown, ``YYYY00DD`` month unknown [I]."""
    if value.month is None and value.day is None:
        return f"{value.year:04d}"
    if value.day is None:
        return f"{value.year:04d}{value.month:02d}"
    return f"{value.year:04d}{value.month or 0:02d}{value.day:02d}"


def _read_birth_date(text: str) -> BirthDate:
    digits = text.strip()[:8]
    if len(digits) not in (4, 6, 8) or not digits.isdigit():
        raise Hl7IdentityError("PID-7 is not a date (YYYY, YYYYMM or YYYYMMDD)", problems=["PID-7 malformed"])
    year = int(digits[:4])
    month = int(digits[4:6]) if len(digits) >= 6 else 0
    day = int(digits[6:8]) if len(digits) == 8 else 0
    if year == 0:
        raise Hl7IdentityError("PID-7 has no birth year", problems=["PID-7 year 0000"])
    return BirthDate(year=year, month=month or None, day=day or None)


_SEX_WRITTEN = {Sex.F: "F", Sex.M: "M", Sex.I: "U"}
_SEX_READ = {"F": Sex.F, "M": Sex.M, "U": Sex.I, "O": Sex.I, "A": Sex.I}


def pid_segment(
    identity: Identity,
    *,
    local_ids: Sequence[LocalId] = (),
    set_id: str = "1",
    mapping: StatusMapping = DEFAULT_STATUS_MAPPING,
) -> Segment:
    """The PID of ``identity``: the INS in PID-3 only when the identity is QUAL (with a valid key).

    A QUAL identity without a birth place raises :class:`Hl7IdentityError` (PID-11 BDL is required
    with an INS). A local id typed ``INS``, or carrying an INS OID under another type than ``NH``,
    raises :class:`Hl7IdentityError`: the INS goes in through ``identity`` so that its rules apply.
    """
    problems: list[str] = []
    reps: list[Repetition] = []
    for local in local_ids:
        if local.type_code.upper() == _INS_TYPE:
            problems.append("a local id is typed INS: pass the INS as the identity's")
        elif local.authority_id in {o.value for o in InsOid} and local.type_code != _BILLING_NIR_TYPE:
            problems.append("a local id carries an INS OID: pass the INS as the identity's")
        reps.append(local.cx())
    traits = identity.traits
    qualified = identity.status is IdentityStatus.QUAL and identity.ins is not None
    if qualified:
        ins = identity.require_qualified("an HL7 v2 PID")
        reps.append(_ins_cx(ins))
        if traits.birth_place is None:
            problems.append("PID-11: the birth place (BDL) is required with an INS; the identity has none")
    if problems:
        raise Hl7IdentityError(
            "the identity cannot be written as a PAM-FR PID: " + "; ".join(problems), problems=problems
        )
    names: list[Repetition] = [
        rep(traits.birth_name, traits.first_first_name, traits.first_names_text, "", "", "", "L")
    ]
    if traits.used_name or traits.used_first_name:
        names.append(rep(traits.used_name or "", traits.used_first_name or "", "", "", "", "", "D"))
    segment = Segment(name="PID")
    segment.set(1, set_id)
    if reps:
        segment.set(3, *reps)
    else:
        raise Hl7IdentityError(
            "PID-3 is required: give a local id (IPP) for an identity that is not qualified",
            problems=["PID-3 empty"],
        )
    segment.set(5, *names)
    segment.set(7, _birth_date(traits.birth_date))
    segment.set(8, _SEX_WRITTEN[traits.sex])
    if traits.birth_place is not None:
        segment.set(11, rep("", "", "", "", "", "", "BDL", "", traits.birth_place))
    codes = [mapping.written[identity.status]]
    if identity.doubtful:
        codes.append(mapping.doubtful)
    if identity.fictitious:
        codes.append(mapping.fictitious)
    if identity.homonym:
        codes.append(mapping.homonym)
    segment.set(32, *codes)
    return segment


def _reps(segment: Segment, number: int) -> Er7Field:
    return tuple(r for r in segment.field(number) if any(any(s for s in c) for c in r))


def read_pid(segment: Segment, *, mapping: StatusMapping = DEFAULT_STATUS_MAPPING) -> PidPatient:
    """The patient a PID describes, the PAM-FR rules applied.

    The INS is kept only when PID-32 holds ``VALI`` (else dropped, :attr:`PidPatient.ins_dropped`);
    of a NIR and a NIA the NIR is kept. An INS rep with an OID that is not an INS OID, a malformed
    matricule or a wrong key, no birth name (type ``L``), or a qualified identity lacking PID-7,
    PID-8 or the BDL birth place raise :class:`Hl7IdentityError` or :class:`InvalidIdentifierError`.

    Refused too, with :class:`Hl7IdentityError`: two *different* INS of one kind (two NIRs; a NIR
    beside a NIA is fine), since keeping either would be a guess at who the patient is; and a PID-32
    holding ``VALI`` beside a weaker status code (``PROV``): the sender contradicts itself, and
    taking the weaker would silently drop an INS it meant to send, so the message goes back to it.
    """
    if segment.name != "PID":
        raise Hl7IdentityError("not a PID segment", problems=["not PID"])
    problems: list[str] = []
    codes = tuple(component_text(r, 1) for r in _reps(segment, 32))
    allowed = mapping.qualified_code in codes
    found: list[INS] = []
    locals_: list[LocalId] = []
    for cx in _reps(segment, 3):
        type_code = component_text(cx, 5)
        if component_text(cx, 1) == '""':
            continue  # HL7's explicit null: the identifier is deleted (A47), there is none to read
        if type_code == _INS_TYPE:
            try:
                oid = InsOid.parse(sub_text(cx, 4, 2))
                found.append(INS.parse(component_text(cx, 1), oid=oid))
            except InvalidIdentifierError as exc:
                raise InvalidIdentifierError(f"PID-3: the INS is not valid: {exc.message}", hint=exc.hint) from None
            continue
        ident = component_text(cx, 1)
        if not ident:
            continue
        locals_.append(
            LocalId(
                id=ident,
                namespace=sub_text(cx, 4, 1),
                authority_id=sub_text(cx, 4, 2),
                authority_id_type=sub_text(cx, 4, 3),
                type_code=type_code or "PI",
            )
        )
    nirs = [i for i in found if i.oid is not InsOid.NIA]
    if len({(i.matricule, i.oid) for i in nirs}) > 1 or len({i.matricule for i in found if i not in nirs}) > 1:
        # Two different INS of one kind cannot both be this patient's: keeping either would be a guess.
        raise Hl7IdentityError("PID-3 holds two different INS of the same kind", problems=["PID-3 two different INS"])
    if mapping.qualified_code in codes and set(codes) & (set(mapping.written.values()) - {mapping.qualified_code}):
        raise Hl7IdentityError(
            "PID-32 holds both the qualified code and a weaker status code",
            problems=["PID-32 contradictory status"],
        )
    chosen: INS | None = (nirs or found)[0] if found else None
    others = tuple(i for i in found if i is not chosen)
    ins_dropped = chosen is not None and not allowed
    ins = chosen if allowed else None

    birth: Repetition | None = None
    used: Repetition | None = None
    for name in _reps(segment, 5):
        kind = component_text(name, 7)
        if kind == "L" and birth is None:
            birth = name
        elif kind == "D" and used is None:
            used = name
    if birth is None or not component_text(birth, 1):
        problems.append("PID-5 has no birth name (type L)")
    date_text = segment.get(7)
    sex_text = segment.get(8)
    if not date_text:
        problems.append("PID-7 (birth date) is empty")
    if sex_text not in _SEX_READ:
        problems.append("PID-8 (sex) is empty or not F, M or U")
    place: str | None = None
    for address in _reps(segment, 11):
        if component_text(address, 7) == "BDL":
            place = component_text(address, 9) or None
            break
    if ins is not None and place is None:
        problems.append("PID-11 has no birth place (BDL), required with an INS")
    if problems:
        raise Hl7IdentityError("the PID does not hold a PAM-FR identity: " + "; ".join(problems), problems=problems)
    assert birth is not None
    first_names_text = component_text(birth, 3) or component_text(birth, 2)
    used_name = component_text(used, 1) if used is not None else ""
    used_first = component_text(used, 2) if used is not None else ""
    try:
        traits = IdentityTraits(
            birth_name=component_text(birth, 1),
            birth_first_names=tuple(first_names_text.split(" ")) if first_names_text else ("",),
            sex=_SEX_READ[sex_text],
            birth_date=_read_birth_date(date_text),
            birth_place=place,
            used_name=used_name if used_name and used_name != '""' else None,
            used_first_name=used_first if used_first and used_first != '""' else None,
        )
        if ins is not None:
            status = IdentityStatus.QUAL
        elif mapping.qualified_code in codes:
            status = IdentityStatus.VALI
        else:
            status = IdentityStatus.PROV
        identity = Identity(
            traits=traits,
            ins=ins,
            status=status,
            doubtful=mapping.doubtful in codes,
            fictitious=mapping.fictitious in codes,
            homonym=mapping.homonym in codes,
        )
    except Hl7IdentityError:
        raise
    except ValidationError as exc:
        raise Hl7IdentityError(
            f"the PID breaks the identity rules: {exc.message}", problems=exc.problems or (exc.message,)
        ) from None
    except DmpConnectorError:
        raise
    except ValueError:
        # pydantic's own error would repeat the values (hide_input_in_errors keeps them out of the text,
        # but the chain stays clean this way).
        raise Hl7IdentityError("the PID holds a trait of the wrong shape", problems=["trait shape"]) from None
    return PidPatient(
        identity=identity, local_ids=tuple(locals_), ins_dropped=ins_dropped, other_ins=others, reliability_codes=codes
    )
