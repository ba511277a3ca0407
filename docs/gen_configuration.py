"""Write docs/configuration.md from the settings class, so the reference cannot drift from the code.

    python docs/gen_configuration.py          # rewrite docs/configuration.md
    python docs/gen_configuration.py --check  # exit 1 if it is out of date

Variable names and defaults come from `bot.settings.Settings`; the words come from `SETTINGS` below, and
tests/deploy/test_docs.py fails when a setting has no entry here (or an entry has no setting).
"""

from __future__ import annotations

import argparse
import sys
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "configuration.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.settings import Settings  # noqa: E402 (the repository root is put on the path first)


class Setting(NamedTuple):
    helm: str  # where the Helm chart takes it from (helm/tflock/values.yaml)
    meaning: str


SETTINGS: dict[str, Setting] = {
    "SLACK_BOT_TOKEN": Setting(
        "Secret key `secrets.keys.botToken`",
        "Bot token (`xoxb-…`, *OAuth & Permissions* in the Slack app). Required for `serve`.",
    ),
    "SLACK_SIGNING_SECRET": Setting(
        "Secret key `secrets.keys.signingSecret`",
        "Request signing secret (*Basic Information*). Required in HTTP mode, unused in Socket Mode.",
    ),
    "SLACK_APP_TOKEN": Setting(
        "Secret key `secrets.keys.appToken`",
        "App-level token (`xapp-…`, scope `connections:write`). When set, `serve` uses Socket Mode; "
        "unset means HTTP mode.",
    ),
    "SLACK_API_URL": Setting(
        "`slack.apiUrl`",
        "Slack Web API base URL: change it for GovSlack (`https://slack-gov.com/api/`) or a test server.",
    ),
    "TFLOCK_DATABASE_URL": Setting(
        "Secret key `secrets.keys.databaseUrl`, or `database.sqlite.enabled`",
        "SQLAlchemy URL of the audit database, as the bot's own role. Production: PostgreSQL, "
        "`postgresql+psycopg://tflock_bot:password@host:5432/tflock`. The default SQLite file in the working "
        "directory suits a laptop only; the container image defaults to `sqlite:////tmp/tflock.db` "
        "(lost with the container).",
    ),
    "TFLOCK_MIGRATION_DATABASE_URL": Setting(
        "Secret key `secrets.keys.migrationDatabaseUrl` (migration Job only)",
        "URL of the database's owner role, for migrations (`tflock-bot db upgrade`), when the bot itself runs "
        "as a role that may only read and append to the audit trail (docs/install.md, two roles). When set, "
        "`db upgrade` migrates with it and then grants the role in `TFLOCK_DATABASE_URL` its rights, and "
        "`serve` does not migrate by itself. Empty: one role for both.",
    ),
    "TFLOCK_DYNAMODB_TABLE": Setting(
        "`config.dynamodbTable`",
        "DynamoDB lock table for the single-backend case (`dynamodb_table` in the Terraform backend).",
    ),
    "TFLOCK_S3_LOCKFILE": Setting(
        "`config.s3Lockfile`",
        "S3 lock files (`use_lockfile = true`): `auto` also looks for `<key>.tflock` and still answers from the "
        "table without access to them; `on` requires them to be readable; `off` ignores them.",
    ),
    "TFLOCK_S3_BUCKETS": Setting(
        "`config.s3Buckets`",
        "Buckets (names or `fnmatch` patterns) served by the single backend; `list` covers the lock files in "
        "them. Patterns are expanded with `s3:ListAllMyBuckets`. Unset: any bucket for `status`, and `list` "
        "looks in the buckets the table's locks are in.",
    ),
    "TFLOCK_BACKENDS_FILE": Setting(
        "`backendsFile.backends` or `backendsFile.existingConfigMap` (mounted at `/etc/tflock/`)",
        "YAML or TOML file listing several backends: bucket patterns, table, region, `role_arn` to assume, "
        "endpoint, workspace prefix, aliases (README, *Several backends*).",
    ),
    "TFLOCK_APPROVERS": Setting(
        "`config.approvers`",
        "Slack user IDs (`U…`/`W…`) and user-group IDs (`S…`) allowed to approve a force-unlock. "
        "Empty: any workspace member except the requester.",
    ),
    "TFLOCK_AUDITORS": Setting(
        "`config.auditors`",
        "Users and user groups allowed to run audit queries. Empty: the approvers. With neither set, "
        "`/tflock audit` is refused to everyone (with how to set it) and `serve` warns at start-up.",
    ),
    "TFLOCK_APPROVALS_REQUIRED": Setting(
        "`config.approvalsRequired`",
        "Distinct approvers needed besides the requester (1 to 10).",
    ),
    "TFLOCK_REQUEST_TTL": Setting("`config.requestTtl`", "How long a force-unlock request waits for approval."),
    "TFLOCK_STALE_AFTER": Setting("`config.staleAfter`", "Age from which a lock is called *probably stale*."),
    "TFLOCK_ALLOWED_CHANNELS": Setting(
        "`config.allowedChannels`",
        "Channel IDs (`C…`/`G…`) where a force-unlock may be requested. Empty: anywhere.",
    ),
    "TFLOCK_PORT": Setting(
        "`config.port`",
        "HTTP port: `/slack/events` in HTTP mode, and `/healthz`, `/readyz`, `/metrics` in both modes.",
    ),
    "TFLOCK_WATCH_CHANNEL": Setting(
        "`config.watchChannel`",
        "Channel ID for stale-lock alerts. Unset: the watchdog is off.",
    ),
    "TFLOCK_WATCH_INTERVAL": Setting("`config.watchInterval`", "How often the watchdog scans for stale locks."),
    "TFLOCK_WATCH_REMIND_AFTER": Setting(
        "`config.watchRemindAfter`",
        "One reminder about a lock still held this long after its alert.",
    ),
    "TFLOCK_HOLD_REMIND_AFTER": Setting(
        "`config.holdRemindAfter`",
        "One reminder in the watchdog channel about a hold (`/tflock hold`) still held this long; holds are "
        "never alerted as stale.",
    ),
    "TFLOCK_AWS_CONNECT_TIMEOUT": Setting(
        "`config.awsConnectTimeout`",
        "How long one AWS connection attempt may take. With the read timeout and attempts below it bounds how "
        "long a person waits for an answer (the CLI says what it is waiting for after 2 s).",
    ),
    "TFLOCK_AWS_READ_TIMEOUT": Setting("`config.awsReadTimeout`", "How long AWS may take to answer one call."),
    "TFLOCK_AWS_MAX_ATTEMPTS": Setting(
        "`config.awsMaxAttempts`",
        "Attempts per AWS call, the first included (botocore's `standard` retry mode: throttling and "
        "transient faults are retried with jittered backoff).",
    ),
    "TFLOCK_BACKEND_CONCURRENCY": Setting(
        "`config.backendConcurrency`",
        "AWS look-ups in flight at once per backend. A look-up that finds them all busy for a second is "
        'answered *unknown* ("backend … is answering slowly"), so one hung backend cannot take every worker.',
    ),
    "TFLOCK_LOOKUP_QUEUE": Setting(
        "`config.lookupQueue`",
        "Look-ups (status, list, audit) that may wait for a worker. Beyond it a person is told at once "
        '"tflock is busy, try again in a moment" (counted in `tflock_busy_total`).',
    ),
    "TFLOCK_CLICK_QUEUE": Setting(
        "`config.clickQueue`",
        "Clicks and requests (approve, reject, cancel, unlock, the reason form) that may wait for a worker; "
        "they have workers of their own, so look-ups never delay them.",
    ),
    "TFLOCK_DB_CONNECT_TIMEOUT": Setting(
        "`config.dbConnectTimeout`",
        "How long a PostgreSQL connection attempt may take (whole seconds; libpq's connect_timeout).",
    ),
    "TFLOCK_DB_STATEMENT_TIMEOUT": Setting(
        "`config.dbStatementTimeout`",
        "PostgreSQL `statement_timeout` for the bot's connections, and SQLite's `busy_timeout` (the wait for the "
        "write lock): no statement waits longer.",
    ),
    "TFLOCK_LOG_FORMAT": Setting(
        "`config.logFormat`",
        "`text` or `json` (one JSON object per line). Either way there is one line per command and per click: "
        "who, command, state, outcome, duration — never a token or a request body.",
    ),
}

