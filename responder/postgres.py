"""PostgreSQL as the timeline's store, behind the small connection interface responder's SQLite
code already speaks (execute with `?` placeholders, rows by name and by index, explicit
`BEGIN IMMEDIATE` / `COMMIT`, `lastrowid`, sqlite3's DB-API exception classes).

The one translation that matters is the write transaction. SQLite's `BEGIN IMMEDIATE` makes
every write transaction the only writer; responder's invariants (dedup decided inside the
commit, one decision per approval gate, one open incident per container) were written against
that. Here it becomes `BEGIN` plus a transaction-scoped advisory lock that every replica's
writers take, so the same invariants hold across replicas without rewriting each of them; the
container lock is a partial unique index as well, enforced by the database itself. Workers
claim queued alerts without that lock, with `FOR UPDATE SKIP LOCKED` (intake.store).

psycopg (3) is imported only when a PostgreSQL store is configured."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from responder.errors import ConfigError
from responder.store_location import PostgresLocation

WRITE_LOCK = 0x72737064  # pg_advisory_xact_lock key of responder's write transactions ("rspd")
NOTIFY_CHANNEL = "responder_alerts"  # NOTIFY when alerts are queued or released for the taking
_ID_TABLES = re.compile(r"^\s*INSERT INTO (alerts|evidence)\b", re.I)


class PgRow(tuple[Any, ...]):
    """A row by index and by column name, like sqlite3.Row."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """Column names, in order."""
        return list(self._index)


@functools.lru_cache(maxsize=256)
def _index(names: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def _row_factory(cursor: Any) -> Any:
    index = _index(tuple(column.name for column in cursor.description or ()))
    return lambda values: PgRow(values, index)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> tuple[str, ...]:
    """The statements PostgreSQL runs for one statement written for SQLite."""
    text = sql.strip()
    if text.upper() == "BEGIN IMMEDIATE":  # one round trip: a simple query may hold two statements
        return (f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})",)
    text = text.replace("%", "%%").replace("?", "%s")
    text = text.replace("ORDER BY rowid", "ORDER BY ord")
    if _ID_TABLES.match(text) and "RETURNING" not in text.upper():
        text += " RETURNING id"
    return (text,)


def _translated_error(exc: Exception) -> sqlite3.Error:
    """psycopg's error under the DB-API class responder's code catches (sqlite3's names)."""
    import psycopg

    text = str(exc).strip() or exc.__class__.__name__
    if isinstance(exc, psycopg.errors.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return sqlite3.OperationalError(f"database is locked ({text})")
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown):
        return sqlite3.OperationalError(f"database unavailable: {text}")
    return sqlite3.DatabaseError(text)


class PgCursor:
    """A cursor with sqlite3's shape: fetchone/fetchall/fetchmany, iteration, lastrowid."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.lastrowid: int | None = None
        self.arraysize = 100
        self._plain = False

    @property
    def row_factory(self) -> Any:
        """Rows by name and index (None: plain tuples, for fast streaming)."""
        return None if self._plain else _row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        """Rows by name and index (None: plain tuples, for fast streaming)."""
        from psycopg.rows import tuple_row

        self._plain = value is None
        self._cursor.row_factory = tuple_row if self._plain else _row_factory

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        return int(self._cursor.rowcount)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        """Run one statement written for SQLite (translated); returns this cursor."""
        import psycopg

        statements = translate(sql)
        try:
            for statement in statements[:-1]:
                self._cursor.execute(statement)
            self._cursor.execute(statements[-1], tuple(params) if params else None)
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        if _ID_TABLES.match(statements[-1]) and statements[-1] != sql.strip():
            row = self._cursor.fetchone()
            self.lastrowid = int(row[0]) if row else None
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        """Run one statement for each row of parameters."""
        import psycopg

        try:
            self._cursor.executemany(translate(sql)[-1], [tuple(r) for r in rows])
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        return self

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        return list(self._cursor.fetchall())

    def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to `size` more rows."""
        return list(self._cursor.fetchmany(size or self.arraysize))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def close(self) -> None:
        """Close it."""
        self._cursor.close()


class PgConnection:
    """One PostgreSQL session in autocommit mode (transactions are explicit, as with SQLite)."""

    dialect = "postgresql"

    def __init__(self, location: PostgresLocation, busy_timeout: float = 5.0) -> None:
        try:
            import psycopg  # noqa: F401 - said here, once, if it is missing
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ConfigError("a PostgreSQL store needs psycopg: pip install 'responder[postgres]'") from exc
        self.location = location
        self.busy_timeout = busy_timeout
        self._conn = self._connect()

    def _connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(
                self.location.url,
                password=self.location.password,
                autocommit=True,
                connect_timeout=max(2, int(self.busy_timeout)),
                application_name=f"responder@{self.location.controller}",
                row_factory=_row_factory,
                # A server that stops answering (its machine gone, a network partition) fails the
                # call within seconds instead of holding it, and the lock it waits under, forever.
                tcp_user_timeout=5000,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
            )
            # A writer waits this long for another's lock, then gives up as SQLite's busy_timeout does.
            conn.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        return conn

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        from psycopg.pq import TransactionStatus

        return bool(self._conn.info.transaction_status != TransactionStatus.IDLE)

    def cursor(self) -> PgCursor:
        """A new cursor; a session the server dropped (a restart, a failover) is opened again
        first, when no transaction was open on it."""
        if self._conn.broken or self._conn.closed:
            self._conn = self._connect()
        return PgCursor(self._conn.cursor())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        """Run one statement written for SQLite (translated); returns this cursor."""
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        """Run one statement for each row of parameters."""
        return self.cursor().executemany(sql, rows)

    def pipeline(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run statements (written for SQLite) in one pipeline, in order, in the open
        transaction: one round trip for all of them. Returns each one's first row."""
        import psycopg

        conn = self._conn
        try:
            with conn.pipeline() as pipe:
                cursors = []
                for sql, params in statements:
                    cursor = conn.cursor()
                    cursor.execute(translate(sql)[-1], tuple(params))
                    cursors.append(cursor)
                pipe.sync()
                return [cursor.fetchone() for cursor in cursors]
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc

    def notify(self) -> None:
        """Tell idle workers on every replica that an alert is ready (delivered on commit)."""
        self.execute(f"NOTIFY {NOTIFY_CHANNEL}")

    def close(self) -> None:
        """Close it."""
        self._conn.close()

    def __del__(self) -> None:
        # Like an sqlite3 connection, one dropped without close() just closes (psycopg would warn).
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.closed:
            conn.close()


def listen(location: PostgresLocation, timeout: float) -> Iterator[bool]:
    """A generator that yields True when an alert was queued on any replica (NOTIFY), False when
    `timeout` passed without one; its own connection, in autocommit."""
    import psycopg

    conn = psycopg.connect(location.url, password=location.password, autocommit=True)
    try:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        while True:
            got = False
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                got = True
            yield got
    finally:
        conn.close()


SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    status TEXT NOT NULL,
    playbook TEXT NOT NULL,
    playbook_path TEXT NOT NULL,
    playbook_sha256 TEXT NOT NULL,
    severity TEXT NOT NULL,
    params TEXT NOT NULL,
    secret_params TEXT NOT NULL DEFAULT '[]',
    trigger TEXT NOT NULL,
    inventory TEXT,
    host_limit TEXT,
    next_step TEXT,
    actor TEXT NOT NULL,
    lock_key TEXT,
    alert_id BIGINT
);
CREATE TABLE IF NOT EXISTS events (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    seq BIGINT NOT NULL,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    host TEXT,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (incident_id, seq)
);
CREATE TABLE IF NOT EXISTS steps (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    outputs TEXT NOT NULL DEFAULT '{}',
    ord BIGINT GENERATED BY DEFAULT AS IDENTITY,
    PRIMARY KEY (incident_id, step_id)
);
CREATE TABLE IF NOT EXISTS evidence (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    step_id TEXT,
    host TEXT NOT NULL,
    container_id TEXT,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    source_path TEXT NOT NULL,
    sha256_source TEXT NOT NULL,
    sha256_controller TEXT,
    size BIGINT NOT NULL,
    method TEXT NOT NULL,
    collector TEXT NOT NULL,
    collected_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    controller TEXT
);
CREATE INDEX IF NOT EXISTS events_kind ON events(incident_id, kind);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    expires_at DOUBLE PRECISION,
    name TEXT NOT NULL,
    host TEXT,
    container TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    playbook TEXT,
    playbook_path TEXT,
    params TEXT,
    host_limit TEXT,
    lock_key TEXT,
    repeats BIGINT NOT NULL DEFAULT 0,
    last_seen TEXT,
    incident_id TEXT,
    worker_pid BIGINT,
    document TEXT NOT NULL,
    group_key TEXT,
    group_cap INTEGER,
    replica TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS alerts_dedup ON alerts(dedup_key, status, id);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state, id);
