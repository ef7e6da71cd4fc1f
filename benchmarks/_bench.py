"""Shared reporting for the benchmark scripts: each figure beside the baseline measured in the same run.

A script measures, builds :class:`Figure` rows and calls :func:`report`, which prints a table
and writes the rows as JSON (``--json PATH``) so that ``benchmarks/run.py`` can gather them and
``docs/performance.md`` can quote them. Nothing here is timed by the test suite: benchmarks
are run by hand (or by ``benchmarks/run.py``), never by pytest.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure", "machine", "peak_rss_mib", "percentile", "report", "reset_peak_rss", "rss_mib", "timed"]


@dataclass
class Figure:
    """One measured figure, its baseline from the same run, and the goal it is checked against."""

    benchmark: str
    """Which measurement (``"build+sign+serialise PDF 200 KB"`` …)."""
    value: float
    """What dmp_connector achieved."""
    unit: str
    """``"docs/s"``, ``"ms"``, ``"MiB"``, ``"x file size"`` …"""
    baseline: float | None = None
    """The same job done by the floor (plain lxml, signxml, zeep …), or None when there is none."""
    baseline_label: str = ""
    """What the baseline is."""
    ratio: float | None = None
    """value / baseline (or the ratio the goal speaks of), computed by the script."""
    goal: str = ""
    """The goal in words (``"≤ 2× lxml"``), empty when there is none."""
    met: bool | None = None
    """Whether the goal is met (None: no goal)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other figures of the same measurement (p50/p95, counts …)."""


def machine() -> dict[str, Any]:
    """The machine the figures were measured on, and how busy it was (1-minute load average) when asked."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _status_kib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def rss_mib() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``VmHWM``)."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS (``VmHWM``) to the current RSS (Linux ≥ 4.0); False when the kernel refuses.

    So that what an earlier step of the same process peaked at does not hide the step measured.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) of ``samples``, by linear interpolation."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) == 1:
        return samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    index = min(max(round(p) - 1, 0), len(cuts) - 1)
    return cuts[index]


def timed(job: Callable[[], object], *, repeat: int, warmup: int = 1) -> list[float]:
    """Seconds per call of ``job``, ``repeat`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        job()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        job()
        samples.append(time.perf_counter() - started)
    return samples


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def report(title: str, figures: Sequence[Figure], json_path: str | os.PathLike[str] | None = None) -> bool:
    """Print ``figures`` as a table and write them as JSON; True when every goal set is met."""
    print(f"\n## {title}\n")
    header = ("benchmark", "value", "unit", "baseline", "ratio", "goal", "met")
    rows = [
        (
            f.benchmark,
            _fmt(f.value),
            f.unit,
            f"{_fmt(f.baseline)} ({f.baseline_label})" if f.baseline is not None else "—",
            _fmt(f.ratio),
            f.goal or "—",
            {True: "yes", False: "NO", None: "—"}[f.met],
        )
        for f in figures
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    for f in figures:
        if f.extra:
            print(
                f"  {f.benchmark}: "
                + ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in f.extra.items())
            )
    if json_path is not None:
        document = {"title": title, "machine": machine(), "figures": [asdict(f) for f in figures]}
        Path(json_path).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwritten: {json_path}", file=sys.stderr)
    return all(f.met is not False for f in figures)
