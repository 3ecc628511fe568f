"""What the intake stores and hands on: an alert with its routing decided (Intake), the answer
for each alert (Decision), a queued alert as a worker reads it (QueuedAlert), and the bounded,
always-valid JSON of a stored alert document."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from responder import db
from responder.errors import StateError
from responder.intake.alerts import Alert
from responder.intake.routing import Route
from responder.playbook.model import Playbook
from responder.store_location import DatabaseLocation
from responder.timeline import Redactor, Timeline, insert_event
from responder.vocabulary import EventKind


@dataclass(frozen=True)
class Intake:
    """An alert with its routing decided (in the request handler, outside the write lock)."""

    alert: Alert
    route: Route | None
    params: dict[str, Any] | None = None
    limit: str | None = None
    rejected: str | None = None
    no_action: str | None = None
    no_action_code: str | None = None  # a metrics label: why nothing is done (host_event, ...)

    @property
    def acts(self) -> bool:
        """A playbook takes this alert: routed, its params accepted, not a host event."""
        return self.route is not None and self.rejected is None and self.no_action is None


@dataclass(frozen=True)
class Decision:
    """What became of one alert: the answer the sender gets for it."""

    result: str  # queued | duplicate | resolved | unmatched | rejected | no_action
    alert_id: int
    dedup_key: str
    incident_id: str | None = None
    playbook: str | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The decision as the webhook's JSON answer shows it."""
        out: dict[str, Any] = {"result": self.result, "alert_id": self.alert_id, "dedup_key": self.dedup_key}
        for key in ("incident_id", "playbook", "reason"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class QueuedAlert:
    """A queued alert as its worker reads it: the playbook, params and where to run."""

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


def queued_alert(row: db.Row) -> QueuedAlert:
    """A QueuedAlert from its row."""
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


def load_alert(location: DatabaseLocation, alert_id: int) -> QueuedAlert:
    """For the worker process: read its alert without starting a writer thread."""
    conn = db.connect(location)
    try:
        row = conn.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
    finally:
        conn.close()
    if row is None:
        raise KeyError(alert_id)
    return queued_alert(row)


def dump(value: Any) -> str:
    # allow_nan=False: what is stored is JSON, always (Python would otherwise write Infinity).
    """Compact, sorted, always-valid JSON (never NaN or Infinity)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str, allow_nan=False)


DOCUMENT_KEEP = 16 * 1024  # bytes of an unmatched/rejected alert's document kept whole
_KEEP_TEXT = 512  # characters kept of each string in a document that is over DOCUMENT_KEEP
_KEEP_ITEMS = 64  # entries kept of each object or array in such a document


def bounded_document(document: Any) -> str:
    """An alert document for the ledger, at most about DOCUMENT_KEEP bytes.

    Unmatched, rejected and no-action alerts are kept for investigators, not run: anyone who can
    reach the webhook could otherwise store a megabyte per alert, indefinitely. A document over
    the limit keeps its shape (the first entries of each object and array, the start of each
    string), and the SHA-256 and size of the whole, so a copy found elsewhere can be matched."""
    text = dump(document)
    size = len(text.encode("utf-8"))
    if size <= DOCUMENT_KEEP:
        return text
    kept = _trim(document, _KEEP_TEXT, _KEEP_ITEMS)
    while True:
        out = dump(
            {
                "_responder_trimmed": {
                    "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    "bytes": size,
                    "note": "document over the stored size; shape and string starts kept",
                },
                "kept": kept,
            }
        )
        if len(out.encode("utf-8")) <= DOCUMENT_KEEP or kept is None:
            return out
        kept = None  # still too wide: keep only the hash and the size


def _trim(value: Any, text: int, items: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= text else value[:text] + f"...[{len(value) - text} more characters]"
    if isinstance(value, dict):
        out = {str(k)[:text]: _trim(v, text, items) for k, v in list(value.items())[:items]}
        if len(value) > items:
            out["_responder_more_keys"] = len(value) - items
        return out
    if isinstance(value, list):
        trimmed = [_trim(v, text, items) for v in value[:items]]
        return trimmed + ([f"...[{len(value) - items} more items]"] if len(value) > items else [])
    return value


@dataclass
class Seen:
    """A committed alert identity, for answering its repeats without a database round trip."""

    alert_id: int
    window: float | None  # windowed dedup (Falco): repeats extend the window
    expires_at: float | None


class AlertClaimLost(StateError):
    """The alert this run was started for is no longer claimed by it (run elsewhere or requeued)."""


def mark_started(conn: db.Connection, alert_id: int, incident_id: str) -> None:
    """Inside the transaction that creates the incident: take the alert from `claimed` to
    `started`, or refuse (AlertClaimLost) so that an alert never opens two incidents."""
    claimed = conn.execute(
        "UPDATE alerts SET state='started', incident_id=? WHERE id=? AND state='claimed'",
        (incident_id, alert_id),
    ).rowcount
    if claimed != 1:
        raise AlertClaimLost(f"alert {alert_id} is not claimed by this run")


def attach_alert(timeline: Timeline, alert_id: int, incident_id: str, summary: Mapping[str, Any]) -> None:
    """An alert for a container another incident already holds joins that incident's timeline:
    the alert's state and the event change together."""
    with timeline.transaction() as conn:
        conn.execute("UPDATE alerts SET state='attached', incident_id=? WHERE id=?", (incident_id, alert_id))
        insert_event(
            conn,
            timeline.redactor,
            incident_id,
            EventKind.ALERT_ATTACHED,
            f"{summary.get('source')} alert {summary.get('name')!r} for the same container joined "
            "this incident (no second run)",
            actor="webhook",
            data=dict(summary),
        )


# The most alerts one storm incident answers. Each names its own container, so the playbook's
# max_targets (a cap on label and image selectors) does not split them: one Ansible run over the
# hosts contains them all, where 50-alert slices would queue behind each other.
STORM_GROUP_LIMIT = 500


def group_key(playbook: Playbook, params: Mapping[str, Any] | None, limit: str | None) -> str | None:
    """Alerts with the same key may be answered by one fleet incident: same playbook (file), same
    host limit, same params except the one container they name. None for a playbook without a
    targets param, or an alert that already names several containers."""
    spec = playbook.target_param
    if spec is None or params is None or not isinstance(params.get(spec.name), str):
        return None
    rest = {k: v for k, v in params.items() if k != spec.name}
    text = json.dumps([str(playbook.source), limit, rest], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def settle(pairs: Sequence[tuple[Future[list[Decision]] | asyncio.Future[list[Decision]], Any]]) -> None:
    """Hand each waiting request its decisions (or the error); one that gave up is skipped."""
    for future, outcome in pairs:
        if future.done():
            continue  # the request gave up (timeout, client gone)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def alert_row(
    intake: Intake,
    redactor: Redactor,
    state: str,
    reason: str | None,
    received_at: str,
    expires_at: float | None,
    lock: str | None,
    incident_id: str | None = None,
) -> tuple[Any, ...]:
    """The values of intake.store.INSERT_ALERT for one alert; known secrets redacted from its text."""
    alert = intake.alert
    playbook = intake.route.playbook if intake.route and state == "queued" else None
    return (
        received_at,
        str(alert.source),
        alert.status,
        alert.dedup_key,
        expires_at,
        # the alert's own text is the sender's: a secret this process knows never lands
        # in the alert record either, as on the events (the worker reads the document)
        redactor.text(alert.name),
        alert.host,
        alert.container,
        state,
        reason,
        playbook.name if playbook else (intake.route.playbook.name if intake.route else None),
        str(playbook.source) if playbook else None,
        dump(intake.params) if intake.params is not None else None,
        intake.limit,
        lock,
        incident_id,
        # A queued alert's worker reads its whole document; the rest are kept for the record.
        dump(redactor.data(alert.document))
        if state == "queued"
        else bounded_document(redactor.data(alert.document)),
        group_key(playbook, intake.params, intake.limit) if playbook else None,
        STORM_GROUP_LIMIT if playbook else None,
    )
