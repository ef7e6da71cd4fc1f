"""``dmp-connector sandbox serve``: the INSi and DMP simulators on loopback, behind one HTTPS server, and MSSanté.

One server with mutual TLS routes by path: ``/insi/…`` to INSi, ``/si-dmp-server/…`` to the DMP —
exactly the URLs ``Environment.sandbox(base_url)`` gives — so one configuration file points a
client at both. The MSSanté operator (SMTP submission and IMAP, STARTTLS) runs beside it, its
certificate issued by the same test CA, when the ``sandbox`` extra is installed.
``--data DIR`` keeps the test PKI, the DMP's SQLite store and the mailboxes between runs.

Also home of the helpers the ``dmp`` commands share to run the simulator in-process: the
persisted test PKI and the sandbox settings completed from it.
"""

from __future__ import annotations

import json
import signal
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from dmp_connector.config import Environment, Settings, SigningSettings
from dmp_connector.errors import DmpConnectorError
from dmp_connector.sandbox import DmpSimulator, Handler, HttpRequest, HttpResponse, InsiSimulator
from dmp_connector.sandbox.insi import DEFAULT_INSI_IDENTITIES
from dmp_connector.sandbox.pki import INSI_AUTO, SandboxPractice, TestPkiFiles, generate_test_pki
from dmp_connector.signature import load_certificates

from ._main import CliState, pass_state
from .sandbox import sandbox

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from dmp_connector.sandbox.mssante import SandboxMailOperator
    from dmp_connector.sandbox.psc import PscSimulator

__all__ = ["RoutingServer", "ca_certificates", "sandbox_pki", "sandbox_settings", "serve"]

_PKI_NAMES = {
    "ca_cert": "ca.crt",
    "server_cert": "server.crt",
    "server_key": "server.key",
    "org_auth_cert": "org-auth.crt",
    "org_auth_key": "org-auth.key",
    "org_auth_p12": "org-auth.p12",
    "org_sign_cert": "org-sign.crt",
    "org_sign_key": "org-sign.key",
    "org_sign_p12": "org-sign.p12",
    "professional_cert": "professional.crt",
    "professional_key": "professional.key",
}
_CA_KEY = "ca.key"
_P12_PASSWORD = "dmp-connector-sandbox"  # noqa: S105 - the sandbox PKI's documented password
_DEFAULT_STRUCTURE = SandboxPractice().structure_national_id
_DEFAULT_PROFESSIONAL = SandboxPractice().professional_national_id


def sandbox_pki(directory: Path, settings: Settings | None = None) -> TestPkiFiles:
    """The test PKI kept in ``directory``: reused when there, generated (for the configured ids) when not.

    Reusing it keeps the DMP store's signatures and the written configuration valid from run to run.
    """
    paths = {role: directory / name for role, name in _PKI_NAMES.items()}
    structure = settings.organisation.national_id if settings and settings.organisation else _DEFAULT_STRUCTURE
    professional = settings.professional.national_id if settings and settings.professional else _DEFAULT_PROFESSIONAL
    if all(path.is_file() for path in paths.values()):
        ca_key = directory / _CA_KEY
        return TestPkiFiles(
            directory=directory,
            p12_password=_P12_PASSWORD,
            structure_id=structure,
            professional_id=professional,
            ca_key=ca_key if ca_key.is_file() else None,  # a PKI written before the CA key was kept has none
            **paths,  # type: ignore[arg-type]  # every value is a Path
        )
    return generate_test_pki(
        directory, structure_id=structure, professional_id=professional, p12_password=_P12_PASSWORD, overwrite=True
    )


def sandbox_settings(settings: Settings, files: TestPkiFiles, base_url: str | None = None) -> Settings:
    """``settings`` completed for the sandbox: the PKI's signature certificate and TLS files, the sandbox ids.

    The organisation and professional come from the configuration when set, from the PKI otherwise.
    """
    update: dict[str, Any] = {"signing": SigningSettings(credentials=files.signing_credentials())}
    practice = files.practice or SandboxPractice()
    if settings.organisation is None:
        update["organisation"] = practice.organisation()
    if settings.professional is None:
        update["professional"] = practice.professional()
    if base_url is not None:
        update["environment"] = Environment.sandbox(base_url)
        update["tls"] = files.tls_credentials()
    return settings.model_copy(update=update)


