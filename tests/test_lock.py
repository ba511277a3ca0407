"""The dependency lock agrees with pyproject.toml (README, *Dependencies*; scripts/lock.sh).

requirements/runtime.txt is what the image installs and requirements/dev.txt what scripts/test.sh
installs, both with hashes required. Nothing here asks PyPI anything: a newer release upstream never
makes these tests fail, only a pyproject.toml and a lock that disagree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = [Requirement(text) for text in PROJECT["dependencies"]]
DEV = [Requirement(text) for text in PROJECT["optional-dependencies"]["dev"]]
BUILD_SYSTEM = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
BUILD = [Requirement(text) for text in BUILD_SYSTEM["requires"]]
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


@dataclass
class Pin:
    name: str
    version: Version
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def read_pins(path: Path) -> list[Pin]:
    """The entries of a `uv export` file: name==version, its --hash lines and its `# via` annotations."""
    pins: list[Pin] = []
    in_via = False
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if found := _PIN.match(line):
            pins.append(Pin(canonicalize_name(found["name"]), Version(found["version"])))
            in_via = False
        elif stripped.startswith("--hash=sha256:") and pins:
            pins[-1].hashes.append(stripped.split(":", 1)[1].rstrip(" \\"))
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                pins[-1].via.add(canonicalize_name(rest))
        elif in_via and stripped.startswith("#   "):
            pins[-1].via.add(canonicalize_name(stripped.removeprefix("#").strip()))
        elif stripped and not stripped.startswith("#"):
            raise AssertionError(f"{path.name}: a line uv export does not write: {line!r}")
    return pins


@pytest.mark.parametrize(
    ("name", "wanted"),
    [("runtime", RUNTIME), ("dev", RUNTIME + DEV), ("build", BUILD)],
    ids=["runtime.txt", "dev.txt", "build.txt"],
)
def test_every_requirement_is_pinned_by_a_version_that_satisfies_it(name: str, wanted: list[Requirement]) -> None:
    pins = read_pins(ROOT / "requirements" / f"{name}.txt")
    for requirement in wanted:
        versions = [pin.version for pin in pins if pin.name == canonicalize_name(requirement.name)]
        assert versions, f"{requirement} is in pyproject.toml but not in requirements/{name}.txt: bash scripts/lock.sh"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements/{name}.txt pins {requirement.name}=={version}, outside {requirement}: "
                "bash scripts/lock.sh"
            )


@pytest.mark.parametrize(("name", "wanted"), [("runtime", RUNTIME), ("dev", RUNTIME + DEV), ("build", BUILD)])
def test_no_stale_top_level_entry_and_every_file_hashed(name: str, wanted: list[Requirement]) -> None:
    pins = read_pins(ROOT / "requirements" / f"{name}.txt")
    assert pins
    direct = {canonicalize_name(r.name) for r in wanted}
    stale = sorted(pin.name for pin in pins if "tflock" in pin.via and pin.name not in direct)
    stale += sorted(pin.name for pin in pins if name == "build" and not pin.via and pin.name not in direct)
    assert stale == [], f"requirements/{name}.txt has entries pyproject.toml no longer asks for: bash scripts/lock.sh"
    assert [pin.name for pin in pins if not pin.hashes] == []


def test_the_image_set_has_no_dev_tools() -> None:
    runtime = {pin.name for pin in read_pins(ROOT / "requirements/runtime.txt")}
    dev_only = {canonicalize_name(r.name) for r in DEV} - {canonicalize_name(r.name) for r in RUNTIME}
    assert runtime & dev_only == set()


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is a dev dependency: pip install -e '.[dev]'"
    return found


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"UV": _uv()}
    return subprocess.run(
        ["bash", str(root / "scripts/lock.sh"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_lock_check_passes_on_the_repository() -> None:
    result = _check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace('"waitress>=3.0"', '"waitress>=3.0", "tenacity>=8"'), "uv.lock does not match"),
        (lambda text: text.replace('"waitress>=3.0"', '"waitress>=99"'), "uv.lock does not match"),
    ],
    ids=["a new dependency", "a raised floor"],
)
def test_lock_check_fails_when_pyproject_moves_on(tmp_path: Path, edit: Callable[[str], str], message: str) -> None:
    for name in ("pyproject.toml", "uv.lock", "scripts/lock.sh", "requirements/runtime.txt", "requirements/dev.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    assert _check(tmp_path).returncode == 0
    pyproject = tmp_path / "pyproject.toml"
    changed = edit(pyproject.read_text(encoding="utf-8"))
    assert changed != pyproject.read_text(encoding="utf-8")
    pyproject.write_text(changed, encoding="utf-8")
    result = _check(tmp_path)
    assert result.returncode == 1 and message in result.stderr, result.stdout + result.stderr


def test_lock_check_fails_when_an_export_is_edited_by_hand(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock", "scripts/lock.sh", "requirements/runtime.txt", "requirements/dev.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    runtime = tmp_path / "requirements/runtime.txt"
    runtime.write_text(re.sub(r"(?m)^alembic==\S+", "alembic==1.13.0", runtime.read_text(encoding="utf-8")))
    result = _check(tmp_path)
    assert result.returncode == 1 and "requirements/runtime.txt is not the export of uv.lock" in result.stderr
