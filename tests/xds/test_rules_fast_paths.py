"""The XDS rules' fast paths (issue 22) give what the former code gave: the same problems in the same order,
the same wire forms, the same refusals. ``tests.xds._reference_rules`` is the former code, verbatim."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp_connector.codes import Code
from dmp_connector.xds import (
    Association,
    AssociationType,
    Author,
    Cx,
    DocumentEntry,
    Folder,
    ForeignCode,
    MetadataProfile,
    Slot,
    SubmissionRequest,
    TimePrecision,
    Xcn,
    XdsTime,
    Xon,
)
from dmp_connector.xds import model as xds_model
from dmp_connector.xds.vocabulary import DocumentEntryType
from tests.xds import _reference_rules as reference
from tests.xds.conftest import AUTHOR, IPP, PATIENT, make_document, make_submission_set
from tests.xds.test_properties import authors, codes, component, oid, organisations, people, slot_text

# Values around the limits (256, 1024) as well as short ones, so that the slow paths run too.
_SIZES = st.sampled_from([1, 5, 255, 256, 257, 1023, 1024, 1025])
long_text = st.one_of(slot_text(1, 12), _SIZES.map(lambda n: "x" * n))
maybe_long = st.none() | long_text
long_codes = st.one_of(
    codes,
    st.builds(Code.of, long_text, oid, st.none() | long_text),
    st.builds(lambda c, s, d: ForeignCode(code=c, code_system=s, display_name=d), long_text, long_text, maybe_long),
)
long_people = st.one_of(
    people, st.builds(Xcn, id=_SIZES.map(lambda n: "8" * n), family_name=st.none() | component, given_name=st.none())
)
long_organisations = st.one_of(
    organisations, st.builds(Xon, organization_name=_SIZES.map(lambda n: "o" * n), organization_identifier=st.none())
)
any_authors = st.one_of(
    authors,
    st.builds(
        Author,
        person=st.none() | long_people,
        institutions=st.lists(long_organisations, max_size=2).map(tuple),
        roles=st.lists(long_text, max_size=2).map(tuple),
        specialties=st.lists(long_text, max_size=2).map(tuple),
        telecommunications=st.lists(long_text, max_size=1).map(tuple),
    ),
)
patients = st.sampled_from(
    [
        PATIENT,
        Cx.ins("279035121518989", "1.2.250.1.213.1.4.10"),  # equal, another object
        Cx.ins("179035121518989", "1.2.250.1.213.1.4.8"),
        IPP,
        Cx(id="9" * 250, assigning_authority="1.2.3", id_type="NH"),
        Cx(id="1", assigning_authority="1.02.3"),
    ]
)
slots = st.lists(st.lists(long_text, max_size=2), max_size=2).map(
    lambda groups: tuple(Slot(name=f"urn:x:s{i}", values=tuple(values)) for i, values in enumerate(groups))
)


@st.composite
def documents(draw: st.DrawFn, number: int) -> DocumentEntry:
    return make_document(
        entry_uuid=f"Document{number:02d}",
        unique_id=draw(st.sampled_from(["1.2.250.1.999.7.2", "1.2.250.1.999.7.2^ext", "1.2.3^", "01.2", "1." * 40])),
        patient_id=draw(st.none() | patients),
        source_patient_id=draw(st.none() | patients),
        limited_metadata=draw(st.booleans()),
        object_type=draw(st.sampled_from(list(DocumentEntryType))),
        repository_unique_id=draw(st.none() | st.sampled_from(["1.2.3", "x.y"])),
        title=draw(maybe_long),
        comments=draw(maybe_long),
        mime_type=draw(long_text),
        language_code=draw(maybe_long),
        legal_authenticator=draw(st.none() | long_people),
        authors=tuple(draw(st.lists(any_authors, max_size=2))),
        class_code=draw(st.none() | long_codes),
        type_code=draw(st.none() | long_codes),
        format_code=draw(st.none() | long_codes),
        healthcare_facility_type_code=draw(st.none() | long_codes),
        practice_setting_code=draw(st.none() | long_codes),
        confidentiality_codes=tuple(draw(st.lists(long_codes, max_size=2))),
        event_codes=tuple(draw(st.lists(long_codes, max_size=2))),
        creation_time=draw(st.sampled_from([None, make_document().creation_time])),
        source_patient_info=tuple(draw(st.lists(long_text, max_size=2))),
        reference_ids=tuple(draw(st.lists(long_text, max_size=2))),
        extra_slots=draw(slots),
    )


@st.composite
def submissions(draw: st.DrawFn) -> SubmissionRequest:
    ss = make_submission_set(
        unique_id=draw(st.sampled_from(["1.2.250.1.999.7.1", "1.2.250.1.999.7.2", "x"])),
        source_id=draw(st.sampled_from(["1.2.250.1.999", "1..2"])),
        patient_id=draw(st.none() | patients),
        limited_metadata=draw(st.booleans()),
        content_type_code=draw(st.none() | long_codes),
        authors=tuple(draw(st.lists(any_authors, max_size=2))),
        title=draw(maybe_long),
        comments=draw(maybe_long),
        intended_recipients=tuple(draw(st.lists(long_text, max_size=2))),
        extra_slots=draw(slots),
    )
    docs = [draw(documents(i)) for i in range(1, draw(st.integers(0, 3)) + 1)]
    folders = tuple(
        Folder(entry_uuid="Folder01", unique_id="1.2.4", patient_id=draw(patients), title=draw(maybe_long), codes=(c,))
        for c in draw(st.lists(long_codes, max_size=1))
    )
    associations = [
        Association.has_member(f"Association{i:02d}", ss.entry_uuid, d.entry_uuid) for i, d in enumerate(docs, 1)
    ]
    if draw(st.booleans()) and docs:  # an id used twice, a slot to check, a version without its logicalId
        associations.append(
            Association(
                entry_uuid=draw(st.sampled_from(["Association01", "Document01", "SubmissionSet01", "Association08"])),
                association_type=draw(st.sampled_from([AssociationType.HAS_MEMBER, AssociationType.APPEND])),
                source_object=ss.entry_uuid,
                target_object=docs[-1].entry_uuid,
                previous_version=draw(st.none() | st.sampled_from(["1", "x"])),
                extra_slots=draw(st.sampled_from([(), (Slot(name="AssociationPropagation", values=("maybe",)),)])),
            )
        )
    if draw(st.booleans()) and docs:
        associations.append(
            Association(
                entry_uuid="Association09",
                association_type=AssociationType.SIGNS,
                source_object=draw(st.sampled_from([docs[0].entry_uuid, "Nowhere01"])),
                target_object=ss.entry_uuid,
            )
        )
    return SubmissionRequest.model_construct(
        submission_set=ss,
        documents=tuple(docs),
        folders=folders,
        associations=tuple(associations),
        object_refs=(),
        contents=draw(st.sampled_from([{}, {"Document01": "a@b"}, {"Nothing01": "c@d"}])),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=submissions())
def test_the_rules_find_what_the_former_rules_found_in_the_same_order(request: SubmissionRequest) -> None:
    for profile in MetadataProfile:
        assert request.problems(profile) == reference.problems(request, profile)


def test_the_generated_submissions_reach_the_slow_paths() -> None:
    """The fast paths' guards matter: over-long values of every kind are named (a guard that let them pass fails)."""
    long = "x" * 300
    person = Xcn(id="8" * 300)
    entry = make_document(
        title="t" * 1100,
        legal_authenticator=person,
        authors=(Author(person=person, institutions=(Xon(organization_name=long),), roles=(long,)),),
        type_code=Code.of(long, "1.2.3"),
        event_codes=(Code.of("a", "1.2.3", "d" * 1100),),
        reference_ids=(long,),
        source_patient_id=Cx(id="9" * 260, assigning_authority="1.2.3"),
    )
    ss = make_submission_set(authors=(AUTHOR,), intended_recipients=(long,), comments="c" * 1100)
    request = SubmissionRequest.model_construct(
        submission_set=ss,
        documents=(entry,),
        folders=(),
        associations=(Association.has_member("Association01", ss.entry_uuid, entry.entry_uuid),),
        object_refs=(),
        contents={},
    )
    found = request.problems()
    assert found == reference.problems(request)
    assert [p for p in found if "is longer than" in p] == [
        "submission set: comments is longer than the 1024 characters ebRIM allows",
        "submission set: intendedRecipient is longer than the 256 characters ebRIM allows",
        "document Document01: sourcePatientId is longer than the 256 characters ebRIM allows",
        "document Document01 author 1: authorPerson is longer than the 256 characters ebRIM allows",
        "document Document01 author 1: authorInstitution is longer than the 256 characters ebRIM allows",
        "document Document01 author 1: authorRole is longer than the 256 characters ebRIM allows",
        "document Document01: title is longer than the 1024 characters ebRIM allows",
        "document Document01: legalAuthenticator is longer than the 256 characters ebRIM allows",
        "document Document01: type_code is longer than the 256 characters ebRIM allows",
        "document Document01: event_codes display name is longer than the 1024 characters ebRIM allows",
        "document Document01: referenceIdList is longer than the 256 characters ebRIM allows",
    ]


