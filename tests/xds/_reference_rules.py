"""The XDS rules as they were before issue 22's one-pass rewrite, kept verbatim to compare with (tests only).

``problems(request, profile)`` is the former ``SubmissionRequest.problems``; the module functions are
the former helpers, renamed nowhere: the rewritten model must give the same list, in the same order.
"""

# ruff: noqa
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dmp_connector.xds.model import (
    _DOCUMENT_RELATIONS,
    _FREE_FORM,
    _INS_AUTHORITIES,
    _LONG_NAME,
    _MANDATORY_IN_SUBMISSION,
    _PROPAGATION,
    _UUID_URN_RE,
    _VERSION_RE,
    AnyCode,
    Association,
    Author,
    Cx,
    DocumentEntry,
    Folder,
    ForeignCode,
    MetadataProfile,
    SubmissionSet,
    is_oid,
)
from dmp_connector.xds.vocabulary import AssociationType, AvailabilityStatus, DocumentEntryType, SubmissionSetStatus


def problems(self: Any, profile: MetadataProfile = MetadataProfile.XDS) -> list[str]:
    """Every rule this submission breaks, one sentence each (empty when it is valid)."""
    found: list[str] = []
    found += _submission_set_problems(self.submission_set)
    patient = self.submission_set.patient_id
    for document in self.documents:
        found += _document_problems(document, patient)
    for folder in self.folders:
        found += _folder_problems(folder, patient)
    found += _graph_problems(self)
    if profile is MetadataProfile.DMP:
        found += _dmp_problems(self)
    return found


def _graph_problems(self: Any) -> list[str]:
    """The association rules of ITI TF-3 §4.2.2 (and of ITI-57 for updates), one sentence each."""
    found: list[str] = []
    ss_id = self.submission_set.entry_uuid
    documents = {d.entry_uuid: d for d in self.documents}
    folders = {f.entry_uuid: f for f in self.folders}
    association_ids = [a.entry_uuid for a in self.associations]
    counted = [ss_id, *(d.entry_uuid for d in self.documents), *(f.entry_uuid for f in self.folders)]
    counted += association_ids
    for repeated in sorted({i for i in counted if counted.count(i) > 1}):
        found.append(f"the id {repeated} is used by more than one object of the submission")
    unique_ids = [self.submission_set.unique_id, *(d.unique_id for d in self.documents)]
    unique_ids += [f.unique_id for f in self.folders]
    for repeated in sorted({i for i in unique_ids if unique_ids.count(i) > 1}):
        found.append(f"the uniqueId {repeated} is used by more than one entry of the submission")

    known = set(counted) | {ref.id for ref in self.object_refs}
    members: set[str] = set()
    versions: dict[str, str | None] = {}
    # ITI-57 submits an association between registry entries on its own (SubmitAssociation).
    submitted_alone = {
        a.target_object
        for a in self.associations
        if a.association_type == AssociationType.SUBMIT_ASSOCIATION and a.source_object == ss_id
    }
    for association in self.associations:
        where = f"association {association.entry_uuid}"
        for end, value in (
            ("sourceObject", association.source_object),
            ("targetObject", association.target_object),
        ):
            if value not in known and not _UUID_URN_RE.match(value):
                found.append(f"{where}: {end} {value} is neither in the submission nor a urn:uuid: registry entry")
        kind = association.association_type
        if not isinstance(kind, AssociationType):
            found.append(f"{where}: associationType {kind} is not an XDS association type")
            continue
        if kind == AssociationType.HAS_MEMBER and association.target_object == ss_id:
            found.append(f"{where}: the submission set cannot be a member (HasMember target) of anything")
        if kind == AssociationType.HAS_MEMBER and association.source_object == ss_id:
            found += _has_member_problems(self, association, where, documents, folders, association_ids)
            members.add(association.target_object)
            versions[association.target_object] = association.previous_version
        elif kind == AssociationType.UPDATE_AVAILABILITY_STATUS:
            found += _status_update_problems(association, where, ss_id)
        elif (
            kind in _DOCUMENT_RELATIONS
            and association.source_object not in documents
            and association.entry_uuid not in submitted_alone
        ):
            found.append(f"{where}: the source of a {_short(kind)} association must be a document of the submission")
        if kind != AssociationType.HAS_MEMBER and association.submission_set_status is not None:
            found += _submission_set_status_problems(association, where)
        if kind != AssociationType.HAS_MEMBER and association.previous_version is not None:
            found.append(f"{where}: PreviousVersion belongs on the HasMember of a new version only")
        found += _propagation_problems(association, where)
    entries: list[DocumentEntry | Folder] = [*self.documents, *self.folders]
    for entry in entries:
        if entry.entry_uuid not in members:
            found.append(f"entry {entry.entry_uuid} is not a member of the submission set (no HasMember association)")
            continue
        new_version = entry.logical_id is not None and entry.logical_id != entry.entry_uuid
        if new_version and versions.get(entry.entry_uuid) is None:
            found.append(
                f"entry {entry.entry_uuid}: a new version (logicalId of another entry) needs PreviousVersion"
                " on its HasMember association"
            )
    lids = [e.logical_id for e in entries if e.logical_id is not None and e.logical_id != e.entry_uuid]
    for repeated in sorted({lid for lid in lids if lids.count(lid) > 1}):
        found.append(f"two entries of the submission are new versions of the same logicalId {repeated}")
    for entry_id in self.contents:
        if entry_id not in documents:
            found.append(f"contents names {entry_id}, which is not a document entry of the submission")
    return found


