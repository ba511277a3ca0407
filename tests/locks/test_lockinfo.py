from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.locks.lockinfo import LockInfoError, describe_operation, parse_go_time, parse_lock_info
from tests.terraform import OPERATIONS, go_json, go_time

# Real Go output, from TERRAFORM_LOCKS.md §2.1.
REAL = [
    '{"ID":"3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7","Operation":"OperationTypePlan","Info":"","Who":"alice@build-agent-07",'
    '"Version":"1.9.8","Created":"2025-03-04T10:20:30.123456789Z","Path":"acme-tfstate/network/terraform.tfstate"}',
    '{"ID":"0b9e6d4c-2a71-58f3-c4e2-1d0a9b8c7f65","Operation":"OperationTypeApply","Info":"","Who":"runner@ip-10-0-1-23.ec2.internal",'
    '"Version":"1.11.4","Created":"2025-06-01T08:00:05.12Z","Path":"acme-tfstate/env:/staging/network/terraform.tfstate"}',
    '{"ID":"c7d2f1e0-9a8b-7c6d-5e4f-3a2b1c0d9e8f","Operation":"init","Info":"","Who":"CORP\\\\bob\\u003cx\\u003e\\u0026@WS-01",'
    '"Version":"1.10.5","Created":"2025-01-15T23:59:59Z","Path":"acme-tfstate/env:/dev/network/terraform.tfstate"}',
]


def test_real_go_output_parses() -> None:
    first, second, third = (parse_lock_info(raw) for raw in REAL)
    assert first.id == "3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7"
    assert first.who == "alice@build-agent-07"
    assert first.created == datetime(2025, 3, 4, 10, 20, 30, 123456, tzinfo=UTC)
    assert first.created_text == "2025-03-04T10:20:30.123456789Z"
    assert first.operation_words == "plan"
    assert second.created == datetime(2025, 6, 1, 8, 0, 5, 120000, tzinfo=UTC)
    assert second.operation_words == "apply (or destroy)"
    assert third.who == "CORP\\bob<x>&@WS-01"
    assert third.created == datetime(2025, 1, 15, 23, 59, 59, tzinfo=UTC)


def test_fixture_writer_matches_go_byte_for_byte() -> None:
    values = {
        "ID": "c7d2f1e0-9a8b-7c6d-5e4f-3a2b1c0d9e8f",
        "Operation": "init",
        "Info": "",
        "Who": "CORP\\bob<x>&@WS-01",
        "Version": "1.10.5",
        "Created": go_time(datetime(2025, 1, 15, 23, 59, 59, tzinfo=UTC)),
        "Path": "acme-tfstate/env:/dev/network/terraform.tfstate",
    }
    assert go_json(values) == REAL[2]
    assert go_time(datetime(2025, 3, 4, 10, 20, 30, tzinfo=UTC), nanos=123456789) == "2025-03-04T10:20:30.123456789Z"
    assert go_time(datetime(2025, 6, 1, 8, 0, 5, 120000, tzinfo=UTC)) == "2025-06-01T08:00:05.12Z"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[1,2]", "JSON list"),
        ('"text"', "JSON str"),
        ('{"ID": 5}', "field ID is a JSON int"),
        ('{"Who": null}', "field Who is a JSON NoneType"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_malformed_info_is_an_error_value(raw: str, message: str) -> None:
    with pytest.raises(LockInfoError, match=message):
        parse_lock_info(raw)


def test_missing_fields_are_go_zero_values() -> None:
    info = parse_lock_info('{"ID":"x"}')
    assert (info.who, info.created, info.operation_words) == ("", None, "unknown (empty Operation)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04T10:20:30Z", datetime(2025, 3, 4, 10, 20, 30, tzinfo=UTC)),
        ("2025-03-04T12:20:30.5+02:00", datetime(2025, 3, 4, 10, 20, 30, 500000, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("2025-02-30T00:00:00Z", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_go_time(text: str, expected: datetime | None) -> None:
    assert parse_go_time(text) == expected


def test_every_known_operation_has_words() -> None:
    for operation in OPERATIONS:
        assert describe_operation(operation) != operation or operation in {"taint", "untaint"}
    assert describe_operation("something-new") == "something-new"
