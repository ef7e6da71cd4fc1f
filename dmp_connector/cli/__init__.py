"""The ``dmp-connector`` console script.

``_main`` holds the root command, the global options (``--env``, ``--config``, ``--json``)
and the shared output/exit-code helpers; each service adds its command group from a
module of its own here (``ins``, ``sandbox``, ``outbox`` …), registered below. Commands use the
public API only.

Exit codes: 0 success; 1 a service, transport or protocol error; 2 a usage error; 3 a
configuration error; 4 a validation error.
"""

from __future__ import annotations

from . import (
    cda_build,  # noqa: F401  (registers cda build)
    cda_view,  # noqa: F401  (registers cda view)
    ins_datamatrix,  # noqa: F401  (registers ins datamatrix encode/decode)
    ins_hl7,  # noqa: F401  (registers ins from-hl7)
    ins_insi,  # noqa: F401  (registers ins search/verify)
    sandbox_serve,  # noqa: F401
)
from ._main import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, CliState, main, pass_state
from .cda import cda
from .demo import demo
from .dmp import dmp
from .ins import ins
from .mss import mss
from .outbox import outbox
from .psc import psc
from .sandbox import sandbox

main.add_command(ins)
main.add_command(cda)
main.add_command(sandbox)
main.add_command(mss)
main.add_command(dmp)
main.add_command(outbox)
main.add_command(demo)
main.add_command(psc)

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "EXIT_VALIDATION", "CliState", "main", "pass_state"]
