"""Answers about another patient, identities in fault texts, hostile sizes and statuses — over mutual TLS.

The server is ``tests/hostile_server.py`` (raw sockets, the session's test PKI). For the DMP it replays
what the DMP simulator answers and then alters it the way a broken or hostile service would: an entry
moved to another patient, one entry more than the GetDocuments page asked for, a retrieved document
nobody asked for, a TD0.2 answer about another INS. For INSi it replays a captured 00 answer about
another person. Each case runs the real clients, sync and async; none may return a result.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dmp_connector.audit import MemorySink
from dmp_connector.config import Environment, Settings
from dmp_connector.dmp.client import AsyncDmpClient, DmpClient
from dmp_connector.dmp.errors import DmpServiceError
from dmp_connector.errors import (
    HttpStatusError,
    LimitExceededError,
    MalformedResponseError,
    PatientMismatchError,
    ServiceError,
)
from dmp_connector.ins.insi import InsiServiceError
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import HttpResponse
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator
from dmp_connector.xds.vocabulary import DocumentEntryScheme
from dmp_connector.xml import parse_xml
from tests.conftest import PkiFiles, make_settings
from tests.dmp.client_support import cda_document
from tests.dmp.test_sandbox_integration import ADRUN, Credentials
from tests.dmp.test_sandbox_rules import settings as dmp_settings
from tests.hostile_server import Peer, Received, Script, forward, hostile
from tests.insi import fixtures
from tests.insi.helpers import ADRUN as ADRUN_TRAITS
from tests.insi.helpers import SOFTWARE
from tests.insi.helpers import call as insi_call
from tests.insi.helpers import identity as insi_identity
from tests.security.leak_scan import exception_text

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
SOAP = "application/soap+xml; charset=utf-8"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
ADRUN_INS = DEFAULT_DMP_PATIENTS[0].ins
OTHER_INS = DEFAULT_DMP_PATIENTS[1].ins
ADRUN_MATRICULE = "275126322074974"
IDENTITY_TEXT = "ADRUN ZOE née le 1975-12-31 (31/12/1975), matricule 275126322074974, inconnue"


# ----------------------------------------------------------------------------------- plumbing


@pytest.fixture
def simulator(pki_files: PkiFiles) -> Iterator[DmpSimulator]:
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate], max_results=2)
    yield simulator
    simulator.store.close()


def dmp_config(credentials: Credentials, url: str, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "environment": Environment.sandbox(url),
        "tls": credentials.tls,
        "retry": RetryPolicy.none(),
        "timeouts": {"attempt": 10.0, "call": 20.0},
    }
    data.update(overrides)
    return dmp_settings(**data)


def dmp_calls(mode: str, config: Settings, credentials: Credentials, calls: Callable[[Any], Any]) -> Any:
    """Run ``calls(client)`` (a function that may return an awaitable in async mode) on a fresh client."""
    sink = MemorySink()
    if mode == "sync":
        with DmpClient(config, signer=credentials.signer, audit=[sink]) as client:
            return calls(client), sink

    async def run() -> Any:
        async with AsyncDmpClient(config, signer=credentials.signer, audit=[sink]) as client:
            return await calls(client), sink

    return asyncio.run(run())


def deposit_three(mode: str, config: Settings, credentials: Credentials) -> None:
    documents = [cda_document(f"Compte rendu {n}", patient=ADRUN) for n in range(3)]
    if mode == "sync":

        def sync_calls(client: Any) -> None:
            client.set_authorisation(ADRUN)
            for document in documents:
                client.deposit(document, patient=ADRUN)

        dmp_calls(mode, config, credentials, sync_calls)
        return

    async def async_calls(client: Any) -> None:
        await client.set_authorisation(ADRUN)
        for document in documents:
            await client.deposit(document, patient=ADRUN)

    dmp_calls(mode, config, credentials, async_calls)


def is_query(request: Received, query_id: str, return_type: str = "LeafClass") -> bool:
    return (
        request.path.endswith("/registry")
        and query_id.encode() in request.body
        and (f'returnType="{return_type}"'.encode() in request.body)
    )


FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
LIMITED_METADATA = "urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"


def altered_xml(body: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = parse_xml(body)
    change(root)
    return etree.tostring(root)


def move_first_entry_to_another_patient(root: etree._Element) -> None:
    scheme = DocumentEntryScheme.PATIENT_ID
    identifier = root.find(f".//{{{RIM}}}ExternalIdentifier[@identificationScheme='{scheme}']")
    assert identifier is not None
    identifier.set("value", OTHER_INS.to_xds_cx())


def add_an_entry_nobody_asked_for(root: etree._Element) -> None:
    entries = root.findall(f".//{{{RIM}}}ExtrinsicObject")
    assert entries
    extra = copy.deepcopy(entries[0])
    old = extra.get("id") or ""
    new = "urn:uuid:0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b"
    for element in extra.iter():
        for name, value in element.attrib.items():
            if value == old:
                element.set(name, new)
    parent = entries[0].getparent()
    assert parent is not None
    parent.append(extra)


# ----------------------------------------------------------------------------------- DMP queries


def make_first_entry_limited_metadata_without_patient(root: etree._Element) -> None:
    """Limited metadata (XDR/XDM) may leave patientId out: in a DMP answer about one patient, not his."""
    scheme = DocumentEntryScheme.PATIENT_ID
    entry = root.find(f".//{{{RIM}}}ExtrinsicObject")
    assert entry is not None
    identifier = entry.find(f"{{{RIM}}}ExternalIdentifier[@identificationScheme='{scheme}']")
    assert identifier is not None
    entry.remove(identifier)
    etree.SubElement(
        entry,
        f"{{{RIM}}}Classification",
        id="urn:uuid:0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c",
        classificationScheme="",
        classificationNode=LIMITED_METADATA,
        classifiedObject=entry.get("id") or "",
        nodeRepresentation="",
    )


@MODES
@pytest.mark.parametrize(
    "change", [move_first_entry_to_another_patient, make_first_entry_limited_metadata_without_patient]
)
def test_a_search_answer_with_an_entry_about_another_patient_is_refused_and_audited(
    mode: str,
    change: Callable[[etree._Element], None],
    pki_files: PkiFiles,
    credentials: Credentials,
    simulator: DmpSimulator,
    tmp_path: Path,
) -> None:
    def alter(request: Received, answer: HttpResponse, body: bytes) -> bytes | None:
        if is_query(request, FIND_DOCUMENTS) and b"ExtrinsicObject" in body:
            return altered_xml(body, change)
        return None

    with hostile(pki_files, tmp_path, forward(simulator, alter)) as server:
        config = dmp_config(credentials, server.url)
        simulator.max_results = 500
        deposit_three(mode, config, credentials)
        with pytest.raises(PatientMismatchError) as info:
            dmp_calls(mode, config, credentials, lambda client: client.find_documents(ADRUN))
    error = info.value
    assert error.service == "dmp" and error.operation == "RegistryStoredQuery"
    assert error.problems == ("1 object(s) about another patient than the one asked",)
    text = exception_text(error)
    assert ADRUN_MATRICULE not in text and OTHER_INS.matricule not in text


@MODES
def test_the_mismatch_is_audited_with_the_patient_pseudonymised(
    mode: str, pki_files: PkiFiles, credentials: Credentials, simulator: DmpSimulator, tmp_path: Path
) -> None:
    def alter(request: Received, answer: HttpResponse, body: bytes) -> bytes | None:
        if request.path.endswith("/patients"):
            return body.replace(ADRUN_INS.matricule.encode(), OTHER_INS.matricule.encode())
        return None

    with hostile(pki_files, tmp_path, forward(simulator, alter)) as server:
        config = dmp_config(credentials, server.url)
        sink = MemorySink()

        def calls(client: Any) -> Any:
            client.audit.add(sink)
            return client.test_existence(ADRUN)

        with pytest.raises(PatientMismatchError) as info:
            dmp_calls(mode, config, credentials, calls)
    assert info.value.operation == "PatientQuery"
    [event] = [e for e in sink.events if e.operation == "PatientQuery"]
    assert event.outcome.value == "failure" and event.error_type == "PatientMismatchError"
    assert event.patient is not None and ADRUN_INS.matricule not in event.to_json()


@MODES
def test_a_getdocuments_page_holding_an_entry_nobody_asked_for_fails_the_whole_search(
    mode: str, pki_files: PkiFiles, credentials: Credentials, simulator: DmpSimulator, tmp_path: Path
) -> None:
    """3 entries asked (TooManyResults → ObjectRef → GetDocuments pages of 2), 4 in the answers: refused."""

    def alter(request: Received, answer: HttpResponse, body: bytes) -> bytes | None:
        if is_query(request, GET_DOCUMENTS) and b"ExtrinsicObject" in body:
            return altered_xml(body, add_an_entry_nobody_asked_for)
        return None

    with hostile(pki_files, tmp_path, forward(simulator, alter)) as server:
        config = dmp_config(credentials, server.url, dmp={"page_size": 2})
        deposit_three(mode, config, credentials)
        with pytest.raises(PatientMismatchError) as info:
            dmp_calls(mode, config, credentials, lambda client: client.find_documents(ADRUN, include_signatures=True))
    assert info.value.problems == ("1 object(s) whose entryUUID was not asked for",)
    pages = [r for r in server.received if is_query(r, GET_DOCUMENTS)]
    assert len(pages) == 1  # the first page failed the call: nothing merged, nothing more asked


@MODES
def test_paging_is_capped_by_the_settings(
    mode: str, pki_files: PkiFiles, credentials: Credentials, simulator: DmpSimulator, tmp_path: Path
) -> None:
    with hostile(pki_files, tmp_path, forward(simulator)) as server:
        config = dmp_config(credentials, server.url)
        deposit_three(mode, config, credentials)  # 3 documents and 3 signatures: over max_results (2)
        capped_refs = dmp_config(credentials, server.url, dmp={"max_references": 4})
        with pytest.raises(LimitExceededError) as refs:
            dmp_calls(mode, capped_refs, credentials, lambda client: client.find_documents(ADRUN))
        capped_pages = dmp_config(credentials, server.url, dmp={"page_size": 2, "max_pages": 2})
        with pytest.raises(LimitExceededError) as pages:
            dmp_calls(mode, capped_pages, credentials, lambda client: client.find_documents(ADRUN))
        found, _ = dmp_calls(
            mode, dmp_config(credentials, server.url, dmp={"page_size": 2, "max_pages": 3}), credentials,
            lambda client: client.find_documents(ADRUN),
        )  # fmt: skip
    assert refs.value.limit == "dmp.max_references" and pages.value.limit == "dmp.max_pages"
    assert len(found) == 3


@MODES
def test_a_retrieve_answer_with_a_document_nobody_asked_for_is_refused(
    mode: str, pki_files: PkiFiles, credentials: Credentials, simulator: DmpSimulator, tmp_path: Path
) -> None:
    swapped = "1.2.250.1.999.1.2.3.4"

    def alter(request: Received, answer: HttpResponse, body: bytes) -> bytes | None:
        if request.path.endswith("/repository") and b"RetrieveDocumentSetRequest" in request.body:
            return re.sub(rb"(<(?:\w+:)?DocumentUniqueId>)[^<]*<", rb"\g<1>" + swapped.encode() + b"<", body, count=1)
        return None

    with hostile(pki_files, tmp_path, forward(simulator, alter)) as server:
        config = dmp_config(credentials, server.url)
        simulator.max_results = 500
        deposit_three(mode, config, credentials)
        entries, _ = dmp_calls(mode, config, credentials, lambda client: client.find_documents(ADRUN))
        with pytest.raises(PatientMismatchError) as info:
            dmp_calls(mode, config, credentials, lambda client: client.retrieve(ADRUN, entries[0]))
    assert info.value.problems == ("1 document(s) that were not asked for",)


@MODES
def test_a_retrieved_cda_about_another_patient_is_refused(
    mode: str, pki_files: PkiFiles, credentials: Credentials, simulator: DmpSimulator, tmp_path: Path
) -> None:
    """Asked by (repository, uniqueId) — no entry, so no hash to compare — the CDA's own recordTarget decides."""

    swap = False

    def alter(request: Received, answer: HttpResponse, body: bytes) -> bytes | None:
        if swap and request.path.endswith("/repository") and b"RetrieveDocumentSetRequest" in request.body:
            return body.replace(ADRUN_INS.matricule.encode(), OTHER_INS.matricule.encode())
        return None

    with hostile(pki_files, tmp_path, forward(simulator, alter)) as server:
        config = dmp_config(credentials, server.url)
        simulator.max_results = 500
        deposit_three(mode, config, credentials)
        entries, _ = dmp_calls(mode, config, credentials, lambda client: client.find_documents(ADRUN))
        ids = (entries[0].repository_unique_id, entries[0].unique_id)
        retrieved, _ = dmp_calls(mode, config, credentials, lambda client: client.retrieve(ADRUN, ids))
        assert ADRUN_INS.matricule.encode() in retrieved.read()  # the CDA as stored: accepted
        swap = True
        with pytest.raises(PatientMismatchError) as info:
            dmp_calls(mode, config, credentials, lambda client: client.retrieve(ADRUN, ids))
    assert info.value.problems == ("1 CDA document(s) whose recordTarget is another patient's INS",)


