"""A rebuilt document raises no finding its original does not: the project's validator and the kit's engine.

For every example of the 2025 ANS kit, the original and its new version (new id, version,
``relatedDocument``, effectiveTime) go through the whole validator (structural rules, the
kit's schema and schematrons); so does the document as read (``build(parse(x))``) where it
is not element for element the original (``test_examples_roundtrip`` proves the others
are): a kit defect after its fix, a self-presenting document. Every error of a rebuilt form
must be an error of the original at the same place, or be in ``JUSTIFIED`` with its reason.
The same forms also go through the kit's own engine (``kit_engine``: the ISO skeleton of
``schematrons/moteur``) for the volet's schematron; the kit-wide schematrons go through the
project's compiler only here, which ``test_kit_engine`` holds to the kit's engine on every
example.
The whole kit runs with ``-m kit_exhaustive`` (as ``.ci/run`` does); the default run takes
one example of each kind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from dmp_connector.cda import ClinicalDocument, build
from dmp_connector.cda.validation import CdaValidator, FindingSeverity, ValidationReport
from dmp_connector.config import CdaSettings

from .conftest import EXAMPLES, KIT
from .kit_engine import kit_findings, volet_schematron
from .test_examples_roundtrip import KIT_DEFECTS, buildable, new_version

NAMES = sorted(p.name for p in EXAMPLES.glob("*.xml")) if EXAMPLES.is_dir() else []
FAST = (
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    "VSM_1.4_2022.01.xml",
    "LDL-SES_2022.01.xml",
    "BIO-CR-BIO_2021.01_Auto-Presentable.xml",
    "CSE-CS24_2025.01.xml",
    "IPS-FR_2024.01.xml",
)
# The rules about the file rather than the document: a self-presenting original is a stylesheet
# (document.root finds it inside), and build() writes no byte order mark.
_FILE_RULES = frozenset({"document.root", "document.bom"})

_GEN_092 = (
    "schematron",
    "terminologie:pattern-0",
    "/cda:ClinicalDocument[1]/cda:component[1]/cda:structuredBody[1]/cda:component[6]/cda:section[1]/cda:entry[4]"
    "/cda:procedure[1]/cda:entryRelationship[3]/cda:observation[1]/cda:value[1]",
)
JUSTIFIED: dict[str, tuple[set[tuple[str, str, str]], str]] = {
    "CANCER-PPS_2022.01_Autopresentable.xml": (
        {_GEN_092},
        "the kit's terminology rule matches value[@xsi:type='CD'] as a string: the original's xsi:type=\"c:CD\" "
        'escapes it, the same value written xsi:type="CD" (the CDA namespace as default) does not, and the '
        "example's code GEN-092 is not in TerminologieCISIS: a finding about the example the prefix hid",
    ),
}
"""New errors a rebuilt form may have, per example, with the reason (none is the round trip's doing)."""


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    if not EXAMPLES.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    pytest.importorskip("saxonche")
    return CdaValidator(CdaSettings(kit_dir=KIT, cache_dir=tmp_path_factory.getbasetemp() / "rt-schematron-cache"))


def _errors(report: ValidationReport) -> set[tuple[str, str, str]]:
    """Errors as (layer, rule, place), the place relative to the ClinicalDocument (a stylesheet wraps some)."""
    out = set()
    for finding in report.findings:
        if finding.severity is not FindingSeverity.ERROR or finding.rule in _FILE_RULES:
            continue
        place = re.sub(r"^.*?(/cda:ClinicalDocument\[1\])", r"\1", finding.location or "")
        out.add((finding.layer.value, finding.rule, place))
    return out


def _kit_errors(data: bytes, validator: CdaValidator) -> set[tuple[str, str, str]]:
    """The kit's engine's errors for the volet schematron, as (schematron, message, node by name)."""
    path = volet_schematron(data, validator)
    if path is None:
        return set()
    return {
        (path.name, f.message, re.sub(r"^.*?(/ClinicalDocument)", r"\1", f.kit_location))
        for f in kit_findings(data, path)
        if f.severity == "error"
    }


def _check(
    name: str,
    validator: CdaValidator,
    example_files: Mapping[str, bytes],
    parsed_examples: Mapping[str, ClinicalDocument],
) -> None:
    document, _ = buildable(name, parsed_examples)
    original = _errors(validator.validate(example_files[name]))
    allowed = JUSTIFIED.get(name, (set(), ""))[0]
    forms = [("new version", build(new_version(document)))]
    if (
        name in KIT_DEFECTS
        or not example_files[name].lstrip().startswith(b"<?xml")
        or b"xsl:stylesheet" in (example_files[name][:2000])
    ):
        forms.append(("as read", build(document)))
    original_kit = _kit_errors(example_files[name], validator)
    for label, rebuilt in forms:
        new = _errors(validator.validate(rebuilt)) - original - allowed
        assert not new, f"{label}: findings the original does not have: {sorted(new)[:5]}"
        new_kit = _kit_errors(rebuilt, validator) - original_kit
        assert not new_kit, f"{label}: the kit's engine finds what it does not in the original: {sorted(new_kit)[:5]}"


@pytest.mark.parametrize("name", FAST)
def test_rebuilt_examples_raise_nothing_new(
    name: str,
    validator: CdaValidator,
    example_files: Mapping[str, bytes],
    parsed_examples: Mapping[str, ClinicalDocument],
) -> None:
    _check(name, validator, example_files, parsed_examples)


@pytest.mark.kit_exhaustive
@pytest.mark.parametrize("name", [n for n in NAMES if n not in FAST])
def test_every_rebuilt_example_raises_nothing_new(
    name: str,
    validator: CdaValidator,
    example_files: Mapping[str, bytes],
    parsed_examples: Mapping[str, ClinicalDocument],
    request: pytest.FixtureRequest,
) -> None:
    if "kit_exhaustive" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the whole kit runs with -m kit_exhaustive (as .ci/run does)")
    _check(name, validator, example_files, parsed_examples)


def test_the_comparison_sees_a_new_finding(
    validator: CdaValidator, example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    # A control: a rebuilt document with an error its original lacks is caught (title emptied by hand).
    name = "VSM_1.4_2022.01.xml"
    data = build(parsed_examples[name])
    start = data.index(b"<title>") + len(b"<title>")
    end = data.index(b"</title>", start)
    broken = data[:start] + data[end:]
    new = _errors(validator.validate(broken)) - _errors(validator.validate(example_files[name]))
    assert any(rule == "header.title" for _, rule, _ in new)
