"""The queue itself: enqueue, claim with a lease, record an outcome, retry or cancel by hand, report.

Storage is SQLAlchemy Core on any URL: ``sqlite:///outbox.db`` by default (embedded, WAL, one
host), ``postgresql+psycopg://…`` for many workers on many hosts. A worker *claims* the item due
first with one statement (``UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING …`` on PostgreSQL: claimers never wait for each other nor take the same row) and holds
it under a lease; a worker that dies leaves a lease that expires, and the item is claimed again.
Every write about a claimed item names the claim's token, so that a worker whose lease expired
cannot overwrite what the next one recorded. The deposit itself is idempotent
(:meth:`~dmp_connector.dmp.DmpClient.deposit`): an item deposited twice is stored once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from dmp_connector.audit import Pseudonymizer
from dmp_connector.config import Settings, Timeouts
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._schema import attempts, items, migrate
from .metrics import OutboxMetrics
from .schedule import Classified, FailureReason, RetrySchedule

__all__ = ["Attempt", "Claim", "ItemState", "Outbox", "OutboxItem", "OutboxStatus"]

_logger = logging.getLogger("dmp_connector.outbox")


class ItemState(StrEnum):
    """Where an item is. ``deposited``, ``failed`` and ``cancelled`` are final."""

    WAITING = "waiting"
    """Due now or later (``due_at``): new, or after a transient failure."""
    IN_FLIGHT = "in_flight"
    """Claimed by a worker under a lease (``lease_until``)."""
    DEPOSITED = "deposited"
    """In the DMP (``already_deposited`` when an earlier attempt had stored it)."""
    FAILED = "failed"
    """Retrying cannot fix it: ``reason`` says why (:class:`~dmp_connector.outbox.FailureReason`)."""
    CANCELLED = "cancelled"
    """Cancelled by hand before it was deposited."""

    @property
    def final(self) -> bool:
        """True for the states no worker touches again (a hand-made retry reopens ``failed``)."""
        return self in (ItemState.DEPOSITED, ItemState.FAILED, ItemState.CANCELLED)


@dataclass(frozen=True)
class Attempt:
    """One line of an item's history: an attempt or a hand-made change, and its outcome."""

    at: dt.datetime
    outcome: str
    """``deposited``, ``already_deposited``, ``transient``, ``failed``, ``lease_expired``, ``released``,
    ``retried``, ``cancelled``."""
    worker: str | None = None
    seconds: float | None = None
    """How long the attempt took."""
    code: str | None = None
    detail: str | None = None
    next_due: dt.datetime | None = None
    """When the item is due again (after a transient failure)."""


@dataclass(frozen=True)
class OutboxItem:
    """An item as the queue holds it; the patient only as the audit trail's pseudonym."""

    id: str
    state: ItemState
    patient: str
    """The patient's pseudonym (:class:`~dmp_connector.audit.Pseudonymizer`, the audit trail's key)."""
    attempts: int
    created_at: dt.datetime
    due_at: dt.datetime
    key: str | None = None
    reason: FailureReason | None = None
    detail: str | None = None
    lease_until: dt.datetime | None = None
    worker: str | None = None
    document_unique_id: str | None = None
    entry_uuid: str | None = None
    already_deposited: bool | None = None
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class OutboxStatus:
    """What to monitor: counts by state, the oldest waiting item, the last errors."""

    counts: dict[ItemState, int]
    oldest_waiting: dt.datetime | None
    """When the oldest item not yet final was enqueued (None: nothing waits)."""
    expired_leases: int
    """Items in flight whose lease has expired (a worker died; the next claim takes them back)."""
    last_errors: tuple[tuple[str, Attempt], ...]
    """The latest failed attempts (item id, attempt), newest first."""

    @property
    def pending(self) -> int:
        """Items not final yet."""
        return self.counts.get(ItemState.WAITING, 0) + self.counts.get(ItemState.IN_FLIGHT, 0)


@dataclass(frozen=True)
class Claim:
    """An item a worker holds under a lease: what the deposit needs, and the token its writes name."""

    id: str
    token: str = field(repr=False)
    document: bytes = field(repr=False)
    """The CDA (its header names the patient): never in a repr, a log line or a traceback's locals."""
    patient: Identity = field(repr=False)
    replaces: str | None
    submission_time: dt.datetime
    attempt: int
    """This attempt's number (1-based)."""
    lease_until: float


