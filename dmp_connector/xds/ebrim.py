"""The XDS.b model written as ebRIM 3.0 and read back: submissions, registry answers, retrieve.

Builders return lxml elements for :func:`~dmp_connector.soap.build_envelope`; readers take the
bytes of a message (parsed by the hardened :func:`~dmp_connector.xml.parse_xml`) or an element
already parsed by it (``SoapMessage.payload``). Elements are found by namespace URI, never by
prefix. A message that breaks ebRIM or the XDS shapes raises
:class:`~dmp_connector.errors.MalformedResponseError` naming the object and the attribute, never
a value.

A document entry as :func:`build_submit_objects_request` writes it (abridged)::

    <rim:ExtrinsicObject id="Document01" mimeType="text/xml" objectType="urn:uuid:7edca82f-…">
      <rim:Slot name="creationTime"><rim:ValueList><rim:Value>20250102030405</rim:Value>…
      <rim:Name><rim:LocalizedString value="Compte rendu de consultation"/></rim:Name>
      <rim:Classification classificationScheme="urn:uuid:41a5887f-…" classifiedObject="Document01"
                          id="urn:uuid:…" nodeRepresentation="11488-4">
        <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>2.16.840.1.113883.6.1</rim:Value>…
        <rim:Name><rim:LocalizedString value="Compte rendu de consultation"/></rim:Name>
      </rim:Classification>
      <rim:ExternalIdentifier id="urn:uuid:…" identificationScheme="urn:uuid:2e82c1f6-…"
                              registryObject="Document01" value="1.2.250.1.999.7.2">
        <rim:Name><rim:LocalizedString value="XDSDocumentEntry.uniqueId"/></rim:Name>
      </rim:ExternalIdentifier>
    </rim:ExtrinsicObject>

The ids of classifications and external identifiers are UUIDs derived from the entry's uniqueId
and id, so the same metadata always gives the same bytes (a retried deposit sends what the first
attempt sent) and two deposits never share one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import unquote

import pydantic
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.errors import MalformedResponseError, ValidationError
from dmp_connector.soap.envelope import _cid_url, _MarkupBody, resolve_xop, xop_include
from dmp_connector.soap.mtom import Attachment
from dmp_connector.soap.namespaces import LCM, RIM, RS, XDSB, XOP
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml

from .errors import RegistryError, RegistryResponse
from .model import (
    RECEIVED,
    AnyCode,
    Association,
    Author,
    Classification,
    Cx,
    DocumentEntry,
    Folder,
    ObjectRef,
    Slot,
    SubmissionRequest,
    SubmissionSet,
    TextAttributes,
    Xcn,
    XdsTime,
    xds_code,
)
from .vocabulary import (
    REFERENCE_ID_LIST_SLOT,
    ClassificationNode,
    DocumentEntryScheme,
    DocumentEntryType,
    ErrorSeverity,
    FolderScheme,
    ResponseStatus,
    SubmissionSetScheme,
)

__all__ = [
    "DocumentRequest",
    "RegistryObjects",
    "RetrieveDocumentSetRequest",
    "RetrieveDocumentSetResponse",
    "RetrievedDocument",
    "build_provide_and_register_request",
    "build_registry_response",
    "build_retrieve_document_set_request",
    "build_retrieve_document_set_response",
    "build_submit_objects_request",
    "parse_provide_and_register_request",
    "parse_registry_response",
    "parse_retrieve_document_set_request",
    "parse_retrieve_document_set_response",
    "parse_submit_objects_request",
    "read_registry_objects",
    "write_registry_objects",
]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
_ID_NAMESPACE: Final = uuid.UUID("6f1c9f4e-3d0a-5b7e-9c1d-2a4b6c8e0f13")
_ID_NAMESPACE_BYTES: Final = _ID_NAMESPACE.bytes
_OASIS_PARTIAL_SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:PartialSuccess"
_DEFAULT_MIME_TYPE: Final = "application/octet-stream"


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


def _rs(tag: str) -> str:
    return f"{{{RS}}}{tag}"


def _xdsb(tag: str) -> str:
    return f"{{{XDSB}}}{tag}"


def _xml_safe(func: Callable[P, R], name: str | None = None) -> Callable[P, R]:
    """lxml refuses text XML cannot carry with a bare ValueError: say which message failed, as ours.

    ``name`` is the builder named in the error, the function's own name by default.
    """
    named = name or func.__name__

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, pydantic.ValidationError):
                raise
            raise ValidationError(
                f"{named}: a value holds characters XML cannot carry",
                hint="remove control characters from titles, comments and display names",
            ) from exc

    return wrapper


# --------------------------------------------------------------------------------------------
# Writing


class _Ids:
    """Deterministic ids for the classifications and external identifiers of one entry."""

    __slots__ = ("_count", "_owner", "_prefix", "_seed")

    def __init__(self, owner: str, seed: str) -> None:
        self._owner = owner
        self._seed = seed
        self._count = 0
        self._prefix: Any = None
        """The SHA-1 state after the namespace, the seed and the owner: hashed at the first id, copied for each."""

    def next(self, kind: str) -> str:
        """``_urn_uuid5(f"{seed}|{owner}|{kind}|{count}")``: the name's common start hashed once an entry (issue 22).

        Hashed at the first id, not when the entry is begun: a value UTF-8 cannot encode raises where it did.
        """
        self._count += 1
        prefix = self._prefix
        if prefix is None:
            prefix = _ID_NAMESPACE_SHA1.copy()
            prefix.update(f"{self._seed}|{self._owner}|".encode())
            self._prefix = prefix
        digest = prefix.copy()
        digest.update(f"{kind}|{self._count}".encode())
        return _urn_text(digest.hexdigest())


def _urn_uuid5(name: str) -> str:
    """``f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, name)}"`` without building a ``UUID`` (its checks and integer
    arithmetic cost three times the SHA-1; 27 ids per deposit, issue 22): RFC 4122 §4.3, the first 16 bytes
    of the SHA-1 of the namespace and the name, in hexadecimal, with the version nibble set to 5 and the
    variant's two high bits to 10 (the hexadecimal digit 8, 9, a or b). The namespace is hashed once."""
    digest = _ID_NAMESPACE_SHA1.copy()
    digest.update(name.encode("utf-8"))
    return _urn_text(digest.hexdigest())


def _urn_text(text: str) -> str:
    """The ``urn:uuid:`` of a UUID v5 from the hexadecimal SHA-1 of its namespace and name."""
    return f"urn:uuid:{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:32]}"


def _namespace_sha1() -> Any:
    """The SHA-1 state after :data:`_ID_NAMESPACE`, copied for every id: CPython's own SHA-1 when it has one.

    The same digest as OpenSSL's (``hashlib.sha1``), for a fraction of the cost on these short names: an
    OpenSSL context copy and digest cost some 9,000 instructions, twice the whole hash of a name (issue 22).
    """
    try:
        builtin: Any = importlib.import_module("_sha1")
        return builtin.sha1(_ID_NAMESPACE_BYTES)
    except (ImportError, AttributeError):  # pragma: no cover - a Python built without its own SHA-1
        return hashlib.sha1(_ID_NAMESPACE_BYTES, usedforsecurity=False)


_ID_NAMESPACE_SHA1: Final = _namespace_sha1()
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _slot(parent: etree._Element, name: str, values: Iterable[str | None]) -> None:
    present = [v for v in values if v is not None]
    if not present:
        return
    slot = etree.SubElement(parent, _rim("Slot"), name=name)
    value_list = etree.SubElement(slot, _rim("ValueList"))
    for value in present:
        etree.SubElement(value_list, _rim("Value")).text = value


def _localized(parent: etree._Element, tag: str, text: str | None, attributes: TextAttributes | None = None) -> None:
    if text is not None:
        string = etree.SubElement(etree.SubElement(parent, _rim(tag)), _rim("LocalizedString"))
        if attributes is not None:
            if attributes.charset is not None:
                string.set("charset", attributes.charset)
            if attributes.lang is not None:
                string.set(_XML_LANG, attributes.lang)
        string.set("value", text)


class _Strings:
    """The lang/charset an object's strings were read with, looked up by part while writing."""

    __slots__ = ("_by_part", "_counts")

    def __init__(self, localized: Sequence[TextAttributes]) -> None:
        self._by_part = {a.part: a for a in localized}
        self._counts: dict[str, int] = {}

    def get(self, part: str) -> TextAttributes | None:
        return self._by_part.get(part) if self._by_part else None

    def next_code(self, scheme: str) -> TextAttributes | None:
        if not self._by_part:
            return None
        index = self._counts.get(scheme, 0)
        self._counts[scheme] = index + 1
        return self._by_part.get(f"{scheme}#{index}")


def _code(
    parent: etree._Element, scheme: str, owner: str, ids: _Ids, code: AnyCode, strings: _Strings | None = None
) -> None:
    classification = etree.SubElement(
        parent,
        _rim("Classification"),
        classificationScheme=scheme,
        classifiedObject=owner,
        id=ids.next("code"),
        nodeRepresentation=code.code,
    )
    _slot(classification, "codingScheme", [code.code_system])
    _localized(classification, "Name", code.display_name, strings.next_code(scheme) if strings else None)


def _author(parent: etree._Element, scheme: str, owner: str, ids: _Ids, author: Author) -> None:
    classification = etree.SubElement(
        parent,
        _rim("Classification"),
        classificationScheme=scheme,
        classifiedObject=owner,
        id=ids.next("author"),
        nodeRepresentation="",
    )
    _slot(classification, "authorPerson", [author.person.text if author.person else None])
    _slot(classification, "authorInstitution", [x.text for x in author.institutions])
    _slot(classification, "authorRole", author.roles)
    _slot(classification, "authorSpecialty", author.specialties)
    _slot(classification, "authorTelecommunication", author.telecommunications)
    _extra_slots(classification, author.extra_slots)


