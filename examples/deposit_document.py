"""Deposit documents in a patient's DMP, end to end, against the sandbox's DMP simulator.

Run it with ``python examples/deposit_document.py``. It needs no network and no certificate of
your own: it creates a throw-away PKI, serves the DMP simulator on 127.0.0.1 over HTTPS with
mutual TLS, then — with the synchronous and the asynchronous clients — tests the DMP's existence,
deposits a PDF report and a structured summary (VSM) with no metadata typed by hand, replaces
the report, shows that a deposit whose answer is lost is not stored twice, and that the rules
refuse what they must. It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from dmp_connector import (
    AsyncDmpClient,
    Code,
    DmpClient,
    Environment,
    Identity,
    IdentityNotQualifiedError,
    IdentityStatus,
    Organisation,
    Professional,
    RetryPolicy,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.cda import ClinicalDocument, NonXmlBody, Problem, VsmContent, build, vsm_document
from dmp_connector.codes import professional_specialty
from dmp_connector.dmp import DmpNotFoundError
from dmp_connector.sandbox import ScriptedHandler, TestPki
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpFault, DmpSimulator
from dmp_connector.signature import FileSigner

PARIS = ZoneInfo("Europe/Paris")
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
STRUCTURE = "1123456789"
"""The organisation's national id: ``1`` + its FINESS; the TLS certificate's OU must be the same."""


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def one_page_pdf(text: str) -> bytes:
    """A minimal well-formed PDF (a real deposit carries the report the software printed, PDF/A)."""
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


def make_settings(workdir: Path, pki: TestPki, server_url: str) -> Settings:
    """The organisation's authentication certificate for mutual TLS; everything else as in production."""
    ca = workdir / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    auth = pki.issue_organisation_auth(organisation="Cabinet Test", structure_id=STRUCTURE)
    cert, key = auth.write_pem(workdir, "org-auth")
    return Settings(
        software=SoftwareIdentity(name="ExampleLPS", version="0.1", editor="Example Editor", dmp_homologation_id="HOM"),
        environment=Environment.sandbox(server_url),
        organisation=Organisation(
            id="123456789",
            id_kind=StructureIdKind.FINESS,
            name="Cabinet Test",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="99700000001",
            family_name="SANDBOX",
            given_name="JEANNE",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
        tls=TlsCredentials(cert_file=cert, key_file=key, ca_bundle=ca),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0.0),
    )


def report(settings: Settings, patient: Identity, text: str) -> ClinicalDocument:
    return ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=CONSULTATION,
        title="Compte rendu de consultation",
        body=NonXmlBody(data=one_page_pdf(text)),
        effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
        service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
        service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
        practice_setting=AMBULATOIRE,
    )


