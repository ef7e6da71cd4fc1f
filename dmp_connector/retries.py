"""When to repeat a request to a national service, and how long to wait first.

The policy is data (:class:`RetryPolicy`) and the rules are pure functions, so that the
sync and async send loops cannot drift apart and every rule can be tested without a
clock or a network. :func:`next_delay` is the one decision the loops use; the tenacity
wiring in :func:`tenacity_kwargs` is built on it, so tenacity and the pure rules always
agree. The SOAP clients apply it without tenacity's objects, deciding as tenacity does with
those arguments (the time since the first attempt or the waits ordered, one jitter draw per
failure).

A request is repeated only when all of these hold:

* the operation is *safe to repeat* (declared idempotent by its definition);
* the failure may be transient: a timeout, a dropped or refused connection, or an HTTP
  status in :attr:`RetryPolicy.retry_on_status` — never a TLS failure, a SOAP fault or
  a refusal by the service, which would fail again the same way;
* attempts and the time budget are not used up, and the server did not ask for a
  ``Retry-After`` longer than we are willing to wait.
"""

from __future__ import annotations

import math
import random
import re
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import RetryCallState

from .errors import DmpConnectorError, HttpStatusError, ServiceError, TransportError

__all__ = [
    "RetryPolicy",
    "compute_delay",
    "is_retryable",
    "next_delay",
    "parse_retry_after",
    "tenacity_kwargs",
]


class RetryPolicy(BaseModel):
    """How often and how patiently a failed request is repeated.

    The defaults suit the national services' SOAP front-ends: a few quick retries on a
    gateway error or a timeout, bounded so that a user at a desk is not kept waiting.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    max_attempts: int = Field(default=3, ge=1)
    """Total attempts, the first included; 1 means the request is never repeated."""
    initial_delay: float = Field(default=0.5, ge=0.0, allow_inf_nan=False)
    """Seconds to wait after the first failed attempt, before jitter."""
    max_delay: float = Field(default=8.0, ge=0.0, allow_inf_nan=False)
    """Cap on the exponential delay, before jitter, so that waits stop growing."""
    multiplier: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)
    """Growth of the delay from one attempt to the next; at least 1 so waits never shrink."""
    jitter: float = Field(default=0.25, ge=0.0, le=1.0, allow_inf_nan=False)
    """Fraction of the delay added or removed at random, so that clients do not retry in step."""
    max_total_seconds: float = Field(default=60.0, ge=0.0, allow_inf_nan=False)
    """Budget since the first attempt started: no sleep is started that would end past it."""
    retry_on_status: frozenset[int] = frozenset({502, 503, 504})
    """HTTP statuses (without a SOAP answer) worth repeating: the gateway or service is busy."""
    respect_retry_after: bool = True
    """Wait at least as long as the server's ``Retry-After`` asks."""
    max_retry_after: float = Field(default=120.0, ge=0.0, allow_inf_nan=False)
    """A ``Retry-After`` longer than this means: give up now rather than block the caller."""

    @field_validator("retry_on_status")
    @classmethod
    def _statuses_are_http(cls, value: frozenset[int]) -> frozenset[int]:
        bad = sorted(code for code in value if not 100 <= code <= 599)
        if bad:
            raise ValueError(f"not HTTP status codes: {bad}")
        return value

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never repeats a request (one attempt)."""
        return cls(max_attempts=1)


# --- Retry-After ----------------------------------------------------------------------

_DELTA_SECONDS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = rf"(?P<month>{'|'.join(_MONTH_NAMES)})"
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# RFC 9110 §5.6.7: the preferred IMF-fixdate and the two obsolete forms a recipient must accept
# (matched after runs of whitespace are collapsed, hence asctime's "Nov 6" for "Nov  6").
_IMF_FIXDATE = re.compile(rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} gmt", re.IGNORECASE)
_RFC850_DATE = re.compile(rf"{_LONG_DAY}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} gmt", re.IGNORECASE)
_ASCTIME_DATE = re.compile(rf"{_DAY} {_MONTH} (?P<day>[0-9]{{1,2}}) {_TIME} (?P<year>[0-9]{{4}})", re.IGNORECASE)


def _http_date(value: str, now: datetime) -> datetime | None:
    for pattern in (_IMF_FIXDATE, _RFC850_DATE, _ASCTIME_DATE):
        match = pattern.fullmatch(value)
        if match is None:
            continue
        year = int(match["year"])
        if pattern is _RFC850_DATE:
            # A two-digit year more than 50 years ahead is the latest such year in the past.
            year += now.year - now.year % 100
            if year > now.year + 50:
                year -= 100
        try:
            return datetime(
                year,
                _MONTHS[match["month"].lower()],
                int(match["day"]),
                int(match["hour"]),
                int(match["minute"]),
                int(match["second"]),
                tzinfo=UTC,
            )
        except ValueError:  # 31 Feb, hour 25, leap second …
            return None
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait in a ``Retry-After`` header, or None if unusable.

    Accepts delta-seconds and the three HTTP-date forms of RFC 9110. A negative delay or
    a date already past gives 0; anything unreadable gives None, so that the policy's own
    delay applies. ``now`` is injected for tests; a naive ``now`` is taken as UTC.
    """
    if value is None:
        return None
    text = " ".join(value.split())
    if _DELTA_SECONDS.fullmatch(text):
        return max(float(text), 0.0)
    current = datetime.now(UTC) if now is None else now
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    when = _http_date(text, current)
    if when is None:
        return None
    return max((when - current) / timedelta(seconds=1), 0.0)


