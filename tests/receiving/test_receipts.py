"""Read receipts sent as MSSanté expects them, and DSN/MDN received linked to the message sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dmp_connector.mssante import (
    INTEGRATION_ERROR_SUBJECT,
    DispositionType,
    MdnNotAllowedError,
    MssanteAddress,
    MssanteMessage,
    ReadReceipt,
    RecipientStatus,
    SendResult,
    SmtpReply,
    build_message,
    parse_message,
    parse_receipt,
    read_receipt_refusal,
)
from dmp_connector.mssante import build_read_receipt as mdn
from dmp_connector.receiving import MessageTracking, RecipientState, SentMessage, link_receipt

from .test_filing import SETTINGS

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DOCTOR = "dr.house@medecin.mssante.fr"
NURSE = "ide.martin@infirmier.mssante.fr"
US = "lps@cabinet-test.mssante.fr"


def _incoming(*, return_path: str | None = None, read_receipt: bool = True) -> bytes:
    """A message from the doctor to us asking for a read receipt, as our inbox would hold it."""
    doctor_settings = SETTINGS.model_copy(update={"mssante": SETTINGS.mssante.model_copy(update={"mailbox": DOCTOR})})
    built = build_message(
        MssanteMessage(to=(MssanteAddress.parse(US),), subject="Avis", text="Bonjour", read_receipt=read_receipt),
        doctor_settings,
        now=NOW,
    )
    raw = built.as_bytes()
    if return_path is not None:
        raw = f"Return-Path: <{return_path}>\r\n".encode() + raw
    return raw


def test_read_receipt_layout() -> None:
    message = parse_message(_incoming())
    built = mdn(message, SETTINGS, now=NOW)
    mail = built.email
    assert built.recipients == (DOCTOR,) and built.sender == US
    assert mail.get_content_type() == "multipart/report"
    assert mail.get_param("report-type") == "disposition-notification"
    parts = list(mail.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/disposition-notification", "message/rfc822"]
    fields = parts[1].get_payload()
    assert isinstance(fields, str)
    assert f"Final-Recipient: rfc822;{US}" in fields
    assert f"Original-Message-ID: {message.message_id}" in fields
    assert "Disposition: manual-action/MDN-sent-manually; displayed" in fields
    assert mail["In-Reply-To"] == message.message_id and mail["X-MSS-NIL"] == "NIL-0042"
    assert "a été lu" in parts[0].get_content()
    # What we send, our own reader reads back, as a peer's would.
    receipt = parse_receipt(built.as_bytes())
    assert isinstance(receipt, ReadReceipt)
    assert receipt.disposition is DispositionType.DISPLAYED and receipt.automatic is False
    assert receipt.original_message_id == message.message_id and receipt.final_recipient == US


def test_integration_error_receipt() -> None:
    message = parse_message(_incoming(return_path=DOCTOR))
    built = mdn(message, SETTINGS, error=("902", "Patient inconnu"), automatic=True, now=NOW)
    assert str(built.email["Subject"]).startswith(f"{INTEGRATION_ERROR_SUBJECT}[902] ")
    receipt = parse_receipt(built.as_bytes())
    assert isinstance(receipt, ReadReceipt) and receipt.failed
    assert receipt.error is not None and receipt.error.code == "902" and receipt.error.label == "Patient inconnu"
    assert receipt.automatic is True and receipt.disposition is DispositionType.PROCESSED


def test_when_no_receipt_may_be_sent() -> None:
    unasked = parse_message(_incoming(read_receipt=False))
    assert read_receipt_refusal(unasked, automatic=False) is not None
    with pytest.raises(MdnNotAllowedError):
        mdn(unasked, SETTINGS)
    # RFC 8098 §2.1: no automatic receipt when Disposition-Notification-To is not the Return-Path.
    elsewhere = parse_message(_incoming(return_path="bounces@relay.mssante.fr"))
    assert read_receipt_refusal(elsewhere, automatic=True) is not None
    assert read_receipt_refusal(elsewhere, automatic=False) is None  # the user may still send it
    with pytest.raises(MdnNotAllowedError):
        mdn(elsewhere, SETTINGS, disposition=DispositionType.PROCESSED, automatic=True)
    # No receipt about a receipt.
    a_receipt = parse_message(mdn(parse_message(_incoming()), SETTINGS, now=NOW).as_bytes())
    assert a_receipt.receipt is not None
    with pytest.raises(MdnNotAllowedError):
        mdn(a_receipt, SETTINGS)


def test_headers_only_on_request() -> None:
    built = mdn(parse_message(_incoming()), SETTINGS, include_original=False, now=NOW)
    assert [p.get_content_type() for p in built.email.iter_parts()][-1] == "text/rfc822-headers"


def _dsn(message_id: str, recipient: str, action: str, status: str) -> bytes:
    return (
        "From: MAILER-DAEMON@relay.mssante.fr\r\nTo: lps@cabinet-test.mssante.fr\r\nSubject: Delivery Status\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; relay.mssante.fr\r\nOriginal-Envelope-Id: {message_id.strip('<>')}\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n--b--\r\n"
    ).encode()


def test_receipts_move_each_recipient_forward_never_back() -> None:
    sent = SentMessage(message_id="<abc.123@cabinet-test.mssante.fr>", recipients=(DOCTOR, NURSE))
    other = SentMessage(message_id="<zzz@cabinet-test.mssante.fr>", recipients=(DOCTOR,))
    tracking = MessageTracking.start(sent)
    assert tracking.state_of(DOCTOR) is RecipientState.SENT

    delivered = parse_receipt(_dsn(sent.message_id, DOCTOR, "delivered", "2.0.0"))
    bounced = parse_receipt(_dsn(sent.message_id, NURSE, "failed", "5.1.1"))
    assert delivered is not None and bounced is not None
    assert link_receipt(delivered, [other, sent]) == sent
    tracking = tracking.apply(delivered).apply(bounced)
    assert tracking.state_of(DOCTOR) is RecipientState.DELIVERED
    assert tracking.state_of(NURSE) is RecipientState.FAILED and not tracking.delivered
    assert tracking.recipients[1].bounce is not None

    # The doctor's software answers with a read receipt about our message.
    ours = SETTINGS.model_copy(update={"mssante": SETTINGS.mssante.model_copy(update={"mailbox": US})})
    original = build_message(
        MssanteMessage(to=(MssanteAddress.parse(DOCTOR),), subject="Avis", text="x", read_receipt=True),
        ours,
        now=NOW,
        message_id=sent.message_id,
    )
    doctor_side = SETTINGS.model_copy(update={"mssante": SETTINGS.mssante.model_copy(update={"mailbox": DOCTOR})})
    read = parse_receipt(mdn(parse_message(original.as_bytes()), doctor_side, now=NOW).as_bytes())
    assert read is not None
    tracking = tracking.apply(read)
    assert tracking.state_of(DOCTOR) is RecipientState.READ
    late = tracking.apply(delivered)  # a late DSN does not undo the read receipt
    assert late.state_of(DOCTOR) is RecipientState.READ
    assert MessageTracking.start(other).apply(read).state_of(DOCTOR) is RecipientState.SENT  # not about it


def test_sent_message_from_a_send_result() -> None:
    result = SendResult(
        message_id="<m@x.mssante.fr>",
        recipients=(
            RecipientStatus(address=DOCTOR, reply=SmtpReply(code=250, text="ok")),
            RecipientStatus(address=NURSE, reply=SmtpReply(code=550, text="no")),
        ),
        reply=SmtpReply(code=250, text="ok"),
        dsn_requested=True,
    )
    assert SentMessage.from_result(result).recipients == (DOCTOR,)
