"""The VIHF's per-assertion shortcuts of issue 22 (sixth pass) against what they replace.

* ``_row_open`` / ``_coded_row_text``: an attribute's opening tag and a coded value's text, kept by
  name and by value, against the escaping they skip (:func:`_attribute`, :func:`_coded_text`), for
  any text (hypothesis), kept or not, and never served to a value whose fields are not plain ``str``;
* ``VihfRequest``'s CX string taken as it is, while an object with ``to_xds_cx`` (even a ``str``
  subclass) is still asked for its CX;
* ``vihf_attributes`` without overrides: the table as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.signature import vihf as vihf_mod
from dmp_connector.signature.vihf import VIHF_ATTRIBUTES, CodedValue, VihfRequest, vihf_attributes

INS_CX = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"


def reference_row_open(name: object) -> str:
    """The opening tag as ``_VihfText.render`` wrote it before the memo."""
    return f'<Attribute Name="{vihf_mod._attribute(name)}">'


def outcome(write: object, value: object) -> tuple[str, str]:
    try:
        return "ok", write(value)  # type: ignore[operator]
    except vihf_mod._NotText:
        return "not text", ""


@pytest.fixture
def empty_memos() -> Iterator[None]:
    kept = dict(vihf_mod._ROW_OPENS), dict(vihf_mod._CODED_TEXTS)
    vihf_mod._ROW_OPENS.clear()
    vihf_mod._CODED_TEXTS.clear()
    yield
    vihf_mod._ROW_OPENS.clear()
    vihf_mod._CODED_TEXTS.clear()
    vihf_mod._ROW_OPENS.update(kept[0])
    vihf_mod._CODED_TEXTS.update(kept[1])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_an_attribute_name_is_written_as_before_kept_or_not(name: str) -> None:
    expected = outcome(reference_row_open, name)
    assert outcome(vihf_mod._row_open, name) == expected  # first time (kept if it is text)
    assert outcome(vihf_mod._row_open, name) == expected  # from the memo


coded_fields = st.one_of(st.text(max_size=12), st.sampled_from(["Role", "PurposeOfUse", "10", "a&b", '"q"']))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["Role", "PurposeOfUse", "ConfidentialityCode", "1bad", "a b", ""]),
    coded_fields,
    coded_fields,
    st.one_of(st.none(), coded_fields),
    st.one_of(st.none(), coded_fields),
)
def test_a_coded_value_is_written_as_before_kept_or_not(
    element: str, code: str, system: str, display: str | None, system_name: str | None
) -> None:
    value = CodedValue(element, code, system, display, system_name)
    expected = outcome(vihf_mod._coded_text, value)
    assert outcome(vihf_mod._coded_row_text, value) == expected
    assert outcome(vihf_mod._coded_row_text, value) == expected


class Text(str):
    """A ``str`` subclass: equal to (and hashed as) its text, but not written by the text path."""


def test_a_value_with_a_str_subclass_field_is_never_served_from_the_memo(empty_memos: None) -> None:
    plain = CodedValue("Role", "10", "1.2.250.1.71.1.2.7", "Médecin")
    odd = CodedValue("Role", Text("10"), "1.2.250.1.71.1.2.7", "Médecin")
    assert odd == plain and hash(odd) == hash(plain)
    vihf_mod._coded_row_text(plain)
    assert plain in vihf_mod._CODED_TEXTS
    with pytest.raises(vihf_mod._NotText):  # as _coded_text: the tree builder decides
        vihf_mod._coded_row_text(odd)


def test_a_str_subclass_name_is_neither_kept_nor_served(empty_memos: None) -> None:
    vihf_mod._row_open("Name")
    with pytest.raises(vihf_mod._NotText):
        vihf_mod._row_open(Text("Name"))
    assert list(vihf_mod._ROW_OPENS) == ["Name"] and type(next(iter(vihf_mod._ROW_OPENS))) is str


def test_the_memos_stay_small(empty_memos: None) -> None:
    for index in range(vihf_mod._KEPT_TEXTS + 50):
        assert vihf_mod._row_open(f"n{index}") == f'<Attribute Name="n{index}">'
        vihf_mod._coded_row_text(CodedValue("Role", str(index), "1.2"))
    assert len(vihf_mod._ROW_OPENS) == len(vihf_mod._CODED_TEXTS) == vihf_mod._KEPT_TEXTS


def test_a_failed_value_is_not_kept(empty_memos: None) -> None:
    with pytest.raises(vihf_mod._NotText):
        vihf_mod._row_open("bad\x00name")
    with pytest.raises(vihf_mod._NotText):
        vihf_mod._coded_row_text(CodedValue("1bad", "10", "1.2"))
    assert not vihf_mod._ROW_OPENS and not vihf_mod._CODED_TEXTS


class Ins:
    def to_xds_cx(self) -> str:
        return INS_CX


class CxText(str):
    """A ``str`` that is also an INS: its ``to_xds_cx`` decides, as before the fast path."""

    def to_xds_cx(self) -> str:
        return INS_CX


def test_the_patient_resource_id_as_before() -> None:
    assert VihfRequest(patient_resource_id=INS_CX).patient_resource_id == INS_CX
    assert VihfRequest(patient_resource_id=None).patient_resource_id is None
    assert VihfRequest(patient_resource_id=Ins()).patient_resource_id == INS_CX
    # The guard: a str subclass with to_xds_cx is still asked (a bare type check would take "not a CX" as it is).
    assert VihfRequest(patient_resource_id=CxText("not a CX")).patient_resource_id == INS_CX


def test_no_overrides_leave_the_table_as_it_was() -> None:
    assert vihf_attributes({}) == tuple(VIHF_ATTRIBUTES)
    custom = list(VIHF_ATTRIBUTES[:3])
    assert vihf_attributes({}, custom) == tuple(custom)
    assert vihf_attributes({VIHF_ATTRIBUTES[0].name: None}) == tuple(VIHF_ATTRIBUTES[1:])