def _external_id(parent: etree._Element, scheme: str, owner: str, ids: _Ids, value: str, name: str) -> None:
    identifier = etree.SubElement(
        parent,
        _rim("ExternalIdentifier"),
        id=ids.next("external"),
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    _localized(identifier, "Name", name)


def _classification(parent: etree._Element, owner: str, ids: _Ids, classification: Classification) -> None:
    element = etree.SubElement(parent, _rim("Classification"))
    if classification.scheme is not None:
        element.set("classificationScheme", classification.scheme)
    element.set("classifiedObject", owner)
    if classification.node is not None:
        element.set("classificationNode", classification.node)
    element.set("id", ids.next("classification"))
    if classification.node_representation is not None:
        element.set("nodeRepresentation", classification.node_representation)
    _extra_slots(element, classification.slots)
    attributes = None
    if classification.name_lang is not None or classification.name_charset is not None:
        attributes = TextAttributes(part="Name", lang=classification.name_lang, charset=classification.name_charset)
    _localized(element, "Name", classification.name, attributes)


def _node(parent: etree._Element, node: str, owner: str, ids: _Ids) -> None:
    etree.SubElement(
        parent, _rim("Classification"), classifiedObject=owner, classificationNode=node, id=ids.next("node")
    )


def _extra_slots(parent: etree._Element, slots: Sequence[Slot]) -> None:
    for slot in slots:
        element = etree.SubElement(parent, _rim("Slot"), name=slot.name)
        value_list = etree.SubElement(element, _rim("ValueList"))
        for value in slot.values:
            etree.SubElement(value_list, _rim("Value")).text = value


def _wire(value: XdsTime | Cx | Xcn | None) -> str | None:
    return None if value is None else value.text


def _status(element: etree._Element, status: str | None, home: str | None = None, lid: str | None = None) -> None:
    if status is not None:
        element.set("status", str(status))
    if home is not None:
        element.set("home", home)
    if lid is not None:
        element.set("lid", lid)


def _entry_codes(entry: DocumentEntry) -> list[tuple[str, AnyCode]]:
    """The entry's coded classifications, in the order both writers write them (one list: they cannot disagree)."""
    singles: list[tuple[str, AnyCode | None]] = [
        (DocumentEntryScheme.CLASS_CODE, entry.class_code),
        *((DocumentEntryScheme.CONFIDENTIALITY_CODE, c) for c in entry.confidentiality_codes),
        *((DocumentEntryScheme.EVENT_CODE_LIST, c) for c in entry.event_codes),
        (DocumentEntryScheme.FORMAT_CODE, entry.format_code),
        (DocumentEntryScheme.HEALTHCARE_FACILITY_TYPE_CODE, entry.healthcare_facility_type_code),
        (DocumentEntryScheme.PRACTICE_SETTING_CODE, entry.practice_setting_code),
        (DocumentEntryScheme.TYPE_CODE, entry.type_code),
    ]
    return [(scheme, code) for scheme, code in singles if code is not None]


def _write_document(parent: etree._Element, entry: DocumentEntry) -> None:
    owner = entry.entry_uuid
    ids = _Ids(owner, entry.unique_id)
    element = etree.SubElement(
        parent, _rim("ExtrinsicObject"), id=owner, mimeType=entry.mime_type, objectType=entry.object_type.value
    )
    _status(element, entry.availability_status, entry.home, entry.logical_id)
    strings = _Strings(entry.localized)
    _slot(element, "creationTime", [_wire(entry.creation_time)])
    _slot(element, "hash", [entry.hash])
    _slot(element, "languageCode", [entry.language_code])
    _slot(element, "legalAuthenticator", [_wire(entry.legal_authenticator)])
    _slot(element, "repositoryUniqueId", [entry.repository_unique_id])
    _slot(element, "serviceStartTime", [_wire(entry.service_start_time)])
    _slot(element, "serviceStopTime", [_wire(entry.service_stop_time)])
    _slot(element, "size", [None if entry.size is None else str(entry.size)])
    _slot(element, "sourcePatientId", [_wire(entry.source_patient_id)])
    _slot(element, "sourcePatientInfo", entry.source_patient_info)
    _slot(element, REFERENCE_ID_LIST_SLOT, entry.reference_ids)
    _extra_slots(element, entry.extra_slots)
    _localized(element, "Name", entry.title, strings.get("Name"))
    _localized(element, "Description", entry.comments, strings.get("Description"))
    if entry.version is not None:
        etree.SubElement(element, _rim("VersionInfo"), versionName=entry.version)
    if entry.limited_metadata:
        _node(element, ClassificationNode.DOCUMENT_ENTRY_LIMITED_METADATA, owner, ids)
    for author in entry.authors:
        _author(element, DocumentEntryScheme.AUTHOR, owner, ids, author)
    for scheme, code in _entry_codes(entry):
        _code(element, scheme, owner, ids, code, strings)
    if entry.patient_id is not None:
        _external_id(
            element, DocumentEntryScheme.PATIENT_ID, owner, ids, entry.patient_id.text, "XDSDocumentEntry.patientId"
        )
    _external_id(element, DocumentEntryScheme.UNIQUE_ID, owner, ids, entry.unique_id, "XDSDocumentEntry.uniqueId")


def _write_submission_set(parent: etree._Element, ss: SubmissionSet) -> None:
    owner = ss.entry_uuid
    ids = _Ids(owner, ss.unique_id)
    element = etree.SubElement(parent, _rim("RegistryPackage"), id=owner)
    _status(element, ss.availability_status, ss.home, ss.logical_id)
    strings = _Strings(ss.localized)
    _slot(element, "submissionTime", [ss.submission_time.text])
    _slot(element, "intendedRecipient", ss.intended_recipients)
    _extra_slots(element, ss.extra_slots)
    _localized(element, "Name", ss.title, strings.get("Name"))
    _localized(element, "Description", ss.comments, strings.get("Description"))
    _node(element, ClassificationNode.SUBMISSION_SET, owner, ids)
    if ss.limited_metadata:
        _node(element, ClassificationNode.SUBMISSION_SET_LIMITED_METADATA, owner, ids)
    for author in ss.authors:
        _author(element, SubmissionSetScheme.AUTHOR, owner, ids, author)
    if ss.content_type_code is not None:
        _code(element, SubmissionSetScheme.CONTENT_TYPE_CODE, owner, ids, ss.content_type_code, strings)
    _external_id(element, SubmissionSetScheme.UNIQUE_ID, owner, ids, ss.unique_id, "XDSSubmissionSet.uniqueId")
    _external_id(element, SubmissionSetScheme.SOURCE_ID, owner, ids, ss.source_id, "XDSSubmissionSet.sourceId")
    if ss.patient_id is not None:
        _external_id(
            element, SubmissionSetScheme.PATIENT_ID, owner, ids, ss.patient_id.text, "XDSSubmissionSet.patientId"
        )


def _write_folder(parent: etree._Element, folder: Folder) -> None:
    owner = folder.entry_uuid
    ids = _Ids(owner, folder.unique_id)
    element = etree.SubElement(parent, _rim("RegistryPackage"), id=owner)
    _status(element, folder.availability_status, folder.home, folder.logical_id)
    strings = _Strings(folder.localized)
    _slot(element, "lastUpdateTime", [_wire(folder.last_update_time)])
    _extra_slots(element, folder.extra_slots)
    _localized(element, "Name", folder.title, strings.get("Name"))
    _localized(element, "Description", folder.comments, strings.get("Description"))
    _node(element, ClassificationNode.FOLDER, owner, ids)
    for code in folder.codes:
        _code(element, FolderScheme.CODE_LIST, owner, ids, code, strings)
    _external_id(element, FolderScheme.UNIQUE_ID, owner, ids, folder.unique_id, "XDSFolder.uniqueId")
    _external_id(element, FolderScheme.PATIENT_ID, owner, ids, folder.patient_id.text, "XDSFolder.patientId")


def _write_association(parent: etree._Element, association: Association) -> None:
    element = etree.SubElement(
        parent,
        _rim("Association"),
        id=association.entry_uuid,
        associationType=str(association.association_type),
        sourceObject=association.source_object,
        targetObject=association.target_object,
    )
    _status(element, association.availability_status, association.home)
    status = association.submission_set_status
    _slot(element, "SubmissionSetStatus", [None if status is None else str(status)])
    _slot(element, "PreviousVersion", [association.previous_version])
    _slot(
        element, "OriginalStatus", [None if association.original_status is None else str(association.original_status)]
    )
    _slot(element, "NewStatus", [None if association.new_status is None else str(association.new_status)])
    _extra_slots(element, association.extra_slots)
    ids = _Ids(association.entry_uuid, association.source_object + "|" + association.target_object)
    for classification in association.classifications:
        _classification(element, association.entry_uuid, ids, classification)


def write_registry_objects(
    registry_object_list: etree._Element,
    *,
    submission_sets: Sequence[SubmissionSet] = (),
    documents: Sequence[DocumentEntry] = (),
    folders: Sequence[Folder] = (),
    associations: Sequence[Association] = (),
    object_refs: Sequence[ObjectRef] = (),
) -> None:
    """Append the objects to a ``rim:RegistryObjectList``: submission sets, documents, folders, associations."""
    for ref in object_refs:
        element = etree.SubElement(registry_object_list, _rim("ObjectRef"), id=ref.id)
        if ref.home is not None:
            element.set("home", ref.home)
    for ss in submission_sets:
        _write_submission_set(registry_object_list, ss)
    for document in documents:
        _write_document(registry_object_list, document)
    for folder in folders:
        _write_folder(registry_object_list, folder)
    for association in associations:
        _write_association(registry_object_list, association)


# --------------------------------------------------------------------------------------------
# Writing as text: the same tree, parsed from one string


# A submission is written as markup and parsed once by libxml2 rather than built element by element
# (about 300 lxml calls a deposit, most of ebRIM's cost; issue 22). The text parses into the very tree
# the element writers above build: the same elements, attributes in the same order, the same values
# (escaped below so that the parser gives each back unchanged), the namespaces declared on the root
# only. tests/xds compares the two writers' bytes over the NIST corpus and generated submissions.
# What lxml refuses in a value (ValueError, or UnicodeEncodeError for a lone surrogate): ASCII control
# characters but tab, line feed and carriage return; lone surrogates; U+FFFE and U+FFFF.
_NOT_LXML_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL_BYTES: Final = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_RIM_OPEN: Final = "<rim:"
_LOCAL_PARSER = threading.local()


def _a(value: str) -> str:
    """An attribute value as markup (between double quotes): white space as references, kept by the parser."""
    # Seven substring tests cost less than a regular expression's search on the short values written.
    if "&" in value or "<" in value or ">" in value or '"' in value or "\t" in value or "\n" in value or "\r" in value:
        # str.replace, not str.translate: translate looks every character up in a dict, and the HL7 values
        # (patientId, authorPerson …) all hold an "&". The ampersand first: the others bring new ones.
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        return value.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")
    return value


def _t(value: str) -> str:
    """Element text as markup (a carriage return as a reference: the parser would make ``\r\n`` a ``\n``)."""
    if "&" in value or "<" in value or ">" in value or "\r" in value:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    return value


class _Markup:
    """The markup of a ``rim:RegistryObjectList``'s content, written in the element writers' order."""

    __slots__ = ("empty_values", "out")

    def __init__(self) -> None:
        self.out: list[str] = []
        self.empty_values = False
        """Whether a ``rim:Value`` is the empty string: lxml writes ``<rim:Value></rim:Value>`` for it, which
        parses as no text at all, so the parsed tree gets its empty text back afterwards."""

    def one(self, name: str, value: str | None) -> None:
        """A slot of one value, none when the value is None (``name`` is a constant: not escaped)."""
        if value is not None:
            if not value:
                self.empty_values = True
            elif "&" in value or "<" in value or ">" in value or "\r" in value:  # _t's test, without a call (issue 22)
                value = _t(value)
            self.out.append(
                f'<rim:Slot name="{name}"><rim:ValueList><rim:Value>{value}</rim:Value></rim:ValueList></rim:Slot>'
            )

    def many(self, name: str, values: Sequence[str]) -> None:
        """A slot of these values, none when there are none."""
        if values:
            self.values(name, values)

    def values(self, name: str, values: Sequence[str]) -> None:
        out = self.out
        if not values:  # an extra slot may have none
            out.append(f'<rim:Slot name="{_a(name)}"><rim:ValueList/></rim:Slot>')
            return
        out.append(f'<rim:Slot name="{_a(name)}"><rim:ValueList>')
        for value in values:
            if not value:
                self.empty_values = True
            out.append(f"<rim:Value>{_t(value)}</rim:Value>")
        out.append("</rim:ValueList></rim:Slot>")

    def end(self, start: int, end_tag: str) -> None:
        """Close the element whose start tag is ``out[start]``: as ``/>`` when nothing followed it, as lxml
        writes an element without content, so that the markup is also the bytes of the element parsed from it."""
        out = self.out
        if len(out) == start + 1:
            out[start] = out[start][:-1] + "/>"
        else:
            out.append(end_tag)

    def extra_slots(self, slots: Sequence[Slot]) -> None:
        for slot in slots:
            self.values(slot.name, slot.values)

    def localized(self, tag: str, text: str | None, attributes: TextAttributes | None = None) -> None:
        if text is None:
            return
        extra = ""
        if attributes is not None:
            if attributes.charset is not None:
                extra += f' charset="{_a(attributes.charset)}"'
            if attributes.lang is not None:
                extra += f' xml:lang="{_a(attributes.lang)}"'
        self.out.append(f'<rim:{tag}><rim:LocalizedString{extra} value="{_a(text)}"/></rim:{tag}>')

    # In the methods below ``owner`` is already escaped (once an object), ``scheme`` is a constant of
    # the vocabulary and the ids made by _Ids are urn:uuid: in hexadecimal: none needs escaping.

    def code(self, scheme: str, owner: str, ids: _Ids, code: AnyCode, strings: _Strings | None = None) -> None:
        """A coded classification: what :meth:`one`, :meth:`localized` and :meth:`end` write, in one string
        (16 a deposit, issue 22); a name read with its lang or charset goes through :meth:`localized`."""
        head = (
            f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{owner}" '
            f'id="{ids.next("code")}" nodeRepresentation="{_a(code.code)}"'
        )
        system, display = code.code_system, code.display_name
        attributes = strings.next_code(scheme) if strings else None
        if system is None and display is None:
            self.out.append(head + "/>")
            return
        if system is None:
            slot = ""
        else:
            if not system:
                self.empty_values = True
            slot = (
                '<rim:Slot name="codingScheme"><rim:ValueList>'
                f"<rim:Value>{_t(system)}</rim:Value></rim:ValueList></rim:Slot>"
            )
        if display is None:
            self.out.append(f"{head}>{slot}</rim:Classification>")
        elif attributes is None:
            self.out.append(
                f'{head}>{slot}<rim:Name><rim:LocalizedString value="{_a(display)}"/></rim:Name></rim:Classification>'
            )
        else:
            self.out.append(f"{head}>{slot}")
            self.localized("Name", display, attributes)
            self.out.append("</rim:Classification>")

    def author(self, scheme: str, owner: str, ids: _Ids, author: Author) -> None:
        start = len(self.out)
        self.out.append(
            f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{owner}" '
            f'id="{ids.next("author")}" nodeRepresentation="">'
        )
        person, institutions = author.person, author.institutions
        self.one("authorPerson", person.text if person else None)
        # many()'s test here: most of these lists are empty (issue 22).
        if institutions:
            self.values("authorInstitution", [x.text for x in institutions])
        if author.roles:
            self.values("authorRole", author.roles)
        if author.specialties:
            self.values("authorSpecialty", author.specialties)
        if author.telecommunications:
            self.values("authorTelecommunication", author.telecommunications)
        if author.extra_slots:
            self.extra_slots(author.extra_slots)
        self.end(start, "</rim:Classification>")

    def external_id(self, scheme: str, owner: str, ids: _Ids, value: str, name: str) -> None:
        self.out.append(
            f'<rim:ExternalIdentifier id="{ids.next("external")}" identificationScheme="{scheme}" '
            f'registryObject="{owner}" value="{_a(value)}"><rim:Name><rim:LocalizedString value="{name}"/></rim:Name>'
            "</rim:ExternalIdentifier>"
        )

    def classification(self, owner: str, ids: _Ids, classification: Classification) -> None:
        head = "<rim:Classification"
        if classification.scheme is not None:
            head += f' classificationScheme="{_a(classification.scheme)}"'
        head += f' classifiedObject="{owner}"'
        if classification.node is not None:
            head += f' classificationNode="{_a(classification.node)}"'
        head += f' id="{ids.next("classification")}"'
        if classification.node_representation is not None:
            head += f' nodeRepresentation="{_a(classification.node_representation)}"'
        start = len(self.out)
        self.out.append(head + ">")
        self.extra_slots(classification.slots)
        attributes = None
        if classification.name_lang is not None or classification.name_charset is not None:
            attributes = TextAttributes(part="Name", lang=classification.name_lang, charset=classification.name_charset)
        self.localized("Name", classification.name, attributes)
        self.end(start, "</rim:Classification>")

    def node(self, node: str, owner: str, ids: _Ids) -> None:
        self.out.append(
            f'<rim:Classification classifiedObject="{owner}" classificationNode="{node}" id="{ids.next("node")}"/>'
        )

    def document(self, entry: DocumentEntry) -> None:
        ids = _Ids(entry.entry_uuid, entry.unique_id)
        owner = _a(entry.entry_uuid)
        self.out.append(
            f'<rim:ExtrinsicObject id="{owner}" mimeType="{_a(entry.mime_type)}" '
            f'objectType="{_a(entry.object_type.value)}"'
            f"{_status_markup(entry.availability_status, entry.home, entry.logical_id)}>"
        )
        strings = _Strings(entry.localized)
        self.one("creationTime", _wire(entry.creation_time))
        self.one("hash", entry.hash)
        self.one("languageCode", entry.language_code)
        self.one("legalAuthenticator", _wire(entry.legal_authenticator))
        self.one("repositoryUniqueId", entry.repository_unique_id)
        self.one("serviceStartTime", _wire(entry.service_start_time))
        self.one("serviceStopTime", _wire(entry.service_stop_time))
        self.one("size", None if entry.size is None else str(entry.size))
        self.one("sourcePatientId", _wire(entry.source_patient_id))
        self.many("sourcePatientInfo", entry.source_patient_info)
        self.many(REFERENCE_ID_LIST_SLOT, entry.reference_ids)
        self.extra_slots(entry.extra_slots)
        self.localized("Name", entry.title, strings.get("Name"))
        self.localized("Description", entry.comments, strings.get("Description"))
        if entry.version is not None:
            self.out.append(f'<rim:VersionInfo versionName="{_a(entry.version)}"/>')
        if entry.limited_metadata:
            self.node(ClassificationNode.DOCUMENT_ENTRY_LIMITED_METADATA, owner, ids)
        for author in entry.authors:
            self.author(DocumentEntryScheme.AUTHOR, owner, ids, author)
        for scheme, code in _entry_codes(entry):
            self.code(scheme, owner, ids, code, strings)
        if entry.patient_id is not None:
            self.external_id(
                DocumentEntryScheme.PATIENT_ID, owner, ids, entry.patient_id.text, "XDSDocumentEntry.patientId"
            )
        self.external_id(DocumentEntryScheme.UNIQUE_ID, owner, ids, entry.unique_id, "XDSDocumentEntry.uniqueId")
        self.out.append("</rim:ExtrinsicObject>")

    def submission_set(self, ss: SubmissionSet) -> None:
        ids = _Ids(ss.entry_uuid, ss.unique_id)
        owner = _a(ss.entry_uuid)
        self.out.append(
            f'<rim:RegistryPackage id="{owner}"{_status_markup(ss.availability_status, ss.home, ss.logical_id)}>'
        )
        strings = _Strings(ss.localized)
        self.one("submissionTime", ss.submission_time.text)
        self.many("intendedRecipient", ss.intended_recipients)
        self.extra_slots(ss.extra_slots)
        self.localized("Name", ss.title, strings.get("Name"))
        self.localized("Description", ss.comments, strings.get("Description"))
        self.node(ClassificationNode.SUBMISSION_SET, owner, ids)
        if ss.limited_metadata:
            self.node(ClassificationNode.SUBMISSION_SET_LIMITED_METADATA, owner, ids)
        for author in ss.authors:
            self.author(SubmissionSetScheme.AUTHOR, owner, ids, author)
        if ss.content_type_code is not None:
            self.code(SubmissionSetScheme.CONTENT_TYPE_CODE, owner, ids, ss.content_type_code, strings)
        self.external_id(SubmissionSetScheme.UNIQUE_ID, owner, ids, ss.unique_id, "XDSSubmissionSet.uniqueId")
        self.external_id(SubmissionSetScheme.SOURCE_ID, owner, ids, ss.source_id, "XDSSubmissionSet.sourceId")
        if ss.patient_id is not None:
            self.external_id(
                SubmissionSetScheme.PATIENT_ID, owner, ids, ss.patient_id.text, "XDSSubmissionSet.patientId"
            )
        self.out.append("</rim:RegistryPackage>")

    def folder(self, folder: Folder) -> None:
        ids = _Ids(folder.entry_uuid, folder.unique_id)
        owner = _a(folder.entry_uuid)
        status = _status_markup(folder.availability_status, folder.home, folder.logical_id)
        self.out.append(f'<rim:RegistryPackage id="{owner}"{status}>')
        strings = _Strings(folder.localized)
        self.one("lastUpdateTime", _wire(folder.last_update_time))
        self.extra_slots(folder.extra_slots)
        self.localized("Name", folder.title, strings.get("Name"))
        self.localized("Description", folder.comments, strings.get("Description"))
        self.node(ClassificationNode.FOLDER, owner, ids)
        for code in folder.codes:
            self.code(FolderScheme.CODE_LIST, owner, ids, code, strings)
        self.external_id(FolderScheme.UNIQUE_ID, owner, ids, folder.unique_id, "XDSFolder.uniqueId")
        self.external_id(FolderScheme.PATIENT_ID, owner, ids, folder.patient_id.text, "XDSFolder.patientId")
        self.out.append("</rim:RegistryPackage>")

    def association(self, association: Association) -> None:
        start = len(self.out)
        self.out.append(
            f'<rim:Association id="{_a(association.entry_uuid)}" '
            f'associationType="{_a(str(association.association_type))}" '
            f'sourceObject="{_a(association.source_object)}" targetObject="{_a(association.target_object)}"'
            f"{_status_markup(association.availability_status, association.home)}>"
        )
        status = association.submission_set_status
        self.one("SubmissionSetStatus", None if status is None else str(status))
        self.one("PreviousVersion", association.previous_version)
        original = association.original_status
        self.one("OriginalStatus", None if original is None else str(original))
        self.one("NewStatus", None if association.new_status is None else str(association.new_status))
        self.extra_slots(association.extra_slots)
        ids = _Ids(association.entry_uuid, association.source_object + "|" + association.target_object)
        owner = _a(association.entry_uuid)
        for classification in association.classifications:
            self.classification(owner, ids, classification)
        self.end(start, "</rim:Association>")

    def request(self, request: SubmissionRequest) -> None:
        """``rim:RegistryObjectList`` with the request's objects, in the order of :func:`write_registry_objects`."""
        out = self.out
        out.append("<rim:RegistryObjectList>")
        for ref in request.object_refs:
            home = "" if ref.home is None else f' home="{_a(ref.home)}"'
            out.append(f'<rim:ObjectRef id="{_a(ref.id)}"{home}/>')
        self.submission_set(request.submission_set)
        for document in request.documents:
            self.document(document)
        for folder in request.folders:
            self.folder(folder)
        for association in request.associations:
            self.association(association)
        out.append("</rim:RegistryObjectList>")


def _status_markup(status: str | None, home: str | None = None, lid: str | None = None) -> str:
    """The attributes :func:`_status` sets, as markup."""
    text = ""
    if status is not None:
        text += f' status="{_a(str(status))}"'
    if home is not None:
        text += f' home="{_a(home)}"'
    if lid is not None:
        text += f' lid="{_a(lid)}"'
    return text


def _markup_parser() -> etree.XMLParser:  # noqa: TID251 - see below
    # One parser a thread (lxml parsers keep state). The markup is ours, every value escaped: no
    # entities, no DTD, no network; huge_tree so that no value is refused for its length where lxml
    # took it when building.
    parser: etree.XMLParser | None = getattr(_LOCAL_PARSER, "parser", None)  # noqa: TID251
    if parser is None:
        parser = _LOCAL_PARSER.parser = etree.XMLParser(  # noqa: TID251 - our own markup, every value escaped
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True, collect_ids=False
        )
    return parser


def _request_markup(head: str, request: SubmissionRequest, tail: str) -> tuple[bytes, bool]:
    """``head`` + the request's ``rim:RegistryObjectList`` + ``tail`` as UTF-8, and whether a ``rim:Value`` is empty.

    Refuses (ValueError, as lxml raises) a value holding a character lxml refuses: what XML 1.0 excludes.
    """
    markup = _Markup()
    markup.out.append(head)
    markup.request(request)
    markup.out.append(tail)
    text = "".join(markup.out)
    # A lone surrogate fails the encoding (UnicodeEncodeError, a ValueError, as lxml raises).
    try:
        data: bytes | None = text.encode("utf-8")
    except UnicodeEncodeError:
        data = None
    if data is None or not _lxml_text(data, text):
        # Raised outside the handler, so that no error of the chain holds the encoder's, which holds the whole
        # submission (the patient's INS among it).
        raise ValueError("a value holds a character lxml refuses")
    return data, markup.empty_values


def _lxml_text(data: bytes, text: str | None = None) -> bool:
    """Whether UTF-8 ``data`` (the encoding of ``text``, when given) holds none of the other characters lxml refuses
    (:data:`_NOT_LXML_TEXT`).

    In UTF-8 the ASCII controls are their own bytes and U+FFFE, U+FFFF are EF BF BE, EF BF BF, which no
    other character's bytes hold, where the regular expression on the text costs some 100 µs on a 20 kB
    submission (the parser used to find them, but its tree is no longer always built). Each control byte is
    looked for on its own (``memchr``: 29 scans cost less than one ``translate``, which copies every byte), and
    the two characters in ``text`` when it is given: a text of code points below U+0100 (French text, ASCII
    markup) cannot hold them, which CPython tells from the string's width without a scan (issue 22).
    """
    for control in _CONTROLS:
        if control in data:
            return False
    if text is not None:
        return text.isascii() or ("\ufffe" not in text and "\uffff" not in text)
    return data.isascii() or (b"\xef\xbf\xbe" not in data and b"\xef\xbf\xbf" not in data)


_CONTROLS: Final = tuple(bytes([byte]) for byte in _CONTROL_BYTES)


def _parsed_markup(data: bytes, empty_values: bool) -> etree._Element:
    """The tree of markup :func:`_request_markup` wrote (checked: the parser refuses none of it)."""
    root = etree.fromstring(data, _markup_parser())  # noqa: TID251 - our own markup
    if empty_values:
        for value in root.iter(f"{{{RIM}}}Value"):
            if value.text is None:
                value.text = ""
    return root


def _parsed_request(head: str, request: SubmissionRequest, tail: str) -> etree._Element:
    """Parse ``head`` + the request's ``rim:RegistryObjectList`` + ``tail``; refuse what lxml refuses in a value."""
    return _parsed_markup(*_request_markup(head, request, tail))


_SUBMIT_HEAD: Final = f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}">'
_SUBMIT_TAIL: Final = "</lcm:SubmitObjectsRequest>"
_PROVIDE_HEAD: Final = (
    f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{XDSB}" xmlns:lcm="{LCM}" xmlns:rim="{RIM}" '
    f'xmlns:xop="{XOP}"><lcm:SubmitObjectsRequest>'
)
_PROVIDE_TAIL: Final = "</lcm:SubmitObjectsRequest></xdsb:ProvideAndRegisterDocumentSetRequest>"
_PROVIDE_CLOSE: Final = b"</xdsb:ProvideAndRegisterDocumentSetRequest>"


