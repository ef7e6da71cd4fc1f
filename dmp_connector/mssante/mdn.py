"""Sending read receipts (MDN, RFC 8098) as MSSanté expects them.

ECO.3.1.6: the software must be able to return an MDN when a received message asks for one
(``Disposition-Notification-To``). The layout is the one the ANS fixes for automatic
integration (reference §1.5, ``struct-msg-mdn.md``), which is RFC 8098's:

* ``multipart/report; report-type=disposition-notification``;
* part 1, a human text (French);
* part 2, ``message/disposition-notification`` with ``Reporting-UA``, ``Original-Recipient``
  (when the message had one), ``Final-Recipient``, ``Original-Message-ID`` and ``Disposition``;
  for an integration error also ``Error: <code>^<label>`` (codes 900–906) and the subject
  ``[KO Intégration système !][<code>] …``;
* part 3, the original message (``message/rfc822``, its attachments with it, as the ANS asks),
  or only its headers (``text/rfc822-headers``) with ``include_original=False``.

Never sent: for a message that asked for none, for a receipt (no MDN about a DSN or an MDN),
and — the loop guard RFC 8098 §2.1 and the ANS recall — automatically when
``Disposition-Notification-To`` is not the ``Return-Path``. :func:`read_receipt_refusal` says
why; :func:`build_read_receipt` raises :class:`MdnNotAllowedError` with that reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from dmp_connector._version import __version__
from dmp_connector.config import Settings
from dmp_connector.errors import ValidationError

from .address import MSSANTE_DOMAINS, MssanteAddress, TrustSpace, require_trusted
from .message import SUBJECT_PREFIX, BuiltMessage, ReceivedMessage, _nil
from .receipts import DispositionType, header_text

__all__ = ["INTEGRATION_ERROR_SUBJECT", "MdnNotAllowedError", "build_read_receipt", "read_receipt_refusal"]

INTEGRATION_ERROR_SUBJECT = "[KO Intégration système !]"
"""The subject prefix of an MDN reporting an integration error (followed by ``[<code>]``)."""

_LABELS = {
    DispositionType.DISPLAYED: "a été lu",
    DispositionType.PROCESSED: "a été intégré",
    DispositionType.DELETED: "a été supprimé sans avoir été lu",
    DispositionType.DISPATCHED: "a été transmis",
}


class MdnNotAllowedError(ValidationError):
    """A read receipt that must not be sent for this message (none asked, a receipt, a loop risk)."""


def _address(value: str | None) -> str | None:
    if not value:
        return None
    found = [addr for _, addr in getaddresses([value]) if addr]
    return found[0].lower() if found else None


def read_receipt_refusal(message: ReceivedMessage, *, automatic: bool) -> str | None:
    """Why no MDN may be sent for ``message`` (None when one may)."""
    if message.receipt is not None:
        return "the message is itself a delivery or read receipt: no receipt is sent for a receipt"
    target = _address(message.read_receipt_to)
    if target is None:
        return "the message asks for no read receipt (no Disposition-Notification-To)"
    if automatic:
        original = message_from_bytes(message.raw, policy=policy.default) if message.raw else None
        return_path = _address(header_text(original, "Return-Path")) if original is not None else None
        if return_path is None or return_path != target:
            return (
                "Disposition-Notification-To is not the Return-Path: an automatic receipt could loop "
                "(RFC 8098 §2.1); ask the user, then send it with automatic=False"
            )
    return None


def build_read_receipt(
    message: ReceivedMessage,
    settings: Settings,
    *,
    disposition: DispositionType = DispositionType.DISPLAYED,
    automatic: bool = False,
    error: tuple[str, str] | None = None,
    final_recipient: str | None = None,
    include_original: bool = True,
    trust_space: TrustSpace = MSSANTE_DOMAINS,
    now: datetime | None = None,
    message_id: str | None = None,
) -> BuiltMessage:
    """The MDN for ``message``, ready for :meth:`MssanteClient.send <dmp_connector.mssante.MssanteClient.send>`.

    ``disposition`` is what happened: *displayed* when the professional opened it (a manual
    action by default), *processed* when the software filed it (``automatic=True``). ``error``
    is an integration error ``(code, label)`` (ANS codes 900–906: ``("902", "Patient inconnu")``):
    the disposition becomes ``processed/error`` and the subject starts ``[KO Intégration
    système !][902]``. ``final_recipient`` is our mailbox (default ``mssante.mailbox``). The MDN
    goes only to an address of ``trust_space``. Raises :class:`MdnNotAllowedError` when
    :func:`read_receipt_refusal` gives a reason.
    """
    refusal = read_receipt_refusal(message, automatic=automatic)
    if refusal is not None:
        raise MdnNotAllowedError(f"no read receipt for this message: {refusal}")
    if error is not None:
        automatic = True
        disposition = DispositionType.PROCESSED
    target = MssanteAddress.parse(str(message.read_receipt_to))
    require_trusted([target], trust_space)
    ours_text = final_recipient or settings.mssante.mailbox
    if ours_text is None:
        raise MdnNotAllowedError(
            "a read receipt names our mailbox (Final-Recipient) and none is configured",
            hint="set mssante.mailbox or pass final_recipient",
        )
    ours = MssanteAddress.parse(ours_text)
    moment = now or datetime.now(UTC)
    original_id = message.message_id
    subject = message.display_subject or ""
    if subject and message.subject and message.subject.startswith(SUBJECT_PREFIX):
        subject = SUBJECT_PREFIX + subject

    email = EmailMessage(policy=policy.SMTP)
    email["From"] = ours.header_address()
    email["To"] = target.header_address()
    if error is not None:
        email["Subject"] = f"{INTEGRATION_ERROR_SUBJECT}[{error[0]}] {subject}".strip()
    else:
        email["Subject"] = f"Accusé de lecture : {message.display_subject or ''}".strip()
    email["Date"] = format_datetime(moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC))
    mid = message_id or make_msgid(domain=ours.domain)
    email["Message-ID"] = mid
    if original_id:
        email["In-Reply-To"] = original_id
        email["References"] = " ".join((*message.references, original_id))
    email["X-MSS-NIL"] = _nil(settings)
    email["Auto-Submitted"] = "auto-replied" if automatic else "auto-generated"

    when = message.date.strftime("%d/%m/%Y %H:%M") if message.date is not None else None
    sent = f" envoyé le {when}" if when else ""
    if error is not None:
        human = (
            f"Le message{sent} n'a pas pu être intégré.\r\nErreur {error[0]} : {error[1]}\r\n"
            "Le message et ses pièces jointes sont renvoyés avec cet accusé."
        )
    else:
        human = f"Le message{sent} {_LABELS[disposition]} par son destinataire {ours.address}."
    email.set_content(human, charset="utf-8")
    email.make_mixed()  # the human text becomes part 1 …
    _as_report(email)  # … of a multipart/report

    mode = "automatic-action/MDN-sent-automatically" if automatic else "manual-action/MDN-sent-manually"
    software = settings.software
    fields = [f"Reporting-UA: {software.name} {software.version}; dmp-connector {__version__}"]
    original_recipient = _original_recipient(message)
    if original_recipient:
        fields.append(f"Original-Recipient: rfc822;{original_recipient}")
    fields.append(f"Final-Recipient: rfc822;{ours.address}")
    if original_id:
        fields.append(f"Original-Message-ID: {original_id}")
    modifier = "/error" if error is not None else ""
    fields.append(f"Disposition: {mode}; {disposition.value}{modifier}")
    if error is not None:
        fields.append(f"Error: {error[0]}^{error[1]}")
    report = EmailMessage(policy=policy.SMTP)
    report["Content-Type"] = "message/disposition-notification"
    report.set_payload("\r\n".join(fields) + "\r\n")
    email.attach(report)

    if include_original and message.raw:
        returned = message_from_bytes(message.raw, policy=policy.SMTP)
        wrapper = EmailMessage(policy=policy.SMTP)
        wrapper["Content-Type"] = "message/rfc822"
        wrapper.set_payload([returned])
        email.attach(wrapper)
    elif message.raw:
        head = message.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        headers = EmailMessage(policy=policy.SMTP)
        headers["Content-Type"] = "text/rfc822-headers"
        headers.set_payload(head.decode("utf-8", "replace"))
        email.attach(headers)

    size = len(email.as_bytes())
    return BuiltMessage(
        email=email,
        sender=ours.address,
        recipients=(target.address,),
        message_id=mid,
        size=size,
        document_ids=(),
    )


def _as_report(email: EmailMessage) -> None:
    """Turn the ``multipart/mixed`` holding the human text into ``multipart/report`` (RFC 6522)."""
    email.replace_header("Content-Type", "multipart/report")
    email.set_param("report-type", "disposition-notification")


def _original_recipient(message: ReceivedMessage) -> str | None:
    if not message.raw:
        return None
    original = message_from_bytes(message.raw, policy=policy.default)
    value = header_text(original, "Original-Recipient")
    if value is None:
        return None
    _, sep, rest = value.partition(";")
    return (rest if sep else value).strip() or None
