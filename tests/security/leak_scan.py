"""The whole-run scan for patient identities in clear: what the tests' logs, audit events and error messages held.

``tests/conftest.py`` records, for the whole session, every log record (the ``dmp_connector``
logger at DEBUG and the root logger), every :class:`~dmp_connector.audit.AuditEvent` given to an
:class:`~dmp_connector.audit.AuditDispatcher` (whatever client emitted it), the message of
every :class:`~dmp_connector.errors.DmpConnectorError` raised and, at the end of its test, its
:func:`exception_text` (``traceback.format_exception``: every cause's message), one JSON line each, into
``<basetemp>/leak-scan/captured.jsonl``. At the end of the session :func:`scan_file` looks in it
for the identities the tests use, gathered by :func:`gather_needles` from the sandbox seeds (INSi
and DMP simulators, the pytest plugin), the test helpers, the matricules written in the tests'
sources and the patients of the ANS CDA examples. A hit fails the run.

Kept free of pytest so that ``test_leak_scan.py`` can run the same scanner on planted samples.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dmp_connector.audit import _MATRICULE as _AUDIT_MATRICULE

__all__ = [
    "Finding",
    "Needle",
    "birth_date_needles",
    "exception_text",
    "gather_needles",
    "matricule_needles",
    "name_needles",
    "scan_file",
    "scan_lines",
    "squash",
]

TESTS = Path(__file__).resolve().parents[1]
CDA_EXAMPLES = TESTS.parents[1] / "shared" / "cda-2025" / "ExemplesCDA"

# The shape the audit model refuses in its patient field (13- or 15-character matricule), quoted.
_MATRICULE_LITERAL = re.compile(r"""["'](""" + _AUDIT_MATRICULE.pattern + r""")["']""")
# What the prefilter takes out of a line before looking for the needles' literals: the separators a
# needle's pattern allows (spaces, dots, dashes, apostrophes), so that every match contains a literal.
_SQUASHED = re.compile(r"[\s.\-']+")
_SEPARATOR = r"[ .\-]?"
_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"

# Names of seeded people that are also ordinary words of the SDK's own vocabulary: looking for them
# would only find "matricule" in an error message. The placeholder identity (PROVISOIRE MATRICULE) is
# still covered by its matricule and birth date. Name particles of three letters and more (``DOS
# SANTOS``) are words too ("a DoS guard"); the whole name and its other words are still looked for.
COMMON_WORDS = frozenset(
    {"MATRICULE", "PROVISOIRE", "CORSE", "SANDBOX", "TEST", "PATIENT", "DOS", "DES", "DEL", "DER", "VAN", "VON"}
)


@dataclass(frozen=True)
class Needle:
    """One value that must not appear in clear, and the regex that finds it in any usual spelling."""

    kind: str
    """``matricule``, ``family name``, ``given name`` or ``birth date``."""
    value: str
    """The value as the seed or fixture holds it."""
    source: str
    """Where it was gathered (``INSi seed``, ``tests/insi/helpers.py`` …)."""
    pattern: re.Pattern[str]
    literal: str
    """What any match of ``pattern`` reads once its separators are dropped and its case folded (see
    :func:`squash`): the cheap prefilter of :func:`scan_lines` looks for it before ``pattern`` runs."""


@dataclass(frozen=True)
class Finding:
    """A needle found in one captured line."""

    needle: Needle
    stream: str
    """``log``, ``audit`` or ``error``."""
    where: str
    """The logger, the service/operation or the error class, and the test that was running."""
    excerpt: str
    """The matched text with some context (test data: printing it is harmless)."""


_FRAME = re.compile(r'^(\s*File ".*", line \d+), in .*$')


def exception_text(error: BaseException) -> str:
    """What ``log.exception`` prints for ``error`` — ``traceback.format_exception``, the whole cause and
    context chain — without the source lines and function names of the frames.

    Those are the program's code, not data that went through it; a test's own code names its
    fixtures (``search(ADRUN)``, ``def ecetinsi()``), which is no leak. Every message of the chain is kept.
    """
    kept: list[str] = []
    in_frame = False
    for line in "".join(traceback.format_exception(error)).splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            in_frame = True
            kept.append(frame.group(1))
        elif in_frame and line.startswith("    "):
            continue
        else:
            in_frame = False
            kept.append(line)
    return "\n".join(kept)


