"""A deposit retried after a lost answer never creates a second document, and a replay is reported as such."""

from __future__ import annotations

import httpx
import pytest
import respx

from dmp_connector.audit import MemorySink
from dmp_connector.cda import extract_metadata
from dmp_connector.config import DmpService
from dmp_connector.dmp.errors import DmpAccessDeniedError, DmpRegistryError, DocumentConflictError
from dmp_connector.dmp.mapping import deposit_ids, document_entry
from dmp_connector.xds import (
    AdhocQueryResponse,
    DocumentEntry,
    RegistryResponse,
    ResponseStatus,
    build_adhoc_query_response,
    parse_provide_and_register_request,
)
from tests.dmp.client_support import (
    PATIENT,
    SETTINGS,
    cda_document,
    error,
    received,
    registry,
    registry_entry,
    soap_response,
    url,
)
from tests.dmp.test_client_respx import MODES, call

UUID = "urn:uuid:33333333-3333-4333-8333-333333333333"


def duplicate(location: str, context: str = "déjà enregistré") -> httpx.Response:
    return soap_response(registry(ResponseStatus.FAILURE, error("XDSDuplicateUniqueIdInRegistry", context, location)))


def lookup(*entries: DocumentEntry, failure: str | None = None) -> httpx.Response:
    if failure is not None:
        response = RegistryResponse(status=ResponseStatus.FAILURE, errors=(error(failure),))
        return soap_response(build_adhoc_query_response(AdhocQueryResponse(response=response)))
    answer = AdhocQueryResponse(response=RegistryResponse(status=ResponseStatus.SUCCESS), documents=entries)
    return soap_response(build_adhoc_query_response(answer))


def _is_signature(entry: DocumentEntry) -> bool:
    return entry.format_code is not None and entry.format_code.code == "http://www.w3.org/2000/09/xmldsig#"


def ids_sent(request: httpx.Request) -> tuple[object, ...]:
    """Every id of the metadata a deposit sends (entries, uniqueIds, MTOM parts), without the times.

    The signature document's hash is left out: it signs a SigningTime, so two calls a second apart
    sign different bytes (its uniqueId, derived from the document, stays the same).
    """
    submission, _ = parse_provide_and_register_request(received(request).payload)
    assert [_is_signature(d) for d in submission.documents].count(True) == 1
    return (
        submission.submission_set.unique_id,
        tuple((d.entry_uuid, d.unique_id, None if _is_signature(d) else d.hash) for d in submission.documents),
        tuple((a.entry_uuid, a.source_object, a.target_object) for a in submission.associations),
        tuple(sorted(submission.contents.items())),
    )


@MODES
@respx.mock
def test_a_retried_attempt_sends_the_very_same_bytes(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(
        side_effect=[httpx.Response(503), httpx.Response(502), soap_response(registry())]
    )
    sink = MemorySink()
    call(mode, "deposit", cda_document(), patient=PATIENT, audit=[sink])
    bodies = [c.request.content for c in route.calls]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert len({e.correlation_id for e in sink.events}) == 1
    assert [(e.kind, e.attempt, e.outcome) for e in sink.events] == [
        ("attempt", 1, "failure"),
        ("attempt", 2, "failure"),
        ("attempt", 3, "success"),
        ("outcome", 3, "success"),  # the call's final word counts its attempts
    ]


@MODES
@respx.mock
def test_an_answer_lost_after_the_store_ends_as_already_deposited(mode: str) -> None:
    """The first attempt is stored but its answer is lost; the retry meets the duplicate of our derived ids."""
    data = cda_document()
    metadata = extract_metadata(data)
    ids = deposit_ids(SETTINGS, metadata.unique_id, metadata.hash)
    route = respx.post(url(DmpService.REPOSITORY)).mock(
        side_effect=[
            httpx.ReadError("connection reset after the request was processed"),
            duplicate(ids.submission_set, "Lot de soumission déjà enregistré"),
        ]
    )
    result = call(mode, "deposit", data, patient=PATIENT)
    assert result.already_deposited and result.confirmed_by == "registry" and route.call_count == 2
    assert respx.calls.call_count == 2  # no look-up was needed
    assert route.calls[0].request.content == route.calls[1].request.content


@MODES
@respx.mock
def test_two_logical_deposits_of_the_same_document_send_the_same_ids(mode: str) -> None:
    route = respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(registry()))
    data = cda_document()
    first = call(mode, "deposit", data, patient=PATIENT)
    second = call(mode, "deposit", data, patient=PATIENT)
    assert first == second
    assert ids_sent(route.calls[0].request) == ids_sent(route.calls[1].request)
    other = call(mode, "deposit", cda_document("un autre compte rendu"), patient=PATIENT)
    assert other.submission_set_unique_id != first.submission_set_unique_id


