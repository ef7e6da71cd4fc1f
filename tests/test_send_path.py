"""The SOAP send path's shortcuts (issue 22) against what they replace.

The retry decisions without tenacity's objects (:class:`RetryLoop`), the MTOM body in uncopied
pieces (``MtomPayload._writes``), the sync network stream's deadline slices taken as views, the
cookie jar that skips answers without ``Set-Cookie``, and the endpoint URLs a client parses once:
each gives what it replaces, and each guarding rule has a test that fails without it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpcore
import httpx
import pytest
import respx
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector._deadline import ATTEMPT_END, DeadlineStream, RetryLoop
from dmp_connector._loopnet import LoopStream
from dmp_connector._transport import AsyncClient, Client, _Cookies
from dmp_connector.audit import MemorySink, Pseudonymizer
from dmp_connector.config import Environment, Settings
from dmp_connector.errors import (
    ConnectError,
    HttpStatusError,
    RequestTimeout,
    SoapFaultError,
    TlsError,
)
from dmp_connector.retries import RetryPolicy, tenacity_kwargs
from dmp_connector.sandbox._http import HttpRequest, HttpResponse, as_transport
from dmp_connector.sandbox.echo import EchoOperation, echo_service
from dmp_connector.soap import Attachment
from dmp_connector.soap.mtom import CHUNK_SIZE, MtomPayload

from .conftest import SOFTWARE

# --- the retry decisions: RetryLoop against tenacity with tenacity_kwargs ---------------------

_FAILURES: dict[str, Callable[[], BaseException]] = {
    "connect": lambda: ConnectError("refused"),
    "timeout": lambda: RequestTimeout("slow"),
    "503": lambda: HttpStatusError("busy", status_code=503),
    "503-later": lambda: HttpStatusError("busy", status_code=503, retry_after=1.5),
    "503-too-late": lambda: HttpStatusError("busy", status_code=503, retry_after=500.0),
    "500": lambda: HttpStatusError("broken", status_code=500),
    "tls": lambda: TlsError("refused certificate"),
    "fault": lambda: SoapFaultError(code="env:Receiver", reason="down"),
    "bug": lambda: ValueError("not ours"),
    "cancelled": lambda: asyncio.CancelledError(),
}

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 5),
    initial_delay=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    max_delay=st.sampled_from([0.0, 1.0, 8.0]),
    multiplier=st.sampled_from([1.0, 2.0]),
    jitter=st.sampled_from([0.0, 0.25, 1.0]),
    # Small budgets, so that the waits ordered (no time passes on the frozen clock) decide.
    max_total_seconds=st.sampled_from([0.0, 1.0, 2.5, 60.0]),
    respect_retry_after=st.booleans(),
    max_retry_after=st.sampled_from([1.0, 120.0]),
)
scripts = st.lists(st.sampled_from(["ok", *_FAILURES]), min_size=1, max_size=6)

Trace = tuple[list[int], list[float], object, int | None]


@contextmanager
def _frozen_clock() -> Iterator[None]:
    """No time passes (as under a patched sleep): only the waits ordered count."""
    now = time.monotonic()
    with mock.patch("time.monotonic", return_value=now):
        yield


def _step(script: list[str], made: list[BaseException], number: int) -> str:
    entry = script[min(number, len(script)) - 1]
    if entry == "ok":
        return f"result of attempt {number}"
    made.append(_FAILURES[entry]())
    raise made[-1]


def _with_tenacity(script: list[str], policy: RetryPolicy, safe: bool, seed: int) -> Trace:
    calls: list[int] = []
    sleeps: list[float] = []
    made: list[BaseException] = []
    kwargs = tenacity_kwargs(policy, safe_to_repeat=safe, sleep=sleeps.append, rng=random.Random(seed))
    try:
        for attempt in tenacity.Retrying(**kwargs):
            with attempt:
                calls.append(attempt.retry_state.attempt_number)
                result = _step(script, made, attempt.retry_state.attempt_number)
    except BaseException as exc:  # compared, whatever it is
        return calls, sleeps, ("raised", made.index(exc)), getattr(exc, "attempts", None)
    return calls, sleeps, ("returned", result), None


def _with_loop(script: list[str], policy: RetryPolicy, safe: bool, seed: int) -> Trace:
    calls: list[int] = []
    sleeps: list[float] = []
    made: list[BaseException] = []
    loop = RetryLoop(policy, safe_to_repeat=safe, rng=random.Random(seed))
    while True:
        try:
            calls.append(loop.number)
            result = _step(script, made, loop.number)
        except BaseException as exc:  # as the send loops
            delay = loop.failed(exc)
            if delay is None:
                return calls, sleeps, ("raised", made.index(exc)), getattr(exc, "attempts", None)
        else:
            return calls, sleeps, ("returned", result), None
        sleeps.append(delay)


@settings(max_examples=300, deadline=None)
@given(script=scripts, policy=policies, safe=st.booleans(), seed=st.integers(0, 2**32))
def test_the_retry_loop_decides_as_tenacity(script: list[str], policy: RetryPolicy, safe: bool, seed: int) -> None:
    with _frozen_clock():
        expected = _with_tenacity(script, policy, safe, seed)
        assert _with_loop(script, policy, safe, seed) == expected


def test_the_waits_ordered_count_against_the_budget() -> None:
    # 1 s then 2 s: the second wait would end 3 s after the start, past the 2.5 s budget, though no time passed.
    policy = RetryPolicy(max_attempts=5, initial_delay=1.0, multiplier=2.0, jitter=0.0, max_total_seconds=2.5)
    with _frozen_clock():
        calls, sleeps, outcome, attempts = _with_loop(["timeout"], policy, True, 0)
    assert calls == [1, 2] and sleeps == [1.0] and outcome == ("raised", 1) and attempts == 2


def test_an_operation_not_safe_to_repeat_gets_one_attempt() -> None:
    calls, sleeps, _, attempts = _with_loop(["timeout", "ok"], RetryPolicy(initial_delay=0.0), False, 0)
    assert calls == [1] and sleeps == [] and attempts == 1


# --- the MTOM body in pieces ---------------------------------------------------------------------

sizes = st.one_of(
    st.integers(0, 300),
    st.sampled_from([CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE - 7]),
    st.integers(0, 4 * CHUNK_SIZE),
)


def _bytes(size: int, seed: int) -> bytes:
    return (bytes(range(seed % 251, 251)) + bytes(range(251)) * (size // 251 + 1))[:size]


@settings(max_examples=80, deadline=None)
@given(layout=st.lists(st.tuples(st.sampled_from(["bytes", "memory", "file"]), sizes), min_size=1, max_size=7))
def test_the_pieces_carry_the_chunks_bytes_without_copying_a_large_one(layout: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        segments: list[bytes | Attachment] = []
        whole: list[bytes] = []  # what may travel whole: the segments and the attachments held in memory
        for n, (kind, size) in enumerate(layout):
            data = _bytes(size, n)
            if kind == "bytes":
                segments.append(data)
                whole.append(data)
            elif kind == "memory":
                segments.append(Attachment.from_bytes(data, content_id=f"m{n}@x"))
                whole.append(data)
            else:
                path = Path(tmp) / f"part{n}"
                path.write_bytes(data)
                segments.append(Attachment.from_path(path, content_id=f"f{n}@x"))
        total = sum(len(s) if isinstance(s, bytes) else s.size for s in segments)
        payload = MtomPayload(content_type="multipart/related", content_length=total, segments=tuple(segments))
        pieces = list(payload._writes())
        assert b"".join(pieces) == b"".join(payload.iter_bytes())
        assert all(type(piece) is bytes and piece for piece in pieces)
        # A piece over CHUNK_SIZE is a segment or an attachment itself, never a copy (memory).
        assert all(any(piece is source for source in whole) for piece in pieces if len(piece) > CHUNK_SIZE)
        # Small pieces are joined: two neighbours never fit together in one write.
        assert all(len(a) + len(b) > CHUNK_SIZE for a, b in itertools.pairwise(pieces))
        assert list(payload._writes()) == pieces  # again, for a retry


def test_a_deposit_like_body_goes_in_three_writes_and_the_document_uncopied() -> None:
    document = _bytes(280_000, 3)
    attachment = Attachment.from_bytes(document, content_id="doc@x")
    payload = MtomPayload(
        content_type="m",
        content_length=20_000 + 150 + len(document) + 60,
        segments=(b"e" * 20_000, b"h" * 150, attachment, b"c" * 60),
    )
    pieces = list(payload._writes())
    assert [len(piece) for piece in pieces] == [20_150, len(document), 60]
    assert pieces[1] is document


class _ChunkRecorder(httpx.BaseTransport):
    """A vendor's own transport: records the pieces of each request body, then lets the echo service answer."""

    def __init__(self) -> None:
        self.pieces: list[int] = []
        self._inner = as_transport(echo_service)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        body = []
        for piece in request.stream:
            self.pieces.append(len(piece))
            body.append(piece)
        return self._inner.handle_request(
            httpx.Request(request.method, request.url, headers=request.headers, content=b"".join(body))
        )


