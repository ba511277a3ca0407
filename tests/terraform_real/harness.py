"""A real Terraform 0.11.11 against moto, with nothing leaving 127.0.0.0/8.

Terraform 0.11's S3 backend has no setting for a DynamoDB endpoint, so it cannot be pointed at moto's
server the way the bot is in tests/e2e. Instead moto runs in **proxy mode** (`moto_proxy`): Terraform
believes it talks to `dynamodb.eu-west-1.amazonaws.com` and `<bucket>.s3.eu-west-1.amazonaws.com`
through an HTTPS proxy, and moto answers with certificates signed by its own CA.

Between every process and moto sits `Egress`, a small proxy of ours: the only way out for Terraform
and for `tflock-bot`. An `*.amazonaws.com` CONNECT goes on to moto's proxy; a plain-HTTP request to
127.0.0.1/localhost (the fake Slack) goes straight there; anything else is refused and remembered, and
the tests assert nothing was. It exists because the Slack SDK sends every request through
`HTTPS_PROXY` and ignores `NO_PROXY`, so the bot could not reach the local fake Slack with moto's
proxy in `HTTPS_PROXY`; and it makes "no traffic outside loopback" something a test checks.

Terraform runs with an environment built from nothing (no inherited `AWS_*`, `HOME`, CLI config or
proxy settings), a configuration with no providers (nothing to download), and `CHECKPOINT_DISABLE`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REGION = "eu-west-1"
TERRAFORM = Path(sys.prefix) / "lib" / "terraform"  # where PyPI's terraform-binary puts the executable
TERRAFORM_VERSION = "0.11.11"
AWS_HOST = re.compile(r"^[a-z0-9.-]+\.amazonaws\.com$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_ca() -> Path:
    """moto's proxy CA certificate, shipped inside the package (found without importing moto.moto_proxy,
    whose import reconfigures the root logger)."""
    spec = importlib.util.find_spec("moto.moto_proxy")
    assert spec is not None and spec.submodule_search_locations, "moto is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "ca.crt"


def missing_tools() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if not os.access(TERRAFORM, os.X_OK):
        return f"needs Terraform {TERRAFORM_VERSION} at {TERRAFORM} (terraform-binary, in requirements/dev.txt)"
    if shutil.which("openssl") is None:
        return "needs openssl: moto's proxy signs its per-host certificates with it"
    if not moto_ca().is_file():
        return f"needs moto's proxy CA at {moto_ca()}"
    return None


def _moto_proxy_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_proxy")
    runner = [str(script)] if script.exists() else [sys.executable, "-c", "from moto.proxy import main; main()"]
    return [*runner, "-H", "127.0.0.1", "-p", str(port)]


class MotoProxy:
    """`moto_proxy` as a separate process on a free loopback port; its log names every request it answered."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            _moto_proxy_command(self.port), env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.reset()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"moto_proxy did not come up:\n{self.log()}") from None
                time.sleep(0.1)

    def reset(self) -> None:
        """Forget every bucket, table and item (moto's own API, asked directly: Host `localhost:<port>`)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/moto-api/reset", method="POST", headers={"Host": f"localhost:{self.port}"}
        )
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        no_proxy.open(request, timeout=10).close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@dataclass
class Egress:
    """The one door out for Terraform and the bot (see the module docstring)."""

    moto_port: int
    port: int = 0
    passed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Egress:
        egress = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                egress._handle(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def forget(self) -> None:
        self.passed.clear()
        self.refused.clear()

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        upstream = self._open(head)
        if upstream is None:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        _relay(client, upstream)

    def _open(self, head: bytes) -> socket.socket | None:
        """The upstream connection for a request, its head already sent; None (and remembered) when refused."""
        request_line, _, rest = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            if not (AWS_HOST.match(host) and port == "443"):
                self.refused.append(target)
                return None
            upstream = socket.create_connection(("127.0.0.1", self.moto_port), timeout=30)
            upstream.sendall(head)  # moto's proxy answers the CONNECT itself, then speaks TLS as `host`
        else:
            match = re.match(r"^http://(?:127\.0\.0\.1|localhost)(?::(\d+))?(/.*)$", target)
            if match is None:
                self.refused.append(f"{method} {target}")
                return None
            upstream = socket.create_connection(("127.0.0.1", int(match.group(1) or 80)), timeout=30)
            upstream.sendall(f"{method} {match.group(2)} {version}\r\n".encode("latin-1") + rest)
        self.passed.append(f"{method} {target}")
        return upstream

    def hosts(self) -> set[str]:
        """Every host a connection went to, `CONNECT` targets without their port."""
        found = set()
        for entry in self.passed:
            method, target = entry.split(" ", 1)
            found.add(target.rpartition(":")[0] if method == "CONNECT" else target.split("/")[2].split(":")[0])
        return found


def _relay(a: socket.socket, b: socket.socket) -> None:
    try:
        sockets = [a, b]
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 60)
            if broken or not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


def aws_clients(egress: Egress) -> tuple[Any, Any]:
    """DynamoDB and S3 clients that reach moto the way Terraform does: through the proxy, trusting moto's CA."""
    config = Config(proxies={"https": egress.url}, retries={"max_attempts": 2})
    kwargs: dict[str, Any] = {
        "region_name": REGION,
        "config": config,
        "verify": str(moto_ca()),
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("dynamodb", **kwargs), boto3.client("s3", **kwargs)


def proxied_env(egress: Egress) -> dict[str, str]:
    """What every process of ours gets to reach AWS: moto's CA and our proxy, nothing of the developer's."""
    return {
        **dict.fromkeys(PROXY_VARIABLES, egress.url),
        # Nothing bypasses the door (not even loopback, so every connection is on its record), nothing else is used.
        **dict.fromkeys(("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"), ""),
        "AWS_CA_BUNDLE": str(moto_ca()),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


# No providers, so `terraform init` downloads nothing. The variable has no default: a run started without
# `-var` and with input enabled asks for it *after* taking the lock (0.11's local backend locks first),
# which is how a test holds a real Terraform lock for as long as it wants.
CONFIGURATION = """\
terraform {
  backend "s3" {}
}

variable "change_ticket" {}

locals {
  greeting = "state kept by ${var.change_ticket}"
}

output "greeting" {
  value = "${local.greeting}"
}
"""


@dataclass
class Result:
    returncode: int
    output: str


@dataclass
class HeldRun:
    """A Terraform run waiting at its input prompt while it holds the state's lock."""

    process: subprocess.Popen[bytes]
    output: list[str]

    def text(self) -> str:
        return "".join(self.output)

    def answer(self, value: str, timeout: float = 60) -> Result:
        """Type the variable's value: the run goes on, finishes and releases its lock the way Terraform does."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{value}\n".encode())
        self.process.stdin.close()
        returncode = self.process.wait(timeout)
        return Result(returncode, self.text())

    def kill(self) -> None:
        """SIGKILL to the whole process group: Terraform 0.11 runs as a panicwrap parent and a child that
        holds the lock, and a killed CI job loses both."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Terraform:
    """A working directory with the configuration, `terraform init`-ed against the S3 backend in moto."""

    workdir: Path
    egress: Egress
    bucket: str
    key: str
    table: str
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "terraformrc").write_text("")
        (self.workdir / "main.tf").write_text(CONFIGURATION)
        self.env = {
            **proxied_env(self.egress),
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "USER": "tfuser",
            "SSL_CERT_FILE": str(moto_ca()),
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
            "TF_CLI_CONFIG_FILE": str(home / "terraformrc"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
            "AWS_CONFIG_FILE": str(home / "no-config"),
        }

    @property
    def state(self) -> str:
        """The state address, as Terraform prints it under `Path:`."""
        return f"{self.bucket}/{self.key}"

    def backend_config(self) -> list[str]:
        values = {
            "bucket": self.bucket,
            "key": self.key,
            "region": REGION,
            "dynamodb_table": self.table,
            "skip_credentials_validation": "true",
            "skip_get_ec2_platforms": "true",
            "skip_region_validation": "true",
            "skip_metadata_api_check": "true",
        }
        return [f"-backend-config={name}={value}" for name, value in values.items()]

    def run(self, *args: str, timeout: float = 60) -> Result:
        completed = subprocess.run(
            [str(TERRAFORM), *args],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        return Result(completed.returncode, completed.stdout.decode("utf-8", "replace"))

    def init(self) -> Result:
        result = self.run("init", "-input=false", "-no-color", *self.backend_config())
        assert result.returncode == 0, result.output
        return result

    def plan(self) -> Result:
        """One attempt at the lock (`-lock-timeout=0s`), no prompts."""
        return self.run("plan", "-input=false", "-no-color", "-lock-timeout=0s", "-var", "change_ticket=CHG-1")

    @contextmanager
    def held(self, command: str = "apply", timeout: float = 30) -> Iterator[HeldRun]:
        """`terraform <command>` stopped at its prompt for `change_ticket`, holding the lock; killed on exit."""
        process = subprocess.Popen(
            [str(TERRAFORM), command, "-no-color", "-lock-timeout=0s"],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        run = HeldRun(process, [])
        threading.Thread(target=_collect, args=(process, run.output), daemon=True).start()
        try:
            deadline = time.monotonic() + timeout
            while "Enter a value:" not in run.text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"terraform {command} never reached its prompt:\n{run.text()}")
                time.sleep(0.05)
            yield run
        finally:
            if process.poll() is None:
                run.kill()


def _collect(process: subprocess.Popen[bytes], into: list[str]) -> None:
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    for chunk in iter(lambda: os.read(descriptor, 4096), b""):
        into.append(chunk.decode("utf-8", "replace"))


def create_backend(dynamodb: Any, s3: Any, bucket: str, table: str) -> None:
    """The bucket and the lock table (hash key `LockID`), as an operator creates them for Terraform."""
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
