"""The XDS operations without I/O: endpoints, actions, schema-valid bodies, typed answers and errors."""

from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree

from dmp_connector._transport import CallContext
from dmp_connector.config import DmpService
from dmp_connector.dmp.errors import (
    DmpAccessDeniedError,
    DmpClosedError,
    DmpNotFoundError,
    DmpRegistryError,
    DmpServiceError,
    DocumentConflictError,
    PartialDepositError,
    fault_error,
)
from dmp_connector.dmp.mapping import prepare_deposit
from dmp_connector.dmp.operations import ProvideAndRegister, RegistryStoredQuery, RetrieveDocumentSet, UpdateDocumentSet
from dmp_connector.errors import PatientMismatchError, SoapFaultError
from dmp_connector.retries import is_retryable
from dmp_connector.soap import Attachment, SoapMessage, xop_include
from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.xds import (
    AdhocQueryRequest,
    AdhocQueryResponse,
    AvailabilityStatus,
    Cx,
    DocumentRequest,
    FindDocumentsQuery,
    RegistryResponse,
    RegistryResponseError,
    ResponseStatus,
    RetrieveDocumentSetRequest,
    ReturnType,
    SubmissionRequest,
    SubmissionSet,
    XdsTime,
    build_adhoc_query_response,
)
from dmp_connector.xds.ebrim import RetrievedDocument, RetrieveDocumentSetResponse, build_retrieve_document_set_response
from dmp_connector.xml import to_bytes
from tests.dmp.client_support import (
    BASE,
    OTHER,
    PATIENT,
    SETTINGS,
    cda_document,
    envelope,
    error,
    registry,
    schemas,
    signer,
)

CALL = CallContext(settings=SETTINGS, message_id="urn:uuid:0f6c5b6e-4a2b-4b5d-9d1e-3a2b1c0d9e8f")
CX = Cx.parse(PATIENT.ins.to_xds_cx())  # type: ignore[union-attr]
WHEN = dt.datetime.now(dt.UTC).replace(microsecond=0)


def answer(body: etree._Element, attachments: dict[str, Attachment] | None = None) -> SoapMessage:
    return parse_envelope(to_bytes(envelope(body)), attachments=attachments)


@pytest.fixture(scope="module")
def deposit() -> ProvideAndRegister:
    prepared = prepare_deposit(
        cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT, submission_time=WHEN
    )
    return ProvideAndRegister(prepared, security=None)


# ------------------------------------------------------------------------------------------ ITI-41


def test_deposit_goes_to_the_repository_over_mtom(deposit: ProvideAndRegister) -> None:
    assert deposit.endpoint(SETTINGS.environment) == f"{BASE}/si-dmp-server/v2/services/repository"
    assert deposit.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert deposit.safe_to_repeat is True
    request = deposit.build(CALL)
    assert [a.content_id for a in request.attachments] == list(deposit.prepared.request.contents.values())
    schemas().assert_xdsb_valid(request.body[0])
    assert request.patient == PATIENT.ins.matricule  # type: ignore[union-attr]
    assert request.document_ids == (deposit.prepared.ids.document, deposit.prepared.ids.signature)


def test_deposit_success_and_duplicate_only_answers_are_returned(deposit: ProvideAndRegister) -> None:
    assert deposit.parse(answer(registry())).ok
    duplicate = registry(ResponseStatus.FAILURE, error("XDSDuplicateUniqueIdInRegistry", "déjà", "1.2.3"))
    response = deposit.parse(answer(duplicate))
    assert (
        response.status is ResponseStatus.FAILURE and response.errors[0].error_code == "XDSDuplicateUniqueIdInRegistry"
    )


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("XDSUnknownPatientId", DmpNotFoundError),
        ("DMPNotFound", DmpNotFoundError),
        ("DMPClosed", DmpClosedError),
        ("DMPAccessDenied", DmpAccessDeniedError),
        ("XDSNonIdenticalHash", DocumentConflictError),
        ("XDSRegistryMetadataError", DmpRegistryError),
        ("DMP_SOMETHING_NOT_PUBLIC", DmpRegistryError),
    ],
)
def test_deposit_failures_are_typed_and_keep_their_codes(
    deposit: ProvideAndRegister, code: str, kind: type[Exception]
) -> None:
    body = registry(ResponseStatus.FAILURE, error(code, "contexte qui peut citer des données", "loc"))
    with pytest.raises(kind) as info:
        deposit.parse(answer(body))
    err = info.value
    assert isinstance(err, DmpRegistryError) and isinstance(err, RegistryResponseError)
    assert err.codes == (code,) and err.code == code and err.service == "dmp"
    assert err.response.errors[0].location == "loc"
    assert "contexte" not in str(err)


