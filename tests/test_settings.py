from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.durations import format_age, parse_duration
from bot.locks.backends import load_backends
from bot.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./tflock.db"
    assert settings.s3_lockfile == "auto"
    assert settings.request_ttl == timedelta(minutes=30)
    assert settings.stale_after == timedelta(hours=2)
    assert settings.approvals_required == 1
    assert settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert not settings.socket_mode


def test_lists_and_durations_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFLOCK_APPROVERS", "U012AB3CD, S0614TZR7 W123456")
    monkeypatch.setenv("TFLOCK_ALLOWED_CHANNELS", "C024BE91L")
    monkeypatch.setenv("TFLOCK_REQUEST_TTL", "1h30m")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9999/api")
    settings = load_settings()
    assert settings.approvers == ["U012AB3CD", "S0614TZR7", "W123456"]
    assert settings.effective_auditors == settings.approvers
    assert settings.request_ttl == timedelta(minutes=90)
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TFLOCK_STALE_AFTER=45m\n")
    assert load_settings().stale_after == timedelta(minutes=45)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TFLOCK_REQUEST_TTL", "soon", "TFLOCK_REQUEST_TTL: 'soon' is not a duration"),
        ("TFLOCK_STALE_AFTER", "0s", "TFLOCK_STALE_AFTER: '0s' must be longer than zero"),
        ("TFLOCK_APPROVALS_REQUIRED", "0", "TFLOCK_APPROVALS_REQUIRED: Input should be greater than or equal to 1"),
        ("TFLOCK_APPROVALS_REQUIRED", "two", "TFLOCK_APPROVALS_REQUIRED: Input should be a valid integer"),
        ("TFLOCK_APPROVERS", "alice", "TFLOCK_APPROVERS: 'alice' is not a Slack user"),
        ("TFLOCK_ALLOWED_CHANNELS", "#incidents", "TFLOCK_ALLOWED_CHANNELS: '#incidents' is not a Slack channel"),
        ("TFLOCK_S3_LOCKFILE", "maybe", "TFLOCK_S3_LOCKFILE: Input should be 'auto', 'on' or 'off'"),
        ("TFLOCK_PORT", "70000", "TFLOCK_PORT: Input should be less than or equal to 65535"),
        ("TFLOCK_DATABASE_URL", "not a url", "TFLOCK_DATABASE_URL: is not an SQLAlchemy database URL"),
        (
            "TFLOCK_BACKENDS_FILE",
            "/nonexistent/backends.yaml",
            "TFLOCK_BACKENDS_FILE: '/nonexistent/backends.yaml' does not exist",
        ),
        ("TFLOCK_DYNAMODB_TABLE", "a", "TFLOCK_DYNAMODB_TABLE: 'a' is not a DynamoDB table name"),
        ("SLACK_API_URL", "slack.com", "SLACK_API_URL: 'slack.com' is not an http(s) URL"),
        ("TFLOCK_WATCH_CHANNEL", "general", "TFLOCK_WATCH_CHANNEL: 'general' is not a Slack channel"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_empty_or_wrong_slack_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "")  # an empty key in a Kubernetes Secret
    monkeypatch.setenv("SLACK_APP_TOKEN", "  ")
    settings = load_settings()
    assert settings.slack_app_token is None and not settings.socket_mode
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET: required in HTTP mode"):
        settings.require_for_serve()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xapp-swapped")
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN: is not a bot token"):
        load_settings()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-swapped")
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN: is not an app-level token"):
        load_settings()


def test_serve_requires_slack_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN: required for serve"):
        load_settings().require_for_serve()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET: required in HTTP mode"):
        load_settings().require_for_serve()
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    load_settings().require_for_serve()  # Socket Mode needs no signing secret


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("backends: [", "cannot read"),
        ("backends: []", "backends: List should have at least 1 item"),
        ("backends:\n  - name: a\n    buckets: [Bad_Bucket]\n", "backends.0.buckets: 'Bad_Bucket' is not a bucket"),
        (
            "backends:\n  - name: a\n    buckets: [b-1]\n    colour: red\n",
            "backends.0.colour: Extra inputs are not permitted",
        ),
        (
            "backends:\n  - name: a\n    buckets: [b-1]\n    role_arn: admin\n",
            "backends.0.role_arn: String should match",
        ),
        (
            "backends:\n  - name: a\n    buckets: [b-1]\n    s3_lockfile: 'off'\n",
            "has no dynamodb_table and s3_lockfile off",
        ),
        (
            "backends:\n  - name: a\n    buckets: [b-1]\n    aliases: {x: 'zz-1/a//b'}\n",
            "alias 'x'",
        ),
        (
            "backends:\n  - name: a\n    buckets: [b-1]\n    aliases: {x: 'zz-1/a.tfstate'}\n",
            "alias 'x' points at bucket 'zz-1', which no backend serves",
        ),
        (
            "backends:\n  - {name: a, buckets: [b-1]}\n  - {name: a, buckets: [b-2]}\n",
            "backend name 'a' is used twice",
        ),
    ],
)
def test_bad_backends_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text(content)
    monkeypatch.setenv("TFLOCK_BACKENDS_FILE", str(path))
    with pytest.raises(SettingsError) as caught:
        load_backends(load_settings())
    assert str(caught.value).startswith("TFLOCK_BACKENDS_FILE: ")
    assert message in str(caught.value)


def test_bad_setting_stops_the_process_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFLOCK_STALE_AFTER", "forever")
    result = subprocess.run([sys.executable, "-m", "bot", "list"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tflock-bot: TFLOCK_STALE_AFTER: 'forever' is not a duration; write it like 30s, 15m, 2h, 1d or 1h30m"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 2H ", 7200)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (720, "12m"), (11220, "3h 7m"), (7200, "2h"), (187200, "2d 4h"), (-5, "0s")],
)
def test_format_age(seconds: int, text: str) -> None:
    assert format_age(timedelta(seconds=seconds)) == text
