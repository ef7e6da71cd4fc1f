"""The async HTTP clients' HTTP/1.1 connection pool: h11 on :class:`~dmp_connector._loopnet.LoopStream`.

httpcore's async pool guards its state with anyio locks, events and shielded cancel scopes; on
asyncio each of them looks up the current task (a Python function before 3.12) and a lock hands
the loop round once per acquisition. Per deposit that was about a fifth more Python calls than
the sync client's pool, which takes thread locks. The SDK's async clients talk HTTP/1.1 to a few
origins, one request per connection at a time, from one event loop: this pool does exactly that
with plain data structures (the loop runs one task at a time, so nothing between two ``await``
needs a lock) and h11, the HTTP/1.1 state machine httpcore itself uses, for the protocol.

Behaviour a caller sees is httpx's: connections are kept alive and reused (at most
``max_keepalive_connections`` idle, each for ``keepalive_expiry`` seconds), at most
``max_connections`` are open and a request waits for one at most the ``pool`` timeout
(:class:`httpx.PoolTimeout`), each read, write and connect ends by its timeout, errors are httpx's
(:class:`httpx.ReadError`, :class:`httpx.RemoteProtocolError` …). An idle connection the server
closed (or wrote to) is dropped, never reused. A connection is reused only when its exchange ended
cleanly; one whose answer was not read to the end, or that failed in any way, is closed. Where the
loop cannot wait on sockets (Windows' proactor loop, trio) requests go through httpcore's pool, and
so they do while a test mocks httpx's transport or httpcore's pool (pytest-httpx, respx), so that the
mock sees them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpcore
import httpx

from dmp_connector._loopnet import LoopBackend, LoopStream, _waitable_loop

__all__ = ["LoopPoolTransport", "loop_transport"]

_READ_SIZE = 64 * 1024


def _replaced(method: object, qualname: str, package: str) -> bool:
    return getattr(method, "__qualname__", None) != qualname or not str(getattr(method, "__module__", "")).startswith(
        package
    )


def _mocked() -> bool:
    """Whether a test replaced the method httpx's own async transport or httpcore's pool sends with (respx's
    default mocker patches httpcore's, pytest-httpx and no-network guards patch httpx's): requests then take
    httpx's transport, so that the mock sees them as it would without this pool."""
    return _replaced(
        httpx.AsyncHTTPTransport.handle_async_request, "AsyncHTTPTransport.handle_async_request", "httpx."
    ) or _replaced(
        httpcore.AsyncConnectionPool.handle_async_request, "AsyncConnectionPool.handle_async_request", "httpcore."
    )


_MAPPED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (h11.RemoteProtocolError, httpx.RemoteProtocolError),
    (h11.LocalProtocolError, httpx.LocalProtocolError),
)


def _httpx_error(exc: Exception, request: httpx.Request) -> Exception:
    """The httpx exception a transport error of ours or h11's stands for (as httpx's transport maps httpcore's)."""
    for source, target in _MAPPED:
        if isinstance(exc, source):
            return target(str(exc) or type(exc).__name__, request=request)
    return exc