@MODES
@respx.mock
def test_a_duplicate_the_registry_does_not_explain_is_confirmed_by_its_hash(mode: str) -> None:
    data = cda_document()
    stored = registry_entry(document_entry(extract_metadata(data)), uuid=UUID)
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=duplicate(stored.unique_id))
    registry_route = respx.post(url(DmpService.REGISTRY)).mock(return_value=lookup(stored))
    result = call(mode, "deposit", data, patient=PATIENT)
    assert result.already_deposited and result.confirmed_by == "lookup" and result.entry_uuid == UUID
    assert registry_route.call_count == 1


@MODES
@respx.mock
def test_a_duplicate_with_another_hash_is_a_conflict(mode: str) -> None:
    data = cda_document()
    stored = registry_entry(document_entry(extract_metadata(data)), uuid=UUID).model_copy(update={"hash": "0" * 40})
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=duplicate(stored.unique_id))
    respx.post(url(DmpService.REGISTRY)).mock(return_value=lookup(stored))
    with pytest.raises(DocumentConflictError) as info:
        call(mode, "deposit", data, patient=PATIENT)
    assert info.value.codes == ("XDSDuplicateUniqueIdInRegistry",)


@MODES
@respx.mock
def test_a_non_identical_hash_answer_is_a_conflict(mode: str) -> None:
    respx.post(url(DmpService.REPOSITORY)).mock(
        return_value=soap_response(registry(ResponseStatus.FAILURE, error("XDSNonIdenticalHash", "autre document")))
    )
    with pytest.raises(DocumentConflictError):
        call(mode, "deposit", cda_document(), patient=PATIENT)


@MODES
@respx.mock
def test_an_unconfirmed_duplicate_is_raised_as_it_came(mode: str) -> None:
    data = cda_document()
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=duplicate("quelque part"))
    registry_route = respx.post(url(DmpService.REGISTRY)).mock(return_value=lookup(failure="DMPAccessDenied"))
    with pytest.raises(DmpRegistryError) as info:
        call(mode, "deposit", data, patient=PATIENT)
    assert info.value.codes == ("XDSDuplicateUniqueIdInRegistry",)
    assert isinstance(info.value.__cause__, DmpAccessDeniedError) and registry_route.call_count == 1
    registry_route.mock(return_value=lookup())
    with pytest.raises(DmpRegistryError):
        call(mode, "deposit", data, patient=PATIENT)
    no_lookup = SETTINGS.model_copy(update={"dmp": SETTINGS.dmp.model_copy(update={"confirm_duplicates": False})})
    registry_route.reset()
    with pytest.raises(DmpRegistryError):
        call(mode, "deposit", data, patient=PATIENT, settings=no_lookup)
    assert registry_route.call_count == 0


@MODES
@respx.mock
def test_a_replay_from_a_new_call_signs_again_and_is_still_recognised(mode: str) -> None:
    """A new call re-signs (a new SigningTime): the registry finds the document a duplicate and
    the signature, under the same derived id, a different hash. The document's hash decides."""
    data = cda_document()
    metadata = extract_metadata(data)
    ids = deposit_ids(SETTINGS, metadata.unique_id, metadata.hash)
    stored = registry_entry(document_entry(metadata), uuid=UUID)
    answer = registry(
        ResponseStatus.FAILURE,
        error("XDSDuplicateUniqueIdInRegistry", "déjà enregistré", stored.unique_id),
        error("XDSNonIdenticalHash", "Ce uniqueId désigne déjà un autre document", ids.signature),
    )
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(answer))
    respx.post(url(DmpService.REGISTRY)).mock(return_value=lookup(stored))
    result = call(mode, "deposit", data, patient=PATIENT)
    assert result.already_deposited
    assert result.confirmed_by == "lookup"


@MODES
@respx.mock
def test_a_different_hash_on_the_document_itself_is_a_conflict(mode: str) -> None:
    data = cda_document()
    metadata = extract_metadata(data)
    answer = registry(ResponseStatus.FAILURE, error("XDSNonIdenticalHash", "autre document", metadata.unique_id))
    respx.post(url(DmpService.REPOSITORY)).mock(return_value=soap_response(answer))
    with pytest.raises(DmpRegistryError):
        call(mode, "deposit", data, patient=PATIENT)
