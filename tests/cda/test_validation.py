"""Validation of CDA documents: the structural rules, the schema, the ANS schematrons, the kit's examples."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from dmp_connector.cda import ClinicalDocument
from dmp_connector.cda._rules import RULES
from dmp_connector.cda.validation import (
    CdaValidator,
    Finding,
    FindingLayer,
    FindingSeverity,
    ValidationReport,
    validate,
)
from dmp_connector.config import CdaSettings, Settings, SoftwareIdentity
from dmp_connector.errors import ConfigurationError, MalformedResponseError, UnsafeXmlError
from dmp_connector.xml import parse_xml

KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025"
EXAMPLES = KIT / "ExemplesCDA"
NS = {"cda": "urn:hl7-org:v3"}

needs_kit = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"the ANS kit is not at {KIT}")

# Examples the kit itself cannot pass, with the kit's defect. Every other example is valid.
# (The kit's own engine, tests/cda/kit_engine.py, reports the same findings on these four.)
KIT_DEFECTS: dict[str, tuple[FindingSeverity, str, str]] = {
    # CIM-10 H57.04 (mydriase) is not in the kit's jdv-autre-symptome-ex-neuro-cisis (nor in its
    # terminologie's CIM-10, which flags it too).
    "AVC-AUNV_2022.01.xml": (FindingSeverity.ERROR, "AVC-AUNV_2022.01:JDV_AutreSymptomeExNeuro", "H57.04"),
    # Social cover GEN-105 (PUMa) is neither in the kit's terminology file TerminologieCISIS
    # (1.2.250.1.213.1.1.4.322.rdf: GEN-104, GEN-106 … but no GEN-105) nor in jdv-couverture-sociale-cisis.
    "CANCER-D2LM-FIDD_2022.01.xml": (FindingSeverity.ERROR, "terminologie:", "GEN-105"),
    "CANCER-D2LM-FIN_2022.01.xml": (FindingSeverity.ERROR, "terminologie:", "GEN-105"),
    "CSE-CS8_2024.01.xml": (FindingSeverity.ERROR, "CSE-CS8_2024.01:JDV_CouvertureSociale-CISIS", "GEN-105"),
}

# The default run: one of each kind (PDF body, VSM, LDL-SES, a self-presenting document, a
# lab report, a CSE certificate, IPS), and a known kit defect of each sort.
FAST_EXAMPLES = (
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml",
    "VSM_1.4_2022.01.xml",
    "LDL-SES_2022.01.xml",
    "BIO-CR-BIO_2021.01_Auto-Presentable.xml",
    "BIO-CR-BIO_2024.01_Electrophorese.xml",
    "CSE-CS24_2025.01.xml",
    "IPS-FR_2024.01.xml",
    "AVC-AUNV_2022.01.xml",
    "CANCER-D2LM-FIN_2022.01.xml",
)


@pytest.fixture(scope="session")
def kit_settings(tmp_path_factory: pytest.TempPathFactory) -> CdaSettings:
    """The kit in ../shared, compiled schematrons cached for the session (shared with the CLI tests)."""
    if not EXAMPLES.is_dir():
        pytest.skip(f"the ANS kit is not at {KIT}")
    return CdaSettings(kit_dir=KIT, cache_dir=tmp_path_factory.getbasetemp() / "cda-schematron-cache")


@pytest.fixture(scope="session")
def validator(kit_settings: CdaSettings) -> CdaValidator:
    return CdaValidator(kit_settings)


@pytest.fixture(scope="session")
def saxon_validator(validator: CdaValidator) -> CdaValidator:
    pytest.importorskip("saxonche")
    return validator


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def mutate(name: str, change: Callable[[etree._Element], None]) -> bytes:
    root = parse_xml(example(name))
    change(root)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def first(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list) and found and isinstance(found[0], etree._Element), path
    return found[0]


def remove(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert isinstance(found, list)
        for el in found:
            assert isinstance(el, etree._Element)
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)

    return change


def set_attr(path: str, **values: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        el = first(root, path)
        for key, value in values.items():
            el.set(key, value)

    return change


def rules_of(report: ValidationReport, severity: FindingSeverity = FindingSeverity.ERROR) -> set[str]:
    return {f.rule for f in report.findings if f.severity is severity}


# --- structural rules ------------------------------------------------------------------------


def test_rules_have_unique_ids_and_say_what_they_check() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert all(rule.summary and rule.severity in ("error", "warning", "info") for rule in RULES)


STRUCTURAL_CASES = [
    pytest.param(
        remove("//cda:recordTarget/cda:patientRole/cda:patient/cda:birthplace"),
        "patient.ins-traits",
        "birth place",
        id="ins-trait-removed",
    ),
    pytest.param(
        remove("//cda:recordTarget//cda:patient/cda:name/cda:given[@qualifier='BR']"),
        "patient.ins-traits",
        "first birth first name",
        id="ins-first-name-removed",
    ),
    pytest.param(set_attr("/cda:ClinicalDocument/cda:code", code="99999-9"), "header.type-code", "JDV_J07", id="j07"),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:effectiveTime", value="20191203133000"),
        "dates.time-zone",
        "no time zone",
        id="tz-less-date",
    ),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:effectiveTime", value="20191345"),
        "dates.format",
        "not a valid date",
        id="impossible-date",
    ),
    pytest.param(
        set_attr("//cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:high", value="20010101120000+0100"),
        "service-event.period",
        "ends",
        id="service-ends-before-it-starts",
    ),
    pytest.param(remove("/cda:ClinicalDocument/cda:author"), "author.present", "at least one <author>", id="no-author"),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:author/cda:assignedAuthor/cda:id", root="1.2.250.1.71.4.2.2"),
        "author.id",
        "IdNat_PS",
        id="author-oid",
    ),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:author//cda:representedOrganization/cda:id", root="1.2.250.1.71.4.2.1"),
        "organisation.id",
        "IdNat_Struct",
        id="organisation-oid",
    ),
    pytest.param(
        set_attr("//cda:representedCustodianOrganization/cda:id", root="1.2.3.4"),
        "custodian",
        "IdNat_Struct",
        id="custodian-oid",
    ),
    pytest.param(
        set_attr("//cda:recordTarget/cda:patientRole/cda:id[1]", root="1.2.250.1.213.1.4.2"),
        "patient.ins-oid",
        "INS-C",
        id="obsolete-ins-c",
    ),
    pytest.param(
        set_attr("//cda:recordTarget/cda:patientRole/cda:id[1]", extension="27903512151"),
        "patient.ins-matricule",
        "15 characters",
        id="short-matricule",
    ),
    pytest.param(
        set_attr("//cda:serviceEvent/cda:performer//cda:standardIndustryClassCode", code="CLINIQUE"),
        "service-event.practice-setting",
        "JDV_J04",
        id="practice-setting-j04",
    ),
    pytest.param(
        set_attr("//cda:healthCareFacility/cda:code", code="SA99"),
        "encounter.facility-type",
        "JDV_J02",
        id="facility-type-j02",
    ),
    pytest.param(
        set_attr(
            "/cda:ClinicalDocument/cda:confidentialityCode", code="MASQUE_PS", codeSystem="1.2.250.1.213.1.1.4.13"
        ),
        "header.confidentiality",
        "XDS metadata",
        id="confidentiality",
    ),
    pytest.param(set_attr("/cda:ClinicalDocument/cda:languageCode", code="french"), "header.language", "ll-CC"),
    pytest.param(remove("/cda:ClinicalDocument/cda:realmCode"), "header.realm", "realmCode", id="realm"),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:typeId", extension="POCD_HD000041"), "header.type-id", "POCD_HD000040"
    ),
    pytest.param(
        remove("/cda:ClinicalDocument/cda:templateId[@root='1.2.250.1.213.1.1.1.1']"),
        "header.template-ids",
        "CI-SIS",
        id="cisis-template",
    ),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:versionNumber", value="0"), "header.set-id-version", "positive integer"
    ),
    pytest.param(
        set_attr("/cda:ClinicalDocument/cda:legalAuthenticator/cda:signatureCode", code="X"),
        "legal-authenticator",
        'code="S"',
        id="signature-code",
    ),
    pytest.param(
        lambda root: first(root, "//cda:recordTarget//cda:patient/cda:name/cda:family").attrib.pop("qualifier"),
        "patient.name-qualifiers",
        "BR (birth name)",
        id="family-qualifier",
    ),
    pytest.param(remove("/cda:ClinicalDocument/cda:componentOf"), "encounter", "encompassingEncounter", id="encounter"),
]


@needs_kit
@pytest.mark.parametrize(("change", "rule", "words"), STRUCTURAL_CASES)
def test_structural_rules_explain_what_to_fix(
    validator: CdaValidator, change: Callable[[etree._Element], None], rule: str, words: str
) -> None:
    assert rules_of(validator.validate(example("LDL-SES_2022.01.xml"), schema=False, schematron=False)) == set()
    report = validator.validate(mutate("LDL-SES_2022.01.xml", change), schema=False, schematron=False)
    assert not report.ok
    found = [f for f in report.errors if f.rule == rule]
    assert found, report.to_text()
    assert words in found[0].message
    assert found[0].layer is FindingLayer.STRUCTURAL
    assert found[0].location and found[0].location.startswith("/cda:ClinicalDocument[1]")
    assert found[0].line is None or found[0].line > 0


@needs_kit
def test_structural_rules_work_without_a_kit(monkeypatch: pytest.MonkeyPatch) -> None:
    """No kit: value sets come from the SDK's generated constants; schema and schematrons need the kit."""
    plain = CdaValidator(CdaSettings())
    bad = mutate("LDL-SES_2022.01.xml", set_attr("/cda:ClinicalDocument/cda:code", code="99999-9"))
    assert rules_of(plain.validate(bad, schema=False, schematron=False)) == {"header.type-code"}
    assert plain.validate(example("LDL-SES_2022.01.xml"), schema=False, schematron=False).ok
    with pytest.raises(ConfigurationError, match="no CDA conformance kit") as caught:
        plain.validate(bad)
    assert "DMP_CONNECTOR_CDA__KIT_DIR" in str(caught.value.hint)


