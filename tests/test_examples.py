"""Every example script runs to the end with every check passing: they are documentation that must not rot.

The INSi, CDA and MSSanté examples have their own tests beside their packages; this file runs
the quickstart (the README's first command), the DMP examples, the receiving example and the
structured-volet examples (CR-IMG, VAC-NOTE).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script",
    [
        "quickstart.py",
        "deposit_document.py",
        "query_dmp.py",
        "receive_documents.py",
        "ins_fhir_datamatrix.py",
        "build_cr_img.py",  # issue 21: CR-IMG
        "build_vac_note.py",  # issue 21: VAC-NOTE
        "hl7v2_transmission.py",  # issue 23: HL7 v2 / MLLP
    ],
)
def test_example_runs_and_every_check_passes(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every check passed" in done.stdout
    assert "FAILED" not in done.stdout


def test_the_installed_demo_command_runs_outside_the_checkout(tmp_path: Path) -> None:
    """``dmp-connector demo``: the quickstart from the package itself, run from a directory with no repository."""
    document = tmp_path / "compte-rendu.xml"
    done = subprocess.run(
        [sys.executable, "-m", "dmp_connector", "demo", "--save-document", str(document)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every check passed" in done.stdout
    assert document.read_bytes().startswith(b"<?xml") and b"ClinicalDocument" in document.read_bytes()
