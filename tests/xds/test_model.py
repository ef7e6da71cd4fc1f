"""The XDS model: HL7 values, times, codes, the submission rules and the DMP profile."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pydantic
import pytest

from dmp_connector.codes import Code
from dmp_connector.errors import DmpConnectorError, ValidationError
from dmp_connector.xds import (
    MASQUE_PS,
    Association,
    AssociationType,
    Author,
    AvailabilityStatus,
    Cx,
    DocumentEntry,
    DocumentEntryType,
    ForeignCode,
    MetadataProfile,
    Slot,
    SubmissionRequest,
    SubmissionSetStatus,
    TimePrecision,
    Xcn,
    XdsTime,
    Xon,
    is_oid,
    new_entry_uuid,
    symbolic_id,
    xds_code,
)
from tests.xds.conftest import PATIENT, make_deposit, make_document, make_submission_set

# ------------------------------------------------------------------------------------ times


@pytest.mark.parametrize(
    ("text", "precision", "moment"),
    [
        ("2005", TimePrecision.YEAR, dt.datetime(2005, 1, 1, tzinfo=dt.UTC)),
        ("200512", TimePrecision.MONTH, dt.datetime(2005, 12, 1, tzinfo=dt.UTC)),
        ("20051224", TimePrecision.DAY, dt.datetime(2005, 12, 24, tzinfo=dt.UTC)),
        ("200412230800", TimePrecision.MINUTE, dt.datetime(2004, 12, 23, 8, 0, tzinfo=dt.UTC)),
        ("20041225235050", TimePrecision.SECOND, dt.datetime(2004, 12, 25, 23, 50, 50, tzinfo=dt.UTC)),
    ],
)
def test_xds_time_keeps_its_precision(text: str, precision: TimePrecision, moment: dt.datetime) -> None:
    time = XdsTime.parse(text)
    assert (time.precision, time.moment, time.text, str(time)) == (precision, moment, text, text)


def test_xds_time_from_an_aware_datetime_is_utc_to_the_second() -> None:
    paris = dt.datetime(2025, 1, 2, 4, 5, 6, 789, tzinfo=ZoneInfo("Europe/Paris"))
    assert XdsTime.of(paris).text == "20250102030506"
    assert XdsTime.of(paris, TimePrecision.DAY).text == "20250102"
    assert XdsTime.model_validate(dt.date(2025, 3, 4)).text == "20250304"


@pytest.mark.parametrize("text", ["2005122", "20051324", "20050230", "2005-12-24", "20051224Z", "", "200512241200000"])
def test_xds_time_refuses_what_is_not_an_xds_time(text: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="XDS time"):
        XdsTime.parse(text)


def test_xds_time_refuses_a_naive_datetime() -> None:
    with pytest.raises(pydantic.ValidationError, match="timezone-aware"):
        XdsTime.of(dt.datetime(2025, 1, 1))


# ------------------------------------------------------------------------------------ HL7 values


def test_cx_of_an_ins() -> None:
    text = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert PATIENT.text == text
    assert Cx.parse(text) == PATIENT
    assert Cx.parse("ST-1000^^^&1.3.6.1.4.1.21367.2003.3.9&ISO").id_type is None


@pytest.mark.parametrize(
    "text",
    [
        "123",  # no assigning authority
        "123^^^1.2.3",  # authority not &OID&ISO
        "123^^^NS&1.2.3&ISO",  # namespace id, which XDS forbids
        "123^^^&1.2.3&L",
        "123^x^^&1.2.3&ISO",
        "123^^^&1.2.3&ISO^NH^extra",
        "^^^&1.2.3&ISO",
    ],
)
def test_cx_refuses_other_shapes(text: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        Cx.parse(text)


def test_cx_refuses_separators_in_components() -> None:
    with pytest.raises(pydantic.ValidationError, match="separator"):
        Cx(id="12^3", assigning_authority="1.2.3")


def test_xcn_in_the_french_professional_form() -> None:
    person = Xcn.national_professional("810001234567", "DUPONT", "Jean")
    assert person.text == "810001234567^DUPONT^Jean^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert Xcn.parse(person.text) == person


def test_xcn_reads_ihe_sample_forms() -> None:
    assert Xcn.parse("^Smitty^Gerald^^^") == Xcn(family_name="Smitty", given_name="Gerald")
    assert Xcn.parse("Gerald Smitty").id == "Gerald Smitty"
    with pytest.raises(pydantic.ValidationError, match="component 8"):
        Xcn.parse("1^A^B^^^^^X")
    with pytest.raises(pydantic.ValidationError, match="identifier or a name"):
        Xcn(prefix="Dr")


def test_xon_in_the_french_structure_form() -> None:
    cabinet = Xon.national_structure("Cabinet Test", "1123456789")
    assert cabinet.text == "Cabinet Test^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1123456789"
    assert Xon.parse(cabinet.text) == cabinet
    assert Xon.parse("Cleveland Clinic") == Xon(organization_name="Cleveland Clinic")
    with pytest.raises(pydantic.ValidationError, match="component 2"):
        Xon.parse("A^B")


def test_codes_keep_oid_schemes_typed_and_named_schemes_foreign() -> None:
    assert isinstance(xds_code("11488-4", "2.16.840.1.113883.6.1"), Code)
    assert isinstance(xds_code("E1762", "ASTM"), Code)
    foreign = xds_code("34108-1", "LOINC", "Outpatient")
    assert foreign == ForeignCode(code="34108-1", code_system="LOINC", display_name="Outpatient")


def test_ids() -> None:
    assert symbolic_id("Document", 1) == "Document01"
    assert symbolic_id("Association", 123) == "Association123"
    assert new_entry_uuid().startswith("urn:uuid:") and new_entry_uuid() != new_entry_uuid()
    assert is_oid("1.2.250.1.213.4.1.1.1.2") and not is_oid("1.02.3") and not is_oid("3670984664")
    with pytest.raises(ValidationError):
        symbolic_id("Doc ument", 1)


# ------------------------------------------------------------------------------------ entries


def test_a_document_entry_needs_a_unique_id() -> None:
    data = make_document().model_dump()
    del data["unique_id"]
    with pytest.raises(pydantic.ValidationError, match="unique_id"):
        DocumentEntry.model_validate(data)
    with pytest.raises(pydantic.ValidationError, match="unique_id"):
        make_document(unique_id="")


def test_entry_ids_are_symbolic_or_uuids() -> None:
    assert make_document(entry_uuid="urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd").entry_uuid.startswith("urn:")
    with pytest.raises(pydantic.ValidationError, match="UUID"):
        make_document(entry_uuid="urn:uuid:not-a-uuid")
    with pytest.raises(pydantic.ValidationError, match="without spaces"):
        make_document(entry_uuid="Document 01")


def test_statuses_and_types_known_become_members_unknown_stay_strings() -> None:
    entry = make_document(availability_status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved")
    assert entry.availability_status is AvailabilityStatus.APPROVED
    assert make_document(availability_status="urn:x:Other").availability_status == "urn:x:Other"
    association = Association(
        entry_uuid="a1", association_type="urn:x:Custom", source_object="Document01", target_object="Document02"
    )
    assert association.association_type == "urn:x:Custom"


def test_extra_slots_cannot_shadow_a_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="creationTime"):
        make_document(extra_slots=(Slot(name="creationTime", values=("2025",)),))


def test_text_that_xml_cannot_carry_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="XML"):
        make_document(title="bell\x07")


# ------------------------------------------------------------------------------------ submission rules


def test_build_makes_the_has_member_associations() -> None:
    request = make_deposit()
    (association,) = request.associations
    assert association == Association(
        entry_uuid="Association01",
        association_type=AssociationType.HAS_MEMBER,
        source_object="SubmissionSet01",
        target_object="Document01",
        submission_set_status=SubmissionSetStatus.ORIGINAL,
    )
    assert request.problems(MetadataProfile.DMP) == []
    assert request.check() is request


def test_a_patient_id_mismatch_is_refused_without_naming_the_patient() -> None:
    other = Cx.ins("180036512345678", "1.2.250.1.213.1.4.10")
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest.build(make_submission_set(), [make_document(patient_id=other)])
    assert caught.value.problems == (
        "document Document01: patientId differs from the submission set's (one submission, one patient)",
    )
    assert "180036512345678" not in str(caught.value) + "".join(caught.value.problems)
    assert isinstance(caught.value, DmpConnectorError)


def test_every_missing_attribute_is_listed() -> None:
    bare = DocumentEntry(entry_uuid="Document01", unique_id="1.2.3", patient_id=PATIENT, mime_type="text/xml")
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest.build(make_submission_set(content_type_code=None), [bare])
    assert set(caught.value.problems) == {
        "submission set: contentTypeCode is missing",
        *(
            f"document Document01: {name} is missing"
            for name in (
                "classCode",
                "typeCode",
                "formatCode",
                "healthcareFacilityTypeCode",
                "practiceSettingCode",
                "creationTime",
                "languageCode",
                "sourcePatientId",
                "confidentialityCode",
            )
        ),
    }


def test_bad_oids_are_listed() -> None:
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest.build(
            make_submission_set(unique_id="1.2.03", source_id="editor"),
            [make_document(unique_id="not-an-oid", repository_unique_id="x.y")],
        )
    problems = caught.value.problems
    assert "submission set: uniqueId 1.2.03 is not an OID of at most 64 characters" in problems
    assert "submission set: sourceId editor is not an OID of at most 64 characters" in problems
    assert any("uniqueId not-an-oid is not an OID" in p for p in problems)
    assert "document Document01: repositoryUniqueId x.y is not an OID of at most 64 characters" in problems


def test_a_cda_unique_id_may_carry_an_extension() -> None:
    assert make_deposit().documents[0].unique_id
    SubmissionRequest.build(make_submission_set(), [make_document(unique_id="1.2.250.1.999.7.2^ext42")])


def test_associations_must_point_somewhere_and_members_must_be_linked() -> None:
    stray = Association(
        entry_uuid="Association09",
        association_type=AssociationType.REPLACE,
        source_object="Document01",
        target_object="Document77",
    )
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest(submission_set=make_submission_set(), documents=(make_document(),), associations=(stray,))
    assert set(caught.value.problems) == {
        "association Association09: targetObject Document77 is neither in the submission nor a urn:uuid: "
        "registry entry",
        "entry Document01 is not a member of the submission set (no HasMember association)",
    }


def test_ids_and_unique_ids_must_be_distinct() -> None:
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest.build(make_submission_set(), [make_document(), make_document(unique_id="1.2.250.1.999.7.1")])
    assert "the id Document01 is used by more than one object of the submission" in caught.value.problems
    assert "the uniqueId 1.2.250.1.999.7.1 is used by more than one entry of the submission" in caught.value.problems


def test_service_times_in_order_and_contents_for_documents_only() -> None:
    late = make_document(service_start_time=XdsTime.parse("2026"), service_stop_time=XdsTime.parse("2025"))
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest.build(make_submission_set(), [late], contents={"Nope01": "x@y"})
    assert set(caught.value.problems) == {
        "document Document01: serviceStartTime is after serviceStopTime",
        "contents names Nope01, which is not a document entry of the submission",
    }


def test_values_longer_than_ebrim_allows_are_listed() -> None:
    with pytest.raises(ValidationError) as caught:
        SubmissionRequest.build(make_submission_set(), [make_document(source_patient_info=("PID-5|" + "A" * 300,))])
    assert caught.value.problems == (
        "document Document01: sourcePatientInfo is longer than the 256 characters ebRIM allows",
    )


def test_the_dmp_profile_adds_its_rules() -> None:
    foreign = make_document(type_code=ForeignCode(code="34108-1", code_system="LOINC"))
    local_patient = Cx(id="42", assigning_authority="1.2.250.1.999.1")
    request = SubmissionRequest.build(
        make_submission_set(patient_id=local_patient, authors=(Author(institutions=(Xon(organization_name="X"),)),)),
        [foreign.model_copy(update={"patient_id": local_patient})],
    )
    assert request.problems() == []
    assert request.problems(MetadataProfile.DMP) == [
        "document Document01: the coding scheme of type_code is not an OID (the DMP wants OIDs)",
        "submission set: the patientId must be an INS (^^^&1.2.250.1.213.1.4.8&ISO^NH or a test OID)",
        "document Document01: the patientId must be an INS (^^^&1.2.250.1.213.1.4.8&ISO^NH or a test OID)",
        "submission set: the DMP requires an author with authorPerson (who or what sends)",
    ]
    with pytest.raises(ValidationError, match="4 DMP rules"):
        request.check()


def test_status_update_for_deletion() -> None:
    target = "urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd"
    request = SubmissionRequest.status_update(
        make_submission_set(),
        target,
        original_status=AvailabilityStatus.APPROVED,
        new_status=AvailabilityStatus.DELETED,
    )
    (association,) = request.associations
    assert association.association_type is AssociationType.UPDATE_AVAILABILITY_STATUS
    assert (association.source_object, association.target_object) == ("SubmissionSet01", target)
    assert association.new_status == "urn:asip:ci-sis:2010:StatusType:Deleted"


def test_status_update_needs_both_statuses() -> None:
    half = Association(
        entry_uuid="Association01",
        association_type=AssociationType.UPDATE_AVAILABILITY_STATUS,
        source_object="SubmissionSet01",
        target_object="urn:uuid:e0985823-dc50-45a5-a6c8-a11a829893bd",
        new_status=AvailabilityStatus.ARCHIVED,
    )
    with pytest.raises(ValidationError, match="breaks 1 XDS rule") as caught:
        SubmissionRequest(submission_set=make_submission_set(), associations=(half,))
    assert "needs OriginalStatus and NewStatus" in caught.value.problems[0]


def test_metadata_update_needs_the_logical_id() -> None:
    logical = "urn:uuid:20744602-ba65-44e9-87ee-a52303a5183e"
    masked = make_document(confidentiality_codes=(make_document().confidentiality_codes[0], MASQUE_PS))
    with pytest.raises(ValidationError, match="logicalId"):
        SubmissionRequest.metadata_update(make_submission_set(), masked, previous_version="1")
    request = SubmissionRequest.metadata_update(
        make_submission_set(), masked.model_copy(update={"logical_id": logical}), previous_version="1"
    )
    assert request.associations[0].previous_version == "1"


def test_document_entry_types() -> None:
    assert make_document().object_type is DocumentEntryType.STABLE
    assert make_document(object_type=DocumentEntryType.ON_DEMAND).object_type.value.endswith("82133c465248")


def test_a_patient_id_is_a_rule_of_submissions_except_under_limited_metadata() -> None:
    """The readers keep an entry without patientId; a submission refuses it unless it is flagged limited."""
    without = make_document(patient_id=None)
    with pytest.raises(ValidationError, match="document Document01: patientId is missing"):
        SubmissionRequest.build(make_submission_set(), [without])
    limited = make_document(patient_id=None, limited_metadata=True)
    request = SubmissionRequest.build(make_submission_set(), [limited])
    assert request.documents[0].patient_id is None and request.problems() == []
    with pytest.raises(ValidationError, match="submission set: patientId is missing"):
        SubmissionRequest.build(make_submission_set(patient_id=None), [make_document()])
