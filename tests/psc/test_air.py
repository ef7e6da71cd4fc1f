"""AIR settings in-process: the per-transaction mode and the AIR context class reach the VIHF the DMP reads."""

from __future__ import annotations

import pytest

from dmp_connector.config import Settings
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.psc import PscSession, air_settings
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator, in_process_dmp
from dmp_connector.signature.vihf import AC_PASSWORD, AC_TLS_CLIENT, AuthenticationMode

pytest.importorskip("joserfc")
ADRUN = Identity(traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL)


@pytest.mark.parametrize(("context_class", "expected"), [(None, AC_TLS_CLIENT), (AC_PASSWORD, AC_PASSWORD)])
def test_air_context_class_is_a_setting(
    dmpc_settings: Settings,
    dmpc_dmp_simulator: DmpSimulator,
    dmpc_psc_session: PscSession,
    context_class: str | None,
    expected: str,
) -> None:
    air = air_settings(dmpc_settings, dmpc_psc_session)
    air = air.model_copy(update={"dmp": air.dmp.model_copy(update={"reinforced_context_class": context_class})})
    with in_process_dmp(air, dmpc_dmp_simulator) as dmp:
        dmp.test_existence(ADRUN)
    vihf = dmpc_dmp_simulator.callers[-1]
    assert vihf.authentication_mode is AuthenticationMode.INDIRECTE_RENFORCEE
    assert vihf.authn_context_class == expected and vihf.authn_context_decl == "APP_BROWSER_AUTH"


def test_air_everywhere_when_the_setting_says_so(
    dmpc_settings: Settings, dmpc_dmp_simulator: DmpSimulator, dmpc_psc_session: PscSession
) -> None:
    everywhere = dict.fromkeys(("consultation", "deposit", "delete", "administration"), "INDIRECTE_RENFORCEE")
    air = air_settings(dmpc_settings, dmpc_psc_session, modes=everywhere)  # type: ignore[arg-type]
    with in_process_dmp(air, dmpc_dmp_simulator) as dmp:
        assert dmp.set_authorisation(ADRUN).ok
    assert dmpc_dmp_simulator.callers[-1].authentication_mode is AuthenticationMode.INDIRECTE_RENFORCEE


def test_subject_id_form_is_a_setting(
    dmpc_settings: Settings, dmpc_dmp_simulator: DmpSimulator, dmpc_psc_session: PscSession
) -> None:
    psc = dmpc_settings.psc.model_copy(update={"air_subject_id": "family_given"})
    air = air_settings(dmpc_settings.model_copy(update={"psc": psc}), dmpc_psc_session)
    with in_process_dmp(air, dmpc_dmp_simulator) as dmp:
        dmp.test_existence(ADRUN)
    assert dmpc_dmp_simulator.callers[-1].subject_id == "SANDBOX, JEANNE"  # the SDK's indirect-mode form
