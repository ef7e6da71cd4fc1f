"""Issue 22 (session 6): a model's construction without BaseModel.__init__'s frame, and the metadata read without
sources, against what they replace."""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any, Self

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import model_validator

import dmp_connector.cda.volets  # noqa: F401 - registers the volets' models as _Model subclasses
from dmp_connector.cda import extract_metadata, parse
from dmp_connector.cda._source import Source
from dmp_connector.cda.model import (
    AssignedEntity,
    Device,
    InstanceId,
    Organization,
    Period,
    PersonName,
    Telecom,
    _Model,
    _reading,
    _translate,
)
from dmp_connector.errors import DmpConnectorError

_parse = sys.modules["dmp_connector.cda.parse"]


def _reference_init(self: _Model, /, **data: Any) -> None:
    """``_Model.__init__`` as it was: through ``BaseModel.__init__``."""
    try:
        pydantic.BaseModel.__init__(self, **data)
    except pydantic.ValidationError as exc:
        raise _translate(exc, type(self).__name__) from None


def _made(cls: type[_Model], init: Any, data: dict[str, Any]) -> tuple[str, Any]:
    """What ``init`` makes of ``data`` for ``cls``: the instance's whole state, or the error it raises."""
    instance = cls.__new__(cls)
    try:
        init(instance, **data)
    except DmpConnectorError as exc:
        return "refused", (type(exc).__name__, exc.message, getattr(exc, "problems", None))
    state = (
        list(instance.__dict__.items()),  # the values, in field order
        instance.__pydantic_fields_set__,
        instance.__pydantic_extra__,
        instance.__pydantic_private__,
    )
    return "made", state


def _models_of(value: Any) -> Iterator[_Model]:
    """Every model in a read document, depth first."""
    if isinstance(value, _Model):
        yield value
        for name in type(value).model_fields:
            yield from _models_of(getattr(value, name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _models_of(item)


def test_every_model_of_the_kit_is_made_as_base_model_init_makes_it(
    parsed_examples: Mapping[str, Any],
) -> None:
    count = 0
    with _reading():  # the mode the examples were read in (naive times, lenient roots)
        for document in parsed_examples.values():
            for model in _models_of(document):
                cls = type(model)
                data = {name: getattr(model, name) for name in model.model_fields_set}
                assert _made(cls, cls.__init__, data) == _made(cls, _reference_init, data)
                count += 1
    assert count > 5000


_TEXT = st.one_of(st.none(), st.text(max_size=4), st.integers(-2, 2), st.just(b"x"))
_TIME = st.one_of(
    st.none(),
    st.dates(min_value=date(2020, 1, 1), max_value=date(2020, 1, 3)),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2020, 1, 3)),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2020, 1, 3), timezones=st.just(timezone(timedelta(hours=1)))
    ),
    st.sampled_from(["2020-01-02", "2020-01-02T10:00:00+01:00", "2020-13-01", "x"]),
)
_CASES = st.one_of(
    st.tuples(
        st.just(PersonName),
        st.fixed_dictionaries({"family": _TEXT}, optional={"given": _TEXT, "prefix": _TEXT, "suffix": _TEXT}),
    ),
    st.tuples(st.just(Device), st.fixed_dictionaries({}, optional={"software_name": _TEXT, "colour": _TEXT})),
    st.tuples(
        st.just(InstanceId),
        st.fixed_dictionaries(
            {"root": st.one_of(_TEXT, st.sampled_from(["1.2.3", "1.02", "a b", "0.1"]))}, optional={"extension": _TEXT}
        ),
    ),
    st.tuples(st.just(Telecom), st.fixed_dictionaries({}, optional={"value": _TEXT, "null_flavor": _TEXT})),
    st.tuples(
        st.just(Period),
        st.fixed_dictionaries({}, optional={"low": _TIME, "high": _TIME, "value": _TIME, "null_flavor": _TEXT}),
    ),
    st.tuples(
        st.just(AssignedEntity),
        st.fixed_dictionaries(
            {"id": st.sampled_from([None, InstanceId(root="1.2.3")])},
            optional={
                "person": st.sampled_from([None, PersonName(family="A")]),
                "device": st.sampled_from([None, Device(software_name="x")]),
                "organization": st.sampled_from([None, Organization(), "x"]),
            },
        ),
    ),
)


@given(_CASES, st.booleans())
@settings(max_examples=400)
def test_a_model_is_made_or_refused_as_base_model_init_does(
    case: tuple[type[_Model], dict[str, Any]], reading: bool
) -> None:
    cls, data = case
    if reading:
        with _reading():
            assert _made(cls, cls.__init__, data) == _made(cls, _reference_init, data)
    else:
        assert _made(cls, cls.__init__, data) == _made(cls, _reference_init, data)


def test_a_validator_giving_another_instance_still_warns_as_pydantic_does() -> None:
    class Other(_Model):
        family: str

        @model_validator(mode="after")
        def _elsewhere(self) -> Self:
            return self.model_copy()

    with pytest.warns(UserWarning, match="A custom validator is returning a value other than `self`"):
        made = Other(family="A")
    assert made.family == "A"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PersonName(family="A")  # ours return self: no warning


# --------------------------------------------------------------------------- the metadata read keeps no sources


def test_the_metadata_read_gives_what_the_full_read_gives(example_files: Mapping[str, bytes]) -> None:
    refused = 0
    for data in example_files.values():
        try:
            expected: Any = extract_metadata(parse(data), data=data)
        except DmpConnectorError as exc:
            expected = (type(exc), exc.message)
        try:
            got: Any = extract_metadata(data)
        except DmpConnectorError as exc:
            got = (type(exc), exc.message)
            refused += 1
        assert got == expected
    assert refused  # refusals were compared too


def test_the_metadata_read_makes_no_source_and_leaves_sources_on(
    example_files: Mapping[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Source] = []

    class Counted(Source):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(_parse, "Source", Counted)
    data = example_files[next(name for name in example_files if name.startswith("DOC_NON_STRUCTURE"))]
    extract_metadata(data)
    assert made == []
    assert _parse._SOURCES.get() is True
    document = parse(data)
    assert made and document._source is not None and document.patient._source is not None
    made.clear()
    with pytest.raises(DmpConnectorError):
        extract_metadata(data.replace(b"<title>", b"<title>\x01"))  # refused by the parser
    broken = re.sub(rb'administrativeGenderCode code="[A-Z]+"', b'administrativeGenderCode code="X"', data)
    assert broken != data
    with pytest.raises(DmpConnectorError):
        extract_metadata(broken)  # refused while the header is read
    assert _parse._SOURCES.get() is True  # a refused read leaves the sources on too
    assert made == []


def test_a_reader_outside_a_metadata_read_keeps_its_source(example_files: Mapping[str, bytes]) -> None:
    document = parse(example_files[next(name for name in example_files if name.startswith("DOC_NON_STRUCTURE"))])
    element = document.patient._source.element if document.patient._source is not None else None
    assert element is not None
    extract_metadata(example_files[next(name for name in example_files if name.startswith("DOC_NON_STRUCTURE"))])
    with _reading(), _parse._values_kept():
        again = _parse._patient(element)
    assert again._source is not None
    assert again == document.patient
