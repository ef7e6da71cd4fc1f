"""mapping.derived_oid hashes without building a UUID (issue 22): the same integer as uuid.uuid5."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.dmp import mapping


@given(st.text())
def test_the_derived_number_is_uuid5s(name: str) -> None:
    try:
        expected = uuid.uuid5(mapping._NAMESPACE, name).int
    except UnicodeEncodeError:
        try:
            mapping._uuid5_int(name)
        except UnicodeEncodeError:
            return
        raise AssertionError("a name uuid5 cannot encode was accepted") from None
    assert mapping._uuid5_int(name) == expected


@given(st.lists(st.text(min_size=1, max_size=30).filter(lambda t: t.isprintable()), min_size=1, max_size=4))
def test_derived_oids_are_those_of_uuid5(parts: list[str]) -> None:
    number = uuid.uuid5(mapping._NAMESPACE, "\x1f".join(parts)).int
    root = "1.2.250.1.999.12"
    digits = str(number)[: 64 - len(root) - 1].lstrip("0") or "0"
    assert mapping.derived_oid(root, *parts) == f"{root}.{digits}"