# ----------------------------------------------------------------------------------- INSi


def insi_settings(pki_files: PkiFiles, url: str) -> Settings:
    return make_settings(
        pki_files,
        software=SOFTWARE,
        environment=Environment.sandbox(url),
        retry=RetryPolicy.none(),
        timeouts={"attempt": 10.0},
    )


def replay(status: int, body: bytes, content_type: str = SOAP) -> Script:
    def script(peer: Peer, request: Received) -> None:
        peer.respond(status, body, content_type=content_type)

    return script


@MODES
def test_an_insi_answer_about_another_person_is_an_error_not_a_result(
    mode: str, pki_files: PkiFiles, tmp_path: Path
) -> None:
    """A captured 00 about ADRTROIS DOMINIQUE, replayed to a search for ADRUN ZOE (an identity with an INS)."""
    sink = MemorySink()
    searched = insi_identity(ADRUN_TRAITS, ADRUN_MATRICULE)
    with (
        hostile(pki_files, tmp_path, replay(200, fixtures.FOUND_DEFAULT_NS)) as server,
        pytest.raises(PatientMismatchError) as info,
    ):
        insi_call(mode, insi_settings(pki_files, server.url), "search", searched, audit=[sink])
    assert set(info.value.problems) == {"birth_name", "birth_first_names", "birth_date"}
    [event] = sink.events
    assert event.error_type == "PatientMismatchError" and event.patient is not None
    assert ADRUN_MATRICULE not in event.to_json()
    text = exception_text(info.value)
    assert "ADRTROIS" not in text and "ADRUN" not in text and "1997-02-26" not in text


