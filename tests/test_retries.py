"""The retry rules, as pure functions and as driven by tenacity."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pydantic
import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector import retries
from dmp_connector.errors import (
    ConfigurationError,
    ConnectError,
    DmpConnectorError,
    HttpStatusError,
    MalformedResponseError,
    RequestTimeout,
    ServiceError,
    SoapFaultError,
    TlsError,
    ValidationError,
)
from dmp_connector.retries import (
    RetryPolicy,
    compute_delay,
    is_retryable,
    next_delay,
    parse_retry_after,
    tenacity_kwargs,
)

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)


def test_public_names() -> None:
    assert sorted(retries.__all__) == [
        "RetryPolicy",
        "compute_delay",
        "is_retryable",
        "next_delay",
        "parse_retry_after",
        "tenacity_kwargs",
    ]


# --- RetryPolicy ------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.initial_delay == 0.5
    assert policy.max_delay == 8.0
    assert policy.multiplier == 2.0
    assert policy.jitter == 0.25
    assert policy.max_total_seconds == 60.0
    assert policy.retry_on_status == frozenset({502, 503, 504})
    assert policy.respect_retry_after is True
    assert policy.max_retry_after == 120.0


def test_policy_none_is_one_attempt() -> None:
    assert RetryPolicy.none().max_attempts == 1
    assert next_delay(RequestTimeout("t"), 1, 0.0, RetryPolicy.none(), rand=0.5) is None


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(pydantic.ValidationError):
        policy.max_attempts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_delay": -1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"max_total_seconds": float("inf")},
        {"retry_on_status": frozenset({42})},
        {"unknown": 1},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RetryPolicy.model_validate(kwargs)


def test_policy_fields_are_documented() -> None:
    for name, field in RetryPolicy.model_fields.items():
        assert field.description, name


# --- parse_retry_after ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Fri, 14 Mar 2025 09:27:03 GMT", 10.0),
        ("Friday, 14-Mar-25 09:27:03 GMT", 10.0),
        ("Fri Mar 14 09:27:03 2025", 10.0),
        ("fri, 14 mar 2025 09:27:03 gmt", 10.0),
        ("Fri, 14 Mar 2025 09:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("Fri, 31 Feb 2025 09:27:03 GMT", None),
        ("Fri, 14 Mar 2025 25:00:00 GMT", None),
        ("Fri, 14 Mar 2025 09:27:03 CET", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_asctime_single_digit_day() -> None:
    now = datetime(1994, 11, 6, 8, 49, 0, tzinfo=UTC)
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", now=now) == 37.0


def test_parse_retry_after_rfc850_two_digit_year_is_never_far_future() -> None:
    now = datetime(2090, 1, 1, tzinfo=UTC)
    # "45" is 2045 (in the past), not 2145; "30" more than 50 years ahead would be wrong.
    assert parse_retry_after("Sunday, 01-Jan-45 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("Monday, 01-Jan-91 00:00:10 GMT", now=now) == pytest.approx(
        (datetime(2091, 1, 1, 0, 0, 10, tzinfo=UTC) - now).total_seconds()
    )


def test_parse_retry_after_naive_now_is_utc() -> None:
    assert parse_retry_after("Fri, 14 Mar 2025 09:27:03 GMT", now=NOW.replace(tzinfo=None)) == 10.0


def test_parse_retry_after_default_now() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    delay = parse_retry_after(format_datetime(future, usegmt=True))
    assert delay is not None
    assert 3500 < delay <= 3600


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_round_trips_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(9000, 12, 31),
        timezones=st.just(UTC),
    ).map(lambda d: d.replace(microsecond=0)),
    st.integers(min_value=0, max_value=10**7),
)
def test_parse_retry_after_round_trips_http_dates(now: datetime, ahead: int) -> None:
    when = now + timedelta(seconds=ahead)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == float(ahead)
    asctime = f"{when:%a} {when:%b} {when.day:2d} {when:%H:%M:%S} {when.year:04d}"
    assert parse_retry_after(asctime, now=now) == float(ahead)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=ahead + 1), usegmt=True), now=now) == 0.0


# --- is_retryable ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RequestTimeout("read timeout"), True),
        (ConnectError("refused"), True),
        (HttpStatusError("bad gateway", status_code=502), True),
        (HttpStatusError("unavailable", status_code=503, retryable=False), True),
        (HttpStatusError("gateway timeout", status_code=504), True),
        (HttpStatusError("server error", status_code=500, retryable=True), False),
        (HttpStatusError("too many", status_code=429, retryable=True), False),
        (TlsError("unknown CA"), False),
        (SoapFaultError(code="env:Receiver", reason="busy"), False),
        (MalformedResponseError("not SOAP"), False),
        (ServiceError("no", service="insi", code="01"), False),
        (ServiceError("busy", service="insi", code="insi_102", transient=True), True),
        (ValidationError("bad"), False),
        (ConfigurationError("missing"), False),
        (DmpConnectorError("other"), False),
        (RuntimeError("boom"), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_is_retryable(exc: BaseException, expected: bool) -> None:
    assert is_retryable(exc, RetryPolicy()) is expected


def test_is_retryable_follows_the_policy_status_set() -> None:
    policy = RetryPolicy(retry_on_status=frozenset({429}))
    assert is_retryable(HttpStatusError("too many", status_code=429), policy)
    assert not is_retryable(HttpStatusError("unavailable", status_code=503, retryable=True), policy)


def test_is_retryable_reads_the_transport_flag() -> None:
    exc = ConnectError("dropped after the request was sent")
    exc.retryable = False
    assert not is_retryable(exc, RetryPolicy())


# --- compute_delay -------------------------------------------------------------------------


def test_compute_delay_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=3.0)
    assert [compute_delay(n, policy) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_compute_delay_jitter_band() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=0.25)
    assert compute_delay(1, policy, rand=0.0) == 0.75
    assert compute_delay(1, policy, rand=0.5) == 1.0
    assert compute_delay(1, policy, rand=1.0) == 1.25


def test_compute_delay_retry_after_is_a_floor() -> None:
    policy = RetryPolicy()
    assert compute_delay(1, policy, retry_after=2.0) == 2.0
    assert compute_delay(1, policy, retry_after=0.1) == 0.5
    assert compute_delay(1, policy.model_copy(update={"respect_retry_after": False}), retry_after=2.0) == 0.5


def test_compute_delay_huge_attempt_does_not_overflow() -> None:
    assert compute_delay(100_000, RetryPolicy()) == 8.0
    assert compute_delay(100_000, RetryPolicy(initial_delay=0.0)) == 0.0


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (1, -0.1), (1, 1.5)])
def test_compute_delay_refuses_bad_input(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError, match=r"must be|1-based"):
        compute_delay(attempt, RetryPolicy(), rand=rand)


policies = st.builds(
    RetryPolicy,
    initial_delay=st.floats(min_value=0.0, max_value=100.0),
    max_delay=st.floats(min_value=0.0, max_value=1000.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    respect_retry_after=st.booleans(),
)
rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(
    policies,
    st.integers(min_value=1, max_value=10_000),
    st.none() | st.floats(min_value=0.0, max_value=10_000.0),
    rands,
)
def test_compute_delay_bounds(policy: RetryPolicy, attempt: int, retry_after: float | None, rand: float) -> None:
    delay = compute_delay(attempt, policy, retry_after=retry_after, rand=rand)
    ceiling = policy.max_delay * (1 + policy.jitter)
    if retry_after is not None:
        ceiling = max(ceiling, retry_after)
    assert 0.0 <= delay <= ceiling


@given(policies, st.integers(min_value=1, max_value=200), rands)
def test_compute_delay_monotone_in_attempt(policy: RetryPolicy, attempt: int, rand: float) -> None:
    assert compute_delay(attempt, policy, rand=rand) <= compute_delay(attempt + 1, policy, rand=rand)


# --- next_delay ----------------------------------------------------------------------------


def test_next_delay_retryable_within_limits() -> None:
    policy = RetryPolicy()
    assert next_delay(RequestTimeout("t"), 1, 0.0, policy, rand=0.5) == 0.5
    assert next_delay(ConnectError("c"), 2, 1.0, policy, rand=0.5) == 1.0


def test_next_delay_stops_when_attempts_are_used_up() -> None:
    assert next_delay(RequestTimeout("t"), 3, 0.0, RetryPolicy(max_attempts=3), rand=0.5) is None


def test_next_delay_stops_on_non_retryable() -> None:
    assert next_delay(TlsError("ca"), 1, 0.0, RetryPolicy(), rand=0.5) is None
    assert next_delay(ValueError("x"), 1, 0.0, RetryPolicy(), rand=0.5) is None


def test_next_delay_uses_retry_after() -> None:
    exc = HttpStatusError("unavailable", status_code=503, retry_after=2.0)
    assert next_delay(exc, 1, 0.0, RetryPolicy(), rand=0.5) == 2.0


def test_next_delay_gives_up_on_long_retry_after() -> None:
    exc = HttpStatusError("unavailable", status_code=503, retry_after=121.0)
    assert next_delay(exc, 1, 0.0, RetryPolicy(max_retry_after=120.0), rand=0.5) is None
    # When the header is not respected, its value does not matter either.
    assert next_delay(exc, 1, 0.0, RetryPolicy(respect_retry_after=False), rand=0.5) == 0.5


def test_next_delay_respects_the_total_budget() -> None:
    policy = RetryPolicy(max_total_seconds=10.0)
    assert next_delay(RequestTimeout("t"), 1, 9.5, policy, rand=0.5) == 0.5
    assert next_delay(RequestTimeout("t"), 1, 9.6, policy, rand=0.5) is None
    exc = HttpStatusError("unavailable", status_code=503, retry_after=11.0)
    assert next_delay(exc, 1, 0.0, policy, rand=0.5) is None


# --- tenacity wiring -------------------------------------------------------------------


class Script:
    """A callable that raises the scripted errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self) -> str:
        return self()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)


