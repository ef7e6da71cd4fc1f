"""Writing a :class:`~dmp_connector.cda.model.ClinicalDocument` as CI-SIS CDA R2 XML.

:func:`build` returns the document as UTF-8 bytes. A document built from the model is
canonical: the XML declaration, no indentation (whitespace in a narrative block is content),
attributes in a fixed order, elements in the order of the CDA schema. A document read with
:func:`~dmp_connector.cda.parse` is written as it was read, with only the parts changed
since written anew (``_emit``, ``_patch.py``): nothing the model does not type is lost. The
same model always gives the same bytes.

Before writing, :func:`build` applies the rules a model cannot hold on its own, because
a received document must still be readable when it breaks them (see :func:`problems`):
the INS key, the current value sets (JDV_J07, J01, J02, J04), a time zone on every
date-time, the first service event's performer and start, the three templateIds of a
PDF document.

A PDF body is not put into the lxml tree: the header is serialized around a marker,
then the base64 of the PDF is encoded straight into the output in 768 KB slices. Building
a document around a PDF of *n* bytes so holds the PDF (*n*) and the output (≈ 1.34 *n*),
and nothing else of that size (``benchmarks/cda_pdf_memory.py`` checks it)::

    <component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0xLjQK…</text>
    </nonXMLBody></component></ClinicalDocument>
"""

from __future__ import annotations

import binascii
import copy
import functools
import io
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from functools import partial
from typing import IO, Final, cast

import pydantic
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity, Sex

from ._namespaces import HL7, NSMAP, XSI, hl7, new_root
from ._patch import PARTS, changed_parts, kept, patch
from .model import (
    CISIS_TEMPLATE,
    GENDER_SYSTEM,
    HL7_FRANCE_TEMPLATE,
    IDNAT_STRUCT,
    XDS_SD_TEMPLATE,
    Address,
    AssignedEntity,
    AssociatedEntity,
    Author,
    ClinicalDocument,
    Encounter,
    Entry,
    HealthCareFacility,
    InformationRecipient,
    InstanceId,
    LegalAuthenticator,
    NonXmlBody,
    Organization,
    Participant,
    Patient,
    Performer,
    Period,
    PersonName,
    RawElement,
    Section,
    ServiceEvent,
    StructuredBody,
    Telecom,
    _Model,
    _reading,
)
from .parse import Base64Layout

__all__ = ["build", "problems", "to_element", "write"]

# Children of each parent in the order of POCD_MT000040 (CDA_extended.xsd); kept XML goes to its place.
_DOCUMENT_ORDER: Final = (
    "realmCode",
    "typeId",
    "templateId",
    "id",
    "code",
    "title",
    "effectiveTime",
    "confidentialityCode",
    "languageCode",
    "setId",
    "versionNumber",
    "copyTime",
    "recordTarget",
    "author",
    "dataEnterer",
    "informant",
    "custodian",
    "informationRecipient",
    "legalAuthenticator",
    "authenticator",
    "participant",
    "inFulfillmentOf",
    "documentationOf",
    "relatedDocument",
    "authorization",
    "componentOf",
    "component",
)
_PATIENT_ROLE_ORDER: Final = ("templateId", "id", "addr", "telecom", "patient", "providerOrganization")
_PATIENT_ORDER: Final = (
    "templateId",
    "id",
    "name",
    "desc",
    "administrativeGenderCode",
    "birthTime",
    "deceasedInd",
    "deceasedTime",
    "multipleBirthInd",
    "multipleBirthOrderNumber",
    "maritalStatusCode",
    "religiousAffiliationCode",
    "raceCode",
    "ethnicGroupCode",
    "guardian",
    "birthplace",
    "languageCommunication",
)
_SERVICE_EVENT_ORDER: Final = ("templateId", "id", "code", "statusCode", "effectiveTime", "performer")
_ENCOUNTER_ORDER: Final = (
    "templateId",
    "id",
    "code",
    "effectiveTime",
    "dischargeDispositionCode",
    "responsibleParty",
    "encounterParticipant",
    "location",
)
_SECTION_ORDER: Final = (
    "templateId",
    "id",
    "code",
    "title",
    "text",
    "confidentialityCode",
    "languageCode",
    "subject",
    "author",
    "informant",
    "entry",
    "component",
)