@_xml_safe
def build_submit_objects_request(request: SubmissionRequest) -> etree._Element:
    """The ``lcm:SubmitObjectsRequest`` of ``request``: the body of ITI-57, the core of ITI-41 and XDM::

    <lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
                              xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <rim:RegistryObjectList>
        <rim:RegistryPackage id="SubmissionSet01">…</rim:RegistryPackage>
        <rim:ExtrinsicObject id="Document01" …>…</rim:ExtrinsicObject>
        <rim:Association id="Association01" associationType="…:HasMember" sourceObject="SubmissionSet01"
                         targetObject="Document01">…</rim:Association>
      </rim:RegistryObjectList>
    </lcm:SubmitObjectsRequest>
    """
    return _parsed_request(_SUBMIT_HEAD, request, _SUBMIT_TAIL)


@_xml_safe
def build_provide_and_register_request(
    request: SubmissionRequest, *, inline: Mapping[str, bytes] | None = None
) -> etree._Element:
    """The ITI-41 body: the submission, then one ``xdsb:Document`` per entry pointing at its MTOM part::

    <xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007" …>
      <lcm:SubmitObjectsRequest>…</lcm:SubmitObjectsRequest>
      <xdsb:Document id="Document01"><xop:Include href="cid:1b4e…@dmp-connector"/></xdsb:Document>
      <xdsb:Document id="Signature01"><xop:Include href="cid:77ac…@dmp-connector"/></xdsb:Document>
    </xdsb:ProvideAndRegisterDocumentSetRequest>

    Every document entry needs its Content-ID in ``request.contents``; the bytes travel as
    attachments of :func:`~dmp_connector.soap.encode_mtom` with those ids. A document whose
    bytes are given in ``inline`` (entry id → bytes) is written as base64 text inside its
    ``xdsb:Document`` instead, as a sender without MTOM does (small documents, tests, XDR relays).
    """
    inline = inline or {}
    _require_contents(request, inline)
    root = _parsed_request(_PROVIDE_HEAD, request, _PROVIDE_TAIL)
    for document in request.documents:
        holder = etree.SubElement(root, _xdsb("Document"), id=document.entry_uuid)
        data = inline.get(document.entry_uuid)
        if data is not None:
            holder.text = base64.b64encode(data).decode("ascii")
        else:
            holder.append(xop_include(request.contents[document.entry_uuid]))
    return root


