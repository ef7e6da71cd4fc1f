"""Acknowledgements: the HL7 ACK (original mode) and the volet's business acks (ZAM).

* ``ACK^T02^ACK`` (``T10``/``T04``/``Z01``… likewise): ``MSA|AA|<the message's MSH-10>``; ``AE``/``AR``
  with an ERR segment (ERR-3 table 0357, ERR-4 severity, ERR-5 the application's code).
* ``ZAM^Z01^ZAM_Z01`` DMP reception, ``ZAM^Z02^ZAM_Z01`` MSSanté reception (DSN), ``ZAM^Z03^ZAM_Z01``
  MSSanté read (MDN): a new message from the platform back to the document's creator. Its first
  OBX (``ACK_RECEPTION_DMP`` / ``ACK_RECEPTION_MSS`` / ``ACK_LECTURE_MSS``, table AckMetierZAM)
  names the original MDM in OBX-4 and says ``Y`` or ``N`` in OBX-5; Z02/Z03 add an OBX naming the
  recipient (``DESTINATAIRE_MSS`` / ``LECTEUR_MSS``, XTN ``^NET^X.400^<address>``); ``N`` comes with
  ``ERR|||207^Application error^HL70357|E|<code>^<label>^<table>``.

The volet's figure of the ZAM_Z01 structure is an image; this module writes MSH, the OBX and ERR,
and reads any message whose segments include them.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ._er7 import Message, Segment, decode, parse, rep
from .errors import AckMismatchError, Hl7ParseError, Hl7RejectedError
from .settings import Hl7Settings

__all__ = [
    "Ack",
    "AckCode",
    "AckError",
    "BusinessAck",
    "BusinessAckKind",
    "build_ack",
    "build_business_ack",
    "read_ack",
    "read_business_ack",
]


class AckCode(StrEnum):
    """MSA-1 (HL7 table 0008)."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


class AckError(BaseModel):
    """One ERR segment: HL7 error code (table 0357), severity, the application's own code."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    hl7_code: str = "207"
    """ERR-3.1 (``207`` application error, ``100`` segment sequence error, ``101`` required field missing …)."""
    severity: str = "E"
    """ERR-4: ``E`` error, ``F`` fatal, ``W`` warning, ``I`` information."""
    application_code: str = ""
    """ERR-5.1: the application's code (DMP error code, SMTP code …)."""
    application_label: str = ""
    """ERR-5.2."""
    application_table: str = ""
    """ERR-5.3 (``DMP_ERROR_CODE``, ``SMTPERRORCODE`` …)."""

    def segment(self) -> Segment:
        """The ERR segment."""
        err = Segment(name="ERR").set(3, rep(self.hl7_code, "Application error", "HL70357")).set(4, self.severity)
        if self.application_code:
            err.set(5, rep(self.application_code, self.application_label, self.application_table))
        return err

    @classmethod
    def read(cls, segment: Segment) -> AckError:
        """An ERR segment read."""
        return cls(
            hl7_code=segment.get(3, 1, 1) or "207",
            severity=segment.get(4) or "E",
            application_code=segment.get(5, 1, 1),
            application_label=segment.get(5, 1, 2),
            application_table=segment.get(5, 1, 3),
        )


class Ack(BaseModel):
    """An ACK read: its code, the control id it acknowledges, its errors."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    code: str
    """MSA-1 as sent (``AA``, ``AE``, ``AR``; ``CA``/``CE``/``CR`` in enhanced mode)."""
    acknowledged_id: str
    """MSA-2: the MSH-10 of the message acknowledged."""
    control_id: str
    """The ACK's own MSH-10."""
    trigger: str
    """MSH-9.2 (``T02`` …)."""
    errors: tuple[AckError, ...] = ()
    """The ERR segments."""

    @property
    def accepted(self) -> bool:
        """True for ``AA`` (and ``CA``)."""
        return self.code in ("AA", "CA")

    def check(self, control_id: str) -> Ack:
        """This ACK if it accepts the message ``control_id``; else :class:`AckMismatchError` or
        :class:`Hl7RejectedError` (``code`` = MSA-1, ``errors`` = ERR-3/ERR-5 codes)."""
        if self.acknowledged_id != control_id:
            raise AckMismatchError(
                "the acknowledgement names another message than the one sent (MSA-2 is not its MSH-10)",
                hint="do not take it as an answer; the message's fate is unknown: resend with the same control id",
            )
        if not self.accepted:
            codes = [c for e in self.errors for c in (e.hl7_code, e.application_code) if c]
            raise Hl7RejectedError(
                f"the receiver refused the message (MSA-1 {self.code if self.code in _KNOWN else 'unknown'})",
                code=self.code,
                errors=codes,
                hint="AR: do not resend as is; AE: correct what ERR says and resend",
            )
        return self


