"""Run a built tflock image the way the Helm chart runs it, and check every promise the chart relies on.

`scripts/image-test.sh` builds the image with buildah and then runs `python -m tests.image.checks --image TAG`.
Each check runs the image's own ENTRYPOINT (read from the image, so a broken one fails here) in a buildah
container with chroot isolation on the host's loopback, with a host directory as its writable /tmp (the
chart's emptyDir) and a read-only backends file under /etc/tflock (the chart's ConfigMap):

- the image config: numeric non-root USER equal to the chart's runAsUser, a HEALTHCHECK, an ENTRYPOINT;
- `--version` prints the project's version;
- `db upgrade` migrates the default SQLite database under /tmp to Alembic's head;
- `serve` against moto's server and a local Slack Web API: /healthz, /readyz, one signed `/tflock status`
  answered with the lock's owner, the image's HEALTHCHECK command passing; the process runs as the
  chart's UID/GID; SIGTERM stops it with exit 0 within the chart's terminationGracePeriodSeconds,
  after which the HEALTHCHECK command fails;
- nothing in the container's root filesystem was created, changed or removed outside /tmp.

Prints one line per check and exits 1 with the reason at the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from alembic.script import ScriptDirectory

from bot import __version__
from tests.fakeslack import FakeSlack, sign, slash_command_body
from tests.terraform import TerraformBackend, ago, create_bucket, create_table

ROOT = Path(__file__).resolve().parents[2]
CHART_VALUES = ROOT / "helm" / "tflock" / "values.yaml"
REGION = "eu-west-1"
BUCKET = "acme-tfstate"
TABLE = "terraform-locks"
KEY = "network/terraform.tfstate"
OWNER = "alice@build-agent-07"
SECRET = "image-test-signing-secret"
VENV = "opt/tflock"  # the builder stage's virtualenv, copied whole into the runtime stage
LAYER_BUDGET = 250_000_000  # bytes the Dockerfile may add to the base image (docs/benchmarks.md; charts: issue 15)
# buildah itself touches these on every `buildah run` (it writes and removes /run/.containerenv): the
# directory's own times are ignored, anything created inside it is not.
BUILDAH_TOUCHES = {"run"}


class CheckFailed(Exception):
    pass


STARTED = time.monotonic()


def ok(message: str) -> None:
    print(f"ok [{time.monotonic() - STARTED:5.1f} s]: {message}", flush=True)


# -- buildah -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Buildah:
    root: str
    runroot: str
    driver: str

    def argv(self, *args: str) -> list[str]:
        return ["buildah", "--root", self.root, "--runroot", self.runroot, "--storage-driver", self.driver, *args]

    def __call__(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise CheckFailed(f"buildah {' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout.strip()


@dataclass(frozen=True)
class Container:
    buildah: Buildah
    name: str
    rootfs: Path
    volumes: tuple[str, ...]

    def run_argv(self, argv: Sequence[str]) -> list[str]:
        volumes = [arg for volume in self.volumes for arg in ("--volume", volume)]
        return self.buildah.argv("run", "--isolation", "chroot", *volumes, self.name, "--", *argv)

    def run(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.run_argv(argv), capture_output=True, text=True, timeout=timeout, check=False)


@contextmanager
def container(buildah: Buildah, image: str, env: dict[str, str], volumes: Sequence[str]) -> Iterator[Container]:
    name = buildah("from", "--pull=never", image)
    try:
        config = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        buildah("config", *config, name)
        yield Container(buildah, name, Path(buildah("mount", name)), tuple(volumes))
    finally:
        subprocess.run(buildah.argv("rm", name), capture_output=True, timeout=120, check=False)


# -- what the chart expects --------------------------------------------------------------------------
@dataclass(frozen=True)
class Chart:
    uid: int
    gid: int
    grace_seconds: int

    @classmethod
    def load(cls) -> Chart:
        values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
        pod = values["podSecurityContext"]
        return cls(int(pod["runAsUser"]), int(pod["runAsGroup"]), int(values["terminationGracePeriodSeconds"]))


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str]
    cmd: list[str]
    user: str
    healthcheck: list[str]

    @classmethod
    def of(cls, buildah: Buildah, image: str) -> ImageConfig:
        inspected = json.loads(buildah("inspect", "--type", "image", image))
        config = (inspected.get("Docker") or {}).get("config") or {}
        test = (config.get("Healthcheck") or {}).get("Test") or []
        if not test or test[0] not in {"CMD", "CMD-SHELL"}:
            raise CheckFailed(f"the image has no HEALTHCHECK (Docker-format config: {config.get('Healthcheck')})")
        healthcheck = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
        return cls(config.get("Entrypoint") or [], config.get("Cmd") or [], config.get("User") or "", healthcheck)


def check_config(config: ImageConfig, chart: Chart) -> None:
    if config.user != f"{chart.uid}:{chart.gid}" and config.user != str(chart.uid):
        raise CheckFailed(f"USER is {config.user!r}; the chart runs it as {chart.uid}:{chart.gid} (runAsNonRoot)")
    if not config.entrypoint:
        raise CheckFailed("the image has no ENTRYPOINT")
    ok(f"config: USER {config.user}, ENTRYPOINT {config.entrypoint}, CMD {config.cmd}, HEALTHCHECK present")


# -- the root filesystem, before and after -----------------------------------------------------------
Entry = tuple[int, int, int, int, int, int]  # mode, uid, gid, size, mtime_ns, ctime_ns


def snapshot(rootfs: Path, writable: Sequence[str] = ("tmp",)) -> dict[str, Entry]:
    """Every path under `rootfs` (not following links) except the writable mount points and their contents."""
    found: dict[str, Entry] = {}
    for directory, dirs, files in os.walk(rootfs):
        relative = os.path.relpath(directory, rootfs)
        dirs[:] = [name for name in dirs if os.path.normpath(os.path.join(relative, name)) not in writable]
        for name in [*dirs, *files]:
            info = os.lstat(os.path.join(directory, name))
            key = os.path.normpath(os.path.join(relative, name))
            found[key] = (info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return found


def changes(
    before: dict[str, Entry], after: dict[str, Entry], ignore_times_of: set[str] = BUILDAH_TOUCHES
) -> list[str]:
    """Paths created, removed or changed between two snapshots, each with what happened."""
    found = [f"created /{path}" for path in sorted(after.keys() - before.keys())]
    found += [f"removed /{path}" for path in sorted(before.keys() - after.keys())]
    for path in sorted(before.keys() & after.keys()):
        old, new = before[path], after[path]
        if old == new:
            continue
        if path in ignore_times_of and stat.S_ISDIR(new[0]) and old[:4] == new[:4]:
            continue
        found.append(f"changed /{path}")
    return found


def file_bytes(tree: dict[str, Entry], under: str = "") -> int:
    """What the files and symlinks in a snapshot hold (apparent sizes, as `du -sb` counts them, less dirs)."""
    prefix = under.rstrip("/") + "/" if under else ""
    return sum(e[3] for path, e in tree.items() if path.startswith(prefix) and not stat.S_ISDIR(e[0]))


def check_size(buildah: Buildah, image_name: str, image_tree: dict[str, Entry], base: str) -> None:
    """The project's share of the image (everything the Dockerfile adds to the base) against its budget."""
    with container(buildah, base, {}, []) as box:
        base_tree = snapshot(box.rootfs)
    image, base_bytes = file_bytes(image_tree), file_bytes(base_tree)
    ours, venv = image - base_bytes, file_bytes(image_tree, VENV)
    sites = [path for path in image_tree if re.fullmatch(rf"{VENV}/lib/python3\.\d+/site-packages", path)]
    names = {path.split("/")[5] for site in sites for path in image_tree if path.startswith(site + "/")}
    packages = sorted(
        ((file_bytes(image_tree, f"{site}/{name}"), name) for site in sites for name in names), reverse=True
    )
    largest = ", ".join(f"{name} {size / 1e6:.1f}" for size, name in packages[:6])
    line = (
        f"size: image {image / 1e6:.1f} MB, base {base_bytes / 1e6:.1f} MB, ours {ours / 1e6:.1f} MB "
        f"(budget {LAYER_BUDGET / 1e6:.0f} MB), /{VENV} {venv / 1e6:.1f} MB (largest: {largest})"
    )
    listed = {name: buildah("images", "--noheading", "--format", "{{.Size}}", name) for name in (image_name, base)}
    line += f"; buildah images (layer tar sizes): image {listed[image_name]}, base {listed[base]}"
    if ours > LAYER_BUDGET:
        raise CheckFailed(f"over budget: {line}")
    ok(line)