# --- The rules --------------------------------------------------------------------------


def is_retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    """Whether repeating the request that raised ``exc`` may succeed.

    For an HTTP status the policy's :attr:`~RetryPolicy.retry_on_status` decides, not the
    transport's ``retryable`` flag, so that a vendor can widen or narrow the set in one
    place. Other transport errors carry their own ``retryable`` (False for TLS: a bad
    certificate will not fix itself). A :class:`ServiceError` is repeated only when the
    service said it was a transient condition (``transient``); other faults, service
    refusals and validation errors are answers, not accidents, and are never repeated.
    """
    if isinstance(exc, HttpStatusError):
        return exc.status_code in policy.retry_on_status
    if isinstance(exc, TransportError):
        return exc.retryable is True
    if isinstance(exc, ServiceError):
        return exc.transient is True
    return False


def compute_delay(attempt: int, policy: RetryPolicy, *, retry_after: float | None = None, rand: float = 0.5) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential backoff capped at :attr:`~RetryPolicy.max_delay`, then ± ``jitter``:
    ``rand`` in [0, 1) picks the point in that band (0.5 is the centre, no jitter). A
    server's ``Retry-After`` is a floor when the policy respects it: waiting less would
    only earn another refusal.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if not 0.0 <= rand <= 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    if policy.initial_delay == 0.0:
        base = 0.0
    else:
        try:
            base = policy.initial_delay * policy.multiplier ** (attempt - 1)
        except OverflowError:
            base = math.inf
    delay = min(base, policy.max_delay) * (1.0 + policy.jitter * (2.0 * rand - 1.0))
    if policy.respect_retry_after and retry_after is not None and not math.isnan(retry_after):
        delay = max(delay, retry_after)
    return max(delay, 0.0)


def next_delay(exc: BaseException, attempt: int, elapsed: float, policy: RetryPolicy, *, rand: float) -> float | None:
    """The single retry decision: seconds to sleep before the next attempt, or None to stop.

    ``attempt`` is the number of the attempt that just failed with ``exc`` and
    ``elapsed`` the seconds since the first attempt started. None means re-raise
    ``exc``: it is not worth repeating, the attempts are used up, the server asked for
    a longer wait than :attr:`~RetryPolicy.max_retry_after`, or sleeping would overrun
    :attr:`~RetryPolicy.max_total_seconds`.
    """
    if not is_retryable(exc, policy) or attempt >= policy.max_attempts:
        return None
    retry_after = exc.retry_after if isinstance(exc, HttpStatusError) and policy.respect_retry_after else None
    if retry_after is not None and retry_after > policy.max_retry_after:
        return None
    delay = compute_delay(attempt, policy, retry_after=retry_after, rand=rand)
    if elapsed + delay > policy.max_total_seconds:
        return None
    return delay


# --- tenacity wiring ------------------------------------------------------------------


class _TenacityDecider:
    """Makes one :func:`next_delay` decision per attempt and hands it to tenacity's hooks.

    tenacity asks ``retry``, then ``wait``, then ``stop`` after each failed attempt; the
    jitter is drawn once and cached per call state so that the three answers agree.
    """

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._lock = threading.Lock()
        self._decisions: weakref.WeakKeyDictionary[RetryCallState, tuple[int, float | None]] = (
            weakref.WeakKeyDictionary()
        )

    def _decide(self, state: RetryCallState) -> float | None:
        with self._lock:
            cached = self._decisions.get(state)
            if cached is not None and cached[0] == state.attempt_number:
                return cached[1]
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None and outcome.failed else None
            delay: float | None = None
            if exc is not None:
                # With a fake or patched sleep no wall time passes: count the waits we ordered.
                elapsed = max(state.seconds_since_start or 0.0, state.idle_for)
                delay = next_delay(exc, state.attempt_number, elapsed, self._policy, rand=self._rng.random())
                if delay is None and isinstance(exc, DmpConnectorError):
                    exc.attempts = state.attempt_number
            self._decisions[state] = (state.attempt_number, delay)
            return delay

    def retry(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        return outcome is not None and outcome.failed and self._decide(state) is not None

    def wait(self, state: RetryCallState) -> float:
        delay = self._decide(state)
        return 0.0 if delay is None else delay

    def stop(self, state: RetryCallState) -> bool:
        return self._decide(state) is None


def tenacity_kwargs(
    policy: RetryPolicy,
    *,
    safe_to_repeat: bool,
    sleep: Callable[[float], object] | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying(**kw)`` or ``tenacity.AsyncRetrying(**kw)``.

    ``retry``, ``wait`` and ``stop`` all read one :func:`next_delay` decision, so tenacity
    applies exactly the rules above; ``reraise=True`` lets the last error of ours escape
    rather than tenacity's ``RetryError``. An operation not ``safe_to_repeat`` gets one
    attempt whatever the policy says. ``sleep`` (sync for ``Retrying``, async for
    ``AsyncRetrying``) and ``rng`` are for tests. When the call gives up on one of our
    errors, its ``attempts`` is set to the number of attempts made.
    """
    effective = policy if safe_to_repeat else RetryPolicy.none()
    decider = _TenacityDecider(effective, rng if rng is not None else random.Random())  # noqa: S311 - jitter, not crypto
    kwargs: dict[str, Any] = {
        "retry": decider.retry,
        "wait": decider.wait,
        "stop": decider.stop,
        "reraise": True,
    }
    if sleep is not None:
        kwargs["sleep"] = sleep
    return kwargs


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
