"""``dmp-connector demo``: the quickstart, from the installed package (no repository needed)."""

from __future__ import annotations

import click

from dmp_connector import demo as quickstart

__all__ = ["demo"]


@click.command("demo")
def demo() -> None:
    """Run the quickstart against the embedded sandbox: INSi, DMP, CDA, MSSanté, audit.

    Everything runs in this process on 127.0.0.1 with a throw-away PKI: no network, no
    certificate of your own. Needs the ``sandbox`` extra. Exit 0 only if every check holds.
    """
    quickstart.main()
