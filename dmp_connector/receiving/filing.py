"""To which local patient a received document belongs, and whether it is already filed.

Identity vigilance decides, not resemblance. A document is **matched** to a local patient only
when all of this holds:

* the document names an INS (CDA header, else its XDS ``patientId``) and the sender did not say
  it was unqualified (``X-MSS-INS: N``);
* exactly one local identity carries that same INS (matricule and OID), with a valid key;
* that local identity is *qualifiée* (QUAL): only a qualified INS may be relied on (RNIV);
  it is neither doubtful nor fictitious;
* the document gives the traits and they are coherent with the local ones: the same birth name,
  birth first names, first first name, sex, birth date; a birth place the document leaves out is
  accepted, a different one is not (see :class:`MatchRules` for the two documented tolerances).

Other local records with the same traits but without that INS do not stop the match (the INS
decides); they are listed as :attr:`FilingVerdict.look_alikes`, a probable duplicate record for the
vendor's identity-vigilance team.

Otherwise the verdict is **to check** — a person decides — when something points at local
patients (the same INS on a non-qualified identity, several candidates, the same traits without
the INS, traits that differ), and **unknown** when nothing does. A verdict never names a single
patient unless it is matched: a look-alike is only ever a candidate to check.

Reasons are codes and trait names, never values: a verdict may be logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.ins import INS, DifferenceKind, Identity, IdentityStatus, IdentityTraits

from .documents import IncomingDocument

__all__ = [
    "Duplicate",
    "DuplicateKind",
    "FiledDocument",
    "FilingStatus",
    "FilingVerdict",
    "LocalPatient",
    "MatchReason",
    "MatchRules",
    "find_duplicate",
    "match_patient",
]


class LocalPatient(BaseModel):
    """One of the vendor's patient records, as the matching needs it."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    local_id: str
    """The vendor's own key for this record (returned in the verdict, never interpreted)."""
    identity: Identity = Field(repr=False)
    """Its identity: traits, INS, RNIV status and attributes."""


class FilingStatus(StrEnum):
    """The verdict's outcome."""

    MATCHED = "matched"
    """One local patient, same INS, qualified, traits coherent: may be filed there."""
    TO_CHECK = "to_check"
    """Candidates exist but a person must decide (never file automatically)."""
    UNKNOWN = "unknown"
    """No local patient is named by this document."""


class MatchReason(StrEnum):
    """Why a verdict is what it is (codes only: safe to log)."""

    SAME_INS_COHERENT_TRAITS = "same_ins_coherent_traits"
    DOCUMENT_WITHOUT_INS = "document_without_ins"
    SENDER_INS_NOT_QUALIFIED = "sender_ins_not_qualified"
    DOCUMENT_INS_KEY_INVALID = "document_ins_key_invalid"
    NO_TRAITS_IN_DOCUMENT = "no_traits_in_document"
    SEVERAL_CANDIDATES = "several_candidates"
    LOCAL_IDENTITY_NOT_QUALIFIED = "local_identity_not_qualified"
    LOCAL_IDENTITY_DOUBTFUL = "local_identity_doubtful_or_fictitious"
    TRAITS_DIFFER = "traits_differ"
    SAME_TRAITS_WITHOUT_SAME_INS = "same_traits_without_same_ins"
    LOCAL_LOOK_ALIKES = "local_look_alikes"
    NO_CANDIDATE = "no_candidate"


class MatchRules(BaseModel):
    """The tolerances of the trait comparison; the defaults follow our reading of the RNIV (a setting, said so)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    accept_separators: bool = True
    """Names that differ only by spaces, hyphens or apostrophes ("DE VINCI" / "DEVINCI") are coherent."""
    accept_missing_birth_place: bool = True
    """A birth place the document leaves out (or gives as unknown, 99999) does not stop a match."""


class FilingVerdict(BaseModel):
    """Where a received document goes."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    status: FilingStatus
    """Matched, to check, or unknown."""
    patient: LocalPatient | None = None
    """The local patient, only when matched."""
    candidates: tuple[LocalPatient, ...] = ()
    """For "to check": the records a person should look at (never chosen for them)."""
    look_alikes: tuple[LocalPatient, ...] = ()
    """For a match: other local records with the same traits but not this INS — probably a duplicate record
    in the vendor's base, to merge by its identity-vigilance procedure (the document is not filed to them)."""
    reasons: tuple[MatchReason, ...] = ()
    """Why."""
    differing_traits: tuple[str, ...] = ()
    """For traits that differ: their names (``birth_name``, ``birth_date`` …), never their values."""

    @property
    def matched(self) -> bool:
        """True when the document may be filed to :attr:`patient` without a person deciding."""
        return self.status is FilingStatus.MATCHED


Candidates = Iterable[LocalPatient] | Callable[[IncomingDocument], Iterable[LocalPatient]]
"""The vendor's records to match against: a list, or a callback that looks them up for a document
(by INS and by traits, as its database allows)."""


def _same_ins(a: INS | None, b: INS | None) -> bool:
    return a is not None and b is not None and a.matricule == b.matricule and a.oid == b.oid


def _serious(document: IdentityTraits, local: IdentityTraits, rules: MatchRules) -> tuple[str, ...]:
    """The traits that differ beyond the accepted tolerances."""
    differing = []
    for difference in local.compare(document).differences:
        if difference.kind is DifferenceKind.SEPARATORS and rules.accept_separators:
            continue
        if difference.trait == "birth_place" and rules.accept_missing_birth_place:
            missing_in_document = difference.theirs is None or difference.theirs == "99999"
            if missing_in_document and difference.kind in (DifferenceKind.MISSING, DifferenceKind.LESS_PRECISE):
                continue
        differing.append(difference.trait)
    return tuple(differing)


