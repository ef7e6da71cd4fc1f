"""The lab results report, *Compte rendu d'examens de biologie médicale* (CR-BIO 2024.01).

What a medical laboratory sends to the DMP. :class:`CrBioContent` holds the report as typed
data: one :class:`LabChapter` per laboratory specialty (Biochimie, Hématologie …), each with
its results (:class:`~dmp_connector.cda.volets.LabResult`, LOINC-coded, values with UCUM
units, reference ranges, interpretations, previous results), batteries, specimens,
comments, the performing laboratory and the validating biologist; plus the PDF copy of the
report the volet requires. :func:`cr_bio_document` and :func:`as_cr_bio` make the whole
document: type ``11502-2``, templateIds IHE XD-LAB ``1.3.6.1.4.1.19376.1.3.3`` and CI-SIS
``1.2.250.1.213.1.1.1.55`` version ``2024.01``; its XDS formatCode ``urn:ihe:lab:xd-lab:2008``.

Body layout, as the CR-BIO schematron wants it::

    section 1.3.6.1.4.1.19376.1.3.3.2.1 / 1.2.250.1.213.1.1.2.70   FR-CR-BIO-Chapitre (one per specialty)
        entry 1.3.6.1.4.1.19376.1.3.1 / 1.2.250.1.213.1.1.3.21    FR-Resultats-examens-de-biologie-medicale
    section 1.2.250.1.213.1.1.2.243                   55108-5    FR-Document-PDF-copie (the PDF of the report)
"""

from __future__ import annotations

import base64
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from lxml import etree
from pydantic import Field

from dmp_connector.cda._namespaces import HL7, XSI, hl7, new_root
from dmp_connector.cda.build import _assigned_element, format_ts  # the header's own writer of an assignedEntity
from dmp_connector.cda.metadata import FORMAT_OF_TEMPLATE
from dmp_connector.cda.model import (
    CISIS_TEMPLATE,
    HL7_FRANCE_TEMPLATE,
    LOINC,
    AssignedEntity,
    ClinicalDocument,
    InstanceId,
    LegalAuthenticator,
    Narrative,
    NonXmlBody,
    Organization,
    Patient,
    Performer,
    Period,
    RawElement,
    RawEntry,
    Section,
    ServiceEvent,
    StructuredBody,
    _Model,
    _reading,
)
from dmp_connector.cda.parse import _assigned as _read_assigned
from dmp_connector.cda.parse import parse_ts
from dmp_connector.cda.valuesets import DocumentType
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._bio_entries import (
    LabBattery,
    LabComment,
    LabImage,
    LabItem,
    LabPerformer,
    LabReportEntry,
    LabResult,
    LabValidator,
    QuantityRange,
    ResultValue,
    SpecimenCollection,
    Status,
)
from ._entries import Quantity, check_anchors, show_code, show_quantity, show_time

if TYPE_CHECKING:
    from dmp_connector.config import Settings

__all__ = [
    "AUTHENTICATOR_TEMPLATE",
    "CR_BIO_FORMAT_CODE",
    "CR_BIO_TEMPLATE",
    "CR_BIO_TITLE",
    "CR_BIO_TYPE_CODE",
    "XD_LAB_TEMPLATE",
    "CrBioContent",
    "LabChapter",
    "as_cr_bio",
    "cr_bio_authenticators",
    "cr_bio_document",
    "cr_bio_problems",
]

CR_BIO_TEMPLATE: Final = InstanceId(root="1.2.250.1.213.1.1.1.55", extension="2024.01")
"""Document templateId of the CR-BIO, version 2024.01."""
XD_LAB_TEMPLATE: Final = "1.3.6.1.4.1.19376.1.3.3"
"""IHE XD-LAB, the document templateId the CR-BIO schematron requires."""
CR_BIO_TYPE_CODE: Final = DocumentType.LABORATORY_REPORT
"""``11502-2`` "CR d'examens biologiques" (LOINC), the type and display name the schematron requires."""
CR_BIO_FORMAT_CODE: Final = FORMAT_OF_TEMPLATE[CR_BIO_TEMPLATE.root]
"""XDS formatCode of a CR-BIO: ``urn:ihe:lab:xd-lab:2008`` (ASS_A11)."""
CR_BIO_TITLE: Final = "Compte rendu d'examens biologiques"
"""The title the CR-BIO schematron requires."""

