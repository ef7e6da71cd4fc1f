"""``dmp-connector sandbox …``: the embedded sandbox's tools (for now, the test PKI)."""

from __future__ import annotations

from pathlib import Path

import click

from dmp_connector.errors import DmpConnectorError
from dmp_connector.sandbox.pki import generate_test_pki

from ._main import CliState, pass_state

__all__ = ["sandbox"]


@click.group()
def sandbox() -> None:
    """The embedded sandbox: a test PKI and simulators, no national service involved."""


@sandbox.command("pki")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--organisation", default="CABINET SANDBOX", show_default=True, help="Organisation name (O=).")
@click.option(
    "--structure-id",
    default="1123456789",
    show_default=True,
    help="Structure national id (OU=), e.g. 1 + FINESS.",
)
@click.option("--professional-id", default="899700000001", show_default=True, help="Professional national id (CN=).")
@click.option("--p12-password", default="dmp-connector-sandbox", show_default=True, help="Password of the .p12 files.")
@click.option("--force", is_flag=True, help="Overwrite the files of an earlier run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (same as the global --json).")
@pass_state
def pki(
    state: CliState,
    directory: Path,
    organisation: str,
    structure_id: str,
    professional_id: str,
    p12_password: str,
    force: bool,
    as_json: bool,
) -> None:
    """Write a throw-away PKI to DIRECTORY: CA, localhost server, organisation (INSI-AUTO, SIGN), professional.

    For tests and the sandbox only: the keys are not encrypted and the CA is not IGC-Santé.
    """
    if as_json:
        state = CliState(env=state.env, config=state.config, as_json=True)
    try:
        files = generate_test_pki(
            directory,
            organisation=organisation,
            structure_id=structure_id,
            professional_id=professional_id,
            p12_password=p12_password,
            overwrite=force,
        )
    except DmpConnectorError as exc:
        state.fail(exc)
    written = files.files()
    lines = [f"test PKI written to {files.directory} (sandbox only, never for a national service):"]
    lines += [f"  {role:<18} {path}" for role, path in written.items()]
    lines.append(f"  PKCS#12 password   {files.p12_password}")
    state.emit(
        "\n".join(lines),
        {
            "directory": str(files.directory),
            "files": {role: str(path) for role, path in written.items()},
            "p12_password": files.p12_password,
            "structure_id": files.structure_id,
            "professional_id": files.professional_id,
        },
    )
