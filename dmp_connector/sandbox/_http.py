"""How a simulator is reached: in-process as an httpx transport, or on a loopback socket.

A simulator is a plain function ``HttpRequest -> HttpResponse``. The same function can
be handed to :func:`as_transport` (no port, for unit tests) or served by
:class:`LoopbackServer` (real TCP, real TLS with client-certificate checks, for
integration tests and the examples).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from .pki import IssuedCertificate, TestPki

__all__ = [
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "LoopbackServer",
    "ScriptedHandler",
    "as_async_transport",
    "as_transport",
    "server_ssl_context",
]


@dataclass(frozen=True)
class HttpRequest:
    """A request as a simulator sees it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_subject: str | None = None
    """The TLS client certificate's subject (RFC 4514), or None in-process / without one."""

    def header(self, name: str, default: str = "") -> str:
        """A header by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


@dataclass
class HttpResponse:
    """A simulator's answer. ``delay`` sleeps before answering; ``drop`` closes without one."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    delay: float = 0.0
    drop: bool = False


Handler = Callable[[HttpRequest], HttpResponse]


class ScriptedHandler:
    """A simulator with faults queued in front of it, recording every request it sees.

    Each queued entry answers one request, in order: an :class:`HttpResponse` is sent as
    is (a 503, a malformed body …); a handler is called instead of the simulator (to
    delay or drop the simulator's own answer after it did its work). When the queue is
    empty the simulator answers.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[HttpRequest] = []
        self._queue: deque[HttpResponse | Handler] = deque()
        self._lock = threading.Lock()

    def then(self, *entries: HttpResponse | Handler) -> ScriptedHandler:
        """Queue answers for the next requests."""
        with self._lock:
            self._queue.extend(entries)
        return self

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            self.requests.append(request)
            entry = self._queue.popleft() if self._queue else self.handler
        if isinstance(entry, HttpResponse):
            return entry
        return entry(request)


def _body_bytes(body: bytes | Iterable[bytes]) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)


def as_transport(handler: Handler, *, client_subject: str | None = None) -> httpx.MockTransport:
    """The simulator as an in-process transport for :class:`httpx.Client`.

    ``client_subject``: the TLS client certificate every request presents, as the loopback server
    would report it (:func:`~dmp_connector.sandbox.certificate_subject`), so that a simulator applies
    the same certificate rules in-process as over TLS; none by default.
    """

    def handle(request: httpx.Request) -> httpx.Response:
        answer = handler(
            HttpRequest(
                method=request.method,
                path=request.url.raw_path.decode("ascii"),
                headers=dict(request.headers),
                body=request.read(),
                client_subject=client_subject,
            )
        )
        if answer.drop:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        if answer.delay:
            time.sleep(answer.delay)
        return httpx.Response(answer.status, headers=answer.headers, content=_body_bytes(answer.body))

    return httpx.MockTransport(handle)


def as_async_transport(handler: Handler, *, client_subject: str | None = None) -> httpx.MockTransport:
    """The simulator as an in-process transport for :class:`httpx.AsyncClient` (``client_subject``: see
    :func:`as_transport`)."""

    async def handle(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = handler(
            HttpRequest(
                method=request.method,
                path=request.url.raw_path.decode("ascii"),
                headers=dict(request.headers),
                body=body,
                client_subject=client_subject,
            )
        )
        if answer.drop:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        if answer.delay:
            import asyncio

            await asyncio.sleep(answer.delay)
        return httpx.Response(answer.status, headers=answer.headers, content=_body_bytes(answer.body))

    return httpx.MockTransport(handle)


def server_ssl_context(
    server: IssuedCertificate,
    pki: TestPki,
    *,
    require_client_cert: bool = True,
    workdir: Path,
    maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """TLS ≥ 1.2 server context presenting ``server`` and, by default, requiring a client certificate.

    ``maximum_version=TLSv1_2`` mimics the national services (TLS 1.2): there a refused
    client certificate fails the handshake itself, whereas under TLS 1.3 the refusal
    arrives after it and the client may only see a dropped connection.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = maximum_version
    cert_path, key_path = server.write_pem(workdir, "sandbox-server")
    ctx.load_cert_chain(cert_path, key_path)
    ctx.load_verify_locations(cadata=pki.ca_pem.decode("ascii"))
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


class _Headers(http.client.HTTPMessage):
    """A request's headers, parsed as headers only.

    The stdlib parses the header block with :mod:`email`, as a MIME message: for a
    ``multipart/related`` request (every MTOM deposit) it then looks for the body's parts, compiling a
    regular expression around the boundary — a fresh one per request, so never in ``re``'s cache:
    ≈ 0.35 ms of the sandbox's CPU per deposit. The body is read apart (``_read_body``); here the
    headers say they are not multipart to the parser, and their values are unchanged.
    """

    def get_content_maintype(self) -> str:
        return "text"


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    MessageClass = _Headers
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's per-request stderr lines."""

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length)

    def _dispatch(self) -> None:
        subject = None
        if isinstance(self.connection, ssl.SSLSocket):
            peer = self.connection.getpeercert()
            if peer:
                subject = ",".join("=".join(pair) for rdn in peer.get("subject", ()) for pair in rdn)
        request = HttpRequest(
            method=self.command,
            path=self.path,
            headers=dict(self.headers.items()),
            body=self._read_body(),
            client_subject=subject,
        )
        answer = self.server.handler(request)
        if answer.delay:
            time.sleep(answer.delay)
        if answer.drop:
            self.close_connection = True
            return
        body = _body_bytes(answer.body)
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's backlog of 5 drops the SYNs of a burst of new connections (32 concurrent
    # deposits), each then retried by the kernel a second later: a delay no real service shows.
    request_queue_size = 128

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.handler = handler
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def finish_request(self, request: object, client_address: object) -> None:
        # The handshake runs in the request's own thread, so that a client that fails
        # it (a test of a refused certificate) does not stall the accept loop.
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)  # type: ignore[arg-type]


class LoopbackServer:
    """Serve a simulator on ``127.0.0.1`` on a free port, in a background thread."""

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = _Server(handler, ssl_context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="dmpc-loopback",
            daemon=True,
        )
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        """Base URL of the server."""

    def start(self) -> Self:
        """Start serving; returns self for chaining."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
