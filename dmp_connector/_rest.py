"""JSON over HTTPS (GET, and form POST for OAuth): the second and last module that talks to httpx.

Some national services are REST, not SOAP — the Annuaire Santé FHIR API first. They get
the same guarantees as the SOAP transport, in a much smaller loop: one correlation id per
logical call, the shared retry policy (a GET is safe to repeat; ``429 Too Many Requests``
is retried too, after its ``Retry-After``), one audit event per attempt, a bound on the
answer's size, and httpx's errors translated into ours here, chained with ``from``.

Secrets such as an API key travel in ``secret_headers``: they are sent, never audited.
A form body (``form``: an OAuth grant, a client secret) is sent and never audited either.
An OAuth endpoint answers its refusals as JSON with a 400/401 (``{"error": "authorization_pending"}``):
``error_statuses`` lists the statuses whose JSON body is returned to the caller instead of raised.
A POST is retried only when the request says it is ``safe_to_repeat`` (an authorisation code is single use).
A :class:`TokenBucket` may be given to keep under a service's rate limit; it is consulted
before every attempt, retries included.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import tenacity

from ._audit_trail import AuditTrail, error_code_of
from ._deadline import ATTEMPT_END, AttemptExpired, Budget, bounded_timeout, capped_policy, deadline_transport, expired
from ._tls import build_ssl_context, ssl_cause
from .audit import (
    AuditEvent,
    AuditSink,
    Outcome,
    endpoint_of,
)
from .config import Settings, TlsCredentials
from .errors import (
    ConnectError,
    DmpConnectorError,
    HttpStatusError,
    MalformedResponseError,
    RequestTimeout,
    TlsError,
    TransportError,
)
from .retries import RetryPolicy, parse_retry_after, tenacity_kwargs

__all__ = ["AsyncRestClient", "JsonObject", "RestClient", "RestRequest", "TokenBucket"]

JsonObject = dict[str, Any]
"""A decoded JSON object."""

_JSON_TYPES = ("application/json", "application/fhir+json", "application/jwk-set+json")
_TOO_MANY_REQUESTS = 429


class TokenBucket:
    """At most ``rate`` requests per second on average, with bursts of up to ``capacity``.

    :meth:`reserve` takes one token and says how long to wait before using it; sync and
    async callers sleep their own way, so one bucket serves both. Thread-safe. ``clock``
    is for tests.
    """

    def __init__(self, rate: float, *, capacity: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity) if capacity is not None else max(1.0, float(rate))
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, capacity={self.capacity})"

    def reserve(self) -> float:
        """Take a token; the seconds to wait before the request may go (0 when one was free)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate


@dataclass(frozen=True)
class RestRequest:
    """One logical GET: where, what, and the facts its audit events carry."""

    service: str
    """Service name for audit events and errors: ``annuaire`` …"""
    operation: str
    """Operation name for audit events and errors: ``practitioner-search`` …"""
    url: str
    """Absolute URL; query parameters go in ``params``."""
    params: Mapping[str, str | Sequence[str]] | None = None
    """Query parameters (a list repeats the parameter)."""
    headers: Mapping[str, str] | None = None
    """Extra headers, audited as sent (none of them secret)."""
    secret_headers: Mapping[str, str] | None = None
    """Headers holding secrets (an API key): sent, never audited nor put in errors."""
    method: Literal["GET", "POST"] = "GET"
    """``POST`` sends ``form`` form-encoded."""
    form: Mapping[str, str] | None = None
    """Form fields of a POST (grants, tokens, client secrets): sent, never audited nor put in errors."""
    safe_to_repeat: bool = True
    """Whether the retry policy may send it again (a GET is; an authorisation-code exchange is not)."""
    error_statuses: frozenset[int] = frozenset()
    """Statuses whose JSON body is returned rather than raised (OAuth's ``{"error": …}`` answers)."""
    expect_json: bool = True
    """False for an answer whose body is not read (a logout's 204 or redirect): ``{}`` is returned."""


