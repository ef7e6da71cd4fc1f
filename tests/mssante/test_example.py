"""examples/send_mssante.py runs against the sandbox operator and every check passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_mssante_example_runs_and_every_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "send_mssante.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every check passed" in done.stdout
    assert "FAILED" not in done.stdout
    assert "came back byte for byte" in done.stdout
    assert "Message non distribué" in done.stdout
