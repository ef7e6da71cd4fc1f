"""IMAP reading over the standard library's imaplib: the one IMAP core.

imaplib is synchronous; :class:`~dmp_connector.mssante.transport.AsyncMailTransport`
runs this same core in a worker thread rather than using an asyncio IMAP client,
because the one such client on PyPI (aioimaplib) has no STARTTLS, which the MSSanté
interface requires on port 143. IMAP reading is a handful of request/response
exchanges, so a thread per call costs little.

This module is the boundary for imaplib, ssl and socket errors on the IMAP side: each
becomes one of ours, chained with ``from``. Message content is never logged, and
imaplib's own debug output is left off.
"""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import TYPE_CHECKING, Literal

from dmp_connector.config import MailServer, MssanteAuthMode
from dmp_connector.errors import (
    ConnectError,
    DmpConnectorError,
    ProtocolError,
    RequestTimeout,
    ServiceError,
    TlsError,
    ValidationError,
)

from ._mail import MailSummary, redact_text
from ._mime import UnreadableMessageError
from .auth import AUTH_DELAY_HINT, MailAuthenticationError, MailCredentials, xoauth2_initial_response
from .receipts import MIME_ERRORS, header_text

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["ImapSession", "encode_folder", "parse_fetch_summaries"]

_LIST_BATCH = 200
_HEADER_FIELDS = "(SUBJECT FROM MESSAGE-ID CONTENT-TYPE)"
_CODE = re.compile(r"\[([A-Za-z-]+)")
_MONTHS = {
    m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)
}
_INTERNALDATE = re.compile(
    rb'INTERNALDATE "\s?(?P<day>[0-9]{1,2})-(?P<mon>[A-Za-z]{3})-(?P<year>[0-9]{4}) '
    rb'(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2}) (?P<zs>[-+])(?P<zh>[0-9]{2})(?P<zm>[0-9]{2})"'
)
_UID = re.compile(rb"\bUID ([0-9]+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE ([0-9]+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


class _MessageTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _DeadlinePassed(TimeoutError):
    """The attempt's deadline came before the server's answer did."""


class _Clock:
    """The deadline of the current attempt and the longest wait for the next bytes of a reply.

    Shared by a session and its connection; the transport sets :attr:`end` before each attempt.
    """

    def __init__(self, reply: float) -> None:
        self.end: float | None = None
        """When the attempt must be over (``time.monotonic()``), or None: only :attr:`reply` bounds a wait."""
        self.reply = reply

    def wait(self, timeout: float | None = None) -> float:
        """``timeout`` (else :attr:`reply`) shortened to what is left of the attempt."""
        wanted = self.reply if timeout is None else timeout
        if self.end is None:
            return wanted
        left = self.end - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed
        return min(wanted, left)

    @property
    def passed(self) -> bool:
        """Whether the attempt's deadline has come (with 10 ms of slack for a socket timeout set to it)."""
        return self.end is not None and time.monotonic() >= self.end - 0.01


class _BoundedIMAP4(imaplib.IMAP4):
    """imaplib with every wait bounded by the attempt's deadline, and literals by a size.

    imaplib reads through a buffered file whose socket timeout bounds each ``recv`` only: a server
    trickling a byte a second would hold a call for ever. Here each ``recv`` waits at most what is
    left of the attempt; and a literal over the limit is refused before it is read into memory.
    """

    def __init__(self, host: str, port: int, timeout: float, max_literal: int, clock: _Clock) -> None:
        self.max_literal = max_literal
        self.clock = clock
        self._pending = bytearray()
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock: socket.socket = super()._create_socket(self.clock.wait(timeout))  # type: ignore[misc]
        return sock

    def _receive(self) -> bytes:
        self.sock.settimeout(self.clock.wait())
        return self.sock.recv(65536)

    def readline(self) -> bytes:
        limit = imaplib._MAXLINE  # type: ignore[attr-defined]
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[: end + 1])
                del self._pending[: end + 1]
                return line
            if len(self._pending) > limit:
                raise self.error(f"got more than {limit} bytes")
            chunk = self._receive()
            if not chunk:  # end of stream: imaplib turns an empty line into an abort
                line = bytes(self._pending)
                self._pending.clear()
                return line
            self._pending += chunk

    def read(self, size: int) -> bytes:
        if size > self.max_literal:
            raise _MessageTooLarge(size)
        while len(self._pending) < size:
            chunk = self._receive()
            if not chunk:
                break
            self._pending += chunk
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def send(self, data: Buffer) -> None:
        self.sock.settimeout(self.clock.wait())
        self.sock.sendall(data)  # with a timeout, sendall is bounded as a whole

    def starttls(self, ssl_context: ssl.SSLContext | None = None) -> tuple[Literal["OK"], list[None]]:
        if self._pending:  # bytes sent before the handshake would be read as if under TLS
            raise self.abort("the server sent data before the TLS handshake")
        self.sock.settimeout(self.clock.wait())
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        # Bytes that came after the server's OK to STARTTLS, in the same packet, were sent in clear:
        # read after the handshake they would pass for protected answers (STARTTLS response
        # injection). They are checked at the moment of wrapping, after the OK was read.
        return super().starttls(_RefuseCleartextLeftovers(context, self))


