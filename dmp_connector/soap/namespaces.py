"""Namespace URIs of the SOAP stack and of the IHE XDS.b messages, written once.

Building and reading code uses Clark names (``f"{{{WSA}}}Action"``) made from these
constants, so that a typo in a URI cannot hide in one module only.
"""

from __future__ import annotations

__all__ = [
    "LCM",
    "QUERY",
    "RIM",
    "RS",
    "SAML2",
    "SOAP11_ENV",
    "SOAP12_ENV",
    "WSA",
    "WSSE",
    "WSU",
    "XDSB",
    "XMIME",
    "XML",
    "XOP",
]

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
"""SOAP 1.2 envelope: the only SOAP version the national services speak."""
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
"""SOAP 1.1 envelope: recognised only to refuse it with a clear message."""
WSA = "http://www.w3.org/2005/08/addressing"
"""WS-Addressing 1.0 (MessageID, To, Action, RelatesTo)."""
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
"""WS-Security 1.0 extension (the ``wsse:Security`` header)."""
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
"""WS-Security 1.0 utility (``wsu:Id``, ``wsu:Timestamp``)."""
XOP = "http://www.w3.org/2004/08/xop/include"
"""XML-binary Optimized Packaging (``xop:Include``)."""
XMIME = "http://www.w3.org/2005/05/xmlmime"
"""Describing Media Content of Binary Data in XML (``xmime:contentType``)."""
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
"""SAML 2.0 assertions (the VIHF)."""
XML = "http://www.w3.org/XML/1998/namespace"
"""The ``xml:`` prefix (``xml:lang`` on fault reasons)."""

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
"""ebRIM 3.0 registry information model."""
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
"""ebRS 3.0 life cycle management (SubmitObjectsRequest)."""
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
"""ebRS 3.0 query (AdhocQueryRequest / AdhocQueryResponse)."""
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
"""ebRS 3.0 registry services (RegistryResponse, RegistryErrorList)."""
XDSB = "urn:ihe:iti:xds-b:2007"
"""IHE XDS.b (ProvideAndRegisterDocumentSetRequest, RetrieveDocumentSet…)."""