def insi_fault(reason: str) -> bytes:
    return (
        "<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body><env:Fault>"
        "<env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value>siram_40</env:Value></env:Subcode>"
        f"</env:Code><env:Reason><env:Text xml:lang='fr'>{reason}</env:Text></env:Reason>"
        "</env:Fault></env:Body></env:Envelope>"
    ).encode()


def assert_no_identity(error: BaseException) -> None:
    """Not in the message, not in any cause's message, not in what ``log.exception`` would print."""
    texts = [exception_text(error)]
    cause: BaseException | None = error
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    for text in texts:
        for value in ("ADRUN", "ZOE", "1975-12-31", "31/12/1975", ADRUN_MATRICULE, ADRUN_MATRICULE[:13]):
            assert value not in text, (value, text[:300])


@MODES
def test_an_insi_fault_quoting_the_identity_leaves_it_out_of_every_message(
    mode: str, pki_files: PkiFiles, tmp_path: Path
) -> None:
    with (
        hostile(pki_files, tmp_path, replay(500, insi_fault(IDENTITY_TEXT))) as server,
        pytest.raises(InsiServiceError) as info,
    ):
        insi_call(mode, insi_settings(pki_files, server.url), "search", ADRUN_TRAITS)
    assert_no_identity(info.value)
    assert info.value.text == IDENTITY_TEXT  # the raw text, for whoever asks for it
    assert info.value.code == "siram_40"