class _RefuseCleartextLeftovers:
    """An SSL context that refuses to wrap while cleartext bytes wait to be read as if under TLS."""

    def __init__(self, context: ssl.SSLContext, imap: _BoundedIMAP4) -> None:
        self._context = context
        self._imap = imap

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None) -> ssl.SSLSocket:
        if self._imap._pending:
            self._imap._pending.clear()
            raise TlsError(
                "IMAP: the server sent data after its STARTTLS answer, before the TLS handshake",
                hint="cleartext injected into the session (a man in the middle, or a broken server): nothing was sent",
            )
        return self._context.wrap_socket(sock, server_hostname=server_hostname)


def encode_folder(name: str) -> str:
    """A folder name as an IMAP quoted string in modified UTF-7 (RFC 3501 §5.1.3)."""
    if not name or any(c in name for c in "\r\n\x00"):
        raise ValidationError("a folder name must be non-empty and on one line")
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    encoded = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{encoded}"'


_TEMPORARY_CODES = frozenset({"UNAVAILABLE", "INUSE", "LIMIT"})
"""RFC 5530 response codes of a temporary condition: the same command may succeed later."""


def _response_code(text: str) -> str | None:
    match = _CODE.search(text)
    return match.group(1).upper() if match else None


def _text(data: Sequence[object]) -> str:
    parts = []
    for item in data:
        if isinstance(item, bytes):
            parts.append(item.decode("utf-8", "replace"))
        elif isinstance(item, tuple) and item and isinstance(item[0], bytes):
            parts.append(item[0].decode("utf-8", "replace"))
    return redact_text(" ".join(parts).strip())


def _internal_date(meta: bytes) -> datetime | None:
    match = _INTERNALDATE.search(meta)
    if match is None:
        return None
    month = _MONTHS.get(match["mon"].decode("ascii").capitalize())
    if month is None:
        return None
    offset = timedelta(hours=int(match["zh"]), minutes=int(match["zm"]))
    zone = timezone(-offset if match["zs"] == b"-" else offset)
    try:
        return datetime(
            int(match["year"]), month, int(match["day"]), int(match["h"]), int(match["m"]), int(match["s"]), tzinfo=zone
        )
    except ValueError:
        return None


def _fetch_records(data: Sequence[object]) -> Iterator[tuple[bytes, bytes | None]]:
    """(metadata, literal) per message of a FETCH answer; items after a literal belong to its message."""
    meta: bytes | None = None
    literal: bytes | None = None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes):
            if meta is not None:
                yield meta, literal
            meta, literal = item[0], item[1] if isinstance(item[1], bytes) else None
        elif isinstance(item, bytes):
            if meta is not None and not re.match(rb"^[0-9]+ \(", item):
                meta += item
            else:
                if meta is not None:
                    yield meta, literal
                meta, literal = item, None
    if meta is not None:
        yield meta, literal


