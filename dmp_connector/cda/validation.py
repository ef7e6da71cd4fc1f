"""Validate a CI-SIS CDA document: structural checks, the CDA schema, the ANS schematrons.

Three layers, each giving typed :class:`Finding` objects, gathered in one
:class:`ValidationReport`::

    report = validate(data, settings=CdaSettings(kit_dir=Path("TestContenuCDA-3-0")))
    if not report.ok:
        for finding in report.errors:
            print(finding)   # error [structural patient.ins-traits] line 31 …: the patient has an INS …

1. **structural** — Python checks of the header (``_rules.RULES``), in plain words: missing
   INS traits, wrong OIDs, dates without time zone, codes outside their value set, a
   service ending before it starts … They need no kit (value sets then come from the SDK's
   generated constants).
2. **schema** — ``CDA_extended.xsd`` from the kit, compiled once per process.
3. **schematron** — with the ``validation`` extra (Saxon): the kit's schematron for the
   document's volet, picked from its templateIds and type code, plus the kit-wide ones
   (``CdaSettings.generic_schematrons``, by default the five the kit's own pipeline runs:
   StrucMin, IHE, ModelesDeContenusCDA, Modeles_ANS, terminologie). Compiled schematrons are
   cached in memory and on disk (see :mod:`dmp_connector.cda._schematron`).

A finding never raises. What does raise: input that is not safe or not well-formed XML
(:class:`~dmp_connector.errors.UnsafeXmlError`, :class:`~dmp_connector.errors.MalformedResponseError`
— refused unread), and a missing or incomplete kit, or Saxon missing when schematrons are
asked for (:class:`~dmp_connector.errors.ConfigurationError`). A kit schematron that the kit
itself cannot run (a defect of the kit) is a warning finding, ``schematron.unavailable``: the
volet's rules were not checked, and the report says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, computed_field

from dmp_connector.config import CdaSettings, Settings
from dmp_connector.errors import ConfigurationError
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml

from . import _rules
from ._kit import Kit, load_schema
from ._schematron import KitDefectError, RawResult, SchematronEngine, VoletSchematron, select_volets

if TYPE_CHECKING:
    from .model import ClinicalDocument

__all__ = [
    "GENERIC_SCHEMATRONS",
    "CdaValidator",
    "Finding",
    "FindingLayer",
    "FindingSeverity",
    "ValidationReport",
    "VoletSchematron",
    "validate",
]

_log = logging.getLogger("dmp_connector.cda")

GENERIC_SCHEMATRONS: Mapping[str, str] = {
    "StrucMin": "profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch",
    "IHE": "profils/IHE.sch",
    "ModelesDeContenusCDA": "profils/CI-SIS_ModelesDeContenusCDA.sch",
    "Modeles_ANS": "profils/CI-SIS_Modeles_ANS.sch",
    "terminologie": "profils/terminologies/schematron/terminologie.sch",
}
"""The kit-wide schematrons by name, relative to the kit's ``schematrons/`` folder."""

_LOCATION_NS = {
    "cda": _rules.HL7,
    "sdtc": "urn:hl7-org:sdtc",
    "lab": "urn:oid:1.3.6.1.4.1.19376.1.3.2",
    "pharm": "urn:ihe:pharm",
    "xsl": "http://www.w3.org/1999/XSL/Transform",
}


class FindingSeverity(StrEnum):
    """How bad a finding is; only errors make a report fail."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class FindingLayer(StrEnum):
    """Which check found it."""

    STRUCTURAL = "structural"
    """The SDK's own header checks, in plain words."""
    SCHEMA = "schema"
    """The CDA schema (``CDA_extended.xsd``)."""
    SCHEMATRON = "schematron"
    """An ANS schematron of the kit (its message is the kit's, in French)."""


