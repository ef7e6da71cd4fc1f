"""Every call has an end: a hostile server over mutual TLS that trickles, stalls or never finishes the handshake.

The server (``tests/hostile_server.py``) is raw sockets, not the sandbox. Each case runs the real
clients, sync and async, with short deadlines (``timeouts.attempt`` ~1 s) and a ``timeouts.read`` of
a minute: before the attempt deadline, a server sending one byte a second held a deposit, a query, a
retrieve or an INSi search indefinitely, since each byte restarted the read timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dmp_connector._transport import deadline
from dmp_connector.config import DirectorySettings, Environment, Settings
from dmp_connector.dmp.client import AsyncDmpClient, DmpClient
from dmp_connector.errors import HttpStatusError, RequestTimeout
from dmp_connector.mssante.directory import AsyncDirectoryClient, DirectoryClient
from dmp_connector.retries import RetryPolicy
from tests.conftest import PkiFiles, make_settings
from tests.dmp.client_support import cda_document
from tests.dmp.test_sandbox_integration import ADRUN as DMP_ADRUN
from tests.dmp.test_sandbox_integration import Credentials
from tests.dmp.test_sandbox_rules import settings as dmp_settings
from tests.hostile_server import Elapsed, Peer, Received, head, hostile
from tests.insi import fixtures
from tests.insi.helpers import ADRUN as INSI_ADRUN
from tests.insi.helpers import ECETINSI, SOFTWARE
from tests.insi.helpers import call as insi_call

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
NO_RETRY = RetryPolicy.none()
SOAP = "application/soap+xml; charset=utf-8"
SLACK = 0.6
"""What a deadline may be overrun by on a loaded 2-core CI machine (thread wake-ups, TLS close)."""

ENVELOPE = (
    b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body>"
    + b"<x:Ok xmlns:x='urn:x'/>" * 20
    + b"</env:Body></env:Envelope>"
)


def trickle_body(peer: Peer, request: Received) -> None:
    """Headers at once, then the body one byte a second: each byte would restart a read timeout."""
    peer.send(head(200, len(ENVELOPE), content_type=SOAP))
    peer.trickle(ENVELOPE)


def trickle_headers(peer: Peer, request: Received) -> None:
    """The status line and headers themselves, one byte a second."""
    peer.trickle(head(200, len(ENVELOPE), content_type=SOAP) + ENVELOPE)


def stall(peer: Peer, request: Received) -> None:
    peer.stall()


def insi_settings(pki_files: PkiFiles, url: str, **timeouts: float) -> Settings:
    return make_settings(
        pki_files,
        software=SOFTWARE,
        environment=Environment.sandbox(url),
        retry=NO_RETRY,
        timeouts={"read": 60.0, **timeouts},
    )


def dmp_config(credentials: Credentials, url: str, **timeouts: float) -> Settings:
    return dmp_settings(
        environment=Environment.sandbox(url), tls=credentials.tls, retry=NO_RETRY, timeouts={"read": 60.0, **timeouts}
    )


def dmp_call(mode: str, config: Settings, credentials: Credentials, method: str, *args: Any, **kwargs: Any) -> Any:
    if mode == "sync":
        with DmpClient(config, signer=credentials.signer) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run() -> Any:
        async with AsyncDmpClient(config, signer=credentials.signer) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


DMP_CALLS: dict[str, Callable[[], tuple[str, tuple[Any, ...], dict[str, Any]]]] = {
    "deposit": lambda: ("deposit", (cda_document("Délai", patient=DMP_ADRUN),), {"patient": DMP_ADRUN}),
    "query": lambda: ("find_documents", (DMP_ADRUN,), {}),
    "retrieve": lambda: ("retrieve", (DMP_ADRUN, ("1.2.250.1.213.1.1.9", "1.2.3.4.5")), {}),
}


@MODES
@pytest.mark.parametrize("script", [trickle_body, trickle_headers, stall], ids=["body", "headers", "silent"])
def test_insi_search_against_a_trickling_server_ends_by_the_attempt_deadline(
    mode: str, script: Callable[[Peer, Received], None], pki_files: PkiFiles, tmp_path: Path
) -> None:
    with hostile(pki_files, tmp_path, script) as server:
        config = insi_settings(pki_files, server.url, attempt=1.0, call=5.0)
        with Elapsed() as elapsed, pytest.raises(RequestTimeout) as info:
            insi_call(mode, config, "search", INSI_ADRUN)
    assert 0.9 <= elapsed.seconds <= 1.0 + SLACK, elapsed.seconds
    assert "deadline" in info.value.message and "timeouts.attempt" in (info.value.hint or "")
    assert len(server.received) == 1


@MODES
@pytest.mark.parametrize("operation", sorted(DMP_CALLS))
def test_dmp_calls_against_a_server_sending_a_byte_a_second_end_by_the_deadline(
    mode: str, operation: str, pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    method, args, kwargs = DMP_CALLS[operation]()
    with hostile(pki_files, tmp_path, trickle_body) as server:
        config = dmp_config(credentials, server.url, attempt=1.0, call=5.0)
        with Elapsed() as elapsed, pytest.raises(RequestTimeout):
            dmp_call(mode, config, credentials, method, *args, **kwargs)
    assert elapsed.seconds <= 1.0 + SLACK + (0.5 if operation == "deposit" else 0.0), elapsed.seconds
    assert len(server.received) == 1


@MODES
def test_a_per_call_deadline_overrides_the_settings(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, trickle_body) as server:
        config = insi_settings(pki_files, server.url)  # defaults: attempt 120 s, call 300 s
        with Elapsed() as elapsed, pytest.raises(RequestTimeout), deadline(0.7):
            insi_call(mode, config, "search", INSI_ADRUN)
    assert elapsed.seconds <= 0.7 + SLACK, elapsed.seconds


@MODES
def test_a_nested_deadline_shortens_and_never_extends(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, trickle_body) as server:
        config = insi_settings(pki_files, server.url)
        with Elapsed() as elapsed, pytest.raises(RequestTimeout), deadline(0.7), deadline(100, attempt=100):
            insi_call(mode, config, "search", INSI_ADRUN)
    assert elapsed.seconds <= 0.7 + SLACK, elapsed.seconds


@MODES
def test_the_searches_of_one_insi_call_share_its_deadline(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    """02 (several people) every time, after 0.6 s: the refinement plan's three searches share one call deadline."""

    def ambiguous_after_a_while(peer: Peer, request: Received) -> None:
        if not peer.stopping.wait(0.6):
            peer.respond(200, fixtures.AMBIGUOUS, content_type=SOAP)

    with hostile(pki_files, tmp_path, ambiguous_after_a_while) as server:
        config = insi_settings(pki_files, server.url, attempt=1.0, call=1.0)
        with Elapsed() as elapsed, pytest.raises(RequestTimeout):
            insi_call(mode, config, "search", ECETINSI)  # three first names and a birth place: three searches
    assert elapsed.seconds <= 1.0 + SLACK, elapsed.seconds
    assert len(server.received) == 2


