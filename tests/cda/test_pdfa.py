"""PDF/A for level-1 bodies: the check on real PDFs (made here, by Ghostscript, and the kit's), the
conversion by Ghostscript, the builder's refusal, hostile files, and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dmp_connector.cda import ClinicalDocument, NonXmlBody
from dmp_connector.cda.pdfa import (
    PdfAConversionError,
    PdfAIssue,
    PdfANotConformingError,
    PdfAToolMissingError,
    check_pdfa,
    convert_to_pdfa,
    find_ghostscript,
    pdfa_body,
)
from dmp_connector.cli import main
from dmp_connector.errors import ValidationError

from .conftest import make_pdf

pikepdf = pytest.importorskip("pikepdf", reason="the PDF/A check needs the 'pdfa' extra (pikepdf)")

GS = shutil.which("gs")
needs_gs = pytest.mark.skipif(GS is None, reason="Ghostscript (gs) is not installed: apt-get install ghostscript")
LEVEL_1_EXAMPLES = (
    "BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml",
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml",
    "TLM-CR_2022.01.xml",
)


@pytest.fixture(scope="module")
def pdfa1() -> bytes:
    """A PDF/A-1b made by Ghostscript from a plain one-page PDF."""
    if GS is None:
        pytest.skip("Ghostscript (gs) is not installed: apt-get install ghostscript")
    return convert_to_pdfa(make_pdf("Compte rendu de consultation"), part=1)


def edited(data: bytes, change: Callable[[Any], None]) -> bytes:
    """``data`` with one change made by pikepdf (everything else as it was)."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        change(pdf)
        out = io.BytesIO()
        # Saved as changed: no stream recompressed (an LZW stream stays LZW), no XMP rewritten.
        pdf.save(
            out, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none, fix_metadata_version=False
        )
    return out.getvalue()


def _add_lzw_stream(pdf: Any) -> None:
    stream = pdf.make_stream(b"\x80\x0b\x60\x50\x22\x0c\x0c\x85\x01")
    stream.Filter = pikepdf.Name.LZWDecode
    pdf.Root["/Extra"] = stream


def _add_alpha(pdf: Any) -> None:
    state = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.ExtGState, ca=0.5))
    pdf.pages[0].obj.Resources["/ExtGState"] = pikepdf.Dictionary(GS9=state)


# --------------------------------------------------------------------------- the check


def test_a_plain_pdf_lacks_what_pdfa_needs() -> None:
    report = check_pdfa(make_pdf())
    assert not report.ok and report.claim is None
    assert report.issues == {
        PdfAIssue.NO_XMP,
        PdfAIssue.NO_CLAIM,
        PdfAIssue.NO_OUTPUT_INTENT,
        PdfAIssue.FONT_NOT_EMBEDDED,
    }
    (font,) = [f for f in report.findings if f.issue is PdfAIssue.FONT_NOT_EMBEDDED]
    assert font.detail == "Helvetica"
    assert (report.pdf_version, report.pages) == ("1.4", 1)
    assert "not a veraPDF validation" not in report.to_text()


@needs_gs
def test_a_ghostscript_pdfa_passes(pdfa1: bytes) -> None:
    report = check_pdfa(pdfa1, part=1)
    assert report.ok, report.to_text()
    assert (report.part, report.conformance, report.claim) == (1, "B", "PDF/A-1B")
    assert "not a veraPDF validation" in report.to_text()
    wrong = check_pdfa(pdfa1, part=2)
    assert wrong.issues == {PdfAIssue.WRONG_PART}


