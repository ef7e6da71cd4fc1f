"""Send a CDA document over MSSanté and read it back, end to end, against the sandbox's MSSanté operator.

Run it with ``python examples/send_mssante.py``. It needs no network and no certificate of
your own: it creates a throw-away PKI and starts an MSSanté operator on 127.0.0.1 (SMTP
submission and IMAP, both with STARTTLS). Then, printing each step:

1. the practice's applicative mailbox (client certificate) sends a level-1 CDA report to a
   physician: the SDK packs it into an IHE XDM archive with its PDF copy, writes the
   subject and the ``X-MSS-*`` headers;
2. the physician (XOAUTH2 with a sandbox token) lists the inbox, fetches the message, and
   finds the document byte for byte in the unpacked archive;
3. the same report goes to the patient's Mon espace santé address, built from her
   qualified identity;
4. a mail to a patient who has no mailbox comes back as a typed bounce.

It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dmp_connector import (
    INS,
    Code,
    Identity,
    IdentityStatus,
    IdentityTraits,
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.audit import MemorySink
from dmp_connector.cda import ClinicalDocument, NonXmlBody, build
from dmp_connector.codes import professional_specialty
from dmp_connector.config import MssanteAuthMode, MssanteSettings
from dmp_connector.ins import InsOid, compute_key
from dmp_connector.mssante import CdaDocument, DeliveryReport, MssanteAddress, MssanteClient, MssanteMessage
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox.mssante import (
    PatientMailboxState,
    SandboxMailbox,
    SandboxMailOperator,
    SandboxTokenProvider,
)

PRACTICE_BOX = "secretariat.auto@cabinet-exemple.mssante.fr"
DOCTOR_BOX = "dr.martin@medecin.mssante.fr"
CERTIFICATE_CN = "Cabinet Exemple AUTH_CLI"
PARIS = ZoneInfo("Europe/Paris")


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF with a line of text, enough for a level-1 CDA body."""
    stream = f"BT /F1 14 Tf 60 760 Td ({text}) Tj ET".encode("latin-1")
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(pdf))
        pdf += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    table = len(pdf)
    pdf += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    pdf += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    pdf += f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{table}\n%%EOF\n".encode()
    return bytes(pdf)


def patient(body: str, name: str, first_names: str, sex: str, born: str, place: str) -> Identity:
    """A qualified identity (INS of the test OID, key computed) with its five INS traits."""
    traits = IdentityTraits.build(
        birth_name=name, birth_first_names=first_names, sex=sex, birth_date=born, birth_place=place
    )
    ins = INS.from_parts(body, compute_key(body), InsOid.NIR_TEST)
    return Identity(traits=traits, ins=ins, status=IdentityStatus.QUAL)


