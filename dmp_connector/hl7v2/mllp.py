"""MLLP (HL7's Minimal Lower Layer Protocol): ``<VT> message <FS><CR>`` over TCP, with TLS if asked.

The framing is sans-I/O (:func:`frame`, :class:`FrameReader`); :class:`MllpClient` and
:class:`AsyncMllpClient` only hold the socket. Each exchange — connect if needed, send one
frame, read one frame — ends within ``timeout`` seconds whatever the server does (a server
that trickles one byte a second is cut at the deadline, not per read). A frame larger than
``max_message_bytes`` is refused as it grows, never buffered whole. :meth:`MllpClient.send`
checks that the ACK names the message sent (MSA-2 = MSH-10) before saying anything about it.

Errors: :class:`~dmp_connector.errors.ConnectError`, :class:`~dmp_connector.errors.TlsError`,
:class:`~dmp_connector.errors.RequestTimeout`, :class:`~.errors.MllpFramingError`,
:class:`~dmp_connector.errors.LimitExceededError`, then what :meth:`.Ack.check` raises. After any
of them the connection is closed: the next exchange opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Self

from dmp_connector.errors import ConnectError, LimitExceededError, RequestTimeout, TlsError

from ._er7 import Message
from .acks import Ack, read_ack
from .errors import AckMismatchError, Hl7ParseError, MllpFramingError

__all__ = ["END_BLOCK", "START_BLOCK", "AsyncMllpClient", "FrameReader", "MllpClient", "frame"]

START_BLOCK = b"\x0b"
"""<VT>, before each message."""
END_BLOCK = b"\x1c\r"
"""<FS><CR>, after each message."""
_FS = 0x1C
_BETWEEN_FRAMES = b"\r\n"

DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """One MLLP frame; a payload holding <VT> or <FS> cannot be framed (ER7 never holds them)."""
    if START_BLOCK in payload or bytes([_FS]) in payload:
        raise MllpFramingError("the message holds an MLLP control character (VT or FS) and cannot be framed")
    return START_BLOCK + payload + END_BLOCK


class FrameReader:
    """Bytes in, complete frames out; refuses bytes outside frames and frames over ``max_bytes``.

    CR and LF between frames are tolerated (some senders end a frame with an extra line break).
    """

    _OUT, _IN, _FS_SEEN = range(3)

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._state = self._OUT

    @property
    def pending(self) -> bool:
        """True while a frame is begun and not ended."""
        return self._state != self._OUT

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data`` (usually zero or one)."""
        frames: list[bytes] = []
        i = 0
        while i < len(data):
            if self._state == self._OUT:
                if data[i] == START_BLOCK[0]:
                    self._state = self._IN
                    self._buffer.clear()
                elif data[i] not in _BETWEEN_FRAMES:
                    raise MllpFramingError("bytes outside an MLLP frame (no <VT> start block)")
                i += 1
            elif self._state == self._FS_SEEN:
                if data[i] != END_BLOCK[1]:
                    raise MllpFramingError("an MLLP frame ends with <FS> not followed by <CR>")
                frames.append(bytes(self._buffer))
                self._buffer.clear()
                self._state = self._OUT
                i += 1
            else:
                end = data.find(_FS, i)
                chunk = data[i:] if end < 0 else data[i:end]
                if len(self._buffer) + len(chunk) > self.max_bytes:
                    raise LimitExceededError(
                        f"an MLLP frame is larger than {self.max_bytes} bytes", limit="max_message_bytes"
                    )
                if START_BLOCK in chunk:
                    raise MllpFramingError("a <VT> start block inside an MLLP frame")
                self._buffer += chunk
                if end < 0:
                    break
                self._state = self._FS_SEEN
                i = end + 1
        return frames


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RequestTimeout("the MLLP exchange did not end before its deadline")
    return left


