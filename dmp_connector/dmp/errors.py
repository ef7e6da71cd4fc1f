"""The DMP's refusals as typed errors, under the SDK's one tree.

Every refusal keeps the service's own codes (``codes``, ``code``) and explanation (``text``), so a
vendor can look them up in the DMP guide; the message names codes only, never the explanation,
which may quote patient data::

    ServiceError
    └── DmpServiceError              any DMP refusal: HL7 v3 AE/AR, a non-DMPOK status, a fault
        ├── DmpNotFoundError         the patient has no DMP (NF, XDSUnknownPatientId)
        ├── DmpClosedError           the DMP is closed (DMPClosed)
        ├── DmpAlreadyExistsError    the DMP exists already (DMPFound)
        ├── DmpAccessDeniedError     no authorisation, blocked, or an opposition to the access mode
        └── DmpRegistryError         an XDS registry/repository Failure (also a RegistryResponseError)
            ├── DocumentConflictError     a uniqueId already used by another document (other hash)
            └── PartialDepositError       PartialSuccess: what was stored and what was not, per document

An XDS failure whose code says "no DMP", "closed" or "access denied" is raised as a class that is
both a :class:`DmpRegistryError` and the matching kind (``except DmpNotFoundError`` catches it
whichever way the DMP said it). How a code gets its kind, in order:

1. :data:`DMP_ERROR_CODES`: the ITI TF-3 code ``XDSUnknownPatientId`` and the DMP codes public
   sources show (``DMPClosed``, ``DMPFound``);
2. the table of ``settings.dmp.error_codes``: the DMP-specific XDS codes, none of which is public —
   its defaults (``DMPNotFound``, ``DMPAccessDenied``, ``DMPPatientOpposition``) are the sandbox's
   names, unconfirmed [I];
3. a code of either table named in a ``codeContext`` (``"DMPClosed: …"``) when the code itself is a
   generic one (``XDSRegistryError``).

Any other code stays a plain :class:`DmpRegistryError` that keeps code, context, location and severity.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

from dmp_connector._tls import certificate_subject_names
from dmp_connector.config import DmpSettings, Settings
from dmp_connector.errors import ServiceError, SoapFaultError, shown_code
from dmp_connector.xds import RegistryError, RegistryResponse, RegistryResponseError

__all__ = [
    "DMP_ERROR_CODES",
    "ERROR_KINDS",
    "DepositedDocument",
    "DmpAccessDeniedError",
    "DmpAlreadyExistsError",
    "DmpClosedError",
    "DmpNotFoundError",
    "DmpRegistryError",
    "DmpServiceError",
    "DocumentConflictError",
    "PartialDepositError",
    "error_codes",
    "error_for_codes",
    "fault_error",
    "registry_error",
]

SERVICE: Final = "dmp"


class DmpServiceError(ServiceError):
    """The DMP processed the request and refused it; ``codes`` lists every code it gave, in order.

    When the refusal came as an XDS registry response, the error is also a :class:`DmpRegistryError`
    whose ``response`` keeps it whole.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        service: str = SERVICE,
        text: str | None = None,
        operation: str | None = None,
        transient: bool = False,
        hint: str | None = None,
        codes: Sequence[str] = (),
    ) -> None:
        super().__init__(
            message, service=service, code=code, text=text, operation=operation, transient=transient, hint=hint
        )
        self.codes: tuple[str, ...] = tuple(codes) or (code,)


class DmpNotFoundError(DmpServiceError):
    """The patient has no DMP (TD0.2 answered NF, or the registry does not know the patient).

    Create one with ``create_dmp`` (TD1.1) if the patient agrees.
    """


class DmpClosedError(DmpServiceError):
    """The patient's DMP is closed (``DMPClosed``); ``reactivate_dmp`` (TD1.2) reopens it."""


class DmpAlreadyExistsError(DmpServiceError):
    """The DMP exists already (``DMPFound``): creating or reactivating it again is refused."""


class DmpAccessDeniedError(DmpServiceError):
    """The access was refused: no valid authorisation, a professional blocked by the patient, or the
    patient's opposition to the access mode (bris de glace, centre 15)."""


class DmpRegistryError(RegistryResponseError, DmpServiceError):
    """An XDS registry or repository answered Failure; ``response`` keeps every error with its context."""

    def __init__(self, response: RegistryResponse, *, operation: str | None = None) -> None:
        super().__init__(response, service=SERVICE, operation=operation)
        errors = [e for e in response.errors if e.is_error] or list(response.errors)
        self.codes = tuple(str(e.error_code) for e in errors) or (self.code,)


