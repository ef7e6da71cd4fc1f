"""Every example of the 2025 ANS kit comes back from parse → build with nothing lost or changed.

The comparison is element by element (``xmldiff``): names, attributes, text, white space,
comments and processing instructions, in order. The normalisations allowed are committed
here (``NORMALISATIONS``), each with its reason; there is no other.

Eleven examples break a rule the builder enforces (``KIT_DEFECTS``): ``build`` refuses them,
and after the one fix the rule needs they come back differing in that one place only.

A vendor also writes back *changed* documents (a new version, a corrected author): those
tests check that a change rewrites what it names and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from dmp_connector.cda import ClinicalDocument, InstanceId, NonXmlBody, Period, StructuredBody, build, new_oid, parse
from dmp_connector.cda.model import Narrative
from dmp_connector.errors import InvalidIdentifierError, ValidationError
from dmp_connector.ins import INS

from .conftest import EXAMPLES
from .xmldiff import HL7, clinical_document, differences, document_differences

NAMES = sorted(p.name for p in EXAMPLES.glob("*.xml")) if EXAMPLES.is_dir() else []

NORMALISATIONS = {
    "prefixes": "namespace prefixes are not compared (C14N 2.0 rewrites them too): build writes the CDA namespace as "
    "the default namespace where a self-presenting document uses c:; xsi:type is compared as the QName it names",
    "self-presenting": "a self-presenting document (an xsl:stylesheet holding the ClinicalDocument) is written as the "
    "ClinicalDocument it holds: the stylesheet is presentation, the DMP stores the CDA",
    "declaration": "documents are compared parsed: build writes the XML declaration with encoding UTF-8",
}
"""The only differences the round trip allows between a document and its rebuilt form."""

_WRONG_INS_KEY = "the INS key is wrong: the SDK never writes such an INS (fixed: the key recomputed)"
KIT_DEFECTS = {
    "CSE-CS24_2024.01.xml": _WRONG_INS_KEY,
    "CSE-CS24_2025.01.xml": _WRONG_INS_KEY,
    "CSE-CS8_2024.01.xml": _WRONG_INS_KEY,
    "CSE-CS8_2025.01.xml": _WRONG_INS_KEY,
    "CSE-CS9_2024.01.xml": _WRONG_INS_KEY,
    "CSE-CS9_2025.01.xml": _WRONG_INS_KEY,
    "CSE-MDE_2023.01.xml": _WRONG_INS_KEY,
    "OBP-SEM_2024.01.xml": _WRONG_INS_KEY,
    "OBP-SNE_2024.01.xml": _WRONG_INS_KEY,
    "SDM-MR_2025.01_nouveau-ne.xml": _WRONG_INS_KEY,
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml": "the encounter start 20200701134745 has no time zone, which CI-SIS forbids "
    "(fixed: +0200, Paris in July)",
}
"""Examples ``build`` refuses, why, and the one fix applied before comparing."""
WRONG_INS_KEY = frozenset(name for name, why in KIT_DEFECTS.items() if why == _WRONG_INS_KEY)

PATIENT_INS = "/ClinicalDocument/recordTarget[1]/patientRole[1]/id[1]"
# A changed value is written anew as the element its field names: here the whole effectiveTime (its indentation too).
ENCOUNTER_TIME = "/ClinicalDocument/componentOf[1]/encompassingEncounter[1]/effectiveTime[1]"


def _fixed(name: str, document: ClinicalDocument) -> tuple[ClinicalDocument, list[str]]:
    """The example with the one fix its defect needs, and the paths that fix changes."""
    if KIT_DEFECTS[name] == _WRONG_INS_KEY:
        identity = document.patient.identity
        assert identity.ins is not None and not identity.ins.key_valid
        with pytest.raises(InvalidIdentifierError):
            build(document)
        fixed = INS.from_parts(identity.ins.nir13, None, identity.ins.oid)
        patient = document.patient.model_copy(update={"identity": identity.updated(ins=fixed)})
        return document.model_copy(update={"patient": patient}), [PATIENT_INS]
    with pytest.raises(ValidationError) as caught:
        build(document)
    assert caught.value.problems == ("encounter.effective_time.low: a date-time without time zone",)
    period = document.encounter.effective_time
    assert period is not None and isinstance(period.low, datetime)
    low = period.low.replace(tzinfo=ZoneInfo("Europe/Paris"))
    encounter = document.encounter.model_copy(update={"effective_time": Period(low=low, high=period.high)})
    return document.model_copy(update={"encounter": encounter}), [ENCOUNTER_TIME]


def buildable(name: str, parsed: Mapping[str, ClinicalDocument]) -> tuple[ClinicalDocument, list[str]]:
    """The example as ``build`` takes it (its defect fixed, if any) and the paths the fix changes."""
    if name in KIT_DEFECTS:
        return _fixed(name, parsed[name])
    return parsed[name], []


WHEN = datetime(2026, 12, 7, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))


def new_version(document: ClinicalDocument) -> ClinicalDocument:
    """The next version of a read document: new id, same set, version + 1, replacing it, created at ``WHEN``."""
    return document.model_copy(
        update={
            "id": InstanceId(root=new_oid()),
            "set_id": document.set_id,
            "version": document.version + 1,
            "replaces": document.id,
            "effective_time": WHEN,
        }
    )


def test_the_kit_has_107_examples(example_files: Mapping[str, bytes]) -> None:
    assert len(example_files) == 107


@pytest.mark.parametrize("name", NAMES)
def test_example_comes_back_unchanged(
    name: str, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    document, expected = buildable(name, parsed_examples)
    rebuilt = build(document)
    assert document_differences(example_files[name], rebuilt) == expected
    again = parse(rebuilt)
    assert again == document
    assert build(again) == rebuilt, "build is deterministic"


@pytest.mark.parametrize("name", sorted(KIT_DEFECTS))
def test_a_fixed_defect_changes_exactly_its_value(
    name: str, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    document, _ = _fixed(name, parsed_examples[name])
    path = PATIENT_INS if name in WRONG_INS_KEY else ENCOUNTER_TIME + "/low[1]"
    original = clinical_document(etree.fromstring(example_files[name]))  # noqa: TID251 - the kit's file
    rebuilt = etree.fromstring(build(document))  # noqa: TID251 - our own output
    before, after = _at(original, path), _at(rebuilt, path)
    changed = {k for k in set(before.attrib) | set(after.attrib) if before.get(k) != after.get(k)}
    assert changed == ({"extension"} if name in WRONG_INS_KEY else {"value"})
    if name in WRONG_INS_KEY:
        assert after.get("extension", "")[:13] == before.get("extension", "")[:13], "only the key changes"
    else:
        assert after.get("value") == before.get("value", "") + "+0200"


def _at(root: etree._Element, path: str) -> etree._Element:
    steps = [s.split("[")[0] for s in path.split("/")[2:]]
    found = root.find("/".join(f"{{{HL7}}}{s}" for s in steps))
    assert found is not None
    return found


def _without(root: etree._Element, *names: str) -> etree._Element:
    """A copy of a document without some of its header elements (to compare the rest)."""
    copy = etree.fromstring(etree.tostring(clinical_document(root)))  # noqa: TID251 - already parsed
    for child in list(copy):
        if isinstance(child.tag, str) and etree.QName(child).localname in names:
            copy.remove(child)
    return copy


@pytest.mark.parametrize("name", NAMES)
def test_a_new_version_rewrites_its_four_header_elements_and_nothing_else(
    name: str,
    example_files: Mapping[str, bytes],
    parsed_examples: Mapping[str, ClinicalDocument],
    assert_schema_valid: Callable[[bytes], None],
) -> None:
    document, fixes = buildable(name, parsed_examples)
    version = new_version(document)
    rebuilt = build(version)
    assert_schema_valid(rebuilt)
    header = ("id", "effectiveTime", "versionNumber", "relatedDocument")
    original = etree.fromstring(example_files[name])  # noqa: TID251 - the kit's file
    stripped = _without(etree.fromstring(rebuilt), *header)  # noqa: TID251 - our own output
    assert differences(_without(original, *header), stripped, "/ClinicalDocument") == fixes
    read = parse(rebuilt)
    assert (read.id, read.version, read.replaces, read.effective_time) == (
        version.id,
        document.version + 1,
        document.id,
        WHEN,
    )
    assert read.set_id == document.set_id


@pytest.mark.parametrize("name", NAMES)
def test_a_corrected_author_time_rewrites_that_time_only(
    name: str, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    document, fixes = buildable(name, parsed_examples)
    author = document.authors[0].model_copy(update={"time": datetime(2026, 1, 2, 3, 4, tzinfo=ZoneInfo("UTC"))})
    changed = document.model_copy(update={"authors": (author, *document.authors[1:])})
    rebuilt = build(changed)
    found = document_differences(example_files[name], rebuilt)
    assert sorted(found) == sorted([*fixes, "/ClinicalDocument/author[1]/time[1]"])
    assert parse(rebuilt).authors[0].time == author.time


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_narrative_rewrites_that_narrative_only(
    name: str, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    document = parsed_examples[name]
    if name in KIT_DEFECTS or not isinstance(document.body, StructuredBody):
        pytest.skip("a PDF body, or an example build refuses as it is")
    sections = document.body.sections
    index = next((i for i, s in enumerate(sections) if s.text is not None), None)
    if index is None:
        pytest.skip("no top-level section with a narrative")
    section = sections[index].model_copy(update={"text": Narrative.from_paragraphs("Texte corrigé")})
    body = document.body.model_copy(update={"sections": (*sections[:index], section, *sections[index + 1 :])})
    rebuilt = build(document.model_copy(update={"body": body}))
    path = f"/ClinicalDocument/component[1]/structuredBody[1]/component[{index + 1}]/section[1]/text[1]"
    assert document_differences(example_files[name], rebuilt) == [path]


def test_pdf_bodies_come_back_with_their_base64_layout(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    # One example writes its base64 on one line, others end it with a line break and indentation (CRLF in one).
    pdf_examples = [n for n, d in parsed_examples.items() if isinstance(d.body, NonXmlBody) and n not in KIT_DEFECTS]
    assert len(pdf_examples) >= 3
    for name in pdf_examples:
        assert build(parsed_examples[name]) != b""
        assert document_differences(example_files[name], build(parsed_examples[name])) == []
