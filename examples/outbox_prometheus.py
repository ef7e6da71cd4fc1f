"""Export the outbox's metrics to Prometheus: an :class:`~dmp_connector.outbox.OutboxMetrics` subclass.

``prometheus_client`` is not a dependency of dmp-connector: install it (``pip install
prometheus-client``) to use this in your service, then pass ``PrometheusMetrics()`` to
``Outbox(url, settings=…, metrics=…)`` and call ``prometheus_client.start_http_server(9108)``.
Run alone, the script feeds the class a few events and prints the exposition text (or says that
``prometheus_client`` is missing).
"""

from __future__ import annotations

import sys
from typing import Any

from dmp_connector.outbox import FailureReason, ItemState, OutboxMetrics


class PrometheusMetrics(OutboxMetrics):
    """Counters by outcome and final state, a histogram of attempt durations."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = registry if registry is not None else REGISTRY
        self.enqueued_total = Counter("dmp_outbox_enqueued", "Items queued", registry=registry)
        self.claimed_total = Counter("dmp_outbox_claimed", "Items claimed by a worker", registry=registry)
        self.attempts = Histogram(
            "dmp_outbox_attempt_seconds",
            "Deposit attempts by outcome",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.finished_total = Counter(
            "dmp_outbox_finished", "Items that reached a final state", ["state", "reason"], registry=registry
        )

    def enqueued(self) -> None:
        self.enqueued_total.inc()

    def claimed(self) -> None:
        self.claimed_total.inc()

    def attempted(self, outcome: str, seconds: float) -> None:
        self.attempts.labels(outcome=outcome).observe(seconds)

    def finished(self, state: ItemState, reason: FailureReason | None) -> None:
        self.finished_total.labels(state=state.value, reason=reason.value if reason else "").inc()


def main() -> int:
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        print("prometheus_client is not installed: pip install prometheus-client")
        return 0
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.enqueued()
    metrics.claimed()
    metrics.attempted("deposited", 0.12)
    metrics.finished(ItemState.FAILED, FailureReason.NO_DMP)
    print(generate_latest(registry).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
