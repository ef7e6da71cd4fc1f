"""Mutual TLS against the sandbox's LoopbackServer: wrong or expired certificates on either side.

``tests/test_tls.py`` proves the client refuses to *load* an expired, not-yet-valid or mismatched
certificate; ``tests/test_transport_loopback.py`` that a server from an unknown CA is refused
and that a client without a certificate is turned away. Here, over real TLS on 127.0.0.1, sync
and async: a client certificate from another CA and an expired client certificate are refused by
the server; an expired server certificate, one for another host name and one that is not a
server certificate are refused by the client. Each ends in a :class:`TlsError`, on the first
attempt (a TLS failure is never retried), and no request reaches the service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from dmp_connector._tls import build_ssl_context
from dmp_connector._transport import AsyncClient, Client
from dmp_connector.config import Environment, Settings, TlsCredentials
from dmp_connector.errors import ConfigurationError, TlsError
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import IssuedCertificate, TestPki
from dmp_connector.sandbox._http import LoopbackServer, ScriptedHandler, server_ssl_context
from dmp_connector.sandbox.echo import EchoOperation, echo_service
from tests.conftest import PkiFiles, make_settings

NOW = dt.datetime.now(dt.UTC)
MODES = pytest.mark.parametrize("mode", ["sync", "async"])
RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0)


@pytest.fixture
def script() -> ScriptedHandler:
    return ScriptedHandler(echo_service)


def serve(
    pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path, server: IssuedCertificate | None = None
) -> LoopbackServer:
    # TLS 1.2, as the national services: a refused client certificate fails the handshake itself.
    context = server_ssl_context(
        server or pki_files.server, pki_files.pki, workdir=tmp_path, maximum_version=ssl.TLSVersion.TLSv1_2
    )
    return LoopbackServer(script, ssl_context=context)


def settings_for(pki_files: PkiFiles, server: LoopbackServer, **overrides: Any) -> Settings:
    return make_settings(pki_files, environment=Environment.sandbox(server.url), retry=RETRY, **overrides)


def call(mode: str, settings: Settings, *, verify: ssl.SSLContext | None = None) -> Any:
    """Send an echo through the real client; ``verify`` supplies a TLS context the client's checks did not build."""
    if mode == "sync":
        http = httpx.Client(verify=verify) if verify is not None else None
        try:
            with Client(settings, http_client=http) as client:
                return client.send(EchoOperation("x"))
        finally:
            if http is not None:
                http.close()

    async def run() -> Any:
        http = httpx.AsyncClient(verify=verify) if verify is not None else None
        try:
            async with AsyncClient(settings, http_client=http) as client:
                return await client.send(EchoOperation("x"))
        finally:
            if http is not None:
                await http.aclose()

    return asyncio.run(run())


def refused(mode: str, settings: Settings, script: ScriptedHandler, **kwargs: Any) -> TlsError:
    with pytest.raises(TlsError) as info:
        call(mode, settings, **kwargs)
    assert info.value.attempts == 1
    assert script.requests == []
    return info.value


@pytest.fixture
def server(pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path) -> Iterator[LoopbackServer]:
    with serve(pki_files, script, tmp_path) as running:
        yield running


@MODES
def test_the_right_certificates_pass(mode: str, pki_files: PkiFiles, server: LoopbackServer) -> None:
    assert call(mode, settings_for(pki_files, server)).text == "x"


@MODES
def test_a_client_certificate_from_another_ca_is_refused_by_the_server(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler, tmp_path: Path
) -> None:
    stranger = TestPki.create(name="another CA").issue_client("Cabinet Test AUTH_CLI")
    cert, key = stranger.write_pem(tmp_path, "stranger")
    tls = TlsCredentials(cert_file=cert, key_file=key, ca_bundle=pki_files.ca_bundle)
    refused(mode, settings_for(pki_files, server, tls=tls), script)


@MODES
def test_an_expired_client_certificate_is_refused_by_the_client_and_by_the_server(
    mode: str, pki_files: PkiFiles, server: LoopbackServer, script: ScriptedHandler, tmp_path: Path
) -> None:
    old = pki_files.pki.issue_client(
        "Cabinet Test AUTH_CLI", not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)
    )
    cert, key = old.write_pem(tmp_path, "old")
    tls = TlsCredentials(cert_file=cert, key_file=key, ca_bundle=pki_files.ca_bundle)
    with pytest.raises(ConfigurationError, match="expired"):
        call(mode, settings_for(pki_files, server, tls=tls))
    # Had the client sent it anyway (its own check bypassed with a past clock), the server refuses it.
    context = build_ssl_context(tls, now=NOW - dt.timedelta(days=10))
    refused(mode, settings_for(pki_files, server), script, verify=context)


@MODES
def test_an_expired_server_certificate_is_refused(
    mode: str, pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path
) -> None:
    expired = pki_files.pki.issue_server(not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1))
    with serve(pki_files, script, tmp_path, expired) as running:
        error = refused(mode, settings_for(pki_files, running), script)
    assert "expired" in str(error).lower() or "CERTIFICATE_VERIFY_FAILED" in str(error)


@MODES
def test_a_server_certificate_for_another_host_is_refused(
    mode: str, pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path
) -> None:
    elsewhere = pki_files.pki.issue_server(("dmp.example.invalid",))
    with serve(pki_files, script, tmp_path, elsewhere) as running:
        refused(mode, settings_for(pki_files, running), script)


@MODES
def test_a_client_certificate_presented_as_a_server_certificate_is_refused(
    mode: str, pki_files: PkiFiles, script: ScriptedHandler, tmp_path: Path
) -> None:
    # Issued by the trusted CA for the right address, but for clientAuth only (no serverAuth).
    not_a_server = pki_files.pki._issue(
        pki_files.server.certificate.subject,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        sans=list(pki_files.server.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value),
        not_before=None,
        not_after=None,
    )
    with serve(pki_files, script, tmp_path, not_a_server) as running:
        refused(mode, settings_for(pki_files, running), script)