CHAPTER_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.3.2.1", "1.2.250.1.213.1.1.2.70")
"""templateIds of a chapter section (IHE Laboratory Specialty Section, FR-CR-BIO-Chapitre)."""
PDF_COPY_TEMPLATE: Final = "1.2.250.1.213.1.1.2.243"
"""templateId of the section holding the PDF copy of the report (FR-Document-PDF-copie)."""
_PDF_COPY_CODE: Final = Code.of("55108-5", LOINC, "Copie du document")
_ATTACHED: Final = Code.of("55107-7", LOINC, "Document attaché")
_DOCUMENT_KIND: Final = Code.of("69764-9", LOINC, "Type de document")
_NSMAP: Final[dict[str | None, str]] = {None: HL7, "xsi": XSI}


class LabChapter(_Model):
    """One laboratory specialty of the report: a section and its results entry.

    ``items`` are written in order: :class:`~dmp_connector.cda.volets.SpecimenCollection`,
    :class:`~dmp_connector.cda.volets.LabBattery`, :class:`~dmp_connector.cda.volets.LabResult`
    and :class:`~dmp_connector.cda.volets.LabComment` (give a comment's ``text``; the builder
    writes the narrative and every reference).
    """

    code: Code
    """The specialty (LOINC: ``18719-5`` Biochimie, ``18723-7`` Hématologie, ``18725-2`` Microbiologie …)."""
    title: str = Field(min_length=1)
    """The chapter's title."""
    items: tuple[LabItem, ...] = Field(min_length=1)
    """What the chapter reports, in order."""
    validator: LabValidator | None = None
    """The biologist who validated these results."""
    performer: LabPerformer | None = None
    """The laboratory that did the tests, when not the document's."""
    status: Status = "completed"
    """``completed`` once every result is validated; ``active`` for a partial report."""

    def to_section(self, prefix: str) -> Section:
        """The chapter section; narrative anchors start with ``prefix``."""
        writer = _Narrative(prefix)
        items = tuple(writer.item(item, 0) for item in self.items)
        entry = LabReportEntry(
            code=self.code, items=items, status=self.status, performer=self.performer, validator=self.validator
        )
        return Section(
            template_ids=CHAPTER_TEMPLATES,
            id=InstanceId(root=str(uuid.uuid4()).upper()),
            code=self.code,
            title=self.title,
            text=writer.narrative(),
            entries=(entry,),
        )


class CrBioContent(_Model):
    """What a CR-BIO says; :meth:`to_body` lays it out in the sections the volet requires."""

    chapters: tuple[LabChapter, ...] = Field(min_length=1)
    """The specialties, in order."""
    pdf_copy: bytes = Field(repr=False)
    """The report as the laboratory printed it (PDF, PDF/A recommended): the volet requires this copy."""

    def value_set_problems(self) -> list[str]:
        """LOINC codes, units, interpretations and specimen types that break the volet's rules."""
        found: list[str] = []
        for i, chapter in enumerate(self.chapters):
            entry = LabReportEntry(code=chapter.code, items=chapter.items)
            found += [f"chapters[{i}].{p}" for p in entry.value_set_problems()]
        return found

    def to_body(self) -> StructuredBody:
        """The structured body, or :class:`ValidationError` if a rule of the volet is broken."""
        NonXmlBody(data=self.pdf_copy)  # the same PDF check as a level-1 body
        found = self.value_set_problems()
        if found:
            raise ValidationError("the CR-BIO content breaks the volet's rules: " + "; ".join(found), problems=found)
        sections = [chapter.to_section(f"c{n}") for n, chapter in enumerate(self.chapters, 1)]
        sections.append(_pdf_copy_section(self.pdf_copy))
        check_anchors(tuple(sections), "CR-BIO")
        return StructuredBody(sections=tuple(sections))


# --------------------------------------------------------------------------- narrative


