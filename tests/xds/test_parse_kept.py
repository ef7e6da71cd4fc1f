"""Xcn.parse and Xon.parse keep the value read for a text (issue 22): the same value, the same refusals.

The former code, ``cls.model_validate(text)`` at each call, is the reference.
"""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.xds import Xcn, Xon
from dmp_connector.xds import model as model_mod

_COMPONENT = st.text(alphabet=st.sampled_from("AZaz09 .-'éÉ&^~\\|\x01"), max_size=6)
_HD = st.sampled_from(["", "&1.2.250.1.71.4.2.1&ISO", "&1.2.250.1.71.4.2.2&ISO", "1.2&ISO", "&&ISO"])
_TEXTS = st.one_of(
    st.lists(st.one_of(_COMPONENT, _HD), min_size=0, max_size=14).map("^".join),
    st.builds(
        lambda person, family, given_name, hd: f"{person}^{family}^{given_name}^^^^^^{hd}^D^^^IDNPS",
        _COMPONENT,
        _COMPONENT,
        _COMPONENT,
        _HD,
    ),
    st.builds(lambda name, hd, nid: f"{name}^^^^^{hd}^IDNST^^^{nid}", _COMPONENT, _HD, _COMPONENT),
)


def _outcome(read: object) -> object:
    """The value read, or the refusal as pydantic words it (type, place, message)."""
    try:
        return read()  # type: ignore[operator]
    except pydantic.ValidationError as exc:
        return [(e["type"], e["loc"], e["msg"]) for e in exc.errors()]


@settings(max_examples=400, deadline=None)
@given(text=_TEXTS)
def test_parse_reads_what_model_validate_reads(text: str) -> None:
    for cls in (Xcn, Xon):
        expected = _outcome(lambda cls=cls: cls.model_validate(text))
        for _ in range(2):  # the second read is answered from the memo when the first was kept
            got = _outcome(lambda cls=cls: cls.parse(text))
            assert type(got) is type(expected)
            assert got == expected


def test_the_same_text_gives_the_same_value() -> None:
    text = "899700123456^DOC^Jean^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    first = Xcn.parse(text)
    assert Xcn.parse(text) is first
    assert first == Xcn.model_validate(text)


def test_a_text_read_by_both_classes_gives_each_its_own_value() -> None:
    text = "Cabinet"  # a valid XON (a name) and a valid XCN (an identifier)
    person, organisation = Xcn.parse(text), Xon.parse(text)
    assert type(person) is Xcn and person.id == "Cabinet"
    assert type(organisation) is Xon and organisation.organization_name == "Cabinet"
    assert type(Xcn.parse(text)) is Xcn and type(Xon.parse(text)) is Xon


def test_a_refused_text_is_refused_every_time_and_not_kept() -> None:
    text = "a^b^c^d^e^f^g^h^i^j^k^l^m^n"  # fourteen components
    for _ in range(2):
        with pytest.raises(pydantic.ValidationError, match="more than 13 components"):
            Xcn.parse(text)
    assert all(key[1] != text for key in model_mod._PARSES)


def test_at_most_the_last_texts_are_kept() -> None:
    texts = [f"Cabinet {n}" for n in range(model_mod._KEPT_PARSES + 10)]
    for text in texts:
        Xon.parse(text)
    assert len(model_mod._PARSES) <= model_mod._KEPT_PARSES
    assert (Xon, texts[-1]) in model_mod._PARSES
    assert (Xon, texts[0]) not in model_mod._PARSES


def test_a_str_subclass_is_read_and_not_kept() -> None:
    class Marked(str):
        pass

    text = Marked("Cabinet marqué")
    assert Xon.parse(text) == Xon.model_validate(str(text))
    assert all(type(key[1]) is str for key in model_mod._PARSES)


def test_only_a_professional_xcn_is_kept_never_a_patient_author() -> None:
    """An author may be the patient (INS root): no process-wide memo may hold the patient's INS and names."""
    patient = "248092327650415^PATIENT^Marie^^^^^^&1.2.250.1.213.1.4.8&ISO^D^^^"
    professional = "899700123457^DOC^Jean^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    for _ in range(2):
        assert Xcn.parse(patient) == Xcn.model_validate(patient)
        assert Xcn.parse(professional) == Xcn.model_validate(professional)
    assert (Xcn, professional) in model_mod._PARSES
    assert all("248092327650415" not in key[1] and "PATIENT" not in key[1] for key in model_mod._PARSES)
