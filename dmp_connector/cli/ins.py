"""``dmp-connector ins …``: check a matricule, search and verify an identity with INSi.

``ins check`` works offline and needs no configuration. The matricule it prints is the one
the user typed, on their own terminal; it is never logged.
"""

from __future__ import annotations

from typing import Any

import click

from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins import INS, InsOid

from ._main import CliState, pass_state

__all__ = ["ins"]

_OID_ALIASES = {"nir": InsOid.NIR, "nia": InsOid.NIA, "test": InsOid.NIR_TEST, "demo": InsOid.NIR_DEMO}

# --env decides whether test OIDs are refused; without --env nothing is assumed.
_PRODUCTION = {"prod": True, "production": True, "test": False, "sandbox": False}


@click.group()
def ins() -> None:
    """The national health identity (INS) and the INSi teleservice."""


@ins.command("check")
@click.argument("matricule", nargs=-1, required=True)
@click.option(
    "--oid",
    "oid_text",
    default="nir",
    show_default=True,
    metavar="OID",
    help="Assigning authority: nir, nia, test, demo or the OID itself (1.2.250.1.213.1.4.8 …).",
)
@click.option(
    "--lenient",
    is_flag=True,
    help="Read a matricule whose key is wrong and report it, instead of refusing it (exit 0).",
)
@pass_state
def check(state: CliState, matricule: tuple[str, ...], oid_text: str, lenient: bool) -> None:
    """Check a matricule INS (13 characters + 2-digit key) and print it normalised.

    Spaces, dots and dashes are allowed, quoted or not:

    \b
        dmp-connector ins check "2 90 05 2A 004 012 66"

    With the global --env prod, the test and demonstration OIDs are refused. Exit 0 when
    the matricule is valid, 4 with the reason when it is not.
    """
    text = " ".join(matricule)
    try:
        oid = _OID_ALIASES.get(oid_text.strip().lower()) or InsOid.parse(oid_text)
        value = INS.parse(text, oid=oid, lenient=lenient, production=_PRODUCTION.get(state.env or ""))
    except DmpConnectorError as exc:
        state.fail(exc)
    kind = f"{value.kind.value}{' test' if value.oid is InsOid.NIR_TEST else ''}"
    kind += " demonstration" if value.oid is InsOid.NIR_DEMO else ""
    if value.key_valid:
        human = f"{value.matricule}  valid {kind} (OID {value.oid.value})"
    else:
        human = (
            f"{value.matricule}  WRONG KEY {value.key}, the algorithm gives {value.expected_key}"
            f" — {kind} (OID {value.oid.value})"
        )
    data: dict[str, Any] = {
        "valid": value.key_valid,
        "matricule": value.matricule,
        "formatted": value.formatted(),
        "oid": value.oid.value,
        "kind": value.kind.value,
        "test": value.is_test,
        "key": value.key,
        "key_valid": value.key_valid,
        "expected_key": value.expected_key,
    }
    state.emit(human, data)