def _resolve(host: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` bounded by the deadline: the system resolver has no timeout of its own.

    It runs in a daemon thread; past the deadline the exchange fails and the lookup is left to end alone.
    """
    found: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="mllp-resolve", daemon=True).start()
    if not done.wait(_remaining(deadline)):
        raise RequestTimeout("the MLLP server's name was not resolved before the deadline")
    if isinstance(found[0], OSError):
        raise ConnectError("the MLLP server's name could not be resolved") from found[0]
    return list(found[0])


def _open(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection opened within the deadline: the lookup and every address tried share it."""
    last: OSError | None = None
    for family, kind, proto, _name, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(address)
        except TimeoutError as exc:
            sock.close()
            raise RequestTimeout("the MLLP connection was not opened before the deadline") from exc
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise ConnectError("the MLLP connection could not be opened") from last


class MllpClient:
    """A blocking MLLP client; one connection, kept open between exchanges, closed after any error.

    ``ssl_context`` turns TLS on (verification stays as the context sets it: build it with
    ``ssl.create_default_context(cafile=…)``); ``server_hostname`` defaults to ``host``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.max_message_bytes = max_message_bytes
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"MllpClient({self.host!r}, {self.port}, tls={self.ssl_context is not None})"

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        raw = _open(self.host, self.port, deadline)
        sock: socket.socket = raw
        if self.ssl_context is not None:
            try:
                raw.settimeout(_remaining(deadline))
                sock = self.ssl_context.wrap_socket(raw, server_hostname=self.server_hostname)
            except TimeoutError as exc:
                raw.close()
                raise RequestTimeout("the TLS handshake did not end before the deadline") from exc
            except ssl.SSLError as exc:
                raw.close()
                raise TlsError("the TLS handshake with the MLLP server failed") from exc
            except OSError as exc:
                raw.close()
                raise ConnectError("the MLLP connection was dropped during the TLS handshake") from exc
        self._sock = sock
        return sock

    def exchange(self, payload: bytes) -> bytes:
        """Send one message, return the one frame that comes back (raw bytes)."""
        deadline = time.monotonic() + self.timeout
        data = frame(payload)
        sock = self._connect(deadline)
        reader = FrameReader(max_bytes=self.max_message_bytes)
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(data)
            while True:
                sock.settimeout(_remaining(deadline))
                chunk = sock.recv(65536)
                if not chunk:
                    raise MllpFramingError("the MLLP server closed the connection before a whole answer")
                frames = reader.feed(chunk)
                if frames:
                    if len(frames) > 1 or reader.pending:
                        raise MllpFramingError("the MLLP server sent more than one answer to one message")
                    return frames[0]
        except TimeoutError as exc:
            self.close()
            raise RequestTimeout("the MLLP exchange did not end before its deadline") from exc
        except ssl.SSLError as exc:
            self.close()
            raise TlsError("the TLS connection to the MLLP server failed") from exc
        except OSError as exc:
            self.close()
            raise ConnectError("the MLLP connection was dropped") from exc
        except BaseException:
            self.close()
            raise

    def send(self, message: Message) -> Ack:
        """Send ``message`` and return its ACK once checked: it names this message and accepts it."""
        answer = self.exchange(message.to_bytes())
        try:
            return read_ack(answer, max_bytes=self.max_message_bytes).check(message.msh.get(10))
        except (AckMismatchError, Hl7ParseError):
            self.close()  # the stream is out of step with our messages: never read the next answer from it
            raise

    def close(self) -> None:
        """Close the connection (the next exchange opens a new one)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncMllpClient:
    """The asyncio twin of :class:`MllpClient` (same arguments, same errors)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.max_message_bytes = max_message_bytes
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def __repr__(self) -> str:
        return f"AsyncMllpClient({self.host!r}, {self.port}, tls={self.ssl_context is not None})"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is not None:
            return self._streams
        try:
            self._streams = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.ssl_context,
                server_hostname=self.server_hostname if self.ssl_context is not None else None,
            )
        except ssl.SSLError as exc:
            raise TlsError("the TLS handshake with the MLLP server failed") from exc
        except OSError as exc:
            raise ConnectError("the MLLP connection could not be opened") from exc
        return self._streams

    async def _exchange(self, data: bytes) -> bytes:
        reader_stream, writer = await self._connect()
        writer.write(data)
        await writer.drain()
        reader = FrameReader(max_bytes=self.max_message_bytes)
        while True:
            chunk = await reader_stream.read(65536)
            if not chunk:
                raise MllpFramingError("the MLLP server closed the connection before a whole answer")
            frames = reader.feed(chunk)
            if frames:
                if len(frames) > 1 or reader.pending:
                    raise MllpFramingError("the MLLP server sent more than one answer to one message")
                return frames[0]

    async def exchange(self, payload: bytes) -> bytes:
        """Send one message, return the one frame that comes back (raw bytes)."""
        data = frame(payload)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(data)
        except TimeoutError as exc:
            await self.aclose()
            raise RequestTimeout("the MLLP exchange did not end before its deadline") from exc
        except ssl.SSLError as exc:
            await self.aclose()
            raise TlsError("the TLS connection to the MLLP server failed") from exc
        except (ConnectionError, OSError) as exc:
            await self.aclose()
            raise ConnectError("the MLLP connection was dropped") from exc
        except BaseException:
            await self.aclose()
            raise

    async def send(self, message: Message) -> Ack:
        """Send ``message`` and return its ACK once checked: it names this message and accepts it."""
        answer = await self.exchange(message.to_bytes())
        try:
            return read_ack(answer, max_bytes=self.max_message_bytes).check(message.msh.get(10))
        except (AckMismatchError, Hl7ParseError):
            await self.aclose()  # the stream is out of step with our messages: never read the next answer from it
            raise

    async def aclose(self) -> None:
        """Close the connection."""
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await streams[1].wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
