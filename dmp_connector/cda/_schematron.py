"""The ANS schematrons, compiled to XSLT 3 by our own small compiler and run by Saxon (saxonche).

Why this route
--------------
The kit's schematrons use ``queryBinding="xslt2"`` (XPath 2 functions, sequences,
``doc()``). lxml runs XSLT 1 only, and the ISO "skeleton" XSLTs the kit runs them
through are not part of the data we are given. Two other routes were open: lxml's bundled
XSLT 1 include/expand steps followed by a generator, or a schematron package from PyPI.
We do the two version-independent steps (include, abstract expansion) *in Python* and
generate the XSLT 3 ourselves, because:

* the kit's defects live in exactly those two steps (paths whose case differs from the
  file on disk, includes of empty files): one Python resolver works around them in
  memory, without copying or editing the kit;
* the vocabulary the kit uses is small (pattern, rule, assert, report, let, value-of,
  name, include, extends, abstract patterns with params, phases; diagnostics and
  emph/dir/span are handled too), so the generator stays short and fully ours. Each rule
  runs inside ``xsl:try``: a rule raising a dynamic error on an odd document becomes one
  finding instead of aborting the whole report;
* the output is compact: the generated XSLT emits only the check number, the location and
  the dynamic parts of the message, and the static parts (test, role, text) stay in a side
  table. Abstract rules become named templates instead of being copied into every rule
  that extends them (they are inlined only when they share variables with their caller).
  That keeps the ART-DECOR header schematron (13 000 asserts once expanded) quick to
  compile;
* a missing ART-DECOR vocabulary file (``voc-<oid>-DYNAMIC.xml``) is rebuilt from the kit's
  own value set with that OID and inlined in the stylesheet; relative ``doc()`` paths still
  resolve against the kit because the stylesheet carries the ``.sch`` file's URI as its
  ``xml:base``. Nothing is ever written into the kit.

Semantics follow ISO Schematron: the patterns of the default phase (all patterns without
one); inside a pattern a node is checked by the first rule whose context matches it;
pattern-level ``let`` are global (the kit's "variables" patterns rely on it), rule-level
``let`` are local and evaluated in order with the asserts.

Saxon is imported lazily: without the ``validation`` extra the compiler still produces the
XSLT text, and running it raises a :class:`~dmp_connector.errors.ConfigurationError` naming
the extra. Saxon only reads ``file:`` URIs (``allowedProtocols``), so no schematron can make
it fetch anything from the network.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lxml import etree

from dmp_connector.errors import ConfigurationError, DmpConnectorError, MalformedResponseError, UnsafeXmlError
from dmp_connector.xml import XmlLimits, parse_xml

__all__ = [
    "COMPILER_VERSION",
    "CheckInfo",
    "CompiledSchematron",
    "ExpandedSchema",
    "KitDefectError",
    "RawResult",
    "SchematronEngine",
    "VoletSchematron",
    "build_catalog",
    "compile_schematron",
    "expand",
    "select_volets",
]

_log = logging.getLogger("dmp_connector.cda")

COMPILER_VERSION = "2"
"""Changes whenever the generated XSLT changes, so that disk caches of older versions are ignored."""

SCH_NS = "http://purl.oclc.org/dsdl/schematron"
XSL_NS = "http://www.w3.org/1999/XSL/Transform"
_OUT_NS = "urn:dmp-connector:schematron"  # our helper functions and result elements
_S = "{" + SCH_NS + "}"
_X = "{" + XSL_NS + "}"
_O = "{" + _OUT_NS + "}"

# Kit files are trusted data but large (the ART-DECOR header schematron is 1.1 MB).
_KIT_LIMITS = XmlLimits(max_bytes=64 * 1024 * 1024, max_depth=64)
# Our own Saxon output, parsed back with the hardened parser.
_OUT_LIMITS = XmlLimits(max_bytes=256 * 1024 * 1024, max_depth=16)

# Prefixes used in the locations of the reports; other namespaces are written Q{uri}name.
_LOCATION_PREFIXES = {
    "urn:hl7-org:v3": "cda",
    "urn:hl7-org:sdtc": "sdtc",
    "urn:oid:1.3.6.1.4.1.19376.1.3.2": "lab",
    "urn:ihe:pharm": "pharm",
    "http://www.w3.org/1999/XSL/Transform": "xsl",
}


class KitDefectError(DmpConnectorError):
    """A schematron of the kit cannot be compiled or run because of a defect of the kit itself."""


# ---------------------------------------------------------------------------------------------
# Loading kit files, with the kit's defects worked around


@dataclass
class _Loader:
    """Reads kit files, resolving paths whose case differs from the file on disk (a Windows-made kit)."""

    files: dict[str, str] = field(default_factory=dict)
    """Every file read (absolute path) with the SHA-256 of its bytes: the disk cache checks them."""
    fixes: list[str] = field(default_factory=list)
    """Plain-words notes on the defects worked around."""

    @staticmethod
    def resolve(path: Path) -> Path | None:
        """The existing file at ``path``, matching each segment regardless of case when needed."""
        path = Path(os.path.normpath(path))
        if path.is_file():
            return path
        current = Path(path.anchor)
        for part in path.parts[1:]:
            candidate = current / part
            if candidate.exists():
                current = candidate
                continue
            try:
                matches = [entry for entry in current.iterdir() if entry.name.lower() == part.lower()]
            except OSError:
                return None
            if len(matches) != 1:
                return None
            current = matches[0]
        return current if current.is_file() else None

    def read(self, path: Path, *, what: str) -> bytes:
        path = Path(os.path.normpath(path.absolute()))
        found = self.resolve(path)
        if found is None:
            parent = path.parent
            while parent != parent.parent and not parent.exists():
                parent = parent.parent
            if parent.is_file():
                raise KitDefectError(
                    f"{what} {path.name} is missing: the kit has an empty file {parent.name} where its folder should be"
                )
            raise KitDefectError(f"{what} {path.name} is missing from the kit")
        if found != path:
            self.fixes.append(f"{path.name}: the kit names it with another case; used {found.name}")
        data = found.read_bytes()
        if not data.strip():
            raise KitDefectError(f"{what} {found.name} is an empty file in the kit")
        self.files[str(found)] = hashlib.sha256(data).hexdigest()
        return data

    def load(self, path: Path, *, what: str) -> etree._Element:
        data = self.read(path, what=what)
        try:
            return parse_xml(data, limits=_KIT_LIMITS, what=f"kit file {path.name}")
        except (MalformedResponseError, UnsafeXmlError) as exc:
            # A broken kit file is the kit's defect, never to be taken for a problem of the document.
            raise KitDefectError(f"{what} {path.name}: {exc.message}") from exc


# ---------------------------------------------------------------------------------------------
# The expanded schema: includes resolved, abstract patterns instantiated, phase applied


@dataclass(frozen=True)
class _Check:
    kind: str  # "assert" | "report"
    test: str
    role: str | None
    ident: str | None
    flag: str | None
    see: str | None
    message: tuple[tuple[str, str], ...]  # ("text", s) | ("value-of", xpath) | ("name", xpath)


@dataclass(frozen=True)
class _Let:
    name: str
    value: str


@dataclass(frozen=True)
class _Call:
    rule: str  # id of an abstract rule, run as a named template


_Item = _Let | _Check | _Call


@dataclass(frozen=True)
class _Rule:
    context: str
    ident: str | None
    body: tuple[_Item, ...]


@dataclass(frozen=True)
class _Pattern:
    ident: str
    title: str | None
    rules: tuple[_Rule, ...]


@dataclass(frozen=True)
class ExpandedSchema:
    """A schematron in concrete form, what the generator consumes (inspectable in tests)."""

    path: Path
    title: str | None
    namespaces: Mapping[str, str]
    global_lets: tuple[_Let, ...]
    patterns: tuple[_Pattern, ...]
    abstract_rules: Mapping[str, tuple[_Item, ...]]
    foreign: tuple[etree._Element, ...]
    files: Mapping[str, str]
    fixes: tuple[str, ...]

    def checks(self) -> Iterable[_Check]:
        """Every assert and report, the abstract rules' ones once."""
        for pattern in self.patterns:
            for rule in pattern.rules:
                yield from (item for item in rule.body if isinstance(item, _Check))
        for body in self.abstract_rules.values():
            yield from (item for item in body if isinstance(item, _Check))


