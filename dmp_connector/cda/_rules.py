"""Structural checks of a CI-SIS CDA header, in Python, with messages a developer understands.

The ANS schematrons say *that* a document is wrong, in the words of the specification; these
checks say *what* to fix, in plain words, and run without Saxon. They cover the header rules
of ``../reference/cda.md`` §1 that most often go wrong: realm, typeId and templateIds, the
type code and the value sets of the XDS metadata, dates and their time zones, the INS and
the traits that must come with it, author, custodian, legal authenticator, service event
and encounter, versions and replacement, the body.

Each rule has a stable id (``patient.ins-traits``), a default severity and a function that
yields the problems it finds. :data:`RULES` is the list, in the order of the header.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from lxml import etree

from dmp_connector.errors import ConfigurationError, InvalidIdentifierError, MalformedResponseError, UnsafeXmlError
from dmp_connector.ins import INS, InsOid
from dmp_connector.xml import parse_xml_file

if TYPE_CHECKING:
    from ._valueset import ValueSet

__all__ = ["RULES", "Issue", "Rule", "ValueSets", "element_location", "find_document", "run_rules"]

_log = logging.getLogger("dmp_connector.cda")

HL7 = "urn:hl7-org:v3"
_NS = {"cda": HL7, "sdtc": "urn:hl7-org:sdtc", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
_LOCATION_PREFIXES = {HL7: "cda", "urn:hl7-org:sdtc": "sdtc", "http://www.w3.org/1999/XSL/Transform": "xsl"}

IDNAT_PS = "1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "1.2.250.1.71.4.2.2"
MES_DOCUMENTS_HOST = "1.2.250.1.213.4.1"  # custodian of documents the patient produced
INS_OIDS = frozenset(oid.value for oid in InsOid)
HL7_FRANCE_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"
XDS_SD_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"
_CISIS_DOCUMENT_TEMPLATES = "1.2.250.1.213.1.1.1."
_HL7_CONFIDENTIALITY_SYSTEM = "2.16.840.1.113883.5.25"  # x_BasicConfidentialityKind's codes

Severity = Literal["error", "warning", "info"]


_Found = Iterator[tuple[etree._Element | None, str] | tuple[etree._Element | None, str, Severity]]
"""What a rule yields: the element at fault (None: the document) and the message; a third item
overrides the rule's severity."""


class Issue(NamedTuple):
    """One problem found by a rule: where (an element, or None for the document) and what, in words."""

    rule: str
    severity: Severity
    element: etree._Element | None
    message: str


@dataclass(frozen=True)
class Rule:
    """A structural rule: a stable id, its default severity, what it checks, and the check itself."""

    id: str
    severity: Severity
    summary: str
    check: Callable[[_Doc], _Found]


# ---------------------------------------------------------------------------------------------
# Value sets: the kit's SVS files when a kit is configured, else the SDK's generated constants


@dataclass
class ValueSets:
    """Membership tests on the ANS value sets the SDK carries, by name (``JDV_J07_XdsTypeCode_CISIS``).

    With a kit (``directory``: its ``jeuxDeValeurs/``), the kit's own file of that set, found by
    the set's OID (the kit renames files: the 2025 kit writes ``jdv-code-probleme-cisis.xml`` for
    ``JDV_ProblemCodes_CISIS``), so that the structural checks and the schematrons use the same
    version of a set. Without a kit, the constants generated into :mod:`dmp_connector.cda.valuesets`.
    A set that cannot be found is a :class:`~dmp_connector.errors.ConfigurationError`: a kit
    lacking a set, or with an unreadable one, is never completed from the SDK's copy.
    """

    directory: Path | None = None
    _cache: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    _files: dict[str, Path] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def contains(self, name: str, code: str, system: str) -> bool:
        """Whether (code, system) is in the set ``name``; ConfigurationError when the set cannot be found."""
        return (code, system) in self._codes(name)

    def _codes(self, name: str) -> frozenset[tuple[str, str]]:
        with self._lock:
            if name not in self._cache:
                known = _known(name)
                if self.directory is None:
                    self._cache[name] = frozenset((c.code, c.code_system) for c in known.concepts)
                else:
                    self._cache[name] = self._from_kit(known.name, known.oid)
            return self._cache[name]

    def _from_kit(self, name: str, oid: str) -> frozenset[tuple[str, str]]:
        assert self.directory is not None
        if self._files is None:
            self._files = _files_by_oid(self.directory)
        path = self._files.get(oid)
        if path is None:
            raise ConfigurationError(
                f"the kit's value sets ({self.directory}) have no {name} (OID {oid})",
                hint="point [cda] kit_dir at a complete ANS TestContenuCDA kit; the SDK never replaces"
                " a missing set of the kit with its own copy",
            )
        try:
            root = parse_xml_file(path)
        except (MalformedResponseError, UnsafeXmlError) as exc:
            raise ConfigurationError(
                f"the kit's value set {path.name} ({name}) cannot be read: {exc.message}",
                hint="restore the file from the ANS kit",
            ) from exc
        return frozenset(
            (c.get("code", ""), c.get("codeSystem", "")) for c in root.iter("{urn:ihe:iti:svs:2008}Concept")
        )


