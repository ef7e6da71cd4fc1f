"""Deadlines: every call to a service ends, whatever the server does.

``timeouts.attempt`` bounds one attempt as a whole (connect, TLS, send, wait, read) and
``timeouts.call`` the call with its retries; :func:`deadline` overrides both for a block. The
SOAP and REST send loops share what is here: the budget of a call, the network backend that
shortens every socket wait of the sync HTTP clients to what is left of the attempt, and the
release of a failed attempt's answer.
"""

from __future__ import annotations

import contextvars
import os
import random
import ssl
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httpx

from .config import Settings
from .errors import DmpConnectorError, RequestTimeout
from .retries import RetryPolicy, next_delay

__all__ = [
    "ATTEMPT_END",
    "AttemptExpired",
    "Budget",
    "DeadlineBackend",
    "RetryLoop",
    "bounded_timeout",
    "call_scope",
    "capped_policy",
    "deadline",
    "deadline_transport",
    "expired",
    "release",
]


@dataclass(frozen=True)
class _Override:
    call_end: float | None
    """When every call made in the block must be over (``time.monotonic()``), or None: each its own."""
    call_seconds: float | None
    attempt: float | None


_OVERRIDE: contextvars.ContextVar[_Override | None] = contextvars.ContextVar("dmp_connector_deadline", default=None)
ATTEMPT_END: contextvars.ContextVar[float | None] = contextvars.ContextVar("dmp_connector_attempt_end", default=None)


@contextmanager
def deadline(call: float | None = None, *, attempt: float | None = None) -> Iterator[None]:
    """Bound the block's calls (sync or async): all over ``call`` seconds after it starts, each attempt ``attempt``.

    Overrides ``timeouts.call`` and ``timeouts.attempt`` for the calls made in the block; an attempt
    never outlasts its call. A service method that sends several requests (a deposit that looks up
    the entry it replaces, an INSi search refined on answer 02) shares the one deadline.
    ``with deadline(5): insi.search(traits)`` ends in :class:`~dmp_connector.errors.RequestTimeout`
    5 s after the block began at the latest, whatever the server does.
    """
    for name, value in (("call", call), ("attempt", attempt)):
        if value is not None and not value > 0:
            raise ValueError(f"deadline {name} must be a positive number of seconds, got {value!r}")
    outer = _OVERRIDE.get()
    call_end = time.monotonic() + call if call is not None else None
    if outer is not None and outer.call_end is not None:
        # A block inside another may shorten its deadline, never extend it.
        call_end = outer.call_end if call_end is None else min(call_end, outer.call_end)
    if outer is not None and outer.attempt is not None and attempt is not None:
        attempt = min(attempt, outer.attempt)
    token = _OVERRIDE.set(
        _Override(
            call_end=call_end,
            call_seconds=call if call is not None else (outer.call_seconds if outer else None),
            attempt=attempt if attempt is not None else (outer.attempt if outer else None),
        )
    )
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


@contextmanager
def call_scope(settings: Settings) -> Iterator[None]:
    """One ``timeouts.call`` for a whole service method (several requests), unless a :func:`deadline` is set."""
    outer = _OVERRIDE.get()
    if outer is not None and outer.call_end is not None:
        yield
        return
    seconds = settings.timeouts.call
    token = _OVERRIDE.set(
        _Override(call_end=time.monotonic() + seconds, call_seconds=seconds, attempt=outer.attempt if outer else None)
    )
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


@dataclass(frozen=True)
class Budget:
    """The deadlines of one call, in ``time.monotonic()`` seconds."""

    call_seconds: float
    attempt_seconds: float
    call_end: float

    @classmethod
    def start(cls, settings: Settings) -> Budget:
        now = time.monotonic()
        override = _OVERRIDE.get()
        if override is not None and override.call_end is not None:
            call_end, call_seconds = override.call_end, override.call_seconds or settings.timeouts.call
        else:
            call_end, call_seconds = now + settings.timeouts.call, settings.timeouts.call
        attempt = (
            override.attempt if override is not None and override.attempt is not None else settings.timeouts.attempt
        )
        return cls(call_seconds=call_seconds, attempt_seconds=attempt, call_end=call_end)

    @property
    def left(self) -> float:
        """Seconds left before the call's deadline (0 once it has passed)."""
        return max(self.call_end - time.monotonic(), 0.0)

    def attempt_end(self, what: str) -> float:
        """When the next attempt of ``what`` (``service operation``) must be over; raises when the call has
        no time left for one."""
        now = time.monotonic()
        if now >= self.call_end:
            raise RequestTimeout(
                f"{what}: the call's deadline of {self.call_seconds:g} s has passed",
                hint="raise timeouts.call (or deadline(call=...)), or try again later",
            )
        return min(now + self.attempt_seconds, self.call_end)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the current attempt; raises once nothing is left."""
    end = ATTEMPT_END.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


_WRITE_SLICE = 64 * 1024


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every wait ends by the attempt's deadline (sync client)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # In slices, so that a server reading slowly cannot stretch one large write past the deadline; slices
        # of a view, so that a large piece (an attachment sent whole) is not copied slice by slice.
        if len(buffer) <= _WRITE_SLICE:
            if buffer:
                self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))
            return
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_SLICE):
            # httpcore's sync stream sends any buffer (socket.send); its annotation says bytes.
            self._inner.write(view[start : start + _WRITE_SLICE], _left(timeout, httpcore.WriteTimeout))  # type: ignore[arg-type]

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(inner)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with every connect, read and write bounded by the attempt's deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return DeadlineStream(
            self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded_timeout(http: httpx.Client | httpx.AsyncClient, end: float) -> httpx.Timeout:
    """The HTTP client's timeouts, each shortened to what is left of the attempt (also bounds the pool wait)."""
    left = max(end - time.monotonic(), 0.001)
    base = http.timeout

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool))


