"""MTOM/XOP: binary attachments carried as MIME parts next to the SOAP envelope.

A DMP deposit (ITI-41) and a retrieve answer (ITI-43) carry documents as parts of a
``multipart/related`` body instead of base64 inside the XML, so that a 50 MB PDF is never
held three times in memory. This module does the packaging only, with no I/O of its own:

* :class:`Attachment` is one part's data, kept in memory, in a spooled temporary file
  (received parts) or in a file on disk (parts to send, streamed, never loaded);
* :func:`encode_mtom` frames an envelope and its attachments into a :class:`MtomPayload`
  whose exact length is known up front and whose bytes can be produced again on a retry;
* :class:`MultipartRelatedParser` reads an answer chunk by chunk, keeps the root part in
  memory under a size limit and spools the other parts to temporary files.

The wire form written (CRLF line ends, the root part first)::

    --MIMEBoundary_5f0c…
    Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"
    Content-Transfer-Encoding: 8bit
    Content-ID: <root.message@dmp-connector>

    <?xml version='1.0' encoding='UTF-8'?><env:Envelope …>…<xop:Include href="cid:1b4e…@dmp-connector"/>…
    --MIMEBoundary_5f0c…
    Content-Type: application/pdf
    Content-Transfer-Encoding: binary
    Content-ID: <1b4e…@dmp-connector>

    %PDF-1.7 …
    --MIMEBoundary_5f0c…--
"""

from __future__ import annotations

import binascii
import hashlib
import io
import os
import re
import tempfile
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Final, Protocol

from lxml import etree

from dmp_connector.errors import DmpConnectorError, MalformedResponseError, UnsafeXmlError, ValidationError
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, to_bytes

__all__ = [
    "CHUNK_SIZE",
    "ROOT_CONTENT_ID",
    "Attachment",
    "MtomMessageParts",
    "MtomPayload",
    "MultipartRelatedParser",
    "decode_mtom",
    "encode_mtom",
    "is_multipart",
]

CHUNK_SIZE: Final = 64 * 1024
"""Size of the chunks read from attachments and yielded to the transport."""
ROOT_CONTENT_ID: Final = "root.message@dmp-connector"
"""Content-ID of the SOAP envelope part in the messages we send."""

_DEFAULT_SPOOL_THRESHOLD: Final = 8 * 1024 * 1024
_MAX_PART_HEADER_BYTES: Final = 64 * 1024
_MAX_BOUNDARY_LINE: Final = 1024

# RFC 2046 §5.1.1: 1 to 70 characters from this set, not ending with a space.
_BOUNDARY_RE: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_CONTENT_ID_RE: Final = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # visible ASCII except < and >
_HEADER_VALUE_RE: Final = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_PARAM_VALUE_RE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")  # no quote, no backslash


# --------------------------------------------------------------------------- attachments


class _Source(Protocol):
    """Where an attachment's bytes live; each kind knows how to give a fresh reader."""

    @property
    def size(self) -> int: ...

    def open(self) -> BinaryIO: ...

    def close(self) -> None: ...


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _BytesSource:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data
        self._size = len(data)

    @property
    def size(self) -> int:
        return self._size

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data())

    def data(self) -> bytes:
        """The bytes themselves (no reader, no copy)."""
        if self._data is None:
            raise ValueError("I/O operation on a closed attachment")
        return self._data

    def close(self) -> None:
        self._data = None


class _PathSource:
    """A file to send: its size is taken once so that Content-Length is known before reading."""

    def __init__(self, path: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            raise ValidationError(
                f"the attachment file cannot be read: {exc.strerror or type(exc).__name__}",
                hint="check the path and its permissions",
            ) from exc
        if not path.is_file():
            raise ValidationError("the attachment path is not a regular file")
        self._path = path
        self._size = stat.st_size

    @property
    def size(self) -> int:
        return self._size

    def open(self) -> BinaryIO:
        try:
            return self._path.open("rb")
        except OSError as exc:
            raise ValidationError(
                f"the attachment file cannot be opened: {exc.strerror or type(exc).__name__}",
                hint="the file was moved or its permissions changed after it was attached",
            ) from exc

    def close(self) -> None:
        return None


class _SpoolSource:
    """A received part in a SpooledTemporaryFile, shared by readers that each keep their own position.

    The file is closed when the attachment is garbage-collected, like any temporary file,
    so that a caller who keeps only the document bytes need not close every part;
    :meth:`Attachment.close` releases it earlier.
    """

    def __init__(self, spool: IO[bytes], size: int) -> None:
        self._spool = spool
        self._size = size
        self._lock = threading.Lock()
        weakref.finalize(self, spool.close)

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, position: int, count: int) -> bytes:
        with self._lock:
            self._spool.seek(position)
            return self._spool.read(count)

    def open(self) -> BinaryIO:
        return io.BufferedReader(_SpoolReader(self), buffer_size=CHUNK_SIZE)

    def close(self) -> None:
        self._spool.close()


