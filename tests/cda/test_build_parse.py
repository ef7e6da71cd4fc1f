"""build() writes schema-valid canonical XML; parse() reads it back to the same model."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from dmp_connector.cda import (
    Address,
    AssociatedEntity,
    ClinicalDocument,
    InformationRecipient,
    InstanceId,
    Narrative,
    NonXmlBody,
    Participant,
    Patient,
    Period,
    PersonName,
    RawElement,
    RawEntry,
    Section,
    StructuredBody,
    Telecom,
    build,
    parse,
    parse_file,
    parse_ts,
    problems,
    to_element,
    write,
)
from dmp_connector.cda.build import format_ts
from dmp_connector.codes import Code
from dmp_connector.errors import MalformedResponseError, UnsafeXmlError, ValidationError
from dmp_connector.ins import Identity
from dmp_connector.xml import XmlLimits, parse_xml

from .conftest import PARIS, make_pdf

MakeDocument = Callable[..., ClinicalDocument]
SchemaCheck = Callable[[bytes], None]
H = "{urn:hl7-org:v3}"


def _xml(data: bytes) -> etree._Element:
    return parse_xml(data, limits=XmlLimits(max_bytes=200 * 1024 * 1024))


def test_a_pdf_document_is_schema_valid_and_round_trips(
    pdf_document: ClinicalDocument, assert_schema_valid: SchemaCheck
) -> None:
    data = build(pdf_document)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert_schema_valid(data)
    assert parse(data) == pdf_document
    assert build(pdf_document) == data


def test_the_header_is_written_as_the_kit_writes_it(pdf_document: ClinicalDocument) -> None:
    root = _xml(build(pdf_document))
    names = [etree.QName(c).localname for c in root]
    assert names == [
        "realmCode", "typeId", "templateId", "templateId", "templateId", "id", "code", "title", "effectiveTime",
        "confidentialityCode", "languageCode", "setId", "versionNumber", "recordTarget", "author", "custodian",
        "legalAuthenticator", "documentationOf", "componentOf", "component",
    ]  # fmt: skip
    assert root.find(f"{H}realmCode").get("code") == "FR"  # type: ignore[union-attr]
    assert root.find(f"{H}effectiveTime").get("value") == "20240312103000+0100"  # type: ignore[union-attr]
    patient_role = root.find(f"{H}recordTarget/{H}patientRole")
    assert patient_role is not None
    ins = patient_role.find(f"{H}id")
    assert ins is not None and (ins.get("root"), ins.get("extension")) == ("1.2.250.1.213.1.4.10", "297022A02077878")
    name = patient_role.find(f"{H}patient/{H}name")
    assert name is not None
    assert [(etree.QName(n).localname, n.get("qualifier"), n.text) for n in name] == [
        ("family", "BR", "ADRTROIS"),
        ("given", None, "DOMINIQUE MARIE"),
        ("given", "BR", "DOMINIQUE"),
        ("given", "CL", "DOMINIQUE"),
    ]
    patient = patient_role.find(f"{H}patient")
    assert patient is not None
    assert patient.find(f"{H}administrativeGenderCode").get("code") == "F"  # type: ignore[union-attr]
    assert patient.find(f"{H}birthTime").get("value") == "19970226"  # type: ignore[union-attr]
    assert patient.findtext(f"{H}birthplace/{H}place/{H}addr/{H}county") == "2A020"
    legal = root.find(f"{H}legalAuthenticator/{H}signatureCode")
    assert legal is not None and legal.get("code") == "S"
    event = root.find(f"{H}documentationOf/{H}serviceEvent")
    assert event is not None
    assert event.find(f"{H}effectiveTime/{H}low").get("value") == "20240312094500+0100"  # type: ignore[union-attr]
    setting = event.find(f"{H}performer/{H}assignedEntity/{H}representedOrganization/{H}standardIndustryClassCode")
    assert setting is not None and setting.get("code") == "AMBULATOIRE"
    text = root.find(f"{H}component/{H}nonXMLBody/{H}text")
    assert text is not None and text.get("mediaType") == "application/pdf" and text.get("representation") == "B64"
    assert text.text is not None and text.text.startswith("JVBERi0")


def test_write_streams_the_same_bytes(pdf_document: ClinicalDocument, tmp_path: Path) -> None:
    target = tmp_path / "doc.xml"
    with target.open("wb") as fh:
        write(pdf_document, fh)
    assert target.read_bytes() == build(pdf_document)
    assert parse_file(target) == pdf_document
    stream = io.BytesIO()
    write(pdf_document, stream)
    assert stream.getvalue() == target.read_bytes()


def test_to_element_holds_the_base64(pdf_document: ClinicalDocument) -> None:
    root = to_element(pdf_document)
    text = root.find(f"{H}component/{H}nonXMLBody/{H}text")
    assert text is not None and text.text is not None and text.text.startswith("JVBERi0")


def test_a_full_header_round_trips(
    make_pdf_document: MakeDocument,
    second_patient: Identity,
    author: object,
    other_author: object,
    assert_schema_valid: SchemaCheck,
) -> None:
    referrer = Participant(
        type_code="REF",
        time=Period(high=date(2024, 3, 1)),
        entity=AssociatedEntity(
            class_code="PROV",
            ids=(InstanceId.of("1.2.250.1.71.4.2.1", "810002422979"),),
            person=PersonName(family="CHARLES", given="Pascal", suffix="DR"),
            telecoms=(Telecom(value="tel:0147150000", use="WP"),),
        ),
    )
    recipient = InformationRecipient(
        ids=(InstanceId.of("1.2.250.1.71.4.2.1", "810002422979"),),
        person=PersonName(family="CHARLES", given="Pascal"),
        telecoms=(Telecom(value="mailto:pascal.charles@medecin.mssante.fr"),),
    )
    informant = RawElement(
        xml='<informant xmlns="urn:hl7-org:v3"><relatedEntity classCode="ECON"><relatedPerson><name>'
        "<family>DUPONT</family></name></relatedPerson></relatedEntity></informant>"
    )
    patient = Patient.from_identity(
        second_patient,
        other_ids=(InstanceId.of("1.2.3.4.567.8.9.10", "IPP-42"),),
        addresses=(Address.of(house_number="28", street_name="Avenue de Breteuil", postal_code="75007", city="PARIS"),),
        telecoms=(Telecom(value="tel:0144534551", use="H"),),
        birth_place_name="ESPAGNE",
    )
    document = make_pdf_document(
        patient=patient,
        authors=(author, other_author),
        participants=(referrer,),
        information_recipients=(recipient,),
        other_header=(informant,),
        replaces=InstanceId.of("1.2.250.1.213.1.1.9", "DOC-1"),
        set_id=InstanceId.of("1.2.250.1.213.1.1.9", "SET-1"),
        version=2,
        effective_time=datetime(2024, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=-3))),
    )
    data = build(document)
    assert_schema_valid(data)
    again = parse(data)
    assert again == document
    root = _xml(data)
    names = [etree.QName(c).localname for c in root]
    assert names.index("informant") < names.index("custodian") < names.index("informationRecipient")
    assert names.index("legalAuthenticator") < names.index("participant") < names.index("documentationOf")
    assert names.index("relatedDocument") == names.index("componentOf") - 1
    assert root.find(f"{H}effectiveTime").get("value") == "20240701080000-0300"  # type: ignore[union-attr]
    assert again.patient.identity.traits.used_name == "MARTIN"


_ENTRY = (
    '<entry xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<observation classCode="OBS" moodCode="EVN"><templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.13"/>'
    '<code code="8480-6" codeSystem="2.16.840.1.113883.6.1" displayName="Pression artérielle systolique"/>'
    '<statusCode code="completed"/><effectiveTime value="20240312"/>'
    '<value xsi:type="PQ" value="120" unit="mm[Hg]"/></observation></entry>'
)


def test_a_structured_document_round_trips(make_pdf_document: MakeDocument, assert_schema_valid: SchemaCheck) -> None:
    vitals = Section(
        title="Signes vitaux",
        code=Code.of("8716-3", "2.16.840.1.113883.6.1", "Signes vitaux"),
        template_ids=("1.3.6.1.4.1.19376.1.5.3.1.3.25",),
        text=Narrative.from_markup("<table><tbody><tr><td>PAS</td><td>120 mm[Hg]</td></tr></tbody></table>"),
        entries=(RawEntry(xml=_ENTRY),),
        xml_id="vitals",
    )
    history = Section(
        title="Antécédents",
        text=Narrative.from_paragraphs("Asthme", "Appendicectomie (1990)"),
        subsections=(Section(title="Familiaux", text=Narrative.from_text("Aucun")),),
    )
    document = make_pdf_document(
        body=StructuredBody(sections=(vitals, history)),
        template_ids=("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"),
    )
    data = build(document)
    assert_schema_valid(data)
    assert parse(data) == document


def test_build_refuses_what_a_received_document_may_hold(
    make_pdf_document: MakeDocument, pdf_document: ClinicalDocument
) -> None:
    unknown_type = make_pdf_document(type_code=Code.of("00000-0", "2.16.840.1.113883.6.1", "Inconnu"))
    with pytest.raises(ValidationError) as caught:
        build(unknown_type)
    assert caught.value.problems == ("type_code: 00000-0 is not a document type of JDV_J07",)
    wrong_setting = make_pdf_document(practice_setting=Code.of("NOPE", "1.2.250.1.213.1.1.4.9", "?"))
    assert problems(wrong_setting) == ["service_events[0].performer: practice setting NOPE is not in JDV_J04"]
    extra_template = make_pdf_document(template_ids=(*pdf_document.template_ids, "1.2.250.1.213.1.1.1.13"))
    assert problems(extra_template) == [
        "template_ids: a PDF document carries exactly the HL7 France, CI-SIS and XDS-SD templateIds"
    ]
    assert problems(pdf_document) == []


def test_a_large_pdf_is_built_and_parsed_without_huge_tree(make_pdf_document: MakeDocument) -> None:
    pdf = make_pdf(padding=8 * 1024 * 1024)  # base64 > 10 MB: one text node libxml2 refuses without huge_tree
    document = make_pdf_document(body=NonXmlBody(data=pdf))
    data = build(document)
    with pytest.raises(UnsafeXmlError):
        parse_xml(data)
    again = parse(data)
    assert isinstance(again.body, NonXmlBody) and again.body.data == pdf
    assert again == document


def test_parse_refuses_hostile_or_foreign_xml() -> None:
    with pytest.raises(UnsafeXmlError):
        parse(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>')
    with pytest.raises(MalformedResponseError):
        parse(b"<ClinicalDocument")
    with pytest.raises(ValidationError, match="not a CDA document"):
        parse(b"<html/>")
    with pytest.raises(ValidationError, match="no ClinicalDocument/id"):
        parse(b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>')
    with pytest.raises(TypeError):
        parse("<ClinicalDocument/>")  # type: ignore[arg-type]
    with pytest.raises(UnsafeXmlError):
        parse(b"<a/>" * 10, limits=XmlLimits(max_bytes=10))


def test_parse_refuses_a_body_it_cannot_hold(pdf_document: ClinicalDocument) -> None:
    data = build(pdf_document)
    text_body = data.replace(b'mediaType="application/pdf"', b'mediaType="text/plain"')
    with pytest.raises(ValidationError, match="only base64 PDF bodies"):
        parse(text_body)
    start = data.index(b'representation="B64">') + len(b'representation="B64">')
    not_pdf = data[:start] + b"PGh0bWw+" + data[data.index(b"</text>") :]
    with pytest.raises(ValidationError, match="not a PDF"):
        parse(not_pdf)


def test_times() -> None:
    assert format_ts(datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=PARIS)) == "20240102030405.12+0100"
    assert format_ts(date(2024, 1, 2)) == "20240102"
    assert parse_ts("20240102") == date(2024, 1, 2)
    assert parse_ts("202401020304+0530") == datetime(2024, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert parse_ts("20240102030405") == datetime(2024, 1, 2, 3, 4, 5)
    assert parse_ts("20240106113623+100", lenient=True) == datetime(
        2024, 1, 6, 11, 36, 23, tzinfo=timezone(timedelta(hours=1))
    )
    with pytest.raises(ValidationError, match="±HHMM"):
        parse_ts("20240106113623+100")
    with pytest.raises(ValidationError, match="YYYYMMDD"):
        parse_ts("2024")
    with pytest.raises(ValidationError, match="calendar"):
        parse_ts("20240230")