class _Narrative:
    """Writes a chapter's table while numbering the anchors its entry points to."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self.text = new_root("text")
        table = etree.SubElement(self.text, hl7("table"), border="1")
        head = etree.SubElement(etree.SubElement(table, hl7("thead")), hl7("tr"))
        for header in ("Examen", "Résultat", "Valeurs de référence", "Interprétation", "Antériorité"):
            etree.SubElement(head, hl7("th")).text = header
        self.body = etree.SubElement(table, hl7("tbody"))
        self.notes: list[tuple[str, str]] = []

    def anchor(self, kind: str) -> str:
        self.count += 1
        return f"{self.prefix}-{kind}{self.count}"

    def row(self, *cells: str | tuple[str, str] | None) -> None:
        tr = etree.SubElement(self.body, hl7("tr"))
        for cell in cells:
            td = etree.SubElement(tr, hl7("td"))
            if isinstance(cell, tuple):
                etree.SubElement(td, hl7("content"), ID=cell[1]).text = cell[0]
            elif cell:
                td.text = cell

    def item(self, item: LabItem | LabImage, depth: int) -> Any:
        indent = "\u00a0\u00a0" * depth
        if isinstance(item, LabResult):
            return self.result(item, indent)
        if isinstance(item, LabBattery):
            reference = item.reference or self.anchor("b")
            name = show_code(item.code) or next((show_code(c) for c in item.code_translations), "Examens")
            if item.specimen is not None and item.specimen.code is not None:
                name = f"{name} ({show_code(item.specimen.code)})"
            self.row((indent + name, reference))
            components = tuple(self.item(c, depth + 1) for c in item.components)
            return item.model_copy(update={"reference": reference, "components": components})
        if isinstance(item, LabComment):
            return self.comment(item)
        if isinstance(item, LabImage):
            tr = etree.SubElement(self.body, hl7("tr"))
            td = etree.SubElement(tr, hl7("td"), colspan="5")
            etree.SubElement(td, hl7("renderMultiMedia"), referencedObject=item.xml_id)
            return item
        return self.collection(item, indent)

    def result(self, result: LabResult, indent: str) -> LabResult:
        reference = result.reference or self.anchor("r")
        name = show_code(result.code) or next((show_code(c) for c in result.code_translations), "Examen")
        value_reference = result.value_reference
        value_cell: str | tuple[str, str] | None = _show_value(result.value)
        if isinstance(result.value, Code):
            value_reference = value_reference or self.anchor("v")
            value_cell = (show_code(result.value), value_reference)
        elif result.status == "aborted" and result.value is None:
            value_cell = "Non réalisé"
        previous = "; ".join(f"{_show_value(p.value)} ({show_time(p.effective_time)})" for p in result.previous)
        comments = tuple(self.comment(c) for c in result.comments)
        self.row(
            (indent + name, reference),
            value_cell,
            _show_range(result),
            ", ".join(show_code(c) for c in result.interpretations),
            previous,
        )
        return result.model_copy(
            update={"reference": reference, "value_reference": value_reference, "comments": comments}
        )

    def comment(self, comment: LabComment) -> LabComment:
        if comment.text is None:
            if comment.reference is None:
                raise ValidationError("a comment without text", problems=("comment.text",))
            return comment
        reference = comment.reference or self.anchor("com")
        self.notes.append((comment.text, reference))
        return LabComment(reference=reference, status=comment.status)

    def collection(self, collection: SpecimenCollection, indent: str) -> SpecimenCollection:
        reference = collection.specimen_reference or self.anchor("p")
        when = f", prélevé le {show_time(collection.collected)}" if collection.collected is not None else ""
        self.row((f"{indent}Prélèvement : {show_code(collection.specimen_type)}{when}", reference))
        return collection.model_copy(update={"specimen_reference": reference})

    def narrative(self) -> Narrative:
        for text, reference in self.notes:
            paragraph = etree.SubElement(self.text, hl7("paragraph"))
            etree.SubElement(paragraph, hl7("content"), ID=reference).text = text
        return Narrative.from_element(self.text)


def _show_value(value: ResultValue | None) -> str:
    if value is None:
        return ""
    if isinstance(value, Quantity):
        return show_quantity(value)
    if isinstance(value, QuantityRange):
        low = f"{'≥' if value.low_inclusive is not False else '>'} {show_quantity(value.low)}" if value.low else ""
        high = f"{'≤' if value.high_inclusive is not False else '<'} {show_quantity(value.high)}" if value.high else ""
        return " et ".join(part for part in (low, high) if part)
    if isinstance(value, Code):
        return show_code(value)
    return format(value, "f") if not isinstance(value, str) else value


def _show_range(result: LabResult) -> str:
    range_ = result.reference_range
    if range_ is None:
        return ""
    bound = range_.high or range_.low
    unit = "" if bound is None or bound.unit == "1" else f" {bound.unit}"
    low = format(range_.low.value, "f") if range_.low is not None else ""
    high = format(range_.high.value, "f") if range_.high is not None else ""
    if low and high:
        return f"{low} - {high}{unit}"
    return f"≥ {low}{unit}" if low else f"≤ {high}{unit}"


# --------------------------------------------------------------------------- PDF copy


def _pdf_copy_section(pdf: bytes) -> Section:
    """FR-Document-PDF-copie: the PDF in an FR-Document-attache organizer, shown by renderMultiMedia."""
    text = Narrative.from_markup(
        '<table border="0"><tbody><tr><td><content ID="titre-copie-pdf">Copie PDF du document</content></td></tr>'
        '<tr><td><renderMultiMedia referencedObject="copie-pdf"/></td></tr></tbody></table>'
    )
    entry = new_root("entry", _NSMAP)
    organizer = etree.SubElement(entry, hl7("organizer"), classCode="CLUSTER", moodCode="EVN")
    etree.SubElement(organizer, hl7("templateId"), root="1.2.250.1.213.1.1.3.18")
    etree.SubElement(organizer, hl7("id"), root=str(uuid.uuid4()).upper())
    _code(organizer, "code", _ATTACHED)
    etree.SubElement(organizer, hl7("statusCode"), code="completed")
    observation = etree.SubElement(
        etree.SubElement(organizer, hl7("component")), hl7("observation"), classCode="OBS", moodCode="EVN"
    )
    for root in ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48", "1.2.250.1.213.1.1.3.48.18"):
        etree.SubElement(observation, hl7("templateId"), root=root)
    etree.SubElement(observation, hl7("id"), root=str(uuid.uuid4()).upper())
    _code(observation, "code", _DOCUMENT_KIND)
    etree.SubElement(etree.SubElement(observation, hl7("text")), hl7("reference"), value="#titre-copie-pdf")
    etree.SubElement(observation, hl7("statusCode"), code="completed")
    etree.SubElement(observation, hl7("effectiveTime"), nullFlavor="NA")
    value = _code(observation, "value", _PDF_COPY_CODE)
    value.set(f"{{{XSI}}}type", "CD")
    media = etree.SubElement(
        etree.SubElement(organizer, hl7("component")), hl7("observationMedia"), classCode="OBS", moodCode="EVN"
    )
    media.set("ID", "copie-pdf")
    data = etree.SubElement(media, hl7("value"), mediaType="application/pdf", representation="B64")
    data.text = base64.b64encode(pdf).decode("ascii")
    return Section(
        template_ids=(PDF_COPY_TEMPLATE,),
        id=InstanceId(root=str(uuid.uuid4()).upper()),
        code=_PDF_COPY_CODE,
        title="Copie du document",
        text=text,
        entries=(RawEntry.from_element(entry),),
    )


def _code(parent: etree._Element, name: str, code: Code) -> etree._Element:
    element = etree.SubElement(parent, hl7(name), code=code.code)
    if code.display_name is not None:
        element.set("displayName", code.display_name)
    element.set("codeSystem", code.code_system)
    return element


# --------------------------------------------------------------------------- the document


def _walk(sections: tuple[Section, ...]) -> list[Section]:
    found: list[Section] = []
    for section in sections:
        found.append(section)
        found += _walk(section.subsections)
    return found


def cr_bio_problems(document: ClinicalDocument) -> list[str]:
    """What keeps ``document`` from being a CR-BIO 2024.01: header, templateIds, required sections, values."""
    found: list[str] = []
    if document.type_code != CR_BIO_TYPE_CODE:
        found.append('type_code: a CR-BIO is of type 11502-2 (LOINC) "CR d\'examens biologiques"')
    if document.title != CR_BIO_TITLE:
        found.append(f"title: a CR-BIO is titled {CR_BIO_TITLE!r}")
    roots = {t.root for t in document.template_ids}
    for root in (XD_LAB_TEMPLATE, CR_BIO_TEMPLATE.root):
        if root not in roots:
            found.append(f"template_ids: {root} is missing")
    event = document.service_events[0]
    if event.code is None:
        found.append("service_events[0].code: a CR-BIO names the exams (the schematron requires serviceEvent/code)")
    if event.performer is None or event.performer.time is None:
        found.append("service_events[0].performer.time: a CR-BIO dates the laboratory's work")
    if not any(extra.name == "responsibleParty" for extra in document.encounter.extras):
        found.append("encounter: a CR-BIO names the responsible biologist (encompassingEncounter/responsibleParty)")
    if isinstance(document.body, NonXmlBody):
        found.append("body: a CR-BIO 2024.01 has a structured body")
        return found
    sections = _walk(document.body.sections)
    top = {t.root for s in document.body.sections for t in s.template_ids}
    if CHAPTER_TEMPLATES[0] not in top:
        found.append(f"body: no chapter section ({CHAPTER_TEMPLATES[0]})")
    if PDF_COPY_TEMPLATE not in top:
        found.append(f"body: the PDF copy section ({PDF_COPY_TEMPLATE}) is missing")
    for section in sections:
        for entry in section.entries:
            if isinstance(entry, LabReportEntry):
                found += [f"body: {problem}" for problem in entry.value_set_problems()]
    return found


def as_cr_bio(document: ClinicalDocument, content: CrBioContent | None = None) -> ClinicalDocument:
    """``document`` made a CR-BIO: type ``11502-2``, its title and templateIds, and ``content``'s body.

    Without ``content`` the document's own body is kept and checked. Anything else the volet
    requires and the document lacks raises :class:`ValidationError` (never filled in here).
    """
    fields = {name: getattr(document, name) for name in type(document).model_fields}
    if content is not None:
        fields["body"] = content.to_body()
    kept = [t for t in document.template_ids if t.root not in (XD_LAB_TEMPLATE, CR_BIO_TEMPLATE.root)]
    if not any(t.root == HL7_FRANCE_TEMPLATE for t in kept):
        kept.insert(0, InstanceId(root=HL7_FRANCE_TEMPLATE))
    if not any(t.root == CISIS_TEMPLATE for t in kept):
        kept.insert(1, InstanceId(root=CISIS_TEMPLATE))
    fields["template_ids"] = (*kept, InstanceId(root=XD_LAB_TEMPLATE), CR_BIO_TEMPLATE)
    fields["type_code"] = CR_BIO_TYPE_CODE
    fields["title"] = CR_BIO_TITLE
    result = ClinicalDocument(**fields)
    found = cr_bio_problems(result)
    if found:
        raise ValidationError("the document is not a valid CR-BIO: " + "; ".join(found), problems=found)
    return result


def _biologist_problems(biologist: AssignedEntity) -> list[str]:
    found = []
    if biologist.person is None:
        found.append("biologist.person")
    if not biologist.addresses:
        found.append("biologist.addresses")
    if not biologist.telecoms:
        found.append("biologist.telecoms")
    if biologist.organization is None:
        found.append("biologist.organization")
    else:
        found += [f"biologist.organization.{name}" for name in _organization_missing(biologist.organization)]
    return found


def _organization_missing(org: Organization) -> list[str]:
    """What the CR-BIO header requires of an organisation and ``org`` lacks."""
    fields = (("id", org.id), ("name", org.name), ("telecoms", org.telecoms), ("addresses", org.addresses))
    return [name for name, value in fields if not value]


def _responsible_party(biologist: AssignedEntity) -> RawElement:
    party = new_root("responsibleParty", _NSMAP)
    party.append(_assigned_element(biologist, "assignedEntity"))
    return RawElement.from_element(party)


AUTHENTICATOR_TEMPLATE: Final = "1.3.6.1.4.1.19376.1.3.3.1.5"
"""templateId of a CR-BIO header ``authenticator`` (a biologist who validated results)."""


def _authenticator(authenticator: LegalAuthenticator, where: str) -> RawElement:
    entity = authenticator.entity
    missing = [name for name, value in (("addresses", entity.addresses), ("telecoms", entity.telecoms)) if not value]
    if entity.organization is not None:
        missing += [f"organization.{name}" for name in _organization_missing(entity.organization)]
    if missing:
        problems = tuple(f"{where}.entity.{name}" for name in missing)
        raise ValidationError(
            "a CR-BIO authenticator lacks what the volet requires: " + ", ".join(problems), problems=problems
        )
    element = new_root("authenticator", _NSMAP)
    etree.SubElement(element, hl7("templateId"), root=AUTHENTICATOR_TEMPLATE)
    etree.SubElement(element, hl7("time"), value=format_ts(authenticator.time))
    etree.SubElement(element, hl7("signatureCode"), code="S")
    element.append(_assigned_element(entity, "assignedEntity"))
    return RawElement.from_element(element)


def cr_bio_authenticators(document: ClinicalDocument) -> tuple[LegalAuthenticator, ...]:
    """The biologists who validated the report (header ``authenticator``), with when; kept as XML by the model."""
    found = []
    for raw in document.other_header:
        if raw.name != "authenticator":
            continue
        element = raw.to_element()
        time, entity = element.find(hl7("time")), element.find(hl7("assignedEntity"))
        if time is None or entity is None or not time.get("value"):
            raise ValidationError("an authenticator without time or assignedEntity", problems=("authenticator",))
        with _reading():  # a received document's time may lack its zone
            found.append(LegalAuthenticator(time=parse_ts(time.get("value") or ""), entity=_read_assigned(entity)))
    return tuple(found)


def cr_bio_document(
    content: CrBioContent,
    *,
    settings: Settings,
    patient: Identity | Patient,
    effective_time: datetime,
    biologist: AssignedEntity,
    performed: datetime,
    collected: datetime | date,
    practice_setting: Code,
    service_code: Code | None = None,
    authenticators: tuple[LegalAuthenticator, ...] = (),
    **fields: Any,
) -> ClinicalDocument:
    """A CR-BIO whose author, legal authenticator and custodian come from ``settings``.

    ``biologist`` is the biologist responsible for the report, with the laboratory as
    ``organization`` (id, name, address, telecom — the volet requires them all): the
    performer of the service event (at ``performed``) and the encounter's responsible party.
    The service event spans ``collected`` (the sample) to ``performed``; its code is
    ``service_code``, by default the first chapter's specialty. ``authenticators`` are the
    biologists who validated results (header ``authenticator``, with their address and
    telecom as the volet requires). Other keyword arguments are those of
    :meth:`~dmp_connector.cda.model.ClinicalDocument.from_settings`.
    """
    missing = _biologist_problems(biologist)
    if missing:
        raise ValidationError(
            "the responsible biologist lacks what the CR-BIO header requires: " + ", ".join(missing),
            problems=tuple(missing),
        )
    code = service_code if service_code is not None else content.chapters[0].code
    if authenticators:
        written = tuple(_authenticator(a, f"authenticators[{i}]") for i, a in enumerate(authenticators))
        fields["other_header"] = (*fields.get("other_header", ()), *written)
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=CR_BIO_TYPE_CODE,
        title=CR_BIO_TITLE,
        body=content.to_body(),
        effective_time=effective_time,
        service_start=collected,
        service_end=performed,
        practice_setting=practice_setting,
        template_ids=(HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, XD_LAB_TEMPLATE, CR_BIO_TEMPLATE),
        **fields,
    )
    event = ServiceEvent.of(
        start=collected, end=performed, performer=biologist, practice_setting=practice_setting, code=code
    )
    assert event.performer is not None
    performer = Performer(
        entity=event.performer.entity, time=Period(high=performed), template_ids=("1.3.6.1.4.1.19376.1.3.3.1.7",)
    )
    event = event.model_copy(update={"performer": performer})
    encounter = document.encounter.model_copy(
        update={"extras": (*document.encounter.extras, _responsible_party(biologist))}
    )
    return as_cr_bio(
        document.model_copy(update={"service_events": (event, *document.service_events[1:]), "encounter": encounter})
    )
