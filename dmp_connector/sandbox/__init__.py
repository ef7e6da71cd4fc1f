"""The embedded sandbox: simulators of the national services on loopback, and a test PKI.

A simulator is a function ``HttpRequest -> HttpResponse``: hand it to
:func:`as_transport` to run in-process (no port) or to :class:`LoopbackServer` to serve
it on 127.0.0.1 with real TLS. :class:`ScriptedHandler` queues faults in front of it, one per
request; :class:`FaultMix` draws them at random, seeded, over many (reliability tests).

The MSSanté operator (:class:`SandboxMailOperator`) needs the ``sandbox`` extra
(aiosmtpd, pymap); its names are imported on first use, so that the rest of the sandbox
works without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._http import (
    Handler,
    HttpRequest,
    HttpResponse,
    LoopbackServer,
    ScriptedHandler,
    as_async_transport,
    as_transport,
    server_ssl_context,
)
from .dmp import (
    DEFAULT_DMP_AUTHORISATIONS,
    DEFAULT_DMP_PATIENTS,
    DEFAULT_DMP_PROFESSIONALS,
    DMP_SERVICE_PATH,
    AuthorisationRecord,
    DmpCaller,
    DmpErrorCode,
    DmpFault,
    DmpSimulator,
    DmpStore,
    FaultCounts,
    FaultKind,
    FaultMix,
    PatientRecord,
    ProfessionalRecord,
    in_process_async_dmp,
    in_process_dmp,
)
from .echo import ECHO_ACTION, ECHO_NS, EchoOperation, EchoResult, echo_service
from .insi import (
    DEFAULT_INSI_IDENTITIES,
    InsiSimulator,
    SeededIdentity,
    SimulatedFault,
    in_process_async_insi,
    in_process_insi,
)
from .mllp import MllpListener, PlatformSimulator
from .pki import (
    IssuedCertificate,
    SandboxPractice,
    TestPki,
    TestPkiFiles,
    certificate_subject,
    client_subject,
    generate_test_pki,
)

if TYPE_CHECKING:
    from .mssante import (
        PatientMailboxState,
        ReceivedMail,
        SandboxMailbox,
        SandboxMailOperator,
        SandboxTokenProvider,
        SmtpFault,
        StoredMail,
    )

_MSSANTE_NAMES = frozenset(
    {
        "PatientMailboxState",
        "ReceivedMail",
        "SandboxMailOperator",
        "SandboxMailbox",
        "SandboxTokenProvider",
        "SmtpFault",
        "StoredMail",
    }
)


def __getattr__(name: str) -> object:
    """Import the MSSanté operator on first use: it needs the optional aiosmtpd and pymap."""
    if name in _MSSANTE_NAMES:
        try:
            from . import mssante
        except ImportError as exc:
            raise ImportError(
                f"{name} needs the sandbox extra (aiosmtpd, pymap): pip install 'dmp-connector[sandbox]'"
            ) from exc
        return getattr(mssante, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_DMP_AUTHORISATIONS",
    "DEFAULT_DMP_PATIENTS",
    "DEFAULT_DMP_PROFESSIONALS",
    "DEFAULT_INSI_IDENTITIES",
    "DMP_SERVICE_PATH",
    "ECHO_ACTION",
    "ECHO_NS",
    "AuthorisationRecord",
    "DmpCaller",
    "DmpErrorCode",
    "DmpFault",
    "DmpSimulator",
    "DmpStore",
    "EchoOperation",
    "EchoResult",
    "FaultCounts",
    "FaultKind",
    "FaultMix",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "InsiSimulator",
    "IssuedCertificate",
    "LoopbackServer",
    "MllpListener",
    "PatientMailboxState",
    "PatientRecord",
    "PlatformSimulator",
    "ProfessionalRecord",
    "ReceivedMail",
    "SandboxMailOperator",
    "SandboxMailbox",
    "SandboxPractice",
    "SandboxTokenProvider",
    "ScriptedHandler",
    "SeededIdentity",
    "SimulatedFault",
    "SmtpFault",
    "StoredMail",
    "TestPki",
    "TestPkiFiles",
    "as_async_transport",
    "as_transport",
    "certificate_subject",
    "client_subject",
    "echo_service",
    "generate_test_pki",
    "in_process_async_dmp",
    "in_process_async_insi",
    "in_process_dmp",
    "in_process_insi",
    "server_ssl_context",
]
