from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import BadInput
from bot.locks.address import LockIdRef, StateAddress, parse_address, parse_state

ALIASES = {"prod-network": StateAddress("acme-prod", "network/terraform.tfstate")}


@pytest.mark.parametrize(
    ("text", "bucket", "key"),
    [
        ("acme-tfstate/network/terraform.tfstate", "acme-tfstate", "network/terraform.tfstate"),
        ("s3://acme-tfstate/network/terraform.tfstate", "acme-tfstate", "network/terraform.tfstate"),
        ("S3://acme-tfstate/a.tfstate", "acme-tfstate", "a.tfstate"),
        (
            "acme-tfstate/env:/staging/network/terraform.tfstate",
            "acme-tfstate",
            "env:/staging/network/terraform.tfstate",
        ),
        ("  `acme-tfstate/a/b.tfstate`  ", "acme-tfstate", "a/b.tfstate"),
        ('"acme-tfstate/a/b.tfstate"', "acme-tfstate", "a/b.tfstate"),
        ("<s3://acme-tfstate/a.tfstate|s3://acme-tfstate/a.tfstate>", "acme-tfstate", "a.tfstate"),
        ("acme-tfstate/network/terraform.tfstate.tflock", "acme-tfstate", "network/terraform.tfstate"),
        ("acme-tfstate/réseau/état.tfstate", "acme-tfstate", "réseau/état.tfstate"),
        ("prod-network", "acme-prod", "network/terraform.tfstate"),
    ],
)
def test_accepted_forms(text: str, bucket: str, key: str) -> None:
    assert parse_state(text, ALIASES) == StateAddress(bucket, key)


def test_lock_id_is_a_search_reference() -> None:
    assert parse_state("F9763602-B03F-E35C-DA30-4083CDBB99AE") == LockIdRef("f9763602-b03f-e35c-da30-4083cdbb99ae")
    with pytest.raises(BadInput, match="is a lock ID"):
        parse_address("f9763602-b03f-e35c-da30-4083cdbb99ae")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no state given"),
        ("   ", "no state given"),
        ("x" * 10_240, "10,240 characters"),
        ("/acme-tfstate/a.tfstate", "starts with '/'"),
        ("acme-tfstate//a.tfstate", "'//'"),
        ("acme-tfstate/a//b.tfstate", "'//'"),
        ("acme-tfstate/../etc/passwd", "'..' segment"),
        ("acme-tfstate/a/./b", "'..' segment"),
        ("acme-tfstate/", "no state key"),
        ("acme-tfstate/dir/", "ends with '/'"),
        ("Acme-TFState/a.tfstate", "upper-case"),
        ("ac/a.tfstate", "3 to 63"),
        ("acme_tfstate/a.tfstate", "only lower-case"),
        ("-acme/a.tfstate", "begin and end"),
        ("192.168.1.10/a.tfstate", "IP address"),
        ("acme-tfstate/a.tfstate-md5", "digest item"),
        ("acme-tfstate/a\u202eb.tfstate", "U+202E"),
        ("acme-tfstate/a\x00b", "U+0000"),
        ("acme-tfstate/a\udcffb", "not valid UTF-8"),
        ("acme-tfstate/a\ufffdb", "U+FFFD"),
        ("acme-tfstate/a b", "whitespace"),
        ("acme-tfstate/it's.tfstate", "quote"),
        ('acme-tfstate/"a"', "quote"),
        ("unknown-alias", "not a state address"),
        ("acme-tfstate/" + "k" * 1100, "1024 bytes"),
    ],
)
def test_bad_input_gets_a_specific_message(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=re.escape(message)):
        parse_state(text, ALIASES)


def test_unknown_alias_lists_known_ones() -> None:
    with pytest.raises(BadInput, match="aliases: prod-network"):
        parse_state("prod-netwrk", ALIASES)


@pytest.mark.parametrize(
    ("key", "workspace", "prefix", "expected"),
    [
        ("network/terraform.tfstate", "default", "env:", "network/terraform.tfstate"),
        ("network/terraform.tfstate", "staging", "env:", "env:/staging/network/terraform.tfstate"),
        ("network/terraform.tfstate", "staging", "workspaces", "workspaces/staging/network/terraform.tfstate"),
        ("network/terraform.tfstate", "staging", "", "staging/network/terraform.tfstate"),
        ("a/../b.tfstate", "staging", "env:", "env:/staging/b.tfstate"),  # path.Join cleans
    ],
)
def test_workspace_keys_follow_terraform(key: str, workspace: str, prefix: str, expected: str) -> None:
    address = StateAddress.for_workspace("acme-tfstate", key, workspace, prefix)
    assert address.key == expected
    assert address.lock_id == f"acme-tfstate/{expected}"
    if prefix:
        assert address.workspace(prefix) == workspace


def test_default_workspace_is_detected() -> None:
    assert StateAddress("b-1", "network/terraform.tfstate").workspace() == "default"
    assert StateAddress("b-1", "env:/x").workspace() == "default"  # no key after the workspace


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_an_address_or_a_clear_error(text: str) -> None:
    try:
        ref = parse_state(text, ALIASES)
    except BadInput as exc:
        assert str(exc)
        assert "Traceback" not in str(exc)
    else:
        assert isinstance(ref, StateAddress | LockIdRef)
        if isinstance(ref, StateAddress):
            assert ref.key and not ref.key.startswith("/") and "//" not in ref.key


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True),
    st.lists(st.from_regex(r"[A-Za-z0-9_=:+@-][A-Za-z0-9_.=:+@-]{0,15}", fullmatch=True), min_size=1, max_size=5),
)
def test_printed_path_round_trips(bucket: str, segments: list[str]) -> None:
    key = "/".join(segments)
    if key.endswith(("-md5", ".tflock")):
        return
    assert parse_state(f"{bucket}/{key}") == StateAddress(bucket, key)
    assert parse_state(f"s3://{bucket}/{key}") == StateAddress(bucket, key)
