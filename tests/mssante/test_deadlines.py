"""Every MSSanté SMTP and IMAP call ends by its deadline (``timeouts.attempt``/``timeouts.call`` or
``deadline()``), whatever the server does: a reply trickled a byte at a time, a login held after a
refused token (Dovecot's auth_failure_delay, here played by the sandbox operator)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Protocol

import pytest

from dmp_connector.config import Environment, MailServer, MssanteAuthMode, MssanteSettings, Settings, Timeouts
from dmp_connector.errors import RequestTimeout
from dmp_connector.mssante import MailAuthenticationError
from dmp_connector.sandbox.mssante import SandboxMailOperator, SandboxTokenProvider
from dmp_connector.transport import deadline
from tests.conftest import PkiFiles, make_settings

from .conftest import MODES, OTHER_MAILBOX, PRO_MAILBOX
from .conftest import TransportDriver as Driver
from .conftest import open_transport as open_driver


def note(sender: str = PRO_MAILBOX, to: str = OTHER_MAILBOX) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, "deadline"
    message.set_content("x")
    return message


class Refusing(Protocol):
    def __call__(self, *, held: float, expected: float) -> Driver: ...


@pytest.fixture
def refused_once(
    mode: str,
    drivers: list[Driver],
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> Refusing:
    """A PRO_MAILBOX transport whose first login the operator refuses and holds ``held`` seconds, the
    client expecting ``expected`` seconds (``mssante.auth_failure_delay``)."""

    def make(*, held: float, expected: float) -> Driver:
        mail_operator.auth_failure_delay = held
        mail_operator.refuse_valid_tokens(1)
        mss = pro_settings.mssante.model_copy(update={"auth_failure_delay": expected})
        return open_driver(drivers, mode, pro_settings.model_copy(update={"mssante": mss}), tokens=pro_tokens)

    return make


def call(driver: Driver, operation: str) -> object:
    if operation == "send":
        return driver.send(note(), sender=PRO_MAILBOX, recipients=[OTHER_MAILBOX])
    return driver.list_messages()


OPERATIONS = pytest.mark.parametrize("operation", ["send", "list"])


@MODES
@OPERATIONS
def test_a_refused_token_is_refreshed_when_the_call_has_time_for_the_servers_delay(
    operation: str, refused_once: Refusing, pro_tokens: SandboxTokenProvider, mail_operator: SandboxMailOperator
) -> None:
    driver = refused_once(held=0.3, expected=0.3)
    started = time.monotonic()
    with deadline(5):
        call(driver, operation)
    assert pro_tokens.calls == [False, True]
    assert time.monotonic() - started >= 0.3  # the refused login's answer was held


@MODES
@OPERATIONS
def test_no_refresh_is_tried_when_the_call_has_less_left_than_the_servers_delay(
    operation: str, refused_once: Refusing, pro_tokens: SandboxTokenProvider, mail_operator: SandboxMailOperator
) -> None:
    driver = refused_once(held=0.4, expected=1.0)
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info, deadline(1.2):
        call(driver, operation)
    elapsed = time.monotonic() - started
    # refused after ~0.4 s: 0.8 s left, under the 1 s the server is expected to hold the next login
    assert pro_tokens.calls == [False] and elapsed < 1.0
    assert "auth_failure_delay" in str(info.value) and info.value.hint is not None
    assert "auth_failure_delay" in info.value.hint and not info.value.retryable
    assert isinstance(info.value.__cause__, MailAuthenticationError)
    assert mail_operator.received == []


@MODES
@OPERATIONS
def test_a_login_held_past_the_deadline_ends_in_a_timeout_naming_the_delay(
    operation: str, refused_once: Refusing, pro_tokens: SandboxTokenProvider, mail_operator: SandboxMailOperator
) -> None:
    driver = refused_once(held=5.0, expected=0.0)  # Dovecot's penalty grows to 15 s and more
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info, deadline(1.0):
        call(driver, operation)
    assert time.monotonic() - started < 1.8
    assert info.value.hint is not None and "auth_failure_delay" in info.value.hint
    assert pro_tokens.calls == [False]


# --- a server that trickles its answer -----------------------------------------------------------


class Trickler:
    """A TCP server on loopback that answers every connection with ``greeting``, one byte every 0.1 s."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # so that close() is seen: closing does not wake accept()
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            for byte in self.greeting:
                if self.stopping.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    # 30 s of greeting: longer than every per-reply timeout below, so only the call's deadline ends it
    server = Trickler(b"220 " + b"x" * 300 + b"\r\n")
    yield server
    server.close()


def trickled_settings(pki_files: PkiFiles, port: int) -> Settings:
    server = MailServer(host="127.0.0.1", port=port)
    return make_settings(
        pki_files,
        environment=Environment.sandbox().model_copy(update={"mssante_smtp": server, "mssante_imap": server}),
        mssante=MssanteSettings(
            mailbox=PRO_MAILBOX, auth_mode=MssanteAuthMode.CERTIFICATE, connect_timeout=60, timeout=60
        ),
        timeouts=Timeouts(attempt=1.0, call=1.5),
    )