class AttemptExpired(Exception):
    """The attempt's deadline passed between two reads (raised and translated inside the send loops)."""


def release(exc: BaseException) -> None:
    """Drop the locals of the finished frames an error's traceback (and its causes') keep alive.

    A failed attempt's answer — a 50 MB fault, its parsed tree — would otherwise stay referenced
    through the error's traceback until the next attempt ends, and through the final error after.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        # Only what we chained: an implicit __context__ may be the caller's own error (a call made in
        # their except block), whose frames they may still want to inspect.
        current = current.__cause__


def expired(what: str) -> RequestTimeout:
    """The error of an attempt of ``what`` (``service operation``) cut by its deadline."""
    return RequestTimeout(
        f"{what}: no complete answer within the attempt's deadline",
        hint="raise timeouts.attempt (or deadline(attempt=...)) for a large document on a slow link; "
        "otherwise the service is slow or stalled: try again later",
    )


def capped_policy(policy: RetryPolicy, budget: Budget) -> RetryPolicy:
    """``policy`` with no wait begun past the call's deadline (tenacity counts from the first attempt: now)."""
    left = budget.left
    if left < policy.max_total_seconds:
        return policy.model_copy(update={"max_total_seconds": left})
    return policy


_JITTER = random.Random()  # noqa: S311 - jitter, not crypto
"""The jitter of the send loops: one generator for the process (seeding one per call read the OS's random source)."""
if hasattr(os, "register_at_fork"):
    # A forked worker draws its own jitter, so that workers forked together do not retry in step.
    os.register_at_fork(after_in_child=_JITTER.seed)

_ONE_ATTEMPT = RetryPolicy(max_attempts=1)


class RetryLoop:
    """The retry decisions of one SOAP call: :func:`~dmp_connector.retries.next_delay` after each failed attempt.

    What ``tenacity.Retrying(**tenacity_kwargs(policy, ...))`` decides, without building tenacity's
    objects for every call (about 0.18 M instructions per deposit, most of the send loop's own cost):
    the attempt's number, the time since the first attempt began or the waits ordered so far if
    longer (a patched sleep passes no time), one jitter draw per failure, ``attempts`` set on the
    error given up on. An operation that is not ``safe_to_repeat`` gets one attempt.
    """

    __slots__ = ("_idle", "_policy", "_rng", "_start", "number")

    def __init__(self, policy: RetryPolicy, *, safe_to_repeat: bool, rng: random.Random | None = None) -> None:
        self._policy = policy if safe_to_repeat else _ONE_ATTEMPT
        self._rng = rng if rng is not None else _JITTER
        self._start = time.monotonic()
        self._idle = 0.0
        self.number = 1
        """The number of the attempt to make (1-based)."""

    def failed(self, exc: BaseException) -> float | None:
        """Seconds to wait before the next attempt now that attempt :attr:`number` ended in ``exc``; None: give up.

        On None the caller re-raises ``exc``, whose ``attempts`` (one of ours) is then the attempts made.
        """
        elapsed = max(time.monotonic() - self._start, self._idle)
        delay = next_delay(exc, self.number, elapsed, self._policy, rand=self._rng.random())
        if delay is None:
            if isinstance(exc, DmpConnectorError):
                exc.attempts = self.number
            return None
        self._idle += delay
        self.number += 1
        return delay


def deadline_transport(verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.HTTPTransport:
    """An httpx transport whose pool uses :class:`DeadlineBackend` (httpx offers no other way to pass one)."""
    transport = httpx.HTTPTransport(verify=verify, limits=limits)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=verify,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=DeadlineBackend(),
    )
    return transport