@needs_kit
def test_warnings_do_not_fail_a_report(validator: CdaValidator) -> None:
    data = b"\xef\xbb\xbf" + mutate(
        "LDL-SES_2022.01.xml", set_attr("/cda:ClinicalDocument/cda:languageCode", code="en-US")
    )
    report = validator.validate(data, schema=False, schematron=False)
    assert report.ok
    assert rules_of(report, FindingSeverity.WARNING) == {"document.bom", "header.language"}


@needs_kit
def test_replacement_rules(validator: CdaValidator) -> None:
    def replace_itself(root: etree._Element) -> None:
        own = first(root, "/cda:ClinicalDocument/cda:id")
        related = etree.Element("{urn:hl7-org:v3}relatedDocument", typeCode="APND")
        parent = etree.SubElement(related, "{urn:hl7-org:v3}parentDocument")
        etree.SubElement(parent, "{urn:hl7-org:v3}id", root=own.get("root", ""))
        first(root, "/cda:ClinicalDocument/cda:componentOf").addprevious(related)

    report = validator.validate(mutate("LDL-SES_2022.01.xml", replace_itself), schema=False, schematron=False)
    messages = [f.message for f in report.findings if f.rule == "header.replacement"]
    assert any("only RPLC" in m for m in messages)
    assert any("this document's own id" in m for m in messages)
    assert any("versionNumber is 1" in m for m in messages)


