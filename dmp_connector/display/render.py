"""Any CI-SIS CDA → one self-contained, sanitised HTML page that a vendor can show inside its software.

Why not the ANS or HL7 stylesheet: both copy hostile attributes or links into the page, or let a
protocol-relative image through (``reference/cda_display.md`` §1–2). This renderer follows that
page's nine rules instead:

1. the document's own stylesheet (``<?xml-stylesheet?>``, a self-presenting ``xsl:stylesheet``)
   is never run: no XSLT at all, the tree is walked in Python;
2. the input goes through the hardened parser (no DTD, no entity, no network);
3. the markup written is our own (each CDA narrative element mapped to a fixed HTML one, every
   text escaped), then passed through an allow-list sanitiser (:mod:`._sanitize`, nh3);
4. links: ``#fragment`` links to an ``ID`` of the document stay; ``https:`` links are shown as
   text with an explicit "Ouvrir à l'extérieur" action; anything else is kept as text only;
5. no external fetch: images only from base64 ``observationMedia`` of the document whose first
   bytes are those of a PNG, JPEG or GIF; a ``reference`` to anything outside is dropped;
6. PDF (and image) bodies and attachments are never shown in a frame: they are listed as
   :class:`DisplayAttachment` for the vendor to open outside (native viewer, separate process);
7. the page carries a Content-Security-Policy forbidding any script and any fetch;
8. the header is always shown, an unknown document type too; a document written by the patient
   is marked;
9. a validation report with errors, or a document the model cannot read, is shown as a banner.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from typing import Final

from lxml import etree

from dmp_connector.cda import ValidationReport
from dmp_connector.cda import parse as parse_cda
from dmp_connector.errors import DmpConnectorError, MalformedResponseError
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, base64_spaces, non_xml_body_text, parse_xml

from ._sanitize import CSP, PAGE_STYLE, sanitize_fragment

__all__ = ["DisplayAttachment", "RenderedDocument", "render_cda", "sniff_media_type"]

_V3: Final = "urn:hl7-org:v3"
_NS: Final = {"h": _V3}
_INS_ROOTS: Final = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR de test",
    "1.2.250.1.213.1.4.11": "INS-NIR de démonstration",
}
_CONFIDENTIALITY: Final = {
    "N": "Normale",
    "R": "Restreinte",
    "V": "Très restreinte",
    "L": "Faible",
    "M": "Modérée",
    "U": "Non restreinte",
}
_SEX: Final = {"M": "Masculin", "F": "Féminin", "U": "Inconnu", "UN": "Indéterminé"}
_STYLE_CLASSES: Final = {
    "bold": "cda-gras",
    "italics": "cda-italique",
    "underline": "cda-souligne",
    "emphasis": "cda-emphase",
    "lrule": "cda-trait-gauche",
    "rrule": "cda-trait-droit",
    "toprule": "cda-trait-haut",
    "botrule": "cda-trait-bas",
    "arabic": "cda-liste-decimale",
    "littlealpha": "cda-liste-alpha-min",
    "bigalpha": "cda-liste-alpha-maj",
    "littleroman": "cda-liste-romain-min",
    "bigroman": "cda-liste-romain-maj",
    "disc": "cda-liste-disque",
    "circle": "cda-liste-cercle",
    "square": "cda-liste-carre",
    "none": "cda-liste-aucun",
}
_TABLE_PARTS: Final = {"thead", "tbody", "tfoot", "tr", "th", "td", "colgroup", "col"}
_SIMPLE: Final = {"sub": "sub", "sup": "sup"}
_ID: Final = re.compile(r"[^A-Za-z0-9_.-]")
_HTTPS: Final = re.compile(r"^https://[^\s/?#\\@]+[^\s\\]*$", re.IGNORECASE)


def sniff_media_type(data: bytes) -> str | None:
    """The media type the bytes really are (PDF, PNG, JPEG, GIF), whatever the document says; None otherwise."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