NO_JITTER = RetryPolicy(jitter=0.0)


def run_sync(
    script: Script, policy: RetryPolicy, *, safe_to_repeat: bool = True, rng: random.Random | None = None
) -> list[float]:
    sleeps = Sleeps()
    kwargs = tenacity_kwargs(policy, safe_to_repeat=safe_to_repeat, sleep=sleeps.sleep, rng=rng)
    assert tenacity.Retrying(**kwargs)(script) == "ok"
    return sleeps.delays


def test_tenacity_kwargs_shape() -> None:
    kwargs = tenacity_kwargs(RetryPolicy(), safe_to_repeat=True)
    assert set(kwargs) == {"retry", "wait", "stop", "reraise"}
    assert kwargs["reraise"] is True
    assert "sleep" in tenacity_kwargs(RetryPolicy(), safe_to_repeat=True, sleep=Sleeps().sleep)


def test_sync_retries_then_succeeds() -> None:
    script = Script(ConnectError("refused"), ConnectError("refused"))
    delays = run_sync(script, NO_JITTER)
    assert script.calls == 3
    assert delays == [compute_delay(1, NO_JITTER), compute_delay(2, NO_JITTER)]


def test_sync_jitter_matches_compute_delay() -> None:
    policy = RetryPolicy()
    script = Script(RequestTimeout("t"), RequestTimeout("t"))
    delays = run_sync(script, policy, rng=random.Random(7))
    expected_rng = random.Random(7)
    assert delays == [compute_delay(n, policy, rand=expected_rng.random()) for n in (1, 2)]


