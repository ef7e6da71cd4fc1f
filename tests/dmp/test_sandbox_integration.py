"""The DMP client against the DMP simulator over real loopback HTTPS with mutual TLS, sync and async.

The issue's "Done when" scenario, end to end: test existence (TD0.2), add the authorisation (TD0.3),
deposit a PDF document and a VSM, find them, retrieve them byte-identical, replace one, mask one,
delete one; a consultation without authorisation is refused, and the same with bris de glace and a
reason succeeds. Then persistence: a simulator on a SQLite file restarted on the same file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from dmp_connector.cda import ClinicalDocument, NonXmlBody, Problem, VsmContent, build, vsm_document
from dmp_connector.codes import Code
from dmp_connector.config import Environment, Settings, TlsCredentials
from dmp_connector.dmp._td import AuthorisationStatus
from dmp_connector.dmp.client import Access, AsyncDmpClient, DmpClient
from dmp_connector.dmp.errors import DmpAccessDeniedError, DmpNotFoundError, DmpRegistryError
from dmp_connector.errors import TransportError
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.sandbox import IssuedCertificate, LoopbackServer, ScriptedHandler, TestPki
from dmp_connector.sandbox.dmp import (
    DEFAULT_DMP_PATIENTS,
    DmpSimulator,
    PatientRecord,
    in_process_async_dmp,
    in_process_dmp,
)
from dmp_connector.signature import FileSigner
from dmp_connector.xds import MASQUE_PS, AvailabilityStatus, DocumentEntry
from tests.cda.conftest import make_pdf
from tests.conftest import PkiFiles

from .test_sandbox_rules import FAST_RETRY, OTHER, PRACTICE, STRUCTURE, organisation_signer, settings

PARIS = ZoneInfo("Europe/Paris")
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def identity(record: PatientRecord) -> Identity:
    """A seeded patient as the vendor's software holds it: a qualified identity."""
    return Identity(traits=record.traits, ins=record.ins, status=IdentityStatus.QUAL)


ADRUN = identity(DEFAULT_DMP_PATIENTS[0])
NO_DMP = identity(DEFAULT_DMP_PATIENTS[1])


@dataclass(frozen=True)
class Credentials:
    """Mutual TLS as the organisation: an IGC-Santé shaped authentication certificate (OU = structure id)."""

    tls: TlsCredentials
    signer: FileSigner


@functools.cache
def _organisation_auth(pki: TestPki) -> IssuedCertificate:
    return pki.issue_organisation_auth(organisation="Cabinet Test", structure_id=STRUCTURE)