def test_an_equal_patient_in_another_object_is_the_same_patient_and_another_is_not() -> None:
    ss = make_submission_set()
    same = make_document(patient_id=Cx.ins(PATIENT.id, PATIENT.assigning_authority))
    other = make_document(entry_uuid="Document02", patient_id=Cx.ins("179035121518989", PATIENT.assigning_authority))
    request = SubmissionRequest.model_construct(
        submission_set=ss,
        documents=(same, other),
        folders=(),
        associations=tuple(
            Association.has_member(f"Association0{i}", ss.entry_uuid, d.entry_uuid)
            for i, d in enumerate((same, other), 1)
        ),
        object_refs=(),
        contents={},
    )
    assert [p for p in request.problems() if "differs" in p] == [
        "document Document02: patientId differs from the submission set's (one submission, one patient)"
    ]


# ---------------------------------------------------------------------------- wire forms


def _former_cx(cx: Cx) -> str:
    return xds_model._format([cx.id, None, None, xds_model._hd(cx.assigning_authority), cx.id_type])


def _former_xcn(x: Xcn) -> str:
    return xds_model._format(
        [
            x.id,
            x.family_name,
            x.given_name,
            x.further_given_names,
            x.suffix,
            x.prefix,
            x.degree,
            None,
            xds_model._hd(x.assigning_authority),
            x.name_type_code,
            None,
            None,
            x.identifier_type_code,
        ]
    )


