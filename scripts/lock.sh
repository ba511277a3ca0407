#!/usr/bin/env bash
# The dependency lock: uv.lock (every version and file hash, resolved for all platforms and Python ≥ 3.11)
# and its two exports with hashes, requirements/runtime.txt (what the image installs) and
# requirements/dev.txt (what scripts/test.sh installs); and requirements/build.txt, pyproject.toml's
# [build-system] requires with hashes, which the image builds tflock's wheel with.
#
#   bash scripts/lock.sh                          after editing pyproject.toml's dependencies
#   bash scripts/lock.sh --upgrade                every package to its newest allowed version
#   bash scripts/lock.sh --upgrade-package boto3  one package (other `uv lock` options pass through)
#   bash scripts/lock.sh --check                  CI: fail when pyproject.toml, uv.lock and the exports disagree
#
# --check never looks at PyPI: a lock that satisfies pyproject.toml stays valid when newer versions appear.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
[ -x "$uv" ] || uv=$(command -v uv) || { echo "scripts/lock.sh needs uv: pip install -e '.[dev]'" >&2; exit 2; }
uv=$(realpath "$uv")

export_to() {  # export_to FILE [uv export options]: the header names the command, so it is the same every time
  local file=$1
  shift
  "$uv" export --quiet --frozen --no-emit-project --format requirements-txt "$@" -o "$file"
}

if [ "${1:-}" = "--check" ]; then
  if ! "$uv" lock --check --offline --quiet 2>/dev/null; then
    echo "uv.lock does not match pyproject.toml: run 'bash scripts/lock.sh' and commit uv.lock and requirements/" >&2
    exit 1
  fi
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir "$scratch/requirements"
  for set in runtime dev; do
    options=(--no-dev)
    [ "$set" = dev ] && options=(--extra dev)
    # Exported beside a copy of the project so the header's -o path reads the same as in the repository.
    (cd "$scratch" && cp "$OLDPWD/pyproject.toml" "$OLDPWD/uv.lock" . && export_to "requirements/$set.txt" "${options[@]}")
    if ! diff -u "requirements/$set.txt" "$scratch/requirements/$set.txt"; then
      echo "requirements/$set.txt is not the export of uv.lock: run 'bash scripts/lock.sh' and commit it" >&2
      exit 1
    fi
  done
  echo "uv.lock and requirements/ match pyproject.toml"
  exit 0
fi

"$uv" lock "$@"
mkdir -p requirements
export_to requirements/runtime.txt --no-dev
export_to requirements/dev.txt --extra dev
# The build backend is not in uv.lock; it is compiled on its own (tests/test_lock.py checks it offline),
# keeping the versions it has unless everything is upgraded.
upgrade=()
for arg in "$@"; do [ "$arg" = "--upgrade" ] || [ "$arg" = "-U" ] && upgrade=(--upgrade); done
python3 -c 'import sys, tomllib; print(*tomllib.load(sys.stdin.buffer)["build-system"]["requires"], sep="\n")' \
  <pyproject.toml | "$uv" pip compile --quiet --generate-hashes --universal --python-version 3.11 "${upgrade[@]}" \
  --custom-compile-command "bash scripts/lock.sh" -o requirements/build.txt -
echo "updated uv.lock, requirements/runtime.txt, requirements/dev.txt and requirements/build.txt"
