"""FHIR: the identity as an FR Core Patient and a DMP entry as a DocumentReference (extra ``fhir``).

* :mod:`.patient` — :func:`identity_to_patient`, :func:`identity_from_patient`,
  :func:`check_patient`; :class:`FrCoreSettings` picks the FR Core release written;
* :mod:`.document_reference` — :func:`document_reference`, the MHD view of an XDS entry.

Resources are FHIR R4 JSON (dicts), checked by the fhir.resources models (R4B's Patient and
DocumentReference, identical to R4's) behind one boundary module; :func:`to_model` gives the
library's object. This package imports without the extra; the functions then raise a
:class:`~dmp_connector.errors.ConfigurationError` naming it.
"""

from __future__ import annotations

from ._library import FhirStructureError, to_model
from .document_reference import document_reference
from .patient import (
    BIRTH_LIST_GIVEN_NAME,
    BIRTH_PLACE,
    IDENTITY_RELIABILITY,
    INSEE_CODE,
    FhirMappingError,
    FrCoreSettings,
    FrCoreVersion,
    check_patient,
    identity_from_patient,
    identity_to_patient,
)

__all__ = [
    "BIRTH_LIST_GIVEN_NAME",
    "BIRTH_PLACE",
    "IDENTITY_RELIABILITY",
    "INSEE_CODE",
    "FhirMappingError",
    "FhirStructureError",
    "FrCoreSettings",
    "FrCoreVersion",
    "check_patient",
    "document_reference",
    "identity_from_patient",
    "identity_to_patient",
    "to_model",
]
