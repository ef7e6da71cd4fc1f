"""ITI-18: typed stored queries, the value syntax, the shared sample, and query responses."""

from __future__ import annotations

import pytest
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.errors import MalformedResponseError, ValidationError
from dmp_connector.xds import (
    AdhocQueryRequest,
    AdhocQueryResponse,
    AssociationType,
    AvailabilityStatus,
    DocumentEntryType,
    FindDocumentsQuery,
    FindSubmissionSetsQuery,
    GetAssociationsQuery,
    GetDocumentsAndAssociationsQuery,
    GetDocumentsQuery,
    GetRelatedDocumentsQuery,
    GetSubmissionSetAndContentsQuery,
    GetSubmissionSetsQuery,
    ObjectRef,
    QueryParameter,
    RegistryError,
    RegistryErrorCode,
    RegistryResponse,
    ResponseStatus,
    ReturnType,
    StoredQuery,
    StoredQueryError,
    StoredQueryId,
    TypedStoredQuery,
    XdsTime,
    build_adhoc_query_request,
    build_adhoc_query_response,
    parse_adhoc_query_request,
    parse_adhoc_query_response,
)
from dmp_connector.xml import parse_xml, to_bytes
from tests.xds.conftest import DATA, PATIENT, SAMPLES, Schemas, make_deposit

UUID_A = "urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd"
UUID_B = "urn:uuid:20744602-ba65-44e9-87ee-a52303a5183e"
# Codes without display names: a query carries code^^scheme only.
CLASS = Code.of("11", "1.2.250.1.213.1.1.4.1")
FORMAT = Code.of("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3")
MASQUE = Code.of("MASQUE_PS", "1.2.250.1.213.1.1.4.13")

QUERIES: list[TypedStoredQuery] = [
    FindDocumentsQuery(patient_id=PATIENT),
    FindDocumentsQuery(
        patient_id=PATIENT,
        statuses=(AvailabilityStatus.APPROVED, AvailabilityStatus.DEPRECATED, "urn:x:Custom"),
        class_codes=(CLASS,),
        type_codes=(Code.of("11488-4", "2.16.840.1.113883.6.1"), Code.of("34133-9", "2.16.840.1.113883.6.1")),
        practice_setting_codes=(Code.of("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9"),),
        healthcare_facility_type_codes=(Code.of("SA07", "1.2.250.1.71.4.2.4"),),
        event_codes=(Code.of("E1", "1.2.3"),),
        confidentiality_codes=(MASQUE,),
        format_codes=(FORMAT,),
        author_persons=("%O'Neil%", "810001234567%"),
        creation_time_from=XdsTime.parse("20250101"),
        creation_time_to=XdsTime.parse("20260101120000"),
        service_start_time_from=XdsTime.parse("2024"),
        service_start_time_to=XdsTime.parse("202412"),
        service_stop_time_from=XdsTime.parse("2024010203"),
        service_stop_time_to=XdsTime.parse("202401020304"),
        entry_types=(DocumentEntryType.STABLE, DocumentEntryType.ON_DEMAND),
    ),
    FindSubmissionSetsQuery(
        patient_id=PATIENT,
        source_ids=("1.2.250.1.999",),
        submission_time_from=XdsTime.parse("2025"),
        submission_time_to=XdsTime.parse("2026"),
        author_person="%DUPONT%",
        content_type_codes=(Code.of("07", "1.2.250.1.213.1.1.4.12"),),
    ),
    GetDocumentsQuery(entry_uuids=(UUID_A, UUID_B)),
    GetDocumentsQuery(unique_ids=("1.2.250.1.999.7.2",), home_community_id="urn:oid:1.2.3"),
    GetDocumentsAndAssociationsQuery(entry_uuids=(UUID_A,)),
    GetSubmissionSetsQuery(uuids=(UUID_A,)),
    GetAssociationsQuery(uuids=(UUID_A, UUID_B)),
    GetSubmissionSetAndContentsQuery(unique_id="1.2.250.1.999.7.1", format_codes=(FORMAT,)),
    GetSubmissionSetAndContentsQuery(entry_uuid=UUID_A, confidentiality_codes=(MASQUE,)),
    GetRelatedDocumentsQuery(entry_uuid=UUID_A, association_types=(AssociationType.REPLACE, "urn:x:Other")),
]