_TYPE_ID_ROOT: Final = "2.16.840.1.113883.1.3"
_TYPE_ID_EXTENSION: Final = "POCD_HD000040"
_GENDER: Final = {Sex.M: ("M", "Masculin"), Sex.F: ("F", "Féminin"), Sex.I: ("UN", "Inconnu")}
_B64_SLICE: Final = 3 * 256 * 1024  # a multiple of 3, so that slices encode without padding in between
_N1_TEMPLATES: Final = frozenset({HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, XDS_SD_TEMPLATE})
_log = logging.getLogger("dmp_connector.cda")
_DEFAULT_NS: Final = cast("dict[str, str]", {None: HL7})  # lxml-stubs type nsmap keys as str


# --------------------------------------------------------------------------- public


def build(document: ClinicalDocument) -> bytes:
    """The document as canonical UTF-8 XML bytes, or :class:`ValidationError` listing every problem.

    An identity whose INS was read with a wrong key raises
    :class:`~dmp_connector.errors.InvalidIdentifierError`.
    """
    buffer = io.BytesIO()
    write(document, buffer)
    # getvalue() hands over the buffer without copying it when nothing else holds a view on it.
    return buffer.getvalue()


def write(document: ClinicalDocument, stream: IO[bytes]) -> None:
    """Write the document to a binary stream (a file opened ``"wb"``): :func:`build` without the bytes."""
    _check(document)
    root = _document(document)
    if not isinstance(document.body, NonXmlBody):
        stream.write(etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True))
        return
    marker = f"dmp-connector-pdf-{uuid.uuid4().hex}"
    text = root.find(f"{hl7('component')}/{hl7('nonXMLBody')}/{hl7('text')}")
    assert text is not None
    text.text = marker
    serialized = etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True)
    head, found, tail = serialized.partition(marker.encode())
    assert found and marker.encode() not in tail, "the PDF marker must occur once in the serialized header"
    stream.write(head)
    layout = _layout(document.body)
    if isinstance(layout, bytes):
        stream.write(layout)
    elif layout is not None:
        for piece in layout.encode(document.body.data, _B64_SLICE):
            stream.write(piece)
    else:
        _write_base64(document.body.data, stream)
    stream.write(tail)


def to_element(document: ClinicalDocument) -> etree._Element:
    """The document as an lxml tree, checked as :func:`build` checks it.

    A PDF body is encoded into the tree as one text node: fine for tests and small
    documents; for large PDFs use :func:`build` or :func:`write`, which stream it.
    """
    _check(document)
    root = _document(document)
    if isinstance(document.body, NonXmlBody):
        text = root.find(f"{hl7('component')}/{hl7('nonXMLBody')}/{hl7('text')}")
        assert text is not None
        layout = _layout(document.body)
        if isinstance(layout, bytes):
            text.text = layout.decode("ascii")
        elif layout is not None:
            text.text = b"".join(layout.encode(document.body.data)).decode("ascii")
        else:
            text.text = binascii.b2a_base64(document.body.data, newline=False).decode("ascii")
    return root


def _layout(body: NonXmlBody) -> Base64Layout | bytes | None:
    """How an unchanged read PDF body's base64 was laid out; None for a new or changed body (one line)."""
    source = body._source
    if source is None or body.__dict__ != source.values:
        return None
    layout = source.extra
    return layout if isinstance(layout, Base64Layout | bytes) else None


