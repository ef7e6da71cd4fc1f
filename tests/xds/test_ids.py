"""The deterministic classification and identifier ids of an ebRIM request (issue 22: built without ``uuid.UUID``)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from dmp_connector.xds.ebrim import _ID_NAMESPACE, _urn_uuid5


@given(st.text())
def test_ids_are_the_uuid5_of_their_names(name: str) -> None:
    try:
        expected = f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, name)}"
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        try:
            _urn_uuid5(name)
        except UnicodeEncodeError:
            return
        raise AssertionError("a name uuid5 cannot encode was accepted") from None
    assert _urn_uuid5(name) == expected
