"""The async HTTP clients' network backend: non-blocking sockets, TLS done by OpenSSL on the socket.

httpcore's default async backend runs TLS through anyio's ``TLSStream``: an ``ssl.MemoryBIO``
pair driven from Python, every record copied between OpenSSL, Python and the socket, and every
read and write wrapped in an anyio cancel scope. A deposit (a 270 kB MTOM body) paid about a
millisecond of CPU more than the sync client for it. Here the socket itself is the TLS socket
(``SSLContext.wrap_socket`` on a non-blocking socket), as in the sync client: OpenSSL reads and
writes the socket in C, and the event loop is asked to wait only when the kernel has nothing to
give or no room to take (``add_reader`` / ``add_writer`` and one future), which on a loopback or a
fast network is rare.

What async gives is kept: every wait is on the event loop (many calls on one loop), a cancelled
task stops waiting at once and leaves no callback behind, each read, write, connect and handshake
ends by its httpx timeout (:class:`httpcore.ReadTimeout` …), and the attempt's own deadline
(``asyncio.timeout`` in the send loop) still bounds the whole. A transfer that never has to wait
(a fast network, a large answer already buffered) still hands the loop back every
:data:`YIELD_EVERY` bytes, so that other tasks run and a deadline can fire. TLS is the caller's
``ssl.SSLContext``, verification included.

Where the loop cannot wait on a socket — Windows' default proactor loop has no ``add_reader``, and
under trio there is no asyncio loop at all — connections go through httpcore's own anyio backend,
as before this module. An HTTPS proxy (TLS inside TLS) is not supported here: bring your own
``httpx.AsyncClient`` for one.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Iterable

import httpcore

__all__ = ["LoopBackend", "LoopStream"]

_READ, _WRITE = 0, 1

YIELD_EVERY = 1024 * 1024
"""Bytes read or written without any wait after which the loop is handed back once."""
WRITE_SLICE = 64 * 1024
"""Bytes a write may send within one write timeout before the next bytes get a timeout of their own."""


def _wake(waiter: asyncio.Future[bool], ready: bool) -> None:
    if not waiter.done():
        waiter.set_result(ready)


def _deadline_of(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    return None if timeout is None else loop.time() + timeout


class LoopStream(httpcore.AsyncNetworkStream):
    """A connected non-blocking socket (plain, or TLS once :meth:`start_tls` has run)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._unyielded = 0  # bytes moved since the task last gave the loop a turn

    async def _moved(self, count: int) -> None:
        self._unyielded += count
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await asyncio.sleep(0)

    async def _wait(self, direction: int, end: float | None, timeout_error: type[Exception]) -> None:
        """Until the socket is readable (or writable), or ``end`` (loop time) has come: then ``timeout_error``."""
        loop = asyncio.get_running_loop()
        if end is not None and loop.time() >= end:
            raise timeout_error("timed out")
        waiter: asyncio.Future[bool] = loop.create_future()
        fd = self._sock.fileno()
        if fd < 0:
            raise (httpcore.ReadError if direction == _READ else httpcore.WriteError)("the connection is closed")
        if direction == _READ:
            loop.add_reader(fd, _wake, waiter, True)
        else:
            loop.add_writer(fd, _wake, waiter, True)
        timer = loop.call_at(end, _wake, waiter, False) if end is not None else None
        try:
            ready = await waiter
        finally:
            # Also when the task is cancelled: no callback is left on the loop for this socket.
            if direction == _READ:
                loop.remove_reader(fd)
            else:
                loop.remove_writer(fd)
            if timer is not None:
                timer.cancel()
        self._unyielded = 0
        if not ready:
            raise timeout_error("timed out")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's API)
        end = _deadline_of(asyncio.get_running_loop(), timeout)
        while True:
            try:
                data = self._sock.recv(max_bytes)
            except (BlockingIOError, ssl.SSLWantReadError):
                await self._wait(_READ, end, httpcore.ReadTimeout)
            except ssl.SSLWantWriteError:  # TLS may have to write to read (a key update)
                await self._wait(_WRITE, end, httpcore.ReadTimeout)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except OSError as exc:  # ssl.SSLError is one
                raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc
            else:
                await self._moved(len(data))
                return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's API)
        if not buffer:
            return
        loop = asyncio.get_running_loop()
        end = _deadline_of(loop, timeout)
        view = memoryview(buffer)
        sent_since = 0
        try:
            while view:
                try:
                    # A TLS write cut short by a full socket buffer is retried with the same bytes, as OpenSSL wants.
                    sent = self._sock.send(view)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    await self._wait(_WRITE, end, httpcore.WriteTimeout)
                except ssl.SSLWantReadError:
                    await self._wait(_READ, end, httpcore.WriteTimeout)
                except OSError as exc:
                    raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc
                else:
                    view = view[sent:]
                    sent_since += sent
                    if sent_since >= WRITE_SLICE:
                        # Each 64 KiB sent gets its own write timeout, as when the body came in 64 KiB chunks:
                        # a large piece written whole is not held to one timeout (the attempt's deadline holds).
                        sent_since = 0
                        end = _deadline_of(loop, timeout)
                    await self._moved(sent)
        finally:
            view.release()

    async def aclose(self) -> None:
        self._sock.close()

    def close(self) -> None:
        """Close the socket now (no TLS close_notify is sent, as :meth:`aclose`)."""
        self._sock.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's API)
    ) -> httpcore.AsyncNetworkStream:
        if isinstance(self._sock, ssl.SSLSocket):
            raise httpcore.ConnectError("TLS inside TLS (an HTTPS proxy) is not supported by this backend")
        end = _deadline_of(asyncio.get_running_loop(), timeout)
        try:
            tls = ssl_context.wrap_socket(
                self._sock, server_side=False, server_hostname=server_hostname, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as exc:
            self._sock.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        stream = LoopStream(tls)
        try:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await stream._wait(_READ, end, httpcore.ConnectTimeout)
                except ssl.SSLWantWriteError:
                    await stream._wait(_WRITE, end, httpcore.ConnectTimeout)
        except BaseException as exc:
            tls.close()
            if isinstance(exc, OSError):  # a refused certificate (ssl.SSLCertVerificationError) among them
                raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        return stream

    def get_extra_info(self, info: str) -> object:
        if info == "ssl_object":
            # The TLS socket answers what httpcore asks of an SSL object (selected_alpn_protocol, getpeercert).
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "is_readable":
            return _readable(self._sock)
        return None


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it (or broke HTTP/1.1)."""
    fd = sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # Windows (a selector loop there has no poll either)
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _waitable_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop if it can wait on a socket (``add_reader``); None otherwise."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio (through anyio)
        return None
    proactor = getattr(asyncio, "ProactorEventLoop", None)  # Windows only
    if proactor is not None and isinstance(loop, proactor):
        return None
    return loop


class LoopBackend(httpcore.AsyncNetworkBackend):
    """Connects with the running asyncio loop; see the module's docstring."""

    def __init__(self) -> None:
        self._fallback = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's API)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = _waitable_loop()
        if loop is None:
            return await self._fallback.connect_tcp(
                host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
            )
        options = list(socket_options or ())
        end = _deadline_of(loop, timeout)
        try:
            async with asyncio.timeout_at(end):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            error: OSError | None = None
            for index, (family, kind, proto, _, address) in enumerate(infos):
                # Each address gets its share of what is left, so that one that never answers (a dead
                # record, an unrouted IPv6) does not use the whole timeout before the next is tried.
                share = None if end is None else loop.time() + (end - loop.time()) / (len(infos) - index)
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for option in options:
                        sock.setsockopt(*option)
                    if local_address is not None:
                        sock.bind((local_address, 0))
                    async with asyncio.timeout_at(share):
                        await loop.sock_connect(sock, address)
                except (OSError, TimeoutError) as exc:  # TimeoutError is an OSError
                    sock.close()
                    error = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return LoopStream(sock)
            if isinstance(error, TimeoutError):
                raise error
            raise error or OSError(f"no address for {host}")
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"could not connect to {host}:{port} in time") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's API)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = _waitable_loop()
        if loop is None:
            return await self._fallback.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            for option in socket_options or ():
                sock.setsockopt(*option)
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, path)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(f"could not connect to {path} in time") from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            sock.close()
            raise
        return LoopStream(sock)

    async def sleep(self, seconds: float) -> None:
        if _waitable_loop() is None:
            await self._fallback.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