def test_sync_honours_retry_after() -> None:
    script = Script(HttpStatusError("unavailable", status_code=503, retry_after=2.0))
    delays = run_sync(script, RetryPolicy())
    assert script.calls == 2
    assert delays[0] >= 2.0


def test_sync_gives_up_after_max_attempts_and_reraises() -> None:
    last = RequestTimeout("third")
    script = Script(RequestTimeout("first"), RequestTimeout("second"), last, RequestTimeout("fourth"))
    sleeps = Sleeps()
    retrying = tenacity.Retrying(**tenacity_kwargs(NO_JITTER, safe_to_repeat=True, sleep=sleeps.sleep))
    with pytest.raises(RequestTimeout) as info:
        retrying(script)
    assert info.value is last
    assert info.value.attempts == 3
    assert script.calls == 3
    assert len(sleeps.delays) == 2


def test_sync_stops_on_total_budget() -> None:
    # Waits of 1, 2 then 4 s: the third would end past 5 s, counted from the waits ordered.
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, jitter=0.0, max_total_seconds=5.0)
    script = Script(*(ConnectError(str(n)) for n in range(10)))
    sleeps = Sleeps()
    with pytest.raises(ConnectError):
        tenacity.Retrying(**tenacity_kwargs(policy, safe_to_repeat=True, sleep=sleeps.sleep))(script)
    assert sleeps.delays == [1.0, 2.0]
    assert script.calls == 3


