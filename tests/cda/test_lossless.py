"""What reading keeps, and how a changed read document is written: the parts of the design one at a time.

The whole kit is in ``test_examples_roundtrip``; these tests take small documents apart, so
that a failure says which mechanism broke (source kept, part rewritten, fallback taken,
null kept, base64 layout kept, pickling, equality).
"""

from __future__ import annotations

import logging
import pickle
import sys
from collections.abc import Callable
from datetime import datetime

import pytest
from lxml import etree

from dmp_connector.cda import (
    AssociatedEntity,
    ClinicalDocument,
    InstanceId,
    NonXmlBody,
    Participant,
    Period,
    PersonName,
    build,
    parse,
    problems,
)
from dmp_connector.cda.model import read_entry
from dmp_connector.cda.volets import Medication
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError

from .conftest import PARIS, make_pdf
from .xmldiff import document_differences

H = "{urn:hl7-org:v3}"
MakeDocument = Callable[..., ClinicalDocument]


def _decorate(data: bytes) -> bytes:
    """A built document with what received documents hold and the model does not type."""
    root = etree.fromstring(data)  # noqa: TID251 - our own output
    org = root.find(f"{H}custodian/{H}assignedCustodian/{H}representedCustodianOrganization")
    assert org is not None
    org.insert(1, etree.Comment(" l'établissement "))
    extra = etree.SubElement(org, f"{H}id", root="1.2.250.1.71.4.2.2", extension="3123456789")
    org.insert(2, extra)  # a second id: the model keeps the first
    code = root.find(f"{H}code")
    assert code is not None
    etree.SubElement(code, f"{H}translation", code="CR-CONS", codeSystem="1.2.3.4", displayName="Consultation")
    time = root.find(f"{H}author/{H}time")
    assert time is not None
    time.set("value", "202403121030+0100")  # minutes only: no seconds to invent
    role = root.find(f"{H}recordTarget/{H}patientRole")
    assert role is not None
    role.insert(2, etree.Element(f"{H}id", nullFlavor="UNK"))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_what_the_model_does_not_type_comes_back(pdf_document: ClinicalDocument) -> None:
    data = _decorate(build(pdf_document))
    document = parse(data)
    assert document_differences(data, build(document)) == []
    assert document.custodian.id == InstanceId(root="1.2.250.1.71.4.2.2", extension="1750512345")


def test_a_changed_part_is_rewritten_and_its_neighbours_are_not(pdf_document: ClinicalDocument) -> None:
    data = _decorate(build(pdf_document))
    document = parse(data)
    custodian = document.custodian.model_copy(update={"name": "Cabinet médical Martin"})
    rebuilt = build(document.model_copy(update={"custodian": custodian, "title": "CR corrigé"}))
    org = "/ClinicalDocument/custodian[1]/assignedCustodian[1]/representedCustodianOrganization[1]"
    assert sorted(document_differences(data, rebuilt)) == sorted(["/ClinicalDocument/title[1]", f"{org}/name[1]"])
    again = parse(rebuilt)
    assert again.custodian.name == "Cabinet médical Martin" and again.title == "CR corrigé"
    root = etree.fromstring(rebuilt)  # noqa: TID251 - our own output
    assert root.find(f"{H}code/{H}translation") is not None, "the type code's translation is kept"
    assert root.find(f"{H}author/{H}time").get("value") == "202403121030+0100"  # type: ignore[union-attr]


def test_a_part_missing_from_the_original_goes_where_the_schema_puts_it(pdf_document: ClinicalDocument) -> None:
    document = parse(build(pdf_document))
    participant = Participant(
        type_code="REF",
        time=Period(low=datetime(2024, 3, 1, tzinfo=PARIS)),
        entity=AssociatedEntity(class_code="PROV", person=PersonName(family="DURAND", given="Anne")),
    )
    rebuilt = build(document.model_copy(update={"participants": (participant,)}))
    names = [etree.QName(c).localname for c in etree.fromstring(rebuilt)]  # noqa: TID251 - our own output
    assert names.index("legalAuthenticator") < names.index("participant") < names.index("documentationOf")
    assert parse(rebuilt).participants == (participant,)


