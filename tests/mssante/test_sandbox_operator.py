"""The sandbox MSSanté operator, driven with the standard library's own SMTP and IMAP clients.

These tests pin what the operator does on the wire, independently of the SDK's
transport: STARTTLS before anything, the authentication it accepts, the extensions it
announces, who may send and receive, the bounces, and persistence.
"""

from __future__ import annotations

import email
import imaplib
import smtplib
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from email.policy import default
from pathlib import Path

import pytest

from dmp_connector.config import Environment
from dmp_connector.errors import ConfigurationError
from dmp_connector.sandbox.mssante import (
    PatientMailboxState,
    SandboxMailbox,
    SandboxMailOperator,
    SmtpFault,
)
from tests.conftest import PkiFiles

from .conftest import (
    APP_MAILBOX,
    CLIENT_CN,
    OTHER_MAILBOX,
    PATIENT_ACTIVE,
    PRO_MAILBOX,
    patient_address,
)

MESSAGE = b"From: dr.martin@medecin.mssante.fr\r\nSubject: essai\r\nMessage-ID: <t@x>\r\n\r\nBonjour\r\n"


def client_context(pki_files: PkiFiles, *, with_certificate: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki_files.ca_bundle))
    if with_certificate:
        context.load_cert_chain(pki_files.client_cert, pki_files.client_key)
    return context


@contextmanager
def smtp_session(
    operator: SandboxMailOperator, pki_files: PkiFiles, *, tls: bool = True, certificate: bool = False
) -> Iterator[smtplib.SMTP]:
    client = smtplib.SMTP(operator.host, operator.smtp_port, local_hostname="client.test", timeout=5)
    try:
        client.ehlo()
        if tls:
            client.starttls(context=client_context(pki_files, with_certificate=certificate))
            client.ehlo()
        yield client
    finally:
        client.close()


