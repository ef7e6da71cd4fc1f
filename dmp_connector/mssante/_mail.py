"""The transport's data: DSN options, SMTP replies, send results, message summaries; and redaction.

Pure values, re-exported by :mod:`dmp_connector.mssante.transport`; kept apart so that the
SMTP and IMAP cores can build them without importing the transport shells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from dmp_connector.errors import ValidationError

from ._mime import UnreadableMessageError

__all__ = [
    "DsnNotify",
    "DsnOptions",
    "DsnReturn",
    "MailSummary",
    "RecipientStatus",
    "SendResult",
    "SmtpReply",
    "patient_matricule",
    "redact_address",
    "redact_text",
]

PATIENT_DOMAIN_SUFFIX = "@patient.mssante.fr"


def redact_address(address: str) -> str:
    """``address`` fit for a log or a ``repr``: a patient's matricule is masked, other addresses kept.

    A professional address is not health data; a patient's is their INS matricule.
    """
    if address.lower().endswith(PATIENT_DOMAIN_SUFFIX):
        return "***" + address[-len(PATIENT_DOMAIN_SUFFIX) :]
    return address


_PATIENT_ADDRESS = re.compile(r"[^\s<>\"'@,;:()\[\]]+(@patient\.mssante\.fr)", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` (a server reply, an error) with every patient address's matricule masked."""
    return _PATIENT_ADDRESS.sub(r"***\1", text)


def patient_matricule(address: str) -> str | None:
    """The matricule in a ``<matricule>@patient.mssante.fr`` address, else None."""
    if address.lower().endswith(PATIENT_DOMAIN_SUFFIX):
        local = address[: -len(PATIENT_DOMAIN_SUFFIX)]
        return local or None
    return None


class DsnNotify(StrEnum):
    """When the receiving side should send a delivery status notification (RFC 3461 ``NOTIFY``)."""

    SUCCESS = "SUCCESS"
    """Delivered: the MSSanté "accusé de réception"."""
    FAILURE = "FAILURE"
    """Not delivered (bounce)."""
    DELAY = "DELAY"
    """Delivery is delayed."""
    NEVER = "NEVER"
    """No notification at all, not even a bounce; excludes the others."""


class DsnReturn(StrEnum):
    """How much of the message a failure notification carries back (RFC 3461 ``RET``)."""

    FULL = "FULL"
    HEADERS = "HDRS"


@dataclass(frozen=True)
class DsnOptions:
    """Delivery status notifications to ask for with a send (RFC 3461).

    They become ``NOTIFY=…`` and ``ORCPT=rfc822;…`` on each ``RCPT TO`` and ``RET=…``,
    ``ENVID=…`` on ``MAIL FROM``. They need the server's ``DSN`` extension: without it
    the send is refused before anything goes out, unless ``required`` is False (then the
    message goes without them and :attr:`SendResult.dsn_requested` is False).
    """

    notify: frozenset[DsnNotify] = frozenset({DsnNotify.SUCCESS, DsnNotify.FAILURE})
    """When to notify; ``{NEVER}`` alone or any mix of SUCCESS, FAILURE, DELAY."""
    ret: DsnReturn | None = DsnReturn.HEADERS
    """Return the headers only (default: no health data travels back twice) or the full message."""
    envid: str | None = None
    """Envelope id echoed in the notifications, to match them with the send; printable ASCII."""
    original_recipient: bool = True
    """Send ``ORCPT=rfc822;<address>`` so that the notification names the recipient as we wrote it."""
    required: bool = True
    """Refuse to send when the server cannot honour the request (no ``DSN`` extension)."""

    def __post_init__(self) -> None:
        notify = frozenset(DsnNotify(n) for n in self.notify)
        object.__setattr__(self, "notify", notify)
        problems = []
        if not notify:
            problems.append("notify is empty: give NEVER or some of SUCCESS, FAILURE, DELAY")
        if DsnNotify.NEVER in notify and len(notify) > 1:
            problems.append("NOTIFY=NEVER excludes SUCCESS, FAILURE and DELAY")
        if self.envid is not None and (
            not self.envid or len(self.envid) > 100 or not all(33 <= ord(c) <= 126 for c in self.envid)
        ):
            problems.append("envid must be 1 to 100 printable ASCII characters without spaces")
        if problems:
            raise ValidationError("invalid DSN options", problems=problems)


