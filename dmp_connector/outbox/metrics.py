"""The queue's metrics hook: subclass :class:`OutboxMetrics` and export what it is told.

Why a class of no-op methods rather than a dependency: a vendor already runs its monitoring
(Prometheus, StatsD, OpenTelemetry, a log); the queue only says what happened. Methods are
called in the worker's thread after the database write, must be quick, and must not raise
(an exception is logged and ignored: the queue's write is already done).
``examples/outbox_prometheus.py`` exports them with ``prometheus_client``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schedule import FailureReason
    from .store import ItemState

__all__ = ["CountingMetrics", "OutboxMetrics"]


class OutboxMetrics:
    """Called by the queue and its workers; every method does nothing here."""

    def enqueued(self) -> None:
        """An item was queued."""

    def claimed(self) -> None:
        """A worker claimed an item."""

    def attempted(self, outcome: str, seconds: float) -> None:
        """An attempt ended: ``deposited``, ``already_deposited``, ``transient`` or ``failed``, in ``seconds``."""

    def finished(self, state: ItemState, reason: FailureReason | None) -> None:
        """An item reached a final state (``reason`` for ``failed``)."""


class CountingMetrics(OutboxMetrics):
    """Counts in memory (tests, a status page): ``counts["attempted:deposited"]``, ``seconds`` summed per outcome."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def enqueued(self) -> None:
        self.counts["enqueued"] += 1

    def claimed(self) -> None:
        self.counts["claimed"] += 1

    def attempted(self, outcome: str, seconds: float) -> None:
        self.counts[f"attempted:{outcome}"] += 1
        self.seconds[outcome] += seconds

    def finished(self, state: ItemState, reason: FailureReason | None) -> None:
        self.counts[f"finished:{state.value}" + (f":{reason.value}" if reason else "")] += 1
