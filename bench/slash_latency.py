"""`/tflock status` over HTTP: ack latency and time-to-answer against raw AWS baselines (issue 3).

Run from the repository root:

    .venv/bin/python bench/slash_latency.py                   # 1,000 requests at concurrency 1, 10 and 50
    .venv/bin/python bench/slash_latency.py --requests 50     # smoke run

What it does:

1. starts `python -m moto.server` on 127.0.0.1 (a free port), creates the `terraform-locks` table and the
   `acme-tfstate` bucket, and takes one lock the way Terraform does with `dynamodb_table` *and*
   `use_lockfile = true` (a DynamoDB item and a `.tflock` lock file), so `status` reads both stores;
2. starts a FakeSlack (tests/fakeslack.py: Slack's Web API and the response_url endpoint, every call
   recorded with `time.monotonic()`) and `tflock-bot serve` in HTTP mode as a real process
   (`start_bot` from tests/e2e/conftest.py), then stops everything again, whatever happens;
3. measures raw baselines in this process: boto3 GetItem (ConsistentRead) at concurrency 1, GetItem +
   GetObject of the lock file (what `status` really reads), and one local HTTP POST to FakeSlack's
   response_url (a fresh connection per post, as slack_sdk's WebhookClient does);
4. for each concurrency level sends --requests signed `/tflock status acme-tfstate/<key>` slash commands
   to POST /slack/events from a thread pool of that size (keep-alive connection per worker), each with
   its own response_url, and records the ack latency (send -> HTTP 200) and the time to answer
   (send -> FakeSlack recorded the POST to that response_url; same monotonic clock, same process).
   Pace "ack": a worker sends its next command when its ack arrives; pace "answer": only once its answer
   arrived too (N people each waiting for an answer). --pace both (default) runs every level in each;
5. prints a table, the baselines, the bot's own metrics and the CPU each process used, and PASS/MISS
   for the targets. Exits non-zero only when the benchmark itself breaks, never on a MISS.

Experiments (--listener-threads, --http-threads, --process-before-response) patch module constants or
Bolt's App in the bot's child process only; nothing under bot/ is edited. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import boto3  # noqa: E402

from bench.common import machine  # noqa: E402
from tests.e2e.conftest import BotProcess, free_port, start_bot, wait_for_http  # noqa: E402
from tests.fakeslack import Call, FakeSlack, sign, slash_command_body  # noqa: E402
from tests.terraform import TerraformBackend, TerraformLock, ago, create_bucket, create_table  # noqa: E402

TABLE = "terraform-locks"
BUCKET = "acme-tfstate"
KEY = "network/terraform.tfstate"
REGION = "eu-west-1"
SECRET = "bench-signing-secret"
LEVELS = (1, 10, 50)
ACK_P99_TARGET_MS = 100.0
ACK_TARGET_LEVEL = 10
ERROR_TARGET_LEVEL = 50
ANSWER_TIMEOUT = 60.0  # seconds to wait for the last answers of a level after the last ack
WARMUP_REQUESTS = 20


class BenchError(Exception):
    """The benchmark could not run."""


# -- machine and processes ------------------------------------------------------------------------


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every figure here."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_busy_seconds() -> tuple[float, float] | None:
    """CPU seconds the whole machine spent busy, and stolen by the hypervisor, since boot (/proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters that explain 1 s / 3 s latency spikes: full listen backlogs and SYN retransmits."""
    wanted = ("ListenOverflows", "TCPSynRetrans")
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names and names[0] == "TcpExt:":
            table = dict(zip(names[1:], values[1:], strict=False))
            return {name: int(table[name]) for name in wanted if name in table}
    return {}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process from /proc (Linux only; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def clean_environ() -> None:
    """No developer AWS/Slack/tflock settings leak into the bot (start_bot copies os.environ)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "TFLOCK_", "SLACK_")):
            del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }
    )


