"""Faults on demand: the DMP client against a simulator that loses answers, refuses, waits or talks nonsense.

Over loopback HTTPS with mutual TLS, sync and async: a deposit whose answer is lost after it was
stored is retried and leaves exactly one document; 503s are retried until the service answers; a
malformed reply is a typed error. Each :class:`DmpFault` kind is also checked on its own, and the
seeded :class:`FaultMix` (rates, counts, seed, concurrency) that the reliability suite relies on.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pydantic
import pytest

from dmp_connector.config import Timeouts
from dmp_connector.dmp.errors import DmpServiceError
from dmp_connector.errors import HttpStatusError, MalformedResponseError, ProtocolError
from dmp_connector.sandbox import FaultCounts, FaultMix, HttpRequest, HttpResponse
from dmp_connector.sandbox.dmp import AuthorisationRecord, DmpFault
from dmp_connector.xds import RegistryErrorCode, parse_registry_response
from dmp_connector.xml import parse_xml

from .test_sandbox_integration import (
    ADRUN,
    MODES,
    Dmp,
    Sandbox,
    pdf_document,
    run,
)
from .test_sandbox_rules import ADRUN as ADRUN_RECORD


def queue(sandbox: Sandbox, *faults: DmpFault) -> None:
    sandbox.script.then(*(fault.entry(sandbox.simulator) for fault in faults))


def authorised(mode: str, sandbox: Sandbox, **overrides: Any) -> Dmp:
    """A client whose professional is authorised on ADRUN's DMP (set in the store: no request spent)."""
    record = AuthorisationRecord(
        patient=ADRUN_RECORD.key, professional_id="899700000001", since=sandbox.simulator.now()
    )
    sandbox.simulator.store.put_authorisation(record)
    return Dmp(mode, sandbox.settings(**overrides), sandbox.credentials.signer)


# ----------------------------------------------------------------------------------------------- through the client


