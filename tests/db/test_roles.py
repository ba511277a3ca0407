"""Two database roles (docs/operations.md): migrations run as the owner, the bot as a role that can only read
and append to the audit trail. PostgreSQL only: SQLite has no roles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from bot.audit.chain import verify_chain
from bot.audit.models import AuditAction
from bot.audit.writer import record_lookup
from bot.cli import main
from bot.db import RUNTIME_PRIVILEGES, Base, engine_url, grant_statements, make_engine, make_sessions
from bot.locks.directory import LockDirectory
from bot.unlock.models import Status
from bot.unlock.policy import UnlockPolicy
from bot.unlock.workflow import UnlockWorkflow
from tests.conftest import BUCKET
from tests.database import NEEDS_POSTGRES, POSTGRES_URL
from tests.terraform import TerraformBackend

DOCS = Path(__file__).resolve().parents[2] / "docs"
KEY = "network/terraform.tfstate"


@dataclass
class Roles:
    owner_url: str
    bot_url: str
    bot_role: str


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> Iterator[Roles]:
    """An owner role and a bot role (cluster-wide, so uniquely named), and a schema the owner owns."""
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    suffix = uuid.uuid4().hex[:10]
    owner, bot, schema = f"tflock_owner_{suffix}", f"tflock_bot_{suffix}", f"tflock_roles_{suffix}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE ROLE {owner} LOGIN"))
        connection.execute(text(f"CREATE ROLE {bot} LOGIN"))
        connection.execute(text(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}"))

    def url(user: str) -> str:
        parsed = engine_url(POSTGRES_URL).set(username=user, password=None)
        return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    try:
        yield Roles(url(owner), url(bot), bot)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            for role in (bot, owner):
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def migrate_as_owner(roles: Roles, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("TFLOCK_MIGRATION_DATABASE_URL", roles.owner_url)
    monkeypatch.setenv("TFLOCK_DATABASE_URL", roles.bot_url)
    assert main(["db", "upgrade"]) == 0
    return capsys.readouterr().out


REFUSED_TO_THE_BOT = [
    "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
    "ALTER TABLE audit_events OWNER TO CURRENT_USER",
    "UPDATE audit_events SET action = 'status'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events",
    "DROP TABLE audit_events",
    "DROP TRIGGER audit_events_append_only ON audit_events",
    "SELECT setval('audit_events_id_seq', 1)",
    "DELETE FROM unlock_requests",
    "CREATE TABLE scratch (id int)",
]


def test_the_bot_role_can_read_and_append_and_nothing_more(
    roles: Roles,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tf: TerraformBackend,
    directory: LockDirectory,
) -> None:
    said = migrate_as_owner(roles, monkeypatch, capsys)
    assert f"granted the bot's role {roles.bot_role}" in said

    engine = make_engine(roles.bot_url)
    try:
        sessions = make_sessions(engine)
        now = datetime.now(UTC)
        record_lookup(sessions, AuditAction.STATUS, at=now, actor="UALICE", state_address=f"{BUCKET}/{KEY}")
        for statement in REFUSED_TO_THE_BOT:
            with (
                pytest.raises((ProgrammingError, DBAPIError), match=r"must be owner|permission denied"),
                engine.begin() as connection,
            ):
                connection.execute(text(statement))

        # The whole force-unlock, with only those rights.
        tf.lock(KEY)
        policy = UnlockPolicy(is_approver=lambda user: user == "UBOB")
        workflow = UnlockWorkflow(sessions, directory, policy, lambda: datetime.now(UTC))
        request = workflow.request(f"{BUCKET}/{KEY}", "UALICE", "the runner died", "CINCIDENT")
        assert workflow.approve(request.id, "UBOB").status is Status.EXECUTED
        assert list(workflow.expire_due()) == [] and list(workflow.reconcile()) == []
        result = verify_chain(sessions)
        assert result.ok, result
        with engine.connect() as connection:
            actions = connection.execute(text("SELECT action FROM audit_events ORDER BY id")).scalars().all()
        assert actions == ["status", "requested", "approved", "executing", "executed"]
    finally:
        engine.dispose()


def test_serve_does_not_migrate_when_given_a_migration_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bot.server

    migrated: list[bool] = []
    monkeypatch.setattr(bot.server, "serve", lambda settings, migrate=True: migrated.append(migrate) or 0)
    monkeypatch.setenv("TFLOCK_MIGRATION_DATABASE_URL", f"sqlite:///{tmp_path / 'owner.db'}")
    monkeypatch.setenv("TFLOCK_DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    assert main(["serve"]) == 0
    monkeypatch.delenv("TFLOCK_MIGRATION_DATABASE_URL")
    assert main(["serve"]) == 0
    assert migrated == [False, True]


def test_every_table_is_in_the_runtime_grants_and_in_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(Base.metadata.tables) | {"alembic_version"} == set(RUNTIME_PRIVILEGES)
    install = (DOCS / "install.md").read_text(encoding="utf-8")
    for statement in grant_statements("tflock_bot"):
        assert f"{statement};" in install, f"docs/install.md lacks: {statement};"
    assert main(["db", "grants", "tflock_bot"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{s};" for s in grant_statements("tflock_bot")]
