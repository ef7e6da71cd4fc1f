"""``dmp-connector ins …``: check a matricule, search and verify an identity with INSi."""

from __future__ import annotations

import click

__all__ = ["ins"]


@click.group()
def ins() -> None:
    """The national health identity (INS) and the INSi teleservice."""
