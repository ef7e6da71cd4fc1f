"""Received documents: one :class:`IncomingDocument` per document, from an MSSanté message or a DMP retrieve.

Whatever the channel, a vendor then does the same three things: show it
(:meth:`IncomingDocument.render`), decide to which local patient it belongs
(:func:`~dmp_connector.receiving.match_patient`) and whether it is already filed
(:func:`~dmp_connector.receiving.find_duplicate`). This module only reads: it never
changes the document's bytes (the clinical content is filed as received).

Where the patient identity comes from (ECO.2.1.2: the receiver identifies the patient from
the INS of the XDM metadata, not from the mail): the CDA header's ``recordTarget`` when the
document is a CDA the SDK can read (INS and the five traits), else the ``patientId`` of its
XDS entry (an INS without traits), else nothing — a bare PDF names no one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.cda import ClinicalDocument, InstanceId
from dmp_connector.cda import parse as parse_cda
from dmp_connector.codes import Code
from dmp_connector.display import RenderedDocument, render_cda, sniff_media_type
from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins import INS, Identity, IdentityTraits
from dmp_connector.xds import DocumentEntry

if TYPE_CHECKING:
    from dmp_connector.cda import ValidationReport
    from dmp_connector.dmp import RetrievedDmpDocument
    from dmp_connector.mssante import ReceivedMessage

__all__ = ["DocumentSource", "IncomingDocument", "document_from_dmp", "documents_from_message"]


class DocumentSource(StrEnum):
    """The channel a document came by."""

    MSSANTE = "mssante"
    """An MSSanté message: an XDM archive, or a CDA or PDF attached as such."""
    DMP = "dmp"
    """A DMP retrieve (ITI-43)."""


def _id_text(ident: InstanceId | None) -> str | None:
    if ident is None:
        return None
    return f"{ident.root}^{ident.extension}" if ident.extension else ident.root


class IncomingDocument(BaseModel):
    """A received document, its metadata and the patient it names. Holds health data: never log it."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    source: DocumentSource
    """The channel."""
    content: bytes = Field(repr=False)
    """The document's bytes, exactly as received."""
    media_type: str
    """``text/xml`` for a CDA, ``application/pdf`` …: what the bytes are, not only what the sender said."""
    document_id: str | None
    """The document's id, ``root^extension`` of the CDA ``id`` (the XDS uniqueId): the key for duplicates."""
    set_id: str | None = None
    """The CDA ``setId``: every version of one document shares it."""
    version: int | None = None
    """The CDA ``versionNumber``."""
    replaces: str | None = None
    """The id of the document this version replaces (``relatedDocument/parentDocument/id``)."""
    type_code: Code | None = Field(default=None, repr=False)
    """The document type (LOINC …)."""
    title: str | None = Field(default=None, repr=False)
    """The title (it may name the patient: do not log)."""
    effective_time: datetime | date | None = None
    """When the document was written."""
    ins: INS | None = Field(default=None, repr=False)
    """The INS the document names (CDA header, else its XDS ``patientId``)."""
    traits: IdentityTraits | None = Field(default=None, repr=False)
    """The identity traits the CDA header gives; None for a document without a readable CDA header."""
    entry: DocumentEntry | None = Field(default=None, repr=False)
    """Its XDS metadata (XDM ``METADATA.XML``, or the DMP entry given with the retrieve)."""
    message_id: str | None = None
    """The MSSanté message it came in."""
    sender: str | None = Field(default=None, repr=False)
    """The message's sender address."""
    sender_ins_qualified: bool | None = None
    """``X-MSS-INS`` of that message: False when the sender says the INS is not qualified."""
    cda: ClinicalDocument | None = Field(default=None, repr=False)
    """The CDA read into the model, when it could be."""
    read_problem: str | None = None
    """Why a CDA could not be read into the model (it can still be shown), or None."""

    @property
    def is_cda(self) -> bool:
        """True for an XML document (a CDA, readable by the model or not)."""
        return self.media_type in ("text/xml", "application/xml")

    @property
    def identity(self) -> Identity | None:
        """The identity the document names, when it gives traits."""
        return self.cda.patient.identity if self.cda is not None else None

    def render(self, *, validation: ValidationReport | None = None) -> RenderedDocument | None:
        """The safe HTML page of a CDA (:func:`dmp_connector.display.render_cda`); None for a PDF or image."""
        if not self.is_cda:
            return None
        return render_cda(self.content, validation=validation, readable=self.cda is not None)


