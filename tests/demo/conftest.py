"""`tflock-bot demo` as a person runs it (a real process), and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.demo.slack import Workspace
from bot.demo.web import Demo, make_server, serve_in_thread
from tests.e2e.conftest import tflock_bot_executable

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "demo"
CHROMIUM = os.environ.get("TFLOCK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "xoxb-test-page"
_PAGE_LINE = re.compile(r"this page plays Slack: (http://127\.0\.0\.1:\d+)/")


@dataclass
class DemoProcess:
    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_demo(*args: str, ready_timeout: float = 30.0, env: dict[str, str] | None = None) -> DemoProcess:
    """Start `tflock-bot demo --no-open --port 0 …`; return once it says it is ready (or fail with its output)."""
    process = subprocess.Popen(
        [*tflock_bot_executable(), "demo", "--no-open", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    url = None
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        match = _PAGE_LINE.search(line)
        if match:
            url = match.group(1)
        if "ready in" in line and url:
            demo = DemoProcess(process, url, seen)

            threading.Thread(target=_keep_reading, args=(lines, demo), daemon=True).start()
            return demo
    process.kill()
    process.wait(5)
    raise AssertionError("tflock-bot demo did not become ready:\n" + "\n".join(seen))


def _keep_reading(lines: queue.Queue[str | None], demo: DemoProcess) -> None:
    while (more := lines.get()) is not None:
        demo.lines.append(more)


@pytest.fixture
def demo() -> Iterator[DemoProcess]:
    running = start_demo()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def page_server() -> Iterator[tuple[str, Workspace]]:
    """The page's server alone, in-process (no bot, no AWS): tests play the bot with the token TOKEN."""
    workspace = Workspace(TOKEN, "unused-secret", "http://127.0.0.1")
    server = make_server(0, Demo(workspace, lambda service: None, lambda: {"page": "ready"}))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    workspace.base_url = url
    serve_in_thread(server)
    try:
        yield url, workspace
    finally:
        server.shutdown()
        server.server_close()


# WCAG 2.1 AA: 4.5:1 for text, 3:1 for large text; every form control has an accessible name.
_ACCESSIBILITY_JS = r"""
() => {
  const parse = (s) => {
    const m = s.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(",").map((x) => parseFloat(x));
    return { rgb: p.slice(0, 3), a: p.length > 3 ? p[3] : 1 };
  };
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a > 0.5) return c.rgb;
    }
    return [255, 255, 255];
  };
  const problems = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode;
    if (!text.textContent.trim()) continue;
    const el = text.parentElement;
    if (el.closest("[hidden]") || el.getClientRects().length === 0) continue;
    const style = getComputedStyle(el);
    const fg = parse(style.color).rgb, bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const shown = text.textContent.trim().slice(0, 40);
    if (ratio < need) problems.push(`contrast ${ratio.toFixed(2)} < ${need}: “${shown}”`);
  }
  for (const control of document.querySelectorAll("input, select, textarea, button")) {
    if (control.closest("[hidden]")) continue;
    const named = control.labels?.length || control.getAttribute("aria-label")
      || (control.tagName === "BUTTON" && control.textContent.trim());
    if (!named) problems.push(`no accessible name: ${control.outerHTML.slice(0, 80)}`);
  }
  return problems;
}
"""


def accessibility_problems(page: Any) -> list[str]:
    """Text below WCAG AA contrast and form controls without a name, on the page as it is now."""
    return list(page.evaluate(_ACCESSIBILITY_JS))