def _text(el: etree._Element) -> str:
    return "".join(str(t) for t in el.itertext())


def _is_sch(el: etree._Element, name: str | None = None) -> bool:
    if not isinstance(el.tag, str) or etree.QName(el).namespace != SCH_NS:
        return False
    return name is None or etree.QName(el).localname == name


def _resolve_includes(el: etree._Element, base: Path, loader: _Loader, depth: int = 0) -> None:
    """Replace every ``sch:include`` below ``el`` by the root element of the file it names, recursively."""
    if depth > 20:
        raise KitDefectError("the schematron's includes nest more than 20 levels deep (a cycle?)")
    for inc in list(el.iter(_S + "include")):
        target = base / (inc.get("href") or "")
        root = loader.load(target, what="included schematron")
        found = loader.resolve(Path(os.path.normpath(target.absolute()))) or target
        _resolve_includes(root, found.parent, loader, depth + 1)
        parent = inc.getparent()
        if parent is None:  # pragma: no cover - an include is never a root
            continue
        if _is_sch(root, "schema"):
            # A whole schema included: keep its children (ISO asks for one element; be lenient).
            index = parent.index(inc)
            parent.remove(inc)
            for offset, child in enumerate(c for c in root if isinstance(c.tag, str)):
                parent.insert(index + offset, child)
        else:
            root.tail = inc.tail
            parent.replace(inc, root)


_EXPR_ATTRS = ("context", "test", "select", "value", "path", "subject", "role", "flag")


def _substitute(text: str, params: Mapping[str, str]) -> str:
    """Replace ``$name`` by its parameter value, whole names only (``$elt`` never touches ``$elt_x``)."""
    if not params or "$" not in text:
        return text
    names = "|".join(re.escape(n) for n in sorted(params, key=len, reverse=True))
    return re.sub(rf"\$({names})(?![\w.\-])", lambda m: params[m.group(1)], text)


def _instantiate(abstract: etree._Element, instance: etree._Element) -> etree._Element:
    params = {p.get("name", ""): p.get("value", "") for p in instance if _is_sch(p, "param")}
    new = etree.Element(_S + "pattern")
    if instance.get("id"):
        new.set("id", instance.get("id", ""))
    for child in abstract:
        if not isinstance(child.tag, str) or _is_sch(child, "param"):
            continue
        clone = copy.deepcopy(child)
        for node in clone.iter():
            if not isinstance(node.tag, str):
                continue
            for attr in _EXPR_ATTRS:
                value = node.get(attr)
                if value is not None:
                    node.set(attr, _substitute(value, params))
        new.append(clone)
    return new


def _message(el: etree._Element, diagnostics: Mapping[str, etree._Element]) -> tuple[tuple[str, str], ...]:
    """The parts of an assert's or report's message. A text node of white space only is left out,
    as the ISO skeleton's XSLT leaves it out (``<value-of/>`` newline ``<value-of/>`` gives the two
    values side by side): the same message as the kit's own engine, word for word."""
    parts: list[tuple[str, str]] = []

    def text(value: str | None) -> None:
        if value and value.strip():
            parts.append(("text", value))

    def walk(node: etree._Element) -> None:
        text(node.text)
        for child in node:
            if _is_sch(child, "value-of"):
                parts.append(("value-of", child.get("select", "")))
            elif _is_sch(child, "name"):
                parts.append(("name", child.get("path", ".")))
            elif isinstance(child.tag, str):
                walk(child)  # emph, dir, span, foreign markup: keep their text
            text(child.tail)

    walk(el)
    for ref in (el.get("diagnostics") or "").split():
        diag = diagnostics.get(ref)
        if diag is not None:
            parts.append(("text", " — "))
            walk(diag)
    return tuple(parts)


_VAR_REF = re.compile(r"\$([A-Za-z_][\w.\-]*)")