def test_a_client_given_its_own_http_client_sends_the_body_in_64_kib_chunks() -> None:
    """Only our transports hold each 64 KiB of a write to its own write timeout: another gets the chunks as before
    (httpcore's sync stream sends a piece with one sendall, held to one timeout as a whole)."""
    recorder = _ChunkRecorder()
    document = Attachment.from_bytes(_bytes(5 * CHUNK_SIZE + 7, 3), content_id="d@x")
    with httpx.Client(transport=recorder) as http, Client(SETTINGS, http_client=http) as client:
        result = client.send(EchoOperation("chunks", [document]))
    assert [d.read() for d in result.documents] == [document.read()]
    assert recorder.pieces and max(recorder.pieces) <= CHUNK_SIZE
    assert len(recorder.pieces) >= 6


def _slow_reader(sock: socket.socket, total: int, stop: threading.Event, pause: float) -> None:
    got = 0
    while got < total and not stop.is_set():
        if pause < 0:  # a stalled reader
            time.sleep(0.01)
            continue
        data = sock.recv(16_384)
        if not data:
            break
        got += len(data)
        time.sleep(pause)


async def _one_write(size: int, write_timeout: float, pause: float) -> float:
    """Write ``size`` bytes in one LoopStream.write to a reader taking 16 KiB every ``pause`` s; the seconds taken."""
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16_384)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    ours.setblocking(False)
    stop = threading.Event()
    reader = threading.Thread(target=_slow_reader, args=(theirs, size, stop, pause))
    reader.start()
    started = time.monotonic()
    try:
        await LoopStream(ours).write(b"x" * size, timeout=write_timeout)
        return time.monotonic() - started
    finally:
        stop.set()
        ours.close()
        reader.join()
        theirs.close()