def match_patient(
    document: IncomingDocument, candidates: Candidates, *, rules: MatchRules | None = None
) -> FilingVerdict:
    """The verdict for ``document`` against the vendor's local identities (see the module's rules)."""
    rules = rules or MatchRules()
    pool = tuple(candidates(document) if callable(candidates) else candidates)
    ins, traits = document.ins, document.traits
    same_ins = tuple(p for p in pool if _same_ins(p.identity.ins, ins))
    look_alikes = (
        tuple(p for p in pool if p not in same_ins and not _serious(traits, p.identity.traits, rules))
        if traits is not None
        else ()
    )
    if ins is None or not same_ins:
        first = [MatchReason.DOCUMENT_WITHOUT_INS] if ins is None else []
        if look_alikes:
            why = (*first, MatchReason.SAME_TRAITS_WITHOUT_SAME_INS)
            return FilingVerdict(status=FilingStatus.TO_CHECK, candidates=look_alikes, reasons=why)
        return FilingVerdict(status=FilingStatus.UNKNOWN, reasons=(*first, MatchReason.NO_CANDIDATE))
    to_check = tuple(dict.fromkeys(same_ins + look_alikes))
    if len(same_ins) > 1:
        return _check(to_check, MatchReason.SEVERAL_CANDIDATES)
    local = same_ins[0]
    reasons: list[MatchReason] = []
    if document.sender_ins_qualified is False:
        reasons.append(MatchReason.SENDER_INS_NOT_QUALIFIED)
    if not ins.key_valid:
        reasons.append(MatchReason.DOCUMENT_INS_KEY_INVALID)
    if local.identity.doubtful or local.identity.fictitious:
        reasons.append(MatchReason.LOCAL_IDENTITY_DOUBTFUL)
    if local.identity.status is not IdentityStatus.QUAL:
        reasons.append(MatchReason.LOCAL_IDENTITY_NOT_QUALIFIED)
    differing: tuple[str, ...] = ()
    if traits is None:
        reasons.append(MatchReason.NO_TRAITS_IN_DOCUMENT)
    else:
        differing = _serious(traits, local.identity.traits, rules)
        if differing:
            reasons.append(MatchReason.TRAITS_DIFFER)
    if reasons:
        return FilingVerdict(
            status=FilingStatus.TO_CHECK, candidates=to_check, reasons=tuple(reasons), differing_traits=differing
        )
    matched = (MatchReason.SAME_INS_COHERENT_TRAITS, *((MatchReason.LOCAL_LOOK_ALIKES,) if look_alikes else ()))
    return FilingVerdict(status=FilingStatus.MATCHED, patient=local, look_alikes=look_alikes, reasons=matched)


def _check(candidates: tuple[LocalPatient, ...], reason: MatchReason) -> FilingVerdict:
    return FilingVerdict(status=FilingStatus.TO_CHECK, candidates=candidates, reasons=(reason,))


# --------------------------------------------------------------------------- duplicates


class FiledDocument(BaseModel):
    """What the vendor keeps of a document it filed, to recognise it or its versions later."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    document_id: str
    """The document's id (:attr:`IncomingDocument.document_id`)."""
    set_id: str | None = None
    """Its setId."""
    version: int | None = None
    """Its version number."""
    local_id: str | None = None
    """Where the vendor filed it (its own key), returned as is."""

    @classmethod
    def of(cls, document: IncomingDocument, *, local_id: str | None = None) -> FiledDocument:
        """The record to keep for ``document`` once filed (it must have an id)."""
        if document.document_id is None:
            raise ValueError("a document without an id cannot be recorded as filed")
        return cls(
            document_id=document.document_id, set_id=document.set_id, version=document.version, local_id=local_id
        )


class DuplicateKind(StrEnum):
    """How a received document relates to one already filed."""

    SAME_DOCUMENT = "same_document"
    """The same document id: received again (an MSSanté copy of a DMP document, a resend)."""
    NEWER_VERSION = "newer_version"
    """A newer version of a filed document (same setId, higher version, or it names it as replaced)."""
    OLDER_VERSION = "older_version"
    """An older version of a filed document: the filed one supersedes it."""
    CONFLICTING_VERSION = "conflicting_version"
    """Same setId and version as a filed document but another id: a person must look."""


class Duplicate(BaseModel):
    """The filed document a received one duplicates or versions."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    kind: DuplicateKind
    """How they relate."""
    filed: FiledDocument
    """The filed document."""


def find_duplicate(document: IncomingDocument, filed: Iterable[FiledDocument]) -> Duplicate | None:
    """The filed document ``document`` repeats or versions, or None (the same id first, then its versions)."""
    records = tuple(filed)
    for record in records:
        if document.document_id is not None and record.document_id == document.document_id:
            return Duplicate(kind=DuplicateKind.SAME_DOCUMENT, filed=record)
    for record in records:
        if document.replaces is not None and record.document_id == document.replaces:
            return Duplicate(kind=DuplicateKind.NEWER_VERSION, filed=record)
    if document.set_id is None:
        return None
    versions = [r for r in records if r.set_id == document.set_id]
    for record in sorted(versions, key=lambda r: r.version or 0, reverse=True):
        if record.version is None or document.version is None:
            continue
        if document.version > record.version:
            return Duplicate(kind=DuplicateKind.NEWER_VERSION, filed=record)
        if document.version < record.version:
            return Duplicate(kind=DuplicateKind.OLDER_VERSION, filed=record)
        return Duplicate(kind=DuplicateKind.CONFLICTING_VERSION, filed=record)
    return None