def _known(name: str) -> ValueSet:
    from dmp_connector.cda import valuesets

    found = valuesets.VALUE_SETS.get(name)
    if found is None:  # a rule naming a set the SDK does not generate: a defect of the SDK
        raise ConfigurationError(f"the SDK carries no value set named {name}", hint="report this to the SDK")
    return found


_VALUE_SET_ID = re.compile(rb"<(?:\w+:)?ValueSet\b[^>]*?\bid=\"([0-9.]+)\"")


def _files_by_oid(directory: Path) -> dict[str, Path]:
    """The SVS files of a folder by value set OID (read from each file's first bytes)."""
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.xml")):
        try:
            with path.open("rb") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        match = _VALUE_SET_ID.search(head)
        if match:
            found.setdefault(match.group(1).decode("ascii"), path)
    return found


# ---------------------------------------------------------------------------------------------
# The document being checked


@dataclass
class _Doc:
    root: etree._Element
    value_sets: ValueSets

    def all(self, path: str, node: etree._Element | None = None) -> list[etree._Element]:
        found = (self.root if node is None else node).xpath(path, namespaces=_NS)
        assert isinstance(found, list)
        return [e for e in found if isinstance(e, etree._Element)]

    def one(self, path: str, node: etree._Element | None = None) -> etree._Element | None:
        found = self.all(path, node)
        return found[0] if found else None

    @property
    def structured(self) -> bool:
        return self.one("cda:component/cda:structuredBody") is not None

    @property
    def non_xml(self) -> bool:
        return self.one("cda:component/cda:nonXMLBody") is not None


def find_document(root: etree._Element) -> etree._Element | None:
    """The ``ClinicalDocument``: the root, or inside a self-presenting document (an XSLT wrapper)."""
    if root.tag == f"{{{HL7}}}ClinicalDocument":
        return root
    return next(root.iter(f"{{{HL7}}}ClinicalDocument"), None)


def element_location(element: etree._Element) -> str:
    """An XPath to ``element`` in the form the schematron reports use: ``/cda:ClinicalDocument[1]/…``."""
    steps = []
    node: etree._Element | None = element
    while node is not None:
        qname = etree.QName(node)
        uri = qname.namespace or ""
        prefix = _LOCATION_PREFIXES.get(uri)
        name = (
            qname.localname if not uri else f"{prefix}:{qname.localname}" if prefix else f"Q{{{uri}}}{qname.localname}"
        )
        parent = node.getparent()
        index = 1 if parent is None else 1 + sum(1 for s in node.itersiblings(preceding=True) if s.tag == node.tag)
        steps.append(f"/{name}[{index}]")
        node = parent
    return "".join(reversed(steps))


# ---------------------------------------------------------------------------------------------
# HL7 dates


_TS = re.compile(
    r"^(?P<y>\d{4})(?P<m>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?P<f>\.\d{1,4})?(?P<tz>[+-]\d{4})?$"
)


@dataclass(frozen=True)
class _Ts:
    moment: datetime
    has_time: bool
    has_zone: bool


