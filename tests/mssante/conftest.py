"""MSSanté fixtures: a running sandbox operator and settings that point at it.

The operator is real (SMTP and IMAP on loopback, STARTTLS with the session's test PKI);
one is started per test (a second or two of setup saved by reusing the session's server
certificate), so that scripted faults and mailboxes never leak from one test to another.

Mailboxes: ``APP_MAILBOX`` is applicative (the test client certificate authenticates
it), ``PRO_MAILBOX`` and ``OTHER_MAILBOX`` are personal (XOAUTH2 with a sandbox token).
Patients: ``PATIENT_ACTIVE`` has an open Mon espace santé mailbox, ``PATIENT_CLOSED``
closed it, ``PATIENT_UNKNOWN`` is not known at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from dmp_connector.audit import AuditSink
from dmp_connector.config import MssanteAuthMode, MssanteSettings, Settings, TlsCredentials
from dmp_connector.mssante.auth import TokenProvider
from dmp_connector.mssante.client import AsyncMssanteClient, MssanteClient
from dmp_connector.mssante.transport import AsyncMailTransport, MailSummary, MailTransport, SendResult
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox.mssante import (
    PatientMailboxState,
    SandboxMailbox,
    SandboxMailOperator,
    SandboxTokenProvider,
)
from tests.conftest import PkiFiles, make_settings

APP_MAILBOX = "lps@cabinet-test.mssante.fr"
PRO_MAILBOX = "dr.martin@medecin.mssante.fr"
OTHER_MAILBOX = "secretariat@ch-exemple.mssante.fr"
CLIENT_CN = "Cabinet Test AUTH_CLI"
"""CN of the session's test client certificate (tests/conftest.py), bound to APP_MAILBOX."""
PATIENT_ACTIVE = "279035121518989"
PATIENT_CLOSED = "185057800608436"
PATIENT_UNKNOWN = "299999999999999"

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0.0)


def patient_address(matricule: str) -> str:
    """``<matricule>@patient.mssante.fr``."""
    return f"{matricule}@patient.mssante.fr"


@pytest.fixture
def mail_operator(pki_files: PkiFiles) -> Iterator[SandboxMailOperator]:
    """A started sandbox operator with the three mailboxes and two seeded patients."""
    operator = SandboxMailOperator(
        pki_files.pki,
        mailboxes=[SandboxMailbox(APP_MAILBOX, certificate_cn=CLIENT_CN), PRO_MAILBOX, OTHER_MAILBOX],
        patients={PATIENT_ACTIVE: PatientMailboxState.ACTIVE, PATIENT_CLOSED: PatientMailboxState.CLOSED},
        server_certificate=pki_files.server,
    )
    with operator:
        yield operator


def operator_settings(
    pki_files: PkiFiles, operator: SandboxMailOperator, *, mailbox: str = APP_MAILBOX, **overrides: Any
) -> Settings:
    """Settings for ``operator``: certificate mode for APP_MAILBOX, else XOAUTH2 (CA only, no client certificate)."""
    if mailbox == APP_MAILBOX:
        mss = MssanteSettings(mailbox=mailbox, auth_mode=MssanteAuthMode.CERTIFICATE, connect_timeout=5, timeout=5)
        data: dict[str, Any] = {}
    else:
        mss = MssanteSettings(mailbox=mailbox, auth_mode=MssanteAuthMode.XOAUTH2, connect_timeout=5, timeout=5)
        data = {"tls": TlsCredentials(ca_bundle=pki_files.ca_bundle)}
    data.update({"environment": operator.environment(), "mssante": mss, "retry": FAST_RETRY})
    data.update(overrides)
    return make_settings(pki_files, **data)


@pytest.fixture
def app_settings(pki_files: PkiFiles, mail_operator: SandboxMailOperator) -> Settings:
    """Certificate authentication as the applicative mailbox APP_MAILBOX."""
    return operator_settings(pki_files, mail_operator)


@pytest.fixture
def pro_settings(pki_files: PkiFiles, mail_operator: SandboxMailOperator) -> Settings:
    """XOAUTH2 authentication as the personal mailbox PRO_MAILBOX (pair with ``pro_tokens``)."""
    return operator_settings(pki_files, mail_operator, mailbox=PRO_MAILBOX)


def certificate_toml_for(cert: Path, key: Path, ca_bundle: Path) -> str:
    """``[tls]`` and ``[mssante]`` of a config file: certificate authentication as APP_MAILBOX (for the CLI)."""
    return f"""
[tls]
cert_file = "{cert}"
key_file = "{key}"
ca_bundle = "{ca_bundle}"

[mssante]
mailbox = "{APP_MAILBOX}"
auth_mode = "certificate"
"""


