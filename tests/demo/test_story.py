"""The whole force-unlock story in a real Chromium, on the page `tflock-bot demo` serves.

Alice finds the stale lock, Terraform fails on it, she asks for a force-unlock; she cannot approve it
herself, Mallory may not, Bob does; the message changes in place, Terraform gets the lock, and Grace
downloads the audit trail. Each step leaves a screenshot in artifacts/demo/<test>/.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.demo.conftest import DemoProcess, accessibility_problems

pytestmark = [pytest.mark.slow, pytest.mark.browser]

STALE = "acme-tfstate/network/terraform.tfstate"
TIMEOUT = 15_000  # ms: every wait in the browser has one


class Story:
    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.step = 0

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(self.folder / f"{self.step:02d}-{name}.png"))

    def become(self, name: str) -> None:
        label = {"alice": "Alice Archer", "bob": "Bob Brooks", "mallory": "Mallory Moss", "grace": "Grace Green"}[name]
        self.page.get_by_label("You are").select_option(
            label=self.page.locator("#who option", has_text=label).inner_text()
        )
        self.page.wait_for_function(f"new URL(location.href).searchParams.get('as') === '{name}'")

    def type(self, text: str) -> None:
        box = self.page.get_by_label("Message #incident")
        box.fill(text)
        box.press("Enter")

    def message(self, text: str) -> Any:
        found = self.page.locator("#messages > li.message", has_text=text)
        found.first.wait_for(timeout=TIMEOUT)
        return found

    def run_terraform(self) -> Any:
        self.page.get_by_label("State", exact=True).select_option(STALE)
        self.page.get_by_role("button", name="Run terraform plan").click()
        verdict = self.page.locator(".tf-verdict")
        verdict.wait_for(timeout=TIMEOUT)
        return verdict


def test_the_force_unlock_story(demo: DemoProcess, chromium: Any, artifacts: Path) -> None:
    context = chromium.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    story = Story(page, artifacts)
    page.goto(f"{demo.url}/?as=alice")
    page.locator("#conv-title", has_text="#incident").wait_for()

    # 1. Alice asks who holds the lock: owner and age, in the channel.
    story.type(f"/tflock status {STALE}")
    status = story.message("State lock on")
    assert "runner@ci-runner-7.build.internal" in status.inner_text()
    assert "3h 4m" in status.inner_text() or "3h 5m" in status.inner_text()
    assert "apply" in status.inner_text()
    story.shot("alice-status")

    # 2. Terraform cannot take the lock, and says who has it.
    verdict = story.run_terraform()
    assert verdict.get_attribute("data-acquired") == "false"
    output = page.get_by_label("Terraform output").inner_text()
    assert "Error: Error acquiring the state lock" in output
    assert "ConditionalCheckFailedException" in output
    assert "Who:       runner@ci-runner-7.build.internal" in output
    assert f"Path:      {STALE}" in output
    story.shot("terraform-refused")

    # 3. Alice asks for a force-unlock, with a reason, in the modal.
    status.get_by_role("button", name="Request force-unlock").click()
    dialog = page.get_by_role("dialog", name="Request force-unlock")
    dialog.wait_for()
    reason = dialog.get_by_label("Why is this lock stale?")
    assert reason.evaluate("node => node === document.activeElement")  # focus moved into the modal
    reason.fill("CI job 4812 was cancelled at 14:02; nothing is running against network.")
    story.shot("reason-modal")
    dialog.get_by_role("button", name="Request").click()
    dialog.wait_for(state="hidden")
    request = story.message("Force-unlock requested")
    ts = request.first.get_attribute("data-ts")
    assert "CI job 4812 was cancelled" in request.inner_text()
    assert "@Alice Archer" in request.inner_text()  # <@U…> rendered as a mention
    story.shot("request-posted")

    def approve(expect_refusal: str | None) -> None:
        page.locator(f'li.message[data-ts="{ts}"]').get_by_role("button", name="Approve").click()
        confirm = page.get_by_role("alertdialog", name="Release this lock?")
        confirm.wait_for()
        confirm.get_by_role("button", name="Approve and release").click()
        confirm.wait_for(state="hidden")
        if expect_refusal:
            note = story.message(expect_refusal)
            assert "Only visible to you" in note.last.inner_text()

    # 4. Alice cannot approve her own request; only she is told.
    approve("so you cannot approve it")
    story.shot("alice-refused")
    assert accessibility_problems(page) == []  # status, request, ephemeral note and Terraform's error on screen
    story.become("bob")
    page.locator(f'li.message[data-ts="{ts}"]').wait_for()
    assert page.locator("#messages li.message", has_text="so you cannot approve it").count() == 0
    assert page.locator("#messages .only-you").count() == 0

    # 5. Mallory is not an approver.
    story.become("mallory")
    approve("not an approver")
    story.shot("mallory-refused")

    # 6. Bob approves through the confirm dialog, keyboard only; the request message changes in place.
    story.become("bob")
    page.locator(f'li.message[data-ts="{ts}"]').get_by_role("button", name="Approve").focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("alertdialog", name="Release this lock?")
    confirm.wait_for()
    assert "only if it is still exactly the lock that was requested" in confirm.inner_text()
    focused = "() => document.activeElement && document.activeElement.textContent"
    assert page.evaluate(focused) == "Not yet"  # the safe choice has the focus
    story.shot("bob-confirm")
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "Approve and release"
    page.keyboard.press("Enter")
    released = page.locator(f'li.message[data-ts="{ts}"]', has_text="Released")
    released.wait_for()
    assert page.locator("#messages > li.message", has_text="force-unlock of").count() == 1  # updated, not re-posted
    assert released.locator(".edited").count() == 1
    assert released.get_by_role("button", name="Approve").count() == 0
    assert "@Bob Brooks" in released.inner_text()
    released.locator(".thread li.message").first.wait_for()
    story.shot("released")

    # 7. Terraform now gets the lock (and gives it back).
    verdict = story.run_terraform()
    assert verdict.get_attribute("data-acquired") == "true", page.get_by_label("Terraform output").inner_text()
    story.shot("terraform-succeeds")

    # 8. Grace, who audits, reads the trail and downloads it as CSV.
    story.become("grace")
    story.type("/tflock audit")
    summary = story.message("audit events")
    assert "executed" in summary.inner_text() and "approved" in summary.inner_text()
    story.type("/tflock audit csv")
    story.message("as a CSV file in a direct message")
    page.get_by_role("button", name="tflock (app)").click()
    link = page.locator("#messages .file a")
    link.wait_for()
    story.shot("grace-csv")
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename.startswith("tflock-audit-") and download.suggested_filename.endswith(".csv")
    saved = artifacts / download.suggested_filename
    download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    actions = {(row.get("action"), row.get("actor")) for row in rows}
    assert ("requested", "U0ALICE01") in actions
    assert ("approved", "U0BOB0002") in actions
    assert ("refused", "U0MALLORY") in actions
    assert any(action == "executed" for action, _ in actions)
    context.close()
