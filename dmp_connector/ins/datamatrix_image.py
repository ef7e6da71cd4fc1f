"""INS Datamatrix symbols: PNG and a PDF page written in pure Python; reading and PDF stamping with the extra.

* :func:`symbol` — the ECC200 symbol for a payload, its header C40-encoded (the ANS validator
  refuses an ASCII-encoded header), other characters ASCII;
* :func:`to_png` / :func:`to_pdf_page` — the symbol as a PNG image or a one-page PDF (vector
  squares), no library needed;
* :func:`read_image` — the payload in a PNG/JPEG image (zxing-cpp and Pillow, extra ``datamatrix``);
* :func:`stamp_pdf` — the symbol drawn on a PDF's first page, e.g. a printed CDA's PDF body (pypdf,
  extra ``datamatrix``).

The size rules of the ANS specification (module size, quiet zone, the "INS" cartouche) were
not read: the defaults (0.5 mm modules, 2-module quiet zone) are settings of each function.
"""

from __future__ import annotations

import importlib
import io
import struct
import zlib
from pathlib import Path
from typing import Any

from dmp_connector.errors import ConfigurationError

from . import _ecc200
from .datamatrix import DEFAULT_FORMAT, DatamatrixError, DatamatrixFormat

__all__ = ["read_image", "stamp_pdf", "symbol", "to_pdf_page", "to_png"]

_MM = 72 / 25.4


def symbol(payload: str, *, fmt: DatamatrixFormat = DEFAULT_FORMAT) -> _ecc200.Symbol:
    """The ECC200 symbol of ``payload`` with its ``fmt.header_length``-character header in C40."""
    if not payload.startswith(fmt.header):
        raise DatamatrixError("this is not an INS Datamatrix payload (use encode_payload)")
    try:
        return _ecc200.encode(payload, c40_length=fmt.header_length)
    except ValueError as exc:
        raise DatamatrixError(f"the payload cannot be encoded: {exc}") from None


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"reading or stamping INS Datamatrix images needs {module}", hint="pip install 'dmp-connector[datamatrix]'"
        ) from exc


def to_png(payload: str, *, scale: int = 4, quiet_zone: int = 2, fmt: DatamatrixFormat = DEFAULT_FORMAT) -> bytes:
    """A black-on-white PNG (1 bit per pixel) of the symbol, ``scale`` pixels a module."""
    if not 1 <= scale <= 64 or not 0 <= quiet_zone <= 16:
        raise ValueError("scale is 1–64 pixels and quiet_zone 0–16 modules")
    modules = symbol(payload, fmt=fmt).modules
    side = (len(modules) + 2 * quiet_zone) * scale
    blank = [False] * quiet_zone
    raw = bytearray()
    empty_row = _pack([False] * side)
    for _ in range(quiet_zone * scale):
        raw += b"\x00" + empty_row
    for line in modules:
        pixels = [dark for dark in blank + list(line) + blank for _ in range(scale)]
        packed = b"\x00" + _pack(pixels)
        for _ in range(scale):
            raw += packed
    for _ in range(quiet_zone * scale):
        raw += b"\x00" + empty_row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


def _pack(pixels: list[bool]) -> bytes:
    """One PNG row at 1 bit per pixel, grey scale: 1 is white, so a dark module is a 0 bit."""
    out = bytearray()
    for start in range(0, len(pixels), 8):
        byte = 0
        chunk = pixels[start : start + 8]
        for i in range(8):
            white = i >= len(chunk) or not chunk[i]
            byte |= int(white) << (7 - i)
        out.append(byte)
    return bytes(out)


def _drawing(payload: str, x_mm: float, y_mm: float, module_mm: float, fmt: DatamatrixFormat) -> bytes:
    """PDF content-stream operators drawing the symbol, lower-left corner at (x_mm, y_mm)."""
    modules = symbol(payload, fmt=fmt).modules
    size = len(modules)
    step = module_mm * _MM
    ops = ["q", "0 g"]
    for row, line in enumerate(modules):
        y = y_mm * _MM + (size - 1 - row) * step
        col = 0
        while col < size:
            if not line[col]:
                col += 1
                continue
            start = col
            while col < size and line[col]:
                col += 1
            ops.append(f"{x_mm * _MM + start * step:.3f} {y:.3f} {(col - start) * step:.3f} {step:.3f} re")
    ops += ["f", "Q"]
    return "\n".join(ops).encode("ascii")


