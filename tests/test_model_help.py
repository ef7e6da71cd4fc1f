"""help() on a model lists its fields with what they mean, not only pydantic's inherited methods."""

from __future__ import annotations

import importlib
import inspect
import pydoc

import pytest
from pydantic import BaseModel

PACKAGES = [
    "dmp_connector.config",
    "dmp_connector.ins",
    "dmp_connector.dmp",
    "dmp_connector.dmp.td",
    "dmp_connector.cda",
    "dmp_connector.cda.volets",
    "dmp_connector.mssante",
    "dmp_connector.xds",
    "dmp_connector.signature",
    "dmp_connector.audit",
    "dmp_connector.retries",
    "dmp_connector.codes",
    "dmp_connector.xml",
    "dmp_connector.hl7v2",
]


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.model_fields:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[key] for key in sorted(found)]


MODELS = _models()


def test_there_are_models_to_check() -> None:
    assert len(MODELS) > 100


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__qualname__)
def test_every_field_is_described_and_shown_by_help(model: type[BaseModel]) -> None:
    undocumented = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not undocumented, f"{model.__qualname__}: no docstring under {undocumented}"
    shown = pydoc.render_doc(model, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    fields_section = shown.split("Fields:", 1)
    assert len(fields_section) == 2, f"{model.__qualname__}: help() lists no fields"
    for name in model.model_fields:
        assert f"{name}: " in fields_section[1], name