@pytest.fixture
def certificate_toml(pki_files: PkiFiles) -> str:
    """:func:`certificate_toml_for` the session's test client certificate."""
    return certificate_toml_for(pki_files.client_cert, pki_files.client_key, pki_files.ca_bundle)


@pytest.fixture
def pro_tokens(mail_operator: SandboxMailOperator) -> SandboxTokenProvider:
    """A token provider for PRO_MAILBOX, recording its calls."""
    return SandboxTokenProvider(mail_operator, PRO_MAILBOX)


# --- one face for the sync and the async API -------------------------------------------------------

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
"""Run a test with the synchronous and the asynchronous API, through the drivers below."""


class ClientDriver:
    """One client, sync or async, behind the same blocking calls."""

    def __init__(self, mode: str, settings: Settings, **kwargs: Any) -> None:
        self.mode = mode
        if mode == "sync":
            self._sync: MssanteClient | None = MssanteClient(settings, **kwargs)
            self._async: AsyncMssanteClient | None = None
            self._runner: asyncio.Runner | None = None
        else:
            self._sync = None
            self._runner = asyncio.Runner()
            self._async = self._runner.run(self._make(settings, kwargs))

    @staticmethod
    async def _make(settings: Settings, kwargs: dict[str, Any]) -> AsyncMssanteClient:
        return AsyncMssanteClient(settings, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self._sync is not None:
            method: Callable[..., Any] = getattr(self._sync, name)
            return method
        assert self._async is not None and self._runner is not None
        runner, coroutine = self._runner, getattr(self._async, name)
        return lambda *args, **kwargs: runner.run(coroutine(*args, **kwargs))

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
        if self._runner is not None and self._async is not None:
            self._runner.run(self._async.aclose())
            self._runner.close()


class TransportDriver:
    """The sync or the async transport behind one synchronous face, for parametrised tests."""

    def __init__(
        self,
        mode: str,
        settings: Settings,
        *,
        tokens: TokenProvider | None = None,
        audit: Sequence[AuditSink] = (),
    ) -> None:
        self.mode = mode
        self._runner: asyncio.Runner | None = None
        self._sync: MailTransport | None = None
        self._async: AsyncMailTransport | None = None
        if mode == "sync":
            self._sync = MailTransport(settings, token_provider=tokens, audit=audit)
        else:
            self._runner = asyncio.Runner()
            self._async = AsyncMailTransport(settings, token_provider=tokens, audit=audit)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._sync is not None:
            return getattr(self._sync, name)(*args, **kwargs)
        assert self._runner is not None and self._async is not None
        return self._runner.run(getattr(self._async, name)(*args, **kwargs))

    def send(self, message: EmailMessage, **kwargs: Any) -> SendResult:
        result: SendResult = self._call("send", message, **kwargs)
        return result

    def list_messages(self, folder: str = "INBOX", *, unseen_only: bool = True) -> list[MailSummary]:
        result: list[MailSummary] = self._call("list_messages", folder, unseen_only=unseen_only)
        return result

    def fetch(self, uid: int, folder: str = "INBOX") -> bytes:
        result: bytes = self._call("fetch", uid, folder)
        return result

    def mark_seen(self, uid: int, folder: str = "INBOX") -> None:
        self._call("mark_seen", uid, folder)

    def move(self, uid: int, target: str, folder: str = "INBOX") -> None:
        self._call("move", uid, target, folder)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
        if self._runner is not None and self._async is not None:
            self._runner.run(self._async.aclose())
            self._runner.close()


@pytest.fixture
def drivers() -> Iterator[list[Any]]:
    """The drivers a test opened (``ClientDriver`` or ``TransportDriver``), closed after it."""
    made: list[Any] = []
    yield made
    for driver in made:
        driver.close()


def open_client(drivers: list[Any], mode: str, settings: Settings, **kwargs: Any) -> ClientDriver:
    """An ``MssanteClient`` (``sync``) or ``AsyncMssanteClient`` (``async``) behind blocking calls."""
    driver = ClientDriver(mode, settings, **kwargs)
    drivers.append(driver)
    return driver


def open_transport(drivers: list[Any], mode: str, settings: Settings, **kwargs: Any) -> TransportDriver:
    """A ``MailTransport`` (``sync``) or ``AsyncMailTransport`` (``async``) behind blocking calls."""
    driver = TransportDriver(mode, settings, **kwargs)
    drivers.append(driver)
    return driver


@pytest.fixture
def pro_transport(
    mode: str, drivers: list[Any], pro_settings: Settings, pro_tokens: SandboxTokenProvider
) -> TransportDriver:
    """The transport of PRO_MAILBOX (XOAUTH2 with ``pro_tokens``), sync or async as the test's ``mode`` says."""
    return open_transport(drivers, mode, pro_settings, tokens=pro_tokens)