def _sniff(content: bytes, declared: str | None) -> str:
    sniffed = sniff_media_type(content)
    if sniffed is not None:
        return sniffed
    declared_type = (declared or "application/octet-stream").lower()
    head = content[:4096]
    if b"ClinicalDocument" in head or (declared_type in ("text/xml", "application/xml") and head.lstrip()[:1] == b"<"):
        return "text/xml"
    return declared_type


def _from_bytes(
    content: bytes,
    *,
    source: DocumentSource,
    declared_type: str | None,
    entry: DocumentEntry | None,
    message: ReceivedMessage | None,
) -> IncomingDocument:
    media_type = _sniff(content, declared_type or (entry.mime_type if entry is not None else None))
    cda: ClinicalDocument | None = None
    problem: str | None = None
    if media_type in ("text/xml", "application/xml"):
        try:
            cda = parse_cda(content)
        except DmpConnectorError as exc:
            problem = f"{type(exc).__name__}: {exc.message}"
    ins: INS | None = None
    if cda is not None:
        ins = cda.patient.identity.ins
    elif entry is not None and entry.patient_id is not None:
        try:
            ins = INS.from_xds_cx(entry.patient_id.text, lenient=True)
        except DmpConnectorError:
            ins = None
    entry_type = entry.type_code if entry is not None else None
    type_code = cda.type_code if cda is not None else entry_type if isinstance(entry_type, Code) else None
    return IncomingDocument(
        source=source,
        content=content,
        media_type=media_type,
        document_id=_id_text(cda.id) if cda is not None else entry.unique_id if entry is not None else None,
        set_id=_id_text(cda.set_id) if cda is not None else None,
        version=cda.version if cda is not None else None,
        replaces=_id_text(cda.replaces) if cda is not None else None,
        type_code=type_code,
        title=cda.title if cda is not None else entry.title if entry is not None else None,
        effective_time=cda.effective_time if cda is not None else None,
        ins=ins,
        traits=cda.patient.identity.traits if cda is not None else None,
        entry=entry,
        message_id=message.message_id if message is not None else None,
        sender=message.sender if message is not None else None,
        sender_ins_qualified=message.ins_qualified if message is not None else None,
        cda=cda,
        read_problem=problem,
    )


def documents_from_message(message: ReceivedMessage) -> tuple[IncomingDocument, ...]:
    """The documents of a received MSSanté message: those of its XDM archive, else its CDA and PDF attachments.

    A message whose XDM archive was refused (``message.xdm_error``: a zip bomb, two patients …)
    gives no document from it: what was refused is not filed. A receipt (DSN/MDN) gives none.
    """
    return tuple(_message_documents(message))


def _message_documents(message: ReceivedMessage) -> Iterator[IncomingDocument]:
    if message.receipt is not None:
        return
    if message.xdm is not None:
        for document in message.xdm.documents:
            yield _from_bytes(
                document.content,
                source=DocumentSource.MSSANTE,
                declared_type=document.entry.mime_type,
                entry=document.entry,
                message=message,
            )
        return
    for attachment in message.attachments:
        name = (attachment.filename or "").upper()
        if name.startswith("IHE_XDM") or attachment.content_type in ("application/zip", "application/x-zip-compressed"):
            continue  # an archive refused by parse_message: see message.xdm_error
        kind = _sniff(attachment.content, attachment.content_type)
        if kind in ("text/xml", "application/xml", "application/pdf") or kind.startswith("image/"):
            yield _from_bytes(
                attachment.content,
                source=DocumentSource.MSSANTE,
                declared_type=attachment.content_type,
                entry=None,
                message=message,
            )


def document_from_dmp(retrieved: RetrievedDmpDocument, entry: DocumentEntry | None = None) -> IncomingDocument:
    """A document retrieved from the DMP (:meth:`DmpClient.retrieve <dmp_connector.dmp.DmpClient.retrieve>`).

    ``entry`` is the DocumentEntry the search returned, for its metadata.
    """
    return _from_bytes(
        retrieved.read(), source=DocumentSource.DMP, declared_type=retrieved.mime_type, entry=entry, message=None
    )