def _expressions(item: _Item) -> Iterable[str]:
    if isinstance(item, _Let):
        yield item.value
    elif isinstance(item, _Check):
        yield item.test
        yield from (value for kind, value in item.message if kind != "text")


_BINDING = re.compile(r"\$([A-Za-z_][\w.\-]*)\s*(?:in\b|:=)")


def _variables_used(expr: str) -> set[str]:
    """``$names`` an XPath expression reads from outside (not those its for/some/every/let bind)."""
    code = _LITERAL.sub("''", expr)
    return set(_VAR_REF.findall(code)) - set(_BINDING.findall(code))


def _free_variables(body: Sequence[_Item], known: frozenset[str]) -> set[str]:
    """Variables a rule body uses without defining them itself (nor being global)."""
    free: set[str] = set()
    bound: set[str] = set()
    for item in body:
        for expr in _expressions(item):
            free.update(name for name in _variables_used(expr) if name not in bound and name not in known)
        if isinstance(item, _Let):
            bound.add(item.name)
    return free


class _RuleBuilder:
    """Turns ``sch:rule`` elements into bodies; ``extends`` become calls, or copies when they share variables."""

    def __init__(
        self,
        abstract: Mapping[str, etree._Element],
        diagnostics: Mapping[str, etree._Element],
        globals_: frozenset[str],
    ) -> None:
        self._abstract = abstract
        self._diagnostics = diagnostics
        self._globals = globals_
        self.templates: dict[str, tuple[_Item, ...]] = {}
        self._inline: dict[str, bool] = {}

    def body(self, rule: etree._Element, seen: tuple[str, ...] = ()) -> list[_Item]:
        items: list[_Item] = []
        for child in rule:
            if not isinstance(child.tag, str):
                continue
            if _is_sch(child, "let"):
                items.append(_Let(child.get("name", ""), child.get("value", "")))
            elif _is_sch(child, "assert") or _is_sch(child, "report"):
                items.append(
                    _Check(
                        kind=etree.QName(child).localname,
                        test=child.get("test", ""),
                        role=child.get("role"),
                        ident=child.get("id"),
                        flag=child.get("flag"),
                        see=child.get("see"),
                        message=_message(child, self._diagnostics),
                    )
                )
            elif _is_sch(child, "extends"):
                items.extend(self._extends(child, seen))
        return items

    def _extends(self, child: etree._Element, seen: tuple[str, ...]) -> list[_Item]:
        if child.get("href"):
            raise KitDefectError("extends with href (a rule from another file) is not supported")
        ref = child.get("rule", "")
        if ref in seen:
            raise KitDefectError(f"abstract rule {ref} extends itself")
        target = self._abstract.get(ref)
        if target is None:
            raise KitDefectError(f"abstract rule {ref} is used but not defined")
        body = self.body(target, (*seen, ref))
        if self._shares_scope(ref, body):
            return body
        self.templates.setdefault(ref, tuple(body))
        return [_Call(ref)]

    def _shares_scope(self, ref: str, body: Sequence[_Item]) -> bool:
        # A named template sees neither its caller's variables nor gives it its own:
        # inline the abstract rule when it uses a variable it does not define.
        if ref not in self._inline:
            self._inline[ref] = bool(_free_variables(body, self._globals))
        return self._inline[ref]


def expand(path: Path, *, loader: _Loader | None = None) -> ExpandedSchema:
    """Read a schematron and give its concrete form: includes, abstract patterns and rules, phase."""
    loader = loader or _Loader()
    root = loader.load(path, what="schematron")
    if not _is_sch(root, "schema"):
        raise KitDefectError(f"{path.name} is not an ISO schematron schema")
    _resolve_includes(root, path.parent, loader)

    namespaces: dict[str, str] = {k: v for k, v in root.nsmap.items() if k and v}
    for ns in root.iter(_S + "ns"):
        namespaces[ns.get("prefix", "")] = ns.get("uri", "")
    namespaces.pop("", None)

    abstract_patterns = {
        p.get("id", ""): p for p in root.iter(_S + "pattern") if p.get("abstract") == "true" and p.get("id")
    }
    for instance in [p for p in root.iter(_S + "pattern") if p.get("is-a")]:
        abstract = abstract_patterns.get(instance.get("is-a", ""))
        if abstract is None:
            raise KitDefectError(f"pattern {instance.get('id')} instantiates an undefined abstract pattern")
        parent = instance.getparent()
        if parent is not None:
            parent.replace(instance, _instantiate(abstract, instance))
    abstract_rules = {
        r.get("id", ""): r
        for r in root.iter(_S + "rule")
        if r.get("abstract") == "true" and r.get("id") and not _inside_abstract_pattern(r)
    }

    active: set[str] | None = None
    default_phase = root.get("defaultPhase")
    if default_phase and default_phase != "#ALL":
        phase = next((ph for ph in root.iter(_S + "phase") if ph.get("id") == default_phase), None)
        if phase is None:
            raise KitDefectError(f"{path.name} names a default phase {default_phase} that it does not define")
        active = {a.get("pattern", "") for a in phase if _is_sch(a, "active")}

    global_lets: list[_Let] = []
    defined: dict[str, str] = {}
    for let in root.iter(_S + "let"):
        parent = let.getparent()
        if parent is None or not (_is_sch(parent, "pattern") or _is_sch(parent, "schema")):
            continue
        if parent.get("abstract") == "true":
            continue
        name, value = let.get("name", ""), let.get("value", "")
        if name in defined:
            if defined[name] != value:
                loader.fixes.append(f"variable ${name} is defined twice with different values; the first is kept")
            continue
        defined[name] = value
        global_lets.append(_Let(name, value))

    diagnostics = {d.get("id", ""): d for d in root.iter(_S + "diagnostic")}
    builder = _RuleBuilder(abstract_rules, diagnostics, frozenset(defined))
    patterns: list[_Pattern] = []
    for index, pat in enumerate(root.iter(_S + "pattern")):
        if pat.get("abstract") == "true" or (active is not None and pat.get("id") not in active):
            continue
        rules = [
            _Rule(rule.get("context", ""), rule.get("id"), tuple(builder.body(rule)))
            for rule in pat.iter(_S + "rule")
            if rule.get("abstract") != "true" and rule.get("context")
        ]
        if rules:
            title_el = pat.find(_S + "title")
            title = " ".join(_text(title_el).split()) if title_el is not None else None
            patterns.append(_Pattern(pat.get("id") or f"pattern-{index}", title, tuple(rules)))

    foreign = tuple(copy.deepcopy(c) for c in root if isinstance(c.tag, str) and etree.QName(c).namespace == XSL_NS)
    title_el = root.find(_S + "title")
    return ExpandedSchema(
        path=path,
        title=" ".join(_text(title_el).split()) if title_el is not None else None,
        namespaces=namespaces,
        global_lets=tuple(global_lets),
        patterns=tuple(patterns),
        abstract_rules=dict(builder.templates),
        foreign=foreign,
        files=dict(loader.files),
        fixes=tuple(loader.fixes),
    )


