"""MtomPayload.iter_bytes copies each byte once (issue 22): the same chunks as the buffered loop it replaced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp_connector.soap import Attachment
from dmp_connector.soap.mtom import CHUNK_SIZE, MtomPayload


def reference_chunks(payload: MtomPayload) -> Iterator[bytes]:
    """The loop iter_bytes used before: a bytearray buffer, every piece read through the attachment's reader."""
    buffer = bytearray()
    for segment in payload.segments:
        pieces = (segment,) if isinstance(segment, bytes) else segment.iter_chunks()
        for piece in pieces:
            if not buffer and len(piece) == CHUNK_SIZE:
                yield piece
                continue
            buffer += piece
            while len(buffer) >= CHUNK_SIZE:
                yield bytes(buffer[:CHUNK_SIZE])
                del buffer[:CHUNK_SIZE]
    if buffer:
        yield bytes(buffer)


# Sizes around the chunk size and its multiples, where the two loops could part.
sizes = st.one_of(
    st.integers(0, 300),
    st.sampled_from([CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE - 7]),
    st.integers(0, 4 * CHUNK_SIZE),
)


def _bytes(size: int, seed: int) -> bytes:
    return (
        bytes((seed + i * 7) % 251 for i in range(size))
        if size < 1024
        else (bytes(range(251)) * (size // 251 + 1))[:size]
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.lists(st.tuples(st.sampled_from(["bytes", "memory", "file"]), sizes), min_size=1, max_size=6))
def test_the_chunks_are_the_buffered_loops(layout: list[tuple[str, int]], tmp_path: Path) -> None:
    segments: list[bytes | Attachment] = []
    for n, (kind, size) in enumerate(layout):
        data = _bytes(size, n)
        if kind == "bytes":
            segments.append(data)
        elif kind == "memory":
            segments.append(Attachment.from_bytes(data, content_id=f"m{n}@x"))
        else:
            path = tmp_path / f"part{n}"
            path.write_bytes(data)
            segments.append(Attachment.from_path(path, content_id=f"f{n}@x"))
    total = sum(len(s) if isinstance(s, bytes) else s.size for s in segments)
    payload = MtomPayload(content_type="multipart/related", content_length=total, segments=tuple(segments))
    chunks = list(payload.iter_bytes())
    assert chunks == list(reference_chunks(payload))
    assert all(type(chunk) is bytes for chunk in chunks)
    assert list(payload.iter_bytes()) == chunks  # again, for a retry


def test_a_closed_attachment_fails_where_it_did() -> None:
    attachment = Attachment.from_bytes(b"x" * 10, content_id="a@x")
    attachment.close()
    payload = MtomPayload(content_type="m", content_length=CHUNK_SIZE + 20, segments=(b"h" * CHUNK_SIZE, attachment))
    new, old = payload.iter_bytes(), reference_chunks(payload)
    assert next(new) == next(old)
    with pytest.raises(ValueError, match="closed attachment"):
        next(old)
    with pytest.raises(ValueError, match="closed attachment"):
        next(new)
