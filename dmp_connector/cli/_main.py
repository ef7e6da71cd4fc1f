"""The ``dmp-connector`` root command, its global options and the ``config`` group.

Global options come first (``dmp-connector --env test --config my.toml --json config show``);
each service adds its own command group (``ins``, ``cda``, ``dmp``, ``mss``, ``sandbox``).
Output is for humans by default and one JSON document with ``--json``.

Exit codes: 0 success; 1 a service, transport or protocol error; 2 a usage error; 3 a
configuration error; 4 a validation error.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from dmp_connector._tls import build_ssl_context
from dmp_connector._version import __version__
from dmp_connector.config import Environment, EnvironmentName, Settings
from dmp_connector.errors import ConfigurationError, DmpConnectorError, ValidationError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VALIDATION",
    "CliState",
    "announce",
    "main",
    "names_servers",
    "pass_state",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_VALIDATION = 4

_ENV_NAMES = {"sandbox": "sandbox", "test": "test", "prod": "production", "production": "production"}


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def terminal_safe_json(data: object) -> str:
    """``data`` as JSON, every character a terminal would act on escaped as ``\\uNNNN``.

    ``json.dumps`` escapes C0 controls but not DEL, C1 (``\\x9b`` is a CSI) or bidi overrides;
    escaping them too changes no decoded value and keeps a hostile subject inert on screen.
    """
    text = json.dumps(data, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@dataclass
class CliState:
    """What the global options set, handed to every subcommand."""

    env: str | None
    config: Path | None
    as_json: bool

    def settings(self) -> Settings:
        """Load the settings the global options point at."""
        overrides: dict[str, Any] = {}
        if self.env is not None:
            overrides["environment"] = _ENV_NAMES[self.env]
        return Settings.load(self.config, **overrides)

    def emit(self, human: str, data: dict[str, Any]) -> None:
        """Print ``human`` or, with ``--json``, ``data`` as one JSON document."""
        if self.as_json:
            click.echo(terminal_safe_json(data))
        else:
            click.echo(human)

    def fail(self, exc: DmpConnectorError) -> NoReturn:
        """Report an error the way the output mode asks and exit with its code."""
        if isinstance(exc, ConfigurationError):
            code = EXIT_CONFIG
        elif isinstance(exc, ValidationError):
            code = EXIT_VALIDATION
        else:
            code = EXIT_ERROR
        if self.as_json:
            error = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
            click.echo(json.dumps({"error": error}, ensure_ascii=False))
        else:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(code)


pass_state = click.make_pass_decorator(CliState)


def names_servers(settings: Settings) -> bool:
    """True when the settings name servers: any environment but the sandbox with its default endpoints.

    A command runs an in-process simulator only when they do not, so that a configuration naming a
    served sandbox (``sandbox serve`` writes one) or a national platform is always what is reached.
    """
    return settings.environment.name is not EnvironmentName.SANDBOX or settings.environment != Environment.sandbox()


def announce(service: str, settings: Settings | None, where: str | None = None) -> None:
    """Say on stderr which environment a command talks to (stdout stays the command's output, JSON included).

    ``settings`` None: the in-process simulator. Quiet with ``--json``: stderr stays empty for scripts.
    """
    context = click.get_current_context(silent=True)
    state = context.find_object(CliState) if context is not None else None
    if state is not None and state.as_json:
        return
    if settings is None:
        click.echo(f"{service}: sandbox, in-process simulator (no server configured)", err=True)
    else:
        click.echo(f"{service}: {settings.environment.name.value} environment at {where}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dmp-connector")
@click.option(
    "--env",
    type=click.Choice(sorted(_ENV_NAMES)),
    default=None,
    help="Target environment (overrides the configuration file).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="DMP_CONNECTOR_CONFIG",
    help="TOML configuration file (default: $DMP_CONNECTOR_CONFIG).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.pass_context
def main(ctx: click.Context, env: str | None, config: Path | None, as_json: bool) -> None:
    """Talk to the French national e-health services: INSi, DMP, MSSanté."""
    ctx.obj = CliState(env=env, config=config, as_json=as_json)


@main.group()
def config() -> None:
    """Inspect and check the configuration."""


@config.command("show")
@pass_state
def config_show(state: CliState) -> None:
    """Print the effective configuration, secrets hidden."""
    try:
        settings = state.settings()
    except DmpConnectorError as exc:
        state.fail(exc)
    data = settings.model_dump(mode="json")
    lines = [f"environment: {settings.environment.name.value}"]
    lines += [f"  {k}: {v}" for k, v in data["environment"].items() if k != "name"]
    lines.append(f"software: {settings.software.name} {settings.software.version} ({settings.software.editor})")
    if settings.organisation is not None:
        lines.append(f"organisation: {settings.organisation.name} ({settings.organisation.national_id})")
    if settings.professional is not None:
        pro = settings.professional
        lines.append(f"professional: {pro.given_name} {pro.family_name} ({pro.national_id})")
    state.emit("\n".join(lines), data)


@config.command("check")
@pass_state
def config_check(state: CliState) -> None:
    """Load the configuration and check its certificate files; exit 0 only if all is usable."""
    try:
        settings = state.settings()
        build_ssl_context(settings.tls)
    except DmpConnectorError as exc:
        state.fail(exc)
    client_cert = "yes" if settings.tls.has_client_certificate else "no"
    state.emit(
        f"configuration OK (environment {settings.environment.name.value}, client certificate: {client_cert})",
        {"ok": True, "environment": settings.environment.name.value, "client_certificate": client_cert == "yes"},
    )
