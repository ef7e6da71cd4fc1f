"""The document model refuses what the CI-SIS rules forbid, with our ValidationError and its problems."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from lxml import etree
from pydantic import BaseModel, ConfigDict

from dmp_connector.cda import (
    AssignedEntity,
    Author,
    ClinicalDocument,
    InstanceId,
    Narrative,
    NonXmlBody,
    Organization,
    Patient,
    Period,
    RawElement,
    RawEntry,
    Section,
    ServiceEvent,
    StructuredBody,
    Telecom,
    build,
    new_oid,
    parse,
    register_entry_reader,
)
from dmp_connector.cda import model as model_module
from dmp_connector.cda._namespaces import HL7
from dmp_connector.codes import Code
from dmp_connector.config import Settings
from dmp_connector.errors import IdentityNotQualifiedError, ValidationError
from dmp_connector.ins import Identity, IdentityStatus

from .conftest import AMBULATOIRE, PARIS, make_pdf

MakeDocument = Callable[..., ClinicalDocument]


def test_a_document_from_settings_has_the_defaults_of_a_pdf_document(pdf_document: ClinicalDocument) -> None:
    assert [t.root for t in pdf_document.template_ids] == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.2.20",
    ]
    assert pdf_document.set_id == pdf_document.id
    assert pdf_document.id.root.startswith("2.25.") and len(pdf_document.id.root) <= 64
    assert pdf_document.confidentiality.code == "N"
    assert pdf_document.language == "fr-FR"
    author = pdf_document.authors[0].entity
    assert author.id == InstanceId.of("1.2.250.1.71.4.2.1", "810001234567")
    assert author.code == Code.of(
        "G15_10/SM26", "1.2.250.1.213.1.1.4.5", "Médecin - Qualifié en Médecine Générale (SM)"
    )
    assert author.organization is not None and author.organization.id == InstanceId.of(
        "1.2.250.1.71.4.2.2", "1750512345"
    )
    assert pdf_document.encounter.facility is not None
    assert pdf_document.encounter.facility.code is not None and pdf_document.encounter.facility.code.code == "SA07"


def test_missing_author_is_refused(make_pdf_document: MakeDocument) -> None:
    with pytest.raises(ValidationError) as caught:
        make_pdf_document(authors=())
    assert any(p.startswith("authors") for p in caught.value.problems)


def test_an_unqualified_identity_is_refused(make_pdf_document: MakeDocument, qualified_patient: Identity) -> None:
    recup = qualified_patient.updated(status=IdentityStatus.RECUP)
    with pytest.raises(IdentityNotQualifiedError):
        make_pdf_document(patient=recup)
    with pytest.raises(IdentityNotQualifiedError):
        Patient(identity=recup)
    provisional = Identity(traits=qualified_patient.traits)
    with pytest.raises(IdentityNotQualifiedError):
        Patient.from_identity(provisional)


def test_a_patient_without_ins_needs_a_local_id(qualified_patient: Identity) -> None:
    provisional = Identity(traits=qualified_patient.traits)
    with pytest.raises(ValidationError, match="no id"):
        Patient.from_identity(provisional, require_ins=False)
    patient = Patient.from_identity(provisional, require_ins=False, other_ids=(InstanceId.of("1.2.3.4", "IPP1"),))
    assert patient.identity.ins is None


def test_an_ins_needs_the_birth_place(qualified_patient: Identity) -> None:
    no_place = qualified_patient.updated(traits=qualified_patient.traits.model_copy(update={"birth_place": None}))
    with pytest.raises(ValidationError) as caught:
        Patient(identity=no_place)
    assert caught.value.problems == ("patient.identity.traits.birth_place",)


def test_a_pdf_that_is_not_a_pdf_is_refused(pdf_bytes: bytes) -> None:
    with pytest.raises(ValidationError, match="not a PDF"):
        NonXmlBody(data=b"<html>not a pdf</html>")
    with pytest.raises(ValidationError, match="%%EOF"):
        NonXmlBody(data=pdf_bytes[:-20])
    with pytest.raises(ValidationError, match="application/pdf"):
        NonXmlBody(data=pdf_bytes, media_type="text/plain")
    assert "size=" in repr(NonXmlBody(data=pdf_bytes))


def test_a_service_end_before_its_start_is_refused(make_pdf_document: MakeDocument) -> None:
    start = datetime(2024, 3, 12, 10, 0, tzinfo=PARIS)
    with pytest.raises(ValidationError) as caught:
        make_pdf_document(service_start=start, service_end=start - timedelta(minutes=1))
    assert caught.value.problems == ("period.high: before period.low",)
    with pytest.raises(ValidationError):
        Period(low=date(2024, 3, 12), high=date(2024, 3, 11))
    assert Period(low=date(2024, 3, 12), high=datetime(2024, 3, 12, 8, 0, tzinfo=PARIS)).high is not None
    with pytest.raises(ValidationError, match="needs a start"):
        Period()


def test_a_naive_effective_time_is_refused(make_pdf_document: MakeDocument, pdf_document: ClinicalDocument) -> None:
    with pytest.raises(ValidationError) as caught:
        make_pdf_document(effective_time=datetime(2024, 3, 12, 10, 30))
    assert caught.value.problems == ("Author.time: date-time without time zone",)
    data = {name: getattr(pdf_document, name) for name in ClinicalDocument.model_fields}
    data["effective_time"] = datetime(2024, 3, 12, 10, 30)
    with pytest.raises(ValidationError) as caught:
        ClinicalDocument(**data)
    assert caught.value.problems == ("ClinicalDocument.effective_time: date-time without time zone",)
    with pytest.raises(ValidationError, match="without time zone"):
        Period(low=datetime(2024, 3, 12, 10, 30))


def test_times_are_read_from_iso_text() -> None:
    period = Period(low="2024-03-12", high="2024-03-12T10:30:00+01:00")
    assert period.low == date(2024, 3, 12)
    assert isinstance(period.high, datetime) and period.high.utcoffset() == timedelta(hours=1)
    with pytest.raises(ValidationError, match="ISO 8601"):
        Period(low="12/03/2024")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"type_code": Code.of("11488-4", "1.2.3.4", "CR")}, "type_code: code system 1.2.3.4"),
        ({"type_code": Code.of("11488-4", "2.16.840.1.113883.6.1")}, "type_code: a display name is required"),
        ({"confidentiality": Code.of("N", "2.16.840.1.113883.5.26")}, "confidentiality"),
        ({"confidentiality": Code.of("MASQUE_PS", "2.16.840.1.113883.5.25")}, "confidentiality"),
        ({"language": "fr"}, "language"),
        ({"custodian": Organization(id=InstanceId.of("1.2.3.4", "x"))}, "custodian.id"),
        ({"template_ids": ("1.2.250.1.213.1.1.1.1",)}, "template_ids"),
    ],
)
def test_document_rules(make_pdf_document: MakeDocument, overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_pdf_document(**overrides)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_wrong_code_system_oids_are_refused(author: Author, effective_time: datetime) -> None:
    wrong_id = author.entity.model_dump()
    wrong_id["id"] = InstanceId.of("1.2.250.1.71.4.2.2", "1750512345")
    with pytest.raises(ValidationError, match="IdNat_PS"):
        Author(time=effective_time, entity=AssignedEntity(**wrong_id))
    with pytest.raises(ValidationError, match="JDV_J04"):
        ServiceEvent.of(
            start=effective_time,
            performer=author.entity,
            practice_setting=Code.of("AMBULATOIRE", "1.2.250.1.71.4.2.4"),
        )
    with pytest.raises(ValidationError, match="JDV_J02"):
        model_module.HealthCareFacility(code=Code.of("SA07", "1.2.250.1.213.1.1.4.9"))


def test_pydantic_errors_come_out_as_our_validation_error(make_pdf_document: MakeDocument) -> None:
    with pytest.raises(ValidationError) as caught:
        make_pdf_document(version=0)
    assert caught.value.problems and caught.value.problems[0].startswith("version")
    with pytest.raises(ValidationError, match="id root"):
        InstanceId(root="not an oid")
    with pytest.raises(ValidationError, match="either a value or a null flavor"):
        Telecom()


def test_the_legal_authenticator_is_a_person(cda_settings: Settings, effective_time: datetime) -> None:
    legal = model_module.LegalAuthenticator.from_settings(cda_settings, time=effective_time)
    data = legal.entity.model_dump()
    data["person"] = None
    with pytest.raises(ValidationError, match="assignedPerson"):
        model_module.LegalAuthenticator(time=effective_time, entity=AssignedEntity(**data))


def test_narratives_hold_only_narrative_elements() -> None:
    assert Narrative.from_text("a < b & c").xml == f'<text xmlns="{HL7}">a &lt; b &amp; c</text>'
    table = Narrative.from_markup("<table><tbody><tr><td>TA</td><td>12/8</td></tr></tbody></table>")
    assert table.to_element().find(f"{{{HL7}}}table") is not None
    with pytest.raises(ValidationError, match="<p> is not a CDA narrative element"):
        Narrative.from_markup("<p>html</p>")
    with pytest.raises(ValidationError, match="root is a CDA <text>"):
        Narrative(xml=f'<title xmlns="{HL7}">x</title>')
    with pytest.raises(Exception, match="well-formed"):
        Narrative.from_markup("<paragraph>")


def test_raw_elements_and_entries_must_be_well_formed() -> None:
    with pytest.raises(ValidationError, match="<entry>"):
        RawEntry(xml=f'<observation xmlns="{HL7}"/>')
    with pytest.raises(Exception, match="well-formed"):
        RawElement(xml="<informant>")
    assert RawElement(xml=f'<informant xmlns="{HL7}"/>').name == "informant"


def test_sections_take_templateids_as_text() -> None:
    section = Section(title="Allergies", text=Narrative.from_text("Aucune"), template_ids=("1.2.3.4",))
    assert section.template_ids == (InstanceId.of("1.2.3.4"),)
    with pytest.raises(ValidationError, match="instance of Entry"):
        Section(entries=("not an entry",))


class _VitalSign(BaseModel):
    """A typed entry as a volet would write one."""

    model_config = ConfigDict(frozen=True)
    value: str

    def to_element(self) -> etree._Element:
        entry = etree.Element(f"{{{HL7}}}entry")
        observation = etree.SubElement(entry, f"{{{HL7}}}observation", classCode="OBS", moodCode="EVN")
        etree.SubElement(observation, f"{{{HL7}}}templateId", root="1.2.3.4.5.6")
        etree.SubElement(observation, f"{{{HL7}}}code", code="8480-6", codeSystem="2.16.840.1.113883.6.1")
        etree.SubElement(observation, f"{{{HL7}}}value").text = self.value
        return entry

    @classmethod
    def read(cls, entry: etree._Element) -> _VitalSign:
        value = entry.findtext(f"{{{HL7}}}observation/{{{HL7}}}value")
        if value is None:
            raise ValidationError("no value")
        return cls(value=value)


def test_registered_entry_readers_give_typed_entries_back(
    make_pdf_document: MakeDocument, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_module, "_ENTRY_READERS", {})
    register_entry_reader("1.2.3.4.5.6", _VitalSign.read)
    section = Section(
        title="Signes vitaux",
        code=Code.of("8716-3", "2.16.840.1.113883.6.1", "Signes vitaux"),
        text=Narrative.from_text("PAS 12"),
        entries=(_VitalSign(value="12"),),
    )
    document = make_pdf_document(
        body=StructuredBody(sections=(section,)), template_ids=("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1")
    )
    again = parse(build(document))
    assert isinstance(again.body, StructuredBody)
    assert again.body.sections[0].entries == (_VitalSign(value="12"),)
    monkeypatch.setattr(model_module, "_ENTRY_READERS", {})
    assert isinstance(parse(build(document)).body.sections[0].entries[0], RawEntry)  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="OID"):
        register_entry_reader("not-an-oid", _VitalSign.read)


def test_new_oids_are_unique_and_short() -> None:
    oids = {new_oid() for _ in range(100)}
    assert len(oids) == 100
    assert all(len(o) <= 44 and o.startswith("2.25.") for o in oids)


def test_a_document_for_another_patient_and_two_authors(
    make_pdf_document: MakeDocument, second_patient: Identity, author: Author, other_author: Author
) -> None:
    document = make_pdf_document(
        patient=second_patient,
        authors=(author, other_author),
        body=NonXmlBody(data=make_pdf("Deuxième patient")),
        service_end=None,
        practice_setting=AMBULATOIRE,
    )
    assert document.patient.identity.traits.birth_place == "99134"
    assert len(document.authors) == 2
