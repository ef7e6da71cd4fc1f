"""PAM-FR ADT messages that carry identity changes, read into typed events (and written, for A28/A31/A08).

The identity feed of IHE PAM (ITI-30) and the patient encounter feed (ITI-31) in the French
extension 2.11: MSH-12 ``2.5^FRA^2.11``, MSH-21 ``2.11^IHE_FRANCE-2.11-PAM``. Events read:

* :class:`IdentityEvent` — A28 (create), A31 (update), A08 (update from the encounter feed),
  and any other ADT event with a PID (A01, A04 …): the patient as :func:`~.pid.read_pid` reads it;
* :class:`IdentifierChange` — A47: the PID's new identifier list, MRG-1 the one it replaces (an INS
  change, its removal when PID-3 sends ``""``, a QUAL → RECUP downgrade);
* :class:`PatientMerge` — A40: each PID is a surviving patient and its MRG-1 the identifiers merged into it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from dmp_connector.errors import InvalidIdentifierError
from dmp_connector.ins import INS, Identity, InsOid

from ._er7 import Message, Repetition, Segment, component_text, decode, parse, sub_text
from .errors import Hl7ParseError
from .pid import DEFAULT_STATUS_MAPPING, LocalId, PidPatient, StatusMapping, pid_segment, read_pid
from .settings import Hl7Settings

__all__ = [
    "AdtEvent",
    "AdtEventKind",
    "IdentifierChange",
    "IdentityEvent",
    "MergedIds",
    "PatientMerge",
    "build_adt",
    "read_adt",
]


class AdtEventKind(StrEnum):
    """What an ADT trigger event means for the identity."""

    CREATE = "create"
    """A28: a person is created in the identity source."""
    UPDATE = "update"
    """A31 / A08: the identity's traits, identifiers or status changed."""
    IDENTIFIER_CHANGE = "identifier_change"
    """A47: an identifier (the INS) is changed or removed."""
    MERGE = "merge"
    """A40: two identities were one person; the merged one disappears."""
    OTHER = "other"
    """An encounter event (A01, A04 …) that carries the patient's identity as it stands."""


_KINDS = {
    "A28": AdtEventKind.CREATE,
    "A31": AdtEventKind.UPDATE,
    "A08": AdtEventKind.UPDATE,
    "A47": AdtEventKind.IDENTIFIER_CHANGE,
    "A40": AdtEventKind.MERGE,
}


class MergedIds(BaseModel):
    """MRG-1: identifiers that no longer stand for a patient of their own."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    ins: INS | None = None
    """The INS in MRG-1 (type ``INS``), if any."""
    local_ids: tuple[LocalId, ...] = ()
    """The other identifiers (IPP …)."""


class AdtEvent(BaseModel):
    """What every ADT message says: its trigger, control id and time."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    trigger: str
    """MSH-9.2, e.g. ``A31``."""
    kind: AdtEventKind
    """What the trigger means for the identity."""
    control_id: str
    """MSH-10, to acknowledge."""
    recorded_at: str = ""
    """EVN-2 as sent (``YYYYMMDDHHMMSS``)."""


class IdentityEvent(AdtEvent):
    """A28, A31, A08 and encounter events: the patient as the sender now knows them."""

    patient: PidPatient
    """The PID, read under the PAM-FR rules."""


class IdentifierChange(AdtEvent):
    """A47: ``patient`` holds the new identifier list, ``previous`` the one it replaces (MRG-1)."""

    patient: PidPatient
    """The PID (new identifiers)."""
    previous: MergedIds
    """MRG-1 (old identifiers)."""
    ins_removed: bool = False
    """True when PID-3 sent the INS as ``""`` (deletion)."""


class PatientMerge(AdtEvent):
    """A40: each surviving patient with the identifiers merged into it."""

    merges: tuple[tuple[PidPatient, MergedIds], ...]
    """(surviving patient, merged identifiers) for each PID/MRG pair."""


def _read_mrg(segment: Segment) -> MergedIds:
    ins: INS | None = None
    locals_: list[LocalId] = []
    for cx in segment.field(1):
        ident = component_text(cx, 1)
        if not ident:
            continue
        if component_text(cx, 5) == "INS":
            try:
                ins = INS.parse(ident, oid=InsOid.parse(sub_text(cx, 4, 2)))
            except InvalidIdentifierError as exc:
                raise InvalidIdentifierError(f"MRG-1: the INS is not valid: {exc.message}") from None
            continue
        locals_.append(
            LocalId(
                id=ident,
                namespace=sub_text(cx, 4, 1),
                authority_id=sub_text(cx, 4, 2),
                authority_id_type=sub_text(cx, 4, 3),
                type_code=component_text(cx, 5) or "PI",
            )
        )
    return MergedIds(ins=ins, local_ids=tuple(locals_))