class _SpoolReader(io.RawIOBase):
    def __init__(self, source: _SpoolSource) -> None:
        super().__init__()
        self._source = source
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        elif whence == io.SEEK_END:
            target = self._source.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        self._position = max(0, target)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._source.read_at(self._position, len(view))
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


class Attachment:
    """One MIME part: a Content-ID, a media type and bytes that are read by streaming.

    Build one with :meth:`from_bytes` or :meth:`from_path`; received parts come from
    :class:`MultipartRelatedParser`. ``content_id`` is kept without angle brackets, as the
    ``cid:`` URL of an ``xop:Include`` names it. An attachment made from a path reads the
    file each time it is sent, so that a retry sends it again without holding it in memory.
    """

    __slots__ = ("_content_id", "_content_type", "_source")

    def __init__(self, *, content_id: str, content_type: str, source: _Source) -> None:
        self._content_id = content_id
        self._content_type = content_type
        self._source = source

    @classmethod
    def from_bytes(
        cls, data: bytes, *, content_type: str = "application/octet-stream", content_id: str | None = None
    ) -> Attachment:
        """Wrap bytes already in memory; a Content-ID like ``<uuid4>@dmp-connector`` is made when none is given."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("Attachment.from_bytes takes bytes")
        return cls(
            content_id=_checked_content_id(content_id),
            content_type=_checked_content_type(content_type),
            source=_BytesSource(bytes(data)),
        )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        content_type: str = "application/octet-stream",
        content_id: str | None = None,
    ) -> Attachment:
        """Refer to a file to send; its size is read now, its content only while sending."""
        return cls(
            content_id=_checked_content_id(content_id),
            content_type=_checked_content_type(content_type),
            source=_PathSource(Path(path)),
        )

    @classmethod
    def _from_spool(cls, spool: IO[bytes], size: int, *, content_id: str, content_type: str) -> Attachment:
        return cls(content_id=content_id, content_type=content_type, source=_SpoolSource(spool, size))

    @property
    def content_id(self) -> str:
        """The Content-ID without angle brackets."""
        return self._content_id

    @property
    def content_type(self) -> str:
        """The part's media type as sent or received (``application/pdf``, ``text/xml`` …)."""
        return self._content_type

    @property
    def size(self) -> int:
        """Length of the data in bytes (after any transfer decoding)."""
        return self._source.size

    def open(self) -> BinaryIO:
        """Return a new reader positioned at the start; close it when done."""
        return self._source.open()

    def read(self) -> bytes:
        """Read the whole data into memory; prefer :meth:`iter_chunks` or :meth:`save` for documents."""
        return b"".join(self.iter_chunks())

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the data in chunks, exactly :attr:`size` bytes in all.

        A file that changed length since it was attached is refused with
        :class:`~dmp_connector.errors.ValidationError`, because the announced Content-Length
        would no longer be true.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        remaining = self.size
        with self.open() as reader:
            while remaining:
                chunk = reader.read(min(chunk_size, remaining))
                if not chunk:
                    raise ValidationError(
                        f"attachment {self._content_id} became shorter while it was being read",
                        hint="do not change a file while it is being sent",
                    )
                remaining -= len(chunk)
                yield chunk
            if reader.read(1):
                raise ValidationError(
                    f"attachment {self._content_id} became longer while it was being read",
                    hint="do not change a file while it is being sent",
                )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Copy the data to ``path`` chunk by chunk (the file is created or truncated)."""
        with Path(path).open("wb") as out:
            for chunk in self.iter_chunks():
                out.write(chunk)

    def sha1(self) -> str:
        """Hex SHA-1 of the data: the ``hash`` slot of XDS metadata is SHA-1."""
        return self._digest(hashlib.sha1(usedforsecurity=False))

    def sha256(self) -> str:
        """Hex SHA-256 of the data."""
        return self._digest(hashlib.sha256())

    def _digest(self, digest: _Digest) -> str:
        for chunk in self.iter_chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        """Release the memory or temporary file behind a received part (a file to send is left alone)."""
        self._source.close()

    def __enter__(self) -> Attachment:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Attachment(content_id={self._content_id!r}, content_type={self._content_type!r}, size={self.size})"


def _checked_content_id(content_id: str | None) -> str:
    if content_id is None:
        return f"{uuid.uuid4()}@dmp-connector"
    value = _strip_angle_brackets(content_id)
    if not _CONTENT_ID_RE.fullmatch(value):
        raise ValidationError(
            "an attachment Content-ID must be visible ASCII without spaces or angle brackets",
            hint="leave content_id out to have one generated",
        )
    return value


def _checked_content_type(content_type: str) -> str:
    if not _HEADER_VALUE_RE.fullmatch(content_type) or "/" not in content_type:
        raise ValidationError(
            "an attachment content type must be a media type in ASCII on one line, such as application/pdf"
        )
    return content_type


def _strip_angle_brackets(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class MtomPayload:
    """A framed MTOM request body: its headers' values and a way to produce its bytes, again if need be.

    ``segments`` holds, in wire order, the framing bytes (boundaries, part headers and the
    root envelope) and the attachments, which are read only while iterating.
    """

    content_type: str
    """Value of the HTTP ``Content-Type`` header (``multipart/related; type="application/xop+xml"; …``)."""
    content_length: int
    """Exact length of the body in bytes, known without reading any attachment."""
    segments: tuple[bytes | Attachment, ...] = field(repr=False)

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield the body chunk by chunk; each call starts again from the first byte (for retries).

        Every chunk but the last is :data:`CHUNK_SIZE` bytes: the small framing segments travel
        inside the data around them, so the transport writes a chunk at a time instead of a TLS
        record and a system call per part header (each write costs the async client a round of
        its TLS layer).
        """
        # Each byte is copied once, into the chunk that carries it (issue 22): a chunk that lies within one
        # piece is a slice of it (the piece itself when it is the whole chunk), one that straddles pieces
        # is joined from views of them. An attachment held in memory is one piece, not read through a reader.
        pending: list[memoryview] = []
        filled = 0
        for pieces in self._pieces():
            for piece in pieces:
                size = len(piece)
                start = 0
                if not filled:
                    if size == CHUNK_SIZE:
                        yield piece
                        continue
                    while size - start >= CHUNK_SIZE:
                        yield piece[start : start + CHUNK_SIZE]
                        start += CHUNK_SIZE
                view = memoryview(piece)
                while start < size:
                    take = min(CHUNK_SIZE - filled, size - start)
                    pending.append(view[start : start + take])
                    filled += take
                    start += take
                    if filled == CHUNK_SIZE:
                        yield b"".join(pending)
                        pending = []
                        filled = 0
                        while size - start >= CHUNK_SIZE:
                            yield piece[start : start + CHUNK_SIZE]
                            start += CHUNK_SIZE
        if pending:
            yield b"".join(pending)

    def _pieces(self) -> Iterator[Iterable[bytes]]:
        """Each segment's bytes: itself, an attachment held in memory as one piece, a file read a chunk at a time."""
        for segment in self.segments:
            if isinstance(segment, bytes):
                yield (segment,)
            else:
                source = segment._source
                yield (source.data(),) if isinstance(source, _BytesSource) else segment.iter_chunks()

    def _writes(self) -> Iterator[bytes]:
        """The body as the SOAP clients hand it to their transport: the same bytes in fewer, uncopied pieces.

        A piece over :data:`CHUNK_SIZE` bytes — an attachment held in memory, a large envelope — goes
        whole, the very bytes object (the transport slices its writes without copying); smaller ones
        (boundaries, part headers, small attachments, a file read :data:`CHUNK_SIZE` at a time) are
        joined with their neighbours into pieces of at most :data:`CHUNK_SIZE`. :meth:`iter_bytes`
        copies every byte once into its chunks, and each chunk costs a pass through httpx, httpcore
        and h11: some 0.25 M instructions more per 270 kB deposit.
        """
        pending: list[bytes] = []
        filled = 0
        for pieces in self._pieces():
            for piece in pieces:
                size = len(piece)
                if pending and filled + size > CHUNK_SIZE:
                    yield b"".join(pending)
                    pending, filled = [], 0
                if size > CHUNK_SIZE:
                    yield piece
                elif size:
                    pending.append(piece)
                    filled += size
        if pending:
            yield b"".join(pending)

    async def _awrites(self) -> AsyncIterator[bytes]:
        """:meth:`_writes` for an async transport (a file is read as :meth:`aiter_bytes` reads it)."""
        for piece in self._writes():
            yield piece

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The same chunks for an async transport.

        Attachment files are read synchronously, 64 KiB at a time: each read is short and the
        transport awaits the socket between chunks, so the event loop is not held for long.
        """
        for chunk in self.iter_bytes():
            yield chunk


def encode_mtom(
    envelope: etree._Element | bytes,
    attachments: Sequence[Attachment],
    *,
    boundary: str | None = None,
    action: str | None = None,
) -> MtomPayload:
    """Frame ``envelope`` and ``attachments`` as an MTOM/XOP ``multipart/related`` body.

    The envelope must already refer to each attachment with ``xop:Include`` (see
    :func:`~dmp_connector.soap.envelope.xop_include`). When ``action`` is given it is added,
    as the SOAP 1.2 binding of ``application/soap+xml`` wants, to ``start-info`` and to the
    root part's ``type``: ``type="application/soap+xml; action=\\"urn:ihe:iti:2007:…\\""``.
    ``envelope`` may also be given already serialised, as UTF-8 bytes.
    """
    boundary = boundary if boundary is not None else f"MIMEBoundary_{uuid.uuid4().hex}"
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise ValidationError("an MTOM boundary must be 1 to 70 characters allowed by RFC 2046")
    soap_type = "application/soap+xml"
    if action is not None:
        if not action or not _PARAM_VALUE_RE.fullmatch(action):
            raise ValidationError("the SOAP action must be printable ASCII without quotes or backslashes")
        soap_type = f'application/soap+xml; action=\\"{action}\\"'

    content_ids = [ROOT_CONTENT_ID]
    for attachment in attachments:
        if not isinstance(attachment, Attachment):
            raise TypeError("encode_mtom takes Attachment objects")
        content_ids.append(attachment.content_id)
    if len(set(content_ids)) != len(content_ids):
        raise ValidationError("two MTOM parts share the same Content-ID", hint="each attachment needs its own id")

    root = envelope if isinstance(envelope, bytes) else to_bytes(envelope)
    delimiter = b"--" + boundary.encode("ascii")
    if delimiter in root:
        raise ValidationError("the MTOM boundary occurs in the envelope", hint="leave boundary out to get a random one")

    segments: list[bytes | Attachment] = [
        delimiter
        + b"\r\n"
        + _part_headers(
            ("Content-Type", f'application/xop+xml; charset=UTF-8; type="{soap_type}"'),
            ("Content-Transfer-Encoding", "8bit"),
            ("Content-ID", f"<{ROOT_CONTENT_ID}>"),
        )
        + root
    ]
    for attachment in attachments:
        segments.append(
            b"\r\n"
            + delimiter
            + b"\r\n"
            + _part_headers(
                ("Content-Type", attachment.content_type),
                ("Content-Transfer-Encoding", "binary"),
                ("Content-ID", f"<{attachment.content_id}>"),
            )
        )
        segments.append(attachment)
    segments.append(b"\r\n" + delimiter + b"--\r\n")

    length = sum(len(s) if isinstance(s, bytes) else s.size for s in segments)
    content_type = (
        f'multipart/related; type="application/xop+xml"; start="<{ROOT_CONTENT_ID}>"; '
        f'start-info="{soap_type}"; boundary="{boundary}"'
    )
    return MtomPayload(content_type=content_type, content_length=length, segments=tuple(segments))


def _part_headers(*headers: tuple[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii") + b"\r\n"


# --------------------------------------------------------------------------- decoding


def is_multipart(content_type: str) -> bool:
    """Tell whether an HTTP Content-Type announces a multipart body (MTOM answers are ``multipart/related``)."""
    return content_type.partition(";")[0].strip().lower().startswith("multipart/")


@dataclass(frozen=True, eq=False)
class MtomMessageParts:
    """What a multipart answer held: the root part's bytes and the other parts by Content-ID."""

    root: bytes
    """The start part (the SOAP envelope), or the first part when the Content-Type names no start."""
    attachments: dict[str, Attachment]
    """The other parts, keyed by Content-ID without angle brackets."""
    root_content_type: str = "application/xop+xml"
    """The root part's own Content-Type, as received."""

    def close(self) -> None:
        """Release the temporary files of every attachment."""
        for attachment in self.attachments.values():
            attachment.close()

    def __enter__(self) -> MtomMessageParts:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _State(Enum):
    PREAMBLE = 1
    AFTER_DELIMITER = 2
    HEADERS = 3
    BODY = 4
    EPILOGUE = 5