@MODES
def test_a_deposit_whose_answer_was_lost_after_storing_leaves_exactly_one_document(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    report = pdf_document(dmp.config, ADRUN, "Réponse perdue")
    queue(sandbox, DmpFault.drop_after_processing())
    results: list[Any] = []

    async def scenario() -> None:
        results.append(await dmp("deposit", report, patient=ADRUN))
        found = await dmp("find_documents", ADRUN)
        results.append([e for e in found if e.unique_id == results[0].document_unique_id])

    run(scenario)
    deposited, listed = results
    assert deposited.already_deposited and deposited.confirmed_by is not None
    assert len(listed) == 1
    store = sandbox.simulator.store
    assert len(store.entries(unique_id=deposited.document_unique_id)) == 1
    assert len(store.entries(unique_id=deposited.signature_unique_id)) == 1
    assert store.content_count() == 2 and len(store.submission_sets(ADRUN_RECORD.key)) == 1
    deposits = [r for r in sandbox.script.requests if r.path.endswith("/repository")]
    assert len(deposits) == 2 and deposits[0].body == deposits[1].body  # the very same request, sent again


@MODES
def test_503s_are_retried_until_the_service_answers(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    queue(sandbox, DmpFault.unavailable(retry_after=0), DmpFault.unavailable(status=502))

    async def scenario() -> None:
        assert list(await dmp("find_documents", ADRUN)) == []

    run(scenario)
    assert len(sandbox.script.requests) == 3


@MODES
def test_503s_beyond_the_retry_budget_are_a_typed_error(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    queue(sandbox, *[DmpFault.unavailable()] * 3)

    async def scenario() -> None:
        with pytest.raises(HttpStatusError) as info:
            await dmp("find_documents", ADRUN)
        assert info.value.status_code == 503 and info.value.attempts == 3

    run(scenario)


@MODES
@pytest.mark.parametrize("which", ["not_xml", "html", "soap11", "truncated_mtom", "unknown_payload", "bad_status"])
def test_a_malformed_reply_is_a_typed_error(mode: str, which: Any, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    queue(sandbox, DmpFault.malformed_reply(which))

    async def scenario() -> None:
        with pytest.raises(ProtocolError) as info:
            await dmp("find_documents", ADRUN)
        assert isinstance(info.value, MalformedResponseError)

    run(scenario)
    assert len(sandbox.script.requests) == 1  # an answer that makes no sense is not repeated


@MODES
def test_a_timeout_is_retried(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox, timeouts=Timeouts(read=0.1))
    queue(sandbox, DmpFault.timeout(0.2))

    async def scenario() -> None:
        assert (await dmp("test_existence", ADRUN)).active

    run(scenario)
    assert len(sandbox.script.requests) == 2


@MODES
def test_latency_within_the_timeout_is_only_slow(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    queue(sandbox, DmpFault.latency(0.15))
    started = time.monotonic()

    async def scenario() -> None:
        assert (await dmp("test_existence", ADRUN)).active

    run(scenario)
    assert time.monotonic() - started >= 0.15 and len(sandbox.script.requests) == 1


@MODES
@pytest.mark.parametrize(
    "fault",
    [DmpFault.busy(), DmpFault.soap_fault("Receiver"), DmpFault.drop()],
    ids=["registry-busy", "receiver-fault", "dropped-connection"],
)
def test_transient_refusals_and_dropped_connections_are_retried(mode: str, fault: DmpFault, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    queue(sandbox, fault)

    async def scenario() -> None:
        assert list(await dmp("find_documents", ADRUN)) == []

    run(scenario)
    assert len(sandbox.script.requests) == 2


@MODES
def test_a_sender_fault_is_not_retried(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox)
    queue(sandbox, DmpFault.soap_fault("Sender", "Requête refusée"))

    async def scenario() -> None:
        with pytest.raises(DmpServiceError) as info:
            await dmp("find_documents", ADRUN)
        assert info.value.text == "Requête refusée" and not info.value.transient

    run(scenario)
    assert len(sandbox.script.requests) == 1


@MODES
def test_a_timeout_after_the_deposit_was_stored_is_safe_too(mode: str, sandbox: Sandbox) -> None:
    dmp = authorised(mode, sandbox, timeouts=Timeouts(read=0.1))
    queue(sandbox, DmpFault(kind="latency", delay=0.2))  # stored at once, answered too late
    report = pdf_document(dmp.config, ADRUN, "Réponse trop tardive")
    results: list[Any] = []

    async def scenario() -> None:
        results.append(await dmp("deposit", report, patient=ADRUN))

    run(scenario)
    (deposited,) = results
    assert deposited.already_deposited
    assert len(sandbox.simulator.store.entries(unique_id=deposited.document_unique_id)) == 1


# ----------------------------------------------------------------------------------------------- each fault


def request() -> HttpRequest:
    return HttpRequest("POST", "/si-dmp-server/v2/services/registry", {}, b"")


def answered(fault: DmpFault) -> HttpResponse:
    entry = fault.entry(lambda _: HttpResponse(200, {}, b"simulator"))
    return entry if isinstance(entry, HttpResponse) else entry(request())


def test_each_fault_kind_gives_its_answer() -> None:
    unavailable = answered(DmpFault.unavailable(retry_after=2))
    assert unavailable.status == 503 and unavailable.headers["Retry-After"] == "2"
    assert answered(DmpFault.drop()).drop
    timeout = answered(DmpFault.timeout(0.1))
    assert timeout.drop and timeout.delay == 0.1
    late = answered(DmpFault.latency(0.05))
    assert late.body == b"simulator" and late.delay == 0.05 and not late.drop
    lost = answered(DmpFault.drop_after_processing())
    assert lost.body == b"simulator" and lost.drop
    fault = answered(DmpFault.soap_fault("Sender", "non"))
    assert fault.status == 500 and b"env:Sender" in bytes(fault.body)  # type: ignore[arg-type]
    busy = answered(DmpFault.busy())
    envelope = parse_xml(bytes(busy.body))  # type: ignore[arg-type]
    payload = envelope[1][0]
    assert parse_registry_response(payload).errors[0].error_code is RegistryErrorCode.REGISTRY_BUSY
    for which in ("not_xml", "html", "soap11", "truncated_mtom", "unknown_payload", "bad_status"):
        assert answered(DmpFault.malformed_reply(which)).status == 200


# ----------------------------------------------------------------------------------------------- the fault mix


class Counting:
    """A handler that counts the requests it processed (what a drop after processing must still do)."""

    def __init__(self) -> None:
        self.processed = 0
        self._lock = threading.Lock()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            self.processed += 1
        return HttpResponse(200, {}, b"simulator")


def test_a_fault_mix_injects_each_kind_at_its_rate_and_counts_it() -> None:
    handler = Counting()
    hits: list[str] = []
    mix = FaultMix(
        handler,
        drop_after_processing=0.10,
        unavailable=0.05,
        latency=(0.001, 0.003),
        seed=1,
        retry_after=0.5,
        on_fault=lambda kind, _: hits.append(kind),
    )
    answers = [mix(request()) for _ in range(4000)]
    counts = mix.counts
    dropped = [a for a in answers if a.drop]
    refused = [a for a in answers if a.status == 503]
    assert counts.requests == 4000
    assert counts.drop_after_processing == len(dropped) == hits.count("drop_after_processing")
    assert counts.unavailable == len(refused) == hits.count("unavailable")
    assert 320 <= counts.drop_after_processing <= 480 and 140 <= counts.unavailable <= 260
    assert all(a.body == b"simulator" for a in dropped)  # the simulator did its work, the answer was lost
    assert all(a.headers["Retry-After"] == "0.5" and not a.drop for a in refused)
    assert handler.processed == 4000 - counts.unavailable  # a 503 never reaches the simulator
    assert all(0.001 <= a.delay <= 0.003 for a in answers) and counts.delayed == 4000
    assert 0.001 * 4000 <= counts.total_delay <= 0.003 * 4000


def test_a_fault_mix_is_reproducible_from_its_seed() -> None:
    def kinds(seed: int) -> list[tuple[bool, int, float]]:
        mix = FaultMix(Counting(), drop_after_processing=0.2, unavailable=0.2, latency=(0.0, 0.01), seed=seed)
        return [(a.drop, a.status, a.delay) for a in (mix(request()) for _ in range(200))]

    assert kinds(3) == kinds(3)
    assert kinds(3) != kinds(4)


def test_a_fault_mix_without_faults_is_the_handler_itself() -> None:
    handler = Counting()
    mix = FaultMix(handler)
    answer = mix(request())
    assert (answer.status, answer.body, answer.delay, answer.drop) == (200, b"simulator", 0.0, False)
    assert mix.counts == FaultCounts(requests=1, drop_after_processing=0, unavailable=0, delayed=0, total_delay=0.0)


def test_a_fault_mix_counts_exactly_under_concurrent_requests() -> None:
    handler = Counting()
    mix = FaultMix(handler, drop_after_processing=0.3, unavailable=0.3, seed=5)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: mix(request()), range(2000)))
    counts = mix.counts
    assert counts.requests == 2000
    assert counts.drop_after_processing == sum(a.drop for a in answers)
    assert counts.unavailable == sum(a.status == 503 for a in answers)
    assert handler.processed == 2000 - counts.unavailable


@pytest.mark.parametrize(
    "options",
    [
        {"drop_after_processing": -0.1},
        {"unavailable": 1.5},
        {"drop_after_processing": 0.6, "unavailable": 0.6},
        {"latency": (0.02, 0.01)},
        {"latency": (-0.01, 0.01)},
    ],
)
def test_a_fault_mix_refuses_impossible_rates(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"probability|exceed|latency"):
        FaultMix(Counting(), **options)


def test_a_fault_mix_refuses_a_status_that_is_no_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        FaultMix(Counting(), unavailable=0.1, status=200)
