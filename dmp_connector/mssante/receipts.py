"""Delivery reports (DSN, bounces) and read receipts (MDN) read into typed results.

MSSanté acknowledgements are ordinary mail (reference §1.5):

* the *accusé de réception* is a DSN, RFC 3464 — ``multipart/report;
  report-type=delivery-status``, one ``message/delivery-status`` part with a per-message
  block (``Reporting-MTA``, ``Original-Envelope-Id``) and one block per recipient
  (``Final-Recipient``, ``Action``, ``Status``, ``Diagnostic-Code``). A bounce is a DSN
  whose action is ``failed``; Mon espace santé answers a patient without a mailbox with
  such a "Message non distribué" bounce;
* the *accusé de lecture* is an MDN, RFC 8098 — ``report-type=disposition-notification``
  with ``Disposition``, ``Final-Recipient``, ``Original-Message-ID``. ANS's automatic
  integration volet puts an integration error (codes 900–906, ``code^label^…``) in the
  ``Error`` field; its earlier versions put it after ``processed/Error:`` in
  ``Disposition``. Both are read.

Parsing never raises on a malformed report: what cannot be read is left ``None`` and the
result says ``structured=False`` for a bounce that is not a DSN at all. Nothing here logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from email import message_from_bytes, policy
from email.errors import MessageError
from email.message import Message
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .address import PATIENT_DOMAIN

__all__ = [
    "BounceReason",
    "DeliveryAction",
    "DeliveryReport",
    "DispositionType",
    "IntegrationError",
    "ReadReceipt",
    "Receipt",
    "RecipientReport",
    "parse_receipt",
]


class DeliveryAction(StrEnum):
    """``Action`` of a DSN recipient block (RFC 3464 §2.3.3)."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


class BounceReason(StrEnum):
    """Why a message was not delivered, read from the enhanced status code and the diagnostic.

    The MSSanté patient causes (mailbox closed, patient not found, invalid address, too
    large) come from the CNAM's description of Mon espace santé bounces; the mapping from
    status codes to them is ours (RFC 3463 meanings).
    """

    MAILBOX_UNKNOWN = "mailbox_unknown"
    """No such mailbox (5.1.1 …): for a patient, no Mon espace santé or an unknown INS."""
    MAILBOX_CLOSED = "mailbox_closed"
    """The mailbox exists but is closed or disabled (5.2.1): a patient who closed Mon espace santé."""
    INVALID_ADDRESS = "invalid_address"
    """The address itself is wrong (5.1.3 …)."""
    MESSAGE_TOO_LARGE = "message_too_large"
    """Over the size limit (5.2.3, 5.3.4): 25 MB towards patients."""
    PATIENT_OPPOSED = "patient_opposed"
    """The patient opposed the creation of Mon espace santé: they have no mailbox and never will by default."""
    REFUSED = "refused"
    """Refused by policy (5.7.x): outside the trust space, not allowed to write to this patient …"""
    TEMPORARY = "temporary"
    """A 4.x.x status: the operator is still trying."""
    OTHER = "other"
    """Anything else."""


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _reason(status: str | None, diagnostic: str | None) -> BounceReason:
    text = " ".join(filter(None, (status, diagnostic))).lower()
    match = _STATUS.search(text)
    code = match.group(0) if match else ""
    if code.startswith("4."):
        return BounceReason.TEMPORARY
    if "oppos" in text:
        return BounceReason.PATIENT_OPPOSED
    if any(word in text for word in ("ferm", "closed", "disabled", "désactiv", "desactiv", "clôtur", "clotur")):
        return BounceReason.MAILBOX_CLOSED
    if code in ("5.2.3", "5.3.4") or "too large" in text or "trop volumineux" in text or "size" in text:
        return BounceReason.MESSAGE_TOO_LARGE
    if code == "5.2.1":
        return BounceReason.MAILBOX_CLOSED
    if code in ("5.1.1", "5.1.6", "5.1.10") or "unknown" in text or "inconnu" in text or "not found" in text:
        return BounceReason.MAILBOX_UNKNOWN
    if code.startswith("5.1."):
        return BounceReason.INVALID_ADDRESS
    if code.startswith("5.7."):
        return BounceReason.REFUSED
    return BounceReason.OTHER


