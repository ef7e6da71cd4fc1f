"""The MSSanté mail transport: SMTP submission and IMAP reading, sync and async.

This is the thin I/O shell of the MSSanté package. It knows nothing about MSSanté
content (subjects, ``X-MSS-*`` headers, XDM): it sends an RFC 5322
:class:`~email.message.EmailMessage` built elsewhere and hands back raw RFC 822 bytes
for others to parse, so that building and parsing stay pure and testable.

Both transports speak to the operator the way the MSSanté "API LPS" asks: SMTP
submission and IMAP4 on plain ports upgraded with **STARTTLS** (refused if the server
does not offer it), TLS ≥ 1.2 with the server always verified, then either the
organisation's client certificate (applicative mailbox) or SASL **XOAUTH2** with a Pro
Santé Connect access token (personal/organisational mailbox), refreshed once when the
server refuses it.

Every attempt emits one :class:`~dmp_connector.audit.AuditEvent` (service
``mssante``), inside the retry loop, as the SOAP transport does. A send is repeated
only while the server certainly has not accepted the message: see :class:`MailTransport`.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from types import TracebackType
from typing import Any, Self, TypeVar

import tenacity

from dmp_connector._audit_trail import AuditTrail, error_code_of
from dmp_connector._deadline import Budget, capped_policy
from dmp_connector.audit import (
    AuditEvent,
    AuditSink,
    Outcome,
    endpoint_of,
)
from dmp_connector.config import MssanteAuthMode, Settings, Timeouts, settings_with_timeout
from dmp_connector.errors import ConfigurationError, DmpConnectorError, RequestTimeout, ValidationError
from dmp_connector.retries import RetryPolicy, tenacity_kwargs

from ._imap import ImapSession
from ._mail import (
    DsnNotify,
    DsnOptions,
    DsnReturn,
    MailSummary,
    RecipientStatus,
    SendResult,
    SmtpReply,
    patient_matricule,
    redact_address,
)
from ._smtp import LoopThread, SmtpJob, Submitted, submit
from .auth import (
    AsyncTokenProvider,
    MailCredentials,
    TokenProvider,
    get_token,
    get_token_async,
    mail_credentials,
    with_refresh,
    with_refresh_async,
)

__all__ = [
    "AsyncMailTransport",
    "DsnNotify",
    "DsnOptions",
    "DsnReturn",
    "MailSummary",
    "MailTransport",
    "RecipientStatus",
    "SendResult",
    "SmtpReply",
    "redact_address",
]


T = TypeVar("T")

_IDLE_CHECK_SECONDS = 30.0
"""A held IMAP connection idle for longer is checked with NOOP before use (servers drop idle ones)."""


@dataclass(frozen=True)
class _PreparedSend:
    job: SmtpJob
    message_id: str
    patient: str | None
    document_ids: tuple[str, ...]


class _Attempts:
    """Numbers the audited attempts of one call: retries and the token refresh both count."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return self.count


def _check_address(address: str, role: str) -> str:
    value = address.strip()
    if (
        value.count("@") != 1
        or not value.isascii()
        or any(c in value for c in "<>\r\n \t,;")
        or value.startswith("@")
        or value.endswith("@")
    ):
        raise ValidationError(
            f"the {role} is not a plain e-mail address", hint="give the bare address, no display name"
        )
    return value


def _strip_bcc(content: bytes) -> bytes:
    """Remove ``Bcc`` from the transmitted header block (its recipients are only in the envelope)."""
    end = content.find(b"\r\n\r\n")
    if end < 0:
        return content
    lines = content[:end].split(b"\r\n")
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line[:4].lower() == b"bcc:"
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + content[end:]


class _ImapSlot:
    """The held IMAP connection and its lock, shared by a transport and its :meth:`~_MailBase.with_options` copies."""

    def __init__(self) -> None:
        self.session: ImapSession | None = None
        self.lock = threading.Lock()