@MODES
@OPERATIONS
def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(
    mode: str,
    operation: str,
    drivers: list[Driver],
    pki_files: PkiFiles,
    trickler: Trickler,
) -> None:
    if operation == "list":
        trickler.greeting = b"* OK " + b"x" * 300 + b"\r\n"
    driver = open_driver(drivers, mode, trickled_settings(pki_files, trickler.port))
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="deadline"):
        call(driver, operation)
    # attempts of 1 s within a call of 1.5 s; per-reply timeouts of 60 s never came into it
    assert time.monotonic() - started < 2.5


@OPERATIONS
def test_an_async_token_provider_that_hangs_is_cut_at_the_deadline(operation: str, pro_settings: Settings) -> None:
    import asyncio

    from dmp_connector.mssante.transport import AsyncMailTransport

    class Hanging:
        async def get_token(self, force_refresh: bool = False) -> str:
            await asyncio.sleep(30)  # a PSC refresh that never answers
            return "never"

    async def run() -> None:
        async with AsyncMailTransport(pro_settings, token_provider=Hanging()) as transport:
            with deadline(0.5):
                if operation == "send":
                    await transport.send(note(), sender=PRO_MAILBOX, recipients=[OTHER_MAILBOX])
                else:
                    await transport.list_messages()

    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="token provider"):
        asyncio.run(run())
    assert time.monotonic() - started < 1.5


# --- with_options: another deadline for a call or a few, the same connections ----------------------


def test_with_options_gives_one_client_a_shorter_deadline_and_leaves_the_original_its_own(
    pki_files: PkiFiles, trickler: Trickler
) -> None:
    from dmp_connector.mssante import MssanteClient

    trickler.greeting = b"* OK " + b"x" * 300 + b"\r\n"
    settings = trickled_settings(pki_files, trickler.port).model_copy(update={"timeouts": Timeouts(call=60)})
    with MssanteClient(settings) as client:
        hurried = client.with_options(timeout=1.0)
        assert hurried.settings.timeouts.call == 1.0 and client.settings.timeouts.call == 60
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match="deadline"):
            hurried.inbox()
        assert time.monotonic() - started < 2.5  # the original's 60 s never came into it


def test_async_with_options_gives_one_client_a_shorter_deadline(pki_files: PkiFiles, trickler: Trickler) -> None:
    import asyncio

    from dmp_connector.mssante import AsyncMssanteClient

    trickler.greeting = b"* OK " + b"x" * 300 + b"\r\n"
    settings = trickled_settings(pki_files, trickler.port).model_copy(update={"timeouts": Timeouts(call=60)})

    async def run() -> float:
        async with AsyncMssanteClient(settings) as client:
            hurried = client.with_options(timeout=1.0)
            started = time.monotonic()
            with pytest.raises(RequestTimeout, match="deadline"):
                await hurried.inbox()
            return time.monotonic() - started

    assert asyncio.run(run()) < 2.5


@MODES
def test_a_with_options_copy_shares_the_connection_and_closing_it_closes_nothing(
    mode: str, pki_files: PkiFiles, mail_operator: SandboxMailOperator
) -> None:
    import asyncio

    from dmp_connector.mssante import AsyncMssanteClient, MssanteClient
    from dmp_connector.retries import RetryPolicy

    from .conftest import operator_settings

    settings = operator_settings(pki_files, mail_operator)
    once = RetryPolicy(max_attempts=1)
    if mode == "sync":
        with MssanteClient(settings) as client:
            client.inbox()
            copy = client.with_options(timeout=5, retry=once)
            assert copy._transport.retry == once and client._transport.retry != once
            copy.inbox()
            assert copy._transport._slot is client._transport._slot  # one IMAP connection for both
            session = client._transport._slot.session
            copy.close()
            assert session is not None and session.is_open  # the copy closed nothing
            assert client.inbox() == []
        return

    async def run() -> None:
        async with AsyncMssanteClient(settings) as client:
            await client.inbox()
            copy = client.with_options(timeout=5, retry=once)
            await copy.inbox()
            assert copy._transport._slot is client._transport._slot
            session = client._transport._slot.session
            await copy.aclose()
            assert session is not None and session.is_open
            assert await client.inbox() == []

    asyncio.run(run())


# --- STARTTLS response injection ---------------------------------------------------------------------


def test_cleartext_sent_after_the_starttls_answer_is_refused_not_read_as_if_under_tls(pki_files: PkiFiles) -> None:
    """A man in the middle appends answers to the server's OK to STARTTLS, in the same packet: read
    after the handshake they would pass for protected ones (forged capabilities, a forged message)."""
    from dmp_connector.errors import TlsError
    from dmp_connector.mssante import MssanteClient

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"* OK IMAP4rev1 ready\r\n")
            buffer = b""
            while True:
                while b"\r\n" not in buffer:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                line, buffer = buffer.split(b"\r\n", 1)
                tag, command = line.split(b" ")[:2]
                if command.upper() == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=EXTERNAL\r\n" + tag + b" OK done\r\n")
                elif command.upper() == b"STARTTLS":
                    conn.sendall(tag + b" OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN INJECTED\r\n")
                    conn.recv(4096)  # the client's answer, if any: it must not be a handshake read as TLS
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings = trickled_settings(pki_files, port)
    try:
        with MssanteClient(settings) as client, pytest.raises(TlsError, match="after its STARTTLS answer"):
            client.inbox()
    finally:
        thread.join(timeout=5)
        listener.close()