class _RestBase:
    """Audit, retry policy and answer reading shared by the two clients, without I/O."""

    def __init__(
        self,
        settings: Settings,
        *,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        throttle: TokenBucket | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        base = retry if retry is not None else settings.retry
        self.retry = base.model_copy(update={"retry_on_status": base.retry_on_status | {_TOO_MANY_REQUESTS}})
        self.throttle = throttle
        self.max_response_bytes = max_response_bytes
        self._trail = AuditTrail(settings, audit)
        self.audit = self._trail.dispatcher
        self._pseudonymizer = self._trail.pseudonymizer
        self._actor = self._trail.actor

    def _headers(self, request: RestRequest) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json, application/json"}
        headers.update(request.headers or {})
        headers.update(request.secret_headers or {})
        return headers

    def _emit(
        self,
        request: RestRequest,
        correlation_id: str,
        attempt: int,
        started: float,
        error: BaseException | None,
        status: int | None,
    ) -> None:
        if status is None and isinstance(error, HttpStatusError):
            status = error.status_code
        duration = time.monotonic() - started
        self.audit.emit(
            AuditEvent(
                timestamp=datetime.now(UTC) - timedelta(seconds=duration),
                service=request.service,
                operation=request.operation,
                endpoint=endpoint_of(request.url),
                correlation_id=correlation_id,
                attempt=attempt,
                actor=self._actor,
                outcome=Outcome.SUCCESS if error is None and (status is None or status < 400) else Outcome.FAILURE,
                error_type=type(error).__name__ if error is not None else None,
                error_code=error_code_of(error),
                http_status=status,
                duration_ms=duration * 1000.0,
            )
        )

    def _check_status(self, request: RestRequest, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400 or status in request.error_statuses:
            return
        if status in (401, 403):
            hint = "check the API key (directory.api_key) and that its application is subscribed to this API"
        elif status == _TOO_MANY_REQUESTS:
            hint = "the service's rate limit was hit; lower the request rate"
        elif status >= 500:
            hint = "the service may be down or overloaded; try again later"
        else:
            hint = "check the request's URL and parameters"
        raise HttpStatusError(
            f"{request.service} answered HTTP {status} to {request.operation}",
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            retryable=status in self.retry.retry_on_status,
            hint=hint,
        )

    def _decode(self, request: RestRequest, response: httpx.Response, body: bytes) -> JsonObject:
        if not request.expect_json:
            return {}
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in _JSON_TYPES:
            raise MalformedResponseError(
                f"{request.service} answered {request.operation} with content type {media_type or 'none'}, not JSON",
                hint="check that the URL points at the API",
            )
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedResponseError(f"{request.service} answered {request.operation} with invalid JSON") from exc
        if not isinstance(data, dict):
            raise MalformedResponseError(f"{request.service} answered {request.operation} with JSON that is no object")
        return data

    def _too_large(self, request: RestRequest) -> MalformedResponseError:
        return MalformedResponseError(
            f"{request.service} answered {request.operation} with more than {self.max_response_bytes} bytes",
            hint="narrow the search or lower the page size",
        )

    def _close_sinks(self) -> None:
        self._trail.close()


def _translate(exc: httpx.HTTPError | OSError, request: RestRequest) -> TransportError:
    """httpx's errors (and bare socket errors) → ours, at this one boundary."""
    what = f"{request.service} {request.operation}"
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"{what}: no answer in time ({type(exc).__name__})", hint="try again later")
    tls = ssl_cause(exc)
    if tls is not None:
        reason = getattr(tls, "reason", None) or type(tls).__name__
        return TlsError(f"{what}: TLS handshake failed ({reason})", hint="check the CA bundle trusted for it")
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(f"{what}: cannot connect to {httpx.URL(request.url).host}", hint="check the network")
    return ConnectError(f"{what}: the connection failed before an answer came ({type(exc).__name__})")


_REST_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=5.0)


def _client_options(settings: Settings, tls: TlsCredentials | None) -> tuple[ssl.SSLContext, httpx.Timeout]:
    t = settings.timeouts
    context = build_ssl_context(tls if tls is not None else TlsCredentials())
    return context, httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)


