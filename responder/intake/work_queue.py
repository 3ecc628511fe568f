"""The workers' side of the alert queue: taking queued alerts (one replica at a time per alert),
recording who runs them, and giving back what a crashed run or a dead replica left behind.

On SQLite one server owns the queue: a claim is a write transaction, and a crash is recovered
at the next start. On PostgreSQL several replicas share it: a claim is `FOR UPDATE SKIP LOCKED`
(each queued alert goes to exactly one replica, and claims never wait on each other or on the
intake's write lock), each replica holds a lease on the alerts it runs and renews it while it
lives, and the others take over what an expired lease leaves: a claim that never opened its
incident is queued again; an incident whose run was cut off is marked interrupted and resumed
by the replica that won it."""

from __future__ import annotations

import threading
import time
from typing import Any

from responder import db
from responder.ids import utc_iso
from responder.intake.records import QueuedAlert, queued_alert
from responder.store_location import DatabaseLocation
from responder.vocabulary import UNATTENDED_SQL, IncidentStatus
from responder.vocabulary import sql_in as db_in


class WorkQueue:
    """Claims, leases and recovery over the `alerts` table (AlertStore's other half)."""

    _workers_db: db.Connection
    _workers_lock: threading.Lock
    controller: str
    lease: float
    path: DatabaseLocation

    def claim_next(self, group_wait: float = 0.0) -> list[int]:
        """Take the oldest queued alert for a worker (queued -> claimed), with every queued alert
        that may share its incident (same playbook, host limit and params but the container;
        up to STORM_GROUP_LIMIT): an alert storm becomes one fleet incident. With
        `group_wait`, an alert is taken only once it has waited that long for company (the
        alerts of one Alertmanager notification arrive together and need no wait). Empty when
        nothing is ready."""
        cutoff = utc_iso(time.time() - group_wait) if group_wait > 0 else None
        if db.is_postgres(self._workers_db):
            return self._claim_skip_locked(cutoff)
        with self._workers_lock:
            self._workers_db.execute("BEGIN IMMEDIATE")
            try:
                lead = self._workers_db.execute(
                    "SELECT id, group_key, group_cap FROM alerts WHERE state='queued' ORDER BY id LIMIT 1"
                ).fetchone()
                if lead is None or (cutoff is not None and self._received(lead["id"]) > cutoff):
                    self._workers_db.execute("COMMIT")
                    return []
                ids = [int(lead["id"])]
                if lead["group_key"] is not None:
                    ids += [
                        int(row[0])
                        for row in self._workers_db.execute(
                            "SELECT id FROM alerts WHERE state='queued' AND group_key=? AND id>? ORDER BY id LIMIT ?",
                            (lead["group_key"], lead["id"], max(0, int(lead["group_cap"] or 1) - 1)),
                        )
                    ]
                self._workers_db.executemany(
                    "UPDATE alerts SET state='claimed' WHERE id=? AND state='queued'", [(i,) for i in ids]
                )
                self._workers_db.execute("COMMIT")
            except BaseException:
                self._workers_db.execute("ROLLBACK")
                raise
        return ids

    def _claim_skip_locked(self, cutoff: str | None) -> list[int]:
        """PostgreSQL: the same claim, row locks instead of the write lock. A row another replica
        is claiming is skipped, not waited for, and the state change from queued is what makes
        the claim exactly-once. The lease says who holds it and until when."""
        conn = self._workers_db
        with self._workers_lock:
            conn.execute("BEGIN")
            try:
                lead = conn.execute(
                    "SELECT id, group_key, group_cap, received_at FROM alerts WHERE state='queued' "
                    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                ).fetchone()
                if lead is None or (cutoff is not None and str(lead["received_at"]) > cutoff):
                    conn.execute("COMMIT")
                    return []
                ids = [int(lead["id"])]
                if lead["group_key"] is not None:
                    ids += [
                        int(row[0])
                        for row in conn.execute(
                            "SELECT id FROM alerts WHERE state='queued' AND group_key=? AND id>? "
                            "ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
                            (lead["group_key"], lead["id"], max(0, int(lead["group_cap"] or 1) - 1)),
                        )
                    ]
                conn.executemany(
                    "UPDATE alerts SET state='claimed', replica=?, lease_until=? WHERE id=? AND state='queued'",
                    [(self.controller, time.time() + self.lease, i) for i in ids],
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return ids

    def renew_leases(self) -> int:
        """PostgreSQL: this replica still runs what it holds (claims, and alerts whose incident
        it is running); called every lease/3 seconds by the server."""
        return self._write_one(
            "UPDATE alerts SET lease_until=? WHERE replica=? AND (state='claimed' OR (state='started' "  # noqa: S608 - status constants
            "AND incident_id IN (SELECT id FROM incidents WHERE status IN " + UNATTENDED_SQL + ")))",
            (time.time() + self.lease, self.controller),
        )

    def take_over(self) -> tuple[int, list[tuple[int, str]]]:
        """PostgreSQL: what replicas whose lease expired left behind. Their claims that never
        opened an incident go back to the queue (nothing ran for them; any replica may take
        them); the incidents their runs had opened and not finished are won, one replica each
        (a conditional update), and returned as (alert id, incident) for this replica to mark
        interrupted and resume."""
        now = time.time()
        requeued = self._write_one(
            "UPDATE alerts SET state='queued', replica=NULL, worker_pid=NULL, lease_until=NULL "
            "WHERE state='claimed' AND replica IS NOT NULL AND lease_until < ?",
            (now,),
        )
        unfinished = (IncidentStatus.RUNNING, IncidentStatus.BLOCKED, IncidentStatus.INTERRUPTED)
        with self._workers_lock:
            rows = self._workers_db.execute(
                "SELECT a.id, a.incident_id FROM alerts a JOIN incidents i ON i.id=a.incident_id "  # noqa: S608 - status constants
                "WHERE a.state='started' AND a.replica IS NOT NULL AND a.replica<>? AND a.lease_until < ? "
                "AND i.status IN " + db_in(unfinished),
                (self.controller, now),
            ).fetchall()
        won = []
        for alert_id, incident_id in rows:
            if self._write_one(
                "UPDATE alerts SET replica=?, lease_until=?, worker_pid=NULL WHERE id=? AND lease_until < ?",
                (self.controller, now + self.lease, alert_id, now),
            ):
                won.append((int(alert_id), str(incident_id)))
        return requeued, won

    def _received(self, alert_id: int) -> str:
        row = self._workers_db.execute("SELECT received_at FROM alerts WHERE id=?", (alert_id,)).fetchone()
        return str(row[0]) if row else ""

    def set_worker(self, alert_id: int, pid: int) -> None:
        """Record which worker process, of which replica, runs the alert (crash recovery and the
        other replicas look for it)."""
        self._write_one(
            "UPDATE alerts SET worker_pid=?, replica=?, lease_until=? WHERE id=?",
            (pid, self.controller, time.time() + self.lease, alert_id),
        )

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
        # On a shared PostgreSQL queue only this replica's own: the others' are theirs until their
        # lease expires (take_over). SQLite has one server; rows from before leases have no replica.
        mine = " AND (replica=? OR replica IS NULL)" if db.is_postgres(self._workers_db) else ""
        who = (self.controller,) if mine else ()
        requeued = self._write_one(
            "UPDATE alerts SET state='queued', worker_pid=NULL WHERE state='claimed'" + mine,  # noqa: S608 - constant text
            who,
        )
        with self._workers_lock:
            query = (
                "SELECT a.id, a.incident_id, a.worker_pid FROM alerts a JOIN incidents i ON i.id=a.incident_id "  # noqa: S608 - status constants and constant text, never input
                f"WHERE a.state='started' AND i.status IN {UNATTENDED_SQL}{mine.replace('replica', 'a.replica')}"
            )
            rows = self._workers_db.execute(query, who).fetchall()
        return requeued, [(r[0], r[1], r[2]) for r in rows]

    def open_incident_of(self, alert_id: int) -> str | None:
        """The incident this alert's run opened, while it is still `running` or `blocked`: after
        its worker process is gone, nobody is left to close it."""
        with self._workers_lock:
            row = self._workers_db.execute(
                "SELECT a.incident_id FROM alerts a JOIN incidents i ON i.id=a.incident_id "  # noqa: S608 - status constants, never input
                "WHERE a.id=? AND i.status IN " + UNATTENDED_SQL,
                (alert_id,),
            ).fetchone()
        return str(row[0]) if row else None

    def _write_one(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._workers_lock:
            self._workers_db.execute("BEGIN IMMEDIATE")
            try:
                count = int(self._workers_db.execute(sql, args).rowcount)
                self._workers_db.execute("COMMIT")
            except BaseException:
                self._workers_db.execute("ROLLBACK")
                raise
        return count

    def load(self, alert_id: int) -> QueuedAlert:
        """The queued alert as its worker reads it."""
        with self._workers_lock:
            row = self._workers_db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        if row is None:
            raise KeyError(alert_id)
        return queued_alert(row)

    def counts(self) -> dict[str, int]:
        """Alerts by state (the server's /metrics)."""
        with self._workers_lock:
            rows = self._workers_db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}

    def ping(self) -> None:
        """Readiness: the database answers a read (on PostgreSQL, on a connection of its own, so
        that a worker waiting on the database does not hold readiness up)."""
        if db.is_postgres(self._workers_db):
            conn = db.connect(self.path, 2.0)
            try:
                conn.execute("SELECT 1 FROM alerts LIMIT 1").fetchall()
            finally:
                conn.close()
            return
        with self._workers_lock:
            self._workers_db.execute("SELECT 1 FROM alerts LIMIT 1").fetchall()
