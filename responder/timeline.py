"""The incident timeline: incidents, their events, the step ledger and evidence records.

The connection, its settings, transactions and the schema belong to `responder.db`; this module
owns what is written to those four tables and how it is read back."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from responder import db
from responder.errors import StateError, UsageError
from responder.ids import utc_now
from responder.store_location import DatabaseLocation, controller_name
from responder.vocabulary import OPEN_SQL, UNATTENDED_SQL, IncidentStatus


class ContainerBusy(StateError):
    """Another open incident holds the container's lock."""

    def __init__(self, holder: str, lock_key: str) -> None:
        super().__init__(
            f"incident {holder} is already responding to this container ({lock_key}); "
            f"see `responder show {holder}`"
        )
        self.holder = holder
        self.lock_key = lock_key


@dataclass(frozen=True)
class Incident:
    """One incident as stored: what ran, for whom, where it stands."""

    id: str
    created_at: str
    updated_at: str
    status: IncidentStatus
    playbook: str
    playbook_path: str
    playbook_sha256: str
    severity: str
    params: Mapping[str, Any]
    secret_params: tuple[str, ...]
    trigger: Mapping[str, Any]
    inventory: str | None
    host_limit: str | None
    next_step: str | None
    actor: str
    lock_key: str | None = None
    alert_id: int | None = None


@dataclass(frozen=True)
class Event:
    """One timeline entry; `data` is JSON, already redacted."""

    incident_id: str
    seq: int
    ts: str
    kind: str
    step: str | None
    host: str | None
    actor: str
    message: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class EvidenceRecord:
    """One piece of evidence with both hashes and its custody."""

    incident_id: str
    step_id: str | None
    host: str
    container_id: str | None
    kind: str
    path: str
    source_path: str
    sha256_source: str
    sha256_controller: str | None
    size: int
    method: str
    collector: str
    collected_at: str
    recorded_at: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    controller: str = ""  # the controller holding the file (several may share one timeline)


class Redactor:
    """Replaces known secret values before anything is stored."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets = sorted({s for s in secrets or [] if len(s) >= 4}, key=len, reverse=True)

    def add(self, value: str) -> None:
        """Remember a secret value (values under 4 characters would redact ordinary text)."""
        if len(value) >= 4 and value not in self._secrets:
            self._secrets = sorted([*self._secrets, value], key=len, reverse=True)

    def text(self, value: str) -> str:
        """The text with every known secret replaced."""
        for secret in self._secrets:
            value = value.replace(secret, "********")
        return value

    def data(self, value: Any) -> Any:
        """The structure with every known secret replaced in its strings."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        return value


def insert_event(
    db: db.Connection,
    redactor: Redactor,
    incident_id: str,
    kind: str,
    message: str,
    *,
    step: str | None = None,
    host: str | None = None,
    actor: str = "responder",
    data: Mapping[str, Any] | None = None,
) -> Event:
    """The one way an event is written, inside the caller's write transaction: known secrets
    are redacted from the message and the data first, and `seq` is the incident's next number.
    The Timeline and the intake store (which commits alerts and their events together) both
    write through here."""
    ts = utc_now()
    message = redactor.text(message)
    payload = _dump(redactor.data(dict(data or {})))
    seq = db.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE incident_id=?", (incident_id,)
    ).fetchone()[0]
    db.execute(
        "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
        (incident_id, seq, ts, kind, step, host, actor, message, payload),
    )
    return Event(incident_id, seq, ts, kind, step, host, actor, message, json.loads(payload))


