"""PostgreSQL: a group commit's firing alerts decided in one round trip (and the repeats counted in
memory since the last commit added in one more: store._write_repeats).

On SQLite each alert is two statements on a local file: microseconds. Over the network each
statement is a round trip, and on a busy server the writer thread also waits for the GIL after
each one: two statements per alert made a commit of a dozen alerts cost about 15 ms, and every
request behind it waited. Here each alert is one statement that finds and counts a repeat or,
if there is none, inserts it (a data-modifying CTE), and the whole group is sent in one
pipeline: the server runs them in order, in the commit's transaction, so an alert repeated
within the group is found by the statement after the one that inserted it. The decisions are
the same as AlertStore._decide's, which the store tests check on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from responder.intake.records import Decision, Intake, alert_row
from responder.vocabulary import EventKind

if TYPE_CHECKING:
    from responder.intake.store import AlertStore

# The repeat lookup of AlertStore._decide, then the insert of AlertStore._insert when it found
# nothing; one row back: (id, incident_id, was it a repeat).
DECIDE = (
    "WITH prev AS (UPDATE alerts SET repeats=repeats+1, last_seen=?, "
    "expires_at=CASE WHEN expires_at IS NULL THEN NULL ELSE ? END "
    "WHERE id=(SELECT id FROM alerts WHERE dedup_key=? AND status=? "
    "AND (expires_at IS NULL OR expires_at > ?) "
    "AND (? OR (state IN ('unmatched', 'rejected', 'no_action')) = ?) "
    "ORDER BY id DESC LIMIT 1) RETURNING id, incident_id), "
    "ins AS (INSERT INTO alerts (received_at, source, status, dedup_key, expires_at, name, host, container, "
    "state, reason, playbook, playbook_path, params, host_limit, lock_key, incident_id, document, "
    "group_key, group_cap) SELECT ?,?,?,?,?::double precision,?,?,?,?,?,?,?,?,?,?,?,?,?,?::integer "
    "WHERE NOT EXISTS (SELECT 1 FROM prev) RETURNING id) "
    "SELECT id, incident_id, true FROM prev UNION ALL SELECT id, NULL, false FROM ins"
)


def pipeline(conn: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
    """Statements in one round trip on a postgres.PgConnection; each one's first row."""
    return list(conn.pipeline(statements)) if statements else []


def decide_pipelined(
    store: AlertStore, conn: Any, intakes: Sequence[Intake], now: float, now_iso: str
) -> list[Decision]:
    """Firing alerts only (a resolved one takes the sequential path); inside the caller's
    transaction, on a postgres.PgConnection."""
    from responder.intake.store import DEFAULT_WINDOW

    plans = []
    statements = []
    for intake in intakes:
        alert = intake.alert
        window = intake.route.window if intake.route else DEFAULT_WINDOW
        plan = store.firing_plan(intake, now)
        state, reason, expires_at, lock = plan
        plans.append(plan)
        lookup = (now_iso, now + window, alert.dedup_key, alert.status, now, False, not intake.acts)
        statements.append(
            (DECIDE, lookup + alert_row(intake, store.redactor, state, reason, now_iso, expires_at, lock))
        )
    rows = pipeline(conn, statements)
    decisions = []
    for intake, (state, reason, _, _), row in zip(intakes, plans, rows, strict=True):
        alert = intake.alert
        alert_id, incident_id, repeated = int(row[0]), row[1], bool(row[2])
        if repeated:
            if incident_id:
                store.append_event(
                    conn,
                    incident_id,
                    EventKind.ALERT_REPEATED,
                    f"{alert.source} alert {alert.name!r} repeated (duplicate delivery, no new run)",
                    {"alert_id": alert_id, "dedup_key": alert.dedup_key},
                )
            decisions.append(Decision("duplicate", alert_id, alert.dedup_key, incident_id))
        else:
            playbook = intake.route.playbook if intake.route else None
            decisions.append(
                Decision(state, alert_id, alert.dedup_key, None, playbook.name if playbook else None, reason)
            )
    return decisions
