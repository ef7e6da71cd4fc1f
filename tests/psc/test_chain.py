"""The whole chain on loopback, sync and async: CIBA login at the PSC simulator → AIR VIHF → DMP
consultation (mutual TLS) → MSSanté IMAP with the PSC access token over XOAUTH2, introspected by the
sandbox operator at the PSC simulator. Then the PSC session ends: the DMP refuses AIR and the mail
session stops (refresh refused → PscSessionClosedError)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from dmp_connector.config import MssanteAuthMode, MssanteSettings, Settings
from dmp_connector.dmp import AsyncDmpClient, DmpClient
from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.mssante import AsyncMssanteClient, MssanteClient
from dmp_connector.psc import (
    AsyncPscClient,
    NoMatchingActivityError,
    PscClient,
    PscSessionClosedError,
    air_settings,
)
from dmp_connector.pytest_plugin import DMPC_COLLEAGUE_MAILBOX, DMPC_PSC_LOGIN_HINT, LoopbackSandbox
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator
from dmp_connector.sandbox.mssante import SandboxMailOperator
from dmp_connector.sandbox.psc import PscIntrospectionCheck, PscSimulator
from dmp_connector.signature.vihf import AuthenticationMode

pytest.importorskip("joserfc")
pytest.importorskip("pymap")

ADRUN = Identity(traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL)
MAIL = (
    b"From: <lps@cabinet-sandbox.mssante.fr>\r\nTo: <dr.confrere@medecin.mssante.fr>\r\n"
    b"Subject: Avis\r\nMessage-ID: <psc-chain@sandbox>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0100\r\n\r\nBonjour\r\n"
)


@pytest.fixture
def chain(
    dmpc_psc: PscSimulator,
    dmpc_psc_settings: Settings,
    dmpc_loopback_sandbox: LoopbackSandbox,
    dmpc_dmp_simulator: DmpSimulator,
    dmpc_mail_operator: SandboxMailOperator,
) -> Settings:
    """Settings reaching the PSC simulator, the DMP on loopback (AIR checked against PSC's sessions)
    and the mail operator (XOAUTH2 introspected at PSC; the colleague's mailbox is SANDBOX JEANNE's)."""
    assert dmpc_psc_settings.tls.ca_bundle is not None and dmpc_psc_settings.psc.client_secret is not None
    dmpc_dmp_simulator.air_check = dmpc_psc.has_session
    dmpc_mail_operator.token_check = PscIntrospectionCheck(
        dmpc_psc.issuer + "/protocol/openid-connect/token/introspect",
        "sandbox-lps",
        dmpc_psc_settings.psc.client_secret.get_secret_value(),
        dmpc_psc_settings.tls.ca_bundle,
        {DMPC_COLLEAGUE_MAILBOX: DMPC_PSC_LOGIN_HINT},
    )
    dmpc_mail_operator.deliver(DMPC_COLLEAGUE_MAILBOX, MAIL)
    mailbox = MssanteSettings(
        mailbox=DMPC_COLLEAGUE_MAILBOX, auth_mode=MssanteAuthMode.XOAUTH2, connect_timeout=5, timeout=10
    )
    return dmpc_loopback_sandbox.settings.model_copy(
        update={
            "psc": dmpc_psc_settings.psc,
            "mssante": mailbox,
            "environment": dmpc_mail_operator.environment(dmpc_loopback_sandbox.settings.environment),
        }
    )


def _check_air_calls(simulator: DmpSimulator) -> None:
    administration, consultation = simulator.callers[-2], simulator.callers[-1]
    assert administration.authentication_mode is AuthenticationMode.INDIRECTE  # TD0.3: indirect, as DRIMbox
    assert consultation.authentication_mode is AuthenticationMode.INDIRECTE_RENFORCEE
    assert consultation.authn_context_decl == "APP_BROWSER_AUTH"
    assert consultation.subject_name_id == DMPC_PSC_LOGIN_HINT  # SubjectNameID
    assert consultation.structure_id == "1123456789"  # the activity at the practice's structure
    assert consultation.activity_sector == "SA07^1.2.250.1.71.4.2.4"
    assert consultation.subject_id == "JEANNE SANDBOX"  # prénom nom of the exercise, as DRIMbox
    assert [(r.code, r.code_system) for r in consultation.roles] == [
        ("10", "1.2.250.1.71.1.2.7"),
        ("SM26", "1.2.250.1.71.4.2.5"),
    ]


def test_chain_sync(
    chain: Settings,
    dmpc_psc: PscSimulator,
    dmpc_dmp_simulator: DmpSimulator,
    dmpc_mail_operator: SandboxMailOperator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    chain = chain.model_copy(update={"audit": chain.audit.model_copy(update={"log": True})})
    tokens: list[str] = []
    with PscClient(chain) as psc:
        request = psc.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        session = psc.wait_ciba(request)

        with DmpClient(air_settings(chain, session)) as dmp:
            assert dmp.set_authorisation(ADRUN).ok
            assert list(dmp.find_documents(ADRUN)) == []
        _check_air_calls(dmpc_dmp_simulator)
        # AuthnInstant is the PSC login (whole seconds in the token), not the VIHF's signing time.
        assert session.auth_time is not None
        assert dmpc_dmp_simulator.callers[-1].authn_instant == session.auth_time

        with MssanteClient(chain, token_provider=session) as mail:
            [summary] = mail.inbox()
            assert summary.message_id == "<psc-chain@sandbox>"
        tokens.append(session.get_token())
        check = dmpc_mail_operator.token_check
        assert isinstance(check, PscIntrospectionCheck) and check.calls >= 1

        dmpc_psc.revoke_sessions()  # SSO timeout at PSC
        with DmpClient(air_settings(chain, session)) as dmp, pytest.raises(DmpConnectorError) as refused:
            dmp.find_documents(ADRUN)  # no PSC session: the sandbox DMP refuses AIR
        assert "FailedAuthentication" in str(refused.value)
        with MssanteClient(chain, token_provider=session) as mail, pytest.raises(PscSessionClosedError):
            mail.inbox()  # the operator refuses the token; the refresh is refused: session closed
        assert session.closed
    assert '"service":"psc"' in caplog.text and '"service":"dmp"' in caplog.text  # the audit log was on
    for secret in (*tokens, tokens[0].split(".")[2], "JEANNE", "SANDBOX JEANNE", "sandbox-secret"):
        assert secret not in caplog.text


def test_chain_async(
    chain: Settings, dmpc_psc: PscSimulator, dmpc_dmp_simulator: DmpSimulator, dmpc_mail_operator: SandboxMailOperator
) -> None:
    async def run() -> None:
        async with AsyncPscClient(chain) as psc:
            request = await psc.start_ciba(DMPC_PSC_LOGIN_HINT)
            dmpc_psc.approve()
            session = await psc.wait_ciba(request)
            async with AsyncDmpClient(air_settings(chain, session)) as dmp:
                assert (await dmp.set_authorisation(ADRUN)).ok
                assert list(await dmp.find_documents(ADRUN)) == []
            _check_air_calls(dmpc_dmp_simulator)
            assert dmpc_dmp_simulator.callers[-1].authn_instant == session.auth_time
            async with AsyncMssanteClient(chain, token_provider=session) as mail:
                [summary] = await mail.inbox()
                assert summary.message_id == "<psc-chain@sandbox>"
            dmpc_psc.revoke_sessions()
            async with AsyncMssanteClient(chain, token_provider=session) as mail:
                with pytest.raises(PscSessionClosedError):
                    await mail.inbox()
            assert session.closed

    asyncio.run(run())


def test_no_activity_at_the_structure_is_typed(chain: Settings, dmpc_psc: PscSimulator) -> None:
    with PscClient(chain) as psc:
        request = psc.start_ciba("899700366240")  # KIT DOC0036624: one cabinet, not the practice's structure
        dmpc_psc.approve()
        session = psc.wait_ciba(request)
        with pytest.raises(NoMatchingActivityError) as caught:
            air_settings(chain, session)
        assert "899700366240" not in str(caught.value) and "DOC0036624" not in str(caught.value)
        # the user may still choose an activity explicitly
        chosen = air_settings(chain, session, activity=session.professional.activities()[0])
        assert chosen.organisation is not None and chosen.organisation.national_id == "499700366240007"
        assert chosen.professional is not None and chosen.professional.national_id == "899700366240"
        assert session.auth_time is not None and session.auth_time <= dt.datetime.now(dt.UTC)


def test_operator_refusal_refreshes_the_psc_token_once(
    chain: Settings, dmpc_psc: PscSimulator, dmpc_mail_operator: SandboxMailOperator
) -> None:
    with PscClient(chain) as psc:
        request = psc.start_ciba(DMPC_PSC_LOGIN_HINT)
        dmpc_psc.approve()
        session = psc.wait_ciba(request)
        first = session.get_token()
        dmpc_mail_operator.refuse_valid_tokens(1)  # operators sometimes refuse a token still valid
        refreshes = sum(1 for r in dmpc_psc.requests if r.endswith("/token"))
        with MssanteClient(chain, token_provider=session) as mail:
            [summary] = mail.inbox()
        assert summary.message_id == "<psc-chain@sandbox>"
        assert sum(1 for r in dmpc_psc.requests if r.endswith("/token")) == refreshes + 1  # one PSC refresh
        assert session.get_token() != first and not session.closed
