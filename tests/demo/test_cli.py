"""`tflock-bot demo` as a process: it comes up, keeps to itself, says when a port is taken, and stops on Ctrl-C."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.demo.conftest import DemoProcess, start_demo
from tests.e2e.conftest import tflock_bot_executable

pytestmark = [pytest.mark.slow]


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Tflock-Demo": "1"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def test_no_open_answers_healthz_within_ten_seconds(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*tflock_bot_executable(), "demo", "--no-open", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    demo = None
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 10
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if "this page plays Slack: " in line:
                url = line.split("this page plays Slack: ")[1].split("/ ")[0].rstrip("/")
        assert url, "the demo did not say where its page is"
        demo = DemoProcess(process, url)
        status = 0
        while time.monotonic() < deadline:
            status, body = _get(f"{url}/healthz")
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, "/healthz did not answer 200 within 10 s of starting"
        assert body == {"status": "alive", "aws": "ready", "bot": "ready"}
    finally:
        if demo is not None:
            demo.stop()
        else:
            process.kill()
            process.wait(5)


def test_a_port_in_use_gets_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*tflock_bot_executable(), "demo", "--no-open", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_ambient_aws_and_slack_settings_are_ignored_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TFLOCK_DATABASE_URL=nonsense\nSLACK_BOT_TOKEN=not-a-token\n")
    monkeypatch.chdir(tmp_path)
    ambient = {
        "AWS_ENDPOINT_URL": "http://192.0.2.1:9",  # TEST-NET: would hang or fail if anything used it
        "AWS_PROFILE": "production",
        "SLACK_API_URL": "http://192.0.2.1:9/api/",
        "SLACK_BOT_TOKEN": "xoxb-the-real-one",
        "TFLOCK_DATABASE_URL": "postgresql+psycopg://prod-db.invalid/tflock",
        "TFLOCK_APPROVERS": "U0SOMEONE",
    }
    demo = start_demo(env=ambient)
    try:
        head = "\n".join(demo.lines[:2])
        assert "nothing here reaches real AWS or Slack" in demo.lines[0]
        for name in ambient:
            assert name in head
        assert "xoxb-the-real-one" not in "\n".join(demo.lines)  # names only, never values
        alice = "U0ALICE01"
        state = _get(f"{demo.url}/demo/state?user={alice}")[1]
        _post(
            f"{demo.url}/demo/command",
            {"user": alice, "channel": "C0INCIDENT", "text": "/tflock status acme-tfstate/network/terraform.tfstate"},
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = _get(f"{demo.url}/demo/state?user={alice}&after={state['version']}")[1]
            if any("State lock on" in json.dumps(m["blocks"]) for m in state["messages"]):
                break
        else:
            pytest.fail(f"no status answer: {state}\n" + "\n".join(demo.lines))
    finally:
        assert demo.stop() == 0


def test_ctrl_c_stops_everything(demo: DemoProcess) -> None:
    assert _get(f"{demo.url}/healthz")[0] == 200
    assert demo.stop() == 0
    time.sleep(0.2)
    assert any("stopped" in line for line in demo.lines), demo.lines
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(f"{demo.url}/healthz", timeout=2)


def test_the_page_api_refuses_other_origins(demo: DemoProcess) -> None:
    request = urllib.request.Request(
        f"{demo.url}/demo/command",
        data=b'{"user": "U0ALICE01", "channel": "C0INCIDENT", "text": "/tflock list"}',
        headers={"Content-Type": "application/json"},  # a cross-site form post cannot add X-Tflock-Demo
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    rebound = urllib.request.Request(f"{demo.url}/demo/setup", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as misdirected:
        urllib.request.urlopen(rebound, timeout=5)
    assert misdirected.value.code == 421


def test_the_embedded_aws_does_not_outlive_a_killed_demo() -> None:
    demo = start_demo()
    pid = demo.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, "the demo runs moto in a child process"
    moto = int(children[0])
    assert "bot.demo.aws" in Path(f"/proc/{moto}/cmdline").read_text()
    demo.process.kill()  # no finally blocks run: only the closed pipe tells moto
    demo.process.wait(10)
    deadline = time.monotonic() + 15
    while _running(moto) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(moto), "moto kept running after the demo was killed"


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
