"""``python -m dmp_connector`` is the ``dmp-connector`` command."""

from __future__ import annotations

from .cli import main

main(prog_name="dmp-connector")
