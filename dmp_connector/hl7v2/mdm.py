"""MDM^T02 / T10 / T04: a CDA document sent to the intermediation platform (volet "Transmission de
documents CDA en HL7 v2", IG 2.1.3), built from the same document and metadata a DMP deposit uses.

One document per message, HL7 v2.6 with the PRT segment pre-adopted from v2.9::

    MSH|^~\\&|<app>|<org>|PFI|…|<time>||MDM^T02^MDM_T02|<control id>|P|2.6|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2
    EVN||<time>
    PID|1||<matricule>^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||…            (PAM-FR, pid.py)
    PV1|1|N
    ORC|NW                     NW initial (T02), RO replacement (T10), CA deletion (T04)
    OBR|1|||<type code>^<label>^LN
    TXA|1|<type code>|TEXT|<creation time>||||||||<extension>^^<root>^ISO|<replaced id>||||AU|||||<authenticator id>
    OBX|1|ED|<type code>^<label>^LN||^text^XML^Base64^<the CDA, base64>||||||F        F / C / D
    PRT||UC||SB^Send by^participation|<author XCN>|||<organisation XON>                 the sender
    PRT||UC||RCT^Results Copies To^participation|<XCN>||||||||||^NET^X.400^<MSSanté address>
    OBX|2|CWE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||N^^expandedYes-NoIndicator||||||F
    …  the ten MetaDMPMSS flags in the volet's order, then CORPSMAIL_PS / CORPSMAIL_PATIENT (base64 text)

Reading it back returns the CDA bytes exactly as sent, and checks the PID against the CDA's
``recordTarget`` (identity vigilance): a message whose PID names another patient than its
document is refused whole (:class:`~dmp_connector.errors.PatientMismatchError`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.cda import DocumentMetadata, extract_metadata
from dmp_connector.cda import parse as parse_cda
from dmp_connector.codes import Code
from dmp_connector.errors import DmpConnectorError, PatientMismatchError
from dmp_connector.ins import DifferenceKind, Identity, IdentityStatus
from dmp_connector.xds import INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX, MASQUE_PS

from ._er7 import Message, Repetition, Segment, component_text, decode, parse, rep
from .errors import Hl7ParseError
from .pid import DEFAULT_STATUS_MAPPING, LocalId, PidPatient, StatusMapping, pid_segment, read_pid
from .settings import Hl7Settings

__all__ = [
    "LOINC",
    "META_FLAGS",
    "Distribution",
    "MdmDocument",
    "MdmEvent",
    "MdmSettings",
    "Recipient",
    "build_mdm",
    "read_mdm",
]

LOINC = "2.16.840.1.113883.6.1"
_PS_OID = "1.2.250.1.71.4.2.1"
_ST_OID = "1.2.250.1.71.4.2.2"

META_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("MASQUE_PS", "Masqué aux professionnels de Santé", "masked_to_professionals"),
    ("INVISIBLE_PATIENT", "Document Non Visible par le patient", "invisible_to_patient"),
    (
        "INVISIBLE_REP_LEGAUX",
        "Non visible par les représentants Légaux du patient",
        "invisible_to_legal_representatives",
    ),
    ("CONNEXION_SECRETE", "Connexion Secrete", "secret_connection"),
    ("MODIF_CONF_CODE", "Modification Confidentiality Code", "modify_confidentiality"),
    ("DESTDMP", "Destinataire DMP", "to_dmp"),
    ("DESTMSSANTEPS", "Destinataire (Professionnel de Santé, organisation ou BAL applicative)", "to_professionals"),
    ("DESTMSSANTEPAT", "Destinataire Patient", "to_patient"),
    ("ACK_RECEPTION", "Accusé de réception", "ack_reception"),
    ("ACK_LECTURE_MSS", "Accusé de lecture", "ack_read"),
)
"""The required OBX after the document, in the volet's order: (OBX-3.1, OBX-3.2, :class:`Distribution` field)."""


class MdmEvent(StrEnum):
    """The three MDM events of the volet, each with its ORC-1 and OBX-11."""

    INITIAL = "T02"
    REPLACEMENT = "T10"
    DELETION = "T04"

    @property
    def order_control(self) -> str:
        """ORC-1."""
        return {"T02": "NW", "T10": "RO", "T04": "CA"}[self.value]

    @property
    def result_status(self) -> str:
        """OBX-11 of the document's OBX."""
        return {"T02": "F", "T10": "C", "T04": "D"}[self.value]


