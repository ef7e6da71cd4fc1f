"""Fixtures shared by the cda tests: the ANS examples (read and parsed once), the CDA schema
(compiled once), a qualified patient, settings with an organisation and a professional, a
small real PDF and a PDF-body document built from them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from dmp_connector.cda import (
    Address,
    AssignedEntity,
    Author,
    ClinicalDocument,
    InstanceId,
    NonXmlBody,
    PersonName,
    parse,
)
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import (
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid

KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025"
EXAMPLES = KIT / "ExemplesCDA"
XSD = KIT / "infrastructure" / "cda" / "CDA_extended.xsd"
PARIS = ZoneInfo("Europe/Paris")

CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
CABINET = Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")


def make_pdf(text: str = "Compte rendu de consultation", *, padding: int = 0) -> bytes:
    """A small, well-formed one-page PDF; ``padding`` bytes of comment make it as large as wanted."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    if padding:
        line = b"%" + b"x" * 78 + b"\n"
        out += line * (padding // len(line) + 1)
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(scope="session")
def example_files() -> Mapping[str, bytes]:
    """The 107 ANS example documents of the 2025 kit by file name, read once."""
    if not EXAMPLES.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    return {path.name: path.read_bytes() for path in sorted(EXAMPLES.glob("*.xml"))}


@pytest.fixture(scope="session")
def parsed_examples(example_files: Mapping[str, bytes]) -> Mapping[str, ClinicalDocument]:
    """Every ANS example parsed once."""
    return {name: parse(data) for name, data in example_files.items()}


@pytest.fixture(scope="session")
def cda_schema() -> etree.XMLSchema:
    """CDA_extended.xsd, compiled once per session."""
    if not XSD.is_file():
        pytest.skip(f"the CDA schema is not at {XSD}")
    return etree.XMLSchema(etree.parse(str(XSD)))  # noqa: TID251 - trusted local schema


@pytest.fixture(scope="session")
def assert_schema_valid(cda_schema: etree.XMLSchema) -> Callable[[bytes], None]:
    """Check built bytes against the CDA schema, with the first error in the failure message."""

    def check(data: bytes) -> None:
        tree = etree.fromstring(data)  # noqa: TID251 - our own output
        assert cda_schema.validate(tree), "; ".join(str(cda_schema.error_log).splitlines()[:3])

    return check


@pytest.fixture(scope="session")
def qualified_patient() -> Identity:
    """A qualified identity with an INS (test OID) and all five INS traits."""
    traits = IdentityTraits.build(
        birth_name="Adrtrois",
        birth_first_names="Dominique Marie",
        sex="F",
        birth_date="26/02/1997",
        birth_place="2A020",
        used_first_name="Dominique",
    )
    ins = INS.parse("2 97 02 2A 020 778 78", oid=InsOid.NIR_TEST)
    return Identity(traits=traits, ins=ins, status=IdentityStatus.QUAL)


@pytest.fixture(scope="session")
def second_patient() -> Identity:
    """Another qualified identity: a man born abroad, two first names, a used name."""
    traits = IdentityTraits.build(
        birth_name="Dupont-Martin",
        birth_first_names="Jean Pierre",
        sex="M",
        birth_date="1950-07-14",
        birth_place="99134",
        used_name="Martin",
    )
    ins = INS.from_parts("1500799134012", None, InsOid.NIR_TEST)
    return Identity(traits=traits, ins=ins, status=IdentityStatus.QUAL)


@pytest.fixture(scope="session")
def cda_settings() -> Settings:
    """Settings with an organisation (FINESS, cabinet individuel) and a general practitioner (RPPS)."""
    return Settings(
        software=SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor"),
        organisation=Organisation(
            id="750512345", id_kind=StructureIdKind.FINESS, name="Cabinet du Dr Martin", activity_sector=CABINET
        ),
        professional=Professional(
            id="10001234567",
            family_name="MARTIN",
            given_name="Paul",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
    )


@pytest.fixture(scope="session")
def effective_time() -> datetime:
    """The creation time of the documents built in tests."""
    return datetime(2024, 3, 12, 10, 30, tzinfo=PARIS)


@pytest.fixture(scope="session")
def author(cda_settings: Settings, effective_time: datetime) -> Author:
    """The configured professional as author."""
    return Author.from_settings(cda_settings, time=effective_time)


@pytest.fixture(scope="session")
def other_author(effective_time: datetime) -> Author:
    """A second author: a radiologist with an address, without organisation settings."""
    entity = AssignedEntity(
        id=InstanceId.of("1.2.250.1.71.4.2.1", "810002422979"),
        code=Code.of("G15_10/SM44", "1.2.250.1.213.1.1.4.5", "Médecin - Radio-diagnostic et imagerie médicale (SM)"),
        person=PersonName(family="CHARLES", given="Pascal", suffix="DR"),
        addresses=(Address.of(house_number="8", street_name="Rue X", postal_code="92100", city="BOULOGNE"),),
    )
    return Author(time=effective_time, entity=entity)


@pytest.fixture(scope="session")
def pdf_bytes() -> bytes:
    """A small valid PDF."""
    return make_pdf()


@pytest.fixture(scope="session")
def make_pdf_document(
    cda_settings: Settings, qualified_patient: Identity, pdf_bytes: bytes, effective_time: datetime
) -> Callable[..., ClinicalDocument]:
    """A factory of PDF-body documents from the settings; keyword arguments override the defaults."""

    def make(**overrides: Any) -> ClinicalDocument:
        args: dict[str, Any] = {
            "patient": qualified_patient,
            "type_code": CONSULTATION,
            "title": "Compte rendu de consultation",
            "body": NonXmlBody(data=pdf_bytes),
            "effective_time": effective_time,
            "service_start": datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
            "service_end": datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
            "practice_setting": AMBULATOIRE,
        }
        args.update(overrides)
        return ClinicalDocument.from_settings(cda_settings, **args)

    return make


@pytest.fixture(scope="session")
def pdf_document(make_pdf_document: Callable[..., ClinicalDocument]) -> ClinicalDocument:
    """A PDF-body consultation report for the qualified patient."""
    return make_pdf_document()
