"""The 820 messages of the NIST XDS toolkit (``../shared/xds/nist``): read, written back, judged.

The corpus is run once per session (a few seconds); each test below checks one promise over all of
it and, when it fails, lists every message that breaks it. ``data/nist_verdicts.tsv`` is the
committed verdict table: the project's verdict beside NIST's expectation for every message, and
for each disagreement the ITI TF-3 (or TF-2b, ebRIM, XML) clause that justifies it. Rewrite it
after a deliberate change with ``.venv/bin/python -m tests.xds.nist_corpus`` and review the diff.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from dmp_connector.soap import resolve_xop
from dmp_connector.xds import (
    ASSOCIATION_DOCUMENTATION_SCHEME,
    DocumentEntryType,
    MetadataProfile,
    SubmissionSetStatus,
    build_provide_and_register_request,
    parse_provide_and_register_request,
    parse_submit_objects_request,
)
from dmp_connector.xml import to_bytes
from tests.xds.conftest import Schemas
from tests.xds.nist_corpus import (
    NIST,
    Outcome,
    justification,
    manifest,
    read_table,
    run_corpus,
    table_rows,
)

# Why the readers refuse a message: one rule each (regex on the typed error's message → the rule).
REFUSALS: tuple[tuple[str, str], ...] = (
    (r"not well-formed XML", "XML 1.0 2.1"),
    (r"has an unknown status \(none\)", "ebRS 3.0 rs.xsd: RegistryResponse/@status is required"),
    (r"the Association has no id attribute", "ebRIM 3.0 rim.xsd: IdentifiableType/@id is required"),
    (r"holds 0 submission sets", "ITI TF-3 4.1.4: a submission holds exactly one SubmissionSet"),
    (r"slot \S+ appears twice", "ebRIM 3.0: a slot name is unique within its object"),
    (r"source_patient_id: .*XDS CX", "ITI TF-3 4.2.3.1.7: CX with an &<OID>&ISO assigning authority"),
    (r"hash: String should match", "ITI TF-3 4.2.3.2.11: hash is the SHA-1 in hexadecimal"),
    (r"XDS XON|an XCN needs", "ITI TF-3 4.2.3.1.7: the XON and XCN data types"),
    (r"has no RepositoryUniqueId", "ITI TF-2b 3.43.4.2.2: DocumentResponse/RepositoryUniqueId is required"),
    (r"neither an xop:Include nor valid base64", "ITI TF-2b 3.43.4.2.2 / XOP: the document is base64 or an Include"),
)


@pytest.fixture(scope="module")
def outcomes(schemas: Schemas) -> list[Outcome]:
    return run_corpus({"lcm": schemas.lcm, "query": schemas.query, "rs": schemas.rs, "xdsb": schemas.xdsb})


def _report(failures: list[str]) -> str:
    return f"{len(failures)} messages:\n" + "\n".join(failures[:40])


def test_the_whole_corpus_is_run(outcomes: list[Outcome]) -> None:
    assert len(outcomes) == 820
    kinds = Counter(o.kind for o in outcomes)
    assert kinds == {"SOR": 702, "PNR": 41, "AQR": 10, "RR": 5, "RDSR": 60, "NOTWF": 2}


def test_no_message_raises_an_untyped_exception(outcomes: list[Outcome]) -> None:
    failures = [f"{o.message} {o.kind}: {o.untyped}" for o in outcomes if o.untyped]
    assert not failures, _report(failures)


def test_every_refusal_is_typed_and_names_one_rule(outcomes: list[Outcome]) -> None:
    failures = []
    for outcome in outcomes:
        if outcome.refused:
            rules = [rule for pattern, rule in REFUSALS if re.search(pattern, outcome.refused)]
            if len(rules) != 1:
                failures.append(f"{outcome.message} {outcome.kind}: {outcome.refused} -> {rules}")
    assert not failures, _report(failures)
    # A change in how many are refused is a change to review in the verdict table.
    assert sum(1 for o in outcomes if o.refused) == 56


def test_every_message_read_is_written_back_schema_valid(outcomes: list[Outcome]) -> None:
    failures = [f"{o.message} {o.kind}: {o.schema_errors}" for o in outcomes if o.schema_errors]
    assert not failures, _report(failures)


def test_every_message_read_is_written_back_without_loss(outcomes: list[Outcome]) -> None:
    """Object by object: slots, classifications, identifiers, names with lang/charset, id/lid, home, refs."""
    failures = [f"{o.message} {o.kind}: {o.lost[:3]}" for o in outcomes if o.lost]
    assert not failures, _report(failures)
    read = [o for o in outcomes if not o.refused]
    assert len(read) == 820 - 56


def test_the_verdict_table_is_the_committed_one(outcomes: list[Outcome]) -> None:
    """The table in data/nist_verdicts.tsv is what this code decides today, message by message."""
    now, committed = table_rows(outcomes), read_table()
    changed = [f"now {a}\nwas {b}" for a, b in zip(now, committed, strict=True) if a != b]
    assert len(now) == len(committed) == 820
    assert not changed, _report(changed)


def test_every_disagreement_with_nist_names_its_clause(outcomes: list[Outcome]) -> None:
    failures = []
    disagreements = 0
    for outcome in outcomes:
        if outcome.nist in ("Success", "Failure") and outcome.nist != outcome.ours:
            disagreements += 1
            reason = justification(outcome)
            if reason == "UNEXPLAINED" or not re.search(r"(ITI TF-[23]|ebRIM|XML 1\.0)", reason):
                failures.append(f"{outcome.message}: NIST {outcome.nist}, ours {outcome.ours}: {outcome.reason}")
    assert not failures, _report(failures)
    agreed = sum(1 for o in outcomes if o.nist in ("Success", "Failure") and o.nist == o.ours)
    assert (agreed, disagreements) == (549, 118)


# ------------------------------------------------------------------------------------------
# The validator's rules, each on the NIST message that breaks it


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("460e8e4d585e", r"associationType \S+:APND_TXFM is not an XDS association type"),
        ("48d68731de97", r"SubmissionSetStatus \S+ is neither Original nor Reference"),
        ("d74da43456a1", r"(Original|New)Status \S+ is not an availability status"),
        ("ca678d237617", r"NewStatus equals OriginalStatus"),
        ("b151daa4b497", r"PreviousVersion is not a version number"),
        ("e8b442ee97aa", r"a new version .* needs PreviousVersion"),
        ("23f1a111c71b", r"the submission set cannot be a member"),
        ("10ec8096e4ea", r"AssociationPropagation is neither yes nor no"),
        ("6bd8307a3a02", r"PreviousVersion belongs on the HasMember of a new version only"),
        ("44c0faa7e77a", r"two entries of the submission are new versions of the same logicalId"),
        ("afd52b45ee21", r"PreviousVersion names a new version, which must be an entry of the submission"),
        ("a5d17e219a03", r"a HasMember from the submission set to a document needs SubmissionSetStatus"),
    ],
)
def test_the_validator_finds_what_nist_refuses(message: str, problem: str) -> None:
    entry = manifest()[message]
    assert {s for step in entry["nist_expectation"] for s in step["status"]} == {"Failure"}
    request = parse_submit_objects_request((NIST / entry["file"]).read_bytes())
    problems = request.problems(MetadataProfile.XDS)
    assert any(re.search(problem, p) for p in problems), problems


def test_submission_set_status_is_required_only_towards_documents() -> None:
    """TF-3: a HasMember to a Folder or to an Association carries no SubmissionSetStatus (NIST accepts these)."""
    checked = 0
    for message, entry in manifest().items():
        if entry["kind"] != "SOR" or "Failure" in {s for step in entry["nist_expectation"] for s in step["status"]}:
            continue
        try:
            request = parse_submit_objects_request((NIST / entry["file"]).read_bytes())
        except Exception:
            continue
        ss, folders = request.submission_set.entry_uuid, {f.entry_uuid for f in request.folders}
        bare = [
            a
            for a in request.associations
            if a.source_object == ss and a.target_object in folders and a.submission_set_status is None
        ]
        if bare:
            checked += 1
            assert not any("SubmissionSetStatus" in p for p in request.problems()), message
    assert checked > 0


def test_limited_metadata_entries_are_read_and_flagged() -> None:
    """ITI-41 with limited metadata (XDR/XDM, what MSSanté's XDM uses): no patientId, flagged, not refused."""
    request, _ = parse_provide_and_register_request((NIST / "messages" / "32a2926c860b.xml").read_bytes())
    (entry,) = request.documents
    assert entry.limited_metadata and request.submission_set.limited_metadata
    problems = request.problems()
    assert not any("patientId" in p for p in problems), problems
    written = parse_provide_and_register_request(
        to_bytes(build_provide_and_register_request(request.model_copy(update={"contents": {entry.entry_uuid: "a@b"}})))
    )[0]
    assert written.documents[0].limited_metadata and written.documents[0].patient_id is None


def test_slot_values_are_trimmed() -> None:
    """A value on its own indented line (``<Value>  Original  </Value>``) is the value itself."""
    request = parse_submit_objects_request((NIST / "messages" / "467f5dfe89b9.xml").read_bytes())
    assert request.associations[0].submission_set_status is SubmissionSetStatus.ORIGINAL


def test_association_classifications_and_lang_survive() -> None:
    request = parse_submit_objects_request((NIST / "messages" / "3b10cc07125e.xml").read_bytes())
    (documentation,) = request.associations[0].classifications
    assert documentation.scheme == ASSOCIATION_DOCUMENTATION_SCHEME
    assert documentation.node_representation == "Additional_Information"


def test_inline_documents_are_written_and_read_back(schemas: Schemas) -> None:
    request, elements = parse_provide_and_register_request((NIST / "messages" / "cd8ae4154eef.xml").read_bytes())
    data = {entry.entry_uuid: f"document {entry.entry_uuid}".encode() for entry in request.documents}
    element = build_provide_and_register_request(request.model_copy(update={"contents": {}}), inline=data)
    schemas.assert_valid(schemas.xdsb, element)
    again, again_elements = parse_provide_and_register_request(to_bytes(element))
    assert again.contents == {}
    assert {i: resolve_xop(e, {}).read() for i, e in again_elements.items()} == data
    assert set(elements) == set(again_elements)


def test_an_on_demand_entry_needs_no_creation_time() -> None:
    """TF-3: an On-Demand DocumentEntry has no creationTime (it is made when retrieved); NIST accepts these."""
    request = parse_submit_objects_request((NIST / "messages" / "7ef4f2ee48a3.xml").read_bytes())
    on_demand = [d for d in request.documents if d.object_type is DocumentEntryType.ON_DEMAND]
    assert on_demand and all(d.creation_time is None for d in on_demand)
    assert request.problems() == []
