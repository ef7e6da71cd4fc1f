"""ITI-18 stored queries: typed requests, and the ``AdhocQueryRequest``/``AdhocQueryResponse`` messages.

Each stored query the DMP client needs is a model whose fields are the query's parameters
(:class:`FindDocumentsQuery`, :class:`GetDocumentsQuery` …); any of the thirteen ids can also be
sent as a :class:`StoredQuery` with raw parameter values. Values are written in the ITI-18
syntax: strings quoted with ``'`` (a quote inside doubled), times as bare digits, lists in
parentheses, codes as ``'code^^codingScheme'``::

    <query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" …>
      <query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>
      <rim:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d">
        <rim:Slot name="$XDSDocumentEntryPatientId">
          <rim:ValueList><rim:Value>'248092327650415^^^&amp;1.2.250.1.213.1.4.8&amp;ISO^NH'</rim:Value>…
        <rim:Slot name="$XDSDocumentEntryStatus">
          <rim:ValueList><rim:Value>('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')</rim:Value>…
        <rim:Slot name="$XDSDocumentEntryCreationTimeFrom"><rim:ValueList><rim:Value>20250101</rim:Value>…
      </rim:AdhocQuery>
    </query:AdhocQueryRequest>

Reading a request (the sandbox's side) parses every value with the same grammar and refuses
what does not fit it — a value that tries to close its quote early, as an injection would, is an
error, not a string — with :class:`~dmp_connector.xds.errors.StoredQueryError` carrying the XDS
code to answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, Self, cast

import pydantic
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector.errors import MalformedResponseError, ValidationError
from dmp_connector.soap.namespaces import QUERY, RIM, RS
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits

from .ebrim import (
    _read_registry_response,
    _read_root,
    _write_registry_response,
    _xml_safe,
    read_registry_objects,
    write_registry_objects,
)
from .errors import RegistryResponse, StoredQueryError
from .model import (
    AnyCode,
    Association,
    Cx,
    DocumentEntry,
    Folder,
    ObjectRef,
    Status,
    SubmissionSet,
    XdsTime,
    _known,
    xds_code,
)
from .vocabulary import (
    AssociationType,
    AvailabilityStatus,
    DocumentEntryType,
    RegistryErrorCode,
    ReturnType,
    StoredQueryId,
)

__all__ = [
    "AdhocQueryRequest",
    "AdhocQueryResponse",
    "FindDocumentsQuery",
    "FindSubmissionSetsQuery",
    "GetAssociationsQuery",
    "GetDocumentsAndAssociationsQuery",
    "GetDocumentsQuery",
    "GetRelatedDocumentsQuery",
    "GetSubmissionSetAndContentsQuery",
    "GetSubmissionSetsQuery",
    "QueryParameter",
    "StoredQuery",
    "TypedStoredQuery",
    "build_adhoc_query_request",
    "build_adhoc_query_response",
    "parse_adhoc_query_request",
    "parse_adhoc_query_response",
]

_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

Kind = Literal["cx", "time", "text", "texts", "codes", "statuses", "entry_types", "association_types"]


@dataclass(frozen=True)
class _Param:
    """One parameter of a typed query: its slot name, the field that holds it, how it is written."""

    slot: str
    field: str
    kind: Kind
    required: bool = False


# --------------------------------------------------------------------------------------------
# The ITI-18 value syntax


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _code_text(code: AnyCode) -> str:
    for part in (code.code, code.code_system):
        if "^" in part:
            raise ValidationError("a code or coding scheme used in a query cannot hold '^'")
    return f"{code.code}^^{code.code_system}"


def _scalars(text: str, slot: str) -> list[str]:
    """The values of one ``rim:Value``: ``'a'``, ``20250101`` or ``('a','b')`` → ``["a"]``, ``["a", "b"]``."""
    position = 0
    length = len(text)

    def fail(reason: str) -> StoredQueryError:
        return StoredQueryError(
            f"the value of {slot} is not in the ITI-18 syntax: {reason}",
            error_code=RegistryErrorCode.REGISTRY_ERROR,
            hint="strings are quoted with ', a quote inside is doubled, lists are in parentheses",
        )

    def skip_spaces() -> None:
        nonlocal position
        while position < length and text[position].isspace():
            position += 1

    def scalar() -> str:
        nonlocal position
        skip_spaces()
        if position < length and text[position] == "'":
            position += 1
            chars: list[str] = []
            while True:
                if position >= length:
                    raise fail("a quoted string is not closed")
                char = text[position]
                if char == "'":
                    if position + 1 < length and text[position + 1] == "'":
                        chars.append("'")
                        position += 2
                        continue
                    position += 1
                    return "".join(chars)
                chars.append(char)
                position += 1
        start = position
        while position < length and (text[position].isdigit() or text[position] in "+-."):
            position += 1
        if position == start:
            raise fail("expected a quoted string or a number")
        return text[start:position]

    skip_spaces()
    values: list[str] = []
    if position < length and text[position] == "(":
        position += 1
        while True:
            values.append(scalar())
            skip_spaces()
            if position < length and text[position] == ",":
                position += 1
                continue
            if position < length and text[position] == ")":
                position += 1
                break
            raise fail("a list is not closed by ')'")
    else:
        values.append(scalar())
    skip_spaces()
    if position != length:
        raise fail("unexpected characters after the value")
    return values


def _encode(kind: Kind, value: Any) -> list[str]:
    """The ``rim:Value`` texts of one parameter (an empty list: the parameter is not sent)."""
    if value is None or value == ():
        return []
    match kind:
        case "cx":
            return [_quote(value.text)]
        case "time":
            return [value.text]
        case "text":
            return [_quote(value)]
        case "codes":
            return [f"({_quote(_code_text(code))})" for code in value]
        case _:
            return [f"({_quote(str(item))})" for item in value]


def _decode(kind: Kind, items: list[str], slot: str) -> Any:
    single = kind in ("cx", "time", "text")
    if single and len(items) != 1:
        raise StoredQueryError(
            f"{slot} takes one value, {len(items)} were given", error_code=RegistryErrorCode.STORED_QUERY_PARAM_NUMBER
        )
    try:
        match kind:
            case "cx":
                return Cx.parse(items[0])
            case "time":
                return XdsTime.parse(items[0])
            case "text":
                return items[0]
            case "codes":
                return tuple(_parse_code(item, slot) for item in items)
            case _:
                return tuple(items)
    except pydantic.ValidationError:
        expected = {"cx": "patient id (CX)", "time": "XDS time"}.get(kind, "code")
        raise StoredQueryError(
            f"the value of {slot} is not a valid {expected}", error_code=RegistryErrorCode.REGISTRY_ERROR
        ) from None


def _parse_code(item: str, slot: str) -> AnyCode:
    parts = item.split("^")
    if len(parts) != 3 or parts[1] or not parts[0] or not parts[2]:
        raise StoredQueryError(
            f"a code in {slot} is not written code^^codingScheme", error_code=RegistryErrorCode.REGISTRY_ERROR
        )
    return xds_code(parts[0], parts[2])


# --------------------------------------------------------------------------------------------
# Requests


class QueryParameter(BaseModel):
    """One ``rim:Slot`` of an ``rim:AdhocQuery``, its values written in the ITI-18 syntax."""

    model_config = _FROZEN

    name: str = Field(pattern=r"^\$[A-Za-z][A-Za-z0-9_]*$")
    """The parameter name, ``$XDSDocumentEntryPatientId`` …"""
    values: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = Field(min_length=1)
    """Its ``rim:Value`` texts as sent (``'…'``, ``('…','…')``, ``20250101``); a list may span several values."""


class StoredQuery(BaseModel):
    """Any stored query as its id and raw parameters: the form for the queries with no typed model.

    The values are sent as given: quote them yourself (see the module docstring), or use a
    typed query, which does.
    """

    model_config = _FROZEN

    query_id: StoredQueryId
    """The stored query."""
    parameters: tuple[QueryParameter, ...] = ()
    """Its parameters; a name repeated means AND for the code parameters that allow it."""

    def typed(self) -> TypedStoredQuery | StoredQuery:
        """The typed query for this id and these parameters, or ``self`` for ids with no typed model.

        Raises :class:`~dmp_connector.xds.errors.StoredQueryError` when a parameter is missing,
        repeated, unknown or not in the ITI-18 syntax.
        """
        model = _TYPED.get(self.query_id)
        return self if model is None else cast("TypedStoredQuery", model.from_parameters(self.parameters))


class _TypedQuery(BaseModel):
    """Base of the typed stored queries: maps fields to parameters and back."""

    model_config = _FROZEN

    query_id: ClassVar[StoredQueryId]
    _params: ClassVar[tuple[_Param, ...]]
    _one_of: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _exactly_one(self) -> _TypedQuery:
        if self._one_of:
            given = [name for name in self._one_of if getattr(self, name) not in (None, ())]
            if len(given) != 1:
                raise ValidationError(
                    f"{type(self).__name__} takes exactly one of {' or '.join(self._one_of)}",
                    problems=[f"given: {', '.join(given) or 'none'}"],
                )
        return self

    def to_stored_query(self) -> StoredQuery:
        """The query as its id and encoded parameters."""
        parameters = []
        for param in self._params:
            values = _encode(param.kind, getattr(self, param.field))
            if values:
                parameters.append(QueryParameter(name=param.slot, values=tuple(values)))
        return StoredQuery(query_id=self.query_id, parameters=tuple(parameters))

    @classmethod
    def from_parameters(cls, parameters: Sequence[QueryParameter]) -> Self:
        """The typed query from raw parameters, refusing unknown, missing and repeated ones."""
        by_slot = {param.slot: param for param in cls._params}
        seen: set[str] = set()
        data: dict[str, Any] = {}
        for parameter in parameters:
            param = by_slot.get(parameter.name)
            if param is None:
                raise StoredQueryError(
                    f"{parameter.name} is not a parameter of this stored query",
                    error_code=RegistryErrorCode.REGISTRY_ERROR,
                )
            if parameter.name in seen:
                raise StoredQueryError(
                    f"{parameter.name} is repeated, which the typed query model does not take (AND of codes)",
                    error_code=RegistryErrorCode.STORED_QUERY_PARAM_NUMBER,
                )
            seen.add(parameter.name)
            items = [item for value in parameter.values for item in _scalars(value, parameter.name)]
            data[param.field] = _decode(param.kind, items, parameter.name)
        missing = [p.slot for p in cls._params if p.required and p.slot not in seen]
        if missing:
            raise StoredQueryError(
                f"the stored query lacks {', '.join(missing)}", error_code=RegistryErrorCode.STORED_QUERY_MISSING_PARAM
            )
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            raise StoredQueryError(
                f"a parameter of the stored query is not valid: {'.'.join(map(str, first['loc']))}: {first['msg']}",
                error_code=RegistryErrorCode.REGISTRY_ERROR,
            ) from exc
        except ValidationError as exc:
            raise StoredQueryError(exc.message, error_code=RegistryErrorCode.STORED_QUERY_PARAM_NUMBER) from exc


Statuses = tuple[Status, ...]
Codes = tuple[AnyCode, ...]
EntryTypes = tuple[DocumentEntryType, ...]
Texts = tuple[Annotated[str, Field(min_length=1, max_length=250)], ...]
AssociationTypes = tuple[Annotated[AssociationType | str, _known(AssociationType)], ...]
_APPROVED: Final = (AvailabilityStatus.APPROVED,)


def _document_filters(prefix: str) -> tuple[_Param, ...]:
    return (
        _Param(f"{prefix}ClassCode", "class_codes", "codes"),
        _Param(f"{prefix}TypeCode", "type_codes", "codes"),
        _Param(f"{prefix}PracticeSettingCode", "practice_setting_codes", "codes"),
        _Param(f"{prefix}CreationTimeFrom", "creation_time_from", "time"),
        _Param(f"{prefix}CreationTimeTo", "creation_time_to", "time"),
        _Param(f"{prefix}ServiceStartTimeFrom", "service_start_time_from", "time"),
        _Param(f"{prefix}ServiceStartTimeTo", "service_start_time_to", "time"),
        _Param(f"{prefix}ServiceStopTimeFrom", "service_stop_time_from", "time"),
        _Param(f"{prefix}ServiceStopTimeTo", "service_stop_time_to", "time"),
        _Param(f"{prefix}HealthcareFacilityTypeCode", "healthcare_facility_type_codes", "codes"),
        _Param(f"{prefix}EventCodeList", "event_codes", "codes"),
        _Param(f"{prefix}ConfidentialityCode", "confidentiality_codes", "codes"),
        _Param(f"{prefix}AuthorPerson", "author_persons", "texts"),
        _Param(f"{prefix}FormatCode", "format_codes", "codes"),
        _Param(f"{prefix}Status", "statuses", "statuses", required=True),
        _Param(f"{prefix}Type", "entry_types", "entry_types"),
    )


class FindDocumentsQuery(_TypedQuery):
    """FindDocuments: a patient's document entries, filtered (DMP TD3.1).

    Every filter given must match; the values of one filter are alternatives. Time ranges are
    ``From`` inclusive, ``To`` exclusive. Author persons may use ``%`` and ``_`` wildcards.
    """

    query_id: ClassVar[StoredQueryId] = StoredQueryId.FIND_DOCUMENTS
    _params: ClassVar[tuple[_Param, ...]] = (
        _Param("$XDSDocumentEntryPatientId", "patient_id", "cx", required=True),
        *_document_filters("$XDSDocumentEntry"),
    )

    patient_id: Cx
    """The patient (the INS for the DMP)."""
    statuses: Statuses = Field(default=_APPROVED, min_length=1)
    """Entry statuses wanted (Approved by default; add Deprecated for replaced versions)."""
    class_codes: Codes = ()
    """classCode filter."""
    type_codes: Codes = ()
    """typeCode filter."""
    practice_setting_codes: Codes = ()
    """practiceSettingCode filter."""
    healthcare_facility_type_codes: Codes = ()
    """healthcareFacilityTypeCode filter."""
    event_codes: Codes = ()
    """eventCodeList filter (any of them)."""
    confidentiality_codes: Codes = ()
    """confidentialityCode filter (any of them)."""
    format_codes: Codes = ()
    """formatCode filter."""
    author_persons: Texts = ()
    """authorPerson patterns (``%DUPONT%``)."""
    creation_time_from: XdsTime | None = None
    """creationTime ≥ this."""
    creation_time_to: XdsTime | None = None
    """creationTime < this."""
    service_start_time_from: XdsTime | None = None
    """serviceStartTime ≥ this."""
    service_start_time_to: XdsTime | None = None
    """serviceStartTime < this."""
    service_stop_time_from: XdsTime | None = None
    """serviceStopTime ≥ this."""
    service_stop_time_to: XdsTime | None = None
    """serviceStopTime < this."""
    entry_types: EntryTypes = ()
    """Stable and/or on-demand (the registry's default: stable only)."""


class FindSubmissionSetsQuery(_TypedQuery):
    """FindSubmissionSets: a patient's submission sets, filtered."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.FIND_SUBMISSION_SETS
    _params: ClassVar[tuple[_Param, ...]] = (
        _Param("$XDSSubmissionSetPatientId", "patient_id", "cx", required=True),
        _Param("$XDSSubmissionSetSourceId", "source_ids", "texts"),
        _Param("$XDSSubmissionSetSubmissionTimeFrom", "submission_time_from", "time"),
        _Param("$XDSSubmissionSetSubmissionTimeTo", "submission_time_to", "time"),
        _Param("$XDSSubmissionSetAuthorPerson", "author_person", "text"),
        _Param("$XDSSubmissionSetContentType", "content_type_codes", "codes"),
        _Param("$XDSSubmissionSetStatus", "statuses", "statuses", required=True),
    )

    patient_id: Cx
    """The patient."""
    statuses: Statuses = Field(default=_APPROVED, min_length=1)
    """Submission set statuses wanted."""
    source_ids: Texts = ()
    """sourceId filter."""
    submission_time_from: XdsTime | None = None
    """submissionTime ≥ this."""
    submission_time_to: XdsTime | None = None
    """submissionTime < this."""
    author_person: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """authorPerson pattern."""
    content_type_codes: Codes = ()
    """contentTypeCode filter."""


class _ByEntry(_TypedQuery):
    """Queries that name document entries by entryUUIDs or uniqueIds (exactly one of the two)."""

    _one_of: ClassVar[tuple[str, ...]] = ("entry_uuids", "unique_ids")

    entry_uuids: Texts = ()
    """``urn:uuid:`` entryUUIDs."""
    unique_ids: Texts = ()
    """uniqueIds."""
    home_community_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """homeCommunityId, for cross-community queries only."""


_BY_ENTRY: Final = (
    _Param("$XDSDocumentEntryEntryUUID", "entry_uuids", "texts"),
    _Param("$XDSDocumentEntryUniqueId", "unique_ids", "texts"),
    _Param("$homeCommunityId", "home_community_id", "text"),
)


class GetDocumentsQuery(_ByEntry):
    """GetDocuments: entries by id — the second step after an ObjectRef query, in batches."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.GET_DOCUMENTS
    _params: ClassVar[tuple[_Param, ...]] = _BY_ENTRY


class GetDocumentsAndAssociationsQuery(_ByEntry):
    """GetDocumentsAndAssociations: entries by id, with the associations that touch them."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.GET_DOCUMENTS_AND_ASSOCIATIONS
    _params: ClassVar[tuple[_Param, ...]] = _BY_ENTRY


class _ByUuid(_TypedQuery):
    uuids: Texts = Field(min_length=1)
    """``urn:uuid:`` ids of the objects."""
    home_community_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """homeCommunityId, for cross-community queries only."""


_BY_UUID: Final = (
    _Param("$uuid", "uuids", "texts", required=True),
    _Param("$homeCommunityId", "home_community_id", "text"),
)


class GetSubmissionSetsQuery(_ByUuid):
    """GetSubmissionSets: the submission sets that hold the given entries (``$uuid``)."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.GET_SUBMISSION_SETS
    _params: ClassVar[tuple[_Param, ...]] = _BY_UUID


class GetAssociationsQuery(_ByUuid):
    """GetAssociations: the associations whose source or target is one of the given entries."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.GET_ASSOCIATIONS
    _params: ClassVar[tuple[_Param, ...]] = _BY_UUID


class GetSubmissionSetAndContentsQuery(_TypedQuery):
    """GetSubmissionSetAndContents: one submission set, its entries and associations."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.GET_SUBMISSION_SET_AND_CONTENTS
    _params: ClassVar[tuple[_Param, ...]] = (
        _Param("$XDSSubmissionSetEntryUUID", "entry_uuid", "text"),
        _Param("$XDSSubmissionSetUniqueId", "unique_id", "text"),
        _Param("$XDSDocumentEntryFormatCode", "format_codes", "codes"),
        _Param("$XDSDocumentEntryConfidentialityCode", "confidentiality_codes", "codes"),
        _Param("$XDSDocumentEntryType", "entry_types", "entry_types"),
        _Param("$homeCommunityId", "home_community_id", "text"),
    )
    _one_of: ClassVar[tuple[str, ...]] = ("entry_uuid", "unique_id")

    entry_uuid: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """The submission set's entryUUID …"""
    unique_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """… or its uniqueId."""
    format_codes: Codes = ()
    """Only document entries with one of these formatCodes."""
    confidentiality_codes: Codes = ()
    """Only document entries with one of these confidentialityCodes."""
    entry_types: EntryTypes = ()
    """Stable and/or on-demand entries."""
    home_community_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """homeCommunityId, for cross-community queries only."""


class GetRelatedDocumentsQuery(_TypedQuery):
    """GetRelatedDocuments: the entries linked to one entry by the given association types (RPLC …)."""

    query_id: ClassVar[StoredQueryId] = StoredQueryId.GET_RELATED_DOCUMENTS
    _params: ClassVar[tuple[_Param, ...]] = (
        _Param("$XDSDocumentEntryEntryUUID", "entry_uuid", "text"),
        _Param("$XDSDocumentEntryUniqueId", "unique_id", "text"),
        _Param("$AssociationTypes", "association_types", "association_types", required=True),
        _Param("$XDSDocumentEntryType", "entry_types", "entry_types"),
        _Param("$homeCommunityId", "home_community_id", "text"),
    )
    _one_of: ClassVar[tuple[str, ...]] = ("entry_uuid", "unique_id")

    entry_uuid: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """The entry's entryUUID …"""
    unique_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """… or its uniqueId."""
    association_types: AssociationTypes = Field(min_length=1)
    """Association types to follow."""
    entry_types: EntryTypes = ()
    """Stable and/or on-demand entries."""
    home_community_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """homeCommunityId, for cross-community queries only."""


TypedStoredQuery = (
    FindDocumentsQuery
    | FindSubmissionSetsQuery
    | GetDocumentsQuery
    | GetDocumentsAndAssociationsQuery
    | GetSubmissionSetsQuery
    | GetAssociationsQuery
    | GetSubmissionSetAndContentsQuery
    | GetRelatedDocumentsQuery
)
"""The stored queries with a typed model."""

_TYPED: Final[Mapping[StoredQueryId, type[_TypedQuery]]] = {
    model.query_id: model
    for model in (
        FindDocumentsQuery,
        FindSubmissionSetsQuery,
        GetDocumentsQuery,
        GetDocumentsAndAssociationsQuery,
        GetSubmissionSetsQuery,
        GetAssociationsQuery,
        GetSubmissionSetAndContentsQuery,
        GetRelatedDocumentsQuery,
    )
}


class AdhocQueryRequest(BaseModel):
    """An ITI-18 request: which stored query, and whether to answer with full metadata or references."""

    model_config = _FROZEN

    query: TypedStoredQuery | StoredQuery
    """The stored query, typed or raw."""
    return_type: ReturnType = ReturnType.LEAF_CLASS
    """LeafClass (full metadata) or ObjectRef (entryUUIDs only: cheap, for large result sets)."""
    home_community_id: Annotated[str, Field(min_length=1, max_length=250)] | None = None
    """``rim:AdhocQuery/@home``, for cross-community queries only."""


def _query(tag: str) -> str:
    return f"{{{QUERY}}}{tag}"


def _rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


@_xml_safe
def build_adhoc_query_request(request: AdhocQueryRequest) -> etree._Element:
    """The ITI-18 body (see the module docstring for the XML)."""
    query = request.query
    stored = query if isinstance(query, StoredQuery) else query.to_stored_query()
    root = etree.Element(_query("AdhocQueryRequest"), nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(root, _query("ResponseOption"), returnComposedObjects="true", returnType=request.return_type.value)
    adhoc = etree.SubElement(root, _rim("AdhocQuery"), id=stored.query_id.value)
    if request.home_community_id is not None:
        adhoc.set("home", request.home_community_id)
    for parameter in stored.parameters:
        slot = etree.SubElement(adhoc, _rim("Slot"), name=parameter.name)
        value_list = etree.SubElement(slot, _rim("ValueList"))
        for value in parameter.values:
            etree.SubElement(value_list, _rim("Value")).text = value
    return root


def parse_adhoc_query_request(
    source: bytes | etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS, typed: bool = True
) -> AdhocQueryRequest:
    """Read an ITI-18 request; the query is typed when a model exists for its id (unless ``typed=False``).

    Raises :class:`~dmp_connector.xds.errors.StoredQueryError` (with the XDS code to answer) for
    an unknown query id, a bad return type, and — when typed — a missing, repeated, unknown or
    ill-written parameter.
    """
    what = "the AdhocQueryRequest"
    root = _read_root(source, _query("AdhocQueryRequest"), what, limits=limits)
    option = root.find(_query("ResponseOption"))
    raw_return = (option.get("returnType") if option is not None else None) or ""
    try:
        return_type = ReturnType(raw_return)
    except ValueError:
        raise StoredQueryError(
            f"{what} asks for returnType {raw_return[:40] or '(none)'}; XDS answers LeafClass or ObjectRef",
            error_code=RegistryErrorCode.REGISTRY_ERROR,
        ) from None
    adhoc = root.find(_rim("AdhocQuery"))
    if adhoc is None:
        raise StoredQueryError(f"{what} has no rim:AdhocQuery", error_code=RegistryErrorCode.REGISTRY_ERROR)
    raw_id = (adhoc.get("id") or "").strip()
    try:
        query_id = StoredQueryId(raw_id.lower())
    except ValueError:
        raise StoredQueryError(
            f"{what} names an unknown stored query" + (f" {raw_id[:60]}" if raw_id else ""),
            error_code=RegistryErrorCode.UNKNOWN_STORED_QUERY,
        ) from None
    parameters = []
    for slot in adhoc.iterfind(_rim("Slot")):
        name = slot.get("name") or ""
        values = tuple(v.text or "" for v in slot.iterfind(f"{_rim('ValueList')}/{_rim('Value')}"))
        try:
            parameters.append(QueryParameter(name=name, values=values))
        except pydantic.ValidationError:
            raise StoredQueryError(
                f"{what} has a parameter with a bad name or no value", error_code=RegistryErrorCode.REGISTRY_ERROR
            ) from None
    stored = StoredQuery(query_id=query_id, parameters=tuple(parameters))
    return AdhocQueryRequest(
        query=stored.typed() if typed else stored,
        return_type=return_type,
        home_community_id=adhoc.get("home") or None,
    )


# --------------------------------------------------------------------------------------------
# Responses


class AdhocQueryResponse(BaseModel):
    """An ITI-18 answer: the registry response and the objects found, typed.

    With ``returnType="ObjectRef"`` only :attr:`object_refs` is filled. A PartialSuccess keeps
    both what was found and the errors.
    """

    model_config = _FROZEN

    response: RegistryResponse
    """Status and errors (``XDSTooManyResults`` …)."""
    documents: tuple[DocumentEntry, ...] = ()
    """Document entries."""
    submission_sets: tuple[SubmissionSet, ...] = ()
    """Submission sets."""
    folders: tuple[Folder, ...] = ()
    """Folders."""
    associations: tuple[Association, ...] = ()
    """Associations."""
    object_refs: tuple[ObjectRef, ...] = ()
    """References, for an ObjectRef query."""


@_xml_safe
def build_adhoc_query_response(response: AdhocQueryResponse) -> etree._Element:
    """An ITI-18 answer (what the sandbox sends)::

    <query:AdhocQueryResponse xmlns:query="…:query:3.0" status="…:ResponseStatusType:Success">
      <rim:RegistryObjectList>
        <rim:ExtrinsicObject id="urn:uuid:…" status="…:StatusType:Approved" …>…</rim:ExtrinsicObject>
      </rim:RegistryObjectList>
    </query:AdhocQueryResponse>
    """
    root = etree.Element(_query("AdhocQueryResponse"), nsmap={"query": QUERY, "rim": RIM, "rs": RS})
    _write_registry_response(root, response.response)
    registry_object_list = etree.SubElement(root, _rim("RegistryObjectList"))
    write_registry_objects(
        registry_object_list,
        submission_sets=response.submission_sets,
        documents=response.documents,
        folders=response.folders,
        associations=response.associations,
        object_refs=response.object_refs,
    )
    return root


def parse_adhoc_query_response(
    source: bytes | etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS
) -> AdhocQueryResponse:
    """Read an ITI-18 answer into typed objects; an unknown status or malformed metadata is refused."""
    what = "the AdhocQueryResponse"
    root = _read_root(source, _query("AdhocQueryResponse"), what, limits=limits)
    response = _read_registry_response(root, what)
    lists = [c for c in root if c.tag == _rim("RegistryObjectList")]
    if len(lists) > 1:
        raise MalformedResponseError(f"{what} holds more than one rim:RegistryObjectList")
    if not lists:
        return AdhocQueryResponse(response=response)
    found = read_registry_objects(lists[0])
    return AdhocQueryResponse(
        response=response,
        documents=tuple(found.documents),
        submission_sets=tuple(found.submission_sets),
        folders=tuple(found.folders),
        associations=tuple(found.associations),
        object_refs=tuple(found.object_refs),
    )