CREATE TABLE IF NOT EXISTS claims (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    claim TEXT NOT NULL,
    PRIMARY KEY (incident_id, claim)
);
CREATE INDEX IF NOT EXISTS claims_by_claim ON claims(claim);
CREATE TABLE IF NOT EXISTS responder_schema (
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL
)
"""


def schema_version(conn: PgConnection) -> int:
    """The version recorded in the database; 0 for an empty one."""
    row = conn.execute("SELECT to_regclass('responder_schema')").fetchone()
    if row is None or row[0] is None:
        return 0
    found = conn.execute("SELECT MAX(version) FROM responder_schema").fetchone()
    return int(found[0] or 0)


def create_or_migrate(conn: PgConnection, version: int, lock_index: str, applied_at: str) -> bool:
    """Create or migrate the schema in one transaction (PostgreSQL's DDL is transactional),
    under the write lock so that two replicas starting at once do it once. True if it changed."""
    if schema_version(conn) == version:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_version(conn) == version:
            conn.execute("COMMIT")
            return False
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("ALTER TABLE evidence ADD COLUMN IF NOT EXISTS controller TEXT")
        conn.execute(lock_index)
        conn.execute("DELETE FROM responder_schema")
        conn.execute(
            "INSERT INTO responder_schema (version, applied_at) VALUES (?, ?)", (version, applied_at)
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True
