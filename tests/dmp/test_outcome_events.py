"""Each deposit ends with one audit outcome event, whatever its attempts met; other calls leave attempts only.

Sync and async, against canned answers (respx): a plain success, a replay (``already_done``), a
failure after the retry budget, a failure before anything was sent; the outcome shares the
``correlation_id`` (the ProvideAndRegister ``wsa:MessageID``) of its attempts and counts them.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from dmp_connector.audit import AuditEvent, AuditEventKind, MemorySink, Outcome, Pseudonymizer
from dmp_connector.cda import extract_metadata
from dmp_connector.config import DmpService
from dmp_connector.dmp.mapping import deposit_ids
from dmp_connector.errors import HttpStatusError, IdentityNotQualifiedError
from tests.dmp.client_support import (
    PATIENT,
    SETTINGS,
    UNQUALIFIED,
    cda_document,
    received,
    registry,
    soap_response,
    url,
)
from tests.dmp.test_client_respx import MODES, call, query_answer
from tests.dmp.test_idempotency import duplicate

REPOSITORY = url(DmpService.REPOSITORY)


def split(sink: MemorySink) -> tuple[list[AuditEvent], list[AuditEvent]]:
    attempts = [e for e in sink.events if e.kind is AuditEventKind.ATTEMPT]
    finals = [e for e in sink.events if e.kind is AuditEventKind.OUTCOME]
    return attempts, finals


@MODES
@respx.mock
def test_a_deposit_ends_with_one_outcome_sharing_its_attempts_correlation_id(mode: str) -> None:
    route = respx.post(REPOSITORY).mock(return_value=soap_response(registry()))
    sink = MemorySink()
    result = call(mode, "deposit", cda_document(), patient=PATIENT, audit=[sink])
    attempt, outcome = sink.events
    assert (attempt.kind, outcome.kind) == (AuditEventKind.ATTEMPT, AuditEventKind.OUTCOME)
    assert outcome.outcome is Outcome.SUCCESS and outcome.attempt == 1
    assert outcome.service == "dmp" and outcome.operation == "deposit" and outcome.endpoint == REPOSITORY
    assert outcome.correlation_id == attempt.correlation_id == received(route.calls.last.request).message_id
    assert outcome.document_ids == (result.document_unique_id, result.signature_unique_id)
    assert outcome.patient == Pseudonymizer().patient(PATIENT.ins.matricule)  # type: ignore[union-attr]
    assert outcome.error_type is None and outcome.error_code is None and outcome.http_status is None
    assert outcome.timestamp <= attempt.timestamp and outcome.duration_ms >= attempt.duration_ms
    assert PATIENT.ins.matricule not in outcome.to_json()  # type: ignore[union-attr]


@MODES
@respx.mock
def test_a_replay_after_a_lost_answer_is_already_done(mode: str) -> None:
    data = cda_document()
    metadata = extract_metadata(data)
    ids = deposit_ids(SETTINGS, metadata.unique_id, metadata.hash)
    respx.post(REPOSITORY).mock(side_effect=[httpx.ReadError("reset"), duplicate(ids.submission_set)])
    sink = MemorySink()
    assert call(mode, "deposit", data, patient=PATIENT, audit=[sink]).already_deposited
    attempts, finals = split(sink)
    assert [e.outcome for e in attempts] == [Outcome.FAILURE, Outcome.SUCCESS]  # what each try met …
    [final] = finals
    assert final.outcome is Outcome.ALREADY_DONE and final.attempt == 2  # … and what the call achieved


@MODES
@respx.mock
def test_a_deposit_that_fails_says_why_once(mode: str) -> None:
    respx.post(REPOSITORY).mock(return_value=httpx.Response(503))
    sink = MemorySink()
    with pytest.raises(HttpStatusError):
        call(mode, "deposit", cda_document(), patient=PATIENT, audit=[sink])
    attempts, finals = split(sink)
    assert len(attempts) == 3
    [final] = finals
    assert (final.outcome, final.error_type, final.error_code, final.http_status, final.attempt) == (
        Outcome.FAILURE,
        "HttpStatusError",
        "503",
        503,
        3,
    )
    assert final.correlation_id == attempts[0].correlation_id and final.document_ids == attempts[0].document_ids


@MODES
@respx.mock
def test_a_deposit_refused_before_sending_has_an_outcome_with_no_attempt(mode: str) -> None:
    route = respx.post(REPOSITORY)
    sink = MemorySink()
    with pytest.raises(IdentityNotQualifiedError):
        call(mode, "deposit", cda_document(), patient=UNQUALIFIED, audit=[sink])
    assert not route.called
    [final] = sink.events
    assert final.kind is AuditEventKind.OUTCOME and final.attempt == 0
    assert final.outcome is Outcome.FAILURE and final.error_type == "IdentityNotQualifiedError"
    assert final.patient is None and final.document_ids == ()


@MODES
@respx.mock
def test_queries_leave_attempt_events_only(mode: str) -> None:
    respx.post(url(DmpService.REGISTRY)).mock(return_value=query_answer())
    sink = MemorySink()
    assert list(call(mode, "find_documents", PATIENT, audit=[sink])) == []
    assert [e.kind for e in sink.events] == [AuditEventKind.ATTEMPT]


@respx.mock
def test_an_interrupted_deposit_counts_the_attempt_it_sent() -> None:
    sent: list[httpx.Request] = []

    def interrupted(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise KeyboardInterrupt  # once the request was sent (respx takes no BaseException class)

    respx.post(REPOSITORY).mock(side_effect=interrupted)
    sink = MemorySink()
    with pytest.raises(KeyboardInterrupt):
        call("sync", "deposit", cda_document(), patient=PATIENT, audit=[sink])
    assert len(sent) == 1
    [final] = split(sink)[1]
    assert (final.outcome, final.error_type) == (Outcome.FAILURE, "KeyboardInterrupt")
    assert final.attempt == 1


def test_the_outcome_endpoint_is_split_once_per_url_and_never_kept_with_a_query() -> None:
    from dmp_connector.audit import endpoint_of
    from dmp_connector.dmp import DmpClient
    from tests.dmp.client_support import signer

    with DmpClient(SETTINGS, signer=signer()) as client:
        assert client._audit_endpoint(REPOSITORY) == endpoint_of(REPOSITORY) == REPOSITORY
        assert client._audit_endpoint(REPOSITORY) == REPOSITORY and list(client._endpoints) == [REPOSITORY]
        with_query = REPOSITORY + "?ticket=42"
        assert client._audit_endpoint(with_query) == REPOSITORY  # reduced as endpoint_of reduces it
        assert list(client._endpoints) == [REPOSITORY]  # a URL with a query (an identifier, a secret) is not kept
        for n in range(20):
            assert client._audit_endpoint(f"{REPOSITORY}/{n}") == f"{REPOSITORY}/{n}"
        assert len(client._endpoints) == 16
