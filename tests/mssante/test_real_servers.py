"""Against a real Postfix and Dovecot (Debian's packages) on loopback, as an operator runs them: Postfix
submission with STARTTLS required and client certificates (``permit_tls_clientcerts``) delivering over
LMTP to Dovecot (IMAP, STARTTLS required, certificate login by SASL EXTERNAL). Skipped when they are
not installed or the run is not root (``.ci/run`` installs them when root).

The configurations are written to a temporary directory for each test: they double as the working
setup the docs give for a vendor's test bench (docs/mssante.md, "Testing against Postfix and Dovecot").
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmp_connector.audit import MemorySink
from dmp_connector.config import Environment, MailServer, MssanteAuthMode, MssanteSettings, Settings, TlsCredentials
from dmp_connector.errors import RequestTimeout, ServiceError, TlsError
from dmp_connector.mssante import MailAuthenticationError, MailSummary, UnreadableMessageError
from dmp_connector.sandbox import TestPki
from dmp_connector.transport import deadline
from tests.conftest import PkiFiles, make_settings

from .conftest import APP_MAILBOX, MODES
from .conftest import ClientDriver as Driver
from .conftest import open_client as open_driver
from .test_hostile_inbox import CRLF_FROM, GOOD, many_parts, nested

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)
pytestmark = pytest.mark.skipif(
    DOVECOT is None
    or shutil.which("doveadm") is None
    or not Path("/usr/lib/dovecot/lmtp").exists()
    or not Path("/usr/lib/dovecot/imap").exists()
    or os.geteuid() != 0,
    reason="Dovecot is not installed, or not root (it drops privileges to its own users): .ci/run installs it as root",
)
DOVECOT_BASE = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
ssl = required
ssl_cert = <{dir}/server.crt
ssl_key = <{dir}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
mail_location = maildir:{dir}/mail/%u
first_valid_uid = 1
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={dir}/mail/%u allow_all_users=yes
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service anvil {{
  chroot =
}}
"""
"""What both Dovecot setups share: IMAP with STARTTLS required, LMTP for Postfix, on loopback."""

CONFIG = (
    DOVECOT_BASE
    + """\
ssl_ca = <{dir}/ca.pem
ssl_verify_client_cert = yes
ssl_require_crl = no
auth_ssl_require_client_cert = yes
auth_ssl_username_from_cert = yes
ssl_cert_username_field = commonName
auth_mechanisms = external
passdb {{
  driver = static
  args = nopassword=y
}}
"""
)
"""Login by client certificate (SASL EXTERNAL), the certificate's CN being the mailbox."""

OAUTH_CONFIG = (
    DOVECOT_BASE
    + """\
auth_mechanisms = xoauth2
auth_failure_delay = {delay}
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {dir}/oauth2.conf.ext
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
"""
)
"""Login by XOAUTH2, the token checked by the operator's introspection endpoint (``OAUTH2_EXT``);
Postfix authenticates submissions through the auth listener (``smtpd_sasl_type = dovecot``)."""

OAUTH2_EXT = """\
introspection_mode = post
introspection_url = http://127.0.0.1:{port}/introspect
username_attribute = username
active_attribute = active
active_value = true
"""

