"""Real processes over real HTTP: moto's server plays AWS (`AWS_ENDPOINT_URL`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import BUCKET, REGION, TABLE, Aws
from tests.terraform import TerraformBackend, create_bucket, create_table

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class MotoServer:
    url: str

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/")
        yield MotoServer(url)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def remote_aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Fresh moto-server state with the standard table and bucket, reached over HTTP."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    clients = Aws(
        dynamodb=boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server.url),
        s3=boto3.client("s3", region_name=REGION, endpoint_url=moto_server.url),
        sts=boto3.client("sts", region_name=REGION, endpoint_url=moto_server.url),
    )
    create_table(clients.dynamodb, TABLE)
    create_bucket(clients.s3, BUCKET)
    return clients


@pytest.fixture
def remote_tf(remote_aws: Aws) -> TerraformBackend:
    return TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def tflock_bot_executable() -> list[str]:
    script = Path(sys.executable).with_name("tflock-bot")
    if script.exists():
        return [str(script)]
    found = shutil.which("tflock-bot")
    return [found] if found else [sys.executable, "-m", "bot"]


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    """Run the installed `tflock-bot` console script as a separate process with the test environment."""
    full_env = {**os.environ, **(env or {})}
    completed = subprocess.run(
        [*tflock_bot_executable(), *args], env=full_env, capture_output=True, timeout=60, input=stdin, check=False
    )
    return Result(
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


@dataclass
class BotProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def post(self, body: str, headers: dict[str, str], path: str = "/slack/events") -> tuple[int, str]:
        request = urllib.request.Request(f"{self.url}{path}", data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_bot(env: dict[str, str], log_path: Path, *args: str) -> BotProcess:
    """`tflock-bot serve` as a real process; waits until /healthz answers."""
    port = free_port()
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}
    full_env = {**os.environ, **aws, "TFLOCK_PORT": str(port), "TFLOCK_LOG_LEVEL": "INFO", **env}
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [*tflock_bot_executable(), "serve", *args], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
    )
    bot = BotProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_http(f"{bot.url}/healthz", timeout=30)
    except Exception:
        bot.stop()
        raise AssertionError(f"tflock-bot serve did not come up:\n{bot.log()}") from None
    return bot
