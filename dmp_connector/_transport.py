"""The SOAP send loops: the only module that talks to httpx.

Every national SOAP service is called the same way. An :class:`Operation` is a small
sans-I/O object (build the request, parse the answer, say whether it is safe to
repeat); :class:`BaseClient` does everything that is not I/O (envelope, MTOM, audit,
reading the answer); :class:`Client` and :class:`AsyncClient` only hold the send loop.

One logical call = one ``wsa:MessageID``, made once and reused on every attempt, so the
audit trail and the server logs line up. Audit events are emitted once per attempt,
inside the retry loop. httpx exceptions are translated here, chained with ``from``.

Every call has an end: ``timeouts.attempt`` bounds each attempt as a whole and
``timeouts.call`` the call (see :func:`deadline`). The sync client enforces the attempt's
deadline on every socket operation (a network backend that shortens each wait to what is
left); the async client with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import ClassVar, Generic, Self, TypeVar

import httpx
from lxml import etree

from ._audit_trail import AuditTrail, error_code_of
from ._deadline import (
    ATTEMPT_END,
    AttemptExpired,
    Budget,
    RetryLoop,
    bounded_timeout,
    capped_policy,
    deadline,
    deadline_transport,
    expired,
    release,
)
from ._looppool import loop_transport
from ._tls import build_ssl_context, ssl_cause
from .audit import (
    AuditEvent,
    AuditSink,
    Outcome,
    endpoint_of,
)
from .config import Environment, Settings, Timeouts, client_repr, settings_with_timeout
from .errors import (
    ConnectError,
    DmpConnectorError,
    HttpStatusError,
    LimitExceededError,
    MalformedResponseError,
    RequestTimeout,
    SoapFaultError,
    TlsError,
    TransportError,
    UnsafeXmlError,
)
from .retries import RetryPolicy, parse_retry_after
from .soap.envelope import Addressing, SoapMessage, WsSecurity, _envelope_bytes, new_message_id, parse_envelope
from .soap.mtom import Attachment, MtomPayload, MultipartRelatedParser, encode_mtom, is_multipart

__all__ = ["AsyncClient", "BaseClient", "CallContext", "Client", "Operation", "SoapRequest", "deadline"]

T = TypeVar("T")

_SOAP12 = "application/soap+xml"
_MULTIPART = "multipart/related"


@dataclass(frozen=True)
class CallContext:
    """What an operation may use to build its request: the settings and this call's id."""

    settings: Settings
    message_id: str


@dataclass(frozen=True)
class SoapRequest:
    """What an operation builds: body, extra headers, MTOM parts and audit facts.

    ``patient`` is the matricule concerned, used only to derive the audit pseudonym;
    it is never logged. ``security`` overrides the client's WS-Security for this call.
    """

    body: Sequence[etree._Element]
    headers: Sequence[etree._Element] = ()
    attachments: Sequence[Attachment] = ()
    security: WsSecurity | None = None
    patient: str | None = None
    document_ids: tuple[str, ...] = ()


class Operation(ABC, Generic[T]):
    """One SOAP operation of a national service, without I/O.

    Subclasses set the class attributes and write :meth:`endpoint`, :meth:`build` and
    :meth:`parse`. ``safe_to_repeat`` is False unless repeating the very same request
    cannot change the outcome (queries; a deposit whose unique ids make a replay
    harmless). Only such operations are retried.
    """

    service: ClassVar[str]
    """Service name used in audit events and errors: ``insi``, ``dmp`` …"""
    name: ClassVar[str]
    """Operation name used in audit events and errors."""
    action: ClassVar[str]
    """The ``wsa:Action`` (and SOAP 1.2 ``action`` media-type parameter)."""
    safe_to_repeat: ClassVar[bool] = False
    """Whether the retry policy may send it again after a transient failure."""

    @abstractmethod
    def endpoint(self, environment: Environment) -> str:
        """The URL to post to, taken from the environment (never hard-coded)."""

    @abstractmethod
    def build(self, call: CallContext) -> SoapRequest:
        """Build the request; called once per logical call, before the first attempt."""

    @abstractmethod
    def parse(self, message: SoapMessage) -> T:
        """Turn the answer into a typed result, or raise a :class:`ServiceError`."""

    def new_message_id(self, settings: Settings) -> str:
        """The ``wsa:MessageID`` of a new call (``urn:uuid:<uuid4>``); a service may want another form."""
        return new_message_id()

    def map_fault(self, fault: SoapFaultError) -> DmpConnectorError:
        """Turn a SOAP fault into the service's own error; by default the fault itself.

        A service overrides this to read its fault codes (INSi ``siram_*`` / ``insi_*``)
        and return a :class:`ServiceError`, marked ``transient`` when a retry may help.
        """
        return fault


