"""DSNs, bounces and MDNs read into typed results; malformed reports never raise."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from dmp_connector.mssante.receipts import (
    BounceReason,
    DeliveryAction,
    DeliveryReport,
    DispositionType,
    ReadReceipt,
    parse_receipt,
)

PATIENT = "297022A02077878@patient.mssante.fr"


def dsn(blocks: str, *, human: str = "Message non distribué.", returned: str = "text/rfc822-headers") -> bytes:
    return (
        "From: MAILER-DAEMON@mss.operator.fr\r\n"
        "To: dr.house@medecin.mssante.fr\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{human}\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"{blocks}\r\n"
        f"--B\r\nContent-Type: {returned}\r\n\r\n"
        "Message-ID: <orig-1@medecin.mssante.fr>\r\nSubject: XDM/1.0/DDM+CR ADRTROIS DOMINIQUE 26/02/1997\r\n\r\n"
        "--B--\r\n"
    ).encode()


def test_a_patient_without_a_mailbox_comes_back_as_a_typed_bounce() -> None:
    report = parse_receipt(
        dsn(
            "Reporting-MTA: dns; mx.patient.mssante.fr\r\nOriginal-Envelope-Id: env-42\r\n\r\n"
            f"Final-Recipient: rfc822; {PATIENT}\r\nOriginal-Recipient: rfc822;{PATIENT}\r\n"
            "Action: failed\r\nStatus: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 Message non distribue:\r\n patient inconnu\r\n"
        )
    )
    assert isinstance(report, DeliveryReport)
    assert report.structured and report.is_bounce and not report.delivered
    assert report.patient_not_reached
    assert report.reporting_mta == "mx.patient.mssante.fr"
    assert report.original_envelope_id == "env-42"
    assert report.original_message_id == "<orig-1@medecin.mssante.fr>"
    [recipient] = report.failed
    assert recipient.final_recipient == PATIENT
    assert recipient.original_recipient == PATIENT
    assert recipient.action is DeliveryAction.FAILED
    assert recipient.status == "5.1.1"
    assert recipient.reason is BounceReason.MAILBOX_UNKNOWN
    assert recipient.diagnostic is not None and "patient inconnu" in recipient.diagnostic
    assert report.explanation == "Message non distribué."


@pytest.mark.parametrize(
    ("status", "diagnostic", "reason"),
    [
        ("5.2.1", "smtp; 550 5.2.1 mailbox disabled", BounceReason.MAILBOX_CLOSED),
        ("5.1.1", "smtp; 550 boite aux lettres fermée", BounceReason.MAILBOX_CLOSED),
        ("5.3.4", "smtp; 552 5.3.4 message too big", BounceReason.MESSAGE_TOO_LARGE),
        ("5.1.3", "smtp; 501 bad address syntax", BounceReason.INVALID_ADDRESS),
        ("5.7.1", "smtp; 554 5.7.1 relay denied", BounceReason.REFUSED),
        ("5.7.1", "smtp; 550 5.7.1 Le patient s'est opposé à Mon espace santé", BounceReason.PATIENT_OPPOSED),
        ("4.4.1", "smtp; 421 try later", BounceReason.TEMPORARY),
        ("5.0.0", "smtp; 554 oops", BounceReason.OTHER),
    ],
)
def test_bounce_reasons_come_from_status_and_diagnostic(status: str, diagnostic: str, reason: BounceReason) -> None:
    action = "delayed" if status.startswith("4") else "failed"
    report = parse_receipt(
        dsn(
            f"Final-Recipient: rfc822; a@x.mssante.fr\r\nAction: {action}\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: {diagnostic}\r\n"
        )
    )
    assert isinstance(report, DeliveryReport)
    assert report.recipients[0].reason is reason
    assert not report.patient_not_reached


def test_a_delivery_receipt_lists_every_recipient() -> None:
    report = parse_receipt(
        dsn(
            "Reporting-MTA: dns; mx.operator.fr\r\n\r\n"
            "Final-Recipient: rfc822; a@x.mssante.fr\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
            "Final-Recipient: rfc822; b@y.mssante.fr\r\nAction: relayed\r\nStatus: 2.0.0\r\n",
            human="Your message was delivered.",
            returned="message/rfc822",
        )
    )
    assert isinstance(report, DeliveryReport)
    assert report.delivered and not report.is_bounce
    assert [r.final_recipient for r in report.recipients] == ["a@x.mssante.fr", "b@y.mssante.fr"]
    assert all(r.reason is None for r in report.recipients)
    assert report.original_message_id == "<orig-1@medecin.mssante.fr>"


def mdn(disposition: str, *, error: str | None = None) -> bytes:
    fields = (
        "Reporting-UA: pfi.chb.mssante.fr; PFI\r\n"
        "Original-Recipient: rfc822;serviceY_auto@chb.mssante.fr\r\n"
        "Final-Recipient: rfc822;serviceY_auto@chb.mssante.fr\r\n"
        "Original-Message-ID: <20240219230100.23456@chb.mssante.fr>\r\n"
        f"Disposition: {disposition}\r\n"
    )
    if error:
        fields += f"Error: {error}\r\n"
    return (
        "From: serviceY_auto@chb.mssante.fr\r\nTo: serviceY@chb.mssante.fr\r\nSubject: [KO] x\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nLe document n'a pas pu etre integre.\r\n"
        f"--R\r\nContent-Type: message/disposition-notification\r\n\r\n{fields}\r\n"
        "--R--\r\n"
    ).encode()


def test_a_successful_mdn() -> None:
    receipt = parse_receipt(mdn("automatic-action/MDN-sent-automatically; processed"))
    assert isinstance(receipt, ReadReceipt)
    assert receipt.disposition is DispositionType.PROCESSED
    assert receipt.automatic is True
    assert receipt.original_message_id == "<20240219230100.23456@chb.mssante.fr>"
    assert receipt.final_recipient == "serviceY_auto@chb.mssante.fr"
    assert receipt.original_recipient == "serviceY_auto@chb.mssante.fr"
    assert receipt.reporting_ua == "pfi.chb.mssante.fr; PFI"
    assert not receipt.failed and receipt.error is None


def test_a_manual_read_receipt() -> None:
    receipt = parse_receipt(mdn("manual-action/MDN-sent-manually; displayed"))
    assert isinstance(receipt, ReadReceipt)
    assert receipt.disposition is DispositionType.DISPLAYED and receipt.automatic is False


ERROR = "902^Identifiant de patient inconnu^applicationErrorCondition| E^Error^errorSeverity"


def test_an_integration_error_in_the_error_field() -> None:
    receipt = parse_receipt(mdn("automatic-action/MDN-sent-automatically; processed/error", error=ERROR))
    assert isinstance(receipt, ReadReceipt)
    assert receipt.failed and receipt.modifiers == ("error",)
    assert receipt.error is not None
    assert (receipt.error.code, receipt.error.label, receipt.error.known) == (
        "902",
        "Identifiant de patient inconnu",
        True,
    )
    assert receipt.error.raw == ERROR


def test_an_integration_error_in_the_legacy_disposition() -> None:
    receipt = parse_receipt(mdn(f"automatic-action/MDN-sent-automatically; processed/Error: {ERROR}"))
    assert isinstance(receipt, ReadReceipt)
    assert receipt.disposition is DispositionType.PROCESSED
    assert receipt.error is not None and receipt.error.code == "902"
    unlabelled = parse_receipt(mdn("automatic-action/MDN-sent-automatically; processed/error", error="905"))
    assert isinstance(unlabelled, ReadReceipt) and unlabelled.error is not None
    assert unlabelled.error.label == "incomplete INS"


def test_an_unstructured_bounce_is_recognised() -> None:
    raw = (
        b"From: MAILER-DAEMON@ens.fr\r\nTo: a@x.mssante.fr\r\nSubject: Message non distribu\xc3\xa9\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nLa boite est fermee.\r\n"
    )
    report = parse_receipt(raw)
    assert isinstance(report, DeliveryReport)
    assert not report.structured and report.is_bounce and report.recipients == ()


def test_an_ordinary_message_is_no_receipt() -> None:
    raw = b"From: a@x.mssante.fr\r\nTo: b@y.mssante.fr\r\nSubject: hello\r\n\r\nbody\r\n"
    assert parse_receipt(raw) is None
    assert parse_receipt(message_from_bytes(raw, policy=policy.default)) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=X\r\n\r\n--X--\r\n",
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=X\r\n\r\ngarbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=X\r\n\r\n--X\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nAction\r\n: : :\r\nStatus: nonsense\r\n--X--\r\n",
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=X\r\n\r\n--X\r\n"
        b"Content-Type: message/disposition-notification\r\n\r\nDisposition: whatever\r\n--X--\r\n",
    ],
)
def test_malformed_reports_do_not_raise(raw: bytes) -> None:
    assert parse_receipt(raw) is not None
