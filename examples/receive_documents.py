"""The receiving side, end to end in the sandbox: retrieve from the DMP, receive over MSSanté, show, file, acknowledge.

Run it with ``python examples/receive_documents.py``. It needs no network: a throw-away PKI, the
DMP simulator and an MSSanté operator, both on 127.0.0.1. Printing each step, it:

1. deposits a report in the patient's DMP, then consults it as the practice would: search and
   retrieve, render it as a safe HTML page, and decide to which local patient it goes (the
   practice's records hold the patient, qualified, and a look-alike with no INS);
2. receives the same report over MSSanté from a physician who asks for a read receipt:
   reads the XDM archive, renders the document, files it — and sees it is the one already
   filed from the DMP (same document id);
3. sends the read receipt (MDN) the physician asked for; the physician's software links the
   delivery report (DSN) and the read receipt to the message it sent: delivered, then read.

It exits with status 0 only if every check holds; the two pages are written to a temporary
folder (pass ``--keep DIR`` to keep them there).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from dmp_connector.cda import build
from dmp_connector.config import MssanteAuthMode, MssanteSettings, TlsCredentials
from dmp_connector.dmp import DmpClient
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.mssante import (
    CdaDocument,
    DispositionType,
    MssanteAddress,
    MssanteClient,
    MssanteMessage,
    build_read_receipt,
)
from dmp_connector.receiving import (
    DuplicateKind,
    FiledDocument,
    FilingStatus,
    LocalPatient,
    MessageTracking,
    RecipientState,
    SentMessage,
    document_from_dmp,
    documents_from_message,
    find_duplicate,
    match_patient,
)
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator
from dmp_connector.sandbox.mssante import SandboxMailbox, SandboxMailOperator, SandboxTokenProvider
from dmp_connector.signature import FileSigner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deposit_document import STRUCTURE, make_settings, report

PRACTICE_BOX = "secretariat.auto@cabinet-test.mssante.fr"
DOCTOR_BOX = "dr.martin@medecin.mssante.fr"
CERTIFICATE_CN = "Cabinet Test AUTH_CLI"


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def main(keep: Path | None) -> None:
    record = DEFAULT_DMP_PATIENTS[0]
    patient = Identity(traits=record.traits, ins=record.ins, status=IdentityStatus.QUAL)
    # The practice's own records: the patient (qualified), and a look-alike created without an INS.
    local_patients = [
        LocalPatient(local_id="dossier-0042", identity=patient),
        LocalPatient(local_id="dossier-0077", identity=patient.updated(ins=None, status=IdentityStatus.PROV)),
    ]
    filed: list[FiledDocument] = []

    with tempfile.TemporaryDirectory(prefix="dmp-connector-receive-") as tmp:
        workdir = Path(tmp)
        pages = keep or workdir
        pages.mkdir(parents=True, exist_ok=True)
        step("1. A throw-away PKI, the DMP simulator and an MSSanté operator on 127.0.0.1")
        pki = TestPki.create()
        sign = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=STRUCTURE)
        simulator = DmpSimulator(trusted=[pki.ca.certificate])

        with simulator.serve(pki, workdir=workdir) as server:
            settings = make_settings(workdir, pki, server.url)
            document = build(report(settings, patient, "Compte rendu de consultation"))
            with DmpClient(settings, signer=FileSigner([sign.certificate], sign.key)) as dmp:
                dmp.deposit(document, patient=patient)
                dmp.set_authorisation(patient)

                step("2. Consult the DMP: search, retrieve, show, file")
                [entry] = dmp.find_documents(patient)
                from_dmp = document_from_dmp(dmp.retrieve(patient, entry), entry)
                check(from_dmp.content == document, "retrieved byte for byte")
                page = from_dmp.render()
                check(page is not None and "Compte rendu de consultation" in page.html, "rendered as a safe page")
                assert page is not None
                (pages / "dmp.html").write_bytes(page.as_bytes())
                check(
                    [a.media_type for a in page.attachments] == ["application/pdf"], "its PDF offered to open outside"
                )
                verdict = match_patient(from_dmp, local_patients)
                check(verdict.status is FilingStatus.MATCHED, f"matched: {verdict.reasons[0]}")
                assert verdict.patient is not None
                check(verdict.patient.local_id == "dossier-0042", "to the qualified record, not the look-alike")
                check([p.local_id for p in verdict.look_alikes] == ["dossier-0077"], "the look-alike is reported")
                filed.append(FiledDocument.of(from_dmp, local_id=verdict.patient.local_id))

        step("3. The physician sends the same report over MSSanté and asks for receipts")
        ca_file = workdir / "ca.pem"
        cert_file, key_file = pki.issue_client(CERTIFICATE_CN).write_pem(workdir, "practice")
        operator = SandboxMailOperator(
            pki, mailboxes=[SandboxMailbox(PRACTICE_BOX, certificate_cn=CERTIFICATE_CN), DOCTOR_BOX]
        )
        with operator:
            practice = settings.model_copy(
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
            doctor_tokens = SandboxTokenProvider(operator, DOCTOR_BOX)
            with MssanteClient(doctor, token_provider=doctor_tokens) as physician:
                result = physician.send(
                    MssanteMessage(
                        to=(MssanteAddress.parse(PRACTICE_BOX),),
                        text="Bonjour, voici le compte rendu.",
                        documents=(CdaDocument(content=document),),
                        delivery_receipt=True,
                        read_receipt=True,
                    )
                )
            tracking = MessageTracking.start(SentMessage.from_result(result))
            check(tracking.state_of(PRACTICE_BOX) is RecipientState.SENT, "sent")

            step("4. The practice reads it: the XDM archive, the page, the verdict, the duplicate")
            with MssanteClient(practice) as mss:
                [summary] = list(mss.inbox())
                message = mss.fetch(summary.uid)
                [received] = documents_from_message(message)
                page = received.render()
                assert page is not None
                (pages / "mssante.html").write_bytes(page.as_bytes())
                check("Content-Security-Policy" in page.html, "rendered with its policy (no script, no fetch)")
                verdict = match_patient(received, local_patients)
                check(verdict.status is FilingStatus.MATCHED, "matched to dossier-0042 by its INS")
                duplicate = find_duplicate(received, filed)
                check(
                    duplicate is not None and duplicate.kind is DuplicateKind.SAME_DOCUMENT,
                    "already filed from the DMP: not filed twice",
                )

                step("5. The practice sends the read receipt the physician asked for (MDN)")
                mss.send(build_read_receipt(message, practice, disposition=DispositionType.DISPLAYED))
                mss.mark_read(summary.uid)

            step("6. The physician's software links the receipts to the message it sent")
            with MssanteClient(doctor, token_provider=doctor_tokens) as physician:
                for summary in physician.inbox():
                    receipt = physician.fetch(summary.uid).receipt
                    if receipt is not None:
                        tracking = tracking.apply(receipt)
            state = tracking.state_of(PRACTICE_BOX)
            check(state is RecipientState.READ, f"the practice's state: {state}")
            check(tracking.delivered and tracking.read, "delivered, then read")

    print("\nreceiving example finished: every check passed")


if __name__ == "__main__":
    target = Path(sys.argv[sys.argv.index("--keep") + 1]) if "--keep" in sys.argv else None
    main(target)
