"""MSSanté messages: what a professional sends, built into RFC 5322 mail; what comes back, read.

:class:`MssanteMessage` holds what the sender means (recipients, subject, bodies,
attachments, CDA documents, receipts wanted, end of a patient conversation);
:func:`build_message` turns it into an :class:`email.message.EmailMessage` that follows
the MSSanté rules (reference §1.4, §2):

* **one patient per message** (ECO.2.1.1): at most one patient recipient, and every CDA
  document about that same patient;
* CDA documents go in an **IHE XDM** archive ``IHE_XDM.ZIP`` (see :mod:`.xdm`) with a
  human-readable **PDF copy** of each beside it (ECO.2.1.5): the embedded PDF of a level-1
  document, or the ``rendition`` you give for a structured one (we do not render CDA to
  PDF/A ourselves, so a structured document without one is refused);
* the **subject** ``XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de naissance>`` when
  documents travel (ECO.2.1.3), the birth date as ``DD/MM/YYYY`` as in ANS's example;
* the **headers** ``X-MSS-NIL`` (every mail), ``X-MSS-CODECDA`` and ``X-MSS-INS`` (mail
  with CDA), ``X-MSS-MES: FIN`` (ending a patient conversation) — ``X-MSS-*``, never
  ``X-MSSANTE-*``; ``Disposition-Notification-To`` when a read receipt is wanted (the
  delivery receipt is asked at the SMTP envelope, as DSN parameters);
* the **25 MB** cap towards Mon espace santé, checked on the serialised message before
  anything is sent.

:func:`parse_message` reads received bytes back into a :class:`ReceivedMessage`: headers,
bodies, attachments, the unpacked XDM archive and the receipt a DSN or MDN carries. A
hostile XDM archive does not stop the message from being read: it is left out and
``xdm_error`` says why. Nothing here logs; subjects and addresses are kept out of reprs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, make_msgid, parsedate_to_datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector._deadline import release
from dmp_connector.config import EnvironmentName, Settings
from dmp_connector.errors import ConfigurationError, DmpConnectorError, ValidationError
from dmp_connector.ins import Identity

from ._mail import patient_matricule
from ._mime import MimeLimits, UnreadableMessageError, check_structure
from .address import MSSANTE_DOMAINS, MssanteAddress, TrustSpace, require_trusted
from .receipts import MIME_ERRORS, Receipt, header_text, parse_receipt
from .xdm import XDM_ATTACHMENT_NAME, ArchiveLimits, XdmDocument, XdmPackage, build_package, read_package

__all__ = [
    "END_OF_CONVERSATION_SUBJECT",
    "PATIENT_MAX_BYTES",
    "SANDBOX_NIL",
    "SUBJECT_PREFIX",
    "Attachment",
    "BuiltMessage",
    "CdaDocument",
    "MessageTooLargeError",
    "MimeLimits",
    "MssanteMessage",
    "ReceivedAttachment",
    "ReceivedMessage",
    "UnreadableMessageError",
    "build_message",
    "mime_limits_of",
    "parse_message",
]

SUBJECT_PREFIX = "XDM/1.0/DDM+"
"""Start of the subject of a mail carrying an XDM archive (receivers hide it, SC.MSS/UX.28)."""
END_OF_CONVERSATION_SUBJECT = "[FIN]"
"""The whole subject that ends a patient conversation (the other way is ``X-MSS-MES: FIN``)."""
PATIENT_MAX_BYTES = 25 * 1024 * 1024
"""Mon espace santé refuses messages over 25 MB in total."""
SANDBOX_NIL = "SANDBOX"
"""``X-MSS-NIL`` sent in the sandbox when ``mssante.nil`` is not set."""

_PDF_NAME_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


class MessageTooLargeError(ValidationError):
    """The message, as it would be sent, is over a size limit (25 MB towards a patient)."""

    def __init__(self, message: str, *, size: int, limit: int, hint: str | None = None) -> None:
        super().__init__(message, problems=[f"{size} bytes > {limit}"], hint=hint)
        self.size = size
        self.limit = limit


class Attachment(BaseModel):
    """A file attached as it is (a letter, an image …); CDA documents go in ``documents`` instead."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    """Name shown to the recipient."""
    content: bytes = Field(repr=False)
    """The file's bytes."""
    content_type: str = Field(default="application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$")
    """Its media type, ``application/pdf`` …"""

    @model_validator(mode="after")
    def _plain_name(self) -> Self:
        if any(ch in self.filename for ch in "\r\n\x00/\\"):
            raise ValidationError("an attachment's file name cannot hold a path separator or a line break")
        return self