class DocumentConflictError(DmpRegistryError):
    """The document's uniqueId is already in the DMP with other content (another hash or size).

    A replay of the *same* deposit is not an error (``DepositResult.already_deposited``); this is
    a different document under a reused id: give the new version its own CDA id.
    """


class DepositedDocument:
    """One document of a deposit and what the DMP said about it (used by :class:`PartialDepositError`)."""

    __slots__ = ("entry_id", "errors", "unique_id")

    def __init__(self, entry_id: str, unique_id: str, errors: Sequence[RegistryError] = ()) -> None:
        self.entry_id = entry_id
        """The entry's id in the submission (``Document01``, ``Signature01``)."""
        self.unique_id = unique_id
        """The document's uniqueId."""
        self.errors = tuple(errors)
        """The registry errors about this document (empty: stored)."""

    @property
    def stored(self) -> bool:
        """True when no error names this document."""
        return not any(e.is_error for e in self.errors)

    def __repr__(self) -> str:
        codes = ", ".join(str(e.error_code) for e in self.errors) or "stored"
        return f"DepositedDocument({self.entry_id}, {self.unique_id}: {codes})"


class PartialDepositError(DmpRegistryError):
    """The registry answered PartialSuccess to a deposit: ``documents`` says, per document, what happened.

    Nothing is hidden: a document whose errors are empty was stored, the others were not.
    """

    def __init__(
        self, response: RegistryResponse, documents: Sequence[DepositedDocument], *, operation: str | None = None
    ) -> None:
        super().__init__(response, operation=operation)
        self.documents = tuple(documents)


class _RegistryNotFound(DmpRegistryError, DmpNotFoundError):
    """A registry Failure that says the patient has no DMP."""


class _RegistryClosed(DmpRegistryError, DmpClosedError):
    """A registry Failure that says the DMP is closed."""


class _RegistryAccessDenied(DmpRegistryError, DmpAccessDeniedError):
    """A registry Failure that says the access is refused."""


DMP_ERROR_CODES: Final[dict[str, type[DmpServiceError]]] = {
    "XDSUnknownPatientId": DmpNotFoundError,
    "DMPClosed": DmpClosedError,
    "DMPFound": DmpAlreadyExistsError,
}
"""Codes whose kind is confirmed: ``XDSUnknownPatientId`` (ITI TF-3), ``DMPClosed`` and ``DMPFound``
(the DMP's HL7 v3 acknowledgements, read by the ANS/CNAM editor kit). The DMP-specific XDS codes are
in ``settings.dmp.error_codes`` (unconfirmed)."""

ERROR_KINDS: Final[dict[str, type[DmpServiceError]]] = {
    "not_found": DmpNotFoundError,
    "closed": DmpClosedError,
    "already_exists": DmpAlreadyExistsError,
    "access_denied": DmpAccessDeniedError,
}
"""The kinds ``settings.dmp.error_codes`` names."""


@functools.cache
def _default_codes() -> Mapping[str, str]:
    """The settings' default table (one place: :attr:`dmp_connector.config.DmpSettings.error_codes`)."""
    return MappingProxyType(dict(DmpSettings().error_codes))


_table: ContextVar[Mapping[str, str] | None] = ContextVar("dmp_error_codes", default=None)
_CODE_IN_TEXT: Final = re.compile(r"\b(?:DMP|XDS)[A-Za-z]+\b")


@contextmanager
def error_codes(table: Mapping[str, str]) -> Iterator[None]:
    """Read DMP-specific codes with ``table`` (code → ``not_found`` / ``closed`` / ``already_exists`` /
    ``access_denied``) in this block: the operations enter it with ``settings.dmp.error_codes``."""
    token = _table.set(dict(table))
    try:
        yield
    finally:
        _table.reset(token)


def _kind_of(code: str) -> type[DmpServiceError] | None:
    confirmed = DMP_ERROR_CODES.get(code)
    if confirmed is not None:
        return confirmed
    table = _table.get()
    return ERROR_KINDS.get((_default_codes() if table is None else table).get(code, ""))


_REGISTRY_KINDS: Final[dict[type[DmpServiceError], type[DmpRegistryError]]] = {
    DmpNotFoundError: _RegistryNotFound,
    DmpClosedError: _RegistryClosed,
    DmpAccessDeniedError: _RegistryAccessDenied,
}

_HINTS: Final[dict[type[DmpServiceError], str]] = {
    DmpNotFoundError: "test the DMP's existence (test_existence) and create it (create_dmp) if the patient agrees",
    DmpClosedError: "the DMP is closed: reactivate it (reactivate_dmp) if the patient asks",
    DmpAlreadyExistsError: "the DMP exists already: use it",
    DmpAccessDeniedError: "get the patient's authorisation (set_authorisation), or use an access mode the "
    "patient has not opposed",
}


