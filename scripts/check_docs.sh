#!/usr/bin/env bash
# Build the documentation site with --strict, as CI does: a broken link or anchor, a page
# missing from the nav or a docstring warning fails. The site goes to a temporary
# directory that is removed afterwards. Needs mkdocs, mkdocs-material and
# mkdocstrings[python] in .venv (or MKDOCS=/path/to/mkdocs).
set -euo pipefail
cd "$(dirname "$0")/.."
MKDOCS="${MKDOCS:-.venv/bin/mkdocs}"
site="$(mktemp -d "${TMPDIR:-/tmp}/dmp-connector-site.XXXXXX")"
trap 'rm -rf "$site"' EXIT
# Material's banner about MkDocs 2.0 is not a build warning; keep it out of CI logs.
export NO_MKDOCS_2_WARNING=1
"$MKDOCS" build --strict --clean --site-dir "$site" "$@"