def test_a_duplicate_mixed_with_another_error_is_raised(deposit: ProvideAndRegister) -> None:
    body = registry(ResponseStatus.FAILURE, error("XDSDuplicateUniqueIdInRegistry"), error("XDSRegistryMetadataError"))
    with pytest.raises(DmpRegistryError) as info:
        deposit.parse(answer(body))
    assert info.value.codes == ("XDSDuplicateUniqueIdInRegistry", "XDSRegistryMetadataError")


def test_busy_is_transient_and_retryable(deposit: ProvideAndRegister) -> None:
    with pytest.raises(DmpRegistryError) as info:
        deposit.parse(answer(registry(ResponseStatus.FAILURE, error("XDSRepositoryBusy"))))
    assert info.value.transient and is_retryable(info.value, SETTINGS.retry)


def test_partial_success_is_reported_per_document(deposit: ProvideAndRegister) -> None:
    signature_id = deposit.prepared.ids.signature
    body = registry(
        ResponseStatus.PARTIAL_SUCCESS,
        error("XDSRepositoryMetadataError", "signature refusée", signature_id),
    )
    with pytest.raises(PartialDepositError) as info:
        deposit.parse(answer(body))
    by_entry = {d.entry_id: d for d in info.value.documents}
    assert by_entry["Document01"].stored and not by_entry["Signature01"].stored
    assert by_entry["Signature01"].errors[0].error_code == "XDSRepositoryMetadataError"
    assert "partially failed" in str(info.value)


# ------------------------------------------------------------------------------------------ ITI-18


def test_stored_query_is_schema_valid_and_safe() -> None:
    operation = RegistryStoredQuery(
        AdhocQueryRequest(query=FindDocumentsQuery(patient_id=CX), return_type=ReturnType.OBJECT_REF),
        security=None,
        patient="279035121518989",
    )
    assert operation.endpoint(SETTINGS.environment).endswith("/services/registry")
    assert operation.action == "urn:ihe:iti:2007:RegistryStoredQuery" and operation.safe_to_repeat
    body = operation.build(CALL).body[0]
    schemas().assert_valid(schemas().query, body)
    assert body.find(".//{*}ResponseOption").get("returnType") == "ObjectRef"  # type: ignore[union-attr]


def test_stored_query_failure_raises_and_partial_is_kept() -> None:
    operation = RegistryStoredQuery(
        AdhocQueryRequest(query=FindDocumentsQuery(patient_id=CX)), security=None, patient=None
    )
    failure = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.FAILURE, errors=(error("XDSTooManyResults"),))
    )
    with pytest.raises(DmpRegistryError) as info:
        operation.parse(answer(build_adhoc_query_response(failure)))
    assert info.value.codes == ("XDSTooManyResults",)
    partial = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.PARTIAL_SUCCESS, errors=(error("XDSRegistryError"),))
    )
    assert operation.parse(answer(build_adhoc_query_response(partial))).response.status is (
        ResponseStatus.PARTIAL_SUCCESS
    )


# ------------------------------------------------------------------------------------------ ITI-43


def test_retrieve_resolves_the_mtom_part() -> None:
    request = RetrieveDocumentSetRequest(
        documents=(DocumentRequest(repository_unique_id="1.2.250.1.213.4.1.1.1.2", document_unique_id="1.2.3"),)
    )
    operation = RetrieveDocumentSet(request, security=None, patient=None)
    assert operation.endpoint(SETTINGS.environment).endswith("/services/repository")
    assert operation.action == "urn:ihe:iti:2007:RetrieveDocumentSet" and operation.safe_to_repeat
    schemas().assert_xdsb_valid(operation.build(CALL).body[0])
    part = Attachment.from_bytes(b"<ClinicalDocument/>", content_type="text/xml")
    body = build_retrieve_document_set_response(
        RetrieveDocumentSetResponse(
            response=RegistryResponse(status=ResponseStatus.SUCCESS),
            documents=(
                RetrievedDocument(
                    repository_unique_id="1.2.250.1.213.4.1.1.1.2",
                    document_unique_id="1.2.3",
                    mime_type="text/xml",
                    content_id=part.content_id,
                ),
            ),
        )
    )
    result = operation.parse(answer(body, {part.content_id: part}))
    assert result.documents[0].content is not None and result.documents[0].content.read() == b"<ClinicalDocument/>"
    assert xop_include(part.content_id) is not None


# ------------------------------------------------------------------------------------------ ITI-57


