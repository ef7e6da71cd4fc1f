"""The ebRIM writer's fast paths of issue 22 (second pass) against the code they replace.

* ``_Ids.next`` hashes the common start of an entry's names once (CPython's own SHA-1 when there is one):
  its ids are still the UUID v5 of the whole name, and a name UTF-8 cannot encode raises at the first id;
* ``_lxml_text`` looks for each control byte on its own and for U+FFFE/U+FFFF in the text: the same answer
  as the regular expression it stands for;
* ``_Markup.code`` writes a classification in one string: the markup of ``one`` + ``localized`` + ``end``;
* ``XdsTime.text`` writes its fourteen digits as one integer from the year 1000 on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.codes import Code
from dmp_connector.xds import Author, Slot, TextAttributes, Xcn, XdsTime, Xon
from dmp_connector.xds import ebrim as ebrim_mod
from dmp_connector.xds.ebrim import (
    _ID_NAMESPACE,
    _ID_NAMESPACE_BYTES,
    _ID_NAMESPACE_SHA1,
    _NOT_LXML_TEXT,
    _a,
    _Ids,
    _lxml_text,
    _Markup,
    _Strings,
    _t,
)
from dmp_connector.xds.model import TimePrecision

# ----------------------------------------------------------------------------- ids


def _uuid5(seed: str, owner: str, kind: str, count: int) -> str:
    return f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, f'{seed}|{owner}|{kind}|{count}')}"


@given(st.text(), st.text(), st.lists(st.sampled_from(["code", "author", "external", "node", "x|y"]), max_size=12))
def test_ids_are_the_uuid5_of_the_whole_names(seed: str, owner: str, kinds: list[str]) -> None:
    ids = _Ids(owner, seed)  # never raises: nothing is hashed before the first id
    for count, kind in enumerate(kinds, 1):
        try:
            expected = _uuid5(seed, owner, kind, count)
        except UnicodeEncodeError:  # a lone surrogate: neither encodes it, each raises at its first id
            with pytest.raises(UnicodeEncodeError):
                ids.next(kind)
            return
        assert ids.next(kind) == expected


def test_an_entry_is_begun_without_hashing_its_names() -> None:
    # The guarding rule: the common start is hashed at the first id, not when the entry is begun, so that an
    # entry whose name cannot be encoded raises where it always did (or not at all when it has no id to make).
    ids = _Ids("Association01", "\ud800|x")
    with pytest.raises(UnicodeEncodeError):
        ids.next("classification")


def test_the_ids_of_two_entries_do_not_share_a_state() -> None:
    first, second = _Ids("Document01", "1.2.3"), _Ids("Document02", "1.2.3")
    assert [first.next("code"), second.next("code"), first.next("code")] == [
        _uuid5("1.2.3", "Document01", "code", 1),
        _uuid5("1.2.3", "Document02", "code", 1),
        _uuid5("1.2.3", "Document01", "code", 2),
    ]


def test_the_namespace_state_is_sha1_of_the_namespace() -> None:
    assert _ID_NAMESPACE_SHA1.copy().hexdigest() == hashlib.sha1(_ID_NAMESPACE_BYTES, usedforsecurity=False).hexdigest()


# ----------------------------------------------------------------------------- character check

_CHARACTERS = st.text() | st.text(st.sampled_from("a\x00\x08\x09\x0a\x0b\x0d\x1f\x20\x7f\ue000\ufffd\ufffe\uffff😀é"))


@given(_CHARACTERS)
def test_the_check_with_the_text_finds_what_the_expression_finds(value: str) -> None:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate: refused by the encoding before the check
    expected = _NOT_LXML_TEXT.search(value) is None
    assert _lxml_text(data, value) == expected
    assert _lxml_text(data) == expected


@pytest.mark.parametrize("value", ["é\ufffe", "a\uffffb", "\ufffe", "😀\uffff", "x\x01", "\x1fé", "é\x0b\ufffd"])
def test_the_check_refuses_in_text_of_every_width(value: str) -> None:
    # The guarding rules: a control byte anywhere, U+FFFE/U+FFFF in a text wide enough to hold them.
    assert not _lxml_text(value.encode("utf-8"), value)


@pytest.mark.parametrize("value", ["é\ufffd", "plain", "\t\n\r", "😀", "\ue000é"])
def test_the_check_takes_what_lxml_takes(value: str) -> None:
    assert _lxml_text(value.encode("utf-8"), value)


# ----------------------------------------------------------------------------- codes


def _former_code(
    markup: _Markup, scheme: str, owner: str, ids: _Ids, code: Code, strings: _Strings | None = None
) -> None:
    """``_Markup.code`` as it was written before issue 22's second pass."""
    start = len(markup.out)
    markup.out.append(
        f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{owner}" '
        f'id="{ids.next("code")}" nodeRepresentation="{_a(code.code)}">'
    )
    markup.one("codingScheme", code.code_system)
    markup.localized("Name", code.display_name, strings.next_code(scheme) if strings else None)
    markup.end(start, "</rim:Classification>")