def override_bot(listener: int | None, http: int | None, before_response: bool) -> str | None:
    """Experiments only: run the bot with LISTENER_THREADS (bot/slack/app.py) and/or HTTP_THREADS
    (bot/server.py) replaced, or with Bolt's process_before_response=True, in the child process. Nothing
    under bot/ is changed; start_bot just runs `python -c` that patches the modules before `serve` starts."""
    if listener is None and http is None and not before_response:
        return None
    import tests.e2e.conftest as e2e

    code = "import sys, functools; import bot.server as s; import bot.slack.app as a; "
    if listener is not None:
        code += f"a.LISTENER_THREADS = {int(listener)}; "
    if http is not None:
        code += f"s.HTTP_THREADS = {int(http)}; "
    if before_response:
        code += "a.App = functools.partial(a.App, process_before_response=True); "
    code += "from bot.cli import main; sys.exit(main(sys.argv[1:]))"
    e2e.tflock_bot_executable = lambda: [sys.executable, "-c", code]
    return (
        f"EXPERIMENT: bot run with LISTENER_THREADS={listener or 'default'} HTTP_THREADS={http or 'default'}"
        f" process_before_response={before_response}"
    )


@contextmanager
def moto_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (workdir / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_http(f"{url}/moto-api/", timeout=30)
        except Exception:
            raise BenchError(f"moto server did not come up; see {workdir / 'moto.log'}") from None
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def aws_clients(endpoint: str) -> tuple[Any, Any]:
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=8)
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint, config=config)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, config=config)
    return dynamodb, s3


# -- statistics -------------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def timed_loop(count: int, func: Callable[[int], object]) -> list[float]:
    durations = []
    for i in range(count):
        started = time.monotonic()
        func(i)
        durations.append(time.monotonic() - started)
    return durations


# -- baselines ----------------------------------------------------------------------------------


@dataclass
class Baselines:
    get_item: list[float]
    get_both: list[float]
    post: list[float]