def _has_member_problems(
    self: Any,
    association: Association,
    where: str,
    documents: Mapping[str, DocumentEntry],
    folders: Mapping[str, Folder],
    association_ids: Sequence[str],
) -> list[str]:
    """A HasMember from the submission set: SubmissionSetStatus for documents, PreviousVersion well formed."""
    found: list[str] = []
    target = association.target_object
    status = association.submission_set_status
    if target in documents and status is None:
        found.append(f"{where}: a HasMember from the submission set to a document needs SubmissionSetStatus")
    if status is not None:
        found += _submission_set_status_problems(association, where)
    previous = association.previous_version
    if previous is not None:
        if not _VERSION_RE.match(previous):
            found.append(f"{where}: PreviousVersion is not a version number (a positive integer)")
        entry = documents.get(target) or folders.get(target)
        if entry is None:
            found.append(f"{where}: PreviousVersion names a new version, which must be an entry of the submission")
        elif entry.logical_id is None:
            found.append(f"entry {target}: a new version (PreviousVersion) needs the logicalId it updates")
    return found


def _dmp_problems(self: Any) -> list[str]:
    found: list[str] = []
    ss = self.submission_set
    entries: list[tuple[str, Iterator[tuple[str, AnyCode]]]] = [
        ("submission set", iter([("content_type_code", ss.content_type_code)] if ss.content_type_code else []))
    ]
    entries += [(f"document {d.entry_uuid}", d.codes()) for d in self.documents]
    entries += [(f"folder {f.entry_uuid}", iter([("codes", c) for c in f.codes])) for f in self.folders]
    for where, codes in entries:
        for attribute, code in codes:
            if isinstance(code, ForeignCode):
                found.append(f"{where}: the coding scheme of {attribute} is not an OID (the DMP wants OIDs)")
    patients = [("submission set", ss.patient_id)] + [
        (f"document {d.entry_uuid}", d.patient_id) for d in self.documents
    ]
    for where, patient in patients:
        if patient is None or patient.id_type != "NH" or patient.assigning_authority not in _INS_AUTHORITIES:
            found.append(f"{where}: the patientId must be an INS (^^^&1.2.250.1.213.1.4.8&ISO^NH or a test OID)")
    if not any(author.person is not None for author in ss.authors):
        found.append("submission set: the DMP requires an author with authorPerson (who or what sends)")
    return found


def _submission_set_status_problems(association: Association, where: str) -> list[str]:
    status = association.submission_set_status
    if status is not None and not isinstance(status, SubmissionSetStatus):
        return [f"{where}: SubmissionSetStatus {status} is neither Original nor Reference"]
    return []


