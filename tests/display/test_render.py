"""The renderer without a browser: what the page holds, what it refuses, the attachments, the CLI."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cda import Finding, FindingLayer, FindingSeverity, ValidationReport
from dmp_connector.cli import EXIT_OK, EXIT_VALIDATION, main
from dmp_connector.display import CSP, render_cda, sniff_media_type
from dmp_connector.errors import ConfigurationError, MalformedResponseError, UnsafeXmlError

from .hostile import EXAMPLES, HOSTILE, PDF, PNG, non_xml_body

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/cda-2025 (the ANS kit) is missing")

VSM = EXAMPLES / "VSM_1.4_2022.01.xml"
LEVEL1 = EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml"


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_page_carries_the_policy_and_french_header() -> None:
    page = render_cda(VSM.read_bytes())
    assert page.html.startswith("<!DOCTYPE html>")
    assert '<html lang="fr">' in page.html
    assert 'http-equiv="Content-Security-Policy"' in page.html
    assert "script-src 'none'" in CSP and "default-src 'none'" in CSP and "img-src data:" in CSP
    for label in ("Patient", "Date de naissance", "Type de document", "Confidentialité", "Version", "Auteur"):
        assert label in page.html
    assert "279035121518989" in page.html  # the INS the document names is shown, as its header requires
    assert page.warnings == ()
    assert page.notes  # the kit examples name CDA-FO.xsl: it is said not to be used


def test_hostile_narrative_is_neutralised_in_the_markup() -> None:
    page = render_cda(HOSTILE["narrative"]())
    lowered = page.html.lower()
    body = lowered.split("<body>", 1)[1]
    for forbidden in (
        "<script",
        "<iframe",
        "<object",
        "<embed",
        "<svg",
        "<style",
        " onclick",
        " onmouseover",
        " onerror",
    ):
        assert forbidden not in body, forbidden
    for href in _hrefs(page.html):
        assert href.startswith(("#", "https://")), href
    assert "javascript:" not in " ".join(_hrefs(page.html)).lower()
    assert "//evil.example/i.png" not in page.html
    assert page.external_links == (
        'https://evil.example/@x"onmouseover="' + HOSTILE_PWN,
        "https://www.example.org/page?x=1",
    )
    kinds = [(a.declared_type, a.media_type) for a in page.attachments]
    assert ("image/svg+xml", None) in kinds  # an SVG is never shown inline (it can carry script)
    assert ("text/html", None) in kinds
    assert ("image/png", None) in kinds  # declared PNG, bytes are HTML: not an image
    assert ("application/pdf", "application/pdf") in kinds
    assert any(a.type_mismatch is False and a.media_type is None for a in page.attachments)


HOSTILE_PWN = "window.__pwned=1;fetch('https://evil.example/x')"


def test_pdf_body_is_an_attachment_never_a_frame() -> None:
    page = render_cda(HOSTILE["pdf-body"]())
    assert len(page.attachments) == 1
    attachment = page.attachments[0]
    assert attachment.media_type == "application/pdf" and attachment.content == PDF
    assert attachment.filename == "piece-jointe-1.pdf"
    assert "<iframe" not in page.html and "data:application/pdf" not in page.html


def test_kit_level1_document_offers_its_pdf() -> None:
    page = render_cda(LEVEL1.read_bytes())
    assert [a.media_type for a in page.attachments] == ["application/pdf"]
    assert page.attachments[0].content.startswith(b"%PDF")


def test_failed_validation_is_a_banner_never_hidden() -> None:
    finding = Finding(
        severity=FindingSeverity.ERROR, layer=FindingLayer.SCHEMATRON, rule="x", message="Élément obligatoire absent"
    )
    page = render_cda(VSM.read_bytes(), validation=ValidationReport(findings=(finding,)))
    assert 'role="alert"' in page.html
    assert "La validation du document a échoué (1 erreur(s))" in page.html
    assert "Élément obligatoire absent" in page.html
    assert page.warnings[0].startswith("La validation du document a échoué")


def test_unreadable_header_is_a_banner() -> None:
    page = render_cda(HOSTILE["narrative"]())  # the hostile entries break the model's reading
    assert any("structure CDA attendue" in w for w in page.warnings)


def test_dtd_and_non_cda_are_refused() -> None:
    with pytest.raises(UnsafeXmlError):
        render_cda(b'<!DOCTYPE x [<!ENTITY e "boom">]><ClinicalDocument xmlns="urn:hl7-org:v3">&e;</ClinicalDocument>')
    with pytest.raises(MalformedResponseError):
        render_cda(b"<html><body>not a CDA</body></html>")


def test_sniffing_trusts_bytes_not_labels() -> None:
    assert sniff_media_type(PNG) == "image/png"
    assert sniff_media_type(PDF) == "application/pdf"
    assert sniff_media_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_media_type(b"GIF89a") == "image/gif"
    assert sniff_media_type(b"<svg/>") is None


def test_without_nh3_the_renderer_refuses_to_write_unsanitised_html(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nh3", None)
    with pytest.raises(ConfigurationError) as caught:
        render_cda(VSM.read_bytes())
    assert "dmp-connector[display]" in (caught.value.hint or "")


def test_cli_view_writes_the_page_and_attachments(tmp_path: Path) -> None:
    source = tmp_path / "doc.xml"
    source.write_bytes(LEVEL1.read_bytes())
    result = CliRunner().invoke(main, ["--json", "cda", "view", str(source), "--attachments", str(tmp_path / "pj")])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert Path(data["page"]).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    saved = Path(data["saved"][0])
    assert saved.read_bytes().startswith(b"%PDF")
    assert data["attachments"][0]["media_type"] == "application/pdf"


def test_cli_view_refuses_a_hostile_file(tmp_path: Path) -> None:
    source = tmp_path / "evil.xml"
    source.write_bytes(b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>')
    result = CliRunner().invoke(main, ["cda", "view", str(source)])
    assert result.exit_code == EXIT_VALIDATION
    assert not (tmp_path / "evil.html").exists()


def test_cli_view_never_overwrites_the_document_it_shows(tmp_path: Path) -> None:
    source = tmp_path / "recu.html"  # a received CDA saved under an .html name
    original = HOSTILE["narrative"]()
    source.write_bytes(original)
    result = CliRunner().invoke(main, ["cda", "view", str(source)])
    assert result.exit_code != 0 and "overwritten" in result.output
    assert source.read_bytes() == original


def test_embedded_image_shown_inline_only_from_the_document() -> None:
    page = render_cda(HOSTILE["narrative"]())
    encoded = base64.b64encode(PNG).decode("ascii")
    assert f'src="data:image/png;base64,{encoded}"' in page.html
    assert re.findall(r'<img [^>]*src="([^"]*)"', page.html) == [f"data:image/png;base64,{encoded}"]


def test_a_large_pdf_body_is_offered_whole() -> None:
    """Over libxml2's 10 MB text-node limit (a PDF of 8 MB): the base64 is cut out before the hardened parse."""
    pdf = PDF + b"%" + b"x" * (8 * 1024 * 1024)
    encoded = base64.encodebytes(pdf)  # 76-column lines, as senders write them
    document = non_xml_body('<text mediaType="application/pdf" representation="B64">BODY</text>')
    page = render_cda(document.replace(b">BODY<", b">" + encoded + b"<"))
    assert [a.content for a in page.attachments] == [pdf]
    assert [a.media_type for a in page.attachments] == ["application/pdf"]


def test_a_large_pdf_in_a_comment_is_never_shown_as_the_body() -> None:
    # The real body under a prefix the byte scan does not take for a tag (é:) and empty; a comment
    # holds what looks like the body, with a large PDF: no XML reader sees that PDF, nor may the page.
    pdf = PDF + b"%" + b"x" * (2 * 1024 * 1024)
    hidden = (
        '<é:nonXMLBody xmlns:é="urn:hl7-org:v3"><é:text mediaType="application/pdf" representation="B64"></é:text>'
        "</é:nonXMLBody><!--<nonXMLBody><text>BODY</text>-->"
    )
    base = non_xml_body('<text mediaType="application/pdf" representation="B64">X</text>')
    found = re.search(rb"<nonXMLBody[^>]*>.*</nonXMLBody>", base, re.S)
    assert found is not None
    forged = base[: found.start()] + hidden.encode() + base[found.end() :]
    forged = forged.replace(b">BODY<", b">" + base64.encodebytes(pdf) + b"<")
    page = render_cda(forged)
    assert all(a.content != pdf for a in page.attachments)
