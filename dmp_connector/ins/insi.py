"""The INSi teleservice without I/O: requests, ``RESULTAT`` parsing, faults and the verification verdict.

INSi (CNAM, WSDL ``DESIR_ICIR_EXP`` v1.5.0) is SOAP 1.2 with WS-Addressing and two
context headers. Everything here is pure: :class:`SearchByTraits` and
:class:`SearchByCarteVitale` are :class:`~dmp_connector._transport.Operation` objects that
the sync and async clients send alike; :func:`parse_resultat`, :func:`map_insi_fault` and
:func:`assess_verification` turn answers into typed results.

A traits search goes out as (the transport adds ``wsa:MessageID``, ``wsa:To`` and
``wsa:Action`` in front of the two contexts)::

    <ctxbam:ContexteBAM Version="01_02">  Id, Temps, Emetteur, COUVERTURE (empty)
    <ctxlps:ContexteLPS Nature="CTXLPS" Version="01_00">  Id, Temps, Emetteur,
        LPS{ IDAM R="4", Version, Instance, Nom="urn:lps:<name>:<version>" }
    <RECSANSVITALE xmlns="http://www.cnamts.fr/INSiRecSans">
        NomNaissance, Prenom, Sexe, DateNaissance, [LieuNaissance]

and comes back as ``RESULTAT{CR{CodeCR, LibelleCR}, INDIVIDU?}`` or as a SOAP fault over
HTTP 500. Answers are read by namespace URI, never by prefix: captures of the real
service use a default namespace, ``ns2:`` and several Body prefixes.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector._transport import CallContext, Operation, SoapRequest
from dmp_connector.config import Environment, InsiAuthMode, Settings
from dmp_connector.errors import (
    ConfigurationError,
    DmpConnectorError,
    MalformedResponseError,
    PatientMismatchError,
    ServiceError,
    SoapFaultError,
    ValidationError,
    shown_code,
)
from dmp_connector.soap.envelope import AssertionSecurity, SoapMessage
from dmp_connector.xml import parse_xml

from .identity import INS, BirthDate, Identity, IdentityStatus, IdentityTraits, InsOid, Sex, TraitComparison
from .traits import DifferenceKind, _letters, compare_birth_dates, first_name_coherent

__all__ = [
    "ACTION_SEARCH_CARTE_VITALE",
    "ACTION_SEARCH_TRAITS",
    "CTXBAM_NS",
    "CTXLPS_NS",
    "INSI_RECSANS_NS",
    "INSI_RECVIT_NS",
    "INSI_RESULTAT_NS",
    "SIRAM_NS",
    "CarteVitaleBeneficiary",
    "InsiHistoryEntry",
    "InsiIdentity",
    "InsiResult",
    "InsiResultCode",
    "InsiServiceError",
    "InsiSeverity",
    "InsiVerification",
    "SearchByCarteVitale",
    "SearchByTraits",
    "SearchCriteria",
    "VerificationVerdict",
    "VitaleNir",
    "assess_verification",
    "map_insi_fault",
    "parse_resultat",
    "search_plan",
    "searched_traits_problems",
]

INSI_RECSANS_NS: Final = "http://www.cnamts.fr/INSiRecSans"
"""Namespace of the traits-search body ``RECSANSVITALE``."""
INSI_RECVIT_NS: Final = "http://www.cnamts.fr/INSiRecVit"
"""Namespace of the Carte Vitale search body ``RECVITALE``."""
INSI_RESULTAT_NS: Final = "http://www.cnamts.fr/INSiResultat"
"""Namespace of the answer ``RESULTAT``."""
CTXBAM_NS: Final = "urn:siram:bam:ctxbam"
"""Namespace of the ``ContexteBAM`` header (XSD ``CTXBAM_V01_02``)."""
CTXLPS_NS: Final = "urn:siram:lps:ctxlps"
"""Namespace of the ``ContexteLPS`` header (XSD ``CTXLPS_V01_00``)."""
SIRAM_NS: Final = "urn:siram"
"""Namespace of the fault detail ``siram:Erreur``."""

ACTION_SEARCH_TRAITS: Final = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
"""``wsa:Action`` of the traits search."""
ACTION_SEARCH_CARTE_VITALE: Final = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
"""``wsa:Action`` of the Carte Vitale search."""

_CTXBAM_VERSION: Final = "01_02"
_CTXLPS_VERSION: Final = "01_00"
_IDAM_REF: Final = "4"
_PLACEHOLDER_NAME: Final = "PROVISOIRE"
_PLACEHOLDER_FIRST_NAME: Final = "MATRICULE"
_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")
_XSD_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?")

Clock = Callable[[], datetime]
"""Gives the time written in ``Temps``; tests inject a fixed one."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- Results --------------------------------------------------------------------------


class InsiResultCode(StrEnum):
    """``CR/CodeCR``: the only three codes the service sends."""

    FOUND = "00"
    """One identity ("OK"): ``INDIVIDU`` follows."""
    NOT_FOUND = "01"
    """No identity ("Aucune identite trouvee"): change the criteria, the person may still exist."""
    AMBIGUOUS = "02"
    """Several identities ("Plusieurs identites trouvees"): add first names, then the birth place."""


