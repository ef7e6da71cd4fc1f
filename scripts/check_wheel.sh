#!/usr/bin/env bash
# The installed package demonstrates itself, with no repository: build the wheel, install it with its
# extras into a fresh virtual environment outside the checkout, run `dmp-connector demo` there (from a
# directory outside the checkout too) and validate the CDA document it built with the ANS kit given by path.
#   bash scripts/check_wheel.sh [KIT_DIR]     (default: ../shared/cda-2025, the 2025-10 kit)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kit="$(cd "${1:-$root/../shared/cda-2025}" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/dmp-connector-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
case "$work" in "$root"/*) echo "the temporary directory $work is inside the checkout" >&2; exit 1;; esac

python3 -m pip wheel --no-deps -q -w "$work/dist" "$root"
wheel="$(ls "$work"/dist/dmp_connector-*.whl)"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "${wheel}[sandbox,validation]"

cd "$work"
installed="$("$work/venv/bin/python" -c 'import dmp_connector, pathlib; print(pathlib.Path(dmp_connector.__file__).parent)')"
case "$installed" in "$work"/venv/*) ;; *) echo "dmp_connector imported from $installed, not the fresh venv" >&2; exit 1;; esac
"$work/venv/bin/dmp-connector" demo --save-document "$work/compte-rendu.xml"
"$work/venv/bin/dmp-connector" cda kit "$kit"
"$work/venv/bin/dmp-connector" cda validate --kit "$kit" "$work/compte-rendu.xml"
echo "wheel check passed: $(basename "$wheel") installed outside the checkout ran the demo and validated its document"
