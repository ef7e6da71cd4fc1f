"""The MHD DocumentReference view of a DMP entry, checked against the patient asked."""

from __future__ import annotations

import base64

import pytest

from dmp_connector.errors import IdentityNotQualifiedError, PatientMismatchError
from dmp_connector.fhir import document_reference, to_model
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.xds import Cx
from tests.dmp.client_support import registry_entry
from tests.xds.conftest import make_document

ASKED = INS.parse("279035121518989", oid=InsOid.NIR_TEST)
UUID = "urn:uuid:0e5a7a34-6f0e-4d7b-9f3c-2a1f0b8c9d10"


def test_entry_fields_map_as_mhd_says() -> None:
    entry = registry_entry(make_document(comments="Consultation du 2 janvier"), uuid=UUID)
    resource = document_reference(entry, ASKED)
    assert resource["masterIdentifier"] == {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.7.2"}
    assert resource["identifier"] == [{"use": "official", "system": "urn:ietf:rfc:3986", "value": UUID}]
    assert resource["status"] == "current"
    assert resource["type"]["coding"][0] == {
        "system": "urn:oid:2.16.840.1.113883.6.1",
        "code": "11488-4",
        "display": "Compte rendu de consultation",
    }
    assert resource["category"][0]["coding"][0]["code"] == "11"
    assert resource["securityLabel"][0]["coding"][0]["code"] == "N"
    content = resource["content"][0]
    assert content["format"]["code"] == "urn:ihe:iti:xds-sd:pdf:2008"
    assert content["attachment"]["contentType"] == "application/pdf"
    assert content["attachment"]["creation"] == "2025-01-02T03:04:05+00:00"
    assert base64.b64decode(content["attachment"]["hash"]).hex() == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert resource["date"] == "2025-01-02T03:04:05+00:00"
    assert resource["context"]["period"] == {"start": "2025-01-02T03:00:00+00:00", "end": "2025-01-02T03:30:00+00:00"}
    assert resource["context"]["facilityType"]["coding"][0]["code"] == "SA07"
    assert resource["context"]["practiceSetting"]["coding"][0]["code"] == "ETABLISSEMENT"
    assert resource["subject"] == {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "279035121518989"}}
    assert resource["description"] == "Consultation du 2 janvier"
    contained = {item["id"]: item for item in resource["contained"]}
    assert contained["author-1"]["identifier"][0]["value"] == entry.authors[0].person.id  # type: ignore[union-attr]
    assert {"reference": "#author-1-role"} in resource["author"]
    assert contained["author-1-org-1"]["name"] == "Cabinet Test"
    assert resource["authenticator"] == {"reference": "#legal-authenticator"}
    assert type(to_model(resource)).__name__ == "DocumentReference"


def test_deprecated_entry_is_superseded() -> None:
    entry = make_document(availability_status="urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated")
    assert document_reference(entry, ASKED)["status"] == "superseded"


def test_another_patients_entry_is_refused_without_its_ins() -> None:
    other = make_document(patient_id=Cx.ins("160058815400283", "1.2.250.1.213.1.4.10"))
    with pytest.raises(PatientMismatchError) as caught:
        document_reference(other, ASKED)
    assert "160058815400283" not in str(caught.value) and "279035121518989" not in str(caught.value)
    with pytest.raises(PatientMismatchError):
        document_reference(make_document(patient_id=None), ASKED)
    production = INS.parse("279035121518989", oid=InsOid.NIR)
    with pytest.raises(PatientMismatchError):
        document_reference(make_document(), production)


@pytest.mark.parametrize("status", [IdentityStatus.RECUP, IdentityStatus.VALI, IdentityStatus.PROV])
def test_an_identity_that_is_not_qualified_is_never_the_subject(status: IdentityStatus) -> None:
    traits = IdentityTraits.build(
        birth_name="Test", birth_first_names="Jeanne", sex="F", birth_date="1979-03-28", birth_place="63220"
    )
    entry = registry_entry(make_document(), uuid=UUID)
    assert document_reference(entry, Identity(traits=traits, ins=ASKED, status=IdentityStatus.QUAL))["subject"]
    carried = ASKED if status.ins_retrieved else None
    with pytest.raises(IdentityNotQualifiedError) as caught:
        document_reference(entry, Identity(traits=traits, ins=carried, status=status))
    assert "279035121518989" not in str(caught.value)


def test_no_status_or_an_unknown_one_is_refused_and_a_day_gives_no_date() -> None:
    from dmp_connector.fhir import FhirMappingError
    from dmp_connector.xds import XdsTime

    with pytest.raises(FhirMappingError):
        document_reference(make_document(), ASKED)
    with pytest.raises(FhirMappingError):
        document_reference(make_document(availability_status="urn:ihe:iti:2010:StatusType:DeferredCreation"), ASKED)
    day = registry_entry(make_document(creation_time=XdsTime.parse("20250102")), uuid=UUID)
    resource = document_reference(day, ASKED)
    assert "date" not in resource
    assert resource["content"][0]["attachment"]["creation"] == "2025-01-02"


def test_table_0445_management_codes_are_not_statuses() -> None:
    from dmp_connector.fhir import identity_from_patient, identity_to_patient
    from dmp_connector.ins import IdentityStatus

    from .test_patient import dark

    patient = identity_to_patient(dark())
    patient["extension"].append(
        {
            "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
            "extension": [
                {
                    "url": "identityStatus",
                    "valueCoding": {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445",
                        "code": "DPOT",
                    },
                }
            ],
        }
    )
    assert identity_from_patient(patient).status is IdentityStatus.QUAL


def test_every_entry_of_the_nist_query_responses_maps_to_a_valid_document_reference() -> None:
    """ITI-18 answers written by the NIST toolkit (not by us): each Approved entry becomes valid FHIR R4."""
    import json
    from pathlib import Path

    from dmp_connector.errors import MalformedResponseError
    from dmp_connector.xds.queries import parse_adhoc_query_response
    from dmp_connector.xml import parse_xml

    nist = Path(__file__).resolve().parents[3] / "shared" / "xds" / "nist"
    if not nist.is_dir():
        pytest.skip(f"the NIST XDS corpus is not at {nist}")
    messages = json.loads((nist / "manifest.json").read_text())["messages"]
    mapped = 0
    for name, item in sorted(messages.items()):
        if item["kind"] != "AQR":
            continue
        try:
            answer = parse_adhoc_query_response(parse_xml((nist / item["file"]).read_bytes(), what=name))
        except MalformedResponseError:
            continue  # refused by the XDS reader (tests/xds/test_nist_corpus.py says which and why)
        for entry in answer.documents:
            if entry.availability_status is None or entry.patient_id is None:
                continue
            resource = document_reference(entry, entry.patient_id)
            assert type(to_model(resource)).__name__ == "DocumentReference"
            assert resource["identifier"][0]["value"] == entry.entry_uuid
            master = resource["masterIdentifier"]
            if master.get("system") == "urn:ietf:rfc:3986":
                assert master["value"] == f"urn:oid:{entry.unique_id}"
            else:
                assert f"{master['system'].removeprefix('urn:oid:')}^{master['value']}" == entry.unique_id
            assert resource["subject"]["identifier"]["value"] == entry.patient_id.id
            if entry.type_code is not None:
                assert resource["type"]["coding"][0]["code"] == entry.type_code.code
            mapped += 1
            other = Cx(id=entry.patient_id.id + "0", assigning_authority=entry.patient_id.assigning_authority)
            with pytest.raises(PatientMismatchError):
                document_reference(entry, other)
    assert mapped >= 10
