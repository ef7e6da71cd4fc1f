"""MssanteClient / AsyncMssanteClient against the sandbox operator: real SMTP and IMAP over TLS on loopback."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from dmp_connector.audit import MemorySink
from dmp_connector.cda import parse as parse_cda
from dmp_connector.config import Settings
from dmp_connector.ins import INS, Identity, IdentityStatus, InsOid, compute_key
from dmp_connector.mssante.address import MssanteAddress, UntrustedRecipientError
from dmp_connector.mssante.client import AsyncMssanteClient, MssanteClient
from dmp_connector.mssante.message import CdaDocument, MssanteMessage
from dmp_connector.mssante.receipts import BounceReason, DeliveryAction, DeliveryReport
from dmp_connector.sandbox.mssante import PatientMailboxState, SandboxMailOperator, SandboxTokenProvider

from .conftest import APP_MAILBOX, MODES, PATIENT_ACTIVE, PRO_MAILBOX
from .conftest import ClientDriver as Driver
from .conftest import open_client as open_driver

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
N1 = (EXAMPLES / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml").read_bytes()
PATIENT = parse_cda(N1).patient.identity


def qualified(body: str) -> Identity:
    ins = INS.from_parts(body, compute_key(body), InsOid.NIR_TEST)
    return Identity(traits=PATIENT.traits, ins=ins, status=IdentityStatus.QUAL)


@MODES
def test_a_cda_goes_out_in_an_xdm_archive_and_comes_back_byte_identical(
    mode: str,
    drivers: list[Driver],
    app_settings: Settings,
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    sink = MemorySink()
    sender = open_driver(drivers, mode, app_settings, audit=[sink])
    message = MssanteMessage(
        to=(MssanteAddress.parse(f"Dr Martin <{PRO_MAILBOX}>"),),
        patient=PATIENT,
        text="Bonjour, voici le compte rendu.",
        documents=(CdaDocument(content=N1),),
        read_receipt=True,
    )
    result = sender.send(message)
    assert result.accepted == (PRO_MAILBOX,)
    (received_by_operator,) = mail_operator.received
    assert received_by_operator.auth_method == "certificate"

    reader = open_driver(drivers, mode, pro_settings, token_provider=pro_tokens)
    (summary,) = reader.inbox()
    assert summary.message_id == result.message_id
    mail = reader.fetch(summary.uid)
    assert mail.message_id == result.message_id
    assert mail.xdm is not None and mail.xdm_error is None
    [document] = mail.documents
    assert document.content == N1  # byte-identical through SMTP, the store and IMAP
    assert document.entry.patient_id.text == PATIENT.ins.to_xds_cx()  # type: ignore[union-attr]
    assert mail.code_cda == ("18748-4",) and mail.ins_qualified is True
    assert mail.read_receipt_to == APP_MAILBOX
    assert [a.content_type for a in mail.attachments] == ["application/zip", "application/pdf"]
    assert mail.display_subject is not None and mail.display_subject.startswith("CR d’imagerie médicale ")

    reader.mark_read(summary.uid)
    assert reader.inbox() == []
    assert len(reader.inbox(unseen_only=False)) == 1
    reader.move(summary.uid, "Traités")
    assert reader.inbox(unseen_only=False) == []
    assert len(reader.inbox(unseen_only=False, folder="Traités")) == 1

    (event,) = [e for e in sink.events if e.operation == "send"]
    assert event.patient is not None and event.patient.startswith("hmac-sha256:")
    assert event.document_ids == (document.unique_id,)
    assert PATIENT.ins.matricule not in event.to_json()  # type: ignore[union-attr]


@MODES
def test_mail_to_a_patient_is_delivered_to_mon_espace_sante(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    patient = MssanteAddress.for_patient(PATIENT)
    assert patient.address == f"{PATIENT_ACTIVE}@patient.mssante.fr"
    client = open_driver(drivers, mode, app_settings)
    client.send(MssanteMessage(to=(patient,), documents=(CdaDocument(content=N1),), end_conversation=True))
    (stored,) = mail_operator.stored(patient.address)
    assert b"X-MSS-MES: FIN" in stored.content
    assert b"IHE_XDM.ZIP" in stored.content


@MODES
def test_mail_to_an_unknown_or_closed_patient_comes_back_as_a_typed_bounce(
    mode: str, drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    unknown = qualified("2990575123456")
    closed = qualified("1850578006084")
    opposed = qualified("2850175123457")
    mail_operator.add_patient(closed.ins.matricule, PatientMailboxState.CLOSED)  # type: ignore[union-attr]
    mail_operator.add_patient(opposed.ins.matricule, PatientMailboxState.OPPOSED)  # type: ignore[union-attr]
    client = open_driver(drivers, mode, app_settings)
    for who in (unknown, closed, opposed):
        sent = client.send(MssanteMessage(to=(MssanteAddress.for_patient(who),), subject="x", delivery_receipt=True))
        assert len(sent.accepted) == 1  # the operator takes it; Mon espace santé bounces it
    reports = []
    for summary in client.inbox():
        mail = client.fetch(summary.uid)
        assert isinstance(mail.receipt, DeliveryReport)
        reports.append(mail.receipt)
    assert [r.patient_not_reached for r in reports] == [True, True, True]
    [first], [second], [third] = (r.failed for r in reports)
    assert first.action is DeliveryAction.FAILED
    assert (first.status, first.reason) == ("5.1.1", BounceReason.MAILBOX_UNKNOWN)
    assert (second.status, second.reason) == ("5.2.1", BounceReason.MAILBOX_CLOSED)
    assert (third.status, third.reason) == ("5.7.1", BounceReason.PATIENT_OPPOSED)
    assert reports[0].original_envelope_id is not None


def test_nothing_is_sent_to_a_recipient_outside_the_trust_space(
    drivers: list[Driver], app_settings: Settings, mail_operator: SandboxMailOperator
) -> None:
    client = open_driver(drivers, "sync", app_settings)
    with pytest.raises(UntrustedRecipientError):
        client.send(MssanteMessage(to=(MssanteAddress.parse("someone@gmail.com"),), subject="x"))
    assert mail_operator.received == []


def test_build_shows_what_send_would_send(app_settings: Settings) -> None:
    with MssanteClient(app_settings) as client:
        built = client.build(MssanteMessage(to=(MssanteAddress.parse(PRO_MAILBOX),), subject="x"))
    assert built.email["X-MSS-NIL"] == "SANDBOX"


def test_the_async_client_mirrors_the_sync_client() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(m) for n, m in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")
        }

    sync, asyn = public(MssanteClient), public(AsyncMssanteClient)
    renamed = {"close": "aclose"}
    assert {renamed.get(n, n) for n in sync} == set(asyn)
    for name, signature in sync.items():
        twin = getattr(AsyncMssanteClient, renamed.get(name, name))
        if name not in {"build", "with_options"}:  # no I/O: the same method on both
            assert inspect.iscoroutinefunction(twin), name
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name
    assert list(inspect.signature(MssanteClient.__init__).parameters) == list(
        inspect.signature(AsyncMssanteClient.__init__).parameters
    )


@MODES
def test_send_of_a_built_message_transmits_exactly_what_was_built(
    mode: str,
    drivers: list[Driver],
    app_settings: Settings,
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    sender = open_driver(drivers, mode, app_settings)
    with MssanteClient(app_settings) as builder:  # build() is pure and sync on both clients
        built = builder.build(
            MssanteMessage(
                to=(MssanteAddress.parse(PRO_MAILBOX),), patient=PATIENT, documents=(CdaDocument(content=N1),)
            )
        )
    archived = built.as_bytes()  # what a vendor keeps before sending
    assert built.package is not None
    result = sender.send(built)
    assert result.message_id == built.message_id
    (received,) = mail_operator.received
    assert received.content.rstrip(b"\r\n") == archived.rstrip(b"\r\n")  # byte for byte, as built

    reader = open_driver(drivers, mode, pro_settings, token_provider=pro_tokens)
    (summary,) = reader.inbox()
    mail = reader.fetch(summary.uid)
    assert mail.message_id == built.message_id
    assert [d.unique_id for d in mail.documents] == list(built.document_ids)
    assert mail.xdm is not None and mail.xdm.archive == built.package.archive  # the same XDM ids inside

    # sending the same MssanteMessage twice builds twice: a new Message-ID each time
    again = sender.send(MssanteMessage(to=(MssanteAddress.parse(PRO_MAILBOX),), subject="x"))
    assert again.message_id != built.message_id