class _Base64Decoder:
    """Decodes base64 that arrives in arbitrary pieces, holding back an incomplete quad."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        cleaned = self._pending + data.translate(None, b" \t\r\n")
        usable = len(cleaned) - len(cleaned) % 4
        self._pending = cleaned[usable:]
        return self._decode(cleaned[:usable])

    def finish(self) -> None:
        if self._pending:
            raise MalformedResponseError("a base64-encoded MTOM part ends in the middle of a base64 group")

    @staticmethod
    def _decode(data: bytes) -> bytes:
        try:
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            raise MalformedResponseError("a base64-encoded MTOM part is not valid base64") from exc


class _PartSink:
    """Receives one part's body: the root in memory under its limit, any other part in a spool file."""

    def __init__(
        self,
        *,
        is_root: bool,
        content_id: str,
        content_type: str,
        encoding: str,
        max_root_bytes: int,
        max_part_bytes: int | None,
        spool: int,
    ) -> None:
        self.is_root = is_root
        self.content_id = content_id
        self.content_type = content_type
        self._max_root_bytes = max_root_bytes
        self._max_part_bytes = max_part_bytes
        self._decoder = _Base64Decoder() if encoding == "base64" else None
        self._memory = bytearray()
        self._spool: IO[bytes] | None = None if is_root else tempfile.SpooledTemporaryFile(max_size=spool)  # noqa: SIM115
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.feed(data)
        if not data:
            return
        self.size += len(data)
        if self._spool is not None:
            if self._max_part_bytes is not None and self.size > self._max_part_bytes:
                raise UnsafeXmlError(
                    f"an attachment of the multipart answer is over the {self._max_part_bytes}-byte limit",
                    hint="raise xml.max_attachment_bytes if documents this large are expected",
                )
            self._spool.write(data)
            return
        if self.size > self._max_root_bytes:
            raise UnsafeXmlError(
                f"the SOAP part of the multipart answer is over the {self._max_root_bytes}-byte limit",
                hint="raise XmlLimits.max_bytes if this size is legitimate",
            )
        self._memory += data

    def finish(self) -> None:
        if self._decoder is not None:
            self._decoder.finish()

    def root_bytes(self) -> bytes:
        return bytes(self._memory)

    def attachment(self) -> Attachment:
        assert self._spool is not None
        self._spool.flush()
        self._spool.seek(0)
        spool, self._spool = self._spool, None
        return Attachment._from_spool(
            spool, self.size, content_id=self.content_id, content_type=self.content_type or "application/octet-stream"
        )

    def discard(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._memory = bytearray()


class MultipartRelatedParser:
    """Incremental reader of a ``multipart/related`` (MTOM/XOP) answer.

    Feed the body as it arrives with :meth:`feed`, then call :meth:`close` for the parts.
    The whole body is never held: the parser keeps only a tail as long as the boundary
    delimiter, so that a delimiter split across two chunks is still found. The root part is
    kept in memory up to ``max_root_bytes`` (:class:`~dmp_connector.errors.UnsafeXmlError`
    beyond); other parts go to temporary files that stay in memory up to ``spool_threshold``
    bytes each. ``max_part_bytes`` bounds each of those other parts (after base64 decoding) and
    ``max_total_bytes`` the whole body as received; both raise ``UnsafeXmlError`` as soon as they
    are passed, before the rest of the body is read.

    Parts may use ``Content-Transfer-Encoding`` binary, 8bit or 7bit (taken as they are) or
    base64 (decoded while streaming); anything else is refused.
    """

    def __init__(
        self,
        content_type: str,
        *,
        max_root_bytes: int,
        spool_threshold: int = _DEFAULT_SPOOL_THRESHOLD,
        max_total_bytes: int | None = None,
        max_part_bytes: int | None = None,
    ) -> None:
        media_type, params = _parse_content_type(content_type)
        if media_type != "multipart/related":
            raise MalformedResponseError(
                f"expected a multipart/related (MTOM) answer, got {media_type or 'no media type'}"
            )
        boundary = params.get("boundary", "")
        if not boundary:
            raise MalformedResponseError("the multipart answer's Content-Type has no boundary parameter")
        try:
            encoded = boundary.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedResponseError("the multipart boundary is not ASCII") from exc
        if len(encoded) > 200:
            raise MalformedResponseError("the multipart boundary is longer than 200 characters")
        self._delimiter = b"\r\n--" + encoded
        start = params.get("start")
        self._start = _strip_angle_brackets(start) if start else None
        self._max_root_bytes = max_root_bytes
        self._spool_threshold = spool_threshold
        self._max_total_bytes = max_total_bytes
        self._max_part_bytes = max_part_bytes
        # A leading CRLF lets the first delimiter, which may open the body, match like the others.
        self._buffer = bytearray(b"\r\n")
        self._state = _State.PREAMBLE
        self._total = 0
        self._part_count = 0
        self._part: _PartSink | None = None
        self._root: _PartSink | None = None
        self._attachments: dict[str, Attachment] = {}
        self._seen_ids: set[str] = set()
        self._done = False

    def feed(self, chunk: bytes | memoryview) -> None:
        """Take the next piece of the body, of any size (it is copied: the caller may reuse it)."""
        if self._done:
            raise RuntimeError("MultipartRelatedParser.feed called after close() or abort()")
        if not chunk:
            return
        self._total += len(chunk)
        try:
            if self._max_total_bytes is not None and self._total > self._max_total_bytes:
                raise UnsafeXmlError(
                    f"the multipart answer is over the {self._max_total_bytes}-byte limit",
                    hint="raise the answer size limit if documents this large are expected",
                )
            if self._state is _State.EPILOGUE:
                return
            self._buffer += chunk
            self._process()
        except DmpConnectorError:
            self.abort()
            raise

    def close(self) -> MtomMessageParts:
        """Finish reading and return the parts; refuse a body cut short or without its root."""
        if self._done:
            raise RuntimeError("MultipartRelatedParser.close called twice or after abort()")
        state = self._state
        root = self._root
        if state is _State.PREAMBLE:
            self.abort()
            raise MalformedResponseError("the multipart answer holds no boundary delimiter")
        if state is not _State.EPILOGUE:
            self.abort()
            raise MalformedResponseError(
                "the multipart answer ends without its closing boundary",
                hint="the answer was probably cut short; the request may be repeated if it is safe to",
            )
        if root is None:
            self.abort()
            if self._start is not None:
                raise MalformedResponseError(
                    f"no part of the multipart answer has the start Content-ID <{self._start}>"
                )
            raise MalformedResponseError("the multipart answer holds no part")
        self._done = True
        return MtomMessageParts(
            root=root.root_bytes(),
            attachments=dict(self._attachments),
            root_content_type=root.content_type,
        )

    def abort(self) -> None:
        """Stop reading and release every temporary file (after a transport error, say)."""
        self._done = True
        if self._part is not None:
            self._part.discard()
            self._part = None
        for attachment in self._attachments.values():
            attachment.close()
        self._attachments.clear()
        self._buffer.clear()

    def _process(self) -> None:
        buffer = self._buffer
        delimiter = self._delimiter
        while True:
            if self._state is _State.PREAMBLE:
                index = buffer.find(delimiter)
                if index < 0:
                    del buffer[: max(0, len(buffer) - len(delimiter) + 1)]
                    return
                del buffer[: index + len(delimiter)]
                self._state = _State.AFTER_DELIMITER
            elif self._state is _State.AFTER_DELIMITER:
                if len(buffer) < 2:
                    return
                if buffer.startswith(b"--"):
                    self._state = _State.EPILOGUE
                    buffer.clear()
                    return
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > _MAX_BOUNDARY_LINE:
                        raise MalformedResponseError("a multipart boundary line does not end")
                    return
                if buffer[:end].strip(b" \t"):
                    raise MalformedResponseError("unexpected characters follow a multipart boundary delimiter")
                del buffer[: end + 2]
                self._state = _State.HEADERS
            elif self._state is _State.HEADERS:
                if buffer.startswith(b"\r\n"):
                    block = b""
                    del buffer[:2]
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buffer) > _MAX_PART_HEADER_BYTES:
                            raise MalformedResponseError(
                                f"the headers of a multipart part exceed {_MAX_PART_HEADER_BYTES} bytes"
                            )
                        return
                    block = bytes(buffer[:end])
                    del buffer[: end + 4]
                self._begin_part(_parse_part_headers(block))
                self._state = _State.BODY
            elif self._state is _State.BODY:
                part = self._part
                assert part is not None
                index = buffer.find(delimiter)
                if index < 0:
                    keep = len(delimiter) - 1
                    if len(buffer) > keep:
                        part.write(_head(buffer, len(buffer) - keep))
                        del buffer[: len(buffer) - keep]
                    return
                part.write(_head(buffer, index))
                del buffer[: index + len(delimiter)]
                self._end_part(part)
                self._state = _State.AFTER_DELIMITER
            else:  # pragma: no cover - EPILOGUE returns before reaching here
                return

    def _begin_part(self, headers: dict[str, str]) -> None:
        content_id = _strip_angle_brackets(headers.get("content-id", ""))
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        if encoding not in {"binary", "8bit", "7bit", "base64"}:
            shown = encoding[:40]
            raise MalformedResponseError(f"a multipart part uses Content-Transfer-Encoding {shown!r}, not supported")
        is_root = self._part_count == 0 if self._start is None else content_id == self._start
        if not is_root and not content_id:
            raise MalformedResponseError("an attachment part of the multipart answer has no Content-ID")
        if content_id and content_id in self._seen_ids:
            raise MalformedResponseError(f"two parts of the multipart answer share the Content-ID <{content_id}>")
        self._part_count += 1
        self._seen_ids.add(content_id)
        self._part = _PartSink(
            is_root=is_root,
            content_id=content_id,
            content_type=headers.get("content-type", "").strip(),
            encoding=encoding,
            max_root_bytes=self._max_root_bytes,
            max_part_bytes=self._max_part_bytes,
            spool=self._spool_threshold,
        )

    def _end_part(self, part: _PartSink) -> None:
        part.finish()
        self._part = None
        if part.is_root:
            self._root = part
        else:
            self._attachments[part.content_id] = part.attachment()