class _MailBase:
    """What the two shells share, with no I/O: settings, credentials, preparation, audit."""

    def __init__(
        self,
        settings: Settings,
        *,
        token_provider: TokenProvider | AsyncTokenProvider | None,
        audit: Iterable[AuditSink],
        retry: RetryPolicy | None,
    ) -> None:
        self.settings = settings
        self.retry = retry if retry is not None else settings.retry
        self._credentials: MailCredentials = mail_credentials(settings)
        if self._credentials.mode is MssanteAuthMode.XOAUTH2 and token_provider is None:
            raise ConfigurationError(
                "MSSanté XOAUTH2 authentication needs a token provider",
                hint="pass token_provider= (an object with get_token(force_refresh) returning the PSC access token)",
            )
        self._token_provider = token_provider if self._credentials.mode is MssanteAuthMode.XOAUTH2 else None
        self._trail = AuditTrail(settings, audit)
        self.audit = self._trail.dispatcher
        self._pseudonymizer = self._trail.pseudonymizer
        self._actor = self._trail.actor
        self._slot = _ImapSlot()
        self._owner = True

    @property
    def _imap_lock(self) -> threading.Lock:
        return self._slot.lock

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This transport for a call or a few with another deadline or retry policy.

        ``timeout`` in seconds bounds each call with its retries (``timeouts.call``), or is a whole
        :class:`~dmp_connector.config.Timeouts`; ``retry`` replaces the retry policy. The copy shares
        this transport's IMAP connection, SMTP loop, token provider and audit sinks; closing it closes
        none of them.
        """
        clone = copy.copy(self)
        clone.settings = settings_with_timeout(self.settings, timeout)
        clone.retry = retry if retry is not None else self.retry
        clone._owner = False
        return clone

    @property
    def _refreshable(self) -> bool:
        return self._token_provider is not None

    def _prepare_send(
        self,
        message: EmailMessage,
        sender: str,
        recipients: Sequence[str],
        dsn: DsnOptions | None,
        patient: str | None,
        document_ids: Sequence[str],
    ) -> _PreparedSend:
        server = self.settings.environment.require_smtp()
        envelope_from = _check_address(sender, "sender")
        envelope_to: list[str] = []
        for recipient in recipients:
            address = _check_address(recipient, "recipient")
            if address.lower() not in (a.lower() for a in envelope_to):
                envelope_to.append(address)
        if not envelope_to:
            raise ValidationError("a message needs at least one recipient")
        if message["Message-ID"] is None:
            message["Message-ID"] = make_msgid(domain=envelope_from.rsplit("@", 1)[1])
        message_id = str(message["Message-ID"]).strip()
        content = _strip_bcc(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
        limit = self.settings.mssante.max_message_bytes
        if len(content) > limit:
            raise ValidationError(
                f"the message is {len(content)} bytes, over the {limit}-byte limit",
                hint="send fewer or smaller attachments (25 MB at most towards Mon espace santé)",
            )
        if patient is None:
            matricules = {m for m in (patient_matricule(a) for a in envelope_to) if m is not None}
            patient = matricules.pop() if len(matricules) == 1 else None
        mss = self.settings.mssante
        job = SmtpJob(
            server=server,
            credentials=self._credentials,
            connect_timeout=mss.connect_timeout,
            timeout=mss.timeout,
            sender=envelope_from,
            recipients=tuple(envelope_to),
            content=content,
            dsn=dsn,
            eight_bit=not content.isascii(),
            size_headroom=mss.size_headroom_bytes,
        )
        return _PreparedSend(job=job, message_id=message_id, patient=patient, document_ids=tuple(document_ids))

    def _session(self) -> ImapSession:
        with self._imap_lock:
            if self._slot.session is None:
                mss = self.settings.mssante
                self._slot.session = ImapSession(
                    self.settings.environment.require_imap(),
                    self._credentials,
                    connect_timeout=mss.connect_timeout,
                    timeout=mss.timeout,
                    max_fetch_bytes=mss.max_fetch_bytes,
                    max_header_bytes=mss.max_header_bytes,
                )
            return self._slot.session

    @property
    def uid_validities(self) -> dict[str, int]:
        """UIDVALIDITY of each folder selected on the held connection (no I/O): with a UID it names a
        message for good."""
        session = self._slot.session
        return dict(session.uid_validity) if session is not None else {}

    def _needs_open(self, session: ImapSession) -> bool:
        """True when the session must be (re)opened; a long-idle one is checked with NOOP first."""
        if session.is_open and time.monotonic() - session.last_used > _IDLE_CHECK_SECONDS:
            session.alive()
        return not session.is_open

    def _emit(
        self,
        *,
        operation: str,
        endpoint: str,
        correlation_id: str,
        attempt: int,
        started: float,
        error: BaseException | None,
        patient: str | None = None,
        document_ids: tuple[str, ...] = (),
    ) -> None:
        if isinstance(error, DmpConnectorError):
            error.attempts = attempt
        duration = time.monotonic() - started
        self.audit.emit(
            AuditEvent(
                timestamp=datetime.now(UTC) - timedelta(seconds=duration),
                service="mssante",
                operation=operation,
                endpoint=endpoint_of(endpoint),
                correlation_id=correlation_id,
                attempt=attempt,
                actor=self._actor,
                patient=self._pseudonymizer.patient(patient) if patient else None,
                document_ids=document_ids,
                outcome=Outcome.SUCCESS if error is None else Outcome.FAILURE,
                error_type=type(error).__name__ if error is not None else None,
                error_code=error_code_of(error),
                duration_ms=duration * 1000.0,
            )
        )

    def _result(self, prepared: _PreparedSend, submitted: Submitted) -> SendResult:
        return SendResult(
            message_id=prepared.message_id,
            recipients=submitted.recipients,
            reply=submitted.reply,
            dsn_requested=submitted.dsn_requested,
        )

    def _retrying(self, budget: Budget) -> dict[str, Any]:
        """tenacity's arguments; no wait is begun that would end past the call's deadline."""
        return tenacity_kwargs(capped_policy(self.retry, budget), safe_to_repeat=True)

    def _close_sinks(self) -> None:
        self._trail.close()


class _TokenNeeded(Exception):
    """The IMAP worker found it must reconnect and holds no token: fetch one and come back."""


def _call_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


class MailTransport(_MailBase):
    """Synchronous MSSanté transport: SMTP submission and IMAP reading for one mailbox.

    Settings come from ``settings.environment.mssante_smtp`` / ``mssante_imap`` and
    ``settings.mssante``; in XOAUTH2 mode give a ``token_provider``. The IMAP
    connection is opened on first use and kept until :meth:`close`; each send opens
    its own SMTP session (a PSC token lives minutes, a send is rare).

    Retries follow ``settings.retry`` (or ``retry``): connection failures, timeouts and
    temporary 4xx replies are repeated, but a send only while the server certainly
    has not taken the message. Once the message body has started to go out after
    ``DATA``, a lost connection or a missing answer is *not* retried: the server may
    have queued the mail, and sending it again would deliver it twice to a health
    professional's or a patient's mailbox. A 4xx answer to the end of DATA is a clear
    "not accepted" and is retried.

    The SMTP dialogue is the async core of :mod:`._smtp`, run on a private event loop
    thread; IMAP is imaplib, run in the calling thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        token_provider: TokenProvider | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, token_provider=token_provider, audit=audit, retry=retry)
        self._loop = LoopThread()

    def _token(self, force_refresh: bool) -> str | None:
        provider = self._token_provider
        if provider is None:
            return None
        assert isinstance(provider, TokenProvider)
        return get_token(provider, force_refresh)

    def send(
        self,
        message: EmailMessage,
        *,
        sender: str,
        recipients: Sequence[str],
        dsn: DsnOptions | None = None,
        patient: str | None = None,
        document_ids: Sequence[str] = (),
    ) -> SendResult:
        """Submit ``message`` to ``recipients`` (the envelope; headers are not read for it).

        The message gets a ``Message-ID`` if it has none; ``Bcc`` is not transmitted.
        ``patient`` is the matricule of the patient the message is about, used only for
        the audit pseudonym; without it a single ``…@patient.mssante.fr`` recipient is
        used. ``document_ids`` (the documents' unique ids) go to the audit event.

        Raises :class:`ServiceError` (``service="mssante"``, ``code`` = the SMTP code)
        when the server refuses the sender, every recipient or the content;
        :class:`ValidationError` when the message is over the size limit;
        :class:`TlsError` when STARTTLS is not offered or TLS fails;
        :class:`MailAuthenticationError` when the credentials are refused.
        """
        budget = Budget.start(self.settings)
        prepared = self._prepare_send(message, sender, recipients, dsn, patient, document_ids)
        attempts = _Attempts()
        result: SendResult | None = None
        try:
            for attempt in tenacity.Retrying(**self._retrying(budget)):
                with attempt:
                    result = with_refresh(
                        lambda force: self._send_attempt(prepared, attempts, force, budget),
                        refreshable=self._refreshable,
                        budget=budget,
                        reserve=self.settings.mssante.auth_failure_delay,
                    )
        except DmpConnectorError as exc:
            exc.attempts = attempts.count  # the token refresh counts as an attempt, not only tenacity's
            raise
        assert result is not None
        return replace(result, attempts=attempts.count)

    def _send_attempt(
        self, prepared: _PreparedSend, attempts: _Attempts, force_refresh: bool, budget: Budget
    ) -> SendResult:
        number = attempts.next()
        started = time.monotonic()
        facts = {
            "operation": "send",
            "endpoint": prepared.job.endpoint,
            "correlation_id": prepared.message_id,
            "attempt": number,
            "patient": prepared.patient,
            "document_ids": prepared.document_ids,
        }
        try:
            end = budget.attempt_end("MSSanté send")
            token = self._token(force_refresh)
            result = self._result(prepared, self._loop.run(submit(prepared.job, token, end)))
        except Exception as exc:
            self._emit(started=started, error=exc, **facts)  # type: ignore[arg-type]
            raise
        self._emit(started=started, error=None, **facts)  # type: ignore[arg-type]
        return result

    def _imap_call(self, operation: str, action: Callable[[ImapSession], T]) -> T:
        budget = Budget.start(self.settings)
        correlation_id = _call_id()
        attempts = _Attempts()
        session = self._session()
        result: T | None = None

        def once(force_refresh: bool) -> T:
            number = attempts.next()
            started = time.monotonic()
            try:
                end = budget.attempt_end(f"MSSanté {operation}")
                with self._imap_lock, session.until(end):
                    if self._needs_open(session):
                        session.open(self._token(force_refresh))
                    value = action(session)
            except Exception as exc:
                self._emit(
                    operation=operation,
                    endpoint=session.endpoint,
                    correlation_id=correlation_id,
                    attempt=number,
                    started=started,
                    error=exc,
                )
                raise
            self._emit(
                operation=operation,
                endpoint=session.endpoint,
                correlation_id=correlation_id,
                attempt=number,
                started=started,
                error=None,
            )
            return value

        try:
            for attempt in tenacity.Retrying(**self._retrying(budget)):
                with attempt:
                    result = with_refresh(
                        once,
                        refreshable=self._refreshable,
                        budget=budget,
                        reserve=self.settings.mssante.auth_failure_delay,
                    )
        except DmpConnectorError as exc:
            exc.attempts = attempts.count
            raise
        return result  # type: ignore[return-value]

    def list_messages(self, folder: str = "INBOX", *, unseen_only: bool = True) -> list[MailSummary]:
        """The messages of ``folder`` (unread ones by default), oldest first, without downloading them."""
        return self._imap_call("list", lambda s: s.list_messages(folder, unseen_only))

    def fetch(self, uid: int, folder: str = "INBOX") -> bytes:
        """The whole message as RFC 822 bytes, without setting ``\\Seen`` (call :meth:`mark_seen` once processed).

        Refused unread when larger than ``settings.mssante.max_fetch_bytes``.
        """
        return self._imap_call("fetch", lambda s: s.fetch(uid, folder))

    def mark_seen(self, uid: int, folder: str = "INBOX") -> None:
        """Set ``\\Seen`` on a message."""
        self._imap_call("mark_seen", lambda s: s.mark_seen(uid, folder))

    def move(self, uid: int, target_folder: str, folder: str = "INBOX", *, create: bool = True) -> None:
        """Move a message to ``target_folder`` (UID MOVE), creating that folder first if needed and ``create``.

        Repeating a move that went through is harmless (the UID is gone from the source),
        so it is retried like a read.
        """
        self._imap_call("move", lambda s: s.move(uid, target_folder, folder, create))

    def close(self) -> None:
        """Log out of IMAP and release the transport's resources; safe to call twice.

        A copy made by :meth:`with_options` closes nothing: the transport it came from does."""
        if not self._owner:
            return
        with self._imap_lock:
            if self._slot.session is not None:
                self._slot.session.close()
        self._loop.close()
        self._close_sinks()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncMailTransport(_MailBase):
    """Asynchronous twin of :class:`MailTransport`: same constructor, methods and behaviour.

    SMTP runs on the caller's event loop (aiosmtplib); IMAP runs the same imaplib core
    in a worker thread (:func:`asyncio.to_thread`), because no asyncio IMAP client
    offers STARTTLS. The token provider may be sync (called in a thread) or async.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        token_provider: TokenProvider | AsyncTokenProvider | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, token_provider=token_provider, audit=audit, retry=retry)

    async def _token(self, force_refresh: bool, end: float | None = None) -> str | None:
        provider = self._token_provider
        if provider is None:
            return None
        if end is None:
            return await get_token_async(provider, force_refresh)
        try:
            async with asyncio.timeout(max(end - time.monotonic(), 0.0)):
                return await get_token_async(provider, force_refresh)
        except TimeoutError:
            raise RequestTimeout(
                "MSSanté: the token provider gave no token within the attempt's deadline",
                hint="check the provider's own calls (Pro Santé Connect); raise timeouts.attempt or timeouts.call",
            ) from None

    async def send(
        self,
        message: EmailMessage,
        *,
        sender: str,
        recipients: Sequence[str],
        dsn: DsnOptions | None = None,
        patient: str | None = None,
        document_ids: Sequence[str] = (),
    ) -> SendResult:
        """See :meth:`MailTransport.send`."""
        budget = Budget.start(self.settings)
        prepared = self._prepare_send(message, sender, recipients, dsn, patient, document_ids)
        attempts = _Attempts()
        result: SendResult | None = None
        try:
            async for attempt in tenacity.AsyncRetrying(**self._retrying(budget)):
                with attempt:
                    result = await with_refresh_async(
                        lambda force: self._send_attempt(prepared, attempts, force, budget),
                        refreshable=self._refreshable,
                        budget=budget,
                        reserve=self.settings.mssante.auth_failure_delay,
                    )
        except DmpConnectorError as exc:
            exc.attempts = attempts.count
            raise
        assert result is not None
        return replace(result, attempts=attempts.count)

    async def _send_attempt(
        self, prepared: _PreparedSend, attempts: _Attempts, force_refresh: bool, budget: Budget
    ) -> SendResult:
        number = attempts.next()
        started = time.monotonic()
        facts = {
            "operation": "send",
            "endpoint": prepared.job.endpoint,
            "correlation_id": prepared.message_id,
            "attempt": number,
            "patient": prepared.patient,
            "document_ids": prepared.document_ids,
        }
        try:
            end = budget.attempt_end("MSSanté send")
            token = await self._token(force_refresh, end)
            result = self._result(prepared, await submit(prepared.job, token, end))
        except Exception as exc:
            self._emit(started=started, error=exc, **facts)  # type: ignore[arg-type]
            raise
        self._emit(started=started, error=None, **facts)  # type: ignore[arg-type]
        return result

    async def _imap_call(self, operation: str, action: Callable[[ImapSession], T]) -> T:
        budget = Budget.start(self.settings)
        correlation_id = _call_id()
        attempts = _Attempts()
        session = self._session()
        result: T | None = None

        def in_thread(token: str | None, end: float) -> T:
            # The thread cannot be cancelled: every wait in it ends by the attempt's deadline instead.
            with self._imap_lock, session.until(end):
                if self._needs_open(session):
                    if token is None and self._token_provider is not None:
                        raise _TokenNeeded
                    session.open(token)
                return action(session)

        async def once(force_refresh: bool) -> T:
            number = attempts.next()
            started = time.monotonic()
            try:
                end = budget.attempt_end(f"MSSanté {operation}")
                # Ask the provider only when a connection will be opened (it may call PSC).
                token = None
                if self._token_provider is not None and (force_refresh or not session.is_open):
                    token = await self._token(force_refresh, end)
                try:
                    value = await asyncio.to_thread(in_thread, token, end)
                except _TokenNeeded:  # the held connection had gone stale
                    value = await asyncio.to_thread(in_thread, await self._token(force_refresh, end), end)
            except Exception as exc:
                self._emit(
                    operation=operation,
                    endpoint=session.endpoint,
                    correlation_id=correlation_id,
                    attempt=number,
                    started=started,
                    error=exc,
                )
                raise
            self._emit(
                operation=operation,
                endpoint=session.endpoint,
                correlation_id=correlation_id,
                attempt=number,
                started=started,
                error=None,
            )
            return value

        try:
            async for attempt in tenacity.AsyncRetrying(**self._retrying(budget)):
                with attempt:
                    result = await with_refresh_async(
                        once,
                        refreshable=self._refreshable,
                        budget=budget,
                        reserve=self.settings.mssante.auth_failure_delay,
                    )
        except DmpConnectorError as exc:
            exc.attempts = attempts.count
            raise
        return result  # type: ignore[return-value]

    async def list_messages(self, folder: str = "INBOX", *, unseen_only: bool = True) -> list[MailSummary]:
        """See :meth:`MailTransport.list_messages`."""
        return await self._imap_call("list", lambda s: s.list_messages(folder, unseen_only))

    async def fetch(self, uid: int, folder: str = "INBOX") -> bytes:
        """See :meth:`MailTransport.fetch`."""
        return await self._imap_call("fetch", lambda s: s.fetch(uid, folder))

    async def mark_seen(self, uid: int, folder: str = "INBOX") -> None:
        """See :meth:`MailTransport.mark_seen`."""
        await self._imap_call("mark_seen", lambda s: s.mark_seen(uid, folder))

    async def move(self, uid: int, target_folder: str, folder: str = "INBOX", *, create: bool = True) -> None:
        """See :meth:`MailTransport.move`."""
        await self._imap_call("move", lambda s: s.move(uid, target_folder, folder, create))

    async def aclose(self) -> None:
        """See :meth:`MailTransport.close`."""
        if not self._owner:
            return

        def close() -> None:
            with self._imap_lock:
                if self._slot.session is not None:
                    self._slot.session.close()

        await asyncio.to_thread(close)
        self._close_sinks()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
