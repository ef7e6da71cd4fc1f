"""``dmp-connector ins datamatrix encode|decode``: the INS Datamatrix printed on documents.

``encode`` writes the payload (and, on request, a PNG or a one-page PDF) for a qualified
identity; ``decode`` reads a payload from a text file, an image (``--image``) or stdin and
checks it. Both go through the public API (:mod:`dmp_connector.ins.datamatrix`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.ins.datamatrix import GS, DatamatrixFormat, decode_payload, encode_payload

from ._main import CliState, pass_state
from .ins import ins


def _shown(payload: str) -> str:
    return payload.replace(GS, "<GS>")


@ins.group("datamatrix")
def datamatrix() -> None:
    """The INS Datamatrix of printed documents: write one for a qualified identity, read one back."""


@datamatrix.command("encode")
@click.option("--matricule", required=True, help="The 15-character matricule INS (key included).")
@click.option("--oid", "oid_text", default=InsOid.NIR.value, show_default=True, help="OID of the INS.")
@click.option("--birth-name", required=True)
@click.option("--first-names", required=True, help="The birth first names, space-separated, as INSi gives them.")
@click.option("--sex", required=True, type=click.Choice(["M", "F"], case_sensitive=False))
@click.option("--birth-date", required=True, help="YYYY-MM-DD or DD/MM/YYYY (00 for an unknown part).")
@click.option("--birth-place", required=True, help="INSEE COG code of the birth place.")
@click.option(
    "--qualified",
    is_flag=True,
    required=True,
    help="State that this identity is QUAL (INS from INSi and ID document checked); nothing else may be printed.",
)
@click.option(
    "--png", "png_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the symbol as PNG."
)
@click.option("--pdf", "pdf_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write a one-page PDF.")
@pass_state
def encode(
    state: CliState,
    matricule: str,
    oid_text: str,
    birth_name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    birth_place: str,
    qualified: bool,
    png_path: Path | None,
    pdf_path: Path | None,
) -> None:
    """Write the INS Datamatrix payload of a qualified identity (GS shown as <GS>; raw in --json)."""
    try:
        traits = IdentityTraits.build(
            birth_name=birth_name,
            birth_first_names=first_names,
            sex=sex,
            birth_date=birth_date,
            birth_place=birth_place,
        )
        status = IdentityStatus.QUAL if qualified else IdentityStatus.PROV
        identity = Identity(traits=traits, ins=INS.parse(matricule, oid=oid_text), status=status)
        payload = encode_payload(identity, fmt=DatamatrixFormat(production=state.env == "prod"))
        if png_path is not None or pdf_path is not None:
            from dmp_connector.ins.datamatrix_image import to_pdf_page, to_png

            if png_path is not None:
                png_path.write_bytes(to_png(payload))
            if pdf_path is not None:
                pdf_path.write_bytes(to_pdf_page(payload))
    except DmpConnectorError as exc:
        state.fail(exc)
    state.emit(_shown(payload), {"payload": payload, "length": len(payload)})


@datamatrix.command("decode")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default="-")
@click.option("--image", is_flag=True, help="SOURCE is an image (PNG, JPEG); needs the 'datamatrix' extra.")
@pass_state
def decode(state: CliState, source: Path, image: bool) -> None:
    """Read and check an INS Datamatrix payload (a text file, stdin, or an image with --image).

    Exit 0 with the INS and traits when every check passes, 4 with the rule that failed.
    A scan is not a qualified identity: verify it with INSi before use.
    """
    try:
        if image:
            from dmp_connector.ins.datamatrix_image import read_image

            text = read_image(sys.stdin.buffer.read() if str(source) == "-" else source.read_bytes())
        else:
            raw = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="ascii", errors="replace")
            text = raw.strip("\r\n")
        scanned = decode_payload(text, fmt=DatamatrixFormat(production=state.env == "prod"))
    except DmpConnectorError as exc:
        state.fail(exc)
    traits = scanned.traits
    data = {
        "matricule": scanned.ins.matricule,
        "oid": scanned.ins.oid.value,
        "birth_name": traits.birth_name,
        "birth_first_names": list(traits.birth_first_names),
        "sex": traits.sex.value,
        "birth_date": traits.birth_date.iso(),
        "birth_place": traits.birth_place,
    }
    human = "\n".join(f"{key}: {' '.join(value) if isinstance(value, list) else value}" for key, value in data.items())
    state.emit(human + "\n(a scan is not a qualified identity: verify it with INSi)", data)