def measure_baselines(dynamodb: Any, s3: Any, slack: FakeSlack, lock: TerraformLock, count: int) -> Baselines:
    key = {"LockID": {"S": lock.address.lock_id}}
    lockfile_key = lock.address.lockfile_key

    def get_item(_: int) -> None:
        item = dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")
        if not item or lock.id not in item["Info"]["S"]:
            raise BenchError("baseline GetItem did not return the lock")

    def get_both(i: int) -> None:
        get_item(i)
        response = s3.get_object(Bucket=BUCKET, Key=lockfile_key)
        body = response["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        if lock.id.encode() not in data:
            raise BenchError("baseline GetObject did not return the lock file")

    # A body shaped like the real answer (a few blocks, ~1.5 kB of JSON), posted like WebhookClient does:
    # urllib.request, a fresh connection each time, JSON content type.
    payload = json.dumps(
        {
            "response_type": "in_channel",
            "replace_original": False,
            "text": f"{BUCKET}/{KEY} is locked " + "x" * 200,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 300}} for _ in range(4)],
        }
    ).encode()

    def post(i: int) -> None:
        request = urllib.request.Request(
            slack.response_url(f"baseline-{i}"),
            data=payload,
            headers={"Content-Type": "application/json;charset=utf-8"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            if response.status != 200:
                raise BenchError(f"baseline post got HTTP {response.status}")

    for i in range(30):  # warm connections and botocore's caches
        get_both(i)
        post(i)
    results = Baselines(timed_loop(count, get_item), timed_loop(count, get_both), timed_loop(200, post))
    slack.reset()
    return results


# -- the load -----------------------------------------------------------------------------------------


@dataclass
class Sent:
    index: int
    name: str
    started: float = 0.0
    acked: float = 0.0
    status: int = 0
    body: str = ""
    error: str = ""


@dataclass
class LevelResult:
    level: int
    requests: int
    pace: str = "ack"
    acks: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    ack_errors: int = 0
    missing: int = 0
    wrong: int = 0
    wall: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    timeline: list[tuple[float, float, float | None]] = field(default_factory=list)  # (sent, ack, answer) offsets
    bot_cpu: float | None = None
    moto_cpu: float | None = None
    bench_cpu: float | None = None
    tcp: dict[str, int] = field(default_factory=dict)
    machine_cpu: float | None = None
    steal_cpu: float | None = None
    server_ack_mean: float | None = None
    handler_mean: float | None = None

    @property
    def errors(self) -> int:
        return self.ack_errors + self.missing + self.wrong

    def other_cpu(self) -> float | None:
        """CPU seconds used during this level by processes other than the bot, moto and this one."""
        if None in (self.machine_cpu, self.bot_cpu, self.moto_cpu, self.bench_cpu):
            return None
        return max(0.0, (self.machine_cpu or 0) - (self.bot_cpu or 0) - (self.moto_cpu or 0) - (self.bench_cpu or 0))


class AnswerWatch:
    """Wakes a waiting worker when FakeSlack has recorded the POST to its response_url.

    FakeSlack.wait_for rescans every call on each notification (quadratic with 50 waiters and 1,000 calls),
    so this wraps the instance's `_answer` instead: the call is recorded (with its monotonic time) first,
    then the waiter's event is set."""

    def __init__(self, slack: FakeSlack) -> None:
        self._events: dict[str, threading.Event] = {}
        self._guard = threading.Lock()
        original = slack._answer

        def answer(path: str, body: dict[str, Any], token: str | None) -> dict[str, Any] | str:
            result = original(path, body, token)
            with self._guard:
                event = self._events.pop(path, None)
            if event is not None:
                event.set()
            return result

        slack._answer = answer  # type: ignore[method-assign]

    def expect(self, path: str) -> threading.Event:
        event = threading.Event()
        with self._guard:
            self._events[path] = event
        return event


class Sender:
    """Signed slash commands over keep-alive HTTP/1.1 connections, one per worker thread.

    pace "ack": a worker sends its next command as soon as the ack arrives (Slack's view: commands keep
    coming whatever the bot is still doing). pace "answer": it also waits for the answer first, so at most
    `concurrency` commands are in the bot at once (N people each waiting for their answer)."""

    def __init__(self, bot_url: str, slack: FakeSlack, watch: AnswerWatch, pace: str = "ack") -> None:
        parsed = urllib.parse.urlsplit(bot_url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.slack = slack
        self.watch = watch
        self.pace = pace
        self.local = threading.local()

    def paced(self, sent: Sent) -> Sent:
        if self.pace != "answer":
            return self.send(sent)
        answered = self.watch.expect(f"/response/{sent.name}")
        self.send(sent)
        if sent.status == 200 and not sent.error:
            answered.wait(ANSWER_TIMEOUT)
        return sent

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return conn

    def send(self, sent: Sent) -> Sent:
        body = slash_command_body(f"status {BUCKET}/{KEY}", self.slack.response_url(sent.name))
        headers = sign(SECRET, body)
        for attempt in range(2):
            conn = self._connection()
            sent.started = time.monotonic()
            try:
                conn.request("POST", "/slack/events", body=body.encode(), headers=headers)
                response = conn.getresponse()
                sent.body = response.read().decode("utf-8", "replace")
                sent.acked = time.monotonic()
                sent.status = response.status
                if response.will_close:
                    conn.close()
                    self.local.conn = None
                return sent
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self.local.conn = None
                # A keep-alive connection the server had just closed: retry once on a new one.
                if attempt == 1 or not isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError)):
                    sent.error = f"{type(exc).__name__}: {exc}"
                    sent.acked = time.monotonic()
                    return sent
        return sent


def scrape_metrics(bot: BotProcess) -> dict[str, float]:
    """The few Prometheus series this benchmark reads, summed over label sets."""
    status, text = bot.get("/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered HTTP {status}")
    wanted = {
        'tflock_http_request_seconds_sum{path="/slack/events"}': "ack_sum",
        'tflock_http_request_seconds_count{path="/slack/events"}': "ack_count",
        'tflock_slack_answer_seconds_sum{command="status"}': "answer_sum",
        'tflock_slack_answer_seconds_count{command="status"}': "answer_count",
    }
    found: dict[str, float] = {}
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series in wanted:
            found[wanted[series]] = float(value)
    return found


def mean_delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    if count <= 0:
        return None
    return (after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)) / count