@pytest.mark.parametrize(
    ("error", "safe_to_repeat"),
    [
        (RequestTimeout("t"), False),
        (TlsError("unknown CA"), True),
        (HttpStatusError("unavailable", status_code=503, retry_after=121.0), True),
        (HttpStatusError("server error", status_code=500, retryable=True), True),
        (SoapFaultError(code="env:Receiver", reason="busy"), True),
        (ValueError("bug"), True),
    ],
)
def test_sync_single_attempt(error: BaseException, safe_to_repeat: bool) -> None:
    script = Script(error)
    sleeps = Sleeps()
    with pytest.raises(type(error)) as info:
        tenacity.Retrying(**tenacity_kwargs(RetryPolicy(), safe_to_repeat=safe_to_repeat, sleep=sleeps.sleep))(script)
    assert info.value is error
    assert script.calls == 1
    assert sleeps.delays == []


def test_sync_iterator_form() -> None:
    script = Script(ConnectError("refused"))
    sleeps = Sleeps()
    for attempt in tenacity.Retrying(**tenacity_kwargs(NO_JITTER, safe_to_repeat=True, sleep=sleeps.sleep)):
        with attempt:
            result = script()
    assert result == "ok"
    assert sleeps.delays == [0.5]


def test_kwargs_can_be_reused_across_calls() -> None:
    sleeps = Sleeps()
    retrying = tenacity.Retrying(**tenacity_kwargs(NO_JITTER, safe_to_repeat=True, sleep=sleeps.sleep))
    for _ in range(2):
        assert retrying(Script(RequestTimeout("t"), RequestTimeout("t"))) == "ok"
    assert sleeps.delays == [0.5, 1.0, 0.5, 1.0]


@pytest.mark.asyncio
async def test_async_retries_then_succeeds() -> None:
    script = Script(ConnectError("refused"), ConnectError("refused"))
    sleeps = Sleeps()
    retrying = tenacity.AsyncRetrying(**tenacity_kwargs(NO_JITTER, safe_to_repeat=True, sleep=sleeps.asleep))
    assert await retrying(script.acall) == "ok"
    assert script.calls == 3
    assert sleeps.delays == [compute_delay(1, NO_JITTER), compute_delay(2, NO_JITTER)]


@pytest.mark.asyncio
async def test_async_honours_retry_after() -> None:
    script = Script(HttpStatusError("unavailable", status_code=503, retry_after=2.0))
    sleeps = Sleeps()
    retrying = tenacity.AsyncRetrying(**tenacity_kwargs(RetryPolicy(), safe_to_repeat=True, sleep=sleeps.asleep))
    assert await retrying(script.acall) == "ok"
    assert sleeps.delays[0] >= 2.0


@pytest.mark.asyncio
async def test_async_gives_up_after_max_attempts() -> None:
    script = Script(*(RequestTimeout(str(n)) for n in range(5)))
    sleeps = Sleeps()
    retrying = tenacity.AsyncRetrying(**tenacity_kwargs(NO_JITTER, safe_to_repeat=True, sleep=sleeps.asleep))
    with pytest.raises(RequestTimeout) as info:
        await retrying(script.acall)
    assert info.value.attempts == 3
    assert script.calls == 3
    assert sleeps.delays == [0.5, 1.0]


@pytest.mark.asyncio
async def test_async_stops_on_total_budget() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, jitter=0.0, max_total_seconds=5.0)
    script = Script(*(ConnectError(str(n)) for n in range(10)))
    sleeps = Sleeps()
    retrying = tenacity.AsyncRetrying(**tenacity_kwargs(policy, safe_to_repeat=True, sleep=sleeps.asleep))
    with pytest.raises(ConnectError):
        await retrying(script.acall)
    assert sleeps.delays == [1.0, 2.0]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "safe_to_repeat"),
    [
        (ConnectError("refused"), False),
        (TlsError("unknown CA"), True),
        (HttpStatusError("unavailable", status_code=503, retry_after=500.0), True),
    ],
)
async def test_async_single_attempt(error: BaseException, safe_to_repeat: bool) -> None:
    script = Script(error)
    sleeps = Sleeps()
    retrying = tenacity.AsyncRetrying(
        **tenacity_kwargs(RetryPolicy(), safe_to_repeat=safe_to_repeat, sleep=sleeps.asleep)
    )
    with pytest.raises(type(error)):
        await retrying(script.acall)
    assert script.calls == 1
    assert sleeps.delays == []


@pytest.mark.asyncio
async def test_async_iterator_form() -> None:
    script = Script(RequestTimeout("t"))
    sleeps = Sleeps()
    result = None
    async for attempt in tenacity.AsyncRetrying(**tenacity_kwargs(NO_JITTER, safe_to_repeat=True, sleep=sleeps.asleep)):
        with attempt:
            result = await script.acall()
    assert result == "ok"
    assert sleeps.delays == [0.5]
