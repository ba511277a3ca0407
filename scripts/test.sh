#!/usr/bin/env bash
# Install the locked dev set into .venv (hashes required), check the lock against pyproject.toml, then lint,
# type-check and run the whole test suite. Extra arguments go to pytest
# (e.g. `bash scripts/test.sh -k address`, or `bash scripts/test.sh --skip-slow` to leave out slow tests).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# Exactly the versions and files of requirements/dev.txt (the export of uv.lock), then tflock itself without
# resolving anything else.
.venv/bin/python -m pip install --quiet --require-hashes -r requirements/dev.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
echo "== lock matches pyproject.toml" && bash scripts/lock.sh --check
echo "== ruff check" && .venv/bin/ruff check .
echo "== ruff format --check" && .venv/bin/ruff format --check .
echo "== mypy --strict bot/ bench/" && .venv/bin/mypy --strict bot/ bench/
echo "== pytest" && .venv/bin/python -m pytest "$@"