@MODES
def test_a_dmp_fault_quoting_the_identity_leaves_it_out_of_the_error_and_its_cause(
    mode: str, pki_files: PkiFiles, credentials: Credentials, tmp_path: Path
) -> None:
    with hostile(pki_files, tmp_path, replay(500, insi_fault(IDENTITY_TEXT))) as server:
        config = dmp_config(credentials, server.url)
        with pytest.raises(DmpServiceError) as info:
            dmp_calls(mode, config, credentials, lambda client: client.find_documents(ADRUN))
    assert_no_identity(info.value)
    assert info.value.text == IDENTITY_TEXT and info.value.__cause__ is not None


@MODES
def test_a_huge_fault_is_refused_while_it_streams_in(mode: str, pki_files: PkiFiles, tmp_path: Path) -> None:
    """A 9 MB reason once became a 9 MB message; now the fault is cut at xml.max_fault_bytes (1 MiB)."""
    with (
        hostile(pki_files, tmp_path, replay(500, insi_fault("A" * (9 * 1024 * 1024)))) as server,
        pytest.raises(LimitExceededError) as info,
    ):
        insi_call(mode, insi_settings(pki_files, server.url), "search", ADRUN_TRAITS)
    assert info.value.limit == "xml.max_fault_bytes"
    assert len(str(info.value)) < 300