def _former_xon(x: Xon) -> str:
    return xds_model._format(
        [
            x.organization_name,
            None,
            None,
            None,
            None,
            xds_model._hd(x.assigning_authority),
            x.identifier_type_code,
            None,
            None,
            x.organization_identifier,
        ]
    )


@given(person=people, organisation=organisations, id_=component, authority=oid, id_type=st.none() | component)
def test_wire_forms_are_the_former_ones(person: Xcn, organisation: Xon, id_: str, authority: str, id_type: str) -> None:
    cx = Cx(id=id_, assigning_authority=authority, id_type=id_type)
    assert cx.text == _former_cx(cx)
    assert person.text == _former_xcn(person)
    assert organisation.text == _former_xon(organisation)


_ODD = st.none() | st.sampled_from(["", "a", "a^", "^", "^b", "&", "x^y"])


@given(values=st.lists(_ODD, min_size=13, max_size=13))
def test_wire_forms_of_unvalidated_values_are_the_former_ones(values: list[str | None]) -> None:
    """model_construct skips validation: a component may then hold a ``^`` or be empty, and the general form decides."""
    names = list(Xcn.model_fields)
    person = Xcn.model_construct(**dict(zip(names, values, strict=False)))  # type: ignore[arg-type]
    assert person.text == _former_xcn(person)
    organisation = Xon.model_construct(**dict(zip(list(Xon.model_fields), values, strict=False)))  # type: ignore[arg-type]
    assert organisation.text == _former_xon(organisation)
    cx = Cx.model_construct(id=values[0], assigning_authority=values[1], id_type=values[2])  # type: ignore[arg-type]
    assert cx.text == _former_cx(cx)


def test_a_caret_inside_a_component_is_kept() -> None:
    """The guard of the joined form: a component ending in ``^`` is not taken for an empty one (rstrip would)."""
    assert Xon.model_construct(organization_name="a^").text == "a^"
    assert Xcn.model_construct(id="8^", family_name=None).text == "8^"
    assert Cx.model_construct(id="1", assigning_authority=None).text == "1"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- ids and characters


_FORMER_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _former_entry_id_ok(value: str) -> bool:
    if _FORMER_NOT_XML.search(value) or not value or re.search(r"\s", value):
        return False
    return not (value.lower().startswith("urn:uuid:") and not xds_model._UUID_URN_RE.match(value))


