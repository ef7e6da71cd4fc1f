"""The async clients' network backend (non-blocking TLS sockets on the event loop) against real TLS servers.

Each wait must end by its timeout, a cancelled wait must leave nothing registered on the loop,
verification stays the caller's context's, and many calls share one loop.
"""

from __future__ import annotations

import asyncio
import http.server
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from dmp_connector._loopnet import YIELD_EVERY, LoopBackend, LoopStream
from dmp_connector._looppool import loop_transport
from dmp_connector._tls import build_ssl_context
from dmp_connector._transport import AsyncClient
from dmp_connector.config import Environment, TlsCredentials
from dmp_connector.sandbox import TestPki
from dmp_connector.sandbox._http import LoopbackServer, ScriptedHandler, server_ssl_context
from dmp_connector.sandbox.echo import EchoOperation, echo_service
from dmp_connector.soap.mtom import Attachment

from .conftest import PkiFiles, make_settings
from .hostile_server import HostileServer, Peer, Received, hostile

REQUEST = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"


def _stall(peer: Peer, request: Received) -> None:
    peer.stall()


def _answer(peer: Peer, request: Received) -> None:
    peer.respond(404, b"nothing here")


def _answer_and_close(peer: Peer, request: Received) -> None:
    peer.respond(404, b"nothing here")
    peer.sock.close()


def _client_context(pki_files: PkiFiles) -> ssl.SSLContext:
    return build_ssl_context(
        TlsCredentials(cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=pki_files.ca_bundle)
    )


