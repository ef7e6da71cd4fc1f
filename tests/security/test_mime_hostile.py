"""Hostile received mail: headers the standard library cannot parse, and error messages that quote input.

Found by the fuzzing in ``test_fuzz.py``: ``email``'s strict header parser raises ``IndexError``
or ``HeaderParseError`` on a ``From: <`` or ``To: x@``; a mail carrying one broke the inbox with
a foreign exception. Now such a header is read as written and the rest of the message as usual,
and :func:`parse_receipt` keeps its promise never to raise. The same fuzzing (through the
whole-run leak scan) found libxml2's messages quoting a piece of the input (a CDA comment holding
a birth date) into a :class:`MalformedResponseError`; the quote is now cut.
"""

from __future__ import annotations

import pytest

from dmp_connector.errors import MalformedResponseError
from dmp_connector.mssante.message import parse_message
from dmp_connector.mssante.receipts import parse_receipt
from dmp_connector.xml import parse_xml

BROKEN_HEADERS = [
    b"From:<",
    b':\rTo:"',
    b"From: dr.house@medecin.mssante.fr\nTo: lps@\nSubject: hello\n\nbody\n",
    b'From: "unterminated <a@b.fr>\nTo: ,,,<\nCc: :;@\nDate: not a date\nReferences: <a@b> <c\n\nbody\n',
    b"To: =?utf-8?q?=E2=80?= <@>\nFrom: mailer-daemon@\nSubject: Undelivered Mail\n\n",
]


@pytest.mark.parametrize("raw", BROKEN_HEADERS)
def test_a_header_the_parser_cannot_read_does_not_break_the_message(raw: bytes) -> None:
    received = parse_message(raw)
    assert received.raw == raw
    parse_receipt(raw)  # never raises


def test_what_can_be_read_is_still_read() -> None:
    received = parse_message(BROKEN_HEADERS[2])
    assert received.sender == "dr.house@medecin.mssante.fr"
    assert received.subject == "hello"
    assert (received.text or "").strip() == "body"


def test_a_bounce_with_a_broken_sender_is_still_recognised() -> None:
    receipt = parse_receipt(BROKEN_HEADERS[4])
    assert receipt is not None and not getattr(receipt, "structured", True)


@pytest.mark.parametrize(
    "document",
    [
        b"<ClinicalDocument><!-- PAT-TROIS 19790328 -- x --></ClinicalDocument>",
        b"<ClinicalDocument><!-- PAT-TROIS 19790328",
        b"<ClinicalDocument><![CDATA[ PAT-TROIS 19790328 ",
        b"<ClinicalDocument>\xff PAT-TROIS 19790328</ClinicalDocument>",
    ],
)
def test_a_parse_error_does_not_quote_the_document(document: bytes) -> None:
    with pytest.raises(MalformedResponseError) as info:
        parse_xml(document)
    assert "19790328" not in str(info.value) and "PAT-TROIS" not in str(info.value)