class CdaDocument(BaseModel):
    """A CDA R2 document to send inside the XDM archive, with its human-readable copy.

    For a level-1 document (a PDF body) the copy is the embedded PDF unless ``rendition``
    is given; a structured document needs a ``rendition`` (a PDF/A-1 of its header and
    narrative, ECO.2.1.5), which this SDK does not produce.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    content: bytes = Field(repr=False, min_length=1)
    """The CDA document, as it will be in the archive (byte for byte)."""
    rendition: bytes | None = Field(default=None, repr=False)
    """A PDF of the document for readers without an LPS; None for the embedded PDF of a level-1 CDA."""
    rendition_filename: str | None = None
    """Name of the PDF; by default ``<date acte>_<type de document>_<NOM>_<prénom>.pdf`` (ECO.2.1.6)."""


class MssanteMessage(BaseModel):
    """What to send; :func:`build_message` (or the client) turns it into mail.

    ``subject`` is free for a plain message. With ``documents`` it becomes the *libellé*
    of the rule's subject (``XDM/1.0/DDM+<subject> <NOM> <prénom> <date>``) unless it
    already starts with ``XDM/1.0/DDM+``; without one the libellé is the type of the
    document ("N documents" for several). ``patient`` is the identity the message is
    about; a patient recipient's own identity is used when it is not given.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    to: tuple[MssanteAddress, ...] = Field(min_length=1)
    """Recipients; a patient only through :meth:`MssanteAddress.for_patient`."""
    cc: tuple[MssanteAddress, ...] = ()
    """Copy recipients."""
    sender: MssanteAddress | None = None
    """``From``; by default ``settings.mssante.mailbox``."""
    subject: str | None = None
    """Subject, or the libellé of a subject built by the rule (see above)."""
    text: str | None = Field(default=None, repr=False)
    """Plain-text body (sent as UTF-8)."""
    html: str | None = Field(default=None, repr=False)
    """HTML body, sent as an alternative to ``text``."""
    attachments: tuple[Attachment, ...] = ()
    """Other attachments."""
    documents: tuple[CdaDocument, ...] = ()
    """CDA documents: packed into ``IHE_XDM.ZIP`` with a PDF copy of each."""
    patient: Identity | None = Field(default=None, repr=False)
    """The patient the message is about; must be qualified when the message carries their INS."""
    delivery_receipt: bool = False
    """Ask for a delivery receipt (DSN ``NOTIFY=SUCCESS,FAILURE`` on the envelope)."""
    read_receipt: bool = False
    """Ask for a read receipt (MDN, ``Disposition-Notification-To``)."""
    end_conversation: bool = False
    """Towards a patient: ``X-MSS-MES: FIN``, the patient may not answer this conversation."""
    reply_to: MssanteAddress | None = None
    """``Reply-To``, when answers should go elsewhere."""
    in_reply_to: str | None = None
    """``Message-ID`` of the message answered (threading, MSS/va1.08)."""
    references: tuple[str, ...] = ()
    """``References`` chain of the conversation."""

    @model_validator(mode="after")
    def _one_patient(self) -> Self:
        problems = []
        patients = [a for a in (*self.to, *self.cc) if a.is_patient]
        if len(patients) > 1:
            problems.append("a message goes to one patient at most (ECO.2.1.1: one patient per message)")
        for address in patients:
            if address.patient is None:
                problems.append("a patient address must be built with MssanteAddress.for_patient(identity)")
        if (
            len(patients) == 1
            and patients[0].patient is not None
            and self.patient is not None
            and _ins_key(self.patient) != _ins_key(patients[0].patient)
        ):
            problems.append("the patient recipient is not the patient the message is about")
        if self.end_conversation and not patients:
            problems.append("end_conversation (X-MSS-MES: FIN) is for a message to a patient")
        if self.subject is not None and any(ch in self.subject for ch in "\r\n"):
            problems.append("the subject cannot hold a line break")
        for value in (self.in_reply_to, *self.references):
            if value is not None and (not value.startswith("<") or not value.endswith(">") or " " in value):
                problems.append("Message-IDs are written <id@domain>")
                break
        if problems:
            raise ValidationError("this MSSanté message breaks the rules: " + "; ".join(problems), problems=problems)
        return self

    @classmethod
    def end_of_conversation(cls, patient: MssanteAddress, *, sender: MssanteAddress | None = None) -> MssanteMessage:
        """The message that closes every conversation with a patient: subject ``[FIN]`` and ``X-MSS-MES: FIN``."""
        return cls(to=(patient,), sender=sender, subject=END_OF_CONVERSATION_SUBJECT, end_conversation=True)

    @property
    def patient_recipient(self) -> MssanteAddress | None:
        """The patient among the recipients, if any."""
        return next((a for a in (*self.to, *self.cc) if a.is_patient), None)

    @property
    def subject_identity(self) -> Identity | None:
        """The identity the message is about: ``patient``, else the patient recipient's."""
        if self.patient is not None:
            return self.patient
        recipient = self.patient_recipient
        return recipient.patient if recipient is not None else None