@needs_kit
def test_a_pdf_document_with_a_volet_template_is_refused(validator: CdaValidator) -> None:
    def add_volet(root: etree._Element) -> None:
        template = first(root, "/cda:ClinicalDocument/cda:templateId[last()]")
        template.addnext(etree.Element("{urn:hl7-org:v3}templateId", root="1.2.250.1.213.1.1.1.13"))

    report = validator.validate(mutate("DOC_NON_STRUCTURE_CDA-R2-N1.xml", add_volet), schema=False, schematron=False)
    assert any("non-XML body carries only" in f.message for f in report.errors)


def test_a_document_that_is_not_a_cda_is_one_error() -> None:
    report = validate(b"<html><body/></html>", settings=CdaSettings(), schema=False, schematron=False)
    assert [f.rule for f in report.findings] == ["document.root"]
    assert not report.ok


# --- hostile and malformed input -------------------------------------------------------------

XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>'
)
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%s;" % (str(i - 1).encode() if i > 1 else b"") for _ in range(10)))
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>"
)


@pytest.mark.parametrize("data", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_hostile_xml_is_refused_before_anything_else(data: bytes) -> None:
    # Refused even with no kit configured: nothing about the document is processed.
    with pytest.raises(UnsafeXmlError, match=r"DTD|refused"):
        validate(data, settings=CdaSettings())


def test_malformed_xml_is_refused() -> None:
    with pytest.raises(MalformedResponseError, match="not well-formed"):
        validate(b"<ClinicalDocument xmlns='urn:hl7-org:v3'>", settings=CdaSettings())
    with pytest.raises(TypeError, match="bytes"):
        validate("<ClinicalDocument/>", settings=CdaSettings())  # type: ignore[arg-type]


# --- the kit: schema and schematrons ---------------------------------------------------------


def test_an_incomplete_kit_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "schematrons").mkdir()
    with pytest.raises(ConfigurationError, match=r"CDA_extended\.xsd is missing"):
        validate(
            example("LDL-SES_2022.01.xml") if EXAMPLES.is_dir() else b"<a/>", settings=CdaSettings(kit_dir=tmp_path)
        )
    with pytest.raises(ConfigurationError, match="does not exist"):
        validate(b"<a/>", settings=CdaSettings(kit_dir=tmp_path / "nowhere"))


