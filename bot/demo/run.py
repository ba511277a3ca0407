"""`tflock-bot demo`: embedded AWS (moto), the real bot (`serve`, HTTP mode) and a page that plays Slack,
all in this process and all on 127.0.0.1. Nothing reaches real AWS or Slack."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import os
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_PORT = 8300
REGION = "eu-west-1"  # bot.demo.world.REGION, known here before the demo's modules load
READY_TIMEOUT = 60.0
_AMBIENT_PREFIXES = ("AWS_", "SLACK_", "TFLOCK_", "BOTO_")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def say(text: str) -> None:
    print(f"tflock demo: {text}", flush=True)


def set_aside_ambient_settings() -> list[str]:
    """Drop AWS/Slack/tflock settings (and proxies) from this process's environment; return their names."""
    names = sorted(k for k in os.environ if k.startswith(_AMBIENT_PREFIXES) or k in _PROXIES)
    for name in names:
        del os.environ[name]
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (a loopback URL built here)
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_problem(port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"tflock-bot demo: port {port} on 127.0.0.1 is already in use; "
            "choose another with --port N (--port 0 picks a free one)"
        )
    return f"tflock-bot demo: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), so "ready in" counts the imports too."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic() - (process_age() or 0.0)
    say("everything runs here, on 127.0.0.1 only; nothing here reaches real AWS or Slack.")
    ambient = set_aside_ambient_settings()
    if ambient:
        say(f"your own settings are set aside for this run ({', '.join(ambient)}); the demo uses its own.")
    else:
        say("no AWS, Slack or tflock settings in the environment; the demo uses its own anyway.")
    if args.database and not Path(args.database).resolve().parent.is_dir():
        print(f"tflock-bot demo: --database {args.database}: its folder does not exist", file=sys.stderr)
        return 2
    if importlib.util.find_spec("moto") is None:
        print(
            "tflock-bot demo: the demo needs its extra dependencies: pip install 'tflock[demo]' "
            "(from a clone: pip install '.[demo]')",
            file=sys.stderr,
        )
        return 1

    work = tempfile.TemporaryDirectory(prefix="tflock-demo-")
    home = Path(work.name)
    # Credentials and endpoint for moto only; no shared config or credentials files, no instance metadata.
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    # First, so moto loads and the locks are written on one core while the bot starts on the other.
    aws_process = subprocess.Popen(
        [sys.executable, "-m", "bot.demo.aws"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        return _run(args, started, home, aws_process)
    finally:
        _stop_aws(aws_process)
        work.cleanup()
        say("stopped: the page, the bot and the embedded AWS are gone.")


def _run(args: argparse.Namespace, started: float, home: Path, aws_process: subprocess.Popen[str]) -> int:
    from bot.demo import world  # noqa: PLC0415
    from bot.demo.slack import Workspace  # noqa: PLC0415
    from bot.demo.web import Demo, make_server, serve_in_thread  # noqa: PLC0415

    token = "xoxb-demo-" + secrets.token_hex(12)
    secret = secrets.token_hex(16)
    parts = {"aws": "starting", "bot": "starting"}
    aws_url: list[str] = []
    clients: dict[str, Any] = {}
    clients_lock = threading.Lock()

    def aws(service: str) -> Any:
        """The Terraform panel's boto3 clients on the embedded AWS, made on first use."""
        with clients_lock:
            if service not in clients:
                import boto3  # noqa: PLC0415

                clients[service] = boto3.client(service, region_name=world.REGION, endpoint_url=aws_url[0])  # type: ignore[call-overload]
            return clients[service]

    workspace = Workspace(token, secret, "http://127.0.0.1")
    try:
        server = make_server(args.port, Demo(workspace, aws, lambda: dict(parts)))
    except OSError as exc:
        print(port_problem(args.port, exc), file=sys.stderr)
        return 1
    page_url = f"http://127.0.0.1:{server.server_address[1]}"
    workspace.base_url = page_url
    serve_in_thread(server)
    say(f"this page plays Slack: {page_url}/ (starting…)")
    try:
        database = Path(args.database).resolve() if args.database else home / "tflock-demo.db"
        bot_port = free_port()
        settings = bot_settings(token, secret, page_url, bot_port, database)
        say(f"the bot is `tflock-bot serve` in HTTP mode on 127.0.0.1:{bot_port}; audit trail in {database}")

        def announce() -> None:
            assert aws_process.stdout is not None
            # The endpoint, printed once moto is up and seeded; a child that says nothing in time has failed.
            said, _, _ = select.select([aws_process.stdout], [], [], READY_TIMEOUT)
            line = aws_process.stdout.readline().strip() if said else ""
            if not line.startswith("http://127.0.0.1:"):
                say("the embedded AWS did not start within a minute; see the messages above. Stop with Ctrl-C.")
                return
            aws_url.append(line)
            os.environ["AWS_ENDPOINT_URL"] = line  # the bot's boto3 clients are made on first use, after this
            parts["aws"] = "ready"
            say(f"AWS is moto on {line}: table {world.TABLE}, bucket {world.BUCKET}, locks as Terraform writes them.")
            if not wait_until_up(f"http://127.0.0.1:{bot_port}/readyz", READY_TIMEOUT):
                say("the bot did not become ready within a minute; see the messages above.")
                return
            workspace.bot_url = f"http://127.0.0.1:{bot_port}/slack/events"
            parts["bot"] = "ready"
            say(f"ready in {time.monotonic() - started:.1f} s: open {page_url}/  (Ctrl-C stops everything)")
            if not args.no_open:
                webbrowser.open(page_url + "/")

        threading.Thread(target=announce, name="tflock-demo-announce", daemon=True).start()
        from bot.server import serve  # noqa: PLC0415

        return serve(settings, host="127.0.0.1")
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        server.server_close()


def _stop_aws(process: subprocess.Popen[str]) -> None:
    """Stop moto (it holds nothing worth keeping); kill it if it does not go."""
    try:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        process.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait(5)


def bot_settings(token: str, secret: str, page_url: str, port: int, database: Path) -> Any:
    """The bot's settings, every one given here: nothing is read from the environment or a .env file."""
    from bot.demo import slack, world  # noqa: PLC0415
    from bot.settings import load_settings  # noqa: PLC0415

    return load_settings(
        _env_file=None,
        SLACK_BOT_TOKEN=token,
        SLACK_SIGNING_SECRET=secret,
        SLACK_API_URL=page_url + "/api/",
        TFLOCK_DATABASE_URL=f"sqlite:///{database}",
        TFLOCK_DYNAMODB_TABLE=world.TABLE,
        TFLOCK_S3_LOCKFILE="auto",
        TFLOCK_S3_BUCKETS=[world.BUCKET],
        TFLOCK_APPROVERS=list(slack.APPROVERS),
        TFLOCK_AUDITORS=list(slack.AUDITORS),
        TFLOCK_ALLOWED_CHANNELS=[slack.CHANNEL],
        TFLOCK_PORT=port,
    )
