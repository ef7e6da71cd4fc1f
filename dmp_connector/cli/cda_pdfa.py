"""``dmp-connector cda pdfa check|convert``: PDF/A for the PDF of a level-1 document.

``check FILE`` reports the file's PDF/A claim and what it lacks (exit 0 when the claims and
the structure hold, 4 otherwise; 3 without the ``pdfa`` extra). ``convert FILE -o OUT``
writes a PDF/A copy made by Ghostscript (exit 3 when it is not installed); FILE is never
written, and OUT may not be FILE.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dmp_connector.cda.pdfa import PdfAReport, check_pdfa, convert_to_pdfa
from dmp_connector.errors import DmpConnectorError, MalformedResponseError, ValidationError

from ._main import EXIT_VALIDATION, CliState, pass_state
from .cda import cda

__all__ = ["pdfa"]


@cda.group("pdfa")
def pdfa() -> None:
    """PDF/A for level-1 (PDF body) documents: check a PDF's claims, convert a PDF with Ghostscript."""


def _read(state: CliState, file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        state.fail(MalformedResponseError(f"cannot read {file.name}: {exc.strerror or exc}"))


def _data(file: Path, report: PdfAReport) -> dict[str, object]:
    return {
        "file": str(file),
        "ok": report.ok,
        "claim": report.claim,
        "pdf_version": report.pdf_version,
        "pages": report.pages,
        "findings": [{"issue": f.issue.value, "detail": f.detail} for f in report.findings],
    }


@pdfa.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--part", type=click.IntRange(1, 4), default=None, help="Require this PDF/A part (1 for PDF/A-1).")
@pass_state
def check(state: CliState, file: Path, part: int | None) -> None:
    """Report a PDF's PDF/A claim and what it lacks (a claims-and-structure check, not veraPDF).

    \b
        dmp-connector cda pdfa check compte-rendu.pdf
    """
    data = _read(state, file)
    try:
        report = check_pdfa(data, part=part)
    except DmpConnectorError as exc:
        state.fail(exc)
    state.emit(f"{file.name}: {report.to_text()}", _data(file, report))
    if not report.ok:
        sys.exit(EXIT_VALIDATION)


@pdfa.command("convert")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    "output",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the PDF/A copy (never the input file).",
)
@click.option("--part", type=click.Choice(["1", "2"]), default="2", show_default=True, help="PDF/A-1b or PDF/A-2b.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds Ghostscript may take.")
@pass_state
def convert(state: CliState, file: Path, output: Path, part: str, timeout: float) -> None:
    """Write a PDF/A-1b or -2b copy of a PDF, made by Ghostscript and checked again.

    \b
        dmp-connector cda pdfa convert scan.pdf --part 1 -o scan-pdfa.pdf
    """
    if output.exists() and output.resolve() == file.resolve():
        state.fail(ValidationError("the output is the input file: the input is never overwritten"))
    data = _read(state, file)
    try:
        converted = convert_to_pdfa(data, part=1 if part == "1" else 2, timeout=timeout)
        report = check_pdfa(converted)
    except DmpConnectorError as exc:
        state.fail(exc)
    output.write_bytes(converted)
    state.emit(f"{output}: {len(converted)} bytes, {report.to_text()}", {**_data(output, report), "source": str(file)})