def test_find_documents_matches_the_golden_file() -> None:
    request = AdhocQueryRequest(
        query=FindDocumentsQuery(
            patient_id=PATIENT,
            class_codes=(CLASS,),
            creation_time_from=XdsTime.parse("20250101"),
            creation_time_to=XdsTime.parse("20260101"),
        )
    )
    element = build_adhoc_query_request(request)
    golden = (DATA / "find_documents.xml").read_bytes()
    assert etree.tostring(element, pretty_print=True, encoding="UTF-8", xml_declaration=True) == golden


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: type(q).__name__)
@pytest.mark.parametrize("return_type", list(ReturnType))
def test_every_typed_query_validates_and_reads_back_equal(
    query: TypedStoredQuery, return_type: ReturnType, schemas: Schemas
) -> None:
    request = AdhocQueryRequest(query=query, return_type=return_type)
    element = build_adhoc_query_request(request)
    schemas.assert_valid(schemas.query, element)
    assert parse_adhoc_query_request(to_bytes(element)) == request


def test_quotes_inside_values_are_doubled() -> None:
    query = FindDocumentsQuery(patient_id=PATIENT, author_persons=("%O'Neil%",))
    (author,) = [p for p in query.to_stored_query().parameters if p.name == "$XDSDocumentEntryAuthorPerson"]
    assert author.values == ("('%O''Neil%')",)


def test_exactly_one_way_to_name_the_entries() -> None:
    with pytest.raises(ValidationError, match="exactly one of entry_uuids or unique_ids"):
        GetDocumentsQuery()
    with pytest.raises(ValidationError, match="exactly one of entry_uuid or unique_id"):
        GetRelatedDocumentsQuery(entry_uuid=UUID_A, unique_id="1.2", association_types=(AssociationType.REPLACE,))


def test_raw_stored_queries_for_the_others(schemas: Schemas) -> None:
    raw = StoredQuery(
        query_id=StoredQueryId.FIND_FOLDERS,
        parameters=(
            QueryParameter(name="$XDSFolderPatientId", values=(f"'{PATIENT.text}'",)),
            QueryParameter(
                name="$XDSFolderStatus", values=("('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')",)
            ),
        ),
    )
    element = build_adhoc_query_request(AdhocQueryRequest(query=raw))
    schemas.assert_valid(schemas.query, element)
    read = parse_adhoc_query_request(to_bytes(element))
    assert read.query == raw and raw.typed() is raw


# ------------------------------------------------------------------------------------ the shared sample


def test_the_sample_request_validates_and_reads_raw() -> None:
    data = (SAMPLES / "iti18request.xml").read_bytes()
    request = parse_adhoc_query_request(data, typed=False)
    assert isinstance(request.query, StoredQuery)
    assert request.query.query_id is StoredQueryId.FIND_DOCUMENTS
    assert [p.name for p in request.query.parameters] == [
        "$XDSDocumentEntryPatientId",
        "$XDSDocumentEntryStatus",
        "$XDSDocumentEntryCreationTimeFrom",
        "$XDSDocumentEntryCreationTimeTo",
    ]


def test_the_sample_injection_in_the_patient_id_is_refused(schemas: Schemas) -> None:
    data = (SAMPLES / "iti18request.xml").read_bytes()
    schemas.assert_valid(schemas.query, parse_xml(data))
    with pytest.raises(StoredQueryError, match=r"\$XDSDocumentEntryPatientId is not in the ITI-18 syntax") as caught:
        parse_adhoc_query_request(data)
    assert caught.value.error_code is RegistryErrorCode.REGISTRY_ERROR
    assert "611" not in str(caught.value)


def test_the_sample_with_a_clean_patient_id_reads_typed() -> None:
    data = (SAMPLES / "iti18request.xml").read_bytes()
    start = data.index(b"<rim:Value>'593603")
    end = data.index(b"</rim:Value>", start)
    clean = data[:start] + b"<rim:Value>'593603^^^&amp;2.16.756.5.33.2.5.1.5.1&amp;ISO'" + data[end:]
    request = parse_adhoc_query_request(clean)
    query = request.query
    assert isinstance(query, FindDocumentsQuery)
    assert query.patient_id.id == "593603" and query.statuses == (AvailabilityStatus.APPROVED,)
    assert query.creation_time_from == XdsTime.parse("20221015151515"), "a quoted time is read too"
    assert query.creation_time_to == XdsTime.parse("20221016161616")
    assert request.return_type is ReturnType.LEAF_CLASS


# ------------------------------------------------------------------------------------ what is refused


def _request(query_id: str, slots: str = "", return_type: str = "LeafClass") -> bytes:
    return (
        '<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
        'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
        f'<query:ResponseOption returnComposedObjects="true" returnType="{return_type}"/>'
        f'<rim:AdhocQuery id="{query_id}">{slots}</rim:AdhocQuery></query:AdhocQueryRequest>'
    ).encode()


def _slot(name: str, *values: str) -> str:
    items = "".join(f"<rim:Value>{v}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{items}</rim:ValueList></rim:Slot>'


PID = _slot("$XDSDocumentEntryPatientId", "'1^^^&amp;1.2.3&amp;ISO'")
STATUS = _slot("$XDSDocumentEntryStatus", "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')")
FIND = StoredQueryId.FIND_DOCUMENTS.value


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (_request("urn:uuid:00000000-0000-0000-0000-000000000000"), "UNKNOWN_STORED_QUERY", "unknown stored query"),
        (_request(FIND, STATUS), "STORED_QUERY_MISSING_PARAM", r"lacks \$XDSDocumentEntryPatientId"),
        (_request(FIND, PID + STATUS + STATUS), "STORED_QUERY_PARAM_NUMBER", "is repeated"),
        (_request(FIND, PID + STATUS + _slot("$Nope", "'x'")), "REGISTRY_ERROR", "not a parameter"),
        (_request(FIND, PID + STATUS, "RegistryObject"), "REGISTRY_ERROR", "returnType RegistryObject"),
        (
            _request(FIND, _slot("$XDSDocumentEntryPatientId", "'a'", "'b'") + STATUS),
            "STORED_QUERY_PARAM_NUMBER",
            "one value",
        ),
        (_request(FIND, _slot("$XDSDocumentEntryPatientId", "'a'") + STATUS), "REGISTRY_ERROR", "patient id"),
        (
            _request(FIND, PID + STATUS + _slot("$XDSDocumentEntryCreationTimeFrom", "2025-01")),
            "REGISTRY_ERROR",
            "XDS time",
        ),
        (_request(FIND, PID + STATUS + _slot("$XDSDocumentEntryClassCode", "('11^1.2')")), "REGISTRY_ERROR", "code"),
        (_request(FIND, PID + STATUS + _slot("$XDSDocumentEntryType", "('urn:x')")), "REGISTRY_ERROR", "entry_types"),
        (_request(FIND, PID + _slot("$XDSDocumentEntryStatus", "('a','b'")), "REGISTRY_ERROR", "not closed"),
        (_request(FIND, PID + _slot("$XDSDocumentEntryStatus", "'a' OR 1=1")), "REGISTRY_ERROR", "unexpected"),
        (_request(FIND, PID + _slot("$XDSDocumentEntryStatus", "a")), "REGISTRY_ERROR", "quoted string"),
        (
            _request(
                StoredQueryId.GET_DOCUMENTS.value,
                _slot("$XDSDocumentEntryUniqueId", "('1.2')") + _slot("$XDSDocumentEntryEntryUUID", f"('{UUID_A}')"),
            ),
            "STORED_QUERY_PARAM_NUMBER",
            "exactly one",
        ),
    ],
)
def test_requests_a_registry_must_refuse(data: bytes, code: str, message: str) -> None:
    with pytest.raises(StoredQueryError, match=message) as caught:
        parse_adhoc_query_request(data)
    assert caught.value.error_code is RegistryErrorCode[code]
    assert isinstance(caught.value, MalformedResponseError)