_VALUES = st.text(st.sampled_from('ab&<>"\t\n\ré'), max_size=6)
_SCHEME = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"


@given(
    codes=st.lists(
        st.tuples(_VALUES, st.none() | _VALUES, st.none() | _VALUES),
        min_size=1,
        max_size=4,
    ),
    localized=st.lists(
        st.tuples(st.integers(0, 3), st.none() | st.sampled_from(["fr-FR", "en"]), st.none() | st.just("UTF-8")),
        max_size=3,
    ),
    with_strings=st.booleans(),
)
def test_a_code_is_written_as_before(
    codes: list[tuple[str, str | None, str | None]],
    localized: list[tuple[int, str | None, str | None]],
    with_strings: bool,
) -> None:
    attributes = [
        TextAttributes(part=f"{_SCHEME}#{index}", lang=lang, charset=charset) for index, lang, charset in localized
    ]
    new, old = _Markup(), _Markup()
    new_strings, old_strings = (_Strings(attributes), _Strings(attributes)) if with_strings else (None, None)
    new_ids, old_ids = _Ids("Document01", "1.2.3"), _Ids("Document01", "1.2.3")
    for value, system, display in codes:
        code = Code.model_construct(code=value, code_system=system, display_name=display)  # type: ignore[arg-type]
        new.code(_SCHEME, "Document01", new_ids, code, new_strings)
        _former_code(old, _SCHEME, "Document01", old_ids, code, old_strings)
    assert "".join(new.out) == "".join(old.out)
    assert new.empty_values == old.empty_values


def test_an_empty_coding_scheme_is_marked_as_an_empty_value() -> None:
    # The guarding rule: an empty rim:Value parses as no text, which the parsed tree must get back.
    markup = _Markup()
    markup.code(_SCHEME, "Document01", _Ids("Document01", "1.2.3"), Code.model_construct(code="c", code_system=""))
    assert markup.empty_values
    assert "<rim:Value></rim:Value>" in "".join(markup.out)


def test_a_name_read_with_its_lang_is_written_with_it() -> None:
    markup = _Markup()
    strings = _Strings([TextAttributes(part=f"{_SCHEME}#0", lang="fr-FR")])
    code = Code.model_construct(code="c", code_system="1.2", display_name="Nom")
    markup.code(_SCHEME, "Document01", _Ids("Document01", "1.2.3"), code, strings)
    assert '<rim:LocalizedString xml:lang="fr-FR" value="Nom"/>' in "".join(markup.out)


def test_the_code_markup_escapes_its_values() -> None:
    markup = _Markup()
    code = Code.model_construct(code='a"b', code_system="x&y", display_name="<z>")
    markup.code(_SCHEME, "Document01", _Ids("Document01", "1.2.3"), code)
    text = "".join(markup.out)
    assert f'nodeRepresentation="{_a(chr(97) + chr(34) + chr(98))}"' in text
    assert f"<rim:Value>{_t('x&y')}</rim:Value>" in text and 'value="&lt;z&gt;"' in text


def test_the_writer_module_still_has_the_element_writer_for_codes() -> None:
    assert callable(ebrim_mod._code)


