"""``dmp-connector ins search`` and ``ins verify``: the INSi teleservice from the command line.

Both go to the configured environment and say on stderr which one. In the sandbox (the default
environment) the INSi simulator runs in-process only when no server is configured (the sandbox's
default endpoints) and ``--server`` names none: a configuration naming a served sandbox
(``dmp-connector sandbox serve`` writes one) is always used. The traits and matricules
printed are the user's own query and answer, on their terminal; nothing is logged.

Exit codes: 0 success (for ``verify``: the INS is confirmed); 1 a service, transport or
protocol error; 2 a usage error; 3 a configuration error; 4 invalid traits or matricule,
or (``verify``) an INS that is not confirmed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from dmp_connector.config import Environment, EnvironmentName, InsiAuthMode, Settings
from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins import (
    INS,
    Identity,
    IdentityStatus,
    IdentityTraits,
    InsiClient,
    InsiIdentity,
    InsiResult,
    InsiVerification,
    InsOid,
    SearchCriteria,
)
from dmp_connector.sandbox import in_process_insi

from ._main import EXIT_VALIDATION, CliState, announce, names_servers, pass_state
from .ins import ins

__all__ = ["search", "verify"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_OID_NAMES = {"nir": InsOid.NIR, "nia": InsOid.NIA, "test": InsOid.NIR_TEST, "demo": InsOid.NIR_DEMO}


def _traits_options(command: F) -> F:
    """The INS traits, shared by ``search`` and ``verify``."""
    options = [
        click.option("--birth-name", required=True, help="Birth name (nom de naissance)."),
        click.option("--first-names", required=True, help='Birth first names, space-separated: "PIERRE-ALAIN MURIEL".'),
        click.option("--sex", required=True, type=click.Choice(["M", "F"], case_sensitive=False), help="M or F."),
        click.option("--birth-date", required=True, metavar="YYYY-MM-DD", help="Birth date (00 for unknown parts)."),
        click.option("--birth-place", default=None, metavar="COG", help="INSEE COG code of the birth place."),
        click.option(
            "--server",
            default=None,
            metavar="URL",
            help="Sandbox only: the base URL of a served simulator (default: the configured one, else in-process).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _traits(birth_name: str, first_names: str, sex: str, birth_date: str, birth_place: str | None) -> IdentityTraits:
    return IdentityTraits.build(
        birth_name=birth_name,
        birth_first_names=first_names,
        sex=sex.upper(),
        birth_date=birth_date,
        birth_place=birth_place,
    )


def _with_client(settings: Settings, server: str | None, call: Callable[[InsiClient], T]) -> T:
    """Run ``call`` with a client for the configured INSi, or the simulator in the sandbox."""
    if settings.environment.name is EnvironmentName.SANDBOX:
        if server is None and not names_servers(settings):
            announce("INSi", None)
            with in_process_insi(settings) as client:
                return call(client)
        if server is not None:
            settings = settings.model_copy(update={"environment": Environment.sandbox(server)})
    elif server is not None:
        raise click.UsageError("--server is for the sandbox only; other environments use their configured URLs")
    environment = settings.environment
    mtls = settings.insi.auth_mode is InsiAuthMode.MTLS
    announce("INSi", settings, environment.insi_mtls_url if mtls else environment.insi_url)
    with InsiClient(settings) as client:
        return call(client)


def _ins_json(value: INS) -> dict[str, Any]:
    return {
        "matricule": value.matricule,
        "oid": value.oid.value,
        "kind": value.kind.value,
        "key_valid": value.key_valid,
    }


def _traits_json(traits: IdentityTraits) -> dict[str, Any]:
    return {
        "birth_name": traits.birth_name,
        "birth_first_names": list(traits.birth_first_names),
        "sex": traits.sex.value,
        "birth_date": traits.birth_date.iso(),
        "birth_place": traits.birth_place,
    }


def _identity_json(identity: InsiIdentity) -> dict[str, Any]:
    return {
        "ins": _ins_json(identity.active),
        "history": [{**_ins_json(entry.ins), "start": entry.start, "end": entry.end} for entry in identity.history],
        "replaced": [_ins_json(former) for former in identity.replaced],
        "traits": _traits_json(identity.traits),
        "first_name": identity.first_name,
        "placeholder_traits": identity.placeholder_traits,
    }


def _result_json(result: InsiResult) -> dict[str, Any]:
    return {
        "code": result.code.value,
        "label": result.label,
        "criteria": result.criteria.model_dump() if result.criteria is not None else None,
        "identity": _identity_json(result.identity) if result.identity is not None else None,
    }


def _criteria_text(criteria: SearchCriteria | None) -> str:
    if criteria is None:
        return ""
    parts = ["all first names" if criteria.all_first_names else "first first name"]
    if criteria.birth_place:
        parts.append("birth place")
    return f" (searched with {' + '.join(parts)})"


def _describe_ins(value: INS) -> str:
    flag = "" if value.key_valid else f"  WRONG KEY (the algorithm gives {value.expected_key})"
    return f"{value.formatted()}  {value.kind.value}, OID {value.oid.value}{flag}"


def _result_lines(result: InsiResult) -> list[str]:
    lines = [f"INSi answer {result.code.value}: {result.label}{_criteria_text(result.criteria)}"]
    identity = result.identity
    if identity is None:
        if result.code.value == "02":
            lines.append("  several people match: add every first name and the birth place")
        elif result.code.value == "01":
            lines.append("  nobody matches: check the traits against an identity document")
        return lines
    lines.append(f"  INS        {_describe_ins(identity.active)}")
    for entry in identity.history:
        dates = ""
        if entry.start is not None or entry.end is not None:
            dates = f"  from {entry.start or '?'} to {entry.end or '?'}"
            dates += " (dates inverted as sent)" if entry.dates_inverted else ""
        lines.append(f"  history    {_describe_ins(entry.ins)}{dates}")
    traits = identity.traits
    lines.append(f"  birth name {traits.birth_name}")
    lines.append(f"  first names {traits.first_names_text}")
    lines.append(f"  sex        {traits.sex.value}")
    lines.append(f"  birth date {traits.birth_date.iso()}")
    lines.append(f"  birth place {traits.birth_place or '(not sent)'}")
    if identity.placeholder_traits:
        lines.append("  note: placeholder traits sent with a NIA; keep the local traits")
    if not identity.all_keys_valid:
        lines.append("  warning: INSi returned a matricule whose key does not check; do not qualify this identity")
    return lines


@ins.command("search")
@_traits_options
@click.option("--all-first-names", is_flag=True, help="Send every first name in one search (no refinement).")
@click.option("--with-birth-place", is_flag=True, help="Send the birth place in one search (no refinement).")
@pass_state
def search(
    state: CliState,
    birth_name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    birth_place: str | None,
    server: str | None,
    all_first_names: bool,
    with_birth_place: bool,
) -> None:
    """Search the INS of a person by their traits (rechercherInsAvecTraitsIdentite).

    Without --all-first-names/--with-birth-place, an answer 02 (several people) is
    refined as the ANS guidance says: every first name, then the birth place.

    \b
        dmp-connector ins search --birth-name ADRUN --first-names ZOE --sex F --birth-date 1975-12-31
    """
    try:
        settings = state.settings()
        traits = _traits(birth_name, first_names, sex, birth_date, birth_place)
        criteria = (
            SearchCriteria(all_first_names=all_first_names, birth_place=with_birth_place)
            if all_first_names or with_birth_place
            else None
        )
        result = _with_client(settings, server, lambda client: client.search(traits, criteria=criteria))
    except DmpConnectorError as exc:
        state.fail(exc)
    state.emit("\n".join(_result_lines(result)), _result_json(result))


@ins.command("verify")
@click.option("--matricule", required=True, help="The stored matricule INS, 15 characters (spaces allowed).")
@click.option(
    "--oid",
    "oid_text",
    default="nir",
    show_default=True,
    metavar="OID",
    help="Assigning authority: nir, nia, test, demo or the OID itself.",
)
@_traits_options
@pass_state
def verify(
    state: CliState,
    matricule: str,
    oid_text: str,
    birth_name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    birth_place: str | None,
    server: str | None,
) -> None:
    """Verify a stored INS: search INSi with its traits and compare INS and traits.

    Exit 0 only when the INS is confirmed; 4 for any other verdict (traits differ,
    matricule replaced or different, wrong key, not found, ambiguous).

    \b
        dmp-connector ins verify --matricule "2 75 12 63 220 749 74" \\
            --birth-name ADRUN --first-names ZOE --sex F --birth-date 1975-12-31 --birth-place 63220
    """
    try:
        settings = state.settings()
        oid = _OID_NAMES.get(oid_text.strip().lower()) or InsOid.parse(oid_text)
        stored = INS.parse(matricule, oid=oid, production=settings.environment.is_production)
        identity = Identity(
            traits=_traits(birth_name, first_names, sex, birth_date, birth_place),
            ins=stored,
            status=IdentityStatus.RECUP,
        )
        verification = _with_client(settings, server, lambda client: client.verify(identity))
    except DmpConnectorError as exc:
        state.fail(exc)
    state.emit("\n".join(_verification_lines(verification)), _verification_json(verification))
    if not verification.confirmed:
        sys.exit(EXIT_VALIDATION)


_VERDICT_TEXT = {
    "confirmed": "CONFIRMED: INSi returns this INS with the same traits",
    "traits_differ": "TRAITS DIFFER: same INS, but check these traits against an identity document",
    "matricule_replaced": "MATRICULE REPLACED: this INS is a former one; store the active INS",
    "matricule_differs": "MATRICULE DIFFERS: INSi knows this person under another INS",
    "key_invalid": "KEY INVALID: INSi returned a matricule whose key does not check; do not qualify",
    "not_found": "NOT FOUND: INSi finds nobody with these traits",
    "ambiguous": "AMBIGUOUS: INSi finds several people with these traits",
}


def _verification_lines(verification: InsiVerification) -> list[str]:
    lines = [f"verdict: {_VERDICT_TEXT[verification.verdict.value]}"]
    if verification.comparison is not None:
        for difference in verification.comparison.differences:
            lines.append(
                f"  {difference.trait}: ours {difference.ours or '-'}, INSi {difference.theirs or '-'}"
                f" ({difference.kind.value})"
            )
    lines.extend(f"  note: {note}" for note in verification.notes)
    lines.append(f"  searches made: {verification.searches}")
    lines.extend(_result_lines(verification.result))
    return lines


def _verification_json(verification: InsiVerification) -> dict[str, Any]:
    differences = verification.comparison.differences if verification.comparison is not None else ()
    return {
        "verdict": verification.verdict.value,
        "confirmed": verification.confirmed,
        "stored": _ins_json(verification.stored),
        "differing_traits": list(verification.differing_traits),
        "differences": [
            {"trait": d.trait, "kind": d.kind.value, "ours": d.ours, "theirs": d.theirs} for d in differences
        ],
        "notes": list(verification.notes),
        "searches": verification.searches,
        "result": _result_json(verification.result),
    }
