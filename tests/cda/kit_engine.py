"""The ANS kit's own schematron engine, run by saxonche: an engine that is not ours, to check our compiler against.

The kit (``schematrons/moteur``) compiles a schematron in three XSLT steps and runs the result on
a document, as its ``compilverif.bat`` does, with no parameters::

    iso_dsdl_include.xsl  -> colle.sch     (includes pasted in)
    iso_abstract_expand.xsl -> concret.sch (abstract patterns instantiated)
    iso_svrl_for_xslt2.xsl  -> <schema>.xsl, written beside the .sch (so its relative doc() paths work)

The kit is read-only, and was made on Windows. So the kit is mirrored, file by file as
symbolic links, into a temporary folder where its quirks are worked around without editing
it: an include or ``doc()`` path whose case differs from the file on disk gets a link under
the name the kit writes; an ART-DECOR vocabulary (``voc-<oid>-DYNAMIC.xml``) the kit lacks
is written there from the kit's own value set of that OID. An included file that is empty
is left as it is: the kit's own engine cannot run such a schematron, and says so
(:class:`KitEngineError`). The compiled stylesheets are kept in memory for the session.

:func:`kit_findings` gives the SVRL failed asserts and successful reports as
:class:`KitFinding`; :func:`comparable` and :func:`project_comparable` reduce a finding of
either engine to (severity, message, node), the node written one way for both (lxml's
positional path), so that the two sets can be compared.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from dmp_connector.cda._schematron import _SAXON_LOCK, _processor, select_volets
from dmp_connector.cda.validation import CdaValidator, Finding
from dmp_connector.config import CdaSettings
from dmp_connector.xml import XmlLimits, parse_xml

__all__ = [
    "KIT",
    "Comparable",
    "KitEngine",
    "KitEngineError",
    "KitFinding",
    "comparable",
    "kit_engine",
    "kit_findings",
    "project_comparable",
    "project_findings",
    "volet_schematron",
]

KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025"

SVRL = "http://purl.oclc.org/dsdl/svrl"
_SCH = "http://purl.oclc.org/dsdl/schematron"
_SVS = "urn:ihe:iti:svs:2008"
_SVRL_LIMITS = XmlLimits(max_bytes=256 * 1024 * 1024, max_depth=32)
_KIT_LIMITS = XmlLimits(max_bytes=64 * 1024 * 1024, max_depth=64)
_SPACES = re.compile(r"\s+")
_DOC_LITERAL = re.compile(r"\b(?:doc|document|doc-available)\(\s*(?:'([^']+)'|\"([^\"]+)\")\s*\)")
_VOC = re.compile(r"voc-([0-9.]+)-DYNAMIC\.xml$")
# The kit's own mapping is none: SVRL keeps the role as written. Ours (validation._ROLES), applied
# to both sides so that only what the engines found is compared, not how it is named.
_SEVERITY = {"fatal": "error", "error": "error", "warning": "warning", "warn": "warning"}
_SEVERITY.update(dict.fromkeys(("info", "information", "hint"), "info"))

Comparable = tuple[str, str, str]
"""(severity, message with spaces collapsed, node as lxml's positional path). The message, not the
test: the kit's SVRL does not carry the test; the message is the kit's text with its values filled in."""


class KitEngineError(Exception):
    """The kit's own engine cannot compile or run a schematron (a defect of the kit, or of a document)."""


@dataclass(frozen=True, order=True)
class KitFinding:
    """One ``svrl:failed-assert`` or ``svrl:successful-report`` of the kit's engine."""

    kind: str
    """``failed-assert`` or ``successful-report``."""
    message: str
    """The ``svrl:text``, spaces collapsed (the kit's skeleton leaves out the test: "inutile de redonner
    l'expression de la règle")."""
    location: str
    """The node, as lxml's positional path of the document (``/*/*[12]/@code``)."""
    ident: str | None = None
    """The assert's ``id``, if any."""
    role: str | None = None
    """The assert's ``role`` (the kit's asserts mostly have none: an error)."""
    flag: str | None = None
    kit_location: str = field(default="", compare=False)
    """The location as the kit writes it (``/ClinicalDocument/recordTarget/…``, no namespaces)."""

    @property
    def severity(self) -> str:
        """``error``, ``warning`` or ``info``, from the role as the project's validator reads it."""
        return _SEVERITY.get((self.role or "error").strip().lower(), "error")


# --------------------------------------------------------------------------------------------- the mirror


def _mirror(kit: Path, into: Path) -> None:
    """Every kit file but the examples, as a link, in the same folders under ``into``."""
    for top in sorted(p for p in kit.iterdir() if p.is_dir() and p.name != "ExemplesCDA"):
        for dirpath, _dirnames, filenames in os.walk(top):
            target = into / Path(dirpath).relative_to(kit)
            target.mkdir(parents=True, exist_ok=True)
            for name in filenames:
                (target / name).symlink_to(Path(dirpath) / name)


def _case_insensitive(path: Path, root: Path) -> Path | None:
    """The existing path under ``root`` matching ``path`` segment by segment, ignoring case."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(root)
    except ValueError:
        return None
    current = root
    for part in rel.parts:
        candidate = current / part
        if candidate.exists():
            current = candidate
            continue
        if not current.is_dir():
            return None
        matches = [entry for entry in current.iterdir() if entry.name.lower() == part.lower()]
        if len(matches) != 1:
            return None
        current = matches[0]
    return current


def _vocabulary(svs_file: Path, oid: str) -> bytes:
    """An ART-DECOR vocabulary file (``valueSets/valueSet/conceptList/concept``) from an IHE SVS value set."""
    svs = parse_xml(svs_file.read_bytes(), limits=_KIT_LIMITS, what=f"value set {svs_file.name}")
    out = etree.Element("valueSets")
    concepts = etree.SubElement(etree.SubElement(out, "valueSet", id=oid), "conceptList")
    for concept in svs.iter(f"{{{_SVS}}}Concept"):
        attrs = {k: v for k in ("code", "codeSystem", "displayName") if (v := concept.get(k)) is not None}
        etree.SubElement(concepts, "concept", attrs)
    return etree.tostring(out, xml_declaration=True, encoding="UTF-8")


def _value_sets(mirror: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((mirror / "jeuxDeValeurs").glob("*.xml")):
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
        match = re.search(r"<(?:\w+:)?ValueSet\b[^>]*?\bid=\"([0-9.]+)\"", head)
        if match:
            found.setdefault(match.group(1), path)
    return found


_LET_LITERAL = re.compile(r"^\s*(?:'([^']+\.(?:xml|rdf))'|\"([^\"]+\.(?:xml|rdf))\")\s*$")


def _references(sch: Path) -> tuple[list[str], list[str]]:
    """What a schematron file names: its includes (relative to itself), and the files its expressions
    read (``doc('…')`` and ``let`` literals: relative to the compiled stylesheet, beside the main .sch)."""
    root = parse_xml(sch.read_bytes(), limits=_KIT_LIMITS, what=f"kit file {sch.name}")
    includes: list[str] = []
    reads: list[str] = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        sch_name = etree.QName(el).localname if etree.QName(el).namespace == _SCH else None
        if sch_name in ("include", "extends") and el.get("href"):
            includes.append(el.get("href", ""))
        for value in el.attrib.values():
            reads.extend(m.group(1) or m.group(2) or "" for m in _DOC_LITERAL.finditer(str(value)))
        literal = _LET_LITERAL.match(el.get("value", "")) if sch_name in ("let", "param") else None
        if literal is not None:
            reads.append(literal.group(1) or literal.group(2) or "")
    return includes, reads


class _Repairs:
    """Works around the kit's quirks in the mirror, for one schematron and what it includes."""

    def __init__(self, mirror: Path) -> None:
        self.mirror = mirror
        self.fixes: list[str] = []
        self._value_sets: dict[str, Path] | None = None

    def schematron(self, main: Path) -> None:
        seen: set[Path] = set()
        pending = [main]
        while pending:
            current = pending.pop()
            if current in seen or not current.is_file() or not current.stat().st_size:
                continue  # an empty file: left as it is, the kit's engine will refuse it
            seen.add(current)
            try:
                includes, reads = _references(current)
            except Exception:  # not XML: the kit's engine will say so
                continue
            for ref in includes:
                target = self._existing(current.parent, ref, current.name)
                if target is not None:
                    pending.append(target)
            for ref in reads:
                self._existing(main.parent, ref, current.name)

    def _existing(self, base: Path, ref: str, where: str) -> Path | None:
        if not ref or "://" in ref or "$" in ref:
            return None
        target = Path(os.path.normpath(base / ref))
        if target.exists():
            return target
        found = _case_insensitive(target, self.mirror)
        if found is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(found)
            self.fixes.append(f"{ref} (in {where}): the kit names it with another case; linked to {found.name}")
            return target
        voc = _VOC.search(ref)
        if voc is not None and target.parent.is_dir():
            if self._value_sets is None:
                self._value_sets = _value_sets(self.mirror)
            svs = self._value_sets.get(voc.group(1))
            if svs is not None:
                target.write_bytes(_vocabulary(svs, voc.group(1)))
                self.fixes.append(f"{ref} (in {where}) is missing from the kit: written from its value set {svs.name}")
                return target
        return None


# --------------------------------------------------------------------------------------------- the engine


@dataclass
class _Compiled:
    executable: Any
    stylesheet: Path


class KitEngine:
    """The kit's moteur over a mirror of one kit; compiled schematrons kept for the engine's life. Thread-safe."""

    def __init__(self, kit: Path, work_dir: Path) -> None:
        self.kit = kit.resolve()
        self.work_dir = work_dir
        self.mirror = work_dir / "kit"
        _mirror(self.kit, self.mirror)
        self._repairs = _Repairs(self.mirror)
        self._compiled: dict[Path, _Compiled] = {}
        self._failed: dict[Path, KitEngineError] = {}
        self._skeleton: tuple[Any, Any, Any] | None = None
        self._lock = threading.RLock()
        self._documents = 0

    @property
    def fixes(self) -> list[str]:
        """The kit's quirks worked around so far, in words."""
        return self._repairs.fixes

    def _mirrored(self, schematron: Path) -> Path:
        try:
            rel = schematron.resolve().relative_to(self.kit)
        except ValueError as exc:
            raise KitEngineError(f"{schematron} is not a file of the kit at {self.kit}") from exc
        return self.mirror / rel

    def _steps(self) -> tuple[Any, Any, Any]:
        if self._skeleton is None:
            moteur = self.kit / "schematrons" / "moteur"
            xslt = _processor().new_xslt30_processor()
            self._skeleton = tuple(
                xslt.compile_stylesheet(stylesheet_file=str(moteur / name))
                for name in ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
            )
        assert self._skeleton is not None
        return self._skeleton

    def compile(self, schematron: Path) -> _Compiled:
        """The kit's three steps for one schematron, once; :class:`KitEngineError` if the kit cannot do them."""
        sch = self._mirrored(schematron)
        with self._lock, _SAXON_LOCK:
            if sch in self._compiled:
                return self._compiled[sch]
            if sch in self._failed:
                raise self._failed[sch]
            self._repairs.schematron(sch)
            try:
                include, expand, svrl = self._steps()
                processor = _processor()
                colle = include.transform_to_string(source_file=str(sch))
                concret = expand.transform_to_string(xdm_node=processor.parse_xml(xml_text=colle))
                xsl = svrl.transform_to_string(xdm_node=processor.parse_xml(xml_text=concret))
                # Beside the .sch, as the kit writes it: relative doc() paths resolve from there.
                stylesheet = sch.with_name(sch.stem + ".kit-engine.xsl")
                stylesheet.write_text(xsl, encoding="utf-8")
                executable = processor.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(stylesheet))
            except Exception as exc:  # saxonche's PySaxonApiError has no importable base
                error = KitEngineError(f"the kit's engine cannot compile {schematron.name}: {_short(exc)}")
                self._failed[sch] = error
                raise error from exc
            compiled = self._compiled[sch] = _Compiled(executable, stylesheet)
            return compiled

    def svrl(self, xml_bytes: bytes, schematron: Path) -> etree._Element:
        """The SVRL report of one schematron on a document, as the kit's engine writes it."""
        root = parse_xml(xml_bytes, what="the CDA document")  # hardened first: refuse what is unsafe
        del root
        compiled = self.compile(schematron)
        with self._lock, _SAXON_LOCK:
            self._documents += 1
            source = self.work_dir / f"document-{self._documents}.xml"
            source.write_bytes(xml_bytes)
            try:
                document = _processor().parse_xml(xml_file_name=str(source))
                report = compiled.executable.transform_to_string(xdm_node=document)
            except Exception as exc:
                raise KitEngineError(f"the kit's engine failed on {schematron.name}: {_short(exc)}") from exc
            finally:
                source.unlink(missing_ok=True)
        if not report:
            raise KitEngineError(f"the kit's engine gave no report for {schematron.name}")
        return parse_xml(report.encode("utf-8"), limits=_SVRL_LIMITS, what="the SVRL report")

    def findings(self, xml_bytes: bytes, schematron: Path) -> frozenset[KitFinding]:
        """The failed asserts and successful reports of one schematron on a document."""
        report = self.svrl(xml_bytes, schematron)
        document = parse_xml(xml_bytes, what="the CDA document").getroottree()
        found = set()
        for el in report:
            if not isinstance(el.tag, str) or etree.QName(el).namespace != SVRL:
                continue
            kind = etree.QName(el).localname
            if kind not in ("failed-assert", "successful-report"):
                continue
            where = el.get("location", "")
            text = el.find(f"{{{SVRL}}}text")
            words = "".join(str(t) for t in text.itertext()) if text is not None else ""
            found.add(
                KitFinding(
                    kind=kind,
                    message=_SPACES.sub(" ", words).strip(),
                    location=node_path(document, where, notation="kit"),
                    ident=el.get("id"),
                    role=el.get("role"),
                    flag=el.get("flag"),
                    kit_location=where,
                )
            )
        return frozenset(found)


