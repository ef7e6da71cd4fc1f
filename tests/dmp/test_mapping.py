"""CDA metadata → DocumentEntry, and a whole deposit built from the document's bytes with no typed metadata."""

from __future__ import annotations

import datetime as dt

import pytest

from dmp_connector.cda import InstanceId, extract_metadata
from dmp_connector.codes import Code
from dmp_connector.dmp.mapping import (
    DOCUMENT_ENTRY_ID,
    deposit_ids,
    derived_oid,
    document_entry,
    prepare_deposit,
    source_id,
)
from dmp_connector.errors import IdentityNotQualifiedError, PatientMismatchError, ValidationError
from dmp_connector.signature import verify_submission_set_signature
from dmp_connector.xds import (
    MASQUE_PS,
    AssociationType,
    MetadataProfile,
    build_provide_and_register_request,
    parse_provide_and_register_request,
)
from dmp_connector.xml import parse_xml, to_bytes
from tests.dmp.client_support import (
    OTHER,
    PATIENT,
    SETTINGS,
    UNQUALIFIED,
    cda_document,
    pki,
    schemas,
    signer,
)

WHEN = dt.datetime.now(dt.UTC).replace(microsecond=0)
"""A fixed submission (and signing) time, after the test certificates' start."""


def test_every_entry_attribute_comes_from_the_document() -> None:
    data = cda_document()
    metadata = extract_metadata(data)
    entry = document_entry(metadata)
    assert entry.entry_uuid == DOCUMENT_ENTRY_ID
    assert entry.unique_id == metadata.unique_id
    assert entry.patient_id.text == PATIENT.ins.to_xds_cx()  # type: ignore[union-attr]
    assert (entry.class_code, entry.type_code, entry.format_code) == (
        metadata.class_code,
        metadata.type_code,
        metadata.format_code,
    )
    assert entry.format_code is not None and entry.format_code.code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert entry.confidentiality_codes == metadata.confidentiality_codes
    assert entry.hash == metadata.hash and entry.size == len(data)
    assert entry.creation_time is not None and entry.creation_time.text == "20240312093000"
    assert entry.service_start_time is not None and entry.service_start_time.text == "20240312084500"
    author = entry.authors[0]
    assert author.person is not None and author.person.id == "899700000001"
    assert author.person.identifier_type_code == "IDNPS"
    assert author.institutions[0].organization_identifier == "1123456789"
    assert author.specialties and author.specialties[0].startswith("G15_10")
    assert entry.legal_authenticator is not None and entry.legal_authenticator.family_name == "SANDBOX"
    assert entry.source_patient_info[1] == "PID-7|19790301"
    assert entry.language_code == "fr-FR" and entry.title == "Compte rendu de consultation"


def test_masking_codes_follow_the_cda_confidentiality() -> None:
    metadata = extract_metadata(cda_document(), confidentiality=(MASQUE_PS,))
    codes = [c.code for c in document_entry(metadata).confidentiality_codes]
    assert codes == ["N", "MASQUE_PS"]


def test_a_prepared_deposit_is_complete_valid_and_signed() -> None:
    prepared = prepare_deposit(
        cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT, submission_time=WHEN
    )
    request = prepared.request
    assert request.problems(MetadataProfile.DMP) == []
    assert [d.entry_uuid for d in request.documents] == ["Document01", "Signature01"]
    kinds = [a.association_type for a in request.associations]
    assert kinds == [AssociationType.HAS_MEMBER, AssociationType.HAS_MEMBER, AssociationType.SIGNS]
    signs = request.associations[2]
    assert (signs.source_object, signs.target_object) == ("Signature01", "SubmissionSet01")
    ss = request.submission_set
    assert ss.unique_id == prepared.ids.submission_set and ss.source_id == source_id(SETTINGS)
    assert ss.content_type_code == SETTINGS.dmp.content_type_code
    assert ss.authors[0].institutions[0].organization_identifier == SETTINGS.organisation.national_id  # type: ignore[union-attr]
    body = build_provide_and_register_request(request)
    schemas().assert_xdsb_valid(body)
    parsed, documents = parse_provide_and_register_request(parse_xml(to_bytes(body)))
    assert parsed.contents == request.contents and set(documents) == {"Document01", "Signature01"}
    document_part, signature_part = prepared.attachments
    verified = verify_submission_set_signature(
        signature_part.read(),
        documents={prepared.ids.document: document_part.read()},
        submission_set_unique_id=prepared.ids.submission_set,
        trusted=[pki().ca.certificate],
        is_cda={prepared.ids.document: True},
    )
    assert verified.document_unique_ids == (prepared.ids.document,)
    signature_entry = request.documents[1]
    assert signature_entry.hash == prepared.signature.sha1
    assert signature_entry.practice_setting_code == prepared.entry.practice_setting_code