class Timeline:
    """One connection per Timeline object; create one per thread."""

    def __init__(self, path: DatabaseLocation, redactor: Redactor | None = None) -> None:
        self.path = path
        self.controller = controller_name(path)
        self.redactor = redactor or Redactor()
        self._db = db.open_database(path)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def status_counts(self) -> dict[str, int]:
        """Incidents by status (the server's /metrics)."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM incidents GROUP BY status ORDER BY status")
        return {str(status): int(n) for status, n in rows}

    def finished_step_spans(self) -> list[tuple[str, str, str]]:
        """(step id, started, finished) of every step that ran to an outcome (/metrics)."""
        rows = self._db.execute(
            "SELECT step_id, started_at, finished_at FROM steps "
            "WHERE status NOT IN ('running', 'not_run', 'skipped') AND finished_at IS NOT NULL"
        )
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    @contextmanager
    def _write(self) -> Iterator[db.Connection]:
        with self._lock, db.write(self._db) as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[db.Connection]:
        """A write transaction on this timeline's connection, for an owner of another table that
        must change it together with an event (write the event with `insert_event`)."""
        with self._write() as conn:
            yield conn

    # incidents -------------------------------------------------------------------------------

    def create_incident(
        self, incident: Incident, within: Callable[[db.Connection], None] | None = None
    ) -> None:
        """Insert the incident; when it holds a container lock, fail with ContainerBusy if another
        open incident has it. `within` runs in the same transaction: the intake passes the step
        that takes its alert from `claimed` to `started`, so an alert never opens two incidents."""
        try:
            self._create_incident(incident, within)
        except sqlite3.IntegrityError as exc:
            holder = self.lock_holder(incident.lock_key) if incident.lock_key else None
            if holder is None or incident.lock_key is None:
                raise
            raise ContainerBusy(holder, incident.lock_key) from exc

    def open_incident_ids(self) -> list[str]:
        """Incidents still running, paused at a gate or blocked: the ones whose claims hold."""
        rows = self._db.execute("SELECT id FROM incidents WHERE status IN " + OPEN_SQL).fetchall()  # noqa: S608 - status constants, never input
        return [str(r[0]) for r in rows]

    def open_incident_for_alert(self, alert_id: int) -> str | None:
        """The `running` or `blocked` incident opened for a queued alert, if any."""
        row = self._db.execute(
            "SELECT id FROM incidents WHERE alert_id=? AND status IN " + UNATTENDED_SQL,  # noqa: S608 - status constants, never input
            (alert_id,),
        ).fetchone()
        return str(row[0]) if row else None

    def lock_holder(self, lock_key: str) -> str | None:
        """The open incident holding this container lock, if any."""
        row = self._db.execute(
            "SELECT id FROM incidents WHERE lock_key=? AND status IN " + OPEN_SQL,  # noqa: S608 - status constants, never input
            (lock_key,),
        ).fetchone()
        return row[0] if row else None

    def _create_incident(self, incident: Incident, within: Callable[[db.Connection], None] | None) -> None:
        with self._write() as db:
            if within is not None:
                within(db)
            db.execute(
                "INSERT INTO incidents (id, created_at, updated_at, status, playbook, playbook_path, "
                "playbook_sha256, severity, params, secret_params, trigger, inventory, host_limit, next_step, "
                "actor, lock_key, alert_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    incident.id,
                    incident.created_at,
                    incident.updated_at,
                    incident.status,
                    incident.playbook,
                    incident.playbook_path,
                    incident.playbook_sha256,
                    incident.severity,
                    _dump(self.redactor.data(dict(incident.params))),
                    _dump(list(incident.secret_params)),
                    _dump(self.redactor.data(dict(incident.trigger))),
                    incident.inventory,
                    incident.host_limit,
                    incident.next_step,
                    incident.actor,
                    incident.lock_key,
                    incident.alert_id,
                ),
            )

    def set_status(self, incident_id: str, status: IncidentStatus, next_step: str | None = None) -> None:
        """Set an incident's status (and the step it waits at)."""
        try:
            with self._write() as db:
                db.execute(
                    "UPDATE incidents SET status=?, next_step=?, updated_at=? WHERE id=?",
                    (status, next_step, utc_now(), incident_id),
                )
        except sqlite3.IntegrityError as exc:  # reopening an incident whose container another one took
            lock = self.incident(incident_id).lock_key or ""
            raise ContainerBusy(self.lock_holder(lock) or "?", lock) from exc

    def transition(self, incident_id: str, expected: IncidentStatus, status: IncidentStatus) -> bool:
        """Compare-and-set: move the incident to `status` only if it is still `expected`. Two
        approvers (or the API and the CLI) resuming at once: exactly one of them wins."""
        try:
            with self._write() as db:
                changed = db.execute(
                    "UPDATE incidents SET status=?, next_step=NULL, updated_at=? WHERE id=? AND status=?",
                    (status, utc_now(), incident_id, expected),
                ).rowcount
        except sqlite3.IntegrityError as exc:
            lock = self.incident(incident_id).lock_key or ""
            raise ContainerBusy(self.lock_holder(lock) or "?", lock) from exc
        return bool(changed == 1)

    def incident(self, incident_id: str) -> Incident:
        """One incident; UsageError when there is no such incident."""
        row = self._db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
        if row is None:
            raise UsageError(f"no incident {incident_id!r} in {self.path}")
        return _incident(row)

    def incidents(
        self,
        limit: int | None = 50,
        statuses: Sequence[str] = (),
        playbook: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[Incident]:
        """The newest incidents first, narrowed by status, playbook name and creation time (UTC ISO)."""
        where, args = ["1=1"], []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        for clause, value in (
            ("playbook = ?", playbook),
            ("created_at >= ?", since),
            ("created_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = f"SELECT * FROM incidents WHERE {' AND '.join(where)} ORDER BY id DESC"  # noqa: S608 - fixed clauses
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [_incident(r) for r in self._db.execute(query, args).fetchall()]

    def hosts_of(self, incident_id: str) -> list[str]:
        """The hosts the incident's steps reported from, sorted."""
        rows = self._db.execute(
            "SELECT DISTINCT host FROM events WHERE incident_id=? AND host IS NOT NULL ORDER BY host",
            (incident_id,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    # events ----------------------------------------------------------------------------------

    def append(
        self,
        incident_id: str,
        kind: str,
        message: str,
        *,
        step: str | None = None,
        host: str | None = None,
        actor: str = "responder",
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Write one event (redacted) and return it as stored."""
        with self._write() as db:
            return insert_event(
                db, self.redactor, incident_id, kind, message, step=step, host=host, actor=actor, data=data
            )

    def events(self, incident_id: str) -> Iterator[Event]:
        """Stream events in order; never loads the whole timeline into memory."""
        cursor = self._db.execute("SELECT * FROM events WHERE incident_id=? ORDER BY seq", (incident_id,))
        for row in cursor:
            yield Event(
                row["incident_id"],
                row["seq"],
                row["ts"],
                row["kind"],
                row["step"],
                row["host"],
                row["actor"],
                row["message"],
                json.loads(row["data"]),
            )

    def raw_events(
        self, incident_id: str
    ) -> Iterator[tuple[int, str, str, str | None, str | None, str, str, str]]:
        """Stream (seq, ts, kind, step, host, actor, message, data_json) without decoding `data`:
        the exporters pass it through, which keeps a 100k-event export fast and flat in memory."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        cursor.arraysize = 512
        cursor.execute(
            "SELECT seq, ts, kind, step, host, actor, message, data FROM events WHERE incident_id=? ORDER BY seq",
            (incident_id,),
        )
        while rows := cursor.fetchmany():
            yield from rows

    # step ledger -----------------------------------------------------------------------------

    def set_step(
        self, incident_id: str, step_id: str, status: str, outputs: Mapping[str, Any] | None = None
    ) -> None:
        """A step's state on the ledger, with its outputs."""
        now = utc_now()
        with self._write() as db:
            db.execute(
                "INSERT INTO steps (incident_id, step_id, status, started_at, finished_at, outputs) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(incident_id, step_id) DO UPDATE SET "
                "status=excluded.status, finished_at=excluded.finished_at, "
                "outputs=CASE WHEN excluded.outputs='{}' THEN steps.outputs ELSE excluded.outputs END",
                (incident_id, step_id, status, now, now, _dump(self.redactor.data(dict(outputs or {})))),
            )

    def reset_steps(
        self, incident_id: str, statuses: tuple[str, ...], steps: tuple[str, ...] | None = None
    ) -> list[str]:
        """Forget ledger entries in `statuses` (of `steps`, when given) so a resumed or retried
        incident runs those steps again (the events that recorded them stay on the timeline)."""
        marks = ",".join("?" * len(statuses))
        query = f"DELETE FROM steps WHERE incident_id=? AND status IN ({marks})"  # noqa: S608
        args: tuple[str, ...] = (incident_id, *statuses)
        if steps is not None:
            query += f" AND step_id IN ({','.join('?' * len(steps))})"
            args += steps
        with self._write() as db:
            rows = db.execute(query + " RETURNING step_id", args).fetchall()
        return sorted(r[0] for r in rows)

    def steps(self, incident_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """The ledger: step -> (state, outputs)."""
        rows = self._db.execute(
            "SELECT step_id, status, outputs FROM steps WHERE incident_id=? ORDER BY rowid", (incident_id,)
        ).fetchall()
        return {r["step_id"]: (r["status"], json.loads(r["outputs"])) for r in rows}

    # evidence --------------------------------------------------------------------------------

    def add_evidence(self, record: EvidenceRecord) -> None:
        """Record one piece of evidence."""
        with self._write() as db:
            db.execute(
                "INSERT INTO evidence (incident_id, step_id, host, container_id, kind, path, source_path, "
                "sha256_source, sha256_controller, size, method, collector, collected_at, recorded_at, details, "
                "controller) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.incident_id,
                    record.step_id,
                    record.host,
                    record.container_id,
                    record.kind,
                    record.path,
                    record.source_path,
                    record.sha256_source,
                    record.sha256_controller,
                    record.size,
                    record.method,
                    record.collector,
                    record.collected_at,
                    utc_now(),
                    _dump(dict(record.details)),
                    record.controller or self.controller,
                ),
            )

    def evidence(self, incident_id: str) -> list[EvidenceRecord]:
        """An incident's evidence records, in the order they were collected."""
        rows = self._db.execute(
            "SELECT * FROM evidence WHERE incident_id=? ORDER BY id", (incident_id,)
        ).fetchall()
        return [
            EvidenceRecord(
                r["incident_id"],
                r["step_id"],
                r["host"],
                r["container_id"],
                r["kind"],
                r["path"],
                r["source_path"],
                r["sha256_source"],
                r["sha256_controller"],
                r["size"],
                r["method"],
                r["collector"],
                r["collected_at"],
                r["recorded_at"],
                json.loads(r["details"]),
                r["controller"] or "",
            )
            for r in rows
        ]


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _incident(row: db.Row) -> Incident:
    return Incident(
        id=row["id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status=IncidentStatus(row["status"]),
        playbook=row["playbook"],
        playbook_path=row["playbook_path"],
        playbook_sha256=row["playbook_sha256"],
        severity=row["severity"],
        params=json.loads(row["params"]),
        secret_params=tuple(json.loads(row["secret_params"])),
        trigger=json.loads(row["trigger"]),
        inventory=row["inventory"],
        host_limit=row["host_limit"],
        next_step=row["next_step"],
        actor=row["actor"],
        lock_key=row["lock_key"],
        alert_id=row["alert_id"],
    )
