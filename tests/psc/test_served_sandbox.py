"""``dmp-connector sandbox serve`` serves the PSC simulator too: ``psc login`` and an AIR consultation use the
configuration it writes (CIBA approved at once, as no e-CPS can answer there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_OK, main
from dmp_connector.config import Settings
from dmp_connector.dmp import DmpClient
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.psc import PscClient, air_settings
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS
from tests.test_cli_sandbox_serve import start, stop

pytest.importorskip("joserfc")


def test_served_sandbox_logs_in_with_psc_and_consults_in_air(tmp_path: Path) -> None:
    process, config = start(tmp_path / "sandbox")
    try:
        settings = Settings.load(config)
        assert settings.psc.client_id == "sandbox-lps" and settings.psc.issuer.startswith("https://127.0.0.1:")
        result = CliRunner().invoke(
            main, ["--config", str(config), "--json", "psc", "login", "--login-hint", "899700000001"]
        )
        assert result.exit_code == EXIT_OK, result.output
        assert json.loads(result.stdout)["acr"] == "eidas1"

        record = DEFAULT_DMP_PATIENTS[0]
        adrun = Identity(traits=record.traits, ins=record.ins, status=IdentityStatus.QUAL)
        with PscClient(settings) as psc:
            session = psc.login_ciba("899700000001")
            with DmpClient(air_settings(settings, session)) as dmp:
                assert dmp.test_existence(adrun).exists  # consultation in AIR, with a live PSC session
            session.logout()
    finally:
        stop(process)