def _require_contents(request: SubmissionRequest, inline: Mapping[str, bytes]) -> None:
    missing = [
        d.entry_uuid for d in request.documents if d.entry_uuid not in request.contents and d.entry_uuid not in inline
    ]
    if missing:
        raise ValidationError(
            "a Provide and Register request needs the MTOM part of every document",
            problems=[f"document {entry_id} has no Content-ID in contents" for entry_id in missing],
        )


def _provide_and_register_markup(request: SubmissionRequest) -> _MarkupBody:
    """:func:`build_provide_and_register_request` without ``inline``, as the markup its element serialises to.

    The same checks in the same order, the same errors; the element is parsed from the markup
    only if it is asked for (see ``soap.envelope._MarkupBody``), so a deposit
    sends the markup as written, without building, copying and serialising its tree.
    """
    _require_contents(request, {})
    data, empty_values = _request_markup(_PROVIDE_HEAD, request, "</lcm:SubmitObjectsRequest>")
    documents = [
        # Both values are in the markup already checked (the entry's id) or ASCII (a cid: URL is percent-encoded).
        f'<xdsb:Document id="{_a(d.entry_uuid)}"><xop:Include href="{_a(_cid_url(request.contents[d.entry_uuid]))}"/>'
        "</xdsb:Document>"
        for d in request.documents
    ]
    data = b"".join((data, "".join(documents).encode("utf-8"), _PROVIDE_CLOSE))
    return _MarkupBody(data, functools.partial(_parsed_markup, empty_values=empty_values))