def to_pdf_page(
    payload: str,
    *,
    module_mm: float = 0.5,
    margin_mm: float = 10.0,
    page_mm: tuple[float, float] = (210.0, 297.0),
    fmt: DatamatrixFormat = DEFAULT_FORMAT,
) -> bytes:
    """A one-page PDF (A4 by default) with the symbol in its top-left corner, drawn as vector squares."""
    if not 0.1 <= module_mm <= 5:
        raise ValueError("module_mm is 0.1–5 mm")
    size = symbol(payload, fmt=fmt).size
    width, height = page_mm
    y = height - margin_mm - size * module_mm
    stream = _drawing(payload, margin_mm, y, module_mm, fmt)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width * _MM:.2f} {height * _MM:.2f}] /Contents 4 0 R"
        " /Resources << >> >>".encode("ascii"),
        b"<< /Length " + str(len(stream)).encode("ascii") + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode("ascii") + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii"))
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode("ascii"))
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode("ascii"))
    return out.getvalue()


def stamp_pdf(
    pdf: bytes,
    payload: str,
    *,
    x_mm: float = 10.0,
    y_mm: float = 10.0,
    module_mm: float = 0.5,
    fmt: DatamatrixFormat = DEFAULT_FORMAT,
) -> bytes:
    """``pdf`` with the symbol drawn on its first page, lower-left corner at (x_mm, y_mm) from the page's
    lower-left corner; the other pages and the page's own content are left as they are (pypdf)."""
    pypdf = _require("pypdf")
    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        writer = pypdf.PdfWriter(clone_from=reader)
    except Exception:  # pypdf's own errors: the PDF is unreadable; nothing of it in the message
        raise DatamatrixError("the PDF to stamp cannot be read") from None
    if not writer.pages:
        raise DatamatrixError("the PDF to stamp has no page")
    stamp = pypdf.PdfReader(io.BytesIO(to_pdf_page(payload, module_mm=module_mm, fmt=fmt))).pages[0]
    page = writer.pages[0]
    box = page.mediabox
    stamp.mediabox = box
    # Redraw the stamp page's content at the requested place, over the first page.
    ops = _drawing(payload, x_mm + float(box.left) / _MM, y_mm + float(box.bottom) / _MM, module_mm, fmt)
    stream = pypdf.generic.DecodedStreamObject()
    stream.set_data(ops)
    stamp[pypdf.generic.NameObject("/Contents")] = stream
    page.merge_page(stamp)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def read_image(image: bytes | str | Path) -> str:
    """The text of the Data Matrix in an image (PNG, JPEG …; bytes or a path), GS kept as 0x1D.

    Decode it with :func:`~dmp_connector.ins.datamatrix.decode_payload`. No symbol found is a
    :class:`DatamatrixError`. Needs zxing-cpp and Pillow (extra ``datamatrix``).
    """
    zxingcpp = _require("zxingcpp")
    pil_image = _require("PIL.Image")
    data = Path(image).read_bytes() if isinstance(image, str | Path) else image
    try:
        picture = pil_image.open(io.BytesIO(data))
        picture.load()
    except Exception:  # Pillow's errors (unknown format, truncated file)
        raise DatamatrixError("the image cannot be read (PNG or JPEG expected)") from None
    found = zxingcpp.read_barcode(picture.convert("L"), formats=zxingcpp.BarcodeFormat.DataMatrix)
    if found is None or not found.valid:
        raise DatamatrixError("no Data Matrix found in the image")
    raw: bytes = bytes(found.bytes)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise DatamatrixError("the Data Matrix does not hold ASCII text") from None
