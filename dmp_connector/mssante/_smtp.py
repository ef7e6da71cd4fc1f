"""SMTP submission over aiosmtplib: the one SMTP core.

It is written once, async; the synchronous transport runs it on a private event loop
in a background thread (:class:`LoopThread`) rather than duplicating it over smtplib,
so that the dialogue (STARTTLS required, authentication, SIZE and DSN parameters,
per-recipient replies) and above all the rule "was the end of DATA possibly seen by
the server?" exist in one place only.

This module is the boundary for aiosmtplib, ssl and socket errors on the SMTP side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import aiosmtplib

from dmp_connector.config import MailServer, MssanteAuthMode
from dmp_connector.errors import (
    ConnectError,
    DmpConnectorError,
    ProtocolError,
    RequestTimeout,
    ServiceError,
    TlsError,
    TransportError,
    ValidationError,
    service_text,
)

from ._mail import DsnNotify, DsnOptions, RecipientStatus, SmtpReply, redact_text
from .auth import AUTH_DELAY_HINT, MailAuthenticationError, MailCredentials, xoauth2_initial_response

__all__ = ["LoopThread", "SmtpJob", "Submitted", "expired_attempt", "submit", "xtext"]

T = TypeVar("T")


class Phase(Enum):
    """Where the dialogue was when something failed; decides whether a resend is safe."""

    CONNECT = "connect"
    TLS = "starttls"
    AUTH = "authenticate"
    ENVELOPE = "envelope"
    DATA = "data"
    """The DATA command was sent: from here on the server may have the whole message."""


@dataclass(frozen=True)
class SmtpJob:
    """Everything one submission needs; built once per send, reused on every attempt."""

    server: MailServer
    credentials: MailCredentials
    connect_timeout: float
    timeout: float
    sender: str
    recipients: tuple[str, ...]
    content: bytes
    """The serialised message, CRLF line endings."""
    dsn: DsnOptions | None
    eight_bit: bool
    """Whether ``content`` has bytes over 127 (needs ``BODY=8BITMIME``)."""
    size_headroom: int = 0
    """Bytes the server adds before it checks its ``SIZE`` (its own trace header)."""

    @property
    def endpoint(self) -> str:
        """``smtp://host:port``, for audit events."""
        return f"smtp://{self.server.host}:{self.server.port}"


@dataclass(frozen=True)
class Submitted:
    """What the server answered to an accepted submission."""

    recipients: tuple[RecipientStatus, ...]
    reply: SmtpReply
    dsn_requested: bool


def xtext(value: str) -> str:
    """RFC 3461 xtext: ``+`` and ``=``, controls and non-ASCII as ``+XX``."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def _local_hostname() -> str:
    # socket.getfqdn() (aiosmtplib's default) may wait on reverse DNS; the EHLO name of
    # a submission client is informative only.
    name = socket.gethostname()
    return name if name and all(c.isalnum() or c in "-." for c in name) else "localhost"


def _shown(text: str) -> str:
    """A server reply as a message shows it: bounded, digit runs and capitalised words redacted (the raw
    reply, patient matricules masked, stays in the error's ``text``)."""
    return service_text(text, limit=120) or ""


def _reply(code: int, text: str) -> SmtpReply:
    return SmtpReply(code=code, text=redact_text(text))


def _service_error(what: str, code: int, text: str, *, hint: str | None = None) -> ServiceError:
    reply = _reply(code, text)
    return ServiceError(
        f"{what}: the SMTP server answered {reply.code} {_shown(reply.text)}",
        service="mssante",
        code=str(reply.code),
        text=reply.text,
        operation="send",
        transient=reply.is_transient,
        hint=hint,
    )


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def translate(exc: BaseException, phase: Phase, job: SmtpJob) -> DmpConnectorError:
    """aiosmtplib, ssl and socket errors → ours; the one SMTP boundary.

    A failure without a reply once DATA was sent is marked not retryable: the server may
    have queued the message, and a resend could deliver it twice.
    """
    if isinstance(exc, DmpConnectorError):
        return exc
    where = f"MSSanté SMTP {job.server.host}:{job.server.port}"
    ssl_error = _ssl_cause(exc)
    if ssl_error is not None:
        if isinstance(ssl_error, ssl.SSLCertVerificationError):
            return TlsError(
                f"{where}: the server's certificate is not trusted ({ssl_error.verify_message})",
                hint="set mssante.tls.ca_bundle (or tls.ca_bundle) to your operator's CA chain (IGC-Santé)",
            )
        return TlsError(
            f"{where}: TLS failed ({getattr(ssl_error, 'reason', None) or type(ssl_error).__name__})",
            hint="check the CA bundle and, for an applicative mailbox, the client certificate the operator expects",
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPConnectError):
        return _service_error(f"{where} ({phase.value})", exc.code, exc.message)
    error: TransportError
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
        error = RequestTimeout(
            f"{where}: no answer in time during {phase.value}",
            hint=AUTH_DELAY_HINT if phase is Phase.AUTH else "raise mssante.timeout",
        )
    elif phase is Phase.AUTH and job.credentials.mode is MssanteAuthMode.CERTIFICATE:
        error = TlsError(
            f"{where}: the server closed the connection right after TLS",
            hint="it probably refused the client certificate: check mssante.tls",
        )
    elif isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError)):
        error = ConnectError(f"{where}: the connection failed during {phase.value} ({type(exc).__name__})")
    elif isinstance(exc, aiosmtplib.SMTPException):
        return ProtocolError(f"{where}: {redact_text(exc.message)}")
    else:
        return ProtocolError(f"{where}: unexpected SMTP failure ({type(exc).__name__})")
    if phase is Phase.DATA:
        error.retryable = False
        error.hint = (
            "the server may have accepted the message before the connection failed; it is not resent "
            "automatically to avoid a duplicate — check the recipient side before sending again"
        )
    return error