def _ins_removed(pid: Segment) -> bool:
    return any(component_text(cx, 1) == '""' and component_text(cx, 5) == "INS" for cx in pid.field(3))


def read_adt(
    data: bytes | str | Message,
    *,
    mapping: StatusMapping = DEFAULT_STATUS_MAPPING,
    max_bytes: int = 1_000_000,
) -> IdentityEvent | IdentifierChange | PatientMerge:
    """The typed event an ADT message carries; :class:`Hl7ParseError` if it is not ADT or has no PID."""
    if isinstance(data, Message):
        message = data
    elif isinstance(data, bytes):
        message = decode(data, max_bytes=max_bytes)
    else:
        if len(data) > max_bytes or len(data.encode("utf-8", "replace")) > max_bytes:
            raise Hl7ParseError(f"the message is larger than {max_bytes} bytes")
        message = parse(data)
    msh = message.msh
    if msh.get(9, 1, 1) != "ADT":
        raise Hl7ParseError("not an ADT message (MSH-9)")
    trigger = msh.get(9, 1, 2)
    kind = _KINDS.get(trigger, AdtEventKind.OTHER)
    evn = message.first("EVN")
    control_id = msh.get(10)
    recorded_at = evn.get(2) if evn is not None else ""
    if kind is AdtEventKind.MERGE:
        pairs: list[tuple[PidPatient, MergedIds]] = []
        current: PidPatient | None = None
        for segment in message.segments:
            if segment.name == "PID":
                if current is not None:
                    raise Hl7ParseError("A40: a PID without its MRG")
                current = read_pid(segment, mapping=mapping)
            elif segment.name == "MRG":
                if current is None:
                    raise Hl7ParseError("A40: an MRG segment before any PID")
                pairs.append((current, _read_mrg(segment)))
                current = None
        if current is not None:  # a surviving patient with nothing merged into it: the merge is incomplete
            raise Hl7ParseError("A40: a PID without its MRG")
        if not pairs:
            raise Hl7ParseError("A40: no PID/MRG pair")
        return PatientMerge(
            trigger=trigger, kind=kind, control_id=control_id, recorded_at=recorded_at, merges=tuple(pairs)
        )
    pid = message.require("PID")
    patient = read_pid(pid, mapping=mapping)
    if kind is AdtEventKind.IDENTIFIER_CHANGE:
        mrg = message.require("MRG")
        return IdentifierChange(
            trigger=trigger,
            kind=kind,
            control_id=control_id,
            recorded_at=recorded_at,
            patient=patient,
            previous=_read_mrg(mrg),
            ins_removed=_ins_removed(pid),
        )
    return IdentityEvent(trigger=trigger, kind=kind, control_id=control_id, recorded_at=recorded_at, patient=patient)


_PAM_VERSION: Repetition = (("2.5",), ("FRA",), ("2.11",))
_PAM_PROFILE: Repetition = (("2.11",), ("IHE_FRANCE-2.11-PAM",))


def build_adt(
    trigger: str,
    identity: Identity,
    *,
    control_id: str,
    settings: Hl7Settings | None = None,
    local_ids: Sequence[LocalId] = (),
    now: dt.datetime | None = None,
    mapping: StatusMapping = DEFAULT_STATUS_MAPPING,
) -> Message:
    """An identity-feed message (A28 create, A31 update, A08 update) for ``identity``, PAM-FR 2.11.

    The PID follows :func:`~.pid.pid_segment` (the INS only for a QUAL identity). A47 and A40 need
    an MRG this builder does not write: they are read (:func:`read_adt`), not sent, by this SDK.
    """
    if trigger not in ("A28", "A31", "A08"):
        raise ValueError("build_adt writes A28, A31 or A08")
    settings = settings or Hl7Settings()
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S")
    structure = "ADT_A05" if trigger in ("A28", "A31") else "ADT_A01"
    msh = settings.msh(("ADT", trigger, structure), control_id=control_id, stamp=stamp)
    msh.set(12, _PAM_VERSION)
    msh.set(21, _PAM_PROFILE)
    evn = Segment(name="EVN")
    evn.set(2, stamp)
    pv1 = Segment(name="PV1")
    pv1.set(1, "1").set(2, "N")
    segments = [msh, evn, pid_segment(identity, local_ids=local_ids, mapping=mapping), pv1]
    return Message(segments=segments)