def ca_certificates(files: TestPkiFiles) -> list[Certificate]:
    """The PKI's root, which the simulators trust for VIHF and submission-set signatures."""
    return load_certificates(files.ca_cert, what="sandbox CA certificate")


# ----------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    server: RoutingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the sandbox prints its endpoints, not one line per request."""

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        subject = None
        if isinstance(self.connection, ssl.SSLSocket):
            peer = self.connection.getpeercert()
            if peer:
                subject = ",".join("=".join(pair) for rdn in peer.get("subject", ()) for pair in rdn)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = HttpRequest(
            method=self.command, path=self.path, headers=dict(self.headers.items()), body=body, client_subject=subject
        )
        answer = self.server.route(request)
        if answer.drop:
            self.close_connection = True
            return
        data = answer.body if isinstance(answer.body, bytes) else b"".join(answer.body)
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RoutingServer(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1 that hands each request to the simulator owning its path prefix.

    Unlike :class:`~dmp_connector.sandbox.LoopbackServer` it can listen on a chosen port, so that a
    written configuration stays valid from one run to the next.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, routes: dict[str, Handler], ssl_context: ssl.SSLContext, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.routes = routes
        self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.url = f"https://127.0.0.1:{self.server_address[1]}"

    def route(self, request: HttpRequest) -> HttpResponse:
        """The answer of the simulator whose prefix the path starts with; 404 otherwise."""
        for prefix, handler in self.routes.items():
            if request.path.startswith(prefix):
                return handler(request)
        return HttpResponse(404, {"Content-Type": "text/plain"}, f"no sandbox service at {request.path[:120]}".encode())

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Handshake in the request's own thread, so a client refused by TLS cannot stall the others."""
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def _server_context(files: TestPkiFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.server_cert, files.server_key)
    ctx.load_verify_locations(cafile=str(files.ca_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _toml_value(value: Any) -> str | None:
    """A TOML value for a string, number, boolean or a table of them; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = [(k, _toml_value(v)) for k, v in value.items() if v is not None]
        return "{ " + ", ".join(f"{k} = {v}" for k, v in items if v is not None) + " }"
    return None


def _toml_table(name: str, data: dict[str, Any]) -> list[str]:
    lines = [f"[{name}]"]
    for key, value in data.items():
        text = _toml_value(value) if value is not None else None
        if text is not None:
            lines.append(f"{key} = {text}")
    return [*lines, ""]


def _toml_text(
    settings: Settings,
    files: TestPkiFiles,
    base_url: str,
    operator: SandboxMailOperator | None = None,
    psc_issuer: str | None = None,
) -> str:
    """The configuration a client needs for this sandbox: identities from ``settings``, URLs and PKI files.

    With ``operator``, also its SMTP/IMAP ports and the applicative mailbox bound to the organisation's certificate.
    """
    software = settings.software.model_dump(mode="json")
    organisation = settings.require_organisation().model_dump(mode="json")
    professional = settings.require_professional().model_dump(mode="json")
    environment: dict[str, Any] = {"name": "sandbox", "base_url": base_url}
    mssante: list[str] = []
    if operator is not None:
        environment |= {"smtp_port": operator.smtp_port, "imap_port": operator.imap_port}
        mssante = _toml_table("mssante", {"mailbox": MAILBOX, "auth_mode": "certificate"})
    psc: list[str] = []
    if psc_issuer is not None:
        psc = _toml_table("psc", {"issuer": psc_issuer, "client_id": PSC_CLIENT_ID, "client_secret": PSC_SECRET})
    return "\n".join(
        [
            "# Written by `dmp-connector sandbox serve`: the sandbox on loopback and its test PKI. Sandbox only.",
            "",
            *_toml_table("software", software),
            *_toml_table("environment", environment),
            *_toml_table("organisation", organisation),
            *_toml_table("professional", professional),
            *_toml_table(
                "tls",
                {
                    "cert_file": str(files.org_auth_cert),
                    "key_file": str(files.org_auth_key),
                    "ca_bundle": str(files.ca_cert),
                },
            ),
            *_toml_table(
                "signing.credentials", {"cert_file": str(files.org_sign_cert), "key_file": str(files.org_sign_key)}
            ),
            *mssante,
            *psc,
        ]
    )


MAILBOX = "lps@cabinet-sandbox.mssante.fr"
"""The applicative mailbox the served operator binds to the organisation's certificate (CN ``INSI-AUTO``)."""
PRACTITIONER_MAILBOX = "dr.sandbox@medecin.mssante.fr"
"""A personal mailbox (XOAUTH2 with the token the command prints), to write to and read as a colleague."""
_TOKEN_LIFETIME = 12 * 3600.0
PSC_CLIENT_ID = "sandbox-lps"
"""The client the served PSC simulator knows (client secret, sandbox only)."""
PSC_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's client secret, written to the sandbox's config


def _psc_simulator() -> tuple[PscSimulator | None, str]:
    """The PSC simulator (CIBA approved at once: no e-CPS to answer from here); or None and why not."""
    try:
        from dmp_connector.sandbox.psc import PscSimulator
    except ImportError:
        return None, "PSC not served: install the psc extra (pip install 'dmp-connector[psc]')"
    return PscSimulator(clients={PSC_CLIENT_ID: PSC_SECRET}, auto_approve=True, ciba_interval=0.5), ""


def _mail_operator(
    files: TestPkiFiles, directory: Path, smtp_port: int, imap_port: int
) -> tuple[SandboxMailOperator | None, str]:
    """The MSSanté operator, started with a certificate from the PKI's CA; or None and why it is not served.

    Without the ``sandbox`` extra or with a PKI kept without its CA key, INSi and the DMP still serve.
    """
    try:
        from dmp_connector.sandbox.mssante import SandboxMailbox, SandboxMailOperator
    except ImportError:
        return None, "MSSanté not served: install the sandbox extra (pip install 'dmp-connector[sandbox]')"
    if files.ca_key is None:
        return None, (
            f"MSSanté not served: the test PKI in {files.directory} has no CA key ({_CA_KEY});"
            " delete that directory to regenerate it"
        )
    patients = [i.ins.matricule for i in DEFAULT_INSI_IDENTITIES if i.ins is not None]
    operator = SandboxMailOperator(
        files.load_pki(),
        mailboxes=[SandboxMailbox(MAILBOX, certificate_cn=INSI_AUTO), PRACTITIONER_MAILBOX],
        patients=patients,
        smtp_port=smtp_port,
        imap_port=imap_port,
        data_dir=directory / "mssante",
        token_lifetime=_TOKEN_LIFETIME,
    )
    try:
        operator.start()
    except DmpConnectorError as exc:
        raise click.ClickException(f"cannot start the MSSanté operator: {exc}") from exc
    return operator, ""


_DEFAULT_SOFTWARE = {
    "name": "SandboxLPS",
    "version": "0.1",
    "editor": "dmp-connector sandbox",
    "insi_authorisation_id": "SANDBOX-IDAM",
    "dmp_homologation_id": "SANDBOX-HOMOLOGATION",
}


def _base_settings(state: CliState) -> Settings:
    """The configured settings, or a minimal sandbox one when no configuration file is given."""
    if state.config is None:
        try:
            return state.settings()
        except DmpConnectorError:
            return Settings.load(None, software=_DEFAULT_SOFTWARE, environment=Environment.sandbox())
    return state.settings()


@contextmanager
def _data_directory(data: Path | None) -> Iterator[Path]:
    """The data directory, absolute: the written configuration names its files by absolute path, so that it
    works from any working directory (a TOML file's relative paths are read relative to the file)."""
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        yield data.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="dmp-connector-sandbox-") as tmp:
        yield Path(tmp)


class _Stop(Exception):
    """Raised by the SIGINT/SIGTERM handler to leave the serving loop cleanly."""


@sandbox.command("serve")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the test PKI, the DMP store and the configuration here (default: a temporary directory).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: a free one).")
@click.option("--smtp-port", type=click.IntRange(0, 65535), default=0, show_default=True, help="MSSanté SMTP port.")
@click.option("--imap-port", type=click.IntRange(0, 65535), default=0, show_default=True, help="MSSanté IMAP port.")
@pass_state
def serve(state: CliState, data: Path | None, port: int, smtp_port: int, imap_port: int) -> None:
    """Serve the INSi and DMP simulators on 127.0.0.1 (HTTPS, mutual TLS), and MSSanté, until Ctrl-C.

    Prints the endpoints and writes ``dmp-connector.toml`` for a client; use it with
    ``dmp-connector --config FILE …`` or ``Settings.load(FILE)``.
    """
    try:
        base = _base_settings(state)
    except DmpConnectorError as exc:
        state.fail(exc)
    with _data_directory(data) as directory:
        try:
            files = sandbox_pki(directory / "pki", base)
            dmp = DmpSimulator(
                trusted=ca_certificates(files),
                path=directory / "dmp.sqlite",
                require_client_certificate=True,
            )
        except DmpConnectorError as exc:
            state.fail(exc)
        insi = InsiSimulator(required_client_cn={"INSI-AUTO", "INSI-MANU"})
        psc, psc_why_not = _psc_simulator()
        routes: dict[str, Handler] = {"/insi/": insi, "/si-dmp-server/": dmp}
        if psc is not None:
            routes["/auth"] = psc  # PSC's paths: /auth (login page) and /auth/realms/esante-wallet/…
        try:
            server = RoutingServer(routes, _server_context(files), port)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
        try:
            operator, why_not = _mail_operator(files, directory, smtp_port, imap_port)
        except click.ClickException:
            server.server_close()
            dmp.store.close()
            raise
        settings = sandbox_settings(base, files, server.url)
        psc_issuer: str | None = None
        if psc is not None:
            psc.base_url = server.url
            psc_issuer = psc.issuer
            dmp.air_check = psc.has_session  # an AIR VIHF needs a PSC session of its professional
        config_path = directory / "dmp-connector.toml"
        config_path.write_text(_toml_text(settings, files, server.url, operator, psc_issuer), encoding="utf-8")
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        env = settings.environment
        mail_lines = [why_not]
        mail_data: dict[str, Any] | None = None
        if operator is not None:
            token = operator.issue_token(PRACTITIONER_MAILBOX)
            mail_lines = [
                f"  SMTP   {operator.host}:{operator.smtp_port} (STARTTLS; MSSanté mailbox {MAILBOX}, certificate)",
                f"  IMAP   {operator.host}:{operator.imap_port} (STARTTLS)",
                f"  XOAUTH2 token for {PRACTITIONER_MAILBOX} (12 h): {token}",
            ]
            mail_data = {
                "smtp": f"{operator.host}:{operator.smtp_port}",
                "imap": f"{operator.host}:{operator.imap_port}",
                "mailbox": MAILBOX,
                "practitioner_mailbox": PRACTITIONER_MAILBOX,
                "practitioner_token": token,
            }
        state.emit(
            "\n".join(
                [
                    f"sandbox listening on {server.url} (HTTPS, client certificate required)",
                    f"  INSi   {env.insi_mtls_url}",
                    f"  DMP    {env.dmp_base_url}",
                    f"  PSC    {psc_issuer} (client {PSC_CLIENT_ID}; CIBA approved at once)"
                    if psc_issuer
                    else psc_why_not,
                    *mail_lines,
                    f"  config {config_path}",
                    f"  data   {directory}" + ("" if data is not None else " (temporary)"),
                    "Ctrl-C to stop.",
                ]
            ),
            {
                "url": server.url,
                "insi_url": env.insi_mtls_url,
                "dmp_base_url": env.dmp_base_url,
                "mssante": mail_data,
                "psc_issuer": psc_issuer,
                "config": str(config_path),
                "data": str(directory),
                "pki": {role: str(path) for role, path in files.files().items()},
            },
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            raise _Stop

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while thread.is_alive():
                thread.join(0.5)
        except (_Stop, KeyboardInterrupt):
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            server.shutdown()
            server.server_close()
            if operator is not None:
                operator.stop()
            dmp.store.close()
        click.echo("sandbox stopped", err=True)