def run_level(
    level: int,
    requests: int,
    *,
    sender: Sender,
    slack: FakeSlack,
    bot: BotProcess,
    lock: TerraformLock,
    pids: dict[str, int],
    tag: str,
) -> LevelResult:
    slack.reset()
    prefix = f"/response/bench-{tag}-"
    sent = [Sent(i, f"bench-{tag}-{i}") for i in range(requests)]
    metrics_before = scrape_metrics(bot)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_before = time.process_time()
    machine_before = machine_busy_seconds()
    tcp_before = tcp_counters()
    wall_start = time.monotonic()
    with ThreadPoolExecutor(max_workers=level, thread_name_prefix=f"bench-{level}") as pool:
        list(pool.map(sender.paced, sent))
    last_ack = time.monotonic()

    # Wait for every answer (or the timeout), then match answers to requests by response_url path.
    expected = sum(1 for s in sent if s.status == 200 and not s.error)
    deadline = last_ack + ANSWER_TIMEOUT
    while True:
        calls = [c for c in list(slack.calls) if c.path.startswith(prefix)]  # list() copies atomically
        if len(calls) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    wall_end = max([c.at for c in calls], default=last_ack)
    cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    bench_cpu = time.process_time() - bench_before
    machine_after = machine_busy_seconds()
    tcp_after = tcp_counters()
    metrics_after = scrape_metrics(bot)

    by_path: dict[str, Call] = {}
    for made in calls:
        by_path.setdefault(made.path, made)  # the first post to a response_url is the answer

    result = LevelResult(level, requests, pace=sender.pace, wall=wall_end - wall_start)
    for s in sent:
        if s.error or s.status != 200:
            result.ack_errors += 1
            note = s.error or f"HTTP {s.status}: {s.body[:120]}"
            if len(result.error_samples) < 5:
                result.error_samples.append(f"#{s.index} ack: {note}")
            continue
        result.acks.append(s.acked - s.started)
        if s.body.strip():
            # `status` acks with an empty body; anything else (help text, an error) is not the answer we want.
            result.wrong += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(f"#{s.index} ack body: {s.body[:120]}")
            continue
        call = by_path.get(f"/response/{s.name}")
        if call is None:
            result.missing += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(f"#{s.index}: no answer within {ANSWER_TIMEOUT:.0f}s of the last ack")
            continue
        text = json.dumps(call.body, ensure_ascii=False)
        if call.body.get("response_type") != "in_channel" or lock.id not in text:
            result.wrong += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(f"#{s.index} answer: {text[:160]}")
            continue
        result.answers.append(call.at - s.started)
    for s in sent:
        call = by_path.get(f"/response/{s.name}")
        result.timeline.append(
            (s.started - wall_start, s.acked - s.started, None if call is None else call.at - s.started)
        )
    result.bot_cpu = _delta(cpu_before.get("bot"), cpu_after.get("bot"))
    result.moto_cpu = _delta(cpu_before.get("moto"), cpu_after.get("moto"))
    result.bench_cpu = bench_cpu
    if machine_before is not None and machine_after is not None:
        result.machine_cpu = machine_after[0] - machine_before[0]
        result.steal_cpu = machine_after[1] - machine_before[1]
    result.tcp = {name: tcp_after[name] - tcp_before.get(name, 0) for name in tcp_after}
    result.server_ack_mean = mean_delta(metrics_before, metrics_after, "ack")
    result.handler_mean = mean_delta(metrics_before, metrics_after, "answer")
    return result


def _div(value: float | None, by: int) -> float | None:
    return None if value is None else value / by


