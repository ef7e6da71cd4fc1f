"""The one boundary with the FHIR model library (fhir.resources, extra ``fhir``).

The mappings build and read plain FHIR JSON; every resource that goes out or comes in is
checked here by the library's R4B models (R4B's Patient and DocumentReference are R4's,
which FR Core is based on). The library's errors are translated into
:class:`FhirStructureError` and nothing of the resource (a name, an INS) goes into the message.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import Any

from dmp_connector.errors import ConfigurationError, ValidationError

__all__ = ["FhirStructureError", "check_resource", "load_json", "to_model"]

_MODULES = {"Patient": "fhir.resources.R4B.patient", "DocumentReference": "fhir.resources.R4B.documentreference"}
_MAX_JSON = 2_000_000


class FhirStructureError(ValidationError):
    """A FHIR resource is not valid R4 JSON (unknown element, wrong type, wrong resource type)."""


def _model_class(resource_type: str) -> Any:
    try:
        module = importlib.import_module(_MODULES[resource_type])
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            "dmp_connector.fhir needs the FHIR model library",
            hint="pip install 'dmp-connector[fhir]'",
        ) from exc
    return getattr(module, resource_type)


def load_json(source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """A resource as a dict, from JSON text or a mapping; bounded in size, never ``eval``-like."""
    if isinstance(source, Mapping):
        return dict(source)
    if len(source) > _MAX_JSON:
        raise FhirStructureError(f"a FHIR resource over {_MAX_JSON} bytes is refused")
    try:
        data = json.loads(source)
    except (ValueError, UnicodeDecodeError):
        raise FhirStructureError("not JSON: a FHIR resource is read from its JSON form") from None
    if not isinstance(data, dict):
        raise FhirStructureError("a FHIR resource is a JSON object")
    return data


def to_model(data: Mapping[str, Any]) -> Any:
    """The fhir.resources (R4B) object for ``data``, for code that wants the library's model."""
    resource_type = data.get("resourceType")
    if resource_type not in _MODULES:
        raise FhirStructureError(f"expected one of {', '.join(_MODULES)}; got another resource type")
    cls = _model_class(str(resource_type))
    try:
        return cls.model_validate(dict(data))
    except Exception as exc:  # the library raises pydantic's error with the input in it: never chain it
        problems = _problems(exc)
        raise FhirStructureError(
            f"this {resource_type} is not valid FHIR R4: " + "; ".join(problems[:5]), problems=problems
        ) from None


def check_resource(data: Mapping[str, Any], resource_type: str) -> None:
    """Raise :class:`FhirStructureError` unless ``data`` is a valid FHIR R4 ``resource_type``."""
    if data.get("resourceType") != resource_type:
        raise FhirStructureError(f"expected a {resource_type} resource")
    to_model(data)


def _problems(exc: Exception) -> list[str]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [type(exc).__name__]
    out = []
    for error in errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error.get("loc", ()))
        out.append(f"{where or 'resource'}: {error.get('type', 'invalid')}")
    return out or [type(exc).__name__]
