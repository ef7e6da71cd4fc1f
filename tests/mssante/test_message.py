"""MSSanté messages built by the rules (subject, X-MSS-* headers, XDM, PDF copy, limits) and read back."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from dmp_connector.cda import parse as parse_cda
from dmp_connector.codes import Code
from dmp_connector.config import (
    Environment,
    MssanteSettings,
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.errors import (
    ConfigurationError,
    IdentityNotQualifiedError,
    MalformedResponseError,
    ValidationError,
)
from dmp_connector.ins import IdentityStatus
from dmp_connector.mssante.address import DomainWhitelist, MssanteAddress, UntrustedRecipientError
from dmp_connector.mssante.message import (
    PATIENT_MAX_BYTES,
    Attachment,
    CdaDocument,
    MessageTooLargeError,
    MssanteMessage,
    build_message,
    parse_message,
)
from dmp_connector.mssante.receipts import DeliveryReport

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
N1 = (EXAMPLES / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml").read_bytes()
VSM = (EXAMPLES / "VSM_1.4_2022.01.xml").read_bytes()
OTHER_PATIENT = (EXAMPLES / "OBP-SCM_2024.01.xml").read_bytes()
PATIENT = parse_cda(N1).patient.identity
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

SETTINGS = Settings(
    software=SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor"),
    organisation=Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test"),
    professional=Professional(
        id="10003461033", family_name="SAUCIER", given_name="Arthur", profession=Code.of("10", "1.2.250.1.71.1.2.7")
    ),
    mssante=MssanteSettings(mailbox="lps@cabinet-test.mssante.fr", nil="NIL-0042"),
)
DOCTOR = MssanteAddress.parse("Dr House <dr.house@medecin.mssante.fr>")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def headers(raw: bytes) -> dict[str, str]:
    mail = message_from_bytes(raw, policy=policy.default)
    return {k: str(v) for k, v in mail.items()}


def test_a_plain_message_to_a_professional() -> None:
    built = build_message(
        MssanteMessage(to=(DOCTOR,), subject="Avis", text="Bonjour,\nvoici.", html="<p>Bonjour</p>"),
        SETTINGS,
        now=NOW,
    )
    mail = built.email
    assert mail["From"] == "lps@cabinet-test.mssante.fr"
    assert mail["To"] == "Dr House <dr.house@medecin.mssante.fr>"
    assert mail["Subject"] == "Avis"
    assert mail["X-MSS-NIL"] == "NIL-0042"
    for absent in ("X-MSS-CODECDA", "X-MSS-INS", "X-MSS-MES", "Disposition-Notification-To"):
        assert mail[absent] is None
    assert mail.get_content_type() == "multipart/alternative"
    assert built.sender == "lps@cabinet-test.mssante.fr"
    assert built.recipients == ("dr.house@medecin.mssante.fr",)
    assert built.message_id == mail["Message-ID"] and built.message_id.endswith("@cabinet-test.mssante.fr>")
    assert built.patient_matricule is None and built.document_ids == ()
    raw = mail.as_bytes()
    assert b"\r\n" in raw and not re.search(rb"X-MSSANTE", raw, re.IGNORECASE)
    assert built.size == len(raw)


def test_a_cda_to_a_patient_follows_every_rule() -> None:
    patient = MssanteAddress.for_patient(PATIENT)
    built = build_message(
        MssanteMessage(
            to=(patient,),
            cc=(DOCTOR,),
            text="Votre compte rendu.",
            documents=(CdaDocument(content=N1),),
            read_receipt=True,
            delivery_receipt=True,
            end_conversation=True,
        ),
        SETTINGS,
        now=NOW,
    )
    mail = built.email
    traits = PATIENT.traits
    birth = traits.birth_date
    expected = (
        f"XDM/1.0/DDM+CR d’imagerie médicale {traits.birth_name} {traits.first_first_name} "
        f"{birth.day:02d}/{birth.month:02d}/{birth.year}"
    )
    assert mail["Subject"] == expected
    assert mail["X-MSS-CODECDA"] == "18748-4"
    assert mail["X-MSS-INS"] == "O"
    assert mail["X-MSS-MES"] == "FIN"
    assert mail["X-MSS-NIL"] == "NIL-0042"
    assert mail["Disposition-Notification-To"] == "lps@cabinet-test.mssante.fr"
    attachments = [(p.get_filename(), p.get_content_type()) for p in mail.iter_attachments()]
    assert attachments[0] == ("IHE_XDM.ZIP", "application/zip")
    assert attachments[1][1] == "application/pdf"
    assert attachments[1][0] == f"20210108_CR d’imagerie médicale_{traits.birth_name}_{traits.first_first_name}.pdf"
    pdf = next(p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf")
    assert pdf.get_content() == parse_cda(N1).body.data  # type: ignore[union-attr]
    assert built.patient_matricule == PATIENT.ins.matricule  # type: ignore[union-attr]
    assert built.document_ids == (parse_cda(N1).id.root,) or built.document_ids[0].startswith(parse_cda(N1).id.root)
    assert built.delivery_receipt
    assert built.recipients == (patient.address, DOCTOR.address)
    assert PATIENT.ins.matricule not in repr(built)  # type: ignore[union-attr]


def test_the_label_and_the_multi_document_subject() -> None:
    two = build_message(
        MssanteMessage(
            to=(DOCTOR,), patient=PATIENT, documents=(CdaDocument(content=N1), CdaDocument(content=VSM, rendition=PDF))
        ),
        SETTINGS,
    )
    assert two.email["Subject"].startswith("XDM/1.0/DDM+2 documents ")
    assert two.email["X-MSS-CODECDA"] == "18748-4,SYNTH"
    labelled = build_message(
        MssanteMessage(to=(DOCTOR,), subject="Résultats", patient=PATIENT, documents=(CdaDocument(content=N1),)),
        SETTINGS,
    )
    assert labelled.email["Subject"].startswith("XDM/1.0/DDM+Résultats ")
    given = build_message(
        MssanteMessage(to=(DOCTOR,), subject="XDM/1.0/DDM+mine", patient=PATIENT, documents=(CdaDocument(content=N1),)),
        SETTINGS,
    )
    assert given.email["Subject"] == "XDM/1.0/DDM+mine"


def test_without_a_qualified_identity_the_ins_header_says_no() -> None:
    built = build_message(
        MssanteMessage(
            to=(DOCTOR,),
            patient=PATIENT.updated(ins=None, status=IdentityStatus.VALI),
            documents=(CdaDocument(content=N1),),
        ),
        SETTINGS,
    )
    assert built.email["X-MSS-INS"] == "N"


def test_a_structured_cda_needs_its_pdf_copy() -> None:
    with pytest.raises(ValidationError, match="PDF copy"):
        build_message(MssanteMessage(to=(DOCTOR,), patient=PATIENT, documents=(CdaDocument(content=VSM),)), SETTINGS)
    built = build_message(
        MssanteMessage(
            to=(DOCTOR,),
            patient=PATIENT,
            documents=(CdaDocument(content=VSM, rendition=PDF, rendition_filename="synthese.pdf"),),
        ),
        SETTINGS,
    )
    names = [p.get_filename() for p in built.email.iter_attachments()]
    assert names == ["IHE_XDM.ZIP", "synthese.pdf"]


def test_attachments_travel_as_given() -> None:
    built = build_message(
        MssanteMessage(
            to=(DOCTOR,),
            subject="x",
            attachments=(Attachment(filename="lettre.pdf", content=PDF, content_type="application/pdf"),),
        ),
        SETTINGS,
    )
    [part] = list(built.email.iter_attachments())
    assert (part.get_filename(), part.get_content()) == ("lettre.pdf", PDF)
    with pytest.raises(ValidationError):
        Attachment(filename="../x", content=b"")


def test_one_patient_per_message() -> None:
    one = MssanteAddress.for_patient(PATIENT)
    other_identity = parse_cda(OTHER_PATIENT).patient.identity
    other = MssanteAddress.for_patient(other_identity)
    with pytest.raises(ValidationError, match="one patient"):
        MssanteMessage(to=(one, other))
    with pytest.raises(ValidationError, match="not the patient"):
        MssanteMessage(to=(one,), patient=other_identity)
    with pytest.raises(ValidationError, match="another patient"):
        build_message(
            MssanteMessage(to=(one,), documents=(CdaDocument(content=OTHER_PATIENT, rendition=PDF),)), SETTINGS
        )
    with pytest.raises(ValidationError, match="several patients"):
        build_message(
            MssanteMessage(
                to=(DOCTOR,), documents=(CdaDocument(content=N1), CdaDocument(content=OTHER_PATIENT, rendition=PDF))
            ),
            SETTINGS,
        )


def test_a_patient_address_not_built_from_an_identity_is_refused() -> None:
    read = MssanteAddress.parse(f"{PATIENT.ins.matricule}@patient.mssante.fr")  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="for_patient"):
        MssanteMessage(to=(read,))


def test_an_unqualified_patient_is_refused() -> None:
    with pytest.raises(IdentityNotQualifiedError):
        MssanteAddress.for_patient(PATIENT.updated(status=IdentityStatus.RECUP))
    with pytest.raises(IdentityNotQualifiedError):
        build_message(
            MssanteMessage(
                to=(DOCTOR,), patient=PATIENT.updated(status=IdentityStatus.RECUP), documents=(CdaDocument(content=N1),)
            ),
            SETTINGS,
        )


def test_recipients_outside_the_trust_space_are_refused() -> None:
    with pytest.raises(UntrustedRecipientError):
        build_message(MssanteMessage(to=(MssanteAddress.parse("someone@gmail.com"),), subject="x"), SETTINGS)
    whitelist = DomainWhitelist.from_xml(
        b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema"><ListeDomaines>'
        b"<Domaine><Nom>autre.mssante.fr</Nom></Domaine></ListeDomaines></ListeBlancheMSSante>"
    )
    with pytest.raises(UntrustedRecipientError):
        build_message(MssanteMessage(to=(DOCTOR,), subject="x"), SETTINGS, trust_space=whitelist)


def test_the_size_limits_are_checked_before_sending() -> None:
    small = SETTINGS.model_copy(update={"mssante": SETTINGS.mssante.model_copy(update={"max_message_bytes": 2000})})
    with pytest.raises(MessageTooLargeError) as caught:
        build_message(MssanteMessage(to=(DOCTOR,), subject="x", text="y" * 5000), small)
    assert caught.value.limit == 2000 and caught.value.size > 2000
    big = Attachment(filename="scan.bin", content=b"\0" * (PATIENT_MAX_BYTES - 1000))
    patient = MssanteAddress.for_patient(PATIENT)
    generous = SETTINGS.model_copy(update={"mssante": SETTINGS.mssante.model_copy(update={"max_message_bytes": 10**9})})
    with pytest.raises(MessageTooLargeError, match="patient") as patient_limit:
        build_message(MssanteMessage(to=(patient,), subject="x", attachments=(big,)), generous)
    assert patient_limit.value.limit == PATIENT_MAX_BYTES


def test_end_of_conversation() -> None:
    patient = MssanteAddress.for_patient(PATIENT)
    built = build_message(MssanteMessage.end_of_conversation(patient), SETTINGS)
    assert built.email["Subject"] == "[FIN]" and built.email["X-MSS-MES"] == "FIN"
    with pytest.raises(ValidationError, match="to a patient"):
        MssanteMessage(to=(DOCTOR,), end_conversation=True)


def test_the_nil_is_required_outside_the_sandbox() -> None:
    sandbox = SETTINGS.model_copy(update={"mssante": MssanteSettings(mailbox="lps@cabinet-test.mssante.fr")})
    assert build_message(MssanteMessage(to=(DOCTOR,), subject="x"), sandbox).email["X-MSS-NIL"] == "SANDBOX"
    test_env = sandbox.model_copy(update={"environment": Environment.test()})
    with pytest.raises(ConfigurationError, match="X-MSS-NIL"):
        build_message(MssanteMessage(to=(DOCTOR,), subject="x"), test_env)
    no_sender = SETTINGS.model_copy(update={"mssante": MssanteSettings(nil="N")})
    with pytest.raises(ConfigurationError, match="sender"):
        build_message(MssanteMessage(to=(DOCTOR,), subject="x"), no_sender)


def test_threading_headers() -> None:
    built = build_message(
        MssanteMessage(to=(DOCTOR,), subject="Re: x", in_reply_to="<a@b.fr>", references=("<z@b.fr>", "<a@b.fr>")),
        SETTINGS,
        message_id="<fixed@cabinet-test.mssante.fr>",
    )
    assert built.email["In-Reply-To"] == "<a@b.fr>"
    assert built.email["References"] == "<z@b.fr> <a@b.fr>"
    assert built.message_id == "<fixed@cabinet-test.mssante.fr>"
    with pytest.raises(ValidationError):
        MssanteMessage(to=(DOCTOR,), in_reply_to="not-an-id")
    with pytest.raises(ValidationError):
        MssanteMessage(to=(DOCTOR,), subject="a\r\nBcc: x@y.fr")


def test_a_built_message_is_read_back() -> None:
    patient = MssanteAddress.for_patient(PATIENT)
    built = build_message(
        MssanteMessage(
            to=(patient,),
            text="Bonjour",
            html="<p>Bonjour</p>",
            documents=(CdaDocument(content=N1),),
            read_receipt=True,
        ),
        SETTINGS,
    )
    received = parse_message(built.email.as_bytes(), uid=7, folder="INBOX")
    assert (received.uid, received.folder) == (7, "INBOX")
    assert received.message_id == built.message_id
    assert received.sender == "lps@cabinet-test.mssante.fr"
    assert received.to == (patient.address,)
    assert received.subject == built.email["Subject"]
    assert received.display_subject is not None and not received.display_subject.startswith("XDM/1.0/DDM+")
    assert received.text is not None and received.text.strip() == "Bonjour"
    assert received.html is not None and "<p>Bonjour</p>" in received.html
    assert received.code_cda == ("18748-4",)
    assert received.ins_qualified is True
    assert received.nil == "NIL-0042"
    assert received.read_receipt_to == "lps@cabinet-test.mssante.fr"
    assert received.receipt is None and received.xdm_error is None
    assert received.xdm is not None
    assert [d.content for d in received.documents] == [N1]
    assert len(received.attachments) == 2
    assert PATIENT.ins is not None and received.subject is not None
    for secret in (PATIENT.ins.matricule, received.subject):
        assert secret not in repr(received)


def test_a_hostile_archive_does_not_stop_the_message_from_being_read() -> None:
    built = build_message(MssanteMessage(to=(DOCTOR,), subject="x"), SETTINGS)
    mail = built.email
    mail.add_attachment(b"PK\x03\x04garbage", maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    received = parse_message(mail.as_bytes())
    assert received.xdm is None
    assert isinstance(received.xdm_error, MalformedResponseError)
    assert (received.xdm_error_text or "").startswith(f"{type(received.xdm_error).__name__}: ")


def test_a_bounce_is_parsed_as_a_receipt() -> None:
    raw = (
        b"From: MAILER-DAEMON@x.mssante.fr\r\nTo: lps@cabinet-test.mssante.fr\r\nSubject: Message non distribue\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nnon distribue\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@patient.mssante.fr\r\n"
        b"Action: failed\r\nStatus: 5.1.1\r\n"
        b"\r\n--b--\r\n"
    )
    received = parse_message(raw)
    assert isinstance(received.receipt, DeliveryReport) and received.receipt.patient_not_reached
    assert received.attachments == ()
