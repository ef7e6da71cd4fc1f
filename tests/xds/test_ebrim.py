"""ebRIM 3.0: submissions (ITI-41, ITI-57), registry responses, retrieve (ITI-43), the shared samples, hostile input."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.errors import MalformedResponseError, ServiceError, UnsafeXmlError, ValidationError
from dmp_connector.signature import FileSigner, SubmittedDocument, sign_submission_set
from dmp_connector.soap import Attachment, resolve_xop
from dmp_connector.soap.namespaces import LCM, RIM
from dmp_connector.xds import (
    SUBMISSION_SET_ID,
    AssociationType,
    Author,
    AvailabilityStatus,
    DocumentEntry,
    DocumentEntryScheme,
    DocumentRequest,
    ErrorSeverity,
    ForeignCode,
    MetadataProfile,
    RegistryError,
    RegistryErrorCode,
    RegistryResponse,
    RegistryResponseError,
    ResponseStatus,
    RetrievedDocument,
    RetrieveDocumentSetRequest,
    RetrieveDocumentSetResponse,
    Slot,
    SubmissionRequest,
    SubmissionSetScheme,
    Xcn,
    XdsTime,
    build_provide_and_register_request,
    build_registry_response,
    build_retrieve_document_set_request,
    build_retrieve_document_set_response,
    build_submit_objects_request,
    parse_provide_and_register_request,
    parse_registry_response,
    parse_retrieve_document_set_request,
    parse_retrieve_document_set_response,
    parse_submit_objects_request,
)
from dmp_connector.xml import parse_xml, to_bytes
from tests.conftest import PkiFiles
from tests.xds.conftest import (
    DATA,
    DOCTOR,
    FACILITY,
    PATIENT,
    PRACTICE,
    SAMPLES,
    Schemas,
    make_deposit,
    make_document,
    make_submission_set,
)

SAMPLE_SUBMISSIONS = sorted(p.name for p in SAMPLES.glob("SubmitObjectsRequest*.xml"))
ENTRY_UUID = "urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd"


def _roundtrip(request: SubmissionRequest) -> SubmissionRequest:
    return parse_submit_objects_request(to_bytes(build_submit_objects_request(request)))


# ------------------------------------------------------------------------------------ submissions


def test_provide_and_register_matches_the_golden_file(schemas: Schemas) -> None:
    element = build_provide_and_register_request(make_deposit())
    golden = (DATA / "provide_and_register.xml").read_bytes()
    assert etree.tostring(element, pretty_print=True, encoding="UTF-8", xml_declaration=True) == golden
    schemas.assert_xdsb_valid(element)


def test_a_deposit_validates_and_reads_back_equal(schemas: Schemas) -> None:
    request = make_deposit()
    element = build_submit_objects_request(request)
    schemas.assert_valid(schemas.lcm, element)
    assert _roundtrip(request) == request.model_copy(update={"contents": {}}), "contents travel in the wrapper only"

    wrapper = build_provide_and_register_request(request)
    read, documents = parse_provide_and_register_request(to_bytes(wrapper))
    assert read == request
    attachment = Attachment.from_bytes(b"%PDF-1.4 test", content_id="doc1@test", content_type="application/pdf")
    assert resolve_xop(documents["Document01"], {"doc1@test": attachment}).read() == b"%PDF-1.4 test"


def test_every_document_needs_its_mtom_part() -> None:
    request = SubmissionRequest.build(make_submission_set(), [make_document()])
    with pytest.raises(ValidationError, match="MTOM part") as caught:
        build_provide_and_register_request(request)
    assert caught.value.problems == ("document Document01 has no Content-ID in contents",)


def test_identifiers_carry_the_vocabulary_uuids() -> None:
    element = build_submit_objects_request(make_deposit())
    schemes = {e.get("identificationScheme") for e in element.iter(f"{{{RIM}}}ExternalIdentifier")}
    assert schemes == {
        DocumentEntryScheme.PATIENT_ID,
        DocumentEntryScheme.UNIQUE_ID,
        SubmissionSetScheme.PATIENT_ID,
        SubmissionSetScheme.SOURCE_ID,
        SubmissionSetScheme.UNIQUE_ID,
    }


def test_child_ids_are_stable_and_unique_per_deposit() -> None:
    def ids(request: SubmissionRequest) -> list[str]:
        element = build_submit_objects_request(request)
        tags = (f"{{{RIM}}}Classification", f"{{{RIM}}}ExternalIdentifier")
        return [e.get("id", "") for e in element.iter(*tags)]

    first = ids(make_deposit())
    assert first == ids(make_deposit()), "a retried deposit must send the same bytes"
    assert len(set(first)) == len(first)
    other = SubmissionRequest.build(
        make_submission_set(unique_id="1.2.250.1.999.8.1"), [make_document(unique_id="1.2.250.1.999.8.2")]
    )
    assert not set(first) & set(ids(other)), "two deposits must not share a classification id"


def test_status_update_iti57(schemas: Schemas) -> None:
    request = SubmissionRequest.status_update(
        make_submission_set(),
        ENTRY_UUID,
        original_status=AvailabilityStatus.APPROVED,
        new_status=AvailabilityStatus.ARCHIVED,
    )
    element = build_submit_objects_request(request)
    schemas.assert_valid(schemas.lcm, element)
    association = element.find(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}Association")
    assert association is not None
    slots = {s.get("name"): s.findtext(f"{{{RIM}}}ValueList/{{{RIM}}}Value") for s in association}
    assert slots == {
        "OriginalStatus": "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",
        "NewStatus": "urn:asip:ci-sis:2010:StatusType:Archived",
    }
    assert _roundtrip(request) == request


def test_metadata_update_iti57(schemas: Schemas) -> None:
    entry = make_document(
        entry_uuid="Document02",
        logical_id=ENTRY_UUID,
        version="1",
        repository_unique_id="1.2.250.1.213.4.1.1.1.2",
        availability_status=AvailabilityStatus.APPROVED,
    )
    request = SubmissionRequest.metadata_update(make_submission_set(), entry, previous_version="1")
    element = build_submit_objects_request(request)
    schemas.assert_valid(schemas.lcm, element)
    extrinsic = element.find(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject")
    assert extrinsic is not None and extrinsic.get("lid") == ENTRY_UUID
    assert _roundtrip(request) == request


def test_a_folder_and_extra_slots_survive(schemas: Schemas) -> None:
    from dmp_connector.xds import Folder

    folder = Folder(
        entry_uuid="Folder01",
        unique_id="1.2.250.1.999.7.9",
        patient_id=PATIENT,
        codes=(Code.of("X", "1.2.3", "Folder code"),),
        title="Dossier",
        last_update_time=XdsTime.parse("2025"),
    )
    document = make_document(extra_slots=(Slot(name="urn:x:custom", values=("a", "")),))
    request = SubmissionRequest.build(make_submission_set(), [document], folders=[folder])
    schemas.assert_valid(schemas.lcm, build_submit_objects_request(request))
    assert _roundtrip(request) == request


# ------------------------------------------------------------------------------------ the shared samples


@pytest.mark.parametrize("name", SAMPLE_SUBMISSIONS)
def test_every_sample_reads_writes_validates_and_reads_back_equal(name: str, schemas: Schemas) -> None:
    data = (SAMPLES / name).read_bytes()
    schemas.assert_valid(schemas.lcm, parse_xml(data))
    request = parse_submit_objects_request(data)
    written = build_submit_objects_request(request)
    schemas.assert_valid(schemas.lcm, written)
    assert parse_submit_objects_request(to_bytes(written)) == request


def test_the_first_sample_in_detail() -> None:
    request = parse_submit_objects_request((SAMPLES / "SubmitObjectsRequest_ebrs30.xml").read_bytes())
    (entry,) = request.documents
    assert entry.entry_uuid == "Document01" and entry.unique_id == "1.3.6.1.4.1.21367.2005.3.9999.32"
    assert (
        entry.patient_id is not None and entry.patient_id.text == "SELF-5^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"
    )  # its scheme UUID has a space in it
    assert entry.creation_time == XdsTime.parse("20051224")
    assert entry.title == "Physical" and entry.comments is None
    assert entry.class_code == ForeignCode(
        code="History and Physical", code_system="Connect-a-thon classCodes", display_name="History and Physical"
    )
    assert entry.type_code == ForeignCode(
        code="34108-1", code_system="LOINC", display_name="Outpatient Evaluation And Management"
    )
    (author,) = entry.authors
    assert author.person == Xcn(id="Gerald Smitty")
    # The misspelt authorSpeciality is not TF-3's authorSpecialty: kept as it came, under its own name.
    assert author.specialties == () and author.extra_slots == (Slot(name="authorSpeciality", values=("Orthopedic",)),)
    assert len(entry.source_patient_info) == 5
    ss = request.submission_set
    assert (ss.entry_uuid, ss.source_id, ss.comments) == (SUBMISSION_SET_ID, "3670984664", "Annual physical")
    assert ss.content_type_code is not None and ss.content_type_code.code == "History and Physical"
    has_member, snapshot = request.associations
    assert has_member.association_type is AssociationType.HAS_MEMBER
    assert snapshot.association_type is AssociationType.IS_SNAPSHOT_OF
    assert request.problems() == ["submission set: sourceId 3670984664 is not an OID of at most 64 characters"]
    assert len(request.problems(MetadataProfile.DMP)) > 5


def test_the_update_sample_in_detail() -> None:
    request = parse_submit_objects_request((SAMPLES / "SubmitObjectsRequest_ebrs30_update.xml").read_bytes())
    (entry,) = request.documents
    assert entry.logical_id == "urn:uuid:20744602-ba65-44e9-87ee-a52303a5183e" and entry.version == "1"
    assert entry.availability_status is AvailabilityStatus.APPROVED
    assert (entry.hash, entry.size, entry.repository_unique_id) == (
        "31e311402a7e717d1bede88df6b42c0b8e91ea91",
        1459,
        "1.19.6.24.109.42.1.5",
    )
    assert [slot.name for slot in entry.extra_slots] == ["URI", "documentAvailability"]
    assert len(entry.event_codes) == 2 and len(entry.authors) == 2
    assert entry.authors[1].person == Xcn(family_name="Dopplemeyer", given_name="Sherry")
    member, update = request.associations
    assert member.previous_version == "1"
    assert update.association_type is AssociationType.UPDATE_AVAILABILITY_STATUS
    assert (update.original_status, update.new_status) == (AvailabilityStatus.APPROVED, AvailabilityStatus.DEPRECATED)


# ------------------------------------------------------------------------------------ the signature entry


def test_the_signature_entry_fits_and_the_whole_deposit_validates(pki_files: PkiFiles, schemas: Schemas) -> None:
    pki = pki_files.pki
    issued = pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    signer = FileSigner([issued.certificate, pki.ca.certificate], issued.key)
    document = make_document()
    signature = sign_submission_set(
        submission_set_unique_id=make_submission_set().unique_id,
        documents=[SubmittedDocument(unique_id=document.unique_id, content=b"%PDF-1.4 test", is_cda=False)],
        signer=signer,
        signing_time=dt.datetime.now(dt.UTC),
    )
    entry = DocumentEntry.for_signature(
        signature,
        patient_id=PATIENT,
        healthcare_facility_type_code=FACILITY,
        practice_setting_code=PRACTICE,
        legal_authenticator=DOCTOR,
    )
    assert (entry.entry_uuid, entry.mime_type, entry.language_code) == ("Signature01", "text/xml", "art")
    assert entry.class_code is not None and entry.class_code.code_system == "URN"
    assert entry.hash == signature.sha1 and entry.size == len(signature.xml)
    assert entry.creation_time == entry.service_stop_time == XdsTime.of(signature.signing_time)

    request = SubmissionRequest.build(
        make_submission_set(),
        [document, entry],
        associations=[signature.signs_association("Signature01", SUBMISSION_SET_ID)],
        contents={"Document01": "doc1@test", "Signature01": "sig@test"},
    ).check(MetadataProfile.DMP)
    signs = request.associations[-1]
    assert (signs.entry_uuid, signs.association_type) == ("Association03", AssociationType.SIGNS)
    assert (signs.source_object, signs.target_object, signs.submission_set_status) == (
        "Signature01",
        SUBMISSION_SET_ID,
        "Original",
    )
    wrapper = build_provide_and_register_request(request)
    schemas.assert_xdsb_valid(wrapper)
    assert parse_provide_and_register_request(to_bytes(wrapper))[0] == request


# ------------------------------------------------------------------------------------ registry responses


def test_registry_response_round_trip(schemas: Schemas) -> None:
    response = RegistryResponse(
        status=ResponseStatus.PARTIAL_SUCCESS,
        errors=(
            RegistryError(error_code=RegistryErrorCode.UNKNOWN_PATIENT_ID, code_context="Patient inconnu"),
            RegistryError(
                error_code="DMP_LOCAL_42", code_context="x", severity=ErrorSeverity.WARNING, location="Document01"
            ),
        ),
        request_id="urn:uuid:0f6c5f32-5a3d-4a4e-9b8e-0d9d2e1f0a11",
    )
    element = build_registry_response(response)
    schemas.assert_valid(schemas.rs, element)
    read = parse_registry_response(to_bytes(element))
    assert read == response
    assert read.errors[1].error_code == "DMP_LOCAL_42" and read.warnings == (read.errors[1],)


def test_a_registry_response_with_an_unknown_status_is_refused() -> None:
    data = b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="urn:x:Maybe"/>'
    with pytest.raises(MalformedResponseError, match="unknown status urn:x:Maybe"):
        parse_registry_response(data)
    with pytest.raises(MalformedResponseError, match=r"unknown status \(none\)"):
        parse_registry_response(data.replace(b' status="urn:x:Maybe"', b""))


def test_the_ebrs4_partial_success_urn_is_read_as_ihe_s() -> None:
    data = (
        b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
        b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:PartialSuccess"/>'
    )
    assert parse_registry_response(data).status is ResponseStatus.PARTIAL_SUCCESS


def test_raise_for_status() -> None:
    RegistryResponse(status=ResponseStatus.SUCCESS).raise_for_status()
    partial = RegistryResponse(
        status=ResponseStatus.PARTIAL_SUCCESS,
        errors=(RegistryError(error_code="XDSRepositoryError", code_context="Patient 279035121518989 inconnu"),),
    )
    partial.raise_for_status(allow_partial=True)
    with pytest.raises(RegistryResponseError) as caught:
        partial.raise_for_status(service="DMP", operation="deposit")
    error = caught.value
    assert isinstance(error, ServiceError)
    assert (error.service, error.code, error.transient) == ("DMP", "XDSRepositoryError", False)
    assert str(error).startswith("DMP deposit partially failed: XDSRepositoryError")
    assert "279035121518989" not in str(error), "a codeContext may hold patient data: it stays in .text"
    assert error.text == "Patient 279035121518989 inconnu"

    busy = RegistryResponse(
        status=ResponseStatus.FAILURE, errors=(RegistryError(error_code="XDSRegistryBusy", code_context=""),)
    )
    with pytest.raises(RegistryResponseError) as caught:
        busy.raise_for_status()
    assert caught.value.transient


# ------------------------------------------------------------------------------------ retrieve


def test_retrieve_request_round_trip(schemas: Schemas) -> None:
    request = RetrieveDocumentSetRequest(
        documents=(
            DocumentRequest(repository_unique_id="1.2.250.1.213.4.1.1.1.2", document_unique_id="1.2.250.1.999.7.2"),
            DocumentRequest(
                repository_unique_id="1.2.250.1.213.4.1.1.1.2",
                document_unique_id="1.2.250.1.999.7.3",
                home_community_id="urn:oid:1.2.3",
            ),
        )
    )
    element = build_retrieve_document_set_request(request)
    schemas.assert_xdsb_valid(element)
    assert parse_retrieve_document_set_request(to_bytes(element)) == request


def test_retrieve_response_resolves_the_mtom_parts(schemas: Schemas) -> None:
    response = RetrieveDocumentSetResponse(
        response=RegistryResponse(status=ResponseStatus.SUCCESS),
        documents=(
            RetrievedDocument(
                repository_unique_id="1.2.250.1.213.4.1.1.1.2",
                document_unique_id="1.2.250.1.999.7.2",
                mime_type="application/pdf",
                content_id="doc/1@test",
            ),
        ),
    )
    element = build_retrieve_document_set_response(response)
    schemas.assert_xdsb_valid(element)
    data = to_bytes(element)
    assert parse_retrieve_document_set_response(data) == response
    attachment = Attachment.from_bytes(b"%PDF", content_id="doc/1@test", content_type="application/pdf")
    (document,) = parse_retrieve_document_set_response(data, {"doc/1@test": attachment}).documents
    assert document.content is not None and document.content.read() == b"%PDF"
    with pytest.raises(MalformedResponseError, match="not in the message"):
        parse_retrieve_document_set_response(data, {})


def test_retrieve_response_with_inline_base64() -> None:
    payload = base64.b64encode(b"hello").decode()
    data = (
        '<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="urn:ihe:iti:xds-b:2007" '
        'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0">'
        '<rs:RegistryResponse status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>'
        "<xdsb:DocumentResponse><xdsb:RepositoryUniqueId>1.2</xdsb:RepositoryUniqueId>"
        "<xdsb:DocumentUniqueId>1.3</xdsb:DocumentUniqueId><xdsb:mimeType>text/plain</xdsb:mimeType>"
        f"<xdsb:Document>{payload}</xdsb:Document></xdsb:DocumentResponse></xdsb:RetrieveDocumentSetResponse>"
    ).encode()
    (document,) = parse_retrieve_document_set_response(data, {}).documents
    assert document.content_id is None and document.content is not None and document.content.read() == b"hello"


def test_a_retrieve_response_document_needs_a_content_id() -> None:
    document = RetrievedDocument(repository_unique_id="1.2", document_unique_id="1.3", mime_type="text/plain")
    response = RetrieveDocumentSetResponse(
        response=RegistryResponse(status=ResponseStatus.SUCCESS), documents=(document,)
    )
    with pytest.raises(ValidationError, match="content_id"):
        build_retrieve_document_set_response(response)


# ------------------------------------------------------------------------------------ what is refused


def _sample_with(old: bytes, new: bytes) -> bytes:
    data = (SAMPLES / "SubmitObjectsRequest_ebrs30_2.xml").read_bytes()
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'identificationScheme="urn:uuid:2e82c1f6', b'identificationScheme="urn:uuid:00000000', "has no uniqueId"),
        (b'<rim:Slot name="languageCode">', b'<rim:Slot name="creationTime">', "slot creationTime appears twice"),
        (b'value="SELF-5^^^&amp;1.3.6.1.4.1.21367.2005.3.7&amp;ISO">', b'value="SELF-5">', "patient_id"),
        (b"<rim:Value>20051224</rim:Value>", b"<rim:Value>24/12/2005</rim:Value>", "creation_time"),
        (b'objectType="urn:uuid:7edca82f', b'objectType="urn:uuid:00000000', "neither stable nor on-demand"),
        (b'classificationNode="urn:uuid:a54d6aa5', b'classificationNode="urn:uuid:00000000', "neither a submission"),
        (b'sourceObject="SubmissionSet01"', b"", "no sourceObject"),
    ],
)
def test_malformed_metadata_is_refused_by_name(old: bytes, new: bytes, message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message) as caught:
        parse_submit_objects_request(_sample_with(old, new))
    assert "SELF-5" not in str(caught.value), "patient ids are never quoted in errors"


def test_a_submission_has_exactly_one_submission_set() -> None:
    data = (
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList/>'
        "</lcm:SubmitObjectsRequest>"
    ).encode()
    with pytest.raises(MalformedResponseError, match="0 submission sets"):
        parse_submit_objects_request(data)


def test_namespaces_are_matched_by_uri_not_prefix() -> None:
    request = make_deposit()
    written = to_bytes(build_submit_objects_request(request))
    data = written.replace(b"<rim:", b"<r:").replace(b"</rim:", b"</r:").replace(b"xmlns:rim=", b"xmlns:r=")
    assert b"rim:" not in data.replace(RIM.encode(), b"")
    assert parse_submit_objects_request(data) == request.model_copy(update={"contents": {}})
    forged = to_bytes(build_submit_objects_request(request)).replace(RIM.encode(), b"urn:not-rim")
    with pytest.raises(MalformedResponseError, match="RegistryObjectList"):
        parse_submit_objects_request(forged)
    with pytest.raises(MalformedResponseError, match="not a SubmitObjectsRequest"):
        parse_submit_objects_request(b'<SubmitObjectsRequest xmlns="urn:evil"/>')


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "boom">]>'
        b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="&x;"/>',
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="&x;"/>',
        b'<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="x">'
        + b"<a>" * 300
        + b"</a>" * 300
        + b"</rs:RegistryResponse>",
    ],
    ids=["entity", "xxe", "depth"],
)
def test_hostile_xml_is_refused_unread(data: bytes) -> None:
    with pytest.raises(UnsafeXmlError):
        parse_registry_response(data)


def test_messages_are_read_as_bytes_or_elements_only() -> None:
    with pytest.raises(TypeError):
        parse_registry_response("<text/>")  # type: ignore[arg-type]


def test_an_author_without_anything_is_a_problem() -> None:
    with pytest.raises(ValidationError, match="author 1 has neither"):
        SubmissionRequest.build(make_submission_set(authors=(Author(roles=("x",)),)), [make_document()])


def test_the_samples_are_where_the_tests_expect_them() -> None:
    assert SAMPLE_SUBMISSIONS == [
        "SubmitObjectsRequest_ebrs30.xml",
        "SubmitObjectsRequest_ebrs30_2.xml",
        "SubmitObjectsRequest_ebrs30_update.xml",
    ]
    assert Path(SAMPLES / "iti18request.xml").is_file()


def test_document_problems_compare_each_document_with_its_entry() -> None:
    """ITI-41 as a repository checks it: each entry has its bytes, and their size and SHA-1 match the entry."""
    request = make_deposit()  # Document01: hash of b"", size 1234
    assert request.document_problems({"Document01": b""}) == [
        "document Document01: size differs from the document's length (XDSNonIdenticalSize)"
    ]
    assert request.document_problems({"Document01": b"a" * 1234}) == [
        "document Document01: hash differs from the SHA-1 of the document (XDSNonIdenticalHash)"
    ]
    assert request.document_problems({"Document01": None}) == []  # an MTOM part not at hand: not judged
    assert request.document_problems({"Other": b""}) == [
        "document Document01 has no xdsb:Document (XDSMissingDocument)",
        "the xdsb:Document Other has no DocumentEntry (XDSMissingDocumentMetadata)",
    ]
