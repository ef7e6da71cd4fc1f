"""The pytest plugin as a vendor meets it: a test file using the ``dmpc_*`` fixtures, run in a subprocess.

One generated file holds every scenario, so that the slow part (a pytest subprocess and the
session PKI) is paid once.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dmp_connector.cda import extract_metadata
from dmp_connector.config import DmpService, Settings
from dmp_connector.dmp.client import DmpClient
from dmp_connector.dmp.mapping import document_entry
from dmp_connector.pytest_plugin import RespxDmp
from tests.dmp.client_support import PATIENT, cda_document, registry_entry

pytest_plugins = ["pytester"]

UUID = "urn:uuid:22222222-2222-4222-8222-222222222222"

VENDOR_TESTS = textwrap.dedent(
    """
    import asyncio
    import datetime as dt
    import sys

    import pytest
    from dmp_connector import DmpClient, DmpServiceError, Identity, IdentityStatus, InsiClient
    from dmp_connector.dmp import DmpRegistryError
    from dmp_connector import InsiServiceError
    from dmp_connector.cda import ClinicalDocument, NonXmlBody
    from dmp_connector.codes import Code
    from dmp_connector.config import DmpService
    from dmp_connector.mssante import MssanteAddress, MssanteMessage
    from dmp_connector.pytest_plugin import DMPC_MAILBOX, DMPC_PATIENT_MATRICULE
    from dmp_connector.sandbox import DEFAULT_DMP_PATIENTS, DEFAULT_INSI_IDENTITIES, DmpFault, SimulatedFault

    ADRUN = DEFAULT_INSI_IDENTITIES[0].traits
    PATIENT = Identity(
        traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL
    )
    PDF = b"%PDF-1.4\\n1 0 obj << /Type /Catalog >> endobj\\ntrailer << /Root 1 0 R >>\\n%%EOF\\n"


    def report(settings):
        return ClinicalDocument.from_settings(
            settings,
            patient=PATIENT,
            type_code=Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite"),
            title="Compte rendu de consultation",
            body=NonXmlBody(data=PDF),
            effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=dt.UTC),
            service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=dt.UTC),
            service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=dt.UTC),
            practice_setting=Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
        )


    def test_insi_in_process(dmpc_insi, dmpc_audit):
        assert dmpc_insi.search(ADRUN).found
        assert [event.outcome for event in dmpc_audit.events] == ["success"]


    def test_insi_async(dmpc_async_insi, dmpc_audit):
        async def scenario():
            async with dmpc_async_insi() as insi:
                return await insi.search(ADRUN)

        assert asyncio.run(scenario()).found
        assert len(dmpc_audit.events) == 1


    def test_dmp_in_process(dmpc_dmp, dmpc_dmp_simulator):
        assert dmpc_dmp.test_existence(PATIENT).exists


    def test_dmp_async(dmpc_async_dmp):
        async def scenario():
            async with dmpc_async_dmp() as dmp:
                return await dmp.test_existence(PATIENT)

        assert asyncio.run(scenario()).exists


    def test_a_503_is_retried(dmpc_insi, dmpc_faults, dmpc_audit):
        dmpc_faults.insi(DmpFault.unavailable(retry_after=0))
        assert dmpc_insi.search(ADRUN).found
        assert [event.attempt for event in dmpc_audit.events] == [1, 2]
        assert [event.http_status for event in dmpc_audit.events][0] == 503
        assert len(dmpc_faults.insi_script.requests) == 2


    def test_an_insi_fault_then_a_dmp_latency(dmpc_insi, dmpc_dmp, dmpc_faults, dmpc_audit):
        dmpc_faults.insi(SimulatedFault.unknown_idam()).dmp(DmpFault.latency(0.01))
        with pytest.raises(InsiServiceError):
            dmpc_insi.search(ADRUN)
        assert dmpc_dmp.test_existence(PATIENT).exists
        assert [event.service for event in dmpc_audit.events] == ["insi", "dmp"]


    def test_the_simulator_can_be_seeded(dmpc_insi, dmpc_insi_simulator):
        dmpc_insi_simulator.identities = []
        assert not dmpc_insi.search(ADRUN).found


    def test_respx_canned_answers(dmpc_respx_insi, dmpc_settings):
        route = dmpc_respx_insi.found()
        with InsiClient(dmpc_settings) as insi:
            assert insi.search(ADRUN).found
            dmpc_respx_insi.not_found()
            assert not insi.search(ADRUN).found
            dmpc_respx_insi.fault(SimulatedFault.unknown_idam())
            with pytest.raises(InsiServiceError) as info:
                insi.search(ADRUN)
        assert info.value.code == "desir_550"
        assert route.call_count == 3
        dmpc_respx_insi.several()
        with InsiClient(dmpc_settings) as insi:
            assert insi.search(ADRUN).code == "02"


    def test_respx_missing_skips(request, monkeypatch):
        monkeypatch.setitem(sys.modules, "respx", None)
        request.getfixturevalue("dmpc_respx_insi")


    def test_respx_dmp_deposit_then_find(dmpc_respx_dmp, dmpc_settings, dmpc_audit):
        deposit = dmpc_respx_dmp.deposited()
        dmpc_respx_dmp.found()
        dmpc_respx_dmp.dmp_status()
        with DmpClient(dmpc_settings, audit=[dmpc_audit]) as dmp:
            assert dmp.test_existence(PATIENT).active
            assert not dmp.deposit(report(dmpc_settings), patient=PATIENT).already_deposited
            assert list(dmp.find_documents(PATIENT)) == []
        assert deposit.call_count == 1
        assert [(event.kind, event.outcome) for event in dmpc_audit.events] == [
            ("attempt", "success"),
            ("attempt", "success"),
            ("outcome", "success"),  # the deposit's final word, once per document
            ("attempt", "success"),
        ]


    def test_respx_insi_and_dmp_together(dmpc_respx_insi, dmpc_respx_dmp, dmpc_settings):
        search = dmpc_respx_insi.found()
        status = dmpc_respx_dmp.dmp_status()
        with InsiClient(dmpc_settings) as insi, DmpClient(dmpc_settings) as dmp:
            assert insi.search(ADRUN).found
            assert dmp.test_existence(PATIENT).active
        assert (search.call_count, status.call_count) == (1, 1)


    def test_respx_dmp_registry_failure_is_typed(dmpc_respx_dmp, dmpc_settings):
        route = dmpc_respx_dmp.registry_failure("XDSRegistryMetadataError", "metadonnees refusees")
        with DmpClient(dmpc_settings) as dmp, pytest.raises(DmpRegistryError) as info:
            dmp.deposit(report(dmpc_settings), patient=PATIENT)
        assert "XDSRegistryMetadataError" in info.value.codes
        assert route.call_count == 1
        fault = dmpc_respx_dmp.fault(DmpService.PATIENTS, code="Sender", reason="VIHF invalide")
        with DmpClient(dmpc_settings) as dmp, pytest.raises(DmpServiceError):
            dmp.test_existence(PATIENT)
        assert fault.call_count == 1


    def test_mssante_send_then_inbox(dmpc_mssante, dmpc_mail_operator, dmpc_audit):
        assert PATIENT.ins.matricule == DMPC_PATIENT_MATRICULE
        patient = MssanteAddress.for_patient(PATIENT)
        to = (MssanteAddress.parse(DMPC_MAILBOX), patient)
        message = MssanteMessage(to=to, subject="Compte rendu", text="Bonjour")
        dmpc_mssante.send(message)
        assert [mail.subject for mail in dmpc_mssante.inbox()] == ["Compte rendu"]
        assert len(dmpc_mail_operator.stored(patient.address)) == 1
        assert {event.service for event in dmpc_audit.events} == {"mssante"}


    def test_sandbox_extra_missing_skips(request, monkeypatch):
        monkeypatch.setitem(sys.modules, "aiosmtpd", None)
        request.getfixturevalue("dmpc_mail_operator")


    def test_loopback_with_mutual_tls(dmpc_loopback_sandbox):
        settings = dmpc_loopback_sandbox.settings
        assert settings.environment.insi_mtls_url.startswith(dmpc_loopback_sandbox.url)
        with InsiClient(settings) as insi, DmpClient(settings) as dmp:
            assert insi.search(ADRUN).found
            assert dmp.test_existence(PATIENT).exists
    """
)


def test_a_vendor_suite_runs_on_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    pytester.makepyfile(test_vendor=VENDOR_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=13, skipped=2)
    result.stdout.fnmatch_lines(["*dmpc_respx_insi needs respx*", "*dmpc_mail_operator needs the sandbox extra*"])


def test_the_plugin_is_registered(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("dmp_connector")


def test_loading_the_plugin_imports_no_sandbox() -> None:
    """Every pytest run loads the plugin: it must not pay for the sandbox unless a fixture is used."""
    code = "import sys, dmp_connector.pytest_plugin; print('dmp_connector.sandbox' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_respx_dmp_answers_a_query_with_the_given_entries(dmpc_respx_dmp: RespxDmp, dmpc_settings: Settings) -> None:
    """In-process (the plugin is registered here too): entries travel through the canned FindDocuments answer."""
    entry = registry_entry(document_entry(extract_metadata(cda_document())), uuid=UUID)
    route = dmpc_respx_dmp.found(entry)
    with DmpClient(dmpc_settings) as dmp:
        found = dmp.find_documents(PATIENT)
    assert [document.entry_uuid for document in found] == [UUID]
    assert route.call_count == 1
    assert dmpc_respx_dmp.routes[DmpService.REGISTRY] is route