class Finding(BaseModel):
    """One problem found in a document: how bad, by which layer and rule, where, and what."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    severity: FindingSeverity
    """``error`` makes the report fail; ``warning`` and ``info`` do not."""
    layer: FindingLayer
    """Structural checks, schema or schematron."""
    rule: str
    """Stable id: ``patient.ins-traits`` (structural), ``xsd.element-content`` (schema),
    ``VSM_2023.01:Entete_VSM_2023`` (schematron: its name and pattern, or assert id)."""
    message: str
    """What is wrong, in words; a schematron's message is the kit's own text."""
    location: str | None = None
    """XPath of the element at fault (``/cda:ClinicalDocument[1]/cda:recordTarget[1]/…``)."""
    line: int | None = None
    """Line of that element in the document, when known."""
    schematron: str | None = None
    """The schematron that reported it (schematron layer only)."""
    test: str | None = None
    """The schematron's XPath test that failed (schematron layer only)."""

    def __str__(self) -> str:
        where = f" line {self.line}" if self.line else ""
        at = f" {self.location}" if self.location else ""
        return f"{self.severity.value} [{self.layer.value} {self.rule}]{where}{at}: {self.message}"


class ValidationReport(BaseModel):
    """Everything a validation found, what ran, and how long it took."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    findings: tuple[Finding, ...] = ()
    """Every finding, structural first, then schema, then schematron."""
    volet: str | None = None
    """The volet schematron the document was checked against (``VSM_2023.01``), if any."""
    schematrons: tuple[str, ...] = ()
    """The schematrons that ran, volet and kit-wide ones."""
    timings: Mapping[str, float] = Field(default_factory=dict)
    """Seconds per step: ``parse``, ``structural``, ``schema``, ``compile:<name>``, ``schematron:<name>``."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not any(f.severity is FindingSeverity.ERROR for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The error findings."""
        return tuple(f for f in self.findings if f.severity is FindingSeverity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The warning findings."""
        return tuple(f for f in self.findings if f.severity is FindingSeverity.WARNING)

    def to_text(self, *, verbose: bool = False) -> str:
        """A readable report: a verdict line, then one line per finding (info findings with ``verbose``)."""
        errors, warnings = len(self.errors), len(self.warnings)
        verdict = "valid" if self.ok else "INVALID"
        ran = ", ".join(self.schematrons) if self.schematrons else "none"
        lines = [f"{verdict}: {errors} error(s), {warnings} warning(s); schematrons: {ran}"]
        for finding in self.findings:
            if finding.severity is FindingSeverity.INFO and not verbose:
                continue
            lines.append(f"  {finding}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "dmp-connector"


_engines: dict[tuple[Path, Path | None], SchematronEngine] = {}
_engines_lock = threading.Lock()


def _engine(kit: Kit, cache_dir: Path | None) -> SchematronEngine:
    """One engine per kit and cache folder per process, shared by every validator."""
    key = (kit.root.resolve(), cache_dir)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = SchematronEngine(key[0], cache_dir=cache_dir)
        return engine


def _settings(settings: Settings | CdaSettings | None) -> CdaSettings:
    if settings is None:
        return CdaSettings.from_environment()
    if isinstance(settings, Settings):
        return settings.cda
    return settings


class CdaValidator:
    """Validates documents against one kit; keeps its schema and schematrons compiled. Thread-safe: share one.

    ``settings`` is a :class:`~dmp_connector.config.Settings` (its ``cda`` part is used), a
    :class:`~dmp_connector.config.CdaSettings`, or None for ``DMP_CONNECTOR_CDA__*`` variables.
    """

    def __init__(self, settings: Settings | CdaSettings | None = None, *, limits: XmlLimits = DEFAULT_LIMITS) -> None:
        self.settings = _settings(settings)
        self.limits = limits
        self._schema_lock = threading.Lock()
        self._value_sets = _rules.ValueSets(
            self.settings.kit_dir / "jeuxDeValeurs" if self.settings.kit_dir is not None else None
        )

    # -- kit access ------------------------------------------------------------------------

    def _kit(self, *, schema: bool, schematrons: bool) -> Kit:
        return Kit.locate(self.settings.kit_dir, schema=schema, schematrons=schematrons)

    def _schematron_engine(self) -> SchematronEngine:
        kit = self._kit(schema=False, schematrons=True)
        cache = None
        if self.settings.disk_cache:
            cache = self.settings.cache_dir or _default_cache_dir()
        return _engine(kit, cache)

    def volets(self) -> tuple[VoletSchematron, ...]:
        """The kit's volet schematrons and what each requires of a header (templateIds, type codes)."""
        return self._schematron_engine().catalog()

    def schematron_path(self, name: str) -> Path:
        """The ``.sch`` file for a name: ``VSM_2023.01``, ``CI-SIS_VSM_2023.01.sch``, ``StrucMin`` …"""
        engine = self._schematron_engine()
        if name in GENERIC_SCHEMATRONS:
            return engine.schematrons_dir / GENERIC_SCHEMATRONS[name]
        stem = name.removesuffix(".sch").removeprefix("CI-SIS_")
        path = engine.schematrons_dir / f"CI-SIS_{stem}.sch"
        if not path.is_file():
            known = sorted(e.name for e in engine.catalog())
            raise ConfigurationError(
                f"the kit has no schematron named {name!r}",
                hint=f"use a volet name such as {', '.join(known[:4])} …, or one of {', '.join(GENERIC_SCHEMATRONS)}",
            )
        return path

    def warm_up(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """Compile schematrons now (default: the kit-wide ones) rather than at the first document; seconds each."""
        engine = self._schematron_engine()
        spent: dict[str, float] = {}
        for name in names if names is not None else self.settings.generic_schematrons:
            started = time.perf_counter()
            try:
                engine.load(self.schematron_path(name), name)
            except KitDefectError as exc:
                _log.warning("schematron %s cannot be compiled: %s", name, exc.message)
            spent[name] = time.perf_counter() - started
        return spent

    # -- validation ------------------------------------------------------------------------

    def validate(
        self,
        document: bytes | bytearray | memoryview | ClinicalDocument,
        *,
        schema: bool = True,
        schematron: bool = True,
        volet: str | None = None,
        generic: Sequence[str] | None = None,
    ) -> ValidationReport:
        """Check a document and report every finding; raise only for unsafe XML or a missing kit.

        ``schema``/``schematron`` turn those layers off; ``volet`` forces a volet schematron by
        name instead of picking it from the document; ``generic`` replaces the settings' list of
        kit-wide schematrons (``()`` for none). A ``ClinicalDocument`` is built first, so a model
        that :func:`~dmp_connector.cda.build` refuses raises its ``ValidationError``.
        """
        timings: dict[str, float] = {}
        started = time.perf_counter()
        data = _as_bytes(document)
        root = parse_xml(data, limits=self.limits, what="the CDA document")
        timings["parse"] = time.perf_counter() - started
        kit = self._kit(schema=schema, schematrons=schematron) if (schema or schematron) else None

        findings: list[Finding] = []
        if bytes(data[:3]) == b"\xef\xbb\xbf":
            findings.append(
                Finding(
                    severity=FindingSeverity.WARNING,
                    layer=FindingLayer.STRUCTURAL,
                    rule="document.bom",
                    message="the file starts with a UTF-8 byte order mark, which some receivers refuse:"
                    " write UTF-8 without BOM",
                )
            )
        clinical = _rules.find_document(root)
        if clinical is None:
            findings.append(
                Finding(
                    severity=FindingSeverity.ERROR,
                    layer=FindingLayer.STRUCTURAL,
                    rule="document.root",
                    message=f"this is not a CDA document: no ClinicalDocument element in the namespace {_rules.HL7}",
                    location=_rules.element_location(root),
                    line=root.sourceline,
                )
            )
            return ValidationReport(findings=tuple(findings), timings=timings)

        step = time.perf_counter()
        findings.extend(_structural(clinical, self._value_sets))
        timings["structural"] = time.perf_counter() - step

        if schema and kit is not None:
            step = time.perf_counter()
            findings.extend(self._schema(kit, root))
            timings["schema"] = time.perf_counter() - step

        volet_name: str | None = None
        ran: list[str] = []
        if schematron:
            engine = self._schematron_engine()
            names, volet_name, notes = self._pick(engine, clinical, volet, generic)
            findings.extend(notes)
            found, ran = self._schematrons(engine, root, names, timings)
            findings.extend(found)
        return ValidationReport(findings=tuple(findings), volet=volet_name, schematrons=tuple(ran), timings=timings)

    def _schema(self, kit: Kit, root: etree._Element) -> list[Finding]:
        xsd = load_schema(kit.xsd)
        with self._schema_lock:
            valid = xsd.validate(root.getroottree())
            log = list(cast("Iterable[Any]", xsd.error_log)) if not valid else []
        findings = []
        for entry in log:
            kind = entry.type_name.removeprefix("SCHEMAV_").lower().replace("_", "-")
            findings.append(
                Finding(
                    severity=FindingSeverity.ERROR,
                    layer=FindingLayer.SCHEMA,
                    rule=f"xsd.{kind}",
                    message=entry.message,
                    location=_named_path(root, entry.path),
                    line=entry.line or None,
                )
            )
        return findings

    def _pick(
        self, engine: SchematronEngine, clinical: etree._Element, volet: str | None, generic: Sequence[str] | None
    ) -> tuple[list[str], str | None, list[Finding]]:
        notes: list[Finding] = []
        names = list(generic if generic is not None else self.settings.generic_schematrons)
        if volet is not None:
            self.schematron_path(volet)  # a clear error for an unknown name
            name = volet.removesuffix(".sch").removeprefix("CI-SIS_")
            return [name, *names], name, notes
        template_ids = [
            (t.get("root", ""), t.get("extension")) for t in clinical.findall(f"{{{_rules.HL7}}}templateId")
        ]
        code = clinical.find(f"{{{_rules.HL7}}}code")
        chosen = select_volets(engine.catalog(), template_ids, None if code is None else code.get("code"))
        if not chosen and clinical.find(f"{{{_rules.HL7}}}component/{{{_rules.HL7}}}structuredBody") is not None:
            notes.append(
                Finding(
                    severity=FindingSeverity.INFO,
                    layer=FindingLayer.SCHEMATRON,
                    rule="schematron.no-volet",
                    message="no volet schematron of the kit matches this document's templateIds and type code:"
                    " only the kit-wide schematrons ran",
                )
            )
        chosen_names = [entry.name for entry in chosen]
        return [*chosen_names, *names], (chosen_names[0] if chosen_names else None), notes

    def _schematrons(
        self, engine: SchematronEngine, root: etree._Element, names: Sequence[str], timings: dict[str, float]
    ) -> tuple[list[Finding], list[str]]:
        findings: list[Finding] = []
        ran: list[str] = []
        saxon_doc: Any = None
        lines = _LineFinder(root)
        for name in dict.fromkeys(names):
            step = time.perf_counter()
            try:
                loaded = engine.load(self.schematron_path(name), name)
            except KitDefectError as exc:
                findings.append(
                    Finding(
                        severity=FindingSeverity.WARNING,
                        layer=FindingLayer.SCHEMATRON,
                        rule="schematron.unavailable",
                        message=f"the kit's schematron {name} cannot be run ({exc.message}):"
                        " its rules were not checked",
                        schematron=name,
                    )
                )
                continue
            timings[f"compile:{name}"] = time.perf_counter() - step
            for fix in loaded.compiled.fixes:
                _log.debug("schematron %s: kit defect worked around: %s", name, fix)
            if saxon_doc is None:
                saxon_doc = engine.document(etree.tostring(root, encoding="unicode"))
            try:
                results, seconds = engine.run(loaded, saxon_doc)
            except KitDefectError as exc:
                findings.append(
                    Finding(
                        severity=FindingSeverity.WARNING,
                        layer=FindingLayer.SCHEMATRON,
                        rule="schematron.unavailable",
                        message=f"the kit's schematron {name} failed ({exc.message}): its rules were not checked",
                        schematron=name,
                    )
                )
                continue
            timings[f"schematron:{name}"] = seconds
            ran.append(name)
            findings.extend(_schematron_finding(name, result, lines) for result in results)
        return findings, ran


def _as_bytes(document: bytes | bytearray | memoryview | ClinicalDocument) -> bytes:
    if isinstance(document, bytes):
        return document
    if isinstance(document, bytearray | memoryview):
        return bytes(document)
    if isinstance(document, str):
        raise TypeError("validate takes the document's bytes; encode text yourself so that no encoding is guessed")
    from .build import build
    from .model import ClinicalDocument

    if not isinstance(document, ClinicalDocument):
        raise TypeError(f"validate takes bytes or a ClinicalDocument, not {type(document).__name__}")
    return build(document)


def _named_path(root: etree._Element, path: str | None) -> str | None:
    """libxml2's positional path (``/*/*[25]``) as the named one the other layers use."""
    if not path:
        return None
    try:
        found = root.getroottree().xpath(path)
    except etree.XPathError:
        return path
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return _rules.element_location(found[0])
    return path


def _structural(clinical: etree._Element, value_sets: _rules.ValueSets) -> list[Finding]:
    return [
        Finding(
            severity=FindingSeverity(issue.severity),
            layer=FindingLayer.STRUCTURAL,
            rule=issue.rule,
            message=issue.message,
            location=_rules.element_location(issue.element if issue.element is not None else clinical),
            line=(issue.element if issue.element is not None else clinical).sourceline,
        )
        for issue in _rules.run_rules(clinical, value_sets)
    ]


_ROLES = {
    "fatal": FindingSeverity.ERROR,
    "error": FindingSeverity.ERROR,
    "warning": FindingSeverity.WARNING,
    "warn": FindingSeverity.WARNING,
    "info": FindingSeverity.INFO,
    "information": FindingSeverity.INFO,
    "hint": FindingSeverity.INFO,
}


def _schematron_finding(name: str, result: RawResult, lines: _LineFinder) -> Finding:
    check = result.check
    if check is None:
        severity, rule, test = FindingSeverity.ERROR, f"{name}:{result.pattern}", None
    else:
        # ANS asserts carry no role: what they assert is required, so a failure is an error.
        severity = _ROLES.get((check.role or "error").strip().lower(), FindingSeverity.ERROR)
        rule, test = f"{name}:{check.ident or result.pattern}", check.test
    return Finding(
        severity=severity,
        layer=FindingLayer.SCHEMATRON,
        rule=rule,
        message=result.message or "(the schematron gives no message)",
        location=result.location or None,
        line=lines.line(result.location),
        schematron=name,
        test=test,
    )


class _LineFinder:
    """Line numbers for the locations Saxon reports, found again in the lxml tree."""

    def __init__(self, root: etree._Element) -> None:
        self._root = root
        self._cache: dict[str, int | None] = {}

    def line(self, location: str) -> int | None:
        if not location or "Q{" in location:
            return None
        if location not in self._cache:
            try:
                found = self._root.getroottree().xpath(location, namespaces=_LOCATION_NS)
            except etree.XPathError:
                found = []
            element = found[0] if isinstance(found, list) and found else None
            line = element.sourceline if isinstance(element, etree._Element) else None
            self._cache[location] = line if isinstance(line, int) else None
        return self._cache[location]


_validators: dict[tuple[CdaSettings, XmlLimits], CdaValidator] = {}
_validators_lock = threading.Lock()


def validate(
    document: bytes | bytearray | memoryview | ClinicalDocument,
    *,
    settings: Settings | CdaSettings | None = None,
    schema: bool = True,
    schematron: bool = True,
    volet: str | None = None,
    generic: Sequence[str] | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> ValidationReport:
    """Validate a document with a validator shared per settings (see :meth:`CdaValidator.validate`).

    Without ``settings``, the kit comes from ``DMP_CONNECTOR_CDA__KIT_DIR``.
    """
    cda = _settings(settings)
    with _validators_lock:
        validator = _validators.get((cda, limits))
        if validator is None:
            validator = _validators[(cda, limits)] = CdaValidator(cda, limits=limits)
    return validator.validate(document, schema=schema, schematron=schematron, volet=volet, generic=generic)
