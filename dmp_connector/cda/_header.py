"""What :func:`~dmp_connector.cda.extract_metadata` needs of a CDA, read from its bytes without the typed model.

A deposit reads its document only for the XDS metadata (issue 22): building the whole
:class:`~dmp_connector.cda.model.ClinicalDocument` for that validated some forty pydantic models
(patient, authors, organisations, periods …) to use a dozen values. :func:`read_facts` reads those
values (:class:`Facts`) from the same tree, in the same reading mode, and checks on the way
everything the full reader (:func:`~dmp_connector.cda.parse._document`) would refuse in the header:

* the values that can be refused are made by the same functions (ids, codes, times, the INS, the
  patient's traits and identity), the rules of the models built around them are run on them
  (an author's id root, the period's order, the practice setting's and facility's code systems,
  the patient's INS rules, the document's own rules);
* the models that no value read can make fail (addresses, telecoms, names) are not built;
* the parts the metadata do not use and that are rare in a deposit (participants, recipients,
  untyped elements kept as XML, the body) are read by the full reader's own functions.

Whenever a step fails, or a case is not one it handles, the full reader reads the same tree and
decides: it raises its own error, or gives the model the facts are then taken from. So a refusal
is always the full reader's, and a document is never accepted that :func:`parse` refuses as long
as the checks here hold what the models check (tests/cda/test_header_facts.py compares the two on
the ANS kit and on mutations of it).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final, NamedTuple

from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits
from dmp_connector.xml import XmlLimits

from .model import (
    _INS_ROOTS,
    CISIS_TEMPLATE,
    CONFIDENTIALITY_SYSTEM,
    HL7_FRANCE_TEMPLATE,
    IDNAT_PS,
    IDNAT_STRUCT,
    LOINC,
    MON_ESPACE_SANTE_CUSTODIAN,
    NORMAL,
    OTHER_HEADER_ELEMENTS,
    TRE_A00_PRODUCTEUR_NON_PS,
    TRE_A01_CADRE_EXERCICE,
    TRE_R02_SECTEUR_ACTIVITE,
    TYPE_DOC_COMPLEMENTAIRE,
    XDS_SD_TEMPLATE,
    AssignedEntity,
    ClinicalDocument,
    InstanceId,
    NonXmlBody,
    _before,
)
from .parse import (
    _ENCOUNTER_TYPED,
    _EVENT_TYPED,
    _PATIENT_TYPED,
    _ROLE_TYPED,
    Base64Layout,
    _body,
    _child,
    _ChildIndex,
    _code,
    _document,
    _ii,
    _iis,
    _iis_of,
    _participant,
    _path,
    _patient_identity,
    _raw,
    _read,
    _recipient,
    _text,
    _ts,
    _untyped,
)

__all__ = ["Entity", "Facts", "facts_of", "read_facts"]

_Time = datetime | date


class Entity(NamedTuple):
    """What the metadata use of an ``assignedAuthor`` / ``assignedEntity``."""

    id: InstanceId | None
    code: Code | None
    person: tuple[str, str | None, str | None] | None
    """``assignedPerson/name``: family, given, prefix."""
    org_name: str | None
    org_id: InstanceId | None
    industry_class: Code | None
    telecoms: tuple[str, ...]
    """The telecom URLs (those without a value are left out)."""


class Facts(NamedTuple):
    """What :func:`~dmp_connector.cda.extract_metadata` reads of a document."""

    id: InstanceId
    type_code: Code
    title: str
    effective_time: _Time
    set_id: InstanceId | None
    version: int
    replaces: InstanceId | None
    confidentiality: Code
    language: str
    template_roots: tuple[str, ...]
    pdf_body: bool
    ins: INS | None
    qualified: bool
    other_ids: tuple[InstanceId, ...]
    traits: IdentityTraits
    authors: tuple[tuple[Entity, Code | None], ...]
    legal: Entity
    event_codes: tuple[Code, ...]
    setting: Code | None
    """The first service event's performer's organisation's standardIndustryClassCode."""
    service_start: _Time | None
    service_stop: _Time | None
    encounter_ids: tuple[InstanceId, ...]
    facility_code: Code | None


