"""docs/iam-policy.json grants every AWS call the bot makes, and nothing more.

The calls are found in the source (`<client>.<operation>(` and `get_paginator("<operation>")`), named by
botocore's own service models, and turned into IAM actions with bot.locks.aws.PERMISSIONS.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from bot.locks.aws import PERMISSIONS
from tests.deploy.chart import ROOT

POLICY_FILE = ROOT / "docs" / "iam-policy.json"
# bot/demo/ plays Terraform against its own embedded moto (`tflock-bot demo`); the bot's role never makes those calls.
SOURCES = sorted(path for path in (ROOT / "bot").rglob("*.py") if "demo" not in path.relative_to(ROOT / "bot").parts)
SERVICE = re.compile(r"""\.client\(\s*["']([a-z0-9-]+)["']""")
# A call on something named like a client: `self.client.get_item(`, `sts.assume_role(`, `s3_client.get_object(`.
CALL = re.compile(r"\b(\w*client|sts|s3|dynamodb)\s*\.\s*([a-z][a-z0-9_]*)\s*\(")
PAGINATOR = re.compile(r"""get_paginator\(\s*["']([a-z0-9_]+)["']\s*\)""")

TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/terraform-locks"
STATE = "acme-tfstate/env:/staging/network/terraform.tfstate"
# What each action is asked for, in the policy's placeholder names (docs/install.md says to replace them).
REQUESTS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "dynamodb:GetItem": (TABLE, {"dynamodb:LeadingKeys": [STATE]}),
    "dynamodb:Scan": (TABLE, {}),
    "dynamodb:DeleteItem": (TABLE, {"dynamodb:LeadingKeys": [STATE]}),
    "dynamodb:PutItem": (TABLE, {"dynamodb:LeadingKeys": [STATE]}),
    "s3:GetObject": (f"arn:aws:s3:::{STATE}.tflock", {}),
    "s3:DeleteObject": (f"arn:aws:s3:::{STATE}.tflock", {}),
    "s3:PutObject": (f"arn:aws:s3:::{STATE}.tflock", {}),
    "s3:ListBucket": ("arn:aws:s3:::acme-tfstate", {}),
    "s3:ListAllMyBuckets": ("*", {}),
    "sts:AssumeRole": ("arn:aws:iam::210987654321:role/tflock", {}),
}
# Written by the force-unlock workflow (docs/design.md §8: compare-and-delete); granted whether or not it has landed.
RELEASE_ACTIONS = {"dynamodb:DeleteItem", "s3:DeleteObject"}


@cache
def policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    return document


def statements() -> list[dict[str, Any]]:
    return list(policy()["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def wildcard(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's `*` and `?`, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, list[str]]) -> bool:
    for operator, keys in condition.items():
        qualifier, _, test = operator.rpartition(":")
        for key, patterns in keys.items():
            values = context.get(key, [])
            if test == "StringLike":
                hits = [any(wildcard(p, v) for p in as_list(patterns)) for v in values]
            elif test == "StringNotLike":
                hits = [not any(wildcard(p, v) for p in as_list(patterns)) for v in values]
            else:
                raise AssertionError(f"condition operator {operator} is not understood by this test; extend it")
            if qualifier == "ForAnyValue":
                holds = any(hits)
            elif qualifier == "ForAllValues":
                holds = all(hits)
            else:
                holds = len(hits) == 1 and hits[0]
            if not holds:
                return False
    return True


def applies(statement: dict[str, Any], action: str, resource: str, context: dict[str, list[str]]) -> bool:
    assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), "keep the policy to Action/Resource"
    if not any(wildcard(a, action, case=False) for a in as_list(statement["Action"])):
        return False
    if not any(wildcard(r, resource) for r in as_list(statement["Resource"])):
        return False
    return condition_holds(statement.get("Condition", {}), context)


def allowed(action: str, resource: str, context: dict[str, list[str]] | None = None) -> bool:
    """IAM's evaluation for one identity policy: an explicit Deny wins, else any Allow."""
    matching = [s for s in statements() if applies(s, action, resource, context or {})]
    return bool(matching) and all(s["Effect"] == "Allow" for s in matching)


def operations_called() -> set[tuple[str, str]]:
    """(service, API operation) for every AWS call in bot/."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in SOURCES)
    services = set(SERVICE.findall(text))
    session = botocore.session.get_session()
    by_method = {
        service: {xform_name(op): op for op in session.get_service_model(service).operation_names}
        for service in services
    }
    names = {method for _receiver, method in CALL.findall(text)} | set(PAGINATOR.findall(text))
    return {(service, methods[name]) for name in names for service, methods in by_method.items() if name in methods}


def test_the_scan_finds_the_calls_we_know_about() -> None:
    found = {op for _service, op in operations_called()}
    assert {"GetItem", "Scan", "GetObject", "ListObjectsV2", "ListBuckets", "AssumeRole"} <= found


def test_every_operation_has_an_iam_action() -> None:
    unmapped = {op for _service, op in operations_called() if op not in PERMISSIONS}
    assert not unmapped, f"add these to bot.locks.aws.PERMISSIONS (and the policy): {sorted(unmapped)}"


def required_actions() -> set[str]:
    return {PERMISSIONS[op] for _service, op in operations_called() if op in PERMISSIONS} | RELEASE_ACTIONS


@pytest.mark.parametrize("action", sorted(set(PERMISSIONS.values()) | RELEASE_ACTIONS))
def test_policy_grants_what_the_bot_calls(action: str) -> None:
    if action not in required_actions():
        pytest.skip(f"{action} is mapped but not called by the code today")
    assert action in REQUESTS, f"add a sample request for {action} to REQUESTS"
    resource, context = REQUESTS[action]
    assert allowed(action, resource, context), f"docs/iam-policy.json does not allow {action} on {resource}"


def test_policy_grants_nothing_else() -> None:
    granted = {a for s in statements() if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    assert granted <= set(PERMISSIONS.values()), f"not needed by the bot: {sorted(granted - set(PERMISSIONS.values()))}"
    assert not any("*" in action for action in granted), "no wildcard actions"
    for statement in statements():
        if "*" in as_list(statement["Resource"]):
            assert as_list(statement["Action"]) == ["s3:ListAllMyBuckets"], "only ListAllMyBuckets needs Resource *"


def test_state_files_and_digests_stay_out_of_reach() -> None:
    state_object = f"arn:aws:s3:::{STATE}"
    for action in ("s3:GetObject", "s3:DeleteObject", "s3:PutObject"):
        assert not allowed(action, state_object), f"{action} on the state file itself"
    # Holds write the lock file and the lock item (conditionally, as Terraform does), never the digest.
    assert allowed("s3:PutObject", f"{state_object}.tflock")
    assert allowed("dynamodb:PutItem", TABLE, {"dynamodb:LeadingKeys": [STATE]})
    for action in ("dynamodb:PutItem", "dynamodb:DeleteItem"):
        assert not allowed(action, TABLE, {"dynamodb:LeadingKeys": [f"{STATE}-md5"]}), f"{action} on the digest"
    assert not allowed("dynamodb:GetItem", "arn:aws:dynamodb:eu-west-1:123456789012:table/other-table")


def test_list_all_my_buckets_is_its_own_optional_statement() -> None:
    (statement,) = [s for s in statements() if "s3:ListAllMyBuckets" in as_list(s["Action"])]
    assert as_list(statement["Action"]) == ["s3:ListAllMyBuckets"]
    assert "Optional" in statement["Sid"]


def test_policy_is_a_valid_identity_policy() -> None:
    document = policy()
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in statements()]
    assert len(sids) == len(set(sids))
    for statement in statements():
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] in {"Allow", "Deny"}
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"])
