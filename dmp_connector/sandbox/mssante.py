"""The MSSanté operator of the sandbox: real SMTP submission and IMAP servers on loopback.

:class:`SandboxMailOperator` plays the part of an MSSanté operator and of Mon espace
santé's patient domain, so that send-then-receive is tested over real sockets and TLS:

* **SMTP submission** (aiosmtpd) with STARTTLS required before anything else, then
  either a client certificate from the test PKI bound to an applicative mailbox, or
  ``AUTH XOAUTH2`` with a token from :meth:`SandboxMailOperator.issue_token` (the
  sandbox's stand-in for a Pro Santé Connect access token, or a real one from the PSC simulator, introspected
  through ``token_check``); ``SIZE`` (25 MB by default)
  and ``DSN`` (RFC 3461 ``NOTIFY``/``ORCPT``/``RET``/``ENVID``) announced and honoured;
* **IMAP** (pymap's in-memory backend) with STARTTLS and ``AUTHENTICATE XOAUTH2`` or
  ``EXTERNAL`` (the client certificate), reading the same mailboxes;
* **delivery** to the professional mailboxes it knows (an unknown one is refused at
  ``RCPT``, an address outside the trust space too), and to
  ``<matricule>@patient.mssante.fr`` for seeded patients. Mail to a patient with no
  open mailbox — unknown, closed, or opposed to Mon espace santé — is accepted, then
  **bounced** as the real service does: a "Message non distribué" delivery status
  notification lands in the sender's INBOX (reference notes §3.2, ENS §6).

Both servers run in one background thread with its own event loop. Mailboxes live in
memory; with ``data_dir`` they are loaded at start and written back at stop.

Which reply codes and bounce causes the real services use is only partly documented;
the choices here are marked [I] in ``docs/mssante.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote, unquote

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from proxyprotocol.sock import SocketInfo
from pymap.backend.dict import Config as DictConfig
from pymap.backend.dict import Session as DictSession
from pymap.backend.dict.filter import FilterSet
from pymap.backend.dict.mailbox import MailboxSet
from pymap.context import socket_info
from pymap.exceptions import AuthorizationFailure, InvalidAuth
from pymap.imap import IMAPServer
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode, ResponseNo
from pymap.parsing.specials import FetchRequirement
from pymap.parsing.specials.flag import Flag
from pymap.token import AllTokens
from pymap.user import UserMetadata
from pysasl import SASLAuth
from pysasl.creds.external import ExternalCredentials, ExternalVerificationRequired
from pysasl.creds.server import ServerCredentials
from pysasl.mechanism.external import ExternalMechanism
from pysasl.mechanism.oauth import OAuth2Mechanism

from dmp_connector.config import Environment, MailServer
from dmp_connector.errors import ConfigurationError

from ._http import server_ssl_context
from .pki import IssuedCertificate, TestPki

__all__ = [
    "PATIENT_DOMAIN",
    "PatientMailboxState",
    "ReceivedMail",
    "SandboxMailOperator",
    "SandboxMailbox",
    "SandboxTokenProvider",
    "SmtpFault",
    "StoredMail",
]

T = TypeVar("T")

PATIENT_DOMAIN = "patient.mssante.fr"
"""The patients' domain (Mon espace santé)."""

_TRUST_SPACE = re.compile(r"(^|\.)mssante\.fr$|^(interop-)?mssante\.apicrypt\.org$")
_XOAUTH2 = re.compile(rb"^user=([^\x01]*)\x01auth=[Bb]earer ([^\x01]*)\x01\x01$")


class PatientMailboxState(StrEnum):
    """State of a seeded patient's Mon espace santé mailbox; a patient not seeded is unknown."""

    ACTIVE = "active"
    """The mailbox exists: mail is delivered."""
    CLOSED = "closed"
    """The patient closed Mon espace santé: mail bounces (5.2.1 [I])."""
    OPPOSED = "opposed"
    """The patient opposed its creation: mail bounces (5.7.1 [I])."""


_PATIENT_BOUNCES: dict[PatientMailboxState | None, tuple[str, str]] = {
    None: ("5.1.1", "550 5.1.1 Patient inconnu de Mon espace sante (unknown patient)"),
    PatientMailboxState.CLOSED: ("5.2.1", "550 5.2.1 Messagerie du patient fermee (mailbox closed)"),
    PatientMailboxState.OPPOSED: ("5.7.1", "550 5.7.1 Opposition du patient a Mon espace sante (patient opposed)"),
}
"""Status and diagnostic of the bounce for a patient without an open mailbox [I: the codes are ours]."""


