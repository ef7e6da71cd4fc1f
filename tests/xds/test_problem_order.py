"""Length problems are listed in the order of the values (issue 22 checks a code's three values at once)."""

from __future__ import annotations

from dmp_connector.codes import Code
from dmp_connector.xds import Folder, MetadataProfile, Slot, SubmissionRequest, xds_code
from dmp_connector.xds.model import _check_lengths, _code_length_problems, _code_lengths
from tests.xds.conftest import PATIENT, make_document, make_submission_set

LONG = "x" * 1100


def _long(problems: list[str]) -> list[str]:
    return [p for p in problems if "is longer than" in p]


def test_every_over_long_value_is_named_in_order() -> None:
    code = xds_code(LONG[:300], "1.2.3", LONG)
    entry = make_document(
        title=LONG,
        class_code=code,
        type_code=xds_code("11488-4", "2.16.840.1.113883.6.1", LONG),
        source_patient_info=("PID-5|" + LONG[:300],),
        extra_slots=(Slot(name="urn:x:s", values=(LONG[:300],)),),
    )
    ss = make_submission_set(
        title=LONG, content_type_code=code, extra_slots=(Slot(name="urn:x:t", values=(LONG[:300],)),)
    )
    folder = Folder(entry_uuid="Folder01", unique_id="1.2.3.4", patient_id=PATIENT, title=LONG, codes=(code,))
    request = SubmissionRequest.model_construct(
        submission_set=ss, documents=(entry,), folders=(folder,), associations=(), object_refs=(), contents={}
    )
    assert _long(request.problems(MetadataProfile.XDS)) == [
        "submission set: title is longer than the 1024 characters ebRIM allows",
        "submission set: contentTypeCode is longer than the 256 characters ebRIM allows",
        "submission set: contentTypeCode display name is longer than the 1024 characters ebRIM allows",
        "submission set: slot urn:x:t is longer than the 256 characters ebRIM allows",
        "document Document01: title is longer than the 1024 characters ebRIM allows",
        "document Document01: class_code is longer than the 256 characters ebRIM allows",
        "document Document01: class_code display name is longer than the 1024 characters ebRIM allows",
        "document Document01: type_code display name is longer than the 1024 characters ebRIM allows",
        "document Document01: sourcePatientInfo is longer than the 256 characters ebRIM allows",
        "document Document01: slot urn:x:s is longer than the 256 characters ebRIM allows",
        "folder Folder01: title is longer than the 1024 characters ebRIM allows",
        "folder Folder01: codeList is longer than the 256 characters ebRIM allows",
        "folder Folder01: codeList display name is longer than the 1024 characters ebRIM allows",
    ]


def test_a_codes_problems_are_those_of_its_three_values() -> None:
    for code in (
        xds_code("a", "1.2", None),
        xds_code("a" * 257, "1.2", "d"),
        xds_code("a", "1.2", "d" * 1025),
        xds_code("a" * 256, "1." + "2" * 255, "d" * 1024),
        Code.of("a" * 300, "1.2.3", "d" * 2000),
    ):
        assert _code_length_problems("w", "n", code) == _check_lengths("w", _code_lengths("n", code))