@MODES
def test_a_long_fault_reason_under_the_limit_stays_out_of_the_message(
    mode: str, pki_files: PkiFiles, tmp_path: Path
) -> None:
    with (
        hostile(pki_files, tmp_path, replay(500, insi_fault("x" * 500_000))) as server,
        pytest.raises(ServiceError) as info,
    ):
        insi_call(mode, insi_settings(pki_files, server.url), "search", ADRUN_TRAITS)
    assert len(str(info.value)) < 400 and len(info.value.text or "") == 500_000


# ----------------------------------------------------------------------------------- statuses and media types


@MODES
@pytest.mark.parametrize(
    ("status", "headers", "expected", "hint"),
    [
        (429, {"Retry_After": "30"}, HttpStatusError, "rate"),
        (302, {"Location": "https://elsewhere.invalid/insi"}, HttpStatusError, "redirect"),
        (503, {}, HttpStatusError, "try again later"),
    ],
    ids=["429", "302", "503"],
)
def test_statuses_get_their_own_hint(
    mode: str, status: int, headers: dict[str, str], expected: type[Exception], hint: str,
    pki_files: PkiFiles, tmp_path: Path,
) -> None:  # fmt: skip
    def script(peer: Peer, request: Received) -> None:
        peer.respond(status, b"<html>nope</html>", content_type="text/html", **headers)

    with hostile(pki_files, tmp_path, script) as server, pytest.raises(expected) as info:
        insi_call(mode, insi_settings(pki_files, server.url), "search", ADRUN_TRAITS)
    error = info.value
    assert isinstance(error, HttpStatusError) and error.status_code == status
    assert hint in (error.hint or "") + error.message
    assert "client certificate" not in (error.hint or "") or status not in (429, 302)
    if status == 429:
        assert error.retry_after == 30.0


@MODES
@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/soap+xml; charset=utf-8", True),
        ("Application/SOAP+XML", True),
        ("application/soap+xmlx; charset=utf-8", False),
        ("application/soap+xml-evil", False),
        ("text/xml", False),
    ],
)
def test_the_soap_media_type_is_matched_exactly(
    mode: str, content_type: str, accepted: bool, pki_files: PkiFiles, tmp_path: Path
) -> None:
    body = fixtures.FOUND_PREFIXED  # ADRUN ZOE, found
    with hostile(pki_files, tmp_path, replay(200, body, content_type)) as server:
        config = insi_settings(pki_files, server.url)
        if accepted:
            assert insi_call(mode, config, "search", ADRUN_TRAITS).found
        else:
            with pytest.raises(MalformedResponseError, match=r"not a SOAP 1\.2 message"):
                insi_call(mode, config, "search", ADRUN_TRAITS)
