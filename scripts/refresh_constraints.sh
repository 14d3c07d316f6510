#!/usr/bin/env bash
# Refresh constraints.txt: install the newest versions pyproject.toml allows into a scratch venv,
# run the test suite there, and only if it passes write their exact versions to constraints.txt.
# Usage: scripts/refresh_constraints.sh [PYTHON]   (make lock). Takes the install plus one suite run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
"$PYTHON" -m venv "$SCRATCH/venv"
PY="$SCRATCH/venv/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "$TORCH_PIN"
"$PY" -m pip install -q -e ".[test]"   # no -c: the newest versions, which is what is being tried
"$PY" -m pytest -q -p no:cacheprovider || { echo "the newest versions fail the suite: constraints.txt kept" >&2; exit 1; }
{
  sed -n '1,/^# rewrites this file/p' constraints.txt | grep '^#'
  "$PY" -m pip freeze --exclude-editable | grep -v -i '^torch=='
} > "$SCRATCH/constraints.txt"
mv "$SCRATCH/constraints.txt" constraints.txt
echo "constraints.txt refreshed; run make test once more with it and commit it"
