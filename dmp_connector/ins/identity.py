"""An identity as identity vigilance (RNIV) sees it: traits, maybe an INS, a status and attributes.

Four exclusive statuses (RNIV EXI SI 07)::

                 INSi call                 ID document checked      may share the matricule
    PROV         no                        no                       no
    RECUP        yes                       no                       no (stored, not shared)
    VALI         no                        yes                      no
    QUAL         yes (or the ApCV)         yes                      yes — the only one

Two guards follow, and the rest of the SDK relies on them:

* a *doubtful* or *fictitious* identity stays PROV and must not call INSi (EXI SI 09):
  :meth:`Identity.require_insi_allowed`;
* only a QUAL identity may put its matricule in a CDA document, a DMP call or a patient's
  MSSanté address: :meth:`Identity.require_qualified`.

The model refuses combinations the rules forbid, so that an ``Identity`` that exists is a
legal one. ``model_copy(update=…)`` skips validation in pydantic: use :meth:`Identity.updated`.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector.errors import IdentityNotQualifiedError, InvalidIdentifierError, ValidationError

from .matricule import INS, InsKind, InsOid, MatriculeRules, compute_key
from .traits import (
    BirthDate,
    DifferenceKind,
    IdentityTraits,
    Sex,
    TraitComparison,
    TraitDifference,
    first_name_coherent,
    normalize_name,
    split_first_names,
)

# The whole identity model is importable from here as well as from dmp_connector.ins.
__all__ = [
    "INS",
    "BirthDate",
    "DifferenceKind",
    "Identity",
    "IdentityDocument",
    "IdentityDocumentKind",
    "IdentityStatus",
    "IdentityTraits",
    "InsKind",
    "InsOid",
    "MatriculeRules",
    "Sex",
    "TraitComparison",
    "TraitDifference",
    "compute_key",
    "first_name_coherent",
    "normalize_name",
    "split_first_names",
]


class IdentityStatus(StrEnum):
    """The RNIV identity statuses (the FR Core ``identity-status`` codes, not HL7 v2's older meaning of VALI)."""

    PROV = "PROV"
    """Identité provisoire: neither retrieved from INSi nor checked against an ID document."""
    RECUP = "RECUP"
    """Identité récupérée: INS retrieved from INSi, ID document not checked."""
    VALI = "VALI"
    """Identité validée: checked against a high-trust ID document, no INS retrieved."""
    QUAL = "QUAL"
    """Identité qualifiée: both; the only status whose INS may be shared."""

    @property
    def ins_retrieved(self) -> bool:
        """True for RECUP and QUAL, the statuses that hold an INS retrieved from INSi (or the ApCV)."""
        return self in (IdentityStatus.RECUP, IdentityStatus.QUAL)

    @property
    def document_checked(self) -> bool:
        """True for VALI and QUAL, the statuses checked against a high-trust ID document."""
        return self in (IdentityStatus.VALI, IdentityStatus.QUAL)


class IdentityDocumentKind(StrEnum):
    """The identity documents a desk checks (RNIV); values are FR Core's "mode validation identité" codes.

    The first six are high-trust and qualify an identity on their own. A birth certificate or a
    family record book only does with a high-trust document of a parent or guardian (a minor):
    pass it as ``accompanied_by``. The RNIV's other special cases (a care home resident's Carte
    Vitale with photo …) are not modelled; record them in your software.
    """

    NATIONAL_ID_CARD = "CN"
    """``CN``: a national identity card (France, EU/EEA, Switzerland …)."""
    ELECTRONIC_ID_CARD = "eCN"
    """``eCN``: the electronic national identity card."""
    PASSPORT = "PA"
    """``PA``: a passport."""
    RESIDENCE_PERMIT = "CS"
    """``CS``: a residence permit (carte de séjour)."""
    APCV = "AV"
    """``AV``: the Carte Vitale application (ApCV)."""
    EIDAS_ID = "IN"
    """``IN``: an electronic identity of eIDAS level substantial or high."""
    BIRTH_CERTIFICATE = "AN"
    """``AN``: a birth certificate; only with a parent's or guardian's high-trust document."""
    FAMILY_RECORD_BOOK = "LF"
    """``LF``: a family record book (livret de famille); only with a parent's or guardian's high-trust document.
    The code is the SDK's own [I]: map it when you write the identity to FR Core."""

    @property
    def high_trust(self) -> bool:
        """True for the documents that qualify an identity on their own."""
        return self not in (IdentityDocumentKind.BIRTH_CERTIFICATE, IdentityDocumentKind.FAMILY_RECORD_BOOK)


class IdentityDocument(BaseModel):
    """The identity document checked at the desk when an identity was validated or qualified (RNIV)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    kind: IdentityDocumentKind = Field(description="The document checked.")
    accompanied_by: IdentityDocumentKind | None = Field(
        default=None, description="The high-trust document of a parent or guardian that went with a minor's document."
    )
    checked_on: dt.date = Field(description="The day the document was checked.")


class Identity(BaseModel):
    """A patient identity with its status; construction refuses what the RNIV forbids.

    Refused: RECUP or QUAL without an INS; a doubtful or fictitious identity with any
    status but PROV (EXI SI 09); doubtful and fictitious together. An INS on a PROV or VALI
    identity is kept (read from a received document, or left on an identity that was
    downgraded) but cannot be used: :meth:`require_qualified` refuses it.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    traits: IdentityTraits
    """The identity traits."""
    ins: INS | None = None
    """The INS, when one was retrieved (or read)."""
    status: IdentityStatus = IdentityStatus.PROV
    """RNIV status."""
    doubtful: bool = False
    """Attribut "identité douteuse": the identity may be wrong or usurped; forces PROV, forbids INSi."""
    fictitious: bool = False
    """Attribut "identité fictive" (anonymous care, training …): forces PROV, forbids INSi."""
    homonym: bool = False
    """Attribut "identité homonyme": others share close traits; may go with doubtful, changes no rule here."""
    document: IdentityDocument | None = None
    """The identity document checked when the identity became VALI or QUAL (:meth:`qualify` records it)."""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems = []
        if self.status.ins_retrieved and self.ins is None:
            problems.append(f"a {self.status.value} identity holds the INS it was retrieved with; none is given")
        if (self.doubtful or self.fictitious) and self.status is not IdentityStatus.PROV:
            attribute = "doubtful" if self.doubtful else "fictitious"
            problems.append(f"a {attribute} identity can only be PROV, not {self.status.value} (RNIV EXI SI 09)")
        if self.doubtful and self.fictitious:
            problems.append("an identity cannot be both doubtful and fictitious (RNIV)")
        if problems:
            message = "this identity breaks the identity-vigilance rules: " + "; ".join(problems)
            raise ValidationError(message, problems=problems)
        return self

    def updated(self, **changes: Any) -> Identity:
        """A copy with ``changes`` applied and every rule checked again (unlike ``model_copy``)."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        return type(self).model_validate(data)

    def qualify(
        self,
        document: IdentityDocumentKind | str,
        *,
        accompanied_by: IdentityDocumentKind | str | None = None,
        checked_on: dt.date | None = None,
    ) -> Identity:
        """This identity after its identity document was checked at the desk: RECUP -> QUAL, PROV -> VALI.

        Records which document (:attr:`document`). Each rule broken is a typed error and
        changes nothing: a doubtful or fictitious identity (EXI SI 09), or one already checked
        (VALI, QUAL), is an :class:`IdentityNotQualifiedError`; a document that does not qualify
        on its own without ``accompanied_by`` (or with one that is not high-trust), a
        ``checked_on`` in the future, a :class:`ValidationError`; an INS with a wrong key, an
        :class:`InvalidIdentifierError` (retrieve it again from INSi first).
        """
        try:
            kind = IdentityDocumentKind(document)
            partner = IdentityDocumentKind(accompanied_by) if accompanied_by is not None else None
        except ValueError as exc:
            known = ", ".join(f"{k.name} ({k.value})" for k in IdentityDocumentKind)
            raise ValidationError(f"not an identity document the RNIV lists; one of: {known}") from exc
        if not self.may_call_insi():
            attribute = "doubtful" if self.doubtful else "fictitious"
            raise IdentityNotQualifiedError(
                f"an identity marked {attribute} stays PROV whatever document is shown (RNIV EXI SI 09)",
                hint="resolve the doubt (or create the real identity) first",
            )
        if self.status.document_checked:
            raise IdentityNotQualifiedError(
                f"this identity is already {self.status.value}: its document was checked",
                hint="to record another document, update the identity with updated(document=...)",
            )
        if not kind.high_trust and (partner is None or not partner.high_trust):
            raise ValidationError(
                f"a {kind.name.lower().replace('_', ' ')} qualifies an identity only with a parent's or guardian's"
                " high-trust document (accompanied_by=IdentityDocumentKind.NATIONAL_ID_CARD, ...)"
            )
        if kind.high_trust and partner is not None:
            raise ValidationError(f"a {kind.name.lower().replace('_', ' ')} qualifies alone: no accompanied_by")
        today = dt.date.today()
        day = checked_on or today
        if day > today:
            raise ValidationError("a document cannot have been checked in the future")
        if self.ins is not None and self.status is IdentityStatus.RECUP and not self.ins.key_valid:
            raise InvalidIdentifierError(
                "the INS of this identity has a wrong key: it cannot be qualified",
                hint="retrieve the INS again from INSi",
            )
        status = IdentityStatus.QUAL if self.status is IdentityStatus.RECUP else IdentityStatus.VALI
        return self.updated(status=status, document=IdentityDocument(kind=kind, accompanied_by=partner, checked_on=day))

    def may_call_insi(self) -> bool:
        """False for a doubtful or fictitious identity (RNIV EXI SI 09); True otherwise."""
        return not (self.doubtful or self.fictitious)

    def require_insi_allowed(self) -> None:
        """Raise :class:`IdentityNotQualifiedError` when INSi must not be called for this identity."""
        if self.may_call_insi():
            return
        attribute = "doubtful" if self.doubtful else "fictitious"
        raise IdentityNotQualifiedError(
            f"INSi may not be called for an identity marked {attribute} (RNIV EXI SI 09)",
            hint="resolve the doubt (or create the real identity) before searching INSi",
        )

    def require_qualified(self, purpose: str) -> INS:
        """The INS, if this identity may carry it in ``purpose`` ("a CDA document", "a DMP call" …).

        Raises :class:`IdentityNotQualifiedError` unless the status is QUAL, and
        :class:`InvalidIdentifierError` if the INS was read leniently with a wrong key.
        """
        if self.status is not IdentityStatus.QUAL or self.ins is None:
            raise IdentityNotQualifiedError(
                f"only a qualified (QUAL) identity may carry its INS in {purpose}; this one is {self.status.value}",
                hint=_QUALIFY_HINT.get(self.status, ""),
            )
        if not self.ins.key_valid:
            raise InvalidIdentifierError(
                f"the INS of this identity has a wrong key and cannot go into {purpose}",
                hint="retrieve the INS again from INSi",
            )
        return self.ins


_QUALIFY_HINT = {
    IdentityStatus.PROV: "retrieve the INS from INSi and check a high-trust ID document to qualify it",
    IdentityStatus.RECUP: "check a high-trust ID document (passport, ID card, residence permit) to qualify it",
    IdentityStatus.VALI: "retrieve the INS from INSi to qualify it",
}