@dataclass(frozen=True)
class SandboxMailbox:
    """A professional mailbox of the operator.

    ``certificate_cn`` makes it an applicative mailbox: a client certificate from the
    test PKI with that common name authenticates it (mutual TLS, SASL EXTERNAL on IMAP).
    Any mailbox can also be reached with a token from :meth:`SandboxMailOperator.issue_token`.
    """

    address: str
    certificate_cn: str | None = None


@dataclass(frozen=True)
class SmtpFault:
    """A scripted answer for the next SMTP command at ``stage``, to test retries.

    ``reply`` replaces the server's answer (``451 4.3.0 …`` by default, a temporary
    failure). ``drop`` closes the connection instead of answering; at ``end_of_data``
    the message is *kept* first, as when a server queued it and the answer was lost.
    """

    stage: Literal["mail", "rcpt", "data", "end_of_data"]
    reply: str = "451 4.3.0 Temporary failure, try again later"
    drop: bool = False


@dataclass(frozen=True)
class ReceivedMail:
    """A submission the operator accepted, as it came in (before trace headers)."""

    mail_from: str
    recipients: tuple[str, ...]
    content: bytes
    authenticated_as: str
    auth_method: Literal["certificate", "xoauth2"]
    client_subject: str | None
    mail_parameters: tuple[str, ...]
    """``MAIL FROM`` parameters as sent (``SIZE=…``, ``RET=HDRS``, ``ENVID=…``)."""
    rcpt_parameters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """``RCPT TO`` parameters per recipient as sent (``NOTIFY=…``, ``ORCPT=…``)."""


@dataclass(frozen=True)
class StoredMail:
    """A message in a sandbox mailbox folder."""

    uid: int
    flags: frozenset[str]
    internal_date: datetime
    content: bytes


@dataclass(frozen=True)
class _Auth:
    mailboxes: frozenset[str]
    method: Literal["certificate", "xoauth2"]
    subject: str | None


@dataclass
class _RecipientDsn:
    notify: frozenset[str] | None
    orcpt: str | None
    parameters: tuple[str, ...]


class _DsnEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.dsn_ret: str | None = None
        self.dsn_envid: str | None = None
        self.mail_parameters: tuple[str, ...] = ()
        self.recipient_dsn: dict[str, _RecipientDsn] = {}


def _xtext_decode(value: str) -> str:
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def _subject_of(peercert: Any) -> tuple[str | None, str | None]:
    """(RFC 4514-ish subject, CN) of a ``getpeercert()`` dict."""
    if not peercert:
        return None, None
    pairs = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
    common_name = next((value for key, value in pairs if key == "commonName"), None)
    return ",".join(f"{key}={value}" for key, value in pairs), common_name


