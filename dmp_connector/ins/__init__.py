"""The national health identity (INS): matricule and OID, identity traits, identity statuses.

* :mod:`.matricule` — :class:`INS`, :class:`InsOid`, :func:`compute_key`: the matricule, its key
  and the formats it takes in CDA, XDS and MSSanté;
* :mod:`.traits` — :class:`IdentityTraits`, :class:`BirthDate`, :class:`Sex`,
  :func:`normalize_name` and the trait comparison;
* :mod:`.identity` — :class:`Identity` and :class:`IdentityStatus`: the RNIV rules that say
  when INSi may be called and when the matricule may be shared;
* :mod:`.datamatrix` — :func:`encode_payload`, :func:`decode_payload`: the INS Datamatrix text of
  printed documents (images: :mod:`.datamatrix_image`, extra ``datamatrix``);
* :mod:`.insi` — the INSi operations (sans-I/O: requests built, answers and faults read);
* :mod:`.client` — :class:`InsiClient` / :class:`AsyncInsiClient`, the only part that sends.
"""

from __future__ import annotations

from .client import AsyncInsiClient, InsiClient
from .datamatrix import DatamatrixError, DatamatrixFormat, InsDatamatrix, decode_payload, encode_payload
from .identity import Identity, IdentityDocument, IdentityDocumentKind, IdentityStatus
from .insi import (
    CarteVitaleBeneficiary,
    InsiHistoryEntry,
    InsiIdentity,
    InsiResult,
    InsiResultCode,
    InsiServiceError,
    InsiSeverity,
    InsiVerification,
    SearchByCarteVitale,
    SearchByTraits,
    SearchCriteria,
    VerificationVerdict,
    VitaleNir,
)
from .matricule import INS, InsKind, InsOid, MatriculeRules, compute_key
from .traits import (
    BirthDate,
    DifferenceKind,
    IdentityTraits,
    Sex,
    TraitComparison,
    TraitDifference,
    first_name_coherent,
    normalize_name,
    split_first_names,
)

__all__ = [
    "INS",
    "AsyncInsiClient",
    "BirthDate",
    "CarteVitaleBeneficiary",
    "DatamatrixError",
    "DatamatrixFormat",
    "DifferenceKind",
    "Identity",
    "IdentityDocument",
    "IdentityDocumentKind",
    "IdentityStatus",
    "IdentityTraits",
    "InsDatamatrix",
    "InsKind",
    "InsOid",
    "InsiClient",
    "InsiHistoryEntry",
    "InsiIdentity",
    "InsiResult",
    "InsiResultCode",
    "InsiServiceError",
    "InsiSeverity",
    "InsiVerification",
    "MatriculeRules",
    "SearchByCarteVitale",
    "SearchByTraits",
    "SearchCriteria",
    "Sex",
    "TraitComparison",
    "TraitDifference",
    "VerificationVerdict",
    "VitaleNir",
    "compute_key",
    "decode_payload",
    "encode_payload",
    "first_name_coherent",
    "normalize_name",
    "split_first_names",
]

from dmp_connector._help import document_fields

document_fields(globals()[name] for name in __all__ if name in globals())