@needs_kit
def test_schema_errors_are_findings(validator: CdaValidator) -> None:
    def misplace(root: etree._Element) -> None:
        title = first(root, "/cda:ClinicalDocument/cda:title")
        root.append(title)

    report = validator.validate(mutate("LDL-SES_2022.01.xml", misplace), schematron=False)
    schema = [f for f in report.findings if f.layer is FindingLayer.SCHEMA]
    assert schema and schema[0].rule.startswith("xsd.") and schema[0].line
    assert "title" in schema[0].message
    assert schema[0].location is not None and schema[0].location.endswith("/cda:title[1]")


@needs_kit
@pytest.mark.parametrize("name", FAST_EXAMPLES)
def test_examples_pass_every_layer(saxon_validator: CdaValidator, name: str) -> None:
    check_example(saxon_validator, name)


@needs_kit
@pytest.mark.kit_exhaustive
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.xml")) if EXAMPLES.is_dir() else [])
def test_every_example_of_the_kit(request: pytest.FixtureRequest, saxon_validator: CdaValidator, name: str) -> None:
    if "kit_exhaustive" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the whole kit runs with -m kit_exhaustive (as .ci/run does)")
    check_example(saxon_validator, name)


def check_example(validator: CdaValidator, name: str) -> None:
    report = validator.validate(example(name))
    assert "StrucMin" in report.schematrons
    defect = KIT_DEFECTS.get(name)
    if defect is None:
        assert report.ok, report.to_text()
        return
    severity, rule, words = defect
    matching = [f for f in report.findings if f.severity is severity and f.rule.startswith(rule)]
    assert matching, report.to_text()
    assert words in matching[0].message or words in (matching[0].schematron or "")
    assert report.ok is (severity is not FindingSeverity.ERROR)