class _OperatorSMTP(SMTP):
    """aiosmtpd's SMTP with DSN parameters accepted (its parser refuses unknown ones with 555)."""

    def __init__(self, handler: _SmtpHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.raw_parameters = ""

    def _create_envelope(self) -> Envelope:
        return _DsnEnvelope()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        address, rest = super()._getaddr(arg)
        self.raw_parameters = rest or ""  # aiosmtpd upper-cases parameters; ENVID/ORCPT keep their case here
        return address, rest

    def _getparams(self, params: Any) -> dict[str, str | bool] | None:
        result = super()._getparams(params)
        if result is None:
            return None
        for key in ("NOTIFY", "ORCPT", "RET", "ENVID"):
            result.pop(key, None)
        return result


class _SmtpHandler:
    """The operator's SMTP behaviour: who may send, who may receive, what is delivered or bounced."""

    def __init__(self, operator: SandboxMailOperator) -> None:
        self.operator = operator

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:  # noqa: N802 - aiosmtpd's hook name
        subject, common_name = _subject_of((session.ssl or {}).get("peercert"))
        boxes = self.operator._mailboxes_for_certificate(common_name)
        if boxes:
            session.authenticated = True
            session.auth_data = _Auth(mailboxes=boxes, method="certificate", subject=subject)  # type: ignore[assignment]
        return True

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if not self.operator.announce_dsn:
            return responses
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd's hook name
        if len(args) > 1:
            blob = args[1].encode("ascii")
        else:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = answer
        try:
            decoded = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode the response")
        match = _XOAUTH2.match(decoded)
        mailbox = None
        if self.operator._token_check_unavailable():
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        if match is not None:
            mailbox = self.operator._check_token(match.group(1).decode("utf-8", "replace"), match.group(2).decode())
        if mailbox is None:
            await asyncio.sleep(self.operator.auth_failure_delay)
            return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=True, auth_data=_Auth(frozenset({mailbox}), "xoauth2", None))

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: _OperatorSMTP, session: Session, envelope: _DsnEnvelope, address: str, options: list[str]
    ) -> str:
        fault = await self.operator._fault("mail", server)
        if fault is not None:
            return fault
        auth = session.auth_data
        if not isinstance(auth, _Auth) or address.lower() not in auth.mailboxes:
            return "553 5.7.1 Sender address is not owned by the authenticated user"
        raw = server.raw_parameters.split()
        for parameter in raw:
            key, _, value = parameter.partition("=")
            if key.upper() == "RET":
                if value.upper() not in ("FULL", "HDRS"):
                    return "501 5.5.4 RET must be FULL or HDRS"
                envelope.dsn_ret = value.upper()
            elif key.upper() == "ENVID":
                envelope.dsn_envid = _xtext_decode(value)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.mail_parameters = tuple(raw)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: _OperatorSMTP, session: Session, envelope: _DsnEnvelope, address: str, options: list[str]
    ) -> str:
        fault = await self.operator._fault("rcpt", server)
        if fault is not None:
            return fault
        domain = address.rpartition("@")[2].lower()
        if not _TRUST_SPACE.search(domain):
            return "554 5.7.1 Recipient outside the MSSante trust space"
        if domain != PATIENT_DOMAIN and address.lower() not in self.operator._known_mailboxes():
            return "550 5.1.1 Unknown recipient mailbox"
        notify: frozenset[str] | None = None
        orcpt: str | None = None
        raw = tuple(server.raw_parameters.split())
        for parameter in raw:
            key, _, value = parameter.partition("=")
            if key.upper() == "NOTIFY":
                notify = frozenset(v.strip().upper() for v in value.split(","))
                if "NEVER" in notify and len(notify) > 1:
                    return "501 5.5.4 NOTIFY=NEVER excludes other values"
            elif key.upper() == "ORCPT":
                kind, _, original = value.partition(";")
                orcpt = f"{kind.lower()};{_xtext_decode(original)}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.recipient_dsn[address] = _RecipientDsn(notify=notify, orcpt=orcpt, parameters=raw)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: _OperatorSMTP, session: Session, envelope: _DsnEnvelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        fault = self.operator._pop_fault("end_of_data")
        if fault is not None and not fault.drop:
            return fault.reply
        auth = session.auth_data
        assert isinstance(auth, _Auth)
        content = envelope.original_content or b""
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            recipients=tuple(envelope.rcpt_tos),
            content=content,
            authenticated_as=sorted(auth.mailboxes)[0] if len(auth.mailboxes) == 1 else str(envelope.mail_from),
            auth_method=auth.method,
            client_subject=auth.subject,
            mail_parameters=envelope.mail_parameters,
            rcpt_parameters={r: envelope.recipient_dsn[r].parameters for r in envelope.rcpt_tos},
        )
        queue_id = secrets.token_hex(6).upper()
        await self.operator._accept(mail, envelope, session.host_name or "unknown", queue_id)
        if fault is not None:  # drop after the message was kept: the answer is "lost"
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()
            return "250 2.0.0 Ok (never sent)"
        return f"250 2.0.0 Ok: queued as {queue_id}"


class SandboxTokenProvider:
    """A token provider backed by the sandbox operator, as a PSC client would be.

    It keeps its token until asked to refresh, then issues a new one; ``calls`` records
    the ``force_refresh`` of every call, for tests.
    """

    def __init__(self, operator: SandboxMailOperator, mailbox: str, *, lifetime: float | None = None) -> None:
        self.operator = operator
        self.mailbox = mailbox
        self.lifetime = lifetime
        self.calls: list[bool] = []
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mailbox!r}, calls={len(self.calls)})"

    def get_token(self, force_refresh: bool = False) -> str:
        """The current token, or a new one when ``force_refresh`` or none was issued yet."""
        self.calls.append(force_refresh)
        if force_refresh or self._token is None:
            self._token = self.operator.issue_token(self.mailbox, lifetime=self.lifetime)
        return self._token


class _ImapConfig(DictConfig):
    """pymap's in-memory configuration, offering XOAUTH2 and EXTERNAL once TLS is up."""

    @property
    def tls_auth(self) -> SASLAuth:
        return SASLAuth([OAuth2Mechanism(), ExternalMechanism()])


class _ImapIdentity(IdentityInterface):
    def __init__(self, name: str, operator: SandboxMailOperator, config: _ImapConfig) -> None:
        self._name = name
        self._operator = operator
        self._config = config

    @property
    def name(self) -> str:
        return self._name

    @property
    def roles(self) -> frozenset[str]:
        return frozenset()

    @asynccontextmanager
    async def new_session(self) -> AsyncIterator[DictSession]:
        boxes, filters = self._operator._store[self._name]
        yield DictSession(self._name, self._config, boxes, filters)

    async def new_token(self, *, expiration: datetime | None = None) -> str | None:
        return None

    async def get(self) -> UserMetadata:
        return UserMetadata(self._config, self._name)

    async def set(self, metadata: UserMetadata) -> int | None:
        return None

    async def delete(self) -> None:
        return None