def test_a_replacement_carries_an_rplc_association() -> None:
    target = "urn:uuid:0f6c5b6e-4a2b-4b5d-9d1e-3a2b1c0d9e8f"
    prepared = prepare_deposit(
        cda_document("v2"), settings=SETTINGS, signer=signer(), patient=PATIENT, replaces=target, submission_time=WHEN
    )
    rplc = [a for a in prepared.request.associations if a.association_type == AssociationType.REPLACE]
    assert len(rplc) == 1 and (rplc[0].source_object, rplc[0].target_object) == ("Document01", target)
    assert rplc[0].submission_set_status == "Original"
    schemas().assert_xdsb_valid(build_provide_and_register_request(prepared.request))
    with pytest.raises(ValidationError, match="entryUUID"):
        prepare_deposit(cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT, replaces="1.2.3")


def test_derived_ids_are_stable_for_the_same_bytes_and_differ_otherwise() -> None:
    one = prepare_deposit(cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT, submission_time=WHEN)
    again = prepare_deposit(cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT)
    assert one.ids == again.ids
    assert [a.content_id for a in one.attachments] == [a.content_id for a in again.attachments]
    ids = deposit_ids(SETTINGS, one.ids.document, "0" * 40)
    assert ids.document == one.ids.document and ids.submission_set != one.ids.submission_set
    assert ids.signature != one.ids.signature


def test_derived_oids_fit_xds_limits_under_any_root() -> None:
    assert derived_oid("2.25", "a") == derived_oid("2.25", "a") != derived_oid("2.25", "b")
    long_root = "1.2.250.1.999.123456789.123456789.1234"
    value = derived_oid(long_root, "x")
    assert value.startswith(long_root + ".") and len(value) <= 64
    with pytest.raises(ValidationError):
        derived_oid("not-an-oid", "x")


def test_an_unqualified_identity_is_refused() -> None:
    with pytest.raises(IdentityNotQualifiedError):
        prepare_deposit(cda_document(), settings=SETTINGS, signer=signer(), patient=UNQUALIFIED)


def test_a_document_about_another_patient_is_refused_as_a_mismatch() -> None:
    # Not IdentityNotQualifiedError: qualifying the given identity would not help, and an operator
    # told so might qualify the wrong patient.
    with pytest.raises(PatientMismatchError, match="another patient") as info:
        prepare_deposit(cda_document(patient=OTHER), settings=SETTINGS, signer=signer(), patient=PATIENT)
    assert not isinstance(info.value, IdentityNotQualifiedError)
    assert info.value.problems == ("the document's recordTarget INS is not the INS of the identity given",)


def test_a_cda_id_with_an_extension_is_refused_clearly() -> None:
    data = cda_document(document_id=InstanceId(root="1.2.250.1.999.7", extension="A-1"))
    with pytest.raises(ValidationError, match="extension"):
        prepare_deposit(data, settings=SETTINGS, signer=signer(), patient=PATIENT)


def test_a_content_type_code_can_be_given_per_deposit() -> None:
    code = Code.of("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")
    prepared = prepare_deposit(
        cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT, content_type_code=code
    )
    assert prepared.request.submission_set.content_type_code == code


