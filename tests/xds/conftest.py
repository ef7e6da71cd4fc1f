"""Shared fixtures for the XDS tests: the ebRS/IHE schemas (compiled once), samples, a model deposit."""

from __future__ import annotations

import copy
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.soap.namespaces import XDSB, XOP
from dmp_connector.xds import (
    Author,
    Cx,
    DocumentEntry,
    SubmissionRequest,
    SubmissionSet,
    Xcn,
    XdsTime,
    Xon,
    coded_value,
)

SHARED_XDS = Path(__file__).resolve().parents[3] / "shared" / "xds"
SCHEMAS = SHARED_XDS / "schema"
SAMPLES = SHARED_XDS / "samples"
DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Schemas:
    lcm: etree.XMLSchema
    query: etree.XMLSchema
    rs: etree.XMLSchema
    xdsb: etree.XMLSchema
    """IHEXDSB.xsd, loaded from a copy whose rim.xsd no longer imports xcf.xsd (see ``schemas``)."""

    def assert_valid(self, schema: etree.XMLSchema, element: etree._Element) -> None:
        if not schema.validate(element):
            raise AssertionError(f"schema validation failed:\n{schema.error_log}")

    def assert_xdsb_valid(self, element: etree._Element) -> None:
        """Validate an xdsb message as its XOP-decoded infoset: each xop:Include becomes base64 text."""
        decoded = copy.deepcopy(element)
        for include in decoded.iter(f"{{{XOP}}}Include"):
            parent = include.getparent()
            assert parent is not None and parent.tag == f"{{{XDSB}}}Document"
            parent.remove(include)
            parent.text = "JVBERi0xLjQK"
        self.assert_valid(self.xdsb, decoded)


def _load(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))  # noqa: TID251 - trusted schema files from ../shared


@pytest.fixture(scope="session")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Schemas:
    """The ebRS 3.0 schemas as shipped, and IHEXDSB.xsd from a patched copy (:func:`load_schemas`)."""
    return load_schemas(tmp_path_factory.mktemp("xds-schema"))


def load_schemas(copy_dir: Path) -> Schemas:
    """The ebRS 3.0 schemas as shipped, and IHEXDSB.xsd from a patched copy in ``copy_dir``.

    libxml2 cannot load IHEXDSB.xsd because rim.xsd imports xcf.xsd, a second schema document
    for the xds-b namespace (SOURCE.md). In a temporary copy, rim.xsd drops that import and the
    optional ``xdsext:Document`` child of ExtrinsicObject (XCF only, never used here), so that
    the xdsb wrappers (ITI-41, ITI-43) can be validated whole.
    """
    shutil.copytree(SCHEMAS, copy_dir, dirs_exist_ok=True)
    rim = copy_dir / "ebRS30" / "rim.xsd"
    text = rim.read_text(encoding="utf-8")
    patched = text.replace('<import namespace="urn:ihe:iti:xds-b:2007" schemaLocation="../IHE/xcf.xsd"/>', "")
    patched = re.sub(r'<element maxOccurs="1" minOccurs="0" ref="xdsext:Document"[^>]*/>', "", patched)
    assert patched.count("xcf.xsd") == 0 and patched != text
    rim.write_text(patched, encoding="utf-8")
    return Schemas(
        lcm=_load(SCHEMAS / "ebRS30" / "lcm.xsd"),
        query=_load(SCHEMAS / "ebRS30" / "query.xsd"),
        rs=_load(SCHEMAS / "ebRS30" / "rs.xsd"),
        xdsb=_load(copy_dir / "IHE" / "IHEXDSB.xsd"),
    )


PATIENT = Cx.ins("279035121518989", "1.2.250.1.213.1.4.10")
"""An INS of test (OID .10), as the DMP test platforms use."""
IPP = Cx(id="IPP-00042", assigning_authority="1.2.250.1.999.1.1", id_type="PI")
DOCTOR = Xcn.national_professional("810001234567", "DUPONT", "Jean")
CABINET = Xon.national_structure("Cabinet Test", "1123456789")
SPECIALTY = coded_value(Code.of("G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecine générale"))
AUTHOR = Author(person=DOCTOR, institutions=(CABINET,), roles=("Médecin traitant",), specialties=(SPECIALTY,))
WHEN = XdsTime.parse("20250102030405")

LOINC = "2.16.840.1.113883.6.1"
CLASS_CODE = Code.of("11", "1.2.250.1.213.1.1.4.1", "Compte rendu")
TYPE_CODE = Code.of("11488-4", LOINC, "Compte rendu de consultation")
FORMAT_CODE = Code.of("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "Document à corps non structuré en PDF")
FACILITY = Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
PRACTICE = Code.of("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement de santé")
NORMAL = Code.of("N", "2.16.840.1.113883.5.25", "Normal")
CONTENT_TYPE = Code.of("07", "1.2.250.1.213.1.1.4.12", "Consultation")


def make_document(**changes: object) -> DocumentEntry:
    """A document entry with every attribute a DMP deposit needs."""
    data: dict[str, object] = {
        "entry_uuid": "Document01",
        "unique_id": "1.2.250.1.999.7.2",
        "patient_id": PATIENT,
        "source_patient_id": IPP,
        "source_patient_info": ("PID-5|DUPONT^Marie^^^^^L", "PID-7|19790301", "PID-8|F"),
        "mime_type": "application/pdf",
        "title": "Compte rendu de consultation",
        "class_code": CLASS_CODE,
        "type_code": TYPE_CODE,
        "format_code": FORMAT_CODE,
        "healthcare_facility_type_code": FACILITY,
        "practice_setting_code": PRACTICE,
        "confidentiality_codes": (NORMAL,),
        "authors": (AUTHOR,),
        "legal_authenticator": DOCTOR,
        "creation_time": WHEN,
        "service_start_time": XdsTime.parse("202501020300"),
        "service_stop_time": XdsTime.parse("202501020330"),
        "language_code": "fr-FR",
        "hash": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "size": 1234,
    }
    data.update(changes)
    return DocumentEntry.model_validate(data)


def make_submission_set(**changes: object) -> SubmissionSet:
    data: dict[str, object] = {
        "unique_id": "1.2.250.1.999.7.1",
        "source_id": "1.2.250.1.999",
        "patient_id": PATIENT,
        "submission_time": WHEN,
        "content_type_code": CONTENT_TYPE,
        "authors": (AUTHOR,),
        "title": "Dépôt",
    }
    data.update(changes)
    return SubmissionSet.model_validate(data)


def make_deposit(**contents: str) -> SubmissionRequest:
    return SubmissionRequest.build(
        make_submission_set(), [make_document()], contents=contents or {"Document01": "doc1@test"}
    )