class _AuthUnavailable(InvalidAuth):
    """``NO [UNAVAILABLE]``: the credentials could not be checked now (RFC 5530)."""

    def __init__(self) -> None:
        super().__init__("Temporary authentication failure")

    def get_response(self, tag: bytes) -> ResponseNo:
        return ResponseNo(tag, b"Temporary authentication failure", ResponseCode.of(b"UNAVAILABLE"))


class _ImapLogin(LoginInterface):
    """XOAUTH2 with a sandbox token, or EXTERNAL with a client certificate bound to a mailbox; TLS required."""

    def __init__(self, operator: SandboxMailOperator, config: _ImapConfig) -> None:
        self._operator = operator
        self._config = config
        self._tokens = AllTokens(config)

    @property
    def tokens(self) -> AllTokens:
        return self._tokens

    async def authenticate(self, credentials: ServerCredentials) -> IdentityInterface:
        info = socket_info.get()
        if info.cipher is None or not isinstance(credentials, ExternalCredentials):
            raise InvalidAuth()
        try:
            credentials.verify(None)
        except ExternalVerificationRequired as required:
            token = required.token
        if token is not None:
            if self._operator._token_check_unavailable():
                raise _AuthUnavailable()
            mailbox = self._operator._check_token(credentials.authzid, token)
            if mailbox is None:
                await asyncio.sleep(self._operator.auth_failure_delay)
                raise InvalidAuth()
            return _ImapIdentity(mailbox, self._operator, self._config)
        _, common_name = _subject_of(info.peercert)
        boxes = self._operator._mailboxes_for_certificate(common_name)
        wanted = credentials.authzid.strip().lower()
        if wanted and wanted in boxes:
            return _ImapIdentity(wanted, self._operator, self._config)
        if not wanted and len(boxes) == 1:
            return _ImapIdentity(next(iter(boxes)), self._operator, self._config)
        raise InvalidAuth()

    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> IdentityInterface:
        if authzid and authzid.strip().lower() != authenticated.name:
            raise AuthorizationFailure()
        return authenticated


