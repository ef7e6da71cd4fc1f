"""The reader's shortcuts (issue 22) against what they replace."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import PrivateAttr
from pydantic._internal._model_construction import init_private_attributes

import dmp_connector.cda.volets  # noqa: F401 - registers the volets' models as _Model subclasses
from dmp_connector.cda import parse, parse_ts
from dmp_connector.cda._namespaces import hl7
from dmp_connector.cda.model import OTHER_HEADER_ELEMENTS, InstanceId, PersonName, _init_source, _Model, _reading
from dmp_connector.codes import Code
from dmp_connector.errors import DmpConnectorError, ValidationError
from dmp_connector.xml import DEFAULT_LIMITS, parse_xml

_parse = sys.modules["dmp_connector.cda.parse"]


def _models() -> list[type[_Model]]:
    found: list[type[_Model]] = []
    todo: list[type[_Model]] = [_Model]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _models(), ids=lambda c: c.__qualname__)
def test_source_post_init_is_what_pydantic_generates(cls: type[_Model]) -> None:
    assert cls.model_post_init is _init_source
    assert set(cls.__private_attributes__) == {"_source"}
    theirs = cls.model_construct()
    object.__setattr__(theirs, "__pydantic_private__", None)
    init_private_attributes(theirs, None)
    ours = cls.model_construct()
    object.__setattr__(ours, "__pydantic_private__", None)
    _init_source(ours, None)
    assert ours.__pydantic_private__ == theirs.__pydantic_private__ == {"_source": None}


def test_a_built_model_has_its_private_source() -> None:
    ident = InstanceId(root="1.2.3", extension="x")
    assert ident.__pydantic_private__ == {"_source": None}
    assert ident._source is None
    assert ident == InstanceId(root="1.2.3", extension="x")
    assert ident.model_copy(update={"extension": "y"}).__pydantic_private__ == {"_source": None}


def test_a_model_with_its_own_post_init_keeps_it() -> None:
    calls: list[Any] = []

    class Own(_Model):
        family: str

        def model_post_init(self, context: Any, /) -> None:
            calls.append(context)

    class More(_Model):
        family: str
        _other: int = PrivateAttr(default=3)

    class Below(Own):
        pass

    assert Own.model_post_init is not _init_source
    assert More.model_post_init is not _init_source
    assert Below.model_post_init is not _init_source
    Below(family="A")
    assert len(calls) == 1
    assert More(family="A").__pydantic_private__ == {"_source": None, "_other": 3}
    assert PersonName.model_post_init is _init_source


# --------------------------------------------------------------------------- parse_ts

_OLD_TS = re.compile(
    r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"
    r"(?:(?P<H>\d{2})(?P<M>\d{2})?(?P<S>\d{2})?(?:\.(?P<f>\d{1,6})\d*)?)?"
    r"(?P<z>[+-]\d{3,4})?$"
)


def _old_parse_ts(text: str, *, lenient: bool = False) -> datetime | date:
    """parse_ts as it was before issue 22f (groupdict, a new timezone per call)."""
    match = _OLD_TS.match(text.strip())
    if match is None:
        raise ValidationError(
            "a CDA time is YYYYMMDD or YYYYMMDDHH[MM[SS]][.f]±ZZZZ", problems=("time: unsupported format",)
        )
    g = match.groupdict()
    year, month, day = int(g["y"]), int(g["m"]), int(g["d"])
    try:
        if g["H"] is None:
            return date(year, month, day)
        zone = None
        if g["z"] is not None:
            if len(g["z"]) == 4 and not lenient:
                raise ValidationError("a CDA time zone is ±HHMM", problems=("time: time zone of 3 digits",))
            digits = g["z"][1:].rjust(4, "0")
            sign = -1 if g["z"][0] == "-" else 1
            zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micro = int((g["f"] or "0").ljust(6, "0"))
        return datetime(year, month, day, int(g["H"]), int(g["M"] or 0), int(g["S"] or 0), micro, tzinfo=zone)
    except ValueError:
        raise ValidationError("a CDA time is not on the calendar", problems=("time: impossible date",)) from None


def _outcome(function: Any, text: str, lenient: bool) -> tuple[str, Any]:
    try:
        value = function(text, lenient=lenient)
    except ValidationError as exc:
        return "refused", (exc.message, exc.problems)
    return type(value).__name__, (value, value.utcoffset() if isinstance(value, datetime) else None)


_TS_TEXT = st.one_of(
    st.text(alphabet="0123456789+-. \n", max_size=26),
    st.builds(
        lambda day, time, fraction, zone: day + time + fraction + zone,
        st.sampled_from(["20240110", "20240229", "20230229", "19991231", "00000101", "20241301", "٢٠٢٤0110"]),
        st.sampled_from(["", "09", "0930", "093000", "2460", "235959", "99"]),
        st.sampled_from(["", ".1", ".123456", ".1234567", "."]),
        st.sampled_from(["", "+0100", "-0530", "+100", "-000", "+2400", "+2359", "+0", "+12345", "+٠١٠٠", "Z"]),
    ),
)


@given(_TS_TEXT, st.booleans())
@settings(max_examples=400)
def test_parse_ts_reads_and_refuses_as_before(text: str, lenient: bool) -> None:
    assert _outcome(parse_ts, text, lenient) == _outcome(_old_parse_ts, text, lenient)


def test_parse_ts_zones_are_remembered_and_bounded() -> None:
    first, again = parse_ts("20240110093000+0100"), parse_ts("20240110093000+0100")
    assert isinstance(first, datetime) and isinstance(again, datetime)
    assert first.tzinfo is again.tzinfo
    for minutes in range(200):
        parse_ts(f"20240110093000+{minutes // 60:02d}{minutes % 60:02d}")
    assert len(_parse._ZONES) <= _parse._ZONES_MAX


# --------------------------------------------------------------------------- the root's children in one pass

_NAMES = (
    "id",
    "setId",
    "versionNumber",
    "code",
    "effectiveTime",
    "relatedDocument",
    "custodian",
    "legalAuthenticator",
    "componentOf",
    "confidentialityCode",
    "languageCode",
    "title",
    "templateId",
    "recordTarget",
    "author",
    "participant",
    "informationRecipient",
    "documentationOf",
    "component",
    "realmCode",
    "nothing",
)
_PATHS = (
    ("custodian", "assignedCustodian", "representedCustodianOrganization"),
    ("componentOf", "encompassingEncounter"),
    ("documentationOf", "serviceEvent"),
    ("author",),
)
_TREE = b"""<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:o="urn:other">
<!-- a comment --><?pi x?><o:id root="9"/><id root="1"/><id root="2"/><title>T</title><o:title>O</o:title>
<documentationOf><serviceEvent n="1"/><serviceEvent n="2"/></documentationOf><documentationOf/>
<documentationOf><o:serviceEvent/><serviceEvent n="3"/></documentationOf>
<custodian/><custodian><assignedCustodian><representedCustodianOrganization n="a"/></assignedCustodian>
<assignedCustodian><representedCustodianOrganization n="b"/></assignedCustodian></custodian>
</ClinicalDocument>"""


def _roots(example_files: Mapping[str, bytes]) -> list[etree._Element]:
    roots = [parse_xml(_TREE)]
    for data in example_files.values():
        try:
            root, _, _ = _parse._parse_tree(data, DEFAULT_LIMITS, keep_layout=False)
            roots.append(_parse._find_document(root))
        except (DmpConnectorError, ValueError):
            continue  # the refusals are the golden outputs' concern
    return roots


def test_the_child_index_finds_what_iterchildren_finds(example_files: Mapping[str, bytes]) -> None:
    roots = _roots(example_files)
    assert len(roots) > 90
    for root in roots:
        kids = _parse._ChildIndex(root)
        for name in _NAMES:
            assert kids.children(name) == list(_parse._children(root, name))
            assert kids.child(name) == _parse._child(root, name)
            try:
                expected: object = _parse._require(root, name, "ClinicalDocument")
            except ValidationError as exc:
                expected = (exc.message, exc.problems)
            try:
                got: object = kids.require(name, "ClinicalDocument")
            except ValidationError as exc:
                got = (exc.message, exc.problems)
            assert got == expected
        for path in _PATHS:
            clark = "/".join(hl7(n) for n in path)
            assert list(_parse._path((root,), *path)) == list(root.iterfind(clark))
            assert list(_parse._path(kids.children(path[0]), *path[1:])) == list(root.iterfind(clark))


_TYPED = (
    _parse._PATIENT_TYPED,
    _parse._ROLE_TYPED,
    _parse._EVENT_TYPED,
    _parse._ENCOUNTER_TYPED,
    _parse._SECTION_TYPED,
)
_UNTYPED_TREE = b"""<r xmlns="urn:hl7-org:v3" xmlns:o="urn:other"><!-- c --><?pi x?><id/><o:id/><code/><o:name/>
<name/><lab xmlns="urn:oid:1.3.6.1.4.1.19376.1.3.2"/><effectiveTime/><guardian/><id/></r>"""


def _text_by_itertext(element: etree._Element) -> str | None:
    return "".join(str(t) for t in element.itertext()).strip() or None


def test_every_element_reads_the_same_through_its_index(example_files: Mapping[str, bytes]) -> None:
    roots = [parse_xml(_UNTYPED_TREE), *_roots(example_files)]
    seen = 0
    for root in roots:
        for element in root.iter(etree.Element):
            kids = _parse._ChildIndex(element)
            for typed in _TYPED:
                assert _parse._untyped(kids, typed) == _parse._untyped(element, typed)
            for name in ("id", "code", "name", "addr", "telecom", "templateId", "performer", "low", "family"):
                assert _parse._children(kids, name) == list(_parse._children(element, name))
                assert _parse._child(kids, name) == _parse._child(element, name)
            assert _parse._addresses(kids) == _parse._addresses(element)
            assert _parse._telecoms(kids) == _parse._telecoms(element)
            assert _parse._text(element) == _text_by_itertext(element)
            seen += 1
    assert seen > 10_000


def test_the_other_header_elements_are_those_of_any_namespace(example_files: Mapping[str, bytes]) -> None:
    tree = b"""<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:o="urn:other"><!-- c --><informant n="1"/><id/>
    <o:authenticator/><dataEnterer/><informant n="2"/><authorization/></ClinicalDocument>"""
    roots = [parse_xml(tree), *_roots(example_files)]
    found = 0
    for root in roots:
        expected = [c for c in root if isinstance(c.tag, str) and _parse.local_name(c) in OTHER_HEADER_ELEMENTS]
        assert _parse._ChildIndex(root).local_named(OTHER_HEADER_ELEMENTS) == expected
        found += len(expected)
    assert found > 5


# --------------------------------------------------------------------------- validated values kept


def _ii_element(root: str, extension: str | None = None) -> etree._Element:
    element = etree.Element(hl7("id"), root=root)
    if extension is not None:
        element.set("extension", extension)
    return element


def test_a_kept_id_is_the_id_validated_in_the_same_mode() -> None:
    with _parse._values_kept():
        _check_kept_ids()


def _check_kept_ids() -> None:
    malformed = "1.2.250.1.213.1.1.1.1,3"  # no OID, no UUID: read from a received document, refused when built
    with _reading():
        read = _parse._ii(_ii_element(malformed, "x"))
        assert read == InstanceId.model_construct(root=malformed, extension="x")
        assert _parse._ii(_ii_element(malformed, "x")) is read
    with pytest.raises(ValidationError) as kept:
        _parse._ii(_ii_element(malformed, "x"))
    with pytest.raises(ValidationError) as fresh:
        InstanceId(root=malformed, extension="x")
    assert (kept.value.message, kept.value.problems) == (fresh.value.message, fresh.value.problems)
    for mode in (False, True):
        with _reading() if mode else contextlib.nullcontext():
            for root, extension in (("1.2.3", None), (" 1.2.3 ", "e"), ("", None), ("1 2", "x"), ("1.2.3", "")):
                element = _ii_element(root, extension)
                expected = _outcome_of(_fresh_id, root.strip(), extension or None)
                for _ in range(2):  # validated, then looked up
                    assert _outcome_of(_parse._ii, element) == expected


def _fresh_id(root: str, extension: str | None) -> InstanceId:
    return InstanceId(root=root, extension=extension)


def _fresh_code(code: str, system: str, display: str | None) -> Code:
    return Code(code=code, code_system=system, display_name=display)


def test_a_kept_code_is_the_code_validated() -> None:
    with _parse._values_kept():
        _check_kept_codes()


def _check_kept_codes() -> None:
    cases = (("N", "2.16.840.1.113883.5.25", "Normal"), ("X", " 1.2.3 ", None), ("X", "no oid", None))
    for code, system, display in cases:
        element = etree.Element(hl7("code"), code=code, codeSystem=system)
        if display is not None:
            element.set("displayName", display)
        expected = _outcome_of(_fresh_code, code, system.strip(), display)
        for _ in range(2):
            assert _outcome_of(_parse._code, element) == expected


def _outcome_of(make: Any, *args: Any) -> tuple[str, Any]:
    try:
        value = make(*args)
    except (ValidationError, pydantic.ValidationError) as exc:
        return "refused", str(exc)
    return "read", (value, value.__pydantic_private__ if isinstance(value, _Model) else None)


@given(_TS_TEXT)
@settings(max_examples=200)
def test_a_kept_time_is_the_time_read(text: str) -> None:
    expected = _outcome(parse_ts, text, True)
    element = etree.Element(hl7("time"), value=text)
    with _parse._values_kept():
        for _ in range(2):  # read, then looked up
            got = _outcome(lambda value, lenient: _parse._ts(element), text, True)
            assert got == (expected if text else ("NoneType", (None, None)))


def test_the_patient_ids_are_not_kept_and_nothing_outlives_the_read(
    example_files: Mapping[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[tuple[object, ...], Any]] = []
    real = _parse._values_kept

    @contextlib.contextmanager
    def watched() -> Iterator[None]:
        with real():
            values = _parse._VALUES.get()
            assert values is not None
            seen.append(values)
            yield

    monkeypatch.setattr(_parse, "_values_kept", watched)
    data = example_files[next(name for name in example_files if name.startswith("DOC_NON_STRUCTURE"))]
    document = parse(data)
    assert _parse._VALUES.get() is None  # the read's memory went with it
    (values,) = seen
    kept_ids = {(key[1], key[2]) for key in values if key[0] == "id"}
    ins = document.patient.identity.ins
    assert ins is not None
    patient_ids: list[tuple[str, str | None]] = [(ins.oid.value, ins.matricule)]
    patient_ids += [(i.root, i.extension) for i in (*document.patient.other_ids, *document.encounter.ids)]
    patient_ids += [(i.root, i.extension) for i in document.service_events[0].ids]
    assert patient_ids
    for pair in patient_ids:
        assert pair not in kept_ids
    assert (document.id.root, document.id.extension) in kept_ids  # the memory is used at all
