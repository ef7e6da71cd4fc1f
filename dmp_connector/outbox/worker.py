"""Workers: claim an item, deposit it with the idempotent deposit, record the outcome; sync and async.

A worker holds one item at a time under the queue's lease, and bounds the deposit by a deadline
shorter than the lease, so that a live worker never loses its item to another. Stopping (a signal,
:meth:`Worker.stop`) lets the item in flight finish; an item claimed but not yet sent is released
(due again at once, the attempt not counted). A worker killed outright leaves a lease that expires:
the next claim takes the item back, and the deposit — idempotent — stores it at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

from dmp_connector._deadline import deadline
from dmp_connector.dmp import AsyncDmpClient, DepositResult, DmpClient
from dmp_connector.errors import ConfigurationError

from .schedule import classify
from .store import Claim, Outbox

__all__ = ["AsyncWorker", "Worker", "worker_name"]

_logger = logging.getLogger("dmp_connector.outbox")
_MARGIN: Final = 0.8
"""The deposit's deadline is this share of the lease: the rest covers the database writes."""


def worker_name(suffix: str = "") -> str:
    """``host:pid[:suffix]``: who holds a lease, as ``outbox status`` shows it."""
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{suffix}" if suffix else "")


class _Base:
    def __init__(self, outbox: Outbox, *, name: str | None, idle_wait: float) -> None:
        self.outbox = outbox
        self.name = name or worker_name()
        self.idle_wait = idle_wait
        self.processed = 0
        """Items this worker attempted."""

    def _deposit_deadline(self) -> float:
        return self.outbox.lease * _MARGIN

    def _record(self, claim: Claim, result: DepositResult | BaseException, started: float) -> None:
        seconds = time.monotonic() - started
        self.processed += 1
        if isinstance(result, DepositResult):
            self.outbox.record_success(
                claim,
                worker=self.name,
                seconds=seconds,
                document_unique_id=result.document_unique_id,
                entry_uuid=result.entry_uuid,
                already_deposited=result.already_deposited,
            )
            return
        if not isinstance(result, Exception):  # pragma: no cover - BaseExceptions are re-raised before
            raise result
        if not hasattr(result, "message"):
            _logger.warning("outbox item %s: unexpected %s in the deposit", claim.id, type(result).__name__)
        self.outbox.record_failure(claim, classify(result), worker=self.name, seconds=seconds)


class Worker(_Base):
    """Deposits queued items one after the other through a :class:`~dmp_connector.dmp.DmpClient`.

    Run several (threads, processes, hosts) on one queue for throughput: each claims its own items.
    """

    def __init__(self, outbox: Outbox, client: DmpClient, *, name: str | None = None, idle_wait: float = 1.0) -> None:
        super().__init__(outbox, name=name, idle_wait=idle_wait)
        self.client = client
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop after the item in flight (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run_once(self) -> bool:
        """Claim one due item and deposit it; False when none was due."""
        claim = self.outbox.claim(self.name)
        if claim is None:
            return False
        if self._stop.is_set():
            self.outbox.release(claim, worker=self.name)
            return False
        started = time.monotonic()
        try:
            with deadline(self._deposit_deadline()):
                result: DepositResult | BaseException = self.client.deposit(
                    claim.document,
                    patient=claim.patient,
                    replaces=claim.replaces,
                    submission_time=claim.submission_time,
                )
        except ConfigurationError:
            self.outbox.release(claim, worker=self.name, detail="the worker's configuration is wrong")
            raise
        except Exception as exc:
            result = exc
        except BaseException:
            self.outbox.release(claim, worker=self.name)
            raise
        self._record(claim, result, started)
        return True

    def run(self, *, until_idle: bool = False, on_item: Callable[[], None] | None = None) -> int:
        """Work until :meth:`stop` (or, ``until_idle``, until nothing is due); the items attempted."""
        while not self._stop.is_set():
            if self.run_once():
                if on_item is not None:
                    on_item()
                continue
            if until_idle:
                break
            self._stop.wait(self.idle_wait)
        return self.processed


class AsyncWorker(_Base):
    """Deposits queued items through an :class:`~dmp_connector.dmp.AsyncDmpClient`, ``concurrency`` at once.

    The database calls run in a thread (SQLAlchemy Core is synchronous); the deposits share the loop.
    Cancelling :meth:`run` releases the items whose deposit had not ended.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: AsyncDmpClient,
        *,
        name: str | None = None,
        idle_wait: float = 1.0,
        concurrency: int = 1,
    ) -> None:
        super().__init__(outbox, name=name, idle_wait=idle_wait)
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        self.client = client
        self.concurrency = concurrency
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Stop after the items in flight (call it from the loop's thread, e.g. ``loop.add_signal_handler``)."""
        self._stop.set()

    async def run_once(self) -> bool:
        """Claim one due item and deposit it; False when none was due."""
        claim = await asyncio.to_thread(self.outbox.claim, self.name)
        if claim is None:
            return False
        if self._stop.is_set():
            await asyncio.to_thread(self.outbox.release, claim, worker=self.name)
            return False
        started = time.monotonic()
        try:
            with deadline(self._deposit_deadline()):
                result: DepositResult | BaseException = await self.client.deposit(
                    claim.document,
                    patient=claim.patient,
                    replaces=claim.replaces,
                    submission_time=claim.submission_time,
                )
        except ConfigurationError:
            await asyncio.shield(
                asyncio.to_thread(self.outbox.release, claim, worker=self.name, detail="configuration error")
            )
            raise
        except Exception as exc:
            result = exc
        except BaseException:
            # Cancelled: hand the item back (the deposit may have landed; the next one is idempotent).
            await asyncio.shield(asyncio.to_thread(self.outbox.release, claim, worker=self.name))
            raise
        await asyncio.to_thread(self._record, claim, result, started)
        return True

    async def _lane(self, until_idle: bool) -> None:
        while not self._stop.is_set():
            if await self.run_once():
                continue
            if until_idle:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.idle_wait)

    async def run(self, *, until_idle: bool = False) -> int:
        """Work until :meth:`stop` (or, ``until_idle``, until nothing is due); the items attempted."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(self._lane(until_idle))
        return self.processed