def parse_fetch_summaries(
    data: Sequence[object], folder: str, *, max_header_bytes: int = 256 * 1024, uid_validity: int | None = None
) -> list[MailSummary]:
    """Turn the answer to ``UID FETCH (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS …])``.

    Each message's headers are read on their own: one the email package refuses (a ``From``
    display name hiding an encoded CRLF …) gives that message's summary an ``error`` and its
    header as written, never a failure of the listing.
    """
    parser = BytesHeaderParser(policy=default_policy)
    summaries = []
    for meta, literal in _fetch_records(data):
        uid = _UID.search(meta)
        if uid is None:
            continue
        number = int(uid.group(1))
        size = _SIZE.search(meta)
        flags = _FLAGS.search(meta)
        fields: dict[str, str | None] = {}
        error: UnreadableMessageError | None = None
        if literal is not None and len(literal) > max_header_bytes:
            error = UnreadableMessageError(
                f"message uid {number}: its headers are over {max_header_bytes} bytes",
                reason="header",
                uid=number,
                folder=folder,
            )
        elif literal is not None:
            fields, error = _summary_fields(parser, literal, number, folder)
        summaries.append(
            MailSummary(
                uid=number,
                folder=folder,
                flags=frozenset(flags.group(1).decode("ascii", "replace").split()) if flags else frozenset(),
                size=int(size.group(1)) if size else 0,
                internal_date=_internal_date(meta),
                message_id=fields.get("message_id"),
                content_type=fields.get("content_type"),
                subject=fields.get("subject"),
                sender=fields.get("sender"),
                uid_validity=uid_validity,
                error=error,
            )
        )
    return sorted(summaries, key=lambda s: s.uid)


_SUMMARY_HEADERS = (("subject", "Subject"), ("sender", "From"), ("message_id", "Message-ID"))


def _summary_fields(
    parser: BytesHeaderParser[EmailMessage], literal: bytes, uid: int, folder: str
) -> tuple[dict[str, str | None], UnreadableMessageError | None]:
    """The listed header fields, each read on its own; a refused one is kept as written."""
    try:
        headers = parser.parsebytes(literal)
    except (*MIME_ERRORS, RecursionError) as exc:
        return {}, UnreadableMessageError(
            f"message uid {uid}: its headers cannot be read ({type(exc).__name__})",
            reason="header",
            uid=uid,
            folder=folder,
        )
    fields: dict[str, str | None] = {}
    refused: list[str] = []
    for key, name in _SUMMARY_HEADERS:
        try:
            value = headers[name]
            fields[key] = None if value is None else str(value).strip() if key == "message_id" else str(value)
        except MIME_ERRORS:
            refused.append(name)
            fields[key] = header_text(headers, name)
    try:
        fields["content_type"] = headers.get_content_type() if headers["Content-Type"] is not None else None
    except MIME_ERRORS:
        refused.append("Content-Type")
    error = None
    if refused:
        error = UnreadableMessageError(
            f"message uid {uid}: header {', '.join(refused)} cannot be decoded (kept as written)",
            reason="header",
            uid=uid,
            folder=folder,
        )
    return fields, error


def _tls_error(exc: ssl.SSLError, what: str) -> TlsError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(
            f"{what}: the server's certificate is not trusted ({exc.verify_message})",
            hint="set mssante.tls.ca_bundle (or tls.ca_bundle) to your operator's CA chain (IGC-Santé)",
        )
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return TlsError(
        f"{what}: TLS failed ({reason})",
        hint="check the CA bundle and, for an applicative mailbox, the client certificate the operator expects",
    )


def translate(
    exc: BaseException, what: str, *, after_tls: bool = False, clock: _Clock | None = None, authenticating: bool = False
) -> DmpConnectorError:
    """imaplib, ssl and socket errors → ours; the one IMAP boundary."""
    if isinstance(exc, DmpConnectorError):
        return exc
    if isinstance(exc, TimeoutError) and (isinstance(exc, _DeadlinePassed) or (clock is not None and clock.passed)):
        return RequestTimeout(
            f"{what}: the attempt's deadline passed " + ("during the login" if authenticating else "before the answer"),
            hint=AUTH_DELAY_HINT
            if authenticating
            else "raise timeouts.attempt and timeouts.call (or deadline(...)) for a large message on a slow link; "
            "otherwise the server is slow or stalled: try again later",
        )
    if isinstance(exc, _MessageTooLarge):
        return ProtocolError(
            f"{what}: the server sent a {exc.size}-byte literal, over the limit",
            hint="raise mssante.max_fetch_bytes if such messages are expected",
        )
    if isinstance(exc, ssl.SSLError):
        return _tls_error(exc, what)
    if isinstance(exc, TimeoutError):
        return RequestTimeout(
            f"{what}: the IMAP server did not answer in time",
            hint=AUTH_DELAY_HINT if authenticating else "raise mssante.timeout",
        )
    if isinstance(exc, imaplib.IMAP4.abort):
        if after_tls:
            return TlsError(
                f"{what}: the IMAP server closed the connection right after TLS",
                hint="it probably refused the client certificate: check mssante.tls",
            )
        return ConnectError(f"{what}: the IMAP connection was lost ({redact_text(str(exc))})")
    if isinstance(exc, imaplib.IMAP4.error):
        text = redact_text(str(exc))
        code = _response_code(text) or "NO"
        return ServiceError(
            f"{what}: the IMAP server refused the command: {text}",
            service="mssante",
            code=code,
            text=text,
            operation=what,
            transient=code in _TEMPORARY_CODES,
        )
    if isinstance(exc, (ConnectionError, EOFError)):
        if after_tls:
            return TlsError(
                f"{what}: the IMAP server closed the connection right after TLS",
                hint="it probably refused the client certificate: check mssante.tls",
            )
        return ConnectError(f"{what}: the IMAP connection was lost")
    if isinstance(exc, OSError):
        return ConnectError(f"{what}: cannot reach the IMAP server ({exc.strerror or type(exc).__name__})")
    return ProtocolError(f"{what}: unexpected IMAP failure ({type(exc).__name__})")


