"""``dmp-connector sandbox …``: the embedded sandbox's tools: the test PKI here, ``serve`` in ``sandbox_serve``."""

from __future__ import annotations

from pathlib import Path

import click

from dmp_connector.errors import DmpConnectorError
from dmp_connector.sandbox.pki import SandboxPractice, generate_test_pki

from ._main import CliState, pass_state

__all__ = ["sandbox"]


@click.group()
def sandbox() -> None:
    """The embedded sandbox: a test PKI and simulators, no national service involved."""


@sandbox.command("pki")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--organisation", default=None, help="Organisation name (O=); default: the configuration's, else CABINET SANDBOX."
)
@click.option(
    "--structure-id",
    default=None,
    help="Structure national id (OU=), e.g. 1 + FINESS; default: the configuration's, else 1123456789.",
)
@click.option(
    "--professional-id",
    default=None,
    help="Professional national id (CN=); default: the configuration's, else 899700000001.",
)
@click.option("--p12-password", default="dmp-connector-sandbox", show_default=True, help="Password of the .p12 files.")
@click.option("--force", is_flag=True, help="Overwrite the files of an earlier run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (same as the global --json).")
@pass_state
def pki(
    state: CliState,
    directory: Path,
    organisation: str | None,
    structure_id: str | None,
    professional_id: str | None,
    p12_password: str,
    force: bool,
    as_json: bool,
) -> None:
    """Write a throw-away PKI to DIRECTORY: CA, localhost server, organisation (INSI-AUTO, SIGN), professional.

    The certificates are issued for the practice of ``--config`` (its ``[organisation]`` and
    ``[professional]``) when one is given, else for the sandbox's own; the options override one value
    each. For tests and the sandbox only: the keys are not encrypted and the CA is not IGC-Santé.
    """
    if as_json:
        state.as_json = True
    try:
        practice = SandboxPractice()
        if state.config is not None:
            settings = state.settings()
            organisation_set, professional_set = settings.organisation, settings.professional
            practice = SandboxPractice(
                structure_id=organisation_set.id if organisation_set else practice.structure_id,
                structure_id_kind=organisation_set.id_kind if organisation_set else practice.structure_id_kind,
                organisation_name=organisation_set.name if organisation_set else practice.organisation_name,
                professional_id=professional_set.id if professional_set else practice.professional_id,
                professional_id_kind=professional_set.id_kind if professional_set else practice.professional_id_kind,
                family_name=professional_set.family_name if professional_set else practice.family_name,
                given_name=professional_set.given_name if professional_set else practice.given_name,
            )
        files = generate_test_pki(
            directory,
            practice=practice,
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
