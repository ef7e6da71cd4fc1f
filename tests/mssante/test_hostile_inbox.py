"""Hostile mail cannot stop an inbox: bad headers, deep nesting and many parts are per-message errors."""

from __future__ import annotations

import time

import pytest

from dmp_connector.audit import MemorySink
from dmp_connector.config import Settings
from dmp_connector.mssante import MimeLimits, UnreadableMessageError, parse_message
from dmp_connector.mssante._imap import parse_fetch_summaries
from dmp_connector.mssante._mime import check_structure
from dmp_connector.sandbox.mssante import SandboxMailOperator, SandboxTokenProvider

from .conftest import APP_MAILBOX, MODES, PRO_MAILBOX
from .conftest import ClientDriver as Driver
from .conftest import open_client as open_driver

CRLF_FROM = (
    b"From: =?utf-8?q?Dr_Evil=0D=0ABcc=3A_x?= <evil@hopital.mssante.fr>\r\n"
    b"To: " + PRO_MAILBOX.encode() + b"\r\n"
    b"Subject: =?utf-8?q?Compte_rendu=1B[2J=0D=0Afake_line?=\r\n"
    b"Message-ID: <crlf@hopital.mssante.fr>\r\n\r\nhello\r\n"
)
GOOD = (
    b"From: Dr Martin <martin@hopital.mssante.fr>\r\nTo: " + PRO_MAILBOX.encode() + b"\r\n"
    b"Subject: ok\r\nMessage-ID: <good@hopital.mssante.fr>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\nContent-Type: text/plain\r\n\r\n-- \r\nsignature line starting with dashes\r\n--not-a-boundary\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b'Subject: inner\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n'
    b"--in\r\nContent-Type: text/plain\r\n\r\ninner\r\n--in--\r\n--outer--\r\n"
)


def nested(levels: int) -> bytes:
    out = [
        b"From: a@hopital.mssante.fr\r\nSubject: deep\r\nMessage-ID: <deep@hopital.mssante.fr>\r\nMIME-Version: 1.0\r\n"
    ]
    out.extend(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(levels))
    out.append(b"Content-Type: text/plain\r\n\r\nhi\r\n")
    out.extend(b"--b%d--\r\n" % i for i in reversed(range(levels)))
    return b"".join(out)


def many_parts(count: int) -> bytes:
    head = (
        b"From: a@hopital.mssante.fr\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
    )
    return head + b"--z\r\nContent-Type: text/plain\r\n\r\nx\r\n" * count + b"--z--\r\n"


def test_the_structure_scan_counts_real_parts_and_depth_only() -> None:
    check_structure(
        GOOD, MimeLimits(max_depth=3, max_parts=4)
    )  # 4 parts: top, text, rfc822 (+ its alternative) , inner text
    with pytest.raises(UnreadableMessageError) as deep:
        check_structure(GOOD, MimeLimits(max_depth=2))
    assert deep.value.reason == "depth"
    with pytest.raises(UnreadableMessageError) as wide:
        check_structure(GOOD, MimeLimits(max_parts=3))
    assert wide.value.reason == "parts"
    # the dashed body lines are not delimiters: 60 of them do not make 60 parts
    body = b"-- \r\n--x\r\n" * 30
    check_structure(b"Subject: s\r\n\r\n" + body, MimeLimits(max_parts=1))
    with pytest.raises(UnreadableMessageError) as header:
        check_structure(b"Subject: " + b"a" * 5000 + b"\r\n\r\n", MimeLimits(max_header_bytes=4096))
    assert header.value.reason == "header"


def test_a_message_1000_levels_deep_is_one_typed_error_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(UnreadableMessageError) as caught:
        parse_message(nested(1000), uid=7, folder="INBOX")
    assert time.monotonic() - started < 2  # refused by the scan, the email package never recursed
    assert caught.value.reason == "depth" and caught.value.uid == 7 and "uid 7" in caught.value.message
    assert parse_message(nested(5), uid=8).text == "hi"  # within the bound it reads


def test_100000_tiny_parts_are_refused_before_parsing() -> None:
    raw = many_parts(100_000)
    started = time.monotonic()
    with pytest.raises(UnreadableMessageError) as caught:
        parse_message(raw, uid=9)
    assert time.monotonic() - started < 5
    assert caught.value.reason == "parts"
    assert len(parse_message(many_parts(50), uid=10).attachments) == 0  # 50 parts read as usual


def test_a_from_display_name_with_an_encoded_crlf_is_read() -> None:
    mail = parse_message(CRLF_FROM, uid=3)
    assert mail.sender == "evil@hopital.mssante.fr"
    assert mail.subject is not None and "\r\n" in mail.subject  # decoded as sent; display escapes it


def test_the_listing_keeps_a_header_it_cannot_decode_as_a_per_message_error() -> None:
    data = [
        (
            b"1 (UID 41 FLAGS () RFC822.SIZE 10 BODY[HEADER.FIELDS (SUBJECT FROM)] {10}",
            CRLF_FROM.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
        ),
        b")",
        (
            b"2 (UID 42 FLAGS () RFC822.SIZE 10 BODY[HEADER.FIELDS (SUBJECT FROM)] {10}",
            b"Subject: fine\r\n\r\n",
        ),
        b")",
    ]
    bad, good = parse_fetch_summaries(data, "INBOX", uid_validity=5)
    assert bad.uid == 41 and isinstance(bad.error, UnreadableMessageError) and bad.error.uid == 41
    assert "From" in bad.error.message and bad.sender is not None and "evil@hopital.mssante.fr" in bad.sender
    assert bad.uid_validity == 5
    assert good.error is None and good.subject == "fine"


@MODES
def test_hostile_mail_does_not_stop_the_inbox(
    mode: str,
    drivers: list[Driver],
    pro_settings: Settings,
    pro_tokens: SandboxTokenProvider,
    mail_operator: SandboxMailOperator,
) -> None:
    # the sandbox store (pymap) itself recurses on 1,000 levels: 100 is over our bound and within its reach
    for raw in (CRLF_FROM, nested(100), many_parts(5000), GOOD):
        mail_operator.deliver(PRO_MAILBOX, raw)
    sink = MemorySink()
    reader = open_driver(drivers, mode, pro_settings, token_provider=pro_tokens, audit=[sink])
    listed = reader.inbox()
    assert len(listed) == 4
    crlf, deep, wide, good = listed
    assert crlf.error is not None and crlf.error.reason == "header" and deep.error is None and good.error is None
    assert reader.fetch(crlf.uid).sender == "evil@hopital.mssante.fr"
    assert reader.fetch(good.uid).text is not None
    for summary, reason in ((deep, "depth"), (wide, "parts")):
        with pytest.raises(UnreadableMessageError) as caught:
            reader.fetch(summary.uid)
        assert caught.value.reason == reason and caught.value.uid == summary.uid
    fetches = len([e for e in sink.events if e.operation == "fetch"])
    # the next poll: the poison messages are flagged in the listing and not downloaded again
    again = reader.inbox()
    assert [s.error.reason if s.error else None for s in again] == ["header", "depth", "parts", None]
    with pytest.raises(UnreadableMessageError, match="not downloaded again"):
        reader.fetch(deep.uid)
    assert len([e for e in sink.events if e.operation == "fetch"]) == fetches
    assert APP_MAILBOX  # the other mailbox is untouched
