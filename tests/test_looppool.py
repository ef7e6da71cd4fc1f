"""The async clients' HTTP/1.1 pool (``dmp_connector._looppool``) against a real keep-alive TLS server.

What httpcore's pool guaranteed must hold here: connections reused only after a clean exchange,
never one the server closed or one whose answer was cut short, never more than ``max_connections``
open, a request that cannot get one fails by its pool timeout, every failure and cancellation
gives its connection back (the next request still gets one), and errors are httpx's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest

from dmp_connector._looppool import LoopPoolTransport, loop_transport
from dmp_connector._tls import build_ssl_context
from dmp_connector.config import TlsCredentials
from dmp_connector.sandbox._http import server_ssl_context

from .conftest import PkiFiles


@dataclass
class Exchange:
    """One request as the server read it, and where it came: connection number, request number on it."""

    connection: int
    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Script = Callable[[Exchange, ssl.SSLSocket], bool]
"""Answers one request on the socket; returns whether to keep the connection open for the next."""


def _answer(sock: ssl.SSLSocket, status: int, body: bytes, *extra: str) -> None:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def _echo(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
    _answer(sock, 200, b"%d/%d:" % (exchange.connection, exchange.index) + exchange.body)
    return True


@dataclass
class KeepAliveServer:
    """Thread per connection, many requests per connection, as a script says; counts what it saw."""

    context: ssl.SSLContext
    script: Script
    exchanges: list[Exchange] = field(default_factory=list)
    connections: int = 0
    live: int = 0
    most_live: int = 0
    closed_by_peer: int = 0
    errors: list[BaseException] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _socks: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.1)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._socks.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            thread.start()
            with self._lock:
                self._threads.append(thread)

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        with self._lock:
            self.live += 1
            self.most_live = max(self.most_live, self.live)
        try:
            buffer = b""
            index = 0
            while not self.stopping.is_set():
                request, buffer = _read(tls, buffer)
                if request is None:
                    with self._lock:
                        self.closed_by_peer += 1
                    return
                index += 1
                method, path, headers, body = request
                exchange = Exchange(number, index, method, path, headers, body)
                with self._lock:
                    self.exchanges.append(exchange)
                if not self.script(exchange, tls):
                    return
        except OSError:
            return
        except BaseException as exc:  # a broken script fails the test
            self.errors.append(exc)
        finally:
            with self._lock:
                self.live -= 1
            with suppress(OSError):
                tls.close()

    def close(self) -> None:
        self.stopping.set()
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        if self.errors:
            raise self.errors[0]


def _read(sock: ssl.SSLSocket, buffer: bytes) -> tuple[tuple[str, str, dict[str, str], bytes] | None, bytes]:
    """One request (Content-Length or chunked body) from ``buffer`` and the socket; None at the end."""

    def more() -> bytes:
        data = sock.recv(65536)
        if not data:
            raise EOFError
        return data

    try:
        while b"\r\n\r\n" not in buffer:
            buffer += more()
        raw, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in buffer:
                    buffer += more()
                size_line, _, buffer = buffer.partition(b"\r\n")
                size = int(size_line, 16)
                while len(buffer) < size + 2:
                    buffer += more()
                body, buffer = body + buffer[:size], buffer[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                buffer += more()
            body, buffer = buffer[:length], buffer[length:]
    except EOFError:
        return None, b""
    return (method, path, headers, body), buffer


@contextmanager
def keep_alive(pki_files: PkiFiles, tmp_path: Path, script: Script = _echo) -> Iterator[KeepAliveServer]:
    context = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path)
    server = KeepAliveServer(context, script)
    try:
        yield server
    finally:
        server.close()


def _client(pki_files: PkiFiles, **limits: float | int | None) -> httpx.AsyncClient:
    context = build_ssl_context(
        TlsCredentials(cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=pki_files.ca_bundle)
    )
    transport = loop_transport(context, httpx.Limits(**limits))  # type: ignore[arg-type]
    assert isinstance(transport, LoopPoolTransport)
    return httpx.AsyncClient(transport=transport, timeout=5)


def test_sequential_requests_share_one_connection_and_bodies_arrive_whole(pki_files: PkiFiles, tmp_path: Path) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: many TLS records and socket buffers

    async def chunked() -> AsyncIterator[bytes]:
        for part in (b"alpha-", b"", b"beta-" * 1000, b"gamma"):
            yield part

    with keep_alive(pki_files, tmp_path) as server:

        async def run() -> list[bytes]:
            async with _client(pki_files) as client:
                answers = [(await client.post(server.url + "/a", content=b"one")).content]
                answers.append((await client.post(server.url + "/b", content=big)).content)
                answers.append((await client.post(server.url + "/c", content=chunked())).content)
                answers.append((await client.get(server.url + "/d")).content)
                return answers

        answers = asyncio.run(run())
    assert answers == [b"1/1:one", b"1/2:" + big, b"1/3:alpha-" + b"beta-" * 1000 + b"gamma", b"1/4:"]
    assert server.connections == 1
    assert [e.path for e in server.exchanges] == ["/a", "/b", "/c", "/d"]
    assert server.exchanges[2].headers.get("transfer-encoding") == "chunked"


def test_a_connection_the_server_closed_while_idle_is_never_reused(pki_files: PkiFiles, tmp_path: Path) -> None:
    def answer_then_hang_up(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        _answer(sock, 200, b"ok")  # no "Connection: close": the client learns it from the socket alone
        return False

    with keep_alive(pki_files, tmp_path, answer_then_hang_up) as server:

        async def run() -> list[int]:
            async with _client(pki_files) as client:
                statuses = []
                for _ in range(3):
                    statuses.append((await client.get(server.url + "/")).status_code)
                    await asyncio.sleep(0.2)  # the close reaches the client's socket
                return statuses

        statuses = asyncio.run(run())
    assert statuses == [200, 200, 200]
    assert server.connections == 3


def test_a_connection_the_server_wrote_to_while_idle_is_never_reused(pki_files: PkiFiles, tmp_path: Path) -> None:
    def answer_then_babble(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        _answer(sock, 200, b"ok")
        sock.sendall(b"HTTP/1.1 200 X\r\nContent-Length: 5\r\n\r\nstale")  # an answer nobody asked for
        return True

    with keep_alive(pki_files, tmp_path, answer_then_babble) as server:

        async def run() -> list[bytes]:
            async with _client(pki_files) as client:
                first = (await client.get(server.url + "/")).content
                await asyncio.sleep(0.2)
                second = (await client.get(server.url + "/")).content
                return [first, second]

        assert asyncio.run(run()) == [b"ok", b"ok"]
    assert server.connections == 2


def test_an_answer_not_read_to_its_end_closes_its_connection(pki_files: PkiFiles, tmp_path: Path) -> None:
    def large(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        _answer(sock, 200, b"x" * 3_000_000)
        return True

    with keep_alive(pki_files, tmp_path, large) as server:

        async def run() -> int:
            async with _client(pki_files) as client:
                async with client.stream("GET", server.url + "/") as response:
                    async for _ in response.aiter_raw():
                        break  # the caller stops reading (an oversized answer, refused)
                async with client.stream("GET", server.url + "/") as response:
                    return len(await response.aread())

        assert asyncio.run(run()) == 3_000_000
    assert server.connections == 2


def test_never_more_connections_than_the_limit_and_all_requests_served(pki_files: PkiFiles, tmp_path: Path) -> None:
    def slow(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        threading.Event().wait(0.1)
        return _echo(exchange, sock)

    with keep_alive(pki_files, tmp_path, slow) as server:

        async def run() -> list[int]:
            async with _client(pki_files, max_connections=2) as client:
                answers = await asyncio.gather(*(client.get(server.url + f"/{n}") for n in range(8)))
                return [a.status_code for a in answers]

        assert asyncio.run(run()) == [200] * 8
    assert server.most_live <= 2
    assert server.connections == 2
    assert len(server.exchanges) == 8


def test_a_request_that_cannot_get_a_connection_fails_by_the_pool_timeout(pki_files: PkiFiles, tmp_path: Path) -> None:
    release = threading.Event()

    def hold(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        if exchange.path == "/hold":
            release.wait(10)
        return _echo(exchange, sock)

    with keep_alive(pki_files, tmp_path, hold) as server:

        async def run() -> tuple[type[BaseException] | None, int]:
            async with _client(pki_files, max_connections=1) as client:
                holding = asyncio.create_task(client.get(server.url + "/hold"))
                await asyncio.sleep(0.2)
                error: type[BaseException] | None = None
                try:
                    await client.get(server.url + "/next", timeout=httpx.Timeout(5, pool=0.3))
                except httpx.PoolTimeout as exc:
                    error = type(exc)
                release.set()
                await holding
                # the connection came back: the next request gets it
                return error, (await client.get(server.url + "/after")).status_code

        error, status = asyncio.run(run())
    assert error is httpx.PoolTimeout
    assert status == 200
    assert server.connections == 1


def test_a_failed_or_cancelled_exchange_gives_its_connection_back(pki_files: PkiFiles, tmp_path: Path) -> None:
    def misbehave(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        if exchange.path == "/stall":
            threading.Event().wait(3)
            return False
        if exchange.path == "/cut":
            sock.sendall(b"HTTP/1.1 200 X\r\nContent-Length: 100\r\n\r\nonly part")
            return False
        return _echo(exchange, sock)

    with keep_alive(pki_files, tmp_path, misbehave) as server:

        async def run() -> list[str]:
            seen = []
            async with _client(pki_files, max_connections=1) as client:
                try:
                    await client.get(server.url + "/stall", timeout=httpx.Timeout(5, read=0.3))
                except httpx.ReadTimeout:
                    seen.append("read timeout")
                try:
                    await client.get(server.url + "/cut")
                except httpx.RemoteProtocolError:
                    seen.append("cut short")
                task = asyncio.create_task(client.get(server.url + "/stall"))
                await asyncio.sleep(0.2)
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
                seen.append("cancelled")
                answer = await client.get(server.url + "/fine", timeout=httpx.Timeout(5, pool=1))
                seen.append(answer.text)
            return seen

        seen = asyncio.run(run())
    assert seen[:3] == ["read timeout", "cut short", "cancelled"]
    assert seen[3].endswith("/1:")  # a fresh connection, its first request
    assert server.connections == 4


def test_a_server_that_closes_without_answering_is_a_protocol_error(pki_files: PkiFiles, tmp_path: Path) -> None:
    def hang_up(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        return False

    with keep_alive(pki_files, tmp_path, hang_up) as server:

        async def run() -> type[BaseException]:
            async with _client(pki_files) as client:
                with pytest.raises(httpx.TransportError) as caught:
                    await client.get(server.url + "/")
                return caught.type

        error = asyncio.run(run())
    assert issubclass(error, httpx.RemoteProtocolError | httpx.ReadError)


def test_an_interim_answer_is_skipped_for_the_final_one(pki_files: PkiFiles, tmp_path: Path) -> None:
    def interim(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return _echo(exchange, sock)

    with keep_alive(pki_files, tmp_path, interim) as server:

        async def run() -> tuple[int, bytes]:
            async with _client(pki_files) as client:
                response = await client.post(server.url + "/", content=b"payload")
                return response.status_code, response.content

        assert asyncio.run(run()) == (200, b"1/1:payload")


def test_idle_connections_to_another_origin_make_room_and_closing_ends_them(
    pki_files: PkiFiles, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with keep_alive(pki_files, tmp_path / "a") as one, keep_alive(pki_files, tmp_path / "b") as two:

        async def run() -> list[int]:
            async with _client(pki_files, max_connections=1) as client:
                statuses = [(await client.get(one.url + "/")).status_code]
                statuses.append((await client.get(two.url + "/")).status_code)  # one's idle connection goes
                await asyncio.sleep(0.2)
                statuses.append(one.live)
            await asyncio.sleep(0.2)
            statuses.append(two.live)  # closing the client closed two's
            return statuses

        assert asyncio.run(run()) == [200, 200, 0, 0]
    assert one.closed_by_peer == 1
    assert two.closed_by_peer == 1


def test_keep_alive_expiry_drops_an_old_idle_connection(pki_files: PkiFiles, tmp_path: Path) -> None:
    with keep_alive(pki_files, tmp_path) as server:

        async def run() -> None:
            async with _client(pki_files, keepalive_expiry=0.2) as client:
                await client.get(server.url + "/")
                await asyncio.sleep(0.4)
                await client.get(server.url + "/")

        asyncio.run(run())
    assert server.connections == 2


def test_a_waiter_cancelled_as_it_is_woken_passes_its_turn_on(pki_files: PkiFiles, tmp_path: Path) -> None:
    release = threading.Event()

    def hold(exchange: Exchange, sock: ssl.SSLSocket) -> bool:
        if exchange.path == "/hold":
            release.wait(10)
        return _echo(exchange, sock)

    with keep_alive(pki_files, tmp_path, hold) as server:

        async def run() -> tuple[bool, int]:
            async with _client(pki_files, max_connections=1) as client:
                transport = client._transport
                assert isinstance(transport, LoopPoolTransport)
                holding = asyncio.create_task(client.get(server.url + "/hold"))
                await asyncio.sleep(0.2)
                first = asyncio.create_task(client.get(server.url + "/first"))
                await asyncio.sleep(0.05)
                second = asyncio.create_task(client.get(server.url + "/second", timeout=httpx.Timeout(5, pool=2)))
                await asyncio.sleep(0.05)
                wake = transport._wake_one

                def wake_then_cancel_the_woken() -> None:
                    # The connection comes back and wakes the first waiter, which is cancelled in the same
                    # turn of the loop (its caller's deadline): the second must get the connection.
                    wake()
                    first.cancel()

                transport._wake_one = wake_then_cancel_the_woken  # type: ignore[method-assign]
                release.set()
                await holding
                with suppress(asyncio.CancelledError):
                    await first
                return first.cancelled(), (await second).status_code

        assert asyncio.run(run()) == (True, 200)


def test_a_test_that_mocks_httpx_or_httpcore_still_sees_the_async_calls(
    pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest-httpx and no-network guards patch httpx's transport, respx httpcore's pool: with the pool in
    # place, a request must still reach the mock, never the network (nothing listens on port 9).
    async def mocked_httpx(self: object, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="mocked")

    async def mocked_httpcore(self: object, request: httpcore.Request) -> httpcore.Response:
        return httpcore.Response(200, content=b"mocked")

    async def run() -> str:
        async with _client(pki_files) as client:
            return (await client.get("http://127.0.0.1:9/x")).text

    for target, mocked in ((httpx.AsyncHTTPTransport, mocked_httpx), (httpcore.AsyncConnectionPool, mocked_httpcore)):
        with monkeypatch.context() as patch:
            patch.setattr(target, "handle_async_request", mocked)
            assert asyncio.run(run()) == "mocked"
    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())  # unpatched: the pool dials, and nothing answers
