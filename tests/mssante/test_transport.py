"""The MSSanté mail transport against the sandbox operator: real SMTP and IMAP, STARTTLS, loopback.

Every end-to-end test runs with the synchronous and the asynchronous transport through
the same :class:`Driver`, so that the two shells are held to the same behaviour.
"""

from __future__ import annotations

import asyncio
import email
import inspect
import os
import traceback
from email.message import EmailMessage, Message
from email.policy import SMTP, default
from pathlib import Path

import pytest

from dmp_connector.audit import MemorySink, Outcome
from dmp_connector.config import Environment, MailServer, MssanteAuthMode, MssanteSettings, Settings, TlsCredentials
from dmp_connector.errors import (
    ConfigurationError,
    ConnectError,
    ProtocolError,
    ServiceError,
    TlsError,
    ValidationError,
)
from dmp_connector.mssante._imap import encode_folder, parse_fetch_summaries
from dmp_connector.mssante._mail import redact_address, redact_text
from dmp_connector.mssante._smtp import xtext
from dmp_connector.mssante.auth import (
    MailAuthenticationError,
    StaticTokenProvider,
    xoauth2_initial_response,
)
from dmp_connector.mssante.transport import (
    AsyncMailTransport,
    DsnNotify,
    DsnOptions,
    DsnReturn,
    MailTransport,
    SendResult,
)
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox.mssante import SandboxMailbox, SandboxMailOperator, SandboxTokenProvider, SmtpFault
from tests.conftest import PkiFiles, make_settings

from .conftest import (
    APP_MAILBOX,
    CLIENT_CN,
    MODES,
    OTHER_MAILBOX,
    PATIENT_ACTIVE,
    PATIENT_CLOSED,
    PATIENT_UNKNOWN,
    PRO_MAILBOX,
    operator_settings,
    patient_address,
)
from .conftest import TransportDriver as Driver
from .conftest import open_transport as open_driver