def test_a_read_organisation_written_elsewhere_takes_the_name_of_its_new_place(pdf_document: ClinicalDocument) -> None:
    document = parse(build(pdf_document))
    org = document.authors[0].entity.organization
    assert org is not None and org._source is not None
    participant = Participant(
        type_code="REF",
        time=Period.unknown(),
        entity=AssociatedEntity(class_code="PROV", organization=org),
    )
    rebuilt = build(document.model_copy(update={"participants": (participant,)}))
    root = etree.fromstring(rebuilt)  # noqa: TID251 - our own output
    assert root.find(f"{H}participant/{H}associatedEntity/{H}scopingOrganization/{H}id") is not None
    assert parse(rebuilt).participants[0].entity.organization == org


def test_a_patch_that_does_not_read_back_gives_way_to_the_fresh_rendering(
    pdf_document: ClinicalDocument, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dmp_connector.cda import _patch
    from dmp_connector.cda.model import Organization

    # A table that forgot a field: the change would be written nowhere without the re-reading.
    table = dict(_patch.PARTS)
    table[Organization] = tuple(p for p in table[Organization] if p.key != "name")
    monkeypatch.setattr(_patch, "PARTS", table)
    monkeypatch.setattr(sys.modules["dmp_connector.cda.build"], "PARTS", table)  # cda.build is also a function
    document = parse(build(pdf_document))
    custodian = document.custodian.model_copy(update={"name": "Autre nom"})
    with caplog.at_level(logging.DEBUG, logger="dmp_connector.cda"):
        rebuilt = build(document.model_copy(update={"custodian": custodian}))
    assert parse(rebuilt).custodian.name == "Autre nom"
    assert "did not read back" in caplog.text


def test_sources_take_no_part_in_equality_copies_or_pickling(pdf_document: ClinicalDocument) -> None:
    data = _decorate(build(pdf_document))
    read = parse(data)
    assert read._source is not None and pdf_document._source is None
    assert parse(build(pdf_document)) == pdf_document
    assert hash(read.custodian) == hash(read.custodian.model_copy())
    revived = pickle.loads(pickle.dumps(read))
    assert revived == read
    assert document_differences(data, build(revived)) == []


def test_a_null_time_is_kept_and_a_participant_needs_a_time(make_pdf_document: MakeDocument) -> None:
    entity = AssociatedEntity(class_code="PROV", person=PersonName(family="DURAND"))
    without = make_pdf_document(participants=(Participant(type_code="REF", entity=entity),))
    with pytest.raises(ValidationError) as caught:
        build(without)
    assert caught.value.problems[0].startswith("participants[0].time: a participant's time is required")
    unknown = make_pdf_document(participants=(Participant(type_code="REF", entity=entity, time=Period.unknown()),))
    root = etree.fromstring(build(unknown))  # noqa: TID251 - our own output
    time = root.find(f"{H}participant/{H}time")
    assert time is not None and time.get("nullFlavor") == "UNK" and len(time) == 0
    assert parse(build(unknown)).participants[0].time == Period(null_flavor="UNK")
    with pytest.raises(ValidationError):
        Period()


def test_build_refuses_the_header_rules_it_can_check(make_pdf_document: MakeDocument) -> None:
    entity = AssociatedEntity(class_code="NOPE", person=PersonName(family="DURAND", prefix="Monseigneur"))
    participant = Participant(
        type_code="XYZ", entity=entity, time=Period.unknown(), function_code=Code.of("ZZZ", "1.2.3", "?")
    )
    found = problems(make_pdf_document(participants=(participant,)))
    assert [p.split(":")[0] for p in found] == [
        "participants[0].type_code",
        "participants[0].entity.class_code",
        "participants[0].function_code",
        "participants[0].entity.person.prefix",
    ]
    assert all("StrucMin" in p for p in found)


def test_the_patient_role_says_it_is_a_patient(pdf_document: ClinicalDocument) -> None:
    root = etree.fromstring(build(pdf_document))  # noqa: TID251 - our own output
    role = root.find(f"{H}recordTarget/{H}patientRole")
    assert role is not None and role.get("classCode") == "PAT"


def test_a_medication_whose_name_is_null_is_kept_as_it_came() -> None:
    entry = etree.fromstring(  # noqa: TID251 - a literal
        b"""<entry xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
        <substanceAdministration classCode="SBADM" moodCode="EVN">
          <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7"/><templateId root="2.16.840.1.113883.10.20.1.24"/>
          <templateId root="1.2.250.1.213.1.1.3.42"/><id root="1.2.3.4.5"/>
          <code code="DRUG" codeSystem="2.16.840.1.113883.5.4"/><statusCode code="completed"/>
          <effectiveTime xsi:type="IVL_TS"><low value="20240101"/><high nullFlavor="UNK"/></effectiveTime>
          <consumable><manufacturedProduct><templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7.2"/>
            <templateId root="2.16.840.1.113883.10.20.1.53"/><templateId root="1.2.250.1.213.1.1.3.43"/>
            <manufacturedMaterial><code nullFlavor="NA"/><name nullFlavor="NA"/></manufacturedMaterial>
          </manufacturedProduct></consumable>
        </substanceAdministration></entry>"""
    )
    with pytest.raises(ValidationError):
        Medication.from_element(entry)
    kept = read_entry(entry)
    assert not isinstance(kept, Medication)
    written = etree.tostring(kept.to_element())
    assert b'<name nullFlavor="NA"/>' in written and b"?" not in written


def test_an_irregular_base64_layout_is_kept_as_it_came(pdf_bytes: bytes) -> None:
    import base64

    encoded = base64.b64encode(pdf_bytes).decode()
    irregular = "\n  " + encoded[:10] + "\n" + encoded[10:70] + "\r\n    " + encoded[70:] + "\n  "
    document = parse(_with_body(irregular))
    assert isinstance(document.body, NonXmlBody) and document.body.data == pdf_bytes
    rebuilt = etree.fromstring(build(document))  # noqa: TID251 - our own output
    text = rebuilt.find(f"{H}component/{H}nonXMLBody/{H}text")
    assert text is not None and text.text == irregular.replace("\r\n", "\n")  # as any XML parser reads it
    wrapped = "\n" + "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"
    document = parse(_with_body(wrapped))
    text = etree.fromstring(build(document)).find(f"{H}component/{H}nonXMLBody/{H}text")  # noqa: TID251
    assert text is not None and text.text == wrapped
    # A changed PDF is written on one line: the layout belonged to the old base64.
    other = make_pdf("Autre compte rendu")
    changed = document.model_copy(update={"body": NonXmlBody(data=other)})
    text = etree.fromstring(build(changed)).find(f"{H}component/{H}nonXMLBody/{H}text")  # noqa: TID251
    assert text is not None and text.text == base64.b64encode(other).decode()


def _with_body(text: str) -> bytes:
    from .conftest import EXAMPLES

    data = (EXAMPLES / "TLM-CR_2022.01.xml").read_bytes()
    start = data.index(b'representation="B64">') + len(b'representation="B64">')
    end = data.index(b"</text>", start)
    return data[:start] + text.encode() + data[end:]


def test_every_field_of_a_patched_model_has_a_part() -> None:
    from dmp_connector.cda._patch import PARTS, covered_fields

    # A field no part covers would be written nowhere when changed (the re-reading would then fall back).
    assert {m.__name__: sorted(set(m.model_fields) - covered_fields(m)) for m in PARTS} == {
        m.__name__: [] for m in PARTS
    }
