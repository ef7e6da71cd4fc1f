"""docs/psc.md's python blocks run in order, in one namespace, offline, against the in-process simulator
(blocks after a ``<!-- docs: not-run … -->`` line are skipped, as the project's docs rule says)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "psc.md"


def _blocks(text: str) -> list[str]:
    blocks: list[str] = []
    for match in re.finditer(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", text, re.S):
        if not match.group("before").startswith("<!-- docs: not-run"):
            blocks.append(match.group("code"))
    return blocks


def test_every_block_of_the_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("joserfc")
    monkeypatch.chdir(tmp_path)
    blocks = _blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "docs_psc"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for number, code in enumerate(blocks, 1):
            exec(compile(code, f"docs/psc.md block {number}", "exec"), namespace)
    printed = out.getvalue()
    assert "Code à vérifier" in printed and "INDIRECTE_RENFORCEE" in printed and "True" in printed
