"""Registry answers: ``rs:RegistryResponse`` as a typed status with its list of registry errors.

Every XDS.b answer (ITI-41, ITI-57, and inside ITI-18 and ITI-43 answers) carries a status and
maybe a ``rs:RegistryErrorList``. The codes are kept as they came: known ones become
:class:`~dmp_connector.xds.vocabulary.RegistryErrorCode` members, the DMP's own codes (not
public) stay strings, with their context, location and severity.
:meth:`RegistryResponse.raise_for_status` turns a failure into :class:`RegistryResponseError`,
a :class:`~dmp_connector.errors.ServiceError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from dmp_connector.errors import MalformedResponseError, ServiceError, shown_code

from .model import _known
from .vocabulary import ErrorSeverity, RegistryErrorCode, ResponseStatus

__all__ = [
    "DocumentIntegrityError",
    "RegistryError",
    "RegistryResponse",
    "RegistryResponseError",
    "StoredQueryError",
]

_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("a registry error needs an errorCode")
    return value


class RegistryError(BaseModel):
    """One ``rs:RegistryError``: what a registry or repository reports, kept as it came."""

    model_config = _FROZEN

    error_code: Annotated[RegistryErrorCode | str, _known(RegistryErrorCode), AfterValidator(_not_empty)]
    """``errorCode``: a :class:`RegistryErrorCode` member, or the service's own code as a string."""
    code_context: str = ""
    """``codeContext``: the service's explanation. It may quote request data: never log it blindly."""
    severity: Annotated[ErrorSeverity | str, _known(ErrorSeverity)] = ErrorSeverity.ERROR
    """``severity``: Error (the default in the schema) or Warning."""
    location: str | None = None
    """``location``: where the error was found, when the service says."""

    @property
    def is_error(self) -> bool:
        """True unless the severity is Warning (an unknown severity counts as an error)."""
        return self.severity != ErrorSeverity.WARNING

    @property
    def transient(self) -> bool:
        """True for busy / out-of-resources codes: the same request may succeed later."""
        return isinstance(self.error_code, RegistryErrorCode) and self.error_code.transient


class RegistryResponse(BaseModel):
    """An ``rs:RegistryResponse``: the outcome of a submission, update or (inside) a query or retrieve."""

    model_config = _FROZEN

    status: ResponseStatus
    """Success, Failure or PartialSuccess; an unknown status is refused when parsing."""
    errors: tuple[RegistryError, ...] = ()
    """The ``RegistryErrorList``, warnings included, in order."""
    request_id: str | None = None
    """``requestId``, when the service echoes one."""

    @property
    def ok(self) -> bool:
        """True for Success only."""
        return self.status is ResponseStatus.SUCCESS

    @property
    def warnings(self) -> tuple[RegistryError, ...]:
        """The errors of severity Warning."""
        return tuple(e for e in self.errors if not e.is_error)

    def raise_for_status(
        self, *, service: str = "XDS", operation: str | None = None, allow_partial: bool = False
    ) -> None:
        """Raise :class:`RegistryResponseError` on Failure, and on PartialSuccess unless ``allow_partial``.

        With ``allow_partial`` the caller reports what succeeded and what did not (per document),
        rather than hiding either.
        """
        if self.status is ResponseStatus.SUCCESS:
            return
        if self.status is ResponseStatus.PARTIAL_SUCCESS and allow_partial:
            return
        raise RegistryResponseError(self, service=service, operation=operation)


class RegistryResponseError(ServiceError):
    """A registry or repository answered Failure (or PartialSuccess where it was not accepted).

    ``code`` is the first error's code (``XDSRegistryBusy``, ``XDSUnknownPatientId``, a DMP
    code …) and ``text`` its ``codeContext``; ``response`` keeps every error. ``transient`` is
    True when every error is a busy/out-of-resources one, so that the retry policy may repeat a
    call that is safe to repeat. The message names the codes only: a codeContext may quote
    patient data.
    """

    def __init__(self, response: RegistryResponse, *, service: str = "XDS", operation: str | None = None) -> None:
        errors = [e for e in response.errors if e.is_error] or list(response.errors)
        first = errors[0] if errors else None
        codes = ", ".join(dict.fromkeys(shown_code(str(e.error_code)) for e in errors)) or "no error code"
        outcome = "partially failed" if response.status is ResponseStatus.PARTIAL_SUCCESS else "failed"
        where = f" {operation}" if operation else ""
        super().__init__(
            f"{service}{where} {outcome}: {codes}",
            service=service,
            code=str(first.error_code) if first else response.status.value,
            text=first.code_context if first else None,
            operation=operation,
            transient=bool(errors) and all(e.transient for e in errors),
            hint="the codes are those of the XDS profile (IHE ITI TF vol. 3 §4.2.4) or the service's own guide",
        )
        self.response = response


class StoredQueryError(MalformedResponseError):
    """A stored-query request that a registry must refuse, with the XDS code it answers.

    Raised when reading an ``AdhocQueryRequest`` (what the sandbox receives): an unknown query
    id, a missing or repeated parameter, a value that is not in the ITI-18 syntax. ``error_code``
    is the :class:`~dmp_connector.xds.vocabulary.RegistryErrorCode` to answer with.
    """

    def __init__(self, message: str, *, error_code: RegistryErrorCode, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.error_code = error_code


class DocumentIntegrityError(MalformedResponseError):
    """A retrieved document whose bytes contradict its entry's ``size`` or ``hash``: never handed over as good.

    ``problems`` lists what differs (``size``, ``hash``, in the words of ITI TF-2b's
    XDSNonIdenticalSize / XDSNonIdenticalHash); the bytes are dropped. A proxy that cut or
    rewrote the answer, or a repository that returned another version, are the usual causes.
    """

    def __init__(self, message: str, *, problems: Sequence[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = tuple(problems)