def _ins_key(identity: Identity) -> tuple[str, str] | None:
    return (identity.ins.matricule, identity.ins.oid.value) if identity.ins is not None else None


@dataclass(frozen=True)
class BuiltMessage:
    """A message ready for the transport: the mail, its envelope and what the audit may know."""

    email: EmailMessage = field(repr=False)
    """The RFC 5322 message."""
    sender: str
    """Envelope sender (``MAIL FROM``)."""
    recipients: tuple[str, ...] = field(repr=False)
    """Envelope recipients (``RCPT TO``), ``To`` then ``Cc``."""
    message_id: str
    """The ``Message-ID``; receipts refer to it."""
    size: int
    """Size of the serialised message, in bytes."""
    patient_matricule: str | None = field(default=None, repr=False)
    """Matricule of the patient concerned, for the audit pseudonym only."""
    document_ids: tuple[str, ...] = ()
    """Unique ids of the CDA documents carried."""
    package: XdmPackage | None = field(default=None, repr=False)
    """The XDM archive built, when documents travel."""
    delivery_receipt: bool = False
    """Whether a DSN is to be asked at the envelope."""

    def as_bytes(self) -> bytes:
        """The message exactly as :meth:`MssanteClient.send` transmits it (CRLF line ends), to archive."""
        return self.email.as_bytes(policy=self.email.policy.clone(linesep="\r\n"))


def _nil(settings: Settings) -> str:
    if settings.mssante.nil:
        return settings.mssante.nil
    if settings.environment.name is EnvironmentName.SANDBOX:
        return SANDBOX_NIL
    raise ConfigurationError(
        "X-MSS-NIL is required on every MSSanté mail and mssante.nil is not set",
        hint="set mssante.nil to the reference given when the software was declared on convergence.esante.gouv.fr",
    )


def _sender(message: MssanteMessage, settings: Settings) -> MssanteAddress:
    if message.sender is not None:
        return message.sender
    if settings.mssante.mailbox is None:
        raise ConfigurationError(
            "the message has no sender and no MSSanté mailbox is configured",
            hint="set mssante.mailbox or give MssanteMessage.sender",
        )
    return MssanteAddress.parse(settings.mssante.mailbox)


def _birth_date(identity: Identity) -> str:
    date = identity.traits.birth_date
    return f"{date.day or 0:02d}/{date.month or 0:02d}/{date.year:04d}"


def _names(identity: Identity) -> tuple[str, str]:
    traits = identity.traits
    return traits.birth_name.upper(), traits.first_first_name


