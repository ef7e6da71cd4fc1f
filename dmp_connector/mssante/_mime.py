"""A linear scan of a received message's structure before the email package reads it.

The standard library's MIME parser recurses once per nesting level and does quadratic-ish
work on many parts: a message nested 1,000 levels deep raises ``RecursionError`` and
100,000 tiny parts take minutes. Any trust-space user can send either, so the structure is
measured first, line by line, with no recursion: nesting depth, number of parts and the
size of each header block. Over a bound, the message is refused with
:class:`UnreadableMessageError` and the email package never sees it.

The scan follows the delimiters the message declares (``boundary=``) the way a MIME parser
does, so an ordinary body line starting with ``--`` is not counted as a part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dmp_connector.errors import MalformedResponseError

__all__ = ["MimeLimits", "UnreadableMessageError", "check_structure"]

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.IGNORECASE)
_CONTENT_TYPE = re.compile(rb"^content-type\s*:\s*([a-z0-9!#$&^_.+-]+)/", re.IGNORECASE | re.MULTILINE)


class UnreadableMessageError(MalformedResponseError):
    """A received message that cannot be read safely: too deep, too many parts, a header too
    large, or MIME the email package refuses. ``uid`` and ``folder`` say which one, when known;
    ``reason`` is a short fixed label (``depth``, ``parts``, ``header``, ``mime``) — never content."""

    def __init__(
        self, message: str, *, reason: str, uid: int | None = None, folder: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(
            message, hint=hint or "keep the raw message for the operator and move it out of the inbox (move())"
        )
        self.reason = reason
        self.uid = uid
        self.folder = folder


@dataclass(frozen=True)
class MimeLimits:
    """Bounds on a received message's structure; the defaults are far above real MSSanté mail
    (an XDM mail has a handful of parts, two levels) and far below what hurts the parser."""

    max_depth: int = 32
    """Deepest nesting of multipart and message/* parts."""
    max_parts: int = 1000
    """Most MIME parts in one message."""
    max_header_bytes: int = 256 * 1024
    """Largest header block (the top one or a part's)."""


def _declared(block: bytes) -> tuple[bytes | None, bool]:
    """(boundary declared, is a message/* part) for one header block."""
    match = _CONTENT_TYPE.search(block)
    kind = match.group(1).lower() if match else b""
    boundary = None
    if kind == b"multipart":
        found = _BOUNDARY.search(block)
        if found is not None:
            boundary = (found.group(1) or found.group(2)).rstrip()
    return boundary, kind == b"message"


def check_structure(raw: bytes, limits: MimeLimits, *, uid: int | None = None, folder: str | None = None) -> None:
    """Refuse ``raw`` when its structure goes over ``limits``; linear in its size, no recursion."""

    def refuse(reason: str, what: str) -> UnreadableMessageError:
        where = f"message uid {uid}" if uid is not None else "the message"
        return UnreadableMessageError(f"{where} is not read: {what}", reason=reason, uid=uid, folder=folder)

    # The stack holds open containers: a multipart's boundary, or None for a message/* part.
    stack: list[bytes | None] = []
    open_at: dict[bytes, int] = {}
    in_headers = True
    block: list[bytes] = []
    block_size = 0
    parts = 1
    for line in raw.splitlines():
        if in_headers:
            if line.strip():
                block_size += len(line) + 2
                if block_size > limits.max_header_bytes:
                    raise refuse("header", f"a header block is over {limits.max_header_bytes} bytes")
                block.append(line)
                continue
            boundary, is_message = _declared(b"\n".join(block))
            block, block_size = [], 0
            if boundary is not None:
                stack.append(boundary)
                open_at[boundary] = len(stack) - 1
                in_headers = False
            elif is_message:
                stack.append(None)  # its body is another header block
            else:
                in_headers = False
            if len(stack) > limits.max_depth:
                raise refuse("depth", f"its parts are nested over {limits.max_depth} levels deep")
            continue
        if not line.startswith(b"--") or not open_at:
            continue
        text = line[2:].rstrip()
        closing = text.endswith(b"--") and text[:-2] in open_at
        name = text[:-2] if closing else text
        level = open_at.get(name)
        if level is None:
            continue
        for gone in stack[level + 1 :]:
            if gone is not None:
                open_at.pop(gone, None)
        del stack[level + 1 :]
        if closing:
            stack.pop()
            open_at.pop(name, None)
            continue
        parts += 1
        if parts > limits.max_parts:
            raise refuse("parts", f"it has over {limits.max_parts} MIME parts")
        in_headers = True
