"""The pytest plugin (``pytest11`` entry point): sandbox and client fixtures for vendors' test suites."""

from __future__ import annotations

__all__: list[str] = []