def clinical_message(sender: str, to: str, *, attachment: bytes, subject: str | None = None) -> EmailMessage:
    """A message shaped like an MSSanté one: a patient-naming subject, text and a zip attachment."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject or "XDM/1.0/DDM+Compte rendu PATIENTNOM Prénom 19800101"
    message.set_content("Bonjour,\nveuillez trouver le compte rendu ci-joint.\n")
    message.add_attachment(attachment, maintype="application", subtype="zip", filename="IHE_XDM.zip")
    return message


def wire_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def attachments(raw: bytes) -> list[bytes]:
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    out = []
    for part in parsed.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append(payload)
    return out


def dsn_fields(raw: bytes) -> tuple[str, list[Message]]:
    """(subject, per-recipient blocks) of a delivery status notification."""
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    status = next(p for p in parsed.walk() if p.get_content_type() == "message/delivery-status")
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return str(parsed["Subject"]), [b for b in blocks[1:] if isinstance(b, Message)]


# --- send and read back ----------------------------------------------------------------


@MODES
def test_send_with_client_certificate_then_read_back_identical_over_xoauth2(
    mode: str,
    drivers: list[Driver],
    app_settings: Settings,
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    document = os.urandom(300_000)
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=document)
    sink = MemorySink()
    sender = open_driver(drivers, mode, app_settings, audit=[sink])
    result = sender.send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX])

    assert result.accepted == (PRO_MAILBOX,)
    assert result.refused == ()
    assert result.reply.code == 250
    assert result.attempts == 1
    assert result.message_id == str(message["Message-ID"])
    (received,) = mail_operator.received
    assert received.auth_method == "certificate"
    assert received.client_subject is not None and CLIENT_CN in received.client_subject
    assert received.authenticated_as == APP_MAILBOX

    reader = open_driver(drivers, mode, pro_settings, tokens=pro_tokens)
    (summary,) = reader.list_messages()
    assert summary.message_id == result.message_id
    assert summary.subject == str(message["Subject"])
    assert summary.content_type == "multipart/mixed"
    assert not summary.seen
    assert "Compte rendu" not in repr(summary)  # the subject names the patient: kept out of repr
    fetched = reader.fetch(summary.uid)
    sent = wire_bytes(message)
    assert fetched.endswith(sent)  # byte-identical after the operator's trace headers
    assert fetched[: -len(sent)].startswith(b"Return-Path: <" + APP_MAILBOX.encode() + b">\r\nReceived: ")
    assert summary.size == len(fetched)
    assert attachments(fetched) == [document]
    assert pro_tokens.calls == [False]  # one connection, one token

    (event,) = sink.events
    assert (event.service, event.operation, event.outcome, event.attempt) == ("mssante", "send", Outcome.SUCCESS, 1)
    assert event.correlation_id == result.message_id
    assert event.endpoint == f"smtp://127.0.0.1:{mail_operator.smtp_port}"


@MODES
def test_mail_to_a_patient_is_delivered_and_audited_under_a_pseudonym(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    sink = MemorySink()
    message = clinical_message(APP_MAILBOX, patient_address(PATIENT_ACTIVE), attachment=b"PK\x03\x04zip")
    result = open_driver(drivers, mode, app_settings, audit=[sink]).send(
        message, sender=APP_MAILBOX, recipients=[patient_address(PATIENT_ACTIVE)], document_ids=("1.2.3.4",)
    )
    assert result.accepted == (patient_address(PATIENT_ACTIVE),)
    (stored,) = mail_operator.stored(patient_address(PATIENT_ACTIVE))
    assert stored.content.endswith(wire_bytes(message))
    (event,) = sink.events
    assert event.patient is not None and event.patient.startswith("hmac-sha256:")
    assert event.document_ids == ("1.2.3.4",)
    dumped = event.to_json()
    assert PATIENT_ACTIVE not in dumped
    assert "PATIENTNOM" not in dumped and "Compte rendu" not in dumped
    assert PATIENT_ACTIVE not in repr(result)


@MODES
def test_unknown_and_closed_patients_bounce_with_a_delivery_status_notification(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    recipients = [patient_address(PATIENT_UNKNOWN), patient_address(PATIENT_CLOSED)]
    message = clinical_message(APP_MAILBOX, recipients[0], attachment=b"zip")
    driver = open_driver(drivers, mode, app_settings)
    # The operator accepts the mail (the patient domain is elsewhere), then Mon espace santé bounces it.
    result = driver.send(message, sender=APP_MAILBOX, recipients=recipients, dsn=DsnOptions(envid="ENV-42"))
    assert result.accepted == tuple(recipients)

    (bounce,) = driver.list_messages()
    assert bounce.content_type == "multipart/report"
    raw = driver.fetch(bounce.uid)
    subject, blocks = dsn_fields(raw)
    assert subject == "Message non distribué"
    assert [(b["Final-Recipient"].split(";")[1].strip(), b["Action"], b["Status"]) for b in blocks] == [
        (recipients[0], "failed", "5.1.1"),
        (recipients[1], "failed", "5.2.1"),
    ]
    assert "ENV-42" in raw.decode()
    assert str(message["Message-ID"]).encode() in raw  # the returned headers name the original
    assert mail_operator.stored(patient_address(PATIENT_UNKNOWN)) == []


@MODES
def test_dsn_parameters_go_on_the_envelope(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
    dsn = DsnOptions(notify=frozenset({DsnNotify.SUCCESS, DsnNotify.FAILURE}), ret=DsnReturn.HEADERS, envid="Env+1")
    result = open_driver(drivers, mode, app_settings).send(
        message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX], dsn=dsn
    )
    assert result.dsn_requested
    (received,) = mail_operator.received
    assert "RET=HDRS" in received.mail_parameters
    assert "ENVID=Env+2B1" in received.mail_parameters
    assert any(p.startswith("SIZE=") for p in received.mail_parameters)
    assert received.rcpt_parameters[PRO_MAILBOX] == ("NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{PRO_MAILBOX}")
    # NOTIFY=SUCCESS: the "accusé de réception" is in the sender's INBOX.
    (receipt,) = mail_operator.stored(APP_MAILBOX)
    _, blocks = dsn_fields(receipt.content)
    assert [(b["Action"], b["Status"]) for b in blocks] == [("delivered", "2.0.0")]


@MODES
def test_dsn_required_but_not_announced_is_refused_before_sending(
    mode: str, drivers: list[Driver], pki_files: PkiFiles
) -> None:
    with SandboxMailOperator(
        pki_files.pki,
        mailboxes=[SandboxMailbox(APP_MAILBOX, CLIENT_CN), PRO_MAILBOX],
        server_certificate=pki_files.server,
        announce_dsn=False,
    ) as operator:
        driver = open_driver(drivers, mode, operator_settings(pki_files, operator))
        message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
        with pytest.raises(ProtocolError, match="DSN"):
            driver.send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX], dsn=DsnOptions())
        assert operator.received == []
        result = driver.send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX], dsn=DsnOptions(required=False))
        assert not result.dsn_requested
        assert operator.received[0].rcpt_parameters[PRO_MAILBOX] == ()


@MODES
def test_refused_recipients_are_reported_and_all_refused_raises(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    driver = open_driver(drivers, mode, app_settings)
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
    result = driver.send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX, "nobody@medecin.mssante.fr"])
    assert result.accepted == (PRO_MAILBOX,)
    (refused,) = result.refused
    assert (refused.address, refused.reply.code) == ("nobody@medecin.mssante.fr", 550)
    assert len(mail_operator.received) == 1

    with pytest.raises(ServiceError) as info:
        driver.send(message, sender=APP_MAILBOX, recipients=["someone@gmail.com"])
    assert (info.value.service, info.value.code, info.value.transient) == ("mssante", "554", False)
    assert info.value.attempts == 1  # a refusal is an answer: not retried
    assert len(mail_operator.received) == 1


@MODES
def test_bcc_is_not_transmitted(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
    message["Bcc"] = OTHER_MAILBOX
    open_driver(drivers, mode, app_settings).send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX, OTHER_MAILBOX])
    (stored,) = mail_operator.stored(OTHER_MAILBOX)
    assert b"Bcc:" not in stored.content and OTHER_MAILBOX.encode() not in stored.content.split(b"\r\n\r\n")[1]


# --- XOAUTH2 ------------------------------------------------------------------------------


@MODES
def test_xoauth2_token_refused_once_is_refreshed_and_the_send_succeeds(
    mode: str,
    drivers: list[Driver],
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    mail_operator.refuse_valid_tokens(1)  # operators sometimes refuse a still-valid PSC token
    sink = MemorySink()
    message = clinical_message(PRO_MAILBOX, OTHER_MAILBOX, attachment=b"zip")
    result = open_driver(drivers, mode, pro_settings, tokens=pro_tokens, audit=[sink]).send(
        message, sender=PRO_MAILBOX, recipients=[OTHER_MAILBOX]
    )
    assert result.attempts == 2
    assert pro_tokens.calls == [False, True]
    assert [(e.attempt, e.outcome, e.error_type, e.error_code) for e in sink.events] == [
        (1, Outcome.FAILURE, "MailAuthenticationError", "535"),
        (2, Outcome.SUCCESS, None, None),
    ]
    assert {e.correlation_id for e in sink.events} == {result.message_id}
    assert mail_operator.received[0].auth_method == "xoauth2"


@MODES
def test_xoauth2_second_refusal_is_a_typed_error(
    mode: str,
    pro_transport: Driver,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    mail_operator.refuse_valid_tokens(2)

    with pytest.raises(MailAuthenticationError) as info:
        pro_transport.send(
            clinical_message(PRO_MAILBOX, OTHER_MAILBOX, attachment=b"z"),
            sender=PRO_MAILBOX,
            recipients=[OTHER_MAILBOX],
        )
    assert (info.value.service, info.value.code, info.value.operation) == ("mssante", "535", "authenticate")
    assert info.value.attempts == 2
    assert pro_tokens.calls == [False, True]
    assert mail_operator.received == []

    mail_operator.refuse_valid_tokens(2)
    with pytest.raises(MailAuthenticationError) as imap_info:
        pro_transport.list_messages()
    assert imap_info.value.code == "AUTHENTICATIONFAILED"
    assert pro_tokens.calls == [False, True, False, True]


@MODES
def test_imap_refreshes_a_refused_token_once(
    mode: str,
    drivers: list[Driver],
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    mail_operator.deliver(PRO_MAILBOX, b"Subject: hello\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n")
    mail_operator.refuse_valid_tokens(1)
    sink = MemorySink()
    (summary,) = open_driver(drivers, mode, pro_settings, tokens=pro_tokens, audit=[sink]).list_messages()
    assert summary.message_id == "<1@x>"
    assert pro_tokens.calls == [False, True]
    assert [(e.operation, e.attempt, e.outcome) for e in sink.events] == [
        ("list", 1, Outcome.FAILURE),
        ("list", 2, Outcome.SUCCESS),
    ]


@MODES
def test_expired_token_is_refreshed(
    mode: str, drivers: list[Driver], pro_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    tokens = SandboxTokenProvider(mail_operator, PRO_MAILBOX, lifetime=0.0)
    driver = open_driver(drivers, mode, pro_settings, tokens=tokens)
    with pytest.raises(MailAuthenticationError):
        driver.list_messages()
    assert tokens.calls == [False, True]
    tokens.lifetime = 60.0
    assert driver.list_messages() == []
    assert tokens.calls == [False, True, False, True]


def test_async_transport_takes_an_async_token_provider(
    pro_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    class AsyncTokens:
        def __init__(self) -> None:
            self.calls: list[bool] = []

        async def get_token(self, force_refresh: bool = False) -> str:
            self.calls.append(force_refresh)
            return mail_operator.issue_token(PRO_MAILBOX)

    tokens = AsyncTokens()
    mail_operator.refuse_valid_tokens(1)

    async def run() -> SendResult:
        async with AsyncMailTransport(pro_settings, token_provider=tokens) as transport:
            message = clinical_message(PRO_MAILBOX, OTHER_MAILBOX, attachment=b"zip")
            return await transport.send(message, sender=PRO_MAILBOX, recipients=[OTHER_MAILBOX])

    assert asyncio.run(run()).attempts == 2
    assert tokens.calls == [False, True]


# --- TLS ------------------------------------------------------------------------------------


@MODES
def test_a_server_without_starttls_is_refused(mode: str, drivers: list[Driver], pki_files: PkiFiles) -> None:
    with SandboxMailOperator(
        pki_files.pki,
        mailboxes=[SandboxMailbox(APP_MAILBOX, CLIENT_CN), PRO_MAILBOX],
        server_certificate=pki_files.server,
        starttls=False,
    ) as plain:
        sink = MemorySink()
        driver = open_driver(drivers, mode, operator_settings(pki_files, plain), audit=[sink])
        message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
        with pytest.raises(TlsError, match="does not offer STARTTLS"):
            driver.send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX])
        with pytest.raises(TlsError, match="does not offer STARTTLS"):
            driver.list_messages()
        assert plain.received == []
        # A TLS problem does not fix itself: one attempt each.
        assert [(e.operation, e.attempt, e.error_type) for e in sink.events] == [
            ("send", 1, "TlsError"),
            ("list", 1, "TlsError"),
        ]


@MODES
def test_an_untrusted_server_certificate_is_refused(
    mode: str, drivers: list[Driver], pki_files: PkiFiles, mail_operator: SandboxMailOperator, tmp_path: Path
) -> None:
    stranger = tmp_path / "other-ca.pem"
    stranger.write_bytes(TestPki.create(name="another CA").ca_pem)
    tls = TlsCredentials(cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=stranger)
    driver = open_driver(drivers, mode, operator_settings(pki_files, mail_operator, tls=tls))
    with pytest.raises(TlsError, match="not trusted") as info:
        driver.send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"z"), sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    assert info.value.hint is not None and "ca_bundle" in info.value.hint
    with pytest.raises(TlsError, match="not trusted"):
        driver.list_messages()
    assert mail_operator.received == []


@MODES
def test_a_client_certificate_the_operator_does_not_know_is_refused(
    mode: str, drivers: list[Driver], pki_files: PkiFiles, mail_operator: SandboxMailOperator, tmp_path: Path
) -> None:
    unbound = pki_files.pki.issue_client("Some Other Organisation AUTH_CLI")
    cert, key = unbound.write_pem(tmp_path, "unbound")
    tls = TlsCredentials(cert_file=cert, key_file=key, ca_bundle=pki_files.ca_bundle)
    driver = open_driver(drivers, mode, operator_settings(pki_files, mail_operator, tls=tls))
    with pytest.raises(MailAuthenticationError) as smtp_info:
        driver.send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"z"), sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    assert smtp_info.value.code == "530"
    with pytest.raises(MailAuthenticationError) as imap_info:
        driver.list_messages()
    assert imap_info.value.code == "AUTHENTICATIONFAILED"
    assert mail_operator.received == []


@MODES
def test_a_client_certificate_from_another_ca_fails_the_handshake(
    mode: str, drivers: list[Driver], pki_files: PkiFiles, mail_operator: SandboxMailOperator, tmp_path: Path
) -> None:
    foreign = TestPki.create(name="foreign CA").issue_client(CLIENT_CN)
    cert, key = foreign.write_pem(tmp_path, "foreign")
    tls = TlsCredentials(cert_file=cert, key_file=key, ca_bundle=pki_files.ca_bundle)
    driver = open_driver(drivers, mode, operator_settings(pki_files, mail_operator, tls=tls))
    with pytest.raises(TlsError):
        driver.send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"z"), sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    with pytest.raises(TlsError):
        driver.list_messages()
    assert mail_operator.received == []


# --- retries ---------------------------------------------------------------------------------


@MODES
@pytest.mark.parametrize("stage", ["mail", "rcpt", "end_of_data"])
def test_a_temporary_failure_is_retried(
    mode: str, stage: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    mail_operator.fail_next(SmtpFault(stage))  # type: ignore[arg-type]
    sink = MemorySink()
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
    result = open_driver(drivers, mode, app_settings, audit=[sink]).send(
        message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
    )
    assert result.attempts == 2
    assert [(e.attempt, e.outcome, e.error_code) for e in sink.events] == [
        (1, Outcome.FAILURE, "451"),
        (2, Outcome.SUCCESS, None),
    ]
    assert len(mail_operator.received) == 1  # a 4xx to the end of DATA means "not taken"
    assert len(mail_operator.stored(PRO_MAILBOX)) == 1


@MODES
def test_a_connection_lost_before_data_is_retried(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    mail_operator.fail_next(SmtpFault("rcpt", drop=True))
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
    result = open_driver(drivers, mode, app_settings).send(message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX])
    assert result.attempts == 2
    assert len(mail_operator.stored(PRO_MAILBOX)) == 1


@MODES
def test_an_answer_lost_after_data_is_not_resent(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    mail_operator.fail_next(SmtpFault("end_of_data", drop=True))  # kept, then the answer is lost
    sink = MemorySink()
    message = clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"zip")
    with pytest.raises(ConnectError) as info:
        open_driver(drivers, mode, app_settings, audit=[sink]).send(
            message, sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    assert info.value.retryable is False
    assert info.value.hint is not None and "duplicate" in info.value.hint
    assert info.value.attempts == 1
    assert len(sink.events) == 1
    assert len(mail_operator.stored(PRO_MAILBOX)) == 1  # delivered once, not twice


@MODES
def test_a_permanent_refusal_at_end_of_data_is_not_retried(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    mail_operator.fail_next(SmtpFault("end_of_data", reply="554 5.6.0 Content refused"))
    with pytest.raises(ServiceError) as info:
        open_driver(drivers, mode, app_settings).send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"z"), sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    assert (info.value.code, info.value.transient, info.value.attempts) == ("554", False, 1)


@MODES
def test_a_refusal_quoting_a_patient_address_is_not_chained_in_clear(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    # A server's reply may quote what it was given: the error keeps it (masked) on .text, never in a cause.
    patient = "1750599134012@patient.mssante.fr"
    mail_operator.fail_next(SmtpFault("end_of_data", reply=f"554 5.6.0 Refused for {patient}"))
    with pytest.raises(ServiceError) as info:
        open_driver(drivers, mode, app_settings).send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"z"), sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    chain: list[BaseException] = []
    current: BaseException | None = info.value
    while current is not None and current not in chain:
        chain.append(current)
        # As traceback and logging walk it: the cause, else the context unless suppressed (``from None``).
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    assert not [e for e in chain if type(e).__module__.startswith("aiosmtplib")], "the raw reply is chained"
    printed = "".join(traceback.format_exception(info.value))
    assert "1750599134012" not in printed and "1750599134012" not in str(info.value)


# --- IMAP operations ------------------------------------------------------------------------


@MODES
def test_list_fetch_mark_seen_and_move(
    mode: str,
    drivers: list[Driver],
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    first = b"From: a@x.mssante.fr\r\nSubject: premier\r\nMessage-ID: <a@x>\r\n\r\nun\r\n"
    second = b"From: b@x.mssante.fr\r\nSubject: =?utf-8?q?deuxi=C3=A8me?=\r\nMessage-ID: <b@x>\r\n\r\ndeux\r\n"
    mail_operator.deliver(PRO_MAILBOX, first)
    mail_operator.deliver(PRO_MAILBOX, second)
    mail_operator.deliver(PRO_MAILBOX, b"Subject: old\r\n\r\nread\r\n", flags=["\\Seen"])
    sink = MemorySink()
    driver = open_driver(drivers, mode, pro_settings, tokens=pro_tokens, audit=[sink])

    unseen = driver.list_messages()
    assert [(s.message_id, s.subject, s.sender) for s in unseen] == [
        ("<a@x>", "premier", "a@x.mssante.fr"),
        ("<b@x>", "deuxième", "b@x.mssante.fr"),
    ]
    assert len(driver.list_messages(unseen_only=False)) == 3
    assert driver.fetch(unseen[0].uid) == first
    assert not driver.list_messages()[0].seen  # fetch peeks: \Seen only when asked
    driver.mark_seen(unseen[0].uid)
    assert [s.message_id for s in driver.list_messages()] == ["<b@x>"]
    driver.move(unseen[1].uid, "Traités/Août")
    assert driver.list_messages() == []
    (moved,) = driver.list_messages("Traités/Août")
    assert moved.message_id == "<b@x>"
    assert driver.fetch(moved.uid, "Traités/Août") == second
    assert "Traités/Août" in mail_operator.folders(PRO_MAILBOX)
    with pytest.raises(ServiceError) as info:
        driver.fetch(999_999)
    assert info.value.code == "NONEXISTENT"
    assert pro_tokens.calls == [False]  # one IMAP connection served every call
    assert {e.operation for e in sink.events} == {"list", "fetch", "mark_seen", "move"}
    assert all(e.endpoint == f"imap://127.0.0.1:{mail_operator.imap_port}" for e in sink.events)


@MODES
def test_a_message_over_the_fetch_limit_is_refused_unread(
    mode: str, drivers: list[Driver], pki_files: PkiFiles, mail_operator: SandboxMailOperator
) -> None:
    mss = MssanteSettings(mailbox=APP_MAILBOX, max_fetch_bytes=1000, connect_timeout=5, timeout=5)
    settings = operator_settings(pki_files, mail_operator, mssante=mss)
    mail_operator.deliver(APP_MAILBOX, b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n")
    driver = open_driver(drivers, mode, settings)
    (summary,) = driver.list_messages()
    with pytest.raises(ProtocolError, match="over the 1000-byte limit"):
        driver.fetch(summary.uid)


@MODES
def test_the_imap_connection_is_reopened_after_it_dropped(
    mode: str,
    pro_transport: Driver,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    assert pro_transport.list_messages() == []
    transport = pro_transport._sync or pro_transport._async
    assert transport is not None and transport._slot.session is not None
    imap = transport._slot.session._imap
    assert imap is not None
    imap.shutdown()  # the connection dies under the transport
    assert pro_transport.list_messages() == []
    assert pro_tokens.calls == [False, False]


# --- preparation and configuration (no network) ------------------------------------------------


def test_a_message_over_the_size_limit_is_refused_before_connecting(pki_files: PkiFiles) -> None:
    settings = make_settings(
        pki_files,
        environment=Environment.sandbox(smtp_port=1),
        mssante=MssanteSettings(mailbox=APP_MAILBOX, max_message_bytes=10_000),
    )
    sink = MemorySink()
    with MailTransport(settings, audit=[sink]) as transport, pytest.raises(ValidationError, match="over the"):
        transport.send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=os.urandom(20_000)),
            sender=APP_MAILBOX,
            recipients=[PRO_MAILBOX],
        )
    assert sink.events == []


def test_configuration_errors_are_clear(pki_files: PkiFiles) -> None:
    xoauth2 = MssanteSettings(mailbox=PRO_MAILBOX, auth_mode=MssanteAuthMode.XOAUTH2)
    with pytest.raises(ConfigurationError, match="token provider"):
        MailTransport(make_settings(pki_files, mssante=xoauth2))
    no_mailbox = MssanteSettings(auth_mode=MssanteAuthMode.XOAUTH2)
    with pytest.raises(ConfigurationError, match="mailbox"):
        MailTransport(make_settings(pki_files, mssante=no_mailbox), token_provider=StaticTokenProvider("t"))
    no_cert = make_settings(pki_files, tls=TlsCredentials(ca_bundle=pki_files.ca_bundle))
    with pytest.raises(ConfigurationError, match="client certificate"):
        MailTransport(no_cert)
    env = Environment.sandbox().model_copy(update={"mssante_smtp": None, "mssante_imap": None})
    with MailTransport(make_settings(pki_files, environment=env)) as transport:
        with pytest.raises(ConfigurationError, match="SMTP server"):
            transport.send(EmailMessage(), sender=APP_MAILBOX, recipients=[PRO_MAILBOX])
        with pytest.raises(ConfigurationError, match="IMAP server"):
            transport.list_messages()


def test_addresses_are_checked_and_a_message_id_is_added(pki_files: PkiFiles) -> None:
    settings = make_settings(pki_files, environment=Environment.sandbox(smtp_port=1))
    with MailTransport(settings) as transport:
        with pytest.raises(ValidationError, match="recipient"):
            transport.send(EmailMessage(), sender=APP_MAILBOX, recipients=["Dr Martin <dr.martin@medecin.mssante.fr>"])
        with pytest.raises(ValidationError, match="at least one recipient"):
            transport.send(EmailMessage(), sender=APP_MAILBOX, recipients=[])
        prepared = transport._prepare_send(
            EmailMessage(), APP_MAILBOX, [PRO_MAILBOX, PRO_MAILBOX.upper()], None, None, ()
        )
    assert prepared.job.recipients == (PRO_MAILBOX,)
    assert prepared.message_id.endswith("@cabinet-test.mssante.fr>")


def test_dsn_options_are_validated() -> None:
    with pytest.raises(ValidationError):
        DsnOptions(notify=frozenset({DsnNotify.NEVER, DsnNotify.SUCCESS}))
    with pytest.raises(ValidationError):
        DsnOptions(notify=frozenset())
    with pytest.raises(ValidationError):
        DsnOptions(envid="has space")
    assert DsnOptions(notify=frozenset({"DELAY"})).notify == frozenset({DsnNotify.DELAY})  # type: ignore[arg-type]


def test_xoauth2_initial_response_and_its_checks() -> None:
    assert xoauth2_initial_response("a@b.fr", "tok") == b"user=a@b.fr\x01auth=Bearer tok\x01\x01"
    for bad in ("", "Bearer tok", "a\x01b"):
        with pytest.raises(ConfigurationError):
            xoauth2_initial_response("a@b.fr", bad)
    assert "s3cr3t" not in repr(StaticTokenProvider("s3cr3t"))


def test_wire_encodings() -> None:
    assert xtext("a+b=c@d.fr") == "a+2Bb+3Dc@d.fr"
    assert encode_folder("INBOX") == '"INBOX"'
    assert encode_folder("Traités/Août") == '"Trait&AOk-s/Ao&APs-t"'
    assert encode_folder('A&B "x"') == '"A&-B \\"x\\""'
    with pytest.raises(ValidationError):
        encode_folder("bad\r\nname")


def test_fetch_answers_are_parsed_whatever_the_item_order() -> None:
    data: list[object] = [
        (
            b'1 (UID 7 RFC822.SIZE 42 INTERNALDATE " 5-Mar-2026 10:11:12 +0100" BODY[HEADER.FIELDS (SUBJECT)] {19}',
            b"Subject: bonjour\r\n\r\n",
        ),
        b" FLAGS (\\Seen \\Answered))",
        (b"2 (UID 9 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {2}", b"\r\n"),
        b")",
    ]
    first, second = parse_fetch_summaries(data, "INBOX")
    assert (first.uid, first.size, first.subject, first.flags) == (
        7,
        42,
        "bonjour",
        frozenset({"\\Seen", "\\Answered"}),
    )
    assert first.internal_date is not None and first.internal_date.isoformat() == "2026-03-05T10:11:12+01:00"
    assert (second.uid, second.flags, second.subject, second.internal_date) == (9, frozenset(), None, None)


def test_patient_addresses_are_redacted() -> None:
    assert redact_address(patient_address(PATIENT_ACTIVE)) == "***@patient.mssante.fr"
    assert redact_address(PRO_MAILBOX) == PRO_MAILBOX
    text = f"550 5.1.1 <{patient_address(PATIENT_ACTIVE)}>: unknown"
    assert redact_text(text) == "550 5.1.1 <***@patient.mssante.fr>: unknown"


def test_async_transport_mirrors_the_sync_one() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync, asyn = public(MailTransport), public(AsyncMailTransport)
    renamed = {"close": "aclose"}
    assert {renamed.get(n, n) for n in sync} == set(asyn)
    for name, signature in sync.items():
        twin = getattr(AsyncMailTransport, renamed.get(name, name))
        if name != "with_options":  # a copy, no I/O: the same method on both
            assert inspect.iscoroutinefunction(twin), name
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name


def test_smtp_policy_serialisation_is_what_goes_on_the_wire() -> None:
    message = EmailMessage(policy=SMTP)
    message["Subject"] = "x"
    message.set_content("y")
    assert wire_bytes(message) == message.as_bytes()


def test_mail_server_is_a_plain_model() -> None:
    assert MailServer(host="h", port=587).starttls


# --- temporary failures and the real servers' way of refusing (issue 17) -----------------------


@MODES
def test_a_token_check_that_is_down_is_transient_not_a_refused_token(
    mode: str,
    drivers: list[Driver],
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    driver = open_driver(drivers, mode, pro_settings, tokens=pro_tokens)
    # IMAP NO [UNAVAILABLE] (Dovecot when its auth backend fails): retried, no token refresh
    mail_operator.token_check_down(1)
    assert driver.list_messages() == []
    assert pro_tokens.calls == [False, False]
    # every attempt meets it (a new connection): a transient ServiceError, never MailAuthenticationError
    driver = open_driver(drivers, mode, pro_settings, tokens=pro_tokens)
    mail_operator.token_check_down(3)
    with pytest.raises(ServiceError) as imap_info:
        driver.list_messages()
    assert not isinstance(imap_info.value, MailAuthenticationError)
    assert (imap_info.value.code, imap_info.value.transient) == ("UNAVAILABLE", True)
    assert True not in pro_tokens.calls and imap_info.value.attempts == 3
    assert pro_tokens.calls == [False] * 5

    # SMTP 454 4.7.0 at AUTH: the same
    calls = len(pro_tokens.calls)
    mail_operator.token_check_down(1)
    message = clinical_message(PRO_MAILBOX, OTHER_MAILBOX, attachment=b"zip")
    result = driver.send(message, sender=PRO_MAILBOX, recipients=[OTHER_MAILBOX])
    assert result.attempts == 2 and True not in pro_tokens.calls[calls:]
    mail_operator.token_check_down(3)
    with pytest.raises(ServiceError) as smtp_info:
        driver.send(message, sender=PRO_MAILBOX, recipients=[OTHER_MAILBOX])
    assert not isinstance(smtp_info.value, MailAuthenticationError)
    assert (smtp_info.value.code, smtp_info.value.transient) == ("454", True)
    assert True not in pro_tokens.calls[calls:]
    assert len(mail_operator.received) == 1


@MODES
def test_554_at_rcpt_for_a_certificate_is_an_authentication_error(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    # Postfix with permit_tls_clientcerts takes an unknown certificate at STARTTLS and refuses at RCPT
    mail_operator.fail_next(SmtpFault("rcpt", reply=f"554 5.7.1 <{PRO_MAILBOX}>: Relay access denied"))
    driver = open_driver(drivers, mode, app_settings)
    with pytest.raises(MailAuthenticationError) as info:
        driver.send(
            clinical_message(APP_MAILBOX, PRO_MAILBOX, attachment=b"z"), sender=APP_MAILBOX, recipients=[PRO_MAILBOX]
        )
    assert info.value.code == "554" and info.value.attempts == 1
    assert info.value.hint is not None and "certificate" in info.value.hint
    assert mail_operator.received == []


@MODES
def test_554_at_rcpt_with_a_token_stays_an_address_refusal(
    mode: str,
    pro_transport: Driver,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    mail_operator.fail_next(SmtpFault("rcpt", reply=f"554 5.7.1 <{OTHER_MAILBOX}>: Relay access denied"))

    with pytest.raises(ServiceError) as info:
        pro_transport.send(
            clinical_message(PRO_MAILBOX, OTHER_MAILBOX, attachment=b"z"),
            sender=PRO_MAILBOX,
            recipients=[OTHER_MAILBOX],
        )
    assert not isinstance(info.value, MailAuthenticationError) and info.value.code == "554"
    assert pro_tokens.calls == [False]