class _Connection:
    """One HTTP/1.1 connection to one origin, one exchange at a time."""

    def __init__(self, origin: tuple[bytes, bytes, int], stream: LoopStream) -> None:
        self.origin = origin
        self.stream = stream
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.idle_since = 0.0
        self.closed = False

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def next_event(self, seconds: float | None) -> Any:
        """The next h11 event, each read ending by ``seconds`` (:class:`httpcore.ReadTimeout`)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.read(_READ_SIZE, seconds)
            if not data and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpcore.RemoteProtocolError("the server closed the connection without sending a response")
            self.h11.receive_data(data)

    async def send(self, event: Any, seconds: float | None) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.write(data, seconds)


class _ResponseStream(httpx.AsyncByteStream):
    """The answer's body, read as it is iterated; the connection goes back to the pool at its end."""

    def __init__(self, pool: LoopPoolTransport, connection: _Connection, request: httpx.Request, timeout: float | None):
        self._pool = pool
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        try:
            while True:
                event = await connection.next_event(self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise httpcore.RemoteProtocolError("the server closed the connection before the answer's end")
        except Exception as exc:
            await self._discard()
            raise _httpx_error(exc, self._request) from exc
        except BaseException:
            await self._discard()
            raise
        self._connection = None
        await self._pool._release(connection)

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool._drop(connection)

    async def aclose(self) -> None:
        # Closed before its end (an oversized answer cut short, an error): the connection is not reused.
        await self._discard()


class LoopPoolTransport(httpx.AsyncBaseTransport):
    """An httpx async transport: the pool above on :class:`LoopBackend` (see the module's docstring)."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits, fallback: httpx.AsyncBaseTransport) -> None:
        self._ssl_context = ssl_context
        self._max_connections = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._fallback = fallback
        self._backend = LoopBackend()
        self._idle: list[_Connection] = []  # most recently used last
        self._open = 0  # connections open, idle or in use, or being opened
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if _waitable_loop() is None or _mocked():
            return await self._fallback.handle_async_request(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        origin = (url.raw_scheme, url.raw_host, port)
        try:
            connection = await self._acquire(origin, timeouts)
        except Exception as exc:
            raise _httpx_error(exc, request) from exc
        try:
            return await self._exchange(connection, request, timeouts)
        except BaseException as exc:
            await self._drop(connection)
            if isinstance(exc, Exception):
                raise _httpx_error(exc, request) from exc
            raise

    async def _exchange(
        self, connection: _Connection, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        write_timeout, read_timeout = timeouts.get("write"), timeouts.get("read")
        target = request.url.raw_path
        await connection.send(
            h11.Request(method=request.method, target=target, headers=request.headers.raw), write_timeout
        )
        try:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            async for chunk in request.stream:
                await connection.send(h11.Data(data=chunk), write_timeout)
            await connection.send(h11.EndOfMessage(), write_timeout)
        except httpcore.WriteError:
            # The server may have answered and closed before taking the whole body (e.g. 413): read its
            # answer if it sent one (as httpcore does); the connection is not reused either way.
            pass
        while True:
            event = await connection.next_event(read_timeout)
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise httpcore.RemoteProtocolError("the server closed the connection without sending a response")
            # h11.InformationalResponse (100 Continue …): the answer follows.
        return httpx.Response(
            status_code=event.status_code,
            headers=event.headers.raw_items(),
            stream=_ResponseStream(self, connection, request, read_timeout),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": bytes(event.reason),
                "network_stream": connection.stream,
            },
        )

    async def _acquire(self, origin: tuple[bytes, bytes, int], timeouts: dict[str, float | None]) -> _Connection:
        loop = asyncio.get_running_loop()
        pool_timeout = timeouts.get("pool")
        end = None if pool_timeout is None else loop.time() + pool_timeout
        while True:
            if self._closed:
                raise httpcore.ConnectError("the HTTP client is closed")
            connection = self._take_idle(origin)
            if connection is not None:
                return connection
            if self._max_connections is None or self._open < self._max_connections:
                break
            if self._idle:  # full of idle connections to other origins: close the oldest for this request
                await self._drop(self._idle.pop(0))
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            woken = False
            try:
                async with asyncio.timeout_at(end):
                    await waiter
                woken = True
            except TimeoutError as exc:
                raise httpcore.PoolTimeout("no connection became free in time") from exc
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                if not woken and waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled or timed out: the turn goes to the next waiter
        self._open += 1
        try:
            return await self._connect(origin, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    def _take_idle(self, origin: tuple[bytes, bytes, int]) -> _Connection | None:
        now = time.monotonic()
        for index in range(len(self._idle) - 1, -1, -1):
            connection = self._idle[index]
            expired = self._expiry is not None and now - connection.idle_since > self._expiry
            if expired or connection.stream.get_extra_info("is_readable"):
                # The server closed it, or wrote when nothing was asked: never reuse it.
                del self._idle[index]
                self._forget(connection)
                continue
            if connection.origin == origin:
                del self._idle[index]
                return connection
        return None

    async def _connect(self, origin: tuple[bytes, bytes, int], seconds: float | None) -> _Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        stream = await self._backend.connect_tcp(name, port, timeout=seconds)
        if scheme == b"https":
            stream = await stream.start_tls(self._ssl_context, server_hostname=name, timeout=seconds)
        assert isinstance(stream, LoopStream)
        return _Connection(origin, stream)

    async def _release(self, connection: _Connection) -> None:
        """An exchange ended cleanly: keep the connection for the next request, or close it."""
        if self._closed or not connection.reusable() or (self._max_idle is not None and self._max_idle <= 0):
            await self._drop(connection)
            return
        try:
            connection.h11.start_next_cycle()
        except h11.LocalProtocolError:
            await self._drop(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        if self._max_idle is not None and len(self._idle) > self._max_idle:
            await self._drop(self._idle.pop(0))
        self._wake_one()

    async def _drop(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
        self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        connection.stream.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._forget(connection)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        await self._fallback.aclose()


def loop_transport(verify: ssl.SSLContext, limits: httpx.Limits) -> LoopPoolTransport:
    """The async clients' transport: this pool, and httpx's own (httpcore's pool) where it cannot serve."""
    return LoopPoolTransport(verify, limits, fallback=httpx.AsyncHTTPTransport(verify=verify, limits=limits))