def _subject(message: MssanteMessage, packed: Sequence[XdmDocument], identity: Identity | None) -> str:
    if not packed:
        return message.subject or ""
    if message.subject and message.subject.startswith(SUBJECT_PREFIX):
        return message.subject
    label = message.subject
    if not label:
        labels = {doc.type_label for doc in packed}
        label = labels.pop() if len(packed) == 1 and len(labels) == 1 else f"{len(packed)} documents"
    if identity is None:
        raise ValidationError(
            "the subject of a mail with CDA documents names the patient, who is unknown here",
            hint="give MssanteMessage.patient",
        )
    family, given = _names(identity)
    return f"{SUBJECT_PREFIX}{label} {family} {given} {_birth_date(identity)}"


def _pdf_name(doc: XdmDocument, identity: Identity | None, given: str | None) -> str:
    if given:
        name = given
    else:
        parts = [doc.act_date.strftime("%Y%m%d") if doc.act_date else None, doc.type_label]
        if identity is not None:
            parts.extend(_names(identity))
        name = "_".join(p for p in parts if p) + ".pdf"
    return _PDF_NAME_UNSAFE.sub(" ", name).strip() or "document.pdf"


def build_message(
    message: MssanteMessage,
    settings: Settings,
    *,
    trust_space: TrustSpace = MSSANTE_DOMAINS,
    now: datetime | None = None,
    message_id: str | None = None,
) -> BuiltMessage:
    """Build the mail for ``message``, or refuse it with the rule it breaks.

    Refused: a recipient outside ``trust_space`` (:class:`UntrustedRecipientError`),
    two patients, documents about another patient than the recipient, a patient identity
    that is not qualified, a structured CDA without its PDF copy, and a message to a
    patient over 25 MB (:class:`MessageTooLargeError`).
    """
    moment = now or datetime.now(UTC)
    sender = _sender(message, settings)
    recipients = (*message.to, *message.cc)
    require_trusted(recipients, trust_space)
    identity = message.subject_identity
    patient_recipient = message.patient_recipient
    if identity is not None and (patient_recipient is not None or (message.documents and identity.ins is not None)):
        identity.require_qualified("an MSSanté message about the patient")

    package: XdmPackage | None = None
    packed: tuple[XdmDocument, ...] = ()
    if message.documents:
        package = build_package(
            [doc.content for doc in message.documents], settings, sender=sender, recipients=recipients, now=moment
        )
        packed = package.documents
        if identity is None:
            # The documents say who the patient is (their recordTarget); their producer vouched for it.
            identity = packed[0].parse_cda().patient.identity
        _check_one_patient(packed, identity)

    email = EmailMessage(policy=policy.SMTP)
    email["From"] = sender.header_address()
    email["To"] = [a.header_address() for a in message.to]
    if message.cc:
        email["Cc"] = [a.header_address() for a in message.cc]
    if message.reply_to is not None:
        email["Reply-To"] = message.reply_to.header_address()
    email["Subject"] = _subject(message, packed, identity)
    email["Date"] = format_datetime(moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC))
    mid = message_id or make_msgid(domain=sender.domain)
    email["Message-ID"] = mid
    if message.in_reply_to:
        email["In-Reply-To"] = message.in_reply_to
    if message.references:
        email["References"] = " ".join(message.references)
    email["X-MSS-NIL"] = _nil(settings)
    if packed:
        email["X-MSS-CODECDA"] = ",".join(dict.fromkeys(doc.type_code.code for doc in packed))
        email["X-MSS-INS"] = "O" if identity is not None and _carries_qualified_ins(packed, identity) else "N"
    if message.end_conversation:
        email["X-MSS-MES"] = "FIN"
    if message.read_receipt:
        email["Disposition-Notification-To"] = str(sender.header_address())

    email.set_content(message.text or "", charset="utf-8")
    if message.html is not None:
        email.add_alternative(message.html, subtype="html", charset="utf-8")
    if package is not None:
        email.add_attachment(package.archive, maintype="application", subtype="zip", filename=XDM_ATTACHMENT_NAME)
        for doc, source in zip(packed, message.documents, strict=True):
            pdf = source.rendition if source.rendition is not None else doc.embedded_pdf
            if pdf is None:
                raise ValidationError(
                    "a structured CDA document travels with a PDF copy (ECO.2.1.5), and none was given",
                    hint="render the document to PDF/A-1 and pass it as CdaDocument.rendition",
                )
            filename = _pdf_name(doc, identity, source.rendition_filename)
            email.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
    for attachment in message.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        email.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)

    size = len(email.as_bytes())
    limits = [settings.mssante.max_message_bytes]
    if patient_recipient is not None:
        limits.append(PATIENT_MAX_BYTES)
    limit = min(limits)
    if size > limit:
        towards = "a patient (Mon espace santé)" if patient_recipient is not None else "this operator"
        raise MessageTooLargeError(
            f"the message is {size} bytes, over the {limit}-byte limit towards {towards}",
            size=size,
            limit=limit,
            hint="send the documents in several messages, or compress the attachments",
        )
    matricule = identity.ins.matricule if identity is not None and identity.ins is not None else None
    return BuiltMessage(
        email=email,
        sender=sender.address,
        recipients=tuple(dict.fromkeys(a.address for a in recipients)),
        message_id=mid,
        size=size,
        patient_matricule=matricule,
        document_ids=tuple(doc.unique_id for doc in packed),
        package=package,
        delivery_receipt=message.delivery_receipt,
    )