def _short(exc: BaseException) -> str:
    return _SPACES.sub(" ", str(exc)).strip()[:400]


# --------------------------------------------------------------------------------------------- locations

_KIT_STEP = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+)\])?$")
_OUR_STEP = re.compile(r"^(?P<name>Q\{[^}]*\}[^\[\]]+|[^\[\]]+)(?:\[(?P<index>\d+)\])?$")
_PREFIXES = {
    "cda": "urn:hl7-org:v3",
    "sdtc": "urn:hl7-org:sdtc",
    "lab": "urn:oid:1.3.6.1.4.1.19376.1.3.2",
    "pharm": "urn:ihe:pharm",
    "xsl": "http://www.w3.org/1999/XSL/Transform",
}


def _lexical(el: etree._Element) -> str:
    qname = etree.QName(el)
    return f"{el.prefix}:{qname.localname}" if el.prefix else qname.localname


def _clark(name: str) -> str:
    """Our step name (``cda:id``, ``Q{uri}name``, ``name``) in lxml's ``{uri}name`` form."""
    if name.startswith("Q{"):
        return "{" + name[2:]
    prefix, _, local = name.rpartition(":")
    return f"{{{_PREFIXES[prefix]}}}{local}" if prefix else local


def node_path(tree: etree._ElementTree, location: str, *, notation: str) -> str:
    """A reported location as lxml's positional path of the node, so both engines' can be compared.

    ``notation="kit"``: the kit's (``full-path-notation`` 2: names as written in the document,
    an index only after the first); ``"ours"``: the project's (``/cda:ClinicalDocument[1]/…``).
    A location that does not resolve is returned as it was, prefixed with ``?``.
    """
    if location in ("", "/"):
        return "/"
    steps = location.split("/")
    if steps[0] != "":
        return f"?{location}"
    steps = steps[1:]
    tail = ""
    if steps and steps[-1].startswith("@"):
        tail = "/" + (steps.pop() if len(steps[-1]) > 1 else "text()")
    elif steps and steps[-1].startswith("text()"):
        steps.pop()
        tail = "/text()"
    current: etree._Element | None = None
    for step in steps:
        match = (_KIT_STEP if notation == "kit" else _OUR_STEP).match(step)
        if match is None:
            return f"?{location}"
        index = int(match["index"] or 1)
        candidates = [tree.getroot()] if current is None else [c for c in current if isinstance(c.tag, str)]
        if notation == "kit":
            same = [c for c in candidates if _lexical(c) == match["name"]]
        else:
            try:
                tag = _clark(match["name"])
            except KeyError:
                return f"?{location}"
            same = [c for c in candidates if c.tag == tag]
        if len(same) < index:
            return f"?{location}"
        current = same[index - 1]
    if current is None:
        return f"?{location}"
    if tail.startswith("/@"):
        name = tail[2:]
        prefix, _, local = name.rpartition(":")
        if prefix:
            uri = current.nsmap.get(prefix) or _PREFIXES.get(prefix) or prefix
            name = f"{{{uri}}}{local}"
        tail = f"/@{name}"
    return tree.getpath(current) + tail