def _kind(codes: Iterable[str], contexts: Iterable[str | None] = ()) -> type[DmpServiceError]:
    """The kind of the first code that has one; else of a known code named in a context text."""
    for code in codes:
        kind = _kind_of(code)
        if kind is not None:
            return kind
    for context in contexts:
        for named in _CODE_IN_TEXT.findall(context or ""):
            kind = _kind_of(named)
            if kind is not None:
                return kind
    return DmpServiceError


def error_for_codes(
    codes: Sequence[str], *, text: str | None = None, operation: str | None = None, what: str = "refused"
) -> DmpServiceError:
    """The typed error for a refusal given as codes (HL7 v3 acknowledgement details, a non-DMPOK status)."""
    shown = list(codes) or ["no code"]
    kind = _kind(shown)
    where = f" {operation}" if operation else ""
    return kind(
        f"the DMP {what}{where}: {', '.join(dict.fromkeys(shown_code(code) for code in shown))}",
        code=shown[0],
        text=text,
        operation=operation,
        hint=_HINTS.get(kind),
        codes=shown,
    )


def registry_error(response: RegistryResponse, *, operation: str | None = None) -> DmpRegistryError:
    """The typed error for an XDS Failure: a :class:`DmpRegistryError`, of the matching kind when one applies."""
    failures = [e for e in response.errors if e.is_error]
    codes = [str(e.error_code) for e in failures]
    if any(code == "XDSNonIdenticalHash" or code == "XDSNonIdenticalSize" for code in codes):
        return DocumentConflictError(response, operation=operation)
    found = _kind(codes, [e.code_context for e in failures])
    kind = _REGISTRY_KINDS.get(found, DmpRegistryError)
    error = kind(response, operation=operation)
    if kind is not DmpRegistryError:
        error.hint = _HINTS.get(found)
    return error


def credential_mismatch(settings: Settings) -> tuple[str, str] | None:
    """Which identifier of the TLS client certificate disagrees with which the VIHF carries, and what to do.

    The DMP (and the sandbox) refuse a caller whose certificate OU is not the VIHF's
    ``Identifiant_Structure`` (indirect mode) or whose card CN is not the VIHF subject (direct mode);
    their fault reason may not say which, so the client says it from its own settings. Only the
    organisation's and the professional's ids are named: never a patient's.
    """
    names = certificate_subject_names(settings.tls)
    if settings.dmp.authentication_mode == "DIRECTE":
        professional = settings.professional
        if professional is not None and "CN" in names and names["CN"] != professional.national_id:
            return (
                f"the TLS client certificate's CN {names['CN']} is not the VIHF subject"
                f" {professional.national_id} (settings.professional, {professional.id_kind.name})",
                "use the card certificate of settings.professional, or make settings.professional the card's holder",
            )
        return None
    organisation = settings.organisation
    if organisation is not None and "OU" in names and names["OU"] != organisation.national_id:
        return (
            f"the TLS client certificate's OU {names['OU']} is not the VIHF's Identifiant_Structure"
            f" {organisation.national_id} (settings.organisation, {organisation.id_kind.name} {organisation.id})",
            "the organisation certificate's OU must equal the organisation's national id: use the certificate"
            " issued for settings.organisation (in tests: the same SandboxPractice for the PKI and the settings,"
            " e.g. the dmpc_structure_id ini option of the pytest plugin)",
        )
    return None


def fault_error(fault: SoapFaultError, *, operation: str | None = None) -> DmpServiceError:
    """A SOAP fault as a DMP error: transient when the code is ``env:Receiver``, typed when a subcode names a kind.

    The reason is kept as ``text`` (not in the message: a service may echo request data there).
    """
    subcodes = [code.rsplit("}", 1)[-1].rsplit(":", 1)[-1] for code in fault.subcodes]
    local = fault.code.rsplit("}", 1)[-1].rsplit(":", 1)[-1]
    kind = _kind(subcodes)
    receiver = local == "Receiver"
    where = f" to {operation}" if operation else ""
    return kind(
        f"the DMP answered{where} with a SOAP fault {shown_code(local)}"
        + (f" ({', '.join(shown_code(code) for code in subcodes)})" if subcodes else ""),
        code=subcodes[0] if subcodes else local,
        text=fault.reason,
        operation=operation,
        transient=receiver and kind is DmpServiceError,
        hint=_HINTS.get(kind)
        or ("the service is in trouble; try again later" if receiver else "the request must change"),
        codes=[local, *subcodes],
    )