def expired_attempt(phase: Phase, job: SmtpJob) -> RequestTimeout:
    """The attempt's deadline (``timeouts.attempt``/``timeouts.call``) passed during ``phase``."""
    error = RequestTimeout(
        f"MSSanté SMTP {job.server.host}:{job.server.port}: the attempt's deadline passed during {phase.value}",
        hint=AUTH_DELAY_HINT
        if phase is Phase.AUTH
        else "raise timeouts.attempt and timeouts.call (or deadline(...)) for a large message on a slow link; "
        "otherwise the server is slow or stalled: try again later",
    )
    if phase is Phase.DATA:
        error.retryable = False
        error.hint = (
            "the deadline passed while the message was going out: the server may have it; it is not resent "
            "automatically to avoid a duplicate — check the recipient side before sending again"
        )
    return error


async def submit(job: SmtpJob, token: str | None, end: float | None = None) -> Submitted:
    """One submission attempt: connect, STARTTLS, authenticate, MAIL, RCPT…, DATA — all over by ``end``
    (``time.monotonic()``), whatever the server does (a reply trickled a byte at a time included)."""
    smtp = aiosmtplib.SMTP(
        hostname=job.server.host,
        port=job.server.port,
        timeout=job.timeout,
        start_tls=False,
        use_tls=False,
        local_hostname=_local_hostname(),
        tls_context=job.credentials.ssl_context,
    )
    phase = Phase.CONNECT
    async with asyncio.timeout(None if end is None else max(end - time.monotonic(), 0.0)) as scope:
        try:
            await smtp.connect(timeout=job.connect_timeout)
            await smtp.ehlo(timeout=job.connect_timeout)
            if not smtp.supports_extension("starttls"):
                raise TlsError(
                    f"the SMTP server {job.server.host}:{job.server.port} does not offer STARTTLS",
                    hint="MSSanté requires TLS: check the host and port (587) of environment.mssante_smtp",
                )
            phase = Phase.TLS
            await smtp.starttls(server_hostname=job.server.host, timeout=job.connect_timeout)
            phase = Phase.AUTH  # under TLS 1.3 a refused client certificate shows at this EHLO
            await smtp.ehlo(timeout=job.connect_timeout)
            await _authenticate(smtp, job, token)
            phase = Phase.ENVELOPE
            return await _transaction(smtp, job)
        except BaseException as exc:
            if isinstance(exc, _DataStarted):
                phase = Phase.DATA
                exc = exc.original
            _discard(smtp)
            if isinstance(exc, asyncio.CancelledError) and scope.expired():
                raise expired_attempt(phase, job) from None  # ours: asyncio.timeout lets it through
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise exc  # the original, not the _DataStarted wrapper
            error = translate(exc, phase, job)
            if error is exc:
                raise error from error.__cause__  # already ours: keep its own cause (not itself)
            # A server's reply quotes what it was given (a patient's address): kept on .text, masked, not chained.
            raise error from (None if isinstance(exc, aiosmtplib.SMTPResponseException) else exc)
    raise AssertionError("unreachable")  # pragma: no cover - the block returns or raises


