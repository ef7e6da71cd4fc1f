"""Audit events, pseudonyms, sinks and the dispatcher."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest

from dmp_connector import audit
from dmp_connector.audit import (
    AuditActor,
    AuditDispatcher,
    AuditEvent,
    AuditEventKind,
    JsonLinesSink,
    LoggingSink,
    MemorySink,
    Outcome,
    Pseudonymizer,
    endpoint_of,
)

# A made-up NIR (sex, year, month, département, commune, order, key) — not a real person.
MATRICULE = "184127645108946"
KEY = b"k" * 32


def make_event(**overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "service": "insi",
        "operation": "rechercherInsAvecCarteVitale",
        "endpoint": "https://qualiflps.services-ps.ameli.fr/lps",
        "correlation_id": "urn:uuid:6b3c0e0a-7f55-4a8e-9d5e-2b1f1f9a3c11",
        "attempt": 1,
        "actor": AuditActor(
            software_name="Logiciel Test", software_version="1.0", organisation_id="10B0123456", professional_id=None
        ),
        "patient": Pseudonymizer(KEY).patient(MATRICULE),
        "outcome": Outcome.SUCCESS,
        "http_status": 200,
        "duration_ms": 12.5,
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def test_public_names() -> None:
    assert sorted(audit.__all__) == [
        "AttemptTally",
        "AuditActor",
        "AuditDispatcher",
        "AuditEvent",
        "AuditEventKind",
        "AuditSink",
        "JsonLinesSink",
        "LoggingSink",
        "MemorySink",
        "Outcome",
        "Pseudonymizer",
        "endpoint_of",
    ]


# --- Pseudonymizer -------------------------------------------------------------------------


def test_pseudonym_is_stable_with_the_same_key() -> None:
    first = Pseudonymizer(KEY).patient(MATRICULE)
    assert first == Pseudonymizer(KEY).patient(MATRICULE)
    assert first.startswith("hmac-sha256:")
    assert len(first) == len("hmac-sha256:") + 32


def test_pseudonym_ignores_spaces_and_case() -> None:
    pseudonymizer = Pseudonymizer(KEY)
    assert pseudonymizer.patient("1 84 12 76 451 089 46") == pseudonymizer.patient(MATRICULE)
    assert pseudonymizer.patient("1841220A12345") == pseudonymizer.patient("1841220a12345")


def test_pseudonym_differs_with_another_key() -> None:
    assert Pseudonymizer(KEY).patient(MATRICULE) != Pseudonymizer(b"o" * 32).patient(MATRICULE)


def test_without_a_key_every_pseudonymizer_of_the_process_agrees() -> None:
    # One random key per process: two clients of one application correlate, a keyed one does not.
    assert Pseudonymizer().patient(MATRICULE) == Pseudonymizer().patient(MATRICULE)
    assert Pseudonymizer().patient(MATRICULE) != Pseudonymizer(KEY).patient(MATRICULE)


def test_without_a_key_another_process_gives_another_pseudonym() -> None:
    import subprocess
    import sys

    code = f"from dmp_connector.audit import Pseudonymizer; print(Pseudonymizer().patient({MATRICULE!r}))"
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in "ab"
    }
    assert len(runs) == 2


def test_pseudonym_never_contains_the_matricule() -> None:
    pseudonym = Pseudonymizer(KEY).patient(MATRICULE)
    assert MATRICULE not in pseudonym
    assert MATRICULE[:13] not in pseudonym


def test_pseudonymizer_hides_its_key() -> None:
    assert "kkkk" not in repr(Pseudonymizer(KEY))


def test_pseudonymizer_refuses_short_key_and_empty_matricule() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymizer(b"short")
    with pytest.raises(ValueError, match="empty"):
        Pseudonymizer(KEY).patient("  ")


# --- AuditEvent ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patient",
    [
        MATRICULE,
        MATRICULE[:13],
        "1 84 12 76 451 089 46",
        "1.84.12.76.451.089",
        "184122A45108946",
        "184122b451089",
        f"INS {MATRICULE}",
    ],
)
def test_event_refuses_a_raw_matricule(patient: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="NIR/NIA in clear") as info:
        make_event(patient=patient)
    # The refused value must not leak through the error's message if the error is logged.
    assert patient not in str(info.value)
    assert patient not in repr(info.value)


@pytest.mark.parametrize("patient", ["Jean Dupont", "hmac-sha256:XYZ", "hmac-sha256:" + "A" * 32])
def test_event_refuses_anything_but_a_pseudonym(patient: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="pseudonym"):
        make_event(patient=patient)


def test_event_accepts_pseudonym_or_none() -> None:
    assert make_event().patient == Pseudonymizer(KEY).patient(MATRICULE)
    assert make_event(patient=None).patient is None


def test_event_is_frozen() -> None:
    event = make_event()
    with pytest.raises(pydantic.ValidationError):
        event.patient = MATRICULE  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        make_event(unexpected="x")


def test_event_defaults() -> None:
    first, second = make_event(), make_event()
    assert first.event_id != second.event_id
    assert first.timestamp.tzinfo is UTC
    assert abs(datetime.now(UTC) - first.timestamp) < timedelta(minutes=1)
    assert first.document_ids == ()
    assert first.error_type is None


def test_event_timestamp_is_aware_and_utc() -> None:
    paris = timezone(timedelta(hours=1))
    event = make_event(timestamp=datetime(2025, 3, 14, 10, 0, tzinfo=paris))
    assert event.timestamp == datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)
    with pytest.raises(pydantic.ValidationError, match="timezone-aware"):
        make_event(timestamp=datetime(2025, 3, 14, 10, 0))


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://example.test/lps?nir=184127645108946",
        "https://example.test/lps#frag",
        "https://user:secret@example.test/lps",
    ],
)
def test_event_refuses_query_fragment_and_credentials(endpoint: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="endpoint"):
        make_event(endpoint=endpoint)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.test/lps?nir=1&x=2#f", "https://example.test/lps"),
        ("https://user:secret@Example.test:8443/a/b", "https://example.test:8443/a/b"),
        ("https://[::1]:443/dmp", "https://[::1]:443/dmp"),
    ],
)
def test_endpoint_of(url: str, expected: str) -> None:
    assert endpoint_of(url) == expected
    make_event(endpoint=endpoint_of(url))


def test_event_to_json_is_one_parseable_line() -> None:
    event = make_event(document_ids=("1.2.250.1.213.1.1.9^123",), outcome=Outcome.FAILURE, error_type="SoapFaultError")
    line = event.to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert data["event_id"] == event.event_id
    assert data["outcome"] == "failure"
    assert data["document_ids"] == ["1.2.250.1.213.1.1.9^123"]
    assert data["actor"]["organisation_id"] == "10B0123456"
    assert AuditEvent.model_validate_json(line) == event


def test_event_to_log_dict_is_json_compatible() -> None:
    event = make_event()
    data = event.to_log_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["timestamp"].endswith("Z")


def test_event_fields_are_documented() -> None:
    for model in (AuditEvent, AuditActor):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


# --- sinks ----------------------------------------------------------------------------------


def test_memory_sink() -> None:
    sink = MemorySink()
    event = make_event()
    sink(event)
    assert sink.events == [event]
    sink.clear()
    assert sink.events == []


def test_json_lines_sink_writes_parseable_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    events = [make_event(attempt=n) for n in (1, 2, 3)]
    with JsonLinesSink(path) as sink:
        for event in events:
            sink(event)
            # Flushed at once: visible before close.
            assert path.read_text(encoding="utf-8").count("\n") == event.attempt
    assert sink.closed
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [AuditEvent.model_validate_json(line) for line in lines] == events
    assert [json.loads(line)["attempt"] for line in lines] == [1, 2, 3]


def test_json_lines_sink_appends_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        with JsonLinesSink(path) as sink:
            sink(make_event())
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_json_lines_sink_refuses_after_close(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink(make_event())


def test_json_lines_sink_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonLinesSink(path) as sink:

        def write() -> None:
            for _ in range(50):
                sink(make_event())

        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 400
    for line in lines:
        AuditEvent.model_validate_json(line)


def test_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    event = make_event()
    logger = logging.getLogger("tests.audit")
    with caplog.at_level(logging.INFO, logger="tests.audit"):
        LoggingSink(logger)(event)
    (record,) = caplog.records
    assert record.name == "tests.audit"
    assert record.levelno == logging.INFO
    assert record.getMessage() == f"audit {event.to_json()}"
    assert getattr(record, "audit_event", None) == event.to_log_dict()


def test_logging_sink_default_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dmp_connector.audit"):
        LoggingSink()(make_event())
    assert [r.name for r in caplog.records] == ["dmp_connector.audit"]


# --- dispatcher ---------------------------------------------------------------------------


class BrokenSink:
    def __repr__(self) -> str:
        return "BrokenSink()"

    def __call__(self, event: AuditEvent) -> None:
        raise OSError("disk full")


def test_dispatcher_calls_every_sink_in_order() -> None:
    calls: list[str] = []
    first, second = MemorySink(), MemorySink()
    dispatcher = AuditDispatcher([first, lambda e: calls.append(e.event_id)])
    dispatcher.add(second)
    event = make_event()
    dispatcher.emit(event)
    assert first.events == second.events == [event]
    assert calls == [event.event_id]
    assert len(dispatcher.sinks) == 3
    assert dispatcher.failures == 0


def test_dispatcher_survives_a_broken_sink(caplog: pytest.LogCaptureFixture) -> None:
    before, after = MemorySink(), MemorySink()
    dispatcher = AuditDispatcher([before, BrokenSink(), after])
    event = make_event()
    with caplog.at_level(logging.ERROR, logger="dmp_connector.audit"):
        dispatcher.emit(event)
    assert before.events == after.events == [event]
    assert dispatcher.failures == 1
    (record,) = [r for r in caplog.records if r.name == "dmp_connector.audit"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert event.event_id in message
    assert "BrokenSink()" in message
    assert "OSError" in message
    assert record.exc_info is not None
    assert record.exc_info[0] is OSError
    assert MATRICULE not in caplog.text
    assert MATRICULE[:13] not in caplog.text


def test_dispatcher_counts_each_failure() -> None:
    dispatcher = AuditDispatcher([BrokenSink(), BrokenSink()])
    dispatcher.emit(make_event())
    dispatcher.emit(make_event())
    assert dispatcher.failures == 4


def test_dispatcher_with_a_closed_file_sink_still_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = JsonLinesSink(tmp_path / "audit.jsonl")
    sink.close()
    event = make_event()
    with caplog.at_level(logging.ERROR, logger="dmp_connector.audit"):
        AuditDispatcher([sink]).emit(event)
    assert event.to_json() in caplog.text


def test_dispatcher_does_not_swallow_base_exceptions() -> None:
    def interrupted(event: AuditEvent) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        AuditDispatcher([interrupted]).emit(make_event())


# ----------------------------------------------------------------------------------------------- outcome events


def test_an_event_is_an_attempt_unless_said_otherwise() -> None:
    event = make_event()
    assert event.kind is AuditEventKind.ATTEMPT
    assert json.loads(event.to_json())["kind"] == "attempt"
    old_line = event.to_json().replace(',"kind":"attempt"', "")  # a journal written before outcome events
    assert "kind" not in json.loads(old_line)
    assert AuditEvent.model_validate_json(old_line).kind is AuditEventKind.ATTEMPT


def test_an_outcome_event_counts_the_attempts_of_its_call() -> None:
    outcome = make_event(kind="outcome", attempt=0, outcome="already_done", http_status=None)
    assert outcome.kind is AuditEventKind.OUTCOME and outcome.outcome is Outcome.ALREADY_DONE
    assert AuditEvent.model_validate_json(outcome.to_json()) == outcome


@pytest.mark.parametrize(
    "fields", [{"attempt": 0}, {"outcome": "already_done"}], ids=["attempt-zero", "already-done-attempt"]
)
def test_an_attempt_event_keeps_its_rules(fields: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        make_event(**fields)


def test_the_dispatcher_tallies_the_attempts_of_one_call() -> None:
    dispatcher = AuditDispatcher([MemorySink()])
    mine, other = "urn:uuid:mine", "urn:uuid:other"
    with dispatcher.tally(mine) as tally:
        dispatcher.emit(make_event(correlation_id=mine))
        dispatcher.emit(make_event(correlation_id=other))
        dispatcher.emit(make_event(correlation_id=mine, attempt=2))
        dispatcher.emit(make_event(correlation_id=mine, kind="outcome", attempt=2))  # not an attempt
    dispatcher.emit(make_event(correlation_id=mine, attempt=3))  # after the block
    assert tally.count == 2 and repr(tally) == "AttemptTally(count=2)"


def test_a_utc_timestamp_is_kept_as_it_is_and_any_other_converted() -> None:
    stamp = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    assert make_event(timestamp=stamp).timestamp is stamp
    utc_like = timezone(timedelta(0))  # offset 0 but not the UTC object: converted to UTC, as before
    converted = make_event(timestamp=datetime(2025, 3, 14, 9, 0, tzinfo=utc_like)).timestamp
    assert converted == stamp and converted.tzinfo is UTC


def test_an_endpoint_checked_once_is_kept_and_a_refused_one_is_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "_CHECKED_ENDPOINTS", set())
    good, bad = "https://kept.example.test/lps", "https://kept.example.test/lps?nir=184127645108946"
    make_event(endpoint=good)
    assert sorted(audit._CHECKED_ENDPOINTS) == [good]
    for _ in range(2):  # refused again the second time: a refusal is not remembered as a pass
        with pytest.raises(pydantic.ValidationError, match="endpoint"):
            make_event(endpoint=bad)
    assert sorted(audit._CHECKED_ENDPOINTS) == [good]
    assert make_event(endpoint=good).endpoint == good


def test_the_checked_endpoints_stay_few(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "_CHECKED_ENDPOINTS", set())
    for n in range(audit._KEPT_ENDPOINTS + 10):
        make_event(endpoint=f"https://host{n}.example.test/lps")
    assert len(audit._CHECKED_ENDPOINTS) == audit._KEPT_ENDPOINTS
