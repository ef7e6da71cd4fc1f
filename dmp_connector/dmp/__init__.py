"""The DMP (Mon espace santé) over IHE XDS.b: deposit, query, retrieve, update, DMP transactions."""

from __future__ import annotations

__all__: list[str] = []
