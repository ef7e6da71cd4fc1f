"""dmp_connector: the French national e-health exchanges (INS/INSi, CDA, DMP, MSSanté) in typed Python.

The names below are the public API; everything in a module whose name starts with an
underscore is private and may change without notice.
"""

from __future__ import annotations

from ._transport import AsyncClient, BaseClient, CallContext, Client, Operation, SoapRequest
from ._version import __version__
from .audit import (
    AuditActor,
    AuditDispatcher,
    AuditEvent,
    AuditSink,
    JsonLinesSink,
    LoggingSink,
    MemorySink,
    Outcome,
    Pseudonymizer,
)
from .codes import Code
from .config import (
    AuditSettings,
    DmpService,
    Environment,
    EnvironmentName,
    MailServer,
    Organisation,
    Professional,
    ProfessionalIdKind,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
    Timeouts,
    TlsCredentials,
)
from .errors import (
    ConfigurationError,
    ConnectError,
    DmpConnectorError,
    HttpStatusError,
    MalformedResponseError,
    ProtocolError,
    RequestTimeout,
    ServiceError,
    SoapFaultError,
    TlsError,
    TransportError,
    UnsafeXmlError,
    ValidationError,
)
from .retries import RetryPolicy
from .soap import Addressing, AssertionSecurity, Attachment, SoapMessage, WsSecurity
from .xml import XmlLimits, parse_xml, parse_xml_file

__all__ = [
    "Addressing",
    "AssertionSecurity",
    "AsyncClient",
    "Attachment",
    "AuditActor",
    "AuditDispatcher",
    "AuditEvent",
    "AuditSettings",
    "AuditSink",
    "BaseClient",
    "CallContext",
    "Client",
    "Code",
    "ConfigurationError",
    "ConnectError",
    "DmpConnectorError",
    "DmpService",
    "Environment",
    "EnvironmentName",
    "HttpStatusError",
    "JsonLinesSink",
    "LoggingSink",
    "MailServer",
    "MalformedResponseError",
    "MemorySink",
    "Operation",
    "Organisation",
    "Outcome",
    "Professional",
    "ProfessionalIdKind",
    "ProtocolError",
    "Pseudonymizer",
    "RequestTimeout",
    "RetryPolicy",
    "ServiceError",
    "Settings",
    "SoapFaultError",
    "SoapMessage",
    "SoapRequest",
    "SoftwareIdentity",
    "StructureIdKind",
    "Timeouts",
    "TlsCredentials",
    "TlsError",
    "TransportError",
    "UnsafeXmlError",
    "ValidationError",
    "WsSecurity",
    "XmlLimits",
    "__version__",
    "parse_xml",
    "parse_xml_file",
]