@dataclass(frozen=True)
class DisplayAttachment:
    """A PDF, image or other file the document embeds, offered to be opened outside the page."""

    anchor: str
    """The ``id`` of its line in the page (``pj-1`` …): the vendor's "open" action finds it by that."""
    label: str = field(repr=False)
    """What the page calls it (the section title or the document title, which may name the patient)."""
    filename: str
    """A safe file name for saving it (``piece-jointe-1.pdf``): never the document's own."""
    declared_type: str | None
    """The ``mediaType`` the document declares."""
    media_type: str | None
    """What the bytes are (:func:`sniff_media_type`); None when neither PDF nor a known image."""
    content: bytes = field(repr=False)
    """The decoded bytes."""

    @property
    def type_mismatch(self) -> bool:
        """True when the bytes are not what the document declares (an ANS example labels a PNG as JPEG)."""
        return self.declared_type is not None and self.media_type is not None and self.declared_type != self.media_type


@dataclass(frozen=True)
class RenderedDocument:
    """The page, and what the vendor must offer beside it."""

    html: str = field(repr=False)
    """The whole page, UTF-8 text, ``<!DOCTYPE html>`` first."""
    attachments: tuple[DisplayAttachment, ...] = ()
    """Bodies and attachments to open outside the page (never in a frame)."""
    external_links: tuple[str, ...] = field(default=(), repr=False)
    """The ``https:`` addresses the page offers to open outside (the host confirms before opening)."""
    warnings: tuple[str, ...] = ()
    """The warning banner's lines, shown at the top of the page (failed validation, unreadable header)."""
    notes: tuple[str, ...] = ()
    """Quieter notes shown above the header (the document's own stylesheet was not used …)."""
    title: str = field(default="", repr=False)
    """The document's title (it may name the patient: kept out of the repr)."""

    def as_bytes(self) -> bytes:
        """The page as UTF-8 bytes."""
        return self.html.encode("utf-8")


# --------------------------------------------------------------------------- small readers


def _q(name: str) -> str:
    return f"{{{_V3}}}{name}"


def _child(element: etree._Element | None, *names: str) -> etree._Element | None:
    for name in names:
        if element is None:
            return None
        element = element.find(_q(name))
    return element


def _children(element: etree._Element | None, name: str) -> list[etree._Element]:
    return [] if element is None else list(element.iterfind(_q(name)))


