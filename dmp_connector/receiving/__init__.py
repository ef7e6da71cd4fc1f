"""The receiving side: received documents, to which local patient they go, and the receipts of what was sent.

* :mod:`.documents` — :class:`IncomingDocument` from an MSSanté message or a DMP retrieve;
* :mod:`.filing` — :func:`match_patient` (matched / to check / unknown, by the INS and the RNIV)
  and :func:`find_duplicate` (same document, newer or older version);
* :mod:`.receipts` — DSNs and MDNs linked to the messages sent (delivered, read, failed).

Showing a document safely is :mod:`dmp_connector.display`; sending a read receipt is
:func:`dmp_connector.mssante.build_read_receipt`. Guide: ``docs/receiving.md``.
"""

from __future__ import annotations

from .documents import DocumentSource, IncomingDocument, document_from_dmp, documents_from_message
from .filing import (
    Duplicate,
    DuplicateKind,
    FiledDocument,
    FilingStatus,
    FilingVerdict,
    LocalPatient,
    MatchReason,
    MatchRules,
    find_duplicate,
    match_patient,
)
from .receipts import MessageTracking, RecipientProgress, RecipientState, SentMessage, link_receipt

__all__ = [
    "DocumentSource",
    "Duplicate",
    "DuplicateKind",
    "FiledDocument",
    "FilingStatus",
    "FilingVerdict",
    "IncomingDocument",
    "LocalPatient",
    "MatchReason",
    "MatchRules",
    "MessageTracking",
    "RecipientProgress",
    "RecipientState",
    "SentMessage",
    "document_from_dmp",
    "documents_from_message",
    "find_duplicate",
    "link_receipt",
    "match_patient",
]