def main() -> None:
    settings_base = Settings(
        software=SoftwareIdentity(name="ExempleLPS", version="2.0", editor="Editeur Exemple"),
        organisation=Organisation(
            id="750512345",
            id_kind=StructureIdKind.FINESS,
            name="Cabinet Exemple",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="10001234567",
            family_name="DURAND",
            given_name="Claire",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
    )
    dominique = patient("2970275123456", "Adrtrois", "Dominique Marie", "F", "1997-02-26", "75123")
    nobody = patient("1800175999001", "Inconnu", "Jean", "M", "1980-01-01", "75199")

    step("a throw-away PKI and an MSSanté operator on 127.0.0.1 (SMTP + IMAP, STARTTLS)")
    pki = TestPki.create()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca_file.write_bytes(pki.ca_pem)
        cert_file, key_file = pki.issue_client(CERTIFICATE_CN).write_pem(Path(tmp), "practice")
        operator = SandboxMailOperator(
            pki,
            mailboxes=[SandboxMailbox(PRACTICE_BOX, certificate_cn=CERTIFICATE_CN), DOCTOR_BOX],
            patients={dominique.ins.matricule: PatientMailboxState.ACTIVE},  # type: ignore[union-attr]
        )
        with operator:
            check(operator.smtp_port > 0 and operator.imap_port > 0, "the operator listens")
            practice = settings_base.model_copy(
                update={
                    "environment": operator.environment(),
                    "tls": TlsCredentials(cert_file=cert_file, key_file=key_file, ca_bundle=ca_file),
                    "mssante": MssanteSettings(mailbox=PRACTICE_BOX, auth_mode=MssanteAuthMode.CERTIFICATE),
                }
            )
            doctor = practice.model_copy(
                update={
                    "tls": TlsCredentials(ca_bundle=ca_file),
                    "mssante": MssanteSettings(mailbox=DOCTOR_BOX, auth_mode=MssanteAuthMode.XOAUTH2),
                }
            )

            step("a level-1 CDA report (a PDF in a CDA header), built from the settings")
            when = datetime(2026, 11, 25, 10, 30, tzinfo=PARIS)
            report = build(
                ClinicalDocument.from_settings(
                    practice,
                    patient=dominique,
                    type_code=Code.of("11488-4", "2.16.840.1.113883.6.1", "CR de consultation"),
                    title="Compte rendu de consultation",
                    body=NonXmlBody(data=tiny_pdf("Compte rendu de consultation")),
                    effective_time=when,
                    service_start=when,
                    practice_setting=Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
                )
            )
            check(report.startswith(b"<?xml"), f"the CDA document is {len(report)} bytes")

            step("the practice's applicative mailbox sends it to a physician (client certificate)")
            audit = MemorySink()
            with MssanteClient(practice, audit=[audit]) as mss:
                message = MssanteMessage(
                    to=(MssanteAddress.parse(f"Dr Paul Martin <{DOCTOR_BOX}>"),),
                    text="Bonjour,\nvoici le compte rendu de consultation de votre patiente.\n",
                    documents=(CdaDocument(content=report),),
                    read_receipt=True,
                )
                built = mss.build(message)
                print(f"   subject: {built.email['Subject']}")
                check(built.email["Subject"].startswith("XDM/1.0/DDM+CR de consultation ADRTROIS DOMINIQUE"), "subject")
                check(built.email["X-MSS-CODECDA"] == "11488-4", "X-MSS-CODECDA: 11488-4")
                check(built.email["X-MSS-INS"] == "O", "X-MSS-INS: O (a qualified INS travels)")
                sent = mss.send(message)
            check(sent.accepted == (DOCTOR_BOX,), f"accepted, Message-ID {sent.message_id}")
            check(
                all(e.patient and e.patient.startswith("hmac-sha256:") for e in audit.events),
                "audit: patient pseudonym",
            )

            step("the physician reads it (XOAUTH2 with a sandbox access token)")
            with MssanteClient(doctor, token_provider=SandboxTokenProvider(operator, DOCTOR_BOX)) as inbox:
                [summary] = inbox.inbox()
                received = inbox.fetch(summary.uid)
                check(received.message_id == sent.message_id, "the message came in")
                check(received.xdm is not None, "its IHE_XDM.ZIP was unpacked safely")
                [document] = received.documents
                check(document.content == report, f"{document.filename}: the CDA came back byte for byte")
                check(document.entry.type_code is not None, "METADATA.XML describes it (typeCode, patientId …)")
                check(any(a.content_type == "application/pdf" for a in received.attachments), "with its PDF copy")
                inbox.mark_read(summary.uid)
                inbox.move(summary.uid, "Traités")
                check(inbox.inbox(unseen_only=False) == [], "read and filed")

            step("the same report to the patient's Mon espace santé address")
            with MssanteClient(practice) as mss:
                to_patient = MssanteAddress.for_patient(dominique)
                mss.send(MssanteMessage(to=(to_patient,), documents=(CdaDocument(content=report),)))
                check(len(operator.stored(to_patient.address)) == 1, "delivered to the patient's mailbox")

                step("a patient without a mailbox: the mail comes back as a typed bounce")
                mss.send(
                    MssanteMessage(
                        to=(MssanteAddress.for_patient(nobody),), subject="Rendez-vous", delivery_receipt=True
                    )
                )
                bounces = [mss.fetch(s.uid).receipt for s in mss.inbox()]
                reports = [r for r in bounces if isinstance(r, DeliveryReport)]
                check(len(reports) == 1 and reports[0].patient_not_reached, "a 'Message non distribué' report")
                print(f"   reason: {reports[0].failed[0].reason}")

    print("\nevery check passed")


if __name__ == "__main__":
    main()