@dataclass(frozen=True)
class SmtpReply:
    """An SMTP server reply: the three-digit code and its text (enhanced status code included)."""

    code: int
    text: str

    @property
    def is_success(self) -> bool:
        """A 2xx reply."""
        return 200 <= self.code < 300

    @property
    def is_transient(self) -> bool:
        """A 4xx reply: the server may accept the same command later."""
        return 400 <= self.code < 500


@dataclass(frozen=True)
class RecipientStatus:
    """What the server answered to one ``RCPT TO``."""

    address: str
    """The recipient as given to :meth:`MailTransport.send`."""
    reply: SmtpReply
    """The server's answer to ``RCPT TO``."""

    @property
    def accepted(self) -> bool:
        """The server took responsibility for delivering to this recipient."""
        return self.reply.is_success

    def __repr__(self) -> str:
        return f"RecipientStatus(address={redact_address(self.address)!r}, reply={self.reply!r})"


@dataclass(frozen=True)
class SendResult:
    """The outcome of a send that the server accepted for at least one recipient.

    Refused recipients are listed, not raised: the message went to the others, and
    sending it again would duplicate it for them. When every recipient is refused
    nothing is sent and :meth:`MailTransport.send` raises instead.
    """

    message_id: str
    """The message's ``Message-ID`` (added to the message if it had none); receipts refer to it."""
    recipients: tuple[RecipientStatus, ...]
    """One entry per recipient, in the order given."""
    reply: SmtpReply
    """The server's answer to the end of DATA (usually ``250 … queued as …``)."""
    dsn_requested: bool
    """Whether DSN parameters went with the envelope."""
    attempts: int = 1
    """Attempts made (more than one when a transient failure was retried)."""

    @property
    def accepted(self) -> tuple[str, ...]:
        """The recipients the server accepted."""
        return tuple(r.address for r in self.recipients if r.accepted)

    @property
    def refused(self) -> tuple[RecipientStatus, ...]:
        """The recipients the server refused, with its reply."""
        return tuple(r for r in self.recipients if not r.accepted)


@dataclass(frozen=True)
class MailSummary:
    """One message in a mailbox folder, as listed without downloading it.

    ``subject`` and ``sender`` are kept out of ``repr``: an MSSanté subject names the
    patient (``XDM/1.0/DDM+<libellé> <NOM> <prénom> …``) and a patient's address is their
    matricule. Do not log them.
    """

    uid: int
    """IMAP UID, stable within the folder while its UIDVALIDITY holds."""
    folder: str
    """Folder the message is in."""
    flags: frozenset[str]
    """IMAP flags (``\\Seen``, ``\\Answered`` …)."""
    size: int
    """Size in bytes (RFC822.SIZE) — what :meth:`MailTransport.fetch` would download."""
    internal_date: datetime | None
    """When the server received it (INTERNALDATE)."""
    message_id: str | None = None
    """The ``Message-ID`` header."""
    content_type: str | None = None
    """The top-level media type, lower case (``multipart/report`` for DSNs and MDNs)."""
    subject: str | None = field(default=None, repr=False)
    """Decoded ``Subject``; health data, never log it."""
    sender: str | None = field(default=None, repr=False)
    """The ``From`` header, decoded (as written when it cannot be decoded)."""
    uid_validity: int | None = None
    """The folder's UIDVALIDITY when listed: ``(folder, uid_validity, uid)`` names the message for good."""
    error: UnreadableMessageError | None = field(default=None, compare=False)
    """Why this message cannot be read (a header the email package refuses, or a message already
    found unreadable): the listing goes on, the other messages are unaffected."""

    @property
    def seen(self) -> bool:
        """Whether the message carries ``\\Seen``."""
        return "\\Seen" in self.flags
