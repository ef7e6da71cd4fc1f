"""An intermediation platform (PFI, the volet's GESTIONNAIRE) simulated over MLLP on loopback.

:class:`PlatformSimulator` answers one message with its ACK, as the platform would:

* an MDM^T02/T10/T04 read by :func:`~dmp_connector.hl7v2.read_mdm` (so the PID is checked
  against the CDA's recordTarget) → ``AA``, the document kept in :attr:`PlatformSimulator.documents`;
  the business acks it asked for (ZAM Z01 when DESTDMP and ACK_RECEPTION, Z02 for each MSSanté
  recipient) are queued in :attr:`PlatformSimulator.business_acks`;
* a PID naming another patient than its document, a DMP recipient without a qualified identity,
  a message that breaks the volet → ``AE`` with ERR-3 ``207`` and ERR-5 saying which rule;
* an ADT identity feed message → ``AA``, its typed event kept in :attr:`PlatformSimulator.events`;
* anything else (an unknown type, unreadable bytes) → ``AR``.

:class:`MllpListener` serves it on 127.0.0.1 (TLS if given a server context), one thread per
connection, each connection idle-timed out.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from types import TracebackType
from typing import Self

from dmp_connector.errors import DmpConnectorError, PatientMismatchError
from dmp_connector.hl7v2 import (
    AckCode,
    AckError,
    BusinessAckKind,
    FrameReader,
    Hl7Settings,
    IdentifierChange,
    IdentityEvent,
    MdmDocument,
    Message,
    PatientMerge,
    Segment,
    build_ack,
    build_business_ack,
    decode,
    frame,
    read_adt,
    read_mdm,
    rep,
)
from dmp_connector.ins import IdentityStatus

__all__ = ["MllpListener", "PlatformSimulator"]


class PlatformSimulator:
    """The platform's answers, sans-I/O: :meth:`handle` takes a message's bytes, returns its ACK's."""

    def __init__(self, *, settings: Hl7Settings | None = None, max_message_bytes: int = 20 * 1024 * 1024) -> None:
        self.settings = settings or Hl7Settings(sending_application="PFI-SANDBOX", receiving_application="")
        self.max_message_bytes = max_message_bytes
        self.documents: list[MdmDocument] = []
        """Documents accepted, in order."""
        self.events: list[IdentityEvent | IdentifierChange | PatientMerge] = []
        """ADT events accepted, in order."""
        self.business_acks: list[Message] = []
        """ZAM messages the platform would send back to the creator."""
        self._lock = threading.Lock()
        self._counter = 0

    def _next_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"PFI{self._counter:06d}"

    def handle(self, payload: bytes) -> bytes:
        """The ACK (bytes) for one received message."""
        try:
            message = decode(payload, max_bytes=self.max_message_bytes)
            message_type = message.msh.get(9, 1, 1)
        except Exception:  # anything unreadable is answered, never left to kill the connection
            return self._reject_unreadable()
        try:
            if message_type == "MDM":
                self._mdm(message)
            elif message_type == "ADT":
                event = read_adt(message)
                with self._lock:
                    self.events.append(event)
            else:
                return self._ack(message, AckCode.REJECT, AckError(hl7_code="200", application_code="UNSUPPORTED"))
        except PatientMismatchError:
            return self._ack(message, AckCode.ERROR, AckError(application_code="PATIENT_MISMATCH"))
        except _NotQualified:
            return self._ack(message, AckCode.ERROR, AckError(application_code="INS_NOT_QUALIFIED"))
        except DmpConnectorError:
            return self._ack(message, AckCode.ERROR, AckError(application_code="VOLET"))
        except Exception:
            # A fault of ours (or a hostile message we did not foresee): the sender still gets an answer,
            # HL7's "application internal error", instead of a connection that dies and a client timeout.
            return self._ack(message, AckCode.ERROR, AckError(hl7_code="207", application_code="INTERNAL"))
        return self._ack(message, AckCode.ACCEPT)

    def _mdm(self, message: Message) -> None:
        document = read_mdm(message, max_bytes=self.max_message_bytes)
        flags = document.distribution
        if (flags.to_dmp or flags.to_patient) and document.patient.identity.status is not IdentityStatus.QUAL:
            raise _NotQualified
        with self._lock:
            self.documents.append(document)
            if flags.ack_reception and flags.to_dmp:
                self.business_acks.append(
                    build_business_ack(
                        BusinessAckKind.DMP_RECEPTION,
                        original_control_id=document.control_id,
                        success=True,
                        control_id=self._next_id_unlocked(),
                        settings=self.settings,
                    )
                )
            if flags.ack_reception:
                for recipient in flags.recipients:
                    self.business_acks.append(
                        build_business_ack(
                            BusinessAckKind.MSS_RECEPTION,
                            original_control_id=document.control_id,
                            success=True,
                            address=recipient.address,
                            control_id=self._next_id_unlocked(),
                            settings=self.settings,
                        )
                    )

    def _next_id_unlocked(self) -> str:
        self._counter += 1
        return f"PFI{self._counter:06d}"

    def _ack(self, message: Message, code: AckCode, error: AckError | None = None) -> bytes:
        ack = build_ack(
            message, code, control_id=self._next_id(), errors=(error,) if error else (), settings=self.settings
        )
        return ack.to_bytes()

    def _reject_unreadable(self) -> bytes:
        msh = self.settings.msh(("ACK", "", "ACK"), control_id=self._next_id(), stamp="")
        msh.set(12, "2.6")
        msa = Segment(name="MSA").set(1, "AR").set(2, "")
        err = Segment(name="ERR").set(3, rep("102", "Data type error", "HL70357")).set(4, "E")
        return Message(segments=[msh, msa, err]).to_bytes()


class _NotQualified(Exception):
    pass


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.idle_timeout)
        if self.server.ssl_context is not None:
            try:
                sock = self.server.ssl_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                return
        reader = FrameReader(max_bytes=self.server.simulator.max_message_bytes)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                for payload in reader.feed(chunk):
                    sock.sendall(frame(self.server.simulator.handle(payload)))
        except (DmpConnectorError, OSError):
            return  # a framing error, an oversized frame, an idle client: the connection ends
        finally:
            sock.close()


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], simulator: PlatformSimulator, ssl_context: ssl.SSLContext | None, idle: float
    ) -> None:
        self.simulator = simulator
        self.ssl_context = ssl_context
        self.idle_timeout = idle
        super().__init__(address, _Handler)


class MllpListener:
    """:class:`PlatformSimulator` (or yours) served over MLLP on 127.0.0.1; a context manager.

    ``port=0`` picks a free port (:attr:`port`). ``ssl_context`` is a server context
    (:func:`~dmp_connector.sandbox.server_ssl_context` builds one from the test PKI).
    """

    def __init__(
        self,
        simulator: PlatformSimulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 10.0,
    ) -> None:
        self.simulator = simulator or PlatformSimulator()
        self._server = _Server((host, port), self.simulator, ssl_context, idle_timeout)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The address listened on."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self._server.server_address[1])

    def start(self) -> Self:
        """Start serving in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="mllp-sandbox", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