def problems(document: ClinicalDocument) -> list[str]:
    """What :func:`build` refuses in ``document`` beyond the model's own rules; empty when it may be built.

    The INS key is not listed here: :func:`build` raises
    :class:`~dmp_connector.errors.InvalidIdentifierError` for it.
    """
    from .valuesets import (
        JDV_J01_XDS_AUTHOR_SPECIALTY,
        JDV_J02_XDS_HEALTHCARE_FACILITY_TYPE_CODE,
        JDV_J04_XDS_PRACTICE_SETTING_CODE,
        JDV_J07_XDS_TYPE_CODE,
    )

    found: list[str] = []
    if document.type_code not in JDV_J07_XDS_TYPE_CODE:
        found.append(f"type_code: {document.type_code.code} is not a document type of JDV_J07")
    for i, author in enumerate(document.authors):
        if author.entity.code is not None and author.entity.code not in JDV_J01_XDS_AUTHOR_SPECIALTY:
            found.append(f"authors[{i}].entity.code: {author.entity.code.code} is not in JDV_J01")
        _org_root(author.entity.organization, f"authors[{i}].entity.organization", found)
    _org_root(document.legal_authenticator.entity.organization, "legal_authenticator.entity.organization", found)
    main = document.service_events[0]
    if main.performer is None:
        found.append("service_events[0].performer: the main service event needs a performer")
    if main.effective_time is None or main.effective_time.low is None:
        found.append("service_events[0].effective_time.low: the main service event needs a start")
    if main.performer is not None:
        org = main.performer.entity.organization
        setting = org.industry_class if org is not None else None
        if setting is None:
            found.append(
                "service_events[0].performer: the practice setting (organization.industry_class, JDV_J04) is required"
            )
        elif setting not in JDV_J04_XDS_PRACTICE_SETTING_CODE:
            found.append(f"service_events[0].performer: practice setting {setting.code} is not in JDV_J04")
    facility = document.encounter.facility
    if (
        facility is not None
        and facility.code is not None
        and facility.code not in JDV_J02_XDS_HEALTHCARE_FACILITY_TYPE_CODE
    ):
        found.append(f"encounter.facility.code: {facility.code.code} is not in JDV_J02")
    if isinstance(document.body, NonXmlBody):
        roots = [t.root for t in document.template_ids]
        if len(roots) != 3 or set(roots) != _N1_TEMPLATES:
            found.append("template_ids: a PDF document carries exactly the HL7 France, CI-SIS and XDS-SD templateIds")
    for where, value in _times(document):
        if isinstance(value, datetime) and value.utcoffset() is None:
            found.append(f"{where}: a date-time without time zone")
    found.extend(_header_rules(document))
    return found


def _header_rules(document: ClinicalDocument) -> list[str]:
    """The CI-SIS header rules (StrucMin, ``1.2.250.1.213.1.1.1.1``) the model can check before writing.

    Each problem names the field, the rule and what to do; the kit's schematron says the
    same of the written document.
    """
    from .valuesets import (
        JDV_J47_FUNCTION_CODE,
        JDV_J141_ROLE_CLASS,
        JDV_J142_TYPE_RENCONTRE,
        JDV_J144_PARTICIPATION_TYPE,
        JDV_J245_CIVILITE,
        JDV_J246_TITRE,
    )

    found: list[str] = []

    def function(where: str, code: Code | None) -> None:
        if code is not None and code not in JDV_J47_FUNCTION_CODE:
            found.append(f"{where}.function_code: {code.code} is not in JDV_J47 (StrucMin functionCode)")

    def name(where: str, person: PersonName | None) -> None:
        if person is None:
            return
        if person.prefix is not None and not JDV_J245_CIVILITE.contains(person.prefix):
            found.append(f"{where}.prefix: not a civility of JDV_J245 (M, MME …) (StrucMin name/prefix)")
        if person.suffix is not None and not JDV_J246_TITRE.contains(person.suffix):
            found.append(f"{where}.suffix: not a title of JDV_J246 (DR, PR …) (StrucMin name/suffix)")

    for i, author in enumerate(document.authors):
        function(f"authors[{i}]", author.function_code)
        name(f"authors[{i}].entity.person", author.entity.person)
    name("legal_authenticator.entity.person", document.legal_authenticator.entity.person)
    for i, recipient in enumerate(document.information_recipients):
        name(f"information_recipients[{i}].person", recipient.person)
    for i, participant in enumerate(document.participants):
        where = f"participants[{i}]"
        if participant.time is None:
            found.append(
                f"{where}.time: a participant's time is required (StrucMin participant/time 1..1); "
                "give Period.unknown() when it is not known"
            )
        if not JDV_J144_PARTICIPATION_TYPE.contains(participant.type_code):
            found.append(f"{where}.type_code: {participant.type_code} is not in JDV_J144 (StrucMin participant)")
        if not JDV_J141_ROLE_CLASS.contains(participant.entity.class_code):
            found.append(f"{where}.entity.class_code: {participant.entity.class_code} is not in JDV_J141 (StrucMin)")
        if len(participant.template_ids) > 1:
            found.append(f"{where}.template_ids: at most one templateId (StrucMin participant)")
        function(where, participant.function_code)
        name(f"{where}.entity.person", participant.entity.person)
    for i, event in enumerate(document.service_events):
        if event.performer is not None:
            function(f"service_events[{i}].performer", event.performer.function_code)
            name(f"service_events[{i}].performer.entity.person", event.performer.entity.person)
    code = document.encounter.code
    if code is not None and code not in JDV_J142_TYPE_RENCONTRE:
        found.append(f"encounter.code: {code.code} is not in JDV_J142 (StrucMin encompassingEncounter/code)")
    return found