def test_the_signature_entry_carries_the_deposit_author() -> None:
    """As DRIMbox and the editor kit send it: Signature01 has the submission set's author (person, structure)."""
    prepared = prepare_deposit(
        cda_document(), settings=SETTINGS, signer=signer(), patient=PATIENT, submission_time=WHEN
    )
    request = prepared.request
    signature_entry = request.documents[1]
    assert signature_entry.entry_uuid == "Signature01"
    assert signature_entry.authors == request.submission_set.authors
    (author,) = signature_entry.authors
    assert author.person is not None and author.person.id == SETTINGS.professional.national_id  # type: ignore[union-attr]
    assert author.institutions[0].organization_identifier == SETTINGS.organisation.national_id  # type: ignore[union-attr]
    # On the wire: an author classification (scheme urn:uuid:93606bcf-…) inside the Signature01 ExtrinsicObject.
    body = build_provide_and_register_request(request)
    rim = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    (element,) = body.iterfind(f".//{{{rim}}}ExtrinsicObject[@id='Signature01']")
    schemes = [c.get("classificationScheme") for c in element.iterfind(f"{{{rim}}}Classification")]
    assert "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d" in schemes
    assert parse_provide_and_register_request(parse_xml(to_bytes(body)))[0].documents[1].authors == (author,)


def test_one_specialty_gives_each_place_its_code_and_code_system() -> None:
    """SM26 once in the settings: JDV_J01 G15_10/SM26 in the CDA author and XDS authorSpecialty, SM26 in the VIHF."""
    from dmp_connector.codes import RPPS_SPECIALTY_SYSTEM, XDS_AUTHOR_SPECIALTY_SYSTEM, professional_specialty
    from dmp_connector.signature import VihfRequest, build_vihf

    professional = SETTINGS.professional
    assert professional is not None and professional.specialty is not None
    assert professional.specialty == professional_specialty("SM26", professional.specialty.display_name)
    data = cda_document()
    author_code = parse_xml(data).find(".//{urn:hl7-org:v3}assignedAuthor/{urn:hl7-org:v3}code")
    assert author_code is not None
    assert (author_code.get("code"), author_code.get("codeSystem")) == ("G15_10/SM26", XDS_AUTHOR_SPECIALTY_SYSTEM)
    entry = document_entry(extract_metadata(data))
    (specialty,) = entry.authors[0].specialties
    assert specialty.startswith("G15_10/SM26^") and specialty.endswith(f"^{XDS_AUTHOR_SPECIALTY_SYSTEM}")
    vihf = build_vihf(
        SETTINGS, signer(), VihfRequest(patient_resource_id=entry.patient_id.text if entry.patient_id else None)
    )
    roles = [(role.get("code"), role.get("codeSystem")) for role in vihf.iter("{urn:hl7-org:v3}Role")]
    assert ("SM26", RPPS_SPECIALTY_SYSTEM) in roles
    assert all(system not in (XDS_AUTHOR_SPECIALTY_SYSTEM,) for _, system in roles)
    with pytest.raises(ValueError, match=r"RPPS code under 1\.2\.250\.1\.71\.4\.2\.5"):
        professional.model_validate(
            {**professional.model_dump(), "specialty": Code.of("SM26", XDS_AUTHOR_SPECIALTY_SYSTEM)}
        )


def test_a_deposit_checks_the_body_once_and_keeps_nothing_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from dmp_connector import xml

    data = cda_document("x" * 20000)  # a body above the size from which a scan is remembered
    scans: list[int] = []
    real = xml._base64_spaces

    def counted(*args: object) -> int | None:
        scans.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(xml, "_base64_spaces", counted)
    prepare_deposit(data, settings=SETTINGS, signer=signer(), patient=PATIENT, submission_time=WHEN)
    assert len(scans) == 1  # the metadata read scanned it, the signature's manifest was given its answer
    assert getattr(xml._LOCAL, "base64_memo", xml._OFF) is xml._OFF  # and the document was let go
    extract_metadata(data)
    extract_metadata(data)
    assert len(scans) == 3  # outside a deposit, nothing is remembered