# --------------------------------------------------------------------------------------------- the API

_engines: dict[Path, KitEngine] = {}
_engines_lock = threading.Lock()


def _engine(kit: Path) -> KitEngine:
    key = kit.resolve()
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            work = Path(tempfile.mkdtemp(prefix="kit-engine-"))
            atexit.register(shutil.rmtree, work, True)
            engine = _engines[key] = KitEngine(key, work)
        return engine


def kit_findings(xml_bytes: bytes, schematron_path: Path, *, kit: Path = KIT) -> frozenset[KitFinding]:
    """What the kit's own engine reports for one schematron of ``kit`` on a document."""
    return _engine(kit).findings(xml_bytes, schematron_path)


def kit_engine(kit: Path = KIT) -> KitEngine:
    """The session's engine for ``kit`` (its mirror, fixes and compiled schematrons)."""
    return _engine(kit)


def volet_schematron(xml_bytes: bytes, validator: CdaValidator) -> Path | None:
    """The volet schematron the project's validator picks for a document (templateIds, type code), if any."""
    root = parse_xml(xml_bytes, what="the CDA document")
    hl7 = "urn:hl7-org:v3"
    clinical = root if root.tag == f"{{{hl7}}}ClinicalDocument" else next(root.iter(f"{{{hl7}}}ClinicalDocument"))
    template_ids = [(t.get("root", ""), t.get("extension")) for t in clinical.findall(f"{{{hl7}}}templateId")]
    code = clinical.find(f"{{{hl7}}}code")
    chosen = select_volets(validator.volets(), template_ids, None if code is None else code.get("code"))
    return chosen[0].path if chosen else None