_provide_and_register_body = _xml_safe(_provide_and_register_markup, "build_provide_and_register_request")


def _write_registry_response(element: etree._Element, response: RegistryResponse) -> None:
    """Set the status of an element of ``rs:RegistryResponseType`` and append its error list."""
    element.set("status", response.status.value)
    if response.request_id is not None:
        element.set("requestId", response.request_id)
    if not response.errors:
        return
    highest = ErrorSeverity.ERROR if any(e.is_error for e in response.errors) else ErrorSeverity.WARNING
    error_list = etree.SubElement(element, _rs("RegistryErrorList"), highestSeverity=highest.value)
    for error in response.errors:
        item = etree.SubElement(
            error_list,
            _rs("RegistryError"),
            codeContext=error.code_context,
            errorCode=str(error.error_code),
            severity=str(error.severity),
        )
        if error.location is not None:
            item.set("location", error.location)


@_xml_safe
def build_registry_response(response: RegistryResponse) -> etree._Element:
    """An ``rs:RegistryResponse`` (what the sandbox answers to ITI-41 and ITI-57)::

    <rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
                         status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure">
      <rs:RegistryErrorList highestSeverity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error">
        <rs:RegistryError codeContext="…" errorCode="XDSUnknownPatientId" severity="…:Error"/>
      </rs:RegistryErrorList>
    </rs:RegistryResponse>
    """
    root = etree.Element(_rs("RegistryResponse"), nsmap={"rs": RS})
    _write_registry_response(root, response)
    return root


# --------------------------------------------------------------------------------------------
# Reading


def _read_root(
    source: bytes | etree._Element, expected: str, what: str, *, limits: XmlLimits = DEFAULT_LIMITS
) -> etree._Element:
    """The root element of a message (parsed by :func:`parse_xml` if given as bytes), checked by name."""
    root = parse_xml(source, limits=limits, what=what) if isinstance(source, bytes | bytearray) else source
    if not isinstance(root, etree._Element):
        raise TypeError(f"{what} is read from bytes or an element parsed by dmp_connector.xml.parse_xml")
    if root.tag != expected:
        raise MalformedResponseError(f"{what} is not a {_local(expected)}: its root element is {_clark(root)}")
    return root


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _clark(element: etree._Element) -> str:
    qname = etree.QName(element)
    return f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname


def _children(element: etree._Element, tag: str | None = None) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str) and (tag is None or c.tag == tag)]


_SCHEMES: dict[str, str] = {}
_SCHEMES_KEPT: Final = 512  # the XDS schemes are a few dozen; a hostile message cannot grow this past the bound


def _scheme(value: str | None) -> str:
    """A scheme UUID compared without whitespace and case (some producers wrap or upper-case them).

    Every classification of every entry names one of a few dozen schemes: each is normalised once.
    """
    if not value:
        return ""
    found = _SCHEMES.get(value)
    if found is None:
        found = "".join(value.split()).lower()
        if len(_SCHEMES) < _SCHEMES_KEPT:
            _SCHEMES[value] = found
    return found


def _attribute(element: etree._Element, name: str, where: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        raise MalformedResponseError(f"{where}: the {_local(str(element.tag))} has no {name} attribute")
    return value.strip()


# Tags compared while reading, made once rather than formatted for every element compared.
_SLOT: Final = _rim("Slot")
_VALUE_LIST: Final = _rim("ValueList")
_VALUE: Final = _rim("Value")
_NAME: Final = _rim("Name")
_DESCRIPTION: Final = _rim("Description")
_LOCALIZED_STRING: Final = _rim("LocalizedString")
_VERSION_INFO: Final = _rim("VersionInfo")
_CLASSIFICATION: Final = _rim("Classification")
_EXTERNAL_IDENTIFIER: Final = _rim("ExternalIdentifier")
_EXTRINSIC_OBJECT: Final = _rim("ExtrinsicObject")
_REGISTRY_PACKAGE: Final = _rim("RegistryPackage")
_ASSOCIATION: Final = _rim("Association")
_OBJECT_REF: Final = _rim("ObjectRef")


class _Interned:
    """The values one answer repeats (the patient, the authors, the codes), each validated once.

    A FindDocuments answer names the same patient, the same few authors and the same codes in
    every entry. Each distinct value is validated the first time it is met and the model reused
    after (the models are frozen, so one instance can stand for every equal value): the same
    checks, run once per value rather than once per entry, and the entries share the memory.
    A value that fails is passed on as it came, so that the entry's own validation refuses it
    and names the field. One ``_Interned`` lives as long as the reading of one message.
    """

    __slots__ = ("_made",)

    def __init__(self) -> None:
        self._made: dict[tuple[object, ...], Any] = {}

    def model(self, model: type[BaseModel], value: Any, key: tuple[object, ...]) -> Any:
        """``model`` validated from ``value`` (cached under ``key``), or ``value`` itself when it fails."""
        cache_key = (model, *key)
        try:
            return self._made[cache_key]
        except KeyError:
            pass
        try:
            made: Any = model.model_validate(value, context=RECEIVED)
        except pydantic.ValidationError:
            made = value
        self._made[cache_key] = made
        return made

    def text(self, model: type[BaseModel], value: str | None) -> Any:
        """A CX, XCN, XON or XDS time read from its wire text (None stays None)."""
        if value is None:
            return None
        made = self._made.get((model, value))  # the key model() makes for (value,)
        return self.model(model, value, (value,)) if made is None else made

    def code(self, code: str, system: str, name: str | None) -> AnyCode:
        """:func:`xds_code`, once per distinct code; raises pydantic's error as it does."""
        cache_key = ("code", code, system, name)
        made: AnyCode | None = self._made.get(cache_key)
        if made is None:
            made = self._made[cache_key] = xds_code(code, system, name)
        return made


@dataclass(slots=True)
class _Classification:
    scheme: str
    node: str
    code: str | None
    classified: str | None
    slots: dict[str, list[str]]
    name: str | None
    lang: str | None = None
    charset: str | None = None
    # The attributes as written, for a classification kept as read (an association's): the
    # strings, not the element, so that no element proxy outlives the walk.
    raw_scheme: str | None = None
    raw_node: str | None = None


@dataclass(slots=True)
class _Object:
    element: etree._Element
    id: str
    where: str
    slots: dict[str, list[str]] = field(default_factory=dict)
    name: str | None = None
    description: str | None = None
    version: str | None = None
    localized: list[TextAttributes] = field(default_factory=list)
    classifications: list[_Classification] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    interned: _Interned = field(default_factory=_Interned)
    _by_scheme: dict[str, list[_Classification]] | None = None

    def classified(self, scheme: str) -> list[_Classification]:
        """The classifications of one scheme, in document order (grouped once, on first use)."""
        if self._by_scheme is None:
            self._by_scheme = {}
            for classification in self.classifications:
                self._by_scheme.setdefault(classification.scheme, []).append(classification)
        return self._by_scheme.get(scheme, [])


# The readers below walk each object's children once, in plain loops with a tag test (cheaper
# than a find() per attribute or iterchildren(tag) per kind): on a FindDocuments answer of
# thousands of entries this walk, more than lxml's parse, is where the time goes.


_NO_STRING: Final = (None, None, None)


def _read_localized(element: etree._Element | None) -> tuple[str | None, str | None, str | None]:
    """The value, ``xml:lang`` and ``charset`` of the first ``LocalizedString`` that has a value."""
    if element is not None:
        for string in element:
            if string.tag == _LOCALIZED_STRING:
                # One call for the usual string that has only its value (no xml:lang, no charset):
                # cheaper than three lookups, two of them for attributes that are not there.
                # (lxml-stubs type attribute values as str | bytes; parsed XML gives str.)
                attributes: list[tuple[str, str]] = string.items()  # type: ignore[assignment]
                if len(attributes) == 1 and attributes[0][0] == "value":
                    return attributes[0][1], None, None
                value = string.get("value")
                if value is not None:
                    return value, string.get(_XML_LANG), string.get("charset")
    return _NO_STRING


def _keep_attributes(obj: _Object, part: str, lang: str | None, charset: str | None) -> None:
    if lang is not None or charset is not None:
        obj.localized.append(TextAttributes(part=part, lang=lang, charset=charset))


def _read_classification(element: etree._Element, where: str) -> _Classification:
    slots: dict[str, list[str]] = {}
    name: etree._Element | None = None
    for child in element:
        tag = child.tag
        if tag == _SLOT:
            # A rim:Slot, read as in _read_object (every code of every entry has its codingScheme slot).
            slot_name = child.get("name")
            slot_name = slot_name.strip() if slot_name else ""
            if not slot_name:
                raise MalformedResponseError(f"{where}: the Slot has no name attribute")
            if slot_name in slots:
                raise MalformedResponseError(f"{where}: the slot {slot_name} appears twice")
            values: list[str] = []
            for value_list in child:
                if value_list.tag == _VALUE_LIST:
                    for item in value_list:
                        if item.tag == _VALUE:
                            values.append((item.text or "").strip())
            slots[slot_name] = values
        elif tag == _NAME and name is None:
            name = child
    get = element.get
    value, lang, charset = _read_localized(name)
    scheme, node = get("classificationScheme"), get("classificationNode")
    # Positional: this runs for every code of every entry, and keywords cost more. The scheme is
    # looked up where _scheme() keeps it (no call for the few dozen schemes met before), and a
    # code's classification has no node (no call either).
    return _Classification(
        (_SCHEMES.get(scheme) or _scheme(scheme)) if scheme else "",
        _scheme(node) if node else "",
        get("nodeRepresentation"),
        get("classifiedObject"),
        slots,
        value,
        lang,
        charset,
        scheme,
        node,
    )


def _read_object(element: etree._Element, kind: str, interned: _Interned | None = None) -> _Object:
    raw_id = element.get("id")
    where = f"{kind} {raw_id}" if raw_id else kind
    entry_id = raw_id.strip() if raw_id else ""
    if not entry_id:
        raise MalformedResponseError(f"{where}: the {_local(str(element.tag))} has no id attribute")
    obj = _Object(element=element, id=entry_id, where=where, interned=interned or _Interned())
    slots, classifications, identifiers = obj.slots, obj.classifications, obj.identifiers
    name: etree._Element | None = None
    description: etree._Element | None = None
    version: etree._Element | None = None
    for child in element:
        tag = child.tag
        if tag == _SLOT:
            # A rim:Slot: its name (a name twice is refused) and its ValueList/Value texts, trimmed (a
            # CX on its own indented line is the same CX), as ebRIM readers and the XDS registries do.
            # Written out here and in _read_classification rather than called: an entry has some
            # fifteen slots and seven codes, and in Python 3.11 a call costs more than this body.
            slot_name = child.get("name")
            slot_name = slot_name.strip() if slot_name else ""
            if not slot_name:
                raise MalformedResponseError(f"{where}: the Slot has no name attribute")
            if slot_name in slots:
                raise MalformedResponseError(f"{where}: the slot {slot_name} appears twice")
            values: list[str] = []
            for value_list in child:
                if value_list.tag == _VALUE_LIST:
                    for value in value_list:
                        if value.tag == _VALUE:
                            values.append((value.text or "").strip())
            slots[slot_name] = values
        elif tag == _CLASSIFICATION:
            classifications.append(_read_classification(child, where))
        elif tag == _EXTERNAL_IDENTIFIER:
            identifiers.append((_scheme(child.get("identificationScheme")), _attribute(child, "value", where)))
        elif tag == _NAME:
            name = child if name is None else name
        elif tag == _DESCRIPTION:
            description = child if description is None else description
        elif tag == _VERSION_INFO:
            version = child if version is None else version
    obj.name, lang, charset = _read_localized(name)
    if lang is not None or charset is not None:
        _keep_attributes(obj, "Name", lang, charset)
    obj.description, lang, charset = _read_localized(description)
    if lang is not None or charset is not None:
        _keep_attributes(obj, "Description", lang, charset)
    obj.version = version.get("versionName") if version is not None else None
    return obj


def _single(obj: _Object, slots: Mapping[str, list[str]], name: str) -> str | None:
    values = slots.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise MalformedResponseError(f"{obj.where}: the slot {name} must hold exactly one value")
    return values[0]


def _identifier(obj: _Object, scheme: str, name: str, *, required: bool = True) -> str | None:
    found: list[str] = []
    for s, value in obj.identifiers:  # a loop, not a comprehension: no extra call per entry (Python 3.11)
        if s == scheme:
            found.append(value)
    if len(found) > 1:
        raise MalformedResponseError(f"{obj.where}: {name} appears more than once")
    if not found:
        if required:
            raise MalformedResponseError(f"{obj.where} has no {name} (ExternalIdentifier {scheme})")
        return None
    return found[0]


def _codes(obj: _Object, scheme: str, name: str) -> list[AnyCode]:
    codes: list[AnyCode] = []
    code = obj.interned.code
    for index, classification in enumerate(obj.classified(scheme)):
        if classification.lang is not None or classification.charset is not None:
            obj.localized.append(
                TextAttributes(part=f"{scheme}#{index}", lang=classification.lang, charset=classification.charset)
            )
        # _single(obj, classification.slots, "codingScheme"), written out: this runs for every code.
        systems = classification.slots.get("codingScheme")
        if systems is not None and len(systems) != 1:
            raise MalformedResponseError(f"{obj.where}: the slot codingScheme must hold exactly one value")
        system = systems[0] if systems is not None else None
        if not classification.code or system is None:
            raise MalformedResponseError(
                f"{obj.where}: a {name} classification lacks nodeRepresentation or codingScheme"
            )
        try:
            codes.append(code(classification.code, system, classification.name))
        except pydantic.ValidationError as exc:
            # pydantic's own message quotes the value received: only the location and the rule are kept.
            raise MalformedResponseError(f"{obj.where}: a {name} code is not valid ({_first_error(exc)})") from None
    return codes


def _one_code(obj: _Object, scheme: str, name: str) -> AnyCode | None:
    codes = _codes(obj, scheme, name)
    if len(codes) > 1:
        raise MalformedResponseError(f"{obj.where}: {name} appears more than once")
    return codes[0] if codes else None


_AUTHOR_SLOT_NAMES: Final = frozenset(
    {"authorPerson", "authorInstitution", "authorRole", "authorSpecialty", "authorTelecommunication"}
)


def _authors(obj: _Object, scheme: str) -> list[Any]:
    """The author classifications as :class:`Author` models (or as dicts, for the entry to refuse)."""
    authors: list[Any] = []
    for classification in obj.classified(scheme):
        slots = classification.slots
        person = _single(obj, slots, "authorPerson")
        # A set difference in C: most authors have only TF-3's five slots, and then nothing is built.
        others = slots.keys() - _AUTHOR_SLOT_NAMES
        extra = tuple((name, tuple(slots[name])) for name in slots if name in others) if others else ()
        data: dict[str, Any] = {
            "person": person or None,
            "institutions": tuple(slots.get("authorInstitution", [])),
            "roles": tuple(slots.get("authorRole", [])),
            "specialties": tuple(slots.get("authorSpecialty", [])),
            "telecommunications": tuple(slots.get("authorTelecommunication", [])),
        }
        key = (*data.values(), extra)
        if extra:
            data["extra_slots"] = tuple({"name": name, "values": values} for name, values in extra)
        authors.append(obj.interned.model(Author, data, key))
    return authors


def _extras(obj: _Object, modelled: frozenset[str]) -> tuple[Any, ...]:
    """The slots no field holds, as :class:`Slot` models (or as dicts, for the entry to refuse)."""
    known = modelled
    if not obj.slots.keys() - known:  # the usual case: every slot has its field
        return ()
    extras = []
    for name, values in obj.slots.items():
        if name not in known:
            data = {"name": name, "values": tuple(values)}
            extras.append(obj.interned.model(Slot, data, (name, *values)))
    return tuple(extras)


def _first_error(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}" for error in exc.errors()[:3]
    )


