"""Memory under hostile answers: a failed attempt's answer is released before the next attempt starts.

The hostile server (raw sockets, mutual TLS) sends 8 MB of a SOAP answer and then stalls, three times:
each attempt ends at its deadline (a retryable timeout), and the next one reads another 8 MB. Before
the fix the first attempt's 8 MB stayed referenced — through the error tenacity keeps and its
traceback's frames and its context chain — while the next read its own: the peak held every answer (27 MiB
for three of 8 MiB; 9.4 MiB with the fix). The peak of Python allocations (tracemalloc) during the call
must stay under 1.6 answers.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from dmp_connector.config import Environment
from dmp_connector.errors import LimitExceededError, RequestTimeout
from dmp_connector.retries import RetryPolicy
from tests.conftest import PkiFiles, make_settings
from tests.hostile_server import Peer, Received, head, hostile
from tests.insi.helpers import ADRUN, SOFTWARE
from tests.insi.helpers import call as insi_call

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
ANSWER = 8 * 1024 * 1024
PREFIX = b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body><x:Ok xmlns:x='urn:x'>"
BODY = PREFIX + b"A" * (ANSWER - len(PREFIX))


def most_then_stall(peer: Peer, request: Received) -> None:
    peer.send(head(200, len(BODY) + 1000, content_type="application/soap+xml"))
    peer.send(BODY)
    peer.stall()


@MODES
def test_a_failed_attempts_answer_is_released_before_the_next(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    retry = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.01, jitter=0.0)
    with hostile(pki_files, tmp_path, most_then_stall) as server:
        config = make_settings(
            pki_files,
            software=SOFTWARE,
            environment=Environment.sandbox(server.url),
            retry=retry,
            timeouts={"attempt": 1.0, "call": 10.0},
        )
        gc.collect()
        tracemalloc.start()
        try:
            with pytest.raises(RequestTimeout) as info:
                insi_call(mode, config, "search", ADRUN)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.attempts == 3 and len(server.received) == 3
    assert peak < 1.6 * ANSWER, f"peak {peak / 2**20:.1f} MiB for answers of {ANSWER / 2**20:.0f} MiB"


FAULT = 50 * 1024 * 1024


def fifty_megabyte_fault(peer: Peer, request: Received) -> None:
    start = b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body><env:Fault>"
    peer.send(head(500, FAULT, content_type="application/soap+xml") + start)
    chunk = b"A" * (1 << 20)
    for _ in range(FAULT // len(chunk)):
        if peer.stopping.is_set():
            return
        peer.send(chunk)


@MODES
def test_a_fifty_megabyte_fault_costs_about_the_fault_limit(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    """A 50 MB fault cost ~350 MB per attempt (read whole, then parsed); it is cut at xml.max_fault_bytes (1 MiB)."""
    with hostile(pki_files, tmp_path, fifty_megabyte_fault) as server:
        config = make_settings(
            pki_files, software=SOFTWARE, environment=Environment.sandbox(server.url), timeouts={"attempt": 10.0}
        )
        gc.collect()
        tracemalloc.start()
        try:
            with pytest.raises(LimitExceededError):
                insi_call(mode, config, "search", ADRUN)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