def _local(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _in_v3(element: etree._Element) -> bool:
    tag = element.tag
    return isinstance(tag, str) and (tag.startswith("{" + _V3 + "}") or not tag.startswith("{"))


def _text(element: etree._Element | None) -> str:
    if element is None or not isinstance(element.tag, str):
        return ""
    return " ".join("".join(str(t) for t in element.itertext()).split())


def _attr(element: etree._Element | None, name: str) -> str:
    if element is None:
        return ""
    return " ".join(str(element.get(name, "")).split())


def _e(text: str) -> str:
    return escape(text, quote=True)


def _format_ts(value: str) -> str:
    """A CDA TS as ``JJ/MM/AAAA[ HH:MM]``, or the value as written when it does not read."""
    match = re.match(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?", value)
    if not match:
        return value
    year, month, day, hour, minute = match.groups()
    if month is None:
        return year
    if day is None:
        return f"{month}/{year}"
    text = f"{day}/{month}/{year}"
    if hour is not None:
        text += f" {hour}:{minute or '00'}"
    return text


def _time(element: etree._Element | None) -> str:
    if element is None:
        return ""
    if element.get("value"):
        return _format_ts(_attr(element, "value"))
    low, high = _child(element, "low"), _child(element, "high")
    parts = []
    if low is not None and low.get("value"):
        parts.append("du " + _format_ts(_attr(low, "value")))
    if high is not None and high.get("value"):
        parts.append("au " + _format_ts(_attr(high, "value")))
    return " ".join(parts)


def _name(element: etree._Element | None) -> str:
    """A person name: for a patient the INS traits apart (birth name, first names, first name and name used)."""
    if element is None or not isinstance(element.tag, str):
        return ""
    families = [p for p in _children(element, "family") if _text(p)]
    givens = [p for p in _children(element, "given") if _text(p)]
    if any(p.get("qualifier") for p in families + givens):
        birth = [_text(p) for p in families if p.get("qualifier") in ("BR", None)]
        used = [_text(p) for p in families if p.get("qualifier") in ("SP", "CL")]
        names = [_text(p) for p in givens if not p.get("qualifier")]
        first = [_text(p) for p in givens if p.get("qualifier") == "BR"]
        used_first = [_text(p) for p in givens if p.get("qualifier") == "CL"]
        parts = [" ".join(birth)]
        if names:
            parts.append("prénoms de naissance : " + " ".join(names))
        if first and first != names[:1]:
            parts.append("premier prénom : " + " ".join(first))
        if used and used != birth:
            parts.append("nom utilisé : " + " ".join(used))
        if used_first and used_first != (first or names[:1]):
            parts.append("prénom utilisé : " + " ".join(used_first))
        return " ; ".join(p for p in parts if p)
    ordered = [
        _text(p) for p in element if isinstance(p.tag, str) and _local(p) in ("prefix", "given", "family", "suffix")
    ]
    return " ".join(p for p in ordered if p) or _text(element)


def _code_label(element: etree._Element | None) -> str:
    if element is None:
        return ""
    label = _attr(element, "displayName")
    code = _attr(element, "code")
    if label and code:
        return f"{label} ({code})"
    return label or code or _text(_child(element, "originalText"))


def _organization_name(element: etree._Element | None) -> str:
    return _text(_child(element, "name")) if element is not None else ""


# --------------------------------------------------------------------------- the renderer


@dataclass
class _State:
    attachments: list[DisplayAttachment] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    media: dict[str, etree._Element] = field(default_factory=dict)
    shown_media: set[int] = field(default_factory=set)
    footnotes: list[tuple[str, str]] = field(default_factory=list)
    notes_seen: int = 0
    body_text: bytes | None = None
    body_marker: str | None = None
    section_title: str = "Document"


def _html_id(value: str) -> str:
    return "cda-" + _ID.sub("_", value)[:120]


def render_cda(
    data: bytes,
    *,
    validation: ValidationReport | None = None,
    readable: bool | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> RenderedDocument:
    """Render a received CDA document (its bytes) as one self-contained, sanitised HTML page.

    ``validation`` is a report from :func:`dmp_connector.cda.validate`: its errors are shown in a
    warning banner (the document is still shown, EX_3.1-1050). A document the SDK's model cannot
    read gets a banner too: ``readable`` says whether it could, when the caller already knows
    (None: the document is read into the model once more to find out). Hostile XML (a DTD, an entity) raises
    :class:`~dmp_connector.errors.UnsafeXmlError`; bytes that are not a CDA document raise
    :class:`~dmp_connector.errors.MalformedResponseError`. Needs nh3 (``dmp-connector[display]``).
    """
    reduced, body_text, body_marker = _cut_large_body(bytes(data))
    root = parse_xml(reduced, limits=limits, what="the CDA document")
    document = root if root.tag == _q("ClinicalDocument") else next(root.iter(_q("ClinicalDocument")), None)
    if document is None:
        raise MalformedResponseError("the document to display is not a CDA ClinicalDocument")
    warnings: list[str] = []
    notes: list[str] = []
    if document is not root or _named_stylesheet(root):
        notes.append("La feuille de style désignée par le document n'est pas utilisée : affichage standard sécurisé.")
    if readable is None:
        try:
            parse_cda(bytes(data), limits=limits)
            readable = True
        except DmpConnectorError:
            readable = False
    if not readable:
        warnings.append("L'en-tête du document ne respecte pas la structure CDA attendue : vérifiez son contenu.")
    if validation is not None and not validation.ok:
        count = len(validation.errors)
        warnings.append(
            f"La validation du document a échoué ({count} erreur(s)) : il est affiché tel qu'il a été reçu."
        )
        warnings.extend(f"— {finding.message}" for finding in validation.errors[:10])
    state = _State(body_text=body_text, body_marker=body_marker)
    _index_media(document, state)
    title = _text(_child(document, "title")) or _code_label(_child(document, "code")) or "Document CDA"
    body = "".join(_page_body(document, title, warnings, notes, state))
    clean = sanitize_fragment(body)
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n<body>\n{clean}\n</body>\n</html>\n"
    )
    return RenderedDocument(
        html=page,
        attachments=tuple(state.attachments),
        external_links=tuple(dict.fromkeys(state.links)),
        warnings=tuple(warnings),
        notes=tuple(notes),
        title=title,
    )


_LARGE: Final = 1 << 20


def _cut_large_body(data: bytes) -> tuple[bytes, bytes | None, str | None]:
    """A large level-1 body's base64 cut out before parsing: libxml2 refuses a text node over 10 MB.

    Only a single ``nonXMLBody`` whose ``text`` holds nothing but base64 and white space (checked)
    is cut; the rest of the document is parsed by the hardened parser as usual. A random marker
    takes the text's place: the cut is used only if the parser reads the marker as that text (a
    copy of a body in a comment, with the real one elsewhere, is never shown as the document's).
    """
    span = non_xml_body_text(data)
    if span is None:
        return data, None, None
    start, end = span
    if end - start < _LARGE or base64_spaces(data, start, end) is None:
        return data, None, None
    marker = "DMPC" + secrets.token_hex(12)
    return data[:start] + marker.encode("ascii") + data[end:], data[start:end], marker


def _named_stylesheet(root: etree._Element) -> bool:
    node = root.getprevious()
    while node is not None:
        if isinstance(node, etree._ProcessingInstruction) and node.target == "xml-stylesheet":
            return True
        node = node.getprevious()
    return False


def _index_media(document: etree._Element, state: _State) -> None:
    """Every element with an ``ID`` (renderMultiMedia points at observationMedia/regionOfInterest by it)."""
    for element in document.iter():
        if not isinstance(element.tag, str):
            continue
        ident = element.get("ID")
        if ident and _local(element) in ("observationMedia", "regionOfInterest"):
            state.media.setdefault(ident, element)


def _page_body(
    document: etree._Element, title: str, warnings: list[str], notes: list[str], state: _State
) -> Iterator[str]:
    if warnings:
        yield '<div class="cda-avertissement" role="alert"><strong>Avertissement</strong><ul>'
        yield from (f"<li>{_e(w)}</li>" for w in warnings)
        yield "</ul></div>"
    yield from (f'<p class="cda-note">{_e(note)}</p>' for note in notes)
    yield '<header class="cda-en-tete" role="banner">'
    yield f"<h1>{_e(title)}</h1>"
    yield from _header(document)
    yield "</header>"
    if _written_by_patient(document):
        yield '<p class="cda-redige-par-patient" role="note">Document rédigé par le patient.</p>'
    yield '<main aria-label="Contenu du document">'
    component = _child(document, "component")
    structured = _child(component, "structuredBody")
    non_xml = _child(component, "nonXMLBody")
    if structured is not None:
        for comp in _children(structured, "component"):
            for section in _children(comp, "section"):
                yield from _section(section, 2, state)
    elif non_xml is not None:
        yield from _non_xml(non_xml, title, state)
    else:
        yield '<p class="cda-media-absent">Ce document n\'a pas de corps lisible.</p>'
    yield "</main>"
    yield from _attachment_list(state)


def _dl(rows: list[tuple[str, str]]) -> Iterator[str]:
    rows = [(k, v) for k, v in rows if v]
    if not rows:
        return
    yield "<dl>"
    for key, value in rows:
        yield f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>"
    yield "</dl>"


def _ids(elements: list[etree._Element]) -> str:
    out = []
    for element in elements:
        root, extension = _attr(element, "root"), _attr(element, "extension")
        if not extension:
            continue
        kind = _INS_ROOTS.get(root)
        out.append(f"{extension} ({kind})" if kind else extension)
    return ", ".join(out)


def _header(document: etree._Element) -> Iterator[str]:
    role = _child(document, "recordTarget", "patientRole")
    patient = _child(role, "patient")
    ins = [i for i in _children(role, "id") if _attr(i, "root") in _INS_ROOTS]
    other = [i for i in _children(role, "id") if _attr(i, "root") not in _INS_ROOTS]
    birth_place = _text(_child(patient, "birthplace", "place", "addr"))
    yield '<section aria-labelledby="cda-h-patient"><h2 id="cda-h-patient">Patient</h2>'
    yield from _dl(
        [
            ("Nom et prénoms", _name(_child(patient, "name"))),
            ("Sexe", _SEX.get(_attr(_child(patient, "administrativeGenderCode"), "code"), "")),
            ("Date de naissance", _time(_child(patient, "birthTime"))),
            ("Lieu de naissance", birth_place),
            ("INS", _ids(ins)),
            ("Autres identifiants", _ids(other)),
        ]
    )
    yield "</section>"
    yield '<section aria-labelledby="cda-h-document"><h2 id="cda-h-document">Document</h2>'
    parent = _child(document, "relatedDocument", "parentDocument", "id")
    service = _child(document, "documentationOf", "serviceEvent")
    encounter = _child(document, "componentOf", "encompassingEncounter")
    confidentiality = _attr(_child(document, "confidentialityCode"), "code")
    yield from _dl(
        [
            ("Type de document", _code_label(_child(document, "code"))),
            ("Date du document", _time(_child(document, "effectiveTime"))),
            ("Confidentialité", _CONFIDENTIALITY.get(confidentiality, confidentiality)),
            ("Identifiant", _ids(_children(document, "id")) or _attr(_child(document, "id"), "root")),
            ("Version", _attr(_child(document, "versionNumber"), "value")),
            ("Lot de versions (setId)", _ids(_children(document, "setId"))),
            ("Remplace le document", _ids([parent]) if parent is not None else ""),
            ("Acte", _code_label(_child(service, "code"))),
            ("Date de l'acte", _time(_child(service, "effectiveTime"))),
            ("Prise en charge", _time(_child(encounter, "effectiveTime"))),
            (
                "Lieu",
                _text(_child(encounter, "location", "healthCareFacility", "location", "name"))
                or _text(_child(encounter, "location", "healthCareFacility", "serviceProviderOrganization", "name")),
            ),
            ("Langue", _attr(_child(document, "languageCode"), "code")),
        ]
    )
    yield "</section>"
    rows: list[tuple[str, str]] = []
    for author in _children(document, "author"):
        assigned = _child(author, "assignedAuthor")
        who = _name(_child(assigned, "assignedPerson", "name")) or _text(
            _child(assigned, "assignedAuthoringDevice", "softwareName")
        )
        org = _organization_name(_child(assigned, "representedOrganization"))
        specialty = _attr(_child(assigned, "code"), "displayName")
        when = _time(_child(author, "time"))
        details = ", ".join(filter(None, (specialty, org, when and f"le {when}")))
        rows.append(("Auteur", f"{who} — {details}" if details else who))
    legal = _child(document, "legalAuthenticator")
    if legal is not None:
        who = _name(_child(legal, "assignedEntity", "assignedPerson", "name"))
        when = _time(_child(legal, "time"))
        rows.append(("Responsable", f"{who}, le {when}" if when else who))
    custodian = _child(document, "custodian", "assignedCustodian", "representedCustodianOrganization")
    rows.append(("Conservé par", _organization_name(custodian)))
    for recipient in _children(document, "informationRecipient"):
        intended = _child(recipient, "intendedRecipient")
        who = _name(_child(intended, "informationRecipient", "name"))
        org = _organization_name(_child(intended, "receivedOrganization"))
        rows.append(("Destinataire", ", ".join(filter(None, (who, org)))))
    yield '<section aria-labelledby="cda-h-acteurs"><h2 id="cda-h-acteurs">Auteurs et responsables</h2>'
    yield from _dl(rows)
    yield "</section>"


def _written_by_patient(document: etree._Element) -> bool:
    """EX_3.1-1040: the author is the patient (same id as the patientRole, or role code PAT)."""
    patient_ids = {
        (_attr(i, "root"), _attr(i, "extension"))
        for i in _children(_child(document, "recordTarget", "patientRole"), "id")
    }
    for author in _children(document, "author"):
        assigned = _child(author, "assignedAuthor")
        if _attr(_child(assigned, "code"), "code") == "PAT":
            return True
        for ident in _children(assigned, "id"):
            if _attr(ident, "extension") and (_attr(ident, "root"), _attr(ident, "extension")) in patient_ids:
                return True
    return False


def _section(section: etree._Element, level: int, state: _State) -> Iterator[str]:
    h = min(level, 6)
    title = _text(_child(section, "title")) or _code_label(_child(section, "code")) or "Section"
    ident = _attr(section, "ID")
    anchor = f' id="{_e(_html_id(ident))}"' if ident else ""
    yield f'<section class="cda-section"{anchor}><h{h}>{_e(title)}</h{h}>'
    state.footnotes = []
    state.section_title = title
    text = _child(section, "text")
    if text is not None:
        yield from _narrative_children(text, state)
    notes = state.footnotes
    if notes:
        yield '<aside class="cda-notes" aria-label="Notes"><ol>'
        for note_id, note_html in notes:
            yield f'<li id="{_e(note_id)}">{note_html}</li>'
        yield "</ol></aside>"
    state.footnotes = []
    yield from _section_media(section, title, state)
    for comp in _children(section, "component"):
        for sub in _children(comp, "section"):
            yield from _section(sub, level + 1, state)
    yield "</section>"


def _section_media(section: etree._Element, title: str, state: _State) -> Iterator[str]:
    """observationMedia of this section's entries not already shown inline: offered as attachments."""
    for entry in _children(section, "entry"):
        for media in entry.iter(_q("observationMedia")):
            if id(media) in state.shown_media:
                continue
            state.shown_media.add(id(media))
            yield from _offer(_child(media, "value"), title, state)


def _decode(value: etree._Element | None, cut: bytes | None = None) -> bytes | None:
    if value is None or _attr(value, "representation") != "B64":
        return None
    raw = cut if cut is not None else "".join(str(t) for t in value.itertext()).encode("ascii", "replace")
    try:
        return base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _offer(value: etree._Element | None, label: str, state: _State, cut: bytes | None = None) -> Iterator[str]:
    data = _decode(value, cut)
    if data is None:
        if value is not None and _child(value, "reference") is not None:
            yield '<p class="cda-media-absent">Contenu externe référencé par le document : non chargé.</p>'
        return
    number = len(state.attachments) + 1
    sniffed = sniff_media_type(data)
    extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}.get(
        sniffed or "", "bin"
    )
    attachment = DisplayAttachment(
        anchor=f"pj-{number}",
        label=label,
        filename=f"piece-jointe-{number}.{extension}",
        declared_type=_attr(value, "mediaType") or None,
        media_type=sniffed,
        content=data,
    )
    state.attachments.append(attachment)
    yield f'<p class="cda-piece-jointe">Pièce jointe : <a href="#pj-{number}">{_e(attachment.filename)}</a></p>'


def _non_xml(body: etree._Element, title: str, state: _State) -> Iterator[str]:
    yield '<section class="cda-section" aria-labelledby="cda-h-corps"><h2 id="cda-h-corps">Document joint</h2>'
    yield "<p>Le corps de ce document n'est pas structuré : il est proposé en pièce jointe, à ouvrir à l'extérieur.</p>"
    text = _child(body, "text")
    cut = None
    if text is not None and state.body_marker is not None and text.text == state.body_marker and len(text) == 0:
        cut = state.body_text
    yield from _offer(text, title, state, cut)
    yield "</section>"


_KIND_LABELS: Final = {
    "application/pdf": "PDF",
    "image/png": "image PNG",
    "image/jpeg": "image JPEG",
    "image/gif": "image GIF",
}


def _attachment_list(state: _State) -> Iterator[str]:
    if not state.attachments:
        return
    yield '<footer class="cda-pieces-jointes" aria-labelledby="cda-h-pj"><h2 id="cda-h-pj">Pièces jointes</h2><ul>'
    for a in state.attachments:
        kind = {
            "application/pdf": "PDF",
            "image/png": "image PNG",
            "image/jpeg": "image JPEG",
            "image/gif": "image GIF",
        }
        what = kind.get(a.media_type or "", "type non reconnu")
        size = f"{max(1, round(len(a.content) / 1024))} Ko"
        note = " — le type déclaré par le document ne correspond pas au contenu" if a.type_mismatch else ""
        yield (
            f'<li id="{a.anchor}" class="cda-piece-jointe">{_e(a.label)} : {_e(a.filename)} ({what}, {size}){_e(note)}'
            " — à ouvrir hors de cette page (visionneuse du poste).</li>"
        )
    yield "</ul></footer>"


# --------------------------------------------------------------------------- narrative


def _narrative_children(element: etree._Element, state: _State) -> Iterator[str]:
    if element.text:
        yield _e(element.text)
    for child in element:
        yield from _narrative(child, state)
        if child.tail:
            yield _e(child.tail)


def _classes(element: etree._Element) -> str:
    codes = [_STYLE_CLASSES.get(c.lower()) for c in _attr(element, "styleCode").split()]
    kept = [c for c in codes if c]
    return f' class="{" ".join(kept)}"' if kept else ""


def _id_attr(element: etree._Element, state: _State) -> str:
    ident = _attr(element, "ID")
    if not ident:
        return ""
    html_id = _html_id(ident)
    if html_id in state.ids:
        return ""
    state.ids.add(html_id)
    return f' id="{_e(html_id)}"'


def _narrative(element: etree._Element, state: _State) -> Iterator[str]:
    if not isinstance(element.tag, str):  # comment or processing instruction: dropped, its tail is kept by the caller
        return
    name = _local(element) if _in_v3(element) else ""
    attrs = _id_attr(element, state) + _classes(element)
    if name == "content":
        revised = _attr(element, "revised")
        tag = "del" if revised == "delete" else "ins" if revised == "insert" else "span"
        yield f"<{tag}{attrs}>"
        yield from _narrative_children(element, state)
        yield f"</{tag}>"
    elif name == "paragraph":
        yield f"<p{attrs}>"
        yield from _narrative_children(element, state)
        yield "</p>"
    elif name == "br":
        yield "<br>"
    elif name in _SIMPLE:
        yield f"<{_SIMPLE[name]}{attrs}>"
        yield from _narrative_children(element, state)
        yield f"</{_SIMPLE[name]}>"
    elif name == "caption":
        yield f"<strong{attrs}>"
        yield from _narrative_children(element, state)
        yield "</strong> "
    elif name == "list":
        tag = "ol" if _attr(element, "listType") == "ordered" else "ul"
        caption = _child(element, "caption")
        if caption is not None:
            yield "<p><strong>"
            yield from _narrative_children(caption, state)
            yield "</strong></p>"
        yield f"<{tag}{attrs}>"
        for child in element:
            if _local(child) == "caption":
                continue
            yield from _narrative(child, state)
        yield f"</{tag}>"
    elif name == "item":
        yield f"<li{attrs}>"
        yield from _narrative_children(element, state)
        yield "</li>"
    elif name == "table":
        yield from _table(element, attrs, state)
    elif name == "linkHtml":
        yield from _link(element, attrs, state)
    elif name == "footnote":
        number = len(state.footnotes) + 1
        state.notes_seen += 1
        note_id = _html_id(_attr(element, "ID")) if _attr(element, "ID") else f"cda-note-{state.notes_seen}"
        inner = "".join(_narrative_children(element, state))
        state.footnotes.append((note_id, inner))
        yield f'<sup><a href="#{_e(note_id)}" aria-label="Note {number}">[{number}]</a></sup>'
    elif name == "footnoteRef":
        ref = _attr(element, "IDREF")
        if ref:
            yield f'<sup><a href="#{_e(_html_id(ref))}">[note]</a></sup>'
    elif name == "renderMultiMedia":
        yield from _multimedia(element, state)
    else:
        # Anything else (a foreign element, an HTML tag slipped into the narrative): its text only.
        yield from _narrative_children(element, state)


def _table(element: etree._Element, attrs: str, state: _State) -> Iterator[str]:
    yield f"<table{attrs}>"
    caption = _child(element, "caption")
    if caption is not None:
        yield "<caption>"
        yield from _narrative_children(caption, state)
        yield "</caption>"
    for child in element:
        yield from _table_part(child, state, in_head=False)
    yield "</table>"


def _table_part(element: etree._Element, state: _State, *, in_head: bool) -> Iterator[str]:
    if not isinstance(element.tag, str):
        return
    name = _local(element) if _in_v3(element) else ""
    if name == "caption":
        return
    if name not in _TABLE_PARTS:
        return  # text outside a cell cannot sit in an HTML table; the schema allows none
    attrs = _id_attr(element, state) + _classes(element)
    for cell_attr in ("colspan", "rowspan", "span"):
        value = _attr(element, cell_attr)
        if value.isdigit() and len(value) <= 4:
            attrs += f' {cell_attr}="{value}"'
    if name == "th":
        scope = _attr(element, "scope") or ("col" if in_head else "")
        if scope in ("row", "col", "rowgroup", "colgroup"):
            attrs += f' scope="{scope}"'  # a header cell says what it heads, for screen readers
    if name in ("td", "th"):
        yield f"<{name}{attrs}>"
        yield from _narrative_children(element, state)
        yield f"</{name}>"
        return
    if name == "col":
        yield f"<col{attrs}>"
        return
    yield f"<{name}{attrs}>"
    for child in element:
        yield from _table_part(child, state, in_head=in_head or name == "thead")
    yield f"</{name}>"


def _link(element: etree._Element, attrs: str, state: _State) -> Iterator[str]:
    href = "".join(_attr(element, "href").split())
    inner = "".join(_narrative_children(element, state))
    if href.startswith("#") and len(href) > 1:
        yield f'<a href="#{_e(_html_id(href[1:]))}"{attrs}>{inner}</a>'
    elif _HTTPS.match(href):
        state.links.append(href)
        yield f"<span{attrs}>{inner}</span>"
        yield f' <span class="cda-lien-externe">{_e(href)}</span>'
        yield (
            f' <a class="cda-ouvrir-exterieur" href="{_e(href)}" target="_blank" rel="noopener noreferrer nofollow"'
            f' referrerpolicy="no-referrer" title="Ouvrir dans le navigateur du poste">Ouvrir à l\'extérieur</a>'
        )
    else:
        # javascript:, data:, file:, //host, http: … : the words stay, the link does not.
        yield f"<span{attrs}>{inner}</span>"


def _multimedia(element: etree._Element, state: _State) -> Iterator[str]:
    caption = _child(element, "caption")
    caption_text = _text(caption)
    for ref in _attr(element, "referencedObject").split():
        media = state.media.get(ref)
        if media is None:
            label = f" : {_e(caption_text)}" if caption_text else ""
            yield f'<span class="cda-media-absent">[média absent du document{label}]</span>'
            continue
        state.shown_media.add(id(media))
        value = _child(media, "value")
        data = _decode(value)
        kind = sniff_media_type(data) if data is not None else None
        if data is not None and kind is not None and kind.startswith("image/"):
            encoded = base64.b64encode(data).decode("ascii")
            alt = caption_text or "Image du document"
            yield f'<figure><img src="data:{kind};base64,{encoded}" alt="{_e(alt)}">'
            if caption is not None:
                yield "<figcaption>"
                yield from _narrative_children(caption, state)
                yield "</figcaption>"
            yield "</figure>"
        elif data is not None:
            yield from _offer(value, caption_text or state.section_title, state)
        else:
            yield '<span class="cda-media-absent">[média externe non chargé]</span>'