def _check_one_patient(packed: Sequence[XdmDocument], identity: Identity | None) -> None:
    ids = {doc.patient_id for doc in packed}
    if len(ids) > 1:
        raise ValidationError(
            "the CDA documents are about several patients; a message carries one patient's documents (ECO.2.1.1)",
            hint="send one message per patient",
        )
    if identity is not None and identity.ins is not None and packed:
        expected = identity.ins.to_xds_cx()
        if packed[0].patient_id != expected:
            raise ValidationError(
                "the CDA documents are about another patient than the one the message is for",
                hint="check the documents' recordTarget and the recipient",
            )


def _carries_qualified_ins(packed: Sequence[XdmDocument], identity: Identity) -> bool:
    """``X-MSS-INS: O`` when the archive's patientId is this qualified identity's INS (with its traits)."""
    if identity.ins is None or not identity.ins.key_valid:
        return False
    try:
        expected = identity.require_qualified("the X-MSS-INS header").to_xds_cx()
    except DmpConnectorError:
        return False
    return all(doc.patient_id == expected for doc in packed)


# --------------------------------------------------------------------------- received


class ReceivedAttachment(BaseModel):
    """One attachment of a received message."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    filename: str | None
    """The file name given by the sender (display only: never use it as a path)."""
    content_type: str
    """Its media type, lower case."""
    content: bytes = Field(repr=False)
    """The decoded bytes."""


class ReceivedMessage(BaseModel):
    """A message read from the mailbox; every field may hold health data — do not log it."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", arbitrary_types_allowed=True)

    uid: int | None = None
    """IMAP UID in ``folder`` (None when parsed from bytes alone)."""
    folder: str | None = None
    """The folder it was read from."""
    message_id: str | None = None
    """``Message-ID``."""
    in_reply_to: str | None = None
    """``In-Reply-To``."""
    references: tuple[str, ...] = ()
    """``References``."""
    sender: str | None = Field(default=None, repr=False)
    """``From`` as written (a patient's is their matricule)."""
    to: tuple[str, ...] = Field(default=(), repr=False)
    """``To`` addresses."""
    cc: tuple[str, ...] = Field(default=(), repr=False)
    """``Cc`` addresses."""
    subject: str | None = Field(default=None, repr=False)
    """``Subject``, decoded."""
    date: datetime | None = None
    """``Date``, when readable."""
    text: str | None = Field(default=None, repr=False)
    """The plain-text body."""
    html: str | None = Field(default=None, repr=False)
    """The HTML body."""
    attachments: tuple[ReceivedAttachment, ...] = Field(default=(), repr=False)
    """Every attachment, the XDM archive and PDFs included."""
    xdm: XdmPackage | None = Field(default=None, repr=False)
    """The unpacked ``IHE_XDM.ZIP``, when one came and could be read safely."""
    xdm_error: DmpConnectorError | None = None
    """Why an attached XDM archive was refused: the typed error (``PatientMismatchError`` for
    another patient's metadata, ``UnsafeArchiveError`` for a bomb or a traversal …), never raised;
    :attr:`xdm_error_text` gives it as one line."""
    receipt: Receipt | None = None
    """The DSN, bounce or MDN this message is, if it is one."""
    code_cda: tuple[str, ...] = ()
    """``X-MSS-CODECDA`` values."""
    ins_qualified: bool | None = None
    """``X-MSS-INS``: True for ``O``, False for ``N``, None when absent."""
    nil: str | None = None
    """``X-MSS-NIL``: the sending software's reference."""
    end_of_conversation: bool = False
    """``X-MSS-MES: FIN`` or a subject of exactly ``[FIN]``."""
    read_receipt_to: str | None = Field(default=None, repr=False)
    """``Disposition-Notification-To``: the sender asks for an MDN (ECO.3.1.6)."""
    raw: bytes = Field(default=b"", repr=False)
    """The message as received, for archiving."""

    @property
    def display_subject(self) -> str | None:
        """The subject without the ``XDM/1.0/DDM+`` prefix, as receivers must show it (SC.MSS/UX.28)."""
        if self.subject is not None and self.subject.startswith(SUBJECT_PREFIX):
            return self.subject[len(SUBJECT_PREFIX) :]
        return self.subject

    @property
    def xdm_error_text(self) -> str | None:
        """:attr:`xdm_error` as one line, ``"<ErrorType>: <message>"`` (the form it had as a string)."""
        error = self.xdm_error
        return None if error is None else f"{type(error).__name__}: {error.message}"

    @property
    def documents(self) -> tuple[XdmDocument, ...]:
        """The documents of the XDM archive (empty without one)."""
        return self.xdm.documents if self.xdm is not None else ()