class RecipientReport(BaseModel):
    """What a DSN says about one recipient."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    final_recipient: str | None
    """``Final-Recipient`` address, without its ``rfc822;`` type."""
    original_recipient: str | None = None
    """``Original-Recipient`` address (the ORCPT the sender gave), when present."""
    action: DeliveryAction | None
    """``Action``; None when missing or not one of RFC 3464's values."""
    status: str | None
    """``Status``: the enhanced status code, ``5.1.1`` …"""
    diagnostic: str | None = None
    """``Diagnostic-Code`` (the remote server's answer), when present."""
    remote_mta: str | None = None
    """``Remote-MTA``, when present."""
    reason: BounceReason | None = None
    """For a ``failed`` or ``delayed`` action: why, read from the status and diagnostic."""

    @property
    def is_patient(self) -> bool:
        """True when the recipient is a patient's Mon espace santé address."""
        return (self.final_recipient or self.original_recipient or "").lower().endswith("@" + PATIENT_DOMAIN)


class DeliveryReport(BaseModel):
    """A delivery status notification (accusé de réception) or a bounce."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    kind: Literal["delivery"] = "delivery"
    """Discriminator: this is a DSN or bounce."""
    structured: bool = True
    """False for a bounce that is not an RFC 3464 report (recognised from its sender and subject only)."""
    reporting_mta: str | None = None
    """``Reporting-MTA``: the server that wrote the report."""
    original_envelope_id: str | None = None
    """``Original-Envelope-Id``: the ``ENVID`` given at ``MAIL FROM``, to match the report to a send."""
    original_message_id: str | None = None
    """``Message-ID`` of the message reported on, from the returned headers or message."""
    recipients: tuple[RecipientReport, ...] = ()
    """One entry per recipient block."""
    explanation: str | None = None
    """The human-readable part, as the server wrote it (may quote the original subject: do not log)."""

    @property
    def delivered(self) -> bool:
        """True when every recipient was delivered (or relayed/expanded) and none failed."""
        return bool(self.recipients) and all(
            r.action in (DeliveryAction.DELIVERED, DeliveryAction.RELAYED, DeliveryAction.EXPANDED)
            for r in self.recipients
        )

    @property
    def failed(self) -> tuple[RecipientReport, ...]:
        """The recipients the message could not be delivered to."""
        return tuple(r for r in self.recipients if r.action is DeliveryAction.FAILED)

    @property
    def is_bounce(self) -> bool:
        """True when at least one recipient failed, or for an unstructured bounce."""
        return bool(self.failed) or not self.structured

    @property
    def patient_not_reached(self) -> bool:
        """True for Mon espace santé's "Message non distribué": a patient recipient failed."""
        return any(r.is_patient for r in self.failed)


class DispositionType(StrEnum):
    """The disposition type of an MDN (RFC 8098 §3.2.6.2)."""

    DISPLAYED = "displayed"
    DELETED = "deleted"
    DISPATCHED = "dispatched"
    PROCESSED = "processed"


_INTEGRATION_LABELS = {
    "900": "wrong version of the volet",
    "901": "author not allowed",
    "902": "unknown patient",
    "903": "no INS",
    "904": "INS mismatch",
    "905": "incomplete INS",
    "906": "other error",
}


class IntegrationError(BaseModel):
    """An automatic-integration error reported in an MDN (ANS codes 900–906, ``code^label^…``)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    code: str
    """The code, ``902`` …"""
    label: str | None
    """The label the consuming system gave, or ours for a known code when it gave none."""
    raw: str
    """The whole error string as received."""

    @property
    def known(self) -> bool:
        """True for one of the codes 900–906 of the volet."""
        return self.code in _INTEGRATION_LABELS


class ReadReceipt(BaseModel):
    """A message disposition notification (accusé de lecture, or an integration report)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    kind: Literal["read"] = "read"
    """Discriminator: this is an MDN."""
    original_message_id: str | None
    """``Original-Message-ID``: the ``Message-ID`` of the message this MDN is about."""
    final_recipient: str | None
    """``Final-Recipient`` address, without its ``rfc822;`` type."""
    original_recipient: str | None = None
    """``Original-Recipient`` address, when present."""
    reporting_ua: str | None = None
    """``Reporting-UA``: the software that wrote the MDN."""
    automatic: bool | None = None
    """True for ``automatic-action``, False for ``manual-action``, None if unreadable."""
    disposition: DispositionType | None
    """What was done with the message; None if unreadable."""
    modifiers: tuple[str, ...] = ()
    """Disposition modifiers, lower-cased (``error`` …)."""
    error: IntegrationError | None = None
    """The integration error, from ``Error`` (or a legacy ``processed/Error: …`` disposition)."""
    explanation: str | None = None
    """The human-readable part (may quote the original subject: do not log)."""

    @property
    def failed(self) -> bool:
        """True when the recipient reports an error rather than a successful disposition."""
        return self.error is not None or "error" in self.modifiers


