"""From a CDA document to a complete DMP deposit, with no metadata typed by hand.

:func:`document_entry` maps the documents package's :class:`~dmp_connector.cda.DocumentMetadata`
(fields named after the XDS attributes) onto an :class:`~dmp_connector.xds.DocumentEntry`;
:func:`prepare_deposit` builds the whole ITI-41 submission from the document's bytes: the entry,
the submission set, the submission-set signature as its own document with its ``signs``
association, an RPLC association when the document replaces another, and the MTOM parts.

Idempotency lives here. The ids a replay must reuse are not drawn at random:

* the document's uniqueId is the CDA's own ``ClinicalDocument/id``;
* the submission set's and the signature's uniqueIds are derived (UUID v5, written under
  ``settings.dmp.unique_id_root``) from the document's uniqueId **and the SHA-1 of its bytes**;
* entry ids are symbolic (``Document01``, ``Signature01``), MTOM Content-IDs are derived from
  the entry id and the hash.

So the same document deposited twice — a retry after a lost answer, even from a new process —
carries the same ids, and a registry that already holds it answers
``XDSDuplicateUniqueIdInRegistry`` instead of storing a second copy; a *different* document
under the same CDA id gets other derived ids, which is how the client tells the two apart.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.cda import ClinicalDocument, DocumentMetadata, build, extract_metadata
from dmp_connector.codes import Code
from dmp_connector.config import Settings
from dmp_connector.errors import PatientMismatchError, ValidationError
from dmp_connector.ins import INS, Identity
from dmp_connector.signature import (
    Association,
    Signer,
    SubmissionSetSignature,
    SubmissionSetSignatureProfile,
    SubmittedDocument,
    sign_submission_set,
)
from dmp_connector.soap import Attachment
from dmp_connector.xds import (
    AssociationType,
    Author,
    DocumentEntry,
    MetadataProfile,
    SubmissionRequest,
    SubmissionSet,
    Xcn,
    XdsTime,
    Xon,
    is_oid,
    symbolic_id,
)
from dmp_connector.xml import base64_scans_kept

__all__ = [
    "DOCUMENT_ENTRY_ID",
    "DepositIds",
    "PreparedDeposit",
    "deposit_ids",
    "derived_oid",
    "document_entry",
    "prepare_deposit",
    "source_id",
    "submission_author",
]

DOCUMENT_ENTRY_ID: Final = symbolic_id("Document", 1)
"""The document's entry id in a deposit (the signature's is ``Signature01``)."""
_NAMESPACE: Final = uuid.UUID("3c1b8f0e-6a52-5d47-9e1f-0d2c7a4b9e61")
_NAMESPACE_BYTES: Final = _NAMESPACE.bytes
_MAX_OID: Final = 64


def derived_oid(root: str, *parts: str) -> str:
    """A stable OID under ``root`` for ``parts``: ``2.25.<UUID v5 as an integer>`` by default.

    The same parts always give the same OID, different parts a different one (UUID v5 over the
    joined parts). Under a longer root the integer is cut to fit the 64 characters XDS allows.
    """
    if not is_oid(root) or len(root) > 40:
        raise ValidationError("the unique id root must be an OID of at most 40 characters")
    number = _uuid5_int("\x1f".join(parts))
    room = _MAX_OID - len(root) - 1
    digits = str(number)[:room].lstrip("0") or "0"
    return f"{root}.{digits}"


def _uuid5_int(name: str) -> int:
    """``uuid.uuid5(_NAMESPACE, name).int`` without building the ``UUID`` (RFC 4122 §4.3: the first 16 bytes
    of the SHA-1 of the namespace and the name, version 5, variant 10); three a deposit (issue 22)."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    return int.from_bytes(raw, "big")


class DepositIds(BaseModel):
    """The uniqueIds of one logical deposit: the same for the same document bytes, every time."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    document: str
    """The document's uniqueId: the CDA ``ClinicalDocument/id``."""
    submission_set: str
    """The submission set's uniqueId, derived from the document's uniqueId and hash."""
    signature: str
    """The signature document's uniqueId, derived likewise."""