def _inside_abstract_pattern(el: etree._Element) -> bool:
    parent = el.getparent()
    while parent is not None:
        if _is_sch(parent, "pattern") and parent.get("abstract") == "true":
            return True
        parent = parent.getparent()
    return False


# ---------------------------------------------------------------------------------------------
# XSLT 3 generation

_LITERAL = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_DOC_CALL = re.compile(r"\b(?:doc|document)\(\s*(?:'([^']+)'|\"([^\"]+)\")\s*\)")
_VOC_FILE = re.compile(r"voc-([0-9.]+)-DYNAMIC\.xml$")


@dataclass
class _Resources:
    """Fixes applied to the file references written in expressions (case, missing vocabularies)."""

    base_dir: Path
    loader: _Loader
    value_sets: Mapping[str, Path]
    inline: dict[str, etree._Element] = field(default_factory=dict)

    def rewrite(self, expr: str) -> str:
        if "'" not in expr and '"' not in expr:
            return expr
        expr = _DOC_CALL.sub(self._doc_call, expr)
        return _LITERAL.sub(self._literal, expr)

    def _doc_call(self, match: re.Match[str]) -> str:
        ref = match.group(1) or match.group(2) or ""
        if self.loader.resolve(self.base_dir / ref) is not None:
            return match.group(0)
        voc = _VOC_FILE.search(ref)
        if voc is None or voc.group(1) not in self.value_sets:
            return match.group(0)
        oid = voc.group(1)
        name = f"dmpc-voc-{oid}"
        if name not in self.inline:
            self.inline[name] = self._vocabulary(self.value_sets[oid], oid)
            self.loader.fixes.append(f"{ref} is missing from the kit: rebuilt from the kit's value set {oid}")
        return f"${name}"

    def _vocabulary(self, svs_file: Path, oid: str) -> etree._Element:
        """An ART-DECOR ``valueSets/valueSet/conceptList/concept`` tree from an IHE SVS value set."""
        svs = self.loader.load(svs_file, what="value set")
        out = etree.Element("valueSets")
        concepts = etree.SubElement(etree.SubElement(out, "valueSet", id=oid), "conceptList")
        for concept in svs.iter("{urn:ihe:iti:svs:2008}Concept"):
            attrs = {k: v for k in ("code", "codeSystem", "displayName") if (v := concept.get(k)) is not None}
            etree.SubElement(concepts, "concept", attrs)
        return out

    def _literal(self, match: re.Match[str]) -> str:
        text = match.group(1) if match.group(1) is not None else match.group(2) or ""
        if "/" not in text or "://" in text or not text.lower().endswith((".xml", ".rdf")):
            return match.group(0)
        target = Path(os.path.normpath((self.base_dir / text).absolute()))
        if target.is_file():
            return match.group(0)
        found = self.loader.resolve(target)
        if found is None:
            return match.group(0)
        self.loader.fixes.append(f"{text}: the kit names it with another case; used {found.name}")
        quote = "'" if match.group(1) is not None else '"'
        return f"{quote}{found.as_uri()}{quote}"


def _walks_non_elements(patterns: Iterable[_Pattern]) -> bool:
    """True when a rule context may match an attribute or a text node (then the walk visits them)."""
    for pattern in patterns:
        for rule in pattern.rules:
            depth, outside = 0, []
            for ch in rule.context:
                if ch == "[":
                    depth += 1
                elif ch == "]":
                    depth -= 1
                elif depth == 0:
                    outside.append(ch)
            flat = "".join(outside)
            if any(marker in flat for marker in ("@", "attribute::", "text()", "node()")):
                return True
    return False


def _xsl(parent: etree._Element, tag: str, /, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _X + tag, {k.replace("_", "-"): v for k, v in attrs.items()})


_STEP = (
    "if ($n instance of element()) then"
    " (let $uri := namespace-uri($n),"
    "      $p := if ($uri = '') then '' else if (map:contains($prefixes, $uri))"
    "            then $prefixes($uri) || ':' else 'Q{' || $uri || '}'"
    "  return '/' || $p || local-name($n) || '['"
    "         || (count($n/preceding-sibling::*[node-name(.) eq node-name($n)]) + 1) || ']')"
    " else if ($n instance of attribute()) then '/@' || name($n)"
    " else if ($n instance of text()) then '/text()[' || (count($n/preceding-sibling::text()) + 1) || ']'"
    " else ''"
)
_LOCATION = (
    "if ($node instance of document-node()) then '/'"
    " else string-join(for $n in $node/ancestor-or-self::node()[not(self::document-node())]"
    " return dmpc:step($n), '')"
)


def _helper_functions(sheet: etree._Element) -> None:
    """``dmpc:location($node)``: an XPath to the node, with ``cda:`` for the HL7 namespace."""
    step = _xsl(sheet, "function", name="dmpc:step", **{"as": "xs:string"})
    _xsl(step, "param", name="n", **{"as": "node()"})
    prefixes = ", ".join(f"'{uri}' : '{prefix}'" for uri, prefix in _LOCATION_PREFIXES.items())
    _xsl(step, "variable", name="prefixes", select=f"map {{ {prefixes} }}")
    _xsl(step, "sequence", select=_STEP)
    loc = _xsl(sheet, "function", name="dmpc:location", **{"as": "xs:string"})
    _xsl(loc, "param", name="node", **{"as": "node()"})
    _xsl(loc, "sequence", select=_LOCATION)


