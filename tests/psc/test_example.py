"""examples/psc_login.py runs to the end with every check passing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_psc_example_runs_and_every_check_passes() -> None:
    pytest.importorskip("joserfc")
    pytest.importorskip("pymap")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "psc_login.py")], capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every check passed" in done.stdout and "FAILED" not in done.stdout
    assert "eyJ" not in done.stdout + done.stderr  # no token printed