def deposit_ids(settings: Settings, document_unique_id: str, sha1: str) -> DepositIds:
    """The deposit's uniqueIds for a document (see the module docstring)."""
    root = settings.dmp.unique_id_root
    key = sha1.lower()
    return DepositIds(
        document=document_unique_id,
        submission_set=derived_oid(root, "submission-set", document_unique_id, key),
        signature=derived_oid(root, "signature", document_unique_id, key),
    )


def source_id(settings: Settings) -> str:
    """SubmissionSet.sourceId: ``settings.dmp.source_id``, else an OID derived from the software's name and editor."""
    if settings.dmp.source_id is not None:
        return settings.dmp.source_id
    software = settings.software
    return _derived_source_id(software.name, software.editor)


@functools.lru_cache(maxsize=16)
def _derived_source_id(name: str, editor: str) -> str:
    """The sourceId derived from the software's name and editor, made once for each pair (issue 22)."""
    return derived_oid("2.25", "source-id", name, editor)


def document_entry(metadata: DocumentMetadata, *, entry_id: str = DOCUMENT_ENTRY_ID) -> DocumentEntry:
    """The DocumentEntry of a CDA document, every attribute from its extracted metadata."""
    return metadata.to_document_entry(entry_id=entry_id)


def submission_author(settings: Settings, fallback: Author | None = None) -> Author:
    """The submission set's author: the configured professional on behalf of the configured organisation.

    In indirect mode the DMP refuses a deposit whose authorInstitution is not the VIHF's
    ``Identifiant_Structure``: the institution is always the configured organisation. Without a
    configured professional the document's first author person is used.
    """
    organisation = settings.require_organisation()
    professional = settings.professional
    if professional is not None:
        return _configured_author(
            organisation.name,
            organisation.national_id,
            professional.national_id,
            professional.family_name,
            professional.given_name,
        )
    institution = Xon.national_structure(organisation.name, organisation.national_id)
    if fallback is not None and fallback.person is not None:
        person = fallback.person
    else:
        raise ValidationError(
            "the submission set needs an author person and none is configured",
            hint="set [professional] in the settings",
        )
    return Author(person=person, institutions=(institution,))


@functools.lru_cache(maxsize=16)
def _configured_author(
    organisation_name: str, organisation_id: str, professional_id: str, family_name: str, given_name: str
) -> Author:
    """The configured professional on behalf of the configured organisation: the same frozen value for the
    same settings, made once (issue 22). Invalid values raise as they did, and nothing is kept for them."""
    institution = Xon.national_structure(organisation_name, organisation_id)
    person = Xcn.national_professional(professional_id, family_name, given_name)
    return Author(person=person, institutions=(institution,))


class PreparedDeposit(BaseModel):
    """Everything one ITI-41 deposit sends, built once and reused on every attempt."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", arbitrary_types_allowed=True)

    request: SubmissionRequest
    """The submission (checked against the DMP profile)."""
    attachments: tuple[Attachment, ...] = Field(repr=False)
    """The MTOM parts: the document, then the signature."""
    entry: DocumentEntry
    """The document's entry."""
    signature: SubmissionSetSignature = Field(repr=False)
    """The submission-set signature."""
    ids: DepositIds
    """The deposit's uniqueIds."""
    ins: INS
    """The patient (for the VIHF and the audit pseudonym)."""
    replaces: str | None = None
    """The entryUUID the document replaces (RPLC), if any."""


@base64_scans_kept()  # read, then signed: the body's base64 is checked once, and let go at the end
def prepare_deposit(
    document: bytes | ClinicalDocument,
    *,
    settings: Settings,
    signer: Signer,
    patient: Identity,
    replaces: str | None = None,
    content_type_code: Code | None = None,
    confidentiality: Sequence[Code] = (),
    submission_time: dt.datetime | None = None,
) -> PreparedDeposit:
    """Build the deposit of ``document`` for ``patient`` (a QUAL identity); nothing is sent.

    ``replaces`` is the ``urn:uuid:`` entryUUID of the entry this document replaces (resolve a
    uniqueId first); ``confidentiality`` adds DMP visibility codes (``MASQUE_PS`` …) after the
    CDA's own. ``content_type_code`` defaults to ``settings.dmp.content_type_code``.
    ``submission_time`` (now by default) is also the signing time.
    """
    ins = patient.require_qualified("a DMP deposit")
    if isinstance(document, ClinicalDocument):
        data = build(document)
        metadata = extract_metadata(document, confidentiality=confidentiality, data=data)
    else:
        data = bytes(document)
        metadata = extract_metadata(data, confidentiality=confidentiality, limits=settings.xml)
    entry = document_entry(metadata)
    patient_id = entry.patient_id
    if patient_id is None or not ins.matches(patient_id):
        # A patient mismatch, not a status problem: qualifying the given identity would not help,
        # and an operator told "identity not qualified" might qualify the wrong patient.
        raise PatientMismatchError(
            "the document is about another patient than the identity given for the deposit",
            service="DMP",
            operation="ProvideAndRegisterDocumentSet-b",
            problems=("the document's recordTarget INS is not the INS of the identity given",),
            hint="deposit the document in its own patient's DMP (recordTarget's INS), or give that patient's identity",
        )
    if "^" in entry.unique_id:
        raise ValidationError(
            "the document's id has an extension: the submission-set signature names documents by urn:oid:, "
            "so the DMP needs a CDA id that is an OID alone",
            problems=["ClinicalDocument/id: root^extension"],
            hint="build the document with an id root only (dmp_connector.cda.new_oid())",
        )
    if replaces is not None and not replaces.startswith("urn:uuid:"):
        raise ValidationError("replaces must be the entryUUID (urn:uuid:…) of the entry to replace")

    ids = deposit_ids(settings, entry.unique_id, entry.hash or "")
    moment = (submission_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    author = submission_author(settings, entry.authors[0] if entry.authors else None)
    submission_set = SubmissionSet(
        unique_id=ids.submission_set,
        source_id=source_id(settings),
        patient_id=patient_id,
        submission_time=XdsTime.of(moment),
        content_type_code=content_type_code or settings.dmp.content_type_code,
        authors=(author,),
    )
    signature = sign_submission_set(
        submission_set_unique_id=ids.submission_set,
        documents=[SubmittedDocument(unique_id=entry.unique_id, content=data, is_cda=True)],
        signer=signer,
        unique_id=ids.signature,
        profile=SubmissionSetSignatureProfile.from_settings(settings.signing),
        signing_time=moment,
        limits=settings.xml,
    )
    signature_entry = DocumentEntry.for_signature(
        signature,
        patient_id=patient_id,
        source_patient_id=entry.source_patient_id,
        healthcare_facility_type_code=entry.healthcare_facility_type_code or metadata.healthcare_facility_type_code,
        practice_setting_code=entry.practice_setting_code or metadata.practice_setting_code,
        legal_authenticator=author.person,
        # As DRIMbox and the editor kit do: the DMP matches authorInstitution with the VIHF's structure.
        authors=(author,),
    )
    key = (entry.hash or "")[:16]
    document_part = Attachment.from_bytes(data, content_type=entry.mime_type, content_id=f"doc-{key}@dmp-connector")
    signature_part = Attachment.from_bytes(
        signature.xml, content_type="text/xml", content_id=f"sig-{key}@dmp-connector"
    )
    associations: list[Association] = [signature.signs_association(signature.entry_id, submission_set.entry_uuid)]
    if replaces is not None:
        associations.append(
            Association(
                association_type=AssociationType.REPLACE.value, source_object=entry.entry_uuid, target_object=replaces
            )
        )
    request = SubmissionRequest.build(
        submission_set,
        [entry, signature_entry],
        associations=associations,
        contents={entry.entry_uuid: document_part.content_id, signature.entry_id: signature_part.content_id},
    ).check(MetadataProfile.DMP)
    return PreparedDeposit(
        request=request,
        attachments=(document_part, signature_part),
        entry=entry,
        signature=signature,
        ids=ids,
        ins=ins,
        replaces=replaces,
    )