@dataclass(frozen=True)
class CheckInfo:
    """The static side of an assert or report: what the generated XSLT does not repeat in its output."""

    kind: str
    test: str
    role: str | None
    ident: str | None
    flag: str | None
    see: str | None
    message: tuple[tuple[str, str], ...]
    """("text", words) and ("value", "") placeholders filled, in order, by the dynamic values."""


class _Generator:
    def __init__(self, schema: ExpandedSchema, name: str, res: _Resources) -> None:
        self.schema = schema
        self.name = name
        self.res = res
        self.checks: list[CheckInfo] = []
        self.rules: list[tuple[str, str, str | None]] = []  # pattern id, context, rule id
        self.walk = "@*|node()" if _walks_non_elements(schema.patterns) else "*"

    def build(self) -> str:
        schema, res = self.schema, self.res
        nsmap: dict[str | None, str] = {
            "xsl": XSL_NS,
            "xs": "http://www.w3.org/2001/XMLSchema",
            "dmpc": _OUT_NS,
            "map": "http://www.w3.org/2005/xpath-functions/map",
            "err": "http://www.w3.org/2005/xqt-errors",
        }
        for prefix, uri in schema.namespaces.items():
            nsmap.setdefault(prefix, uri)
        sheet = etree.Element(_X + "stylesheet", nsmap=cast("dict[str, str]", nsmap))  # None: no default namespace
        sheet.set("version", "3.0")
        # Relative doc() paths resolve against the .sch, as if the XSLT sat next to it.
        sheet.set("{http://www.w3.org/XML/1998/namespace}base", Path(schema.path).absolute().as_uri())
        sheet.set("exclude-result-prefixes", " ".join(p for p in nsmap if p and p != "dmpc"))
        _xsl(sheet, "output", method="xml", encoding="UTF-8", indent="no")
        for el in schema.foreign:
            sheet.append(copy.deepcopy(el))
        for let in schema.global_lets:
            _xsl(sheet, "variable", name=let.name, select=res.rewrite(let.value) or "()")
        _helper_functions(sheet)

        # Every node a rule may check, listed once; each pattern then visits the list in its own
        # mode (no recursion: an unmatched node costs one failed match).
        main = _xsl(sheet, "template", match="/")
        nodes = "(., //*)" if self.walk == "*" else "(., //node(), //@*)"
        _xsl(main, "variable", name="dmpc-nodes", select=nodes)
        out = etree.SubElement(main, _O + "out")
        for number, pattern in enumerate(schema.patterns):
            mode = f"p{number}"
            _xsl(out, "apply-templates", select="$dmpc-nodes", mode=mode)
            _xsl(sheet, "mode", name=mode, on_no_match="deep-skip")
            # deep-skip would descend from the document node: visit it alone, like every other node.
            _xsl(sheet, "template", match="document-node()", mode=mode, priority="-10")
            count = len(pattern.rules)
            for index, rule in enumerate(pattern.rules):
                rule_no = len(self.rules)
                self.rules.append((pattern.ident, rule.context, rule.ident))
                template = _xsl(
                    sheet, "template", match=res.rewrite(rule.context), mode=mode, priority=str(count - index)
                )
                attempt = _xsl(template, "try")
                self._body(attempt, rule.body, str(rule_no))
                catch = _xsl(attempt, "catch")
                error = etree.SubElement(catch, _O + "e", {"r": str(rule_no), "l": "{dmpc:location(.)}"})
                _xsl(error, "value-of", select="string($err:code) || ': ' || $err:description")
        for ref, body in schema.abstract_rules.items():
            template = _xsl(sheet, "template", name=self._template_name(ref))
            _xsl(template, "param", name="dmpc-rule", required="yes")
            self._body(template, body, "{$dmpc-rule}")
        for position, (var_name, doc) in enumerate(res.inline.items()):
            holder = etree.Element(_X + "variable", name=var_name)
            holder.append(doc)
            sheet.insert(1 + position, holder)
        return etree.tostring(sheet, encoding="unicode")

    @staticmethod
    def _template_name(ref: str) -> str:
        return "dmpc:abstract-" + re.sub(r"[^\w.\-]", "_", ref)

    def _body(self, parent: etree._Element, body: Sequence[_Item], rule_ref: str) -> None:
        for item in body:
            if isinstance(item, _Let):
                _xsl(parent, "variable", name=item.name, select=self.res.rewrite(item.value) or "()")
            elif isinstance(item, _Call):
                call = _xsl(parent, "call-template", name=self._template_name(item.rule))
                value = "$dmpc-rule" if rule_ref.startswith("{") else rule_ref
                _xsl(call, "with-param", name="dmpc-rule", select=value)
            else:
                self._check(parent, item, rule_ref)

    def _check(self, parent: etree._Element, check: _Check, rule_ref: str) -> None:
        number = len(self.checks)
        message: list[tuple[str, str]] = []
        test = self.res.rewrite(check.test)
        cond = _xsl(parent, "if", test=f"not({test})" if check.kind == "assert" else test)
        hit = etree.SubElement(cond, _O + "f", {"n": str(number), "r": rule_ref, "l": "{dmpc:location(.)}"})
        for kind, value in check.message:
            if kind == "text":
                message.append(("text", value))
                continue
            message.append(("value", ""))
            expr = self.res.rewrite(value) or "."
            select = f"name({expr})" if kind == "name" else expr
            _xsl(etree.SubElement(hit, _O + "v"), "value-of", select=select)
        self.checks.append(
            CheckInfo(check.kind, check.test, check.role, check.ident, check.flag, check.see, tuple(message))
        )


