#!/usr/bin/env bash
# Install everything into .venv, then lint, type-check and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k address`).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "== ruff check" && .venv/bin/ruff check .
echo "== ruff format --check" && .venv/bin/ruff format --check .
echo "== mypy --strict bot/" && .venv/bin/mypy --strict bot/
echo "== pytest" && .venv/bin/python -m pytest "$@"
