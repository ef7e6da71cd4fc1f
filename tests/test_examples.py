"""Every example script runs to the end with every check passing: they are documentation that must not rot.

The INSi, CDA and MSSanté examples have their own tests beside their packages; this file runs
the quickstart (the README's first command), the DMP examples and the receiving example.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["quickstart.py", "deposit_document.py", "query_dmp.py", "receive_documents.py"])
def test_example_runs_and_every_check_passes(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every check passed" in done.stdout
    assert "FAILED" not in done.stdout
