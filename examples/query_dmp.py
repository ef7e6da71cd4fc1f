"""Consult and manage a patient's DMP, end to end, against the sandbox's DMP simulator.

Run it with ``python examples/query_dmp.py``. It needs no network: it reuses the setup of
``deposit_document.py`` (throw-away PKI, the DMP simulator on loopback with mutual TLS), deposits
two documents, then shows the consultation side: a search refused without the patient's
authorisation and allowed in bris de glace with a reason, the authorisation (TD0.3), searches with
filters, retrieval byte for byte to memory and to a file, masking, deletion, and the DMP's own
transactions (authorised professionals, recent DMPs, patient search, administrative data). It
exits with status 0 only if every check holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path

from dmp_connector import AsyncDmpClient, DmpClient, Identity, IdentityStatus, ValidationError
from dmp_connector.cda import build
from dmp_connector.dmp import Access, DmpAccessDeniedError, PatientSearch, RecentDmpKind
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator
from dmp_connector.signature import FileSigner
from dmp_connector.xds import MASQUE_PS, AvailabilityStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deposit_document import CONSULTATION, STRUCTURE, make_settings, report, summary


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dmp-connector-dmp-") as tmp:
        workdir = Path(tmp)
        step("1. A throw-away PKI and the DMP simulator on loopback (HTTPS, mutual TLS)")
        pki = TestPki.create()
        sign = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=STRUCTURE)
        signer = FileSigner([sign.certificate], sign.key)
        simulator = DmpSimulator(trusted=[pki.ca.certificate])
        record = DEFAULT_DMP_PATIENTS[0]
        patient = Identity(traits=record.traits, ins=record.ins, status=IdentityStatus.QUAL)

        with simulator.serve(pki, workdir=workdir) as server:
            settings = make_settings(workdir, pki, server.url)
            with DmpClient(settings, signer=signer) as dmp:
                step("2. Two documents in the patient's DMP (deposits need no authorisation)")
                first_document = report(settings, patient, "Compte rendu du 12 mars 2024")
                first = dmp.deposit(first_document, patient=patient)
                second = dmp.deposit(summary(settings, patient), patient=patient)
                check(not first.already_deposited and not second.already_deposited, "a report and a VSM deposited")

                step("3. Consultation needs the patient's authorisation")
                try:
                    dmp.find_documents(patient)
                except DmpAccessDeniedError as exc:
                    check(True, f"refused without it: {exc.code}")
                else:
                    check(False, "a search without authorisation was refused")
                try:
                    dmp.find_documents(patient, access="bris_de_glace")
                except ValidationError as exc:
                    check(True, f"bris de glace without a reason, refused before sending: {exc.message}")
                emergency = dmp.find_documents(patient, access=Access.bris_de_glace("Patient inconscient aux urgences"))
                check(len(emergency) == 2, "bris de glace with a reason: the documents are found")

                step("4. TD0.3: the patient authorises this professional")
                check(dmp.set_authorisation(patient).ok, "authorisation added (DMPOK)")
                status = dmp.test_existence(patient)
                check(status.authorisation is not None and status.authorisation.value == "VALIDE", "TD0.2 says VALIDE")
                names = [f"{p.given_name} {p.family_name}" for p in dmp.list_authorisations(patient)]
                check(bool(names), f"authorised professionals: {', '.join(names)}")

                step("5. Searches with filters (TD3.1)")
                found = dmp.find_documents(patient)
                check(len(found) == 2 and not found.partial, f"{len(found)} documents")
                consultations = dmp.find_documents(patient, type_codes=(CONSULTATION,))
                check([e.unique_id for e in consultations] == [first.document_unique_id], "by type: the report")
                recent = dmp.find_documents(patient, created_from=dt.date(2024, 4, 1))
                check([e.unique_id for e in recent] == [second.document_unique_id], "created since April: the VSM")
                check(len(dmp.find_submission_sets(patient)) == 2, "two submission sets")
                by_id = dmp.get_documents(patient, unique_ids=[first.document_unique_id])
                entry = by_id[0]
                print(
                    f"   {entry.title}: {entry.type_code.display_name if entry.type_code else ''}, {entry.size} bytes"
                )

                step("6. Retrieve (TD3.2), byte for byte, to memory and to a file")
                in_memory = dmp.retrieve(patient, entry)
                check(in_memory.read() == build(first_document), f"identical bytes, SHA-1 {in_memory.sha1}")
                target = workdir / "report.xml"
                on_disk = dmp.retrieve(patient, entry, to=target)
                check(target.read_bytes() == in_memory.read() and on_disk.content is None, f"written to {target.name}")

                step("7. Mask the VSM from other professionals (TD3.3a), then delete the report (TD3.3c)")
                vsm = dmp.get_documents(patient, unique_ids=[second.document_unique_id])[0]
                dmp.mask(patient, vsm)
                masked = dmp.get_documents(patient, unique_ids=[second.document_unique_id])
                current = [e for e in masked if e.availability_status == AvailabilityStatus.APPROVED]
                check(any(c.code == MASQUE_PS.code for c in current[0].confidentiality_codes), "the VSM is masked")
                dmp.delete(patient, entry)
                left = [e.unique_id for e in dmp.find_documents(patient)]
                check(first.document_unique_id not in left, "the report is gone from searches")

                step("8. The DMP's own transactions")
                recent_dmps = dmp.recent_dmps(dt.date.today() - dt.timedelta(days=1), RecentDmpKind.LAST_AUTHORISATION)
                mine = [r for r in recent_dmps if r.family_name == record.traits.birth_name]  # the rows name no INS
                check(bool(mine), f"TD0.4: {len(recent_dmps)} recent DMP(s), by name and birth date (no INS)")
                candidates = dmp.find_patients(PatientSearch(family_name=record.traits.birth_name))
                check(any(c.ins == patient.ins for c in candidates), f"TD0.5: {len(candidates)} candidate(s)")
                data = dmp.get_administrative_data(patient)
                check(data.ins == patient.ins, f"TD1.3: oppositions {data.oppositions.model_dump()}")

            step("9. The asynchronous client consults the same way")

            async def consult() -> None:
                async with AsyncDmpClient(settings, signer=signer) as client:
                    entries = await client.find_documents(patient)
                    check([e.unique_id for e in entries] == [second.document_unique_id], "one document left")
                    document = await client.retrieve(patient, entries[0])
                    check(document.size == entries[0].size, f"retrieved, {document.size} bytes")

            asyncio.run(consult())

    print("\nDMP query example finished: every check passed.")


if __name__ == "__main__":
    main()
