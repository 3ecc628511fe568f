from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from responder import db
from responder.ids import INCIDENT_ID, new_incident_id
from responder.store_location import DatabaseLocation
from responder.timeline import Incident, Redactor, Timeline
from responder.vocabulary import IncidentStatus


def make(tl: Timeline, incident_id: str = "INC-20260101-000000-abcd") -> str:
    tl.create_incident(
        Incident(
            incident_id,
            "t",
            "t",
            IncidentStatus.RUNNING,
            "p",
            "/p.yml",
            "0" * 64,
            "high",
            {"container": "web"},
            (),
            {"source": "cli"},
            None,
            None,
            None,
            "me",
        )
    )
    return incident_id


def test_ids_sort_by_time_and_match_the_pattern() -> None:
    a, b = new_incident_id(), new_incident_id()
    assert INCIDENT_ID.match(a) and INCIDENT_ID.match(b)
    assert a[:19] <= b[:19]


def test_events_are_sequenced_and_timestamped(database: DatabaseLocation) -> None:
    tl = Timeline(database)
    iid = make(tl)
    for i in range(5):
        tl.append(iid, "note", f"m{i}", step="s", host="h", data={"i": i})
    events = list(tl.events(iid))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e.ts) for e in events)
    assert events[2].data == {"i": 2}


def test_wal_and_private_file(tmp_path: Path) -> None:
    tl = Timeline(tmp_path / "t.db")
    assert tl._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "t.db").stat().st_mode & 0o777 == 0o600


def test_concurrent_writers_never_collide(database: DatabaseLocation) -> None:
    path = database
    iid = make(Timeline(path))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        tl = Timeline(path)
        try:
            for i in range(50):
                tl.append(iid, "w", f"{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = [e.seq for e in Timeline(path).events(iid)]
    assert seqs == list(range(1, 201))


def test_redaction_reaches_messages_data_and_params(database: DatabaseLocation) -> None:
    tl = Timeline(database, Redactor(["hunter2-secret"]))
    iid = make(tl)
    tl.append(iid, "x", "token hunter2-secret leaked", data={"nested": ["a hunter2-secret b"]})
    raw = [tuple(r) for r in db.connect(database).execute("SELECT message, data FROM events").fetchall()]
    assert "hunter2" not in str(raw)


def test_step_ledger_keeps_outputs(database: DatabaseLocation) -> None:
    tl = Timeline(database)
    iid = make(tl)
    tl.set_step(iid, "a", "running")
    tl.set_step(iid, "a", "succeeded", {"x": 1})
    tl.set_step(iid, "a", "succeeded")
    assert tl.steps(iid) == {"a": ("succeeded", {"x": 1})}


def test_a_database_from_before_the_webhook_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    from responder.db import SCHEMA_VERSION

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE incidents (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
        "status TEXT NOT NULL, playbook TEXT NOT NULL, playbook_path TEXT NOT NULL, playbook_sha256 TEXT NOT NULL, "
        "severity TEXT NOT NULL, params TEXT NOT NULL, secret_params TEXT NOT NULL DEFAULT '[]', trigger TEXT NOT NULL, "
        "inventory TEXT, host_limit TEXT, next_step TEXT, actor TEXT NOT NULL);"
        "INSERT INTO incidents VALUES ('INC-20261101-000000-0001', 't', 't', 'succeeded', 'p', '/p.yml', 'x', "
        "'high', '{}', '[]', '{}', NULL, NULL, NULL, 'someone');"
    )
    old.commit()
    old.close()
    timeline = Timeline(path)
    assert timeline.incident("INC-20261101-000000-0001").lock_key is None  # old rows still read
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(incidents)")}
    assert {"lock_key", "alert_id"} <= columns
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "incidents_container_lock_v2" in indexes and "incidents_container_lock" not in indexes
    assert {"alerts", "claims"} <= {
        row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }


def test_many_connections_opening_a_fresh_database_at_once(
    database: DatabaseLocation, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The CLI, its Slack thread and the server's workers (or several replicas) may all open a
    new database at the same moment: the schema and its migrations are applied exactly once."""
    import threading

    errors: list[BaseException] = []
    for round_ in range(5):
        path: DatabaseLocation = (
            tmp_path / f"fresh{round_}.db"
            if isinstance(database, Path)
            else request.getfixturevalue("postgres_server").fresh_database()
        )
        barrier = threading.Barrier(8)

        def open_it(path: DatabaseLocation = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                Timeline(path).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_the_ledger_lists_steps_in_the_order_they_ran(database: DatabaseLocation) -> None:
    """`responder show` and the run's last line list steps as they ran, not alphabetically."""
    tl = Timeline(database)
    incident = make(tl)
    for step in ("preserve_logs", "isolate", "snapshot"):
        tl.set_step(incident, step, "running")
    tl.set_step(incident, "preserve_logs", "succeeded", {"x": 1})  # an update keeps its place
    assert list(tl.steps(incident)) == ["preserve_logs", "isolate", "snapshot"]
