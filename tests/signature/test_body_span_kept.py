"""The body's span is looked for once per deposit: the CDA reader and the manifest ask for the same bytes (issue 22)."""

from __future__ import annotations

import base64
import sys

import pytest

from dmp_connector import xml
from dmp_connector.signature._manifest import C14N_WITH_COMMENTS, document_digest
from dmp_connector.signature.signer import DigestAlgorithm
from tests.signature.test_manifest_digest import cda, whole


def _cda(body: bytes) -> bytes:
    return (
        b'<ClinicalDocument><component><nonXMLBody><text mediaType="application/pdf">'
        + body
        + (b"</text></nonXMLBody></component></ClinicalDocument>")
    )


def test_within_a_block_the_same_bytes_are_not_looked_through_again() -> None:
    data = _cda(b"QUJD" * 4000)
    span = xml.non_xml_body_text(data)
    assert span is not None
    with xml.base64_scans_kept():
        assert xml.non_xml_body_text(data) == span
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(xml, "_non_xml_body_text", lambda *args: pytest.fail("looked for again"))
            assert xml.non_xml_body_text(data) == span
        # Other bytes (another body, an equal copy, a mutable buffer): looked for, each its own answer.
        other = _cda(b"QUJD" * 5000)
        assert xml.non_xml_body_text(other) == (span[0], span[0] + 20000)
        assert xml.non_xml_body_text(data) == span
        assert xml.non_xml_body_text(bytes(bytearray(data))) == span
        assert xml.non_xml_body_text(b"<a/>" * 2000) is None
        assert xml.non_xml_body_text(bytearray(other)) == (span[0], span[0] + 20000)  # type: ignore[arg-type]


def test_outside_a_block_nothing_is_kept_and_a_block_lets_its_document_go() -> None:
    data = _cda(b"QUJD" * 4000)
    looks: list[int] = []
    real = xml._non_xml_body_text

    def counted(value: bytes) -> tuple[int, int] | None:
        looks.append(1)
        return real(value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xml, "_non_xml_body_text", counted)
        xml.non_xml_body_text(data)
        xml.non_xml_body_text(data)
        assert len(looks) == 2
        with xml.base64_scans_kept():
            xml.non_xml_body_text(data)
            with xml.base64_scans_kept():  # a nested block starts empty and gives the outer its memory back
                xml.non_xml_body_text(data)
            xml.non_xml_body_text(data)
        assert len(looks) == 4
    assert getattr(xml._LOCAL, "body_memo", None) is xml._OFF
    assert sys.getrefcount(data) == 2


def test_a_deposit_looks_for_the_body_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_deposit reads, then signs, the document: one look for its body, however many ask."""
    big = base64.b64encode(bytes(range(256)) * 400).decode("ascii")
    data = cda("\n".join(big[i : i + 76] for i in range(0, len(big), 76)))
    assert len(data) > 100_000
    looks: list[bytes] = []
    real = xml._non_xml_body_text

    def counted(value: bytes) -> tuple[int, int] | None:
        looks.append(value)
        return real(value)

    monkeypatch.setattr(xml, "_non_xml_body_text", counted)
    with xml.base64_scans_kept():
        first = document_digest(data, DigestAlgorithm.SHA256, transform=C14N_WITH_COMMENTS)
        assert document_digest(data, DigestAlgorithm.SHA256, transform=C14N_WITH_COMMENTS) == first
    assert first == whole(data, C14N_WITH_COMMENTS)
    assert [value is data for value in looks] == [True]
    assert document_digest(data, DigestAlgorithm.SHA256, transform=C14N_WITH_COMMENTS) == first
    assert first == whole(data, C14N_WITH_COMMENTS)