def _discard(smtp: aiosmtplib.SMTP) -> None:
    """Drop a failed session at once: a graceful TLS close would need the loop to run on."""
    transport = smtp.transport
    if isinstance(transport, asyncio.Transport) and not transport.is_closing():
        transport.abort()
    smtp.close()


class _DataStarted(Exception):
    """Carries a failure that happened once DATA was sent, so that the phase is known."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


async def _authenticate(smtp: aiosmtplib.SMTP, job: SmtpJob, token: str | None) -> None:
    creds = job.credentials
    methods = {m.lower() for m in smtp.server_auth_methods}
    if creds.mode is MssanteAuthMode.XOAUTH2:
        if "xoauth2" not in methods:
            raise ProtocolError(
                "the SMTP server does not offer XOAUTH2 after STARTTLS",
                hint="check mssante.auth_mode: a server without XOAUTH2 may expect a client certificate",
            )
        assert token is not None and creds.user is not None
        xoauth2_initial_response(creds.user, token)  # validates the token's shape
        try:
            await smtp.auth_xoauth2(creds.user, token)
        except aiosmtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.code < 500:  # 454: the server cannot check the token now; not a refusal
                raise _service_error(
                    "MSSanté SMTP: authentication is temporarily unavailable",
                    exc.code,
                    exc.message,
                    hint="a temporary failure on the operator's side: try again later",
                ) from None  # the reply is on .text, masked in the message
            reply = _reply(exc.code, exc.message)
            raise MailAuthenticationError(
                f"the SMTP server refused XOAUTH2 authentication: {reply.code} {_shown(reply.text)}",
                code=str(reply.code),
                text=reply.text,
                hint="the PSC access token was refused even after a refresh",
            ) from None  # the reply is on .text, masked in the message
        return
    # Certificate mode: the TLS handshake authenticated us; SASL EXTERNAL if the server asks for it.
    if "external" in methods:
        authzid = (creds.user or "").encode("utf-8")
        response = await smtp.execute_command(
            b"AUTH", b"EXTERNAL", base64.b64encode(authzid) if authzid else b"=", timeout=job.timeout
        )
        if 400 <= response.code < 500:
            raise _service_error(
                "MSSanté SMTP: authentication is temporarily unavailable",
                response.code,
                response.message,
                hint="a temporary failure on the operator's side: try again later",
            )
        if response.code != 235:
            reply = _reply(response.code, response.message)
            raise MailAuthenticationError(
                f"the SMTP server refused EXTERNAL authentication: {reply.code} {_shown(reply.text)}",
                code=str(reply.code),
                text=reply.text,
                hint="the operator does not bind this certificate to the mailbox",
            )


def _mail_options(smtp: aiosmtplib.SMTP, job: SmtpJob, use_dsn: bool) -> list[str]:
    options: list[str] = []
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(job.content)}")
    if job.eight_bit:
        options.append("BODY=8BITMIME")
    if use_dsn and job.dsn is not None:
        if job.dsn.ret is not None:
            options.append(f"RET={job.dsn.ret.value}")
        if job.dsn.envid is not None:
            options.append(f"ENVID={xtext(job.dsn.envid)}")
    return options


def _rcpt_options(job: SmtpJob, recipient: str, use_dsn: bool) -> list[str]:
    if not use_dsn or job.dsn is None:
        return []
    order = (DsnNotify.SUCCESS, DsnNotify.FAILURE, DsnNotify.DELAY, DsnNotify.NEVER)
    options = ["NOTIFY=" + ",".join(n.value for n in order if n in job.dsn.notify)]
    if job.dsn.original_recipient:
        options.append(f"ORCPT=rfc822;{xtext(recipient)}")
    return options


def _check_extensions(smtp: aiosmtplib.SMTP, job: SmtpJob) -> bool:
    """Refuse, before MAIL, what the server said it cannot take; returns whether DSN goes along."""
    announced = smtp.esmtp_extensions.get("size", "")
    if announced.strip().isdigit() and 0 < int(announced) < len(job.content) + job.size_headroom:
        # Postfix counts the Received header it adds against SIZE and answers 552 after DATA.
        raise ValidationError(
            f"the message is {len(job.content)} bytes; the server accepts at most {int(announced)}, "
            f"trace headers included ({job.size_headroom} bytes kept for them)",
            hint="send fewer or smaller attachments",
        )
    if job.eight_bit and not smtp.supports_extension("8bitmime"):
        raise ValidationError(
            "the message has 8-bit content and the server does not announce 8BITMIME",
            hint="encode text and attachments as quoted-printable or base64",
        )
    if job.dsn is None:
        return False
    if smtp.supports_extension("dsn"):
        return True
    if job.dsn.required:
        raise ProtocolError(
            "delivery notifications were asked for but the SMTP server does not announce DSN",
            hint="send with DsnOptions(required=False) to go without them",
        )
    return False


def _access_denied(reply: SmtpReply) -> bool:
    """554 with enhanced status 5.7.1: the server's "relay/access denied" to an unauthenticated client."""
    return reply.code == 554 and reply.text.lstrip().startswith("5.7.1")


