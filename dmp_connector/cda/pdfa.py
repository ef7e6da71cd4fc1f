"""PDF/A for level-1 bodies: what a PDF claims and what it lacks, and a conversion by Ghostscript.

The CI-SIS names the format of a PDF body "PDF/A-1" (JDV_J10) and the ANS tools convert
PDFs to PDF/A, so a level-1 document should carry one. Three parts:

* :func:`check_pdfa` reads a PDF (with qpdf, through pikepdf: the ``pdfa`` extra) and
  reports, typed, its PDF/A claim (XMP ``pdfaid:part`` / ``pdfaid:conformance``) and what a
  PDF/A file may not lack or hold: XMP metadata, an output intent, embedded fonts; no
  encryption, JavaScript or launch-type actions, XFA forms, LZW compression, embedded files (PDF/A-1),
  transparency (PDF/A-1). It is a **claims-and-structure check**, not a validation of the
  ISO 19005 rules as veraPDF does (colour spaces against the output intent, XMP schema
  conformance, font metrics and glyph coverage, annotation appearances … are not checked):
  a file it passes may still fail veraPDF; a file it fails is not PDF/A.
* :func:`convert_to_pdfa` makes a PDF/A-1b or PDF/A-2b copy with Ghostscript (``gs``), never
  touching its input, and checks the copy with :func:`check_pdfa`.
* :func:`pdfa_body` is the builder's entry: a :class:`~dmp_connector.cda.model.NonXmlBody`
  from a PDF that passes the check, a :class:`PdfANotConformingError` naming what is missing
  otherwise — or, only when the caller asks (``convert=``), the converted copy.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import tempfile
import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from dmp_connector.errors import ConfigurationError, DmpConnectorError, ValidationError
from dmp_connector.xml import XmlLimits, parse_xml

from .model import NonXmlBody

if TYPE_CHECKING:
    import pikepdf

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_OBJECTS",
    "PdfAConversionError",
    "PdfAFinding",
    "PdfAIssue",
    "PdfANotConformingError",
    "PdfAPart",
    "PdfAReport",
    "PdfAToolMissingError",
    "check_pdfa",
    "convert_to_pdfa",
    "find_ghostscript",
    "pdfa_body",
]

PdfAPart = Literal[1, 2]
"""The PDF/A parts the converter writes: 1 (ISO 19005-1, the "PDF/A-1" the CI-SIS names) or 2."""

DEFAULT_MAX_BYTES: Final = 128 * 1024 * 1024
"""Largest PDF read (128 MiB): a larger one is refused before qpdf opens it."""
DEFAULT_MAX_OBJECTS: Final = 200_000
"""Most indirect objects walked: a PDF with more is refused rather than walked for minutes."""

_PDFAID: Final = "http://www.aiim.org/pdfa/ns/id/"
_RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XMP_LIMITS: Final = XmlLimits(max_bytes=4 * 1024 * 1024)
# Actions ISO 19005-1 6.6.1 forbids (PDF/A-2 and -3 keep the list and add a few).
_FORBIDDEN_ACTIONS: Final = frozenset(
    {"/Launch", "/Sound", "/Movie", "/ResetForm", "/ImportData", "/JavaScript", "/Hide", "/SetOCGState", "/Rendition"}
)
_EMBEDDABLE_FONTS: Final = frozenset({"/Type1", "/MMType1", "/TrueType", "/CIDFontType0", "/CIDFontType2"})
_BLEND_OK: Final = frozenset({"/Normal", "/Compatible"})


class PdfAIssue(StrEnum):
    """What keeps a PDF from being PDF/A, as a stable code for programs."""

    UNREADABLE = "unreadable"
    """qpdf could not read the file, or had to repair it (a PDF/A file reads cleanly)."""
    ENCRYPTED = "encrypted"
    """The file is encrypted (PDF/A forbids encryption)."""
    NO_XMP = "no-xmp-metadata"
    """The catalog has no XMP metadata stream."""
    NO_CLAIM = "no-pdfa-claim"
    """The XMP metadata do not claim PDF/A (``pdfaid:part``)."""
    BAD_CLAIM = "bad-pdfa-claim"
    """The claim is not a known part and level (``pdfaid:part`` 1-4, ``pdfaid:conformance`` A, B or U)."""
    WRONG_PART = "wrong-part"
    """The file claims another part than the one required."""
    NO_OUTPUT_INTENT = "no-output-intent"
    """No ``GTS_PDFA1`` output intent with an ICC profile."""
    FONT_NOT_EMBEDDED = "font-not-embedded"
    """A font whose program is not in the file."""
    JAVASCRIPT = "javascript"
    """JavaScript: a document-level script or a JavaScript action."""
    FORBIDDEN_ACTION = "forbidden-action"
    """A launch, sound, movie, import, reset-form … action, or additional actions (``/AA``)."""
    EMBEDDED_FILE = "embedded-file"
    """Embedded files (forbidden by PDF/A-1; PDF/A-2 allows only PDF/A attachments)."""
    LZW = "lzw-compression"
    """A stream compressed with LZW (forbidden by PDF/A)."""
    TRANSPARENCY = "transparency"
    """Transparency (soft masks, constant alpha, blend modes, transparency groups), forbidden by PDF/A-1."""
    DYNAMIC_FORM = "dynamic-form"
    """An XFA form, or an AcroForm that asks the reader to draw its fields (``NeedAppearances``)."""


class PdfAFinding(BaseModel):
    """One thing the PDF lacks or holds; ``detail`` names where (object number, font name), never content."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    issue: PdfAIssue
    """What kind of problem."""
    detail: str
    """Where and what, in words."""