def organisation_credentials(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """The credentials written to a fresh directory; the key is made once per PKI."""
    workdir = tmp_path_factory.mktemp("dmp-org")
    auth = _organisation_auth(pki)
    cert, key = auth.write_pem(workdir, "org-auth")
    ca = workdir / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    return Credentials(TlsCredentials(cert_file=cert, key_file=key, ca_bundle=ca), organisation_signer(pki))


@dataclass
class Sandbox:
    """A simulator served on loopback, and settings pointing at it."""

    simulator: DmpSimulator
    script: ScriptedHandler
    server: LoopbackServer
    credentials: Credentials

    def settings(self, **overrides: Any) -> Settings:
        data: dict[str, Any] = {
            "environment": Environment.sandbox(self.server.url),
            "tls": self.credentials.tls,
            "retry": FAST_RETRY,
        }
        data.update(overrides)
        return settings(**data)


@contextmanager
def serve(pki_files: PkiFiles, credentials: Credentials, workdir: Path, simulator: DmpSimulator) -> Iterator[Sandbox]:
    script = ScriptedHandler(simulator)
    with simulator.serve(pki_files.pki, workdir=workdir, handler=script, server_certificate=pki_files.server) as server:
        yield Sandbox(simulator, script, server, credentials)


class Dmp:
    """One method-call path for both clients: ``await dmp("find_documents", …)`` in either mode.

    The client is opened on first use (inside the event loop for the async one) and kept, so that one
    TLS session serves the scenario; :func:`run` closes every client it opened.
    """

    opened: ClassVar[list[Dmp]] = []

    def __init__(self, mode: str, config: Settings, signer: FileSigner) -> None:
        self.mode = mode
        self.config = config
        self.signer = signer
        self._sync: DmpClient | None = None
        self._async: AsyncDmpClient | None = None

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            if self._sync is None:
                self._sync = DmpClient(self.config, signer=self.signer)
                Dmp.opened.append(self)
            return getattr(self._sync, method)(*args, **kwargs)
        if self._async is None:
            self._async = AsyncDmpClient(self.config, signer=self.signer)
            Dmp.opened.append(self)
        result: Awaitable[Any] = getattr(self._async, method)(*args, **kwargs)
        return await result

    async def aclose(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._async is not None:
            await self._async.aclose()
            self._async = None


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a scenario in a fresh event loop, then close the clients it opened."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            while Dmp.opened:
                await Dmp.opened.pop().aclose()

    asyncio.run(main())


def pdf_document(config: Settings, patient: Identity, text: str) -> ClinicalDocument:
    return ClinicalDocument.from_settings(
        config,
        patient=patient,
        type_code=CONSULTATION,
        title="Compte rendu de consultation",
        body=NonXmlBody(data=make_pdf(text)),
        effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
        service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
        service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
        practice_setting=PRACTICE,
    )


def vsm(config: Settings, patient: Identity) -> ClinicalDocument:
    content = VsmContent(
        active_problems=(
            Problem(value=Code.of("E11", "2.16.840.1.113883.6.3", "Diabète de type 2"), start=dt.date(2015, 4, 1)),
        ),
        risk_factors="Tabagisme ancien",
        no_long_term_treatment=True,
    )
    return vsm_document(
        content,
        settings=config,
        patient=patient,
        effective_time=dt.datetime(2024, 5, 2, 9, 0, tzinfo=PARIS),
        service_start=dt.date(2024, 5, 2),
        practice_setting=PRACTICE,
    )


def by_unique_id(entries: list[DocumentEntry], unique_id: str) -> DocumentEntry:
    (entry,) = [e for e in entries if e.unique_id == unique_id]
    return entry


@MODES
def test_the_done_when_scenario(mode: str, sandbox: Sandbox) -> None:
    config = sandbox.settings()
    dmp = Dmp(mode, config, sandbox.credentials.signer)
    colleague = Dmp(mode, sandbox.settings(professional=OTHER), sandbox.credentials.signer)
    report, vsm_document_ = pdf_document(config, ADRUN, "Compte rendu n°1"), vsm(config, ADRUN)
    report_bytes, vsm_bytes = build(report), build(vsm_document_)

    async def scenario() -> None:
        status = await dmp("test_existence", ADRUN)
        assert status.active and status.authorisation is AuthorisationStatus.NONE
        assert not (await dmp("test_existence", NO_DMP)).exists

        with pytest.raises(DmpAccessDeniedError):
            await dmp("find_documents", ADRUN)
        assert list(await dmp("find_documents", ADRUN, access=Access.bris_de_glace("Patient inconscient"))) == []

        assert (await dmp("set_authorisation", ADRUN)).ok
        assert (await dmp("test_existence", ADRUN)).authorisation is AuthorisationStatus.VALID

        deposited_report = await dmp("deposit", report, patient=ADRUN)
        deposited_vsm = await dmp("deposit", vsm_document_, patient=ADRUN)
        assert not deposited_report.already_deposited and not deposited_vsm.already_deposited

        found = await dmp("find_documents", ADRUN)
        report_entry = by_unique_id(found, deposited_report.document_unique_id)
        vsm_entry = by_unique_id(found, deposited_vsm.document_unique_id)
        assert report_entry.type_code == CONSULTATION
        assert vsm_entry.format_code is not None and "ci-sis" in vsm_entry.format_code.code

        assert (await dmp("retrieve", ADRUN, report_entry)).read() == report_bytes
        assert (await dmp("retrieve", ADRUN, vsm_entry)).read() == vsm_bytes

        second = pdf_document(config, ADRUN, "Compte rendu n°1, corrigé")
        replaced = await dmp("deposit", second, patient=ADRUN, replaces=report_entry.entry_uuid)
        current = await dmp("find_documents", ADRUN)
        assert deposited_report.document_unique_id not in {e.unique_id for e in current}
        new_entry = by_unique_id(current, replaced.document_unique_id)
        old = await dmp("find_documents", ADRUN, statuses=(AvailabilityStatus.DEPRECATED,))
        assert by_unique_id(old, deposited_report.document_unique_id).entry_uuid == report_entry.entry_uuid

        assert (await colleague("set_authorisation", ADRUN)).ok
        await dmp("mask", ADRUN, vsm_entry)
        seen_by_colleague = {e.unique_id for e in await colleague("find_documents", ADRUN)}
        assert deposited_vsm.document_unique_id not in seen_by_colleague
        assert replaced.document_unique_id in seen_by_colleague
        masked = by_unique_id(await dmp("find_documents", ADRUN), deposited_vsm.document_unique_id)
        assert any(c.code == MASQUE_PS.code for c in masked.confidentiality_codes)

        await dmp("delete", ADRUN, new_entry)
        remaining = {e.unique_id for e in await dmp("find_documents", ADRUN)}
        assert replaced.document_unique_id not in remaining
        assert deposited_vsm.document_unique_id in remaining
        with pytest.raises(DmpRegistryError):
            await dmp("retrieve", ADRUN, new_entry)

    run(scenario)
    # Every request came over mutual TLS with the organisation's certificate.
    assert all(
        r.client_subject and f"organizationalUnitName={STRUCTURE}" in r.client_subject for r in sandbox.script.requests
    )


@MODES
def test_a_deposit_for_a_patient_without_a_dmp_fails_clearly(mode: str, sandbox: Sandbox) -> None:
    config = sandbox.settings()
    dmp = Dmp(mode, config, sandbox.credentials.signer)

    async def scenario() -> None:
        with pytest.raises(DmpNotFoundError):
            await dmp("deposit", pdf_document(config, NO_DMP, "sans DMP"), patient=NO_DMP)

    run(scenario)
    assert sandbox.simulator.store.entry_count() == 0


@MODES
def test_a_client_without_a_certificate_does_not_get_in(mode: str, sandbox: Sandbox, pki_files: PkiFiles) -> None:
    config = sandbox.settings(tls=TlsCredentials(ca_bundle=pki_files.ca_bundle))
    dmp = Dmp(mode, config, sandbox.credentials.signer)

    async def scenario() -> None:
        with pytest.raises(TransportError):  # TlsError, or a dropped connection under TLS 1.3
            await dmp("test_existence", ADRUN)

    run(scenario)
    assert sandbox.script.requests == []


@MODES
def test_a_sqlite_sandbox_keeps_its_documents_across_a_restart(
    mode: str, pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    path = tmp_path / "dmp.sqlite"
    trusted = [pki_files.pki.ca.certificate]

    with serve(pki_files, credentials, tmp_path, DmpSimulator(trusted=trusted, path=path)) as before:
        dmp = Dmp(mode, before.settings(), credentials.signer)
        report = pdf_document(dmp.config, ADRUN, "Avant redémarrage")
        results: list[Any] = []

        async def first() -> None:
            assert (await dmp("set_authorisation", ADRUN)).ok
            results.append(await dmp("deposit", report, patient=ADRUN))

        run(first)
        before.simulator.store.close()

    with serve(pki_files, credentials, tmp_path, DmpSimulator(trusted=trusted, path=path)) as after:
        again = Dmp(mode, after.settings(), credentials.signer)
        (result,) = results

        async def second() -> None:
            assert (await again("test_existence", ADRUN)).authorisation is AuthorisationStatus.VALID
            entry = by_unique_id(await again("find_documents", ADRUN), result.document_unique_id)
            assert (await again("retrieve", ADRUN, entry)).read() == build(report)

        run(second)
        (stored,) = after.simulator.store.entries(unique_id=result.document_unique_id)
        assert stored.entry.version == "1"


def test_the_in_process_clients(pki_files: PkiFiles, credentials: Credentials) -> None:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])
    config = settings()
    report = pdf_document(config, ADRUN, "En mémoire")
    with in_process_dmp(config, simulator, signer=credentials.signer) as client:
        assert client.set_authorisation(ADRUN).ok
        deposited = client.deposit(report, patient=ADRUN)

    async def scenario() -> None:
        async with in_process_async_dmp(config, simulator, signer=credentials.signer) as client:
            (entry,) = [e for e in await client.find_documents(ADRUN) if e.unique_id == deposited.document_unique_id]
            assert (await client.retrieve(ADRUN, entry)).read() == build(report)

    asyncio.run(scenario())


@MODES
def test_a_replay_from_a_new_call_after_a_restart_is_already_deposited(mode: str, sandbox: Sandbox) -> None:
    """A new call (another process, later) signs again with another SigningTime: still one document."""
    config = sandbox.settings()
    dmp = Dmp(mode, config, sandbox.credentials.signer)
    document = pdf_document(config, ADRUN, "Compte rendu rejoué")
    morning = dt.datetime.now(dt.UTC).replace(microsecond=0)

    async def scenario() -> None:
        await dmp("set_authorisation", ADRUN)
        first = await dmp("deposit", document, patient=ADRUN, submission_time=morning)
        again = await dmp("deposit", document, patient=ADRUN, submission_time=morning + dt.timedelta(seconds=5))
        assert not first.already_deposited
        assert again.already_deposited
        assert again.document_unique_id == first.document_unique_id

    run(scenario)
    assert sandbox.simulator.store.entry_count() == 2  # the document and its signature, once