# Read outside the settings class (by the command line or by boto3), listed here so one page has them all.
OTHER_VARIABLES: list[tuple[str, str, str]] = [
    (
        "TFLOCK_LOG_LEVEL",
        "`config.logLevel`",
        "Log level: `DEBUG`, `INFO`, `WARNING`, `ERROR`. Default: `INFO` for `serve`, `WARNING` otherwise.",
    ),
    ("TFLOCK_DEBUG", "`extraEnv`", "Any value: show the traceback of an internal error instead of one line."),
    ("AWS_REGION", "`config.awsRegion`", "Region of the single backend (and the default for the backends file)."),
    (
        "AWS_ENDPOINT_URL, AWS_PROFILE, AWS_ROLE_ARN, …",
        "`extraEnv`; IRSA via `serviceAccount.annotations`",
        "boto3's own conventions, honoured as boto3 does.",
    ),
]

HEADER = """\
# Configuration reference

<!-- Generated by docs/gen_configuration.py from bot/settings.py; edit the generator, not this file. -->

tflock reads environment variables, and a `.env` file in the working directory when there is one.
Every value is checked at start: a missing or malformed one stops the process with one line naming the
variable and what is wrong.

- **Durations** are written `30s`, `15m`, `2h`, `1d`, or combined: `1h30m`.
- **Lists** are separated by commas or spaces: `U012ABCDEF,S034GHIJKL`.
- **Secrets** (tokens, the database URL with its password) belong in a Kubernetes Secret; the chart never
  puts them in plain environment values (see docs/install.md).

The *Helm value* column names where the chart in `helm/tflock` takes each setting from.

## Settings

| Variable | Default | Helm value | Meaning |
|---|---|---|---|
"""

FOOTER_HEADER = """
## Also read

| Variable | Helm value | Meaning |
|---|---|---|
"""


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, list | tuple | dict) and not value:
        return "empty"
    return f"`{value}`"


def choices(field: Any) -> str:
    """`auto` · `on` · `off` for a Literal-typed setting, else nothing."""
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return " One of " + ", ".join(f"`{choice}`" for choice in typing.get_args(annotation)) + "."
    return ""


def variables() -> dict[str, Any]:
    """Settings fields by environment variable name, in the order of the class."""
    return {str(field.validation_alias): field for field in Settings.model_fields.values()}


def render() -> str:
    rows = []
    for name, field in variables().items():
        setting = SETTINGS.get(name)
        if setting is None:
            raise KeyError(f"{name}: add a description to SETTINGS in docs/gen_configuration.py")
        rows.append(f"| `{name}` | {format_default(field)} | {setting.helm} | {setting.meaning}{choices(field)} |")
    others = [f"| `{name}` | {helm} | {meaning} |" for name, helm, meaning in OTHER_VARIABLES]
    return HEADER + "\n".join(rows) + "\n" + FOOTER_HEADER + "\n".join(others) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python docs/gen_configuration.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
