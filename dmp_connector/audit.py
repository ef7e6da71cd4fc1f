"""Audit trail of the calls made to the national services.

The transport emits one :class:`AuditEvent` per *attempt* (a retried call leaves one
event per try, all sharing the call's ``correlation_id``), so that a vendor can show
who called which service, when, about which (pseudonymised) patient, and what came
back — the traceability the French e-health frameworks require of a calling system.

A call whose attempts can disagree with its result — a deposit, where a lost answer fails
an attempt although the document was stored, and the retry then finds it there — also
ends with one *outcome* event (``kind="outcome"``): what the call finally achieved, once
per call, sharing the ``correlation_id`` of its attempts. See :class:`AuditEventKind`.

An event never holds health data: no document content, no patient identity in clear.
The patient appears only as a keyed pseudonym made by :class:`Pseudonymizer`, and the
model refuses anything else in that field, so a bug cannot log a NIR/NIA in clear.

Events go to sinks, plain callables; :class:`AuditDispatcher` shields the caller from a
failing sink without losing the event.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
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

_logger = logging.getLogger("dmp_connector.audit")

_KEPT_ENDPOINTS = 64
_CHECKED_ENDPOINTS: set[str] = set()
"""Endpoints an event was already given and found without query, fragment or credentials: a client posts to a
handful of service URLs, each split once rather than at every event (issue 22); only ``str`` values, a few."""

_PSEUDONYM_PREFIX = "hmac-sha256:"
_PSEUDONYM = re.compile(r"hmac-sha256:[0-9a-f]{32}")
# A NIR or NIA: 13 characters (sex, year, month, département — 2A/2B for Corsica —,
# commune, order) optionally followed by the 2-digit key; spaces, dots and dashes ignored.
_MATRICULE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?")
_SEPARATORS = re.compile(r"[\s.\-]+")


class Outcome(StrEnum):
    """How an attempt (or, on an outcome event, a whole call) ended, as seen by the caller."""

    SUCCESS = "success"
    FAILURE = "failure"
    ALREADY_DONE = "already_done"
    """Outcome events only: the service already held what the call was to do (a deposit found
    stored — by an earlier attempt whose answer was lost, or by an earlier call); nothing new was done."""


class AuditEventKind(StrEnum):
    """What an event records: one attempt on the wire, or how a whole call ended.

    Attempt events (the default, and all the transport emits) say what each try met; a call
    retried after a lost answer leaves a failed attempt even though the service did the work.
    An outcome event closes such a call once, whatever its attempts were, so that a journal
    answers "was this document deposited, once?" with one line per document and call.
    """

    ATTEMPT = "attempt"
    """One try of one operation; ``attempt`` is its 1-based number."""
    OUTCOME = "outcome"
    """How a client call ended (today: each DMP deposit); ``attempt`` counts the attempts it sent."""


class AuditActor(BaseModel):
    """Who made the call: the software and, when known, the organisation and professional."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    software_name: str
    """Name of the calling software, as registered with the service (LPS name)."""
    software_version: str
    """Version of the calling software, so that an incident can be tied to a release."""
    organisation_id: str | None = None
    """National id of the organisation (FINESS, SIRET …); an identifier, not health data."""
    professional_id: str | None = None
    """National id of the professional (RPPS/ADELI); an identifier, not health data."""


