"""Section layouts the structured volets share (VSM, LDL-SES, LDL-EES): one place, one behaviour.

A section *kind* is ``(templateIds, LOINC code, title)``; the helpers give the section with a
fresh id, and the narrative tables of problem and allergy lists whose rows the entries point to.
"""

from __future__ import annotations

import uuid
from typing import Any

from dmp_connector.cda.model import InstanceId, Narrative, Section
from dmp_connector.codes import Code

from ._entries import Allergy, AllergyReaction, Problem, VoletEntry, narrative_table, show_code, show_time

__all__ = ["SectionKind", "allergies_section", "problems_section", "section", "typed_entries", "walk_sections"]

SectionKind = tuple[tuple[str, ...], Code, str]
"""templateIds (in the order the ANS examples write them), LOINC code, title."""


def section(
    kind: SectionKind,
    *,
    text: Narrative | None = None,
    entries: tuple[VoletEntry, ...] = (),
    subsections: tuple[Section, ...] = (),
) -> Section:
    """A section of ``kind`` with a new id (an upper-case UUID, as the ANS examples write them)."""
    templates, code, title = kind
    return Section(
        template_ids=templates,
        id=InstanceId(root=str(uuid.uuid4()).upper()),
        code=code,
        title=title,
        text=text,
        entries=entries,
        subsections=subsections,
    )


def _problem_rows(problems: tuple[Problem, ...], prefix: str) -> tuple[tuple[Problem, ...], list[tuple[Any, ...]]]:
    placed: list[Problem] = []
    rows: list[tuple[Any, ...]] = []
    for n, problem in enumerate(problems, 1):
        reference = problem.reference or f"{prefix}-{n}"
        status_reference = None
        if problem.clinical_status is not None:
            status_reference = problem.status_reference or f"{reference}-statut"
        placed.append(problem.model_copy(update={"reference": reference, "status_reference": status_reference}))
        status: Any = (show_code(problem.clinical_status), status_reference) if status_reference else ""
        rows.append(
            (
                (show_code(problem.value), reference),
                problem.value.code,
                show_time(problem.start),
                show_time(problem.end),
                status,
            )
        )
    return tuple(placed), rows


def problems_section(kind: SectionKind, problems: tuple[Problem, ...], prefix: str) -> Section:
    """A problem list: one table row per problem, each entry pointing to its row."""
    placed, rows = _problem_rows(problems, prefix)
    headers = ("Pathologie", "Code", "Début", "Fin", "Statut")
    return section(kind, text=narrative_table(headers, rows), entries=placed)


def allergies_section(kind: SectionKind, allergies: tuple[Allergy, ...], *, notes: tuple[str, ...] = ()) -> Section:
    """An allergy list: one table row per allergy, each entry (and its agent, reactions, severity, status)
    pointing to its row. The reaction and severity columns are only there when an allergy has them."""
    placed: list[Allergy] = []
    rows: list[tuple[Any, ...]] = []
    detailed = any(a.reactions or a.severity is not None for a in allergies)
    for n, allergy in enumerate(allergies, 1):
        reference = allergy.reference or f"allergie-{n}"
        agent_reference = (allergy.agent_reference or f"{reference}-agent") if allergy.agent is not None else None
        status_reference = None
        if allergy.clinical_status is not None:
            status_reference = allergy.status_reference or f"{reference}-statut"
        reactions = tuple(
            r.model_copy(update={"reference": r.reference or f"{reference}-reaction-{m}"})
            for m, r in enumerate(allergy.reactions, 1)
        )
        severity = allergy.severity
        if severity is not None:
            severity = severity.model_copy(update={"reference": severity.reference or f"{reference}-severite"})
        placed.append(
            allergy.model_copy(
                update={
                    "reference": reference,
                    "agent_reference": agent_reference,
                    "status_reference": status_reference,
                    "reactions": reactions,
                    "severity": severity,
                }
            )
        )
        label = show_code(allergy.kind)
        if allergy.reaction is not None:
            label = f"{label} : {show_code(allergy.reaction)}"
        agent_label = allergy.agent_name or show_code(allergy.agent)
        row: tuple[Any, ...] = (
            (label, reference),
            (agent_label, agent_reference) if agent_reference else "",
            show_time(allergy.start),
            show_time(allergy.end),
            (show_code(allergy.clinical_status), status_reference) if status_reference else "",
        )
        if detailed:
            # the reactions share one cell, each in its own content an entry points to
            shown = [(_reaction_label(r), r.reference or "") for r in reactions]
            reaction_cell: Any = shown[0] if len(shown) == 1 else shown or ""
            severity_cell: Any = (show_code(severity.code), severity.reference or "") if severity is not None else ""
            row = (*row, reaction_cell, severity_cell)
        rows.append(row)
    headers: tuple[str, ...] = ("Allergie ou hypersensibilité", "Agent", "Début", "Fin", "Statut")
    if detailed:
        headers = (*headers, "Réaction", "Sévérité")
    return section(kind, text=narrative_table(headers, rows, notes=notes), entries=tuple(placed))


def _reaction_label(reaction: AllergyReaction) -> str:
    label = show_code(reaction.value)
    return f"non observé(e) : {label}" if reaction.negated else label


def walk_sections(sections: tuple[Section, ...]) -> list[Section]:
    """Every section of a body, subsections after their parent, in document order."""
    found: list[Section] = []
    for item in sections:
        found.append(item)
        found += walk_sections(item.subsections)
    return found


def typed_entries(sections: tuple[Section, ...], where: str) -> list[tuple[str, VoletEntry]]:
    """The typed entries of a body with their place (``body.sections[0].entries[1]``)."""
    found: list[tuple[str, VoletEntry]] = []
    for i, item in enumerate(sections):
        here = f"{where}.sections[{i}]"
        found += [(f"{here}.entries[{j}]", e) for j, e in enumerate(item.entries) if isinstance(e, VoletEntry)]
        found += typed_entries(item.subsections, here)
    return found