AUTH_FAILURE_DELAY = 2
"""Dovecot's auth_failure_delay in the token tests, in seconds (its default): a refused login waits that long."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Dovecot:
    directory: Path
    imap: int
    lmtp: int
    auth: int = 0
    """The auth listener Postfix asks (token setup only)."""

    def deliver(self, mailbox: str, *messages: bytes) -> None:
        """Over LMTP, as Postfix hands mail to Dovecot."""
        with smtplib.LMTP("127.0.0.1", self.lmtp) as lmtp:
            for raw in messages:
                lmtp.sendmail("relay@hopital.mssante.fr", [mailbox], raw)

    def settings(self, pki_files: PkiFiles, cert: Path, key: Path) -> Settings:
        env = Environment.sandbox().model_copy(update={"mssante_imap": MailServer(host="127.0.0.1", port=self.imap)})
        return make_settings(
            pki_files,
            environment=env,
            tls=TlsCredentials(cert_file=cert, key_file=key, ca_bundle=pki_files.ca_bundle),
            mssante=MssanteSettings(
                mailbox=APP_MAILBOX, auth_mode=MssanteAuthMode.CERTIFICATE, connect_timeout=10, timeout=30
            ),
        )


@contextmanager
def running_dovecot(
    pki_files: PkiFiles, template: str, files: dict[str, str] | None = None, **values: object
) -> Iterator[Dovecot]:
    """Dovecot with ``template`` (``CONFIG`` or ``OAUTH_CONFIG``) and ``files`` in a temporary directory,
    until the block ends."""
    assert DOVECOT is not None
    # Not under pytest's 0700 tree: Dovecot's unprivileged processes and the mail user must reach it.
    directory = Path(tempfile.mkdtemp(prefix="dmpc-dovecot-"))
    config = directory / "dovecot.conf"
    try:
        directory.chmod(0o755)
        (directory / "mail").mkdir()
        os.chown(directory / "mail", 65534, 65534)
        (directory / "state").mkdir()
        pki_files.server.write_pem(directory, "server")
        (directory / "ca.pem").write_bytes(pki_files.pki.ca_pem)
        for name, content in (files or {}).items():
            (directory / name).write_text(content, encoding="utf-8")
        server = Dovecot(directory, free_port(), free_port(), free_port())
        text = template.format(dir=directory, imap=server.imap, lmtp=server.lmtp, auth=server.auth, **values)
        config.write_text(text, encoding="utf-8")
        subprocess.run([DOVECOT, "-c", str(config)], check=True, timeout=30)
        wait_for(directory / "dovecot.log", server.imap, server.lmtp)
        yield server
    finally:
        subprocess.run(["doveadm", "-c", str(config), "stop"], check=False, timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def wait_for(log: Path, *ports: int) -> None:
    """Wait (15 s at most) until a server listens on every port on loopback; fail with its log."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{log.name} says: " + (log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"))


@pytest.fixture
def dovecot(pki_files: PkiFiles) -> Iterator[Dovecot]:
    with running_dovecot(pki_files, CONFIG) as server:
        yield server


@pytest.fixture
def mailbox_cert(pki_files: PkiFiles, tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate whose CN is the mailbox: Dovecot's login from the certificate."""
    return pki_files.pki.issue_client(APP_MAILBOX).write_pem(tmp_path, "mailbox")


@MODES
def test_hostile_mail_in_a_real_dovecot_does_not_stop_the_inbox(
    mode: str,
    drivers: list[Driver],
    dovecot: Dovecot,
    pki_files: PkiFiles,
    mailbox_cert: tuple[Path, Path],
) -> None:
    dovecot.deliver(APP_MAILBOX, CRLF_FROM, nested(1000), many_parts(100_000), GOOD)
    sink = MemorySink()
    reader = open_driver(drivers, mode, dovecot.settings(pki_files, *mailbox_cert), audit=[sink])
    crlf, deep, wide, good = reader.inbox()
    assert crlf.uid_validity is not None and crlf.uid_validity == good.uid_validity
    assert crlf.error is not None and crlf.error.reason == "header" and good.error is None
    assert wide.size > 3_000_000  # the whole 100,000 parts came through Dovecot
    assert reader.fetch(crlf.uid).sender == "evil@hopital.mssante.fr"
    assert reader.fetch(good.uid).message_id == "<good@hopital.mssante.fr>"
    started = time.monotonic()
    for summary, reason in ((deep, "depth"), (wide, "parts")):
        with pytest.raises(UnreadableMessageError) as caught:
            reader.fetch(summary.uid)
        assert (caught.value.reason, caught.value.uid) == (reason, summary.uid)
    assert time.monotonic() - started < 20  # was a RecursionError, and ~33 s of parsing
    fetched = [e for e in sink.events if e.operation == "fetch"]
    assert [s.error.reason if s.error else None for s in reader.inbox()] == ["header", "depth", "parts", None]
    with pytest.raises(UnreadableMessageError, match="not downloaded again"):
        reader.fetch(wide.uid)
    assert [e for e in sink.events if e.operation == "fetch"] == fetched


@MODES
def test_a_real_dovecot_takes_the_certificate_by_sasl_external(
    mode: str,
    drivers: list[Driver],
    dovecot: Dovecot,
    pki_files: PkiFiles,
    mailbox_cert: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    assert open_driver(drivers, mode, dovecot.settings(pki_files, *mailbox_cert)).inbox() == []
    # the session's certificate names an organisation, not a mailbox: Dovecot logs it in as that CN,
    # which is not the mailbox named in EXTERNAL (a master-user setup would be needed): refused
    named = open_driver(drivers, mode, dovecot.settings(pki_files, pki_files.client_cert, pki_files.client_key))
    with pytest.raises(MailAuthenticationError):
        named.inbox()
    # a certificate from another CA with the mailbox's CN: Dovecot finishes the handshake and refuses
    # the login ("didn't present valid SSL certificate"), unlike the sandbox's TLS-level refusal
    foreign = TestPki.create(name="foreign CA").issue_client(APP_MAILBOX).write_pem(tmp_path, "foreign")
    with pytest.raises(MailAuthenticationError) as info:
        open_driver(drivers, mode, dovecot.settings(pki_files, *foreign)).inbox()
    assert info.value.code == "ALERT" or "certificate" in (info.value.text or "")
    # and a server the client does not trust is refused before any login is sent
    other_ca = TestPki.create(name="other root")
    ca_file = tmp_path / "other-ca.pem"
    ca_file.write_bytes(other_ca.ca_pem)
    distrustful = dovecot.settings(pki_files, *mailbox_cert).model_copy(
        update={"tls": TlsCredentials(cert_file=mailbox_cert[0], key_file=mailbox_cert[1], ca_bundle=ca_file)}
    )
    with pytest.raises(TlsError, match="not trusted"):
        open_driver(drivers, mode, distrustful).inbox()


def test_mss_inbox_on_a_real_dovecot_escapes_and_masks(
    dovecot: Dovecot,
    pki_files: PkiFiles,
    mailbox_cert: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from .conftest import certificate_toml_for
    from .test_cli_mss import CRLF_FROM, HOSTILE_SUBJECT, assert_inbox_escaped_and_masked, config

    monkeypatch.delenv("DMP_CONNECTOR_CONFIG", raising=False)
    dovecot.deliver(APP_MAILBOX, HOSTILE_SUBJECT, CRLF_FROM)
    cfg = config(tmp_path, certificate_toml_for(*mailbox_cert, pki_files.ca_bundle))
    assert_inbox_escaped_and_masked(CliRunner(), cfg, ["--smtp", "127.0.0.1:9", "--imap", f"127.0.0.1:{dovecot.imap}"])


@MODES
def test_an_xdm_naming_another_patient_from_a_real_dovecot_is_a_typed_error(
    mode: str,
    drivers: list[Driver],
    dovecot: Dovecot,
    pki_files: PkiFiles,
    mailbox_cert: tuple[Path, Path],
) -> None:
    from dmp_connector.cda import parse as parse_cda
    from dmp_connector.errors import PatientMismatchError
    from dmp_connector.mssante.xdm import build_package

    from .test_xdm import N1, OTHER_PATIENT, SENDER, SETTINGS, _mail_with, files_of, rezip

    own, other = parse_cda(N1).patient.identity, parse_cda(OTHER_PATIENT).patient.identity
    assert own.ins is not None and other.ins is not None
    archive = build_package([N1], SETTINGS, sender=SENDER).archive
    # METADATA.XML names the other patient; the CDA inside is still the first one's
    altered = [
        (name, data.replace(own.ins.matricule.encode(), other.ins.matricule.encode()).replace(
            own.ins.oid.value.encode(), other.ins.oid.value.encode()) if name.endswith("METADATA.XML") else data)
        for name, data in files_of(archive)
    ]  # fmt: skip
    dovecot.deliver(APP_MAILBOX, _mail_with(archive), _mail_with(rezip(altered)))
    reader = open_driver(drivers, mode, dovecot.settings(pki_files, *mailbox_cert))
    consistent, mismatched = (reader.fetch(s.uid) for s in reader.inbox())
    assert consistent.xdm is not None and consistent.xdm_error is None
    assert mismatched.xdm is None and mismatched.documents == ()  # nothing to file under either id
    assert isinstance(mismatched.xdm_error, PatientMismatchError)
    assert other.ins.matricule not in (mismatched.xdm_error_text or "")


# --- Postfix in front ---------------------------------------------------------------------------

POSTFIX = shutil.which("postfix") or ("/usr/sbin/postfix" if os.access("/usr/sbin/postfix", os.X_OK) else None)
needs_postfix = pytest.mark.skipif(
    POSTFIX is None or not Path("/etc/postfix/master.cf").exists(), reason="Postfix is not installed"
)

POSTFIX_BASE = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
maillog_file = {dir}/postfix.log
maillog_file_prefixes = {dir}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test.mssante.fr
mydestination =
mynetworks =
local_transport = error:no local delivery
alias_maps =
alias_database =
smtp_dns_support_level = disabled
virtual_mailbox_domains = cabinet-test.mssante.fr medecin.mssante.fr
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
message_size_limit = {size_limit}
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_cert_file = {certs}/server.crt
smtpd_tls_key_file = {certs}/server.key
smtpd_tls_CAfile = {certs}/ca.pem
"""

MAIN_CF = (
    POSTFIX_BASE
    + """\
smtpd_tls_ask_ccert = yes
smtpd_tls_fingerprint_digest = sha256
relay_clientcerts = texthash:{dir}/relay_clientcerts
smtpd_relay_restrictions = permit_tls_clientcerts, reject
smtpd_recipient_restrictions = permit_tls_clientcerts, reject
"""
)
"""Submission authenticated by the client certificate (its fingerprint in ``relay_clientcerts``)."""

SASL_MAIN_CF = (
    POSTFIX_BASE
    + """\
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
"""
)
"""Submission authenticated by SASL through Dovecot's auth listener: XOAUTH2 with the PSC-style token."""


SIZE_LIMIT = 300_000
"""Postfix's message_size_limit in these tests (announced as SIZE)."""


def master_cf(submission_port: int) -> str:
    """Debian's master.cf with no chroot and no port 25, plus a submission listener on loopback."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                continue
            fields[4] = "n"
            line = " ".join(fields)
        lines.append(line)
    lines.append(f"127.0.0.1:{submission_port} inet n - n - - smtpd")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Postfix:
    directory: Path
    submission: int


@contextmanager
def running_postfix(dovecot: Dovecot, template: str, relay_clientcerts: str = "") -> Iterator[Postfix]:
    """Postfix with ``template`` (``MAIN_CF`` or ``SASL_MAIN_CF``) delivering to ``dovecot``, until the block ends."""
    assert POSTFIX is not None
    directory = Path(tempfile.mkdtemp(prefix="dmpc-postfix-"))
    server = Postfix(directory, free_port())
    try:
        directory.chmod(0o755)
        (directory / "queue").mkdir(mode=0o755)
        (directory / "data").mkdir()
        shutil.chown(directory / "data", "postfix", "postfix")
        (directory / "relay_clientcerts").write_text(relay_clientcerts, encoding="utf-8")
        main_cf = template.format(
            dir=directory, certs=dovecot.directory, lmtp=dovecot.lmtp, auth=dovecot.auth, size_limit=SIZE_LIMIT
        )
        (directory / "main.cf").write_text(main_cf, encoding="utf-8")
        (directory / "master.cf").write_text(master_cf(server.submission), encoding="utf-8")
        subprocess.run([POSTFIX, "-c", str(directory), "start"], capture_output=True, timeout=60, check=False)
        wait_for(directory / "postfix.log", server.submission)
        yield server
    finally:
        subprocess.run([POSTFIX, "-c", str(directory), "abort"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postfix(dovecot: Dovecot, mailbox_cert: tuple[Path, Path]) -> Iterator[Postfix]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(mailbox_cert[0].read_bytes())
    fingerprint = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    with running_postfix(dovecot, MAIN_CF, f"{fingerprint} {APP_MAILBOX}\n") as server:
        yield server


def sending_settings(dovecot: Dovecot, postfix: Postfix, pki_files: PkiFiles, cert: Path, key: Path) -> Settings:
    settings = dovecot.settings(pki_files, cert, key)
    env = settings.environment.model_copy(
        update={"mssante_smtp": MailServer(host="127.0.0.1", port=postfix.submission)}
    )
    return settings.model_copy(update={"environment": env})


EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"


@needs_postfix
@MODES
def test_what_goes_through_postfix_comes_back_from_dovecot_as_built(
    mode: str,
    drivers: list[Driver],
    dovecot: Dovecot,
    postfix: Postfix,
    pki_files: PkiFiles,
    mailbox_cert: tuple[Path, Path],
) -> None:
    from dmp_connector.cda import parse as parse_cda
    from dmp_connector.mssante import CdaDocument, MssanteAddress, MssanteClient, MssanteMessage
    from dmp_connector.mssante.receipts import DeliveryAction, DeliveryReport

    n1 = (EXAMPLES / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml").read_bytes()
    settings = sending_settings(dovecot, postfix, pki_files, *mailbox_cert)
    with MssanteClient(settings) as builder:
        built = builder.build(
            MssanteMessage(
                to=(MssanteAddress.parse(APP_MAILBOX),),
                patient=parse_cda(n1).patient.identity,
                documents=(CdaDocument(content=n1),),
                delivery_receipt=True,
            )
        )
    client = open_driver(drivers, mode, settings)
    result = client.send(built)
    assert result.message_id == built.message_id and result.dsn_requested
    assert result.reply.text.startswith("2.0.0 Ok: queued")
    listed: list[MailSummary] = []
    deadline = time.monotonic() + 20
    while len(listed) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        listed = client.inbox()
    assert len(listed) == 2, "the message and Postfix's DSN did not both arrive"
    mails = [client.fetch(s.uid) for s in listed]
    [mail] = [m for m in mails if m.receipt is None]
    [dsn] = [m.receipt for m in mails if m.receipt is not None]
    assert mail.message_id == built.message_id
    assert [d.content for d in mail.documents] == [n1]  # byte for byte through Postfix, LMTP and Dovecot
    assert mail.xdm is not None and built.package is not None and mail.xdm.archive == built.package.archive
    assert isinstance(dsn, DeliveryReport) and dsn.original_message_id == built.message_id
    [report] = dsn.recipients
    # Postfix reports a delivery over LMTP as "relayed" (the final hop is Dovecot's)
    assert report.final_recipient == APP_MAILBOX and report.action in (DeliveryAction.RELAYED, DeliveryAction.DELIVERED)
    assert report.status == "2.0.0"


@needs_postfix
@MODES
def test_postfix_refuses_an_unbound_certificate_at_rcpt_as_an_authentication_error(
    mode: str,
    drivers: list[Driver],
    dovecot: Dovecot,
    postfix: Postfix,
    pki_files: PkiFiles,
) -> None:
    from dmp_connector.mssante import MssanteAddress, MssanteMessage

    # the session's certificate is valid (same CA) but not in relay_clientcerts
    settings = sending_settings(dovecot, postfix, pki_files, pki_files.client_cert, pki_files.client_key)
    client = open_driver(drivers, mode, settings)
    with pytest.raises(MailAuthenticationError) as info:
        client.send(MssanteMessage(to=(MssanteAddress.parse(APP_MAILBOX),), subject="x", text="y"))
    assert info.value.code == "554" and info.value.attempts == 1
    assert info.value.hint is not None and "certificate" in info.value.hint


@needs_postfix
@MODES
def test_postfix_counts_its_trace_header_against_size_and_the_sdk_keeps_room_for_it(
    mode: str,
    drivers: list[Driver],
    dovecot: Dovecot,
    postfix: Postfix,
    pki_files: PkiFiles,
    mailbox_cert: tuple[Path, Path],
) -> None:
    from dmp_connector.errors import ServiceError, ValidationError
    from dmp_connector.mssante import Attachment, MssanteAddress, MssanteClient, MssanteMessage

    settings = sending_settings(dovecot, postfix, pki_files, *mailbox_cert)

    def message(extra: int) -> MssanteMessage:
        blob = Attachment(filename="a.bin", content=bytes(extra))
        return MssanteMessage(to=(MssanteAddress.parse(APP_MAILBOX),), subject="x", text="y", attachments=(blob,))

    # a message 50 to 300 bytes under SIZE: Postfix's own Received header takes it over
    extra = 200_000
    with MssanteClient(settings) as builder:
        for _ in range(4):
            size = builder.build(message(extra)).size
            extra += (SIZE_LIMIT - 150 - size) * 3 // 4
        near = message(extra)
        assert SIZE_LIMIT - 300 < builder.build(near).size <= SIZE_LIMIT - 50
    without_room = settings.model_copy(
        update={"mssante": settings.mssante.model_copy(update={"size_headroom_bytes": 0})}
    )
    with pytest.raises(ServiceError) as refused:
        open_driver(drivers, mode, without_room).send(near)
    assert refused.value.code == "552"  # after DATA, as the issue saw
    with pytest.raises(ValidationError, match="trace headers included"):
        open_driver(drivers, mode, settings).send(near)  # refused before anything leaves


# --- XOAUTH2 through Dovecot's oauth2 passdb and a local token check ----------------------------

TOKEN_USER = "dr.martin@medecin.mssante.fr"


class TokenCheck:
    """The operator's token introspection (RFC 7662), on loopback: ``good`` is active, ``down`` fails."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                token = parse_qs(body).get("token", [""])[0]
                if token == "down":
                    self.send_response(500)
                    self.end_headers()
                    return
                out = json.dumps({"active": token == "good", "username": TOKEN_USER}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Tokens:
    """A token provider that records its calls: the first token, then a refreshed one."""

    def __init__(self, first: str, refreshed: str) -> None:
        self.first, self.refreshed = first, refreshed
        self.calls: list[bool] = []

    def get_token(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return self.refreshed if force_refresh else self.first


@pytest.fixture
def oauth_dovecot(pki_files: PkiFiles) -> Iterator[Dovecot]:
    check = TokenCheck()
    try:
        ext = {"oauth2.conf.ext": OAUTH2_EXT.format(port=check.port)}
        with running_dovecot(pki_files, OAUTH_CONFIG, ext, delay=f"{AUTH_FAILURE_DELAY} secs") as server:
            yield server
    finally:
        check.close()


@pytest.fixture
def sasl_postfix(oauth_dovecot: Dovecot) -> Iterator[Postfix]:
    with running_postfix(oauth_dovecot, SASL_MAIN_CF) as server:
        yield server


def token_settings(
    dovecot: Dovecot, pki_files: PkiFiles, postfix: Postfix | None = None, **mssante: object
) -> Settings:
    from dmp_connector.retries import RetryPolicy

    env = Environment.sandbox().model_copy(update={"mssante_imap": MailServer(host="127.0.0.1", port=dovecot.imap)})
    if postfix is not None:
        env = env.model_copy(update={"mssante_smtp": MailServer(host="127.0.0.1", port=postfix.submission)})
    return make_settings(
        pki_files,
        environment=env,
        tls=TlsCredentials(ca_bundle=pki_files.ca_bundle),
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05, jitter=0.0),
        mssante=MssanteSettings(mailbox=TOKEN_USER, auth_mode=MssanteAuthMode.XOAUTH2, **mssante),
    )


@MODES
def test_xoauth2_against_dovecot_refreshes_a_refused_token_within_the_deadline(
    mode: str,
    drivers: list[Driver],
    oauth_dovecot: Dovecot,
    pki_files: PkiFiles,
) -> None:
    # a login's answer is not bound by connect_timeout: Dovecot holds a refusal longer
    settings = token_settings(oauth_dovecot, pki_files, connect_timeout=1)
    # a refused token is refreshed once, and the fresh one logs in
    tokens = Tokens("expired", "good")
    started = time.monotonic()
    with deadline(20):
        assert open_driver(drivers, mode, settings, token_provider=tokens).inbox() == []
    assert tokens.calls == [False, True]
    # Dovecot held the refusal auth_failure_delay (and the next login its penalty): over connect_timeout
    assert time.monotonic() - started >= AUTH_FAILURE_DELAY
    # refused again after the refresh: the authentication error
    refused = Tokens("expired", "revoked")
    with pytest.raises(MailAuthenticationError) as info, deadline(40):
        open_driver(drivers, mode, settings, token_provider=refused).inbox()
    assert info.value.code == "AUTHENTICATIONFAILED" and refused.calls == [False, True]


@MODES
def test_dovecot_with_its_token_check_down_is_transient_not_a_refused_token(
    mode: str,
    drivers: list[Driver],
    oauth_dovecot: Dovecot,
    pki_files: PkiFiles,
) -> None:
    # the token check is down: Dovecot answers NO [UNAVAILABLE]; retried, never a token refresh
    down = Tokens("down", "down")
    with pytest.raises(ServiceError) as unavailable:
        open_driver(drivers, mode, token_settings(oauth_dovecot, pki_files), token_provider=down).inbox()
    assert not isinstance(unavailable.value, MailAuthenticationError)
    assert (unavailable.value.code, unavailable.value.transient, unavailable.value.attempts) == ("UNAVAILABLE", True, 2)
    assert True not in down.calls


@MODES
def test_dovecots_auth_failure_delay_is_waited_for_within_the_deadline_only(
    mode: str,
    drivers: list[Driver],
    oauth_dovecot: Dovecot,
    pki_files: PkiFiles,
) -> None:
    # a call shorter than Dovecot's delay: the held refusal is cut at the deadline, and the error says why
    tokens = Tokens("expired", "good")
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as held, deadline(AUTH_FAILURE_DELAY / 2):
        open_driver(drivers, mode, token_settings(oauth_dovecot, pki_files), token_provider=tokens).inbox()
    assert time.monotonic() - started < AUTH_FAILURE_DELAY
    assert held.value.hint is not None and "auth_failure_delay" in held.value.hint and tokens.calls == [False]
    # the refusal came in time, but what is left of the call is under the delay expected of the next
    # login (mssante.auth_failure_delay): no refresh is tried, the timeout says why at once
    tokens = Tokens("expired", "good")
    expecting = token_settings(oauth_dovecot, pki_files, auth_failure_delay=30)
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="auth_failure_delay") as short, deadline(10):
        open_driver(drivers, mode, expecting, token_provider=tokens).inbox()
    assert time.monotonic() - started < 10 and tokens.calls == [False]
    assert isinstance(short.value.__cause__, MailAuthenticationError) and not short.value.retryable


@needs_postfix
@MODES
def test_postfix_takes_xoauth2_through_dovecots_auth_socket(
    mode: str,
    drivers: list[Driver],
    oauth_dovecot: Dovecot,
    sasl_postfix: Postfix,
    pki_files: PkiFiles,
) -> None:
    from dmp_connector.mssante import MssanteAddress, MssanteMessage

    settings = token_settings(oauth_dovecot, pki_files, sasl_postfix)

    def note(subject: str) -> MssanteMessage:
        return MssanteMessage(to=(MssanteAddress.parse(TOKEN_USER),), subject=subject, text="y")

    # an accepted token: Postfix asks Dovecot, which asks the token check; the mail reaches the mailbox
    good = Tokens("good", "good")
    client = open_driver(drivers, mode, settings, token_provider=good)
    assert client.send(note("accepted")).reply.text.startswith("2.0.0 Ok: queued")
    assert good.calls == [False]
    # a refused token: refreshed once, and the fresh one sends
    tokens = Tokens("expired", "good")
    with deadline(30):
        assert open_driver(drivers, mode, settings, token_provider=tokens).send(note("refreshed")).attempts == 2
    assert tokens.calls == [False, True]
    # refused after the refresh: Postfix's 535, typed
    refused = Tokens("expired", "revoked")
    with pytest.raises(MailAuthenticationError) as info, deadline(60):
        open_driver(drivers, mode, settings, token_provider=refused).send(note("refused"))
    assert info.value.code == "535" and refused.calls == [False, True] and info.value.attempts == 2
    listed: list[MailSummary] = []
    until = time.monotonic() + 20
    while len(listed) < 2 and time.monotonic() < until:
        time.sleep(0.2)
        listed = client.inbox()
    if mode == "sync":  # what Postfix answers, once (one SMTP core; the penalty makes it ~16 s)
        # the token check is down: Dovecot's own IMAP says NO [UNAVAILABLE], but through Postfix's SASL
        # it is "authentication failed", 535, as for a refused token: the SDK cannot tell, refreshes
        # once and reports the refusal (an operator's outage looks like a bad token; docs/mssante.md)
        down = Tokens("down", "down")
        with pytest.raises(MailAuthenticationError) as unavailable, deadline(60):
            open_driver(drivers, mode, settings, token_provider=down).send(note("down"))
        assert unavailable.value.code == "535" and down.calls == [False, True]
    log = sasl_postfix.directory / "postfix.log"
    assert sorted(s.subject or "" for s in listed) == ["accepted", "refreshed"], log.read_text()[-3000:]