def _status_update_problems(association: Association, where: str, ss_id: str) -> list[str]:
    """ITI-57 UpdateAvailabilityStatus: from the submission set, two known statuses that differ."""
    found: list[str] = []
    if association.source_object != ss_id:
        found.append(f"{where}: an UpdateAvailabilityStatus association starts at the submission set")
    original, new = association.original_status, association.new_status
    if original is None or new is None:
        found.append(f"{where}: an UpdateAvailabilityStatus association needs OriginalStatus and NewStatus")
    for name, value in (("OriginalStatus", original), ("NewStatus", new)):
        if value is not None and not isinstance(value, AvailabilityStatus):
            found.append(f"{where}: {name} {value} is not an availability status (Approved, Deprecated …)")
    if original is not None and original == new:
        found.append(f"{where}: NewStatus equals OriginalStatus (nothing to update)")
    return found


def _propagation_problems(association: Association, where: str) -> list[str]:
    """ITI-57: ``AssociationPropagation`` is ``yes`` or ``no``, one value."""
    for slot in association.extra_slots:
        if slot.name == "AssociationPropagation" and (len(slot.values) != 1 or slot.values[0] not in _PROPAGATION):
            return [f"{where}: AssociationPropagation is neither yes nor no"]
    return []


def _short(kind: str) -> str:
    return kind.rsplit(":", 1)[-1]


def _check_unique_id(value: str, where: str) -> list[str]:
    root, caret, extension = value.partition("^")
    if not is_oid(root) or (caret and not 0 < len(extension) <= 16):
        return [f"{where}: uniqueId {value} is not an OID of at most 64 characters (with an optional ^extension)"]
    return []


def _check_oid(value: str | None, where: str, attribute: str) -> list[str]:
    if value is not None and not is_oid(value):
        return [f"{where}: {attribute} {value} is not an OID of at most 64 characters"]
    return []


def _check_lengths(where: str, values: Iterator[tuple[str, str | None, int]]) -> list[str]:
    return [
        f"{where}: {attribute} is longer than the {limit} characters ebRIM allows"
        for attribute, value, limit in values
        if value is not None and len(value) > limit
    ]


def _code_lengths(name: str, code: AnyCode) -> Iterator[tuple[str, str | None, int]]:
    yield name, code.code, _LONG_NAME
    yield f"{name} coding scheme", code.code_system, _LONG_NAME
    yield f"{name} display name", code.display_name, _FREE_FORM


def _code_length_problems(where: str, name: str, code: AnyCode) -> list[str]:
    """``_check_lengths(where, _code_lengths(name, code))``, without naming the three values when all fit."""
    system, display = code.code_system, code.display_name
    if (
        len(code.code) <= _LONG_NAME
        and (system is None or len(system) <= _LONG_NAME)
        and (display is None or len(display) <= _FREE_FORM)
    ):
        return []
    return _check_lengths(where, _code_lengths(name, code))


def _author_problems(authors: Sequence[Author], where: str) -> list[str]:
    found: list[str] = []
    for index, author in enumerate(authors, 1):
        if author.person is None and not author.institutions and not author.telecommunications:
            found.append(f"{where}: author {index} has neither authorPerson, authorInstitution nor telecommunication")
        values: list[tuple[str, str | None, int]] = [
            ("authorPerson", author.person.text if author.person else None, _LONG_NAME)
        ]
        values += [("authorInstitution", x.text, _LONG_NAME) for x in author.institutions]
        values += [("authorRole", r, _LONG_NAME) for r in author.roles]
        values += [("authorSpecialty", s, _LONG_NAME) for s in author.specialties]
        values += [("authorTelecommunication", t, _LONG_NAME) for t in author.telecommunications]
        found += _check_lengths(f"{where} author {index}", iter(values))
    return found


def _patient_problems(patient: Cx, where: str, attribute: str = "patientId") -> list[str]:
    problems = _check_oid(patient.assigning_authority, where, f"{attribute} assigning authority")
    return problems + _check_lengths(where, iter([(attribute, patient.text, _LONG_NAME)]))