def _ms_or_na(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{ms(seconds):.2f}"


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# -- report ----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(
    results: list[LevelResult],
    base: Baselines,
    *,
    box: dict[str, str],
    config: list[str],
    requests: int,
    both_stores_shown: bool,
) -> None:
    print()
    print("== machine ==")
    print(f"nproc {box['nproc']} | {box['cpu']} | {box['kernel']} | Python {box['python']}")
    print(f"load average at start {box['load_start']}, at end {load_average()}")
    print()
    print("== configuration ==")
    for line in config:
        print(line)
    shown = "yes" if both_stores_shown else "NO"
    print(f"answer names the lock file as well as the table item (both stores read): {shown}")
    print()
    get_p50, get_p99 = ms(percentile(base.get_item, 50)), ms(percentile(base.get_item, 99))
    both_p50, both_p99 = ms(percentile(base.get_both, 50)), ms(percentile(base.get_both, 99))
    post_p50, post_p99 = ms(percentile(base.post, 50)), ms(percentile(base.post, 99))
    target = 2 * get_p50 + post_p50
    honest = both_p50 + post_p50
    print("== raw baselines (this process, concurrency 1) ==")
    for label, values, p50, p99 in (
        ("GetItem (ConsistentRead)", base.get_item, get_p50, get_p99),
        ("GetItem + GetObject (lock file)", base.get_both, both_p50, both_p99),
        ("HTTP POST to response_url", base.post, post_p50, post_p99),
    ):
        print(f"{label:<33} n={len(values):>5}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    print(f"answer target = 2 x GetItem p50 + post p50 = {target:.2f} ms")
    print(f"(for reference: GetItem+GetObject p50 + post p50 = {honest:.2f} ms)")
    print()
    print(f"== /tflock status over HTTP, {requests} requests per level ==")
    header = (
        f"| {'pace':>6} | {'concurrency':>11} | {'ack p50':>7} | {'ack p99':>7} | {'answer p50':>10} | "
        f"{'answer p99':>10} | {'errors':>6} | {'answers/s':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for r in results:
        throughput = len(r.answers) / r.wall if r.wall > 0 else 0.0
        print(
            f"| {r.pace:>6} | {r.level:>11} | {ms(percentile(r.acks, 50)):7.1f} | {ms(percentile(r.acks, 99)):7.1f} | "
            f"{ms(percentile(r.answers, 50)):10.1f} | {ms(percentile(r.answers, 99)):10.1f} | {r.errors:>6} | "
            f"{throughput:9.1f} |"
        )
    print(
        "(ms; errors = failed or non-200 acks + answers missing after the timeout + answers not in_channel or"
        " without the lock ID; answers/s = answered requests / (first send -> last answer); pace ack = next command"
        " on the ack, pace answer = next command only after the answer)"
    )
    print()
    print("== where the time and CPU go (per level) ==")
    header = (
        f"| {'pace':>6} | {'concurrency':>11} | {'bot ack mean':>12} | {'handler mean':>12} | {'bot CPU/req':>11} | "
        f"{'moto CPU/req':>12} | {'bench CPU/req':>13} | {'machine busy':>12} | {'other procs':>11} | {'steal':>5} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    cores = os.cpu_count() or 1
    for r in results:
        per = max(1, len(r.answers))
        span = r.wall * cores if r.wall > 0 else None
        busy = f"{100 * r.machine_cpu / span:.0f}%" if r.machine_cpu is not None and span else "n/a"
        other = r.other_cpu()
        foreign = f"{100 * other / span:.0f}%" if other is not None and span else "n/a"
        steal = f"{100 * r.steal_cpu / span:.0f}%" if r.steal_cpu is not None and span else "n/a"
        print(
            f"| {r.pace:>6} | {r.level:>11} | {_ms_or_na(r.server_ack_mean):>12} | {_ms_or_na(r.handler_mean):>12} | "
            f"{_ms_or_na(_div(r.bot_cpu, per)):>11} | {_ms_or_na(_div(r.moto_cpu, per)):>12} | "
            f"{_ms_or_na(_div(r.bench_cpu, per)):>13} | {busy:>12} | {foreign:>11} | {steal:>5} |"
        )
    print(
        "(bot ack mean = the bot's own mean /slack/events time from /metrics; handler mean = the bot's mean time"
        " from the listener starting to the answer posted; CPU/req = CPU ms per answered request of the bot process,"
        " moto, and this process (load generator + FakeSlack); machine busy = all CPU used on the machine as a share"
        f" of {cores} cores; other procs = the part of that used by processes outside this benchmark; steal = CPU"
        " time the hypervisor gave to other guests)"
    )
    for r in results:
        if any(r.tcp.values()):
            counters = ", ".join(f"{name} +{value}" for name, value in r.tcp.items())
            print(
                f"pace {r.pace}, concurrency {r.level}: kernel TCP counters during the level (whole machine): "
                + counters
            )
    for r in results:
        if r.errors:
            print(
                f"pace {r.pace}, concurrency {r.level}: {r.ack_errors} ack errors, {r.missing} missing, "
                f"{r.wrong} wrong; " + "; ".join(r.error_samples)
            )
    print()
    print("== targets ==")
    for r in results:
        if r.level == ACK_TARGET_LEVEL:
            p99 = ms(percentile(r.acks, 99))
            print(
                f"{verdict(p99 < ACK_P99_TARGET_MS)}  ack p99 < {ACK_P99_TARGET_MS:.0f} ms at concurrency "
                f"{ACK_TARGET_LEVEL} (pace {r.pace}): {p99:.2f} ms"
            )
    for r in results:
        p50 = ms(percentile(r.answers, 50))
        tag = "" if r.level == 1 and r.pace == "ack" else "  (informational)"
        print(
            f"{verdict(p50 <= target)}  answer p50 <= {target:.2f} ms at concurrency {r.level} (pace {r.pace}): "
            f"{p50:.2f} ms ({p50 / target:.2f}x target; {p50 / honest:.2f}x GetItem+GetObject+post){tag}"
        )
    for r in results:
        if r.level == ERROR_TARGET_LEVEL:
            print(
                f"{verdict(r.errors == 0)}  zero errors at concurrency {ERROR_TARGET_LEVEL} (pace {r.pace}): {r.errors}"
            )


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="slash commands per concurrency level")
    parser.add_argument("--baseline", type=int, default=1000, help="GetItem calls in the raw baseline")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="comma-separated concurrency levels")
    parser.add_argument(
        "--fakeslack-backlog",
        type=int,
        default=128,
        help="listen backlog for FakeSlack's socket (socketserver's default is 5; the bot opens a new connection"
        " per answer, so 5 overflows under load and adds 1 s SYN retransmits that real Slack would not cause)",
    )
    parser.add_argument(
        "--pace",
        choices=("ack", "answer", "both"),
        default="both",
        help="ack: each worker sends its next command when the ack arrives; answer: only once its answer"
        " arrived too (at most N commands in the bot); both (default): every level once in each mode",
    )
    parser.add_argument("--listener-threads", type=int, help="experiment: override LISTENER_THREADS in the bot")
    parser.add_argument("--http-threads", type=int, help="experiment: override HTTP_THREADS in the bot")
    parser.add_argument(
        "--process-before-response",
        action="store_true",
        help="experiment: build the bot's Bolt App with process_before_response=True (ack without Bolt's 10 ms poll)",
    )
    parser.add_argument("--dump", type=Path, help="write every request's send/ack/answer times to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (bot and moto logs)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if args.requests < 1 or not levels or min(levels) < 1:
        parser.error("--requests and every level must be at least 1")

    clean_environ()
    box = machine()
    box["load_start"] = load_average()
    print(
        f"machine: nproc {box['nproc']} | {box['cpu']} | Python {box['python']} | load {box['load_start']}", flush=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="tflock-slash-bench-"))
    bot: BotProcess | None = None
    slack: FakeSlack | None = None
    try:
        with moto_server(workdir) as (endpoint, moto):
            dynamodb, s3 = aws_clients(endpoint)
            create_table(dynamodb, TABLE)
            create_bucket(s3, BUCKET)
            tf = TerraformBackend(s3, dynamodb, BUCKET, TABLE, use_lockfile=True)
            lock = tf.lock(KEY, operation="OperationTypeApply", who="alice@build-agent-07", created=ago(minutes=12))
            tf.write_state(KEY, b'{"version": 4}')
            config = [
                f"moto server {endpoint} (python -m moto.server {_version('moto')}), table {TABLE}, bucket {BUCKET}",
                f"lock {lock.id} on {lock.address.lock_id}: DynamoDB item + s3://{BUCKET}/"
                f"{lock.address.lockfile_key} (TerraformBackend(use_lockfile=True) with dynamodb_table)",
                f"bot: TFLOCK_DYNAMODB_TABLE={TABLE} TFLOCK_S3_BUCKETS={BUCKET} TFLOCK_S3_LOCKFILE=auto "
                "(status reads the table item and the lock file), HTTP mode, TFLOCK_LOG_LEVEL=WARNING, "
                f"slack_bolt {_version('slack_bolt')}, waitress {_version('waitress')}, boto3 {_version('boto3')}",
            ]
            config.append(code_version())
            for line in config:
                print(line, flush=True)

            experiment = override_bot(args.listener_threads, args.http_threads, args.process_before_response)
            if experiment:
                config.append(experiment)
                print(experiment, flush=True)
            slack = FakeSlack().start()
            if args.fakeslack_backlog != 5:
                slack.server.socket.listen(args.fakeslack_backlog)  # Linux applies a new backlog on re-listen
            config.append(f"FakeSlack listen backlog {args.fakeslack_backlog} (socketserver default: 5)")
            print(config[-1], flush=True)
            env = {
                "AWS_ENDPOINT_URL": endpoint,
                "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": slack.api_url,
                "TFLOCK_DYNAMODB_TABLE": TABLE,
                "TFLOCK_S3_BUCKETS": BUCKET,
                "TFLOCK_S3_LOCKFILE": "auto",
                "TFLOCK_DATABASE_URL": f"sqlite:///{workdir / 'tflock.db'}",
                "TFLOCK_LOG_LEVEL": "WARNING",
            }
            bot = start_bot(env, workdir / "bot.log")
            print(f"bot up at {bot.url} (pid {bot.process.pid}); work dir {workdir}", flush=True)

            print("measuring raw baselines ...", flush=True)
            base = measure_baselines(dynamodb, s3, slack, lock, args.baseline)

            watch = AnswerWatch(slack)
            sender = Sender(bot.url, slack, watch)
            pids = {"bot": bot.process.pid, "moto": moto.pid}
            warm = run_level(
                4, WARMUP_REQUESTS, sender=sender, slack=slack, bot=bot, lock=lock, pids=pids, tag="warmup"
            )
            if warm.errors:
                raise BenchError(f"warm-up failed: {'; '.join(warm.error_samples)}\n{bot.log()[-3000:]}")
            both_stores_shown = _both_stores_shown(sender, slack, lock)

            results = []
            paces = ["ack", "answer"] if args.pace == "both" else [args.pace]
            for pace, level in [(pace, level) for pace in paces for level in levels]:
                print(f"pace {pace}, concurrency {level}: {args.requests} requests ...", flush=True)
                sender.pace = pace
                result = run_level(
                    level,
                    args.requests,
                    sender=sender,
                    slack=slack,
                    bot=bot,
                    lock=lock,
                    pids=pids,
                    tag=f"{pace}-c{level}",
                )
                print(
                    f"  ack p50 {ms(percentile(result.acks, 50)):.2f} ms, answer p50 "
                    f"{ms(percentile(result.answers, 50)):.2f} ms, errors {result.errors}",
                    flush=True,
                )
                results.append(result)
                if bot.process.poll() is not None:
                    raise BenchError(f"the bot exited with {bot.process.returncode}:\n{bot.log()[-3000:]}")

            if args.dump:
                args.dump.write_text(json.dumps({f"{r.pace}-c{r.level}": r.timeline for r in results}))
            report(results, base, box=box, config=config, requests=args.requests, both_stores_shown=both_stores_shown)
            log_tail = [line for line in bot.log().splitlines() if line.strip()][-5:]
            if log_tail:
                print()
                print("last bot log lines:")
                for line in log_tail:
                    print(f"  {line[:200]}")
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if bot is not None:
            code = bot.stop()  # SIGTERM, then SIGKILL after 15 s
            print(f"bot stopped (exit {code})", flush=True)
        if slack is not None:
            slack.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _both_stores_shown(sender: Sender, slack: FakeSlack, lock: TerraformLock) -> bool:
    """One extra command: does the answer mention the lock file, i.e. did the bot read both stores?"""
    slack.reset()
    sent = sender.send(Sent(0, "bench-both"))
    if sent.status != 200:
        raise BenchError(f"check command got HTTP {sent.status}: {sent.error or sent.body[:200]}")
    answer = slack.wait_for("/response/bench-both", timeout=30)[0].body
    text = json.dumps(answer, ensure_ascii=False)
    slack.reset()
    return lock.id in text and bool(re.search(re.escape(f"s3://{BUCKET}/{lock.address.lockfile_key}"), text))


def code_version() -> str:
    """The commit measured, and whether bot/ had uncommitted changes (the bot runs from the work tree)."""
    git = shutil.which("git")
    if git is None:
        return "code: git not found"
    try:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--", "bot"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "code: not a git checkout"
    return f"code: commit {head}" + (" + uncommitted changes under bot/" if dirty else "")


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
