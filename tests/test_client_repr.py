"""A client's repr says which environment and endpoints it talks to, and nothing secret or personal."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from dmp_connector import (
    AsyncDmpClient,
    AsyncInsiClient,
    AsyncMssanteClient,
    DmpClient,
    Environment,
    InsiClient,
    MssanteClient,
)
from dmp_connector.config import DirectorySettings, MailServer, MssanteSettings
from dmp_connector.mssante import DirectoryClient
from dmp_connector.sandbox.local import sandbox_practice
from dmp_connector.sandbox.pki import generate_test_pki
from dmp_connector.transport import AsyncClient, Client


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    files = generate_test_pki(tmp_path_factory.mktemp("pki"))
    environment = Environment.test("dev6").model_copy(
        update={
            "mssante_smtp": MailServer(host="smtp.operateur.example", port=587),
            "mssante_imap": MailServer(host="imap.operateur.example", port=143),
            "annuaire_url": "https://user:secret@gateway.example/fhir/v2?apikey=SECRET",
        }
    )
    return sandbox_practice().model_copy(
        update={
            "environment": environment,
            "tls": files.tls_credentials(),
            "signing": sandbox_practice().signing.model_copy(update={"credentials": files.signing_credentials()}),
            "mssante": MssanteSettings(mailbox="secretariat@cabinet-test.mssante.fr"),
            "directory": DirectorySettings(api_key=SecretStr("SECRET-KEY")),
        }
    )


def _never_shown(text: str, settings) -> None:  # type: ignore[no-untyped-def]
    forbidden = [
        "secretariat@",
        "SECRET",
        "secret",
        "123456789",  # the FINESS
        "99700000001",  # the RPPS
        "SANDBOX",
        "JEANNE",
        str(Path(settings.tls.cert_file).parent),
    ]
    assert not [word for word in forbidden if word in text], text


def test_service_clients_show_environment_and_endpoints(settings) -> None:  # type: ignore[no-untyped-def]
    with InsiClient(settings) as insi:
        text = repr(insi)
    assert text == "<InsiClient environment='test' insi='https://qualiflps-services-ps-tlsm.ameli.fr:443/lps'>"
    with DmpClient(settings) as dmp:
        text = repr(dmp)
    assert text == "<DmpClient environment='test' dmp='https://dev6.lps2.dmp.gouv.fr/si-dmp-server/v2/services'>"
    with MssanteClient(settings) as mss:
        text = repr(mss)
    assert (
        text == "<MssanteClient environment='test' smtp='smtp.operateur.example:587' imap='imap.operateur.example:143'>"
    )
    with DirectoryClient(settings) as annuaire:
        text = repr(annuaire)
    assert text == "<DirectoryClient environment='test' annuaire='https://gateway.example/fhir/v2'>"
    _never_shown(text, settings)
    with Client(settings) as client:
        assert repr(client) == "<Client environment='test'>"


@pytest.mark.asyncio
async def test_async_clients_too(settings) -> None:  # type: ignore[no-untyped-def]
    for cls in (AsyncInsiClient, AsyncDmpClient, AsyncMssanteClient, AsyncClient):
        client = cls(settings)
        try:
            text = repr(client)
            assert text.startswith(f"<{cls.__name__} environment='test'")
            _never_shown(text, settings)
        finally:
            await client.aclose()
