"""examples/build_cda.py runs, checks the document against the CDA schema and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import KIT

ROOT = Path(__file__).resolve().parents[2]


def test_the_cda_example_runs_and_every_check_passes(tmp_path: Path) -> None:
    output = tmp_path / "cr.xml"
    env = {**os.environ, "DMP_CONNECTOR_CDA__KIT_DIR": str(KIT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "build_cda.py"), str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every check passed" in done.stdout
    assert "FAILED" not in done.stdout
    if KIT.is_dir():
        assert "valid against CDA_extended.xsd" in done.stdout
    assert output.read_bytes().startswith(b"<?xml")