class SearchCriteria(BaseModel):
    """Which traits a traits search sends beyond birth name, sex and birth date."""

    model_config = _FROZEN

    all_first_names: bool = False
    """Send every birth first name (one ``Prenom``, space-separated as ``ListePrenom`` reads)
    rather than the first one only."""
    birth_place: bool = False
    """Send ``LieuNaissance`` (the birth COG) too."""


def search_plan(traits: IdentityTraits) -> tuple[SearchCriteria, ...]:
    """The searches to try in turn while the answer is 02, as the ANS guidance orders them.

    First the first birth first name alone; then every first name; then the birth place
    as well. A 00 or 01 ends the plan: more criteria never find more people.
    """
    several = len(traits.birth_first_names) > 1
    plan = [SearchCriteria()]
    if several:
        plan.append(SearchCriteria(all_first_names=True))
    if traits.birth_place:
        plan.append(SearchCriteria(all_first_names=several, birth_place=True))
    return tuple(plan)


class InsiHistoryEntry(BaseModel):
    """One ``INSHISTO``: a matricule the person had, with the dates the service gave.

    The dates are kept as sent: ``DateDeb`` may come after ``DateFin`` in real answers
    (see :attr:`dates_inverted`), and either may be missing.
    """

    model_config = _FROZEN

    ins: INS
    """The historical matricule and its OID (read leniently: check ``ins.key_valid``)."""
    start: date | None = None
    """``DateDeb``, if sent."""
    end: date | None = None
    """``DateFin``, if sent."""

    @property
    def dates_inverted(self) -> bool:
        """True when the service sent a start date after the end date (seen in CNDA material)."""
        return self.start is not None and self.end is not None and self.start > self.end


class InsiIdentity(BaseModel):
    """``INDIVIDU`` of a 00 answer: the active INS, its history and the identity traits (``TIQ``)."""

    model_config = _FROZEN

    active: INS
    """``INSACTIF``: the INS to store. Read leniently: a wrong key is flagged in ``key_valid``, never fixed."""
    history: tuple[InsiHistoryEntry, ...] = ()
    """Every ``INSHISTO`` as sent, in order; it may repeat the active INS (see :attr:`replaced`)."""
    traits: IdentityTraits
    """``TIQ``: the traits INS; ``ListePrenom`` split into the birth first names."""
    first_name: str | None = None
    """``TIQ/Prenom`` when the service sent it (some answers only); ``None`` otherwise."""

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "active", self.active
        yield "history", self.history
        yield "traits", self.traits
        if self.first_name is not None:
            yield "first_name", "<hidden>"

    @property
    def replaced(self) -> tuple[INS, ...]:
        """The former matricules: history entries other than the active INS, without repeats."""
        seen: set[tuple[str, str]] = {(self.active.matricule, self.active.oid.value)}
        out: list[INS] = []
        for entry in self.history:
            key = (entry.ins.matricule, entry.ins.oid.value)
            if key not in seen:
                seen.add(key)
                out.append(entry.ins)
        return tuple(out)

    def to_identity(self) -> Identity:
        """The identity INSi returned, as RNIV status RECUP (its traits and active INS).

        Qualify it once an identity document is checked at the desk: :meth:`Identity.qualify`.
        """
        return Identity(traits=self.traits, ins=self.active, status=IdentityStatus.RECUP)

    @property
    def all_keys_valid(self) -> bool:
        """False when any matricule returned (active or historical) has a key that does not check."""
        return self.active.key_valid and all(entry.ins.key_valid for entry in self.history)

    @property
    def is_nia(self) -> bool:
        """True when the active INS is a NIA (OID .9): a provisional number, pending a NIR."""
        return self.active.oid is InsOid.NIA

    @property
    def placeholder_traits(self) -> bool:
        """True for the NIA answer whose traits are placeholders (``PROVISOIRE`` / ``MATRICULE``).

        Such traits are not the person's: do not replace the local traits with them.
        """
        return self.traits.birth_name == _PLACEHOLDER_NAME and tuple(self.traits.birth_first_names) == (
            _PLACEHOLDER_FIRST_NAME,
        )


class InsiResult(BaseModel):
    """What one INSi search answered: its code, its label and, for 00 only, the identity."""

    model_config = _FROZEN

    code: InsiResultCode
    """``CodeCR``."""
    label: str
    """``LibelleCR`` as sent (``OK``, ``Aucune identite trouvee`` …)."""
    identity: InsiIdentity | None = None
    """The identity found; present exactly when ``code`` is 00."""
    criteria: SearchCriteria | None = None
    """The criteria of the search that gave this answer, when the client chose them (see :func:`search_plan`)."""

    @model_validator(mode="after")
    def _identity_iff_found(self) -> InsiResult:
        if (self.code is InsiResultCode.FOUND) != (self.identity is not None):
            raise ValueError("an INSi result carries an identity exactly when its code is 00")
        return self

    @property
    def found(self) -> bool:
        """True for 00."""
        return self.code is InsiResultCode.FOUND


# --- Carte Vitale input ------------------------------------------------------------------


