"""IHE XDS.b metadata (ebRIM 3.0): the model shared by DMP deposits and MSSanté XDM packages."""

from __future__ import annotations

__all__: list[str] = []
