"""JSON of the whole incident, and JSONL in the shape Timesketch imports.

Timesketch needs `message`, `datetime` (ISO 8601) and `timestamp_desc` on every line; other keys
become searchable attributes. Both formats are written row by row; `data` is spliced in as the
JSON text the timeline already holds, never decoded and re-encoded.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import IO, Any

from responder.export.summary import Summary
from responder.timeline import Timeline

# One encoder, built once: json.dumps() with keyword arguments builds a new one on every call.
_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode


def header(summary: Summary) -> dict[str, Any]:
    """The incident itself, as the JSON export's header."""
    inc = summary.incident
    return {
        "id": inc.id,
        "status": inc.status,
        "playbook": inc.playbook,
        "playbook_path": inc.playbook_path,
        "playbook_sha256": inc.playbook_sha256,
        "severity": inc.severity,
        "params": dict(inc.params),
        "secret_params": list(inc.secret_params),
        "trigger": dict(inc.trigger),
        "inventory": inc.inventory,
        "limit": inc.host_limit,
        "opened_by": inc.actor,
        "created_at": inc.created_at,
        "updated_at": inc.updated_at,
    }


def summary_json(summary: Summary) -> dict[str, Any]:
    """The summary (steps, scope, decisions, tally, open items) as JSON."""
    return {
        "events": summary.event_count,
        "first_event": summary.first_ts,
        "last_event": summary.last_ts,
        "hosts": sorted(summary.hosts),
        "containers": [asdict(c) for c in summary.containers.values()],
        "steps": [asdict(s) for s in summary.steps.values()],
        "step_tally": summary.tally.as_dict(),
        "decisions": summary.decisions,
        "secrets_rotated": summary.secrets_rotated,
        "notifications": summary.notifications,
        "open_items": summary.open_items,
    }


def write_json(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """The whole incident as one JSON document, streamed."""
    out.write('{"incident": ' + _dumps(header(summary)))
    out.write(',\n "summary": ' + _dumps(summary_json(summary)))
    out.write(',\n "evidence": ' + _dumps([asdict(e) for e in summary.evidence]))
    out.write(',\n "events": [')
    first = True
    for seq, ts, kind, step, host, actor, message, data in timeline.raw_events(summary.incident.id):
        out.write(
            ("\n  " if first else ",\n  ")
            + f'{{"seq": {seq}, "ts": {_dumps(ts)}, "kind": {_dumps(kind)}, "step": {_dumps(step)}, '
            f'"host": {_dumps(host)}, "actor": {_dumps(actor)}, "message": {_dumps(message)}, "data": {data}}}'
        )
        first = False
    out.write("\n ]}\n")


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(prefix: str) -> int:
    return int(datetime.fromisoformat(prefix).replace(tzinfo=UTC).timestamp())


def _epoch_micros(ts: str) -> int:
    """`2026-11-29T01:36:44.123456Z` to microseconds since the epoch (cached per second: fast)."""
    return _epoch_seconds(ts[:19]) * 1_000_000 + int(ts[20:26])


def write_jsonl(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """One JSON line per event, in Timesketch's format."""
    incident = summary.incident
    fixed = (
        f'"incident_id": {_dumps(incident.id)}, "playbook": {_dumps(incident.playbook)}, '
        f'"severity": {_dumps(incident.severity)}, "source": "responder"'
    )
    for seq, ts, kind, step, host, actor, message, data in timeline.raw_events(incident.id):
        out.write(
            f'{{"message": {_dumps(message)}, "datetime": {_dumps(ts[:-1] + "+00:00")}, '
            f'"timestamp": {_epoch_micros(ts)}, "timestamp_desc": {_dumps("responder " + kind)}, "seq": {seq}, '
            f'"kind": {_dumps(kind)}, "step": {_dumps(step)}, "host": {_dumps(host)}, "actor": {_dumps(actor)}, '
            f'{fixed}, "data": {data}}}\n'
        )