def _validated(model: type[M], data: Mapping[str, Any], where: str) -> M:
    """Validate received metadata, turning pydantic's error into ours (locations and rules, no values)."""
    try:
        return model.model_validate(data, context=RECEIVED)
    except pydantic.ValidationError as exc:
        # pydantic's own message quotes the values received (a patientId, an author's name): not chained.
        raise MalformedResponseError(f"{where} is not valid XDS metadata: {_first_error(exc)}") from None


_DOCUMENT_SLOT_NAMES: Final = (
    "creationTime",
    "hash",
    "languageCode",
    "legalAuthenticator",
    "repositoryUniqueId",
    "serviceStartTime",
    "serviceStopTime",
    "size",
    "sourcePatientId",
    "sourcePatientInfo",
    REFERENCE_ID_LIST_SLOT,
)


_DOCUMENT_SLOTS_KNOWN: Final = frozenset(_DOCUMENT_SLOT_NAMES)
_ASSOCIATION_SLOTS_KNOWN: Final = frozenset(("SubmissionSetStatus", "PreviousVersion", "OriginalStatus", "NewStatus"))


_ENTRY_TYPES: Final = {kind.value: kind for kind in DocumentEntryType}


def _document(obj: _Object) -> DocumentEntry:
    element, slots, interned = obj.element, obj.slots, obj.interned
    object_type = element.get("objectType")
    entry_type = _ENTRY_TYPES.get(_scheme(object_type)) if object_type else DocumentEntryType.STABLE
    if entry_type is None:
        raise MalformedResponseError(f"{obj.where}: objectType is neither stable nor on-demand")
    size = _single(obj, slots, "size")
    if size is not None and not size.strip().isdigit():
        raise MalformedResponseError(f"{obj.where}: the size slot is not a number of bytes")
    data: dict[str, Any] = {
        "entry_uuid": obj.id,
        "unique_id": _identifier(obj, DocumentEntryScheme.UNIQUE_ID, "uniqueId"),
        "patient_id": interned.text(Cx, _identifier(obj, DocumentEntryScheme.PATIENT_ID, "patientId", required=False)),
        "mime_type": element.get("mimeType") or _DEFAULT_MIME_TYPE,
        "object_type": entry_type,
        "availability_status": element.get("status"),
        "logical_id": element.get("lid") or None,
        "version": obj.version,
        "class_code": _one_code(obj, DocumentEntryScheme.CLASS_CODE, "classCode"),
        "type_code": _one_code(obj, DocumentEntryScheme.TYPE_CODE, "typeCode"),
        "format_code": _one_code(obj, DocumentEntryScheme.FORMAT_CODE, "formatCode"),
        "healthcare_facility_type_code": _one_code(
            obj, DocumentEntryScheme.HEALTHCARE_FACILITY_TYPE_CODE, "healthcareFacilityTypeCode"
        ),
        "practice_setting_code": _one_code(obj, DocumentEntryScheme.PRACTICE_SETTING_CODE, "practiceSettingCode"),
        "confidentiality_codes": tuple(_codes(obj, DocumentEntryScheme.CONFIDENTIALITY_CODE, "confidentialityCode")),
        "event_codes": tuple(_codes(obj, DocumentEntryScheme.EVENT_CODE_LIST, "eventCodeList")),
        "authors": tuple(_authors(obj, DocumentEntryScheme.AUTHOR)),
        "legal_authenticator": interned.text(Xcn, _single(obj, slots, "legalAuthenticator") or None),
        "creation_time": interned.text(XdsTime, _single(obj, slots, "creationTime")),
        "service_start_time": interned.text(XdsTime, _single(obj, slots, "serviceStartTime")),
        "service_stop_time": interned.text(XdsTime, _single(obj, slots, "serviceStopTime")),
        "language_code": _single(obj, slots, "languageCode"),
        "hash": _single(obj, slots, "hash"),
        "size": int(size) if size is not None else None,
        "title": obj.name,
        "comments": obj.description,
        "source_patient_id": interned.text(Cx, _single(obj, slots, "sourcePatientId")),
        "source_patient_info": tuple(slots.get("sourcePatientInfo", [])),
        "repository_unique_id": _single(obj, slots, "repositoryUniqueId"),
        "reference_ids": tuple(slots.get(REFERENCE_ID_LIST_SLOT, [])),
        "extra_slots": _extras(obj, _DOCUMENT_SLOTS_KNOWN),
    }
    # What most answers lack is left to the defaults: a field not given costs no validation.
    if obj.localized:
        data["localized"] = tuple(obj.localized)
    if _flagged(obj, ClassificationNode.DOCUMENT_ENTRY_LIMITED_METADATA):
        data["limited_metadata"] = True
    home = _home(element)
    if home is not None:
        data["home"] = home
    return _validated(DocumentEntry, data, obj.where)


def _flagged(obj: _Object, node: str) -> bool:
    # Internal classifications (a node, no scheme) are grouped under "": usually none on an entry.
    internal = obj.classified("")
    return bool(internal) and any(classification.node == node for classification in internal)