def squash(text: str) -> str:
    """``text`` without spaces, dots, dashes or apostrophes, case-folded: what the prefilter searches."""
    return _SQUASHED.sub("", text).casefold()


def _spaced(chars: str) -> str:
    return _SEPARATOR.join(re.escape(c) for c in chars)


def matricule_needles(matricule: str, source: str) -> list[Needle]:
    """The 15-character INS and its 13-character NIR/NIA, with or without spaces, dots or dashes."""
    compact = "".join(matricule.split()).upper()
    forms = {compact, compact[:13]}
    return [
        Needle(
            "matricule",
            form,
            source,
            re.compile(_NOT_ALNUM_BEFORE + _spaced(form) + _NOT_ALNUM_AFTER, re.IGNORECASE),
            squash(form),
        )
        for form in sorted(forms)
        if len(form) in (13, 15)
    ]


def name_needles(kind: str, name: str, source: str) -> list[Needle]:
    """A family or given name as a whole word, any case; short names and common words are left out."""
    needles = []
    for word in {name.strip(), *re.split(r"[\s]+", name.strip())}:
        if len(word) < 3 or word.upper() in COMMON_WORDS:
            continue
        words = [re.escape(w) for w in re.split(r"[\s\-']+", word) if w]
        pattern = r"[\s\-']+".join(words)
        needles.append(
            Needle(
                kind,
                word,
                source,
                re.compile(r"(?<![\w])" + pattern + r"(?![\w])", re.IGNORECASE | re.UNICODE),
                squash(word),
            )
        )
    return needles


def birth_date_needles(year: int, month: int | None, day: int | None, source: str) -> list[Needle]:
    """YYYYMMDD, YYYY-MM-DD and DD/MM/YYYY (the INSi, ISO and French forms) of a full birth date."""
    if month is None or day is None:
        return []
    forms = [
        f"{year:04d}{month:02d}{day:02d}",
        f"{year:04d}-{month:02d}-{day:02d}",
        f"{day:02d}/{month:02d}/{year:04d}",
    ]
    value = forms[1]
    return [
        Needle(
            "birth date",
            value,
            source,
            re.compile(_NOT_ALNUM_BEFORE + re.escape(form) + r"(?![0-9A-Za-z/\-]?[0-9])"),
            squash(form),
        )
        for form in forms
    ]


def _identity_needles(
    *,
    matricules: Iterable[str],
    family: Iterable[str],
    given: Iterable[str],
    birth: tuple[int, int | None, int | None] | None,
    source: str,
) -> Iterator[Needle]:
    for matricule in matricules:
        yield from matricule_needles(matricule, source)
    for name in family:
        yield from name_needles("family name", name, source)
    for name in given:
        yield from name_needles("given name", name, source)
    if birth is not None:
        yield from birth_date_needles(*birth, source)


def _seeded() -> Iterator[Needle]:
    from dmp_connector.pytest_plugin import DMPC_PATIENT_MATRICULE
    from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS
    from dmp_connector.sandbox.insi import DEFAULT_INSI_IDENTITIES

    for seed in DEFAULT_INSI_IDENTITIES:
        traits = seed.traits
        matricules = [seed.ins.matricule] if seed.ins is not None else []
        matricules += [entry.ins.matricule for entry in seed.history]
        matricules += [seed.card_holder] if seed.card_holder else []
        yield from _identity_needles(
            matricules=matricules,
            family=[traits.birth_name, *([traits.used_name] if traits.used_name else [])],
            given=traits.birth_first_names,
            birth=(traits.birth_date.year, traits.birth_date.month, traits.birth_date.day),
            source="INSi simulator seed",
        )
    for patient in DEFAULT_DMP_PATIENTS:
        traits = patient.traits
        yield from _identity_needles(
            matricules=[patient.ins.matricule],
            family=[traits.birth_name],
            given=traits.birth_first_names,
            birth=(traits.birth_date.year, traits.birth_date.month, traits.birth_date.day),
            source="DMP simulator patient",
        )
    yield from matricule_needles(DMPC_PATIENT_MATRICULE, "pytest plugin")