def facts_of(document: ClinicalDocument) -> Facts:
    """The facts of a model (built by the caller, or read by the full reader)."""
    main = document.service_events[0]
    period = main.effective_time
    org = main.performer.entity.organization if main.performer is not None else None
    identity = document.patient.identity
    return Facts(
        id=document.id,
        type_code=document.type_code,
        title=document.title,
        effective_time=document.effective_time,
        set_id=document.set_id,
        version=document.version,
        replaces=document.replaces,
        confidentiality=document.confidentiality,
        language=document.language,
        template_roots=tuple(t.root for t in document.template_ids),
        pdf_body=isinstance(document.body, NonXmlBody),
        ins=identity.ins,
        qualified=identity.status.value == "QUAL",
        other_ids=document.patient.other_ids,
        traits=identity.traits,
        authors=tuple((_entity_of(a.entity), a.function_code) for a in document.authors),
        legal=_entity_of(document.legal_authenticator.entity),
        event_codes=tuple(e.code for e in document.service_events if e.code is not None),
        setting=org.industry_class if org is not None else None,
        service_start=period.low if period is not None else None,
        service_stop=period.high if period is not None else None,
        encounter_ids=document.encounter.ids,
        facility_code=document.encounter.facility.code if document.encounter.facility is not None else None,
    )


def _entity_of(entity: AssignedEntity) -> Entity:
    name, org = entity.person, entity.organization
    return Entity(
        id=entity.id,
        code=entity.code,
        person=(name.family, name.given, name.prefix) if name is not None else None,
        org_name=org.name if org is not None else None,
        org_id=org.id if org is not None else None,
        industry_class=org.industry_class if org is not None else None,
        telecoms=tuple(t.value for t in entity.telecoms if t.value is not None),
    )


def read_facts(data: bytes, limits: XmlLimits) -> Facts:
    """The facts of the document in ``data``; refuses exactly what :func:`~dmp_connector.cda.parse` refuses."""
    return _read(data, limits, _facts, keep_layout=False)


class _Unsure(Exception):
    """A case the reader here leaves to the full reader (a refusal, or a shape it does not handle)."""


def _facts(doc: etree._Element, pdf: bytes | None, layout: Base64Layout | bytes | None) -> Facts:
    try:
        return _header(doc, pdf, layout)
    except Exception:  # any failure: the full reader decides, with its own error
        return facts_of(_document(doc, pdf, layout))


_LANGUAGE: Final = re.compile(r"^[a-z]{2}-[A-Z]{2}$")


