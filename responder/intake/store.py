"""The durable alert queue: every accepted alert is a row in the timeline database before the
sender hears 202, and workers take queued rows one at a time.

Alerts are decided in group commits (the server's on its event loop, `submit_async`; elsewhere
a writer thread, `submit`): concurrent requests share one synchronous=FULL commit, and dedup is
decided inside it, so two Alertmanager replicas sending one alert at once open one incident."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from responder import db
from responder.errors import Unavailable
from responder.ids import utc_now
from responder.intake.alerts import FIRING, Alert
from responder.intake.pipelined import decide_pipelined, pipeline
from responder.intake.records import (
    Decision,
    Intake,
    Seen,
    alert_row,
    settle,
)
from responder.intake.work_queue import WorkQueue
from responder.locks import lock_key
from responder.postgres import NOTIFY_CHANNEL
from responder.store_location import DEFAULT_LEASE, DatabaseLocation, PostgresLocation, controller_name
from responder.timeline import Event, Redactor, insert_event
from responder.vocabulary import EventKind

DEFAULT_WINDOW = 600
# Repeats counted in memory since the last commit, added to their alert (RETURNING for its event).
REPEAT_COUNT = (
    "UPDATE alerts SET repeats=repeats+?, last_seen=?, "
    "expires_at=CASE WHEN expires_at IS NULL OR expires_at >= ? THEN expires_at ELSE ? END "
    "WHERE id=? RETURNING incident_id, source, name, status, dedup_key"
)
INSERT_ALERT = (
    "INSERT INTO alerts (received_at, source, status, dedup_key, expires_at, name, host, container, "
    "state, reason, playbook, playbook_path, params, host_limit, lock_key, incident_id, document, "
    "group_key, group_cap) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
RECENT_LIMIT = 200_000  # alert identities remembered for the duplicate fast path
REPEAT_FLUSH = 0.2  # seconds before counted repeats are written


class StoreUnavailable(Unavailable):
    """The database could not take the alert now (busy, locked, disk full): the sender retries."""


class AlertStore(WorkQueue):
    """The durable alert queue: decides alerts in group commits; workers take them through the
    WorkQueue side (claims, leases, recovery)."""

    def __init__(
        self,
        path: DatabaseLocation,
        inventory: str | None = None,
        on_queued: Callable[[], None] = lambda: None,
        on_event: Callable[[Event], None] = lambda e: None,
        busy_timeout: float = 5.0,
    ) -> None:
        db.open_database(path).close()  # schema and migrations
        self.path = path
        self.controller = controller_name(path)  # this replica, on the alerts it holds
        self.lease = path.lease if isinstance(path, PostgresLocation) else DEFAULT_LEASE
        self.inventory = inventory
        self.on_queued = on_queued
        self.on_event = on_event  # timeline events this store wrote, once committed (Slack hears of them)
        # secrets this process knows (the server adds its webhook secrets): never on the timeline
        self.redactor = Redactor()
        self._appended: list[Event] = []
        self.busy_timeout = busy_timeout
        # Intake decisions are written on one path, _transaction: group commits on the server's
        # event loop (submit_async), or one caller at a time elsewhere (submit). The worker threads' own connection takes their claims
        # and single-row updates (claim_next, set_worker, finish_claim, recover) and the reads.
        self._workers_db = self._connect()
        self._workers_lock = threading.Lock()
        self._loop_db: db.Connection | None = None
        self._direct_db: db.Connection | None = None  # submit(), outside an event loop
        self._direct_lock = threading.Lock()
        self._loop_pending: list[tuple[Sequence[Intake], asyncio.Future[list[Decision]]]] = []
        self._loop_scheduled = False
        self._writer: ThreadPoolExecutor | None = None  # PostgreSQL: group commits off the loop
        self._writing = False  # a PostgreSQL group commit is in flight
        self._recent: dict[tuple[str, str], Seen] = {}
        self._repeats: dict[int, tuple[int, str, float | None]] = {}  # id -> (count, last seen, expires)
        self._memory_lock = threading.Lock()
        self._repeat_flush_scheduled = False

    def _connect(self, busy_timeout: float | None = None) -> db.Connection:
        return db.connect(self.path, self.busy_timeout if busy_timeout is None else busy_timeout)

    # intake -----------------------------------------------------------------------------------

    def submit(self, intakes: Sequence[Intake]) -> list[Decision]:
        """Decide alerts from outside the server's event loop (tools, tests, several threads at
        once): the same transaction as the server's group commit, one caller at a time, waiting
        up to busy_timeout for the database; returns once they are on disk."""
        with self._direct_lock:
            if self._direct_db is None:
                self._direct_db = self._connect()
            try:
                return self._transaction(self._direct_db, [intakes])[0]
            except sqlite3.OperationalError as exc:  # busy past busy_timeout, locked, disk full
                raise StoreUnavailable(str(exc)) from exc

    def submit_async(self, intakes: Sequence[Intake]) -> asyncio.Future[list[Decision]]:
        """Group commit on the event loop's own thread, for the server: every request parsed in one
        turn of the loop shares one FULL commit, run once that turn's callbacks are done. No
        writer thread means no GIL hand-over per acknowledgement (measured: 0.40x -> see B4).
        A busy database is retried on a timer, not waited for, so the loop keeps serving;
        after `busy_timeout` in all the requests get StoreUnavailable (503)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Decision]] = loop.create_future()
        self._loop_pending.append((intakes, future))
        if not self._loop_scheduled:
            self._loop_scheduled = True
            loop.call_soon(self._loop_flush, loop)
        return future

    def known_duplicates(self, alerts: Sequence[Alert]) -> list[Decision] | None:
        """The duplicate fast path: when every alert of a request repeats an alert already
        committed, answer at once. A repeat changes nothing that must survive a crash (the
        alert it repeats is on disk), so its count is kept in memory and written within
        REPEAT_FLUSH seconds, with one timeline event per alert rather than one per delivery."""
        now = time.time()
        found: list[Seen] = []
        with self._memory_lock:
            for alert in alerts:
                seen = self._recent.get((alert.dedup_key, alert.status))
                if seen is None or (seen.expires_at is not None and seen.expires_at <= now):
                    return None
                found.append(seen)
            now_iso = utc_now()
            for seen in found:
                if seen.window is not None:
                    seen.expires_at = now + seen.window
                count = self._repeats.get(seen.alert_id, (0, "", None))[0]
                self._repeats[seen.alert_id] = (count + 1, now_iso, seen.expires_at)
        if not self._repeat_flush_scheduled:
            self._repeat_flush_scheduled = True
            loop = asyncio.get_running_loop()
            loop.call_later(REPEAT_FLUSH, self._loop_write_repeats, loop)
        return [
            Decision("duplicate", seen.alert_id, alert.dedup_key)
            for seen, alert in zip(found, alerts, strict=True)
        ]

    def _loop_write_repeats(self, loop: asyncio.AbstractEventLoop) -> None:
        self._repeat_flush_scheduled = False
        if not self._repeats:
            return
        if isinstance(self.path, PostgresLocation):
            self._pg_writer().submit(self._repeats_in_thread)
            return
        if self._loop_db is None:
            self._loop_db = self._connect(busy_timeout=0.02)
        try:
            self._transaction(self._loop_db, [])
        except sqlite3.Error:  # busy or full: the counts stay in memory; try again
            self._repeat_flush_scheduled = True
            loop.call_later(REPEAT_FLUSH * 5, self._loop_write_repeats, loop)

    def _repeats_in_thread(self) -> None:
        """PostgreSQL: write the counted repeats on the writer thread; on failure they stay in
        memory for the next commit (or close)."""
        with contextlib.suppress(sqlite3.Error):
            if self._loop_db is None:
                self._loop_db = self._connect()
            self._transaction(self._loop_db, [])

    def _loop_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_scheduled = False
        batch, self._loop_pending = self._loop_pending, []
        deadline = time.monotonic() + self.busy_timeout
        if isinstance(self.path, PostgresLocation):
            # Over the network a commit can stall (a failover, a partition): never on the event
            # loop. One writer thread, one group commit at a time: what arrives while one is in
            # flight waits for it and goes in the next, together (a group commit per round trip,
            # not per turn of the loop).
            if self._writing:
                self._loop_pending[:0] = batch
                return
            self._writing = True
            self._pg_writer().submit(self._write_in_thread, loop, batch, deadline)
            return
        self._loop_attempt(loop, batch, deadline)

    def _written(
        self, loop: asyncio.AbstractEventLoop, outcomes: list[tuple[asyncio.Future[Any], Any]]
    ) -> None:
        """On the loop, after a PostgreSQL group commit: answer its requests, start the next."""
        self._writing = False
        settle(outcomes)
        if self._loop_pending and not self._loop_scheduled:
            self._loop_scheduled = True
            loop.call_soon(self._loop_flush, loop)

    def _pg_writer(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-writer")
        return self._writer

    def _write_in_thread(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Sequence[Intake], asyncio.Future[list[Decision]]]],
        deadline: float,
    ) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any]]
        while True:
            try:
                if self._loop_db is None:
                    # waits for another replica's write lock in the server's queue (no polling),
                    # up to busy_timeout; the event loop is not the one waiting
                    self._loop_db = self._connect()
                results = self._transaction(self._loop_db, [intakes for intakes, _ in batch])
                outcomes = [(future, d) for (_, future), d in zip(batch, results, strict=True)]
            except sqlite3.OperationalError as exc:
                if db.is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                outcomes = [(future, StoreUnavailable(str(exc))) for _, future in batch]
            except Exception as exc:
                outcomes = [(future, exc) for _, future in batch]
            break
        loop.call_soon_threadsafe(self._written, loop, outcomes)

    def _loop_attempt(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Sequence[Intake], asyncio.Future[list[Decision]]]],
        deadline: float,
    ) -> None:
        if self._loop_db is None:
            self._loop_db = self._connect(busy_timeout=0.02)
        try:
            results = self._transaction(self._loop_db, [intakes for intakes, _ in batch])
        except sqlite3.OperationalError as exc:
            if db.is_busy(exc) and time.monotonic() < deadline:
                loop.call_later(0.01, self._loop_attempt, loop, batch, deadline)
                return
            settle([(future, StoreUnavailable(str(exc))) for _, future in batch])
            return
        except Exception as exc:
            settle([(future, exc) for _, future in batch])
            return
        settle([(future, decisions) for (_, future), decisions in zip(batch, results, strict=True)])

    def close(self) -> None:
        """Write the repeats still counted in memory, then close the connections."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        final = self._loop_db or self._connect()
        with contextlib.suppress(sqlite3.Error):
            self._transaction(final, [])
        final.close()
        if self._direct_db is not None:
            self._direct_db.close()
        self._workers_db.close()

    def _transaction(self, db: db.Connection, batch: list[Sequence[Intake]]) -> list[list[Decision]]:
        """Decide and record a group of requests' alerts in one FULL commit (with the repeats
        counted in memory since the last one)."""
        results: list[list[Decision]] = []
        with self._memory_lock:
            repeats, self._repeats = self._repeats, {}
        try:
            db.execute("BEGIN IMMEDIATE")
            now, now_iso = time.time(), utc_now()  # one clock reading per group commit
            self._write_repeats(db, repeats)
            if getattr(db, "dialect", "") == "postgresql" and all(
                i.alert.status == FIRING for intakes in batch for i in intakes
            ):
                flat = decide_pipelined(self, db, [i for intakes in batch for i in intakes], now, now_iso)
                for intakes in batch:
                    results.append(flat[: len(intakes)])
                    flat = flat[len(intakes) :]
            else:
                for intakes in batch:
                    results.append([self._decide(db, i, now, now_iso) for i in intakes])
            if getattr(db, "dialect", "") == "postgresql" and any(
                d.result == "queued" for decisions in results for d in decisions
            ):
                # idle workers of every replica hear of it when it commits (one round trip for both)
                db.execute(f"NOTIFY {NOTIFY_CHANNEL}; COMMIT")
            else:
                db.execute("COMMIT")
        except BaseException:
            self._appended.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
            with self._memory_lock:  # put the counts back for the next commit
                for alert_id, (count, seen_at, expires) in repeats.items():
                    newer = self._repeats.get(alert_id, (0, seen_at, expires))
                    self._repeats[alert_id] = (count + newer[0], newer[1], newer[2])
            raise
        self._remember(batch, results, now)
        appended, self._appended = self._appended, []
        for event in appended:
            self.on_event(event)
        if any(d.result == "queued" for decisions in results for d in decisions):
            self.on_queued()
        return results

    def _remember(self, batch: list[Sequence[Intake]], results: list[list[Decision]], now: float) -> None:
        with self._memory_lock:
            for intakes, decisions in zip(batch, results, strict=True):
                for intake, decision in zip(intakes, decisions, strict=True):
                    alert = intake.alert
                    if alert.status == FIRING and not intake.acts:
                        continue  # the fast path never answers for a playbook that did not see it
                    window = float(intake.route.window if intake.route else DEFAULT_WINDOW)
                    self._recent[(alert.dedup_key, alert.status)] = Seen(
                        decision.alert_id,
                        window if alert.windowed else None,
                        now + window if alert.windowed else None,
                    )
            while len(self._recent) > RECENT_LIMIT:
                del self._recent[next(iter(self._recent))]

    def _write_repeats(self, db: db.Connection, repeats: dict[int, tuple[int, str, float | None]]) -> None:
        statements = [
            (REPEAT_COUNT, (count, seen_at, float(expires or 0), float(expires or 0), alert_id))
            for alert_id, (count, seen_at, expires) in repeats.items()
        ]
        if getattr(db, "dialect", "") == "postgresql":
            rows = pipeline(db, statements)
        else:  # one statement at a time on the local file: microseconds each
            rows = [db.execute(sql, args).fetchone() for sql, args in statements]
        for (alert_id, (count, _, _)), row in zip(repeats.items(), rows, strict=True):
            if row is not None and row["incident_id"] and row["status"] == FIRING:
                times = "once" if count == 1 else f"{count} times"
                self._append(
                    db,
                    row["incident_id"],
                    EventKind.ALERT_REPEATED,
                    f"{row['source']} alert {row['name']!r} repeated {times} (duplicate deliveries, no new run)",
                    {"alert_id": alert_id, "dedup_key": row["dedup_key"], "repeats": count},
                )

    def _decide(self, db: db.Connection, intake: Intake, now: float, now_iso: str) -> Decision:
        alert = intake.alert
        window = intake.route.window if intake.route else DEFAULT_WINDOW
        # Find and count a repeat in one statement: most deliveries in a burst are repeats. A
        # firing alert repeats only one that was routed the same way: an unmatched or rejected
        # delivery never swallows a later one that a playbook takes (same rule, higher priority).
        previous = db.execute(
            "UPDATE alerts SET repeats=repeats+1, last_seen=?, "
            "expires_at=CASE WHEN expires_at IS NULL THEN NULL ELSE ? END "
            "WHERE id=(SELECT id FROM alerts WHERE dedup_key=? AND status=? "
            "AND (expires_at IS NULL OR expires_at > ?) "
            "AND (? OR (state IN ('unmatched', 'rejected', 'no_action')) = ?) "
            "ORDER BY id DESC LIMIT 1) RETURNING id, incident_id",
            (
                now_iso,
                now + window,
                alert.dedup_key,
                alert.status,
                now,
                alert.status != FIRING,
                not intake.acts,
            ),
        ).fetchone()
        if previous is not None:
            if previous["incident_id"] and alert.status == FIRING:
                self._append(
                    db,
                    previous["incident_id"],
                    EventKind.ALERT_REPEATED,
                    f"{alert.source} alert {alert.name!r} repeated (duplicate delivery, no new run)",
                    {"alert_id": previous["id"], "dedup_key": alert.dedup_key},
                )
            return Decision("duplicate", previous["id"], alert.dedup_key, previous["incident_id"])
        if alert.status != FIRING:
            return self._resolved(db, intake, now_iso)
        state, reason, expires_at, lock = self.firing_plan(intake, now)
        playbook = intake.route.playbook if intake.route else None
        alert_id = self._insert(
            db, intake, state=state, reason=reason, received_at=now_iso, expires_at=expires_at, lock=lock
        )
        return Decision(state, alert_id, alert.dedup_key, None, playbook.name if playbook else None, reason)

    def firing_plan(self, intake: Intake, now: float) -> tuple[str, str | None, float | None, str | None]:
        """A new firing alert's state, reason, expiry and container lock, before it is written."""
        alert = intake.alert
        window = intake.route.window if intake.route else DEFAULT_WINDOW
        if intake.no_action:
            state, reason = "no_action", intake.no_action
        elif intake.route is None:
            state, reason = "unmatched", "no playbook's match: section takes this alert"
        elif intake.rejected:
            state, reason = "rejected", intake.rejected
        else:
            state, reason = "queued", None
        playbook = intake.route.playbook if intake.route else None
        lock = (
            lock_key(playbook, intake.params or {}, intake.limit, self.inventory)
            if state == "queued" and playbook
            else None
        )
        return state, reason, now + window if alert.windowed else None, lock

    def _resolved(self, db: db.Connection, intake: Intake, now_iso: str) -> Decision:
        """A resolved alert is recorded and told to its incident; it never triggers or undoes anything."""
        alert = intake.alert
        firing = db.execute(
            "SELECT id, incident_id FROM alerts WHERE dedup_key=? AND status=? ORDER BY id DESC LIMIT 1",
            (alert.dedup_key, FIRING),
        ).fetchone()
        incident_id = firing["incident_id"] if firing else None
        alert_id = self._insert(
            db,
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
                db,
                incident_id,
                EventKind.ALERT_RESOLVED,
                f"{alert.source} alert {alert.name!r} resolved at the source; containment stays in place "
                f"(undo it with `responder release {incident_id}`)",
                {"alert_id": alert_id, "dedup_key": alert.dedup_key},
            )
        return Decision("resolved", alert_id, alert.dedup_key, incident_id, None, None)

    def _insert(
        self,
        db: db.Connection,
        intake: Intake,
        *,
        state: str,
        reason: str | None,
        received_at: str,
        expires_at: float | None,
        lock: str | None,
        incident_id: str | None = None,
    ) -> int:
        row = alert_row(intake, self.redactor, state, reason, received_at, expires_at, lock, incident_id)
        cursor = db.execute(INSERT_ALERT, row)
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def append_event(
        self, db: db.Connection, incident_id: str, kind: str, message: str, data: dict[str, Any]
    ) -> None:
        """An event in this store's transaction (the pipelined PostgreSQL path writes them too)."""
        self._append(db, incident_id, kind, message, data)

    def _append(
        self, db: db.Connection, incident_id: str, kind: str, message: str, data: dict[str, Any]
    ) -> None:
        # through the timeline's one redacting write path, in this store's transaction
        event = insert_event(db, self.redactor, incident_id, kind, message, actor="webhook", data=data)
        self._appended.append(event)