class Recipient(BaseModel):
    """An MSSanté recipient (PRT ``RCT``): an address, and the professional's national id when known."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    address: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    """The MSSanté address (PRT-15, ``^NET^X.400^<address>``)."""
    id: str | None = None
    """The professional's national id (RPPS with its prefix, IDNPS), PRT-5."""
    family_name: str = ""
    """Family name (PRT-5.2)."""
    given_name: str = ""
    """Given name (PRT-5.3)."""


class Distribution(BaseModel):
    """Where the platform sends the document and with which visibility: the MetaDMPMSS OBX.

    The visibility flags are the DMP's confidentiality codes: :meth:`from_confidentiality` reads
    the codes a :meth:`DmpClient.deposit <dmp_connector.dmp.DmpClient.deposit>` is given.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    to_dmp: bool = True
    """DESTDMP: deposit in the patient's DMP (the identity must be qualified)."""
    recipients: tuple[Recipient, ...] = ()
    """MSSanté recipients (professionals, organisations, application mailboxes)."""
    to_patient: bool = False
    """DESTMSSANTEPAT: send to the patient's MSSanté mailbox (derived from the INS by the platform)."""
    masked_to_professionals: bool = False
    """MASQUE_PS."""
    invisible_to_patient: bool = False
    """INVISIBLE_PATIENT."""
    invisible_to_legal_representatives: bool = False
    """INVISIBLE_REP_LEGAUX."""
    secret_connection: bool = False
    """CONNEXION_SECRETE."""
    modify_confidentiality: bool = False
    """MODIF_CONF_CODE: the replacement changes the visibility of the earlier version."""
    ack_reception: bool = False
    """ACK_RECEPTION: ask for the business acks of reception (ZAM Z01 / Z02)."""
    ack_read: bool = False
    """ACK_LECTURE_MSS: ask for the MSSanté read ack (ZAM Z03)."""
    reply_to: str | None = None
    """PRT ``REPLY``: the MSSanté address replies go to."""
    mail_body_professional: str | None = None
    """CORPSMAIL_PS: the mail's body for professionals."""
    mail_body_patient: str | None = None
    """CORPSMAIL_PATIENT: the mail's body for the patient."""

    @property
    def to_professionals(self) -> bool:
        """DESTMSSANTEPS: True when there is a recipient."""
        return bool(self.recipients)

    @classmethod
    def from_confidentiality(cls, codes: Sequence[Code], **options: Any) -> Distribution:
        """The flags for the DMP confidentiality codes (``MASQUE_PS`` …) a deposit would be given."""
        given = {c.code for c in codes}
        return cls(
            masked_to_professionals=MASQUE_PS.code in given,
            invisible_to_patient=INVISIBLE_PATIENT.code in given,
            invisible_to_legal_representatives=INVISIBLE_REPRESENTANTS_LEGAUX.code in given,
            **options,
        )

    def confidentiality(self) -> tuple[Code, ...]:
        """The DMP confidentiality codes these flags stand for (what a deposit would be given)."""
        out: list[Code] = []
        if self.masked_to_professionals:
            out.append(MASQUE_PS)
        if self.invisible_to_patient:
            out.append(INVISIBLE_PATIENT)
        if self.invisible_to_legal_representatives:
            out.append(INVISIBLE_REPRESENTANTS_LEGAUX)
        return tuple(out)

    def flag(self, name: str) -> bool:
        """The value of one MetaDMPMSS flag by its :data:`META_FLAGS` field name."""
        return bool(getattr(self, name))


class MdmSettings(Hl7Settings):
    """The MDM header values and the volet's version (MSH-12/MSH-21)."""

    hl7_version: str = "2.6"
    """MSH-12 (volet: 2.6)."""
    volet_version: str = "2.1"
    """MSH-21.1: the volet's version (2.1 in IG 2.1.3)."""
    profile: str = "CISIS_CDA_HL7_V2"
    """MSH-21.2."""
    patient_class: str = "N"
    """PV1-2 when no visit is given: ``N`` (not applicable) [I]; the volet's sample writes ``I``."""
    organization_id_type: str = "FINEG"
    """XON-7 of the sender's organisation (``FINEG`` geographic FINESS, ``FINEJ`` legal entity; volet sample)."""
    person_authority: str = "ASIP-SANTE-PS"
    """XCN-9.1 written beside the national id OID ``1.2.250.1.71.4.2.1`` (the samples write ``ASIP-SANTE- PS``)."""
    organization_authority: str = "ASIP-SANTE-ST"
    """XON-6.1 written beside ``1.2.250.1.71.4.2.2``."""


