"""``dmp-connector psc login`` and ``psc whoami``: a Pro Santé Connect login by CIBA from the command line.

Both start a CIBA request for ``--login-hint`` (the professional's national id), print the
binding message the professional must find on their e-CPS, and wait for the answer. Tokens
stay in this process's memory and the session is logged out before the command ends: nothing
is written to disk, nothing is printed of a token. ``login`` reports the session (acr,
lifetimes); ``whoami`` the professional PSC vouches for (exercises, activities) and, with
``--structure``, the activity AIR would use there.

In the sandbox environment with no ``psc.client_id`` configured, a PSC simulator runs
in-process and its e-CPS answers as ``--sandbox-answer`` says (approve, deny, expire).
A real PSC must be reached from an intermediate server (``docs/psc.md``): run these there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import httpx
from pydantic import SecretStr

from dmp_connector.config import EnvironmentName, Settings
from dmp_connector.errors import ConfigurationError, DmpConnectorError
from dmp_connector.sandbox import as_transport

if TYPE_CHECKING:  # the psc extra (joserfc) is imported when a psc command runs, not with the CLI
    from dmp_connector.psc import PscClient, PscSession

from ._main import CliState, pass_state

__all__ = ["psc"]


@click.group()
def psc() -> None:
    """Pro Santé Connect: log a professional in by CIBA (e-CPS)."""


_OPTIONS = [
    click.option("--login-hint", required=True, help="The professional's national id (8 + RPPS)."),
    click.option("--binding-message", default=None, help="Two digits to show (default: random)."),
    click.option(
        "--sandbox-answer",
        type=click.Choice(["approve", "deny", "expire"]),
        default="approve",
        show_default=True,
        help="Sandbox only: what the simulated e-CPS answers.",
    ),
]


def _with_options(function: Any) -> Any:
    for option in reversed(_OPTIONS):
        function = option(function)
    return function


@contextmanager
def _client(settings: Settings, answer: str) -> Iterator[tuple[PscClient, Any]]:
    """A PSC client for the settings; in the sandbox without a client id, on an in-process simulator."""
    try:
        from dmp_connector.psc import PscClient
    except ImportError as exc:
        raise ConfigurationError(
            "the psc commands need the psc extra", hint="pip install 'dmp-connector[psc]'"
        ) from exc
    if settings.environment.name is not EnvironmentName.SANDBOX or settings.psc.client_id is not None:
        with PscClient(settings) as client:
            yield client, None
        return
    from dmp_connector.sandbox.psc import PscSimulator

    simulator = PscSimulator(ciba_interval=0.2, auto_approve=answer == "approve")
    psc_settings = settings.psc.model_copy(
        update={"issuer": simulator.issuer, "client_id": "sandbox-lps", "client_secret": SecretStr("sandbox-secret")}
    )
    http = httpx.Client(transport=as_transport(simulator))
    try:
        with PscClient(settings.model_copy(update={"psc": psc_settings}), http_client=http) as client:
            yield client, simulator
    finally:
        http.close()


def _login(state: CliState, login_hint: str, binding_message: str | None, answer: str) -> tuple[PscSession, Any]:
    settings = state.settings()
    with _client(settings, answer) as (client, simulator):
        request = client.start_ciba(login_hint, binding_message=binding_message)
        click.echo(
            f"Code à vérifier sur l'e-CPS : {request.binding_message} (waiting for the professional's answer…)",
            err=state.as_json,
        )
        if simulator is not None and answer == "deny":
            simulator.deny()
        elif simulator is not None and answer == "expire":
            simulator.expire()
        session = client.wait_ciba(request)
        try:
            return session, _report(session)
        finally:
            session.logout()


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment is not None else None


def _report(session: PscSession) -> dict[str, Any]:
    pro = session.professional
    return {
        "national_id": pro.national_id,
        "family_name": pro.family_name,
        "given_name": pro.given_name,
        "auth_mode": pro.auth_mode,
        "acr": session.acr,
        "auth_time": _when(session.auth_time),
        "access_expires_at": _when(session.access_expires_at),
        "refresh_expires_at": _when(session.refresh_expires_at),
        "exercises": [
            {
                "profession": e.profession,
                "skill": e.skill,
                "activities": [
                    {"structure_id": a.structure_id, "name": a.name, "sector": a.sector, "mode": a.mode}
                    for a in e.activities
                ],
            }
            for e in pro.exercises
        ],
    }


@psc.command("login")
@_with_options
@pass_state
def login(state: CliState, login_hint: str, binding_message: str | None, sandbox_answer: str) -> None:
    """Log in by CIBA, show the binding message, report the session, log out."""
    try:
        _, data = _login(state, login_hint, binding_message, sandbox_answer)
    except DmpConnectorError as exc:
        state.fail(exc)
    summary = {k: data[k] for k in ("national_id", "acr", "auth_time", "access_expires_at", "refresh_expires_at")}
    human = "\n".join(
        [
            f"logged in: {data['given_name'] or ''} {data['family_name'] or ''} ({data['national_id']})".replace(
                "  ", " "
            ),
            f"acr: {data['acr']}  authenticated: {data['auth_time']}",
            f"access token until {data['access_expires_at']}, session until {data['refresh_expires_at']}",
            "logged out (tokens were kept in memory only)",
        ]
    )
    state.emit(human, summary)


@psc.command("whoami")
@_with_options
@click.option("--structure", default=None, help="Show the activity at this structure (national id, FINESS, name).")
@pass_state
def whoami(
    state: CliState, login_hint: str, binding_message: str | None, sandbox_answer: str, structure: str | None
) -> None:
    """Log in by CIBA and print who PSC says the professional is: exercises and activities."""
    try:
        session, data = _login(state, login_hint, binding_message, sandbox_answer)
        if structure is not None:
            exercise, activity = session.professional.activity_at(structure)
            data["activity_at_structure"] = {
                "profession": exercise.profession,
                "structure_id": activity.structure_id,
                "name": activity.name,
                "sector": activity.sector,
            }
    except DmpConnectorError as exc:
        state.fail(exc)
    lines = [f"{data['given_name'] or ''} {data['family_name'] or ''} ({data['national_id']}, {data['auth_mode']})"]
    for exercise in data["exercises"]:
        lines.append(f"  profession {exercise['profession']} {exercise['skill'] or ''}".rstrip())
        lines += [f"    {a['structure_id']} {a['name']} ({a['sector']}, {a['mode']})" for a in exercise["activities"]]
    if "activity_at_structure" in data:
        chosen = data["activity_at_structure"]
        lines.append(f"at {structure}: {chosen['structure_id']} {chosen['name']} (profession {chosen['profession']})")
    state.emit("\n".join(lines), data)
