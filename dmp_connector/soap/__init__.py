"""SOAP 1.2, WS-Addressing, the WS-Security slot and MTOM/XOP: pure lxml in, lxml or bytes out.

Nothing here does I/O: the transport sends what :func:`build_envelope` and
:func:`encode_mtom` produce and hands what it receives to :class:`MultipartRelatedParser`
and :func:`parse_envelope`. Namespace URIs are in :mod:`dmp_connector.soap.namespaces`.
"""

from __future__ import annotations

from .envelope import (
    Addressing,
    AssertionSecurity,
    SoapMessage,
    WsSecurity,
    build_envelope,
    new_message_id,
    parse_envelope,
    resolve_xop,
    xop_include,
)
from .mtom import (
    Attachment,
    MtomMessageParts,
    MtomPayload,
    MultipartRelatedParser,
    decode_mtom,
    encode_mtom,
    is_multipart,
)

__all__ = [
    "Addressing",
    "AssertionSecurity",
    "Attachment",
    "MtomMessageParts",
    "MtomPayload",
    "MultipartRelatedParser",
    "SoapMessage",
    "WsSecurity",
    "build_envelope",
    "decode_mtom",
    "encode_mtom",
    "is_multipart",
    "new_message_id",
    "parse_envelope",
    "resolve_xop",
    "xop_include",
]
