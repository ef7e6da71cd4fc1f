"""The reader's shortcuts (issue 22) against what they replace."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import PrivateAttr
from pydantic._internal._model_construction import init_private_attributes

import dmp_connector.cda.volets  # noqa: F401 - registers the volets' models as _Model subclasses
from dmp_connector.cda.model import InstanceId, PersonName, _init_source, _Model


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
