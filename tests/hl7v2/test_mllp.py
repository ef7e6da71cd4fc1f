"""MLLP: framing, the sync and async clients against the sandbox platform (plain and TLS, real sockets on
loopback), and against hostile servers (trickling, oversized, an ACK for another message, garbage)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from dmp_connector.errors import ConnectError, LimitExceededError, RequestTimeout, TlsError
from dmp_connector.hl7v2 import (
    AckMismatchError,
    AsyncMllpClient,
    BusinessAckKind,
    Distribution,
    FrameReader,
    Hl7RejectedError,
    MllpClient,
    MllpFramingError,
    Recipient,
    build_ack,
    build_adt,
    build_mdm,
    frame,
    parse,
    read_business_ack,
)
from dmp_connector.ins import INS, BirthDate, Identity, IdentityTraits, InsOid, Sex, compute_key
from dmp_connector.sandbox import MllpListener, server_ssl_context
from tests.conftest import PkiFiles

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7v2"
KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
EXAMPLE = KIT / "IMG-DA-IMG_2024.01_TEP_Thorax.xml"


def _mdm(control_id: str = "015", **options: object) -> bytes:
    distribution = Distribution(recipients=(Recipient(address="adam.hoda@test-ci-sis.mssante.fr"),), ack_reception=True)
    return build_mdm(EXAMPLE.read_bytes(), control_id=control_id, distribution=distribution).to_bytes()


# --------------------------------------------------------------------------- framing (sans-I/O)


def test_frames_are_cut_wherever_the_bytes_arrive() -> None:
    data = frame(b"MSH|one") + b"\r\n" + frame(b"MSH|two")
    for size in (1, 2, 3, 7, len(data)):
        reader = FrameReader(max_bytes=100)
        frames = [f for i in range(0, len(data), size) for f in reader.feed(data[i : i + size])]
        assert frames == [b"MSH|one", b"MSH|two"]
        assert not reader.pending


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"garbage\x0bMSH\x1c\r", MllpFramingError),
        (b"\x0bMSH\x1cX", MllpFramingError),
        (b"\x0bMSH\x0bMSH\x1c\r", MllpFramingError),
        (b"\x0b" + b"x" * 101, LimitExceededError),
    ],
)
def test_bytes_outside_frames_broken_ends_and_oversized_frames_are_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        FrameReader(max_bytes=100).feed(data)


def test_a_payload_holding_a_control_character_cannot_be_framed() -> None:
    with pytest.raises(MllpFramingError):
        frame(b"MSH|\x1c")


# --------------------------------------------------------------------------- the sandbox platform


def test_the_sandbox_platform_accepts_a_document_and_queues_the_business_acks() -> None:
    with MllpListener() as listener, MllpClient(listener.host, listener.port, timeout=10) as client:
        ack = client.send(parse(_mdm("015").decode()))
        assert ack.accepted and ack.acknowledged_id == "015"
        ack2 = client.send(parse(_mdm("016").decode()))  # same connection, second exchange
        assert ack2.acknowledged_id == "016"
    simulator = listener.simulator
    assert [d.control_id for d in simulator.documents] == ["015", "016"]
    assert simulator.documents[0].document == EXAMPLE.read_bytes()
    acks = [read_business_ack(m) for m in simulator.business_acks]
    assert [(a.kind, a.original_control_id) for a in acks[:2]] == [
        (BusinessAckKind.DMP_RECEPTION, "015"),
        (BusinessAckKind.MSS_RECEPTION, "015"),
    ]


def test_the_sandbox_platform_refuses_a_pid_naming_another_patient() -> None:
    text = _mdm().decode()
    pid = next(line for line in text.split("\r") if line.startswith("PID"))
    tampered = text.replace(pid, pid.replace("|19", "|18", 1))
    with (
        MllpListener() as listener,
        MllpClient(listener.host, listener.port, timeout=10) as client,
        pytest.raises(Hl7RejectedError) as info,
    ):
        client.send(parse(tampered))
    assert info.value.code == "AE"
    assert "PATIENT_MISMATCH" in info.value.errors
    assert listener.simulator.documents == []


def test_the_sandbox_platform_takes_adt_and_rejects_garbage() -> None:
    body = "2790351215189"
    identity = Identity(
        traits=IdentityTraits(
            birth_name="PAT-TROIS",
            birth_first_names=("DOMINIQUE",),
            sex=Sex.F,
            birth_date=BirthDate(year=1979, month=3, day=28),
            birth_place="63220",
        ),
        ins=INS(matricule=body + compute_key(body), oid=InsOid.NIR),
        status="QUAL",
    )
    with MllpListener() as listener, MllpClient(listener.host, listener.port, timeout=10) as client:
        assert client.send(build_adt("A28", identity, control_id="9")).accepted
        answer = client.exchange(b"NOT HL7")
    assert b"MSA|AR|" in answer
    assert listener.simulator.events[0].trigger == "A28"


@pytest.fixture
def tls_contexts(pki_files: PkiFiles, tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = server_ssl_context(pki_files.server, pki_files.pki, require_client_cert=False, workdir=tmp_path)
    client = ssl.create_default_context(cadata=pki_files.pki.ca_pem.decode("ascii"))
    return server, client


def test_mllp_over_tls_with_a_verified_server(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server, client_ctx = tls_contexts
    with MllpListener(ssl_context=server) as listener:
        with MllpClient(listener.host, listener.port, timeout=10, ssl_context=client_ctx) as client:
            assert client.send(parse(_mdm().decode())).accepted
        untrusting = ssl.create_default_context()  # the system CAs do not know the sandbox CA
        with (
            MllpClient(listener.host, listener.port, timeout=10, ssl_context=untrusting) as client,
            pytest.raises(TlsError),
        ):
            client.send(parse(_mdm().decode()))


@pytest.mark.asyncio
async def test_the_async_client_against_the_sandbox_over_tls(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client_ctx = tls_contexts
    with MllpListener(ssl_context=server) as listener:
        async with AsyncMllpClient(listener.host, listener.port, timeout=10, ssl_context=client_ctx) as client:
            ack = await client.send(parse(_mdm("021").decode()))
            assert ack.acknowledged_id == "021"
            ack = await client.send(parse(_mdm("022").decode()))
            assert ack.acknowledged_id == "022"
    assert [d.control_id for d in listener.simulator.documents] == ["021", "022"]


# --------------------------------------------------------------------------- hostile servers

Script = Callable[[socket.socket, bytes], None]


@contextmanager
def hostile(script: Script) -> Iterator[int]:
    """A loopback server that reads one frame and then lets ``script`` answer however it likes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                reader = FrameReader()
                frames: list[bytes] = []
                with suppress(OSError):
                    while not frames:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        frames = reader.feed(chunk)
                    if frames:
                        with suppress(OSError):
                            script(conn, frames[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        listener.close()


def _ack_bytes(payload: bytes, *, acknowledged: str | None = None) -> bytes:
    message = parse(payload.decode())
    ack = build_ack(message, "AA", control_id="ACK1")
    text = ack.encode()
    if acknowledged is not None:
        text = text.replace(f"MSA|AA|{message.msh.get(10)}", f"MSA|AA|{acknowledged}")
    return text.encode()


def _trickle(conn: socket.socket, payload: bytes) -> None:
    for byte in frame(_ack_bytes(payload)):
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


def _oversized(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(b"\x0b" + b"MSH|" + b"x" * 200_000)


def _other_ack(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(frame(_ack_bytes(payload, acknowledged="999")))


def _garbage(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def _closes(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(b"\x0bMSH|^~\\&|half")


def _silent(conn: socket.socket, payload: bytes) -> None:
    time.sleep(1.5)


HOSTILE: list[tuple[Script, type[Exception]]] = [
    (_trickle, RequestTimeout),
    (_oversized, LimitExceededError),
    (_other_ack, AckMismatchError),
    (_garbage, MllpFramingError),
    (_closes, MllpFramingError),
    (_silent, RequestTimeout),
]
ADT_SMALL = (
    "MSH|^~\\&|A|B|C|D|20240101||ADT^A28^ADT_A05|77|P|2.5\rEVN||20240101\rPID|1||1^^^X^PI||N^P^^^^^L||19790328|F\r"
)


@pytest.mark.parametrize(("script", "error"), HOSTILE, ids=[s.__name__ for s, _ in HOSTILE])
def test_the_client_ends_every_hostile_exchange_with_a_typed_error(script: Script, error: type[Exception]) -> None:
    with hostile(script) as port, MllpClient("127.0.0.1", port, timeout=1.0, max_message_bytes=100_000) as client:
        started = time.monotonic()
        with pytest.raises(error):
            client.send(parse(ADT_SMALL))
        assert time.monotonic() - started < 2.5  # the deadline bounds the exchange, not each read


@pytest.mark.asyncio
@pytest.mark.parametrize(("script", "error"), HOSTILE, ids=[s.__name__ for s, _ in HOSTILE])
async def test_the_async_client_ends_every_hostile_exchange_with_a_typed_error(
    script: Script, error: type[Exception]
) -> None:
    with hostile(script) as port:
        async with AsyncMllpClient("127.0.0.1", port, timeout=1.0, max_message_bytes=100_000) as client:
            started = time.monotonic()
            with pytest.raises(error):
                await client.send(parse(ADT_SMALL))
            assert time.monotonic() - started < 2.5


def test_nobody_listening_is_a_connect_error() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with MllpClient("127.0.0.1", port, timeout=2) as client, pytest.raises(ConnectError):
        client.exchange(b"MSH|x")

    async def attempt() -> None:
        async with AsyncMllpClient("127.0.0.1", port, timeout=2) as aclient:
            await aclient.exchange(b"MSH|x")

    with pytest.raises(ConnectError):
        asyncio.run(attempt())


def test_the_async_client_mirrors_the_sync_one() -> None:
    import inspect

    sync = {n: inspect.signature(m) for n, m in vars(MllpClient).items() if not n.startswith("_") and callable(m)}
    rename = {"aclose": "close"}
    asynchronous = {
        rename.get(n, n): inspect.signature(m)
        for n, m in vars(AsyncMllpClient).items()
        if not n.startswith("_") and callable(m)
    }
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name
    assert list(inspect.signature(MllpClient).parameters) == list(inspect.signature(AsyncMllpClient).parameters)


def test_the_sandbox_platform_refuses_an_unqualified_identity_sent_to_the_dmp() -> None:
    from dmp_connector.cda import build, extract_metadata
    from dmp_connector.cda import parse as parse_cda

    data = EXAMPLE.read_bytes()
    document = parse_cda(data)
    prov = document.patient.identity.updated(status="PROV", ins=None)
    unqualified = build(document.model_copy(update={"patient": document.patient.model_copy(update={"identity": prov})}))
    only_mss = Distribution(to_dmp=False, recipients=(Recipient(address="a@b.mssante.fr"),))
    text = build_mdm(unqualified, control_id="31", metadata=extract_metadata(data), distribution=only_mss).encode()
    to_dmp = text.replace("DESTDMP^Destinataire DMP^MetaDMPMSS||N^", "DESTDMP^Destinataire DMP^MetaDMPMSS||Y^")
    assert to_dmp != text
    with MllpListener() as listener, MllpClient(listener.host, listener.port, timeout=10) as client:
        assert client.send(parse(text)).accepted  # MSSanté only: no INS needed
        with pytest.raises(Hl7RejectedError) as info:
            client.send(parse(to_dmp))
    assert "INS_NOT_QUALIFIED" in info.value.errors
    assert [d.control_id for d in listener.simulator.documents] == ["31"]