# ------------------------------------------------------------------------------------ responses


def test_a_leaf_class_response_validates_and_reads_back_equal(schemas: Schemas) -> None:
    deposit = make_deposit()
    document = deposit.documents[0].model_copy(
        update={
            "entry_uuid": UUID_A,
            "availability_status": AvailabilityStatus.APPROVED,
            "repository_unique_id": "1.2.250.1.213.4.1.1.1.2",
            "logical_id": UUID_A,
            "version": "1",
        }
    )
    ss = deposit.submission_set.model_copy(update={"entry_uuid": UUID_B, "availability_status": "urn:x:Odd"})
    association = deposit.associations[0].model_copy(
        update={
            "entry_uuid": "urn:uuid:0f6c5f32-5a3d-4a4e-9b8e-0d9d2e1f0a11",
            "source_object": UUID_B,
            "target_object": UUID_A,
        }
    )
    response = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.SUCCESS),
        documents=(document,),
        submission_sets=(ss,),
        associations=(association,),
    )
    element = build_adhoc_query_response(response)
    schemas.assert_valid(schemas.query, element)
    assert parse_adhoc_query_response(to_bytes(element)) == response


def test_an_object_ref_response(schemas: Schemas) -> None:
    response = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.SUCCESS),
        object_refs=(ObjectRef(id=UUID_A), ObjectRef(id=UUID_B, home="urn:oid:1.2.3")),
    )
    element = build_adhoc_query_response(response)
    schemas.assert_valid(schemas.query, element)
    assert parse_adhoc_query_response(to_bytes(element)) == response


def test_a_failure_keeps_its_errors_and_an_absent_list_is_empty(schemas: Schemas) -> None:
    response = AdhocQueryResponse(
        response=RegistryResponse(
            status=ResponseStatus.FAILURE,
            errors=(RegistryError(error_code=RegistryErrorCode.TOO_MANY_RESULTS, code_context="more than 100"),),
        )
    )
    element = build_adhoc_query_response(response)
    schemas.assert_valid(schemas.query, element)
    assert parse_adhoc_query_response(to_bytes(element)) == response
    element.remove(element[-1])
    assert parse_adhoc_query_response(to_bytes(element)) == response


def test_a_query_response_with_an_unknown_status_is_refused() -> None:
    data = b'<q:AdhocQueryResponse xmlns:q="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" status="Success"/>'
    with pytest.raises(MalformedResponseError, match="unknown status Success"):
        parse_adhoc_query_response(data)


def test_a_registry_package_classified_in_the_list_is_read() -> None:
    """A registry may put the submission set's classification next to it, as IHE's examples do."""
    sample = (SAMPLES / "SubmitObjectsRequest_ebrs30.xml").read_bytes()
    start, end = sample.index(b"<rim:RegistryObjectList>"), sample.index(b"</rim:RegistryObjectList>")
    data = (
        b'<query:AdhocQueryResponse xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
        b'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0" '
        b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success">'
        + sample[start:end]
        + b"</rim:RegistryObjectList></query:AdhocQueryResponse>"
    )
    response = parse_adhoc_query_response(data)
    assert [ss.entry_uuid for ss in response.submission_sets] == ["SubmissionSet01"]
    assert len(response.documents) == 1 and len(response.associations) == 2
