"""The ER7 codec: delimiters, repetitions, components, escape sequences, character sets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.hl7v2 import Hl7ParseError, Message, Segment, decode, parse, rep

MSH = "MSH|^~\\&|APP|ORG|PFI||20240101000000||ADT^A28^ADT_A05|1|P|2.5|||||FRA|UNICODE UTF-8"


def _message(*segments: Segment, charset: str = "UNICODE UTF-8") -> Message:
    msh = parse(MSH.replace("UNICODE UTF-8", charset)).msh
    return Message(segments=[msh, *segments])


def test_repetitions_components_and_subcomponents_are_read_where_the_standard_puts_them() -> None:
    text = MSH + "\rPID|1||A1^^^CHU&1.2.3&ISO^PI~B2^^^&1.2.250.1.213.1.4.8&ISO^NH||X^Y^^^^^L\r"
    pid = parse(text).require("PID")
    assert pid.get(3, 1, 1) == "A1"
    assert pid.get(3, 1, 4, 2) == "1.2.3"
    assert pid.get(3, 2, 5) == "NH"
    assert pid.get(3, 2, 4, 2) == "1.2.250.1.213.1.4.8"
    assert pid.get(5, 1, 7) == "L"
    assert pid.get(3, 3, 1) == "" and pid.get(40) == ""
    assert parse(text).msh.get(9, 1, 2) == "A28"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40))
def test_any_text_survives_escaping_in_every_position(value: str) -> None:
    segment = Segment(name="NTE").set(3, rep(value, ("a", value)), rep(value))
    back = decode(_message(segment).to_bytes(), max_bytes=10_000).require("NTE")
    assert back.get(3, 1, 1) == value
    assert back.get(3, 1, 2, 2) == value
    assert back.get(3, 2, 1) == value


def test_delimiters_and_line_breaks_are_escaped_with_the_standard_sequences() -> None:
    segment = Segment(name="NTE").set(3, "a|b^c~d\\e&f\rg\nh")
    text = _message(segment).encode()
    assert "NTE|||a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\X0D\\g\\X0A\\h\r" in text


def test_non_ascii_text_is_written_as_is_in_utf8_and_in_latin9() -> None:
    segment = Segment(name="NTE").set(3, "Masqué €")
    assert "Masqué €".encode() in _message(segment).to_bytes()
    latin = _message(segment, charset="8859/15").to_bytes()
    assert "Masqué €".encode("iso8859-15") in latin
    assert decode(latin, max_bytes=1000).require("NTE").get(3) == "Masqué €"


def test_hex_escapes_are_read_in_the_message_charset_and_unknown_sequences_kept() -> None:
    text = MSH + "\rNTE|||Masqu\\XC3A9\\ \\.br\\ \\H\\x\\N\\\r"
    assert parse(text).require("NTE").get(3) == "Masqué \\.br\\ \\H\\x\\N\\"
    with pytest.raises(Hl7ParseError):
        parse(MSH + "\rNTE|||\\XFF\\\r")


def test_other_delimiters_declared_in_msh_are_honoured() -> None:
    text = "MSH#*@!$#APP#ORG\rPID#1##A1*B1$sub@A2"
    pid = parse(text).require("PID")
    assert pid.get(3, 1, 2) == "B1"
    assert pid.get(3, 1, 2, 2) == "sub"
    assert pid.get(3, 2, 1) == "A2"
    assert parse(text).encode() == text + "\r"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PID|1",
        "MSH|^~\\",
        "MSH|^^\\&|A",
        "MSH|^~\\&|A\rpid|1",
        "MSH|^~\\&|A\rMSH|^~\\&|B",
    ],
)
def test_what_is_not_one_er7_message_is_refused(text: str) -> None:
    with pytest.raises(Hl7ParseError):
        parse(text)


def test_an_unknown_character_set_and_an_oversized_message_are_refused() -> None:
    with pytest.raises(Hl7ParseError, match="character set"):
        decode(MSH.replace("UNICODE UTF-8", "ISO IR87").encode(), max_bytes=10_000)
    with pytest.raises(Hl7ParseError, match="larger"):
        decode(MSH.encode(), max_bytes=10)
    with pytest.raises(Hl7ParseError, match="character set its MSH-18"):
        decode(MSH.encode() + b"\rNTE|||\xff\xfe", max_bytes=10_000)
