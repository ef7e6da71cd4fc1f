"""``dmp-connector mss send`` and ``mss inbox``: MSSanté mail from the command line.

Both use the configured operator (``environment.mssante_smtp`` / ``mssante_imap`` and
``[mssante]``) and say on stderr which environment they talk to. In the sandbox (the default
environment) an MSSanté operator runs in-process only when no server is configured (the sandbox's
default endpoints) and ``--smtp``/``--imap`` name none: it knows the sender,
the professional recipients and the patient given, keeps its mailboxes in
``--sandbox-dir`` between runs (so that ``mss inbox`` sees what ``mss send`` delivered),
and authenticates with a sandbox XOAUTH2 token.

What is printed is the user's own mail on their own terminal; nothing is logged. Exit
codes: 0 success; 1 a service or transport error; 2 a usage error; 3 a configuration
error; 4 a message the MSSanté rules refuse.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import click

from dmp_connector.config import (
    Environment,
    EnvironmentName,
    MailServer,
    MssanteAuthMode,
    Settings,
    TlsCredentials,
)
from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.mssante._mail import redact_text
from dmp_connector.mssante.address import MssanteAddress
from dmp_connector.mssante.auth import StaticTokenProvider, TokenProvider
from dmp_connector.mssante.client import MssanteClient
from dmp_connector.mssante.message import Attachment, CdaDocument, MssanteMessage
from dmp_connector.mssante.transport import MailSummary, redact_address

from ._main import CliState, announce, names_servers, pass_state

__all__ = ["mss"]

SANDBOX_SENDER = "lps@sandbox.mssante.fr"
"""The sender in the sandbox when ``mssante.mailbox`` is not set."""

_OID_NAMES = {"nir": InsOid.NIR, "nia": InsOid.NIA, "test": InsOid.NIR_TEST, "demo": InsOid.NIR_DEMO}


def _default_sandbox_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dmp-connector" / "mssante-sandbox"


def _server(text: str | None, what: str) -> MailServer | None:
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.BadParameter(f"{what} is HOST:PORT, e.g. 127.0.0.1:8587")
    return MailServer(host=host, port=int(port))


@contextmanager
def _connected(
    settings: Settings,
    *,
    sender: str,
    mailboxes: Sequence[str],
    patients: Sequence[str],
    smtp: str | None,
    imap: str | None,
    sandbox_dir: Path | None,
    token_file: Path | None,
    mailbox: str | None = None,
) -> Iterator[tuple[Settings, TokenProvider | None]]:
    """The settings (and token provider) to reach the operator: configured, served, or in-process.

    ``mailbox``: the mailbox to open instead of the configured one (``mss inbox --mailbox``).
    """
    tokens = None
    if token_file is not None:
        tokens = StaticTokenProvider(_read(token_file).decode("utf-8", "replace").strip())
    mss_update: dict[str, Any] = {}
    if mailbox is not None:
        mss_update["mailbox"] = mailbox
    if tokens is not None:
        mss_update["auth_mode"] = MssanteAuthMode.XOAUTH2
    if mss_update:
        settings = settings.model_copy(update={"mssante": settings.mssante.model_copy(update=mss_update)})
    if settings.environment.name is not EnvironmentName.SANDBOX:
        if smtp or imap or sandbox_dir:
            raise click.UsageError("--smtp, --imap and --sandbox-dir are for the sandbox only")
        _announce(settings)
        yield settings, tokens
        return
    if smtp or imap or names_servers(settings):
        if sandbox_dir:
            raise click.UsageError("--sandbox-dir is for the in-process operator; a served one keeps its own")
        update: dict[str, Any] = {}
        if smtp:
            update["mssante_smtp"] = _server(smtp, "--smtp")
        if imap:
            update["mssante_imap"] = _server(imap, "--imap")
        served = settings.model_copy(update={"environment": settings.environment.model_copy(update=update)})
        _announce(served)
        yield served, tokens
        return
    announce("MSSanté", None)
    # Imported here: the in-process operator needs the sandbox extra (aiosmtpd, pymap).
    from dmp_connector.sandbox import TestPki
    from dmp_connector.sandbox.mssante import SandboxMailOperator, SandboxTokenProvider

    directory = sandbox_dir or _default_sandbox_dir()
    directory.mkdir(parents=True, exist_ok=True)
    pki = TestPki.create()
    boxes = sorted({sender, *mailboxes})
    operator = SandboxMailOperator(pki, mailboxes=boxes, patients=patients, data_dir=directory)
    with operator, tempfile.TemporaryDirectory(prefix="dmpc-mss-") as tmp:
        ca = Path(tmp) / "sandbox-ca.pem"
        ca.write_bytes(pki.ca_pem)
        mss = settings.mssante.model_copy(
            update={"auth_mode": MssanteAuthMode.XOAUTH2, "mailbox": sender, "tls": TlsCredentials(ca_bundle=ca)}
        )
        environment: Environment = operator.environment(settings.environment)
        yield (
            settings.model_copy(update={"environment": environment, "mssante": mss}),
            SandboxTokenProvider(operator, sender),
        )


def _announce(settings: Settings) -> None:
    environment = settings.environment
    servers = [
        f"{what} {server.host}:{server.port}"
        for what, server in (("SMTP", environment.mssante_smtp), ("IMAP", environment.mssante_imap))
        if server is not None
    ]
    announce("MSSanté", settings, ", ".join(servers) or "no server configured")


def _sandbox_options(command: Any) -> Any:
    options = [
        click.option(
            "--smtp",
            default=None,
            metavar="HOST:PORT",
            help="Sandbox only: a served operator's SMTP (over the config).",
        ),
        click.option(
            "--imap",
            default=None,
            metavar="HOST:PORT",
            help="Sandbox only: a served operator's IMAP (over the config).",
        ),
        click.option(
            "--token-file",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="A file holding the Pro Santé Connect access token (read, never printed): XOAUTH2 with it.",
        ),
        click.option(
            "--sandbox-dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Sandbox only: where the in-process operator keeps its mailboxes "
            "(default: ~/.cache/dmp-connector/mssante-sandbox).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
def mss() -> None:
    """MSSanté secure health mail: send messages and CDA documents, read the inbox."""


def _patient(
    ins_text: str | None,
    oid_text: str,
    birth_name: str | None,
    first_names: str | None,
    sex: str | None,
    birth_date: str | None,
    birth_place: str | None,
) -> Identity | None:
    if ins_text is None:
        if any((birth_name, first_names, sex, birth_date)):
            raise click.UsageError("the patient's traits go with --patient-ins")
        return None
    if not (birth_name and first_names and sex and birth_date):
        raise click.UsageError("--patient-ins needs --birth-name, --first-names, --sex and --birth-date")
    oid = _OID_NAMES.get(oid_text.strip().lower()) or InsOid.parse(oid_text)
    traits = IdentityTraits.build(
        birth_name=birth_name, birth_first_names=first_names, sex=sex, birth_date=birth_date, birth_place=birth_place
    )
    # Given on the command line with its INS, the identity is declared qualified by the user.
    return Identity(traits=traits, ins=INS.parse(ins_text, oid=oid), status=IdentityStatus.QUAL)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc


@mss.command("send")
@click.option("--to", "to", multiple=True, metavar="ADDRESS", help="Recipient (repeat for several).")
@click.option("--cc", "cc", multiple=True, metavar="ADDRESS", help="Copy recipient (repeat for several).")
@click.option("--subject", default=None, help="Subject; with --cda, the label of the rule's subject.")
@click.option("--body", default=None, help="Plain-text body.")
@click.option("--body-file", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Body from a file.")
@click.option(
    "--cda", "cda", multiple=True, type=click.Path(path_type=Path, dir_okay=False), help="CDA document to send."
)
@click.option(
    "--pdf",
    "pdf",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="PDF copy of the --cda of the same rank (required for a structured CDA).",
)
@click.option("--attach", multiple=True, type=click.Path(path_type=Path, dir_okay=False), help="Other file to attach.")
@click.option("--patient-ins", default=None, metavar="MATRICULE", help="The patient's INS (a qualified identity).")
@click.option("--patient-oid", default="nir", show_default=True, help="nir, nia, test, demo or the OID.")
@click.option("--birth-name", default=None, help="The patient's birth name.")
@click.option("--first-names", default=None, help="The patient's birth first names, space-separated.")
@click.option("--sex", type=click.Choice(["M", "F", "I"], case_sensitive=False), default=None, help="M, F or I.")
@click.option("--birth-date", default=None, metavar="YYYY-MM-DD", help="The patient's birth date.")
@click.option("--birth-place", default=None, metavar="COG", help="INSEE code of the birth place.")
@click.option("--to-patient", is_flag=True, help="Also send to the patient's Mon espace santé address.")
@click.option("--delivery-receipt", is_flag=True, help="Ask for a delivery receipt (DSN).")
@click.option("--read-receipt", is_flag=True, help="Ask for a read receipt (MDN).")
@click.option("--end-conversation", is_flag=True, help="X-MSS-MES: FIN: the patient may not answer.")
@_sandbox_options
@pass_state
def send(
    state: CliState,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    subject: str | None,
    body: str | None,
    body_file: Path | None,
    cda: tuple[Path, ...],
    pdf: tuple[Path, ...],
    attach: tuple[Path, ...],
    patient_ins: str | None,
    patient_oid: str,
    birth_name: str | None,
    first_names: str | None,
    sex: str | None,
    birth_date: str | None,
    birth_place: str | None,
    to_patient: bool,
    delivery_receipt: bool,
    read_receipt: bool,
    end_conversation: bool,
    smtp: str | None,
    imap: str | None,
    token_file: Path | None,
    sandbox_dir: Path | None,
) -> None:
    """Send an MSSanté message, CDA documents packed in an IHE XDM archive.

    \b
        dmp-connector mss send --to dr.martin@medecin.mssante.fr --cda cr.xml
        dmp-connector mss send --to-patient --patient-ins 279035121518989 --patient-oid test \\
            --birth-name DUPONT --first-names "JEAN PIERRE" --sex M --birth-date 1980-01-01 --body "Bonjour"
    """
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    if len(pdf) > len(cda):
        raise click.UsageError("there are more --pdf than --cda")
    try:
        settings = state.settings()
        patient = _patient(patient_ins, patient_oid, birth_name, first_names, sex, birth_date, birth_place)
        if to_patient and patient is None:
            raise click.UsageError("--to-patient needs --patient-ins and the patient's traits")
        recipients = [MssanteAddress.parse(a) for a in to]
        if to_patient and patient is not None:
            recipients.append(MssanteAddress.for_patient(patient))
        if not recipients:
            raise click.UsageError("give at least one --to (or --to-patient)")
        copies = tuple(MssanteAddress.parse(a) for a in cc)
        text = body_file.read_text(encoding="utf-8") if body_file is not None else body
        documents = tuple(
            CdaDocument(content=_read(path), rendition=_read(pdf[i]) if i < len(pdf) else None)
            for i, path in enumerate(cda)
        )
        attachments = tuple(Attachment(filename=path.name, content=_read(path)) for path in attach)
        sandbox = settings.environment.name is EnvironmentName.SANDBOX
        sandbox_sender = settings.mssante.mailbox or SANDBOX_SENDER
        message = MssanteMessage(
            to=tuple(recipients),
            cc=copies,
            sender=MssanteAddress.parse(SANDBOX_SENDER) if sandbox and not settings.mssante.mailbox else None,
            subject=subject,
            text=text,
            documents=documents,
            attachments=attachments,
            patient=patient,
            delivery_receipt=delivery_receipt,
            read_receipt=read_receipt,
            end_conversation=end_conversation,
        )
        professionals = [a.address for a in (*recipients, *copies) if not a.is_patient]
        patients = [a.local_part for a in (*recipients, *copies) if a.is_patient]
        with (
            _connected(
                settings,
                sender=sandbox_sender,
                mailboxes=professionals,
                patients=patients,
                smtp=smtp,
                imap=imap,
                sandbox_dir=sandbox_dir,
                token_file=token_file,
            ) as (effective, tokens),
            MssanteClient(effective, token_provider=tokens) as client,
        ):
            result = client.send(message)
    except DmpConnectorError as exc:
        state.fail(exc)
    accepted = [redact_address(a) for a in result.accepted]
    refused = [
        {"address": redact_address(r.address), "code": r.reply.code, "text": r.reply.text} for r in result.refused
    ]
    lines = [f"sent {printable(result.message_id)} to {len(accepted)} recipient(s): {printable(', '.join(accepted))}"]
    lines += [f"  refused {printable(str(r['address']))}: {r['code']} {printable(str(r['text']))}" for r in refused]
    state.emit(
        "\n".join(lines),
        {"message_id": result.message_id, "accepted": accepted, "refused": refused, "attempts": result.attempts},
    )


def printable(text: str) -> str:
    """``text`` safe on a terminal: control, format (bidi, zero-width) and line-separator characters
    written as ``\\xNN``/``\\uNNNN``, so that a subject cannot clear the screen or forge a line."""
    out = []
    for char in text:
        if char == "\\" or unicodedata.category(char) in _UNPRINTABLE:
            code = ord(char)
            out.append("\\\\" if char == "\\" else f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _shown_sender(summary: MailSummary) -> str | None:
    """The sender's address as both outputs show it: the address only, a patient's masked."""
    if summary.sender is None:
        return None
    address = parseaddr(summary.sender)[1]
    return redact_address(address) if address else None


def _summary_json(summary: MailSummary) -> dict[str, Any]:
    # The same fields, masked the same way, as the text output: a patient's address never in clear.
    error = summary.error
    return {
        "uid": summary.uid,
        "folder": summary.folder,
        "seen": summary.seen,
        "size": summary.size,
        "date": summary.internal_date.isoformat() if summary.internal_date else None,
        "message_id": summary.message_id,
        "from": _shown_sender(summary),
        "subject": redact_text(summary.subject) if summary.subject is not None else None,
        "content_type": summary.content_type,
        "error": None if error is None else {"type": type(error).__name__, "reason": error.reason},
    }


@mss.command("inbox")
@click.option("--all", "show_all", is_flag=True, help="List read messages too.")
@click.option("--folder", default="INBOX", show_default=True, help="Folder to list.")
@click.option(
    "--mailbox",
    default=None,
    metavar="ADDRESS",
    help="Read this mailbox instead of the configured one (mssante.mailbox).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (same as the global --json).")
@_sandbox_options
@pass_state
def inbox(
    state: CliState,
    show_all: bool,
    folder: str,
    mailbox: str | None,
    as_json: bool,
    smtp: str | None,
    imap: str | None,
    token_file: Path | None,
    sandbox_dir: Path | None,
) -> None:
    """List the messages of the mailbox (unread ones unless --all), oldest first.

    Receipts show up as ``multipart/report`` messages; the subject is shown without the
    ``XDM/1.0/DDM+`` prefix.
    """
    if as_json:
        state.as_json = True
    try:
        settings = state.settings()
        owner = mailbox or settings.mssante.mailbox or SANDBOX_SENDER
        with (
            _connected(
                settings,
                sender=owner,
                mailboxes=(),
                patients=(),
                smtp=smtp,
                imap=imap,
                sandbox_dir=sandbox_dir,
                token_file=token_file,
                mailbox=mailbox,
            ) as (effective, tokens),
            MssanteClient(effective, token_provider=tokens) as client,
        ):
            summaries = client.inbox(unseen_only=not show_all, folder=folder)
    except DmpConnectorError as exc:
        state.fail(exc)
    lines = [f"{len(summaries)} message(s) in {folder}" + ("" if show_all else " (unread)")]
    for s in summaries:
        subject = s.subject or ""
        if subject.startswith("XDM/1.0/DDM+"):
            subject = subject[len("XDM/1.0/DDM+") :]
        when = s.internal_date.strftime("%Y-%m-%d %H:%M") if s.internal_date else "?"
        flag = " " if s.seen else "*"
        sender = _shown_sender(s) or "?"
        problem = f"  [unreadable: {s.error.reason}]" if s.error is not None else ""
        lines.append(f"{flag} {s.uid:>5}  {when}  {printable(sender)}  {printable(redact_text(subject))}{problem}")
    state.emit("\n".join(lines), {"folder": folder, "messages": [_summary_json(s) for s in summaries]})