def xoauth2(client: smtplib.SMTP, user: str, token: str) -> int:
    """The SMTP code answering ``AUTH XOAUTH2``."""
    try:
        return client.auth("XOAUTH2", lambda challenge=None: f"user={user}\x01auth=Bearer {token}\x01\x01")[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code


@contextmanager
def imap_session(operator: SandboxMailOperator) -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4(operator.host, operator.imap_port, timeout=5)
    try:
        yield client
    finally:
        client.shutdown()


def dsn_status(raw: bytes) -> list[tuple[str, str]]:
    parsed = email.message_from_bytes(raw, policy=default)
    status = next(p for p in parsed.walk() if p.get_content_type() == "message/delivery-status")
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return [(str(b["Action"]), str(b["Status"])) for b in blocks[1:] if isinstance(b, Message)]


# --- SMTP -------------------------------------------------------------------------------------


def test_smtp_requires_starttls_before_anything_else(mail_operator: SandboxMailOperator, pki_files: PkiFiles) -> None:
    with smtp_session(mail_operator, pki_files, tls=False) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # no authentication offered in clear
        code, _ = client.mail(APP_MAILBOX)
        assert code == 530


def test_after_starttls_it_announces_size_dsn_and_xoauth2_only(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    with smtp_session(mail_operator, pki_files) as client:
        assert client.has_extn("dsn")
        assert client.has_extn("8bitmime")
        assert client.esmtp_features["size"] == str(25 * 1024 * 1024)
        assert client.esmtp_features["auth"].split() == ["XOAUTH2"]
        assert not client.has_extn("starttls")


def test_a_bound_client_certificate_authenticates_the_applicative_mailbox(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    with smtp_session(mail_operator, pki_files, certificate=True) as client:
        assert client.sendmail(APP_MAILBOX, [PRO_MAILBOX], MESSAGE) == {}
    (received,) = mail_operator.received
    assert (received.auth_method, received.authenticated_as) == ("certificate", APP_MAILBOX)
    assert received.client_subject is not None and f"commonName={CLIENT_CN}" in received.client_subject
    (stored,) = mail_operator.stored(PRO_MAILBOX)
    assert stored.content.endswith(MESSAGE)
    assert stored.content.startswith(f"Return-Path: <{APP_MAILBOX}>\r\nReceived: from client.test by ".encode())


def test_xoauth2_needs_a_live_token_of_the_same_mailbox(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    expired = mail_operator.issue_token(PRO_MAILBOX, lifetime=0)
    someone_elses = mail_operator.issue_token(OTHER_MAILBOX)
    for token in (expired, someone_elses, "made-up"):
        with smtp_session(mail_operator, pki_files) as client:
            assert xoauth2(client, PRO_MAILBOX, token) == 535
    with smtp_session(mail_operator, pki_files) as client:
        assert xoauth2(client, PRO_MAILBOX, mail_operator.issue_token(PRO_MAILBOX)) == 235
    with pytest.raises(ConfigurationError, match="no mailbox"):
        mail_operator.issue_token("nobody@medecin.mssante.fr")
    mail_operator.revoke_tokens()


def test_a_valid_token_can_be_refused_on_purpose(mail_operator: SandboxMailOperator, pki_files: PkiFiles) -> None:
    token = mail_operator.issue_token(PRO_MAILBOX)
    mail_operator.refuse_valid_tokens(1)
    with smtp_session(mail_operator, pki_files) as client:
        assert xoauth2(client, PRO_MAILBOX, token) == 535
    with smtp_session(mail_operator, pki_files) as client:
        assert xoauth2(client, PRO_MAILBOX, token) == 235


def test_who_may_send_and_who_may_receive(mail_operator: SandboxMailOperator, pki_files: PkiFiles) -> None:
    with smtp_session(mail_operator, pki_files) as client:
        xoauth2(client, PRO_MAILBOX, mail_operator.issue_token(PRO_MAILBOX))
        assert client.mail(OTHER_MAILBOX)[0] == 553  # not the authenticated mailbox
        assert client.mail(PRO_MAILBOX)[0] == 250
        assert client.rcpt("someone@gmail.com")[0] == 554  # outside the trust space
        assert client.rcpt("nobody@medecin.mssante.fr")[0] == 550  # unknown mailbox of the space
        assert client.rcpt(patient_address("299999999999999"))[0] == 250  # the patient domain decides later
        assert client.rcpt(OTHER_MAILBOX)[0] == 250


def test_dsn_parameters_are_accepted_with_their_case_kept(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    with smtp_session(mail_operator, pki_files, certificate=True) as client:
        client.sendmail(
            APP_MAILBOX,
            [PRO_MAILBOX],
            MESSAGE,
            mail_options=["RET=FULL", "ENVID=MixedCase+2B1"],
            rcpt_options=["NOTIFY=SUCCESS", f"ORCPT=rfc822;{PRO_MAILBOX}"],
        )
    (received,) = mail_operator.received
    assert received.mail_parameters[1:] == ("RET=FULL", "ENVID=MixedCase+2B1")  # after smtplib's size=
    (receipt,) = mail_operator.stored(APP_MAILBOX)
    assert dsn_status(receipt.content) == [("delivered", "2.0.0")]
    assert b"Original-Envelope-Id: MixedCase+1" in receipt.content
    assert b"Content-Type: message/rfc822" in receipt.content and receipt.content.count(b"Bonjour") == 1


def test_patients_without_an_open_mailbox_bounce_unless_notify_never(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    opposed = "160012345678901"
    mail_operator.add_patient(opposed, PatientMailboxState.OPPOSED)
    with smtp_session(mail_operator, pki_files, certificate=True) as client:
        client.sendmail(APP_MAILBOX, [patient_address(PATIENT_ACTIVE), patient_address(opposed)], MESSAGE)
        client.sendmail(APP_MAILBOX, [patient_address(opposed)], MESSAGE, rcpt_options=["NOTIFY=NEVER"])
    assert mail_operator.stored(patient_address(PATIENT_ACTIVE))[0].content.endswith(MESSAGE)
    (bounce,) = mail_operator.stored(APP_MAILBOX)  # the NOTIFY=NEVER send left no trace
    assert dsn_status(bounce.content) == [("failed", "5.7.1")]
    parsed = email.message_from_bytes(bounce.content, policy=default)
    assert str(parsed["Subject"]) == "Message non distribué"
    assert str(parsed["To"]) == APP_MAILBOX
    assert b"Content-Type: text/rfc822-headers" in bounce.content and b"Bonjour" not in bounce.content


def test_the_size_limit_is_announced_and_enforced(pki_files: PkiFiles) -> None:
    with SandboxMailOperator(
        pki_files.pki,
        mailboxes=[SandboxMailbox(APP_MAILBOX, CLIENT_CN), PRO_MAILBOX],
        max_message_bytes=1000,
        server_certificate=pki_files.server,
    ) as operator:
        with smtp_session(operator, pki_files, certificate=True) as client:
            assert client.esmtp_features["size"] == "1000"
            with pytest.raises(smtplib.SMTPSenderRefused) as info:
                client.sendmail(APP_MAILBOX, [PRO_MAILBOX], MESSAGE + b"x" * 2000)
            assert info.value.smtp_code == 552
        assert operator.received == []


def test_scripted_faults_answer_once_then_the_operator_behaves(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    mail_operator.fail_next(SmtpFault("mail", reply="421 4.3.2 Busy"), SmtpFault("end_of_data"))
    with smtp_session(mail_operator, pki_files, certificate=True) as client:
        assert client.mail(APP_MAILBOX)[0] == 421
        client.rset()
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail(APP_MAILBOX, [PRO_MAILBOX], MESSAGE)
        assert info.value.smtp_code == 451
        assert client.sendmail(APP_MAILBOX, [PRO_MAILBOX], MESSAGE) == {}
    assert len(mail_operator.received) == 1


# --- IMAP -------------------------------------------------------------------------------------


def test_imap_offers_starttls_and_authenticates_only_over_tls(
    mail_operator: SandboxMailOperator, pki_files: PkiFiles
) -> None:
    token = mail_operator.issue_token(PRO_MAILBOX)
    response = f"user={PRO_MAILBOX}\x01auth=Bearer {token}\x01\x01".encode()
    with imap_session(mail_operator) as client:
        assert "STARTTLS" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.authenticate("XOAUTH2", lambda _: response)  # a valid token, but in clear
    with imap_session(mail_operator) as client:
        client.starttls(client_context(pki_files))
        assert {"AUTH=XOAUTH2", "AUTH=EXTERNAL"} <= set(client.capabilities)
        assert client.authenticate("XOAUTH2", lambda _: response)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"


def test_imap_external_with_the_bound_certificate(mail_operator: SandboxMailOperator, pki_files: PkiFiles) -> None:
    mail_operator.deliver(APP_MAILBOX, MESSAGE)
    with imap_session(mail_operator) as client:
        client.starttls(client_context(pki_files, with_certificate=True))
        assert client.authenticate("EXTERNAL", lambda _: b"")[0] == "OK"
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "ALL")
        assert typ == "OK" and len(data[0].split()) == 1
    with imap_session(mail_operator) as client:
        client.starttls(client_context(pki_files))  # no certificate: EXTERNAL has nothing to go on
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.authenticate("EXTERNAL", lambda _: b"")


def test_a_plain_operator_offers_no_starttls(pki_files: PkiFiles) -> None:
    with SandboxMailOperator(
        pki_files.pki, mailboxes=[PRO_MAILBOX], starttls=False, server_certificate=pki_files.server
    ) as plain:
        with smtp_session(plain, pki_files, tls=False) as client:
            assert not client.has_extn("starttls")
        with imap_session(plain) as imap:
            assert "STARTTLS" not in imap.capabilities


# --- life cycle -------------------------------------------------------------------------------


def test_environment_points_at_the_running_operator(pki_files: PkiFiles) -> None:
    operator = SandboxMailOperator(pki_files.pki, mailboxes=[PRO_MAILBOX], server_certificate=pki_files.server)
    with pytest.raises(ConfigurationError, match="not started"):
        operator.environment()
    with operator:
        env = operator.environment(Environment.sandbox("https://127.0.0.1:9443"))
        assert env.mssante_smtp is not None and env.mssante_smtp.port == operator.smtp_port
        assert env.mssante_imap is not None and env.mssante_imap.port == operator.imap_port
        assert env.dmp_base_url.startswith("https://127.0.0.1:9443")
        assert "smtp=" in repr(operator)
    operator.stop()  # twice is fine
    with pytest.raises(ConfigurationError):
        SandboxMailOperator(pki_files.pki, mailboxes=[patient_address(PATIENT_ACTIVE)])


def test_data_dir_keeps_mailboxes_across_restarts(pki_files: PkiFiles, tmp_path: Path) -> None:
    def operator() -> SandboxMailOperator:
        return SandboxMailOperator(
            pki_files.pki, mailboxes=[PRO_MAILBOX], data_dir=tmp_path, server_certificate=pki_files.server
        )

    with operator() as first:
        first.deliver(PRO_MAILBOX, MESSAGE)
        first.deliver(PRO_MAILBOX, MESSAGE.replace(b"essai", b"lu"), folder="Traités", flags=["\\Seen"])
    with operator() as second:
        (inbox,) = second.stored(PRO_MAILBOX)
        (done,) = second.stored(PRO_MAILBOX, "Traités")
        assert inbox.content == MESSAGE
        assert b"Subject: lu" in done.content and "\\Seen" in done.flags
        assert second.folders(PRO_MAILBOX) == ["INBOX", "Traités"]
        assert second.stored(PRO_MAILBOX, "Nope") == []


def test_without_the_sandbox_extra_the_operator_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import dmp_connector.sandbox as sandbox

    monkeypatch.delitem(sys.modules, "dmp_connector.sandbox.mssante")
    monkeypatch.delattr(sandbox, "mssante")
    monkeypatch.setitem(sys.modules, "aiosmtpd.smtp", None)  # as if aiosmtpd were not installed
    with pytest.raises(ImportError, match=r"dmp-connector\[sandbox\]"):
        sandbox.SandboxMailOperator  # noqa: B018
    assert sandbox.TestPki is not None  # the rest of the sandbox still works