# --------------------------------------------------------------------------- checks


def _check(document: ClinicalDocument) -> None:
    if document.patient.identity.ins is not None:
        document.patient.identity.require_qualified("a CDA document")
    found = problems(document)
    if found:
        raise ValidationError("the document cannot be built: " + "; ".join(found), problems=found)


def _org_root(org: Organization | None, where: str, found: list[str]) -> None:
    if org is not None and org.id is not None and org.id.root != IDNAT_STRUCT:
        found.append(f"{where}.id: the root of an organisation's id is {IDNAT_STRUCT} (IdNat_Struct)")


def _times(document: ClinicalDocument) -> Iterable[tuple[str, datetime | date | None]]:
    def period(where: str, p: Period | None) -> Iterable[tuple[str, datetime | date | None]]:
        if p is not None:
            yield f"{where}.low", p.low
            yield f"{where}.high", p.high
            yield f"{where}.value", p.value

    yield "effective_time", document.effective_time
    for i, author in enumerate(document.authors):
        yield f"authors[{i}].time", author.time
    yield "legal_authenticator.time", document.legal_authenticator.time
    for i, event in enumerate(document.service_events):
        yield from period(f"service_events[{i}].effective_time", event.effective_time)
        if event.performer is not None:
            yield from period(f"service_events[{i}].performer.time", event.performer.time)
    yield from period("encounter.effective_time", document.encounter.effective_time)
    for i, participant in enumerate(document.participants):
        yield from period(f"participants[{i}].time", participant.time)


# --------------------------------------------------------------------------- read models written back


def _emit(model: _Model, tag: str, render: Callable[[], etree._Element]) -> etree._Element:
    """``model``'s element: as read when unchanged, as read with the changed parts anew, or fresh.

    A model built by the caller has no source and is rendered fresh. A read one is written
    from the element it was read from (see ``_source.py`` and ``_patch.py``), so that what
    the model does not type survives; a patched element that does not read back as the
    model (a part table missing a field) gives way to the fresh rendering.
    """
    source = model._source
    if source is None:
        return render()
    fields = model.__dict__
    if fields == source.values:
        return kept(source.element, tag)
    fresh = render()
    if type(model) not in PARTS:
        return fresh
    patched = patch(source.element, fresh, changed_parts(type(model), fields, source.values))
    patched.tag = hl7(tag)
    reader = _readers().get(type(model))
    if reader is not None and not _reads_as(reader, patched, model):
        _log.debug("a changed %s did not read back over its element; written anew", type(model).__name__)
        return fresh
    return patched


def _reads_as(reader: Callable[[etree._Element], object], element: etree._Element, model: _Model) -> bool:
    try:
        with _reading():
            return reader(element) == model
    except (ValidationError, pydantic.ValidationError):
        return False


@functools.cache
def _readers() -> dict[type, Callable[[etree._Element], object]]:
    # The parse module's readers, one per model with a part table (``cda.parse`` is also a function's name).
    from .parse import (
        _assigned,
        _associated,
        _author,
        _encounter,
        _facility,
        _legal,
        _organization,
        _participant,
        _patient,
        _performer,
        _recipient,
        _section,
        _service_event,
        _structured,
    )

    return {
        Patient: _patient,
        Author: _author,
        LegalAuthenticator: _legal,
        AssignedEntity: _assigned,
        Organization: _organization,
        Performer: _performer,
        ServiceEvent: _service_event,
        Encounter: _encounter,
        HealthCareFacility: _facility,
        Participant: _participant,
        AssociatedEntity: _associated,
        InformationRecipient: _recipient,
        Section: _section,
        StructuredBody: _structured,
    }