Receipt = DeliveryReport | ReadReceipt
"""What :func:`parse_receipt` returns for a report."""


MIME_ERRORS = (MessageError, LookupError, ValueError, TypeError, AttributeError)
"""What the standard library's email package raises on a header or part it cannot read (a hostile
``From: <``, a parameter without its quote …): the readers here turn it into a value read as
written, or into a typed error, never let it out."""


def header_text(mail: Message, name: str) -> str | None:
    """The header ``name`` as text, None when absent; one the email package cannot parse is given as written."""
    try:
        value = mail.get(name)
        return None if value is None else str(value)
    except MIME_ERRORS:
        wanted = name.lower()
        for key, raw in mail.raw_items():
            if str(key).lower() == wanted:
                return str(raw)
        return None


def parse_receipt(message: Message | bytes) -> Receipt | None:
    """The DSN, bounce or MDN that ``message`` is, or None for an ordinary message (or one too broken to tell)."""
    mail = message if isinstance(message, Message) else message_from_bytes(message, policy=policy.default)
    try:
        return _receipt(mail)
    except MIME_ERRORS:
        return None


def _receipt(mail: Message) -> Receipt | None:
    content_type = mail.get_content_type()
    report_type = (mail.get_param("report-type") or "") if content_type == "multipart/report" else ""
    report_type = str(report_type).lower()
    if content_type == "multipart/report" and report_type == "delivery-status":
        return _delivery_report(mail)
    if content_type == "multipart/report" and report_type == "disposition-notification":
        return _read_receipt(mail)
    if _looks_like_bounce(mail):
        return DeliveryReport(structured=False, explanation=_human_text(mail), original_message_id=_returned_id(mail))
    return None


def _subparts(mail: Message) -> Iterator[Message]:
    if mail.is_multipart():
        payload = mail.get_payload()
        if isinstance(payload, list):
            yield from (item for item in payload if isinstance(item, Message))


def _field_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The blocks of ``Name: value`` fields of a report part, however the parser stored it."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [
            [(str(k), " ".join(str(v).split())) for k, v in block.items()]
            for block in payload
            if isinstance(block, Message)
        ]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return _parse_blocks(text)


