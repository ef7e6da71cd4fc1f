"""Received documents: read from an MSSanté message or a DMP retrieve, filed by INS and RNIV, duplicates found."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dmp_connector.cda import parse as parse_cda
from dmp_connector.codes import Code
from dmp_connector.config import (
    MssanteSettings,
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.dmp import RetrievedDmpDocument
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.mssante import Attachment, CdaDocument, MssanteAddress, MssanteMessage, build_message, parse_message
from dmp_connector.receiving import (
    DocumentSource,
    DuplicateKind,
    FiledDocument,
    FilingStatus,
    IncomingDocument,
    LocalPatient,
    MatchReason,
    MatchRules,
    document_from_dmp,
    documents_from_message,
    find_duplicate,
    match_patient,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/cda-2025 (the ANS kit) is missing")

N1 = (EXAMPLES / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml").read_bytes() if EXAMPLES.is_dir() else b""
VSM = (EXAMPLES / "VSM_1.4_2022.01.xml").read_bytes() if EXAMPLES.is_dir() else b""
OTHER = (EXAMPLES / "OBP-SCM_2024.01.xml").read_bytes() if EXAMPLES.is_dir() else b""
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
SETTINGS = Settings(
    software=SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor"),
    organisation=Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test"),
    professional=Professional(
        id="10003461033", family_name="SAUCIER", given_name="Arthur", profession=Code.of("10", "1.2.250.1.71.1.2.7")
    ),
    mssante=MssanteSettings(mailbox="lps@cabinet-test.mssante.fr", nil="NIL-0042"),
)
DOCTOR = MssanteAddress.parse("dr.house@medecin.mssante.fr")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _patient() -> Identity:
    return parse_cda(N1).patient.identity


def _received_xdm() -> IncomingDocument:
    built = build_message(MssanteMessage(to=(DOCTOR,), documents=(CdaDocument(content=N1),)), SETTINGS, now=NOW)
    message = parse_message(built.as_bytes())
    documents = documents_from_message(message)
    assert len(documents) == 1
    return documents[0]


def test_a_document_from_an_xdm_message_names_its_patient_and_keeps_its_bytes() -> None:
    document = _received_xdm()
    model = parse_cda(N1)
    assert document.source is DocumentSource.MSSANTE
    assert document.content == N1  # filed as received, byte for byte
    assert document.media_type == "text/xml" and document.is_cda
    assert document.ins == model.patient.identity.ins
    assert document.traits == model.patient.identity.traits
    assert document.document_id is not None and document.document_id.startswith(model.id.root)
    assert document.entry is not None and document.entry.unique_id == document.document_id
    assert document.message_id is not None and document.sender == "lps@cabinet-test.mssante.fr"
    rendered = document.render()
    assert rendered is not None and rendered.attachments[0].media_type == "application/pdf"


def test_a_bare_pdf_names_no_one_and_is_never_matched() -> None:
    built = build_message(
        MssanteMessage(
            to=(DOCTOR,),
            subject="CR",
            attachments=(Attachment(filename="cr.pdf", content=PDF, content_type="application/pdf"),),
        ),
        SETTINGS,
        now=NOW,
    )
    (document,) = documents_from_message(parse_message(built.as_bytes()))
    assert document.media_type == "application/pdf" and document.ins is None and document.render() is None
    verdict = match_patient(document, [LocalPatient(local_id="P1", identity=_patient())])
    assert verdict.status is FilingStatus.UNKNOWN
    assert verdict.reasons == (MatchReason.DOCUMENT_WITHOUT_INS, MatchReason.NO_CANDIDATE)


def test_a_bare_cda_attachment_is_read_too() -> None:
    built = build_message(
        MssanteMessage(
            to=(DOCTOR,),
            subject="CR",
            attachments=(Attachment(filename="cr.xml", content=VSM, content_type="text/xml"),),
        ),
        SETTINGS,
        now=NOW,
    )
    (document,) = documents_from_message(parse_message(built.as_bytes()))
    assert document.cda is not None and document.ins == parse_cda(VSM).patient.identity.ins


def test_an_html_attachment_is_not_taken_for_a_document() -> None:
    page = Attachment(filename="lettre.html", content=b"<html><body>x</body></html>", content_type="text/html")
    built = build_message(MssanteMessage(to=(DOCTOR,), subject="x", attachments=(page,)), SETTINGS, now=NOW)
    assert documents_from_message(parse_message(built.as_bytes())) == ()


def test_a_document_from_a_dmp_retrieve() -> None:
    retrieved = RetrievedDmpDocument(
        unique_id="1.2.3", repository_unique_id="1.2.4", mime_type="text/xml", size=len(VSM),
        sha1=hashlib.sha1(VSM).hexdigest(), content=VSM,
    )  # fmt: skip
    document = document_from_dmp(retrieved)
    assert document.source is DocumentSource.DMP and document.content == VSM
    assert document.set_id is not None and document.version == parse_cda(VSM).version


def test_same_ins_qualified_and_coherent_traits_is_matched() -> None:
    document = _received_xdm()
    local = LocalPatient(local_id="P1", identity=_patient())
    other = LocalPatient(local_id="P2", identity=parse_cda(OTHER).patient.identity)
    verdict = match_patient(document, [other, local])
    assert verdict.status is FilingStatus.MATCHED and verdict.matched
    assert verdict.patient == local and verdict.reasons == (MatchReason.SAME_INS_COHERENT_TRAITS,)


def test_a_callback_gives_the_candidates() -> None:
    document = _received_xdm()
    asked: list[IncomingDocument] = []

    def lookup(doc: IncomingDocument) -> list[LocalPatient]:
        asked.append(doc)
        return [LocalPatient(local_id="P1", identity=_patient())]

    assert match_patient(document, lookup).matched
    assert asked == [document]


def test_a_local_identity_not_qualified_is_to_check() -> None:
    document = _received_xdm()
    recup = LocalPatient(local_id="P1", identity=_patient().updated(status=IdentityStatus.RECUP))
    verdict = match_patient(document, [recup])
    assert verdict.status is FilingStatus.TO_CHECK and verdict.patient is None
    assert verdict.candidates == (recup,)
    assert MatchReason.LOCAL_IDENTITY_NOT_QUALIFIED in verdict.reasons


def test_traits_that_differ_are_to_check_and_named_not_shown() -> None:
    document = _received_xdm()
    identity = _patient()
    changed = identity.updated(traits=identity.traits.model_copy(update={"birth_name": "AUTRENOM"}))
    verdict = match_patient(document, [LocalPatient(local_id="P1", identity=changed)])
    assert verdict.status is FilingStatus.TO_CHECK
    assert verdict.differing_traits == ("birth_name",)
    assert "AUTRENOM" not in repr(verdict) and identity.traits.birth_name not in repr(verdict)


def test_a_look_alike_without_the_ins_is_never_matched() -> None:
    document = _received_xdm()
    no_ins = _patient().updated(ins=None, status=IdentityStatus.PROV)
    verdict = match_patient(document, [LocalPatient(local_id="P9", identity=no_ins)])
    assert verdict.status is FilingStatus.TO_CHECK and verdict.patient is None
    assert verdict.reasons == (MatchReason.SAME_TRAITS_WITHOUT_SAME_INS,)


def test_a_look_alike_beside_the_ins_holder_is_reported_not_chosen() -> None:
    document = _received_xdm()
    holder = LocalPatient(local_id="P1", identity=_patient())
    twin = LocalPatient(local_id="P9", identity=_patient().updated(ins=None, status=IdentityStatus.PROV))
    verdict = match_patient(document, [twin, holder])
    assert verdict.matched and verdict.patient == holder
    assert verdict.look_alikes == (twin,)
    assert verdict.reasons == (MatchReason.SAME_INS_COHERENT_TRAITS, MatchReason.LOCAL_LOOK_ALIKES)


def test_several_candidates_with_the_ins_are_to_check() -> None:
    document = _received_xdm()
    a, b = (LocalPatient(local_id=key, identity=_patient()) for key in ("P1", "P2"))
    verdict = match_patient(document, [a, b])
    assert verdict.status is FilingStatus.TO_CHECK and verdict.candidates == (a, b)
    assert verdict.reasons == (MatchReason.SEVERAL_CANDIDATES,)


def test_nobody_is_unknown() -> None:
    verdict = match_patient(_received_xdm(), [LocalPatient(local_id="P2", identity=parse_cda(OTHER).patient.identity)])
    assert verdict.status is FilingStatus.UNKNOWN and verdict.candidates == ()


def test_the_sender_saying_the_ins_is_not_qualified_is_to_check() -> None:
    document = _received_xdm().model_copy(update={"sender_ins_qualified": False})
    verdict = match_patient(document, [LocalPatient(local_id="P1", identity=_patient())])
    assert verdict.status is FilingStatus.TO_CHECK
    assert MatchReason.SENDER_INS_NOT_QUALIFIED in verdict.reasons


def test_doubtful_local_identity_is_to_check() -> None:
    document = _received_xdm()
    doubtful = _patient().updated(status=IdentityStatus.PROV, doubtful=True)
    verdict = match_patient(document, [LocalPatient(local_id="P1", identity=doubtful)])
    assert verdict.status is FilingStatus.TO_CHECK
    assert MatchReason.LOCAL_IDENTITY_DOUBTFUL in verdict.reasons


def test_separators_are_a_documented_tolerance() -> None:
    document = _received_xdm()
    identity = _patient()
    name = identity.traits.birth_name
    spaced = identity.updated(traits=identity.traits.model_copy(update={"birth_name": name[:1] + "-" + name[1:]}))
    local = LocalPatient(local_id="P1", identity=spaced)
    assert match_patient(document, [local]).matched
    strict = match_patient(document, [local], rules=MatchRules(accept_separators=False))
    assert strict.status is FilingStatus.TO_CHECK and strict.differing_traits == ("birth_name",)


def test_duplicates_and_versions() -> None:
    document = _received_xdm()
    filed = FiledDocument.of(document, local_id="P1/doc-7")
    same = find_duplicate(document, [filed])
    assert same is not None and same.kind is DuplicateKind.SAME_DOCUMENT and same.filed.local_id == "P1/doc-7"
    assert find_duplicate(document, []) is None
    assert document.set_id is not None and document.version is not None
    newer = document.model_copy(update={"document_id": "1.2.9^new", "version": document.version + 1})
    older = document.model_copy(update={"document_id": "1.2.9^old", "version": document.version - 1})
    twin = document.model_copy(update={"document_id": "1.2.9^twin"})
    replacing = document.model_copy(update={"document_id": "1.2.9^r", "set_id": "other", "replaces": filed.document_id})
    assert (found := find_duplicate(newer, [filed])) is not None and found.kind is DuplicateKind.NEWER_VERSION
    assert (found := find_duplicate(older, [filed])) is not None and found.kind is DuplicateKind.OLDER_VERSION
    assert (found := find_duplicate(twin, [filed])) is not None and found.kind is DuplicateKind.CONFLICTING_VERSION
    assert (found := find_duplicate(replacing, [filed])) is not None and found.kind is DuplicateKind.NEWER_VERSION
    unrelated = document.model_copy(update={"document_id": "9.9", "set_id": "9.9.9", "replaces": None})
    assert find_duplicate(unrelated, [filed]) is None


def test_a_receipt_or_a_refused_archive_gives_no_document() -> None:
    dsn = (
        b"From: MAILER-DAEMON@mssante.fr\r\nTo: lps@cabinet-test.mssante.fr\r\nSubject: Delivery Status\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nok\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.mssante.fr\r\nAction: delivered\r\n"
        b"Status: 2.0.0\r\n\r\n--b--\r\n"
    )
    assert documents_from_message(parse_message(dsn)) == ()
    bomb = build_message(
        MssanteMessage(
            to=(DOCTOR,), subject="x",
            attachments=(Attachment(filename="IHE_XDM.ZIP", content=b"PK\x03\x04bad", content_type="application/zip"),),
        ),
        SETTINGS,
        now=NOW,
    )  # fmt: skip
    message = parse_message(bomb.as_bytes())
    assert message.xdm_error is not None
    assert documents_from_message(message) == ()
