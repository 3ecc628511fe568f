"""Fleet results for people: one line per step, a few lines per host, never one per container
unless asked.

A fleet step's module reports every container's outcome (runbooks/module_utils/responder_targets).
The step's timeline message, `responder show`, the dry run, the exports and Slack all summarise
them through here, so a 200-container incident reads as "isolate: 198 of 200 containers on 5
hosts; failed: web-7 (gone)" everywhere, and the per-container detail stays on the timeline's
data for whoever needs it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SHOWN = 5


def is_fleet(outputs: Any) -> bool:
    """Whether one host's step outputs are a fleet step's per-container results."""
    return (
        isinstance(outputs, dict) and bool(outputs.get("fleet")) and isinstance(outputs.get("targets"), dict)
    )


def container_rows(by_host: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every container of a fleet step: host, container ID, name, outcome, reason, message, held_by."""
    rows: list[dict[str, str]] = []
    for host, outputs in sorted(by_host.items()):
        if not is_fleet(outputs):
            continue
        for cid, entry in outputs["targets"].items():
            if not isinstance(entry, dict):
                continue
            rows.append(
                {
                    "host": str(host),
                    "container_id": str(cid),
                    "container_name": str(entry.get("container_name") or ""),
                    "outcome": str(entry.get("outcome") or ""),
                    "reason": str(entry.get("reason") or ""),
                    "message": str(entry.get("message") or ""),
                    "held_by": str(entry.get("held_by") or ""),
                }
            )
    return rows


def _label(row: Mapping[str, str]) -> str:
    return row["container_name"] or row["container_id"][:12]


def _listed(rows: list[dict[str, str]], detail: str) -> str:
    parts = []
    for row in rows[:_SHOWN]:
        extra = row[detail] if detail != "held_by" else f"held by {row['held_by']}"
        parts.append(f"{_label(row)} ({extra})" if extra else _label(row))
    more = f", and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    return ", ".join(parts) + more


def step_line(by_host: Mapping[str, Any]) -> str:
    """`48 of 50 containers on 2 hosts; failed: web-7 (no such container); held: web-3 (held by INC-...)`,
    or "" when the step is not a fleet step."""
    rows = container_rows(by_host)
    hosts = sorted({r["host"] for r in rows} | {h for h, o in by_host.items() if is_fleet(o)})
    if not hosts:
        return ""
    done = [r for r in rows if r["outcome"] == "succeeded"]
    failed = [r for r in rows if r["outcome"] == "failed"]
    held = [r for r in rows if r["outcome"] == "held"]
    text = f"{len(done)} of {len(rows)} containers on {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
    if failed:
        text += f"; failed: {_listed(failed, 'message')}"
    if held:
        text += f"; skipped, another incident holds them: {_listed(held, 'held_by')}"
    return text


def blast_radius(by_host: Mapping[str, Any]) -> list[str]:
    """The resolve_targets step's result, one line per host: `host: 3 containers: a (4f2a..), ...`."""
    lines = []
    for host, outputs in sorted(by_host.items()):
        if not isinstance(outputs, dict) or not isinstance(outputs.get("targets"), list):
            continue
        found = [t for t in outputs["targets"] if isinstance(t, dict)]
        names = ", ".join(f"{t.get('container_name')} ({str(t.get('container_id'))[:12]})" for t in found)
        line = f"{host}: {len(found)} container{'s' if len(found) != 1 else ''}" + (
            f": {names}" if names else ""
        )
        unmatched = outputs.get("unmatched") or []
        if unmatched:
            line += f"; matched nothing here: {', '.join(map(str, unmatched))}"
        lines.append(line)
    return lines


__all__ = ["blast_radius", "container_rows", "is_fleet", "step_line"]
