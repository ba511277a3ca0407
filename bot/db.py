"""The audit database: engine and sessions from a URL, the declarative base, migrations to head, readiness.

SQLite is the embedded default and PostgreSQL (psycopg 3) the production database. Every write
transaction on SQLite starts with `BEGIN IMMEDIATE`, so two writers queue on `busy_timeout` instead of
one failing with "database is locked" when it upgrades a read lock. Long reads (exports, `audit verify`)
use `reading()`, a plain deferred transaction there, so they never hold the write lock.
"""

from __future__ import annotations

import heapq
import importlib.util
import itertools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, DateTime, Dialect, MetaData, String, Text, create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine

from bot.errors import TflockError

if TYPE_CHECKING:
    from alembic.config import Config


def _migrations() -> Path:
    """Installed: the wheel's bot/migrations; from a checkout: the repository's migrations/ (same files)."""
    spec = importlib.util.find_spec("bot.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "migrations"


MIGRATIONS = _migrations()
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Replicas starting together run migrations one at a time (any constant both sides agree on).
MIGRATION_LOCK_KEY = 0x7F10C4
# Execution option of `reading()` sessions: on SQLite their transaction starts with a deferred BEGIN.
READ_ONLY = "tflock_read_only"

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class DatabaseUnavailable(TflockError):
    """The database could not be reached or refused a statement; the message says which and why."""


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite, which has no time zones, stores them as naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_ESCAPED = re.compile(r"[\\\x00\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(?:(\\)|(0)|x([0-9a-f]{2})|u([0-9a-f]{4}))")


def escape_text(text: str) -> str:
    r"""Any Python string as text both databases store (no NUL, valid UTF-8), reversibly (docs/audit.md).

    `\\` is a backslash, `\0` a NUL, `\xHH` a byte that was not UTF-8 (a lock file's body is decoded with
    surrogateescape), `\uHHHH` any other lone surrogate. Everything else is stored as it is.
    """
    return _ESCAPED.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    if char == "\x00":
        return "\\0"
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def unescape_text(stored: str) -> str:
    """The exact string `escape_text` was given."""
    return _UNESCAPE.sub(_unescape_one, stored) if "\\" in stored else stored


def _unescape_one(match: re.Match[str]) -> str:
    backslash, nul, byte, surrogate = match.groups()
    if backslash:
        return "\\"
    if nul:
        return "\x00"
    if byte:
        return chr(0xDC00 + int(byte, 16))
    return chr(int(surrogate, 16))


class LosslessText(TypeDecorator[str]):
    """Untrusted text from a lock store, stored exactly: NUL bytes, non-UTF-8 bytes and any length, escaped
    reversibly (`escape_text`) so PostgreSQL's text takes it. Equality in SQL compares the escaped forms,
    which are equal exactly when the strings are."""

    impl = Text
    cache_ok = True

    def __init__(self, sqlite_declared: int | None = None) -> None:
        super().__init__()
        # SQLite never enforces a VARCHAR length: a column created as VARCHAR(n) there already holds any
        # length, so it keeps its declaration (no table copy) while PostgreSQL's becomes TEXT.
        self.sqlite_declared = sqlite_declared

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite" and self.sqlite_declared is not None:
            return String(self.sqlite_declared)
        return Text()

    def compare_against_backend(self, dialect: Dialect, conn_type: TypeEngine[Any]) -> bool | None:
        """For Alembic's comparison with a database: the column is as this type creates it."""
        wanted = self.load_dialect_impl(dialect)
        if isinstance(wanted, Text):
            return isinstance(conn_type, Text)
        return isinstance(conn_type, String) and getattr(conn_type, "length", None) == self.sqlite_declared

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else escape_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else unescape_text(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


def engine_url(url: str | URL) -> URL:
    """The URL to connect with: `postgresql://` and `postgres://` mean psycopg 3, the driver we ship."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise DatabaseUnavailable("the database URL is not an SQLAlchemy URL (postgresql://host/db)") from None
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(
    url: str | URL, *, connect_timeout: float | None = None, statement_timeout: float | None = None, **kwargs: Any
) -> Engine:
    """An engine whose every wait is bounded when timeouts are given (what `serve` does).

    PostgreSQL: `connect_timeout`, a server-side `statement_timeout`, TCP keepalives (a peer that vanished
    is noticed in about a minute instead of the kernel's two hours) and a bounded wait for a pooled
    connection. SQLite: its `busy_timeout` bounds the wait for the write lock — the statement timeout when
    one is given, else SQLITE_BUSY_TIMEOUT_MS.
    """
    parsed = engine_url(url)
    if parsed.get_backend_name() == "sqlite":
        busy_ms = SQLITE_BUSY_TIMEOUT_MS if statement_timeout is None else max(1, int(statement_timeout * 1000))
        return _sqlite_engine(parsed, busy_ms=busy_ms, **kwargs)
    if connect_timeout is not None or statement_timeout is not None:
        connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
        if connect_timeout is not None:
            connect_args["connect_timeout"] = max(1, round(connect_timeout))  # libpq takes whole seconds
            kwargs.setdefault("pool_timeout", connect_timeout)
        connect_args.update(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        if statement_timeout is not None:
            # Added to the URL's own `options` (e.g. a search_path), which connect_args would otherwise replace.
            given = parsed.query.get("options", "")
            given = " ".join(given) if isinstance(given, tuple) else given
            connect_args["options"] = f"{given} -c statement_timeout={int(statement_timeout * 1000)}".strip()
        kwargs["connect_args"] = connect_args
    engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
    if statement_timeout is not None:
        _sever_after(engine, statement_timeout + STATEMENT_GRACE_SECONDS)
    return engine


STATEMENT_GRACE_SECONDS = 2.0


class _Deadlines:
    """One thread that cuts connections whose statement outlived its deadline.

    `statement_timeout` is enforced by the server, so it cannot help when the server (or the network to it)
    stops answering: a blocked client waits for TCP to give up, which can be never (a peer whose kernel
    still acknowledges). Past the deadline the socket is shut down under the driver, which then raises an
    OperationalError and SQLAlchemy drops the connection from its pool.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, dbapi_connection: Any, seconds: float) -> int:
        token = next(self._ids)
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + seconds, token, dbapi_connection))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tflock-db-deadlines", daemon=True)
                self._thread.start()
            self._lock.notify()
        return token

    def done(self, token: int) -> None:
        with self._lock:
            self._heap = [entry for entry in self._heap if entry[1] != token]
            heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._lock.wait(timeout=(self._heap[0][0] - time.monotonic()) if self._heap else None)
                _, _, connection = heapq.heappop(self._heap)
            _sever(connection)


