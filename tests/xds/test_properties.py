"""Properties: what the ebRIM writer writes, the reader reads back equal, and it stays schema-valid."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp_connector.codes import Code
from dmp_connector.xds import (
    AdhocQueryRequest,
    Author,
    Cx,
    DocumentEntry,
    FindDocumentsQuery,
    ForeignCode,
    Slot,
    SubmissionRequest,
    TimePrecision,
    Xcn,
    XdsTime,
    Xon,
    build_adhoc_query_request,
    build_submit_objects_request,
    parse_adhoc_query_request,
    parse_submit_objects_request,
)
from dmp_connector.xml import to_bytes
from tests.xds.conftest import PATIENT, Schemas, make_document, make_submission_set

_XML_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn"), max_codepoint=0x2FFFF) | st.sampled_from("\t\n\r")


def text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(_XML_CHARS, min_size=min_size, max_size=max_size)


def slot_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Text as a slot value carries it: readers trim slot values, so none starts or ends with a space."""
    return text(min_size, max_size).map(str.strip).filter(lambda value: len(value) >= min_size)


component = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="^&~\\|", max_codepoint=0x2FFFF),
    min_size=1,
    max_size=12,
).filter(lambda value: value == value.strip())
oid = st.lists(st.integers(0, 99999), min_size=1, max_size=6).map(lambda arcs: "1.2." + ".".join(map(str, arcs)))
times = st.builds(
    XdsTime.of,
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)),
    st.sampled_from(list(TimePrecision)),
)
codes: st.SearchStrategy[Code | ForeignCode] = st.one_of(
    st.builds(Code.of, text(1, 30), oid, st.none() | text(0, 30)),
    st.builds(
        lambda c, s, d: ForeignCode(code=c, code_system=s, display_name=d),
        text(1, 20),
        slot_text(1, 20).filter(lambda s: not s[0].isdigit() and s not in ("URN", "ASTM")),
        st.none() | text(),
    ),
)
people = st.builds(
    Xcn,
    id=st.none() | component,
    family_name=component,
    given_name=st.none() | component,
    prefix=st.none() | component,
    assigning_authority=st.none() | oid,
)
organisations = st.builds(
    Xon, organization_name=component, assigning_authority=st.none() | oid, organization_identifier=st.none() | component
)
authors = st.builds(
    Author,
    person=st.none() | people,
    institutions=st.lists(organisations, min_size=1, max_size=2).map(tuple),
    roles=st.lists(slot_text(1, 20), max_size=2).map(tuple),
    specialties=st.lists(slot_text(1, 20), max_size=2).map(tuple),
    telecommunications=st.lists(slot_text(1, 20), max_size=1).map(tuple),
)


@st.composite
def entries(draw: st.DrawFn) -> DocumentEntry:
    start, stop = sorted([draw(times), draw(times)], key=lambda t: t.moment)
    changes = {
        "title": draw(st.none() | text()),
        "comments": draw(st.none() | text(0, 100)),
        "class_code": draw(codes),
        "type_code": draw(codes),
        "format_code": draw(codes),
        "confidentiality_codes": tuple(draw(st.lists(codes, min_size=1, max_size=3))),
        "event_codes": tuple(draw(st.lists(codes, max_size=2))),
        "authors": tuple(draw(st.lists(authors, max_size=2))),
        "legal_authenticator": draw(st.none() | people),
        "creation_time": draw(times),
        "service_start_time": start if draw(st.booleans()) else None,
        "service_stop_time": stop if draw(st.booleans()) else None,
        "language_code": draw(slot_text(1, 10)),
        "hash": draw(st.none() | st.text("0123456789abcdef", min_size=40, max_size=40)),
        "size": draw(st.none() | st.integers(0, 2**40)),
        "mime_type": draw(text(1, 30)),
        "source_patient_info": tuple(draw(st.lists(slot_text(1, 40), max_size=3))),
        "extra_slots": tuple(
            Slot(name=f"urn:x:slot{i}", values=tuple(values))
            for i, values in enumerate(draw(st.lists(st.lists(slot_text(0, 20), max_size=3), max_size=2)))
        ),
    }
    return make_document(**changes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries(), ss_title=st.none() | text())
def test_parse_after_serialise_is_the_identity(entry: DocumentEntry, ss_title: str | None, schemas: Schemas) -> None:
    request = SubmissionRequest.build(make_submission_set(title=ss_title), [entry])
    element = build_submit_objects_request(request)
    schemas.assert_valid(schemas.lcm, element)
    assert parse_submit_objects_request(to_bytes(element)) == request


@given(time=times)
def test_xds_times_read_back_equal(time: XdsTime) -> None:
    assert XdsTime.parse(time.text) == time
    assert len(time.text) == time.precision


@given(person=people, organisation=organisations, id_=component, authority=oid)
def test_hl7_values_read_back_equal(person: Xcn, organisation: Xon, id_: str, authority: str) -> None:
    assert Xcn.parse(person.text) == person
    assert Xon.parse(organisation.text) == organisation
    cx = Cx(id=id_, assigning_authority=authority, id_type="NH")
    assert Cx.parse(cx.text) == cx


@settings(max_examples=50, deadline=None)
@given(patterns=st.lists(text(1, 30), min_size=1, max_size=3))
def test_query_values_read_back_equal_whatever_their_quotes(patterns: list[str]) -> None:
    request = AdhocQueryRequest(query=FindDocumentsQuery(patient_id=PATIENT, author_persons=tuple(patterns)))
    assert parse_adhoc_query_request(to_bytes(build_adhoc_query_request(request))) == request