def summary(settings: Settings, patient: Identity) -> ClinicalDocument:
    content = VsmContent(
        active_problems=(
            Problem(value=Code.of("E11", "2.16.840.1.113883.6.3", "Diabète de type 2"), start=dt.date(2015, 4, 1)),
        ),
        risk_factors="Tabagisme ancien",
        no_long_term_treatment=True,
    )
    return vsm_document(
        content,
        settings=settings,
        patient=patient,
        effective_time=dt.datetime(2024, 5, 2, 9, 0, tzinfo=PARIS),
        service_start=dt.date(2024, 5, 2),
        practice_setting=AMBULATOIRE,
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dmp-connector-dmp-") as tmp:
        workdir = Path(tmp)
        step("1. A throw-away PKI and the DMP simulator on loopback (HTTPS, mutual TLS)")
        pki = TestPki.create()
        sign = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=STRUCTURE)
        signer = FileSigner([sign.certificate], sign.key)  # the organisation's signature certificate
        simulator = DmpSimulator(trusted=[pki.ca.certificate])
        script = ScriptedHandler(simulator)
        record = DEFAULT_DMP_PATIENTS[0]
        patient = Identity(traits=record.traits, ins=record.ins, status=IdentityStatus.QUAL)
        no_dmp = DEFAULT_DMP_PATIENTS[1]
        without_dmp = Identity(traits=no_dmp.traits, ins=no_dmp.ins, status=IdentityStatus.QUAL)

        with simulator.serve(pki, workdir=workdir, handler=script) as server:
            settings = make_settings(workdir, pki, server.url)
            print(f"   DMP simulator at {settings.environment.dmp_base_url}")
            with DmpClient(settings, signer=signer) as dmp:
                step("2. TD0.2: does the patient have a DMP?")
                status = dmp.test_existence(patient)
                check(status.active, f"the DMP exists and is open (authorisation: {status.authorisation})")

                step("3. Deposit a PDF report: the metadata come from the CDA itself")
                first = report(settings, patient, "Compte rendu du 12 mars 2024")
                deposited = dmp.deposit(first, patient=patient)
                check(not deposited.already_deposited, f"deposited, uniqueId {deposited.document_unique_id}")
                print(
                    f"   submission set {deposited.submission_set_unique_id}, signature {deposited.signature_unique_id}"
                )

                step("4. The same deposit again (a retry after a lost answer) is not stored twice")
                again = dmp.deposit(first, patient=patient)
                check(again.already_deposited, f"reported as already deposited (confirmed by the {again.confirmed_by})")
                check(simulator.store.entry_count() == 2, "the DMP holds one document and its signature")

                step("5. The answer is lost after the deposit was stored: the retry leaves exactly one document")
                script.then(DmpFault.drop_after_processing().entry(simulator))
                lost = dmp.deposit(report(settings, patient, "Compte rendu du 13 mars 2024"), patient=patient)
                check(lost.already_deposited, "the retried attempt met the stored deposit")
                check(len(simulator.store.entries(unique_id=lost.document_unique_id)) == 1, "one entry, not two")

                step("6. Deposit a structured medical summary (VSM)")
                vsm = dmp.deposit(summary(settings, patient), patient=patient)
                check(not vsm.already_deposited, f"VSM deposited, uniqueId {vsm.document_unique_id}")

                step("7. Replace the first report by a corrected version (RPLC, by uniqueId)")
                # Finding the entry to replace is a consultation: it needs the patient's authorisation.
                check(dmp.set_authorisation(patient).ok, "TD0.3: the patient authorised this professional")
                corrected = report(settings, patient, "Compte rendu du 12 mars 2024, corrigé")
                replaced = dmp.deposit(corrected, patient=patient, replaces=deposited.document_unique_id)
                check(replaced.replaced is not None, f"the earlier entry {replaced.replaced} is replaced")

                step("8. What is refused, before or by the DMP")
                try:
                    dmp.deposit(first, patient=patient.updated(status=IdentityStatus.RECUP))
                except IdentityNotQualifiedError as exc:
                    check(True, f"an identity not qualified, before any request: {exc.message}")
                else:
                    check(False, "an identity not qualified was refused")
                try:
                    dmp.deposit(report(settings, without_dmp, "sans DMP"), patient=without_dmp)
                except DmpNotFoundError as exc:
                    check(True, f"a patient without a DMP: {exc.code} ({exc.hint})")
                else:
                    check(False, "a patient without a DMP was refused")

            step("9. The asynchronous client deposits the same way")

            async def deposit_async() -> None:
                async with AsyncDmpClient(settings, signer=signer) as client:
                    document = report(settings, patient, "Compte rendu asynchrone")
                    result = await client.deposit(document, patient=patient)
                    check(not result.already_deposited, f"deposited, uniqueId {result.document_unique_id}")
                    replay = await client.deposit(build(document), patient=patient)
                    check(replay.already_deposited, "its replay (the same document, as bytes) is recognised too")

            asyncio.run(deposit_async())

    print("\nDMP deposit example finished: every check passed.")


if __name__ == "__main__":
    main()
