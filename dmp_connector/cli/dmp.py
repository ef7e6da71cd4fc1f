"""``dmp-connector dmp deposit|find|get|mask|delete``: the DMP from the command line.

Every command names the patient by INS (``--patient-ins``) with their traits (options or a
``--patient`` TOML file); the identity is taken as qualified (QUAL) — the DMP refuses any other.
Commands say on stderr which environment they talk to. In the sandbox environment the DMP
simulator runs in-process only when no server is configured (the sandbox's default endpoints) and
``--server`` names none (a configuration written by ``dmp-connector sandbox serve`` names its
server, and is used); ``--data DIR`` keeps its store and test PKI between
runs, so that a second ``deposit`` sees the first one's documents.

Exit codes: 0 success (``deposit``: nothing failed); 1 a service, transport or protocol error, or a
deposit with failures; 2 a usage error; 3 a configuration error; 4 a validation error.
"""

from __future__ import annotations

import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from dmp_connector.codes import Code
from dmp_connector.config import Environment, EnvironmentName, Settings
from dmp_connector.dmp import DepositResult, DmpClient
from dmp_connector.errors import ConfigurationError, DmpConnectorError, ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.sandbox import DEFAULT_INSI_IDENTITIES, DmpSimulator, in_process_dmp
from dmp_connector.xds import AvailabilityStatus, DocumentEntry

from ._main import EXIT_ERROR, CliState, announce, names_servers, pass_state
from .sandbox_serve import ca_certificates, sandbox_pki, sandbox_settings

