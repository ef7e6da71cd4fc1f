"""``dmp-connector cda …``: CI-SIS CDA documents. This module holds the group and ``validate``.

``cda validate FILE`` reads the file through the hardened parser, then runs the structural
checks, the CDA schema and the ANS schematrons of the kit (``--kit``, or ``[cda] kit_dir`` /
``DMP_CONNECTOR_CDA__KIT_DIR``). Exit 0 when no finding is an error, 4 otherwise — and 4
too when the file is refused unread (a DTD, an entity, not well-formed XML): such a file is
reported, never processed. 3 when the kit is not configured or Saxon is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dmp_connector.cda import CdaValidator, ValidationReport
from dmp_connector.cda.kit import KIT_REPOSITORY, TESTED_KIT, describe_kit
from dmp_connector.config import CdaSettings
from dmp_connector.errors import DmpConnectorError, MalformedResponseError, UnsafeXmlError

from ._main import EXIT_CONFIG, EXIT_VALIDATION, CliState, pass_state

__all__ = ["cda"]


@click.group()
def cda() -> None:
    """CI-SIS CDA documents: validate them against the official kit."""


def _settings(state: CliState, kit: Path | None) -> CdaSettings:
    """The [cda] settings of the configuration file when one is given, else the environment; --kit over both."""
    settings = state.settings().cda if state.config is not None else CdaSettings.from_environment()
    if kit is not None:
        settings = settings.model_copy(update={"kit_dir": kit})
    return settings


@cda.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--kit",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the ANS TestContenuCDA kit (default: [cda] kit_dir or $DMP_CONNECTOR_CDA__KIT_DIR).",
)
@click.option("--no-schema", is_flag=True, help="Skip the CDA schema (CDA_extended.xsd).")
@click.option("--no-schematron", is_flag=True, help="Skip the ANS schematrons (they need the 'validation' extra).")
@click.option(
    "--schematron",
    "volet",
    metavar="NAME",
    default=None,
    help="Check against this volet schematron (VSM_2023.01 …) instead of the one picked from the document.",
)
@click.option("--only-volet", is_flag=True, help="Run the volet schematron only, not the kit-wide ones.")
@click.option("-v", "--verbose", is_flag=True, help="Also list info findings and the time each step took.")
@pass_state
def validate(
    state: CliState,
    file: Path,
    kit: Path | None,
    no_schema: bool,
    no_schematron: bool,
    volet: str | None,
    only_volet: bool,
    verbose: bool,
) -> None:
    """Validate a CDA file: structural checks, schema and the right ANS schematrons.

    The volet's schematron is picked from the document's templateIds and type code; the
    kit-wide ones (StrucMin, IHE …) run as well. Exit 0 with no error-level finding, 4
    otherwise or when the file is refused as unsafe or malformed.

    \b
        dmp-connector cda validate --kit ~/TestContenuCDA-3-0 compte-rendu.xml
    """
    try:
        settings = _settings(state, kit)
        validator = CdaValidator(settings)
        limit = validator.limits.max_bytes
        with file.open("rb") as fh:
            data = fh.read(limit + 1)
        report = validator.validate(
            data,
            schema=not no_schema,
            schematron=not no_schematron,
            volet=volet,
            generic=() if only_volet else None,
        )
    except (UnsafeXmlError, MalformedResponseError) as exc:
        _refused(state, file, exc)
    except DmpConnectorError as exc:
        state.fail(exc)
    except OSError as exc:
        state.fail(MalformedResponseError(f"cannot read {file.name}: {exc.strerror or exc}"))
    _emit(state, file, report, verbose=verbose)
    if not report.ok:
        sys.exit(EXIT_VALIDATION)


@cda.command("kit")
@click.argument("directory", type=click.Path(path_type=Path))
@pass_state
def kit(state: CliState, directory: Path) -> None:
    """Say which ANS CDA kit DIRECTORY holds and what it lacks (schema, schematrons, value sets, engine, examples).

    Exit 0 when ``cda validate`` can use it, 3 when its schema or schematrons are missing.

    \b
        dmp-connector cda kit ~/TestContenuCDA-3-0
    """
    found = describe_kit(directory)
    tested = "the kit this SDK is tested with" if found.tested else f"this SDK is tested with {TESTED_KIT}"
    generic = ", ".join(found.generic_schematrons) or "none"
    lines = [
        f"{found.root}: {found.kit} ({tested})",
        f"  CDA schema          {'yes' if found.schema else 'MISSING'}",
        f"  volet schematrons   {found.volet_schematrons}",
        f"  kit-wide schematrons {generic}",
        f"  value sets          {found.value_sets}",
        f"  schematron engine   {'yes' if found.engine else 'missing'} (schematrons/moteur)",
        f"  examples            {found.examples}",
        f"  saxonche            {'yes' if found.saxon else 'missing'} (the validation extra)",
    ]
    lines += [f"  lacks: {item}" for item in found.lacks] or ["  lacks nothing"]
    if not found.tested:
        lines.append(f"  get the tested kit from {KIT_REPOSITORY}")
    data = {
        "directory": str(found.root),
        "kit": found.kit,
        "tested": found.tested,
        "usable": found.usable,
        "schema": found.schema,
        "volet_schematrons": found.volet_schematrons,
        "generic_schematrons": list(found.generic_schematrons),
        "value_sets": found.value_sets,
        "missing_value_sets": list(found.missing_value_sets),
        "engine": found.engine,
        "examples": found.examples,
        "saxonche": found.saxon,
        "lacks": list(found.lacks),
        "repository": KIT_REPOSITORY,
        "tested_kit": TESTED_KIT,
    }
    state.emit("\n".join(lines), data)
    if not found.usable:
        sys.exit(EXIT_CONFIG)


def _refused(state: CliState, file: Path, exc: DmpConnectorError) -> None:
    """A file refused unread: say so, and exit as a validation failure."""
    kind = "unsafe" if isinstance(exc, UnsafeXmlError) else "malformed"
    if state.as_json:
        state.emit(
            "",
            {
                "file": str(file),
                "ok": False,
                "refused": kind,
                "error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint},
            },
        )
    else:
        click.echo(f"{file.name}: REFUSED ({kind} XML, not processed): {exc.message}")
        if exc.hint:
            click.echo(f"hint: {exc.hint}")
    sys.exit(EXIT_VALIDATION)


def _emit(state: CliState, file: Path, report: ValidationReport, *, verbose: bool) -> None:
    data: dict[str, Any] = {"file": str(file), **report.model_dump(mode="json")}
    volet = f" (volet {report.volet})" if report.volet else ""
    human = f"{file.name}{volet}: {report.to_text(verbose=verbose)}"
    if verbose and report.timings:
        steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in report.timings.items())
        human += f"\n  timings: {steps}"
    state.emit(human, data)
