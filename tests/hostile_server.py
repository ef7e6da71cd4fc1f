"""A hostile HTTPS server for the reliability and security suites: raw sockets, mutual TLS, scripted answers.

Not the sandbox's simulators and not its HTTP server: each connection is accepted on a bare socket,
wrapped in TLS with the session's test PKI (the client must present a certificate from its CA),
its request read by hand, and then a *script* decides what goes back, byte by byte if it likes —
a well-formed answer replayed from a simulator and then altered, an answer trickled one byte a
second, a fault of many megabytes, or nothing at all. One request per connection: every answer
says ``Connection: close`` and the socket is closed after it.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from dmp_connector.sandbox import Handler, HttpRequest, HttpResponse
from dmp_connector.sandbox._http import server_ssl_context
from tests.conftest import PkiFiles


@dataclass
class Received:
    """A request as it reached the hostile server."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_subject: str | None

    def as_sandbox_request(self) -> HttpRequest:
        return HttpRequest(
            method=self.method, path=self.path, headers=dict(self.headers), body=self.body,
            client_subject=self.client_subject,
        )  # fmt: skip


class Peer:
    """The TLS connection a script writes to, and the server's stop flag (a script that stalls watches it)."""

    def __init__(self, sock: ssl.SSLSocket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping
        self.sent = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def respond(self, status: int, body: bytes = b"", *, content_type: str | None = None, **headers: str) -> None:
        """A whole answer at once."""
        self.send(head(status, len(body), content_type=content_type, **headers) + body)

    def trickle(self, data: bytes, *, every: float = 1.0) -> None:
        """``data`` one byte at a time, ``every`` seconds apart, until sent or the server stops."""
        for index in range(len(data)):
            if self.stopping.wait(every if index else 0):
                return
            self.send(data[index : index + 1])

    def stall(self) -> None:
        """Say nothing until the server stops (the client's deadline must end the call)."""
        self.stopping.wait()


Script = Callable[[Peer, Received], None]


def head(status: int, length: int | None, *, content_type: str | None = None, **headers: str) -> bytes:
    """A status line and headers (``Connection: close``; ``Content-Length`` when ``length`` is known)."""
    lines = [f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def sandbox_body(answer: HttpResponse) -> bytes:
    return answer.body if isinstance(answer.body, bytes) else b"".join(answer.body)


def forward(handler: Handler, alter: Callable[[Received, HttpResponse, bytes], bytes | None] | None = None) -> Script:
    """Answer as ``handler`` (a simulator) does, after ``alter`` (given the request, the answer and its
    body) has changed the body; ``alter`` returning None keeps the answer as it is."""

    def script(peer: Peer, request: Received) -> None:
        answer = handler(request.as_sandbox_request())
        body = sandbox_body(answer)
        if alter is not None:
            changed = alter(request, answer, body)
            body = body if changed is None else changed
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "connection")}
        peer.send(head(answer.status, len(body), **{k.replace("-", "_"): v for k, v in headers.items()}) + body)

    return script


@dataclass
class HostileServer:
    """Accepts mutual-TLS connections on 127.0.0.1 and hands each request to ``script``."""

    script: Script
    context: ssl.SSLContext
    handshake: bool = True
    """False: accept TCP connections and never start TLS (a connect that does not finish)."""
    received: list[Received] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    handshakes: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket = field(init=False)
    _threads: list[threading.Thread] = field(default_factory=list)
    _open: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.1)
        accept = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

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
            worker = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True)
            worker.start()
            with self._lock:
                self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        try:
            conn.settimeout(10)
            if not self.handshake:
                self.stopping.wait()
                return
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
            with self._lock:
                self._open.add(tls)
                self.handshakes += 1
            request = _read_request(tls)
            if request is None:
                return
            with self._lock:
                self.received.append(request)
            try:
                self.script(Peer(tls, self.stopping), request)
            except OSError:
                return  # the client gave up (its deadline): expected
            except Exception as exc:  # a broken script: recorded for the test, the connection dropped
                self.errors.append(exc)
        finally:
            with self._lock:
                for sock in list(self._open):
                    if sock is conn or getattr(sock, "_sock", None) is conn:
                        self._open.discard(sock)
            _close(conn)

    def close(self) -> None:
        """Stop, and re-raise the first error a script made (a test must not pass on a broken script)."""
        self.stopping.set()
        _close(self._listener)
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        if self.errors:
            raise self.errors[0]


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.close()


def _read_request(sock: ssl.SSLSocket) -> Received | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    while len(body) < length:
        chunk = sock.recv(min(1 << 20, length - len(body)))
        if not chunk:
            return None
        body += chunk
    peer = sock.getpeercert()
    subject = ",".join("=".join(pair) for rdn in peer.get("subject", ()) for pair in rdn) if peer else None
    return Received(method, path, headers, body, subject)


@contextmanager
def hostile(
    pki_files: PkiFiles, workdir: Path, script: Script, *, handshake: bool = True, client_certificate: bool = True
) -> Iterator[HostileServer]:
    """A hostile server presenting the test PKI's server certificate and (by default) requiring a client's."""
    context = server_ssl_context(
        pki_files.server, pki_files.pki, workdir=workdir, require_client_cert=client_certificate
    )
    server = HostileServer(script, context, handshake=handshake)
    try:
        yield server
    finally:
        server.close()


class Elapsed:
    """Wall time of a block, for the deadline tests: ``with Elapsed() as t: …; t.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Elapsed:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._start


def chunks(parts: Iterable[bytes]) -> bytes:
    return b"".join(parts)