# --------------------------------------------------------------------------- header


def _document(doc: ClinicalDocument) -> etree._Element:
    root = _emit(doc, "ClinicalDocument", lambda: _document_element(doc))
    source = doc._source
    if source is not None and isinstance(source.extra, tuple):
        before, after = source.extra
        for node in before:
            root.addprevious(copy.copy(node))
        for node in reversed(after):
            root.addnext(copy.copy(node))
    return root


def _document_element(doc: ClinicalDocument) -> etree._Element:
    root = new_root("ClinicalDocument", dict(NSMAP))
    _sub(root, "realmCode", code="FR")
    _sub(root, "typeId", root=_TYPE_ID_ROOT, extension=_TYPE_ID_EXTENSION)
    for template in doc.template_ids:
        _ii(root, "templateId", template)
    _ii(root, "id", doc.id)
    _code(root, "code", doc.type_code)
    _sub(root, "title").text = doc.title
    _ts(root, "effectiveTime", doc.effective_time)
    _code(root, "confidentialityCode", doc.confidentiality)
    _sub(root, "languageCode", code=doc.language)
    _ii(root, "setId", doc.set_id or doc.id)
    _sub(root, "versionNumber", value=str(doc.version))
    _sub(root, "recordTarget").append(_emit(doc.patient, "patientRole", lambda: _patient(doc.patient)))
    for author in doc.authors:
        root.append(_emit(author, "author", partial(_author, author)))
    custodian = _sub(_sub(root, "custodian"), "assignedCustodian")
    custodian.append(
        _emit(
            doc.custodian,
            "representedCustodianOrganization",
            partial(_organization, doc.custodian, "representedCustodianOrganization", custodian=True),
        )
    )
    for recipient in doc.information_recipients:
        root.append(_emit(recipient, "informationRecipient", partial(_recipient, recipient)))
    legal = doc.legal_authenticator
    root.append(_emit(legal, "legalAuthenticator", partial(_legal_authenticator, legal)))
    for participant in doc.participants:
        root.append(_emit(participant, "participant", partial(_participant, participant)))
    for event in doc.service_events:
        _sub(root, "documentationOf").append(_emit(event, "serviceEvent", partial(_service_event, event)))
    if doc.replaces is not None:
        related = _sub(root, "relatedDocument", typeCode="RPLC")
        _ii(_sub(related, "parentDocument"), "id", doc.replaces)
    encounter = doc.encounter
    _sub(root, "componentOf").append(_emit(encounter, "encompassingEncounter", partial(_encounter, encounter)))
    root.append(_emit(doc.body, "component", partial(_body, doc.body)))
    _place(root, doc.other_header, _DOCUMENT_ORDER)
    return root


def _body(body: StructuredBody | NonXmlBody) -> etree._Element:
    component = _element("component")
    if isinstance(body, NonXmlBody):
        _sub(_sub(component, "nonXMLBody"), "text", mediaType=body.media_type, representation="B64")
    else:
        structured = _sub(component, "structuredBody")
        for section in body.sections:
            _sub(structured, "component").append(_emit(section, "section", partial(_section, section)))
    return component


def _patient(patient: Patient) -> etree._Element:
    role = _element("patientRole", classCode="PAT")
    identity = patient.identity
    if identity.ins is not None:
        root, extension = identity.ins.to_cda_id()
        _sub(role, "id", root=root, extension=extension)
    for other in patient.other_ids:
        _ii(role, "id", other)
    _addresses(role, patient.addresses)
    _telecoms(role, patient.telecoms)
    person = _sub(role, "patient", classCode="PSN")
    _patient_name(_sub(person, "name"), identity, patient)
    code, display = _GENDER[identity.traits.sex]
    _sub(person, "administrativeGenderCode", code=code, codeSystem=GENDER_SYSTEM, displayName=display)
    _sub(person, "birthTime", value=identity.traits.birth_date.cda())
    if identity.traits.birth_place is not None or patient.birth_place_name is not None:
        addr = _sub(_sub(_sub(person, "birthplace"), "place"), "addr")
        if identity.traits.birth_place is not None:
            _sub(addr, "county").text = identity.traits.birth_place
        if patient.birth_place_name is not None:
            _sub(addr, "city").text = patient.birth_place_name
    _place(person, patient.extras, _PATIENT_ORDER)
    _place(role, patient.role_extras, _PATIENT_ROLE_ORDER)
    return role


