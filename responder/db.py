"""The database: connection, PRAGMAs, write transactions, schema and migrations.

An SQLite file by default; a PostgreSQL database when `[store] url` says so (responder.postgres,
behind the same small connection interface, `Connection`), with the same tables and versions.

WAL so readers (`responder show`, the export) never block the run; `BEGIN IMMEDIATE` for every
write because busy_timeout cannot save a deferred transaction that upgrades to a write; FULL
sync because a containment record that vanishes after a power cut is worse than a slow commit.

Tables and their one owner each: incidents, events, steps, evidence -> responder.timeline;
alerts, claims -> responder.intake.store. They are created and migrated together, here, in one
transaction, so two processes opening a new database at once never half-create it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from responder.store_location import DatabaseLocation, PostgresLocation
from responder.vocabulary import OPEN_SQL


class Cursor(Protocol):
    """What responder asks of a cursor (sqlite3.Cursor, postgres.PgCursor)."""

    lastrowid: int | None
    arraysize: int
    row_factory: Any

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement (`?` placeholders)."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    def fetchmany(self, size: int = ..., /) -> list[Any]:
        """Up to `size` more rows."""

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What responder asks of a connection (sqlite3.Connection, postgres.PgConnection): `?`
    placeholders, rows by name and index, explicit BEGIN IMMEDIATE/COMMIT/ROLLBACK."""

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement; returns its cursor."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each row of parameters."""

    def cursor(self) -> Any:
        """A new cursor."""

    def close(self) -> None:
        """Close the connection."""


Row = Any  # sqlite3.Row or postgres.PgRow: by column name and by index

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
    actor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
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
    PRIMARY KEY (incident_id, step_id)
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    step_id TEXT,
    host TEXT NOT NULL,
    container_id TEXT,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    source_path TEXT NOT NULL,
    sha256_source TEXT NOT NULL,
    sha256_controller TEXT,
    size INTEGER NOT NULL,
    method TEXT NOT NULL,
    collector TEXT NOT NULL,
    collected_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_kind ON events(incident_id, kind);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    expires_at REAL,
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
    repeats INTEGER NOT NULL DEFAULT 0,
    last_seen TEXT,
    incident_id TEXT,
    worker_pid INTEGER,
    document TEXT NOT NULL,
    group_key TEXT,
    group_cap INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_dedup ON alerts(dedup_key, status, id);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state, id);
CREATE TABLE IF NOT EXISTS claims (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    claim TEXT NOT NULL,
    PRIMARY KEY (incident_id, claim)
);
CREATE INDEX IF NOT EXISTS claims_by_claim ON claims(claim);
"""

SCHEMA_VERSION = 5  # bump with every change to SCHEMA, _ADDED_COLUMNS or the indexes (both dialects)
# Columns added after the first release, for databases created before them.
_ADDED_COLUMNS = {
    "incidents": {"lock_key": "TEXT", "alert_id": "INTEGER"},
    # Alerts that may share one fleet incident (intake.store.group_key) and how many may; which
    # replica holds a claimed alert and until when (PostgreSQL stores; unused on SQLite).
    "alerts": {"group_key": "TEXT", "group_cap": "INTEGER", "replica": "TEXT", "lease_until": "REAL"},
    # The controller that holds an evidence file (several share one PostgreSQL timeline).
    "evidence": {"controller": "TEXT"},
}
# One open incident per container: the CLI and the webhook never contain the same one at once.
_LOCK_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS incidents_container_lock_v2 ON incidents(lock_key) "
    "WHERE lock_key IS NOT NULL AND status IN " + OPEN_SQL
)
_OLD_INDEXES = ("incidents_container_lock",)


def connect(location: DatabaseLocation, busy_timeout: float = 5.0) -> Connection:
    """A connection with responder's settings: autocommit (transactions are explicit), rows by
    name, waiting up to `busy_timeout` for a lock; for SQLite FULL sync and foreign keys on."""
    if isinstance(location, PostgresLocation):
        from responder.postgres import PgConnection

        return PgConnection(location, busy_timeout)
    return _connect_sqlite(location, busy_timeout)


def is_postgres(conn: Connection) -> bool:
    """Whether the connection is to PostgreSQL (claims there use FOR UPDATE SKIP LOCKED)."""
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def _connect_sqlite(path: Path, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def open_database(location: DatabaseLocation, busy_timeout: float = 5.0) -> Connection:
    """Connect, creating or migrating the schema first if needed; an SQLite file is made 0600."""
    if isinstance(location, PostgresLocation):
        from responder.ids import utc_now
        from responder.postgres import PgConnection, create_or_migrate

        pg = PgConnection(location, busy_timeout)
        try:
            create_or_migrate(pg, SCHEMA_VERSION, _LOCK_INDEX, utc_now())
        except BaseException:
            pg.close()
            raise
        return pg
    location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = _connect_sqlite(location, busy_timeout)
    _initialise(conn)
    location.chmod(0o600)
    return conn


def schema_status(location: DatabaseLocation) -> tuple[int, int]:
    """(version the database has, version this responder needs), without migrating: 0 for a
    database (or SQLite file) that does not exist yet."""
    if isinstance(location, PostgresLocation):
        from responder.postgres import PgConnection, schema_version

        pg = PgConnection(location)
        try:
            return schema_version(pg), SCHEMA_VERSION
        finally:
            pg.close()
    if not location.exists():
        return 0, SCHEMA_VERSION
    conn = _connect_sqlite(location, 5.0)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0]), SCHEMA_VERSION
    finally:
        conn.close()


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Locked or busy past busy_timeout: worth retrying, not the caller's fault."""
    text = str(exc)
    return "locked" in text or "busy" in text


@contextmanager
def write(conn: Connection) -> Iterator[Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE), rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _initialise(conn: sqlite3.Connection) -> None:
    """WAL mode and the schema. Switching the journal mode needs the database to itself and
    does not wait on the busy handler, so a second process or thread opening a fresh database
    at the same moment retries here instead of failing."""
    deadline = time.monotonic() + 10
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return  # created or migrated already: every CLI start skips the DDL
            _create_or_migrate(conn)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _create_or_migrate(conn: sqlite3.Connection) -> None:
    """The DDL in one write transaction, the version checked again inside it: two connections
    opening a fresh or old database at once (the CLI and its Slack thread, two workers) must
    not both add the same column."""
    with write(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _migrate(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _migrate(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    for name in _OLD_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.execute(_LOCK_INDEX)
