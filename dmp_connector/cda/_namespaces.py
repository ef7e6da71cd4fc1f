"""Namespaces of CI-SIS CDA documents and the small XML helpers the cda package shares.

Private: the validation and volet modules may import it, vendors should not.

Fragments (a narrative block, an entry kept as it came, a header element the model does not
type) are held as text so that the models stay free of lxml objects: frozen, comparable,
picklable. :func:`fragment_text` gives one canonical text for an element wherever it sits in
its tree (namespace declarations it does not use are dropped), so that a fragment read from
a document, built again and read again is the same string.
"""

from __future__ import annotations

import copy
from typing import cast

from lxml import etree

from dmp_connector.xml import parse_xml

__all__ = [
    "HL7",
    "LAB",
    "NSMAP",
    "SDTC",
    "XSI",
    "copy_element",
    "fragment_text",
    "hl7",
    "local_name",
    "new_root",
    "parse_fragment",
]

HL7 = "urn:hl7-org:v3"
"""The CDA namespace, default namespace of every document built."""
XSI = "http://www.w3.org/2001/XMLSchema-instance"
"""XML Schema instance (``xsi:type`` on ``IVL_TS`` times and on entries' values)."""
SDTC = "urn:hl7-org:sdtc"
"""HL7 SDTC extensions (``sdtc:deceasedInd`` …) allowed by ``CDA_extended.xsd``."""
LAB = "urn:oid:1.3.6.1.4.1.19376.1.3.2"
"""IHE XD-LAB extensions (``lab:statusCode`` in ``serviceEvent``)."""

_XSI_TYPE = f"{{{XSI}}}type"

NSMAP: dict[str | None, str] = {None: HL7, "xsi": XSI}
"""Namespace map of the root of every document built."""


def hl7(name: str) -> str:
    """Clark name of a CDA element: ``hl7("id")`` is ``{urn:hl7-org:v3}id``."""
    return f"{{{HL7}}}{name}"


def new_root(name: str, nsmap: dict[str | None, str] | None = None) -> etree._Element:
    """A new CDA element that declares ``nsmap`` (the CDA namespace as default by default)."""
    # lxml-stubs type nsmap as Mapping[str, str]; lxml takes None for the default namespace.
    return etree.Element(hl7(name), nsmap=cast("dict[str, str]", nsmap if nsmap is not None else {None: HL7}))


def local_name(element: etree._Element) -> str:
    """The element's name without namespace (``""`` for comments and processing instructions)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def fragment_text(element: etree._Element) -> str:
    """One element and its subtree as text, in one canonical form wherever it was read.

    The CDA namespace is the default namespace (a self-presenting document's ``c:`` prefix
    is dropped, ``xsi:type="c:CD"`` becomes ``"CD"``), the other namespaces the subtree uses
    are declared once on its root in prefix order, and the tail is not part of it.
    """
    return etree.tostring(_default_namespace_copy(element), encoding="unicode", with_tail=False)


def _default_namespace_copy(element: etree._Element) -> etree._Element:
    """A copy of ``element`` with the CDA namespace as default namespace (see :func:`fragment_text`), no tail."""
    hl7_prefixes = {prefix for node in element.iter() for prefix, uri in node.nsmap.items() if uri == HL7}
    others: dict[str | None, str] = {}
    for node in element.iter():
        for prefix, uri in node.nsmap.items():
            if uri != HL7 and prefix is not None:
                others.setdefault(prefix, uri)
    declared: dict[str | None, str] = {None: HL7, **dict(sorted(others.items(), key=lambda item: item[0] or ""))}
    root = _copy(element, None, declared, hl7_prefixes)
    etree.cleanup_namespaces(root, keep_ns_prefixes=sorted(_type_prefixes(root)) or None)
    return root


def copy_element(element: etree._Element) -> etree._Element:
    """A deep copy of a read element, with its tail, ready to go into a document we write.

    A self-presenting document writes the CDA namespace with a prefix (``c:``), and
    ``xsi:type="c:CD"`` names that prefix in a value, which lxml does not see when it
    moves the copy into a tree where the CDA namespace is the default one. Such a subtree
    is rewritten as :func:`fragment_text` does (CDA names unprefixed, ``xsi:type`` values
    following); any other is copied as it is.
    """
    prefixed = any(prefix is not None and uri == HL7 for prefix, uri in element.nsmap.items()) or any(
        node.prefix is not None and isinstance(node.tag, str) and node.tag.startswith(f"{{{HL7}}}")
        for node in element.iter()
    )
    if not prefixed:
        return copy.deepcopy(element)
    out = _default_namespace_copy(element)
    out.tail = element.tail
    return out


def _type_prefixes(root: etree._Element) -> set[str]:
    """Prefixes named in ``xsi:type`` values: uses that the namespace cleanup cannot see."""
    return {
        value.split(":", 1)[0]
        for node in root.iter()
        if isinstance(node.tag, str) and ":" in (value := node.get(_XSI_TYPE) or "")
    }


def _copy(
    node: etree._Element, parent: etree._Element | None, nsmap: dict[str | None, str], hl7_prefixes: set[str | None]
) -> etree._Element:
    if isinstance(node.tag, str):
        if parent is None:
            new = etree.Element(node.tag, nsmap=cast("dict[str, str]", nsmap))
        else:
            new = etree.SubElement(parent, node.tag)
        for key, raw in node.attrib.items():
            value = str(raw)
            if key == _XSI_TYPE and ":" in value and value.split(":", 1)[0] in hl7_prefixes:
                value = value.split(":", 1)[1]
            new.set(key, value)
        new.text = node.text
        for child in node:
            _copy(child, new, nsmap, hl7_prefixes)
    else:
        new = copy.copy(node)
        new.tail = None
        assert parent is not None, "a fragment's root is an element"
        parent.append(new)
    if parent is not None:
        new.tail = node.tail
    return new


def parse_fragment(text: str, *, what: str) -> etree._Element:
    """Parse a fragment held as text, through the hardened parser."""
    return parse_xml(text.encode("utf-8"), what=what)