@needs_kit
def test_invalid_documents_are_caught_by_the_schematrons_too(saxon_validator: CdaValidator) -> None:
    no_birthplace = mutate(
        "LDL-SES_2022.01.xml", remove("//cda:recordTarget/cda:patientRole/cda:patient/cda:birthplace")
    )
    report = saxon_validator.validate(no_birthplace)
    assert report.volet == "LDL-SES_2022.01"
    assert "patient.ins-traits" in rules_of(report)
    strucmin = [f for f in report.errors if f.schematron == "StrucMin"]
    assert strucmin and strucmin[0].layer is FindingLayer.SCHEMATRON and strucmin[0].test
    assert "[schematron StrucMin:" in report.to_text()

    bad_type = mutate("LDL-SES_2022.01.xml", set_attr("/cda:ClinicalDocument/cda:code", code="99999-9"))
    report = saxon_validator.validate(bad_type)
    assert "header.type-code" in rules_of(report)
    assert any(f.schematron == "StrucMin" and "471" in f.message for f in report.errors)
    # The LDL-SES schematron asks for its own type code too: with another, no volet fits.
    assert report.volet is None
    assert "schematron.no-volet" in rules_of(report, FindingSeverity.INFO)


@needs_kit
def test_a_volet_can_be_forced_and_the_generic_ones_left_out(saxon_validator: CdaValidator) -> None:
    report = saxon_validator.validate(example("VSM_1.4_2022.01.xml"), volet="CI-SIS_VSM_2023.01.sch", generic=())
    assert report.volet == "VSM_2023.01" and report.schematrons == ("VSM_2023.01",) and report.ok
    assert {"compile:VSM_2023.01", "schematron:VSM_2023.01", "parse", "structural", "schema"} <= set(report.timings)
    with pytest.raises(ConfigurationError, match="no schematron named"):
        saxon_validator.validate(example("VSM_1.4_2022.01.xml"), volet="VSM_1999.01")


@needs_kit
def test_a_volet_schematron_the_kit_cannot_run_is_a_warning(tmp_path: Path) -> None:
    """A kit with an empty include file (the 2025-02 kit shipped BIO-CR-BIO_2023.01 so): not checked, and said."""
    pytest.importorskip("saxonche")
    kit = tmp_path / "kit"
    (kit / "schematrons").mkdir(parents=True)
    for entry in (KIT / "schematrons").iterdir():
        (kit / "schematrons" / entry.name).symlink_to(entry)
    (kit / "jeuxDeValeurs").symlink_to(KIT / "jeuxDeValeurs")
    (kit / "schematrons" / "empty.sch").write_text("", encoding="utf-8")
    (kit / "schematrons" / "CI-SIS_VSM_2099.01.sch").write_text(
        '<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">'
        '<include href="empty.sch"/></schema>',
        encoding="utf-8",
    )
    validator = CdaValidator(CdaSettings(kit_dir=kit, disk_cache=False))
    report = validator.validate(example("VSM_1.4_2022.01.xml"), schema=False, volet="VSM_2099.01", generic=())
    assert report.ok and report.volet == "VSM_2099.01" and report.schematrons == ()
    warning = next(f for f in report.warnings if f.rule == "schematron.unavailable")
    assert "were not checked" in warning.message and "empty file" in warning.message