@needs_gs
@pytest.mark.parametrize(
    ("name", "issue", "change"),
    [
        (
            "document-level JavaScript",
            PdfAIssue.JAVASCRIPT,
            lambda pdf: pdf.Root.__setitem__(
                "/Names",
                pikepdf.Dictionary(
                    JavaScript=pikepdf.Dictionary(
                        Names=pikepdf.Array(
                            ["go", pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))]
                        )
                    )
                ),
            ),
        ),
        (
            "an open action that runs JavaScript",
            PdfAIssue.JAVASCRIPT,
            lambda pdf: pdf.Root.__setitem__(
                "/OpenAction",
                pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("x()"))),
            ),
        ),
        (
            "a launch action",
            PdfAIssue.FORBIDDEN_ACTION,
            lambda pdf: pdf.Root.__setitem__(
                "/OpenAction",
                pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("calc.exe"))),
            ),
        ),
        (
            "additional actions on a page",
            PdfAIssue.FORBIDDEN_ACTION,
            lambda pdf: pdf.pages[0].obj.__setitem__("/AA", pikepdf.Dictionary()),
        ),
        ("a constant alpha (transparency)", PdfAIssue.TRANSPARENCY, lambda pdf: _add_alpha(pdf)),
        ("an LZW stream", PdfAIssue.LZW, lambda pdf: _add_lzw_stream(pdf)),
        (
            "an embedded file",
            PdfAIssue.EMBEDDED_FILE,
            lambda pdf: pdf.attachments.__setitem__("note.txt", pikepdf.AttachedFileSpec(pdf, b"hello")),
        ),
        (
            "a font whose program is not embedded",
            PdfAIssue.FONT_NOT_EMBEDDED,
            lambda pdf: pdf.pages[0].obj.Resources.Font.__setitem__(
                "/F9",
                pdf.make_indirect(
                    pikepdf.Dictionary(
                        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.TrueType, BaseFont=pikepdf.Name.Arial
                    )
                ),
            ),
        ),
        ("no output intent", PdfAIssue.NO_OUTPUT_INTENT, lambda pdf: pdf.Root.__delitem__("/OutputIntents")),
        (
            "an XFA form",
            PdfAIssue.DYNAMIC_FORM,
            lambda pdf: pdf.Root.__setitem__(
                "/AcroForm", pikepdf.Dictionary(Fields=pikepdf.Array(), XFA=pdf.make_stream(b"<xdp/>"))
            ),
        ),
        (
            "fields the reader must draw",
            PdfAIssue.DYNAMIC_FORM,
            lambda pdf: pdf.Root.__setitem__(
                "/AcroForm", pikepdf.Dictionary(Fields=pikepdf.Array(), NeedAppearances=True)
            ),
        ),
    ],
)
def test_each_forbidden_thing_is_found_alone(
    pdfa1: bytes, name: str, issue: PdfAIssue, change: Callable[[Any], None]
) -> None:
    report = check_pdfa(edited(pdfa1, change), part=1)
    assert report.issues == {issue}, f"{name}: {report.to_text()}"
    assert not report.ok
    assert report.claim == "PDF/A-1B", "the claim is read even when the file breaks it"


@needs_gs
def test_transparency_is_a_pdfa1_rule_only(pdfa1: bytes) -> None:
    data = edited(pdfa1, _add_alpha)
    assert check_pdfa(data).issues == {PdfAIssue.TRANSPARENCY}  # claims part 1: part 1's rules
    assert PdfAIssue.TRANSPARENCY not in check_pdfa(data, part=2).issues


@needs_gs
@pytest.mark.parametrize(
    ("xmp", "expected"),
    [
        (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">'
            b"<pdfaid:part>1</pdfaid:part><pdfaid:conformance>B</pdfaid:conformance>"
            b"</rdf:Description></rdf:RDF></x:xmpmeta>",
            ("PDF/A-1B", set()),
        ),
        (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/" pdfaid:part="7" '
            b'pdfaid:conformance="B"/></rdf:RDF></x:xmpmeta>',
            (None, {PdfAIssue.BAD_CLAIM}),
        ),
        (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"/></rdf:RDF></x:xmpmeta>',
            (None, {PdfAIssue.NO_CLAIM}),
        ),
        (  # an entity bomb in the XMP: refused by the hardened parser, never expanded
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>',
            (None, {PdfAIssue.NO_XMP}),
        ),
    ],
)
def test_the_claim_is_read_from_the_xmp(pdfa1: bytes, xmp: bytes, expected: tuple[str | None, set[PdfAIssue]]) -> None:
    def replace(pdf: Any) -> None:
        pdf.Root.Metadata = pdf.make_stream(xmp, Type=pikepdf.Name.Metadata, Subtype=pikepdf.Name.XML)

    report = check_pdfa(edited(pdfa1, replace))
    assert (report.claim, set(report.issues)) == expected