def test_update_is_lcm_valid_and_not_repeated() -> None:
    ss = SubmissionSet(
        unique_id="1.2.250.1.999.7.9",
        source_id="1.2.250.1.999",
        patient_id=CX,
        submission_time=XdsTime.now(),
        content_type_code=SETTINGS.dmp.content_type_code,
    )
    request = SubmissionRequest.status_update(
        ss,
        "urn:uuid:0f6c5b6e-4a2b-4b5d-9d1e-3a2b1c0d9e8f",
        original_status=AvailabilityStatus.APPROVED,
        new_status=AvailabilityStatus.DELETED,
    )
    operation = UpdateDocumentSet(request, security=None, patient=None)
    assert operation.action == "urn:ihe:iti:2010:UpdateDocumentSet" and not operation.safe_to_repeat
    assert operation.endpoint(SETTINGS.environment) == SETTINGS.environment.dmp_url(DmpService.REGISTRY)
    body = operation.build(CALL).body[0]
    schemas().assert_valid(schemas().lcm, body)
    assert b"urn:asip:ci-sis:2010:StatusType:Deleted" in to_bytes(body)
    assert operation.parse(answer(registry())).ok
    with pytest.raises(DmpRegistryError):
        operation.parse(answer(registry(ResponseStatus.PARTIAL_SUCCESS, error("XDSMetadataUpdateError"))))


# ------------------------------------------------------------------------------------------ faults


def test_receiver_faults_are_transient_sender_faults_are_not() -> None:
    receiver = fault_error(SoapFaultError(code="{http://www.w3.org/2003/05/soap-envelope}Receiver", reason="panne"))
    assert receiver.transient and is_retryable(receiver, SETTINGS.retry) and receiver.text == "panne"
    assert "panne" not in str(receiver)
    sender = fault_error(SoapFaultError(code="{http://www.w3.org/2003/05/soap-envelope}Sender", reason="VIHF"))
    assert not sender.transient and isinstance(sender, DmpServiceError)


def test_a_fault_subcode_naming_a_dmp_refusal_is_typed() -> None:
    fault = SoapFaultError(
        code="{http://www.w3.org/2003/05/soap-envelope}Sender", subcodes=("{urn:dmp}DMPAccessDenied",), reason="non"
    )
    err = fault_error(fault, operation="RegistryStoredQuery")
    assert isinstance(err, DmpAccessDeniedError) and err.codes == ("Sender", "DMPAccessDenied")
    assert ProvideAndRegister.map_fault is not None


def _retrieve_answer(
    operation: RetrieveDocumentSet, content: bytes, mime_type: str = "text/xml"
) -> RetrieveDocumentSetResponse:
    part = Attachment.from_bytes(content, content_type=mime_type)
    body = build_retrieve_document_set_response(
        RetrieveDocumentSetResponse(
            response=RegistryResponse(status=ResponseStatus.SUCCESS),
            documents=(
                RetrievedDocument(
                    repository_unique_id="1.2.250.1.213.4.1.1.1.2",
                    document_unique_id="1.2.3",
                    mime_type=mime_type,
                    content_id=part.content_id,
                ),
            ),
        )
    )
    return operation.parse(answer(body, {part.content_id: part}))


def test_retrieve_reads_a_cda_up_to_its_record_target_only() -> None:
    """The recordTarget decides even when what follows the header is unreadable (it is not parsed at all)."""
    request = RetrieveDocumentSetRequest(
        documents=(DocumentRequest(repository_unique_id="1.2.250.1.213.4.1.1.1.2", document_unique_id="1.2.3"),)
    )
    operation = RetrieveDocumentSet(request, security=None, patient=None, patient_id=CX)
    own, other = cda_document(), cda_document(patient=OTHER)
    cut = own.index(b"</recordTarget>") + len(b"</recordTarget>")
    tail = b"<author><broken></author>"  # not well-formed: a whole-document parse refuses it
    assert _retrieve_answer(operation, own[:cut] + tail).documents
    other_cut = other.index(b"</recordTarget>") + len(b"</recordTarget>")
    with pytest.raises(PatientMismatchError) as info:
        _retrieve_answer(operation, other[:other_cut] + tail)
    assert info.value.problems == ("1 CDA document(s) whose recordTarget is another patient's INS",)
    with pytest.raises(PatientMismatchError):
        _retrieve_answer(operation, other)  # the whole document, as before
    assert _retrieve_answer(operation, own).documents


def test_a_cda_labelled_as_a_pdf_is_still_checked_against_the_patient() -> None:
    """The check reads the bytes, not the label: a CDA declared application/pdf is a CDA to whoever sniffs it."""
    request = RetrieveDocumentSetRequest(
        documents=(DocumentRequest(repository_unique_id="1.2.250.1.213.4.1.1.1.2", document_unique_id="1.2.3"),)
    )
    operation = RetrieveDocumentSet(request, security=None, patient=None, patient_id=CX)
    with pytest.raises(PatientMismatchError):
        _retrieve_answer(operation, cda_document(patient=OTHER), mime_type="application/pdf")
    assert _retrieve_answer(operation, cda_document(), mime_type="application/pdf").documents
    assert _retrieve_answer(operation, b"%PDF-1.7 not a CDA", mime_type="application/pdf").documents