def _header(doc: etree._Element, pdf: bytes | None, layout: Base64Layout | bytes | None) -> Facts:
    """:func:`~dmp_connector.cda.parse._document`'s reading and checks, keeping what the metadata use."""
    kids = _ChildIndex(doc)
    ident = _ii(kids.child("id"))
    type_code = _code(kids.child("code"))
    effective = _ts(kids.child("effectiveTime"))
    if ident is None or type_code is None or effective is None:
        raise _Unsure
    set_id = _ii(kids.child("setId"))
    version_element = kids.child("versionNumber")
    version_text = version_element.get("value") if version_element is not None else None
    version = int(version_text) if version_text and version_text.strip().isdigit() else 1
    replaces = None
    related = kids.child("relatedDocument")
    if related is not None:
        if related.get("typeCode") != "RPLC":
            raise _Unsure
        parent = _child(related, "parentDocument")
        replaces = _ii(_child(parent, "id")) if parent is not None else None
    custodian = next(_path(kids.children("custodian"), "assignedCustodian", "representedCustodianOrganization"), None)
    legal_element = kids.child("legalAuthenticator")
    encounter = next(_path(kids.children("componentOf"), "encompassingEncounter"), None)
    record_target = kids.child("recordTarget")
    if custodian is None or encounter is None or legal_element is None or record_target is None:
        raise _Unsure
    confidentiality = _code(kids.child("confidentialityCode"))
    if confidentiality is None:
        confidentiality = NORMAL
    language_element = kids.child("languageCode")
    language = (language_element.get("code") if language_element is not None else None) or "fr-FR"
    title = _text(kids.child("title"))
    if not title or version < 1:
        raise _Unsure
    templates = _iis_of(kids.children("templateId"))
    role = _child(record_target, "patientRole")
    if role is None:
        raise _Unsure
    ins, others, traits = _patient(role)
    authors = tuple(_author(a) for a in kids.children("author"))
    custodian_id = _organization(custodian)[1]
    legal = _legal(legal_element)
    for participant in kids.children("participant"):
        _participant(participant)
    for recipient in kids.children("informationRecipient"):
        _recipient(recipient)
    events = [_service_event(e) for e in _path(kids.children("documentationOf"), "serviceEvent")]
    encounter_ids, facility_code = _encounter(encounter)
    pdf_body = isinstance(_body(doc, pdf, layout), NonXmlBody)
    _raw(kids.local_named(OTHER_HEADER_ELEMENTS))  # each kept element's local name is one of those: never refused
    if not authors or not events:
        raise _Unsure
    # ClinicalDocument: its default templateIds, then its rules (_defaults, _rules).
    roots = tuple(t.root for t in templates)
    if not roots:
        roots = (HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, *((XDS_SD_TEMPLATE,) if pdf_body else ()))
    if (
        type_code.code_system not in (LOINC, TYPE_DOC_COMPLEMENTAIRE)
        or type_code.display_name is None
        or confidentiality.code_system != CONFIDENTIALITY_SYSTEM
        or confidentiality.code not in "NRV"
        or not _LANGUAGE.match(language)
        or roots.count(HL7_FRANCE_TEMPLATE) != 1
        or roots.count(CISIS_TEMPLATE) != 1
        or (pdf_body and XDS_SD_TEMPLATE not in roots)
        or (custodian_id.root if custodian_id is not None else None) not in (IDNAT_STRUCT, MON_ESPACE_SANTE_CUSTODIAN)
    ):
        raise _Unsure
    _, period, setting = events[0]
    return Facts(
        id=ident,
        type_code=type_code,
        title=title,
        effective_time=effective,
        set_id=set_id if set_id is not None else ident,
        version=version,
        replaces=replaces,
        confidentiality=confidentiality,
        language=language,
        template_roots=roots,
        pdf_body=pdf_body,
        ins=ins,
        qualified=ins is not None,
        other_ids=others,
        traits=traits,
        authors=authors,
        legal=legal,
        event_codes=tuple(code for code, _, _ in events if code is not None),
        setting=setting,
        service_start=period[0] if period is not None else None,
        service_stop=period[1] if period is not None else None,
        encounter_ids=encounter_ids,
        facility_code=facility_code,
    )


def _patient(role: etree._Element) -> tuple[INS | None, tuple[InstanceId, ...], IdentityTraits]:
    """``parse._patient`` without the :class:`Patient` model (its addresses and telecoms are never refused)."""
    ins, others, traits, _, _, role_kids, person_kids = _patient_identity(role)
    Identity(traits=traits, ins=ins, status=IdentityStatus.QUAL if ins is not None else IdentityStatus.PROV)
    extras = _untyped(person_kids, _PATIENT_TYPED)
    if extras:
        _raw(extras)
    role_extras = _untyped(role_kids, _ROLE_TYPED)
    if role_extras:
        _raw(role_extras)
    # Patient._ins_rules (the status is QUAL exactly when there is an INS).
    if ins is None:
        if not others:
            raise _Unsure
    elif traits.birth_place is None or any(i.root in _INS_ROOTS for i in others):
        raise _Unsure
    return ins, tuple(others), traits


def _organization(element: etree._Element | None) -> tuple[str | None, InstanceId | None, Code | None]:
    """``parse._organization``'s name, id and standardIndustryClassCode (its telecoms and addresses are never
    refused); three Nones for no organisation."""
    if element is None:
        return None, None, None
    kids = _ChildIndex(element)
    return _text(kids.child("name")), _ii(kids.child("id")), _code(kids.child("standardIndustryClassCode"))