# ----------------------------------------------------------------------------- times


def _former_text(time: XdsTime) -> str:
    m = time.moment
    return f"{m.year:04d}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}"[: time.precision]


@given(st.datetimes(timezones=st.just(dt.UTC)), st.sampled_from(list(TimePrecision)))
def test_a_time_is_written_as_before(moment: dt.datetime, precision: TimePrecision) -> None:
    time = XdsTime.of(moment, precision)
    assert time.text == _former_text(time)


@pytest.mark.parametrize("year", [1, 9, 99, 999, 1000, 2025, 9999])
def test_a_time_before_the_year_1000_keeps_its_four_digits(year: int) -> None:
    # The guarding rule: an integer would drop the year's leading zeros.
    time = XdsTime.of(dt.datetime(year, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert time.text == f"{year:04d}0102030405"
    assert len(time.text) == 14


# ----------------------------------------------------------------------------- slots and authors


def _former_one(markup: _Markup, name: str, value: str | None) -> None:
    if value is not None:
        if not value:
            markup.empty_values = True
        markup.out.append(
            f'<rim:Slot name="{name}"><rim:ValueList><rim:Value>{_t(value)}</rim:Value></rim:ValueList></rim:Slot>'
        )


@given(st.none() | _VALUES)
def test_a_slot_of_one_value_is_written_as_before(value: str | None) -> None:
    new, old = _Markup(), _Markup()
    new.one("hash", value)
    _former_one(old, "hash", value)
    assert (new.out, new.empty_values) == (old.out, old.empty_values)


@pytest.mark.parametrize("value", ["a&b", "a<b", "a>b", "a\rb"])
def test_a_slot_value_is_escaped(value: str) -> None:
    # The guarding rule: each character _t escapes sends the value through it.
    markup = _Markup()
    markup.one("hash", value)
    assert f"<rim:Value>{_t(value)}</rim:Value>" in markup.out[0] and value not in markup.out[0]


def _former_author(markup: _Markup, scheme: str, owner: str, ids: _Ids, author: Author) -> None:
    start = len(markup.out)
    markup.out.append(
        f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{owner}" '
        f'id="{ids.next("author")}" nodeRepresentation="">'
    )
    markup.one("authorPerson", author.person.text if author.person else None)
    markup.many("authorInstitution", [x.text for x in author.institutions])
    markup.many("authorRole", author.roles)
    markup.many("authorSpecialty", author.specialties)
    markup.many("authorTelecommunication", author.telecommunications)
    markup.extra_slots(author.extra_slots)
    markup.end(start, "</rim:Classification>")


_WORDS = st.text(st.sampled_from("ab&<é"), min_size=1, max_size=4)


@given(
    person=st.booleans(),
    institutions=st.lists(_WORDS, max_size=2),
    roles=st.lists(_WORDS, max_size=2),
    specialties=st.lists(_WORDS, max_size=2),
    telecoms=st.lists(_WORDS, max_size=2),
    extra=st.lists(st.tuples(_WORDS, st.lists(st.text(st.sampled_from("a&"), max_size=2), max_size=2)), max_size=2),
)
def test_an_author_is_written_as_before(
    person: bool,
    institutions: list[str],
    roles: list[str],
    specialties: list[str],
    telecoms: list[str],
    extra: list[tuple[str, list[str]]],
) -> None:
    author = Author.model_construct(
        person=Xcn.model_construct(id="1", family_name="A&B", assigning_authority="1.2", name_type_code="D")
        if person
        else None,
        institutions=tuple(Xon.model_construct(organization_name=name) for name in institutions),
        roles=tuple(roles),
        specialties=tuple(specialties),
        telecommunications=tuple(telecoms),
        extra_slots=tuple(Slot(name=name, values=tuple(values)) for name, values in extra),
    )
    new, old = _Markup(), _Markup()
    new.author("scheme", "Document01", _Ids("Document01", "1.2.3"), author)
    _former_author(old, "scheme", "Document01", _Ids("Document01", "1.2.3"), author)
    assert (new.out, new.empty_values) == (old.out, old.empty_values)