@settings(max_examples=500)
@given(
    value=st.one_of(
        st.text(st.characters(max_codepoint=0x7F), max_size=12),
        st.text(max_size=8),
        st.sampled_from(["Document01", "urn:uuid:" + "0" * 8 + "-0000-0000-0000-" + "0" * 12, "urn:uuid:x", "A\u0661"]),
    )
)
def test_ids_and_texts_are_refused_as_before(value: str) -> None:
    assert (_FORMER_NOT_XML.search(value) is None) == _accepts(xds_model._xml_chars, value)
    assert _former_entry_id_ok(value) == _accepts(xds_model._entry_id, value)


def _accepts(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value", ["", "a b", "a\tb", "Doc\x0101", "urn:uuid:1234", "Doc\u00a001"])
def test_ids_that_the_fast_path_must_not_take(value: str) -> None:
    """Each is ASCII or almost: a guard weaker than ASCII letters and digits only would let one through."""
    with pytest.raises(pydantic.ValidationError):
        DocumentEntry(entry_uuid=value, unique_id="1.2.3", mime_type="text/xml")


@pytest.mark.parametrize("value", ["a\x01b", "a\x7fb\x0b", "\x00"])
def test_control_characters_are_still_refused(value: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        DocumentEntry(entry_uuid="Document01", unique_id="1.2.3", mime_type="text/xml", title=value)


def test_tab_and_line_ends_are_still_text() -> None:
    assert DocumentEntry(entry_uuid="Document01", unique_id="1.2.3", mime_type="t", title="a\tb\r\nc").title == (
        "a\tb\r\nc"
    )
    assert DocumentEntry(entry_uuid="Document01", unique_id="1.2.3", mime_type="t", title="b\x7f").title == "b\x7f"


# ---------------------------------------------------------------------------- times


def _former_truncate(moment: dt.datetime, precision: TimePrecision) -> dt.datetime:
    moment = moment.replace(microsecond=0)
    if precision < TimePrecision.SECOND:
        moment = moment.replace(second=0)
    if precision < TimePrecision.MINUTE:
        moment = moment.replace(minute=0)
    if precision < TimePrecision.HOUR:
        moment = moment.replace(hour=0)
    if precision < TimePrecision.DAY:
        moment = moment.replace(day=1)
    if precision < TimePrecision.MONTH:
        moment = moment.replace(month=1)
    return moment


@given(
    moment=st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])),
    precision=st.sampled_from(list(TimePrecision)),
    form=st.sampled_from([lambda p: p, int, lambda p: str(int(p))]),
)
def test_xds_times_are_cut_as_before(moment: dt.datetime, precision: TimePrecision, form: Any) -> None:
    expected = _former_truncate(moment.astimezone(dt.UTC), precision)
    made = XdsTime(moment=moment, precision=form(precision))
    assert (made.moment, made.precision) == (expected, precision)
    assert type(made.precision) is TimePrecision
    assert XdsTime.of(moment, precision) == made


def test_a_day_is_cut_to_its_start() -> None:
    """The guard of the early return: only a time to the second keeps its hours, minutes and seconds."""
    moment = dt.datetime(2025, 3, 4, 5, 6, 7, 8, tzinfo=dt.UTC)
    assert XdsTime.of(moment, TimePrecision.DAY).moment == dt.datetime(2025, 3, 4, tzinfo=dt.UTC)
    assert XdsTime.of(moment, TimePrecision.MINUTE).moment == dt.datetime(2025, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert XdsTime.of(moment).moment == dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    with pytest.raises(pydantic.ValidationError):
        XdsTime(moment=moment, precision=7)


def test_a_copy_is_not_taken_for_checked_when_a_freed_value_s_address_is_reused() -> None:
    # Review finding: the memo kept the values' id()s; once the original was freed, a new tuple at the old
    # address passed a copy's invalid documents off as checked, and check() let them through.
    import gc

    from dmp_connector.errors import ValidationError
    from tests.xds.conftest import make_deposit

    first = make_deposit()
    second = first.model_copy(update={"documents": (make_document(),)})
    old_address = id(first.documents)
    bad = make_document(unique_id="not-an-oid", title="x" * 2000)
    del first
    gc.collect()
    candidates = [(bad,) for _ in range(5000)]
    for documents in (t for t in candidates if id(t) == old_address):
        third = second.model_copy(update={"documents": documents})
        with pytest.raises(ValidationError):
            third.check()
    unchecked = second.model_copy(update={"documents": (bad,)})
    with pytest.raises(ValidationError):
        unchecked.check()