def _assigned(element: etree._Element) -> Entity:
    """``parse._assigned`` (an AssignedEntity: a person and a device are refused together)."""
    kids = _ChildIndex(element)
    ident = _ii(kids.child("id"))
    code = _code(kids.child("code"))
    person = None
    person_element = kids.child("assignedPerson")
    name = _child(person_element, "name") if person_element is not None else None
    if name is not None:
        name_kids = _ChildIndex(name)
        family = _text(name_kids.child("family"))
        if family is not None:
            person = (family, _text(name_kids.child("given")), _text(name_kids.child("prefix")))
    if person is not None and kids.child("assignedAuthoringDevice") is not None:
        raise _Unsure
    org_name, org_id, industry_class = _organization(kids.child("representedOrganization"))
    telecoms = tuple(value for t in kids.children("telecom") if (value := t.get("value")))
    return Entity(ident, code, person, org_name, org_id, industry_class, telecoms)


def _author(element: etree._Element) -> tuple[Entity, Code | None]:
    kids = _ChildIndex(element)
    time = _ts(kids.child("time"))
    entity_element = kids.child("assignedAuthor")
    if time is None or entity_element is None:
        raise _Unsure
    entity = _assigned(entity_element)
    root = entity.id.root if entity.id is not None else "none"
    if root != IDNAT_PS and root not in _INS_ROOTS:
        raise _Unsure
    return entity, _code(kids.child("functionCode"))


def _legal(element: etree._Element) -> Entity:
    kids = _ChildIndex(element)
    time = _ts(kids.child("time"))
    entity_element = kids.child("assignedEntity")
    if time is None or entity_element is None:
        raise _Unsure
    entity = _assigned(entity_element)
    if entity.person is None:
        raise _Unsure
    return entity


def _period(element: etree._Element | None) -> tuple[_Time | None, _Time | None] | None:
    """``parse._period``'s low and high (None for no period); a period that ends before it starts is refused."""
    if element is None:
        return None
    kids = _ChildIndex(element)
    low, high, value = _ts(kids.child("low")), _ts(kids.child("high")), _ts(element)
    if low is None and high is None and value is None and not element.get("nullFlavor"):
        return None
    if low is not None and high is not None and _before(low, high):
        raise _Unsure
    return low, high


def _service_event(
    element: etree._Element,
) -> tuple[Code | None, tuple[_Time | None, _Time | None] | None, Code | None]:
    """``parse._service_event``: its code, its period and its performer's practice setting."""
    kids = _ChildIndex(element)
    performers = kids.children("performer")
    setting = _performer(performers[0]) if performers else None
    extras = [e for e in _untyped(kids, _EVENT_TYPED) if e not in performers[:1]]
    code_element = kids.child("code")
    _iis(kids, kept=False)
    code = _code(code_element)
    if code_element is not None and code:
        _raw(code_element.iterchildren(_TRANSLATION))
    period = _period(kids.child("effectiveTime"))
    if extras:
        _raw(extras)
    return code, period, setting


_TRANSLATION: Final = "{urn:hl7-org:v3}translation"


def _performer(element: etree._Element) -> Code | None:
    kids = _ChildIndex(element)
    _iis(kids, "templateId")
    _code(kids.child("functionCode"))
    _period(kids.child("time"))
    entity_element = kids.child("assignedEntity")
    if entity_element is None:
        raise _Unsure
    setting = _assigned(entity_element).industry_class
    if setting is not None and setting.code_system not in (TRE_A01_CADRE_EXERCICE, TRE_A00_PRODUCTEUR_NON_PS):
        raise _Unsure
    return setting


def _encounter(element: etree._Element) -> tuple[tuple[InstanceId, ...], Code | None]:
    """``parse._encounter``: its ids and its facility's type code."""
    kids = _ChildIndex(element)
    _period(kids.child("effectiveTime"))
    facility = element.find("{urn:hl7-org:v3}location/{urn:hl7-org:v3}healthCareFacility")
    ids = _iis(kids, kept=False)
    _code(kids.child("code"))
    facility_code = None
    if facility is not None:
        facility_kids = _ChildIndex(facility)
        _ii(facility_kids.child("id"))
        facility_code = _code(facility_kids.child("code"))
        if facility_code is not None and facility_code.code_system not in (
            TRE_R02_SECTEUR_ACTIVITE,
            TRE_A00_PRODUCTEUR_NON_PS,
        ):
            raise _Unsure
    extras = _untyped(kids, _ENCOUNTER_TYPED)
    if extras:
        _raw(extras)
    return ids, facility_code