__all__ = ["authorise", "delete", "deposit", "dmp", "find", "get", "mask"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_OID_NAMES = {"nir": InsOid.NIR, "nia": InsOid.NIA, "test": InsOid.NIR_TEST, "demo": InsOid.NIR_DEMO}
_STATUSES = {
    "approved": AvailabilityStatus.APPROVED,
    "deprecated": AvailabilityStatus.DEPRECATED,
    "deleted": AvailabilityStatus.DELETED,
    "archived": AvailabilityStatus.ARCHIVED,
}
_LOINC = "2.16.840.1.113883.6.1"


@click.group()
def dmp() -> None:
    """The DMP: deposit, find, retrieve, mask and delete documents."""


def _patient_options(command: F) -> F:
    """The patient (INS and traits) and where the DMP is, shared by every command."""
    options = [
        click.option("--patient-ins", required=True, metavar="MATRICULE", help="The patient's matricule INS."),
        click.option("--oid", "oid_text", default=None, metavar="OID", help="nir, nia, test, demo or the OID."),
        click.option(
            "--patient",
            "patient_file",
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            default=None,
            help="TOML with birth_name, first_names, sex, birth_date[, birth_place, oid].",
        ),
        click.option("--birth-name", default=None, help="Birth name (or --patient; sandbox: the seed's)."),
        click.option("--first-names", default=None, help="Birth first names, space-separated."),
        click.option("--sex", default=None, type=click.Choice(["M", "F"], case_sensitive=False), help="M or F."),
        click.option("--birth-date", default=None, metavar="YYYY-MM-DD", help="Birth date."),
        click.option("--birth-place", default=None, metavar="COG", help="INSEE COG code of the birth place."),
        click.option(
            "--server",
            default=None,
            metavar="URL",
            help="Sandbox only: a served sandbox (default: the configured one, else in-process).",
        ),
        click.option(
            "--data",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Sandbox in-process only: keep the DMP store and test PKI here between runs.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _seeded(matricule: str) -> tuple[INS, IdentityTraits] | None:
    wanted = matricule.replace(" ", "").upper()
    for seed in DEFAULT_INSI_IDENTITIES:
        if seed.ins is not None and seed.ins.matricule == wanted:
            return seed.ins, seed.traits
    return None


def _identity(settings: Settings, options: dict[str, Any]) -> Identity:
    """The qualified identity from ``--patient-ins`` and the traits (options, TOML file, or a sandbox seed)."""
    fields: dict[str, Any] = {}
    if options["patient_file"] is not None:
        try:
            fields = tomllib.loads(options["patient_file"].read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValidationError(f"cannot read the patient file {options['patient_file']}: {exc}") from exc
    for key in ("birth_name", "first_names", "sex", "birth_date", "birth_place"):
        if options[key] is not None:
            fields[key] = options[key]
    oid_text = options["oid_text"] or fields.get("oid")
    sandbox = settings.environment.name is EnvironmentName.SANDBOX
    seed = _seeded(options["patient_ins"]) if sandbox else None
    if not all(fields.get(k) for k in ("birth_name", "first_names", "sex", "birth_date")):
        if seed is None:
            raise click.UsageError("give the patient's traits: --birth-name, --first-names, --sex, --birth-date")
        ins, traits = seed
        if oid_text is not None:
            ins = INS.parse(options["patient_ins"], oid=_oid(oid_text), production=False)
        return Identity(traits=traits, ins=ins, status=IdentityStatus.QUAL)
    default_oid = seed[0].oid if seed is not None else InsOid.NIR
    oid = default_oid if oid_text is None else _oid(oid_text)
    traits = IdentityTraits.build(
        birth_name=str(fields["birth_name"]),
        birth_first_names=str(fields["first_names"]),
        sex=str(fields["sex"]).upper(),
        birth_date=str(fields["birth_date"]),
        birth_place=str(fields["birth_place"]) if fields.get("birth_place") else None,
    )
    ins = INS.parse(options["patient_ins"], oid=oid, production=settings.environment.is_production)
    return Identity(traits=traits, ins=ins, status=IdentityStatus.QUAL)


def _oid(text: str) -> InsOid:
    return _OID_NAMES.get(text.strip().lower()) or InsOid.parse(text)


@contextmanager
def _client(settings: Settings, server: str | None, data: Path | None) -> Iterator[DmpClient]:
    """A client for the configured DMP; in the sandbox, the simulator in-process or a served sandbox."""
    if settings.environment.name is not EnvironmentName.SANDBOX:
        if server is not None or data is not None:
            raise click.UsageError("--server and --data are for the sandbox only")
        announce("DMP", settings, settings.environment.dmp_base_url)
        with DmpClient(settings) as client:
            yield client
        return
    if server is not None or names_servers(settings):
        if data is not None:
            raise click.UsageError("--data is for the in-process sandbox; a served sandbox keeps its own")
        if server is not None:
            settings = settings.model_copy(update={"environment": Environment.sandbox(server)})
        announce("DMP", settings, settings.environment.dmp_base_url)
        with DmpClient(settings) as client:
            yield client
        return
    announce("DMP", None)
    with ExitStack() as stack:
        if data is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dmp-connector-dmp-")))
            store: Path | None = None
        else:
            data.mkdir(parents=True, exist_ok=True)
            directory, store = data, data / "dmp.sqlite"
        files = sandbox_pki(directory / "pki", settings)
        simulator = DmpSimulator(trusted=ca_certificates(files), path=store)
        stack.callback(simulator.store.close)
        yield stack.enter_context(in_process_dmp(sandbox_settings(settings, files), simulator))


def _run(state: CliState, options: dict[str, Any], call: Callable[[DmpClient, Identity], T]) -> T:
    try:
        settings = state.settings()
        patient = _identity(settings, options)
        with _client(settings, options["server"], options["data"]) as client:
            return call(client, patient)
    except DmpConnectorError as exc:
        state.fail(exc)


def _entry_json(entry: DocumentEntry) -> dict[str, Any]:
    return {
        "unique_id": entry.unique_id,
        "entry_uuid": entry.entry_uuid,
        "status": str(entry.availability_status) if entry.availability_status else None,
        "title": entry.title,
        "type_code": entry.type_code.code if entry.type_code is not None else None,
        "mime_type": entry.mime_type,
        "creation_time": str(entry.creation_time) if entry.creation_time is not None else None,
        "size": entry.size,
        "hash": entry.hash,
        "confidentiality": [c.code for c in entry.confidentiality_codes],
    }


def _cda_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.xml") if p.is_file()))
        else:
            files.append(path)
    return files


def _deposit_all(
    client: DmpClient, patient: Identity, files: list[Path], replaces: str | None, quiet: bool
) -> tuple[list[tuple[Path, DepositResult]], list[tuple[Path, str]]]:
    done: list[tuple[Path, DepositResult]] = []
    failed: list[tuple[Path, str]] = []
    with click.progressbar(
        files, label="depositing", file=sys.stderr, hidden=quiet, item_show_func=lambda p: p.name if p else None
    ) as bar:
        for path in bar:
            try:
                result = client.deposit(path.read_bytes(), patient=patient, replaces=replaces)
            except OSError as exc:
                failed.append((path, f"cannot read: {exc.strerror or exc}"))
            except ConfigurationError:
                raise  # the same for every document: stop and say what to fix
            except DmpConnectorError as exc:
                failed.append((path, f"{type(exc).__name__}: {exc.message}"))
            else:
                done.append((path, result))
    return done, failed


@dmp.command("deposit")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@_patient_options
@click.option("--replaces", default=None, metavar="ID", help="Replace this document (entryUUID or uniqueId).")
@pass_state
def deposit(state: CliState, /, paths: tuple[Path, ...], replaces: str | None, **options: Any) -> None:
    """Deposit CDA files, or every *.xml of the folders given, in the patient's DMP.

    A document the DMP already holds is reported as already there, not deposited twice, so the same
    folder can be deposited again safely. Exit 0 only when no document failed.

    \b
        dmp-connector dmp deposit reports/ --patient-ins 275126322074974 --data ./sandbox-data
    """
    files = _cda_files(paths)
    if not files:
        raise click.UsageError("no CDA file (*.xml) in the paths given")
    if replaces is not None and len(files) != 1:
        raise click.UsageError("--replaces takes exactly one document")
    done, failed = _run(
        state, options, lambda client, patient: _deposit_all(client, patient, files, replaces, state.as_json)
    )
    new = [(p, r) for p, r in done if not r.already_deposited]
    there = [(p, r) for p, r in done if r.already_deposited]
    lines = [
        f"{len(files)} document(s): {len(new)} deposited, {len(there)} already there, {len(failed)} failed",
        *(f"  deposited      {p}  {r.document_unique_id}" for p, r in new),
        *(f"  already there  {p}  {r.document_unique_id}" for p, r in there),
        *(f"  FAILED         {p}  {reason}" for p, reason in failed),
    ]
    state.emit(
        "\n".join(lines),
        {
            "total": len(files),
            "deposited": [{"file": str(p), **r.model_dump(mode="json")} for p, r in new],
            "already_deposited": [{"file": str(p), **r.model_dump(mode="json")} for p, r in there],
            "failed": [{"file": str(p), "reason": reason} for p, reason in failed],
        },
    )
    if failed:
        sys.exit(EXIT_ERROR)


@dmp.command("find")
@_patient_options
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(sorted(_STATUSES)),
    help="Status to find (repeatable; default approved).",
)
@click.option("--type", "type_codes", multiple=True, metavar="LOINC", help="Document type code (repeatable).")
@pass_state
def find(state: CliState, /, statuses: tuple[str, ...], type_codes: tuple[str, ...], **options: Any) -> None:
    """List the patient's documents (FindDocuments)."""
    wanted = [_STATUSES[s] for s in statuses] or [AvailabilityStatus.APPROVED]
    codes = [Code.of(code, _LOINC, code) for code in type_codes]
    found = _run(
        state, options, lambda client, patient: client.find_documents(patient, statuses=wanted, type_codes=codes)
    )
    lines = [f"{len(found)} document(s)" + (" (partial answer)" if found.partial else "")]
    for entry in found:
        status = str(entry.availability_status or "").rsplit(":", 1)[-1]
        lines.append(f"  {entry.unique_id}  {status}  {entry.creation_time or ''}  {entry.title or ''}")
    state.emit(
        "\n".join(lines), {"count": len(found), "partial": found.partial, "documents": [_entry_json(e) for e in found]}
    )


@dmp.command("get")
@click.argument("unique_id")
@_patient_options
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True, help="File to write.")
@pass_state
def get(state: CliState, /, unique_id: str, output: Path, **options: Any) -> None:
    """Retrieve one document, byte for byte, into --output."""

    def call(client: DmpClient, patient: Identity) -> tuple[DocumentEntry, Any]:
        entries = client.get_documents(patient, unique_ids=[unique_id])
        if not entries:
            raise ValidationError(f"no document {unique_id} in the patient's DMP (or it is masked to you)")
        return entries[0], client.retrieve(patient, entries[0], to=output)

    entry, retrieved = _run(state, options, call)
    state.emit(
        f"{retrieved.unique_id}: {retrieved.size} bytes ({retrieved.mime_type}) written to {output}",
        {"entry": _entry_json(entry), "path": str(output), "size": retrieved.size, "sha1": retrieved.sha1},
    )


def _update_command(name: str, verb: str, doc: str) -> None:
    @dmp.command(name, help=doc)
    @click.argument("unique_id")
    @_patient_options
    @pass_state
    def command(state: CliState, /, unique_id: str, **options: Any) -> None:
        response = _run(state, options, lambda client, patient: getattr(client, name)(patient, unique_id))
        state.emit(f"{unique_id}: {verb}", {"unique_id": unique_id, "action": name, "status": str(response.status)})


_update_command("mask", "masked from other professionals", "Mask a document from professionals other than its author.")
_update_command("delete", "deleted", "Delete a document from the patient's DMP.")
mask = dmp.commands["mask"]
delete = dmp.commands["delete"]


@dmp.command("authorise")
@_patient_options
@click.option("--remove", is_flag=True, help="Remove the authorisation instead.")
@pass_state
def authorise(state: CliState, /, remove: bool, **options: Any) -> None:
    """Record (or remove) the patient's authorisation for this professional (TD0.3): consultation needs it."""
    status = _run(state, options, lambda client, patient: client.set_authorisation(patient, add=not remove))
    verb = "removed" if remove else "recorded"
    state.emit(f"authorisation {verb}", {"authorised": not remove, "status": str(status)})