_KNOWN = {"AA", "AE", "AR", "CA", "CE", "CR"}


def _stamp(now: dt.datetime | None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S")


def _swap(settings: Hl7Settings, original: Message | None) -> Hl7Settings:
    """The ACK goes back: its sender is the original's receiver."""
    if original is None:
        return settings
    msh = original.msh
    return settings.model_copy(
        update={
            "sending_application": msh.get(5) or settings.sending_application,
            "sending_facility": msh.get(6),
            "receiving_application": msh.get(3),
            "receiving_facility": msh.get(4),
        }
    )


def build_ack(
    original: Message,
    code: AckCode | str = AckCode.ACCEPT,
    *,
    control_id: str,
    errors: tuple[AckError, ...] = (),
    settings: Hl7Settings | None = None,
    now: dt.datetime | None = None,
) -> Message:
    """The ACK of ``original``: ``ACK^<its trigger>^ACK``, same version and profile, MSA-2 its MSH-10."""
    settings = _swap(settings or Hl7Settings(), original)
    msh_in = original.msh
    msh = settings.msh(("ACK", msh_in.get(9, 1, 2), "ACK"), control_id=control_id, stamp=_stamp(now))
    if msh_in.field(11):
        msh.set(11, *msh_in.field(11))
    msh.set(12, *(msh_in.field(12) or (rep("2.6"),)))
    msa = Segment(name="MSA").set(1, AckCode(code).value).set(2, msh_in.get(10))
    return Message(segments=[msh, msa, *(e.segment() for e in errors)])


def _message(data: bytes | str | Message, max_bytes: int) -> Message:
    if isinstance(data, Message):
        return data
    if isinstance(data, bytes):
        return decode(data, max_bytes=max_bytes)
    return parse(data)


def read_ack(data: bytes | str | Message, *, max_bytes: int = 1_000_000) -> Ack:
    """An ACK read; :class:`Hl7ParseError` if it is not one (no MSA). Check it with :meth:`Ack.check`."""
    message = _message(data, max_bytes)
    msh = message.msh
    msa = message.first("MSA")
    if msh.get(9, 1, 1) != "ACK" or msa is None:
        raise Hl7ParseError("not an acknowledgement (MSH-9 ACK with an MSA segment)")
    return Ack(
        code=msa.get(1),
        acknowledged_id=msa.get(2),
        control_id=msh.get(10),
        trigger=msh.get(9, 1, 2),
        errors=tuple(AckError.read(e) for e in message.all("ERR")),
    )


class BusinessAckKind(StrEnum):
    """The three ZAM events, each with the AckMetierZAM code of its status OBX and of its person OBX."""

    DMP_RECEPTION = "Z01"
    MSS_RECEPTION = "Z02"
    MSS_READ = "Z03"

    @property
    def status_code(self) -> tuple[str, str]:
        """OBX-3.1/3.2 of the status OBX."""
        return {
            "Z01": ("ACK_RECEPTION_DMP", "Accusé de réception DMP"),
            "Z02": ("ACK_RECEPTION_MSS", "Accusé de réception MSSanté"),
            "Z03": ("ACK_LECTURE_MSS", "Accusé de lecture"),
        }[self.value]

    @property
    def person_code(self) -> tuple[str, str] | None:
        """OBX-3.1/3.2 of the recipient/reader OBX (none for Z01)."""
        return {
            "Z01": None,
            "Z02": ("DESTINATAIRE_MSS", "Destinataire MSSanté"),
            "Z03": ("LECTEUR_MSS", "Lecteur du courriel MSSanté"),
        }[self.value]


class BusinessAck(BaseModel):
    """A ZAM business ack read: which, about which message, success or not, for whom, the error."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    kind: BusinessAckKind
    """Z01 DMP reception, Z02 MSSanté reception, Z03 MSSanté read."""
    control_id: str
    """The ZAM's own MSH-10 (to ACK)."""
    original_control_id: str
    """OBX-4 of the status OBX: the MSH-10 of the MDM that carried the document."""
    success: bool
    """OBX-5 ``Y``."""
    address: str | None = None
    """The recipient's (Z02) or reader's (Z03) MSSanté address."""
    error: AckError | None = None
    """The ERR segment of a failure."""

    def check(self) -> BusinessAck:
        """This ack if it reports success, else :class:`Hl7RejectedError` (``code`` ``N``)."""
        if not self.success:
            codes = [c for c in (self.error.hl7_code, self.error.application_code) if c] if self.error else []
            raise Hl7RejectedError(
                f"the platform reports a failure ({self.kind.name.lower().replace('_', ' ')})", code="N", errors=codes
            )
        return self


def build_business_ack(
    kind: BusinessAckKind | str,
    *,
    original_control_id: str,
    success: bool,
    control_id: str,
    address: str | None = None,
    error: AckError | None = None,
    settings: Hl7Settings | None = None,
    volet_version: str = "2.1",
    now: dt.datetime | None = None,
) -> Message:
    """A ZAM message (what the platform sends back). A failure needs ``error`` (ERR-5: the DMP or SMTP code)."""
    kind = BusinessAckKind(kind)
    if not success and error is None:
        raise ValueError("a failed business ack carries an ERR: pass error=AckError(...)")
    settings = settings or Hl7Settings()
    msh = settings.msh(("ZAM", kind.value, "ZAM_Z01"), control_id=control_id, stamp=_stamp(now))
    msh.set(12, "2.6")
    msh.set(21, rep(volet_version, "CISIS_CDA_HL7_V2"))
    code, label = kind.status_code
    status = (
        Segment(name="OBX")
        .set(1, "1")
        .set(2, "CWE")
        .set(3, rep(code, label, "AckMetierZAM"))
        .set(4, original_control_id)
        .set(5, rep("Y" if success else "N", "", "expandedYes-NoIndicator"))
        .set(11, "F")
    )
    segments = [msh, status]
    person = kind.person_code
    if person is not None and address is not None:
        segments.append(
            Segment(name="OBX")
            .set(1, "2")
            .set(2, "XTN")
            .set(3, rep(person[0], person[1], "AckMetierZAM"))
            .set(5, rep("", "NET", "X.400", address))
            .set(11, "F")
        )
    if error is not None and not success:
        segments.append(error.segment())
    return Message(segments=segments)


def read_business_ack(data: bytes | str | Message, *, max_bytes: int = 1_000_000) -> BusinessAck:
    """A ZAM read; :class:`Hl7ParseError` if it is not one or lacks its status OBX."""
    message = _message(data, max_bytes)
    msh = message.msh
    if msh.get(9, 1, 1) != "ZAM":
        raise Hl7ParseError("not a business ack (MSH-9 ZAM)")
    try:
        kind = BusinessAckKind(msh.get(9, 1, 2))
    except ValueError:
        raise Hl7ParseError("a ZAM event other than Z01, Z02 or Z03") from None
    obxs = message.all("OBX")
    status = next((o for o in obxs if o.get(3, 1, 1) == kind.status_code[0]), None)
    if status is None or status.get(5, 1, 1) not in ("Y", "N"):
        raise Hl7ParseError(f"the ZAM has no {kind.status_code[0]} OBX saying Y or N")
    person = kind.person_code
    found = next((o for o in obxs if person is not None and o.get(3, 1, 1) == person[0]), None)
    err = message.first("ERR")
    return BusinessAck(
        kind=kind,
        control_id=msh.get(10),
        original_control_id=status.get(4),
        success=status.get(5, 1, 1) == "Y",
        address=(found.get(5, 1, 4) or None) if found is not None else None,
        error=AckError.read(err) if err is not None else None,
    )
