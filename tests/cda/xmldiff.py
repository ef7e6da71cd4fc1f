"""Element-by-element comparison of two CDA documents, after the normalisations the round trip allows.

Two documents are the same when, after C14N-style normalisation, every element has the same
expanded name, the same attributes (``xsi:type`` compared as the QName it names, whatever
its prefix), the same text and tail, the same comments and processing instructions, in the
same order. Namespace prefixes are not compared (C14N 2.0 with prefix rewriting does the
same): a self-presenting document writes the CDA namespace as ``c:``, ``build`` as the
default namespace.

:func:`differences` gives the paths where two trees differ (an element whose own name,
attributes or text differ, or whose children differ in number or names, is reported
whole; otherwise the comparison goes down), so that a test can say *exactly* what a
change touched.
"""

from __future__ import annotations

from lxml import etree

HL7 = "urn:hl7-org:v3"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def clinical_document(root: etree._Element) -> etree._Element:
    """The ClinicalDocument itself: the root, or the one inside a self-presenting stylesheet."""
    if root.tag == f"{{{HL7}}}ClinicalDocument":
        return root
    found = root.find(f".//{{{HL7}}}ClinicalDocument")
    assert found is not None
    return found


def _attributes(element: etree._Element) -> dict[str, str]:
    out = {}
    for key, value in element.attrib.items():
        text = str(value)
        if key == XSI_TYPE and ":" in text:
            prefix, local = text.split(":", 1)
            text = f"{{{element.nsmap.get(prefix)}}}{local}"
        elif key == XSI_TYPE:
            text = f"{{{element.nsmap.get(None)}}}{text}"
        out[str(key)] = text
    return out


def _label(node: etree._Element) -> str:
    if isinstance(node.tag, str):
        return etree.QName(node).localname
    if node.tag is etree.Comment:
        return "comment()"
    return "processing-instruction()"


def _signature(node: etree._Element) -> tuple[object, ...]:
    if isinstance(node.tag, str):
        return (node.tag, _attributes(node), node.text or "")
    return (node.tag, node.text or "", getattr(node, "target", None))


def differences(a: etree._Element, b: etree._Element, here: str) -> list[str]:
    """Paths (``/ClinicalDocument/author[2]/time``) where ``a`` and ``b`` differ; empty when they are the same."""
    if _signature(a) != _signature(b):
        return [here]
    kids_a, kids_b = list(a), list(b)
    if [(k.tag, _label(k)) for k in kids_a] != [(k.tag, _label(k)) for k in kids_b]:
        return [here]
    found: list[str] = []
    seen: dict[str, int] = {}
    for x, y in zip(kids_a, kids_b, strict=True):
        label = _label(x)
        seen[label] = seen.get(label, 0) + 1
        step = f"{here}/{label}[{seen[label]}]"
        if (x.tail or "") != (y.tail or ""):
            found.append(step + "/following-sibling::text()")
        found.extend(differences(x, y, step))
    return found


def document_differences(original: bytes, rebuilt: bytes) -> list[str]:
    """The differences between a document as given and as rebuilt (see the module's docstring).

    The comments and processing instructions around the root (``<?xml-stylesheet …?>``) are
    compared too, except around a self-presenting document's stylesheet, which is not written.
    """
    a = clinical_document(etree.fromstring(original))  # noqa: TID251 - the ANS kit's own files
    b = clinical_document(etree.fromstring(rebuilt))  # noqa: TID251 - our own output
    found = differences(a, b, "/ClinicalDocument")
    if a.getparent() is None:
        for side in ("preceding", "following"):
            around_a = [_signature(n) for n in a.itersiblings(preceding=side == "preceding")]
            around_b = [_signature(n) for n in b.itersiblings(preceding=side == "preceding")]
            if around_a != around_b:
                found.append(f"/{side}-sibling::node()")
    return found
