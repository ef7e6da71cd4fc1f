"""extract_metadata(): the XDS DocumentEntry of a document, by the ANS mapping tables."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest

from dmp_connector.cda import (
    ClinicalDocument,
    InstanceId,
    Patient,
    build,
    class_code_for,
    extract_metadata,
    xds_time,
)
from dmp_connector.cda.metadata import CLASS_OF_TYPE, FORMAT_OF_TEMPLATE, PDF_FORMAT
from dmp_connector.codes import Code
from dmp_connector.errors import InvalidIdentifierError, ValidationError
from dmp_connector.ins import Identity

from .test_examples_roundtrip import WRONG_INS_KEY

MakeDocument = Callable[..., ClinicalDocument]
MASQUE_PS = Code.of("MASQUE_PS", "1.2.250.1.213.1.1.4.13", "Masqué aux professionnels de santé")


def test_metadata_of_a_pdf_document(pdf_document: ClinicalDocument) -> None:
    data = build(pdf_document)
    meta = extract_metadata(pdf_document, confidentiality=(MASQUE_PS,))
    assert meta.unique_id == pdf_document.id.root
    assert meta.class_code == Code.of("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
    assert meta.type_code == pdf_document.type_code
    assert meta.format_code == PDF_FORMAT
    assert meta.practice_setting_code.code == "AMBULATOIRE"
    assert meta.healthcare_facility_type_code.code == "SA07"
    assert [c.code for c in meta.confidentiality_codes] == ["N", "MASQUE_PS"]
    assert meta.patient_id == "297022A02077878^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert meta.source_patient_id == meta.patient_id
    assert meta.source_patient_info == ("PID-5|ADRTROIS^DOMINIQUE^^^^^L", "PID-7|19970226", "PID-8|F")
    assert meta.creation_time == datetime(2024, 3, 12, 9, 30, tzinfo=UTC)
    assert xds_time(meta.creation_time) == "20240312093000"
    assert meta.service_start_time == datetime(2024, 3, 12, 8, 45, tzinfo=UTC)
    assert meta.service_stop_time == datetime(2024, 3, 12, 9, 15, tzinfo=UTC)
    assert meta.title == "Compte rendu de consultation" and meta.language_code == "fr-FR"
    assert meta.mime_type == "text/xml"
    assert meta.hash == hashlib.sha1(data).hexdigest() and meta.size == len(data)
    assert meta.set_id == meta.unique_id and meta.version == 1 and meta.replaced_unique_id is None
    (author,) = meta.authors
    assert author.person is not None
    assert author.person.xcn() == "810001234567^MARTIN^Paul^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert author.xon() == "Cabinet du Dr Martin^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750512345"
    assert author.specialty_cne() == ("G15_10/SM26^Médecin - Qualifié en Médecine Générale (SM)^1.2.250.1.213.1.1.4.5")
    assert meta.legal_authenticator is not None and meta.legal_authenticator.family_name == "MARTIN"


def test_metadata_from_bytes_equals_metadata_from_the_model(pdf_document: ClinicalDocument) -> None:
    assert extract_metadata(build(pdf_document)) == extract_metadata(pdf_document)


def test_ids_local_patient_id_replacement_and_encounter(
    make_pdf_document: MakeDocument, qualified_patient: Identity
) -> None:
    document = make_pdf_document(
        document_id=InstanceId.of("1.2.250.1.213.1.1.9", "DOC-2"),
        set_id=InstanceId.of("1.2.250.1.213.1.1.9", "SET-1"),
        replaces=InstanceId.of("1.2.250.1.213.1.1.9", "DOC-1"),
        version=2,
        patient=Patient.from_identity(qualified_patient, other_ids=(InstanceId.of("1.2.3.4.5", "IPP-42"),)),
    )
    document = document.model_copy(
        update={"encounter": document.encounter.model_copy(update={"ids": (InstanceId.of("1.2.3.4.6", "V-7"),)})}
    )
    meta = extract_metadata(document)
    assert meta.unique_id == "1.2.250.1.213.1.1.9^DOC-2"
    assert meta.set_id == "1.2.250.1.213.1.1.9^SET-1" and meta.version == 2
    assert meta.replaced_unique_id == "1.2.250.1.213.1.1.9^DOC-1"
    assert meta.source_patient_id == "IPP-42^^^&1.2.3.4.5&ISO^PI"
    assert meta.reference_id_list == ("V-7^^^&1.2.3.4.6&ISO^urn:ihe:iti:xds:2013:encounterId",)


def test_what_is_missing_is_reported_at_once(make_pdf_document: MakeDocument, qualified_patient: Identity) -> None:
    without_ins = Patient.from_identity(
        Identity(traits=qualified_patient.traits), require_ins=False, other_ids=(InstanceId.of("1.2.3.4.5", "I"),)
    )
    document = make_pdf_document(patient=without_ins)
    with pytest.raises(ValidationError) as caught:
        extract_metadata(document)
    assert caught.value.problems == ("patient_id: the document carries no INS of a qualified identity",)
    unknown = Code.of("99999-9", "2.16.840.1.113883.6.1", "Inconnu")
    with pytest.raises(ValidationError, match="no class code"):
        class_code_for(unknown)


def test_tables_hold_the_reference_examples() -> None:
    expected = {"11490-0": "10", "11502-2": "10", "18748-4": "31", "60591-5": "11", "34133-9": "11"}
    expected |= {"57833-6": "42", "60593-1": "43", "11369-6": "52", "SYNTH": "11", "REMB": "60", "BIL_AUTO": "10"}
    expected |= {"CERT_DECL": "52"}
    assert {code: CLASS_OF_TYPE[code] for code in expected} == expected
    assert FORMAT_OF_TEMPLATE["1.2.250.1.213.1.1.1.13"].code == "urn:asip:ci-sis:vsm:2012"
    assert FORMAT_OF_TEMPLATE["1.2.250.1.213.1.1.1.29"].code == "urn:asip:ci-sis:ldl-ses:2017"
    assert FORMAT_OF_TEMPLATE["1.2.250.1.213.1.1.1.55"].code == "urn:ihe:lab:xd-lab:2008"


def test_every_example_gives_its_metadata(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    formats = set()
    for name, data in example_files.items():
        if name in WRONG_INS_KEY:
            with pytest.raises(InvalidIdentifierError):
                extract_metadata(parsed_examples[name], data=data)
            continue
        meta = extract_metadata(parsed_examples[name], data=data)
        assert meta.size == len(data) and meta.type_code == parsed_examples[name].type_code
        formats.add(meta.format_code.code)
        if "Auto" in name:
            assert meta.mime_type == "application/xslt+xml"
    assert {"urn:ihe:iti:xds-sd:pdf:2008", "urn:asip:ci-sis:vsm:2012", "urn:asip:ci-sis:ldl-ses:2017"} <= formats
