"""The hardened parser refuses every classic XML attack and bounds what it reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.errors import MalformedResponseError, UnsafeXmlError
from dmp_connector.xml import XmlLimits, parse_xml, parse_xml_file, parse_xml_head, to_bytes

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + b"A" * 50_000 + b'">]><x>' + b"&a;" * 5_000 + b"</x>"
)


def xxe(target: str) -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "{target}">]><foo>&xxe;</foo>').encode()


def test_plain_xml_parses_with_namespaces_intact() -> None:
    root = parse_xml(b'<a xmlns="urn:x"><b attr="1">t\xc3\xa9</b></a>')
    assert root.tag == "{urn:x}a"
    assert root[0].text == "té"
    assert parse_xml(to_bytes(root)).tag == "{urn:x}a"


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(UnsafeXmlError):
        parse_xml(BILLION_LAUGHS)


def test_quadratic_blowup_is_refused() -> None:
    with pytest.raises(UnsafeXmlError):
        parse_xml(QUADRATIC_BLOWUP)


def test_external_file_entity_is_refused_and_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    with pytest.raises(UnsafeXmlError) as info:
        parse_xml(xxe(secret.as_uri()))
    assert "TOP-SECRET-CONTENT" not in str(info.value)


def test_external_network_entity_is_refused() -> None:
    with pytest.raises(UnsafeXmlError):
        parse_xml(xxe("http://127.0.0.1:9/evil.dtd"))


def test_external_dtd_reference_is_refused() -> None:
    doc = b'<?xml version="1.0"?><!DOCTYPE foo SYSTEM "http://127.0.0.1:9/foo.dtd"><foo/>'
    with pytest.raises(UnsafeXmlError):
        parse_xml(doc)


def test_parameter_entity_is_refused() -> None:
    doc = b'<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><foo/>'
    with pytest.raises(UnsafeXmlError):
        parse_xml(doc)


def test_oversized_input_is_refused_before_parsing() -> None:
    limits = XmlLimits(max_bytes=1024)
    with pytest.raises(UnsafeXmlError, match="1024-byte limit"):
        parse_xml(b"<a>" + b"x" * 2000 + b"</a>", limits=limits)


def test_huge_text_node_is_refused_with_huge_tree_off() -> None:
    with pytest.raises(UnsafeXmlError):
        parse_xml(b"<a>" + b"x" * 10_000_001 + b"</a>")


def test_depth_bound() -> None:
    limits = XmlLimits(max_depth=10)
    parse_xml(b"<a>" * 10 + b"</a>" * 10, limits=limits)
    with pytest.raises(UnsafeXmlError, match="deeper than 10"):
        parse_xml(b"<a>" * 11 + b"</a>" * 11, limits=limits)


def test_libxml2_own_depth_limit_reads_as_refusal() -> None:
    with pytest.raises(UnsafeXmlError):
        parse_xml(b"<a>" * 300 + b"</a>" * 300)


def test_malformed_and_empty_inputs() -> None:
    with pytest.raises(MalformedResponseError, match="not well-formed"):
        parse_xml(b"<a><b></a>")
    with pytest.raises(MalformedResponseError, match="empty"):
        parse_xml(b"")


def test_text_is_refused_so_no_encoding_is_guessed() -> None:
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]


def test_file_reading_applies_the_same_rules(tmp_path: Path) -> None:
    good = tmp_path / "ok.xml"
    good.write_bytes(b"<ok/>")
    assert parse_xml_file(good).tag == "ok"
    bad = tmp_path / "bad.xml"
    bad.write_bytes(BILLION_LAUGHS)
    with pytest.raises(UnsafeXmlError, match=r"bad\.xml"):
        parse_xml_file(bad)
    big = tmp_path / "big.xml"
    big.write_bytes(b"<a>" + b"x" * 5000 + b"</a>")
    with pytest.raises(UnsafeXmlError):
        parse_xml_file(big, limits=XmlLimits(max_bytes=100))
    with pytest.raises(MalformedResponseError, match="cannot read"):
        parse_xml_file(tmp_path / "missing.xml")


def test_official_samples_parse() -> None:
    samples = Path(__file__).resolve().parents[2] / "shared" / "xds" / "samples"
    files = sorted(samples.glob("*.xml"))
    assert files, f"no samples found in {samples}"
    for path in files:
        assert parse_xml_file(path).tag.startswith("{urn:")


def test_parse_xml_head_stops_after_the_head_and_refuses_what_parse_xml_refuses() -> None:
    head = b"<doc><id/><target n='1'/><target n='2'/>"
    pulled: list[bytes] = []

    def chunks(*parts: bytes) -> Iterator[bytes]:
        for part in parts:
            pulled.append(part)
            yield part

    root = parse_xml_head(chunks(head, b"<after/>", b"<never read>"), stop_after="target")
    assert [child.get("n") for child in root.iterfind("target")] == ["1", "2"]
    assert pulled == [head, b"<after/>"]  # the third chunk is never asked for
    # In one chunk, a tail libxml2 refuses does not hide a head it read.
    assert len(parse_xml_head([head + b"<after/></wrong>"], stop_after="target")) == 4  # id, 2 targets, after
    assert parse_xml_head([b"<doc><a/></doc>"], stop_after="target").tag == "doc"  # no head: read to the end
    with pytest.raises(MalformedResponseError, match="not well-formed"):
        parse_xml_head([b"<doc><target></doc>"], stop_after="target")
    with pytest.raises(UnsafeXmlError, match="DTD"):
        parse_xml_head([b'<!DOCTYPE doc [<!ENTITY a "b">]><doc><target/><x/></doc>'], stop_after="target")
    with pytest.raises(UnsafeXmlError, match="deeper than 3"):
        parse_xml_head([b"<doc><a><b><c/></b></a></doc>"], stop_after="target", limits=XmlLimits(max_depth=3))
    with pytest.raises(UnsafeXmlError, match="bytes read"):
        parse_xml_head([b"<doc>", b" " * 64, b"<target/>"], stop_after="target", limits=XmlLimits(max_bytes=32))


def test_the_parser_reused_within_a_thread_keeps_every_refusal(tmp_path: Path) -> None:
    # One hardened parser per thread is reused call after call: what one call met (an error, an
    # entity, a DTD) must change nothing for the next.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    for _ in range(3):
        assert parse_xml(b"<a><b>1</b></a>")[0].text == "1"
        with pytest.raises(MalformedResponseError):
            parse_xml(b"<a><b></a>")
        with pytest.raises(UnsafeXmlError) as info:
            parse_xml(xxe(secret.as_uri()))
        assert "TOP-SECRET-CONTENT" not in str(info.value)
        with pytest.raises(UnsafeXmlError):
            parse_xml(BILLION_LAUGHS)
        with pytest.raises(UnsafeXmlError):
            parse_xml(b"<a>" * 300 + b"</a>" * 300, limits=XmlLimits(max_depth=200))


def test_threads_parsing_at_once_each_get_their_own_document() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def parse_many(number: int) -> bool:
        return all(
            parse_xml(f"<r n='{number}'>{'<c/>' * (number % 7)}{i}</r>".encode()).get("n") == str(number)
            for i in range(200)
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(parse_many, range(32)))


def _nested(depth: int, siblings: int = 0) -> bytes:
    inner = b"<x/>" if depth >= 1 else b""
    for _ in range(depth - 1):
        inner = b"<a>" + b"<s/>" * siblings + inner + b"</a>"
    return inner


@pytest.mark.parametrize("max_depth", [1, 2, 15, 16, 17, 20, 128])
def test_the_depth_check_refuses_exactly_past_its_limit(max_depth: int) -> None:
    from dmp_connector import xml as xml_module

    for depth in {1, 2, 15, 16, 17, 18, max_depth - 1, max_depth, max_depth + 1, max_depth + 2} - {0}:
        root = parse_xml(_nested(depth, siblings=depth % 3), limits=XmlLimits(max_depth=256))
        refused = xml_module._deeper_than(max_depth)(root)  # the full path alone: the check before issue 22f
        assert refused == (depth > max_depth)
        if refused:
            with pytest.raises(UnsafeXmlError, match=f"deeper than {max_depth} levels"):
                xml_module._check_depth(root, max_depth, "input")
        else:
            xml_module._check_depth(root, max_depth, "input")


_OTHER_PIECES = {"leaf": "<b/>", "comment": "<!--<<-->", "cdata": "<![CDATA[<]]>", "pi": "<?p <?>"}
_PIECES = st.sampled_from(["open", "close", "leaf", "comment", "cdata", "pi", "text"])


@given(st.lists(_PIECES, max_size=60), st.integers(1, 12))
def test_a_short_input_is_refused_for_depth_exactly_as_the_xpath_refuses_it(pieces: list[str], max_depth: int) -> None:
    from dmp_connector import xml as xml_module

    out, open_ = ["<r>"], 0
    for piece in pieces:
        if piece == "open":
            out.append("<a>")
            open_ += 1
        elif piece == "close" and open_:
            out.append("</a>")
            open_ -= 1
        else:
            out.append(
                {"leaf": "<b/>", "comment": "<!--<<-->", "cdata": "<![CDATA[<]]>", "pi": "<?p <?>"}.get(piece, "t")
            )
    data = ("".join(out) + "</a>" * open_ + "</r>").encode()
    root = parse_xml(data, limits=XmlLimits(max_depth=64))
    deeper = bool(xml_module._deeper_than(max_depth)(root))  # the check as it was: the XPath alone
    if xml_module._too_short_to_nest(data, max_depth):
        assert not deeper
    if deeper:
        with pytest.raises(UnsafeXmlError, match=f"deeper than {max_depth} levels"):
            parse_xml(data, limits=XmlLimits(max_depth=max_depth))
    else:
        assert parse_xml(data, limits=XmlLimits(max_depth=max_depth)).tag == "r"
