"""`tflock-bot list --json` at scale against a local moto server, next to a raw-boto3 baseline (issue 2).

Run from the repository root:

    .venv/bin/python bench/list_scale.py                      # 10,000 table locks, 2,000 lock files
    .venv/bin/python bench/list_scale.py --locks 200 --files 50 --states 50 --runs 1   # smoke run
    .venv/bin/python bench/list_scale.py --rtt 20ms --locks 2000 --files 500 --states 500   # another region

With `--rtt`, every request reaches moto through our loopback fault proxy (tests/faults/proxy.py), which holds
each request for that long before passing it on — what a bot in another region sees. The bot is then measured
against the round-trip lower bound, (Scan pages per segment + ListObjectsV2 pages + lock files ÷ the bot's
read concurrency) × RTT, with a target of 1.5x, and the same `list` with no added delay is timed too, so
that moto's own time on this machine can be told apart from time lost to round trips.

What it does:

1. starts `python -m moto.server` on 127.0.0.1 (a free port; loopback only) and always stops it;
2. fills it the way Terraform would (fixture writers from `tests/terraform.py`): a `terraform-locks`
   table with N lock items (`LockID` + `Info`, Go-format JSON) and N `-md5` digest items, and a
   bucket `acme-tfstate` with M `.tflock` lock files for other states plus S state objects;
3. times `tflock-bot list --json` as a real subprocess (median of --runs after one warm-up), checks its
   output lock by lock, and reads that child's own peak RSS (os.wait4 in a tiny launcher);
4. times, in the same way, a raw boto3 baseline in a subprocess: (a) Scan + ListObjectsV2 + a serial
   GetObject of every lock file (the same data the bot shows) and (b) Scan + ListObjectsV2 only.

Exits non-zero when anything fails or the bot's output is wrong; missing the 1.3x ratio target only
prints MISS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import launch, machine  # noqa: E402
from bot.locks.directory import SCAN_SEGMENTS  # noqa: E402
from bot.locks.lockfile import READ_CONCURRENCY  # noqa: E402
from tests.faults.proxy import FaultProxy  # noqa: E402

TABLE = "terraform-locks"
BUCKET = "acme-tfstate"
REGION = "eu-west-1"
RATIO_TARGET = 1.3
RTT_TARGET = 1.5  # with --rtt: the bot's time over the round-trip lower bound
TABLE_KEY = "svc-{i}/terraform.tfstate"  # states locked in the DynamoDB table
FILE_KEY = "files-{i}/terraform.tfstate"  # states locked with a .tflock lock file (use_lockfile)
BATCH = 25  # BatchWriteItem's limit

WHO = (
    "runner@ip-10-0-1-23.ec2.internal",
    "alice@build-agent-07",
    "@jenkins-slave-3pn5c-2t2bw",
    "CORP\\bob<x>&@WS-01",
    "deploy@gha-runner-{n}",
    "renée@laptop-{n}.local",
)
VERSIONS = ("1.11.4", "1.9.8", "1.10.5", "1.10.6", "1.5.7")


class BenchError(Exception):
    """The benchmark could not run or the bot's output was wrong."""


# -- environment ------------------------------------------------------------------------------


def aws_env(endpoint: str) -> dict[str, str]:
    """The children's environment: fake credentials, the moto endpoint, nothing from the caller's AWS setup."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TFLOCK_", "SLACK_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        TFLOCK_DYNAMODB_TABLE=TABLE,
        TFLOCK_S3_BUCKETS=BUCKET,
        TFLOCK_S3_LOCKFILE="auto",
    )
    return env


# -- moto server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """`python -m moto.server` on loopback; its log goes to a temporary file shown when it fails."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"moto server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with opener.open(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"moto server did not answer on {self.endpoint} within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a running process (all its threads) from /proc; None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- populating ---------------------------------------------------------------------------------


@dataclass
class Dataset:
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # LockID -> (store, exact Info)
    table_items: int = 0
    table_info_bytes: int = 0
    lockfile_bytes: int = 0
    objects: int = 0
    object_bytes: int = 0
    seconds: float = 0.0
    round_trips: dict[str, int] = field(default_factory=dict)


def boto_clients(endpoint: str, pool: int) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name=REGION,
    )
    config = Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=pool)
    return (
        session.client("dynamodb", endpoint_url=endpoint, config=config),
        session.client("s3", endpoint_url=endpoint, config=config),
    )


