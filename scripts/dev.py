#!/usr/bin/env python3
"""Set up and run the project with nothing but Python 3.11+.

    python3 scripts/dev.py quickstart   # the end-to-end example
    python3 scripts/dev.py test         # the whole test suite
    python3 scripts/dev.py setup        # only create/refresh .venv

The first run creates ``.venv`` and installs the package with its ``dev`` extra; later
runs reinstall only when ``pyproject.toml`` changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".dmp-connector-installed"


def setup() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"dmp_connector needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == digest:
        return
    if not PY.exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing dmp-connector[dev] into .venv …", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"setup", "quickstart", "test"}:
        print(__doc__)
        return 2
    setup()
    command, rest = argv[0], argv[1:]
    if command == "quickstart":
        return subprocess.run([str(PY), str(ROOT / "examples" / "quickstart.py"), *rest], cwd=ROOT).returncode
    if command == "test":
        return subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