class VitaleNir(BaseModel):
    """A NIR as the Carte Vitale holds it: 13 characters and, when the card gives it, the key."""

    model_config = _FROZEN

    number: str = Field(pattern=r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$")
    """The 13 characters (``2A``/``2B`` allowed at the department position)."""
    key: str | None = Field(default=None, pattern=r"^[0-9]{2}$")
    """The 2-digit key, if read from the card."""


class CarteVitaleBeneficiary(BaseModel):
    """The beneficiary selected on the Carte Vitale, as ``rechercherInsAvecCarteVitale`` takes it.

    Read it from the card just before the call (the CNDA tests check that the card is
    read again and the beneficiary chosen explicitly).
    """

    model_config = _FROZEN

    holder: VitaleNir
    """The insured person who opens the rights (``MatriculeOD``, ``ASSURE/Id``)."""
    beneficiary: VitaleNir | None = None
    """The beneficiary's own certified NIR when the card carries one (``MatriculeIndividu``)."""
    birth_date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    """Birth date as the card gives it (``YYYY-MM-DD``; lunar dates allowed)."""
    birth_rank: int = Field(default=1, ge=1, le=9)
    """``RangNaissance``: 1, or the rank among twins."""
    birth_name: str | None = Field(default=None, min_length=1)
    """``NomNaissance``, when known."""


# --- Faults ---------------------------------------------------------------------------------


class InsiSeverity(StrEnum):
    """``siram:Erreur/@severite``; read leniently (the server was seen sending ``fatal``)."""

    INFORMATION = "information"
    WARNING = "avertissement"
    ERROR = "erreur"
    FATAL = "fatale"

    @classmethod
    def read(cls, text: str | None) -> InsiSeverity | None:
        """The severity in ``text``, whatever its case, prefix or spelling variant; None if unknown."""
        if not text:
            return None
        word = text.strip().rpartition(":")[2].lower()
        aliases = {"fatal": cls.FATAL, "warning": cls.WARNING, "error": cls.ERROR, "info": cls.INFORMATION}
        if word in aliases:
            return aliases[word]
        try:
            return cls(word)
        except ValueError:
            return None


class InsiServiceError(ServiceError):
    """INSi answered with a SOAP fault.

    ``code`` is the detail code (``insi_102``, ``desir_550`` …) or, without one, the
    subcode (``siram_40``); ``text`` the fault's reason, as sent: it is not in the message,
    because INSi may quote the traits searched there. ``fault_code`` is ``Sender`` or
    ``Receiver``, ``subcode`` the ``siram_*`` subcode, ``severity`` the detail's severity,
    ``detail_text`` the detail's message and ``fault_message_id`` the id the service gave
    the exchange. ``transient`` marks a technical error that a retry may cure.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        text: str | None,
        operation: str | None,
        transient: bool,
        hint: str | None,
        fault_code: str,
        subcode: str | None,
        severity: InsiSeverity | None,
        detail_text: str | None,
        fault_message_id: str | None,
    ) -> None:
        super().__init__(
            message, service="insi", code=code, text=text, operation=operation, transient=transient, hint=hint
        )
        self.fault_code = fault_code
        self.subcode = subcode
        self.severity = severity
        self.detail_text = detail_text
        self.fault_message_id = fault_message_id


def _local(name: str) -> str:
    """``{ns}local`` or ``prefix:local`` → ``local``."""
    return name.rpartition("}")[2].rpartition(":")[2]


_TRANSIENT_DETAIL = re.compile(r"insi_1[0-9]{2}", re.IGNORECASE)


def map_insi_fault(fault: SoapFaultError, *, operation: str | None = None) -> InsiServiceError:
    """Turn an INSi SOAP fault into :class:`InsiServiceError`, transient or not.

    ``Receiver``, ``siram_40`` and ``insi_1xx`` are technical failures on the service
    side: transient. ``Sender`` and ``desir_5xx`` mean the request or the caller's rights
    must change (IDAM, certificate, access level): never transient.
    """
    fault_code = _local(fault.code)
    subcode = _local(fault.subcodes[0]) if fault.subcodes else None
    detail_code, severity, detail_text, fault_message_id = _read_detail(fault.detail)
    code = detail_code or subcode or fault_code
    lowered = code.lower()
    refused = lowered.startswith("desir_") or fault_code.lower() == "sender"
    transient = not lowered.startswith("desir_") and (
        fault_code.lower() == "receiver"
        or (subcode or "").lower() == "siram_40"
        or _TRANSIENT_DETAIL.fullmatch(lowered) is not None
    )
    where = f" to {operation}" if operation else ""
    return InsiServiceError(
        f"INSi answered{where} with fault {shown_code(code)} ({shown_code(fault_code)})",
        code=code,
        text=fault.reason,
        operation=operation,
        transient=transient,
        hint=_fault_hint(lowered, transient=transient, refused=refused),
        fault_code=fault_code,
        subcode=subcode,
        severity=severity,
        detail_text=detail_text,
        fault_message_id=fault_message_id,
    )


def _read_detail(detail: bytes | None) -> tuple[str | None, InsiSeverity | None, str | None, str | None]:
    if not detail:
        return None, None, None, None
    try:
        root = parse_xml(detail, what="the INSi fault detail")
    except DmpConnectorError:
        return None, None, None, None
    error = next(root.iter(f"{{{SIRAM_NS}}}Erreur"), None)
    if error is None:
        return None, None, None, None
    code = (error.get("code") or "").strip() or None
    text = "".join(t for t in error.itertext() if isinstance(t, str)).strip() or None
    message_id = (error.get("messageID") or "").strip() or None
    return code, InsiSeverity.read(error.get("severite")), text, message_id


def _fault_hint(code: str, *, transient: bool, refused: bool) -> str | None:
    if code == "desir_560":
        return (
            "access level too low: the client certificate's CN must be exactly INSI-AUTO or INSI-MANU "
            "(IGC-Santé organisation certificate)"
        )
    if code in ("desir_550", "siram_100"):
        return (
            "INSi does not know the software's authorisation number: check software.insi_authorisation_id "
            "(ContexteLPS IDAM, the CNDA authorisation number)"
        )
    if transient:
        return "INSi is temporarily unable to answer; the call is retried, then try again later"
    if refused:
        return (
            "the request was refused: check the IDAM (software.insi_authorisation_id), the certificate "
            "(CN INSI-AUTO or INSI-MANU) and the organisation's rights"
        )
    return None


# --- Reading RESULTAT ------------------------------------------------------------------------


def _q(local: str) -> str:
    return f"{{{INSI_RESULTAT_NS}}}{local}"


def _child(parent: etree._Element, local: str) -> etree._Element | None:
    return parent.find(_q(local))


def _text(parent: etree._Element, local: str) -> str | None:
    element = _child(parent, local)
    if element is None:
        return None
    return (element.text or "").strip() or None


def parse_resultat(payload: etree._Element) -> InsiResult:
    """Read a ``RESULTAT`` element (by namespace URI) into an :class:`InsiResult`.

    An unknown ``CodeCR``, a 00 without ``INDIVIDU`` or an ``INDIVIDU`` missing a
    mandatory part raise :class:`MalformedResponseError`. Returned matricules are read
    leniently: a wrong key is kept and flagged (``INS.key_valid``), never fixed.
    """
    if payload.tag != _q("RESULTAT"):
        qname = etree.QName(payload)
        raise MalformedResponseError(
            f"the INSi answer is not a RESULTAT: its body holds {{{qname.namespace or ''}}}{qname.localname}",
            hint=f"INSi answers with RESULTAT in namespace {INSI_RESULTAT_NS}",
        )
    cr = _child(payload, "CR")
    raw_code = _text(cr, "CodeCR") if cr is not None else None
    if cr is None or raw_code is None:
        raise MalformedResponseError("the INSi answer has no CR/CodeCR")
    try:
        code = InsiResultCode(raw_code)
    except ValueError:
        raise MalformedResponseError(
            f"the INSi answer has an unknown result code {raw_code[:8]!r} "
            "(known: 00 one identity, 01 none, 02 several)",
            hint="the INSi interface may have changed; check for a newer dmp_connector",
        ) from None
    label = _text(cr, "LibelleCR") or ""
    individu = _child(payload, "INDIVIDU")
    if code is not InsiResultCode.FOUND:
        # A 01/02 carries no identity; one sent anyway is not handed on.
        return InsiResult(code=code, label=label)
    if individu is None:
        raise MalformedResponseError("the INSi answer says 00 (one identity) but has no INDIVIDU")
    return InsiResult(code=code, label=label, identity=_read_individu(individu))


def _read_individu(individu: etree._Element) -> InsiIdentity:
    actives = individu.findall(_q("INSACTIF"))
    if len(actives) != 1:
        raise MalformedResponseError(f"the INSi answer has {len(actives)} INSACTIF elements; exactly one was expected")
    active, _, _ = _read_ins(actives[0], "INSACTIF")
    history = []
    for element in individu.iterfind(_q("INSHISTO")):
        ins, start, end = _read_ins(element, "INSHISTO")
        history.append(InsiHistoryEntry(ins=ins, start=start, end=end))
    tiq = _child(individu, "TIQ")
    if tiq is None:
        raise MalformedResponseError("the INSi answer has an INDIVIDU without TIQ (the identity traits)")
    traits, first_name = _read_tiq(tiq)
    return InsiIdentity(active=active, history=tuple(history), traits=traits, first_name=first_name)


def _read_ins(element: etree._Element, where: str) -> tuple[INS, date | None, date | None]:
    id_individu = _child(element, "IdIndividu")
    number = _text(id_individu, "NumIdentifiant") if id_individu is not None else None
    oid = _text(element, "OID")
    if number is None or oid is None:
        raise MalformedResponseError(f"an {where} of the INSi answer lacks IdIndividu/NumIdentifiant or OID")
    key = _text(id_individu, "Cle") if id_individu is not None else None
    try:
        ins = INS.from_parts(number, key, oid, lenient=True)
    except DmpConnectorError as exc:
        raise MalformedResponseError(
            f"an {where} of the INSi answer holds an unusable matricule or OID: {exc.message}",
            hint="the matricule itself is not repeated here; see the answer with the correlation id",
        ) from exc
    return ins, _read_date(element, "DateDeb", where), _read_date(element, "DateFin", where)


def _read_date(element: etree._Element, local: str, where: str) -> date | None:
    text = _text(element, local)
    if text is None:
        return None
    match = _XSD_DATE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise MalformedResponseError(f"{where}/{local} of the INSi answer is not a date") from None


def _read_tiq(tiq: etree._Element) -> tuple[IdentityTraits, str | None]:
    first_name = _text(tiq, "Prenom")
    values = {
        "NomNaissance": _text(tiq, "NomNaissance"),
        "ListePrenom": _text(tiq, "ListePrenom") or first_name,
        "Sexe": _text(tiq, "Sexe"),
        "DateNaissance": _text(tiq, "DateNaissance"),
    }
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise MalformedResponseError(f"the INSi answer's TIQ lacks {', '.join(missing)}")
    try:
        traits = IdentityTraits.build(
            birth_name=values["NomNaissance"] or "",
            birth_first_names=values["ListePrenom"] or "",
            sex=Sex.parse(values["Sexe"] or ""),
            birth_date=BirthDate.parse(values["DateNaissance"] or ""),
            birth_place=_text(tiq, "LieuNaissance"),
        )
    except (DmpConnectorError, ValueError) as exc:
        reason = exc.message if isinstance(exc, DmpConnectorError) else "a trait has an unexpected value"
        # Not chained: the cause's message may quote the trait (a name, a date).
        raise MalformedResponseError(f"the INSi answer's TIQ holds traits that cannot be read: {reason}") from None
    return traits, first_name


# --- Identity vigilance on answers ---------------------------------------------------------------


def searched_traits_problems(searched: IdentityTraits, criteria: SearchCriteria, found: InsiIdentity) -> list[str]:
    """The traits sent to INSi that the identity it returned disagrees with (names only, never values).

    INSi matches the traits it is sent; an identity that disagrees with one of them is not the
    person searched (the RNIV rules). Compared, as the RNIV compares traits: the birth name (a
    difference of spaces, hyphens or apostrophes only is the same name), the first name(s) sent,
    which must open the returned list of birth first names (RNIV EXI ID 10), the sex, the birth
    date (an unknown part on either side agrees) and, when it was sent, the birth place (COG
    99999 agrees). The placeholder names INSi gives a NIA (``PROVISOIRE`` / ``MATRICULE``) are
    not the person's and are not compared. Traits not sent are not compared: :func:`assess_verification`
    reports those.
    """
    ours, theirs = searched.normalized(), found.traits.normalized()
    problems: list[str] = []
    if not found.placeholder_traits:
        if _letters(ours.birth_name) != _letters(theirs.birth_name):
            problems.append("birth_name")
        sent = ours.first_names_text if criteria.all_first_names else ours.first_first_name
        if not first_name_coherent(sent, theirs.birth_first_names):
            problems.append("birth_first_names")
    if ours.sex is not theirs.sex:
        problems.append("sex")
    if compare_birth_dates(ours.birth_date, theirs.birth_date) is DifferenceKind.DIFFERENT:
        problems.append("birth_date")
    if criteria.birth_place and ours.birth_place and theirs.birth_place:
        comparison = ours.compare(theirs).get("birth_place")
        if comparison is not None and comparison.kind is DifferenceKind.DIFFERENT:
            problems.append("birth_place")
    return problems


# --- Verification -----------------------------------------------------------------------------


class VerificationVerdict(StrEnum):
    """What a verification of a stored INS concluded (see :func:`assess_verification`)."""

    CONFIRMED = "confirmed"
    """INSi returned the stored INS as active, with the same traits."""
    TRAITS_DIFFER = "traits_differ"
    """Same INS, but some traits differ: check them against an identity document."""
    MATRICULE_REPLACED = "matricule_replaced"
    """The stored INS is a former one (in ``INSHISTO``): store the active INS instead."""
    MATRICULE_DIFFERS = "matricule_differs"
    """INSi found the person under another INS (matricule or OID): do not use the stored one."""
    KEY_INVALID = "key_invalid"
    """INSi returned an active matricule whose key does not check: do not qualify, report it."""
    NOT_FOUND = "not_found"
    """INSi found nobody with the stored traits (01)."""
    AMBIGUOUS = "ambiguous"
    """INSi found several people with the stored traits (02), even with every criterion."""


class InsiVerification(BaseModel):
    """The verdict of a verification, with what it was drawn from."""

    model_config = _FROZEN

    verdict: VerificationVerdict
    """The conclusion."""
    stored: INS
    """The INS that was verified."""
    result: InsiResult
    """The INSi answer the verdict rests on (the last search made)."""
    comparison: TraitComparison | None = None
    """Stored traits compared with INSi's, when INSi found one identity."""
    differing_traits: tuple[str, ...] = ()
    """Names of the traits that differ (empty unless the comparison found some)."""
    notes: tuple[str, ...] = ()
    """Plain-language remarks (an OID that differs, a former matricule …); no matricule in them."""
    searches: int = Field(default=1, ge=1)
    """How many INSi searches the verification made (more than one when an answer was 02)."""

    @property
    def confirmed(self) -> bool:
        """True only for :attr:`VerificationVerdict.CONFIRMED`."""
        return self.verdict is VerificationVerdict.CONFIRMED


def assess_verification(identity: Identity, result: InsiResult, *, searches: int = 1) -> InsiVerification:
    """Compare a stored identity with the answer to a search by its own traits.

    This is a client-side verification (INSi v1.5.0 has no verify operation): the
    active and former INS returned are compared with the stored one, then the traits
    trait by trait. The SDK never overwrites anything: the verdict says what to do.
    """
    stored = identity.ins
    if stored is None:
        raise ValidationError("the identity has no INS to verify", hint="search INSi by its traits instead")
    if result.code is InsiResultCode.NOT_FOUND:
        return InsiVerification(verdict=VerificationVerdict.NOT_FOUND, stored=stored, result=result, searches=searches)
    if result.code is InsiResultCode.AMBIGUOUS or result.identity is None:
        return InsiVerification(verdict=VerificationVerdict.AMBIGUOUS, stored=stored, result=result, searches=searches)
    found = result.identity
    comparison = identity.traits.compare(found.traits)
    differing = comparison.traits
    notes: list[str] = []
    same_matricule = stored.matricule == found.active.matricule
    same_oid = stored.oid == found.active.oid
    former = any(entry.matricule == stored.matricule and entry.oid == stored.oid for entry in found.replaced)
    if not found.active.key_valid:
        verdict = VerificationVerdict.KEY_INVALID
        notes.append("the active matricule returned by INSi fails the key check")
    elif same_matricule and same_oid:
        verdict = VerificationVerdict.CONFIRMED if comparison.matches else VerificationVerdict.TRAITS_DIFFER
    elif former:
        verdict = VerificationVerdict.MATRICULE_REPLACED
        notes.append("the stored matricule is a former one; INSi gives another active INS")
    else:
        verdict = VerificationVerdict.MATRICULE_DIFFERS
        if same_matricule:
            notes.append(
                f"same matricule but the OID differs: stored {stored.oid.value}, INSi {found.active.oid.value}"
            )
        else:
            notes.append("INSi found the person under another matricule")
    if found.placeholder_traits:
        notes.append("INSi sent placeholder traits (PROVISOIRE / MATRICULE) with a NIA: keep the local traits")
    return InsiVerification(
        verdict=verdict,
        stored=stored,
        result=result,
        comparison=comparison,
        differing_traits=differing,
        notes=tuple(notes),
        searches=searches,
    )


# --- Building requests ----------------------------------------------------------------------------


def _call_uuid(message_id: str) -> str:
    return message_id.removeprefix("urn:uuid:").removeprefix("uuid:")


def _timestamp(clock: Clock) -> str:
    return clock().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _lps_facts(settings: Settings) -> tuple[str, str]:
    """The IDAM and the emitter, or a configuration error that names the setting."""
    idam = settings.software.insi_authorisation_id
    if not idam or not idam.strip():
        raise ConfigurationError(
            "no INSi authorisation number (IDAM) is configured",
            hint="set software.insi_authorisation_id to the CNDA authorisation number of your software",
        )
    emitter = settings.insi.emitter
    if emitter is None:
        if settings.organisation is None:
            raise ConfigurationError(
                "INSi needs an emitter (ContexteBAM/ContexteLPS Emetteur)",
                hint="set [organisation] or insi.emitter in your configuration",
            )
        emitter = settings.organisation.national_id
    return idam.strip(), emitter


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _contexte_bam(context_id: str, when: str, emitter: str) -> tuple[etree._Element, etree._Element]:
    """``ctxbam:ContexteBAM`` and its (empty) ``COUVERTURE``, which a Carte Vitale search fills."""
    bam = etree.Element(f"{{{CTXBAM_NS}}}ContexteBAM", nsmap={"ctxbam": CTXBAM_NS})
    bam.set("Version", _CTXBAM_VERSION)
    _sub(bam, f"{{{CTXBAM_NS}}}Id", context_id)
    _sub(bam, f"{{{CTXBAM_NS}}}Temps", when)
    _sub(bam, f"{{{CTXBAM_NS}}}Emetteur", emitter)
    return bam, _sub(bam, f"{{{CTXBAM_NS}}}COUVERTURE")


def _contexte_lps(context_id: str, when: str, emitter: str, idam: str, settings: Settings) -> etree._Element:
    lps = etree.Element(f"{{{CTXLPS_NS}}}ContexteLPS", nsmap={"ctxlps": CTXLPS_NS})
    lps.set("Nature", "CTXLPS")
    lps.set("Version", _CTXLPS_VERSION)
    _sub(lps, f"{{{CTXLPS_NS}}}Id", context_id)
    _sub(lps, f"{{{CTXLPS_NS}}}Temps", when)
    _sub(lps, f"{{{CTXLPS_NS}}}Emetteur", emitter)
    software = _sub(lps, f"{{{CTXLPS_NS}}}LPS")
    _sub(software, f"{{{CTXLPS_NS}}}IDAM", idam).set("R", _IDAM_REF)
    _sub(software, f"{{{CTXLPS_NS}}}Version", settings.software.version)
    _sub(software, f"{{{CTXLPS_NS}}}Instance", settings.software.instance_id)
    _sub(software, f"{{{CTXLPS_NS}}}Nom", f"urn:lps:{settings.software.name}:{settings.software.version}")
    return lps


class _InsiSearch(Operation[InsiResult]):
    """What both searches share: endpoint by auth mode, context headers, parsing, faults."""

    service: ClassVar[str] = "insi"
    safe_to_repeat: ClassVar[bool] = True

    def __init__(
        self,
        *,
        auth_mode: InsiAuthMode,
        security_tokens: Sequence[etree._Element],
        patient: str | None,
        clock: Clock | None,
    ) -> None:
        self.auth_mode = InsiAuthMode(auth_mode)
        self.security_tokens = tuple(security_tokens)
        self.patient = patient
        self._clock = clock or _utc_now
        if self.auth_mode is InsiAuthMode.ASSERTION and not self.security_tokens:
            raise ConfigurationError(
                "INSi assertion mode needs an assertion for wsse:Security",
                hint="give InsiClient an assertion_provider, or set insi.auth_mode to mtls",
            )

    def endpoint(self, environment: Environment) -> str:
        """The mTLS host for certificate authentication, the other one for card assertions."""
        if self.auth_mode is InsiAuthMode.MTLS:
            return environment.insi_mtls_url
        return environment.insi_url

    def _body(self) -> etree._Element:
        raise NotImplementedError

    def _fill_couverture(self, couverture: etree._Element) -> None:
        """A traits search leaves ``COUVERTURE`` empty."""

    def build(self, call: CallContext) -> SoapRequest:
        """The two context headers, the body, and the assertions if any."""
        idam, emitter = _lps_facts(call.settings)
        when = _timestamp(self._clock)
        context_id = _call_uuid(call.message_id)
        bam, couverture = _contexte_bam(context_id, when, emitter)
        self._fill_couverture(couverture)
        lps = _contexte_lps(context_id, when, emitter, idam, call.settings)
        return SoapRequest(
            body=[self._body()],
            headers=[bam, lps],
            # mTLS requests carry no wsse:Security at all; card assertions go there as given.
            security=AssertionSecurity(*self.security_tokens) if self.security_tokens else None,
            patient=self.patient,
        )

    def new_message_id(self, settings: Settings) -> str:
        """``uuid:<uuid4>`` by default, the form every captured INSi request carries."""
        return settings.insi.message_id_prefix + str(uuid.uuid4())

    def parse(self, message: SoapMessage) -> InsiResult:
        """``RESULTAT`` → :class:`InsiResult`."""
        return parse_resultat(message.payload)

    def map_fault(self, fault: SoapFaultError) -> DmpConnectorError:
        """INSi faults → :class:`InsiServiceError` (transient for technical errors)."""
        return map_insi_fault(fault, operation=self.name)


def _insi_traits(subject: Identity | IdentityTraits) -> tuple[IdentityTraits, str | None]:
    """The traits to send, after the identity-vigilance check, and the INS for the audit pseudonym."""
    if isinstance(subject, Identity):
        subject.require_insi_allowed()
        return subject.traits, subject.ins.matricule if subject.ins is not None else None
    if isinstance(subject, IdentityTraits):
        return subject, None
    raise TypeError("an INSi search takes an Identity or IdentityTraits")


class SearchByTraits(_InsiSearch):
    """``rechercherInsAvecTraitsIdentite``: find the INS from the identity traits.

    Given an :class:`Identity`, the identity-vigilance rule is applied first: a doubtful
    or fictitious identity raises :class:`IdentityNotQualifiedError` and nothing is sent.
    The audit event names the patient (pseudonymised) only when the identity already has
    an INS; traits never reach it.
    """

    name: ClassVar[str] = "rechercherInsAvecTraitsIdentite"
    action: ClassVar[str] = ACTION_SEARCH_TRAITS

    def __init__(
        self,
        subject: Identity | IdentityTraits,
        *,
        criteria: SearchCriteria | None = None,
        auth_mode: InsiAuthMode = InsiAuthMode.MTLS,
        security_tokens: Sequence[etree._Element] = (),
        clock: Clock | None = None,
    ) -> None:
        traits, patient = _insi_traits(subject)
        problems = []
        if traits.sex not in (Sex.M, Sex.F):
            problems.append("sex: INSi searches take M or F only")
        if not traits.birth_first_names:
            problems.append("birth_first_names: at least one birth first name is needed")
        if not traits.birth_name:
            problems.append("birth_name: the birth name is needed")
        if problems:
            raise ValidationError("these traits cannot be sent to INSi", problems=problems)
        self.traits = traits
        self.criteria = criteria or SearchCriteria()
        super().__init__(auth_mode=auth_mode, security_tokens=security_tokens, patient=patient, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(criteria={self.criteria!r}, auth_mode={self.auth_mode.value!r})"

    def parse(self, message: SoapMessage) -> InsiResult:
        """``RESULTAT`` → :class:`InsiResult`; a 00 about another person than the traits searched raises.

        INSi matched the traits sent: an identity that disagrees with them is another person's
        (or a broken answer), and is refused as :class:`~dmp_connector.errors.PatientMismatchError`.
        """
        result = parse_resultat(message.payload)
        if result.identity is not None:
            problems = searched_traits_problems(self.traits, self.criteria, result.identity)
            if problems:
                raise PatientMismatchError(
                    f"INSi answered {self.name} with an identity that is not the person searched "
                    f"({', '.join(problems)} differ)",
                    service=self.service,
                    operation=self.name,
                    problems=problems,
                )
        return result

    def _body(self) -> etree._Element:
        """``RECSANSVITALE``: NomNaissance, Prenom, Sexe, DateNaissance, [LieuNaissance], in this order."""
        q = f"{{{INSI_RECSANS_NS}}}"
        body = etree.Element(f"{q}RECSANSVITALE", nsmap={None: INSI_RECSANS_NS})  # type: ignore[dict-item]
        traits = self.traits
        first_names = " ".join(traits.birth_first_names) if self.criteria.all_first_names else traits.first_first_name
        _sub(body, f"{q}NomNaissance", traits.birth_name)
        _sub(body, f"{q}Prenom", first_names)
        _sub(body, f"{q}Sexe", traits.sex.value)
        _sub(body, f"{q}DateNaissance", traits.birth_date.iso())
        if self.criteria.birth_place and traits.birth_place:
            _sub(body, f"{q}LieuNaissance", traits.birth_place)
        return body


class SearchByCarteVitale(_InsiSearch):
    """``rechercherInsAvecCarteVitale``: find the INS of the beneficiary read from a Carte Vitale.

    The card's data goes in the body (``RECVITALE``) and in ``ContexteBAM/COUVERTURE``.
    The Vitale assertion the card middleware produces, if any, goes in ``security_tokens``
    beside the professional's assertion.
    """

    name: ClassVar[str] = "rechercherInsAvecCarteVitale"
    action: ClassVar[str] = ACTION_SEARCH_CARTE_VITALE

    def __init__(
        self,
        beneficiary: CarteVitaleBeneficiary,
        *,
        auth_mode: InsiAuthMode = InsiAuthMode.MTLS,
        security_tokens: Sequence[etree._Element] = (),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(beneficiary, CarteVitaleBeneficiary):
            raise TypeError("SearchByCarteVitale takes a CarteVitaleBeneficiary")
        self.beneficiary = beneficiary
        super().__init__(auth_mode=auth_mode, security_tokens=security_tokens, patient=None, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(auth_mode={self.auth_mode.value!r})"

    def _body(self) -> etree._Element:
        """``RECVITALE``: MatriculeIndividu?, MatriculeOD, NomNaissance?, DateNaissance, RangNaissance."""
        q = f"{{{INSI_RECVIT_NS}}}"
        body = etree.Element(f"{q}RECVITALE", nsmap={None: INSI_RECVIT_NS})  # type: ignore[dict-item]
        card = self.beneficiary
        for local, nir in (("MatriculeIndividu", card.beneficiary), ("MatriculeOD", card.holder)):
            if nir is None:
                continue
            matricule = _sub(body, f"{q}{local}")
            _sub(matricule, f"{q}NumIdentifiant", nir.number)
            if nir.key is not None:
                _sub(matricule, f"{q}Cle", nir.key)
        if card.birth_name is not None:
            _sub(body, f"{q}NomNaissance", _upper_ascii(card.birth_name))
        _sub(body, f"{q}DateNaissance", card.birth_date)
        _sub(body, f"{q}RangNaissance", str(card.birth_rank))
        return body

    def parse(self, message: SoapMessage) -> InsiResult:
        """``RESULTAT`` → :class:`InsiResult`; a 00 whose birth date or name is not the card's raises."""
        result = parse_resultat(message.payload)
        found = result.identity
        if found is not None:
            card = self.beneficiary
            problems: list[str] = []
            try:
                date_kind = compare_birth_dates(BirthDate.parse(card.birth_date), found.traits.birth_date)
            except (DmpConnectorError, ValueError):
                date_kind = None
            if date_kind is DifferenceKind.DIFFERENT:
                problems.append("birth_date")
            if card.birth_name is not None and not found.placeholder_traits:
                ours = _upper_ascii(card.birth_name)
                if _letters(ours) != _letters(found.traits.birth_name):
                    problems.append("birth_name")
            if problems:
                raise PatientMismatchError(
                    f"INSi answered {self.name} with an identity that is not the card's beneficiary "
                    f"({', '.join(problems)} differ)",
                    service=self.service,
                    operation=self.name,
                    problems=problems,
                )
        return result

    def _fill_couverture(self, couverture: etree._Element) -> None:
        """``ASSURE/Id{Num, Cle}`` and ``BENEFICIAIRE{Nir?, DateNai, Rang}``."""
        q = f"{{{CTXBAM_NS}}}"
        card = self.beneficiary
        holder = _sub(_sub(couverture, f"{q}ASSURE"), f"{q}Id")
        _sub(holder, f"{q}Num", card.holder.number)
        if card.holder.key is not None:
            _sub(holder, f"{q}Cle", card.holder.key)
        beneficiary = _sub(couverture, f"{q}BENEFICIAIRE")
        if card.beneficiary is not None:
            nir = _sub(beneficiary, f"{q}Nir")
            _sub(nir, f"{q}Num", card.beneficiary.number)
            if card.beneficiary.key is not None:
                _sub(nir, f"{q}Cle", card.beneficiary.key)
        _sub(beneficiary, f"{q}DateNai", card.birth_date)
        _sub(beneficiary, f"{q}Rang", str(card.birth_rank))


def _upper_ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("Œ", "OE").replace("œ", "oe"))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).upper().split())
