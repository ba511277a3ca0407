"""The container image itself: built from the Dockerfile with buildah and run as the chart runs it.

Both tests call scripts/image-test.sh (root; it installs buildah and debootstrap when missing). They are
slow (a real build, minutes on a fresh machine): skip them locally with `-m "not slow"` or `-m "not image"`.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.image.checks import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(1200)]
SCRIPT = ROOT / "scripts" / "image-test.sh"


def image_test(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--python", sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1140,
        check=False,
    )
    with capsys.disabled():  # the steps and their timings belong in CI's log
        print(f"\n{result.stdout}{result.stderr}", end="")
    return result


def test_the_dockerfile_builds_an_image_that_serves_as_the_chart_expects(capsys: pytest.CaptureFixture[str]) -> None:
    result = image_test(capsys)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for check in (
        "--version: tflock-bot ",
        "db upgrade: /tmp/tflock.db at ",
        "answers /healthz",
        "/readyz 200",
        "runs as UID 10001, GID 10001",
        "signed /tflock status answered with lock",
        "HEALTHCHECK command passes",
        "SIGTERM → exit 0",
        "HEALTHCHECK command fails once serve has stopped",
        "nothing written outside /tmp",
    ):
        assert f"{check}" in output, f"missing check {check!r}:\n{output}"


def test_an_entrypoint_that_does_not_exist_fails_the_image_test(
    capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    dockerfile = tmp_path_factory.mktemp("broken") / "Dockerfile"
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    broken, replaced = re.subn(r"^ENTRYPOINT .*$", 'ENTRYPOINT ["tflock-bot-missing"]', text, flags=re.MULTILINE)
    assert replaced == 1
    dockerfile.write_text(broken, encoding="utf-8")
    result = image_test(capsys, "--dockerfile", str(dockerfile), "--tag", "localhost/tflock:broken-entrypoint")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "built in" in output, "the broken image must build: only running it can show the fault"
    assert "FAILED: --version: exit" in output and "tflock-bot-missing" in output, output
    assert "image-test: FAILED: the image localhost/tflock:broken-entrypoint did not pass its checks" in output
