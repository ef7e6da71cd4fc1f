"""``dmp-connector demo``: the quickstart, from the installed package (no repository needed)."""

from __future__ import annotations

from pathlib import Path

import click

from dmp_connector import demo as quickstart

__all__ = ["demo"]


@click.command("demo")
@click.option(
    "--save-document",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the CDA document the demo builds here (then: dmp-connector cda validate --kit DIR FILE).",
)
def demo(save_document: Path | None) -> None:
    """Run the quickstart against the embedded sandbox: INSi, DMP, CDA, MSSanté, audit.

    Everything runs in this process on 127.0.0.1 with a throw-away PKI: no network, no
    certificate of your own. Needs the ``sandbox`` extra. Exit 0 only if every check holds.
    """
    quickstart.main(save_document)