def _home(element: etree._Element) -> str | None:
    home = element.get("home")
    return home.strip() or None if home is not None else None


def _submission_set(obj: _Object) -> SubmissionSet:
    slots = obj.slots
    submission_time = _single(obj, slots, "submissionTime")
    if submission_time is None:
        raise MalformedResponseError(f"{obj.where} has no submissionTime")
    data: dict[str, Any] = {
        "entry_uuid": obj.id,
        "unique_id": _identifier(obj, SubmissionSetScheme.UNIQUE_ID, "uniqueId"),
        "source_id": _identifier(obj, SubmissionSetScheme.SOURCE_ID, "sourceId"),
        "patient_id": _identifier(obj, SubmissionSetScheme.PATIENT_ID, "patientId", required=False),
        "limited_metadata": _flagged(obj, ClassificationNode.SUBMISSION_SET_LIMITED_METADATA),
        "logical_id": _lid(obj.element),
        "home": _home(obj.element),
        "submission_time": submission_time,
        "content_type_code": _one_code(obj, SubmissionSetScheme.CONTENT_TYPE_CODE, "contentTypeCode"),
        "authors": tuple(_authors(obj, SubmissionSetScheme.AUTHOR)),
        "title": obj.name,
        "comments": obj.description,
        "intended_recipients": tuple(slots.get("intendedRecipient", [])),
        "availability_status": obj.element.get("status"),
        "extra_slots": _extras(obj, frozenset(("submissionTime", "intendedRecipient"))),
        "localized": tuple(obj.localized),
    }
    return _validated(SubmissionSet, data, obj.where)


def _lid(element: etree._Element) -> str | None:
    lid = element.get("lid")
    return lid.strip() or None if lid is not None else None


def _folder(obj: _Object) -> Folder:
    slots = obj.slots
    data: dict[str, Any] = {
        "entry_uuid": obj.id,
        "unique_id": _identifier(obj, FolderScheme.UNIQUE_ID, "uniqueId"),
        "patient_id": _identifier(obj, FolderScheme.PATIENT_ID, "patientId"),
        "codes": tuple(_codes(obj, FolderScheme.CODE_LIST, "codeList")),
        "title": obj.name,
        "comments": obj.description,
        "last_update_time": _single(obj, slots, "lastUpdateTime"),
        "availability_status": obj.element.get("status"),
        "logical_id": _lid(obj.element),
        "home": _home(obj.element),
        "extra_slots": _extras(obj, frozenset(("lastUpdateTime",))),
        "localized": tuple(obj.localized),
    }
    return _validated(Folder, data, obj.where)


def _association(element: etree._Element, interned: _Interned | None = None) -> Association:
    obj = _read_object(element, "Association", interned)
    slots = obj.slots
    data: dict[str, Any] = {
        "entry_uuid": obj.id,
        "association_type": _attribute(element, "associationType", obj.where),
        "source_object": _attribute(element, "sourceObject", obj.where),
        "target_object": _attribute(element, "targetObject", obj.where),
        "submission_set_status": _single(obj, slots, "SubmissionSetStatus"),
        "previous_version": _single(obj, slots, "PreviousVersion"),
        "original_status": _single(obj, slots, "OriginalStatus"),
        "new_status": _single(obj, slots, "NewStatus"),
        "availability_status": element.get("status"),
        "home": _home(element),
        "classifications": tuple(_kept(c) for c in obj.classifications),
        "extra_slots": _extras(obj, _ASSOCIATION_SLOTS_KNOWN),
    }
    return _validated(Association, data, obj.where)


def _kept(classification: _Classification) -> dict[str, Any]:
    """A classification no field holds, as the data of a :class:`Classification`."""
    scheme, node = classification.raw_scheme, classification.raw_node
    return {
        "scheme": scheme.strip() or None if scheme else None,
        "node": node.strip() or None if node else None,
        "node_representation": classification.code,
        "slots": tuple({"name": name, "values": tuple(values)} for name, values in classification.slots.items()),
        "name": classification.name,
        "name_lang": classification.lang,
        "name_charset": classification.charset,
    }


@dataclass
class RegistryObjects:
    """What a ``rim:RegistryObjectList`` holds, typed, in document order within each kind."""

    submission_sets: list[SubmissionSet] = field(default_factory=list)
    documents: list[DocumentEntry] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    object_refs: list[ObjectRef] = field(default_factory=list)


_SS_IDENTIFIERS: Final = frozenset({SubmissionSetScheme.UNIQUE_ID.value, SubmissionSetScheme.SOURCE_ID.value})
_FOLDER_IDENTIFIERS: Final = frozenset({FolderScheme.UNIQUE_ID.value})


def read_registry_objects(registry_object_list: etree._Element) -> RegistryObjects:
    """Read a ``rim:RegistryObjectList`` into typed objects.

    Classifications and external identifiers may sit inside their object or next to it in the
    list (``classifiedObject`` / ``registryObject`` say whose they are): both are read. A
    ``rim:RegistryPackage`` is a submission set or a folder by its classification node (or, when
    a producer left it out, by its identifiers). Unknown kinds of objects are skipped.
    """
    loose_classifications: dict[str, list[_Classification]] = {}
    loose_identifiers: dict[str, list[tuple[str, str]]] = {}
    children = [child for child in registry_object_list if isinstance(child.tag, str)]
    for child in children:
        tag = child.tag
        if tag == _CLASSIFICATION:
            classification = _read_classification(child, "a list-level Classification")
            owner = classification.classified or ""
            loose_classifications.setdefault(owner, []).append(classification)
        elif tag == _EXTERNAL_IDENTIFIER:
            owner = child.get("registryObject") or ""
            scheme = _scheme(child.get("identificationScheme"))
            loose_identifiers.setdefault(owner, []).append((scheme, _attribute(child, "value", "ExternalIdentifier")))

    found = RegistryObjects()
    interned = _Interned()
    for child in children:
        tag = child.tag
        if tag in (_EXTRINSIC_OBJECT, _REGISTRY_PACKAGE):
            obj = _read_object(child, "DocumentEntry" if tag == _EXTRINSIC_OBJECT else "RegistryPackage", interned)
            if loose_classifications:
                obj.classifications += loose_classifications.get(obj.id, [])
            if loose_identifiers:
                obj.identifiers += loose_identifiers.get(obj.id, [])
            if tag == _EXTRINSIC_OBJECT:
                found.documents.append(_document(obj))
            else:
                _read_package(obj, found)
        elif tag == _OBJECT_REF:
            data = {"id": _attribute(child, "id", "ObjectRef"), "home": child.get("home") or None}
            found.object_refs.append(_validated(ObjectRef, data, "ObjectRef"))
        elif tag == _ASSOCIATION:
            found.associations.append(_association(child, interned))
    return found


def _read_package(obj: _Object, found: RegistryObjects) -> None:
    nodes = {c.node for c in obj.classifications if c.node}
    schemes = {scheme for scheme, _ in obj.identifiers}
    if ClassificationNode.SUBMISSION_SET.value in nodes or (not nodes and schemes & _SS_IDENTIFIERS):
        obj.where = obj.where.replace("RegistryPackage", "SubmissionSet", 1)
        found.submission_sets.append(_submission_set(obj))
    elif ClassificationNode.FOLDER.value in nodes or (not nodes and schemes & _FOLDER_IDENTIFIERS):
        obj.where = obj.where.replace("RegistryPackage", "Folder", 1)
        found.folders.append(_folder(obj))
    else:
        raise MalformedResponseError(f"{obj.where} is neither a submission set nor a folder")


def parse_submit_objects_request(
    source: bytes | etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS
) -> SubmissionRequest:
    """Read an ``lcm:SubmitObjectsRequest`` (ITI-57 body, XDM ``METADATA.XML``) into a :class:`SubmissionRequest`.

    The shapes are checked; the submission rules are not (call ``.problems()``), so that a
    registry simulator can answer with the right XDS error rather than a parse failure.
    """
    what = "the SubmitObjectsRequest"
    root = _read_root(source, f"{{{LCM}}}SubmitObjectsRequest", what, limits=limits)
    return _submission_from(root, what)


def _submission_from(root: etree._Element, what: str, contents: Mapping[str, str] | None = None) -> SubmissionRequest:
    lists = _children(root, _rim("RegistryObjectList"))
    if len(lists) != 1:
        raise MalformedResponseError(f"{what} must hold one rim:RegistryObjectList")
    objects = read_registry_objects(lists[0])
    if len(objects.submission_sets) != 1:
        raise MalformedResponseError(
            f"{what} holds {len(objects.submission_sets)} submission sets; a submission has exactly one"
        )
    data = {
        "submission_set": objects.submission_sets[0],
        "documents": tuple(objects.documents),
        "folders": tuple(objects.folders),
        "associations": tuple(objects.associations),
        "object_refs": tuple(objects.object_refs),
        "contents": dict(contents or {}),
    }
    return _validated(SubmissionRequest, data, what)


def parse_provide_and_register_request(
    source: bytes | etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS
) -> tuple[SubmissionRequest, dict[str, etree._Element]]:
    """Read an ITI-41 body: the submission, and each ``xdsb:Document`` element by entry id.

    Give a document's element and the message's attachments to
    :func:`~dmp_connector.soap.resolve_xop` for its bytes. ``contents`` of the submission names
    the MTOM part of each document sent as an ``xop:Include``.
    """
    what = "the ProvideAndRegisterDocumentSetRequest"
    root = _read_root(source, _xdsb("ProvideAndRegisterDocumentSetRequest"), what, limits=limits)
    documents: dict[str, etree._Element] = {}
    contents: dict[str, str] = {}
    for element in _children(root, _xdsb("Document")):
        entry_id = _attribute(element, "id", f"{what}: an xdsb:Document")
        if entry_id in documents:
            raise MalformedResponseError(f"{what} carries the document {entry_id} twice")
        documents[entry_id] = element
        include = element.find(f"{{{XOP}}}Include")
        href = include.get("href", "") if include is not None else ""
        if href[:4].lower() == "cid:" and href[4:]:
            contents[entry_id] = unquote(href[4:])
    requests = _children(root, f"{{{LCM}}}SubmitObjectsRequest")
    if len(requests) != 1:
        raise MalformedResponseError(f"{what} must hold one lcm:SubmitObjectsRequest")
    return _submission_from(requests[0], what, contents), documents