@needs_kit
def test_a_value_set_the_kit_lacks_is_an_error_not_the_sdks_copy(tmp_path: Path) -> None:
    """Structural checks read the kit's value sets by OID; one missing is never replaced by the SDK's constants."""
    kit = tmp_path / "kit"
    (kit / "jeuxDeValeurs").mkdir(parents=True)
    for path in (KIT / "jeuxDeValeurs").glob("*.xml"):
        if path.name != "JDV_J07_XdsTypeCode_CISIS.xml":
            (kit / "jeuxDeValeurs" / path.name).symlink_to(path)
    validator = CdaValidator(CdaSettings(kit_dir=kit))
    with pytest.raises(
        ConfigurationError, match=r"no JDV_J07_XdsTypeCode_CISIS \(OID 1\.2\.250\.1\.213\.1\.1\.5\.471\)"
    ):
        validator.validate(example("LDL-SES_2022.01.xml"), schema=False, schematron=False)
    # Renamed in the kit (the 2025 kit's kebab-case names): found by its OID all the same.
    (kit / "jeuxDeValeurs" / "jdv-type-code-renamed.xml").symlink_to(
        KIT / "jeuxDeValeurs" / "JDV_J07_XdsTypeCode_CISIS.xml"
    )
    validator = CdaValidator(CdaSettings(kit_dir=kit))
    assert validator.validate(example("LDL-SES_2022.01.xml"), schema=False, schematron=False).ok
    bad = mutate("LDL-SES_2022.01.xml", set_attr("/cda:ClinicalDocument/cda:code", code="99999-9"))
    assert "header.type-code" in rules_of(validator.validate(bad, schema=False, schematron=False))


@needs_kit
def test_a_built_document_is_valid(saxon_validator: CdaValidator, pdf_document: ClinicalDocument) -> None:
    report = saxon_validator.validate(pdf_document)
    assert report.ok, report.to_text()
    assert report.volet is None and "StrucMin" in report.schematrons


@needs_kit
def test_validators_can_be_shared_between_threads(saxon_validator: CdaValidator) -> None:
    names = ["LDL-SES_2022.01.xml", "AVC-AUNV_2022.01.xml"]
    expected = {name: saxon_validator.validate(example(name)).findings for name in names}
    results: list[tuple[str, tuple[Finding, ...]]] = []
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            results.append((name, saxon_validator.validate(example(name)).findings))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(names[i % 2],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(findings == expected[name] for name, findings in results) and len(results) == 6


# --- the report and the settings -------------------------------------------------------------


def test_report_text_and_json() -> None:
    finding = Finding(
        severity=FindingSeverity.ERROR,
        layer=FindingLayer.STRUCTURAL,
        rule="header.realm",
        message='the document needs exactly one <realmCode code="FR"/>',
        location="/cda:ClinicalDocument[1]",
        line=2,
    )
    info = finding.model_copy(update={"severity": FindingSeverity.INFO, "rule": "schematron.no-volet"})
    report = ValidationReport(findings=(finding, info), schematrons=("StrucMin",), timings={"parse": 0.01})
    assert not report.ok and report.errors == (finding,) and report.warnings == ()
    assert str(finding) == (
        "error [structural header.realm] line 2 /cda:ClinicalDocument[1]:"
        ' the document needs exactly one <realmCode code="FR"/>'
    )
    text = report.to_text()
    assert text.startswith("INVALID: 1 error(s), 0 warning(s); schematrons: StrucMin") and "no-volet" not in text
    assert "no-volet" in report.to_text(verbose=True)
    data = report.model_dump(mode="json")
    assert data["ok"] is False and data["findings"][0]["severity"] == "error"


def test_the_kit_comes_from_settings_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DMP_CONNECTOR_CDA__KIT_DIR", str(tmp_path))
    monkeypatch.setenv("DMP_CONNECTOR_CDA__CACHE_DIR", str(tmp_path / "cache"))
    assert CdaSettings.from_environment() == CdaSettings(kit_dir=tmp_path, cache_dir=tmp_path / "cache")
    settings = Settings(software=SoftwareIdentity(name="T", version="1", editor="E"))
    assert settings.cda.kit_dir == tmp_path
    assert CdaValidator(settings).settings.kit_dir == tmp_path
    with pytest.raises(ConfigurationError, match="incomplete"):
        validate(b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>")
