"""`tflock-bot demo`: how long until it answers, how fast its page paints, how long a status takes (issue 13).

Run from the repository root (needs Debian's chromium and Playwright from the dev extra):

    .venv/bin/python bench/demo_startup.py              # 5 runs
    .venv/bin/python bench/demo_startup.py --runs 1     # smoke run

Each run starts `tflock-bot demo --no-open --port 0` as a fresh process and records, from the moment it
was started: when the page's port is listening (the line naming the page), when /healthz first answers
200 (moto seeded, the bot migrated and ready), then in one headless Chromium (kept across runs) the
page's first paint and first contentful paint (Paint Timing API, from navigation start), when the first
conversation snapshot is on screen, and the time from pressing Enter on `/tflock status <stale lock>` to
the bot's answer rendered, twice (the first pays for the bot's boto3 clients and first audit write);
finally Ctrl-C (SIGINT) and how long the process takes to exit. Prints the median, min and max of each.
Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import machine  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STALE = "acme-tfstate/network/terraform.tfstate"


def tflock_bot() -> str:
    return str(Path(sys.executable).with_name("tflock-bot"))


def one_run(browser: object) -> dict[str, float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [tflock_bot(), "demo", "--no-open", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "TFLOCK_"))},
    )
    figures: dict[str, float] = {}
    try:
        assert process.stdout is not None
        url = ""
        while not url:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("tflock-bot demo exited before naming its page")
            if "this page plays Slack: " in line:
                url = line.split("this page plays Slack: ")[1].split("/ ")[0].rstrip("/")
        figures["page port listening"] = time.monotonic() - started
        deadline = started + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("/healthz did not answer 200 within 60 s")
            time.sleep(0.02)
        figures["/healthz 200 (all up)"] = time.monotonic() - started

        page = browser.new_page(viewport={"width": 1440, "height": 1000})  # type: ignore[attr-defined]
        page.goto(f"{url}/?as=alice")
        page.locator("#status-line[data-connecting='no']").wait_for(state="attached", timeout=15_000)
        paints = page.evaluate(
            "() => Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))"
        )
        navigation = page.evaluate("() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        figures["first paint (ms)"] = float(paints.get("first-paint", float("nan")))
        figures["first contentful paint (ms)"] = float(paints.get("first-contentful-paint", float("nan")))
        figures["DOMContentLoaded (ms)"] = float(navigation)
        figures["conversation on screen (ms)"] = float(page.evaluate("() => performance.now()"))
        box = page.get_by_label("Message #incident")
        for count, which in ((1, "first"), (2, "second")):
            box.fill(f"/tflock status {STALE}")
            sent = time.monotonic()
            box.press("Enter")
            page.locator("#messages > li.message", has_text="State lock on").nth(count - 1).wait_for(timeout=15_000)
            figures[f"{which} /tflock status → shown (ms)"] = (time.monotonic() - sent) * 1000
        page.close()
    finally:
        stop = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        figures["Ctrl-C → exited"] = time.monotonic() - stop
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    for key, value in machine("moto", "playwright").items():
        print(f"{key}: {value}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    runs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            for index in range(args.runs):
                figures = one_run(browser)
                runs.append(figures)
                print(f"run {index + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
        finally:
            browser.close()
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print()
    print(f"{'measure':40} {'median':>9} {'min':>9} {'max':>9}")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"{key:40} {statistics.median(values):9.2f} {min(values):9.2f} {max(values):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