def _sever(dbapi_connection: Any) -> None:
    fd = getattr(getattr(dbapi_connection, "pgconn", None), "socket", None)
    if not isinstance(fd, int) or fd < 0:
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:  # shutdown acts on the socket every fd shares
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return
    logging.getLogger(__name__).error("a database statement outlived its deadline; its connection was cut")


_DEADLINES = _Deadlines()


def _sever_after(engine: Engine, seconds: float) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool) -> None:
        conn.info["tflock_deadline"] = _DEADLINES.watch(conn.connection.dbapi_connection, seconds)

    def _stop(conn: Any) -> None:
        token = conn.info.pop("tflock_deadline", None)
        if token is not None:
            _DEADLINES.done(token)

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool) -> None:
        _stop(conn)

    @event.listens_for(engine, "handle_error")
    def _error(context: Any) -> None:
        if context.connection is not None:
            _stop(context.connection)

    ping = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:  # pool_pre_ping on a pooled connection is bounded too
        token = _DEADLINES.watch(dbapi_connection, seconds)
        try:
            return ping(dbapi_connection)
        finally:
            _DEADLINES.done(token)

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: views are built from them once the transaction has ended.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def reading(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads that may be long, streamed through a cursor; it must not write.

    SQLite: a WAL reader (a deferred transaction), which sees one snapshot and never blocks the bot's
    writers. PostgreSQL: cursors are planned for every row, not the first tenth (`cursor_tuple_fraction`);
    otherwise the planner walks the primary key in id order instead of using the filter's index.
    """
    with sessions() as session:
        connection = session.connection(execution_options={READ_ONLY: True})
        if connection.dialect.name == "postgresql":
            session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
        yield session


def upgrade_to_head(url: str | URL) -> None:
    """Run every pending Alembic migration (what `tflock-bot db upgrade` and `serve` do at start)."""
    from alembic import command  # noqa: PLC0415 (Alembic loads only for the commands that migrate)

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"could not migrate the database: {describe_error(exc)}") from exc
    finally:
        engine.dispose()


# What the bot's own role (TFLOCK_DATABASE_URL when migrations run as another role) may do, table by table.
# The audit trail is read and appended to, nothing more: no UPDATE, DELETE or TRUNCATE, and since the role
# owns nothing it cannot ALTER a table or DISABLE its triggers either (docs/operations.md, two roles).
RUNTIME_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "audit_events": ("SELECT", "INSERT"),
    "unlock_requests": ("SELECT", "INSERT", "UPDATE"),  # UPDATE: the guarded status transitions, FOR UPDATE
    "unlock_approvals": ("SELECT", "INSERT"),
    "watch_alerts": ("SELECT", "INSERT", "UPDATE"),
    "pinned_locks": ("SELECT", "INSERT"),
    "holds": ("SELECT", "INSERT", "UPDATE"),  # UPDATE: the guarded status transitions of a hold
    "alembic_version": ("SELECT",),
}
# Sequences behind the ids above (nextval needs USAGE; setval would need UPDATE, which is not granted).
RUNTIME_SEQUENCES = ("audit_events_id_seq", "unlock_approvals_id_seq", "watch_alerts_id_seq")


def grant_statements(role: str, schema: str = "public") -> list[str]:
    """The PostgreSQL GRANTs that give the bot's runtime role exactly what it needs (docs/install.md)."""
    quoted = _identifier(role)
    statements = [f"GRANT USAGE ON SCHEMA {_identifier(schema)} TO {quoted}"]
    statements += [
        f"GRANT {', '.join(privileges)} ON TABLE {table} TO {quoted}"
        for table, privileges in RUNTIME_PRIVILEGES.items()
    ]
    statements += [f"GRANT USAGE ON SEQUENCE {sequence} TO {quoted}" for sequence in RUNTIME_SEQUENCES]
    return statements


def grant_runtime_role(migration_url: str | URL, runtime_url: str | URL) -> str | None:
    """After migrating as the owner role, grant the runtime role its rights; the role's name, or None if
    there is nothing to grant (SQLite, or both URLs name the same user)."""
    owner, runtime = engine_url(migration_url), engine_url(runtime_url)
    if owner.get_backend_name() != "postgresql" or not runtime.username or runtime.username == owner.username:
        return None
    engine = make_engine(owner)
    try:
        with engine.begin() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            for statement in grant_statements(runtime.username, str(schema)):
                connection.execute(text(statement))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"could not grant the bot's role {runtime.username} its rights: {describe_error(exc)}"
        ) from exc
    finally:
        engine.dispose()
    return runtime.username


def _identifier(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic's configuration, built in code so a packaged bot needs no alembic.ini or working directory."""
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.attributes["url"] = engine_url(url).render_as_string(hide_password=False)
    return config


def check_database(engine: Engine) -> None:
    """Readiness: the database answers a query. Raises DatabaseUnavailable saying why not."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"the database is unreachable: {describe_error(exc)}") from exc


def describe_error(exc: SQLAlchemyError) -> str:
    """One line about a database error, without the SQL statement or its parameters."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines()
    return f"{type(original).__name__}: {first[0][:300] if first else 'no detail'}"


def _sqlite_engine(url: URL, *, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS, **kwargs: Any) -> Engine:
    # Bolt runs listeners on worker threads; each connection is still used by one thread at a time.
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own BEGIN handling is switched off so the "begin" hook below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if url.database not in {None, "", ":memory:"}:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: the audit writer relies on it to append to the hash chain.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
