"""A durable deposit queue: systematic DMP feeding that survives a DMP outage, a killed process, a missing DMP.

``Outbox.enqueue(document, patient)`` returns an id at once; workers (:class:`Worker`,
:class:`AsyncWorker`, ``dmp-connector outbox run``) deposit with the idempotent
:meth:`~dmp_connector.dmp.DmpClient.deposit`, retry transient failures on a
:class:`RetrySchedule` (minutes to days), and end what retrying cannot fix in ``failed`` with a
:class:`FailureReason`. Storage: SQLite by default, PostgreSQL for many workers on many hosts
(``SELECT … FOR UPDATE SKIP LOCKED`` and leases). Needs the ``outbox`` extra
(``pip install 'dmp-connector[outbox]'``). See ``docs/outbox.md``.
"""

from __future__ import annotations

from ._schema import SCHEMA_VERSION
from .metrics import CountingMetrics, OutboxMetrics
from .schedule import DEFAULT_DELAYS, Classified, FailureReason, RetrySchedule, classify
from .store import Attempt, Claim, ItemState, Outbox, OutboxItem, OutboxStatus
from .worker import AsyncWorker, Worker, worker_name

__all__ = [
    "DEFAULT_DELAYS",
    "SCHEMA_VERSION",
    "AsyncWorker",
    "Attempt",
    "Claim",
    "Classified",
    "CountingMetrics",
    "FailureReason",
    "ItemState",
    "Outbox",
    "OutboxItem",
    "OutboxMetrics",
    "OutboxStatus",
    "RetrySchedule",
    "Worker",
    "classify",
    "worker_name",
]