async def _transaction(smtp: aiosmtplib.SMTP, job: SmtpJob) -> Submitted:
    use_dsn = _check_extensions(smtp, job)
    try:
        await smtp.mail(job.sender, options=_mail_options(smtp, job, use_dsn))
    except aiosmtplib.SMTPSenderRefused as exc:
        if exc.code == 530:  # "authentication required": the certificate did not authenticate us
            reply = _reply(exc.code, exc.message)
            raise MailAuthenticationError(
                f"the SMTP server did not accept the connection as authenticated: {reply.code} {_shown(reply.text)}",
                code=str(reply.code),
                text=reply.text,
                hint="the operator does not bind this client certificate to a mailbox: check mssante.tls",
            ) from None  # the reply is on .text, masked in the message
        raise _service_error(
            "MSSanté SMTP: the sender was refused", exc.code, exc.message
        ) from None  # the reply is on .text, masked in the message
    statuses = []
    for recipient in job.recipients:
        try:
            response = await smtp.rcpt(recipient, options=_rcpt_options(job, recipient, use_dsn))
            statuses.append(RecipientStatus(address=recipient, reply=_reply(response.code, response.message)))
        except aiosmtplib.SMTPRecipientRefused as exc:
            statuses.append(RecipientStatus(address=recipient, reply=_reply(exc.code, exc.message)))
    accepted = [s for s in statuses if s.accepted]
    if not accepted:
        first = statuses[0].reply
        transient = all(s.reply.is_transient for s in statuses)
        _discard(smtp)  # nothing was sent; the session is over
        if job.credentials.mode is MssanteAuthMode.CERTIFICATE and all(_access_denied(s.reply) for s in statuses):
            # Postfix (permit_tls_clientcerts) takes a client certificate it does not know at
            # STARTTLS and only refuses at RCPT, 554 5.7.1: an authentication failure, not an address.
            raise MailAuthenticationError(
                f"MSSanté SMTP: every recipient was refused as access denied ({first.code} {_shown(first.text)})",
                code=str(first.code),
                text=first.text,
                hint="the operator does not accept this client certificate for sending: check mssante.tls and "
                "ask the operator to bind the certificate (its fingerprint) to the mailbox",
            )
        raise ServiceError(
            f"MSSanté SMTP: every recipient was refused ({len(statuses)}); "
            f"first answer {first.code} {_shown(first.text)}",
            service="mssante",
            code=str(first.code),
            text=first.text,
            operation="send",
            transient=transient,
            hint="check the addresses (trust space, known mailbox)" if not transient else "the server may accept later",
        )
    try:
        response = await smtp.data(job.content)
    except aiosmtplib.SMTPDataError as exc:
        # A reply came back: the server did not take the message, a resend is safe on 4xx.
        raise _service_error(
            "MSSanté SMTP: the message was refused", exc.code, exc.message
        ) from None  # the reply is on .text, masked in the message
    except BaseException as exc:
        raise _DataStarted(exc) from exc
    transport = smtp.transport
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        _discard(smtp)
    if isinstance(transport, asyncio.Transport):
        transport.abort()  # the session ended with QUIT; no need to wait for a TLS close_notify
    return Submitted(recipients=tuple(statuses), reply=_reply(response.code, response.message), dsn_requested=use_dsn)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


class LoopThread:
    """A private event loop in a daemon thread, to run the async core from sync code.

    Works whether or not the calling thread already runs an event loop (a sync
    transport used from a Jupyter cell or inside an async framework's worker).
    """

    def __init__(self, name: str = "dmpc-mail") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop and its thread; safe to call twice."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        # Let closing transports run their last callbacks before the loop stops.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_settle(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