@dataclass(frozen=True)
class CompiledSchematron:
    """A schematron turned into XSLT 3 text, with the side table that makes sense of its output."""

    name: str
    path: Path
    title: str | None
    xslt: str
    checks: tuple[CheckInfo, ...]
    rules: tuple[tuple[str, str, str | None], ...]
    """(pattern id, rule context, rule id) by rule number."""
    files: Mapping[str, str]
    """Every kit file used, with its SHA-256."""
    fixes: tuple[str, ...]
    """The kit defects worked around, in plain words."""
    seconds: float = 0.0
    """Time spent expanding and generating (0 when read from the disk cache)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "compiler": COMPILER_VERSION,
                "name": self.name,
                "path": str(self.path),
                "title": self.title,
                "checks": [
                    [c.kind, c.test, c.role, c.ident, c.flag, c.see, [list(p) for p in c.message]] for c in self.checks
                ],
                "rules": [list(r) for r in self.rules],
                "files": dict(self.files),
                "fixes": list(self.fixes),
                "xslt": self.xslt,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> CompiledSchematron:
        data = json.loads(text)
        if data.get("compiler") != COMPILER_VERSION:
            raise ValueError("compiled by another compiler version")
        return cls(
            name=data["name"],
            path=Path(data["path"]),
            title=data["title"],
            xslt=data["xslt"],
            checks=tuple(
                CheckInfo(k, t, r, i, f, s, tuple((a, b) for a, b in m)) for k, t, r, i, f, s, m in data["checks"]
            ),
            rules=tuple((p, c, i) for p, c, i in data["rules"]),
            files=dict(data["files"]),
            fixes=tuple(data["fixes"]),
        )


def compile_schematron(path: Path, *, name: str, value_sets: Mapping[str, Path] | None = None) -> CompiledSchematron:
    """Expand a schematron and generate its XSLT 3 (pure Python; Saxon compiles it later)."""
    started = time.perf_counter()
    loader = _Loader()
    schema = expand(path, loader=loader)
    res = _Resources(path.parent, loader, value_sets or {})
    generator = _Generator(schema, name, res)
    xslt = generator.build()
    return CompiledSchematron(
        name=name,
        path=path,
        title=schema.title,
        xslt=xslt,
        checks=tuple(generator.checks),
        rules=tuple(generator.rules),
        files=dict(loader.files),
        fixes=tuple(dict.fromkeys(loader.fixes)),
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------------------------
# Which volet schematron a document needs, read from the schematrons themselves

_VOLET_FILE = re.compile(r"^CI-SIS_(?P<volet>.+?)_(?P<version>\d{4}\.\d{2})\.sch$")
# A templateId or code child of the document itself (not cda:section/cda:templateId …).
_TEMPLATE_CHECK = re.compile(
    r"(?<![/\w.])(?:\./)?(?:cda|hl7):templateId\s*\[\s*@root\s*=\s*['\"](?P<root>[0-9.]+)['\"]"
    r"(?:\s*and\s*@extension\s*=\s*['\"](?P<ext>[^'\"]+)['\"])?"
)
_CODE_CHECK = re.compile(r"(?<![/\w.])(?:\./)?(?:cda|hl7):code\s*\[\s*@code\s*=\s*['\"](?P<code>[^'\"]+)['\"]")
_DOCUMENT_CONTEXT = re.compile(r"^/?(?:cda|hl7):ClinicalDocument$")
# A rule on "the element whose templateId is X", X a CI-SIS document template: the volet's own rules.
_TEMPLATE_CONTEXT = re.compile(
    r"^(?:\*|/?(?:cda|hl7):ClinicalDocument)\[\s*(?:cda|hl7):templateId/@root\s*=\s*['\"](?P<root>1\.2\.250\.1\.213\.1\.1\.1\.[0-9.]+)['\"]\s*\]$"
)
# The few volet schematrons that never check the document's own templateId: the templateId
# they are written for (CI-SIS volet specifications; the kit's examples carry it too).
_UNDECLARED_TEMPLATE_IDS = {"CSE-MDE": "1.2.250.1.213.1.1.1.5.4", "OPH-CR-RTN": "1.2.250.1.213.1.1.1.18"}
_GENERIC_TEMPLATE_IDS = frozenset({"2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"})


@dataclass(frozen=True)
class VoletSchematron:
    """A volet schematron of the kit and what it asks of a document's header."""

    name: str
    """``VSM_2023.01``: the file name without ``CI-SIS_`` and ``.sch``."""
    path: Path
    volet: str
    """``VSM``, ``LDL-SES``, ``BIO-CR-BIO`` … (``VSM_1.4`` for the pre-versioned VSM)."""
    version: str
    """``2023.01``: the schematron's version, from its file name."""
    template_ids: frozenset[str]
    """templateId roots its header rules require (besides the HL7 France and CI-SIS ones)."""
    template_extensions: Mapping[str, str]
    """templateId root → extension, when the schematron requires a given extension."""
    codes: frozenset[str]
    """Document type codes its header rules accept (empty: not checked)."""
    defect: str | None = None
    """Why the kit's schematron cannot be used, when it cannot."""


def _volet_entry(path: Path, match: re.Match[str]) -> VoletSchematron:
    name = path.name[len("CI-SIS_") : -len(".sch")]
    try:
        schema = expand(path)
    except KitDefectError as exc:
        return VoletSchematron(name, path, match["volet"], match["version"], frozenset(), {}, frozenset(), exc.message)
    roots: set[str] = set()
    extensions: dict[str, str] = {}
    codes: set[str] = set()
    for pattern in schema.patterns:
        for rule in pattern.rules:
            by_context = _TEMPLATE_CONTEXT.match(rule.context.strip())
            if by_context is not None and by_context["root"] not in _GENERIC_TEMPLATE_IDS:
                roots.add(by_context["root"])
            if not _DOCUMENT_CONTEXT.match(rule.context.strip()):
                continue
            for item in rule.body:
                if not isinstance(item, _Check) or item.kind != "assert":
                    continue
                for found in _TEMPLATE_CHECK.finditer(item.test):
                    if found["root"] not in _GENERIC_TEMPLATE_IDS:
                        roots.add(found["root"])
                        if found["ext"]:
                            extensions[found["root"]] = found["ext"]
                codes.update(found["code"] for found in _CODE_CHECK.finditer(item.test))
    if match["volet"] in _UNDECLARED_TEMPLATE_IDS:
        roots.add(_UNDECLARED_TEMPLATE_IDS[match["volet"]])
    return VoletSchematron(name, path, match["volet"], match["version"], frozenset(roots), extensions, frozenset(codes))


