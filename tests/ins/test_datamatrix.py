"""INS Datamatrix: payload encode/decode with its checks, the symbol (C40 header) read back by zxing-cpp, PDF."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_connector.errors import IdentityNotQualifiedError, PatientMismatchError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid, Sex
from dmp_connector.ins.datamatrix import GS, DatamatrixError, DatamatrixFormat, decode_payload, encode_payload
from dmp_connector.ins.datamatrix_image import read_image, stamp_pdf, symbol, to_pdf_page, to_png
from tests.ins.identities import qualified

HEADER = "IS01" + "0" * 22


def dark(status: IdentityStatus = IdentityStatus.QUAL) -> Identity:
    traits = IdentityTraits.build(
        birth_name="Dark",
        birth_first_names="Jeanne Marie Cécile",
        sex="F",
        birth_date="1960-05-30",
        birth_place="88154",
    )
    ins = INS.parse("260058815400233", oid=InsOid.NIR_TEST) if status.ins_retrieved else None
    return Identity(traits=traits, ins=ins, status=status)


# The test OID has 20 characters, S2's maximum: no GS after it.
PAYLOAD = HEADER + "S1260058815400233S21.2.250.1.213.1.4.10S3JEANNE MARIE CECILE" + GS + "S4DARK" + GS
PAYLOAD += "S5FS630-05-1960S788154"


def test_payload_layout() -> None:
    assert encode_payload(dark()) == PAYLOAD


def test_payload_reads_back_to_the_traits_and_ins() -> None:
    scanned = decode_payload(PAYLOAD)
    assert scanned.ins == dark().ins
    assert scanned.traits == dark().traits
    assert scanned.matches(dark()).matches
    identity = scanned.to_identity()
    assert identity.status is IdentityStatus.PROV and identity.ins == dark().ins
    # zxing-cpp's text form writes GS as "<GS>".
    assert decode_payload(PAYLOAD.replace(GS, "<GS>")) == scanned


@pytest.mark.parametrize("status", [IdentityStatus.PROV, IdentityStatus.RECUP, IdentityStatus.VALI])
def test_only_a_qualified_identity_is_printed(status: IdentityStatus) -> None:
    with pytest.raises(IdentityNotQualifiedError):
        encode_payload(dark(status))


def test_encode_refusals() -> None:
    no_place = dark().updated(traits=dark().traits.model_copy(update={"birth_place": None}))
    with pytest.raises(DatamatrixError) as caught:
        encode_payload(no_place)
    assert caught.value.field == "S7"
    with pytest.raises(DatamatrixError):
        encode_payload(dark().updated(traits=dark().traits.model_copy(update={"sex": Sex.I})))
    with pytest.raises(DatamatrixError):
        encode_payload(dark(), fmt=DatamatrixFormat(production=True))
    long_name = dark().traits.model_copy(update={"birth_name": "A" * 101})
    with pytest.raises(DatamatrixError):
        encode_payload(dark().updated(traits=long_name))


def test_a_field_at_its_maximum_has_no_separator() -> None:
    traits = dark().traits.model_copy(update={"birth_name": "A" * 100})
    payload = encode_payload(dark().updated(traits=traits))
    assert "S4" + "A" * 100 + "S5" in payload
    assert decode_payload(payload).traits.birth_name == "A" * 100


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("IS02" + PAYLOAD[4:], None),
        ("XX" + PAYLOAD[2:], None),
        (PAYLOAD.replace("S1260058815400233", "S126005881540023"), "S2"),
        (PAYLOAD.replace("S1260058815400233", "S1260058815400234"), "S1"),
        (PAYLOAD.replace("1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.2" + GS), "S2"),
        (PAYLOAD.replace("1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.2"), "S3"),
        (PAYLOAD.replace("S5F", "S5X"), "S5"),
        (PAYLOAD.replace("30-05-1960", "1960-05-30"), "S6"),
        (PAYLOAD.replace("S788154", "S78815X"), "S7"),
        (PAYLOAD + "X", None),
        (PAYLOAD[:-3], "S7"),
        (PAYLOAD.replace("DARK" + GS, "DARK"), "S4"),
        (PAYLOAD.replace("S4DARK", "S4Dark"), "S4"),
        (PAYLOAD.replace("S4DARK", "S4D4RK"), "S4"),
        (PAYLOAD.replace("S3", "S9"), "S3"),
        (PAYLOAD.replace("S4DARK", "S4" + "A" * 101), "S5"),
    ],
)
def test_hostile_payloads_are_typed_errors_without_identity(payload: str, field: str | None) -> None:
    with pytest.raises(DatamatrixError) as caught:
        decode_payload(payload)
    assert caught.value.field == field
    text = str(caught.value) + str(caught.value.hint)
    for secret in ("26005881540023", "DARK", "JEANNE", "1960", "88154"):
        assert secret not in text
    assert caught.value.__cause__ is None


def test_test_oid_refused_in_production_and_another_ins_is_not_this_patient() -> None:
    with pytest.raises(DatamatrixError):
        decode_payload(PAYLOAD, fmt=DatamatrixFormat(production=True))
    other = dark().updated(ins=INS.parse("160058815400283", oid=InsOid.NIR_TEST))
    with pytest.raises(PatientMismatchError) as caught:
        decode_payload(PAYLOAD).matches(other)
    assert "160058815400283" not in str(caught.value) and "260058815400233" not in str(caught.value)
    renamed = dark().traits.model_copy(update={"birth_name": "DURAND"})
    assert decode_payload(PAYLOAD).matches(dark().updated(traits=renamed)).traits == ("birth_name",)


@settings(max_examples=80, deadline=None)
@given(qualified(sexes=(Sex.M, Sex.F)))
def test_identity_to_payload_and_back_keeps_ins_and_traits(identity: Identity) -> None:
    scanned = decode_payload(encode_payload(identity))
    assert scanned.ins == identity.ins
    expected = identity.traits.model_copy(update={"used_name": None, "used_first_name": None})
    assert scanned.traits == expected


# --------------------------------------------------------------------------- symbol, images, PDF


def test_symbol_header_is_c40_encoded() -> None:
    built = symbol(PAYLOAD)
    assert built.data[0] == 230  # latch to C40
    assert built.data[19] == 254  # 9 triplets (header + "S") then unlatch to ASCII
    assert built.size == 40


def test_png_is_read_back_by_zxing_cpp() -> None:
    png = to_png(PAYLOAD, scale=3)
    assert png.startswith(b"\x89PNG")
    text = read_image(png)
    assert text == PAYLOAD
    assert decode_payload(text).ins == dark().ins


@settings(max_examples=15, deadline=None)
@given(qualified(sexes=(Sex.M, Sex.F)))
def test_symbols_of_any_identity_read_back(identity: Identity) -> None:
    payload = encode_payload(identity)
    assert read_image(to_png(payload, scale=2)) == payload


def test_read_image_refusals(tmp_path: Path) -> None:
    with pytest.raises(DatamatrixError):
        read_image(b"not an image")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (50, 50), 255).save(blank)
    with pytest.raises(DatamatrixError):
        read_image(blank)


def rendered_page(pdf: bytes) -> bytes:
    """The first page as a PNG, through pypdfium2 when it is there (a real PDF renderer)."""
    pdfium = pytest.importorskip("pypdfium2", reason="pypdfium2 renders the PDF to check the symbol is readable")
    document = pdfium.PdfDocument(pdf)
    image = document[0].render(scale=4).to_pil()
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_pdf_page_and_stamp_hold_a_readable_symbol() -> None:
    page = to_pdf_page(PAYLOAD)
    assert page.startswith(b"%PDF-1.4")
    pypdf = pytest.importorskip("pypdf")
    assert len(pypdf.PdfReader(io.BytesIO(page)).pages) == 1
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    stamped = stamp_pdf(out.getvalue(), PAYLOAD, x_mm=150, y_mm=250)
    assert len(pypdf.PdfReader(io.BytesIO(stamped)).pages) == 2
    assert read_image(rendered_page(stamped)) == PAYLOAD
    assert read_image(rendered_page(page)) == PAYLOAD
    with pytest.raises(DatamatrixError):
        stamp_pdf(b"%PDF-nonsense", PAYLOAD)


def test_cli_encode_then_decode_an_image(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dmp_connector.cli import main

    png = tmp_path / "ins.png"
    args = ["ins", "datamatrix", "encode", "--matricule", "260058815400233", "--oid", InsOid.NIR_TEST.value]
    args += ["--birth-name", "Dark", "--first-names", "Jeanne Marie Cécile", "--sex", "F"]
    args += ["--birth-date", "1960-05-30", "--birth-place", "88154", "--qualified", "--png", str(png)]
    encoded = CliRunner().invoke(main, ["--json", *args])
    assert encoded.exit_code == 0, encoded.output
    assert '"payload"' in encoded.output
    decoded = CliRunner().invoke(main, ["--json", "ins", "datamatrix", "decode", "--image", str(png)])
    assert decoded.exit_code == 0, decoded.output
    assert '"birth_place": "88154"' in decoded.output
    bad = tmp_path / "bad.txt"
    bad.write_text(PAYLOAD.replace("S1260058815400233", "S1260058815400234"))
    refused = CliRunner().invoke(main, ["ins", "datamatrix", "decode", str(bad)])
    assert refused.exit_code == 4
    assert "260058815400234" not in refused.output


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=320), st.integers(0, len(PAYLOAD)))
def test_any_text_is_read_or_refused_with_a_datamatrix_error(noise: str, cut: int) -> None:
    for candidate in (noise, PAYLOAD[:cut] + noise, PAYLOAD[:cut] + noise + PAYLOAD[cut:]):
        message = ""
        try:
            decode_payload(candidate)
        except DatamatrixError as exc:
            message = str(exc)
        assert "260058815400233" not in message
