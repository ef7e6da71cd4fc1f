"""The schematron compiler: ISO semantics on small schematrons, the kit's defects, the volet catalog, the caches."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from dmp_connector.cda._schematron import (
    KitDefectError,
    RawResult,
    SchematronEngine,
    VoletSchematron,
    build_catalog,
    compile_schematron,
    expand,
    select_volets,
)
from dmp_connector.errors import ConfigurationError

KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025"
SCHEMATRONS = KIT / "schematrons"
EXAMPLES = KIT / "ExemplesCDA"
HL7 = "urn:hl7-org:v3"

needs_kit = pytest.mark.skipif(not SCHEMATRONS.is_dir(), reason=f"the ANS kit is not at {KIT}")


def _sch(body: str, *, extra_ns: str = "", attrs: str = "") -> str:
    return (
        '<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2" ' + attrs + ">"
        '<ns prefix="cda" uri="urn:hl7-org:v3"/>' + extra_ns + body + "</schema>"
    )


@pytest.fixture(scope="module")
def engine_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], SchematronEngine]:
    pytest.importorskip("saxonche")

    def make(kit_dir: Path) -> SchematronEngine:
        return SchematronEngine(kit_dir, cache_dir=None)

    return make


def _run(engine: SchematronEngine, sch: Path, document: str) -> list[RawResult]:
    loaded = engine.load(sch, sch.stem)
    results, _ = engine.run(loaded, engine.document(document))
    return results


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


DOC = (
    '<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="X" codeSystem="1.2"/>'
    '<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="1"/>'
    '<id root="1.2.3" extension="2"/></patientRole></recordTarget></ClinicalDocument>'
)


def test_asserts_reports_lets_and_messages(tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern id="p"><let name="wanted" value="\'Y\'"/>'
            '<rule context="cda:ClinicalDocument"><let name="found" value="cda:code/@code"/>'
            '<assert test="cda:code/@code = $wanted" role="warning" id="code-is-y">code <value-of select="$found"/>'
            " is not <emph>Y</emph> in <name/></assert>"
            '<report test="count(.//cda:id) = 2">two ids under <name path="cda:recordTarget"/></report>'
            '<assert test="cda:title">no title</assert></rule></pattern>'
        ),
    )
    results = _run(engine_for(tmp_path), sch, DOC)
    messages = {r.check.ident if r.check and r.check.ident else r.message: r for r in results}
    assert len(results) == 3
    first = messages["code-is-y"]
    assert first.message == "code X is not Y in ClinicalDocument"
    assert first.check is not None and first.check.role == "warning" and first.check.test == "cda:code/@code = $wanted"
    assert first.location == "/cda:ClinicalDocument[1]"
    report = messages["two ids under recordTarget"].check
    assert report is not None and report.kind == "report"
    assert "no title" in messages


def test_messages_are_the_kits_word_for_word(tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]) -> None:
    """As the ISO skeleton writes them (found by tests/cda/test_kit_engine.py): white space alone between two
    values is dropped, and a value keeps its own spaces (a display name ending with one)."""
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern id="p"><rule context="cda:code">'
            '<assert test="false()">Found: &lt;<value-of select="name()"/>\n      '
            '<value-of select="for $a in (@* except (@code, @displayName, @codeSystem))'
            " return concat(' ', name($a))\"/>&gt;</assert>"
            '<assert test="false()">[<value-of select="@code"/>:<value-of select="@displayName"/>:'
            '<value-of select="@codeSystem"/>]</assert>'
            "</rule></pattern>"
        ),
    )
    document = (
        '<ClinicalDocument xmlns="urn:hl7-org:v3">'
        '<code code="X" displayName="Dysphagie " codeSystem="1.2"/></ClinicalDocument>'
    )
    messages = sorted(r.message for r in _run(engine_for(tmp_path), sch, document))
    assert messages == ["Found: <code>", "[X:Dysphagie :1.2]"]
    bare = _write(
        tmp_path / "schematrons" / "t.sch",
        _sch(
            '<pattern id="p"><rule context="cda:code"><assert test="false()">'
            '<value-of select="@code"/> <value-of select="@codeSystem"/></assert></rule></pattern>'
        ),
    )
    assert [r.message for r in _run(engine_for(tmp_path), bare, document)] == ["X1.2"]


def test_first_matching_rule_of_a_pattern_wins(tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern id="ids">'
            '<rule context="cda:id[@root=\'1.2.3\']"><assert test="false()">specific</assert></rule>'
            '<rule context="cda:id"><assert test="false()">generic</assert></rule></pattern>'
            '<pattern id="other"><rule context="cda:id"><assert test="false()">other pattern</assert></rule></pattern>'
        ),
    )
    messages = sorted(r.message for r in _run(engine_for(tmp_path), sch, DOC))
    assert messages == ["generic", "other pattern", "other pattern", "specific"]


def test_default_phase_selects_patterns(tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<phase id="main"><active pattern="on"/></phase>'
            '<pattern id="on"><rule context="/"><assert test="false()">on</assert></rule></pattern>'
            '<pattern id="off"><rule context="/"><assert test="false()">off</assert></rule></pattern>',
            attrs='defaultPhase="main"',
        ),
    )
    assert [r.message for r in _run(engine_for(tmp_path), sch, DOC)] == ["on"]


def test_abstract_patterns_substitute_whole_parameter_names(
    tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]
) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern abstract="true" id="has"><rule context="$elt">'
            '<assert test="@*[name() = $att]"><value-of select="$elt_label"/> lacks @<value-of select="$att"/></assert>'
            "</rule></pattern>"
            '<pattern is-a="has" id="code-system"><param name="elt" value="cda:code"/>'
            '<param name="att" value="\'displayName\'"/><param name="elt_label" value="\'the code\'"/></pattern>'
        ),
    )
    schema = expand(sch)
    assert schema.patterns[0].rules[0].context == "cda:code"
    assert [r.message for r in _run(engine_for(tmp_path), sch, DOC)] == ["the code lacks @displayName"]


def test_abstract_rules_become_templates_unless_they_share_variables(
    tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]
) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern><rule abstract="true" id="II"><assert test="@extension">an id without extension</assert>'
            '<assert test="every $c in string-to-codepoints(@root) satisfies $c != 36">a $ in the root</assert></rule>'
            '<rule abstract="true" id="uses-caller"><assert test="@root != $forbidden">forbidden root</assert></rule>'
            '<rule context="cda:patientRole/cda:id"><let name="forbidden" value="\'1.2.3\'"/>'
            '<extends rule="II"/><extends rule="uses-caller"/></rule></pattern>'
        ),
    )
    schema = expand(sch)
    assert set(schema.abstract_rules) == {"II"}  # "uses-caller" reads $forbidden: copied into the rule
    messages = sorted(r.message for r in _run(engine_for(tmp_path), sch, DOC))
    assert messages == ["forbidden root"]


def test_diagnostics_are_appended_to_the_message(
    tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]
) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern><rule context="cda:code"><assert test="@displayName" diagnostics="d1">no label</assert>'
            '</rule></pattern><diagnostics><diagnostic id="d1">code <value-of select="@code"/></diagnostic>'
            "</diagnostics>"
        ),
    )
    assert [r.message for r in _run(engine_for(tmp_path), sch, DOC)] == ["no label — code X"]


def test_a_rule_raising_an_error_is_one_result_not_an_abort(
    tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]
) -> None:
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern id="bad"><rule context="cda:patientRole"><assert test="xs:integer(cda:id[1]/@root) gt 0">x'
            '</assert></rule></pattern><pattern id="good"><rule context="/"><assert test="false()">still run'
            "</assert></rule></pattern>",
            extra_ns='<ns prefix="xs" uri="http://www.w3.org/2001/XMLSchema"/>',
        ),
    )
    results = _run(engine_for(tmp_path), sch, DOC)
    error = next(r for r in results if r.check is None)
    assert error.pattern == "bad" and "could not be evaluated" in error.message and "FORG0001" in error.message
    assert any(r.message == "still run" for r in results)


def test_includes_resolve_regardless_of_case(tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]) -> None:
    _write(
        tmp_path / "schematrons" / "include" / "Entrees" / "E_x.sch",
        '<pattern xmlns="http://purl.oclc.org/dsdl/schematron" id="x">'
        '<rule context="/"><assert test="false()">included</assert></rule></pattern>',
    )
    sch = _write(tmp_path / "schematrons" / "s.sch", _sch('<include href="include/entrees/E_X.sch"/>'))
    compiled = compile_schematron(sch, name="s")
    assert any("another case" in fix for fix in compiled.fixes)
    assert [r.message for r in _run(engine_for(tmp_path), sch, DOC)] == ["included"]


def test_an_empty_include_is_a_kit_defect(tmp_path: Path) -> None:
    _write(tmp_path / "schematrons" / "include" / "V_2023.01", "")
    sch = _write(tmp_path / "schematrons" / "s.sch", _sch('<include href="include/V_2023.01/Entete.sch"/>'))
    with pytest.raises(KitDefectError, match=r"empty file V_2023\.01 where its folder should be"):
        expand(sch)


def test_documents_resolve_against_the_schematron_not_the_cache(
    tmp_path: Path, engine_for: Callable[[Path], SchematronEngine]
) -> None:
    _write(
        tmp_path / "jeuxDeValeurs" / "JDV_X.xml",
        '<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet id="1.2.3.4"><ConceptList>'
        '<Concept code="X" codeSystem="1.2"/></ConceptList></ValueSet></RetrieveValueSetResponse>',
    )
    sch = _write(
        tmp_path / "schematrons" / "s.sch",
        _sch(
            '<pattern><let name="jdv" value="\'../jeuxDeValeurs/JDV_x.xml\'"/><rule context="cda:code">'
            '<assert test="document($jdv)//svs:Concept[@code = current()/@code]">not in the set</assert>'
            "<assert test=\"doc('voc-1.2.3.4-DYNAMIC.xml')//concept[@code = 'Y']\">Y is not in the vocabulary</assert>"
            "</rule></pattern>",
            extra_ns='<ns prefix="svs" uri="urn:ihe:iti:svs:2008"/>',
        ),
    )
    engine = engine_for(tmp_path)
    results = _run(engine, sch, DOC)
    # The JDV path's case was fixed; the missing ART-DECOR vocabulary was rebuilt from the value set 1.2.3.4.
    assert [r.message for r in results] == ["Y is not in the vocabulary"]
    fixes = engine.load(sch, "s").compiled.fixes
    assert any("rebuilt from the kit's value set 1.2.3.4" in fix for fix in fixes)


def test_disk_cache_is_used_and_checked(tmp_path: Path) -> None:
    pytest.importorskip("saxonche")
    include = _write(
        tmp_path / "schematrons" / "inc.sch",
        '<pattern xmlns="http://purl.oclc.org/dsdl/schematron"><rule context="/">'
        '<assert test="false()">one</assert></rule></pattern>',
    )
    sch = _write(tmp_path / "schematrons" / "s.sch", _sch('<include href="inc.sch"/>'))
    cache = tmp_path / "cache"
    first = SchematronEngine(tmp_path, cache_dir=cache).load(sch, "s")
    assert first.compiled.seconds > 0 and list(cache.rglob("s-*.json"))
    again = SchematronEngine(tmp_path, cache_dir=cache).load(sch, "s")
    assert again.compiled.seconds == 0 and again.compiled.xslt == first.compiled.xslt
    include.write_text(include.read_text(encoding="utf-8").replace("one", "two"), encoding="utf-8")
    changed = SchematronEngine(tmp_path, cache_dir=cache)
    assert changed.load(sch, "s").compiled.seconds > 0  # an included file changed: compiled again
    assert [r.message for r in _run(changed, sch, DOC)] == ["two"]


def test_saxon_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dmp_connector.cda import _schematron

    monkeypatch.setattr(_schematron, "_saxon", None)
    monkeypatch.setitem(__import__("sys").modules, "saxonche", None)
    sch = _write(tmp_path / "schematrons" / "s.sch", _sch("<pattern/>"))
    with pytest.raises(ConfigurationError, match="Saxon") as caught:
        SchematronEngine(tmp_path).load(sch, "s")
    assert "validation" in str(caught.value.hint)


# --- the kit ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> tuple[VoletSchematron, ...]:
    if not SCHEMATRONS.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    return build_catalog(SCHEMATRONS)


@needs_kit
def test_catalog_reads_every_volet_from_its_schematron(catalog: tuple[VoletSchematron, ...]) -> None:
    assert len(catalog) == 63
    for entry in catalog:
        assert entry.template_ids, f"{entry.name}: no templateId found in its header rules"
    # The 2025 kit runs every volet schematron (the 2025-02 kit could not run BIO-CR-BIO_2023.01).
    assert {e.name: e.defect for e in catalog if e.defect} == {}
    vsm = next(e for e in catalog if e.name == "VSM_2023.01")
    assert vsm.template_ids == {"1.2.250.1.213.1.1.1.13"} and vsm.codes == {"SYNTH"}


def _oxygen_volet(path: Path) -> str | None:
    tree = etree.parse(str(path))  # noqa: TID251 - the kit's own example files
    for pi in tree.getroot().itersiblings(preceding=True):
        text = str(pi.text) if isinstance(pi, etree._ProcessingInstruction) and pi.target == "oxygen" else ""
        found = re.search(r"CI-SIS_(.+?)\.sch", text) if "/profils/" not in text.lower() else None
        if found:
            return found.group(1)
    return None


@needs_kit
def test_the_volet_picked_is_the_one_the_examples_name(catalog: tuple[VoletSchematron, ...]) -> None:
    """Ground truth: each example's ``<?oxygen SCHSchema=…?>`` processing instructions."""
    checked = 0
    for path in sorted(EXAMPLES.glob("*.xml")):
        root = etree.parse(str(path)).getroot()  # noqa: TID251 - the kit's own example files
        document = root if root.tag == f"{{{HL7}}}ClinicalDocument" else next(root.iter(f"{{{HL7}}}ClinicalDocument"))
        template_ids = [(t.get("root", ""), t.get("extension")) for t in document.findall(f"{{{HL7}}}templateId")]
        code = document.find(f"{{{HL7}}}code")
        picked = [e.name for e in select_volets(catalog, template_ids, None if code is None else code.get("code"))]
        expected = _oxygen_volet(path)
        assert picked == ([expected] if expected else []), path.name
        checked += 1
    assert checked == 107


@needs_kit
def test_the_header_schematron_compiles_quickly(engine_for: Callable[[Path], SchematronEngine]) -> None:
    path = SCHEMATRONS / "profils" / "structurationMinimale" / "ASIP-STRUCT-MIN-StrucMin.sch"
    compiled = compile_schematron(path, name="StrucMin", value_sets=SchematronEngine(KIT).value_sets())
    assert compiled.fixes == ()  # the 2025 kit ships every vocabulary file StrucMin reads
    # 13 000 asserts once extended rules are copied; abstract rules as named templates keep it small.
    assert len(compiled.checks) < 3000
    assert len(compiled.xslt) < 2_000_000
