"""The pytest plugin as a vendor meets it: a test file using the ``dmpc_*`` fixtures, run in a subprocess.

One generated file holds every scenario, so that the slow part (a pytest subprocess and the
session PKI) is paid once.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

VENDOR_TESTS = textwrap.dedent(
    """
    import asyncio
    import sys

    import pytest
    from dmp_connector import DmpClient, Identity, IdentityStatus, InsiClient, InsiServiceError
    from dmp_connector.sandbox import DEFAULT_DMP_PATIENTS, DEFAULT_INSI_IDENTITIES, DmpFault, SimulatedFault

    ADRUN = DEFAULT_INSI_IDENTITIES[0].traits
    PATIENT = Identity(
        traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL
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
    result.assert_outcomes(passed=9, skipped=1)
    result.stdout.fnmatch_lines(["*dmpc_respx_insi needs respx*"])


def test_the_plugin_is_registered(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("dmp_connector")


def test_loading_the_plugin_imports_no_sandbox() -> None:
    """Every pytest run loads the plugin: it must not pay for the sandbox unless a fixture is used."""
    code = "import sys, dmp_connector.pytest_plugin; print('dmp_connector.sandbox' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