def _patient_name(name: etree._Element, identity: Identity, patient: Patient) -> None:
    """The kit's pattern: birth name and first names (BR), then used name and first name (CL).

    ``<family qualifier="BR">PAT-TROIS</family><given>DOMINIQUE MARIE-LOUISE</given>``
    ``<given qualifier="BR">DOMINIQUE</given><family qualifier="CL">…</family><given qualifier="CL">…</given>``
    """
    traits = identity.traits
    if patient.name_prefix is not None:
        _sub(name, "prefix").text = patient.name_prefix
    _sub(name, "family", qualifier="BR").text = traits.birth_name
    _sub(name, "given").text = traits.first_names_text
    _sub(name, "given", qualifier="BR").text = traits.first_first_name
    if patient.usage_name is not None:
        _sub(name, "family", qualifier="SP").text = patient.usage_name
    if traits.used_name is not None:
        _sub(name, "family", qualifier="CL").text = traits.used_name
    if traits.used_first_name is not None:
        _sub(name, "given", qualifier="CL").text = traits.used_first_name


def _author(author: Author) -> etree._Element:
    element = _element("author")
    if author.function_code is not None:
        _code(element, "functionCode", author.function_code)
    _ts(element, "time", author.time)
    element.append(_assigned(author.entity, "assignedAuthor"))
    return element


def _legal_authenticator(legal: LegalAuthenticator) -> etree._Element:
    element = _element("legalAuthenticator")
    _ts(element, "time", legal.time)
    _sub(element, "signatureCode", code="S")
    element.append(_assigned(legal.entity, "assignedEntity"))
    return element


def _assigned(entity: AssignedEntity, tag: str) -> etree._Element:
    return _emit(entity, tag, partial(_assigned_element, entity, tag))


def _assigned_element(entity: AssignedEntity, tag: str) -> etree._Element:
    element = _element(tag)
    if entity.id is not None:
        _ii(element, "id", entity.id)
    else:
        _sub(element, "id", nullFlavor="UNK")
    if entity.code is not None:
        _code(element, "code", entity.code)
    _addresses(element, entity.addresses)
    _telecoms(element, entity.telecoms)
    if entity.person is not None:
        _person_name(_sub(_sub(element, "assignedPerson"), "name"), entity.person)
    if entity.device is not None:
        device = _sub(element, "assignedAuthoringDevice")
        if entity.device.manufacturer_model_name is not None:
            _sub(device, "manufacturerModelName").text = entity.device.manufacturer_model_name
        if entity.device.software_name is not None:
            _sub(device, "softwareName").text = entity.device.software_name
    if entity.organization is not None:
        org = entity.organization
        element.append(_emit(org, "representedOrganization", partial(_organization, org, "representedOrganization")))
    return element


def _organization(org: Organization, tag: str, *, custodian: bool = False) -> etree._Element:
    element = _element(tag)
    if org.id is not None:
        _ii(element, "id", org.id)
    if org.name is not None:
        _sub(element, "name").text = org.name
    _telecoms(element, org.telecoms)
    _addresses(element, org.addresses)
    if org.industry_class is not None and not custodian:
        _code(element, "standardIndustryClassCode", org.industry_class)
    return element


def _service_event(event: ServiceEvent) -> etree._Element:
    element = _element("serviceEvent", classCode=event.class_code)
    for ident in event.ids:
        _ii(element, "id", ident)
    if event.code is not None:
        _code(element, "code", event.code)
        code = element[-1]
        for translation in event.code_translations:
            code.append(translation.to_element())
    if event.effective_time is not None:
        _period(element, "effectiveTime", event.effective_time)
    if event.performer is not None:
        performer = event.performer
        element.append(_emit(performer, "performer", partial(_performer, performer)))
    _place(element, event.extras, _SERVICE_EVENT_ORDER)
    return element


