"""A DMP entry (the XDS DocumentEntry an ITI-18 read returns) seen as a FHIR R4 DocumentReference.

The mapping is IHE MHD's (XDS ↔ FHIR), read-only::

    uniqueId                      masterIdentifier (urn:oid:… for an OID, root^extension split)
    entryUUID                     identifier (system urn:ietf:rfc:3986, use official)
    availabilityStatus            status (Approved current, Deprecated superseded)
    typeCode / classCode          type / category
    confidentialityCode           securityLabel
    formatCode, mimeType          content.format, content.attachment.contentType
    creationTime                  content.attachment.creation, and date when given to the second (MHD gives
                                  date no XDS source; FHIR DSTU2's XDS profile used creationTime for it)
    hash, size, title, language   content.attachment.hash (base64 of the SHA-1), size, title, language
    author                        author (contained Practitioner / Organization)
    legalAuthenticator            authenticator (contained Practitioner)
    serviceStart/StopTime         context.period
    healthcareFacilityTypeCode    context.facilityType
    practiceSettingCode           context.practiceSetting
    eventCodeList                 context.event
    patientId                     subject: identifier = the INS (system urn:oid:<OID>)
    comments                      description

The entry's patient is checked against the patient asked before anything is written:
another INS is a :class:`~dmp_connector.errors.PatientMismatchError`.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from dmp_connector.errors import PatientMismatchError
from dmp_connector.ins import INS, Identity
from dmp_connector.xds import AnyCode, Author, AvailabilityStatus, Cx, DocumentEntry, TimePrecision, Xcn, XdsTime, Xon

from ._library import check_resource
from .patient import FhirMappingError

__all__ = ["document_reference"]

_OID = re.compile(r"^[0-2](?:\.(?:0|[1-9]\d*))+$")
_STATUS = {AvailabilityStatus.APPROVED.value: "current", AvailabilityStatus.DEPRECATED.value: "superseded"}


def document_reference(entry: DocumentEntry, patient: Identity | INS | Cx) -> dict[str, Any]:
    """The DocumentReference (JSON as a dict) for ``entry``, once its patient is checked to be ``patient``.

    ``patient`` is the identity asked (its INS; :class:`IdentityNotQualifiedError` unless it is QUAL),
    the INS itself, or — outside the DMP, in another XDS affinity domain — the patient id asked as a
    :class:`~dmp_connector.xds.Cx`. An entry with no
    patient id, or another patient's, raises :class:`PatientMismatchError` naming no value.
    """
    if isinstance(patient, Cx):
        subject_id, authority = patient.id, patient.assigning_authority
        same = entry.patient_id is not None and (entry.patient_id.id, entry.patient_id.assigning_authority) == (
            subject_id,
            authority,
        )
    else:
        # The INS is written as the subject: only a qualified identity may carry it.
        ins: INS | None = (
            patient.require_qualified("a DocumentReference subject") if isinstance(patient, Identity) else patient
        )
        if ins is None:
            raise PatientMismatchError(
                "the patient asked has no INS to check the entry against", service="DMP", operation="DocumentReference"
            )
        subject_id, authority = ins.matricule, ins.oid.value
        same = entry.patient_id is not None and ins.matches(entry.patient_id)
    if not same:
        raise PatientMismatchError(
            "the DMP entry is not the patient asked's",
            service="DMP",
            operation="DocumentReference",
            problems=("the entry's patientId is not the patient asked",),
        )
    resource: dict[str, Any] = {"resourceType": "DocumentReference"}
    contained: list[dict[str, Any]] = []
    resource["masterIdentifier"] = _unique_id(entry.unique_id)
    resource["identifier"] = [{"use": "official", "system": "urn:ietf:rfc:3986", "value": _urn(entry.entry_uuid)}]
    status = _STATUS.get(str(entry.availability_status)) if entry.availability_status is not None else None
    if status is None:
        raise FhirMappingError(
            "the entry's availabilityStatus is neither Approved nor Deprecated: a DocumentReference needs one",
            hint="view entries as the registry returned them (ITI-18)",
        )
    resource["status"] = status
    if entry.type_code is not None:
        resource["type"] = _concept(entry.type_code)
    if entry.class_code is not None:
        resource["category"] = [_concept(entry.class_code)]
    resource["subject"] = {"identifier": {"system": f"urn:oid:{authority}", "value": subject_id}}
    if entry.creation_time is not None and entry.creation_time.precision >= TimePrecision.SECOND:
        resource["date"] = _instant(entry.creation_time)
    authors = []
    for index, author in enumerate(entry.authors):
        for ref in _author(author, index, contained):
            authors.append(ref)
    if authors:
        resource["author"] = authors
    if entry.legal_authenticator is not None:
        contained.append(_practitioner(entry.legal_authenticator, "legal-authenticator"))
        resource["authenticator"] = {"reference": "#legal-authenticator"}
    if entry.comments:
        resource["description"] = entry.comments
    if entry.confidentiality_codes:
        resource["securityLabel"] = [_concept(code) for code in entry.confidentiality_codes]
    attachment: dict[str, Any] = {"contentType": entry.mime_type}
    if entry.language_code:
        attachment["language"] = entry.language_code
    if entry.size is not None:
        attachment["size"] = entry.size
    if entry.hash is not None:
        attachment["hash"] = base64.b64encode(bytes.fromhex(entry.hash)).decode("ascii")
    if entry.title:
        attachment["title"] = entry.title
    if entry.creation_time is not None:
        attachment["creation"] = _date_time(entry.creation_time)
    content: dict[str, Any] = {"attachment": attachment}
    if entry.format_code is not None:
        content["format"] = _coding(entry.format_code)
    resource["content"] = [content]
    context: dict[str, Any] = {}
    if entry.event_codes:
        context["event"] = [_concept(code) for code in entry.event_codes]
    period = {}
    if entry.service_start_time is not None:
        period["start"] = _date_time(entry.service_start_time)
    if entry.service_stop_time is not None:
        period["end"] = _date_time(entry.service_stop_time)
    if period:
        context["period"] = period
    if entry.healthcare_facility_type_code is not None:
        context["facilityType"] = _concept(entry.healthcare_facility_type_code)
    if entry.practice_setting_code is not None:
        context["practiceSetting"] = _concept(entry.practice_setting_code)
    if context:
        resource["context"] = context
    if contained:
        resource = {"resourceType": "DocumentReference", "contained": contained, **resource}
    check_resource(resource, "DocumentReference")
    return resource


def _urn(value: str) -> str:
    return value if value.startswith("urn:") else f"urn:uuid:{value}"


def _unique_id(unique_id: str) -> dict[str, Any]:
    if _OID.match(unique_id):
        return {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{unique_id}"}
    root, caret, extension = unique_id.partition("^")
    if caret and _OID.match(root) and extension:
        return {"system": f"urn:oid:{root}", "value": extension}
    return {"value": unique_id}


def _system(code_system: str) -> str:
    return f"urn:oid:{code_system}" if _OID.match(code_system) else code_system


def _coding(code: AnyCode) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": _system(code.code_system), "code": code.code}
    if code.display_name:
        coding["display"] = code.display_name
    return coding


def _concept(code: AnyCode) -> dict[str, Any]:
    return {"coding": [_coding(code)]}


def _date_time(time: XdsTime) -> str:
    """FHIR dateTime at the precision XDS gave (year, month, day, or a full UTC time)."""
    moment = time.moment
    if time.precision <= 4:
        return f"{moment.year:04d}"
    if time.precision <= 6:
        return f"{moment.year:04d}-{moment.month:02d}"
    if time.precision <= 8:
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _instant(time: XdsTime) -> str:
    """FHIR ``instant`` (DocumentReference.date) is a full time: written only from a time given to the second."""
    return time.moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _practitioner(person: Xcn, local_id: str) -> dict[str, Any]:
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "id": local_id}
    if person.id:
        identifier: dict[str, Any] = {"value": person.id}
        if person.assigning_authority:
            identifier["system"] = _system(person.assigning_authority)
        practitioner["identifier"] = [identifier]
    name: dict[str, Any] = {}
    if person.family_name:
        name["family"] = person.family_name
    given = [g for g in (person.given_name, person.further_given_names) if g]
    if given:
        name["given"] = given
    if person.prefix:
        name["prefix"] = [person.prefix]
    if name:
        practitioner["name"] = [name]
    return practitioner


def _organization(org: Xon, local_id: str) -> dict[str, Any]:
    organization: dict[str, Any] = {"resourceType": "Organization", "id": local_id, "name": org.organization_name}
    if org.organization_identifier:
        identifier: dict[str, Any] = {"value": org.organization_identifier}
        if org.assigning_authority:
            identifier["system"] = _system(org.assigning_authority)
        organization["identifier"] = [identifier]
    return organization


def _author(author: Author, index: int, contained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    refs = []
    if author.person is not None:
        local = f"author-{index + 1}"
        practitioner = _practitioner(author.person, local)
        if author.roles or author.specialties:
            # A PractitionerRole would carry them; kept on the Practitioner as qualifications is wrong,
            # so they go in a contained PractitionerRole that the author list references.
            role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": f"{local}-role"}
            role["practitioner"] = {"reference": f"#{local}"}
            if author.roles:
                role["code"] = [{"text": text} for text in author.roles]
            if author.specialties:
                role["specialty"] = [{"text": text} for text in author.specialties]
            contained.append(practitioner)
            contained.append(role)
            refs.append({"reference": f"#{local}-role"})
        else:
            contained.append(practitioner)
            refs.append({"reference": f"#{local}"})
    for position, institution in enumerate(author.institutions):
        local = f"author-{index + 1}-org-{position + 1}"
        contained.append(_organization(institution, local))
        refs.append({"reference": f"#{local}"})
    return refs
