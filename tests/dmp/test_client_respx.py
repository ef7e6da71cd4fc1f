"""DmpClient and AsyncDmpClient against canned answers (respx): every operation, its error shapes, the VIHF it sends."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from cryptography import x509

from dmp_connector.audit import MemorySink
from dmp_connector.cda import NonXmlBody, extract_metadata
from dmp_connector.codes import Code
from dmp_connector.config import DmpService, Settings
from dmp_connector.dmp import _td
from dmp_connector.dmp.client import Access, AsyncDmpClient, DmpClient, DocumentList
from dmp_connector.dmp.errors import (
    DmpAccessDeniedError,
    DmpAlreadyExistsError,
    DmpNotFoundError,
    DmpRegistryError,
    DmpServiceError,
    PartialDepositError,
)
from dmp_connector.dmp.mapping import document_entry
from dmp_connector.dmp.td import (
    AckDetail,
    Acknowledgement,
    AckType,
    AuthorisationStatus,
    ClosureReason,
    DmpState,
    DmpStatus,
    Oppositions,
    PatientCandidate,
    PatientSearch,
    RecentDmp,
    RecentDmpKind,
    RegistrationKind,
    ServiceStatus,
)
from dmp_connector.errors import (
    ConfigurationError,
    HttpStatusError,
    IdentityNotQualifiedError,
    MalformedResponseError,
    ValidationError,
)
from dmp_connector.ins import BirthDate
from dmp_connector.signature import AccessMode, FileSigner, SignatureAlgorithm
from dmp_connector.signature import vihf as vihf_module
from dmp_connector.soap import Attachment
from dmp_connector.xds import (
    INVISIBLE_PATIENT,
    MASQUE_PS,
    AdhocQueryResponse,
    AvailabilityStatus,
    DocumentEntry,
    DocumentIntegrityError,
    FindDocumentsQuery,
    GetDocumentsQuery,
    ObjectRef,
    RegistryResponse,
    ResponseStatus,
    ReturnType,
    build_adhoc_query_response,
    parse_adhoc_query_request,
    parse_submit_objects_request,
)
from dmp_connector.xds.ebrim import RetrievedDocument, RetrieveDocumentSetResponse, build_retrieve_document_set_response
from dmp_connector.xml import to_bytes
from tests.cda.conftest import make_pdf
from tests.dmp.client_support import (
    INS_TEST,
    OTHER,
    PATIENT,
    SETTINGS,
    UNQUALIFIED,
    cda_document,
    error,
    fault_response,
    mtom_response,
    received,
    registry,
    registry_entry,
    schemas,
    signer,
    soap_response,
    url,
    vihf_attribute,
)

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
UUID1 = "urn:uuid:11111111-1111-4111-8111-111111111111"
ANSWER_HEADER = _td.Hl7Header(
    message_id="a-1",
    id_root=_td.DMP_DEVICE_ROOT,
    creation_time=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
    sender_root=_td.DMP_DEVICE_ROOT,
    receiver_root="1.2.250.1.999",
    target_message_id="m-1",
)
ACCEPT = Acknowledgement(type_code=AckType.ACCEPT)


def call(mode: str, method: str, *args: Any, settings: Settings = SETTINGS, **kwargs: Any) -> Any:
    """Call one client method on a fresh sync or async client."""
    audit = kwargs.pop("audit", ())
    if mode == "sync":
        with DmpClient(settings, signer=signer(), audit=audit) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run() -> Any:
        async with AsyncDmpClient(settings, signer=signer(), audit=audit) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


def stored_entry(text: str = "Compte rendu de consultation", uuid: str = UUID1) -> tuple[DocumentEntry, bytes]:
    data = cda_document(text)
    return registry_entry(document_entry(extract_metadata(data)), uuid=uuid), data


def query_answer(*entries: DocumentEntry, refs: tuple[str, ...] = ()) -> httpx.Response:
    response = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.SUCCESS),
        documents=entries,
        object_refs=tuple(ObjectRef(id=r) for r in refs),
    )
    return soap_response(build_adhoc_query_response(response))


# ========================================================================================= the API


def test_async_client_mirrors_the_sync_client() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync, asyn = public(DmpClient), public(AsyncDmpClient)
    assert {("aclose" if n == "close" else n) for n in sync} == set(asyn)
    for name, signature in sync.items():
        twin = getattr(AsyncDmpClient, "aclose" if name == "close" else name)
        assert inspect.iscoroutinefunction(twin) is (name != "with_options"), name  # with_options does no I/O
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name
        for parameter in signature.parameters.values():
            other = inspect.signature(twin).parameters[parameter.name]
            assert (other.kind, other.default) == (parameter.kind, parameter.default), (name, parameter.name)
    init = list(inspect.signature(DmpClient.__init__).parameters)
    assert init == list(inspect.signature(AsyncDmpClient.__init__).parameters)
    assert init == ["self", "settings", "signer", "http_client", "audit", "retry"]


def test_without_a_signer_or_credentials_the_error_is_clear() -> None:
    with pytest.raises(ConfigurationError, match="signature certificate"):
        DmpClient(SETTINGS)


# ========================================================================================= deposit


@MODES
@respx.mock
def test_deposit_sends_a_signed_mtom_submission_with_a_vihf(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(registry()))
    sink = MemorySink()
    result = call(mode, "deposit", cda_document(), patient=PATIENT, audit=[sink])
    assert not result.already_deposited and result.size > 0
    request = route.calls.last.request
    assert request.headers["Content-Type"].startswith("multipart/related")
    message = received(request)
    schemas().assert_xdsb_valid(message.payload)
    assert len(message.attachments) == 2
    resource = vihf_attribute(message, vihf_module.ATTR_RESOURCE_ID)
    assert [v.text for v in resource] == [PATIENT.ins.to_xds_cx()]  # type: ignore[union-attr]
    purpose = vihf_attribute(message, vihf_module.ATTR_PURPOSE)[0][0]
    assert purpose.get("code") == "normal"
    event, outcome = sink.events
    assert event.kind == "attempt" and outcome.kind == "outcome" and outcome.correlation_id == event.correlation_id
    assert outcome.patient == event.patient and outcome.document_ids == event.document_ids
    assert event.service == "dmp" and event.patient is not None and event.patient.startswith("hmac-sha256:")
    assert INS_TEST.matricule not in event.model_dump_json()
    assert event.document_ids == (result.document_unique_id, result.signature_unique_id)


class _ThreadRecordingSigner:
    """The test signer, noting which thread each signature is made in (a card would block it for its PIN)."""

    def __init__(self) -> None:
        self._inner = signer()
        self.threads: list[int] = []

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        self.threads.append(threading.get_ident())
        return self._inner.sign(data, algorithm)

    def certificate_chain(self) -> Sequence[x509.Certificate]:
        return self._inner.certificate_chain()


@respx.mock
def test_the_async_client_prepares_and_signs_a_deposit_off_the_event_loop() -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(registry()))
    recording = _ThreadRecordingSigner()

    async def run() -> int:
        async with AsyncDmpClient(SETTINGS, signer=recording) as client:
            await client.deposit(cda_document(), patient=PATIENT)
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert recording.threads and loop_thread not in recording.threads


class _ThreadRecordingFileSigner(FileSigner):
    """An in-memory key, noting which thread signs the submission set and which the VIHF."""

    def __init__(self) -> None:
        inner = signer()
        super().__init__(inner.certificate_chain(), inner._key)
        self.deposit_threads: list[int] = []
        self.vihf_threads: list[int] = []

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        (self.deposit_threads if b"IHEManifest" in data else self.vihf_threads).append(threading.get_ident())
        return super().sign(data, algorithm)


@pytest.mark.parametrize("pdf_size", [1_000, 1_500_000])
@respx.mock
def test_the_async_client_keeps_a_quick_in_memory_signature_on_the_loop_unless_the_document_is_large(
    pdf_size: int,
) -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(registry()))
    recording = _ThreadRecordingFileSigner()
    document = cda_document(body=NonXmlBody(data=make_pdf("Compte rendu", padding=pdf_size)))

    async def run() -> int:
        async with AsyncDmpClient(SETTINGS, signer=recording) as client:
            await client.deposit(document, patient=PATIENT)
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert recording.vihf_threads == [loop_thread]
    assert len(recording.deposit_threads) == 1
    assert (recording.deposit_threads[0] == loop_thread) is (pdf_size < 1 << 20)


@respx.mock
def test_the_sync_client_signs_in_the_calling_thread() -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(registry()))
    recording = _ThreadRecordingSigner()
    with DmpClient(SETTINGS, signer=recording) as client:
        client.deposit(cda_document(), patient=PATIENT)
    assert recording.threads and set(recording.threads) == {threading.get_ident()}


@MODES
@respx.mock
def test_deposit_retries_a_503_then_succeeds(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "0"}), soap_response(registry())]
    )
    result = call(mode, "deposit", cda_document(), patient=PATIENT)
    assert route.call_count == 2 and not result.already_deposited


@MODES
@respx.mock
def test_deposit_gives_up_after_the_attempts(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(return_value=httpx.Response(503))
    with pytest.raises(HttpStatusError) as info:
        call(mode, "deposit", cda_document(), patient=PATIENT)
    assert route.call_count == 3 and info.value.attempts == 3


@MODES
@respx.mock
def test_deposit_registry_failure_is_typed_and_not_repeated(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(
        return_value=soap_response(registry(ResponseStatus.FAILURE, error("XDSRegistryMetadataError", "mauvais")))
    )
    with pytest.raises(DmpRegistryError) as info:
        call(mode, "deposit", cda_document(), patient=PATIENT)
    assert info.value.codes == ("XDSRegistryMetadataError",) and route.call_count == 1


@MODES
@respx.mock
def test_deposit_for_a_patient_without_dmp_is_refused_clearly(mode: str) -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(
        return_value=soap_response(registry(ResponseStatus.FAILURE, error("XDSUnknownPatientId", "patient inconnu")))
    )
    with pytest.raises(DmpNotFoundError) as info:
        call(mode, "deposit", cda_document(), patient=PATIENT)
    assert isinstance(info.value, DmpRegistryError) and info.value.hint is not None
    assert "create_dmp" in info.value.hint


@MODES
@respx.mock
def test_deposit_partial_success_is_reported_per_document(mode: str) -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(
        return_value=soap_response(
            registry(ResponseStatus.PARTIAL_SUCCESS, error("XDSExtraMetadataNotSaved", "Signature01", "Signature01"))
        )
    )
    with pytest.raises(PartialDepositError) as info:
        call(mode, "deposit", cda_document(), patient=PATIENT)
    outcome = {d.entry_id: d.stored for d in info.value.documents}
    assert outcome == {"Document01": True, "Signature01": False}


@MODES
@respx.mock
def test_deposit_receiver_fault_is_retried_sender_fault_is_not(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(
        side_effect=[fault_response("Receiver"), soap_response(registry())]
    )
    call(mode, "deposit", cda_document(), patient=PATIENT)
    assert route.call_count == 2
    route.reset()
    route.mock(side_effect=[fault_response("Sender", reason="VIHF invalide")])
    with pytest.raises(DmpServiceError) as info:
        call(mode, "deposit", cda_document(), patient=PATIENT)
    assert route.call_count == 1 and not info.value.transient and info.value.text == "VIHF invalide"


@MODES
@respx.mock
def test_malformed_registry_answer_is_a_typed_error(mode: str) -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(
        return_value=httpx.Response(200, headers={"Content-Type": "text/html"}, content=b"<html>proxy</html>")
    )
    with pytest.raises(MalformedResponseError):
        call(mode, "deposit", cda_document(), patient=PATIENT)


@MODES
@respx.mock
def test_a_replacement_by_unique_id_looks_the_entry_up_first(mode: str) -> None:
    old, _ = stored_entry("v1")
    lookup = respx.post(url(DmpService.REGISTRY)).mock(return_value=query_answer(old))
    deposit = respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(registry()))
    result = call(mode, "deposit", cda_document("v2"), patient=PATIENT, replaces=old.unique_id)
    assert result.replaced == UUID1 and lookup.call_count == 1 and deposit.call_count == 1
    sent = parse_adhoc_query_request(received(lookup.calls.last.request).payload)
    assert isinstance(sent.query, GetDocumentsQuery) and sent.query.unique_ids == (old.unique_id,)
    assert b"urn:ihe:iti:2007:AssociationType:RPLC" in deposit.calls.last.request.content


# ========================================================================================= checks before sending


@MODES
@respx.mock
def test_an_unqualified_identity_is_refused_before_any_request(mode: str) -> None:
    cases: tuple[tuple[str, tuple[Any, ...], dict[str, Any]], ...] = (
        ("deposit", (cda_document(),), {"patient": UNQUALIFIED}),
        ("find_documents", (UNQUALIFIED,), {}),
        ("test_existence", (UNQUALIFIED,), {}),
        ("set_authorisation", (UNQUALIFIED,), {}),
        ("retrieve", (UNQUALIFIED, ("1.2.250.1.213.4.1.1.1.2", "1.2.3")), {}),
        ("delete", (UNQUALIFIED, UUID1), {}),
    )
    for method, args, kwargs in cases:
        with pytest.raises(IdentityNotQualifiedError):
            call(mode, method, *args, **kwargs)
    assert respx.calls.call_count == 0


@MODES
@respx.mock
def test_bris_de_glace_without_reason_is_refused_before_any_request(mode: str) -> None:
    with pytest.raises(ValidationError, match="bris de glace"):
        call(mode, "find_documents", PATIENT, access="bris_de_glace")
    with pytest.raises(ValidationError):
        Access(mode=AccessMode.BRIS_DE_GLACE)
    with pytest.raises(ValidationError):
        Access(mode=AccessMode.CENTRE_15, reason="pourquoi pas")
    assert respx.calls.call_count == 0


@MODES
@respx.mock
def test_access_modes_travel_in_the_vihf(mode: str) -> None:
    route = respx.post(url(DmpService.REGISTRY)).mock(return_value=query_answer())
    call(mode, "find_documents", PATIENT, access=Access.bris_de_glace("patient inconscient aux urgences"))
    message = received(route.calls.last.request)
    assert vihf_attribute(message, vihf_module.ATTR_PURPOSE)[0][0].get("code") == "bris_de_glace"
    assert [v.text for v in vihf_attribute(message, vihf_module.ATTR_ACCESS_REASON)] == [
        "patient inconscient aux urgences"
    ]
    call(mode, "find_documents", PATIENT, access="centre_15")
    message = received(route.calls.last.request)
    assert vihf_attribute(message, vihf_module.ATTR_PURPOSE)[0][0].get("code") == "centre_15"


# ========================================================================================= queries


@MODES
@respx.mock
def test_find_documents_sends_the_filters_and_returns_entries(mode: str) -> None:
    entry, _ = stored_entry()
    route = respx.post(url(DmpService.REGISTRY)).mock(return_value=query_answer(entry))
    found = call(
        mode,
        "find_documents",
        PATIENT,
        statuses=(AvailabilityStatus.APPROVED, AvailabilityStatus.DEPRECATED),
        type_codes=(entry.type_code,),
        created_from=dt.date(2024, 1, 1),
        created_to=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        author_persons=("%SANDBOX%",),
    )
    assert isinstance(found, DocumentList) and list(found) == [entry] and not found.partial
    message = received(route.calls.last.request)
    schemas().assert_valid(schemas().query, message.payload)
    sent = parse_adhoc_query_request(message.payload)
    assert isinstance(sent.query, FindDocumentsQuery) and sent.return_type is ReturnType.LEAF_CLASS
    assert sent.query.patient_id.text == PATIENT.ins.to_xds_cx()  # type: ignore[union-attr]
    assert sent.query.creation_time_from is not None and sent.query.creation_time_from.text == "20240101"
    assert len(sent.query.statuses) == 2 and sent.query.author_persons == ("%SANDBOX%",)


@MODES
@respx.mock
def test_find_documents_pages_a_large_result(mode: str) -> None:
    entries = [stored_entry(f"doc {i}", f"urn:uuid:{i:08d}-1111-4111-8111-111111111111")[0] for i in range(5)]
    by_uuid = {e.entry_uuid: e for e in entries}
    batches: list[tuple[str, ...]] = []

    def registry_side(request: httpx.Request) -> httpx.Response:
        sent = parse_adhoc_query_request(received(request).payload)
        if isinstance(sent.query, FindDocumentsQuery) and sent.return_type is ReturnType.LEAF_CLASS:
            failure = RegistryResponse(status=ResponseStatus.FAILURE, errors=(error("XDSTooManyResults"),))
            return soap_response(build_adhoc_query_response(AdhocQueryResponse(response=failure)))
        if isinstance(sent.query, FindDocumentsQuery):
            return query_answer(refs=tuple(by_uuid))
        assert isinstance(sent.query, GetDocumentsQuery)
        batches.append(sent.query.entry_uuids)
        return query_answer(*reversed([by_uuid[u] for u in sent.query.entry_uuids]))

    route = respx.post(url(DmpService.REGISTRY)).mock(side_effect=registry_side)
    small = SETTINGS.model_copy(update={"dmp": SETTINGS.dmp.model_copy(update={"page_size": 2})})
    found = call(mode, "find_documents", PATIENT, settings=small)
    assert [e.entry_uuid for e in found] == list(by_uuid)
    assert [len(b) for b in batches] == [2, 2, 1] and route.call_count == 5


@MODES
@respx.mock
def test_a_partial_query_answer_is_returned_with_its_errors(mode: str) -> None:
    entry, _ = stored_entry()
    partial = AdhocQueryResponse(
        response=RegistryResponse(status=ResponseStatus.PARTIAL_SUCCESS, errors=(error("XDSRegistryError", "x"),)),
        documents=(entry,),
    )
    respx.post(url(DmpService.REGISTRY)).mock(return_value=soap_response(build_adhoc_query_response(partial)))
    found = call(mode, "find_documents", PATIENT)
    assert found.partial and found == [entry] and found.errors[0].error_code == "XDSRegistryError"


@MODES
@respx.mock
def test_a_consultation_without_authorisation_is_a_typed_refusal(mode: str) -> None:
    failure = RegistryResponse(status=ResponseStatus.FAILURE, errors=(error("DMPAccessDenied", "non autorisé"),))
    respx.post(url(DmpService.REGISTRY)).mock(
        return_value=soap_response(build_adhoc_query_response(AdhocQueryResponse(response=failure)))
    )
    with pytest.raises(DmpAccessDeniedError):
        call(mode, "find_documents", PATIENT)


@MODES
@respx.mock
def test_get_documents_and_find_submission_sets(mode: str) -> None:
    entry, _ = stored_entry()
    route = respx.post(url(DmpService.REGISTRY)).mock(return_value=query_answer(entry))
    assert call(mode, "get_documents", PATIENT, unique_ids=[entry.unique_id]) == [entry]
    with pytest.raises(ValidationError):
        call(mode, "get_documents", PATIENT)
    assert call(mode, "find_submission_sets", PATIENT, submitted_from=dt.date(2024, 1, 1)) == []
    sent = parse_adhoc_query_request(received(route.calls.last.request).payload)
    assert sent.query.query_id.value == "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"


# ========================================================================================= retrieve


def _retrieve_answer(unique_id: str, data: bytes) -> httpx.Response:
    part = Attachment.from_bytes(data, content_type="text/xml")
    body = build_retrieve_document_set_response(
        RetrieveDocumentSetResponse(
            response=RegistryResponse(status=ResponseStatus.SUCCESS),
            documents=(
                RetrievedDocument(
                    repository_unique_id="1.2.250.1.213.4.1.1.1.2",
                    document_unique_id=unique_id,
                    mime_type="text/xml",
                    content_id=part.content_id,
                ),
            ),
        )
    )
    return mtom_response(body, [part])


@MODES
@respx.mock
def test_retrieve_to_memory_and_to_a_file_byte_identical(mode: str, tmp_path: Path) -> None:
    entry, data = stored_entry()
    route = respx.post(url(DmpService.REPOSITORY)).mock(return_value=_retrieve_answer(entry.unique_id, data))
    in_memory = call(mode, "retrieve", PATIENT, entry)
    assert in_memory.content == data and in_memory.sha1 == entry.hash and in_memory.path is None
    schemas().assert_xdsb_valid(received(route.calls.last.request).payload)
    target = tmp_path / "doc.xml"
    on_disk = call(mode, "retrieve", PATIENT, (entry.repository_unique_id, entry.unique_id), to=target)
    assert on_disk.content is None and target.read_bytes() == data and on_disk.read() == data


@MODES
@respx.mock
def test_retrieve_checks_the_hash_and_size_against_the_metadata(mode: str) -> None:
    entry, data = stored_entry()
    route = respx.post(url(DmpService.REPOSITORY))
    route.mock(return_value=_retrieve_answer(entry.unique_id, data + b" "))
    with pytest.raises(DocumentIntegrityError) as longer:
        call(mode, "retrieve", PATIENT, entry)
    assert [p.split(" ", 1)[0] for p in longer.value.problems] == ["size", "hash"]
    assert isinstance(longer.value, MalformedResponseError)  # what callers caught before still catches it
    same_size = bytes([data[0] ^ 1]) + data[1:]
    route.mock(return_value=_retrieve_answer(entry.unique_id, same_size))
    with pytest.raises(DocumentIntegrityError, match="XDSNonIdenticalHash") as altered:
        call(mode, "retrieve", PATIENT, entry)
    assert altered.value.problems == ("hash differs from the SHA-1 of the document (XDSNonIdenticalHash)",)


@MODES
@respx.mock
def test_retrieve_of_an_unknown_document_is_typed(mode: str) -> None:
    body = build_retrieve_document_set_response(
        RetrieveDocumentSetResponse(
            response=RegistryResponse(status=ResponseStatus.FAILURE, errors=(error("XDSDocumentUniqueIdError"),))
        )
    )
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(body))
    with pytest.raises(DmpRegistryError) as info:
        call(mode, "retrieve", PATIENT, ("1.2.250.1.213.4.1.1.1.2", "1.2.3"))
    assert info.value.codes == ("XDSDocumentUniqueIdError",)


@MODES
@respx.mock
def test_a_retrieve_refusal_is_read_with_the_settings_table_of_dmp_codes(mode: str) -> None:
    # The DMP-specific codes are unconfirmed: a vendor who learns the real ones sets them in dmp.error_codes.
    body = build_retrieve_document_set_response(
        RetrieveDocumentSetResponse(
            # Partial success without the document: the client, not the operation, reads the refusal.
            response=RegistryResponse(status=ResponseStatus.PARTIAL_SUCCESS, errors=(error("DMPRefusAcces"),))
        )
    )
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(body))
    table = {"DMPRefusAcces": "access_denied"}
    settings = SETTINGS.model_copy(update={"dmp": SETTINGS.dmp.model_copy(update={"error_codes": table})})
    with pytest.raises(DmpAccessDeniedError):
        call(mode, "retrieve", PATIENT, ("1.2.250.1.213.4.1.1.1.2", "1.2.3"), settings=settings)


# ========================================================================================= updates


@MODES
@respx.mock
def test_mask_and_unmask_send_a_new_metadata_version(mode: str) -> None:
    entry, _ = stored_entry()
    route = respx.post(url(DmpService.REGISTRY)).mock(return_value=soap_response(registry()))
    call(mode, "mask", PATIENT, entry)
    message = received(route.calls.last.request)
    assert message.payload.tag.endswith("SubmitObjectsRequest")
    schemas().assert_valid(schemas().lcm, message.payload)
    submitted = parse_submit_objects_request(message.payload)
    [version] = submitted.documents
    assert [c.code for c in version.confidentiality_codes] == ["N", "MASQUE_PS"]
    assert version.logical_id == UUID1 and version.entry_uuid == "Document01"
    assert submitted.associations[0].previous_version == "1"
    masked = entry.model_copy(update={"confidentiality_codes": (*entry.confidentiality_codes, MASQUE_PS)})
    call(mode, "unmask", PATIENT, masked)
    codes = [
        c.code
        for c in parse_submit_objects_request(received(route.calls.last.request).payload)
        .documents[0]
        .confidentiality_codes
    ]
    assert codes == ["N"]
    call(mode, "hide_from_patient", PATIENT, entry)
    hidden = parse_submit_objects_request(received(route.calls.last.request).payload).documents[0]
    assert INVISIBLE_PATIENT.code in [c.code for c in hidden.confidentiality_codes]
    call(mode, "hide_from_legal_representatives", PATIENT, entry)
    assert b"INVISIBLE_REPRESENTANTS_LEGAUX" in route.calls.last.request.content


@MODES
@respx.mock
def test_delete_and_archive_change_the_status(mode: str) -> None:
    entry, _ = stored_entry()
    route = respx.post(url(DmpService.REGISTRY)).mock(return_value=soap_response(registry()))
    for method, status in (("delete", AvailabilityStatus.DELETED), ("archive", AvailabilityStatus.ARCHIVED)):
        call(mode, method, PATIENT, entry)
        submitted = parse_submit_objects_request(received(route.calls.last.request).payload)
        [association] = submitted.associations
        assert association.target_object == UUID1
        assert (association.original_status, association.new_status) == (AvailabilityStatus.APPROVED, status)


@MODES
@respx.mock
def test_an_update_by_unique_id_looks_the_current_version_up(mode: str) -> None:
    entry, _ = stored_entry()
    newer = entry.model_copy(update={"entry_uuid": "urn:uuid:22222222-2222-4222-8222-222222222222", "version": "2"})
    route = respx.post(url(DmpService.REGISTRY)).mock(
        side_effect=[query_answer(entry, newer), soap_response(registry())]
    )
    call(mode, "delete", PATIENT, entry.unique_id)
    assert route.call_count == 2
    association = parse_submit_objects_request(received(route.calls.last.request).payload).associations[0]
    assert association.target_object == newer.entry_uuid


@MODES
@respx.mock
def test_an_update_failure_is_typed_and_not_repeated(mode: str) -> None:
    entry, _ = stored_entry()
    route = respx.post(url(DmpService.REGISTRY)).mock(
        return_value=soap_response(registry(ResponseStatus.FAILURE, error("XDSRegistryBusy")))
    )
    with pytest.raises(DmpRegistryError):
        call(mode, "delete", PATIENT, entry)
    assert route.call_count == 1


# ========================================================================================= TD


@MODES
@respx.mock
def test_test_existence(mode: str) -> None:
    status = DmpStatus(
        exists=True, ins=INS_TEST, state=DmpState.ACTIVE, authorisation=AuthorisationStatus.VALID, treating_doctor=False
    )
    route = respx.post(url(DmpService.PATIENTS)).mock(
        return_value=soap_response(_td.build_patient_query_response(ANSWER_HEADER, ACCEPT, status))
    )
    assert call(mode, "test_existence", PATIENT) == status
    request = route.calls.last.request
    assert 'action="urn:hl7-org:v3:PRPA_IN201307UV02"' in request.headers["Content-Type"]
    query, _ = _td.parse_patient_query_request(received(request).payload)
    assert query.ins == INS_TEST
    route.mock(
        return_value=soap_response(_td.build_patient_query_response(ANSWER_HEADER, ACCEPT, DmpStatus(exists=False)))
    )
    assert call(mode, "test_existence", PATIENT).exists is False


@MODES
@respx.mock
def test_authorisations(mode: str) -> None:
    route = respx.post(url(DmpService.HABILITATIONS)).mock(
        return_value=soap_response(_td.build_set_authorisation_response(ServiceStatus(status="DMPOK")))
    )
    assert call(mode, "set_authorisation", PATIENT, as_treating_doctor=True).ok
    sent = received(route.calls.last.request)
    assert _td.parse_set_authorisation_request(sent.payload) == (_td.AuthorisationAction.ADD, True)
    assert INS_TEST.matricule not in to_bytes(sent.payload).decode()  # no patient id in the body: the VIHF names it
    assert [v.text for v in vihf_attribute(sent, vihf_module.ATTR_RESOURCE_ID)] == [INS_TEST.to_xds_cx()]
    call(mode, "set_authorisation", PATIENT, add=False)
    assert _td.parse_set_authorisation_request(received(route.calls.last.request).payload)[0] is (
        _td.AuthorisationAction.REMOVE
    )
    rows = (_td.AuthorisedProfessional(national_id="899700000001", family_name="SANDBOX"),)
    route.mock(return_value=soap_response(_td.build_list_authorisations_response(ServiceStatus(status="DMPOK"), rows)))
    assert call(mode, "list_authorisations", PATIENT) == rows
    assert _td.parse_list_authorisations_request(received(route.calls.last.request).payload) == "TOUTE"
    route.mock(return_value=soap_response(_td.build_set_authorisation_response(ServiceStatus(status="DMPNotFound"))))
    with pytest.raises(DmpNotFoundError):
        call(mode, "set_authorisation", PATIENT)


@MODES
@respx.mock
def test_recent_dmps_and_patient_search(mode: str) -> None:
    recent = (RecentDmp(family_name="PAT-TROIS", birth_date_text="19790328", birth_date=BirthDate.parse("19790328")),)
    listing = respx.post(url(DmpService.PATIENTS_SPECIFIC)).mock(
        return_value=soap_response(_td.build_patient_list_response(ServiceStatus(status="DMPOk"), recent))
    )
    assert call(mode, "recent_dmps", dt.date(2025, 1, 2), RecentDmpKind.LAST_DOCUMENT) == recent
    body = received(listing.calls.last.request).payload
    assert _td.parse_patient_list_request(body) == (dt.date(2025, 1, 2), RecentDmpKind.LAST_DOCUMENT)
    assert _td._child_text(body, "date") == "02012025"  # the kit's DDMMYYYY, the setting's default
    candidates = (PatientCandidate(ins=INS_TEST, family_name="PAT-TROIS"),)
    route = respx.post(url(DmpService.PATIENTS_PDQ)).mock(
        return_value=soap_response(_td.build_find_candidates_response(ANSWER_HEADER, ACCEPT, candidates))
    )
    assert call(mode, "find_patients", PatientSearch(family_name="PAT-TROIS")) == candidates
    message = received(route.calls.last.request)
    assert not vihf_attribute(message, vihf_module.ATTR_RESOURCE_ID)
    with pytest.raises(ValidationError, match="at least one"):
        call(mode, "find_patients", PatientSearch())


@MODES
@respx.mock
def test_dmp_lifecycle(mode: str) -> None:
    def answer(kind: RegistrationKind, ack: Acknowledgement = ACCEPT) -> httpx.Response:
        return soap_response(_td.build_registration_response(ANSWER_HEADER, kind, ack))

    route = respx.post(url(DmpService.PATIENTS)).mock(return_value=answer(RegistrationKind.CREATE))
    with pytest.raises(ValidationError, match="consent"):
        call(mode, "create_dmp", PATIENT)
    assert not route.called
    card = _td.VitaleCard(birth_name="PAT-TROIS", given_name="DOMINIQUE", birth_date="790328")
    call(
        mode,
        "create_dmp",
        PATIENT,
        oppositions=Oppositions(centre_15=True),
        email="p@example.org",
        consent=True,
        civility="M",
        vitale=card,
    )
    request, _ = _td.parse_registration_request(received(route.calls.last.request).payload)
    assert request.kind is RegistrationKind.CREATE and request.data is not None and request.consent is True
    assert request.data.birth_name == "PAT-TROIS" and request.data.oppositions.centre_15
    assert request.data.civility == "M" and request.vitale == card
    assert request.author is not None
    assert request.author.national_id == SETTINGS.professional.national_id  # type: ignore[union-attr]
    assert request.author.organisation_id == SETTINGS.organisation.national_id  # type: ignore[union-attr]
    found = Acknowledgement(type_code=AckType.ERROR, details=(AckDetail(code="DMPFound", text="existe"),))
    route.mock(return_value=answer(RegistrationKind.CREATE, found))
    with pytest.raises(DmpAlreadyExistsError):
        call(mode, "create_dmp", PATIENT, consent=True)
    route.mock(return_value=answer(RegistrationKind.CLOSE))
    call(mode, "close_dmp", PATIENT, ClosureReason.PATIENT_REQUEST, text="à sa demande")
    request, _ = _td.parse_registration_request(received(route.calls.last.request).payload)
    assert request.closure is not None and request.closure.reason is ClosureReason.PATIENT_REQUEST
    closing = received(route.calls.last.request).payload
    assert closing.find("{urn:hl7-org:v3}controlActProcess/{urn:hl7-org:v3}reasonCode").get("code") == "FERM"  # type: ignore[union-attr]
    patient_status = ".//{urn:hl7-org:v3}subject1/{urn:hl7-org:v3}patient/{urn:hl7-org:v3}statusCode"
    assert closing.find(patient_status).get("code") == "terminated"  # type: ignore[union-attr]
    route.mock(return_value=answer(RegistrationKind.REACTIVATE))
    with pytest.raises(ValidationError, match="consent"):
        call(mode, "reactivate_dmp", PATIENT)
    call(mode, "reactivate_dmp", PATIENT, consent=True)
    assert 'action="urn:hl7-org:v3:PRPA_IN201314UV02"' in route.calls.last.request.headers["Content-Type"]
    request, _ = _td.parse_registration_request(received(route.calls.last.request).payload)
    assert request.kind is RegistrationKind.REACTIVATE and request.consent is True


@MODES
@respx.mock
def test_administrative_data_read_and_update(mode: str) -> None:
    data = _td.AdministrativeData(
        ins=INS_TEST,
        birth_name="PAT-TROIS",
        given_names="DOMINIQUE",
        sex=PATIENT.traits.sex,
        birth_date=PATIENT.traits.birth_date,
        oppositions=Oppositions(bris_de_glace=True),
    )
    status = DmpStatus(exists=True, ins=INS_TEST, state=DmpState.ACTIVE)
    route = respx.post(url(DmpService.PATIENTS)).mock(
        return_value=soap_response(_td.build_patient_query_response(ANSWER_HEADER, ACCEPT, status, administrative=data))
    )
    assert call(mode, "get_administrative_data", PATIENT) == data
    route.mock(
        return_value=soap_response(_td.build_registration_response(ANSWER_HEADER, RegistrationKind.UPDATE, ACCEPT))
    )
    changed = data.model_copy(update={"oppositions": Oppositions(centre_15=True)})
    call(mode, "update_administrative_data", PATIENT, changed)
    request, _ = _td.parse_registration_request(received(route.calls.last.request).payload)
    assert request.data == changed
    other = changed.model_copy(update={"ins": OTHER.ins})
    with pytest.raises(ValidationError, match="another patient"):
        call(mode, "update_administrative_data", PATIENT, other)


@MODES
@respx.mock
def test_signature_entries_are_left_out_of_searches_unless_asked(mode: str) -> None:
    entry, _ = stored_entry()
    signature = entry.model_copy(
        update={
            "entry_uuid": "urn:uuid:44444444-4444-4444-8444-444444444444",
            "unique_id": "1.2.250.1.999.7.77",
            "format_code": Code.of("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style"),
        }
    )
    respx.post(url(DmpService.REGISTRY)).mock(return_value=query_answer(entry, signature))
    assert call(mode, "find_documents", PATIENT) == [entry]
    assert call(mode, "find_documents", PATIENT, include_signatures=True) == [entry, signature]
