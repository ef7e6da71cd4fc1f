"""What text of a CDA document its rendered page must show, read from the document independently of the renderer."""

from __future__ import annotations

from dmp_connector.xml import parse_xml

V3 = "urn:hl7-org:v3"
_TABLE_STRUCTURE = {f"{{{V3}}}{n}" for n in ("table", "thead", "tbody", "tfoot", "tr", "colgroup", "col")}


def section_texts(data: bytes) -> list[str]:
    """Every non-blank text of every section title and narrative, whitespace-normalised, in document order."""
    root = parse_xml(data)
    out: list[str] = []
    for section in root.iter(f"{{{V3}}}section"):
        for part in ("title", "text"):
            element = section.find(f"{{{V3}}}{part}")
            if element is None:
                continue
            for node in element.iter():
                if not isinstance(node.tag, str):
                    continue  # a comment's content is not text, its tail is read from its parent below
                if node.text and node.tag not in _TABLE_STRUCTURE:
                    out.append(node.text)
                for child in node:
                    if child.tail and node.tag not in _TABLE_STRUCTURE:
                        out.append(child.tail)
    return [" ".join(t.split()) for t in out if t.strip()]


def missing_from(page_text: str, expected: list[str]) -> list[str]:
    """The expected texts not found in the page's visible text (whitespace-insensitive, mostly in order)."""
    flat = "".join(page_text.split())
    missing = []
    position = 0
    for text in expected:
        needle = "".join(text.split())
        found = flat.find(needle, position)
        if found < 0:
            found = flat.find(needle)
        if found < 0:
            missing.append(text)
        else:
            position = found + len(needle)
    return missing