@dataclass
class _Prepared:
    """A call ready to send: built once, sent on every attempt."""

    operation: Operation[object]
    url: str
    message_id: str
    headers: dict[str, str]
    body: bytes | None
    mtom: MtomPayload | None
    patient: str | None
    document_ids: tuple[str, ...]
    started: float = field(default_factory=time.monotonic)
    pseudonym: str | None = None
    """The patient's audit pseudonym, made at the first attempt's event and kept for the others (the same key)."""


class _ResponseReader:
    """Collects an answer chunk by chunk (MTOM parts spooled, SOAP bounded) without I/O."""

    def __init__(self, response: httpx.Response, settings: Settings, max_response_bytes: int) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "").strip()
        self.retry_after = response.headers.get("retry-after")
        self.location = response.headers.get("location")
        self.media_type = media_type_of(self.content_type)
        self._error = response.status_code >= 300
        # An error answer (a fault, an error page) is bounded on its own, far below a document's size.
        self._limit = settings.xml.max_fault_bytes if self._error else settings.xml.max_bytes
        self._received = 0
        self._parts: MultipartRelatedParser | None = None
        self._buffer = bytearray()
        if self.media_type == _MULTIPART and is_multipart(self.content_type):
            self._parts = MultipartRelatedParser(
                self.content_type,
                max_root_bytes=min(self._limit, settings.xml.max_bytes),
                max_total_bytes=settings.xml.max_fault_bytes if self._error else max_response_bytes,
                max_part_bytes=settings.xml.max_fault_bytes if self._error else settings.xml.max_attachment_bytes,
            )

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._error and self._received > self._limit:
            raise LimitExceededError(
                f"the error answer (HTTP {self.status_code}) is over the {self._limit}-byte fault limit",
                limit="xml.max_fault_bytes",
            )
        if self._parts is not None:
            self._parts.feed(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > self._limit:
            raise UnsafeXmlError(f"the answer is over the {self._limit}-byte XML limit", hint="raise xml.max_bytes")

    def abort(self) -> None:
        """Release what was spooled or buffered when the answer will not be read to the end."""
        if self._parts is not None:
            self._parts.abort()
            self._parts = None
        self._buffer = bytearray()

    def finish(self) -> tuple[bytes, dict[str, Attachment]]:
        if self._parts is not None:
            parts = self._parts.close()
            return parts.root, dict(parts.attachments)
        data, self._buffer = bytes(self._buffer), bytearray()
        return data, {}


def media_type_of(content_type: str) -> str:
    """The media type of a ``Content-Type`` value, lower-cased, without its parameters."""
    return content_type.split(";", 1)[0].strip().lower()


class BaseClient:
    """Everything the two send loops share, with no I/O: prepare, read, audit."""

    def __init__(
        self,
        settings: Settings,
        *,
        security: WsSecurity | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        max_response_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        self.security = security
        self.retry = retry if retry is not None else settings.retry
        self.max_response_bytes = max_response_bytes
        self._trail = AuditTrail(settings, audit)
        self.audit = self._trail.dispatcher
        self._pseudonymizer = self._trail.pseudonymizer
        self._actor = self._trail.actor
        self._owns_sinks = True
        # The endpoints this client posts to, parsed once (see _target): a few URLs of the environment's settings.
        self._urls: dict[str, httpx.URL] = {}
        self._endpoints: dict[str, str] = {}

    def __repr__(self) -> str:
        return client_repr(self, self.settings.environment)

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client for a call or a few with another deadline or retry policy (as httpx and openai-python do).

        ``timeout`` in seconds bounds each call with its retries (``timeouts.call``; an attempt gets no
        more, ``timeouts.attempt``), or is a whole :class:`~dmp_connector.config.Timeouts`; ``retry``
        replaces the retry policy (``RetryPolicy(max_attempts=1)``: no retry). The copy shares this
        client's connection pool, audit sinks and security; closing it closes neither, and closing
        this client ends the copy's pool too. ``client.with_options(timeout=5).send(op)``.
        """
        clone = copy.copy(self)
        clone.settings = settings_with_timeout(self.settings, timeout)
        clone.retry = retry if retry is not None else self.retry
        clone._owns_sinks = False
        clone._borrow()
        return clone

    def _borrow(self) -> None:
        """Mark a copy made by :meth:`with_options` as not owning the HTTP client."""

    def _prepare(self, operation: Operation[T]) -> _Prepared:
        message_id = operation.new_message_id(self.settings)
        url = operation.endpoint(self.settings.environment)
        request = operation.build(CallContext(settings=self.settings, message_id=message_id))
        # The envelope's bytes, spliced from text when the body and the security were written as text.
        envelope = _envelope_bytes(
            request.body,
            addressing=Addressing(action=operation.action, to=url, message_id=message_id),
            headers=request.headers,
            security=request.security or self.security,
        )
        headers = {"Accept": f"{_SOAP12}, multipart/related"}
        body: bytes | None = None
        mtom: MtomPayload | None = None
        if request.attachments:
            mtom = encode_mtom(envelope, request.attachments, action=operation.action)
            headers["Content-Type"] = mtom.content_type
            headers["Content-Length"] = str(mtom.content_length)
        else:
            body = envelope
            headers["Content-Type"] = f'{_SOAP12}; charset=utf-8; action="{operation.action}"'
        return _Prepared(
            operation=operation,  # type: ignore[arg-type]
            url=url,
            message_id=message_id,
            headers=headers,
            body=body,
            mtom=mtom,
            patient=request.patient,
            document_ids=request.document_ids,
        )

    def _target(self, url: str) -> httpx.URL:
        """``url`` parsed for httpx, once per endpoint rather than at every call (0.1 M instructions a parse)."""
        target = self._urls.get(url)
        if target is None:
            target = httpx.URL(url)
            _keep(self._urls, url, target)
        return target

    def _endpoint(self, url: str) -> str:
        """``url`` as an audit event holds it (:func:`endpoint_of`), once per endpoint."""
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = endpoint_of(url)
            _keep(self._endpoints, url, endpoint)
        return endpoint

    def _reader(self, response: httpx.Response) -> _ResponseReader:
        return _ResponseReader(response, self.settings, self.max_response_bytes)

    def _conclude(self, prepared: _Prepared, reader: _ResponseReader) -> object:
        """Turn a complete answer into the operation's result or a typed error."""
        status = reader.status_code
        name = prepared.operation.name
        service = prepared.operation.service
        soapish = reader.media_type in (_SOAP12, _MULTIPART)
        if 300 <= status < 400:
            reader.abort()
            raise HttpStatusError(
                f"{service} answered {name} with a redirect (HTTP {status}), which is never followed",
                status_code=status,
                retryable=False,
                hint="the endpoint moved or a proxy intercepts the call: set the service's final https URL in "
                "the environment settings (redirects are refused so that a request never goes where it was not sent)",
            )
        if status >= 400 and not soapish:
            reader.abort()
            raise HttpStatusError(
                f"{service} answered HTTP {status} to {name} without a SOAP message",
                status_code=status,
                retry_after=parse_retry_after(reader.retry_after),
                retryable=status in self.retry.retry_on_status,
                hint=_status_hint(status),
            )
        if not soapish:
            reader.abort()
            raise MalformedResponseError(
                f"{service} answered {name} with content type {reader.media_type[:80] or 'none'}, "
                "not a SOAP 1.2 message (application/soap+xml)",
                hint="check that the endpoint URL points at the SOAP service",
            )
        root, attachments = reader.finish()
        try:
            message = parse_envelope(root, attachments=attachments, limits=self.settings.xml, operation=name)
        except SoapFaultError as fault:
            mapped = prepared.operation.map_fault(fault)
            if mapped is fault:
                raise
            raise mapped from fault
        if status >= 300:
            raise MalformedResponseError(
                f"{prepared.operation.service} answered {name} with HTTP {status} and a SOAP message "
                "that is not a fault",
                hint="the service broke the SOAP 1.2 HTTP binding; report it with the correlation id",
            )
        return prepared.operation.parse(message)

    def _emit(
        self,
        prepared: _Prepared,
        *,
        attempt: int,
        started: float,
        error: BaseException | None,
        http_status: int | None,
    ) -> None:
        duration = time.monotonic() - started
        event = AuditEvent(
            timestamp=datetime.now(UTC) - timedelta(seconds=duration),
            service=prepared.operation.service,
            operation=prepared.operation.name,
            endpoint=self._endpoint(prepared.url),
            correlation_id=prepared.message_id,
            attempt=attempt,
            actor=self._actor,
            patient=self._pseudonym(prepared),
            document_ids=prepared.document_ids,
            outcome=Outcome.SUCCESS if error is None else Outcome.FAILURE,
            error_type=type(error).__name__ if error is not None else None,
            error_code=error_code_of(error),
            http_status=http_status,
            duration_ms=duration * 1000.0,
        )
        self.audit.emit(event)

    def _pseudonym(self, prepared: _Prepared) -> str | None:
        """The pseudonym of the call's patient, an HMAC made once per call rather than at each attempt's event."""
        if not prepared.patient:
            return None
        if prepared.pseudonym is None:
            prepared.pseudonym = self._pseudonymizer.patient(prepared.patient)
        return prepared.pseudonym

    def _retry_loop(self, operation: Operation[T], budget: Budget) -> RetryLoop:
        """The call's retry decisions (tenacity's, see :class:`RetryLoop`); no wait is begun that would end past
        the call's deadline."""
        return RetryLoop(capped_policy(self.retry, budget), safe_to_repeat=operation.safe_to_repeat)

    def _close_sinks(self) -> None:
        self._trail.close()


_KEPT_URLS = 16


def _keep(memo: dict[str, T], url: str, value: T) -> None:
    """Remember what was derived from an endpoint URL, for a client's later calls.

    Only a URL without query, fragment or user information, which could carry an identifier or a
    secret (an operation's endpoint comes from the environment's settings, the client holds them
    already), and only a few: a client posts to a handful of services.
    """
    if len(memo) < _KEPT_URLS and not ("?" in url or "#" in url or "@" in url):
        memo[url] = value


def _status_hint(status: int) -> str:
    if status == 429:
        return (
            "the service is limiting this client's rate: slow down, and wait as long as its Retry-After asks "
            "(add 429 to retry.retry_on_status to let safe calls wait and retry)"
        )
    if status >= 500:
        return "the service may be down or overloaded; try again later"
    if status in (401, 403):
        return "check the client certificate (and its rights at the service) and the endpoint URL"
    if status in (404, 405):
        return "check the endpoint URL in the environment settings"
    return "check the endpoint URL and the request"


def _expired(prepared: _Prepared, end: float) -> RequestTimeout:
    return expired(f"{prepared.operation.service} {prepared.operation.name}")


def _translate(exc: httpx.HTTPError | OSError, prepared: _Prepared, end: float | None = None) -> TransportError:
    """httpx's errors (and the socket errors some async paths let through) → ours, at this one boundary."""
    what = f"{prepared.operation.service} {prepared.operation.name}"
    if end is not None and time.monotonic() >= end - 0.01 and isinstance(exc, (httpx.TimeoutException, OSError)):
        return _expired(prepared, end)
    if isinstance(exc, httpx.ConnectTimeout):
        return RequestTimeout(
            f"{what}: could not connect to {httpx.URL(prepared.url).host} in time",
            hint="check the network, the firewall and the endpoint URL; raise timeouts.connect on a slow link",
        )
    if isinstance(exc, httpx.PoolTimeout):
        return RequestTimeout(
            f"{what}: no free connection in the pool in time",
            hint="too many calls at once for the pool: raise timeouts.pool or make fewer concurrent calls",
        )
    if isinstance(exc, httpx.WriteTimeout):
        return RequestTimeout(
            f"{what}: the service stopped reading the request", hint="raise timeouts.write or try again later"
        )
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(
            f"{what}: no answer in time ({type(exc).__name__})", hint="raise timeouts.read or try again later"
        )
    tls = ssl_cause(exc)
    if tls is not None:
        reason = getattr(tls, "reason", None) or type(tls).__name__
        return TlsError(
            f"{what}: TLS handshake failed ({reason})",
            hint="check tls.ca_bundle (the server's CA) and the client certificate the server expects",
        )
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(
            f"{what}: cannot connect to {httpx.URL(prepared.url).host}", hint="check the network and URL"
        )
    return ConnectError(f"{what}: the connection failed before an answer came ({type(exc).__name__})")


def _status_of(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, HttpStatusError) else None


class Client(BaseClient):
    """Synchronous SOAP client; the service clients (INSi, DMP) are built on it.

    Pass ``http_client`` to bring your own :class:`httpx.Client` (proxies, pools, event
    hooks); it is then yours to close, and its TLS settings are yours too.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        security: WsSecurity | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        max_response_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        super().__init__(settings, security=security, audit=audit, retry=retry, max_response_bytes=max_response_bytes)
        self._owns_http = http_client is None
        # Our transport gives each 64 KiB of a write its own write timeout; another gets the body in 64 KiB chunks.
        self._sliced_writes = http_client is None
        try:
            self._http = http_client if http_client is not None else _sync_http(settings)
        except BaseException:
            self._close_sinks()
            raise

    def send(self, operation: Operation[T]) -> T:
        """Send one operation, retrying it if it is safe to repeat, and return its result.

        The call ends by ``timeouts.call`` and each attempt by ``timeouts.attempt`` (or what
        :func:`deadline` says), in :class:`~dmp_connector.errors.RequestTimeout` at the latest.
        """
        budget = Budget.start(self.settings)
        prepared = self._prepare(operation)
        attempts = self._retry_loop(operation, budget)
        while True:
            try:
                return self._attempt(prepared, attempts.number, budget)  # type: ignore[return-value]
            except BaseException as exc:
                delay = attempts.failed(exc)
                if delay is None:
                    raise
            time.sleep(delay)

    def _attempt(self, prepared: _Prepared, number: int, budget: Budget) -> object:
        started = time.monotonic()
        status: int | None = None
        reader: _ResponseReader | None = None
        try:
            end = budget.attempt_end(f"{prepared.operation.service} {prepared.operation.name}")
            content = (
                prepared.body
                if prepared.body is not None
                else (
                    prepared.mtom._writes() if self._sliced_writes else prepared.mtom.iter_bytes()  # type: ignore[union-attr]
                )
            )
            token = ATTEMPT_END.set(end)
            try:
                with self._http.stream(
                    "POST",
                    self._target(prepared.url),
                    content=content,
                    headers=prepared.headers,
                    timeout=bounded_timeout(self._http, end),
                ) as response:
                    status = response.status_code
                    reader = self._reader(response)
                    for chunk in response.iter_bytes():
                        reader.feed(chunk)
                        if time.monotonic() > end:
                            raise AttemptExpired
            except AttemptExpired:
                raise _expired(prepared, end) from None
            except (httpx.HTTPError, OSError) as exc:  # ssl.SSLError is an OSError
                raise _translate(exc, prepared, end) from exc
            finally:
                ATTEMPT_END.reset(token)
            result = self._conclude(prepared, reader)
        except DmpConnectorError as exc:
            exc.attempts = number
            if reader is not None:
                reader.abort()
            reader = None
            release(exc)
            self._emit(prepared, attempt=number, started=started, error=exc, http_status=status or _status_of(exc))
            raise
        except BaseException as exc:  # a cancelled attempt may have reached the service: it is audited too
            if reader is not None:
                reader.abort()
            reader = None
            self._emit(prepared, attempt=number, started=started, error=exc, http_status=status)
            raise
        self._emit(prepared, attempt=number, started=started, error=None, http_status=status)
        return result

    def _borrow(self) -> None:
        self._owns_http = False

    def close(self) -> None:
        """Close the HTTP client if this object created it, and the audit file."""
        if self._owns_http:
            self._http.close()
        if self._owns_sinks:
            self._close_sinks()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(BaseClient):
    """Asynchronous twin of :class:`Client`, same constructor and behaviour."""

    build_in_thread: bool = True
    """Build (and sign) each request in a worker thread, so that a signer waiting on a smart card or an
    HSM does not stall the event loop. A client whose signing is quick and in memory (a
    :class:`~dmp_connector.signature.FileSigner`) may turn it off: the thread hop costs more than it saves."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        security: WsSecurity | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        max_response_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        super().__init__(settings, security=security, audit=audit, retry=retry, max_response_bytes=max_response_bytes)
        self._owns_http = http_client is None
        # Our transport gives each 64 KiB of a write its own write timeout; another gets the body in 64 KiB chunks.
        self._sliced_writes = http_client is None
        try:
            self._http = http_client if http_client is not None else _async_http(settings)
        except BaseException:
            self._close_sinks()
            raise

    async def send(self, operation: Operation[T]) -> T:
        """Send one operation, retrying it if it is safe to repeat, and return its result.

        The request is built in a worker thread (see :attr:`build_in_thread`): building signs it
        (the VIHF), which takes a smart card its time and must not stall the event loop.
        """
        budget = Budget.start(self.settings)
        if self.build_in_thread:
            prepared = await asyncio.to_thread(self._prepare, operation)
        else:
            prepared = self._prepare(operation)
        attempts = self._retry_loop(operation, budget)
        while True:
            try:
                return await self._attempt(prepared, attempts.number, budget)  # type: ignore[return-value]
            except BaseException as exc:
                delay = attempts.failed(exc)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    async def _attempt(self, prepared: _Prepared, number: int, budget: Budget) -> object:
        started = time.monotonic()
        status: int | None = None
        reader: _ResponseReader | None = None
        try:
            end = budget.attempt_end(f"{prepared.operation.service} {prepared.operation.name}")
            content = (
                prepared.body
                if prepared.body is not None
                else (
                    prepared.mtom._awrites() if self._sliced_writes else prepared.mtom.aiter_bytes()  # type: ignore[union-attr]
                )
            )
            try:
                async with asyncio.timeout(end - time.monotonic()):
                    async with self._http.stream(
                        "POST",
                        self._target(prepared.url),
                        content=content,
                        headers=prepared.headers,
                        timeout=bounded_timeout(self._http, end),
                    ) as response:
                        status = response.status_code
                        reader = self._reader(response)
                        async for chunk in response.aiter_bytes():
                            reader.feed(chunk)
            except TimeoutError:
                raise _expired(prepared, end) from None
            except (httpx.HTTPError, OSError) as exc:  # ssl.SSLError is an OSError
                raise _translate(exc, prepared, end) from exc
            result = self._conclude(prepared, reader)
        except DmpConnectorError as exc:
            exc.attempts = number
            if reader is not None:
                reader.abort()
            reader = None
            release(exc)
            self._emit(prepared, attempt=number, started=started, error=exc, http_status=status or _status_of(exc))
            raise
        except BaseException as exc:  # a cancelled attempt may have reached the service: it is audited too
            if reader is not None:
                reader.abort()
            reader = None
            self._emit(prepared, attempt=number, started=started, error=exc, http_status=status)
            raise
        self._emit(prepared, attempt=number, started=started, error=None, http_status=status)
        return result

    def _borrow(self) -> None:
        self._owns_http = False

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it, and the audit file."""
        if self._owns_http:
            await self._http.aclose()
        if self._owns_sinks:
            self._close_sinks()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=5.0)
"""The pool of the HTTP clients we create: every connection may stay open for the next call (5 s idle at most).

httpx keeps only 20 idle connections by default. With more calls in flight — 32 concurrent
deposits — the connections beyond 20 were closed as their answers came and opened again for the
next calls: a mutual-TLS handshake each, and against a server with a short listen backlog a burst
of new connections whose dropped SYNs cost a full second (the 1.2 s p95 of the deposit benchmark).
"""


def _http_options(settings: Settings) -> tuple[ssl.SSLContext, httpx.Timeout]:
    """The TLS context (always verifying) and timeouts of the HTTP client we create."""
    t = settings.timeouts
    return build_ssl_context(settings.tls), httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)


_SET_COOKIE = frozenset({b"set-cookie", b"set-cookie2"})


class _Cookies(httpx.Cookies):
    """The cookie jar of the HTTP clients we create: an answer that sets no cookie is not handed to it.

    httpx gives every answer to :class:`http.cookiejar.CookieJar`, through a urllib request and an
    email message built for the purpose (0.2 M instructions per call), which finds no ``Set-Cookie``
    in a SOAP answer and returns. An answer that sets one (a load balancer's sticky session) is
    read as before, and the cookie goes with the next requests.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        for name, _ in response.headers.raw:
            # What the email message would find (its names compared lower-cased, as str: a non-ASCII name
            # may lower to ASCII, so it goes the whole way).
            if name.lower() in _SET_COOKIE or not name.isascii():
                super().extract_cookies(response)
                return


def _sync_http(settings: Settings) -> httpx.Client:
    verify, timeout = _http_options(settings)
    # A transport whose network backend holds every socket wait to the attempt's deadline.
    http = httpx.Client(transport=deadline_transport(verify, _LIMITS), timeout=timeout, follow_redirects=False)
    http._cookies = _Cookies()  # httpx's setter would copy it into a plain jar
    return http


def _async_http(settings: Settings) -> httpx.AsyncClient:
    verify, timeout = _http_options(settings)
    # A transport whose connections are non-blocking TLS sockets waited on by the event loop (see _loopnet).
    http = httpx.AsyncClient(transport=loop_transport(verify, _LIMITS), timeout=timeout, follow_redirects=False)
    http._cookies = _Cookies()  # httpx's setter would copy it into a plain jar
    return http
