from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.locks.address import StateAddress
from bot.locks.facts import lock_facts
from bot.locks.model import LockSnapshot, StateLock, Store, Unchecked
from bot.slack.views import escape, help_message, list_message, status_message
from tests.terraform import TerraformLock, go_time

NOW = datetime(2025, 3, 4, 13, 27, 30, tzinfo=UTC)
ADDRESS = StateAddress("acme-tfstate", "network/terraform.tfstate")


PIN = "pin-" + "q" * 28  # a pinned lock's ID (bot/unlock/pins.py)


def facts_for(who: str = "alice@build-agent-07", hours: float = 3.1, **lock: str):  # type: ignore[no-untyped-def]
    tf = TerraformLock(ADDRESS, who=who, created=go_time(NOW - timedelta(hours=hours)), **lock)
    snapshot = LockSnapshot.from_raw(
        ADDRESS, Store.TABLE, "DynamoDB table terraform-locks", "terraform-locks", tf.info_json
    )
    return tf, lock_facts(StateLock(ADDRESS, "default", table=snapshot), NOW, timedelta(hours=2))


def test_status_blocks_show_the_facts_and_the_button() -> None:
    tf, facts = facts_for(operation="OperationTypePlan")
    message = status_message(facts, PIN).as_kwargs()
    section = message["blocks"][0]
    assert section["text"]["text"] == ":lock: *State lock on* `acme-tfstate/network/terraform.tfstate`"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in section["fields"]}
    assert fields["*Lock ID*"] == f"`{tf.id}`"
    assert fields["*Who*"] == "alice@build-agent-07"
    assert fields["*Operation*"] == "plan"
    assert fields["*Age*"] == "3h 6m"
    assert message["blocks"][1]["elements"][0]["text"] == ":warning: *probably stale (held longer than 2h)*"
    button = message["blocks"][-1]["elements"][0]
    assert (button["action_id"], button["value"], button["style"]) == ("tflock_request_unlock", PIN, "danger")
    without = status_message(facts).as_kwargs()  # no pin (the database was down): no button, still the facts
    assert all(b["type"] != "actions" for b in without["blocks"]) and without["text"] == message["text"]
    assert message["text"].startswith("acme-tfstate/network/terraform.tfstate is locked by alice@build-agent-07")


def test_untrusted_text_is_escaped() -> None:
    _, facts = facts_for(who="<!channel> & <@U123>")
    message = status_message(facts).as_kwargs()
    text = str(message["blocks"])
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; &lt;@U123&gt;" in text
    assert "<!channel>" not in message["text"]  # the notification text must not ping either
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_not_locked() -> None:
    facts = lock_facts(StateLock(ADDRESS, "default"), NOW, timedelta(hours=2))
    message = status_message(facts).as_kwargs()
    assert message["blocks"][0]["text"]["text"] == (
        ":unlock: `acme-tfstate/network/terraform.tfstate` is not locked (checked: DynamoDB table and S3 lock file)."
    )
    assert all(b["type"] != "actions" for b in message["blocks"])


def test_unknown_says_which_store_was_not_checked_and_offers_no_button() -> None:
    lock = StateLock(
        ADDRESS,
        "default",
        checked=(Store.LOCKFILE,),
        unchecked=(Unchecked(Store.TABLE, "could not reach AWS for table terraform-locks: timed out"),),
    )
    message = status_message(lock_facts(lock, NOW, timedelta(hours=2))).as_kwargs()
    text = message["blocks"][0]["text"]["text"]
    assert "is not locked" not in text and "not locked there" in text
    assert text.startswith(":grey_question: *Could not tell whether* `acme-tfstate/network/terraform.tfstate`")
    assert "• DynamoDB not checked: could not reach AWS for table terraform-locks: timed out" in text
    assert all(b["type"] != "actions" for b in message["blocks"])
    assert "unknown" in message["text"]


def test_a_partial_list_never_says_no_locks() -> None:
    message = list_message([], ["default: DynamoDB table t: could not reach AWS"], stale_only=False).as_kwargs()
    texts = " ".join(b.get("text", {}).get("text", "") for b in message["blocks"])
    assert "No locks held" not in texts and "partial" in texts and "could not check default" in texts


def test_list_is_capped_and_marks_stale() -> None:
    many = [facts_for(hours=h)[1] for h in (5, 1)] * 30
    pins = {many[0].address: PIN}
    message = list_message(many, ["other: AWS denied dynamodb:Scan on table x"], stale_only=False, pins=pins)
    message = message.as_kwargs()
    assert len(message["blocks"]) <= 50
    assert message["blocks"][0]["text"]["text"] == "60 locks held, 30 probably stale"
    assert message["blocks"][1]["text"]["text"].startswith(":warning: *stale*")
    assert message["blocks"][1]["accessory"]["action_id"] == "tflock_request_unlock"
    assert message["blocks"][1]["accessory"]["value"] == PIN
    assert "accessory" not in message["blocks"][2]
    assert any("…and 20 more" in str(b) for b in message["blocks"])
    assert "dynamodb:Scan" in str(message["blocks"][-1])


def test_empty_list_and_help() -> None:
    assert list_message([], [], stale_only=True).text == ":white_check_mark: No stale locks."
    assert "/tflock status &lt;state&gt;" in str(help_message().as_kwargs())


def test_the_longest_state_address_still_fits_slack_limits() -> None:
    from bot.slack.views import approval_message, reason_modal
    from bot.unlock.models import RequestView, Status

    # S3's longest key (1,024 bytes), in characters that JSON would escape six times over.
    address = StateAddress("acme-tfstate", "env:/" + "é/" * 334 + "terraform.tfstate")
    assert 1000 < len(address.key.encode()) <= 1024
    tf, _ = facts_for()
    snapshot = LockSnapshot.from_raw(
        address, Store.TABLE, "DynamoDB table terraform-locks", "terraform-locks", tf.info_json
    )
    facts = lock_facts(StateLock(address, "default", table=snapshot), NOW, timedelta(hours=2))
    status = status_message(facts, PIN).as_kwargs()  # slack_sdk validates every limit in to_dict()
    assert status["blocks"][-1]["elements"][0]["value"] == PIN
    list_message([facts] * 45, [], stale_only=False, pins={facts.address: PIN}).as_kwargs()
    modal = reason_modal(None, "C0INCIDENT", pin=PIN).to_dict()
    reason_modal(str(address), "C0INCIDENT", lock_id=tf.id).to_dict()  # a button from before pins
    assert len(modal["private_metadata"]) <= 3000 and json.loads(modal["private_metadata"])["pin"] == PIN
    request = RequestView(
        id="0" * 8 + "-0000-4000-8000-" + "0" * 12,
        address=str(address),
        lock_id=tf.id,
        raw_info=tf.info_json,
        held_in=(Store.TABLE,),
        lockfile_etag=None,
        requester="U0ALICE01",
        reason="r" * 2000,
        channel="C0INCIDENT",
        message_ts=None,
        status=Status.PENDING,
        approvals_required=1,
        approvers=(),
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        decided_at=None,
        decided_by=None,
        executing_at=None,
        finished_at=None,
        outcome=None,
    )
    message = approval_message(request, NOW).as_kwargs()
    confirm = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"])["confirm"]
    assert len(confirm["text"]["text"]) <= 300
