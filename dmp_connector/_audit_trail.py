"""The audit plumbing every client shares, built once from the settings.

SOAP, REST and mail clients all need the same three things: the dispatcher with the sinks
the settings name (logging, a JSON Lines journal), the patient pseudonymiser keyed by the
configured secret, and the actor (software, organisation, professional) stamped on events.
"""

from __future__ import annotations

from collections.abc import Iterable

from .audit import AuditActor, AuditDispatcher, AuditSink, JsonLinesSink, LoggingSink, Pseudonymizer
from .config import Settings
from .errors import ConfigurationError, HttpStatusError, ServiceError, SoapFaultError

__all__ = ["AuditTrail", "error_code_of"]


def error_code_of(error: BaseException | None) -> str | None:
    """The code an audit event records for ``error``: the service's or SOAP fault's code, else the HTTP status."""
    if isinstance(error, (ServiceError, SoapFaultError)):
        return error.code
    if isinstance(error, HttpStatusError):
        return str(error.status_code)
    return None


class AuditTrail:
    """Dispatcher, pseudonymiser and actor for one client; ``close()`` closes the journal it opened."""

    def __init__(self, settings: Settings, sinks: Iterable[AuditSink] = ()) -> None:
        self.dispatcher = AuditDispatcher(sinks)
        if settings.audit.log:
            self.dispatcher.add(LoggingSink())
        self._journal: JsonLinesSink | None = None
        if settings.audit.jsonl_path is not None:
            try:
                self._journal = JsonLinesSink(settings.audit.jsonl_path)
            except OSError as exc:
                raise ConfigurationError(
                    f"the audit journal {settings.audit.jsonl_path} cannot be opened: {exc.strerror or exc}",
                    hint="check audit.jsonl_path and its directory's permissions",
                ) from exc
            self.dispatcher.add(self._journal)
        key = settings.audit.pseudonym_key
        self.pseudonymizer = Pseudonymizer(key.get_secret_value().encode() if key else None)
        org, pro = settings.organisation, settings.professional
        self.actor = AuditActor(
            software_name=settings.software.name,
            software_version=settings.software.version,
            organisation_id=org.national_id if org else None,
            professional_id=pro.national_id if pro else None,
        )

    def close(self) -> None:
        """Close the JSON Lines journal, if the settings opened one."""
        if self._journal is not None:
            self._journal.close()
