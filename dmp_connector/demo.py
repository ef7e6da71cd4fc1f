"""The quickstart: the whole flow a vendor implements, end to end, against the embedded sandbox.

It lives in the package so that an installed SDK demonstrates itself, with no repository:
``dmp-connector demo`` (or ``python -m dmp_connector.demo``; in a checkout also
``python3 scripts/dev.py quickstart``). It needs the ``sandbox`` extra for the MSSanté
operator (``pip install 'dmp-connector[sandbox]'``). It needs no network and no certificate of
your own, and nothing else to launch: it creates a throw-away PKI and starts the sandbox's
simulators in this process, on 127.0.0.1 in background threads — INSi and the DMP over HTTPS
with mutual TLS, an MSSanté operator with SMTP and IMAP (STARTTLS). Then, printing each step:

1. find the patient's INS with INSi (search by traits), verify it, qualify the identity;
2. check the patient's DMP (TD0.2) and get her authorisation for this professional (TD0.3);
3. build a CDA document carrying a PDF report; deposit it in the DMP, the submission set
   signed with the organisation's signature certificate; find it (TD3.1) and retrieve it
   (TD3.2) byte for byte;
4. send it over MSSanté to the patient's Mon espace santé mailbox and to a colleague, and
   read the colleague's inbox;
5. show the audit trail: one event per attempt, the patient as a pseudonym only.

It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from dmp_connector.audit import MemorySink
from dmp_connector.cda import ClinicalDocument, NonXmlBody, build
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import (
    AuditSettings,
    Environment,
    MssanteAuthMode,
    MssanteSettings,
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.dmp import DmpClient
from dmp_connector.ins import Identity, IdentityStatus, IdentityTraits, InsiClient, VerificationVerdict
from dmp_connector.mssante import CdaDocument, MssanteAddress, MssanteClient, MssanteMessage
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import InsiSimulator, LoopbackServer, TestPki, server_ssl_context
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator
from dmp_connector.signature import FileSigner

__all__ = ["main"]

PARIS = ZoneInfo("Europe/Paris")
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
ORGANISATION = "Cabinet Test"
STRUCTURE = "1123456789"
"""The organisation's national id: ``1`` + its FINESS; the DMP checks the TLS certificate's OU against it."""
PRACTICE_BOX = "secretariat@cabinet-test.mssante.fr"
PRACTICE_CN = "Cabinet Test AUTH_CLI"
COLLEAGUE_BOX = "dr.martin@medecin.mssante.fr"
PATIENT = DEFAULT_DMP_PATIENTS[0]
"""ADRUN ZOE: an INSi seed with an open DMP, and no authorisation for this professional yet."""


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def one_page_pdf(text: str) -> bytes:
    """A minimal well-formed PDF (a real report is the PDF/A the software printed)."""
    stream = f"BT /F1 14 Tf 72 760 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def base_settings(workdir: Path, environment: Environment) -> Settings:
    """What every client shares: the software, the organisation, the professional, retries, the audit journal."""
    return Settings(
        software=SoftwareIdentity(
            name="QuickstartLPS",
            version="0.1",
            editor="Example Editor",
            insi_authorisation_id="EXAMPLE-IDAM",
            dmp_homologation_id="HOM",
        ),
        environment=environment,
        organisation=Organisation(
            id="123456789",
            id_kind=StructureIdKind.FINESS,
            name=ORGANISATION,
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="99700000001",
            family_name="SANDBOX",
            given_name="JEANNE",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0.0),
        audit=AuditSettings(jsonl_path=workdir / "audit.jsonl"),
    )


def with_tls(settings: Settings, ca: Path, pem: tuple[Path, Path] | None) -> Settings:
    """The same settings with another client certificate (each national service wants its own)."""
    cert, key = pem if pem is not None else (None, None)
    return settings.model_copy(update={"tls": TlsCredentials(cert_file=cert, key_file=key, ca_bundle=ca)})


def main(save_document: Path | None = None) -> None:
    """Run the quickstart, printing each step; exit with status 1 at the first check that fails.

    ``save_document``: also write the CDA document it builds there (to validate it against the kit).
    """
    try:  # the MSSanté operator needs the sandbox extra
        from dmp_connector.sandbox.mssante import (
            PatientMailboxState,
            SandboxMailbox,
            SandboxMailOperator,
            SandboxTokenProvider,
        )
    except ImportError:
        print("the demo needs the sandbox extra (aiosmtpd, pymap): pip install 'dmp-connector[sandbox]'")
        sys.exit(1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dmp-connector-quickstart-") as tmp:
        workdir = Path(tmp)
        step("1. The embedded sandbox, in this process: a throw-away PKI, INSi, the DMP and an MSSanté operator")
        pki = TestPki.create()
        ca = workdir / "ca.pem"
        ca.write_bytes(pki.ca_pem)
        server_certificate = pki.issue_server()
        insi_simulator = InsiSimulator(known_idams={"EXAMPLE-IDAM"}, required_client_cn={"INSI-AUTO", "INSI-MANU"})
        dmp_simulator = DmpSimulator(trusted=[pki.ca.certificate])
        operator = SandboxMailOperator(
            pki,
            mailboxes=[SandboxMailbox(PRACTICE_BOX, certificate_cn=PRACTICE_CN), COLLEAGUE_BOX],
            patients={PATIENT.ins.matricule: PatientMailboxState.ACTIVE},
        )
        insi_tls = server_ssl_context(server_certificate, pki, workdir=workdir)
        with (
            LoopbackServer(insi_simulator, ssl_context=insi_tls) as insi_server,
            dmp_simulator.serve(pki, workdir=workdir, server_certificate=server_certificate) as dmp_server,
            operator,
        ):
            environment = operator.environment(Environment.sandbox(dmp_server.url)).model_copy(
                update={"insi_url": f"{insi_server.url}/insi/lps", "insi_mtls_url": f"{insi_server.url}/insi/lps"}
            )
            print(f"   INSi   {environment.insi_url}  (mutual TLS, client certificate CN INSI-AUTO)")
            print(f"   DMP    {environment.dmp_base_url}  (mutual TLS, organisation certificate)")
            print(f"   MSSanté smtp {operator.smtp_port}, imap {operator.imap_port} on 127.0.0.1  (STARTTLS)")
            settings = base_settings(workdir, environment)
            insi_pem = pki.issue_client("INSI-AUTO", organisation=ORGANISATION).write_pem(workdir, "insi-auto")
            auth = pki.issue_organisation_auth(organisation=ORGANISATION, structure_id=STRUCTURE)
            sign = pki.issue_organisation_sign(organisation=ORGANISATION, structure_id=STRUCTURE)
            signer = FileSigner([sign.certificate], sign.key)
            insi_settings = with_tls(settings, ca, insi_pem)
            dmp_settings = with_tls(settings, ca, auth.write_pem(workdir, "org-auth"))
            mss_settings = with_tls(settings, ca, pki.issue_client(PRACTICE_CN).write_pem(workdir, "mss")).model_copy(
                update={"mssante": MssanteSettings(mailbox=PRACTICE_BOX, auth_mode=MssanteAuthMode.CERTIFICATE)}
            )
            colleague_settings = with_tls(settings, ca, None).model_copy(
                update={"mssante": MssanteSettings(mailbox=COLLEAGUE_BOX, auth_mode=MssanteAuthMode.XOAUTH2)}
            )
            sink = MemorySink()

            step("2. INSi: find the patient's INS from her traits (as typed at the desk)")
            typed = PATIENT.traits
            desk = IdentityTraits.build(
                birth_name=typed.birth_name.title(),
                birth_first_names=" ".join(typed.birth_first_names).lower(),
                sex=typed.sex,
                birth_date=typed.birth_date,
            )
            with InsiClient(insi_settings, audit=[sink]) as insi:
                result = insi.search(desk)
                found = result.identity
                check(result.found and found is not None, f"INSi answered {result.code.value} {result.label}")
                assert found is not None
                check(found.active.key_valid and found.all_keys_valid, f"INS {found.active.formatted()}, key valid")
                check(found.active == PATIENT.ins, "the INS the DMP knows this patient by")
                retrieved = Identity(traits=found.traits, ins=found.active, status=IdentityStatus.RECUP)

                step("3. Identity vigilance: verify the INS, then qualify the identity")
                verification = insi.verify(retrieved)
                check(verification.verdict is VerificationVerdict.CONFIRMED, "INSi confirms the INS and the traits")
            # Qualification needs a high-trust ID document checked at the desk (RNIV): done here by the receptionist.
            patient = retrieved.updated(status=IdentityStatus.QUAL)
            patient.require_qualified("a DMP call")
            check(patient.status is IdentityStatus.QUAL, "ID card checked: RECUP -> QUAL, the INS may now be shared")

            with DmpClient(dmp_settings, signer=signer, audit=[sink]) as dmp:
                step("4. TD0.2: does the patient have a DMP, and is this professional authorised?")
                status = dmp.test_existence(patient)
                authorisation = status.authorization.value if status.authorization else "none"
                check(status.active, f"the DMP exists and is open (authorisation: {authorisation})")

                step("5. TD0.3: the patient authorises this professional")
                check(dmp.set_authorisation(patient).ok, "authorisation added (DMPOK)")
                status = dmp.test_existence(patient)
                valid = status.authorization is not None and status.authorization.value == "VALIDE"
                check(valid, "TD0.2 now answers VALIDE")

                step("6. A CDA document carrying the PDF report (level 1), built from the settings")
                pdf = one_page_pdf("Compte rendu de consultation du 12 mars 2024")
                document = ClinicalDocument.from_settings(
                    dmp_settings,
                    patient=patient,
                    type_code=CONSULTATION,
                    title="Compte rendu de consultation",
                    body=NonXmlBody(data=pdf),
                    effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
                    service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
                    service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
                    practice_setting=AMBULATOIRE,
                )
                cda = build(document)
                if save_document is not None:
                    save_document.write_bytes(cda)
                    print(f"   written to {save_document}")
                check(cda.startswith(b"<?xml"), f"{len(cda)} bytes of CDA R2, with a {len(pdf)}-byte PDF inside")

                step("7. Sign and deposit it (TD2.1): the submission set is signed with the organisation's certificate")
                deposited = dmp.deposit(document, patient=patient)
                check(not deposited.already_deposited, f"deposited, uniqueId {deposited.document_unique_id}")
                check(bool(deposited.signature_unique_id), f"signature entry {deposited.signature_unique_id}")
                check(dmp_simulator.store.entry_count() == 2, "the DMP holds the document and its signature")

                step("8. TD3.1: find it in the patient's DMP")
                entries = dmp.find_documents(patient, type_codes=(CONSULTATION,))
                check([e.unique_id for e in entries] == [deposited.document_unique_id], f"{len(entries)} document")
                entry = entries[0]
                print(f"   {entry.title}, {entry.size} bytes")

                step("9. TD3.2: retrieve it, byte for byte")
                retrieved_document = dmp.retrieve(patient, entry)
                check(retrieved_document.read() == cda, f"identical bytes, SHA-1 {retrieved_document.sha1}")

            step("10. MSSanté: send it to the patient's Mon espace santé mailbox and to a colleague")
            with MssanteClient(mss_settings, audit=[sink]) as mss:
                to_patient = MssanteAddress.for_patient(patient)
                mss.send(MssanteMessage(to=(to_patient,), documents=(CdaDocument(content=cda),)))
                check(len(operator.stored(to_patient.address)) == 1, "delivered to the patient's mailbox")
                message = MssanteMessage(
                    to=(MssanteAddress.parse(f"Dr Paul Martin <{COLLEAGUE_BOX}>"),),
                    text="Bonjour,\nvoici le compte rendu de consultation de notre patiente.\n",
                    documents=(CdaDocument(content=cda),),
                )
                sent = mss.send(message)
                check(sent.accepted == (COLLEAGUE_BOX,), f"accepted for the colleague, Message-ID {sent.message_id}")

            step("11. The colleague reads the inbox (IMAP, XOAUTH2 with a sandbox token)")
            token = SandboxTokenProvider(operator, COLLEAGUE_BOX)
            with MssanteClient(colleague_settings, token_provider=token, audit=[sink]) as inbox:
                summaries = inbox.inbox()
                check(len(summaries) == 1, f"one message: {summaries[0].subject if summaries else '-'}")
                received = inbox.fetch(summaries[0].uid)
                check(received.message_id == sent.message_id, "the message the practice sent")
                check([d.content for d in received.documents] == [cda], "its IHE XDM archive holds the same CDA")

        step("12. Audit trail: one event per attempt, the patient as a pseudonym only")
        journal = (workdir / "audit.jsonl").read_text(encoding="utf-8")
        check(len(journal.splitlines()) == len(sink.events), f"{len(sink.events)} events in audit.jsonl")
        secrets = (PATIENT.ins.matricule, PATIENT.traits.birth_name, PATIENT.traits.birth_date.iso())
        check(not any(secret in journal for secret in secrets), "no matricule, birth name or birth date in clear")
        for event in sink.events:
            print(
                f"   {event.timestamp:%H:%M:%S} {event.operation:40.40} attempt {event.attempt} "
                f"{event.outcome.value:7} {event.duration_ms:7.1f} ms  patient {event.patient or '-':.28}"
            )
    print(f"\nQuickstart finished in {time.monotonic() - started:.1f} s: every check passed.")


if __name__ == "__main__":
    main()
