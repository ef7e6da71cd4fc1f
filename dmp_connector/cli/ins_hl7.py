"""``dmp-connector ins from-hl7 FILE``: the identity an HL7 v2 message carries, read under the PAM-FR rules.

Works offline. Like ``ins search``, it prints the identity on the user's own terminal and logs
nothing; ``--mask`` hides the matricule and the traits (for a ticket or a screenshot). Values come
from a file someone else wrote: every control character is escaped before it is printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dmp_connector.errors import DmpConnectorError
from dmp_connector.hl7v2 import PidPatient, decode, read_pid

from ._main import CliState, pass_state
from .ins import ins

__all__ = ["from_hl7"]

_MAX_BYTES = 20 * 1024 * 1024


def _safe(text: str) -> str:
    """Control characters (an escape sequence in a hostile file) shown as ``\\xNN``, never sent to the terminal."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _shown(value: str | None, mask: bool) -> str | None:
    if value is None:
        return None
    return "***" if mask else _safe(value)


def _json(patient: PidPatient, trigger: str, mask: bool) -> dict[str, Any]:
    identity = patient.identity
    traits = identity.traits
    ins = identity.ins
    return {
        "message": trigger,
        "status": identity.status.value,
        "reliability_codes": [_safe(c) for c in patient.reliability_codes],
        "ins": None
        if ins is None
        else {
            "matricule": ins.masked() if mask else ins.matricule,
            "oid": ins.oid.value,
            "kind": ins.kind.value,
            "test": ins.is_test,
        },
        "ins_dropped": patient.ins_dropped,
        "traits": {
            "birth_name": _shown(traits.birth_name, mask),
            "birth_first_names": ["***" if mask else _safe(n) for n in traits.birth_first_names],
            "sex": traits.sex.value,
            "birth_date": "****-**-**" if mask else traits.birth_date.iso(),
            "birth_place": _shown(traits.birth_place, mask),
            "used_name": _shown(traits.used_name, mask),
            "used_first_name": _shown(traits.used_first_name, mask),
        },
        "doubtful": identity.doubtful,
        "fictitious": identity.fictitious,
        "homonym": identity.homonym,
        "local_ids": [
            {"type": _safe(i.type_code), "namespace": _safe(i.namespace), "id": _shown(i.id, mask)}
            for i in patient.local_ids
        ],
    }


def _lines(data: dict[str, Any]) -> list[str]:
    traits = data["traits"]
    ins = data["ins"]
    lines = [f"{data['message']}: identity {data['status']} (PID-32 {'~'.join(data['reliability_codes']) or 'empty'})"]
    if ins is not None:
        kind = ins["kind"] + (" test" if ins["test"] else "")
        lines.append(f"  INS         {ins['matricule']}  {kind}, OID {ins['oid']}")
    elif data["ins_dropped"]:
        lines.append("  INS         sent without PID-32 VALI: dropped, as PAM-FR says (do not use it)")
    else:
        lines.append("  INS         (none)")
    lines.append(f"  birth name  {traits['birth_name']}")
    lines.append(f"  first names {' '.join(traits['birth_first_names'])}")
    if traits["used_name"] or traits["used_first_name"]:
        lines.append(f"  used name   {traits['used_name'] or ''} {traits['used_first_name'] or ''}".rstrip())
    lines.append(f"  sex         {traits['sex']}")
    lines.append(f"  birth date  {traits['birth_date']}")
    lines.append(f"  birth place {traits['birth_place'] or '(not sent)'}")
    attributes = [name for name in ("doubtful", "fictitious", "homonym") if data[name]]
    if attributes:
        lines.append(f"  attributes  {', '.join(attributes)}")
    for local in data["local_ids"]:
        lines.append(f"  {local['type']:<11} {local['id']}  ({local['namespace'] or 'no namespace'})")
    return lines


@ins.command("from-hl7")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mask", is_flag=True, help="Hide the matricule, names, birth date and local ids.")
@pass_state
def from_hl7(state: CliState, file: Path, mask: bool) -> None:
    """Read the identity of an HL7 v2 message (ADT, MDM …) under the PAM-FR rules and print it.

    The INS is shown only when PID-32 says VALI; an INS sent without it is reported as dropped.
    Exit 4 when the PID breaks the rules (no birth name, INS with a wrong key …).

    \b
        dmp-connector ins from-hl7 admission.er7
    """
    try:
        data = file.read_bytes()
        if len(data) > _MAX_BYTES:
            raise click.UsageError(f"{file} is larger than {_MAX_BYTES} bytes")
        message = decode(data, max_bytes=_MAX_BYTES)
        patient = read_pid(message.require("PID"))
    except DmpConnectorError as exc:
        state.fail(exc)
    msh = message.msh
    trigger = _safe("^".join(v for v in (msh.get(9, 1, 1), msh.get(9, 1, 2)) if v))
    result = _json(patient, trigger, mask)
    state.emit("\n".join(_lines(result)), result)
