"""One headless Chromium for the whole session (skipped, saying why, only when none is installed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import Browser, find_chromium

ARTEFACTS = Path(os.environ.get("DMPC_ARTEFACTS", Path(__file__).resolve().parents[2] / "tmp" / "artefacts"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it when root)")
    with Browser(executable) as started:
        yield started


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where screenshots are kept (tmp/artefacts, not committed)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS
