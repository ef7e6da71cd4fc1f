"""The embedded sandbox: simulators of the national services on loopback, and a test PKI.

A simulator is a function ``HttpRequest -> HttpResponse``: hand it to
:func:`as_transport` to run in-process (no port) or to :class:`LoopbackServer` to serve
it on 127.0.0.1 with real TLS. :class:`ScriptedHandler` queues faults in front of it.
"""

from __future__ import annotations

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
from .echo import ECHO_ACTION, ECHO_NS, EchoOperation, EchoResult, echo_service
from .insi import (
    DEFAULT_INSI_IDENTITIES,
    InsiSimulator,
    SeededIdentity,
    SimulatedFault,
    in_process_async_insi,
    in_process_insi,
)
from .pki import IssuedCertificate, TestPki, TestPkiFiles, generate_test_pki

__all__ = [
    "DEFAULT_INSI_IDENTITIES",
    "ECHO_ACTION",
    "ECHO_NS",
    "EchoOperation",
    "EchoResult",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "InsiSimulator",
    "IssuedCertificate",
    "LoopbackServer",
    "ScriptedHandler",
    "SeededIdentity",
    "SimulatedFault",
    "TestPki",
    "TestPkiFiles",
    "as_async_transport",
    "as_transport",
    "echo_service",
    "generate_test_pki",
    "in_process_async_insi",
    "in_process_insi",
    "server_ssl_context",
]