class ImapSession:
    """One IMAP connection, STARTTLS-upgraded and authenticated; not thread-safe (callers serialise).

    Opened by :meth:`open`, reused by the operations, dropped by :meth:`close` or when a
    connection-level error makes it unusable.
    """

    def __init__(
        self,
        server: MailServer,
        credentials: MailCredentials,
        *,
        connect_timeout: float,
        timeout: float,
        max_fetch_bytes: int,
        max_header_bytes: int = 256 * 1024,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.uid_validity: dict[str, int] = {}
        """UIDVALIDITY of each folder selected on this connection."""
        self.server = server
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_fetch_bytes = max_fetch_bytes
        self.clock = _Clock(timeout)
        """The current attempt's deadline; :meth:`open` and every operation wait no longer."""
        self._imap: _BoundedIMAP4 | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._selected: str | None = None
        self.last_used = 0.0

    @contextmanager
    def until(self, end: float) -> Iterator[None]:
        """Every wait of the block (connect, TLS, login, each reply) ends by ``end`` (``time.monotonic()``)."""
        self.clock.end = end
        try:
            yield
        finally:
            self.clock.end = None

    @property
    def is_open(self) -> bool:
        """Whether an authenticated connection is held."""
        return self._imap is not None

    @property
    def endpoint(self) -> str:
        """``imap://host:port``, for audit events."""
        return f"imap://{self.server.host}:{self.server.port}"

    # --- connection ---------------------------------------------------------------

    def open(self, token: str | None) -> None:
        """Connect, upgrade with STARTTLS (required) and authenticate, by the attempt's deadline."""
        self.close()
        what = "IMAP connection"
        clock = self.clock
        clock.reply = self.connect_timeout
        try:
            imap = _BoundedIMAP4(
                self.server.host, self.server.port, self.connect_timeout, self.max_fetch_bytes + 4096, clock
            )
        except BaseException as exc:
            raise translate(exc, what, clock=clock) from exc
        after_tls = authenticating = False
        try:
            if "STARTTLS" not in imap.capabilities:
                raise TlsError(
                    f"the IMAP server {self.server.host}:{self.server.port} does not offer STARTTLS",
                    hint="MSSanté requires TLS: check the host and port (143) of environment.mssante_imap",
                )
            # Under TLS 1.3 a refused client certificate shows as a connection closed just
            # after the handshake, while imaplib asks for the capabilities again.
            after_tls = self.credentials.mode is MssanteAuthMode.CERTIFICATE
            imap.starttls(self.credentials.ssl_context)
            # Servers hold the answer to a refused login (Dovecot's auth_failure_delay and auth
            # penalty, up to ~15 s and more): the login waits like any reply, within the deadline.
            clock.reply = self.timeout
            authenticating = True
            self._authenticate(imap, token)
            after_tls = authenticating = False
            typ, data = imap.capability()
            caps = data[0] if typ == "OK" and data and isinstance(data[0], bytes) else b""
            self._capabilities = frozenset(caps.decode("ascii", "replace").upper().split())
        except BaseException as exc:
            _shutdown(imap)
            raise translate(exc, what, after_tls=after_tls, clock=clock, authenticating=authenticating) from exc
        finally:
            clock.reply = self.timeout
        self._imap = imap
        self._selected = None
        self.last_used = time.monotonic()

    def _authenticate(self, imap: _BoundedIMAP4, token: str | None) -> None:
        caps = {c.upper() for c in imap.capabilities}
        creds = self.credentials
        if creds.mode is MssanteAuthMode.XOAUTH2:
            if "AUTH=XOAUTH2" not in caps:
                raise ProtocolError(
                    "the IMAP server does not offer XOAUTH2 after STARTTLS",
                    hint="check mssante.auth_mode: a server without XOAUTH2 may expect a client certificate",
                )
            assert token is not None and creds.user is not None
            response = xoauth2_initial_response(creds.user, token)
            mechanism = "XOAUTH2"
        else:
            if "AUTH=EXTERNAL" not in caps:
                raise ProtocolError(
                    "the IMAP server does not offer SASL EXTERNAL for certificate authentication",
                    hint="check mssante.auth_mode: a personal or organisational mailbox uses 'xoauth2'",
                )
            response = (creds.user or "").encode("utf-8")
            mechanism = "EXTERNAL"
        sent = False

        def answer(challenge: bytes) -> bytes:
            # The first continuation asks for our response; a second one carries the
            # server's error details (XOAUTH2), to which an empty line is the reply.
            nonlocal sent
            if sent:
                return b""
            sent = True
            return response

        try:
            imap.authenticate(mechanism, answer)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            text = redact_text(str(exc))
            code = _response_code(text)
            if code in _TEMPORARY_CODES:
                # RFC 5530: the server cannot check credentials now (its token check is down …):
                # not a refusal of the token, so no refresh; the retry policy may try again.
                raise ServiceError(
                    f"the IMAP server cannot authenticate now [{code}]: {text}",
                    service="mssante",
                    code=code,
                    text=text,
                    operation="authenticate",
                    transient=True,
                    hint="a temporary failure on the operator's side: try again later",
                ) from exc
            raise MailAuthenticationError(
                f"the IMAP server refused {mechanism} authentication: {text}",
                code=_response_code(text) or "NO",
                text=text,
                hint="the PSC access token was refused even after a refresh"
                if mechanism == "XOAUTH2"
                else "the operator does not bind this certificate to the mailbox",
            ) from exc

    def close(self) -> None:
        """Log out (best effort) and drop the connection."""
        imap, self._imap = self._imap, None
        self._selected = None
        if imap is not None:
            outer = self.clock.end
            soon = time.monotonic() + self.connect_timeout  # a logout is no reason to wait long
            self.clock.end = soon if outer is None else min(outer, soon)
            with suppress(Exception):  # the connection is being discarded anyway
                imap.logout()
            self.clock.end = outer
            _shutdown(imap)

    def drop(self) -> None:
        """Forget a connection that failed, without talking to the server again."""
        imap, self._imap = self._imap, None
        self._selected = None
        if imap is not None:
            _shutdown(imap)

    def alive(self) -> bool:
        """NOOP on the held connection; False (and dropped) when it no longer answers."""
        imap = self._require()
        try:
            typ, _ = imap.noop()
        except Exception:
            self.drop()
            return False
        if typ != "OK":
            self.drop()
            return False
        self.last_used = time.monotonic()
        return True

    @contextmanager
    def _guard(self, what: str) -> Iterator[_BoundedIMAP4]:
        imap = self._require()
        try:
            yield imap
        except DmpConnectorError:
            raise
        except BaseException as exc:
            if not isinstance(exc, imaplib.IMAP4.error) or isinstance(exc, imaplib.IMAP4.abort):
                self.drop()
            raise translate(exc, what, clock=self.clock) from exc
        finally:
            self.last_used = time.monotonic()

    def _require(self) -> _BoundedIMAP4:
        if self._imap is None:
            raise ConnectError("the IMAP session is not open")
        return self._imap

    def _check(self, typ: str, data: Sequence[object], what: str) -> None:
        if typ != "OK":
            text = _text(data)
            code = _response_code(text) or typ
            raise ServiceError(
                f"{what}: the IMAP server answered {typ}: {text}",
                service="mssante",
                code=code,
                text=text,
                operation=what,
                transient=code in _TEMPORARY_CODES,
            )

    def _select(self, imap: _BoundedIMAP4, folder: str, what: str) -> None:
        if self._selected == folder:
            return
        self._selected = None
        typ, data = imap.select(encode_folder(folder))
        self._check(typ, data, what)
        self._selected = folder
        _, validity = imap.response("UIDVALIDITY")
        value = validity[0] if validity and isinstance(validity[0], bytes) else b""
        if value.strip().isdigit():
            self.uid_validity[folder] = int(value)
        else:
            self.uid_validity.pop(folder, None)

    # --- operations -----------------------------------------------------------------

    def list_messages(self, folder: str, unseen_only: bool) -> list[MailSummary]:
        """UID SEARCH then UID FETCH of the metadata and a few headers, in batches."""
        with self._guard("list") as imap:
            self._select(imap, folder, "list")
            typ, data = imap.uid("SEARCH", "UNSEEN" if unseen_only else "ALL")
            self._check(typ, data, "list")
            uids = [int(u) for item in data if isinstance(item, bytes) for u in item.split()]
            summaries: list[MailSummary] = []
            for start in range(0, len(uids), _LIST_BATCH):
                batch = ",".join(str(u) for u in uids[start : start + _LIST_BATCH])
                typ, data = imap.uid(
                    "FETCH",
                    batch,
                    f"(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS {_HEADER_FIELDS}])",
                )
                self._check(typ, data, "list")
                summaries.extend(
                    parse_fetch_summaries(
                        data,
                        folder,
                        max_header_bytes=self.max_header_bytes,
                        uid_validity=self.uid_validity.get(folder),
                    )
                )
            return summaries

    def fetch(self, uid: int, folder: str) -> bytes:
        """The whole message, size checked first and bounded while read."""
        with self._guard("fetch") as imap:
            self._select(imap, folder, "fetch")
            typ, data = imap.uid("FETCH", str(uid), "(UID RFC822.SIZE)")
            self._check(typ, data, "fetch")
            records = [meta for meta, _ in _fetch_records(data) if _uid_is(meta, uid)]
            if not records:
                raise _no_such_message(uid, "fetch")
            size = _SIZE.search(records[0])
            if size is not None and int(size.group(1)) > self.max_fetch_bytes:
                raise ProtocolError(
                    f"message uid {uid} is {int(size.group(1))} bytes, over the {self.max_fetch_bytes}-byte limit",
                    hint="raise mssante.max_fetch_bytes if such messages are expected",
                )
            typ, data = imap.uid("FETCH", str(uid), "(UID BODY.PEEK[])")
            self._check(typ, data, "fetch")
            for meta, literal in _fetch_records(data):
                if literal is not None and _uid_is(meta, uid) and b"BODY[]" in meta.upper():
                    if len(literal) > self.max_fetch_bytes:
                        raise ProtocolError(f"message uid {uid} is over the {self.max_fetch_bytes}-byte limit")
                    return literal
            raise _no_such_message(uid, "fetch")

    def mark_seen(self, uid: int, folder: str) -> None:
        """UID STORE +FLAGS.SILENT (\\Seen)."""
        with self._guard("mark_seen") as imap:
            self._select(imap, folder, "mark_seen")
            typ, data = imap.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Seen)")
            self._check(typ, data, "mark_seen")

    def move(self, uid: int, target: str, folder: str, create: bool) -> bool:
        """UID MOVE (RFC 6851), creating the target on ``[TRYCREATE]``; COPY + \\Deleted without MOVE.

        Returns False when the message was copied but could not be removed from the
        source (no UIDPLUS): it then only carries ``\\Deleted``.
        """
        with self._guard("move") as imap:
            self._select(imap, folder, "move")
            quoted = encode_folder(target)
            verb = "MOVE" if "MOVE" in self._capabilities else "COPY"
            typ, data = imap.uid(verb, str(uid), quoted)
            if typ == "NO" and create and _response_code(_text(data)) == "TRYCREATE":
                ctyp, cdata = imap.create(quoted)
                self._check(ctyp, cdata, "move")
                typ, data = imap.uid(verb, str(uid), quoted)
            self._check(typ, data, "move")
            if verb == "MOVE":
                return True
            typ, data = imap.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            self._check(typ, data, "move")
            if "UIDPLUS" in self._capabilities:
                typ, data = imap.uid("EXPUNGE", str(uid))
                self._check(typ, data, "move")
                return True
            return False


def _uid_is(meta: bytes, uid: int) -> bool:
    match = _UID.search(meta)
    return match is not None and int(match.group(1)) == uid


def _no_such_message(uid: int, what: str) -> ServiceError:
    return ServiceError(
        f"{what}: no message with uid {uid} in this folder",
        service="mssante",
        code="NONEXISTENT",
        operation=what,
        hint="list the folder again: the message may have been moved or expunged",
    )


def _shutdown(imap: imaplib.IMAP4) -> None:
    with suppress(OSError, AttributeError):
        imap.shutdown()
    sock = getattr(imap, "sock", None)
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.close()