def _parse_ts(value: str) -> _Ts | None:
    """An HL7 TS (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][±ZZZZ]``), or None when it is not one."""
    m = _TS.match(value)
    if m is None:
        return None
    try:
        zone = None
        if m["tz"]:
            sign = 1 if m["tz"][0] == "+" else -1
            hours, minutes = int(m["tz"][1:3]), int(m["tz"][3:5])
            if hours > 14 or minutes > 59:
                return None
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        moment = datetime(
            int(m["y"]),
            int(m["m"] or 1),
            int(m["d"] or 1),
            int(m["h"] or 0),
            int(m["mi"] or 0),
            int(m["s"] or 0),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return _Ts(moment, m["h"] is not None, zone is not None)


def _before(end: _Ts, start: _Ts) -> bool:
    if end.has_zone and start.has_zone:
        return end.moment.astimezone(UTC) < start.moment.astimezone(UTC)
    return end.moment.replace(tzinfo=None) < start.moment.replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# The rules


def _realm(doc: _Doc) -> _Found:
    realms = doc.all("cda:realmCode")
    if len(realms) != 1 or realms[0].get("code") != "FR":
        yield (realms[0] if realms else None), 'the document needs exactly one <realmCode code="FR"/>'


def _type_id(doc: _Doc) -> _Found:
    type_id = doc.one("cda:typeId")
    if type_id is None or (type_id.get("root"), type_id.get("extension")) != ("2.16.840.1.113883.1.3", "POCD_HD000040"):
        yield type_id, 'the document needs <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>'


def _template_ids(doc: _Doc) -> _Found:
    roots = [t.get("root", "") for t in doc.all("cda:templateId")]
    for required, name in ((HL7_FRANCE_TEMPLATE, "HL7 France"), (CISIS_TEMPLATE, "CI-SIS")):
        count = roots.count(required)
        if count != 1:
            yield None, f"the {name} templateId {required} must appear exactly once (found {count})"
    if doc.non_xml:
        others = sorted(set(roots) - {HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, XDS_SD_TEMPLATE})
        if XDS_SD_TEMPLATE not in roots:
            yield None, f"a document with a non-XML body (PDF …) needs the IHE XDS-SD templateId {XDS_SD_TEMPLATE}"
        if others:
            yield (
                None,
                "a document with a non-XML body carries only the HL7 France, CI-SIS and XDS-SD templateIds;"
                f" remove {', '.join(others)} (a volet templateId is for structured documents)",
            )
    elif doc.structured and not set(roots) - {HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE}:
        yield None, "a structured document needs the templateId of its volet (e.g. 1.2.250.1.213.1.1.1.13 for VSM)"


def _volet_version(doc: _Doc) -> _Found:
    volet = [
        t
        for t in doc.all("cda:templateId")
        if t.get("root", "").startswith(_CISIS_DOCUMENT_TEMPLATES) and t.get("root") != CISIS_TEMPLATE
    ]
    if volet and not any(t.get("extension") for t in volet):
        yield (
            volet[-1],
            f"the volet templateId {volet[-1].get('root')} has no @extension: the volet's version (e.g. 2024.01)"
            " goes there; without it the version cannot be known and the kit's oldest schematron of the volet is used",
        )


def _document_id(doc: _Doc) -> _Found:
    ids = doc.all("cda:id")
    if len(ids) != 1:
        yield None, f"the document needs exactly one <id> (found {len(ids)})"
    elif not ids[0].get("root") or ids[0].get("nullFlavor"):
        yield ids[0], "the document's <id> needs a @root (an OID or a UUID) and no nullFlavor"


def _type_code(doc: _Doc) -> _Found:
    code = doc.one("cda:code")
    if code is None:
        yield None, "the document needs a <code>: its type, from the value set JDV_J07_XdsTypeCode_CISIS"
        return
    value, system = code.get("code"), code.get("codeSystem")
    if not value or not system:
        yield code, "the document's <code> needs @code and @codeSystem (its type, from JDV_J07_XdsTypeCode_CISIS)"
        return
    if not code.get("displayName"):
        yield code, "the document's <code> needs a @displayName (the label of the type code)"
    if not doc.value_sets.contains("JDV_J07_XdsTypeCode_CISIS", value, system):
        yield (
            code,
            f"the type code {value} (system {system}) is not in the value set JDV_J07_XdsTypeCode_CISIS"
            " (1.2.250.1.213.1.1.5.471): the DMP derives typeCode and classCode from it",
        )


def _title(doc: _Doc) -> _Found:
    title = doc.one("cda:title")
    if title is None or not "".join(str(t) for t in title.itertext()).strip():
        yield title, "the document needs a non-empty <title>"


def _effective_time(doc: _Doc) -> _Found:
    time = doc.one("cda:effectiveTime")
    if time is None or not time.get("value"):
        yield time, "the document needs <effectiveTime value=…/>: its creation date and time, with a time zone"


def _confidentiality(doc: _Doc) -> _Found:
    conf = doc.one("cda:confidentialityCode")
    if conf is None:
        yield None, 'the document needs a <confidentialityCode> (usually code="N")'
        return
    value, system = conf.get("code", ""), conf.get("codeSystem", "")
    if not doc.value_sets.contains("JDV_HL7_XBasicConfidentialityKind_CISIS", value, system):
        yield (
            conf,
            f"the confidentiality code {value or '(none)'} (system {system or 'none'}) is not one of N, R, V of"
            f" {_HL7_CONFIDENTIALITY_SYSTEM}; masking codes (INVISIBLE_PATIENT …) go in the XDS metadata, not here",
        )


def _language(doc: _Doc) -> _Found:
    lang = doc.one("cda:languageCode")
    code = "" if lang is None else lang.get("code", "")
    if not code:
        yield lang, 'the document needs <languageCode code="fr-FR"/>'
    elif not re.fullmatch(r"[a-z]{2,3}-[A-Z]{2}", code):
        yield lang, f'the language code "{code}" is not of the form ll-CC; CI-SIS documents use "fr-FR"'
    elif code != "fr-FR":
        yield lang, f'the language code is "{code}"; CI-SIS documents use "fr-FR"', "warning"


def _set_id_version(doc: _Doc) -> _Found:
    set_id = doc.one("cda:setId")
    if set_id is None or not set_id.get("root"):
        yield set_id, "the document needs a <setId> with a @root: the id shared by all versions of the document"
    version = doc.one("cda:versionNumber")
    value = "" if version is None else version.get("value", "")
    if not value.isdigit() or int(value) < 1:
        yield version, "the document needs <versionNumber value=…/>: a positive integer, 1 for a first version"
    doc_id = doc.one("cda:id")
    if set_id is not None and doc_id is not None and value.isdigit() and int(value) > 1:
        same = (set_id.get("root"), set_id.get("extension")) == (doc_id.get("root"), doc_id.get("extension"))
        if same:
            yield (
                set_id,
                f"this is version {value} but its <id> is its <setId>: each version needs a new id,"
                " the setId stays the first version's",
                "warning",
            )


def _replacement(doc: _Doc) -> _Found:
    related = doc.all("cda:relatedDocument")
    if len(related) > 1:
        yield related[1], "a document replaces at most one other: keep a single <relatedDocument>"
    for rel in related:
        if rel.get("typeCode") != "RPLC":
            yield rel, f'relatedDocument/@typeCode is "{rel.get("typeCode")}": only RPLC (replacement) is allowed'
        parents = doc.all("cda:parentDocument/cda:id", rel)
        if len(parents) != 1 or not parents[0].get("root"):
            yield (
                rel,
                "relatedDocument needs exactly one parentDocument/id with a @root: the id of the replaced version",
            )
            continue
        own = doc.one("cda:id")
        if own is not None and (own.get("root"), own.get("extension")) == (
            parents[0].get("root"),
            parents[0].get("extension"),
        ):
            yield parents[0], "the replaced document's id is this document's own id: a new version needs a new id"
        version = doc.one("cda:versionNumber")
        if version is not None and version.get("value") == "1":
            yield version, "this document replaces another but its versionNumber is 1", "warning"


def _copy_time(doc: _Doc) -> _Found:
    copy = doc.one("cda:copyTime")
    if copy is not None:
        yield copy, "<copyTime> is not used in CI-SIS documents: remove it", "warning"


def _record_target(doc: _Doc) -> _Found:
    targets = doc.all("cda:recordTarget")
    if len(targets) != 1:
        yield None, f"the document needs exactly one <recordTarget> (the patient; found {len(targets)})"
        return
    role = doc.one("cda:patientRole", targets[0])
    if role is None or not doc.all("cda:id", role):
        yield targets[0], "recordTarget/patientRole needs at least one <id>: the INS, and/or the facility's own id"
        return
    for pid in doc.all("cda:id", role):
        if pid.get("nullFlavor") or not pid.get("root") or not pid.get("extension"):
            yield pid, "each patient id needs @root (the OID of who issued it) and @extension, without nullFlavor"
    if doc.one("cda:patient/cda:birthTime", role) is None:
        yield role, "the patient needs a <birthTime>"


def _ins_ids(doc: _Doc) -> Iterator[etree._Element]:
    return iter(
        pid
        for pid in doc.all("cda:recordTarget/cda:patientRole/cda:id")
        if pid.get("root") in INS_OIDS and not pid.get("nullFlavor")
    )


def _ins_oid(doc: _Doc) -> _Found:
    for pid in doc.all("cda:recordTarget/cda:patientRole/cda:id"):
        root = pid.get("root", "")
        if root.startswith("1.2.250.1.213.1.4.") and root not in INS_OIDS:
            try:
                InsOid.parse(root)
            except InvalidIdentifierError as exc:
                if root.rsplit(".", 1)[-1] in ("2", "6", "7", "5"):
                    yield pid, f"{exc.message}: an INS uses 1.2.250.1.213.1.4.8 (NIR) or .9 (NIA), .10/.11 in tests"


def _ins_matricule(doc: _Doc) -> _Found:
    for pid in _ins_ids(doc):
        try:
            ins = INS.from_cda_id(pid.get("root", ""), pid.get("extension", ""), lenient=True)
        except InvalidIdentifierError as exc:
            yield pid, f"the INS in this id is not a valid matricule: {exc.message}"
            continue
        if not ins.key_valid:
            yield (
                pid,
                "the INS key (last two digits) does not match the 13 characters before it:"
                " INSi and the DMP refuse such an INS (the kit's test material carries some)",
                "warning",
            )


def _ins_traits(doc: _Doc) -> _Found:
    pid = next(_ins_ids(doc), None)
    if pid is None:
        return
    patient = doc.one("cda:recordTarget/cda:patientRole/cda:patient")
    if patient is None:
        yield pid, "the document carries an INS but no <patient>: its identity traits are required"
        return
    traits = (
        ("cda:name/cda:family[@qualifier='BR']", 'the birth name: <family qualifier="BR">'),
        ("cda:name/cda:given[@qualifier='BR']", 'the first birth first name: <given qualifier="BR">'),
        ("cda:name/cda:given[not(@qualifier)]", "the list of birth first names: a <given> without qualifier"),
        ("cda:birthTime[@value]", "the birth date: <birthTime value=…>"),
        ("cda:birthplace/cda:place/cda:addr/cda:county", "the birth place: birthplace/place/addr/county (INSEE code)"),
        ("cda:administrativeGenderCode[@code]", "the sex: <administrativeGenderCode code=…>"),
    )
    for path, words in traits:
        if doc.one(path, patient) is None:
            yield patient, f"the patient has an INS, so every INS trait is required; missing: {words}"


def _name_qualifiers(doc: _Doc) -> _Found:
    for family in doc.all("cda:recordTarget/cda:patientRole/cda:patient/cda:name/cda:family"):
        if family.get("qualifier") not in ("BR", "SP", "CL"):
            yield (
                family,
                "every patient <family> needs a @qualifier: BR (birth name), SP (used name) or CL (RNIV used name)",
            )
    for given in doc.all("cda:recordTarget/cda:patientRole/cda:patient/cda:name/cda:given[@qualifier]"):
        if given.get("qualifier") not in ("BR", "CL"):
            yield given, "a patient <given> qualifier is BR (first birth first name) or CL (used first name)"


def _gender(doc: _Doc) -> _Found:
    gender = doc.one("cda:recordTarget/cda:patientRole/cda:patient/cda:administrativeGenderCode")
    if gender is None or gender.get("nullFlavor"):
        return
    value, system = gender.get("code", ""), gender.get("codeSystem", "")
    if not doc.value_sets.contains("JDV_J143_AdministrativeGender_CISIS", value, system):
        yield gender, f"the sex code {value} (system {system}) is not F, M or UN of 2.16.840.1.113883.5.1 (JDV_J143)"


def _authors(doc: _Doc) -> _Found:
    authors = doc.all("cda:author")
    if not authors:
        yield None, "the document needs at least one <author> with an <assignedAuthor>"
    for author in authors:
        if doc.one("cda:assignedAuthor", author) is None:
            yield author, "each <author> needs an <assignedAuthor>"
        time = doc.one("cda:time", author)
        if time is None or not (time.get("value") or time.get("nullFlavor")):
            yield author, "each <author> needs a <time> with a @value (or a nullFlavor)"


def _author_ids(doc: _Doc) -> _Found:
    for assigned in doc.all("cda:author/cda:assignedAuthor"):
        ids = doc.all("cda:id", assigned)
        if not ids:
            yield assigned, f"assignedAuthor needs an <id>: the professional's national id (root {IDNAT_PS})"
        for aid in ids:
            root = aid.get("root")
            if aid.get("nullFlavor") or root in INS_OIDS or root == IDNAT_PS:
                continue
            yield (
                aid,
                f"an author's id has root {root}: a professional (or a device) is identified under IdNat_PS"
                f" {IDNAT_PS} with the id prefixed by its kind (8 + RPPS …), a patient author by an INS OID",
            )
        code = doc.one("cda:code", assigned)
        if code is not None and code.get("code") and code.get("codeSystem"):
            known = doc.value_sets.contains(
                "JDV_J01_XdsAuthorSpecialty_CISIS", code.get("code", ""), code.get("codeSystem", "")
            )
            if not known:
                yield (
                    code,
                    f"the author's profession/specialty {code.get('code')} is not in JDV_J01_XdsAuthorSpecialty_CISIS"
                    " (the DMP's authorSpecialty)",
                    "warning",
                )


def _org_ids(doc: _Doc, path: str, where: str, severity: Severity) -> _Found:
    for org in doc.all(path):
        ids = [i for i in doc.all("cda:id", org) if not i.get("nullFlavor")]
        if ids and not any(i.get("root") == IDNAT_STRUCT for i in ids):
            roots = ", ".join(sorted({i.get("root") or "(none)" for i in ids}))
            yield (
                ids[0],
                f"{where} is identified under {roots}: organisations use IdNat_Struct {IDNAT_STRUCT}"
                " (1 + FINESS, 3 + SIRET …)",
                severity,
            )


def _organisation_ids(doc: _Doc) -> _Found:
    yield from _org_ids(
        doc, "cda:author/cda:assignedAuthor/cda:representedOrganization", "the author's organisation", "error"
    )
    yield from _org_ids(
        doc,
        "cda:legalAuthenticator/cda:assignedEntity/cda:representedOrganization",
        "the legal authenticator's organisation",
        "warning",
    )
    yield from _org_ids(
        doc,
        "cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/cda:representedOrganization",
        "the performer's organisation",
        "warning",
    )
    yield from _org_ids(
        doc, "cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility", "the facility", "warning"
    )


def _custodian(doc: _Doc) -> _Found:
    custodians = doc.all("cda:custodian")
    if len(custodians) != 1:
        yield None, f"the document needs exactly one <custodian> (the organisation keeping it; found {len(custodians)})"
        return
    ids = doc.all("cda:assignedCustodian/cda:representedCustodianOrganization/cda:id", custodians[0])
    if len(ids) != 1:
        yield custodians[0], "representedCustodianOrganization needs exactly one <id>"
    elif ids[0].get("root") not in (IDNAT_STRUCT, MES_DOCUMENTS_HOST):
        yield (
            ids[0],
            f"the custodian's id has root {ids[0].get('root')}: use IdNat_Struct {IDNAT_STRUCT}"
            f" (or {MES_DOCUMENTS_HOST} for documents the patient produced)",
        )


def _legal_authenticator(doc: _Doc) -> _Found:
    legal = doc.all("cda:legalAuthenticator")
    if len(legal) != 1:
        yield None, f"the document needs exactly one <legalAuthenticator> (found {len(legal)})"
        return
    la = legal[0]
    time = doc.one("cda:time", la)
    if time is None or not (time.get("value") or time.get("nullFlavor")):
        yield la, "legalAuthenticator needs a <time> with a @value (or a nullFlavor)"
    sig = doc.one("cda:signatureCode", la)
    if sig is None or sig.get("code") != "S":
        yield (sig if sig is not None else la), 'legalAuthenticator needs <signatureCode code="S"/>'
    entity = doc.one("cda:assignedEntity", la)
    if entity is None or doc.one("cda:assignedPerson", entity) is None:
        yield la, "legalAuthenticator needs assignedEntity/assignedPerson: the person who vouches for the document"
        return
    for lid in doc.all("cda:id", entity):
        root = lid.get("root")
        if not lid.get("nullFlavor") and root != IDNAT_PS and root not in INS_OIDS:
            yield (
                lid,
                f"the legal authenticator's id has root {root}: a professional uses IdNat_PS {IDNAT_PS}",
                "warning",
            )


def _service_event(doc: _Doc) -> _Found:
    events = doc.all("cda:documentationOf/cda:serviceEvent")
    if not events:
        yield None, "the document needs documentationOf/serviceEvent: the act documented, with its dates"
        return
    first = events[0]
    if doc.one("cda:effectiveTime/cda:low[@value]", first) is None:
        yield first, "the first serviceEvent needs effectiveTime/low with a @value: when the act started"
    performers = doc.all("cda:performer", first)
    if len(performers) != 1:
        yield first, f"the first serviceEvent needs exactly one <performer> (found {len(performers)})"


def _practice_setting(doc: _Doc) -> _Found:
    first = doc.one("cda:documentationOf/cda:serviceEvent")
    if first is None:
        return
    code = doc.one("cda:performer/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode", first)
    if code is None:
        yield (
            first,
            "the first serviceEvent's performer needs representedOrganization/standardIndustryClassCode: the"
            " practice setting (JDV_J04, e.g. AMBULATOIRE), which becomes the DMP's practiceSettingCode",
        )
        return
    value, system = code.get("code", ""), code.get("codeSystem", "")
    if not doc.value_sets.contains("JDV_J04_XdsPracticeSettingCode_CISIS", value, system):
        yield (
            code,
            f"the practice setting {value or '(none)'} (system {system or 'none'}) is not in"
            " JDV_J04_XdsPracticeSettingCode_CISIS (1.2.250.1.213.1.1.5.467), e.g. AMBULATOIRE, ETABLISSEMENT",
        )


def _encounter(doc: _Doc) -> _Found:
    encounters = doc.all("cda:componentOf/cda:encompassingEncounter")
    if len(encounters) != 1:
        yield None, "the document needs exactly one componentOf/encompassingEncounter (the encounter)"
        return
    if doc.one("cda:effectiveTime", encounters[0]) is None:
        yield encounters[0], "encompassingEncounter needs an <effectiveTime>"


def _facility_type(doc: _Doc) -> _Found:
    encounter = doc.one("cda:componentOf/cda:encompassingEncounter")
    if encounter is None:
        return
    code = doc.one("cda:location/cda:healthCareFacility/cda:code", encounter)
    if code is None:
        yield (
            encounter,
            "no encompassingEncounter/location/healthCareFacility/code: the DMP needs the facility type"
            " (JDV_J02, e.g. SA07 Cabinet individuel) as healthcareFacilityTypeCode",
            "warning",
        )
        return
    value, system = code.get("code", ""), code.get("codeSystem", "")
    if not doc.value_sets.contains("JDV_J02_XdsHealthcareFacilityTypeCode_CISIS", value, system):
        yield (
            code,
            f"the facility type {value or '(none)'} (system {system or 'none'}) is not in"
            " JDV_J02_XdsHealthcareFacilityTypeCode_CISIS (1.2.250.1.213.1.1.5.466), e.g. SA07, SA01",
        )


# Header times: (path, words, used in the DMP's metadata). A time the metadata uses must be
# a valid HL7 date with its time zone (an error otherwise); for the others a wrong form is a
# warning, since the kit's own checks accept them (a "+100" zone in BIO-TROD's examples).
_HEADER_TIMES = (
    ("cda:effectiveTime", "the document's creation time (effectiveTime)", True),
    ("cda:author/cda:time", "an author's time", True),
    ("cda:legalAuthenticator/cda:time", "the legal authenticator's time", False),
    ("cda:authenticator/cda:time", "an authenticator's time", False),
    ("cda:recordTarget/cda:patientRole/cda:patient/cda:birthTime", "the birth time", True),
    ("cda:documentationOf/cda:serviceEvent/cda:effectiveTime", "a serviceEvent's time", True),
    ("cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:low", "a serviceEvent's start", True),
    ("cda:documentationOf/cda:serviceEvent/cda:effectiveTime/cda:high", "a serviceEvent's end", True),
    ("cda:componentOf/cda:encompassingEncounter/cda:effectiveTime", "the encounter's time", False),
    ("cda:componentOf/cda:encompassingEncounter/cda:effectiveTime/cda:low", "the encounter's start", False),
    ("cda:componentOf/cda:encompassingEncounter/cda:effectiveTime/cda:high", "the encounter's end", False),
    ("cda:participant/cda:time", "a participant's time", False),
    ("cda:participant/cda:time/cda:low", "a participant's start", False),
    ("cda:participant/cda:time/cda:high", "a participant's end", False),
)
# Times that need a time zone when they have an hour: creation, authoring and signing.
_ZONE_REQUIRED = frozenset(
    {"cda:effectiveTime", "cda:author/cda:time", "cda:legalAuthenticator/cda:time", "cda:authenticator/cda:time"}
)


def _date_format(doc: _Doc) -> _Found:
    for path, words, metadata in _HEADER_TIMES:
        for el in doc.all(path):
            value = el.get("value")
            if value is not None and _parse_ts(value) is None:
                message = (
                    f'{words} "{value}" is not a valid date: YYYYMMDD, or YYYYMMDDHHMM[SS]±ZZZZ for a date and time'
                )
                yield (el, message) if metadata else (el, message, "warning")


def _time_zones(doc: _Doc) -> _Found:
    for path, words, _ in _HEADER_TIMES:
        for el in doc.all(path):
            ts = _parse_ts(el.get("value") or "")
            if ts is None or not ts.has_time or ts.has_zone:
                continue
            if path in _ZONE_REQUIRED:
                yield el, f'{words} "{el.get("value")}" has an hour but no time zone: write it as YYYYMMDDHHMMSS+ZZZZ'
            else:
                yield (
                    el,
                    f'{words} "{el.get("value")}" has an hour but no time zone: it will be read as local time;'
                    " write YYYYMMDDHHMMSS+ZZZZ",
                    "warning",
                )


def _periods(doc: _Doc) -> _Found:
    for path, words in (
        ("cda:documentationOf/cda:serviceEvent/cda:effectiveTime", "the service"),
        ("cda:componentOf/cda:encompassingEncounter/cda:effectiveTime", "the encounter"),
    ):
        for time in doc.all(path):
            low, high = doc.one("cda:low", time), doc.one("cda:high", time)
            if low is None or high is None:
                continue
            start, end = _parse_ts(low.get("value") or ""), _parse_ts(high.get("value") or "")
            if start is not None and end is not None and _before(end, start):
                yield high, f"{words} ends ({high.get('value')}) before it starts ({low.get('value')})"


def _body(doc: _Doc) -> _Found:
    components = doc.all("cda:component")
    bodies = doc.all("cda:component/cda:structuredBody | cda:component/cda:nonXMLBody")
    if len(components) != 1 or len(bodies) != 1:
        yield None, "the document needs exactly one <component> holding a <structuredBody> or a <nonXMLBody>"
        return
    text = doc.one("cda:nonXMLBody/cda:text", components[0])
    if doc.non_xml:
        if text is None or not text.get("mediaType"):
            yield components[0], "nonXMLBody/text needs a @mediaType (application/pdf, text/plain …)"
        elif text.get("representation") != "B64" or not (text.text or "").strip():
            yield text, 'nonXMLBody/text holds the file in base64 with representation="B64"'


RULES: tuple[Rule, ...] = (
    Rule("header.realm", "error", "exactly one realmCode FR", _realm),
    Rule("header.type-id", "error", "typeId 2.16.840.1.113883.1.3 / POCD_HD000040", _type_id),
    Rule(
        "header.template-ids",
        "error",
        "HL7 France and CI-SIS templateIds; the volet's, or XDS-SD for a PDF",
        _template_ids,
    ),
    Rule("header.volet-version", "warning", "the volet templateId carries its version in @extension", _volet_version),
    Rule("header.id", "error", "exactly one document id with a root", _document_id),
    Rule("header.type-code", "error", "the type code, with its label, in JDV_J07", _type_code),
    Rule("header.title", "error", "a non-empty title", _title),
    Rule("header.effective-time", "error", "a creation time", _effective_time),
    Rule("header.confidentiality", "error", "confidentialityCode N, R or V", _confidentiality),
    Rule("header.language", "error", "languageCode fr-FR", _language),
    Rule("header.set-id-version", "error", "setId and a positive versionNumber", _set_id_version),
    Rule("header.replacement", "error", "relatedDocument: RPLC of one other version", _replacement),
    Rule("header.copy-time", "warning", "no copyTime", _copy_time),
    Rule("dates.format", "error", "header dates are valid HL7 dates", _date_format),
    Rule("dates.time-zone", "error", "header date-times carry a time zone", _time_zones),
    Rule("patient.record-target", "error", "one recordTarget with ids and a birth time", _record_target),
    Rule("patient.ins-oid", "error", "no obsolete INS-C OID", _ins_oid),
    Rule("patient.ins-matricule", "error", "the INS is a valid matricule with the right key", _ins_matricule),
    Rule("patient.ins-traits", "error", "an INS comes with all its traits", _ins_traits),
    Rule("patient.name-qualifiers", "error", "family/given qualifiers BR, SP, CL", _name_qualifiers),
    Rule("patient.gender", "error", "sex code in JDV_J143", _gender),
    Rule("author.present", "error", "at least one author, each with a time", _authors),
    Rule("author.id", "error", "authors identified under IdNat_PS (or an INS)", _author_ids),
    Rule("organisation.id", "error", "organisations identified under IdNat_Struct", _organisation_ids),
    Rule("custodian", "error", "one custodian identified under IdNat_Struct", _custodian),
    Rule("legal-authenticator", "error", "one legal authenticator, signature code S", _legal_authenticator),
    Rule("service-event", "error", "a serviceEvent with a start and one performer", _service_event),
    Rule("service-event.practice-setting", "error", "the practice setting, in JDV_J04", _practice_setting),
    Rule("service-event.period", "error", "no service or encounter ending before it starts", _periods),
    Rule("encounter", "error", "one encompassingEncounter with a time", _encounter),
    Rule("encounter.facility-type", "error", "the facility type, in JDV_J02", _facility_type),
    Rule("body", "error", "one body; a non-XML body in base64 with its media type", _body),
)
"""Every structural rule, in the order of the header."""


def run_rules(document: etree._Element, value_sets: ValueSets, rules: tuple[Rule, ...] = RULES) -> list[Issue]:
    """Run the rules on a ``ClinicalDocument`` element; never raises for a problem of the document."""
    doc = _Doc(document, value_sets)
    issues: list[Issue] = []
    for rule in rules:
        for found in rule.check(doc):
            element, message = found[0], found[1]
            severity: Severity = found[2] if len(found) == 3 else rule.severity
            issues.append(Issue(rule.id, severity, element, message))
    return issues