class AuditEvent(BaseModel):
    """One attempt of one call to a national service, or a call's outcome, with nothing in it that is health data."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        # A refused value must not reach a log through the validation error's message.
        hide_input_in_errors=True,
    )

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    """Unique id of this event, so that copies in several sinks can be matched."""
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    """When the attempt started, timezone-aware and stored in UTC."""
    service: str = Field(min_length=1)
    """Service called: ``"insi"``, ``"dmp"``, ``"mssante"`` …"""
    operation: str = Field(min_length=1)
    """Operation called within the service (the SOAP action's short name, for instance)."""
    endpoint: str = Field(min_length=1)
    """Scheme, host and path called; never a query string, fragment or credentials."""
    correlation_id: str = Field(min_length=1)
    """The call's ``wsa:MessageID``, the same on every attempt, to group retries."""
    attempt: int = Field(ge=0)
    """1-based number of this attempt within the call; on an outcome event, the number of attempts the
    call sent in all (0 when it ended before sending anything, on a local validation error say)."""
    actor: AuditActor
    """Who made the call."""
    patient: str | None = None
    """Pseudonym of the patient concerned (see :class:`Pseudonymizer`); never the matricule."""
    document_ids: tuple[str, ...] = ()
    """Unique ids (OIDs) of the documents concerned; never their content."""
    outcome: Outcome
    """Whether the attempt (on an outcome event, the call) succeeded; ``already_done`` on outcome events only."""
    error_type: str | None = None
    """Class name of the error that ended the attempt, if any."""
    error_code: str | None = None
    """Code given by the service or its SOAP fault, if any."""
    http_status: int | None = Field(default=None, ge=100, le=599)
    """HTTP status received, if an answer came back."""
    duration_ms: float = Field(ge=0.0, allow_inf_nan=False)
    """Time the attempt (on an outcome event, the whole call) took, in milliseconds."""
    kind: AuditEventKind = AuditEventKind.ATTEMPT
    """``attempt`` (the default: one try on the wire) or ``outcome`` (how a whole call ended)."""

    @model_validator(mode="after")
    def _kind_rules(self) -> Self:
        if self.kind is AuditEventKind.ATTEMPT:
            if self.attempt < 1:
                raise ValueError("an attempt event's attempt number starts at 1")
            if self.outcome is Outcome.ALREADY_DONE:
                raise ValueError("already_done is the outcome of a call (kind='outcome'), not of an attempt")
        return self

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is UTC:  # what the clients stamp: astimezone(UTC) would return it as it is
            return value
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(UTC)

    @field_validator("endpoint")
    @classmethod
    def _no_query(cls, value: str) -> str:
        if value in _CHECKED_ENDPOINTS:
            return value
        parts = urlsplit(value)
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("endpoint must not carry a query string or fragment (use endpoint_of)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("endpoint must not carry credentials (use endpoint_of)")
        if type(value) is str and len(_CHECKED_ENDPOINTS) < _KEPT_ENDPOINTS:
            _CHECKED_ENDPOINTS.add(value)
        return value

    @field_validator("patient")
    @classmethod
    def _pseudonym_only(cls, value: str | None) -> str | None:
        if value is None or _PSEUDONYM.fullmatch(value):
            return value
        if _MATRICULE.search(_SEPARATORS.sub("", value).upper()):
            raise ValueError("patient looks like a NIR/NIA in clear; pass Pseudonymizer.patient(...) instead")
        raise ValueError("patient must be a pseudonym made by Pseudonymizer.patient(...)")

    def to_json(self) -> str:
        """The event as one line of JSON, for log files and JSON Lines sinks."""
        return self.model_dump_json()

    def to_log_dict(self) -> dict[str, Any]:
        """The event as JSON-compatible values, for ``logging``'s ``extra`` and structured loggers."""
        return self.model_dump(mode="json")


def endpoint_of(url: str) -> str:
    """``url`` reduced to what an :class:`AuditEvent` may hold: scheme, host, port and path.

    Query strings and fragments may carry identifiers, and userinfo may carry secrets.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_PROCESS_KEY = secrets.token_bytes(32)
"""The key used when none is configured: one per process, so that every client agrees."""


class Pseudonymizer:
    """Turns a patient matricule into a keyed pseudonym that cannot be reversed from the log.

    HMAC-SHA256 rather than a plain hash: the NIR space is small enough to hash entirely,
    so only a secret key keeps the pseudonym from being looked up. Without ``key`` a
    random key is drawn for this process only: pseudonyms then match within one run but
    not across runs or processes. Set a stable key in the configuration to correlate
    events over time, and keep it as secret as a password — whoever holds it can test
    guesses.
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = _PROCESS_KEY
        elif len(key) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes (32 recommended)")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key=<hidden>)"

    def patient(self, matricule: str) -> str:
        """The pseudonym of ``matricule``: the same for the same key, spaces and case ignored."""
        normalised = "".join(matricule.split()).upper()
        if not normalised:
            raise ValueError("cannot pseudonymise an empty matricule")
        digest = hmac.new(self._key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()
        return _PSEUDONYM_PREFIX + digest[:32]


AuditSink: TypeAlias = Callable[[AuditEvent], None]
"""Anything that records an event; it may raise, the dispatcher contains the damage."""


class LoggingSink:
    """Writes each event to a standard logger at INFO, as JSON and as structured ``extra``."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else _logger

    def __repr__(self) -> str:
        return f"{type(self).__name__}(logger={self.logger.name!r})"

    def __call__(self, event: AuditEvent) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("audit %s", event.to_json(), extra={"audit_event": event.to_log_dict()})


class JsonLinesSink:
    """Appends each event as one JSON line to a file, flushed at once so a crash loses nothing.

    The file is created readable by its owner only, since it names professionals and
    organisations. One lock serialises writers in this process; with ``O_APPEND`` and
    one write per line, several processes may share the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", newline="\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __call__(self, event: AuditEvent) -> None:
        line = event.to_json() + "\n"
        with self._lock:
            if self._file.closed:
                raise ValueError(f"{self!r} is closed")
            self._file.write(line)
            self._file.flush()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file.closed

    def close(self) -> None:
        """Close the file; later events raise (and the dispatcher logs them instead)."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemorySink:
    """Keeps events in a list, for tests and the pytest plugin."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self.events)} events>)"

    def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)

    def clear(self) -> None:
        """Forget the events recorded so far."""
        self.events.clear()


class AttemptTally:
    """The number of attempt events counted by :meth:`AuditDispatcher.tally`."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0
        """Attempt events seen so far."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self.count})"


class AuditDispatcher:
    """Sends each event to every sink; a failing sink never breaks the call being audited.

    When a sink raises, the event is logged in full to the ``dmp_connector.audit``
    logger at ERROR, with the sink and the exception, so that it is still recorded, and
    :attr:`failures` is incremented for monitoring. ``emit`` never awaits, so the sync
    and async clients share one dispatcher.
    """

    def __init__(self, sinks: Iterable[AuditSink] = ()) -> None:
        self._sinks: list[AuditSink] = list(sinks)
        self._lock = threading.Lock()
        self._tallies: dict[str, AttemptTally] = {}
        self.failures = 0
        """Number of times a sink raised since this dispatcher was made."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sinks={self._sinks!r}, failures={self.failures})"

    @property
    def sinks(self) -> tuple[AuditSink, ...]:
        """The sinks, in the order they are called."""
        with self._lock:
            return tuple(self._sinks)

    def add(self, sink: AuditSink) -> None:
        """Call ``sink`` too for every later event."""
        with self._lock:
            self._sinks.append(sink)

    @contextmanager
    def tally(self, correlation_id: str) -> Iterator[AttemptTally]:
        """Count the attempt events emitted with ``correlation_id`` while the block runs.

        A client uses it to say, on a call's outcome event, how many attempts the call sent: the
        attempts are emitted by the transport, which the client does not see retrying.
        """
        counter = AttemptTally()
        with self._lock:
            self._tallies[correlation_id] = counter
        try:
            yield counter
        finally:
            with self._lock:
                self._tallies.pop(correlation_id, None)

    def emit(self, event: AuditEvent) -> None:
        """Give ``event`` to every sink; returns normally whatever the sinks do."""
        if self._tallies and event.kind is AuditEventKind.ATTEMPT:
            with self._lock:
                counter = self._tallies.get(event.correlation_id)
                if counter is not None:
                    counter.count += 1
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as exc:
                with self._lock:
                    self.failures += 1
                _logger.error(
                    "audit sink %r failed (%s); event kept here: %s",
                    sink,
                    type(exc).__name__,
                    event.to_json(),
                    exc_info=True,
                )


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