@MODES
def test_the_call_deadline_bounds_every_attempt_and_wait(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    """A 503 every time, a policy of 20 attempts: the call still ends by its deadline, the last error kept."""

    def busy(peer: Peer, request: Received) -> None:
        peer.stopping.wait(0.2)
        peer.respond(503, b"busy", content_type="text/plain")

    patient = RetryPolicy(max_attempts=20, initial_delay=0.1, max_delay=0.1, jitter=0.0, max_total_seconds=60)
    with hostile(pki_files, tmp_path, busy) as server:
        config = insi_settings(pki_files, server.url, attempt=1.0, call=1.2).model_copy(update={"retry": patient})
        with Elapsed() as elapsed, pytest.raises((HttpStatusError, RequestTimeout)):
            insi_call(mode, config, "search", INSI_ADRUN)
    assert elapsed.seconds <= 1.2 + SLACK, elapsed.seconds
    assert 2 <= len(server.received) < 20


@MODES
def test_a_handshake_that_never_finishes_is_a_connect_timeout(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, stall, handshake=False) as server:
        config = insi_settings(pki_files, server.url, connect=0.5, attempt=5.0)
        with Elapsed() as elapsed, pytest.raises(RequestTimeout) as info:
            insi_call(mode, config, "search", INSI_ADRUN)
    assert elapsed.seconds <= 0.5 + SLACK, elapsed.seconds
    assert "connect" in info.value.message and "timeouts.connect" in (info.value.hint or "")
    assert "timeouts.read" not in (info.value.hint or "")


def directory_search(mode: str, config: Settings) -> Any:
    if mode == "sync":
        with DirectoryClient(config) as directory:
            return directory.search_practitioners(family="SAUCIER")

    async def run() -> Any:
        async with AsyncDirectoryClient(config) as directory:
            return await directory.search_practitioners(family="SAUCIER")

    return asyncio.run(run())


@MODES
def test_a_directory_lookup_against_a_trickling_server_ends_by_the_deadline(
    mode: str, pki_files: PkiFiles, tmp_path: Path
) -> None:
    """The REST client (Annuaire Santé) has the same deadlines as the SOAP clients."""

    def trickle_json(peer: Peer, request: Received) -> None:
        body = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'
        peer.send(head(200, len(body), content_type="application/fhir+json"))
        peer.trickle(body)

    with hostile(pki_files, tmp_path, trickle_json, client_certificate=False) as server:
        config = make_settings(
            pki_files,
            environment=Environment.sandbox(server.url),
            directory=DirectorySettings(api_key="k" * 16, ca_bundle=pki_files.ca_bundle),
            retry=NO_RETRY,
            timeouts={"read": 60.0, "attempt": 1.0},
        )
        with Elapsed() as elapsed, pytest.raises(RequestTimeout):
            directory_search(mode, config)
    assert elapsed.seconds <= 1.0 + SLACK, elapsed.seconds
