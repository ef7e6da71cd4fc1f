"""The DMP (Mon espace santé) over IHE XDS.b: deposit, query, retrieve, update, DMP transactions.

* :mod:`~dmp_connector.dmp.client` — :class:`DmpClient` / :class:`AsyncDmpClient`, one method per operation;
* :mod:`~dmp_connector.dmp.mapping` — a CDA document's metadata as a DocumentEntry, a whole deposit
  built from the document's bytes, and the derived ids that make a deposit safe to repeat;
* :mod:`~dmp_connector.dmp.operations` — ITI-41, ITI-18, ITI-43, ITI-57 as sans-I/O operations;
* :mod:`~dmp_connector.dmp.td` — the DMP's own transactions (TD0.2 … TD1.4), typed; their XML is
  in one private module, ``_td``, where what is not public is marked [I];
* :mod:`~dmp_connector.dmp.errors` — the DMP's refusals as typed errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmp_connector._deprecation import deprecated_getattr

from .client import Access, AsyncDmpClient, DepositResult, DmpClient, DocumentList, RetrievedDmpDocument
from .errors import (
    DMP_ERROR_CODES,
    DepositedDocument,
    DmpAccessDeniedError,
    DmpAlreadyExistsError,
    DmpClosedError,
    DmpNotFoundError,
    DmpRegistryError,
    DmpServiceError,
    DocumentConflictError,
    PartialDepositError,
)
from .mapping import DepositIds, PreparedDeposit, deposit_ids, derived_oid, document_entry, prepare_deposit
from .operations import DmpOperation, ProvideAndRegister, RegistryStoredQuery, RetrieveDocumentSet, UpdateDocumentSet
from .td import (
    Address,
    AdministrativeData,
    AuthorisationStatus,
    AuthorisedProfessional,
    Closure,
    ClosureReason,
    DmpState,
    DmpStatus,
    Oppositions,
    PatientCandidate,
    PatientSearch,
    RecentDmp,
    RecentDmpKind,
    ServiceStatus,
    VitaleCard,
)

__all__ = [
    "DMP_ERROR_CODES",
    "Access",
    "Address",
    "AdministrativeData",
    "AsyncDmpClient",
    "AuthorisationStatus",
    "AuthorisedProfessional",
    "Closure",
    "ClosureReason",
    "DepositIds",
    "DepositResult",
    "DepositedDocument",
    "DmpAccessDeniedError",
    "DmpAlreadyExistsError",
    "DmpClient",
    "DmpClosedError",
    "DmpNotFoundError",
    "DmpOperation",
    "DmpRegistryError",
    "DmpServiceError",
    "DmpState",
    "DmpStatus",
    "DocumentConflictError",
    "DocumentList",
    "Oppositions",
    "PartialDepositError",
    "PatientCandidate",
    "PatientSearch",
    "PreparedDeposit",
    "ProvideAndRegister",
    "RecentDmp",
    "RecentDmpKind",
    "RegistryStoredQuery",
    "RetrieveDocumentSet",
    "RetrievedDmpDocument",
    "ServiceStatus",
    "UpdateDocumentSet",
    "VitaleCard",
    "deposit_ids",
    "derived_oid",
    "document_entry",
    "prepare_deposit",
]


# The American spellings, kept for one release (issue 18): one spelling, "authorisation", in the API.
_RENAMED: dict[str, str] = {
    "AuthorizationStatus": "AuthorisationStatus",
    "AuthorizedProfessional": "AuthorisedProfessional",
}

if not TYPE_CHECKING:
    # Hidden from type checkers, so that the old names are errors for them and warnings at run time.

    __getattr__ = deprecated_getattr(
        __name__,
        {old: f"{__name__}:{new}" for old, new in _RENAMED.items()},
        "{home}.{name} is deprecated: use {home}.{new} (removed in the next release)",
    )


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