def populate(endpoint: str, *, locks: int, files: int, states: int, workers: int, seed: int) -> Dataset:
    """Write the locks exactly as Terraform does (tests/terraform.py), in parallel."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bot.locks.address import StateAddress
    from tests.terraform import (
        OPERATIONS,
        TerraformBackend,
        TerraformLock,
        create_bucket,
        create_table,
        go_time,
        go_uuid,
    )

    started = time.perf_counter()
    rng = random.Random(seed)
    now = datetime.now(UTC)
    dynamodb, s3 = boto_clients(endpoint, workers * 2)
    create_table(dynamodb, TABLE)
    create_bucket(s3, BUCKET)
    backend = TerraformBackend(s3, None, BUCKET, None, use_lockfile=True)
    data = Dataset()

    def make_lock(key: str) -> TerraformLock:
        age = timedelta(seconds=rng.uniform(0, 14 * 86400))  # a mix of fresh (< 2h) and stale locks
        nanos = rng.choice((0, rng.randrange(1_000_000_000), rng.randrange(1_000_000) * 1000))
        return TerraformLock(
            StateAddress(BUCKET, key),
            id=go_uuid(rng),
            operation=rng.choice(OPERATIONS),
            who=rng.choice(WHO).format(n=rng.randrange(100)),
            version=rng.choice(VERSIONS),
            created=go_time(now - age, nanos=nanos),
        )

    table_locks = [make_lock(TABLE_KEY.format(i=i)) for i in range(locks)]
    file_locks = [make_lock(FILE_KEY.format(i=i)) for i in range(files)]
    for lock in table_locks:
        data.expected[lock.address.lock_id] = ("dynamodb", lock.info_json)
        data.table_info_bytes += len(lock.info_json.encode())
    for lock in file_locks:
        data.expected[lock.address.lock_id] = ("s3", lock.info_json)
        data.lockfile_bytes += len(lock.info_json.encode())

    # Terraform's two item shapes: the lock (exactly LockID + Info) and the state digest (LockID-md5 + Digest).
    items: list[dict[str, Any]] = [
        {"LockID": {"S": lock.address.lock_id}, "Info": {"S": lock.info_json}} for lock in table_locks
    ]
    items += [
        {
            "LockID": {"S": lock.address.digest_id},
            "Digest": {"S": hashlib.md5(lock.address.lock_id.encode()).hexdigest()},  # noqa: S324
        }
        for lock in table_locks
    ]
    data.table_items = len(items)

    def write_batch(batch: list[dict[str, Any]]) -> None:
        request: dict[str, Any] = {TABLE: [{"PutRequest": {"Item": item}} for item in batch]}
        for attempt in range(20):
            unprocessed = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            request = unprocessed
            time.sleep(0.05 * (attempt + 1))
        raise BenchError("BatchWriteItem kept returning UnprocessedItems")

    def write_state(i: int) -> int:
        body = json.dumps(
            {
                "version": 4,
                "terraform_version": "1.11.4",
                "serial": i,
                "lineage": go_uuid(random.Random(i)),
                "outputs": {},
                "resources": [],
                "check_results": None,
            },
            indent=2,
        ).encode()
        s3.put_object(Bucket=BUCKET, Key=FILE_KEY.format(i=i), Body=body)
        return len(body)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
        run_all(pool, write_batch, batches)
        run_all(pool, backend.put_lockfile, file_locks)  # PutObject, IfNoneMatch="*", SHA256, application/json
        data.object_bytes = sum(run_all(pool, write_state, range(states)))
    data.objects = files + states
    data.object_bytes += data.lockfile_bytes

    # Sanity: the store holds what we think it holds.
    count = dynamodb.describe_table(TableName=TABLE)["Table"].get("ItemCount")
    if count is not None and count != data.table_items:
        raise BenchError(f"table holds {count} items, wrote {data.table_items}")
    data.seconds = time.perf_counter() - started
    return data


def run_all(pool: ThreadPoolExecutor, func: Callable[[Any], Any], args: Iterable[Any]) -> list[Any]:
    return list(pool.map(func, args))


# -- the raw boto3 baseline (runs in its own interpreter) -------------------------------------


def raw_baseline(mode: str) -> int:
    """Scan + ListObjectsV2 (+ GetObject of each lock file for `full`); prints counts as JSON on stdout."""
    import boto3
    from botocore.config import Config

    table = os.environ["TFLOCK_DYNAMODB_TABLE"]
    bucket = os.environ["TFLOCK_S3_BUCKETS"]
    config = Config(retries={"mode": "standard", "max_attempts": 6})
    dynamodb = boto3.client("dynamodb", config=config)  # endpoint from AWS_ENDPOINT_URL, as the bot
    s3 = boto3.client("s3", config=config)
    if mode == "import":
        print(json.dumps({"mode": mode}))
        return 0

    infos: list[tuple[str, str]] = []
    digests = 0
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table, ProjectionExpression="LockID, #info", ExpressionAttributeNames={"#info": "Info"}
    ):
        for item in page.get("Items", []):
            if "Info" in item:
                infos.append((item["LockID"]["S"], item["Info"]["S"]))
            else:
                digests += 1
    lock_keys: list[str] = []
    listed = 0
    for listing in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in listing.get("Contents", []):
            listed += 1
            if obj["Key"].endswith(".tflock"):
                lock_keys.append(obj["Key"])
    bodies: list[bytes] = []
    if mode == "full":
        for key in lock_keys:
            response = s3.get_object(Bucket=bucket, Key=key)
            bodies.append(response["Body"].read())
    print(
        json.dumps(
            {
                "mode": mode,
                "table_locks": len(infos),
                "digests": digests,
                "objects_listed": listed,
                "lock_keys": len(lock_keys),
                "bodies": len(bodies),
                "body_bytes": sum(len(b) for b in bodies),
            }
        )
    )
    return 0


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    cpu: float  # the child's user + system seconds
    maxrss_kib: int  # the child's peak RSS (KiB on Linux)
    server_cpu: float | None  # moto's CPU seconds spent during the run
    returncode: int
    stdout: bytes
    stderr: bytes


def measure(argv: Sequence[str], env: dict[str, str], cwd: str, server: MotoServer) -> Run:
    """One child, timed from fork to reap by the launcher; its rusage is that child's alone."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_before = server.cpu_seconds()
        usage = launch(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        server_after = server.cpu_seconds()
        if usage is None:
            raise BenchError(f"the launcher did not report on {argv[0]}")
        out.seek(0)
        err.seek(0)
        return Run(
            wall=usage.wall,
            cpu=usage.cpu,
            maxrss_kib=usage.maxrss_kib,
            server_cpu=None if server_before is None or server_after is None else server_after - server_before,
            returncode=usage.returncode,
            stdout=out.read(),
            stderr=err.read(),
        )


def check_bot(run: Run, data: Dataset) -> None:
    """The bot's `list --json` must show every lock exactly once, byte for byte, and no digest item."""
    if run.returncode != 0:
        raise BenchError(f"tflock-bot list --json exited {run.returncode}:\n{run.stderr.decode(errors='replace')}")
    document = json.loads(run.stdout)
    locks = document["locks"]
    if document["problems"]:
        raise BenchError(f"tflock-bot reported problems: {document['problems']}")
    digests = [lock["address"] for lock in locks if lock["address"].endswith("-md5")]
    if digests:
        raise BenchError(f"tflock-bot listed {len(digests)} digest items as locks, e.g. {digests[0]}")
    if len(locks) != len(data.expected):
        raise BenchError(f"tflock-bot listed {len(locks)} locks, expected {len(data.expected)}")
    seen: set[str] = set()
    for lock in locks:
        address = lock["address"]
        if address in seen:
            raise BenchError(f"tflock-bot listed {address} twice")
        seen.add(address)
        if address not in data.expected:
            raise BenchError(f"tflock-bot listed an unexpected lock {address}")
        store, info = data.expected[address]
        if lock["raw_info"] != [info]:
            raise BenchError(f"{address}: raw_info {lock['raw_info']!r} is not the stored {info!r}")
        if len(lock["held_in"]) != 1 or not lock["held_in"][0].startswith("lock file" if store == "s3" else "DynamoDB"):
            raise BenchError(f"{address}: held_in {lock['held_in']!r}, expected only the {store} store")
        if lock["problems"]:
            raise BenchError(f"{address}: unexpected problems {lock['problems']!r}")
    created = [lock["age_seconds"] for lock in locks]
    if created != sorted(created, reverse=True):
        raise BenchError("tflock-bot's list is not oldest first")


def check_baseline(run: Run, mode: str, locks: int, files: int, states: int) -> None:
    if run.returncode != 0:
        raise BenchError(f"raw baseline {mode} exited {run.returncode}:\n{run.stderr.decode(errors='replace')}")
    result = json.loads(run.stdout)
    if mode == "import":
        return
    expected = {
        "table_locks": locks,
        "digests": locks,
        "objects_listed": files + states,
        "lock_keys": files,
        "bodies": files if mode == "full" else 0,
    }
    wrong = {k: (result[k], v) for k, v in expected.items() if result[k] != v}
    if wrong:
        raise BenchError(f"raw baseline {mode} saw (got, expected) {wrong}")


@dataclass
class Series:
    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    def spread(self) -> str:
        walls = [r.wall for r in self.runs]
        return f"{min(walls):.2f}-{max(walls):.2f}"

    def median_of(self, pick: Callable[[Run], float | None]) -> float | None:
        values = [v for v in (pick(r) for r in self.runs) if v is not None]
        return statistics.median(values) if values else None


def round_trips(endpoint: str, files: int) -> dict[str, int]:
    """The fewest sequential round trips a `list` of this data can take: the longest Scan segment's pages (the
    segments run at once), ListObjectsV2's pages, and the lock-file reads in waves of the bot's concurrency."""
    dynamodb, s3 = boto_clients(endpoint, SCAN_SEGMENTS)

    def segment_pages(segment: int) -> int:
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=TABLE, Segment=segment, TotalSegments=SCAN_SEGMENTS, ConsistentRead=True
        )
        return sum(1 for _ in pages)

    with ThreadPoolExecutor(max_workers=SCAN_SEGMENTS) as pool:
        scan = max(pool.map(segment_pages, range(SCAN_SEGMENTS)))
    listing = sum(1 for _ in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET))
    reads = -(-files // READ_CONCURRENCY)
    return {"scan_pages": scan, "list_pages": listing, "read_waves": reads, "total": scan + listing + reads}


def parse_rtt(text: str) -> float:
    """`20ms`, `0.2s` or a number of milliseconds, as seconds."""
    value = text.strip().lower()
    try:
        if value.endswith("ms"):
            seconds = float(value[:-2]) / 1000
        elif value.endswith("s"):
            seconds = float(value[:-1])
        else:
            seconds = float(value) / 1000
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rtt takes a time such as 20ms or 0.2s, not {text!r}") from None
    if not 0 < seconds <= 5:
        raise argparse.ArgumentTypeError("--rtt is between 0 and 5 s")
    return seconds


# -- reporting ----------------------------------------------------------------------------------


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def report(
    info: dict[str, str],
    args: argparse.Namespace,
    data: Dataset,
    series: dict[str, Series],
    output_bytes: int,
) -> dict[str, Any]:
    bot, full, listing = series["bot"], series["full"], series["list"]
    print()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(
        f"data: table {TABLE}: {data.table_items} items ({args.locks} locks, {data.table_items - args.locks} "
        f"-md5 digests), Info {data.table_info_bytes / 1e6:.2f} MB; bucket {BUCKET}: {data.objects} objects "
        f"({args.files} .tflock, {args.states} .tfstate), {data.object_bytes / 1e6:.2f} MB; "
        f"bot JSON output {output_bytes / 1e6:.2f} MB; populated in {data.seconds:.1f}s"
    )
    print(f"runs: {args.runs} timed after 1 warm-up, interleaved; wall = fork to exit of the child process")
    print()
    header = ("", "median s", "range s", "child CPU s", "moto CPU s", "peak RSS MiB", "bot / this")
    rows = []
    for s in series.values():
        server = s.median_of(lambda r: r.server_cpu)
        rows.append(
            (
                s.label,
                f"{s.median:.2f}",
                s.spread(),
                f"{s.median_of(lambda r: r.cpu) or 0:.2f}",
                f"{server:.2f}" if server is not None else "?",
                mib(max(r.maxrss_kib for r in s.runs)),
                f"{bot.median / s.median:.2f}x" if s in (full, listing) else "",
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    ratio = bot.median / full.median
    verdict = "PASS" if ratio <= RATIO_TARGET else "MISS"
    print()
    print(f"bot / baseline (a) same data: {ratio:.2f}x  (target <= {RATIO_TARGET}x)  {verdict}")
    print(f"bot / baseline (b) scan+list: {bot.median / listing.median:.2f}x  (information only)")
    print(f"bot peak RSS: {mib(max(r.maxrss_kib for r in bot.runs))} MiB")
    rtt: dict[str, Any] | None = None
    if args.rtt:
        trips = data.round_trips
        bound = trips["total"] * args.rtt
        startup = series["bot_start"].median
        work = bot.median - startup  # the process's own start (imports, clients) is not a round trip
        over = work / bound
        direct = series["bot_direct"].median
        rtt_verdict = "PASS" if over <= RTT_TARGET else "MISS"
        print()
        print(
            f"added round trip {args.rtt * 1000:.0f} ms; lower bound {trips['total']} round trips "
            f"({trips['scan_pages']} Scan pages in the longest of {SCAN_SEGMENTS} segments + {trips['list_pages']} "
            f"ListObjectsV2 pages + {trips['read_waves']} waves of {READ_CONCURRENCY} GetObject) = {bound:.2f}s"
        )
        print(
            f"bot list after start-up ({bot.median:.2f}s - {startup:.2f}s start): {work:.2f}s = {over:.2f}x "
            f"the lower bound  (target <= {RTT_TARGET}x)  {rtt_verdict}"
        )
        print(
            f"bot with no added delay: {direct:.2f}s (moto's own time here); "
            f"time the delay added: {bot.median - direct:.2f}s = {(bot.median - direct) / bound:.2f}x the lower bound"
        )
        print(f"serial boto3 (a) / bot: {full.median / bot.median:.2f}x")
        rtt = {
            "seconds": args.rtt,
            "round_trips": trips,
            "lower_bound": round(bound, 4),
            "bot_after_startup": round(work, 4),
            "ratio_vs_lower_bound": round(over, 4),
            "added_by_delay_vs_lower_bound": round((bot.median - direct) / bound, 4),
            "target": RTT_TARGET,
            "verdict": rtt_verdict,
        }
    return {
        "rtt": rtt,
        "machine": info,
        "sizes": {
            "locks": args.locks,
            "files": args.files,
            "states": args.states,
            "table_items": data.table_items,
            "table_info_bytes": data.table_info_bytes,
            "objects": data.objects,
            "object_bytes": data.object_bytes,
            "bot_output_bytes": output_bytes,
        },
        "series": {
            key: {
                "label": s.label,
                "wall": [round(r.wall, 4) for r in s.runs],
                "cpu": [round(r.cpu, 4) for r in s.runs],
                "server_cpu": [None if r.server_cpu is None else round(r.server_cpu, 4) for r in s.runs],
                "maxrss_kib": [r.maxrss_kib for r in s.runs],
                "median_wall": round(s.median, 4),
            }
            for key, s in series.items()
        },
        "ratio_vs_full": round(ratio, 4),
        "ratio_target": RATIO_TARGET,
        "verdict": verdict,
    }


# -- main ---------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    bot_exe = Path(sys.executable).parent / "tflock-bot"
    if not bot_exe.exists():
        found = shutil.which("tflock-bot")
        if found is None:
            raise BenchError("tflock-bot not found next to this Python; run with the project's .venv/bin/python")
        bot_exe = Path(found)
    info = machine("moto", "boto3", "botocore")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)

    with MotoServer() as server, tempfile.TemporaryDirectory(prefix="tflock-bench-") as cwd:
        print(f"moto server on {server.endpoint}; populating...", flush=True)
        data = populate(
            server.endpoint,
            locks=args.locks,
            files=args.files,
            states=args.states,
            workers=args.workers,
            seed=args.seed,
        )
        print(f"populated in {data.seconds:.1f}s", flush=True)
        env = aws_env(server.endpoint)
        proxy: FaultProxy | None = None
        if args.rtt:
            data.round_trips = round_trips(server.endpoint, args.files)
            host, port = server.endpoint.removeprefix("http://").split(":")
            proxy = FaultProxy(host, int(port), max_connections=512).start()
            proxy.delay(args.rtt)
            env = aws_env(f"http://{proxy.host}:{proxy.port}")
            print(f"every request now waits {args.rtt * 1000:.0f} ms in the proxy on port {proxy.port}", flush=True)
        commands: dict[str, tuple[str, list[str]]] = {
            "bot": ("tflock-bot list --json", [str(bot_exe), "list", "--json"]),
            "full": ("(a) boto3 Scan+List+GetObject", [sys.executable, str(SCRIPT), "--raw-baseline", "full"]),
            "list": ("(b) boto3 Scan+List", [sys.executable, str(SCRIPT), "--raw-baseline", "list"]),
            "bot_start": ("tflock-bot --version (startup)", [str(bot_exe), "--version"]),
            "raw_start": ("boto3 import+clients (startup)", [sys.executable, str(SCRIPT), "--raw-baseline", "import"]),
        }
        envs = dict.fromkeys(commands, env)
        if args.rtt:
            commands["bot_direct"] = ("tflock-bot list, no added delay", [str(bot_exe), "list", "--json"])
            envs["bot_direct"] = aws_env(server.endpoint)
        series = {key: Series(label) for key, (label, _) in commands.items()}
        output_bytes = 0
        for round_ in range(args.runs + 1):  # round 0 is the warm-up
            for key, (label, argv) in commands.items():
                run = measure(argv, envs[key], cwd, server)
                if key in {"bot", "bot_start", "bot_direct"}:
                    if key in {"bot", "bot_direct"}:
                        check_bot(run, data)
                        output_bytes = len(run.stdout)
                    elif run.returncode != 0:
                        raise BenchError(f"{label} exited {run.returncode}: {run.stderr.decode(errors='replace')}")
                else:
                    check_baseline(run, argv[-1], args.locks, args.files, args.states)
                tag = "warm-up" if round_ == 0 else f"run {round_}"
                print(f"  {tag:8} {label:32} {run.wall:7.2f}s  rss {mib(run.maxrss_kib):>4} MiB", flush=True)
                if round_:
                    series[key].runs.append(run)
        if proxy is not None:
            proxy.stop()
        result = report(info, args, data, series, output_bytes)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.output}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--locks", type=int, default=10_000, help="lock items in the table (plus as many -md5)")
    parser.add_argument("--files", type=int, default=2_000, help=".tflock lock files in the bucket")
    parser.add_argument("--states", type=int, default=2_000, help="non-lock .tfstate objects in the bucket")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each command after one warm-up")
    parser.add_argument("--workers", type=int, default=16, help="threads used to populate moto")
    parser.add_argument("--seed", type=int, default=2, help="random seed for the generated locks")
    parser.add_argument("--output", help="also write the figures as JSON here (e.g. bench/results/list_scale.json)")
    parser.add_argument(
        "--rtt", type=parse_rtt, default=None, help="add this round-trip time to every AWS request (e.g. 20ms)"
    )
    parser.add_argument("--raw-baseline", choices=("full", "list", "import"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.locks, args.files, args.states) < 0 or args.runs < 1 or args.workers < 1:
        parser.error("counts must be >= 0, --runs and --workers >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.raw_baseline:
        return raw_baseline(args.raw_baseline)
    # SIGTERM unwinds like Ctrl-C, so the moto server is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return bench(args)
    except BenchError as exc:
        print(f"list_scale: FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
