"""A griffe extension for the docs build: the code's reST habits, rendered as Markdown.

The docstrings are short prose written with reST conventions. mkdocstrings renders them as
Markdown, where ``:class:`X``` shows as ":class:" followed by X, and an XML example after
``::`` that is not indented becomes raw HTML and disappears. This rewrites, before rendering:

* ``:class:`~a.b.X``` (and ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``,
  ``:exc:``, ``:obj:``, ``:const:``) into the code span ```X```;
* a paragraph ending in ``::`` and the block after it into the paragraph and a fenced code
  block (``xml`` when the block starts with ``<``), whether the block is indented or not.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<]+?)(?:\s*<[^>]+>)?`")


def _role(match: re.Match[str]) -> str:
    tilde, name = match.group(1), match.group(2).strip()
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


def _literal_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not (line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip()):
            out.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2]
        out.append(head.rstrip() if head.endswith(" ") or not head.strip() else head + ":")
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        start = j
        if j < len(lines) and lines[j][:1] in (" ", "\t"):  # reST: an indented block, blank lines allowed
            while j < len(lines) and (not lines[j].strip() or lines[j][:1] in (" ", "\t")):
                j += 1
        else:  # not indented: up to the next blank line
            while j < len(lines) and lines[j].strip():
                j += 1
        block = textwrap.dedent("\n".join(lines[start:j])).strip("\n").splitlines()
        language = "xml" if block and block[0].lstrip().startswith("<") else ""
        out += ["", f"```{language}", *block, "```", ""]
        i = j
    return "\n".join(out)


class ReStructuredTextHabits(griffe.Extension):
    """Rewrite reST roles and literal blocks in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _literal_blocks(_ROLE.sub(_role, obj.docstring.value))