def _performer(performer: Performer) -> etree._Element:
    element = _element("performer", typeCode="PRF")
    for template in performer.template_ids:
        _ii(element, "templateId", template)
    if performer.function_code is not None:
        _code(element, "functionCode", performer.function_code)
    if performer.time is not None:
        _period(element, "time", performer.time)
    element.append(_assigned(performer.entity, "assignedEntity"))
    return element


def _encounter(encounter: Encounter) -> etree._Element:
    element = _element("encompassingEncounter")
    for ident in encounter.ids:
        _ii(element, "id", ident)
    if encounter.code is not None:
        _code(element, "code", encounter.code)
    if encounter.effective_time is not None:
        _period(element, "effectiveTime", encounter.effective_time)
    else:
        _sub(element, "effectiveTime", nullFlavor="NA")  # None: as Period.unknown("NA"), which IPS-FR writes
    facility = encounter.facility
    if facility is not None:
        _sub(element, "location").append(_emit(facility, "healthCareFacility", partial(_facility, facility)))
    _place(element, encounter.extras, _ENCOUNTER_ORDER)
    return element


def _facility(facility: HealthCareFacility) -> etree._Element:
    hcf = _element("healthCareFacility")
    if facility.id is not None:
        _ii(hcf, "id", facility.id)
    if facility.code is not None:
        _code(hcf, "code", facility.code)
    if facility.place_name is not None or facility.place_address is not None:
        place = _sub(hcf, "location")
        if facility.place_name is not None:
            _sub(place, "name").text = facility.place_name
        if facility.place_address is not None:
            _addresses(place, (facility.place_address,))
    return hcf


def _participant(participant: Participant) -> etree._Element:
    element = _element("participant", typeCode=participant.type_code)
    for template in participant.template_ids:
        _ii(element, "templateId", template)
    if participant.function_code is not None:
        _code(element, "functionCode", participant.function_code)
    if participant.time is not None:
        _period(element, "time", participant.time, typed=True)
    entity = participant.entity
    element.append(_emit(entity, "associatedEntity", partial(_associated, entity)))
    return element


def _associated(entity: AssociatedEntity) -> etree._Element:
    element = _element("associatedEntity", classCode=entity.class_code)
    for ident in entity.ids:
        _ii(element, "id", ident)
    if entity.code is not None:
        _code(element, "code", entity.code)
    _addresses(element, entity.addresses)
    _telecoms(element, entity.telecoms)
    if entity.person is not None:
        _person_name(_sub(_sub(element, "associatedPerson"), "name"), entity.person)
    if entity.organization is not None:
        org = entity.organization
        element.append(_emit(org, "scopingOrganization", partial(_organization, org, "scopingOrganization")))
    return element


def _recipient(recipient: InformationRecipient) -> etree._Element:
    outer = _element("informationRecipient", typeCode=recipient.type_code)
    element = _sub(outer, "intendedRecipient")
    for ident in recipient.ids:
        _ii(element, "id", ident)
    _addresses(element, recipient.addresses)
    _telecoms(element, recipient.telecoms)
    if recipient.person is not None:
        _person_name(_sub(_sub(element, "informationRecipient"), "name"), recipient.person)
    if recipient.organization is not None:
        org = recipient.organization
        element.append(_emit(org, "receivedOrganization", partial(_organization, org, "receivedOrganization")))
    return outer


# --------------------------------------------------------------------------- body


def _section(section: Section) -> etree._Element:
    """``<section ID="…"><templateId/><id/><code/><title/><text/>…<entry/>…<component><section/></component>``"""
    element = _element("section")
    if section.xml_id is not None:
        element.set("ID", section.xml_id)
    for template in section.template_ids:
        _ii(element, "templateId", template)
    if section.id is not None:
        _ii(element, "id", section.id)
    if section.code is not None:
        _code(element, "code", section.code)
    if section.title is not None:
        _sub(element, "title").text = section.title
    if section.text is not None:
        element.append(section.text.to_element())
    for raw in section.extras:
        element.append(raw.to_element())
    for entry in section.entries:
        element.append(_entry(entry))
    for sub in section.subsections:
        _sub(element, "component").append(_emit(sub, "section", partial(_section, sub)))
    return element