class RestClient(_RestBase):
    """Synchronous JSON GET client. ``tls`` sets the trusted CAs (and a client certificate, if any);
    without it the system store is trusted and no certificate is presented."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        tls: TlsCredentials | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        throttle: TokenBucket | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(settings, audit=audit, retry=retry, throttle=throttle, max_response_bytes=max_response_bytes)
        self._owns_http = http_client is None
        try:
            if http_client is None:
                verify, timeout = _client_options(settings, tls)
                http_client = httpx.Client(
                    transport=deadline_transport(verify, _REST_LIMITS), timeout=timeout, follow_redirects=False
                )
        except BaseException:
            self._close_sinks()
            raise
        self._http = http_client

    def get_json(self, request: RestRequest) -> JsonObject:
        """Send ``request`` (GET or form POST) and return its JSON object, retrying what the policy allows."""
        correlation_id = f"urn:uuid:{uuid.uuid4()}"
        budget = Budget.start(self.settings)
        result: JsonObject = {}
        for attempt in tenacity.Retrying(
            **tenacity_kwargs(capped_policy(self.retry, budget), safe_to_repeat=request.safe_to_repeat)
        ):
            with attempt:
                result = self._attempt(request, correlation_id, attempt.retry_state.attempt_number, budget)
        return result

    def _attempt(self, request: RestRequest, correlation_id: str, number: int, budget: Budget) -> JsonObject:
        if self.throttle is not None:
            delay = self.throttle.reserve()
            if delay > 0:
                time.sleep(min(delay, budget.left))  # past the call's deadline, attempt_end() below raises
        started = time.monotonic()
        status: int | None = None
        what = f"{request.service} {request.operation}"
        try:
            end = budget.attempt_end(what)
            token = ATTEMPT_END.set(end)
            try:
                with self._http.stream(
                    request.method,
                    request.url,
                    params=request.params,
                    data=request.form,
                    headers=self._headers(request),
                    timeout=bounded_timeout(self._http, end),
                ) as r:
                    status = r.status_code
                    self._check_status(request, r)
                    body = bytearray()
                    for chunk in r.iter_bytes():
                        body += chunk
                        if len(body) > self.max_response_bytes:
                            raise self._too_large(request)
                        if time.monotonic() > end:
                            raise AttemptExpired
            except AttemptExpired:
                raise expired(what) from None
            except (httpx.HTTPError, OSError) as exc:
                raise (expired(what) if time.monotonic() >= end - 0.01 else _translate(exc, request)) from exc
            finally:
                ATTEMPT_END.reset(token)
            result = self._decode(request, r, bytes(body))
        except DmpConnectorError as exc:
            exc.attempts = number
            self._emit(request, correlation_id, number, started, exc, status)
            raise
        except Exception as exc:
            self._emit(request, correlation_id, number, started, exc, status)
            raise
        self._emit(request, correlation_id, number, started, None, status)
        return result

    def close(self) -> None:
        """Close the HTTP client if this object made it, and the audit journal."""
        if self._owns_http:
            self._http.close()
        self._close_sinks()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncRestClient(_RestBase):
    """Asynchronous twin of :class:`RestClient`."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        tls: TlsCredentials | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        throttle: TokenBucket | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(settings, audit=audit, retry=retry, throttle=throttle, max_response_bytes=max_response_bytes)
        self._owns_http = http_client is None
        try:
            if http_client is None:
                verify, timeout = _client_options(settings, tls)
                http_client = httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=False)
        except BaseException:
            self._close_sinks()
            raise
        self._http = http_client

    async def get_json(self, request: RestRequest) -> JsonObject:
        """Send ``request`` (GET or form POST) and return its JSON object, retrying what the policy allows."""
        correlation_id = f"urn:uuid:{uuid.uuid4()}"
        budget = Budget.start(self.settings)
        result: JsonObject = {}
        retrying = tenacity.AsyncRetrying(
            **tenacity_kwargs(capped_policy(self.retry, budget), safe_to_repeat=request.safe_to_repeat)
        )
        async for attempt in retrying:
            with attempt:
                result = await self._attempt(request, correlation_id, attempt.retry_state.attempt_number, budget)
        return result

    async def _attempt(self, request: RestRequest, correlation_id: str, number: int, budget: Budget) -> JsonObject:
        if self.throttle is not None:
            delay = self.throttle.reserve()
            if delay > 0:
                await asyncio.sleep(min(delay, budget.left))  # past the call's deadline, attempt_end() below raises
        started = time.monotonic()
        status: int | None = None
        what = f"{request.service} {request.operation}"
        try:
            end = budget.attempt_end(what)
            try:
                async with asyncio.timeout(end - time.monotonic()):
                    async with self._http.stream(
                        request.method,
                        request.url,
                        params=request.params,
                        data=request.form,
                        headers=self._headers(request),
                        timeout=bounded_timeout(self._http, end),
                    ) as r:
                        status = r.status_code
                        self._check_status(request, r)
                        body = bytearray()
                        async for chunk in r.aiter_bytes():
                            body += chunk
                            if len(body) > self.max_response_bytes:
                                raise self._too_large(request)
            except TimeoutError:
                raise expired(what) from None
            except (httpx.HTTPError, OSError) as exc:
                # httpx's own timeout, shortened to the deadline, may fire just before asyncio's: the same deadline.
                raise (expired(what) if time.monotonic() >= end - 0.01 else _translate(exc, request)) from exc
            result = self._decode(request, r, bytes(body))
        except DmpConnectorError as exc:
            exc.attempts = number
            self._emit(request, correlation_id, number, started, exc, status)
            raise
        except Exception as exc:
            self._emit(request, correlation_id, number, started, exc, status)
            raise
        self._emit(request, correlation_id, number, started, None, status)
        return result

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it, and the audit journal."""
        if self._owns_http:
            await self._http.aclose()
        self._close_sinks()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