_EPOCH: Final = dt.UTC


def _moment(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, _EPOCH)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by _sqlite_begin (BEGIN IMMEDIATE), not by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Outbox:
    """A durable deposit queue on ``url`` (SQLite by default) whose schema the SDK creates and migrates.

    ``settings`` gives the pseudonymisation key (``audit.pseudonym_key``, the audit trail's): set
    it, so that pseudonyms match across processes and hosts. ``schedule`` says when transient
    failures are tried again; ``lease`` (seconds) must outlast one deposit call (``timeouts.call``).
    ``purge`` clears the document and the patient's identity from an item once it is deposited.
    """

    def __init__(
        self,
        url: str | Engine = "sqlite:///dmp-outbox.db",
        *,
        settings: Settings | None = None,
        schedule: RetrySchedule | None = None,
        lease: float | None = None,
        metrics: OutboxMetrics | None = None,
        purge: bool = True,
        migrate_schema: bool = True,
    ) -> None:
        self.engine = url if isinstance(url, Engine) else _engine(url)
        key = settings.audit.pseudonym_key if settings is not None else None
        self.pseudonymizer = Pseudonymizer(key.get_secret_value().encode() if key else None)
        self.schedule = schedule or RetrySchedule()
        call = settings.timeouts.call if settings is not None else Timeouts().call
        self.lease = lease if lease is not None else call + 60.0
        if self.lease <= 0:
            raise ValueError("the lease is a positive number of seconds")
        self.metrics = metrics or OutboxMetrics()
        self.purge = purge
        self._postgres = self.engine.dialect.name == "postgresql"
        self._host_clock = time.time
        if migrate_schema:
            try:
                with self.engine.begin() as connection:
                    migrate(connection)
            except BaseException:
                self.engine.dispose()
                raise

    def _notify(self, name: str, *args: Any) -> None:
        """Tell the metrics hook; its failure is logged, never the queue's (the database write is done)."""
        try:
            getattr(self.metrics, name)(*args)
        except Exception:
            _logger.exception("outbox metrics hook %s failed", name)

    def __repr__(self) -> str:
        return f"Outbox({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    def _now(self, connection: Connection) -> float | ColumnElement[Any]:
        """The queue's clock, in seconds since the epoch: the database server's on PostgreSQL.

        Leases and due times are compared across hosts: a host whose clock runs ahead would see a
        live lease as expired and take the item from the worker holding it. On PostgreSQL every
        host reads the one clock of the database: this is an SQL expression
        (``clock_timestamp()``), evaluated by the server inside the statement that uses it (no
        extra round trip). A SQLite queue lives on one host, whose clock is the only one.
        """
        if self._postgres:
            return func.extract("epoch", func.clock_timestamp())
        return self._host_clock()

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        document: bytes,
        patient: Identity,
        *,
        replaces: str | None = None,
        key: str | None = None,
        not_before: dt.datetime | None = None,
    ) -> str:
        """Queue ``document`` (the CDA's bytes) for ``patient``'s DMP; the item's id, at once.

        ``key`` is yours (your document's id): enqueueing the same key again returns the first
        item's id, whatever its state, and queues nothing. ``replaces`` is passed to the deposit
        (entryUUID or uniqueId). The identity must be qualified now
        (:class:`~dmp_connector.errors.IdentityNotQualifiedError` otherwise, nothing queued): an
        item queued with another would fail and no retry could mend it. It is stored for the
        worker and cleared once deposited.
        """
        if not isinstance(document, bytes) or not document:
            raise TypeError("enqueue takes the CDA document's bytes (ClinicalDocument.to_bytes())")
        ins = patient.require_qualified("a queued DMP deposit")
        pseudonym = self.pseudonymizer.patient(ins.matricule)
        item_id = uuid.uuid4().hex
        row: dict[str, Any] = {
            "id": item_id,
            "key": key,
            "state": ItemState.WAITING.value,
            "document": document,
            "patient": patient.model_dump_json(),
            "patient_pseudonym": pseudonym,
            "replaces": replaces,
            "attempts": 0,
        }
        try:
            with self._begin() as connection:
                now = self._now(connection)
                row.update(submission_time=now, created_at=now, updated_at=now)
                row["due_at"] = not_before.timestamp() if not_before is not None else now
                connection.execute(items.insert().values(**row))
        except IntegrityError:
            if key is None:
                raise
            with self._begin() as connection:
                found = connection.execute(
                    select(items.c.id, items.c.patient_pseudonym, items.c.document).where(items.c.key == key)
                ).first()
            if found is None:
                raise
            # The same key must mean the same document for the same patient: another one under a
            # reused key would otherwise be dropped without a word (or filed as the first).
            if found.patient_pseudonym != pseudonym or (found.document is not None and found.document != document):
                raise ValidationError(
                    "this key is already queued for another document or patient",
                    hint="use one key per document (your own document id); a new version is a new key",
                ) from None
            return str(found.id)
        self._notify("enqueued")
        return item_id

    # ------------------------------------------------------------------ claim and record

    def claim(self, worker: str) -> Claim | None:
        """Take the item due first (or one whose lease expired) under a lease; None when nothing is due."""
        token = secrets.token_hex(16)
        with self._begin() as connection:
            now = self._now(connection)
            due = or_(
                and_(items.c.state == ItemState.WAITING.value, items.c.due_at <= now),
                and_(items.c.state == ItemState.IN_FLIGHT.value, items.c.lease_until < now),
            )
            pick = select(items.c.id).where(due).order_by(items.c.due_at).limit(1)
            if self._postgres:
                pick = pick.with_for_update(skip_locked=True)
            lease_until = now + self.lease
            previous = connection.execute(
                select(items.c.state, items.c.worker, items.c.id).where(items.c.id == pick.scalar_subquery())
            ).first()
            if previous is None:
                return None
            claimed = connection.execute(
                update(items)
                .where(items.c.id == previous.id, due)
                .values(
                    state=ItemState.IN_FLIGHT.value,
                    lease_until=lease_until,
                    claim_token=token,
                    worker=worker[:100],
                    attempts=items.c.attempts + 1,
                    updated_at=now,
                )
                .returning(
                    items.c.id,
                    items.c.document,
                    items.c.patient,
                    items.c.replaces,
                    items.c.submission_time,
                    items.c.attempts,
                    items.c.lease_until,
                )
            ).first()
            if claimed is None:  # pragma: no cover - the row is locked (PostgreSQL) or the database is (SQLite)
                return None
            if previous.state == ItemState.IN_FLIGHT.value:
                connection.execute(
                    attempts.insert().values(
                        item_id=claimed.id,
                        at=now,
                        worker=previous.worker,
                        outcome="lease_expired",
                        detail="the worker holding it stopped answering; claimed again",
                    )
                )
        self._notify("claimed")
        return Claim(
            id=claimed.id,
            token=token,
            document=bytes(claimed.document),
            patient=Identity.model_validate_json(claimed.patient),
            replaces=claimed.replaces,
            submission_time=dt.datetime.fromtimestamp(claimed.submission_time, _EPOCH),
            attempt=int(claimed.attempts),
            lease_until=float(claimed.lease_until),
        )

    def _finish(self, claim: Claim, connection: Connection, values: dict[str, Any]) -> bool:
        values = {"lease_until": None, "claim_token": None, "updated_at": self._now(connection), **values}
        done = connection.execute(
            update(items).where(items.c.id == claim.id, items.c.claim_token == claim.token).values(**values)
        )
        return bool(done.rowcount)

    def record_success(
        self,
        claim: Claim,
        *,
        worker: str,
        seconds: float,
        document_unique_id: str,
        entry_uuid: str | None,
        already_deposited: bool,
    ) -> bool:
        """The deposit succeeded (or was there already); False when the claim had been lost meanwhile."""
        values: dict[str, Any] = {
            "state": ItemState.DEPOSITED.value,
            "reason": None,
            "detail": None,
            "document_unique_id": document_unique_id,
            "entry_uuid": entry_uuid,
            "already_deposited": int(already_deposited),
        }
        if self.purge:
            values.update(document=None, patient=None)
        outcome = "already_deposited" if already_deposited else "deposited"
        with self._begin() as connection:
            kept = self._finish(claim, connection, values)
            connection.execute(
                attempts.insert().values(
                    item_id=claim.id,
                    at=self._now(connection),
                    seconds=seconds,
                    worker=worker[:100],
                    outcome=outcome,
                    code=None,
                    detail=None if kept else _lost(None),
                )
            )
        self._notify("attempted", outcome, seconds)
        if kept:
            self._notify("finished", ItemState.DEPOSITED, None)
        return kept

    def record_failure(self, claim: Claim, error: Classified, *, worker: str, seconds: float) -> ItemState:
        """A failed attempt: waiting again (transient, per the schedule) or failed for good; the new state."""
        wait = self.schedule.wait_after(claim.attempt, retry_after=error.retry_after) if error.transient else None
        with self._begin() as connection:
            now = self._now(connection)
            if wait is not None:
                state, reason, next_due = ItemState.WAITING, None, now + wait
            else:
                state = ItemState.FAILED
                reason = error.reason or FailureReason.EXHAUSTED
                next_due = None
            values: dict[str, Any] = {"state": state.value, "reason": reason.value if reason else None}
            values["detail"] = error.detail
            if next_due is not None:
                values["due_at"] = next_due
            kept = self._finish(claim, connection, values)
            # After a lost lease the attempt is history only: the item is another worker's now.
            detail = error.detail if kept else _lost(error.detail)
            connection.execute(
                attempts.insert().values(
                    item_id=claim.id,
                    at=now,
                    seconds=seconds,
                    worker=worker[:100],
                    outcome="transient" if error.transient else "failed",
                    code=error.code,
                    detail=detail,
                    next_due=next_due if kept else None,
                )
            )
        self._notify("attempted", "transient" if error.transient else "failed", seconds)
        if kept and state is ItemState.FAILED:
            self._notify("finished", state, reason)
        return state

    def release(self, claim: Claim, *, worker: str, detail: str = "the worker stopped before depositing") -> bool:
        """Give a claimed item back, due now, its attempt not counted (a worker stopping, a configuration error)."""
        with self._begin() as connection:
            kept = self._finish(
                claim,
                connection,
                {"state": ItemState.WAITING.value, "due_at": self._now(connection), "attempts": items.c.attempts - 1},
            )
            if kept:
                connection.execute(
                    attempts.insert().values(
                        item_id=claim.id,
                        at=self._now(connection),
                        worker=worker[:100],
                        outcome="released",
                        detail=detail[:400],
                    )
                )
        return kept

    # ------------------------------------------------------------------ by hand

    def retry(self, item_id: str) -> OutboxItem:
        """Make a ``failed`` (or waiting) item due now, its schedule started afresh (after the cause was fixed)."""
        with self._begin() as connection:
            now = self._now(connection)
            done = connection.execute(
                update(items)
                .where(
                    items.c.id == item_id,
                    items.c.state.in_([ItemState.FAILED.value, ItemState.WAITING.value]),
                    items.c.document.is_not(None),
                )
                .values(state=ItemState.WAITING.value, due_at=now, attempts=0, reason=None, updated_at=now)
            )
            if done.rowcount:
                connection.execute(attempts.insert().values(item_id=item_id, at=now, outcome="retried"))
        item = self.get(item_id)
        if not done.rowcount:
            raise ValueError(f"item {item_id} is {item.state.value}: only a failed or waiting item can be retried")
        return item

    def cancel(self, item_id: str) -> OutboxItem:
        """Cancel an item not yet deposited (waiting or failed; in flight: after its attempt, if it fails)."""
        with self._begin() as connection:
            now = self._now(connection)
            values: dict[str, Any] = {"state": ItemState.CANCELLED.value, "updated_at": now, "lease_until": None}
            if self.purge:
                values.update(document=None, patient=None)
            done = connection.execute(
                update(items)
                .where(items.c.id == item_id, items.c.state.in_([ItemState.FAILED.value, ItemState.WAITING.value]))
                .values(**values)
            )
            if done.rowcount:
                connection.execute(attempts.insert().values(item_id=item_id, at=now, outcome="cancelled"))
        item = self.get(item_id)
        if not done.rowcount:
            raise ValueError(f"item {item_id} is {item.state.value}: only a waiting or failed item can be cancelled")
        self._notify("finished", ItemState.CANCELLED, None)
        return item

    # ------------------------------------------------------------------ reading

    def get(self, item_id: str) -> OutboxItem:
        """The item and its history; KeyError when there is none."""
        with self._begin() as connection:
            row = connection.execute(select(items).where(items.c.id == item_id)).first()
            if row is None:
                raise KeyError(f"no outbox item {item_id}")
            history = connection.execute(
                select(attempts).where(attempts.c.item_id == item_id).order_by(attempts.c.id)
            ).all()
        return _item(row, tuple(_attempt(h) for h in history))

    def items(self, state: ItemState | None = None, *, limit: int = 100) -> list[OutboxItem]:
        """Items (without history), oldest first, of one state or all."""
        query = select(items).order_by(items.c.created_at).limit(limit)
        if state is not None:
            query = query.where(items.c.state == state.value)
        with self._begin() as connection:
            return [_item(row, ()) for row in connection.execute(query)]

    def status(self, *, errors: int = 5) -> OutboxStatus:
        """Counts by state, the oldest item not final, expired leases, the last ``errors`` failed attempts."""
        with self._begin() as connection:
            now = self._now(connection)
            counts = {
                ItemState(state): int(count)
                for state, count in connection.execute(
                    select(items.c.state, func.count()).group_by(items.c.state)
                ).all()
            }
            oldest = connection.execute(
                select(func.min(items.c.created_at)).where(
                    items.c.state.in_([ItemState.WAITING.value, ItemState.IN_FLIGHT.value])
                )
            ).scalar()
            expired = connection.execute(
                select(func.count()).where(items.c.state == ItemState.IN_FLIGHT.value, items.c.lease_until < now)
            ).scalar()
            last = connection.execute(
                select(attempts)
                .where(attempts.c.outcome.in_(["transient", "failed"]))
                .order_by(attempts.c.id.desc())
                .limit(errors)
            ).all()
        return OutboxStatus(
            counts={state: counts.get(state, 0) for state in ItemState},
            oldest_waiting=_moment(oldest),
            expired_leases=int(expired or 0),
            last_errors=tuple((row.item_id, _attempt(row)) for row in last),
        )

    def wait_idle(self, *, timeout: float, poll: float = 0.2) -> bool:
        """Wait until no item is waiting or in flight (tests, batch jobs); False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.status(errors=0).pending == 0:
                return True
            time.sleep(poll)
        return False


_LOST: Final = "recorded after the lease was lost"


def _lost(detail: str | None) -> str:
    """An attempt's detail, marked: its outcome came after another worker took the item, and changed nothing."""
    return _LOST if not detail else f"{_LOST}: {detail}"[:400]


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        path = engine.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            # The queue holds CDAs and identities until deposited: readable by its owner only, as
            # the audit log (SQLite gives its -wal and -shm files the database file's mode).
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_begin(connection: Connection) -> None:
    """Take SQLite's write lock at BEGIN: a claim reads then writes, and two claimers must queue, not deadlock."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _item(row: Any, history: Sequence[Attempt]) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        key=row.key,
        state=ItemState(row.state),
        patient=row.patient_pseudonym,
        attempts=int(row.attempts),
        created_at=dt.datetime.fromtimestamp(row.created_at, _EPOCH),
        due_at=dt.datetime.fromtimestamp(row.due_at, _EPOCH),
        reason=FailureReason(row.reason) if row.reason else None,
        detail=row.detail,
        lease_until=_moment(row.lease_until),
        worker=row.worker,
        document_unique_id=row.document_unique_id,
        entry_uuid=row.entry_uuid,
        already_deposited=None if row.already_deposited is None else bool(row.already_deposited),
        history=tuple(history),
    )


def _attempt(row: Any) -> Attempt:
    return Attempt(
        at=dt.datetime.fromtimestamp(row.at, _EPOCH),
        outcome=row.outcome,
        worker=row.worker,
        seconds=row.seconds,
        code=row.code,
        detail=row.detail,
        next_due=_moment(row.next_due),
    )
