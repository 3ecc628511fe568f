"""The durable alert queue: every accepted alert is a row in the timeline database before the
sender hears 202, and workers take queued rows one at a time.

Writes go through one writer thread that commits in groups: each request waits for a
`synchronous=FULL` commit, and concurrent requests share it, which is how a webhook can afford
FULL (one fsync per batch, not per alert). Dedup decisions are made inside that transaction, so
two Alertmanager replicas sending the same alert at the same moment still open one incident.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from responder.ids import utc_now
from responder.intake.alerts import FIRING, Alert
from responder.intake.routing import Route, lock_key
from responder.timeline import Timeline

DEFAULT_WINDOW = 600


class StoreUnavailable(Exception):
    """The database could not take the alert now (busy, locked, disk full): the sender retries."""


@dataclass(frozen=True)
class Intake:
    """An alert with its routing decided (in the request handler, outside the write lock)."""

    alert: Alert
    route: Route | None
    params: dict[str, Any] | None = None
    limit: str | None = None
    rejected: str | None = None
    no_action: str | None = None


@dataclass(frozen=True)
class Decision:
    result: str  # queued | duplicate | resolved | unmatched | rejected | no_action
    alert_id: int
    dedup_key: str
    incident_id: str | None = None
    playbook: str | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result, "alert_id": self.alert_id, "dedup_key": self.dedup_key}
        for key in ("incident_id", "playbook", "reason"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class QueuedAlert:
    id: int
    source: str
    name: str
    dedup_key: str
    playbook: str
    playbook_path: str
    params: dict[str, Any]
    host_limit: str | None
    lock_key: str | None
    repeats: int
    summary: dict[str, Any]


class AlertStore:
    def __init__(
        self,
        path: Path,
        inventory: str | None = None,
        on_queued: Callable[[], None] = lambda: None,
        batch_wait: float = 0.002,
        max_batch: int = 512,
        busy_timeout: float = 5.0,
    ) -> None:
        Timeline(path).close()  # schema and migrations
        self.path = path
        self.inventory = inventory
        self.on_queued = on_queued
        self.batch_wait = batch_wait
        self.max_batch = max_batch
        self.busy_timeout = busy_timeout
        self._pending: queue.SimpleQueue[tuple[Sequence[Intake], Future[list[Decision]]] | None] = (
            queue.SimpleQueue()
        )
        self._db = self._connect()
        self._reader = self._connect()
        self._reader_lock = threading.Lock()
        self._thread = threading.Thread(target=self._writer, name="alert-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        db.execute("PRAGMA synchronous=FULL")
        return db

    # intake -----------------------------------------------------------------------------------

    def submit(self, intakes: Sequence[Intake]) -> Future[list[Decision]]:
        """Queue alerts for the next group commit; the future resolves once they are on disk."""
        future: Future[list[Decision]] = Future()
        self._pending.put((intakes, future))
        return future

    def close(self) -> None:
        self._pending.put(None)
        self._thread.join(timeout=10)
        self._db.close()
        self._reader.close()

    def _writer(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._pending.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Sequence[Intake], Future[list[Decision]]]]) -> None:
        results: list[list[Decision]] = []
        queued = False
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for intakes, _ in batch:
                    decisions = [self._decide(i) for i in intakes]
                    queued = queued or any(d.result == "queued" for d in decisions)
                    results.append(decisions)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # busy past busy_timeout, locked, disk full, I/O error
            for _, future in batch:
                future.set_exception(StoreUnavailable(str(exc)))
            return
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), decisions in zip(batch, results, strict=True):
            future.set_result(decisions)
        if queued:
            self.on_queued()

    def _decide(self, intake: Intake) -> Decision:
        alert = intake.alert
        now, now_iso = time.time(), utc_now()
        window = intake.route.window if intake.route else DEFAULT_WINDOW
        previous = self._db.execute(
            "SELECT id, incident_id, expires_at FROM alerts WHERE dedup_key=? AND status=? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC LIMIT 1",
            (alert.dedup_key, alert.status, now),
        ).fetchone()
        if previous is not None:
            self._db.execute(
                "UPDATE alerts SET repeats=repeats+1, last_seen=?, "
                "expires_at=CASE WHEN expires_at IS NULL THEN NULL ELSE ? END WHERE id=?",
                (now_iso, now + window, previous["id"]),
            )
            if previous["incident_id"] and alert.status == FIRING:
                self._append(
                    previous["incident_id"],
                    "alert_repeated",
                    f"{alert.source} alert {alert.name!r} repeated (duplicate delivery, no new run)",
                    {"alert_id": previous["id"], "dedup_key": alert.dedup_key},
                )
            return Decision("duplicate", previous["id"], alert.dedup_key, previous["incident_id"])
        if alert.status != FIRING:
            return self._resolved(intake, now_iso)
        if intake.no_action:
            state, reason = "no_action", intake.no_action
        elif intake.route is None:
            state, reason = "unmatched", "no playbook's match: section takes this alert"
        elif intake.rejected:
            state, reason = "rejected", intake.rejected
        else:
            state, reason = "queued", None
        playbook = intake.route.playbook if intake.route else None
        params = intake.params or {}
        alert_id = self._insert(
            intake,
            state=state,
            reason=reason,
            received_at=now_iso,
            expires_at=now + window if alert.windowed else None,
            lock=lock_key(params, intake.limit, self.inventory) if state == "queued" else None,
        )
        return Decision(state, alert_id, alert.dedup_key, None, playbook.name if playbook else None, reason)

    def _resolved(self, intake: Intake, now_iso: str) -> Decision:
        """A resolved alert is recorded and told to its incident; it never triggers or undoes anything."""
        alert = intake.alert
        firing = self._db.execute(
            "SELECT id, incident_id FROM alerts WHERE dedup_key=? AND status=? ORDER BY id DESC LIMIT 1",
            (alert.dedup_key, FIRING),
        ).fetchone()
        incident_id = firing["incident_id"] if firing else None
        alert_id = self._insert(
            intake,
            state="resolved",
            reason="resolved alerts are recorded only; release is a human decision",
            received_at=now_iso,
            expires_at=None,
            lock=None,
            incident_id=incident_id,
        )
        if incident_id:
            self._append(
                incident_id,
                "alert_resolved",
                f"{alert.source} alert {alert.name!r} resolved at the source; containment stays in place "
                f"(undo it with `responder release {incident_id}`)",
                {"alert_id": alert_id, "dedup_key": alert.dedup_key},
            )
        return Decision("resolved", alert_id, alert.dedup_key, incident_id, None, None)

    def _insert(
        self,
        intake: Intake,
        *,
        state: str,
        reason: str | None,
        received_at: str,
        expires_at: float | None,
        lock: str | None,
        incident_id: str | None = None,
    ) -> int:
        alert = intake.alert
        playbook = intake.route.playbook if intake.route and state == "queued" else None
        cursor = self._db.execute(
            "INSERT INTO alerts (received_at, source, status, dedup_key, expires_at, name, host, container, "
            "state, reason, playbook, playbook_path, params, host_limit, lock_key, incident_id, document) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                received_at,
                str(alert.source),
                alert.status,
                alert.dedup_key,
                expires_at,
                alert.name,
                alert.host,
                alert.container,
                state,
                reason,
                playbook.name if playbook else (intake.route.playbook.name if intake.route else None),
                str(playbook.source) if playbook else None,
                _dump(intake.params) if intake.params is not None else None,
                intake.limit,
                lock,
                incident_id,
                _dump(alert.document),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _append(self, incident_id: str, kind: str, message: str, data: dict[str, Any]) -> None:
        seq = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE incident_id=?", (incident_id,)
        ).fetchone()[0]
        self._db.execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
            (incident_id, seq, utc_now(), kind, None, None, "webhook", message, _dump(data)),
        )

    # workers ----------------------------------------------------------------------------------

    def claim_next(self) -> int | None:
        """Take the oldest queued alert for a worker (queued -> claimed)."""
        with self._reader_lock:
            self._reader.execute("BEGIN IMMEDIATE")
            try:
                row = self._reader.execute(
                    "UPDATE alerts SET state='claimed' WHERE id=(SELECT id FROM alerts WHERE state='queued' "
                    "ORDER BY id LIMIT 1) RETURNING id"
                ).fetchone()
                self._reader.execute("COMMIT")
            except BaseException:
                self._reader.execute("ROLLBACK")
                raise
        return int(row[0]) if row else None

    def set_worker(self, alert_id: int, pid: int) -> None:
        self._write_one("UPDATE alerts SET worker_pid=? WHERE id=?", (pid, alert_id))

    def finish_claim(self, alert_id: int, reason: str) -> None:
        """After the worker process ended: an alert still `claimed` never opened an incident."""
        self._write_one(
            "UPDATE alerts SET state='failed', reason=? WHERE id=? AND state='claimed'",
            (reason[-2000:], alert_id),
        )

    def recover(self) -> tuple[int, list[tuple[int, str, int | None]]]:
        """At start-up, after a crash: alerts claimed by a run that never opened its incident go
        back to the queue (nothing ran); alerts whose incident is still `running` are returned
        (alert id, incident, worker pid) so the caller can mark them interrupted once the old
        worker is gone."""
        requeued = self._write_one(
            "UPDATE alerts SET state='queued', worker_pid=NULL WHERE state='claimed'", ()
        )
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT a.id, a.incident_id, a.worker_pid FROM alerts a JOIN incidents i ON i.id=a.incident_id "
                "WHERE a.state='started' AND i.status='running'"
            ).fetchall()
        return requeued, [(r[0], r[1], r[2]) for r in rows]

    def _write_one(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._reader_lock:
            self._reader.execute("BEGIN IMMEDIATE")
            try:
                count = self._reader.execute(sql, args).rowcount
                self._reader.execute("COMMIT")
            except BaseException:
                self._reader.execute("ROLLBACK")
                raise
        return count

    def load(self, alert_id: int) -> QueuedAlert:
        with self._reader_lock:
            row = self._reader.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        if row is None:
            raise KeyError(alert_id)
        return queued_alert(row)

    def counts(self) -> dict[str, int]:
        with self._reader_lock:
            rows = self._reader.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}

    def ping(self) -> None:
        """Readiness: the database answers a read."""
        with self._reader_lock:
            self._reader.execute("SELECT 1 FROM alerts LIMIT 1").fetchall()


def queued_alert(row: sqlite3.Row) -> QueuedAlert:
    return QueuedAlert(
        id=row["id"],
        source=row["source"],
        name=row["name"],
        dedup_key=row["dedup_key"],
        playbook=row["playbook"] or "",
        playbook_path=row["playbook_path"] or "",
        params=json.loads(row["params"] or "{}"),
        host_limit=row["host_limit"],
        lock_key=row["lock_key"],
        repeats=row["repeats"],
        summary={
            "alert_id": row["id"],
            "source": row["source"],
            "name": row["name"],
            "host": row["host"],
            "container": row["container"],
            "dedup_key": row["dedup_key"],
            "received_at": row["received_at"],
        },
    )


def load_alert(path: Path, alert_id: int) -> QueuedAlert:
    """For the worker process: read its alert without starting a writer thread."""
    db = sqlite3.connect(path, timeout=5.0)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise KeyError(alert_id)
    return queued_alert(row)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