def test_the_async_stream_gives_each_64_kib_of_a_large_write_its_own_write_timeout() -> None:
    """An attachment handed whole to our async transport is not held to one write timeout (review finding): a
    slow reader that takes 512 KiB in ~0.7 s, each 64 KiB well within 0.4 s, gets it all; one that stalls does not."""
    took = asyncio.run(_one_write(512 * 1024, write_timeout=0.4, pause=0.02))
    assert took > 0.4  # longer than one timeout: only the renewal lets it through
    started = time.monotonic()
    with pytest.raises(httpcore.WriteTimeout):
        asyncio.run(_one_write(512 * 1024, write_timeout=0.4, pause=-1))
    assert time.monotonic() - started < 5


# --- the sync stream's deadline slices ------------------------------------------------------------


class _Recorder(httpcore.NetworkStream):
    """A network stream that records its writes; each takes ``cost`` seconds of a fake clock."""

    def __init__(self, clock: list[float], cost: float = 0.0) -> None:
        self.writes: list[tuple[bytes, float | None, str]] = []
        self._clock = clock
        self._cost = cost

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append((bytes(buffer), timeout, type(buffer).__name__))
        self._clock[0] += self._cost


@contextmanager
def _clock_at(clock: list[float]) -> Iterator[None]:
    with mock.patch("time.monotonic", side_effect=lambda: clock[0]):
        yield


