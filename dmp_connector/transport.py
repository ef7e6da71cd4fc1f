"""The generic SOAP clients and what they send: the layer under the service clients.

A vendor rarely needs it: :class:`~dmp_connector.ins.InsiClient`, :class:`~dmp_connector.dmp.DmpClient`
and :class:`~dmp_connector.mssante.MssanteClient` cover the national services. It is public
for what they do not: sending an :class:`Operation` of your own through the same pipeline
(WS-Addressing, WS-Security, MTOM, retries, audit, deadlines), or building the TLS context
the clients use from :class:`~dmp_connector.config.TlsCredentials`.
"""

from __future__ import annotations

from ._tls import build_ssl_context
from ._transport import AsyncClient, BaseClient, CallContext, Client, Operation, SoapRequest, deadline

__all__ = [
    "AsyncClient",
    "BaseClient",
    "CallContext",
    "Client",
    "Operation",
    "SoapRequest",
    "build_ssl_context",
    "deadline",
]