def build_catalog(schematrons_dir: Path) -> tuple[VoletSchematron, ...]:
    """Every volet schematron of the kit (``CI-SIS_<volet>_<version>.sch``) with its header requirements."""
    entries = []
    for path in sorted(schematrons_dir.glob("CI-SIS_*.sch")):
        match = _VOLET_FILE.match(path.name)
        if match is not None:
            entries.append(_volet_entry(path, match))
    # A schematron the kit cannot run still names its volet: give it its siblings' requirements,
    # so that a document of that version is told its schematron is unusable instead of another.
    for index, entry in enumerate(entries):
        if entry.defect is None or entry.template_ids:
            continue
        siblings = [e for e in entries if e.defect is None and _family(e) == _family(entry)]
        if siblings:
            entries[index] = VoletSchematron(
                entry.name,
                entry.path,
                entry.volet,
                entry.version,
                frozenset().union(*(e.template_ids for e in siblings)),
                {},
                frozenset().union(*(e.codes for e in siblings)),
                entry.defect,
            )
    return tuple(entries)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def select_volets(
    catalog: Iterable[VoletSchematron], template_ids: Sequence[tuple[str, str | None]], code: str | None
) -> list[VoletSchematron]:
    """The volet schematron(s) for a document, from its templateIds (root, extension) and type code.

    A schematron fits when the document has every templateId it requires (with the extension
    it requires, if any) and a type code it accepts; the most specific fits win (most
    templateIds). Among the versions of one volet: the one whose version is the extension of
    the document's volet templateId; without an extension, the newest; with an extension that
    names no version of the kit (VSM's ``201310``) or without one, the oldest: extensions came with
    the versioned volets, so a document without one predates them.
    """
    roots = {root for root, _ in template_ids}
    extensions: dict[str, set[str]] = {}
    for root, ext in template_ids:
        if ext:
            extensions.setdefault(root, set()).add(ext)
    fits = [
        entry
        for entry in catalog
        if entry.template_ids
        and entry.template_ids <= roots
        and all(ext in extensions.get(root, set()) for root, ext in entry.template_extensions.items())
        and (not entry.codes or (code is not None and code in entry.codes))
    ]
    if not fits:
        return []
    best = max(len(e.template_ids) for e in fits)
    fits = [e for e in fits if len(e.template_ids) == best]
    chosen: list[VoletSchematron] = []
    for family in dict.fromkeys(_family(e) for e in fits):
        versions = sorted((e for e in fits if _family(e) == family), key=lambda e: _version_key(e.version))
        # The version is written on the volet's own templateId, which the schematron may not
        # check (BIO checks XD-LAB's): read every extension of the document's templateIds.
        declared = {ext for root, exts in extensions.items() if root not in _GENERIC_TEMPLATE_IDS for ext in exts}
        named = [e for e in versions if e.version in declared]
        if named:
            chosen.append(named[-1])
            continue
        usable = [e for e in versions if e.defect is None] or versions
        chosen.append(usable[0])
    return chosen


def _family(entry: VoletSchematron) -> str:
    """``VSM`` for both ``VSM_1.4`` and ``VSM``: versions of one volet."""
    return entry.volet.split("_")[0]


# ---------------------------------------------------------------------------------------------
# Running with Saxon

_SAXON_LOCK = threading.RLock()
_saxon: Any = None


def _processor() -> Any:
    """The one Saxon processor of the process (SaxonC wants a single one), created on first use."""
    global _saxon
    with _SAXON_LOCK:
        if _saxon is None:
            try:
                import saxonche
            except ImportError as exc:
                raise ConfigurationError(
                    "schematron validation needs Saxon, which is not installed",
                    hint="install the 'validation' extra: pip install 'dmp-connector[validation]'"
                    " (or validate without the schematrons)",
                ) from exc
            processor = saxonche.PySaxonProcessor(license=False)
            # Only local files: no schematron (nor document) can make Saxon fetch a URL.
            processor.set_configuration_property("http://saxon.sf.net/feature/allowedProtocols", "file")
            _saxon = processor
        return _saxon


@dataclass(frozen=True)
class RawResult:
    """One failed assert, successful report or rule that could not be evaluated, as Saxon gave it."""

    check: CheckInfo | None
    """None for a rule that raised an error."""
    pattern: str
    context: str
    location: str
    message: str


_SPACES = re.compile(r"\s+")


def _read_output(text: str, compiled: CompiledSchematron) -> list[RawResult]:
    root = parse_xml(text.encode("utf-8"), limits=_OUT_LIMITS, what="the schematron output")
    results: list[RawResult] = []
    for el in root:
        if not isinstance(el.tag, str):
            continue
        pattern, context, _ = compiled.rules[int(el.get("r", "0"))]
        location = el.get("l", "")
        if el.tag == _O + "e":
            message = "this rule could not be evaluated (" + _SPACES.sub(" ", el.text or "").strip() + ")"
            results.append(RawResult(None, pattern, context, location, message))
            continue
        check = compiled.checks[int(el.get("n", "0"))]
        # A value is kept as it is (a display name's trailing space included), at most 500 characters;
        # only the whole message has its white space collapsed, as the kit's engine reports it.
        values = iter(_text(v)[:500] for v in el)
        words = [next(values, "") if kind == "value" else text_ for kind, text_ in check.message]
        results.append(RawResult(check, pattern, context, location, _SPACES.sub(" ", "".join(words)).strip()))
    return results


@dataclass
class _Loaded:
    compiled: CompiledSchematron
    executable: Any
    compile_seconds: float