def _entry(entry: Entry) -> etree._Element:
    if isinstance(entry, _Model) and entry._source is not None:
        entry_element = _emit(entry, "entry", entry.to_element)
    else:
        entry_element = entry.to_element()
    if entry_element.tag != hl7("entry"):
        raise ValidationError(
            f"an entry of type {type(entry).__name__} rendered <{entry_element.tag}>, not a CDA <entry>",
            problems=("section.entries",),
        )
    return entry_element


# --------------------------------------------------------------------------- data types


def _element(name: str, **attributes: str | None) -> etree._Element:
    """A new CDA element of its own, to be appended where it goes (lxml then uses the parent's namespaces)."""
    element = etree.Element(hl7(name), nsmap=_DEFAULT_NS)
    for key, value in attributes.items():
        if value is not None:
            element.set(key, value)
    return element


def _sub(parent: etree._Element, name: str, **attributes: str | None) -> etree._Element:
    element = etree.SubElement(parent, hl7(name))
    for key, value in attributes.items():
        if value is not None:
            element.set(key, value)
    return element


def _ii(parent: etree._Element, name: str, ident: InstanceId) -> None:
    _sub(parent, name, root=ident.root, extension=ident.extension)


def _code(parent: etree._Element, name: str, code: Code) -> None:
    _sub(parent, name, code=code.code, codeSystem=code.code_system, displayName=code.display_name)


def format_ts(value: datetime | date) -> str:
    """A CDA ``TS`` value: ``YYYYMMDDHHMMSS[.ffffff]+ZZZZ`` for a date-time, ``YYYYMMDD`` for a date."""
    if not isinstance(value, datetime):
        return value.strftime("%Y%m%d")
    text = value.strftime("%Y%m%d%H%M%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        hours, rest = divmod(abs(minutes), 60)
        text += f"{sign}{hours:02d}{rest:02d}"
    return text


def _ts(parent: etree._Element, name: str, value: datetime | date) -> None:
    _sub(parent, name, value=format_ts(value))


def _period(parent: etree._Element, name: str, period: Period, *, typed: bool = False) -> None:
    element = _sub(parent, name)
    if typed:
        element.set(f"{{{XSI}}}type", "IVL_TS")
    if period.null_flavor is not None:
        element.set("nullFlavor", period.null_flavor)
    if period.value is not None:
        element.set("value", format_ts(period.value))
    if period.low is not None:
        _ts(element, "low", period.low)
    if period.high is not None:
        _ts(element, "high", period.high)


def _person_name(element: etree._Element, name: PersonName) -> None:
    if name.prefix is not None:
        _sub(element, "prefix").text = name.prefix
    if name.given is not None:
        _sub(element, "given").text = name.given
    _sub(element, "family").text = name.family
    if name.suffix is not None:
        _sub(element, "suffix").text = name.suffix


def _addresses(parent: etree._Element, addresses: Sequence[Address]) -> None:
    for address in addresses:
        element = _sub(parent, "addr", use=address.use, nullFlavor=address.null_flavor)
        element.text = address.text
        for part in address.parts:
            _sub(element, part.kind.value).text = part.value


def _telecoms(parent: etree._Element, telecoms: Sequence[Telecom]) -> None:
    for telecom in telecoms:
        _sub(parent, "telecom", value=telecom.value, use=telecom.use, nullFlavor=telecom.null_flavor)


def _place(parent: etree._Element, raws: Sequence[RawElement], order: Sequence[str]) -> None:
    """Insert kept elements where the schema puts them: after the last child that may precede them."""
    rank = {name: i for i, name in enumerate(order)}
    for raw in raws:
        element = raw.to_element()
        mine = rank.get(raw.name, len(order))
        position = 0
        for i, child in enumerate(parent):
            name = etree.QName(child).localname if isinstance(child.tag, str) else ""
            if rank.get(name, len(order)) <= mine:
                position = i + 1
        parent.insert(position, element)


def _write_base64(data: bytes, stream: IO[bytes]) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _B64_SLICE):
        stream.write(binascii.b2a_base64(view[start : start + _B64_SLICE], newline=False))