def _header_block(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    return content if end < 0 else content[: end + 2]


class SandboxMailOperator:
    """An MSSanté operator on 127.0.0.1: SMTP submission and IMAP with STARTTLS, in a background thread.

    ::

        with SandboxMailOperator(pki, mailboxes=[SandboxMailbox("lps@clinique.mssante.fr", "LPS AUTH_CLI"),
                                                 "dr.martin@medecin.mssante.fr"],
                                 patients={"279035121518989": PatientMailboxState.ACTIVE}) as operator:
            settings = Settings(..., environment=operator.environment())
            token = operator.issue_token("dr.martin@medecin.mssante.fr")

    ``pki`` signs the servers' certificate (so clients trust ``pki.ca_pem``) and the
    client certificates it accepts. ``patients`` maps matricules to the state of their
    mailbox (a plain iterable means all active). ``starttls=False`` serves plain SMTP and
    IMAP without STARTTLS, to test that clients refuse such a server; ``announce_dsn=False``
    hides the DSN extension. ``server_certificate`` saves issuing one (RSA key generation
    is the slow part of starting).
    """

    def __init__(
        self,
        pki: TestPki,
        *,
        mailboxes: Iterable[str | SandboxMailbox] = (),
        patients: Mapping[str, PatientMailboxState] | Iterable[str] = (),
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        imap_port: int = 0,
        data_dir: str | Path | None = None,
        max_message_bytes: int = 25 * 1024 * 1024,
        token_lifetime: float = 300.0,
        domain: str = "sandbox.mssante.fr",
        starttls: bool = True,
        announce_dsn: bool = True,
        server_certificate: IssuedCertificate | None = None,
        token_check: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.pki = pki
        self.token_check = token_check
        """XOAUTH2 check ``(user, token) -> mailbox or None`` used instead of the operator's own tokens:
        :class:`~dmp_connector.sandbox.psc.PscIntrospectionCheck` introspects them with the PSC simulator."""
        self.host = host
        self.domain = domain
        self.max_message_bytes = max_message_bytes
        self.token_lifetime = token_lifetime
        self.starttls = starttls
        self.announce_dsn = announce_dsn
        self.auth_failure_delay = 0.0
        """Seconds a refused XOAUTH2 login waits for its answer, as Dovecot's ``auth_failure_delay`` does
        (set it to test a client's deadline against that delay)."""
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._server_certificate = server_certificate
        self._requested_ports = (smtp_port, imap_port)
        self._lock = threading.Lock()
        self._mailboxes: dict[str, SandboxMailbox] = {}
        for box in mailboxes:
            self._register(box)
        self._patients: dict[str, PatientMailboxState] = {}
        if isinstance(patients, Mapping):
            for matricule, state in patients.items():
                self._patients[matricule.upper()] = PatientMailboxState(state)
        else:
            for matricule in patients:
                self._patients[matricule.upper()] = PatientMailboxState.ACTIVE
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refusals = 0
        self._unavailable = 0
        self._faults: deque[SmtpFault] = deque()
        self._received: list[ReceivedMail] = []
        self._store: dict[str, tuple[MailboxSet, FilterSet]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.smtp_port = 0
        """Port of the SMTP submission server, once started."""
        self.imap_port = 0
        """Port of the IMAP server, once started."""

    def __repr__(self) -> str:
        state = f"smtp={self.smtp_port}, imap={self.imap_port}" if self._thread else "stopped"
        return f"{type(self).__name__}({self.host}, {state}, mailboxes={len(self._mailboxes)})"

    # --- configuration -------------------------------------------------------------

    def _register(self, box: str | SandboxMailbox) -> SandboxMailbox:
        mailbox = SandboxMailbox(box) if isinstance(box, str) else box
        address = mailbox.address.strip().lower()
        if address.endswith("@" + PATIENT_DOMAIN):
            # The local part is the patient's matricule: not repeated in the message.
            raise ConfigurationError(f"an address on {PATIENT_DOMAIN} is a patient's, not a professional mailbox")
        if address.count("@") != 1:
            raise ConfigurationError(f"{mailbox.address!r} is not a professional mailbox address")
        mailbox = SandboxMailbox(address, mailbox.certificate_cn)
        with self._lock:
            self._mailboxes[address] = mailbox
        return mailbox

    def add_mailbox(self, mailbox: str | SandboxMailbox) -> None:
        """Create a professional mailbox (also while running)."""
        box = self._register(mailbox)
        if self._loop is not None:
            self._call(self._ensure_box(box.address))

    def add_patient(self, matricule: str, state: PatientMailboxState = PatientMailboxState.ACTIVE) -> None:
        """Seed a patient (or change the state of their mailbox)."""
        with self._lock:
            self._patients[matricule.upper()] = PatientMailboxState(state)
        if self._loop is not None and state is PatientMailboxState.ACTIVE:
            self._call(self._ensure_box(f"{matricule.lower()}@{PATIENT_DOMAIN}"))

    def issue_token(self, mailbox: str, *, lifetime: float | None = None) -> str:
        """A new XOAUTH2 access token for ``mailbox`` (the sandbox's PSC), valid ``lifetime`` seconds."""
        address = mailbox.strip().lower()
        if address not in self._mailboxes:
            raise ConfigurationError(f"the sandbox operator has no mailbox {mailbox!r}")
        token = "sbx." + secrets.token_urlsafe(24)
        expires = time.monotonic() + (self.token_lifetime if lifetime is None else lifetime)
        with self._lock:
            self._tokens[token] = (address, expires)
        return token

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far."""
        with self._lock:
            self._tokens.clear()

    def token_check_down(self, count: int = 1) -> None:
        """The next ``count`` XOAUTH2 logins meet a token check that is down: SMTP ``454 4.7.0``, IMAP
        ``NO [UNAVAILABLE]`` (RFC 5530), as Dovecot and Postfix answer when their auth backend fails."""
        with self._lock:
            self._unavailable += count

    def _token_check_unavailable(self) -> bool:
        with self._lock:
            if self._unavailable > 0:
                self._unavailable -= 1
                return True
            return False

    def refuse_valid_tokens(self, count: int = 1) -> None:
        """Refuse the next ``count`` XOAUTH2 logins even with a valid token, as operators sometimes do."""
        with self._lock:
            self._refusals += count

    def fail_next(self, *faults: SmtpFault) -> None:
        """Queue scripted SMTP answers (see :class:`SmtpFault`); each is used once, in order per stage."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def received(self) -> list[ReceivedMail]:
        """Every submission accepted so far, in order."""
        with self._lock:
            return list(self._received)

    # --- where it listens -----------------------------------------------------------

    @property
    def smtp_server(self) -> MailServer:
        """The SMTP submission server, for ``Environment.mssante_smtp``."""
        self._require_running()
        return MailServer(host=self.host, port=self.smtp_port)

    @property
    def imap_server(self) -> MailServer:
        """The IMAP server, for ``Environment.mssante_imap``."""
        self._require_running()
        return MailServer(host=self.host, port=self.imap_port)

    def environment(self, base: Environment | None = None) -> Environment:
        """``base`` (the sandbox preset by default) with its MSSanté servers pointing here."""
        env = base if base is not None else Environment.sandbox()
        return env.model_copy(update={"mssante_smtp": self.smtp_server, "mssante_imap": self.imap_server})

    def _require_running(self) -> None:
        if self._loop is None:
            raise ConfigurationError("the sandbox mail operator is not started", hint="call start() first")

    # --- the checks both servers share ---------------------------------------------------

    def _known_mailboxes(self) -> set[str]:
        with self._lock:
            return set(self._mailboxes)

    def _mailboxes_for_certificate(self, common_name: str | None) -> frozenset[str]:
        if not common_name:
            return frozenset()
        with self._lock:
            return frozenset(a for a, box in self._mailboxes.items() if box.certificate_cn == common_name)

    def _check_token(self, user: str, token: str) -> str | None:
        checked = self.token_check(user, token) if self.token_check is not None else None
        with self._lock:
            if self.token_check is not None:
                if checked is None:
                    return None
                entry: tuple[str, float] | None = (checked, float("inf"))
            else:
                entry = self._tokens.get(token)
            if entry is None or entry[0] != user.strip().lower() or entry[1] < time.monotonic():
                return None
            if self._refusals > 0:
                self._refusals -= 1
                return None
            return entry[0]

    def _pop_fault(self, stage: str) -> SmtpFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage:
                    self._faults.remove(fault)
                    return fault
        return None

    async def _fault(self, stage: str, server: SMTP) -> str | None:
        fault = self._pop_fault(stage)
        if fault is None:
            return None
        if fault.drop and isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        return fault.reply

    # --- delivery ---------------------------------------------------------------------

    async def _ensure_box(self, address: str) -> tuple[MailboxSet, FilterSet]:
        if address not in self._store:
            self._store[address] = (MailboxSet(), FilterSet())
        return self._store[address]

    async def _append(
        self, address: str, content: bytes, *, folder: str = "INBOX", flags: Iterable[str] = (), when: datetime | None
    ) -> None:
        boxes, _ = await self._ensure_box(address)
        if folder.upper() != "INBOX":
            try:
                await boxes.get_mailbox(folder)
            except KeyError:
                await boxes.add_mailbox(folder)
        mailbox = await boxes.get_mailbox(folder)
        message = AppendMessage(content, when or datetime.now(UTC), frozenset(Flag(f) for f in flags))
        await mailbox.append(message, recent=True)

    def _trace(self, mail: ReceivedMail, helo: str, queue_id: str) -> bytes:
        now = format_datetime(datetime.now(UTC))
        return (
            f"Return-Path: <{mail.mail_from}>\r\n"
            f"Received: from {helo} by {self.domain} (dmp_connector sandbox) with ESMTPS id {queue_id};\r\n"
            f"\t{now}\r\n"
        ).encode("ascii", "replace")

    async def _accept(self, mail: ReceivedMail, envelope: _DsnEnvelope, helo: str, queue_id: str) -> None:
        with self._lock:
            self._received.append(mail)
        delivered: list[str] = []
        failed: list[tuple[str, str, str]] = []
        trace = self._trace(mail, helo, queue_id)
        for recipient in mail.recipients:
            address = recipient.lower()
            local, _, domain = address.rpartition("@")
            if domain == PATIENT_DOMAIN:
                with self._lock:
                    state = self._patients.get(local.upper())
                if state is not PatientMailboxState.ACTIVE:
                    failed.append((recipient, *_PATIENT_BOUNCES[state]))
                    continue
            await self._append(address, trace + mail.content, when=None)
            delivered.append(recipient)
        sender = mail.mail_from.lower()
        if sender not in self._known_mailboxes():
            return
        bounce = [f for f in failed if _wants(envelope.recipient_dsn[f[0]].notify, "FAILURE", default=True)]
        if bounce:
            await self._append(sender, self._dsn(mail, envelope, bounce, failure=True), when=None)
        success = [
            (r, "2.0.0", "250 2.0.0 Delivered")
            for r in delivered
            if _wants(envelope.recipient_dsn[r].notify, "SUCCESS", default=False)
        ]
        if success:
            await self._append(sender, self._dsn(mail, envelope, success, failure=False), when=None)

    def _dsn(
        self, mail: ReceivedMail, envelope: _DsnEnvelope, recipients: list[tuple[str, str, str]], *, failure: bool
    ) -> bytes:
        """A delivery status notification (RFC 3464, ``multipart/report``) for ``recipients``."""
        boundary = "=_dsn_" + secrets.token_hex(12)
        now = datetime.now(UTC)
        if failure:
            subject = "Message non distribué"
            human = (
                "Votre message n'a pas pu être distribué à un ou plusieurs destinataires.\r\n"
                "Your message could not be delivered to one or more recipients.\r\n"
            )
        else:
            subject = "Message distribué"
            human = "Votre message a été distribué.\r\nYour message was delivered.\r\n"
        status = [f"Reporting-MTA: dns; {self.domain}"]
        if envelope.dsn_envid:
            status.append(f"Original-Envelope-Id: {envelope.dsn_envid}")
        status.append(f"Arrival-Date: {format_datetime(now)}")
        per_recipient = []
        for recipient, code, diagnostic in recipients:
            block = []
            orcpt = envelope.recipient_dsn[recipient].orcpt
            if orcpt:
                block.append(f"Original-Recipient: {orcpt}")
            block += [
                f"Final-Recipient: rfc822; {recipient}",
                f"Action: {'failed' if failure else 'delivered'}",
                f"Status: {code}",
            ]
            if failure:
                block.append(f"Diagnostic-Code: smtp; {diagnostic}")
            per_recipient.append("\r\n".join(block))
        report = "\r\n".join(status) + "\r\n\r\n" + "\r\n\r\n".join(per_recipient) + "\r\n"
        if envelope.dsn_ret == "FULL":
            returned_type, returned = "message/rfc822", mail.content
        else:
            returned_type, returned = "text/rfc822-headers", _header_block(mail.content)
        from_header = f"MAILER-DAEMON@{self.domain}"
        head = (
            f"From: Mail Delivery System <{from_header}>\r\n"
            f"To: <{mail.mail_from}>\r\n"
            f"Subject: =?utf-8?b?{base64.b64encode(subject.encode()).decode()}?=\r\n"
            f"Date: {format_datetime(now)}\r\n"
            f"Message-ID: <{secrets.token_hex(16)}@{self.domain}>\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
            "\r\n"
        )
        parts = (
            f"--{boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
            f"{human}\r\n"
            f"--{boundary}\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            f"{report}\r\n"
            f"--{boundary}\r\n"
            f"Content-Type: {returned_type}\r\n\r\n"
        ).encode()
        return head.encode("ascii") + parts + returned + f"\r\n--{boundary}--\r\n".encode("ascii")

    # --- reading the store (for tests) ------------------------------------------------

    def deliver(self, address: str, content: bytes, *, folder: str = "INBOX", flags: Iterable[str] = ()) -> None:
        """Put a message straight into a mailbox, as if it had arrived (fixtures for reading tests)."""
        self._require_running()
        self._call(self._append(address.strip().lower(), content, folder=folder, flags=tuple(flags), when=None))

    def stored(self, address: str, folder: str = "INBOX") -> list[StoredMail]:
        """The messages of a mailbox folder, oldest first (an unknown folder is empty)."""
        self._require_running()
        return self._call(self._stored(address.strip().lower(), folder))

    def folders(self, address: str) -> list[str]:
        """The folders of a mailbox."""
        self._require_running()
        return self._call(self._folders(address.strip().lower()))

    async def _folders(self, address: str) -> list[str]:
        boxes, _ = await self._ensure_box(address)
        tree = await boxes.list_mailboxes()
        return sorted(entry.name for entry in tree.list())

    async def _stored(self, address: str, folder: str) -> list[StoredMail]:
        boxes, _ = await self._ensure_box(address)
        try:
            mailbox = await boxes.get_mailbox(folder)
        except KeyError:
            return []
        out = []
        async for message in mailbox.messages():
            if message.expunged:
                continue
            loaded = await message.load_content(FetchRequirement.CONTENT)
            out.append(
                StoredMail(
                    uid=message.uid,
                    flags=frozenset(str(f) for f in message.permanent_flags),
                    internal_date=message.internal_date,
                    content=bytes(loaded),
                )
            )
        return sorted(out, key=lambda m: m.uid)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start both servers in a background thread; returns self once they listen."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="dmpc-mssante-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._startup_error is not None:
            error = self._startup_error
            self.stop()
            raise ConfigurationError(f"the sandbox mail operator did not start: {error!r}") from error
        return self

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _tls_context(self) -> ssl.SSLContext:
        certificate = self._server_certificate or self.pki.issue_server((self.host, "localhost"))
        # The certificate files are read into the context at once; the directory goes away with them.
        with tempfile.TemporaryDirectory(prefix="dmpc-mss-") as workdir:
            return server_ssl_context(certificate, self.pki, require_client_cert=False, workdir=Path(workdir))

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for address in self._known_mailboxes():
            await self._ensure_box(address)
        with self._lock:
            active = [m for m, s in self._patients.items() if s is PatientMailboxState.ACTIVE]
        for matricule in active:
            await self._ensure_box(f"{matricule.lower()}@{PATIENT_DOMAIN}")
        if self.data_dir is not None:
            await self._load()
        context = self._tls_context()
        handler = _SmtpHandler(self)
        smtp_sessions: weakref.WeakSet[_OperatorSMTP] = weakref.WeakSet()

        def smtp_session() -> _OperatorSMTP:
            session = _OperatorSMTP(
                handler,
                hostname=self.domain,
                ident="dmp_connector sandbox MSSante operator",
                tls_context=context if self.starttls else None,
                require_starttls=self.starttls,
                auth_required=True,
                auth_require_tls=True,
                auth_exclude_mechanism=["LOGIN", "PLAIN"],
                data_size_limit=self.max_message_bytes,
                timeout=60,
                loop=loop,
            )
            smtp_sessions.add(session)
            return session

        smtp = await loop.create_server(smtp_session, self.host, self._requested_ports[0])
        args = argparse.Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
        config = _ImapConfig(
            args,
            host=self.host,
            port=self._requested_ports[1],
            ssl_context=context,
            tls_enabled=self.starttls,
            demo_data=False,
            demo_user="",
            demo_password="",
            reject_dnsbl=False,
            invalid_user_sleep=0.0,
            bad_command_limit=None,
        )
        imap_handler = IMAPServer(_ImapLogin(self, config), config)
        writers: set[asyncio.StreamWriter] = set()

        async def imap_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # pymap's own entry reads a PROXY header first and forgets the task it starts;
            # on loopback there is no proxy, and the connection is tracked for stop().
            writers.add(writer)
            try:
                await imap_handler(reader, writer, SocketInfo.get(writer, None, unique_id=uuid.uuid4().bytes))
            finally:
                writers.discard(writer)

        imap = await asyncio.start_server(imap_connection, self.host, self._requested_ports[1])
        self.smtp_port = smtp.sockets[0].getsockname()[1]
        self.imap_port = imap.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            smtp.close()
            imap.close()
            # Close the connections still open, then let their handlers end, so that
            # nothing is left to a closed loop.
            for session in list(smtp_sessions):
                if isinstance(session.transport, asyncio.Transport):
                    session.transport.abort()
            for writer in list(writers):
                if isinstance(writer.transport, asyncio.Transport):
                    writer.transport.abort()
            for _ in range(3):  # abort() closes the sockets on the next loop iterations
                await asyncio.sleep(0)
            await smtp.wait_closed()
            await imap.wait_closed()
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.data_dir is not None:
                await self._save()

    def stop(self) -> None:
        """Stop both servers (writing the mailboxes to ``data_dir`` if set); safe to call twice."""
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=10)
        self._loop = self._thread = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- persistence ------------------------------------------------------------------

    async def _save(self) -> None:
        assert self.data_dir is not None
        root = self.data_dir / "mailboxes"
        for address in list(self._store):
            for folder in await self._folders(address):
                target = root / quote(address, safe="@.") / quote(folder, safe="")
                target.mkdir(parents=True, exist_ok=True)
                for old in target.glob("*.eml"):
                    old.unlink()
                for message in await self._stored(address, folder):
                    (target / f"{message.uid:08d}.eml").write_bytes(message.content)
                    meta = {"flags": sorted(message.flags), "internal_date": message.internal_date.isoformat()}
                    (target / f"{message.uid:08d}.json").write_text(json.dumps(meta))

    async def _load(self) -> None:
        assert self.data_dir is not None
        root = self.data_dir / "mailboxes"
        if not root.is_dir():
            return
        for box_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            address = unquote(box_dir.name)
            for folder_dir in sorted(p for p in box_dir.iterdir() if p.is_dir()):
                folder = unquote(folder_dir.name)
                for eml in sorted(folder_dir.glob("*.eml")):
                    meta_path = eml.with_suffix(".json")
                    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
                    when = datetime.fromisoformat(meta["internal_date"]) if "internal_date" in meta else None
                    flags = [f for f in meta.get("flags", []) if f != "\\Recent"]
                    await self._append(address, eml.read_bytes(), folder=folder, flags=flags, when=when)


def _wants(notify: frozenset[str] | None, kind: str, *, default: bool) -> bool:
    """Whether RFC 3461 asks for a notification of ``kind``; without NOTIFY, failures only."""
    if notify is None:
        return default
    return kind in notify
