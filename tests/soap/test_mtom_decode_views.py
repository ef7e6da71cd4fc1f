"""decode_mtom feeds views of the body, and a part's bytes are cut in one copy (issue 22, the sandbox's CPU).

Compared with the loop decode_mtom ran before (each chunk copied to ``bytes`` before ``feed``, each
part's piece copied twice, ``bytes(buffer[:n])``): the same parts, or the same error, for bodies
whose parts straddle the chunk size, base64 parts, and bodies cut short or damaged anywhere.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.errors import DmpConnectorError
from dmp_connector.soap import Attachment, MultipartRelatedParser, decode_mtom
from dmp_connector.soap import mtom as mtom_mod
from dmp_connector.soap.mtom import CHUNK_SIZE, MtomMessageParts
from dmp_connector.xml import DEFAULT_LIMITS

BOUNDARY = "MIMEBoundary_views"
CONTENT_TYPE = (
    f'multipart/related; type="application/xop+xml"; boundary="{BOUNDARY}"; start="<root@x>"; '
    'start-info="application/soap+xml"'
)


def _former_decode(content_type: str, body: bytes) -> MtomMessageParts:
    """decode_mtom before issue 22n: every chunk copied to bytes before it is fed."""
    parser = MultipartRelatedParser(
        content_type, max_root_bytes=DEFAULT_LIMITS.max_bytes, max_part_bytes=DEFAULT_LIMITS.max_attachment_bytes
    )
    view = memoryview(body)
    for offset in range(0, len(view), CHUNK_SIZE):
        parser.feed(bytes(view[offset : offset + CHUNK_SIZE]))
    return parser.close()


def _outcome(decode: object, body: bytes) -> object:
    try:
        parts = decode(CONTENT_TYPE, body)  # type: ignore[operator]
    except DmpConnectorError as exc:
        return (type(exc), exc.message, exc.hint)
    try:
        return (
            parts.root,
            parts.root_content_type,
            {cid: (a.read(), a.content_type, a.size) for cid, a in parts.attachments.items()},
        )
    finally:
        parts.close()


def _body(parts: list[tuple[bytes, bool]]) -> bytes:
    delimiter = f"--{BOUNDARY}".encode()
    pieces = [
        delimiter,
        b'\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\nContent-ID: <root@x>\r\n\r\n',
        b"<root/>",
    ]
    for number, (data, as_base64) in enumerate(parts):
        encoding = b"base64" if as_base64 else b"binary"
        content = base64.encodebytes(data) if as_base64 else data
        pieces += [
            b"\r\n",
            delimiter,
            b"\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: " + encoding,
            f"\r\nContent-ID: <part{number}@x>\r\n\r\n".encode(),
            content,
        ]
    pieces += [b"\r\n", delimiter, b"--\r\n"]
    return b"".join(pieces)


_SIZES = st.one_of(
    st.integers(0, 200),
    st.sampled_from([CHUNK_SIZE - 40, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 3]),
    st.integers(0, 3 * CHUNK_SIZE),
)


def _data(size: int, seed: int) -> bytes:
    near_delimiters = f"\r\n--{BOUNDARY[:-1]}\r\n--".encode()
    base = bytes((seed * 31 + i) % 256 for i in range(251)) + near_delimiters
    return (base * (size // len(base) + 1))[:size]


@settings(max_examples=40, deadline=None)
@given(
    layout=st.lists(st.tuples(_SIZES, st.booleans()), max_size=3),
    damage=st.one_of(st.none(), st.tuples(st.sampled_from(["cut", "flip"]), st.floats(0, 1))),
)
def test_decoding_views_gives_what_decoding_copies_gave(
    layout: list[tuple[int, bool]], damage: tuple[str, float] | None
) -> None:
    body = _body([(_data(size, n), as_base64) for n, (size, as_base64) in enumerate(layout)])
    if damage is not None:
        kind, where = damage
        at = min(int(where * len(body)), len(body) - 1)
        body = body[:at] if kind == "cut" else body[:at] + bytes([body[at] ^ 0x5A]) + body[at + 1 :]
    assert _outcome(decode_mtom, body) == _outcome(_former_decode, body)


def test_a_large_part_across_chunks_is_read_whole() -> None:
    data = _data(5 * CHUNK_SIZE + 17, 3)
    parts = decode_mtom(CONTENT_TYPE, _body([(data, False), (data, True)]))
    assert parts.attachments["part0@x"].read() == data
    assert parts.attachments["part1@x"].read() == data
    parts.close()


def test_feed_copies_what_it_is_given() -> None:
    """decode_mtom may feed views because feed copies each chunk: a chunk changed after feed changes nothing."""
    body = _body([(_data(3000, 1), False)])
    parser = MultipartRelatedParser(CONTENT_TYPE, max_root_bytes=DEFAULT_LIMITS.max_bytes)
    for offset in range(0, len(body), 100):
        chunk = bytearray(body[offset : offset + 100])
        parser.feed(memoryview(chunk))
        chunk[:] = b"\x00" * len(chunk)  # the caller reuses its buffer
    parts = parser.close()
    assert parts.attachments["part0@x"].read() == _data(3000, 1)
    assert parts.root == b"<root/>"


def test_the_head_is_one_copy_and_lets_the_buffer_be_cut() -> None:
    buffer = bytearray(b"abcdef")
    head = mtom_mod._head(buffer, 4)
    assert head == b"abcd" and type(head) is bytes
    del buffer[:4]  # BufferError if the view were still held
    assert buffer == b"ef"


def test_an_attachment_is_the_same_object_kind_as_before() -> None:
    parts = decode_mtom(CONTENT_TYPE, _body([(b"%PDF-1.4 x", False)]))
    assert isinstance(parts.attachments["part0@x"], Attachment)
    parts.close()


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1])
def test_bodies_around_the_chunk_size(size: int) -> None:
    body = _body([(_data(size, 7), False)])
    assert _outcome(decode_mtom, body) == _outcome(_former_decode, body)
