"""client.with_options(timeout=…, retry=…): another deadline or retry policy for one call, the same pool."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dmp_connector import (
    AsyncInsiClient,
    Environment,
    IdentityTraits,
    InsiClient,
    RetryPolicy,
    Settings,
    SoftwareIdentity,
)
from dmp_connector.audit import MemorySink
from dmp_connector.config import Timeouts
from dmp_connector.errors import RequestTimeout, TransportError
from dmp_connector.sandbox import (
    EchoOperation,
    HttpRequest,
    HttpResponse,
    as_async_transport,
    as_transport,
    echo_service,
    in_process_insi,
)
from dmp_connector.sandbox.local import sandbox_practice
from dmp_connector.transport import AsyncClient, Client

SETTINGS = Settings(
    software=SoftwareIdentity(name="T", version="1", editor="E"),
    environment=Environment.sandbox(),
    retry=RetryPolicy(max_attempts=3, initial_delay=0.0, jitter=0.0),
)


def _flaky() -> tuple[list[int], Callable[[HttpRequest], HttpResponse]]:
    seen: list[int] = []

    def handler(request: HttpRequest) -> HttpResponse:
        seen.append(1)
        return HttpResponse(503, {"Retry-After": "0"}, b"busy")

    return seen, handler


def test_retry_for_one_call_and_the_client_keeps_its_own() -> None:
    seen, handler = _flaky()
    with httpx.Client(transport=as_transport(handler)) as http, Client(SETTINGS, http_client=http) as client:
        once = client.with_options(retry=RetryPolicy(max_attempts=1))
        with pytest.raises(TransportError):
            once.send(EchoOperation("x"))
        assert len(seen) == 1
        with pytest.raises(TransportError):
            client.send(EchoOperation("x"))
        assert len(seen) == 1 + 3
        assert once._http is client._http  # the same connection pool


def test_timeout_for_one_call() -> None:
    def slow(request: HttpRequest) -> HttpResponse:
        time.sleep(0.3)
        return echo_service(request)

    with httpx.Client(transport=as_transport(slow)) as http, Client(SETTINGS, http_client=http) as client:
        fast = client.with_options(timeout=0.1)
        assert fast.settings.timeouts.call == 0.1 and fast.settings.timeouts.attempt == 0.1
        assert client.settings.timeouts == SETTINGS.timeouts
        with pytest.raises(RequestTimeout):
            fast.send(EchoOperation("x"))
        assert client.send(EchoOperation("x")).text == "x"  # the client's own deadline is untouched


def test_closing_the_copy_closes_neither_the_pool_nor_the_sinks(tmp_path: Path) -> None:
    settings = SETTINGS.model_copy(update={"audit": SETTINGS.audit.model_copy(update={"jsonl_path": tmp_path / "a"})})
    with httpx.Client(transport=as_transport(echo_service)) as http:
        client = Client(settings)
        client._http.close()  # its own pool, replaced by one whose closing the test can see
        client._http = http
        client._owns_http = True
        copy = client.with_options(timeout=Timeouts(call=5.0, attempt=2.0))
        assert copy.settings.timeouts.call == 5.0
        copy.close()
        assert not http.is_closed
        assert client.send(EchoOperation("x")).text == "x"
        assert (tmp_path / "a").read_text().count("\n") == 1  # the journal still written after the copy closed
        client.close()
        assert http.is_closed


def test_service_clients_too() -> None:
    sink = MemorySink()
    with in_process_insi(sandbox_practice(), audit=[sink]) as insi:
        quick = insi.with_options(timeout=7.0, retry=RetryPolicy(max_attempts=1))
        assert isinstance(quick, InsiClient) and quick.settings.timeouts.call == 7.0
        assert insi.settings.timeouts.call == 300.0
        result = quick.search(sandbox_traits())
        assert result.found and len(sink.events) == 1  # the same audit sinks


def sandbox_traits() -> IdentityTraits:
    return IdentityTraits.build(birth_name="ADRUN", birth_first_names="ZOE", sex="F", birth_date="1975-12-31")


@pytest.mark.asyncio
async def test_async_twins() -> None:
    seen, handler = _flaky()
    async with httpx.AsyncClient(transport=as_async_transport(handler)) as http:
        async with AsyncClient(SETTINGS, http_client=http) as client:
            once = client.with_options(retry=RetryPolicy(max_attempts=1), timeout=3.0)
            with pytest.raises(TransportError):
                await once.send(EchoOperation("x"))
            assert len(seen) == 1 and once._http is client._http
        async with AsyncInsiClient(sandbox_practice()) as insi:
            assert insi.with_options(timeout=2.0).settings.timeouts.call == 2.0