def comparable(finding: KitFinding) -> Comparable:
    """A kit finding as (severity, message, node)."""
    return (finding.severity, finding.message, finding.location)


def project_comparable(finding: Finding, document: etree._ElementTree) -> Comparable:
    """A finding of the project's validator as (severity, message, node)."""
    location = node_path(document, finding.location or "", notation="ours")
    return (finding.severity.value, _SPACES.sub(" ", finding.message).strip(), location)


def project_findings(validator: CdaValidator, xml_bytes: bytes, name: str) -> tuple[frozenset[Comparable], str | None]:
    """The project's findings of one schematron (``VSM_2023.01``, ``StrucMin`` …) on a document, comparable,
    and why it could not run (``schematron.unavailable``), if it could not."""
    report = validator.validate(xml_bytes, schema=False, volet=name, generic=())
    document = parse_xml(xml_bytes, what="the CDA document").getroottree()
    mine = [f for f in report.findings if f.schematron == name]
    unavailable = next((f.message for f in mine if f.rule == "schematron.unavailable"), None)
    found = frozenset(project_comparable(f, document) for f in mine if f.rule != "schematron.unavailable")
    return found, unavailable


def settings(cache_dir: Path | None = None) -> CdaSettings:
    """Settings for the project's validator on the 2025 kit (no disk cache unless one is given)."""
    return CdaSettings(kit_dir=KIT, cache_dir=cache_dir, disk_cache=cache_dir is not None)
