"""Verify INS with the INSi teleservice, end to end, against the sandbox's INSi simulator.

Run it with ``python examples/verify_ins.py``. It needs no network and no certificate of
your own: it creates a throw-away PKI, serves the INSi simulator on 127.0.0.1 over HTTPS
with mutual TLS (the simulator, like INSi, accepts only a client certificate whose CN is
INSI-AUTO or INSI-MANU), then searches and verifies identities with the synchronous and
the asynchronous clients, printing each step. It exits with status 0 only if every check
holds.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from dmp_connector import (
    INS,
    AsyncInsiClient,
    Environment,
    Identity,
    IdentityNotQualifiedError,
    IdentityStatus,
    IdentityTraits,
    InsiClient,
    InsiServiceError,
    Organisation,
    RetryPolicy,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.audit import MemorySink
from dmp_connector.config import AuditSettings
from dmp_connector.ins import InsOid, VerificationVerdict
from dmp_connector.sandbox import (
    InsiSimulator,
    LoopbackServer,
    ScriptedHandler,
    SimulatedFault,
    TestPki,
    server_ssl_context,
)


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok ' if condition else 'FAILED'} {what}")
    if not condition:
        sys.exit(1)


def traits(name: str, first_names: str, sex: str, born: str, place: str | None = None) -> IdentityTraits:
    return IdentityTraits.build(
        birth_name=name, birth_first_names=first_names, sex=sex, birth_date=born, birth_place=place
    )


def stored(subject: IdentityTraits, matricule: str, oid: InsOid = InsOid.NIR) -> Identity:
    """An identity as the software keeps it: INS retrieved earlier, not yet checked against a document."""
    return Identity(traits=subject, ins=INS.parse(matricule, oid=oid), status=IdentityStatus.RECUP)


def make_settings(workdir: Path, pki: TestPki, server_url: str) -> Settings:
    ca = workdir / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    # The organisation's INSi certificate: its CN must be exactly INSI-AUTO or INSI-MANU.
    cert, key = pki.issue_client("INSI-AUTO", organisation="Cabinet Dr Martin").write_pem(workdir, "insi-auto")
    return Settings(
        software=SoftwareIdentity(
            name="ExampleLPS", version="0.1", editor="Example Editor", insi_authorisation_id="EXAMPLE-IDAM"
        ),
        environment=Environment.sandbox(server_url),
        organisation=Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Dr Martin"),
        tls=TlsCredentials(cert_file=cert, key_file=key, ca_bundle=ca),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0.0),
        audit=AuditSettings(jsonl_path=workdir / "audit.jsonl"),
    )


SECRETS = ("ADRTROIS", "ECETINSI", "HERMANN", "ADRUN", "297022A02077878", "209076322083439", "1997-02-26")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dmp-connector-insi-") as tmp:
        workdir = Path(tmp)
        step("1. A throw-away PKI and the INSi simulator on loopback (HTTPS, client certificate CN INSI-AUTO)")
        pki = TestPki.create()
        simulator = InsiSimulator(known_idams={"EXAMPLE-IDAM"}, required_client_cn={"INSI-AUTO", "INSI-MANU"})
        script = ScriptedHandler(simulator)
        context = server_ssl_context(pki.issue_server(), pki, workdir=workdir)

        with LoopbackServer(script, ssl_context=context) as server:
            print(f"   INSi simulator at {server.url}/insi/lps with {len(simulator.identities)} seeded identities")
            settings = make_settings(workdir, pki, server.url)
            sink = MemorySink()

            with InsiClient(settings, audit=[sink]) as insi:
                step("2. Search by traits: a patient born in Corsica (2A), typed with accents and lower case")
                result = insi.search(traits("Adrtrois", "Dominique", "f", "1997-02-26"))
                found = result.identity
                check(result.code.value == "00" and found is not None, f"answer {result.code.value} {result.label}")
                if found is not None:
                    check(found.active.matricule == "297022A02077878", f"INS {found.active.formatted()}")
                    check(found.traits.birth_place == "2A020", "birth place 2A020 returned with the traits")

                step("3. The first name matters: 01 with the second first name, 00 with the first")
                check(insi.search(traits("TCHITCHI", "OLA", "F", "1936-06-21")).code.value == "01", "OLA: 01")
                check(insi.search(traits("TCHITCHI", "CATARINA", "F", "1936-06-21")).found, "CATARINA: 00")

                step("4. Several people share these traits: 02, then refined with the birth place")
                shared = traits("DE VINCI", "LEONARDO", "M", "2014-02-01", "13055")
                before = len(script.requests)
                refined = insi.search(shared)
                check(refined.found and refined.criteria is not None and refined.criteria.birth_place, "00 with place")
                check(len(script.requests) - before == 2, "two searches: without, then with the birth place")

                step("5. Verify a stored INS: confirmed")
                adrun = stored(traits("ADRUN", "ZOE", "F", "1975-12-31", "63220"), "2 75 12 63 220 749 74")
                verification = insi.verify(adrun)
                check(verification.verdict is VerificationVerdict.CONFIRMED, f"verdict {verification.verdict.value}")

                step("6. Verify a former matricule: INSi gives the active INS in its place")
                ecetinsi = traits("ECETINSI", "PIERRE-ALAIN MURIEL FLORIANT", "M", "2009-07-14", "63220")
                verification = insi.verify(stored(ecetinsi, "209076322083439"))
                check(verification.verdict is VerificationVerdict.MATRICULE_REPLACED, verification.verdict.value)
                active = verification.result.identity.active if verification.result.identity else None
                check(active is not None and active.matricule == "109076322083489", "active INS to store instead")

                step("7. INSi returns a matricule whose key does not check: flagged, never fixed")
                hermann = stored(traits("HERMANN", "GATIEN", "M", "1981-03-24", "63220"), "181036322045676")
                verification = insi.verify(hermann)
                check(verification.verdict is VerificationVerdict.KEY_INVALID, verification.verdict.value)

                step("8. Verify with traits that differ: which trait, ours and INSi's")
                moved = stored(traits("ADRUN", "ZOE", "F", "1975-12-31", "63113"), "275126322074974")
                verification = insi.verify(moved)
                check(verification.differing_traits == ("birth_place",), f"differs: {verification.differing_traits}")

                step("9. A doubtful identity must not call INSi (RNIV EXI SI 09)")
                before = len(script.requests)
                doubtful = Identity(traits=traits("ADRUN", "ZOE", "F", "1975-12-31"), doubtful=True)
                try:
                    insi.search(doubtful)
                except IdentityNotQualifiedError as exc:
                    check(len(script.requests) == before, f"refused before any call: {exc.message}")
                else:
                    check(False, "the doubtful identity was refused")

                step("10. INSi is briefly unavailable (siram_40 / insi_102): the search is retried")
                script.then(SimulatedFault.technical().respond)
                before = len(sink.events)
                check(insi.search(traits("ADRUN", "ZOE", "F", "1975-12-31")).found, "found on the second attempt")
                check([e.attempt for e in sink.events[before:]] == [1, 2], "two attempts audited")

                step("11. A refusal is not retried: an unknown software authorisation number")
                script.then(SimulatedFault.unknown_idam().respond)
                try:
                    insi.search(traits("ADRUN", "ZOE", "F", "1975-12-31"))
                except InsiServiceError as exc:
                    check(exc.code == "desir_550" and exc.attempts == 1, f"{exc.code}: {exc.hint}")
                else:
                    check(False, "the refusal was raised")

            step("12. Async client: three verifications at once")

            async def concurrent() -> list[str]:
                async with AsyncInsiClient(settings, audit=[sink]) as client:
                    results = await asyncio.gather(
                        client.verify(adrun), client.verify(stored(ecetinsi, "109076322083489")), client.verify(hermann)
                    )
                return [r.verdict.value for r in results]

            verdicts = asyncio.run(concurrent())
            check(verdicts == ["confirmed", "confirmed", "key_invalid"], f"verdicts: {verdicts}")

        step("13. Audit trail: one event per attempt, no trait and no matricule in clear")
        journal = (workdir / "audit.jsonl").read_text(encoding="utf-8")
        check(len(journal.splitlines()) == len(sink.events), f"{len(sink.events)} events in audit.jsonl")
        check(not any(secret in journal for secret in SECRETS), "no birth name, birth date or matricule")
        for event in sink.events[-4:]:
            print(
                f"   {event.timestamp:%H:%M:%S} {event.operation} attempt {event.attempt} {event.outcome.value:7} "
                f"{event.error_code or '':10} patient {event.patient or '-'}"
            )
    print("\nINSi example finished: every check passed.")


if __name__ == "__main__":
    main()