class PdfAReport(BaseModel):
    """What :func:`check_pdfa` found: the PDF/A claim, and every finding."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    part: int | None
    """``pdfaid:part`` claimed in the XMP metadata (1, 2, 3, 4), or None."""
    conformance: str | None
    """``pdfaid:conformance`` claimed (``A``, ``B``, ``U``), or None."""
    pdf_version: str | None
    """The version in the file header (``1.4``)."""
    pages: int
    """Number of pages (0 when unreadable)."""
    findings: tuple[PdfAFinding, ...]
    """What is missing or forbidden; empty when the claims and the structure hold."""

    @property
    def ok(self) -> bool:
        """A PDF/A claim and no finding: the file passes this claims-and-structure check."""
        return self.part is not None and not self.findings

    @property
    def claim(self) -> str | None:
        """The claim as usually written, ``PDF/A-2B``; None without one."""
        if self.part is None:
            return None
        return f"PDF/A-{self.part}{(self.conformance or '').upper()}"

    @property
    def issues(self) -> frozenset[PdfAIssue]:
        """The kinds of problem found."""
        return frozenset(f.issue for f in self.findings)

    def problems(self) -> list[str]:
        """One line per finding, ``code: detail``."""
        return [f"{f.issue.value}: {f.detail}" for f in self.findings]

    def to_text(self) -> str:
        """A short human summary."""
        head = f"{self.claim or 'no PDF/A claim'}, PDF {self.pdf_version or '?'}, {self.pages} page(s)"
        if not self.findings:
            return f"{head}: claims and structure hold (not a veraPDF validation)"
        return "\n".join([f"{head}: {len(self.findings)} problem(s)", *(f"  {p}" for p in self.problems())])


class PdfAToolMissingError(ConfigurationError):
    """The library or program the PDF/A check or conversion needs is not installed; the hint names it."""


class PdfAConversionError(DmpConnectorError):
    """Ghostscript failed, timed out, or wrote a file that still is not PDF/A; ``report`` holds the check of
    that file when there was one. ``stderr`` keeps Ghostscript's own messages (not in the message: they may
    quote the document)."""

    def __init__(
        self, message: str, *, report: PdfAReport | None = None, stderr: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.report = report
        self.stderr = stderr


class PdfANotConformingError(ValidationError):
    """A PDF body is not PDF/A; ``problems`` lists each finding and ``report`` holds the whole check."""

    def __init__(self, message: str, *, report: PdfAReport, hint: str | None = None) -> None:
        problems = report.problems() or ["no-pdfa-claim: the XMP metadata do not claim PDF/A"]
        super().__init__(message, problems=problems, hint=hint)
        self.report = report


def _pikepdf() -> Any:
    try:
        import pikepdf
    except ImportError:
        raise PdfAToolMissingError(
            "the PDF/A check needs pikepdf (qpdf)", hint="install it with: pip install 'dmp-connector[pdfa]'"
        ) from None
    return pikepdf


# --------------------------------------------------------------------------- the check


def check_pdfa(
    data: bytes,
    *,
    part: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_objects: int = DEFAULT_MAX_OBJECTS,
) -> PdfAReport:
    """Report the PDF/A claim of ``data`` and what a PDF/A file may not lack or hold.

    With ``part`` the file must claim that part (``WRONG_PART`` otherwise) and the part's own
    rules apply (transparency is checked for part 1). A file larger than ``max_bytes``, or
    with more than ``max_objects`` objects, raises :class:`ValidationError` rather than
    being walked. Needs the ``pdfa`` extra.
    """
    lib = _pikepdf()
    if len(data) > max_bytes:
        raise ValidationError(
            f"the PDF is {len(data)} bytes, over the {max_bytes}-byte limit of the PDF/A check",
            problems=("pdf: too large",),
            hint="raise max_bytes if this size is legitimate",
        )
    findings: list[PdfAFinding] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pdf = lib.open(io.BytesIO(data))
        except lib.PasswordError:
            finding = PdfAFinding(issue=PdfAIssue.ENCRYPTED, detail="encrypted with a password: not read further")
            return PdfAReport(part=None, conformance=None, pdf_version=None, pages=0, findings=(finding,))
        except lib.PdfError as exc:
            finding = PdfAFinding(issue=PdfAIssue.UNREADABLE, detail=f"qpdf cannot read it ({type(exc).__name__})")
            return PdfAReport(part=None, conformance=None, pdf_version=None, pages=0, findings=(finding,))
    with pdf:
        if caught or pdf.get_warnings():
            findings.append(PdfAFinding(issue=PdfAIssue.UNREADABLE, detail="damaged: qpdf had to repair the file"))
        if len(pdf.objects) > max_objects:
            raise ValidationError(
                f"the PDF has {len(pdf.objects)} objects, over the {max_objects}-object limit of the PDF/A check",
                problems=("pdf: too many objects",),
            )
        if pdf.is_encrypted:
            findings.append(PdfAFinding(issue=PdfAIssue.ENCRYPTED, detail="encrypted (an empty user password)"))
        claimed_part, conformance = _claim(pdf, findings)
        if part is not None and claimed_part is not None and claimed_part != part:
            findings.append(PdfAFinding(issue=PdfAIssue.WRONG_PART, detail=f"claims part {claimed_part}, not {part}"))
        rules_part = part or claimed_part or 1
        _output_intent(pdf, findings)
        _walk(lib, pdf, rules_part, findings)
        return PdfAReport(
            part=claimed_part,
            conformance=conformance,
            pdf_version=str(pdf.pdf_version),
            pages=len(pdf.pages),
            findings=tuple(findings),
        )


def _claim(pdf: pikepdf.Pdf, findings: list[PdfAFinding]) -> tuple[int | None, str | None]:
    """``pdfaid:part`` and ``pdfaid:conformance``, read from the XMP packet by the hardened parser."""
    metadata = pdf.Root.get("/Metadata")
    if metadata is None:
        findings.append(PdfAFinding(issue=PdfAIssue.NO_XMP, detail="the catalog has no /Metadata stream"))
        findings.append(PdfAFinding(issue=PdfAIssue.NO_CLAIM, detail="no XMP metadata, so no pdfaid:part"))
        return None, None
    try:
        packet = bytes(metadata.read_bytes())
        root = parse_xml(packet.strip(b"\x00 \t\r\n"), limits=_XMP_LIMITS, what="the XMP metadata")
    except Exception as exc:
        findings.append(
            PdfAFinding(issue=PdfAIssue.NO_XMP, detail=f"the XMP metadata are unreadable ({type(exc).__name__})")
        )
        return None, None
    values: dict[str, str] = {}
    for description in root.iter(f"{{{_RDF}}}Description"):
        for name in ("part", "conformance"):
            attribute = description.get(f"{{{_PDFAID}}}{name}")
            child = description.find(f"{{{_PDFAID}}}{name}")
            value = attribute if attribute is not None else (child.text if child is not None else None)
            if value is not None and name not in values:
                values[name] = value.strip()
    if "part" not in values:
        findings.append(PdfAFinding(issue=PdfAIssue.NO_CLAIM, detail="the XMP metadata have no pdfaid:part"))
        return None, None
    raw_part, conformance = values["part"], values.get("conformance")
    if raw_part not in ("1", "2", "3", "4") or (conformance is not None and conformance.upper() not in "ABU"):
        findings.append(
            PdfAFinding(issue=PdfAIssue.BAD_CLAIM, detail=f"pdfaid:part {raw_part!r}, conformance {conformance!r}")
        )
        return None, None
    if raw_part in ("1", "2", "3") and not conformance:
        findings.append(PdfAFinding(issue=PdfAIssue.BAD_CLAIM, detail=f"part {raw_part} without pdfaid:conformance"))
    return int(raw_part), conformance.upper() if conformance else None


def _output_intent(pdf: pikepdf.Pdf, findings: list[PdfAFinding]) -> None:
    intents = pdf.Root.get("/OutputIntents")
    for intent in intents if intents is not None else ():
        if intent.get("/S") == "/GTS_PDFA1" and intent.get("/DestOutputProfile") is not None:
            return
    findings.append(
        PdfAFinding(issue=PdfAIssue.NO_OUTPUT_INTENT, detail="no GTS_PDFA1 output intent with an ICC profile")
    )


def _walk(lib: Any, pdf: pikepdf.Pdf, part: int, findings: list[PdfAFinding]) -> None:
    """One pass over the indirect objects, and the page resources (whose fonts may be direct)."""
    seen_fonts: set[tuple[int, int]] = set()
    fonts: list[Any] = []
    found: dict[PdfAIssue, list[str]] = {}

    def note(issue: PdfAIssue, where: str) -> None:
        found.setdefault(issue, []).append(where)

    names = pdf.Root.get("/Names")
    if names is not None and names.get("/JavaScript") is not None:
        note(PdfAIssue.JAVASCRIPT, "a document-level script (/Names /JavaScript)")
    if names is not None and names.get("/EmbeddedFiles") is not None and part == 1:
        note(PdfAIssue.EMBEDDED_FILE, "/Names /EmbeddedFiles")
    if pdf.Root.get("/AA") is not None:
        note(PdfAIssue.FORBIDDEN_ACTION, "additional actions (/AA) on the catalog")
    form = pdf.Root.get("/AcroForm")
    if form is not None and form.get("/XFA") is not None:
        note(PdfAIssue.DYNAMIC_FORM, "an XFA form (/AcroForm /XFA)")
    if form is not None and bool(form.get("/NeedAppearances", False)):
        note(PdfAIssue.DYNAMIC_FORM, "/AcroForm /NeedAppearances true")
    for obj in pdf.objects:
        if not isinstance(obj, lib.Dictionary | lib.Stream):
            continue
        where = f"object {obj.objgen[0]}"
        kind = obj.get("/Type")
        action = obj.get("/S")
        if action == "/JavaScript" or obj.get("/JS") is not None:
            note(PdfAIssue.JAVASCRIPT, where)
        elif isinstance(action, lib.Name) and str(action) in _FORBIDDEN_ACTIONS:
            note(PdfAIssue.FORBIDDEN_ACTION, f"{where} ({str(action)[1:]} action)")
        if kind == "/Page" and obj.get("/AA") is not None:
            note(PdfAIssue.FORBIDDEN_ACTION, f"{where} (additional actions on a page)")
        if kind == "/Filespec" and obj.get("/EF") is not None and part == 1:
            note(PdfAIssue.EMBEDDED_FILE, where)
        if isinstance(obj, lib.Stream) and _has_lzw(lib, obj.get("/Filter")):
            note(PdfAIssue.LZW, where)
        if kind == "/Font":
            seen_fonts.add(obj.objgen)
            fonts.append(obj)
        if part == 1:
            _transparency(lib, obj, where, note)
    for page in pdf.pages:
        resources = page.obj.get("/Resources")
        font_dict = resources.get("/Font") if resources is not None else None
        for font in font_dict.values() if font_dict is not None else ():
            if font.objgen == (0, 0) or font.objgen not in seen_fonts:
                fonts.append(font)
    for font in fonts:
        _font(font, note)
    for issue, places in found.items():
        shown = ", ".join(sorted(set(places))[:5]) + (
            f" and {len(set(places)) - 5} more" if len(set(places)) > 5 else ""
        )
        findings.append(PdfAFinding(issue=issue, detail=shown))


def _has_lzw(lib: Any, filters: Any) -> bool:
    if filters is None:
        return False
    items = list(filters) if isinstance(filters, lib.Array) else [filters]
    return any(str(f) in ("/LZWDecode", "/LZW") for f in items)


def _font(font: Any, note: Any) -> None:
    subtype = font.get("/Subtype")
    name = str(font.get("/BaseFont", "?"))[1:] or "?"
    if subtype == "/Type0":
        for descendant in font.get("/DescendantFonts") or ():
            _font(descendant, note)
        return
    if str(subtype) not in _EMBEDDABLE_FONTS:
        return  # Type3 fonts are drawn by the file itself
    descriptor = font.get("/FontDescriptor")
    if descriptor is None or not any(descriptor.get(k) is not None for k in ("/FontFile", "/FontFile2", "/FontFile3")):
        note(PdfAIssue.FONT_NOT_EMBEDDED, name)


def _transparency(lib: Any, obj: Any, where: str, note: Any) -> None:
    kind = obj.get("/Type")
    if kind == "/ExtGState":
        mask = obj.get("/SMask")
        if mask is not None and mask != "/None":
            note(PdfAIssue.TRANSPARENCY, f"{where} (soft mask)")
        for key in ("/CA", "/ca"):
            alpha = obj.get(key)
            if alpha is not None and float(alpha) != 1.0:
                note(PdfAIssue.TRANSPARENCY, f"{where} (constant alpha)")
        blend = obj.get("/BM")
        if blend is not None and not (isinstance(blend, lib.Name) and str(blend) in _BLEND_OK):
            note(PdfAIssue.TRANSPARENCY, f"{where} (blend mode)")
    if obj.get("/Subtype") == "/Image" and obj.get("/SMask") is not None:
        note(PdfAIssue.TRANSPARENCY, f"{where} (image soft mask)")
    group = obj.get("/Group")
    if isinstance(group, lib.Dictionary) and group.get("/S") == "/Transparency":
        note(PdfAIssue.TRANSPARENCY, f"{where} (transparency group)")


# --------------------------------------------------------------------------- the conversion

_GS_NAMES: Final = ("gs", "gswin64c", "gswin32c")
_ICC_GLOBS: Final = (
    "/usr/share/ghostscript/*/iccprofiles/default_rgb.icc",
    "/usr/share/ghostscript/iccprofiles/default_rgb.icc",
    "/usr/local/share/ghostscript/*/iccprofiles/default_rgb.icc",
    "/opt/homebrew/share/ghostscript/*/iccprofiles/default_rgb.icc",
    "/usr/share/color/icc/ghostscript/default_rgb.icc",
    "/usr/share/color/icc/colord/sRGB.icc",
)
_INSTALL_HINT: Final = (
    "install Ghostscript (Debian/Ubuntu: apt-get install ghostscript; macOS: brew install ghostscript)"
)


def find_ghostscript(ghostscript: str | os.PathLike[str] | None = None) -> Path:
    """The Ghostscript program: ``ghostscript`` if given, else ``gs`` on the PATH; :class:`PdfAToolMissingError`
    naming what to install when there is none."""
    if ghostscript is not None:
        candidate = shutil.which(str(ghostscript))
        if candidate is None:
            raise PdfAToolMissingError(f"Ghostscript is not at {ghostscript}", hint=_INSTALL_HINT)
        return Path(candidate)
    for name in _GS_NAMES:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    raise PdfAToolMissingError(
        "converting a PDF to PDF/A needs Ghostscript (gs), which is not installed", hint=_INSTALL_HINT
    )


def _icc_profile(icc_profile: str | os.PathLike[str] | None) -> Path:
    if icc_profile is not None:
        path = Path(icc_profile)
        if not path.is_file():
            raise PdfAToolMissingError(f"no ICC profile at {path}", hint="pass the path of an RGB ICC profile")
        return path
    for pattern in _ICC_GLOBS:
        for match in sorted(glob.glob(pattern), reverse=True):
            return Path(match)
    raise PdfAToolMissingError(
        "no RGB ICC profile found for the PDF/A output intent",
        hint="pass icc_profile= (Ghostscript's iccprofiles/default_rgb.icc, or any sRGB profile)",
    )


def _ps_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _definition(icc: Path) -> str:
    """The PostScript that gives the output the PDF/A output intent (sRGB), as pdfmarks."""
    return "\n".join(
        (
            f"/dmpIccProfile {_ps_string(str(icc))} def",
            "[/_objdef {dmp_icc} /type /stream /OBJ pdfmark",
            "[{dmp_icc} << /N 3 >> /PUT pdfmark",
            "[{dmp_icc} dmpIccProfile (r) file /PUT pdfmark",
            "[/_objdef {dmp_intent} /type /dict /OBJ pdfmark",
            "[{dmp_intent} << /Type /OutputIntent /S /GTS_PDFA1 /DestOutputProfile {dmp_icc}"
            " /OutputConditionIdentifier (sRGB) /Info (sRGB IEC61966-2.1) >> /PUT pdfmark",
            "[{Catalog} << /OutputIntents [ {dmp_intent} ] >> /PUT pdfmark",
            "",
        )
    )


def convert_to_pdfa(
    data: bytes,
    *,
    part: PdfAPart = 2,
    ghostscript: str | os.PathLike[str] | None = None,
    icc_profile: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """A PDF/A-``part``\\ b copy of ``data`` made by Ghostscript, checked by :func:`check_pdfa`.

    ``data`` itself is never changed (the copy is new bytes). Encrypted or unreadable input
    is refused before Ghostscript runs. Raises :class:`PdfAToolMissingError` without
    Ghostscript or pikepdf, :class:`PdfAConversionError` when Ghostscript fails, runs over
    ``timeout`` seconds, or writes a file that does not pass the check.
    """
    if part not in (1, 2):
        raise ValidationError(f"the converter writes PDF/A part 1 or 2, not {part!r}", problems=("part",))
    program = find_ghostscript(ghostscript)
    icc = _icc_profile(icc_profile)
    before = check_pdfa(data, max_bytes=max_bytes)
    blocking = before.issues & {PdfAIssue.ENCRYPTED, PdfAIssue.UNREADABLE}
    if blocking:
        raise ValidationError(
            "the PDF cannot be converted: " + "; ".join(p for p in before.problems() if p.split(":")[0] in blocking),
            problems=tuple(p for p in before.problems() if p.split(":")[0] in blocking),
            hint="decrypt or repair the PDF with the software that made it",
        )
    with tempfile.TemporaryDirectory(prefix="dmp-pdfa-") as work:
        folder = Path(work)
        source, definition, target = folder / "in.pdf", folder / "pdfa.ps", folder / "out.pdf"
        source.write_bytes(data)
        definition.write_text(_definition(icc), encoding="latin-1")
        command = [
            str(program),
            "-q",
            "-dSAFER",
            f"--permit-file-read={icc}",
            "-dBATCH",
            "-dNOPAUSE",
            "-dNOOUTERSAVE",
            f"-dPDFA={part}",
            "-dPDFACompatibilityPolicy=1",
            "-sColorConversionStrategy=RGB",
            "-sDEVICE=pdfwrite",
            f"-sOutputFile={target}",
            str(definition),
            str(source),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL, cwd=folder
            )
        except subprocess.TimeoutExpired:
            raise PdfAConversionError(f"Ghostscript did not finish within {timeout:g} s") from None
        stderr = done.stderr.decode("utf-8", "replace")[-4000:]
        if done.returncode != 0 or not target.is_file():
            raise PdfAConversionError(f"Ghostscript failed (exit status {done.returncode})", stderr=stderr)
        converted = target.read_bytes()
    report = check_pdfa(converted, part=part, max_bytes=max(max_bytes, len(converted)))
    if not report.ok:
        raise PdfAConversionError(
            "Ghostscript wrote a file that is still not PDF/A: " + "; ".join(report.problems()),
            report=report,
            stderr=stderr,
        )
    return converted


# --------------------------------------------------------------------------- the builder's entry


def pdfa_body(
    data: bytes,
    *,
    part: int | None = None,
    convert: PdfAPart | None = None,
    ghostscript: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
) -> NonXmlBody:
    """A level-1 body from a PDF/A; a PDF that is not one raises :class:`PdfANotConformingError`.

    ``part`` requires a given part (1 for the CI-SIS "PDF/A-1"). With ``convert`` (1 or 2)
    the caller opts in to a conversion: a PDF that fails the check is replaced by its
    Ghostscript PDF/A-``convert``\\ b copy (the input bytes stay as they were); a PDF that
    passes is carried as it is.
    """
    report = check_pdfa(data, part=part)
    if report.ok:
        return NonXmlBody(data=data)
    if convert is None:
        raise PdfANotConformingError(
            f"the PDF is not PDF/A ({report.claim or 'no claim'}): " + "; ".join(report.problems()),
            report=report,
            hint="give a PDF/A (export it as PDF/A from the software that made it), or convert it explicitly: "
            "pdfa_body(data, convert=2) / dmp-connector cda pdfa convert",
        )
    if part is not None and part != convert:
        raise ValidationError(f"part {part} is required but convert={convert} was asked", problems=("convert",))
    return NonXmlBody(data=convert_to_pdfa(data, part=convert, ghostscript=ghostscript, timeout=timeout))
