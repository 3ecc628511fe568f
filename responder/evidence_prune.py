"""`responder evidence prune`: delete the evidence files of closed incidents, on purpose and on
the record.

Evidence is kept until someone decides otherwise: prune is a dry run unless told `--yes`, never
touches an open incident (running, awaiting approval, blocked), and writes an `evidence_pruned`
event on each incident it empties (who, when, which files, how many bytes). The evidence records
and their hashes stay on the timeline: what was collected remains provable, and `evidence verify`
reports those files as `pruned`, not as missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from responder.errors import StateError, UsageError
from responder.timeline import EvidenceRecord, Timeline
from responder.vocabulary import OPEN_STATUSES, EventKind


@dataclass(frozen=True)
class PrunePlan:
    """One incident's evidence files that prune would delete (those still on disk)."""

    incident_id: str
    records: tuple[EvidenceRecord, ...]
    size: int


def pruned_paths(timeline: Timeline, incident_id: str) -> set[str]:
    """The evidence paths an earlier prune deleted, from the incident's evidence_pruned events."""
    paths: set[str] = set()
    for _seq, _ts, kind, *_rest, data in timeline.raw_events(incident_id):
        if kind == EventKind.EVIDENCE_PRUNED:
            paths.update(str(p) for p in json.loads(data).get("paths", []))
    return paths


def plan(
    timeline: Timeline, incidents: Iterable[str] = (), older_than_days: float | None = None
) -> list[PrunePlan]:
    """What a prune would delete: the named incidents, or every closed incident opened more than
    `older_than_days` ago. Naming an open incident is an error; open ones are never candidates."""
    named = list(incidents)
    if not named and older_than_days is None:
        raise UsageError("say what to prune: --older-than DAYS, or one or more incident IDs")
    if named:
        chosen = [timeline.incident(i) for i in named]
        still_open = [i.id for i in chosen if i.status in OPEN_STATUSES]
        if still_open:
            raise StateError(
                f"{', '.join(still_open)} still open: release, deny or finish it before pruning its evidence"
            )
    else:
        cutoff = datetime.now(UTC) - timedelta(days=float(older_than_days or 0))
        chosen = [
            i
            for i in timeline.incidents(None, until=cutoff.strftime("%Y-%m-%dT%H:%M:%S"))
            if i.status not in OPEN_STATUSES
        ]
    plans = []
    for incident in chosen:
        present = tuple(r for r in timeline.evidence(incident.id) if Path(r.path).is_file())
        if present:
            plans.append(PrunePlan(incident.id, present, sum(Path(r.path).stat().st_size for r in present)))
    return plans


def execute(timeline: Timeline, plans: Iterable[PrunePlan], actor: str, reason: str) -> int:
    """Delete the planned files and put each deletion on its incident's timeline; bytes freed."""
    freed = 0
    for item in plans:
        deleted = []
        for record in item.records:
            path = Path(record.path)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += size
            deleted.append(record.path)
        if deleted:
            timeline.append(
                item.incident_id,
                EventKind.EVIDENCE_PRUNED,
                f"evidence pruned by {actor}: {len(deleted)} file(s), {item.size} bytes"
                + (f" ({reason})" if reason else "")
                + "; the records and their hashes stay",
                actor=actor,
                data={"paths": deleted, "bytes": item.size, "reason": reason},
            )
    return freed
