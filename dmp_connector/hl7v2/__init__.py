"""HL7 v2 on the hospital's own wires: PAM-FR identities, MDM^T02 CDA transmission, MLLP.

* :mod:`.pid` — an :class:`~dmp_connector.ins.Identity` ↔ the PAM-FR PID segment, the rules
  enforced both ways (the INS only for a qualified identity, ``NH`` is not the INS, name types,
  the BDL birth place, PID-32);
* :mod:`.adt` — the ADT identity-feed events (A28, A31, A08, A47, A40) as typed events;
* :mod:`.mdm` — the MDM^T02/T10/T04 that hands a CDA to the intermediation platform (volet
  "Transmission de documents CDA en HL7 v2"), built from the document a DMP deposit uses and read
  back with the PID checked against the CDA;
* :mod:`.acks` — the ACK and the volet's business acks (ZAM Z01/Z02/Z03);
* :mod:`.mllp` — MLLP framing and the sync/async clients.

Messages are encoded and parsed by the small ER7 codec of :mod:`._er7` (why not a library: see there).
The platform simulator is :class:`dmp_connector.sandbox.mllp.MllpListener`.
"""

from __future__ import annotations

from dmp_connector._help import document_fields

from ._er7 import Delimiters, Message, Segment, decode, parse, rep
from .acks import (
    Ack,
    AckCode,
    AckError,
    BusinessAck,
    BusinessAckKind,
    build_ack,
    build_business_ack,
    read_ack,
    read_business_ack,
)
from .adt import (
    AdtEvent,
    AdtEventKind,
    IdentifierChange,
    IdentityEvent,
    MergedIds,
    PatientMerge,
    build_adt,
    read_adt,
)
from .errors import AckMismatchError, Hl7IdentityError, Hl7ParseError, Hl7RejectedError, MllpFramingError
from .mdm import META_FLAGS, Distribution, MdmDocument, MdmEvent, MdmSettings, Recipient, build_mdm, read_mdm
from .mllp import AsyncMllpClient, FrameReader, MllpClient, frame
from .pid import ASSIGNING_AUTHORITY_NAMES, LocalId, PidPatient, StatusMapping, pid_segment, read_pid
from .settings import Hl7Settings

__all__ = [
    "ASSIGNING_AUTHORITY_NAMES",
    "META_FLAGS",
    "Ack",
    "AckCode",
    "AckError",
    "AckMismatchError",
    "AdtEvent",
    "AdtEventKind",
    "AsyncMllpClient",
    "BusinessAck",
    "BusinessAckKind",
    "Delimiters",
    "Distribution",
    "FrameReader",
    "Hl7IdentityError",
    "Hl7ParseError",
    "Hl7RejectedError",
    "Hl7Settings",
    "IdentifierChange",
    "IdentityEvent",
    "LocalId",
    "MdmDocument",
    "MdmEvent",
    "MdmSettings",
    "MergedIds",
    "Message",
    "MllpClient",
    "MllpFramingError",
    "PatientMerge",
    "PidPatient",
    "Recipient",
    "Segment",
    "StatusMapping",
    "build_ack",
    "build_adt",
    "build_business_ack",
    "build_mdm",
    "decode",
    "frame",
    "parse",
    "pid_segment",
    "read_ack",
    "read_adt",
    "read_business_ack",
    "read_identity",
    "read_mdm",
    "read_pid",
    "rep",
]


def read_identity(data: bytes | str | Message, *, max_bytes: int = 20 * 1024 * 1024) -> PidPatient:
    """The patient of any message with a PID (ADT, MDM, ORU …), read under the PAM-FR rules."""
    if isinstance(data, Message):
        message = data
    elif isinstance(data, bytes):
        message = decode(data, max_bytes=max_bytes)
    else:
        message = parse(data)
    return read_pid(message.require("PID"))


document_fields(globals()[name] for name in __all__ if name in globals())