class SchematronEngine:
    """Compiles and runs one kit's schematrons with Saxon; thread-safe.

    Compiled schematrons are kept per process (the Saxon executable) and on disk under
    ``cache_dir`` (the generated XSLT and its side table, keyed by the ``.sch`` content and
    checked against every file it was built from). Saxon itself is not thread-safe: its work
    is serialised by one lock.
    """

    def __init__(self, kit_dir: Path, *, cache_dir: Path | None = None) -> None:
        self.kit_dir = kit_dir
        self.schematrons_dir = kit_dir / "schematrons"
        self.cache_dir = cache_dir
        self._loaded: dict[Path, _Loaded] = {}
        self._failed: dict[Path, KitDefectError] = {}
        self._catalog: tuple[VoletSchematron, ...] | None = None
        self._value_sets: dict[str, Path] | None = None
        self._lock = threading.RLock()

    # -- catalog -------------------------------------------------------------------------

    def catalog(self) -> tuple[VoletSchematron, ...]:
        """The kit's volet schematrons and their header requirements (read once, cached on disk)."""
        with self._lock:
            if self._catalog is None:
                self._catalog = self._load_catalog()
            return self._catalog

    def _load_catalog(self) -> tuple[VoletSchematron, ...]:
        listing = sorted(self.schematrons_dir.glob("CI-SIS_*.sch"))
        stamp = hashlib.sha256()
        for path in listing:
            stat = path.stat()
            stamp.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        cache = self._cache_file(f"catalog-{stamp.hexdigest()[:24]}.json")
        if cache is not None and cache.is_file():
            try:
                return tuple(
                    VoletSchematron(
                        e["name"],
                        self.schematrons_dir / e["file"],
                        e["volet"],
                        e["version"],
                        frozenset(e["template_ids"]),
                        dict(e["template_extensions"]),
                        frozenset(e["codes"]),
                        e["defect"],
                    )
                    for e in json.loads(cache.read_text(encoding="utf-8"))
                )
            except (ValueError, KeyError, TypeError, OSError):
                _log.debug("ignoring an unreadable catalog cache %s", cache)
        catalog = build_catalog(self.schematrons_dir)
        if cache is not None:
            data = [
                {
                    "name": e.name,
                    "file": e.path.name,
                    "volet": e.volet,
                    "version": e.version,
                    "template_ids": sorted(e.template_ids),
                    "template_extensions": dict(e.template_extensions),
                    "codes": sorted(e.codes),
                    "defect": e.defect,
                }
                for e in catalog
            ]
            _write_atomically(cache, json.dumps(data, ensure_ascii=False))
        return catalog

    def value_sets(self) -> dict[str, Path]:
        """The kit's value set files by OID (read from the first bytes of each file)."""
        with self._lock:
            if self._value_sets is None:
                found: dict[str, Path] = {}
                for path in sorted((self.kit_dir / "jeuxDeValeurs").glob("*.xml")):
                    with path.open("rb") as fh:
                        head = fh.read(4096).decode("utf-8", "replace")
                    match = re.search(r"<(?:\w+:)?ValueSet\b[^>]*?\bid=\"([0-9.]+)\"", head)
                    if match:
                        found.setdefault(match.group(1), path)
                self._value_sets = found
            return self._value_sets

    # -- compiling -----------------------------------------------------------------------

    def _cache_file(self, name: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"schematron-v{COMPILER_VERSION}" / name

    def _from_disk(self, path: Path) -> CompiledSchematron | None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
        cache = self._cache_file(f"{path.stem}-{digest}.json")
        if cache is None or not cache.is_file():
            return None
        try:
            compiled = CompiledSchematron.from_json(cache.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError, OSError):
            return None
        for file, sha in compiled.files.items():
            try:
                if hashlib.sha256(Path(file).read_bytes()).hexdigest() != sha:
                    return None
            except OSError:
                return None
        return compiled

    def _to_disk(self, path: Path, compiled: CompiledSchematron) -> None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
        cache = self._cache_file(f"{path.stem}-{digest}.json")
        if cache is not None:
            _write_atomically(cache, compiled.to_json())

    def load(self, path: Path, name: str) -> _Loaded:
        """The Saxon executable for a schematron, compiled once per process; KitDefectError if it cannot be."""
        path = Path(os.path.normpath(path.absolute()))
        with self._lock:
            if path in self._loaded:
                return self._loaded[path]
            if path in self._failed:
                raise self._failed[path]
            try:
                loaded = self._compile(path, name)
            except KitDefectError as exc:
                self._failed[path] = exc
                raise
            self._loaded[path] = loaded
            return loaded

    def _compile(self, path: Path, name: str) -> _Loaded:
        started = time.perf_counter()
        compiled = self._from_disk(path)
        if compiled is None:
            compiled = compile_schematron(path, name=name, value_sets=self.value_sets())
            self._to_disk(path, compiled)
        processor = _processor()
        with _SAXON_LOCK:
            xslt = processor.new_xslt30_processor()
            try:
                executable = xslt.compile_stylesheet(stylesheet_text=compiled.xslt)
            except Exception as exc:  # saxonche raises PySaxonApiError, which has no importable base
                detail = _SPACES.sub(" ", str(exc)).strip()[:400]
                raise KitDefectError(f"Saxon cannot compile the schematron {name}: {detail}") from exc
        return _Loaded(compiled, executable, time.perf_counter() - started)

    # -- running -------------------------------------------------------------------------

    def run(self, loaded: _Loaded, document: Any) -> tuple[list[RawResult], float]:
        """Run a compiled schematron on a Saxon document node; the results and the seconds it took."""
        started = time.perf_counter()
        with _SAXON_LOCK:
            try:
                text = loaded.executable.transform_to_string(xdm_node=document)
            except Exception as exc:  # a dynamic error outside every rule (a global variable)
                detail = _SPACES.sub(" ", str(exc)).strip()[:400]
                raise KitDefectError(f"the schematron {loaded.compiled.name} failed to run: {detail}") from exc
        if text is None:
            raise MalformedResponseError(f"the schematron {loaded.compiled.name} produced no output")
        return _read_output(text, loaded.compiled), time.perf_counter() - started

    @staticmethod
    def document(xml_text: str) -> Any:
        """Hand an already-checked document (serialised by lxml, no DTD) to Saxon."""
        processor = _processor()
        with _SAXON_LOCK:
            return processor.parse_xml(xml_text=xml_text)


def _write_atomically(path: Path, text: str) -> None:
    """Write a cache file so that a concurrent reader never sees half of it; failures only cost speed."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        _log.debug("cannot write the cache file %s: %s", path, exc)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