def _addresses(mail: Message, name: str) -> tuple[str, ...]:
    try:
        header = mail.get(name)
        if header is None:
            return ()
        groups = getattr(header, "addresses", None)
        if groups is None:
            return (str(header),)
        return tuple(str(a.addr_spec) for a in groups)
    except MIME_ERRORS:
        # A header the strict parser refuses (``From: <``): read it with the lenient one.
        raw = header_text(mail, name)
        if raw is None:
            return ()
        try:
            return tuple(address for _, address in getaddresses([raw]) if address)
        except MIME_ERRORS:
            return (raw,)


def _text_of(part: Message) -> str | None:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError, AttributeError):
        raw = part.get_payload(decode=True)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None
    return content if isinstance(content, str) else None


def parse_message(
    raw: bytes,
    *,
    uid: int | None = None,
    folder: str | None = None,
    limits: ArchiveLimits | None = None,
    settings: Settings | None = None,
    mime_limits: MimeLimits | None = None,
) -> ReceivedMessage:
    """Read received bytes: headers, bodies, attachments, the XDM archive, the receipt.

    A header the email package cannot parse is kept as written. The structure is measured
    first (:func:`check_structure`, bounds from ``mime_limits``, else ``settings.mssante``):
    a message too deep, with too many parts or a header block too large, or one whose MIME
    cannot be read at all, raises :class:`UnreadableMessageError` (a
    :class:`~dmp_connector.errors.MalformedResponseError`) naming ``uid`` — an error about
    this one message, not the mailbox.
    """
    bounds = mime_limits or mime_limits_of(settings)
    check_structure(raw, bounds, uid=uid, folder=folder)
    try:
        return _parse_message(raw, uid=uid, folder=folder, limits=limits, settings=settings)
    except (*MIME_ERRORS, RecursionError) as exc:
        where = f"message uid {uid}" if uid is not None else "the message"
        raise UnreadableMessageError(
            f"{where} cannot be read as MIME ({type(exc).__name__})",
            reason="mime",
            uid=uid,
            folder=folder,
            hint="keep the raw message and report it to the sending software",
        ) from exc


