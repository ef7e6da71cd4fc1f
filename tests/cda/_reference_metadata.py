"""The former ``extract_metadata`` of bytes (before issue 22's header reader): the whole typed model read by
``parse._parse``, then the metadata picked out of it. Kept as the reference the new path is compared with."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence

from dmp_connector.cda.metadata import (
    _INS_SYSTEM_PREFIX,
    FORMAT_OF_TEMPLATE,
    PDF_FORMAT,
    DocumentMetadata,
    XdsAuthor,
    XdsPerson,
    _joined,
    _self_presenting,
    _unique_id,
    _utc,
    class_code_for,
)
from dmp_connector.cda.model import AssignedEntity, ClinicalDocument, NonXmlBody, Organization
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Sex
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits

_parse_module = sys.modules["dmp_connector.cda.parse"]


def reference_extract_metadata(
    data: bytes,
    *,
    confidentiality: Sequence[Code] = (),
    class_code: Code | None = None,
    format_code: Code | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> DocumentMetadata:
    """``extract_metadata(data)`` as it was: the model first."""
    data = bytes(data)
    document: ClinicalDocument = _parse_module._parse(data, limits, keep_layout=False)
    problems: list[str] = []
    ins = document.patient.identity.ins
    patient_id = ins.to_xds_cx() if ins is not None and document.patient.identity.status.value == "QUAL" else None
    if patient_id is None:
        problems.append("patient_id: the document carries no INS of a qualified identity")
    if class_code is None:
        try:
            class_code = class_code_for(document.type_code)
        except ValidationError as exc:
            problems.append(exc.message)
    if format_code is None:
        format_code = _format_code(document)
        if format_code is None:
            problems.append("format_code: no volet templateId of the document is in ASS_A11; pass format_code=")
    main = document.service_events[0]
    setting = _practice_setting(main.performer.entity.organization if main.performer is not None else None)
    if setting is None:
        problems.append("practice_setting_code: the main service event's performer has no standardIndustryClassCode")
    facility = document.encounter.facility.code if document.encounter.facility is not None else None
    if facility is None:
        problems.append("healthcare_facility_type_code: the encounter has no healthCareFacility/code")
    unique_id = _unique_id(document.id, "unique_id", problems)
    if problems:
        raise ValidationError("the document lacks XDS metadata: " + "; ".join(problems), problems=problems)
    assert class_code and format_code and setting and facility and patient_id and unique_id
    period = main.effective_time
    return DocumentMetadata(
        unique_id=unique_id,
        class_code=class_code,
        type_code=document.type_code,
        format_code=format_code,
        practice_setting_code=setting,
        healthcare_facility_type_code=facility,
        confidentiality_codes=(document.confidentiality, *confidentiality),
        event_codes=tuple(e.code for e in document.service_events if e.code is not None),
        authors=tuple(_author(a.entity, a.function_code) for a in document.authors),
        legal_authenticator=_person(document.legal_authenticator.entity),
        patient_id=patient_id,
        source_patient_id=_source_patient_id(document, patient_id),
        source_patient_info=_source_patient_info(document),
        creation_time=_utc(document.effective_time),
        service_start_time=_utc(period.low) if period is not None and period.low is not None else None,
        service_stop_time=_utc(period.high) if period is not None and period.high is not None else None,
        title=document.title,
        language_code=document.language,
        mime_type="application/xslt+xml" if _self_presenting(data) else "text/xml",
        hash=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        size=len(data),
        reference_id_list=tuple(
            f"{i.extension}^^^&{i.root}&ISO^urn:ihe:iti:xds:2013:encounterId"
            for i in document.encounter.ids
            if i.extension
        ),
        replaced_unique_id=_unique_id(document.replaces, "replaced_unique_id", []) if document.replaces else None,
        set_id=_joined(document.set_id or document.id),
        version=document.version,
    )


def _format_code(document: ClinicalDocument) -> Code | None:
    if isinstance(document.body, NonXmlBody):
        return PDF_FORMAT
    for template in document.template_ids:
        found = FORMAT_OF_TEMPLATE.get(template.root)
        if found is not None:
            return found
    return None


def _practice_setting(org: Organization | None) -> Code | None:
    return org.industry_class if org is not None else None


def _person(entity: AssignedEntity) -> XdsPerson:
    name = entity.person
    return XdsPerson(
        id=entity.id,
        family_name=name.family if name is not None else None,
        given_name=name.given if name is not None else None,
        prefix=name.prefix if name is not None else None,
    )


def _author(entity: AssignedEntity, function_code: Code | None) -> XdsAuthor:
    org = entity.organization
    return XdsAuthor(
        person=_person(entity) if entity.person is not None or entity.id is not None else None,
        institution_name=org.name if org is not None else None,
        institution_id=org.id if org is not None else None,
        role=function_code,
        specialty=entity.code,
        telecoms=tuple(t.value for t in entity.telecoms if t.value is not None),
    )


def _source_patient_id(document: ClinicalDocument, patient_id: str) -> str:
    local = next(
        (i for i in document.patient.other_ids if i.extension and not i.root.startswith(_INS_SYSTEM_PREFIX)), None
    )
    if local is None:
        return patient_id
    return f"{local.extension}^^^&{local.root}&ISO^PI"


def _source_patient_info(document: ClinicalDocument) -> tuple[str, ...]:
    traits = document.patient.identity.traits
    sex = {Sex.M: "M", Sex.F: "F", Sex.I: "U"}[traits.sex]
    return (
        f"PID-5|{traits.birth_name}^{traits.first_first_name}^^^^^L",
        f"PID-7|{traits.birth_date.cda()}",
        f"PID-8|{sex}",
    )