def test_a_large_write_goes_in_slices_of_a_view_each_held_to_the_deadline() -> None:
    clock = [1000.0]
    inner = _Recorder(clock, cost=1.0)
    data = _bytes(3 * 64 * 1024 + 5, 0)
    token = ATTEMPT_END.set(1000.0 + 30.0)
    try:
        with _clock_at(clock):
            DeadlineStream(inner).write(data, timeout=28.5)
    finally:
        ATTEMPT_END.reset(token)
    assert b"".join(w[0] for w in inner.writes) == data
    assert [len(w[0]) for w in inner.writes] == [65536, 65536, 65536, 5]
    assert {w[2] for w in inner.writes} == {"memoryview"}  # slices of the caller's bytes, not copies
    assert [w[1] for w in inner.writes] == [28.5, 28.5, 28.0, 27.0]  # what is left of the attempt, each time


def test_the_deadline_stops_a_large_write_between_two_slices() -> None:
    clock = [1000.0]
    inner = _Recorder(clock, cost=10.0)
    token = ATTEMPT_END.set(1000.0 + 15.0)
    try:
        with _clock_at(clock), pytest.raises(httpcore.WriteTimeout):
            DeadlineStream(inner).write(_bytes(4 * 64 * 1024, 0), timeout=None)
    finally:
        ATTEMPT_END.reset(token)
    assert len(inner.writes) == 2


def test_a_small_write_is_handed_on_as_it_is() -> None:
    inner = _Recorder([0.0])
    data = b"x" * 100
    DeadlineStream(inner).write(data)
    DeadlineStream(inner).write(b"")
    assert inner.writes == [(data, None, "bytes")]


# --- cookies -------------------------------------------------------------------------------------

_COOKIE_HEADERS = [
    ("Set-Cookie", "route=blue; Path=/"),
    ("set-cookie", "lb=2"),
    ("SET-COOKIE", 'quoted="x y"; Max-Age=60'),
    ("Set-Cookie", "elsewhere=1; Domain=other.example"),
    ("Set-Cookie2", 'v2=1; Version="1"'),
    ("X-Set-Cookie", "not=one"),
    ("Cookie", "not=one"),
    ("Content-Type", "application/soap+xml"),
]


def _jar(cookies: httpx.Cookies) -> list[tuple[str, str | None, str, str]]:
    return sorted((c.name, c.value, c.domain, c.path) for c in cookies.jar)


@settings(max_examples=100, deadline=None)
@given(headers=st.lists(st.sampled_from(_COOKIE_HEADERS), max_size=5))
def test_the_jar_keeps_what_httpxs_keeps(headers: list[tuple[str, str]]) -> None:
    request = httpx.Request("POST", "https://dmp.test.invalid/echo")
    response = httpx.Response(200, headers=headers, request=request)
    ours, theirs = _Cookies(), httpx.Cookies()
    ours.extract_cookies(response)
    theirs.extract_cookies(response)
    assert _jar(ours) == _jar(theirs)


# --- through the clients ------------------------------------------------------------------------

URL = "https://dmp.test.invalid/echo"
SETTINGS = Settings.model_validate(
    {
        "software": SOFTWARE,
        "environment": Environment.sandbox("https://dmp.test.invalid"),
        "retry": RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0.0),
    }
)
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def _with_cookie(request: HttpRequest) -> HttpResponse:
    answer = echo_service(request)
    answer.headers["Set-Cookie"] = "route=blue; Path=/"
    return answer


def _sends(mode: str, operations: list[EchoOperation], sink: MemorySink) -> tuple[list[Any], Client | AsyncClient]:
    """Send the operations one after the other through one client of our own (its transport mocked)."""
    if mode == "sync":
        with Client(SETTINGS, audit=[sink]) as client:
            return [client.send(operation) for operation in operations], client

    async def run() -> tuple[list[Any], AsyncClient]:
        async with AsyncClient(SETTINGS, audit=[sink]) as client:
            return [await client.send(operation) for operation in operations], client

    return asyncio.run(run())