# -- services on loopback ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(what: str, probe: Any, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last is True:
                return
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    tail = f"\n--- log ---\n{log.read_text(errors='replace')[-4000:]}" if log and log.exists() else ""
    raise CheckFailed(f"{what} not within {timeout:.0f} s (last: {last}){tail}")


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("moto's server answering", lambda: get(f"{url}/moto-api/")[0] == 200, 30)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def process_of(launcher: subprocess.Popen[bytes], argv: Sequence[str]) -> int:
    """The container's main process: the descendant of `buildah run` whose command line is `argv`."""
    wanted = "\0".join(argv)
    for pid in descendants(launcher.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0")
        except OSError:
            continue
        if cmdline.endswith(wanted) and "buildah" not in cmdline:
            return pid
    raise CheckFailed(f"no process running {list(argv)} under buildah run (pid {launcher.pid})")


def ids_of(pid: int) -> tuple[set[int], set[int]]:
    lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {int(v) for v in lines["Uid"].split()}, {int(v) for v in lines["Gid"].split()}


# -- the checks --------------------------------------------------------------------------------------
def check_version(box: Container, config: ImageConfig) -> None:
    done = box.run([*config.entrypoint, "--version"], timeout=60)
    expected = f"tflock-bot {__version__}"
    if done.returncode != 0 or done.stdout.strip() != expected:
        raise CheckFailed(f"--version: exit {done.returncode}, {done.stdout.strip()!r} {done.stderr.strip()!r}")
    ok(f"--version: {expected}")


def check_db_upgrade(box: Container, config: ImageConfig, tmp: Path) -> None:
    done = box.run([*config.entrypoint, "db", "upgrade"], timeout=120)
    if done.returncode != 0:
        raise CheckFailed(f"db upgrade: exit {done.returncode}: {done.stdout.strip()} {done.stderr.strip()}")
    database = tmp / "tflock.db"  # the image's TFLOCK_DATABASE_URL, sqlite:////tmp/tflock.db
    if not database.exists():
        raise CheckFailed(f"db upgrade said {done.stdout.strip()!r} but left no /tmp/tflock.db")
    with sqlite3.connect(database) as connection:
        versions = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
    head = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
    if versions != [head]:
        raise CheckFailed(f"db upgrade left the database at {versions}, Alembic's head is {head}")
    ok(f"db upgrade: /tmp/tflock.db at {head}")


def check_serve(
    box: Container, config: ImageConfig, chart: Chart, slack: FakeSlack, moto_url: str, port: int, log: Path
) -> None:
    aws = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    tf = TerraformBackend(
        aws.client("s3", endpoint_url=moto_url),
        aws.client("dynamodb", endpoint_url=moto_url),
        BUCKET,
        TABLE,
        use_lockfile=True,
    )
    create_table(tf.dynamodb, TABLE)
    create_bucket(tf.s3, BUCKET)
    lock = tf.lock(KEY, operation="OperationTypeApply", who=OWNER, created=ago(hours=2))

    argv = [*config.entrypoint, *config.cmd]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        launcher = subprocess.Popen(box.run_argv(argv), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(
            "serve answering /healthz", lambda: launcher.poll() is None and get(f"{url}/healthz")[0] == 200, 60, log
        )
        if launcher.poll() is not None:
            raise CheckFailed(f"serve exited with {launcher.returncode}:\n{log.read_text(errors='replace')}")
        ok(f"serve: {' '.join(argv)} answers /healthz on 127.0.0.1:{port}")
        status, body = get(f"{url}/readyz")
        if status != 200:
            raise CheckFailed(f"/readyz answered {status}: {body}")
        ok(f"serve: /readyz {status} {body}")

        pid = process_of(launcher, argv)
        uids, gids = ids_of(pid)
        if uids != {chart.uid} or gids != {chart.gid}:
            raise CheckFailed(
                f"serve runs with UIDs {sorted(uids)} and GIDs {sorted(gids)}, not {chart.uid}:{chart.gid}"
            )
        ok(f"serve: process {pid} runs as UID {chart.uid}, GID {chart.gid} (real, effective, saved, filesystem)")

        form = slash_command_body(f"status {BUCKET}/{KEY}", slack.response_url("status"))
        request = urllib.request.Request(f"{url}/slack/events", data=form.encode(), headers=sign(SECRET, form))
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise CheckFailed(f"signed /tflock status answered HTTP {response.status}")
        answer = json.dumps(slack.wait_for("/response/status", timeout=20)[-1].body, ensure_ascii=False)
        if lock.id not in answer or OWNER not in answer:
            raise CheckFailed(f"/tflock status did not name the lock {lock.id} and its owner {OWNER}: {answer[:2000]}")
        ok(f"serve: signed /tflock status answered with lock {lock.id} held by {OWNER}")

        health = box.run(config.healthcheck, timeout=30)
        if health.returncode != 0:
            raise CheckFailed(f"the HEALTHCHECK command failed while serving: {health.stderr.strip()}")
        ok("serve: the image's HEALTHCHECK command passes")

        os.kill(pid, signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = launcher.wait(chart.grace_seconds)
        except subprocess.TimeoutExpired:
            raise CheckFailed(
                f"serve still running {chart.grace_seconds} s after SIGTERM (the chart's grace)"
            ) from None
        took = time.monotonic() - sent
        text = log.read_text(errors="replace")
        if code != 0 or "tflock stopped" not in text:
            raise CheckFailed(f"serve exited {code} after SIGTERM:\n{text[-4000:]}")
        ok(f"serve: SIGTERM → exit 0 in {took:.1f} s (grace {chart.grace_seconds} s)")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(30)

    health = box.run(config.healthcheck, timeout=30)
    if health.returncode == 0:
        raise CheckFailed("the HEALTHCHECK command passed with serve stopped: it checks nothing")
    ok("serve: the HEALTHCHECK command fails once serve has stopped")


def run_checks(buildah: Buildah, image: str, base: str | None = None) -> None:
    chart = Chart.load()
    config = ImageConfig.of(buildah, image)
    check_config(config, chart)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tflock-image-checks-")))
        tmp, etc = work / "tmp", work / "etc"
        tmp.mkdir(mode=0o1777)
        tmp.chmod(0o1777)  # the chart's emptyDir: writable by the pod's UID
        etc.mkdir()
        (etc / "backends.yaml").write_text(
            f"backends:\n  - name: main\n    buckets: [{BUCKET}]\n    dynamodb_table: {TABLE}\n", encoding="utf-8"
        )
        slack = stack.enter_context(fake_slack())
        moto_url = stack.enter_context(moto_server())
        port = free_port()
        env = {
            "TFLOCK_PORT": str(port),
            "TFLOCK_BACKENDS_FILE": "/etc/tflock/backends.yaml",
            "TFLOCK_LOG_LEVEL": "INFO",
            "SLACK_BOT_TOKEN": "xoxb-image-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
        }
        volumes = [f"{tmp}:/tmp", f"{etc}:/etc/tflock:ro"]
        box = stack.enter_context(container(buildah, image, env, volumes))
        ok(f"container {box.name[:12]} created from {image}")
        # buildah creates the mount points on the first run: take the "before" picture after it.
        warm_up = box.run(["/bin/true"], timeout=60)
        if warm_up.returncode != 0:
            raise CheckFailed(f"buildah run /bin/true failed: {warm_up.stderr.strip()}")
        before = snapshot(box.rootfs)
        check_version(box, config)
        check_db_upgrade(box, config, tmp)
        check_serve(box, config, chart, slack, moto_url, port, work / "serve.log")
        written = changes(before, snapshot(box.rootfs))
        if written:
            raise CheckFailed("written outside /tmp: " + ", ".join(written[:20]))
        ok(f"nothing written outside /tmp ({len(before)} paths compared)")
        if base is not None:
            check_size(buildah, image, before, base)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--buildah-root", required=True)
    parser.add_argument("--buildah-runroot", required=True)
    parser.add_argument("--storage-driver", required=True)
    parser.add_argument("--base", help="the image the Dockerfile built on: measure what it adds (budget)")
    args = parser.parse_args(argv)
    try:
        run_checks(Buildah(args.buildah_root, args.buildah_runroot, args.storage_driver), args.image, args.base)
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    except subprocess.TimeoutExpired as timeout:
        print(f"FAILED: timed out: {timeout}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