@needs_gs
def test_an_encrypted_pdf_is_reported(pdfa1: bytes, tmp_path: Path) -> None:
    with pikepdf.open(io.BytesIO(pdfa1)) as pdf:
        pdf.save(tmp_path / "open.pdf", encryption=pikepdf.Encryption(owner="o", user=""))
        pdf.save(tmp_path / "locked.pdf", encryption=pikepdf.Encryption(owner="o", user="u"))
    readable = check_pdfa((tmp_path / "open.pdf").read_bytes())
    assert PdfAIssue.ENCRYPTED in readable.issues and readable.claim == "PDF/A-1B"
    locked = check_pdfa((tmp_path / "locked.pdf").read_bytes())
    assert locked.issues == {PdfAIssue.ENCRYPTED} and locked.pages == 0
    with pytest.raises(ValidationError, match="cannot be converted") as caught:
        convert_to_pdfa((tmp_path / "locked.pdf").read_bytes())
    assert caught.value.problems[0].startswith("encrypted:")


def test_damaged_and_oversized_pdfs() -> None:
    broken = make_pdf()
    repaired = check_pdfa(broken.replace(b"xref", b"xre!"))  # qpdf rebuilds the table: a repaired file
    assert PdfAIssue.UNREADABLE in repaired.issues
    garbage = check_pdfa(b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n")
    assert PdfAIssue.UNREADABLE in garbage.issues and not garbage.ok
    huge = make_pdf(padding=3 * 1024 * 1024)  # a 3 MiB file against a 1 MiB limit: refused unread
    with pytest.raises(ValidationError, match="over the 1048576-byte limit") as too_large:
        check_pdfa(huge, max_bytes=1024 * 1024)
    assert too_large.value.problems == ("pdf: too large",)
    with pytest.raises(ValidationError, match="objects"):
        check_pdfa(make_pdf(), max_objects=3)


def test_the_kits_level_1_examples_claim_no_pdfa(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    """The ANS kit's own level-1 examples carry plain PDFs: none claims PDF/A (reported in docs/documents.md)."""
    claims = {}
    for name in LEVEL_1_EXAMPLES:
        body = parsed_examples[name].body
        assert isinstance(body, NonXmlBody)
        report = check_pdfa(body.data)
        claims[name] = (report.claim, PdfAIssue.NO_OUTPUT_INTENT in report.issues, report.pdf_version)
    assert claims == {
        "BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml": (None, True, "1.5"),
        "DOC_NON_STRUCTURE_CDA-R2-N1.xml": (None, True, "1.5"),
        "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml": (None, True, "1.7"),
        "TLM-CR_2022.01.xml": (None, True, "1.5"),
    }
    img = check_pdfa(_body(parsed_examples["IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"]))
    assert {PdfAIssue.FONT_NOT_EMBEDDED, PdfAIssue.TRANSPARENCY} <= img.issues  # Word's output, fonts left out


def _body(document: ClinicalDocument) -> bytes:
    assert isinstance(document.body, NonXmlBody)
    return document.body.data


# --------------------------------------------------------------------------- the conversion


@needs_gs
@pytest.mark.parametrize("part", [1, 2])
def test_conversion_makes_a_pdfa_and_leaves_the_input_alone(part: int) -> None:
    original = make_pdf("Résultats")
    kept = bytes(original)
    converted = convert_to_pdfa(original, part=part)  # type: ignore[arg-type]
    assert original == kept
    report = check_pdfa(converted, part=part)
    assert report.ok and report.claim == f"PDF/A-{part}B"


@needs_gs
def test_the_kits_image_report_pdf_converts(parsed_examples: Mapping[str, ClinicalDocument]) -> None:
    data = _body(parsed_examples["IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"])
    digest = hashlib.sha256(data).hexdigest()
    converted = convert_to_pdfa(data, part=1)
    assert check_pdfa(converted, part=1).ok
    assert hashlib.sha256(data).hexdigest() == digest


def test_without_ghostscript_the_error_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PdfAToolMissingError, match="needs Ghostscript") as caught:
        convert_to_pdfa(make_pdf())
    assert caught.value.hint is not None and "apt-get install ghostscript" in caught.value.hint
    with pytest.raises(PdfAToolMissingError, match="not at"):
        find_ghostscript(tmp_path / "gs")


@needs_gs
def test_a_ghostscript_that_fails_or_hangs_is_a_typed_error(tmp_path: Path) -> None:
    failing = tmp_path / "gs"
    failing.write_text("#!/bin/sh\necho 'Error: /undefined' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(PdfAConversionError, match="exit status 1") as caught:
        convert_to_pdfa(make_pdf(), ghostscript=failing)
    assert "undefined" in caught.value.stderr and "undefined" not in str(caught.value)
    slow = tmp_path / "slow-gs"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    with pytest.raises(PdfAConversionError, match=r"did not finish within 0\.3 s"):
        convert_to_pdfa(make_pdf(), ghostscript=slow, timeout=0.3)
    liar = tmp_path / "liar-gs"  # writes the input back as its "PDF/A": the re-check catches it
    liar.write_text(
        '#!/bin/sh\nfor a; do case "$a" in -sOutputFile=*) out="${a#-sOutputFile=}";; esac; last="$a"; done\n'
        'cp "$last" "$out"\n'
    )
    liar.chmod(0o755)
    with pytest.raises(PdfAConversionError, match="still not PDF/A") as lie:
        convert_to_pdfa(make_pdf(), ghostscript=liar)
    assert lie.value.report is not None and PdfAIssue.NO_CLAIM in lie.value.report.issues


def test_without_pikepdf_the_package_imports_and_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pikepdf", None)
    with pytest.raises(PdfAToolMissingError) as caught:
        check_pdfa(make_pdf())
    assert caught.value.hint == "install it with: pip install 'dmp-connector[pdfa]'"


# --------------------------------------------------------------------------- the builder's entry


def test_a_body_that_is_not_pdfa_is_refused_with_what_it_lacks() -> None:
    with pytest.raises(PdfANotConformingError) as caught:
        pdfa_body(make_pdf())
    assert caught.value.problems[0].startswith("no-xmp-metadata:")
    assert caught.value.report.issues >= {PdfAIssue.NO_CLAIM, PdfAIssue.NO_OUTPUT_INTENT}
    assert caught.value.hint is not None and "convert=2" in caught.value.hint


@needs_gs
def test_a_pdfa_body_is_carried_as_it_is_and_conversion_is_opt_in(pdfa1: bytes) -> None:
    assert pdfa_body(pdfa1, part=1).data is pdfa1
    with pytest.raises(PdfANotConformingError):
        pdfa_body(pdfa1, part=2)
    plain = make_pdf()
    body = pdfa_body(plain, convert=1)
    assert body.data != plain and check_pdfa(body.data, part=1).ok
    assert plain == make_pdf(), "the caller's bytes are never changed"


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DMP_CONNECTOR_ENV", "test")
    return CliRunner()


@needs_gs
def test_cli_check_and_convert(runner: CliRunner, tmp_path: Path) -> None:
    plain = tmp_path / "cr.pdf"
    plain.write_bytes(make_pdf())
    checked = runner.invoke(main, ["--json", "cda", "pdfa", "check", str(plain)])
    assert checked.exit_code == 4, checked.output
    answer = json.loads(checked.output)
    assert answer["ok"] is False and answer["claim"] is None
    assert {f["issue"] for f in answer["findings"]} >= {"no-pdfa-claim", "font-not-embedded"}
    refused = runner.invoke(main, ["cda", "pdfa", "convert", str(plain), "-o", str(plain)])
    assert refused.exit_code == 4 and "never overwritten" in refused.output
    out = tmp_path / "cr-pdfa.pdf"
    converted = runner.invoke(main, ["cda", "pdfa", "convert", str(plain), "--part", "1", "-o", str(out)])
    assert converted.exit_code == 0, converted.output
    assert plain.read_bytes() == make_pdf()
    again = runner.invoke(main, ["cda", "pdfa", "check", "--part", "1", str(out)])
    assert again.exit_code == 0 and "PDF/A-1B" in again.output


def test_cli_convert_without_ghostscript_exits_3(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "cr.pdf"
    plain.write_bytes(make_pdf())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = runner.invoke(main, ["cda", "pdfa", "convert", str(plain), "-o", str(tmp_path / "out.pdf")])
    assert result.exit_code == 3
    assert "apt-get install ghostscript" in result.output
    assert not (tmp_path / "out.pdf").exists()
