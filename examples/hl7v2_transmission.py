"""Send a CDA document to the hospital's intermediation platform in HL7 v2 (MDM^T02 over MLLP, TLS).

Run it with ``python examples/hl7v2_transmission.py``. It needs no network: it creates a
throw-away PKI, serves the sandbox platform (``MllpListener``) on 127.0.0.1 over TLS, builds a
structured summary (VSM) for a qualified patient, sends it with the synchronous and the
asynchronous MLLP clients, reads the ACK and the business acks the platform queues, feeds an
identity update (ADT^A31), and shows that the rules refuse what they must: an unqualified
identity never sends its INS, and a PID naming another patient than its document is refused.
It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from dmp_connector.cda import Problem, VsmContent, build, vsm_document
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import Organisation, Professional, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.hl7v2 import (
    AsyncMllpClient,
    Distribution,
    Hl7RejectedError,
    LocalId,
    MdmSettings,
    MllpClient,
    Recipient,
    build_adt,
    build_mdm,
    parse,
    read_business_ack,
)
from dmp_connector.ins import INS, BirthDate, Identity, IdentityTraits, InsOid, Sex
from dmp_connector.sandbox import MllpListener, TestPki, server_ssl_context

PARIS = ZoneInfo("Europe/Paris")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def settings() -> Settings:
    return Settings(
        software=SoftwareIdentity(name="ExampleDPI", version="0.1", editor="Example Editor", dmp_homologation_id="HOM"),
        organisation=Organisation(
            id="123456789",
            id_kind=StructureIdKind.FINESS,
            name="Hôpital Exemple",
            activity_sector=Code.of("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé"),
        ),
        professional=Professional(
            id="99700000001",
            family_name="SANDBOX",
            given_name="JEANNE",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
    )


def patient() -> Identity:
    traits = IdentityTraits(
        birth_name="ADRUN",
        birth_first_names=("ZOE",),
        sex=Sex.F,
        birth_date=BirthDate(year=1975, month=12, day=31),
        birth_place="63220",
    )
    return Identity(traits=traits, ins=INS.parse("275126322074974", oid=InsOid.NIR_TEST), status="QUAL")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hl7v2-example-"))
    pki = TestPki.create()
    server_tls = server_ssl_context(pki.issue_server(), pki, require_client_cert=False, workdir=workdir)
    client_tls = ssl.create_default_context(cadata=pki.ca_pem.decode("ascii"))

    step("a structured summary (VSM) for a qualified patient, as a DMP deposit would take it")
    content = VsmContent(
        active_problems=(
            Problem(value=Code.of("E11", "2.16.840.1.113883.6.3", "Diabète de type 2"), start=dt.date(2015, 4, 1)),
        ),
        no_long_term_treatment=True,
    )
    document = vsm_document(
        content,
        settings=settings(),
        patient=patient(),
        effective_time=dt.datetime(2024, 5, 2, 9, 0, tzinfo=PARIS),
        service_start=dt.date(2024, 5, 2),
        practice_setting=AMBULATOIRE,
    )
    cda = build(document)
    distribution = Distribution(
        recipients=(Recipient(address="medecin.traitant@test.mssante.fr"),),
        invisible_to_patient=True,
        ack_reception=True,
    )
    mdm_settings = MdmSettings(sending_application="DPI-EXEMPLE", sending_facility="Hopital-Exemple")
    message = build_mdm(cda, control_id="MSG0001", distribution=distribution, settings=mdm_settings)
    text = message.encode()
    check("MDM^T02^MDM_T02" in text and "|2.1^CISIS_CDA_HL7_V2" in text.split("\r")[0], "MDM^T02 of the volet 2.1")
    check("275126322074974^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS" in text, "the INS in PID-3")

    with MllpListener(ssl_context=server_tls) as platform:
        step("sent over MLLP with TLS (synchronous client)")
        with MllpClient(platform.host, platform.port, timeout=10, ssl_context=client_tls) as client:
            ack = client.send(message)
            check(ack.accepted and ack.acknowledged_id == "MSG0001", "ACK AA naming our message")
            update = build_adt("A31", patient(), control_id="MSG0002", local_ids=[LocalId(id="IPP42", namespace="HOP")])
            check(client.send(update).accepted, "an identity update (ADT^A31) accepted")

            step("a PID naming another patient than its document")
            pid = next(line for line in text.split("\r") if line.startswith("PID"))
            tampered = parse(text.replace(pid, pid.replace("|19751231|", "|19751230|")).replace("MSG0001", "MSG0003"))
            try:
                client.send(tampered)
                check(False, "refused")
            except Hl7RejectedError as exc:
                check(exc.code == "AE" and "PATIENT_MISMATCH" in exc.errors, "refused by the platform (AE)")

        step("the same document with the asynchronous client")

        async def send_async() -> None:
            async with AsyncMllpClient(platform.host, platform.port, timeout=10, ssl_context=client_tls) as client:
                again = build_mdm(cda, control_id="MSG0004", distribution=distribution, settings=mdm_settings)
                ack = await client.send(again)
                check(ack.acknowledged_id == "MSG0004", "ACK naming the async message")

        asyncio.run(send_async())

    step("what the platform received and the business acks it queued")
    received = platform.simulator.documents
    ids = [d.control_id for d in received]
    check(ids == ["MSG0001", "MSG0004"], "two documents received, none for the tampered PID")
    check(received[0].document == cda, "the CDA arrived byte for byte")
    kinds = [read_business_ack(z).kind.value for z in platform.simulator.business_acks]
    check(kinds[:2] == ["Z01", "Z02"], f"business acks queued: {kinds}")

    step("an identity that is not qualified never sends its INS")
    recup = patient().updated(status="RECUP")
    adt = build_adt("A31", recup, control_id="MSG0005", local_ids=[LocalId(id="IPP42", namespace="HOP")]).encode()
    check("275126322074974" not in adt and adt.split("\r")[2].endswith("|PROV"), "RECUP goes out as PROV, no INS")

    print("\nevery check passed")


if __name__ == "__main__":
    main()