def decode_mtom(
    content_type: str,
    body: bytes,
    *,
    limits: XmlLimits = DEFAULT_LIMITS,
    spool_threshold: int = _DEFAULT_SPOOL_THRESHOLD,
    max_total_bytes: int | None = None,
) -> MtomMessageParts:
    """Split a whole multipart body already in memory.

    The root is bounded by ``limits.max_bytes``, each other part by ``limits.max_attachment_bytes``.
    """
    parser = MultipartRelatedParser(
        content_type,
        max_root_bytes=limits.max_bytes,
        spool_threshold=spool_threshold,
        max_total_bytes=max_total_bytes,
        max_part_bytes=limits.max_attachment_bytes,
    )
    with memoryview(body) as view:
        for offset in range(0, len(view), CHUNK_SIZE):
            # A view of the chunk, not a copy: feed only appends it to its buffer.
            parser.feed(view[offset : offset + CHUNK_SIZE])
    return parser.close()


def _head(buffer: bytearray, size: int) -> bytes:
    """``bytes(buffer[:size])`` in one copy instead of two; the view is released before the caller cuts the buffer."""
    with memoryview(buffer) as view:
        return bytes(view[:size])


def _parse_part_headers(block: bytes) -> dict[str, str]:
    """Part headers as a dict with lower-case names; folded lines are joined, the first of a name wins."""
    headers: dict[str, str] = {}
    last: str | None = None
    for line in block.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        if line[0] in " \t":
            if last is None:
                raise MalformedResponseError("the headers of a multipart part start with a continuation line")
            headers[last] = f"{headers[last]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise MalformedResponseError("a multipart part has a header line without a name")
        if name in headers:
            last = None
            continue
        headers[name] = value.strip()
        last = name
    return headers


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lower-case media type and its parameters (names lower-cased).

    Quoted values may hold ``;`` and backslash-escaped quotes, as CXF's ``start-info`` does.
    """
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        if i >= n:
            break
        equals = rest.find("=", i)
        semicolon = rest.find(";", i)
        if equals < 0 or 0 <= semicolon < equals:
            i = semicolon if semicolon >= 0 else n  # a parameter without a value: skipped
            continue
        name = rest[i:equals].strip().lower()
        i = equals + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            if i >= n:
                raise MalformedResponseError("the Content-Type has an unterminated quoted parameter")
            i += 1
            param = "".join(chars)
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            param = rest[i:end].strip()
            i = end
        params.setdefault(name, param)
    return media_type.strip().lower(), params
