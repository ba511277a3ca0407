"""The pre-commit hooks run the same checks as scripts/test.sh, from the same venv (CONTRIBUTING.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".pre-commit-config.yaml"


def hooks() -> dict[str, str]:
    document = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return {hook["id"]: hook["entry"] for repo in document["repos"] for hook in repo["hooks"]}


def test_the_config_is_valid() -> None:
    found = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which("pre-commit")
    assert found, "pre-commit is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [found, "validate-config", str(CONFIG)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_quick_check_of_the_test_script_has_a_hook() -> None:
    script = (ROOT / "scripts/test.sh").read_text(encoding="utf-8")
    entries = hooks()
    for check in ("ruff check", "ruff format", "mypy --strict bot/ bench/", "scripts/lock.sh --check"):
        assert check in script, f"scripts/test.sh no longer runs {check}: update this test and the hooks"
        assert any(check in entry for entry in entries.values()), f"no pre-commit hook runs {check}"
    assert all(entry.startswith((".venv/bin/", "bash scripts/")) for entry in entries.values()), entries