def _parse_blocks(text: str) -> list[list[tuple[str, str]]]:
    blocks: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        if line[0] in " \t" and blocks[-1]:
            name, value = blocks[-1][-1]
            blocks[-1][-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip():
            blocks[-1].append((name.strip(), value.strip()))
    return [block for block in blocks if block]


def _get(block: Iterable[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in block:
        if key.lower() == wanted:
            return value.strip() or None
    return None


def _address(value: str | None) -> str | None:
    """``rfc822; someone@example`` → ``someone@example``."""
    if value is None:
        return None
    _, sep, rest = value.partition(";")
    address = (rest if sep else value).strip().strip("<>").strip()
    return address or None


def _action(value: str | None) -> DeliveryAction | None:
    if value is None:
        return None
    try:
        return DeliveryAction(value.split()[0].lower())
    except (ValueError, IndexError):
        return None


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    match = _STATUS.search(value)
    return match.group(0) if match else value.split()[0] if value.split() else None


def _human_text(mail: Message) -> str | None:
    for part in mail.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    return raw.decode(charset, "replace").strip() or None
                except LookupError:
                    return raw.decode("utf-8", "replace").strip() or None
            return None
    return None


def _returned_id(mail: Message) -> str | None:
    """``Message-ID`` of the returned message (``message/rfc822`` or ``text/rfc822-headers``)."""
    for part in mail.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                value = inner[0].get("Message-ID")
                return str(value).strip() if value else None
        if kind in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers"):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload())
            for block in _parse_blocks(text):
                found = _get(block, "Message-ID")
                if found:
                    return found
    return None


def _delivery_report(mail: Message) -> DeliveryReport:
    status_part = next((p for p in _subparts(mail) if p.get_content_type() == "message/delivery-status"), None)
    blocks = _field_blocks(status_part) if status_part is not None else []
    per_message = blocks[0] if blocks and _get(blocks[0], "Final-Recipient") is None else []
    recipient_blocks = blocks[1:] if per_message else blocks
    recipients = []
    for block in recipient_blocks:
        action = _action(_get(block, "Action"))
        status = _status(_get(block, "Status"))
        diagnostic = _get(block, "Diagnostic-Code")
        failing = action in (DeliveryAction.FAILED, DeliveryAction.DELAYED)
        recipients.append(
            RecipientReport(
                final_recipient=_address(_get(block, "Final-Recipient")),
                original_recipient=_address(_get(block, "Original-Recipient")),
                action=action,
                status=status,
                diagnostic=diagnostic,
                remote_mta=_address(_get(block, "Remote-MTA")),
                reason=_reason(status, diagnostic) if failing else None,
            )
        )
    return DeliveryReport(
        reporting_mta=_address(_get(per_message, "Reporting-MTA")),
        original_envelope_id=_get(per_message, "Original-Envelope-Id"),
        original_message_id=_returned_id(mail),
        recipients=tuple(recipients),
        explanation=_human_text(mail),
    )


_DISPOSITION = re.compile(
    r"^\s*(?P<action>[\w-]+)\s*/\s*(?P<sending>[\w-]+)\s*;\s*(?P<type>[\w-]+)\s*(?:/\s*(?P<modifiers>.*))?$",
    re.DOTALL,
)


def _integration_error(text: str | None) -> IntegrationError | None:
    if not text:
        return None
    raw = text.strip()
    fields = raw.split("^")
    code = fields[0].strip()
    label = fields[1].strip() if len(fields) > 1 and fields[1].strip() else _INTEGRATION_LABELS.get(code)
    return IntegrationError(code=code, label=label, raw=raw)


def _read_receipt(mail: Message) -> ReadReceipt:
    part = next((p for p in _subparts(mail) if p.get_content_type() == "message/disposition-notification"), None)
    fields = [field for block in (_field_blocks(part) if part is not None else []) for field in block]
    disposition_text = _get(fields, "Disposition") or ""
    automatic: bool | None = None
    disposition: DispositionType | None = None
    modifiers: tuple[str, ...] = ()
    legacy_error: str | None = None
    match = _DISPOSITION.match(disposition_text)
    if match is not None:
        action = match["action"].lower()
        automatic = True if action == "automatic-action" else False if action == "manual-action" else None
        try:
            disposition = DispositionType(match["type"].lower())
        except ValueError:
            disposition = None
        rest = (match["modifiers"] or "").strip()
        if rest.lower().startswith("error:"):
            # Earlier ANS volets: "processed/Error: 902^label^…" — the string itself is the error.
            modifiers = ("error",)
            legacy_error = rest[len("error:") :].strip()
        elif rest:
            modifiers = tuple(m.strip().lower() for m in rest.split(",") if m.strip())
    error = _integration_error(_get(fields, "Error") or legacy_error)
    return ReadReceipt(
        original_message_id=_get(fields, "Original-Message-ID"),
        final_recipient=_address(_get(fields, "Final-Recipient")),
        original_recipient=_address(_get(fields, "Original-Recipient")),
        reporting_ua=_get(fields, "Reporting-UA"),
        automatic=automatic,
        disposition=disposition,
        modifiers=modifiers,
        error=error,
        explanation=_human_text(mail),
    )


_BOUNCE_SUBJECTS = ("message non distribué", "message non distribue", "undelivered mail", "delivery status")
_BOUNCE_SENDERS = ("mailer-daemon@", "postmaster@")


def _looks_like_bounce(mail: Message) -> bool:
    sender = (header_text(mail, "From") or "").lower()
    subject = (header_text(mail, "Subject") or "").lower()
    return any(s in sender for s in _BOUNCE_SENDERS) and any(s in subject for s in _BOUNCE_SUBJECTS)