def _helpers() -> Iterator[Needle]:
    from tests.insi.helpers import ADRUN, AEION, ECETINSI, HOUILLES

    for traits in (ADRUN, AEION, ECETINSI, HOUILLES):
        yield from _identity_needles(
            matricules=[],
            family=[traits.birth_name],
            given=traits.birth_first_names,
            birth=(traits.birth_date.year, traits.birth_date.month, traits.birth_date.day),
            source="tests/insi/helpers.py",
        )


def _literals() -> Iterator[Needle]:
    """Every matricule-shaped string literal of the tests' sources (15 or 13 characters)."""
    seen: set[str] = set()
    for path in sorted(TESTS.rglob("*.py")):
        if path.name == "leak_scan.py" or path.name == "test_leak_scan.py":
            continue
        for match in _MATRICULE_LITERAL.finditer(path.read_text(encoding="utf-8")):
            value = match.group(1)
            if value not in seen:
                seen.add(value)
                yield from matricule_needles(value, f"tests/{path.relative_to(TESTS)}")


def _cda_examples() -> Iterator[Needle]:
    """The patients of the ANS CDA examples the CDA, DMP and MSSanté tests send around."""
    from dmp_connector.cda import parse
    from dmp_connector.errors import DmpConnectorError

    seen: set[tuple[object, ...]] = set()
    for path in sorted(CDA_EXAMPLES.glob("*.xml")) if CDA_EXAMPLES.is_dir() else []:
        try:
            identity = parse(path.read_bytes()).patient.identity
        except DmpConnectorError:
            continue
        traits = identity.traits
        key = (
            identity.ins.matricule if identity.ins else None,
            traits.birth_name,
            traits.birth_first_names,
            traits.birth_date.iso(),
        )
        if key in seen:
            continue
        seen.add(key)
        yield from _identity_needles(
            matricules=[identity.ins.matricule] if identity.ins is not None else [],
            family=[traits.birth_name],
            given=traits.birth_first_names,
            birth=(traits.birth_date.year, traits.birth_date.month, traits.birth_date.day),
            source=f"CDA example {path.name}",
        )


def gather_needles() -> list[Needle]:
    """Every identity value the tests use, each once (the first source that names it is kept)."""
    found: dict[tuple[str, str], Needle] = {}
    for needle in (*_seeded(), *_helpers(), *_literals(), *_cda_examples()):
        found.setdefault((needle.kind, needle.pattern.pattern), needle)
    return list(found.values())


def _prefilter(needles: list[Needle]) -> re.Pattern[str]:
    # The needles' literals in one alternation, searched in the squashed line: every match of a needle
    # contains its literal there, so a line without any is skipped. An alternation of the needles'
    # own patterns (a separator allowed between every character) took seconds per megabyte.
    literals = sorted({n.literal for n in needles}, key=lambda literal: (-len(literal), literal))
    return re.compile("|".join(re.escape(literal) for literal in literals))


def scan_lines(lines: Iterable[str], needles: list[Needle]) -> list[Finding]:
    """Look for each needle in captured JSON lines (``stream``, ``where``, ``text``); return every hit."""
    if not needles:
        return []
    prefilter = _prefilter(needles)
    findings: list[Finding] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = {"stream": "raw", "where": "?", "text": line}
        text = str(record.get("text", ""))
        if prefilter.search(squash(text)) is None:
            continue
        for needle in needles:
            match = needle.pattern.search(text)
            if match is not None:
                start, end = max(0, match.start() - 60), min(len(text), match.end() + 60)
                findings.append(Finding(needle, str(record.get("stream")), str(record.get("where")), text[start:end]))
    return findings


def scan_file(path: Path, needles: list[Needle]) -> tuple[int, dict[str, int], list[Finding]]:
    """Scan a capture file: the number of lines, the count per stream, and the findings."""
    if not path.exists():
        return 0, {}, []
    lines = path.read_text(encoding="utf-8").splitlines()
    counts: dict[str, int] = {}
    for line in lines:
        try:
            stream = str(json.loads(line).get("stream"))
        except ValueError:
            stream = "raw"
        counts[stream] = counts.get(stream, 0) + 1
    return len(lines), counts, scan_lines(lines, needles)
