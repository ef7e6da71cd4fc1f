"""CI-SIS CDA R2 documents: build, parse, validate, and derive their XDS metadata."""

from __future__ import annotations

__all__: list[str] = []