class MdmDocument(BaseModel):
    """An MDM message read back: the event, the patient, the CDA bytes as sent, the distribution."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    event: MdmEvent
    """T02, T10 or T04."""
    control_id: str
    """MSH-10: what the ACK must name."""
    patient: PidPatient
    """The PID, PAM-FR rules applied, checked against the CDA's recordTarget."""
    document: bytes
    """The CDA, byte for byte as the sender base64-encoded it."""
    type_code: str
    """OBX-3.1 / TXA-2: the document type."""
    unique_id: str
    """TXA-12 as ``root`` or ``root^extension`` (the XDS uniqueId form)."""
    replaced_id: str | None = None
    """TXA-13 (T10)."""
    distribution: Distribution
    """The MetaDMPMSS flags, recipients, reply-to and mail bodies."""
    sender_id: str | None = None
    """PRT ``SB``'s person id (PRT-5.1)."""

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "event", self.event
        yield "control_id", self.control_id
        yield "size", len(self.document)


def _timestamp(value: dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S")
    return value.strftime("%Y%m%d")


def _split_unique_id(unique_id: str) -> Repetition:
    """TXA-12 / TXA-13 (EI): ``extension^^root^ISO``, or the root alone (the DMP refuses ``OID^extension``)."""
    root, _, extension = unique_id.partition("^")
    if extension:
        return rep(extension, "", root, "ISO")
    return rep(root)


def _join_unique_id(value: Repetition) -> str:
    first, root = component_text(value, 1), component_text(value, 3)
    if root:
        return f"{root}^{first}" if first else root
    return first


def _type_coding(code: Code) -> Repetition:
    system = "LN" if code.code_system == LOINC else code.code_system
    return rep(code.code, code.display_name or "", system)


def _yes_no(value: bool) -> Repetition:
    return rep("Y" if value else "N", "", "expandedYes-NoIndicator")


def build_mdm(
    document: bytes,
    *,
    control_id: str,
    distribution: Distribution | None = None,
    settings: MdmSettings | None = None,
    delete: bool = False,
    local_ids: Sequence[LocalId] = (),
    visit_number: LocalId | None = None,
    now: dt.datetime | None = None,
    metadata: DocumentMetadata | None = None,
    mapping: StatusMapping = DEFAULT_STATUS_MAPPING,
) -> Message:
    """The MDM message that hands ``document`` (the CDA bytes you would deposit) to the platform.

    The event follows the document: T10 when it replaces another (``relatedDocument`` RPLC, TXA-13),
    T04 with ``delete=True``, T02 otherwise. Type code, unique id, creation time, author and legal
    authenticator come from :func:`~dmp_connector.cda.extract_metadata` (pass ``metadata`` if you
    already have it); the PID from the CDA's recordTarget, with its other ids (IPP) and ``local_ids``.
    The CDA must carry its patient's INS whatever the distribution: ``extract_metadata`` refuses one
    without (:class:`~dmp_connector.errors.ValidationError`); sending to the DMP or to the patient
    also requires the identity read from it to be qualified
    (:class:`~dmp_connector.errors.IdentityNotQualifiedError`).
    """
    settings = settings or MdmSettings()
    distribution = distribution or Distribution()
    data = bytes(document)
    cda = parse_cda(data)
    meta = metadata or extract_metadata(data, confidentiality=distribution.confidentiality())
    identity: Identity = cda.patient.identity
    if distribution.to_dmp or distribution.to_patient:
        identity.require_qualified("a document sent to the DMP or the patient's MSSanté mailbox")
    ids = [
        LocalId(id=i.extension, authority_id=i.root, authority_id_type="ISO", type_code="PI")
        for i in cda.patient.other_ids
        if i.extension
    ]
    event = MdmEvent.DELETION if delete else MdmEvent.REPLACEMENT if meta.replaced_unique_id else MdmEvent.INITIAL
    stamp = _timestamp(now or dt.datetime.now(dt.UTC))
    msh = settings.msh(("MDM", event.value, "MDM_T02"), control_id=control_id, stamp=stamp)
    msh.set(12, settings.hl7_version)
    msh.set(21, rep(settings.volet_version, settings.profile))
    evn = Segment(name="EVN").set(2, stamp)
    pid = pid_segment(identity, local_ids=[*ids, *local_ids], mapping=mapping)
    pv1 = Segment(name="PV1").set(1, "1").set(2, settings.patient_class)
    if visit_number is not None:
        pv1.set(19, visit_number.cx())
    orc = Segment(name="ORC").set(1, event.order_control)
    coding = _type_coding(meta.type_code)
    obr = Segment(name="OBR").set(1, "1").set(4, coding)
    txa = Segment(name="TXA").set(1, "1").set(2, meta.type_code.code).set(3, "TEXT")
    txa.set(4, _timestamp(meta.creation_time))
    txa.set(12, _split_unique_id(meta.unique_id))
    if meta.replaced_unique_id:
        txa.set(13, _split_unique_id(meta.replaced_unique_id))
    txa.set(17, "AU")
    authenticator = meta.legal_authenticator
    if authenticator is not None and authenticator.id is not None and authenticator.id.extension:
        txa.set(22, authenticator.id.extension)
    payload = base64.b64encode(data).decode("ascii")
    segments = [msh, evn, pid, pv1, orc, obr, txa]
    obx = Segment(name="OBX").set(1, "1").set(2, "ED").set(3, coding)
    obx.set(5, rep("", "text", "XML", "Base64", payload)).set(11, event.result_status)
    segments.append(obx)
    segments.extend(_participants(meta, distribution, settings))
    number = 1
    for code, label, name in META_FLAGS:
        number += 1
        flag = distribution.to_professionals if name == "to_professionals" else distribution.flag(name)
        segments.append(
            Segment(name="OBX")
            .set(1, str(number))
            .set(2, "CWE")
            .set(3, rep(code, label, "MetaDMPMSS"))
            .set(5, _yes_no(flag))
            .set(11, "F")
        )
    for code, label, body in (
        ("CORPSMAIL_PS", "Corps du mail pour un PS", distribution.mail_body_professional),
        ("CORPSMAIL_PATIENT", "Corps du mail pour le patient", distribution.mail_body_patient),
    ):
        if body is None:
            continue
        number += 1
        encoded = base64.b64encode(body.encode("utf-8")).decode("ascii")
        segments.append(
            Segment(name="OBX")
            .set(1, str(number))
            .set(2, "ED")
            .set(3, rep(code, label, "MetaDMPMSS"))
            .set(5, rep("", "text", "", "Base64", encoded))
            .set(11, "F")
        )
    return Message(segments=segments)


def _participants(meta: DocumentMetadata, distribution: Distribution, settings: MdmSettings) -> list[Segment]:
    out: list[Segment] = []
    author = meta.authors[0]
    sender = Segment(name="PRT").set(2, "UC").set(4, rep("SB", "Send by", "participation"))
    person = author.person
    if person is not None and person.id is not None:
        sender.set(
            5,
            rep(
                person.id.extension or "",
                person.family_name or "",
                person.given_name or "",
                "",
                "",
                "",
                "",
                "",
                (settings.person_authority, person.id.root, "ISO"),
                "D",
                "",
                "",
                "IDNPS" if person.id.root == _PS_OID else "",
            ),
        )
    if author.institution_id is not None or author.institution_name:
        institution = author.institution_id
        sender.set(
            8,
            rep(
                author.institution_name or "",
                "",
                "",
                "",
                "",
                (settings.organization_authority, institution.root if institution else _ST_OID, "ISO"),
                settings.organization_id_type,
                "",
                "",
                (institution.extension or "") if institution else "",
            ),
        )
    out.append(sender)
    for recipient in distribution.recipients:
        prt = Segment(name="PRT").set(2, "UC").set(4, rep("RCT", "Results Copies To", "participation"))
        if recipient.id:
            prt.set(
                5,
                rep(
                    recipient.id,
                    recipient.family_name,
                    recipient.given_name,
                    "",
                    "",
                    "",
                    "",
                    "",
                    (settings.person_authority, _PS_OID, "ISO"),
                    "D",
                    "",
                    "",
                    "IDNPS",
                ),
            )
        prt.set(15, rep("", "NET", "X.400", recipient.address))
        out.append(prt)
    if distribution.reply_to:
        reply = Segment(name="PRT").set(2, "UC").set(4, rep("REPLY", "Reply to", "participation"))
        reply.set(15, rep("", "NET", "X.400", distribution.reply_to))
        out.append(reply)
    return out


def read_mdm(
    data: bytes | str | Message,
    *,
    mapping: StatusMapping = DEFAULT_STATUS_MAPPING,
    max_bytes: int = 20 * 1024 * 1024,
) -> MdmDocument:
    """Read an MDM^T02/T10/T04 of the volet; the CDA comes back as the bytes that were encoded.

    Refused with :class:`~.errors.Hl7ParseError`: another message type, an event whose ORC-1 or
    OBX-11 disagrees with it (the volet rejects such messages), no base64 CDA in OBX 1, a
    MetaDMPMSS flag missing. Refused with :class:`~dmp_connector.errors.PatientMismatchError`: a PID
    whose INS, birth date or sex is not the CDA recordTarget's (identity vigilance).
    """
    if isinstance(data, Message):
        message = data
    elif isinstance(data, bytes):
        message = decode(data, max_bytes=max_bytes)
    else:
        if len(data) > max_bytes or len(data.encode("utf-8", "replace")) > max_bytes:
            raise Hl7ParseError(f"the message is larger than {max_bytes} bytes")
        message = parse(data)
    msh = message.msh
    if msh.get(9, 1, 1) != "MDM":
        raise Hl7ParseError("not an MDM message (MSH-9)")
    try:
        event = MdmEvent(msh.get(9, 1, 2))
    except ValueError:
        raise Hl7ParseError("an MDM event other than T02, T10 or T04") from None
    problems: list[str] = []
    orc = message.first("ORC")
    if orc is None or orc.get(1) != event.order_control:
        problems.append(f"ORC-1 is not {event.order_control} for {event.value}")
    obxs = message.all("OBX")
    doc_obx = next((o for o in obxs if o.get(2) == "ED" and o.get(3, 1, 3) != "MetaDMPMSS"), None)
    if doc_obx is None:
        raise Hl7ParseError("no OBX of type ED holds the document")
    if doc_obx.get(11) != event.result_status:
        problems.append(f"the document's OBX-11 is not {event.result_status} for {event.value}")
    if doc_obx.get(5, 1, 4).lower() != "base64":
        problems.append("the document's OBX-5 is not base64")
    txa = message.first("TXA")
    if txa is None or not txa.get(12):
        problems.append("TXA-12 (the document's unique id) is missing")
    if event is MdmEvent.REPLACEMENT and (txa is None or not txa.get(13)):
        problems.append("TXA-13 (the replaced document) is required with T10")
    flags: dict[str, bool] = {}
    by_code = {o.get(3, 1, 1): o for o in obxs if o.get(3, 1, 3) == "MetaDMPMSS"}
    for code, _label, name in META_FLAGS:
        found = by_code.get(code)
        value = found.get(5, 1, 1) if found is not None else ""
        if value not in ("Y", "N"):
            problems.append(f"the MetaDMPMSS OBX {code} is missing or not Y/N")
        flags[name] = value == "Y"
    if problems:
        raise Hl7ParseError("the MDM message breaks the volet: " + "; ".join(problems))
    assert txa is not None
    document = _base64(doc_obx.get(5, 1, 5), "the document's base64 is malformed")
    patient = read_pid(message.require("PID"), mapping=mapping)
    _check_patient(patient, document)
    recipients: list[Recipient] = []
    reply_to: str | None = None
    sender_id: str | None = None
    for prt in message.all("PRT"):
        role = prt.get(4, 1, 1)
        address = prt.get(15, 1, 4)
        if role == "SB":
            sender_id = prt.get(5, 1, 1) or None
        elif role == "RCT" and address:
            recipient = _recipient(
                address=address, id=prt.get(5, 1, 1) or None, family_name=prt.get(5, 1, 2), given_name=prt.get(5, 1, 3)
            )
            if recipient is None:
                raise Hl7ParseError("a PRT RCT (PRT-15 address or PRT-5 name) is not a valid recipient")
            recipients.append(recipient)
        elif role == "REPLY" and address:
            reply_to = address
    bodies = {}
    for code in ("CORPSMAIL_PS", "CORPSMAIL_PATIENT"):
        found = by_code.get(code)
        if found is not None:
            try:
                bodies[code] = _base64(found.get(5, 1, 5), f"the {code} OBX is not base64").decode("utf-8")
            except UnicodeDecodeError:
                raise Hl7ParseError(f"the {code} OBX is not UTF-8 text") from None
    if flags.pop("to_professionals") and not recipients:
        raise Hl7ParseError("DESTMSSANTEPS is Y but no PRT RCT names a recipient")
    try:
        distribution: Distribution | None = Distribution(
            recipients=tuple(recipients),
            reply_to=reply_to,
            mail_body_professional=bodies.get("CORPSMAIL_PS"),
            mail_body_patient=bodies.get("CORPSMAIL_PATIENT"),
            **flags,
        )
    except ValueError:
        distribution = None
    if distribution is None:  # a PRT REPLY address of the wrong shape, or flags that contradict each other
        raise Hl7ParseError("the MDM message's distribution (PRT, MetaDMPMSS) is not valid")
    return MdmDocument(
        event=event,
        control_id=msh.get(10),
        patient=patient,
        document=document,
        type_code=txa.get(2) or doc_obx.get(3, 1, 1),
        unique_id=_join_unique_id(txa.field(12)[0]),
        replaced_id=_join_unique_id(txa.field(13)[0]) if txa.get(13) else None,
        distribution=distribution,
        sender_id=sender_id,
    )


def _recipient(**fields: str | None) -> Recipient | None:
    """A PRT recipient, or None when it breaks :class:`Recipient`'s rules.

    None rather than raising: pydantic's error quotes the input, and an error raised inside the
    handler would keep it as ``__context__``; the caller raises a clean :class:`Hl7ParseError`.
    """
    try:
        return Recipient.model_validate(fields)
    except ValueError:
        return None


def _base64(text: str, problem: str) -> bytes:
    """Strict base64, except that missing ``=`` padding is restored (the ANS T04 sample omits it)."""
    if len(text) % 4 == 1:
        raise Hl7ParseError(problem)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Hl7ParseError(problem) from None


_INS_TRAITS = ("birth_name", "birth_first_names", "first_first_name", "sex", "birth_date", "birth_place")


def _check_patient(patient: PidPatient, document: bytes) -> None:
    """The PID must name the CDA's recordTarget: same INS (or both without) and the same INS traits.

    Every INS trait is compared by :meth:`IdentityTraits.compare`, the rule the SDK uses everywhere:
    birth name, the list of birth first names, the first first name, sex, birth date, and the birth
    place when both sides have one. Only a disagreement counts: a less precise value (a partial date,
    a shorter list of first names, COG 99999) or a separator is not a difference. Without the first
    names a twin's document would pass under the other twin's PID when no INS is carried.
    """
    try:
        target = parse_cda(document).patient.identity
    except DmpConnectorError as exc:
        raise Hl7ParseError("the document in OBX 1 is not a CDA this SDK reads") from exc
    problems: list[str] = []
    pid = patient.identity
    cda_ins = target.ins if target.status is IdentityStatus.QUAL else None
    if (pid.ins is None) != (cda_ins is None):
        problems.append("the PID and the CDA recordTarget do not both carry an INS")
    elif (
        pid.ins is not None
        and cda_ins is not None
        and (pid.ins.matricule, pid.ins.oid) != (cda_ins.matricule, cda_ins.oid)
    ):
        problems.append("the PID's INS is not the CDA recordTarget's")
    try:
        comparison = pid.traits.compare(target.traits)
        differing = {d.trait for d in comparison.differences if d.kind is DifferenceKind.DIFFERENT}
    except DmpConnectorError:  # a name INSi's alphabet cannot hold: compare as written
        ours, theirs = pid.traits, target.traits
        differing = {
            name for name in ("birth_name", "birth_date", "sex") if getattr(ours, name) != getattr(theirs, name)
        }
        if ours.first_first_name != theirs.first_first_name:
            differing.add("first_first_name")
        n = min(len(ours.birth_first_names), len(theirs.birth_first_names))
        if ours.birth_first_names[:n] != theirs.birth_first_names[:n]:
            differing.add("birth_first_names")
        places = (ours.birth_place, theirs.birth_place)
        if None not in places and "99999" not in places and places[0] != places[1]:
            differing.add("birth_place")
    problems.extend(f"{name} differs" for name in _INS_TRAITS if name in differing)
    if problems:
        raise PatientMismatchError(
            "the MDM message's PID does not name the patient of its document",
            service="HL7 v2 MDM",
            operation="read_mdm",
            problems=problems,
        )