@MODES
@respx.mock
def test_a_cookie_the_service_sets_goes_with_the_next_requests(mode: str) -> None:
    answers = iter([_with_cookie, echo_service, echo_service])
    seen: list[HttpRequest] = []

    def handler(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return next(answers)(request)

    respx.post(URL).mock(side_effect=as_transport(handler).handle_request)
    extracted: list[httpx.Response] = []
    original = httpx.Cookies.extract_cookies

    def counting(self: httpx.Cookies, response: httpx.Response) -> None:
        extracted.append(response)
        original(self, response)

    with mock.patch.object(httpx.Cookies, "extract_cookies", counting):
        _sends(mode, [EchoOperation("a"), EchoOperation("b"), EchoOperation("c")], MemorySink())
    assert [r.header("Cookie") for r in seen] == ["", "route=blue", "route=blue"]
    # Only the answer that set a cookie went through the cookie machinery.
    assert len(extracted) == 1


@MODES
@respx.mock
def test_an_endpoint_is_parsed_once_and_one_with_a_query_is_not_kept(mode: str) -> None:
    route = respx.post(url__startswith=URL).mock(side_effect=as_transport(echo_service).handle_request)
    sink = MemorySink()
    operations = [EchoOperation("a"), EchoOperation("b"), EchoOperation("c", path="/echo?ticket=42")]
    _, client = _sends(mode, operations, sink)
    assert [str(call.request.url) for call in route.calls] == [URL, URL, URL + "?ticket=42"]
    assert list(client._urls) == [URL] and list(client._endpoints) == [URL]
    assert [event.endpoint for event in sink.events] == [URL, URL, URL]


@MODES
@respx.mock
def test_a_client_keeps_a_few_endpoints_only(mode: str) -> None:
    respx.post(url__startswith=URL).mock(side_effect=as_transport(echo_service).handle_request)
    operations = [EchoOperation(str(n), path=f"/echo/{n}") for n in range(20)]
    _, client = _sends(mode, operations, MemorySink())
    assert len(client._urls) == 16 and len(client._endpoints) == 16


def _busy_then_echo() -> Callable[[HttpRequest], HttpResponse]:
    answers = iter([HttpResponse(503, {"Content-Type": "text/plain"}, b"busy"), None, None, None])

    def handler(request: HttpRequest) -> HttpResponse:
        answer = next(answers)
        return answer if answer is not None else echo_service(request)

    return handler


@MODES
@respx.mock
def test_the_patients_pseudonym_is_made_once_per_call_and_kept_for_its_attempts(mode: str) -> None:
    respx.post(URL).mock(side_effect=as_transport(_busy_then_echo()).handle_request)
    sink = MemorySink()
    made: list[str] = []
    original = Pseudonymizer.patient

    def counted(self: Pseudonymizer, matricule: str) -> str:
        made.append(matricule)
        return original(self, matricule)

    reference = Pseudonymizer(b"k" * 32)
    with mock.patch.object(Pseudonymizer, "patient", counted):
        _, client = _sends(
            mode,
            [EchoOperation("a", patient="184127645108946"), EchoOperation("b", patient="279035121518989")],
            sink,
        )
    # The first call's two attempts (503, then the answer) share its pseudonym; the second call has its own.
    assert [(event.attempt, event.outcome.value) for event in sink.events] == [
        (1, "failure"),
        (2, "success"),
        (1, "success"),
    ]
    first, second = client._pseudonymizer.patient("184127645108946"), client._pseudonymizer.patient("279035121518989")
    assert [event.patient for event in sink.events] == [first, first, second] and first != second
    assert made == ["184127645108946", "279035121518989"]  # one HMAC per call, not per attempt
    assert reference.patient("184127645108946") != first  # keyed by the client's own key


@MODES
@respx.mock
def test_a_call_without_a_patient_has_no_pseudonym(mode: str) -> None:
    respx.post(URL).mock(side_effect=as_transport(echo_service).handle_request)
    sink = MemorySink()
    _sends(mode, [EchoOperation("a"), EchoOperation("b", patient="")], sink)
    assert [event.patient for event in sink.events] == [None, None]