def mime_limits_of(settings: Settings | None) -> MimeLimits:
    """The structure bounds ``settings.mssante`` sets (the defaults without settings)."""
    if settings is None:
        return MimeLimits()
    mss = settings.mssante
    return MimeLimits(max_depth=mss.max_mime_depth, max_parts=mss.max_mime_parts, max_header_bytes=mss.max_header_bytes)


def _parse_message(
    raw: bytes, *, uid: int | None, folder: str | None, limits: ArchiveLimits | None, settings: Settings | None
) -> ReceivedMessage:
    mail = message_from_bytes(raw, policy=policy.default)
    text: str | None = None
    html: str | None = None
    attachments: list[ReceivedAttachment] = []
    receipt = parse_receipt(mail)
    if receipt is None:
        for part in mail.walk():
            if part.is_multipart():
                continue
            disposition = part.get_content_disposition()
            kind = part.get_content_type()
            if disposition != "attachment" and kind == "text/plain" and text is None:
                text = _text_of(part)
            elif disposition != "attachment" and kind == "text/html" and html is None:
                html = _text_of(part)
            elif disposition == "attachment" or part.get_filename():
                payload = part.get_payload(decode=True)
                attachments.append(
                    ReceivedAttachment(
                        filename=part.get_filename(),
                        content_type=kind,
                        content=payload if isinstance(payload, bytes) else b"",
                    )
                )
    package: XdmPackage | None = None
    xdm_error: DmpConnectorError | None = None
    archive = next(
        (a for a in attachments if (a.filename or "").upper() == XDM_ATTACHMENT_NAME or _is_xdm_zip(a)),
        None,
    )
    if archive is not None:
        try:
            package = read_package(archive.content, limits=limits, xml_limits=settings.xml if settings else None)
            # Identity vigilance on every package: one patient throughout, the sending patient's if a patient sent it.
            package.require_one_patient(matricule=patient_matricule(_first(_addresses(mail, "From")) or ""))
        except DmpConnectorError as exc:
            package = None
            # Kept, not raised: without its traceback, whose frames hold the archive and its parsed trees.
            release(exc)
            xdm_error = exc.with_traceback(None)
    subject_text = header_text(mail, "Subject")
    ins_header = (header_text(mail, "X-MSS-INS") or "").strip().upper()
    date: datetime | None = None
    date_text = header_text(mail, "Date")
    if date_text is not None:
        try:
            date = parsedate_to_datetime(date_text)
        except (TypeError, ValueError, IndexError):
            date = None
    references = tuple((header_text(mail, "References") or "").split())
    dnt = header_text(mail, "Disposition-Notification-To")
    return ReceivedMessage(
        uid=uid,
        folder=folder,
        message_id=_header(mail, "Message-ID"),
        in_reply_to=_header(mail, "In-Reply-To"),
        references=references,
        sender=_addresses(mail, "From")[0] if _addresses(mail, "From") else None,
        to=_addresses(mail, "To"),
        cc=_addresses(mail, "Cc"),
        subject=subject_text,
        date=date,
        text=text,
        html=html,
        attachments=tuple(attachments),
        xdm=package,
        xdm_error=xdm_error,
        receipt=receipt,
        code_cda=tuple(c.strip() for c in (header_text(mail, "X-MSS-CODECDA") or "").split(",") if c.strip()),
        ins_qualified=True if ins_header == "O" else False if ins_header == "N" else None,
        nil=_header(mail, "X-MSS-NIL"),
        end_of_conversation=(header_text(mail, "X-MSS-MES") or "").strip().upper() == "FIN"
        or (subject_text or "").strip() == END_OF_CONVERSATION_SUBJECT,
        read_receipt_to=dnt,
        raw=raw,
    )


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


def _header(mail: Message, name: str) -> str | None:
    value = header_text(mail, name)
    if value is None:
        return None
    text = value.strip()
    return text or None


def _is_xdm_zip(attachment: ReceivedAttachment) -> bool:
    return attachment.content_type in ("application/zip", "application/x-zip-compressed") and (
        attachment.filename or ""
    ).upper().startswith("IHE_XDM")
