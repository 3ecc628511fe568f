"""Incidents, playbooks, actions and checks as JSON documents (`--json`), and the incident filters.

One JSON document per command, for scripts: the same facts the text output prints, with full IDs
and hashes, and nothing the text output hides (secret params stay names only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from responder.catalog import Action
from responder.errors import Problem
from responder.evidence import Verification
from responder.playbook.model import Playbook
from responder.timeline import Incident, Timeline


def containers_of(timeline: Timeline, incident: Incident) -> list[dict[str, str]]:
    """The containers the incident's steps acted on (full ID and name), else what it was asked
    to act on (the targets as given: names, IDs, selectors)."""
    found: dict[str, str] = {}
    for _status, outputs in timeline.steps(incident.id).values():
        if not isinstance(outputs, Mapping):
            continue
        if outputs.get("container_id"):
            found.setdefault(str(outputs["container_id"]), str(outputs.get("container_name") or ""))
        targets = outputs.get("targets")
        for cid, entry in targets.items() if isinstance(targets, Mapping) else ():
            name = entry.get("container_name", "") if isinstance(entry, Mapping) else ""
            found.setdefault(str(cid), str(name or ""))
        for entry in targets if isinstance(targets, list) else ():
            if isinstance(entry, Mapping) and entry.get("container_id"):
                found.setdefault(str(entry["container_id"]), str(entry.get("container_name") or ""))
    if found:
        return [{"id": cid, "name": name} for cid, name in found.items()]
    asked = incident.trigger.get("targets") or ""
    return [{"id": "", "name": str(asked)}] if asked else []


def incident_row(timeline: Timeline, incident: Incident) -> dict[str, Any]:
    """One incident for `responder incidents`: where it stands, where and on what it acted."""
    return {
        "id": incident.id,
        "status": str(incident.status),
        "severity": incident.severity,
        "playbook": incident.playbook,
        "created_at": incident.created_at,
        "updated_at": incident.updated_at,
        "actor": incident.actor,
        "next_step": incident.next_step,
        "host_limit": incident.host_limit,
        "hosts": timeline.hosts_of(incident.id),
        "containers": containers_of(timeline, incident),
        "alert_id": incident.alert_id,
    }


def matches_container(row: Mapping[str, Any], ref: str) -> bool:
    """Whether `ref` (a name, a full ID or an ID prefix of 4+ characters) names one of the row's containers."""
    for container in row["containers"]:
        if ref == container["name"] or (len(ref) >= 4 and container["id"].startswith(ref)):
            return True
    return False


def playbook_doc(pb: Playbook, file: str) -> dict[str, Any]:
    """A playbook as `responder playbooks --json` lists it."""
    return {
        "name": pb.name,
        "file": file,
        "valid": True,
        "severity": pb.severity,
        "description": pb.description,
        "max_targets": pb.max_targets,
        "params": [
            {
                "name": p.name,
                "type": str(p.type),
                "required": p.required,
                "secret": p.secret,
                "default": p.default,
                "description": p.description,
            }
            for p in pb.params
        ],
        "steps": [{"id": s.id, "action": s.action, "approval": str(s.approval)} for s in pb.steps],
    }


def problems_doc(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    """Validation problems with their place: file, line, column, field path, message, hint."""
    return [
        {
            "file": p.file,
            "line": p.line,
            "column": p.column,
            "path": p.path,
            "message": p.message,
            "hint": p.hint,
        }
        for p in problems
    ]


def action_doc(action: Action) -> dict[str, Any]:
    """A role as `responder actions --json` lists it."""
    return {
        "name": action.name,
        "summary": action.summary,
        "role": str(action.path),
        "options": [
            {
                "name": o.name,
                "type": o.type,
                "required": o.required,
                "default": o.default,
                "secret": o.no_log,
                "description": o.description,
            }
            for o in action.options.values()
        ],
        "changes": action.changes,
        "undo": action.undo or None,
        "undo_action": action.undo_action,
        "containment": action.containment,
        "example": dict(action.example) if action.example else None,
    }


def verification_doc(incident_id: str, results: Iterable[Verification]) -> dict[str, Any]:
    """`responder evidence verify --json`: every artifact re-hashed against its recorded hash."""
    rows = [
        {
            "status": r.status,
            "kind": r.record.kind,
            "host": r.record.host,
            "path": r.record.path,
            "sha256_recorded": r.record.sha256_controller,
            "sha256_now": r.sha256_now,
            "controller": r.record.controller,
        }
        for r in results
    ]
    bad = sum(1 for r in rows if r["status"] not in ("ok", "pruned", "elsewhere"))
    return {"incident": incident_id, "results": rows, "ok": len(rows) - bad, "bad": bad}