async def _connect(
    server: HostileServer,
    context: ssl.SSLContext,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (handed to httpcore's API)
) -> httpcore.AsyncNetworkStream:
    port = int(server.url.rsplit(":", 1)[1])
    plain = await LoopBackend().connect_tcp("127.0.0.1", port, timeout=timeout)
    return await plain.start_tls(context, server_hostname="127.0.0.1", timeout=timeout)


def _fd(stream: httpcore.AsyncNetworkStream) -> int:
    sock = stream.get_extra_info("socket")
    assert isinstance(sock, ssl.SSLSocket)
    return sock.fileno()


def _nothing_registered(fd: int) -> bool:
    """No reader or writer callback left on the running loop for ``fd`` (remove_* says whether it removed one)."""
    loop = asyncio.get_running_loop()
    return not loop.remove_reader(fd) and not loop.remove_writer(fd)


def test_the_async_client_we_create_talks_tls_on_non_blocking_sockets_of_the_loop(
    pki_files: PkiFiles, tmp_path: Path
) -> None:
    with hostile(pki_files, tmp_path, _answer) as server:

        async def run() -> Any:
            async with AsyncClient(make_settings(pki_files, environment=Environment.sandbox(server.url))) as client:
                response = await client._http.get(server.url + "/x")
                return response.status_code, response.extensions["network_stream"].get_extra_info("socket")

        status, sock = asyncio.run(run())
    assert status == 404
    # anyio's TLS stream would give the plain socket, TLS being done in Python over a memory BIO.
    assert isinstance(sock, ssl.SSLSocket)
    assert sock.gettimeout() == 0.0


def test_a_read_ends_by_its_timeout_and_leaves_no_callback(pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, _stall) as server:

        async def run() -> tuple[float, bool]:
            stream = await _connect(server, _client_context(pki_files))
            await stream.write(REQUEST, timeout=5)
            started = time.monotonic()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(65536, timeout=0.3)
            took = time.monotonic() - started
            clean = _nothing_registered(_fd(stream))
            await stream.aclose()
            return took, clean

        took, clean = asyncio.run(run())
    assert 0.25 <= took < 2.0
    assert clean


def test_a_cancelled_read_stops_at_once_and_leaves_no_callback(pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, _stall) as server:

        async def run() -> tuple[float, bool]:
            stream = await _connect(server, _client_context(pki_files))
            await stream.write(REQUEST, timeout=5)
            reading = asyncio.create_task(stream.read(65536, timeout=30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            took = time.monotonic() - started
            clean = _nothing_registered(_fd(stream))
            await stream.aclose()
            return took, clean

        took, clean = asyncio.run(run())
    assert took < 0.5
    assert clean


def test_a_write_the_server_does_not_read_ends_by_its_timeout(pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, _stall) as server:

        async def run() -> tuple[float, bool]:
            stream = await _connect(server, _client_context(pki_files))
            await stream.write(REQUEST, timeout=5)  # read by the server, which then stops reading
            started = time.monotonic()
            with pytest.raises(httpcore.WriteTimeout):
                await stream.write(b"x" * (64 << 20), timeout=0.5)  # far more than the socket buffers hold
            took = time.monotonic() - started
            clean = _nothing_registered(_fd(stream))
            await stream.aclose()
            return took, clean

        took, clean = asyncio.run(run())
    assert took < 3.0
    assert clean


def test_a_handshake_the_server_never_answers_ends_by_its_timeout(pki_files: PkiFiles, tmp_path: Path) -> None:
    with hostile(pki_files, tmp_path, _stall, handshake=False) as server:

        async def run() -> float:
            started = time.monotonic()
            with pytest.raises(httpcore.ConnectTimeout):
                await _connect(server, _client_context(pki_files), timeout=0.3)
            return time.monotonic() - started

        took = asyncio.run(run())
    assert took < 2.0


def test_a_server_certificate_from_another_ca_is_refused(pki_files: PkiFiles, tmp_path: Path) -> None:
    other = TestPki.create()
    bundle = tmp_path / "other-ca.pem"
    bundle.write_bytes(other.ca_pem)
    context = build_ssl_context(
        TlsCredentials(cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=bundle)
    )
    with hostile(pki_files, tmp_path, _answer) as server:

        async def run() -> BaseException:
            with pytest.raises(httpcore.ConnectError) as caught:
                await _connect(server, context)
            return caught.value

        error = asyncio.run(run())
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


def test_a_server_certificate_for_another_name_is_refused(pki_files: PkiFiles, tmp_path: Path) -> None:
    """The host name is checked too: the context's check_hostname is honoured on the non-blocking socket."""
    with hostile(pki_files, tmp_path, _answer) as server:

        async def run() -> BaseException:
            port = int(server.url.rsplit(":", 1)[1])
            plain = await LoopBackend().connect_tcp("127.0.0.1", port, timeout=5)
            with pytest.raises(httpcore.ConnectError) as caught:
                await plain.start_tls(_client_context(pki_files), server_hostname="other.example", timeout=5)
            return caught.value

        error = asyncio.run(run())
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert "other.example" in str(error.__cause__)


def test_an_idle_connection_reads_as_readable_once_the_server_has_closed_it(
    pki_files: PkiFiles, tmp_path: Path
) -> None:
    """The pool asks ``is_readable`` before reusing a connection: an open one must say no, a closed one yes."""

    async def exchange(server: HostileServer) -> tuple[bytes, bool]:
        stream = await _connect(server, _client_context(pki_files))
        await stream.write(REQUEST, timeout=5)
        answer = b""
        while not answer.endswith(b"nothing here"):  # the whole answer (and the TLS 1.3 tickets before it)
            chunk = await stream.read(65536, timeout=5)
            if not chunk:
                break
            answer += chunk
        await asyncio.sleep(0.2)  # time for the server to close, when it does
        readable = bool(stream.get_extra_info("is_readable"))
        await stream.aclose()
        return answer, readable

    with hostile(pki_files, tmp_path, _answer) as server:  # answers and keeps the connection open
        open_answer, open_readable = asyncio.run(exchange(server))
    with hostile(pki_files, tmp_path, _answer_and_close) as server:
        closed_answer, closed_readable = asyncio.run(exchange(server))
    assert open_answer.startswith(b"HTTP/1.1 404") and closed_answer.startswith(b"HTTP/1.1 404")
    assert not open_readable
    assert closed_readable


def test_many_calls_share_one_loop_and_one_client(pki_files: PkiFiles, tmp_path: Path) -> None:
    ctx = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path)
    data = b"%PDF-" + bytes(range(256)) * 1024
    document = Attachment.from_bytes(data, content_type="application/pdf")
    with LoopbackServer(ScriptedHandler(echo_service), ssl_context=ctx) as server:
        settings = make_settings(pki_files, environment=Environment.sandbox(server.url))

        async def run() -> list[Any]:
            async with AsyncClient(settings) as client:
                return await asyncio.gather(*(client.send(EchoOperation(f"call {n}", [document])) for n in range(24)))

        results = asyncio.run(run())
    assert [r.text for r in results] == [f"call {n}" for n in range(24)]
    assert all(r.documents[0].read() == data for r in results)


def test_a_loop_that_cannot_wait_on_sockets_gets_the_anyio_backend(
    pki_files: PkiFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows' default proactor loop has no add_reader: the client must still work there, through
    # httpcore's anyio backend. Here the running loop is made to look like one.
    monkeypatch.setattr(asyncio, "ProactorEventLoop", asyncio.SelectorEventLoop, raising=False)
    with hostile(pki_files, tmp_path, _answer) as server:

        async def run() -> Any:
            async with AsyncClient(make_settings(pki_files, environment=Environment.sandbox(server.url))) as client:
                response = await client._http.get(server.url + "/x")
                return response.status_code, response.extensions["network_stream"]

        status, stream = asyncio.run(run())
    assert status == 404
    assert not isinstance(stream, LoopStream)
    assert not isinstance(stream.get_extra_info("socket"), ssl.SSLSocket)  # TLS over anyio's memory BIO


class _Flood:
    """A socket that always has data: every recv and send completes at once, as on a fast network."""

    def recv(self, size: int) -> bytes:
        return b"x" * size

    def send(self, data: memoryview) -> int:
        return len(data)

    def fileno(self) -> int:
        return -1


def test_a_transfer_that_never_waits_still_hands_the_loop_back() -> None:
    # Without it, a large answer already buffered (or a fast network) keeps the task from yielding:
    # other tasks stall and the attempt's deadline (asyncio.timeout) cannot fire until it ends.
    stream = LoopStream(_Flood())  # type: ignore[arg-type]
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def run() -> tuple[int, int]:
        ticker = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        start = turns
        for _ in range(8 * YIELD_EVERY // 65536):
            await stream.read(65536)
        after_reads = turns - start
        for _ in range(8 * YIELD_EVERY // 65536):
            await stream.write(b"y" * 65536)
        after_writes = turns - start - after_reads
        ticker.cancel()
        return after_reads, after_writes

    reads, writes = asyncio.run(run())
    assert reads >= 7 and writes >= 7  # one turn per YIELD_EVERY bytes moved


def test_a_deadline_ends_a_transfer_that_never_waits() -> None:
    stream = LoopStream(_Flood())  # type: ignore[arg-type]

    async def endless() -> None:
        while True:
            await stream.read(65536)

    async def run() -> None:
        async with asyncio.timeout(0.2):
            await endless()

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(run())
    assert time.monotonic() - started < 2.0


@contextmanager
def _port_that_never_accepts() -> Iterator[int]:
    """A loopback port whose accept queue is full: a further connect gets no answer (its SYN is dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    waiting: list[socket.socket] = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            waiting.append(filler)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        else:  # pragma: no cover - a kernel that accepts beyond the queue
            pytest.skip("this kernel answers connections beyond a full accept queue")
        finally:
            probe.close()
        yield port
    finally:
        for filler in waiting:
            filler.close()
        listener.close()


def test_an_address_that_never_answers_leaves_time_for_the_next(pki_files: PkiFiles, tmp_path: Path) -> None:
    # A dead first record (an address that never answers) must not use the whole connect timeout:
    # the next address gets its share and the call connects.
    with hostile(pki_files, tmp_path, _answer) as server, _port_that_never_accepts() as dead:
        port = int(server.url.rsplit(":", 1)[1])

        async def run() -> float:
            loop = asyncio.get_running_loop()

            async def two_records(*args: Any, **kwargs: Any) -> list[Any]:
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", dead)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                ]

            loop.getaddrinfo = two_records  # type: ignore[method-assign]
            started = time.monotonic()
            stream = await LoopBackend().connect_tcp("dmp.example", port, timeout=2.0)
            await stream.aclose()
            return time.monotonic() - started

        elapsed = asyncio.run(run())
    assert elapsed < 1.8


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_idle_connection_check_works_without_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows has no select.poll; a selector loop there still uses this backend, and httpcore asks
    # whether a kept-alive connection is readable before it reuses it.
    monkeypatch.delattr(select, "poll")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/"
    try:

        async def run() -> list[int]:
            transport = loop_transport(ssl.create_default_context(), httpx.Limits(max_keepalive_connections=1))
            async with httpx.AsyncClient(transport=transport) as client:
                return [(await client.get(url)).status_code for _ in range(3)]

        assert asyncio.run(run()) == [200, 200, 200]
    finally:
        server.shutdown()
        server.server_close()