def _submission_set_problems(ss: SubmissionSet) -> list[str]:
    where = "submission set"
    found = _check_oid(ss.unique_id, where, "uniqueId") + _check_oid(ss.source_id, where, "sourceId")
    if ss.patient_id is not None:
        found += _patient_problems(ss.patient_id, where)
    elif not ss.limited_metadata:
        found.append(f"{where}: patientId is missing")
    if ss.content_type_code is None and not ss.limited_metadata:
        found.append(f"{where}: contentTypeCode is missing")
    found += _author_problems(ss.authors, where)
    lengths: list[tuple[str, str | None, int]] = [
        ("title", ss.title, _FREE_FORM),
        ("comments", ss.comments, _FREE_FORM),
    ]
    lengths += [("intendedRecipient", r, _LONG_NAME) for r in ss.intended_recipients]
    found += _check_lengths(where, iter(lengths))
    if ss.content_type_code is not None:
        found += _code_length_problems(where, "contentTypeCode", ss.content_type_code)
    lengths = [(f"slot {s.name}", v, _LONG_NAME) for s in ss.extra_slots for v in s.values]
    return found + _check_lengths(where, iter(lengths))


def _document_problems(document: DocumentEntry, patient: Cx | None) -> list[str]:
    where = f"document {document.entry_uuid}"
    found = _check_unique_id(document.unique_id, where)
    limited = document.limited_metadata
    on_demand = document.object_type is DocumentEntryType.ON_DEMAND
    for field, name in _MANDATORY_IN_SUBMISSION:
        # TF-3 Table 4.3.1-3: limited metadata makes these R2; an On-Demand entry has no creationTime.
        if getattr(document, field) is None and not limited and not (on_demand and field == "creation_time"):
            found.append(f"{where}: {name} is missing")
    if not document.confidentiality_codes and not limited:
        found.append(f"{where}: confidentialityCode is missing")
    if document.patient_id is None:
        if not limited:
            found.append(f"{where}: patientId is missing")
    else:
        if patient is not None and document.patient_id != patient:
            found.append(f"{where}: patientId differs from the submission set's (one submission, one patient)")
        found += _patient_problems(document.patient_id, where)
    if document.source_patient_id is not None:
        found += _patient_problems(document.source_patient_id, where, "sourcePatientId")
    found += _check_oid(document.repository_unique_id, where, "repositoryUniqueId")
    start, stop = document.service_start_time, document.service_stop_time
    if start is not None and stop is not None and start.moment > stop.moment:
        found.append(f"{where}: serviceStartTime is after serviceStopTime")
    found += _author_problems(document.authors, where)
    lengths: list[tuple[str, str | None, int]] = [
        ("title", document.title, _FREE_FORM),
        ("comments", document.comments, _FREE_FORM),
        ("uniqueId", document.unique_id, _LONG_NAME),
        ("mimeType", document.mime_type, _LONG_NAME),
        ("languageCode", document.language_code, _LONG_NAME),
        ("legalAuthenticator", document.legal_authenticator.text if document.legal_authenticator else None, _LONG_NAME),
    ]
    # The problems in the order of the values: these six, each code's three, then the lists.
    found += _check_lengths(where, iter(lengths))
    for name, code in document.codes():
        found += _code_length_problems(where, name, code)
    lengths = [("sourcePatientInfo", v, _LONG_NAME) for v in document.source_patient_info]
    lengths += [("referenceIdList", v, _LONG_NAME) for v in document.reference_ids]
    lengths += [(f"slot {s.name}", v, _LONG_NAME) for s in document.extra_slots for v in s.values]
    return found + _check_lengths(where, iter(lengths))


def _folder_problems(folder: Folder, patient: Cx | None) -> list[str]:
    where = f"folder {folder.entry_uuid}"
    found = _check_oid(folder.unique_id, where, "uniqueId") + _patient_problems(folder.patient_id, where)
    if patient is not None and folder.patient_id != patient:
        found.append(f"{where}: patientId differs from the submission set's")
    lengths: list[tuple[str, str | None, int]] = [("title", folder.title, _FREE_FORM)]
    lengths += [("comments", folder.comments, _FREE_FORM)]
    found += _check_lengths(where, iter(lengths))
    for code in folder.codes:
        found += _code_length_problems(where, "codeList", code)
    return found