def _read_registry_response(element: etree._Element, what: str) -> RegistryResponse:
    """The status and errors of any element of ``rs:RegistryResponseType``."""
    raw = (element.get("status") or "").strip()
    if raw == _OASIS_PARTIAL_SUCCESS:
        raw = ResponseStatus.PARTIAL_SUCCESS.value
    try:
        status = ResponseStatus(raw)
    except ValueError:
        raise MalformedResponseError(
            f"{what} has an unknown status" + (f" {raw[:120]}" if raw else " (none)"),
            hint="XDS answers Success, Failure or PartialSuccess (urn:…:ResponseStatusType:…)",
        ) from None
    errors: list[RegistryError] = []
    for error_list in _children(element, _rs("RegistryErrorList")):
        for item in _children(error_list, _rs("RegistryError")):
            data = {
                "error_code": item.get("errorCode") or "",
                "code_context": item.get("codeContext") or (item.text or "").strip(),
                "severity": item.get("severity") or ErrorSeverity.ERROR,
                "location": item.get("location"),
            }
            errors.append(_validated(RegistryError, data, f"{what}: a RegistryError"))
    return RegistryResponse(status=status, errors=tuple(errors), request_id=element.get("requestId"))


def parse_registry_response(source: bytes | etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS) -> RegistryResponse:
    """Read an ``rs:RegistryResponse`` (the ITI-41 and ITI-57 answers); an unknown status is refused."""
    what = "the RegistryResponse"
    return _read_registry_response(_read_root(source, _rs("RegistryResponse"), what, limits=limits), what)


# --------------------------------------------------------------------------------------------
# ITI-43 Retrieve Document Set

_RETRIEVE_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")


class DocumentRequest(BaseModel):
    """One document to retrieve: the repository that holds it and its uniqueId."""

    model_config = _RETRIEVE_FROZEN

    repository_unique_id: str = Field(min_length=1, max_length=256)
    """The entry's repositoryUniqueId (the DMP: ``1.2.250.1.213.4.1.1.1.2``)."""
    document_unique_id: str = Field(min_length=1, max_length=256)
    """The entry's uniqueId."""
    home_community_id: str | None = Field(default=None, min_length=1, max_length=256)
    """homeCommunityId, for cross-community retrieval only."""


class RetrieveDocumentSetRequest(BaseModel):
    """The body of ITI-43: one or more documents to retrieve."""

    model_config = _RETRIEVE_FROZEN

    documents: tuple[DocumentRequest, ...] = Field(min_length=1)
    """The documents, in the order the answer should list them."""


class RetrievedDocument(BaseModel):
    """One document of an ITI-43 answer: its ids and type, and its bytes once resolved.

    ``content_id`` names the MTOM part (absent when a server sent base64 inline); ``content``
    is filled when :func:`parse_retrieve_document_set_response` is given the attachments.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", arbitrary_types_allowed=True)

    repository_unique_id: str = Field(min_length=1, max_length=256)
    """RepositoryUniqueId."""
    document_unique_id: str = Field(min_length=1, max_length=256)
    """DocumentUniqueId."""
    mime_type: str = Field(min_length=1, max_length=256)
    """mimeType."""
    home_community_id: str | None = None
    """HomeCommunityId, if given."""
    new_repository_unique_id: str | None = None
    """NewRepositoryUniqueId (on-demand documents made persistent)."""
    new_document_unique_id: str | None = None
    """NewDocumentUniqueId (on-demand documents)."""
    content_id: str | None = None
    """Content-ID of the MTOM part holding the bytes."""
    content: Attachment | None = Field(default=None, repr=False, exclude=True)
    """The bytes, as an :class:`~dmp_connector.soap.Attachment`, when resolved; never shown in reprs."""


class RetrieveDocumentSetResponse(BaseModel):
    """An ITI-43 answer: the registry response (status, errors) and the documents returned."""

    model_config = _RETRIEVE_FROZEN

    response: RegistryResponse
    """Status and errors; PartialSuccess when some documents could not be returned."""
    documents: tuple[RetrievedDocument, ...] = ()
    """The documents returned."""


@_xml_safe
def build_retrieve_document_set_request(request: RetrieveDocumentSetRequest) -> etree._Element:
    """The ITI-43 body::

    <xdsb:RetrieveDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">
      <xdsb:DocumentRequest>
        <xdsb:RepositoryUniqueId>1.2.250.1.213.4.1.1.1.2</xdsb:RepositoryUniqueId>
        <xdsb:DocumentUniqueId>1.2.250.1.999.7.2</xdsb:DocumentUniqueId>
      </xdsb:DocumentRequest>
    </xdsb:RetrieveDocumentSetRequest>
    """
    root = etree.Element(_xdsb("RetrieveDocumentSetRequest"), nsmap={"xdsb": XDSB})
    for document in request.documents:
        item = etree.SubElement(root, _xdsb("DocumentRequest"))
        if document.home_community_id is not None:
            etree.SubElement(item, _xdsb("HomeCommunityId")).text = document.home_community_id
        etree.SubElement(item, _xdsb("RepositoryUniqueId")).text = document.repository_unique_id
        etree.SubElement(item, _xdsb("DocumentUniqueId")).text = document.document_unique_id
    return root


def _text(parent: etree._Element, tag: str, where: str, *, required: bool = True) -> str | None:
    element = parent.find(_xdsb(tag))
    value = (element.text or "").strip() if element is not None else ""
    if not value:
        if required:
            raise MalformedResponseError(f"{where} has no {tag}")
        return None
    return value


def parse_retrieve_document_set_request(
    source: bytes | etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS
) -> RetrieveDocumentSetRequest:
    """Read an ITI-43 request (what the sandbox receives)."""
    what = "the RetrieveDocumentSetRequest"
    root = _read_root(source, _xdsb("RetrieveDocumentSetRequest"), what, limits=limits)
    documents = []
    for item in _children(root, _xdsb("DocumentRequest")):
        data = {
            "repository_unique_id": _text(item, "RepositoryUniqueId", what),
            "document_unique_id": _text(item, "DocumentUniqueId", what),
            "home_community_id": _text(item, "HomeCommunityId", what, required=False),
        }
        documents.append(_validated(DocumentRequest, data, f"{what}: a DocumentRequest"))
    return _validated(RetrieveDocumentSetRequest, {"documents": tuple(documents)}, what)


@_xml_safe
def build_retrieve_document_set_response(response: RetrieveDocumentSetResponse) -> etree._Element:
    """An ITI-43 answer whose documents are ``xop:Include`` references to MTOM parts (or, for a
    document with ``content`` and no ``content_id``, its bytes inline in base64)::

    <xdsb:RetrieveDocumentSetResponse xmlns:xdsb="urn:ihe:iti:xds-b:2007" …>
      <rs:RegistryResponse status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>
      <xdsb:DocumentResponse>
        <xdsb:RepositoryUniqueId>1.2.250.1.213.4.1.1.1.2</xdsb:RepositoryUniqueId>
        <xdsb:DocumentUniqueId>1.2.250.1.999.7.2</xdsb:DocumentUniqueId>
        <xdsb:mimeType>text/xml</xdsb:mimeType>
        <xdsb:Document><xop:Include href="cid:…"/></xdsb:Document>
      </xdsb:DocumentResponse>
    </xdsb:RetrieveDocumentSetResponse>
    """
    root = etree.Element(_xdsb("RetrieveDocumentSetResponse"), nsmap={"xdsb": XDSB, "rs": RS, "xop": XOP})
    _write_registry_response(etree.SubElement(root, _rs("RegistryResponse")), response.response)
    for document in response.documents:
        if document.content_id is None and document.content is None:
            raise ValidationError(f"document {document.document_unique_id} has no content_id to refer to")
        item = etree.SubElement(root, _xdsb("DocumentResponse"))
        if document.home_community_id is not None:
            etree.SubElement(item, _xdsb("HomeCommunityId")).text = document.home_community_id
        etree.SubElement(item, _xdsb("RepositoryUniqueId")).text = document.repository_unique_id
        etree.SubElement(item, _xdsb("DocumentUniqueId")).text = document.document_unique_id
        if document.new_repository_unique_id is not None:
            etree.SubElement(item, _xdsb("NewRepositoryUniqueId")).text = document.new_repository_unique_id
        if document.new_document_unique_id is not None:
            etree.SubElement(item, _xdsb("NewDocumentUniqueId")).text = document.new_document_unique_id
        etree.SubElement(item, _xdsb("mimeType")).text = document.mime_type
        holder = etree.SubElement(item, _xdsb("Document"))
        if document.content_id is not None:
            holder.append(xop_include(document.content_id))
        elif document.content is not None:
            holder.text = base64.b64encode(document.content.read()).decode("ascii")
    return root


def parse_retrieve_document_set_response(
    source: bytes | etree._Element,
    attachments: Mapping[str, Attachment] | None = None,
    *,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> RetrieveDocumentSetResponse:
    """Read an ITI-43 answer; with the message's ``attachments`` each document's ``content`` is resolved.

    A document sent as base64 inside the XML (a server that does not use MTOM) is always resolved,
    into an in-memory attachment: its bytes are in the message. Without ``attachments``, an
    ``xop:Include`` gives only its ``content_id``.
    """
    what = "the RetrieveDocumentSetResponse"
    root = _read_root(source, _xdsb("RetrieveDocumentSetResponse"), what, limits=limits)
    responses = _children(root, _rs("RegistryResponse"))
    if len(responses) != 1:
        raise MalformedResponseError(f"{what} must hold one rs:RegistryResponse")
    registry_response = _read_registry_response(responses[0], what)
    documents = []
    for item in _children(root, _xdsb("DocumentResponse")):
        where = f"{what}: a DocumentResponse"
        holder = item.find(_xdsb("Document"))
        if holder is None:
            raise MalformedResponseError(f"{where} has no Document")
        include = holder.find(f"{{{XOP}}}Include")
        href = include.get("href", "") if include is not None else ""
        data: dict[str, Any] = {
            "repository_unique_id": _text(item, "RepositoryUniqueId", where),
            "document_unique_id": _text(item, "DocumentUniqueId", where),
            "mime_type": _text(item, "mimeType", where),
            "home_community_id": _text(item, "HomeCommunityId", where, required=False),
            "new_repository_unique_id": _text(item, "NewRepositoryUniqueId", where, required=False),
            "new_document_unique_id": _text(item, "NewDocumentUniqueId", where, required=False),
            "content_id": unquote(href[4:]) if href[:4].lower() == "cid:" and href[4:] else None,
        }
        if attachments is not None or include is None:
            data["content"] = resolve_xop(holder, attachments or {})
        documents.append(_validated(RetrievedDocument, data, where))
    return RetrieveDocumentSetResponse(response=registry_response, documents=tuple(documents))
