"""Markdown laid out for a post-incident review (NIST SP 800-61 §3.4, RFC 3227 custody)."""

from __future__ import annotations

import json
from typing import IO

from responder.export.summary import Summary
from responder.export.text import md, md_code
from responder.timeline import Timeline


def write(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """The review report in Markdown."""
    inc = summary.incident
    w = out.write
    w(f"# Incident {md(inc.id)}: {md(inc.playbook)}\n\n")
    w("All times are UTC (ISO 8601).\n\n")
    w("## Summary\n\n")
    w(f"- **Status:** {md(inc.status)}\n- **Severity:** {md(inc.severity)}\n")
    w(
        f"- **Playbook:** {md(inc.playbook)} ({md(inc.playbook_path)}, sha256 {md_code(inc.playbook_sha256)})\n"
    )
    w(f"- **Opened:** {md(inc.created_at)} by {md(inc.actor)}; last update {md(inc.updated_at)}\n")
    w(f"- **Events:** {summary.event_count}, from {md(summary.first_ts)} to {md(summary.last_ts)}\n")
    tally = summary.tally
    w(f"- **Steps done:** {md(', '.join(tally.done) or 'none')}\n")
    w(f"- **Steps failed:** {md(', '.join(tally.failed) or 'none')}\n")
    if tally.skipped:
        w(f"- **Steps skipped:** {md(', '.join(tally.skipped))}\n")
    w(f"- **Steps not done:** {md(', '.join(tally.not_done) or 'none')}\n\n")

    w("## Trigger\n\n")
    trigger = dict(inc.trigger)
    w(f"- **Source:** {md(trigger.get('source', 'unknown'))}\n")
    for key, value in sorted(trigger.items()):
        if key != "source":
            w(
                f"- **{md(key)}:** {md(json.dumps(value, sort_keys=True) if not isinstance(value, str) else value)}\n"
            )
    w(f"- **Params:** {md(json.dumps(dict(inc.params), sort_keys=True))}\n")
    if inc.secret_params:
        w(f"- **Secret params (values never recorded):** {md(', '.join(inc.secret_params))}\n")
    w("\n## Scope\n\n")
    w(f"- **Hosts:** {md(', '.join(sorted(summary.hosts)) or 'none')}\n\n")
    if summary.containers:
        w("| Host | Container ID | Name | Image | Image ID / digests |\n|---|---|---|---|---|\n")
        for c in summary.containers.values():
            digests = ", ".join([c.image_id, *c.digests]) if c.image_id or c.digests else ""
            w(
                f"| {md(c.host)} | {md_code(c.container_id)} | {md(c.name)} | {md(c.image)} | {md(digests)} |\n"
            )
        w("\n")

    w("## Steps\n\n| Step | Action | Started | Finished | Outcome | Hosts |\n|---|---|---|---|---|---|\n")
    for s in summary.steps.values():
        hosts = ", ".join(f"{h}: {o}" for h, o in sorted(s.hosts.items()))
        w(
            f"| {md(s.step_id)} | {md(s.action)} | {md(s.started or '')} | {md(s.finished or '')} | "
            f"{md(s.outcome)} | {md(hosts)} |\n"
        )
    fleet = [s for s in summary.steps.values() if s.containers]
    if fleet:
        w(
            "\n### Per container\n\n| Step | Host | Container | Name | Outcome | Detail |\n|---|---|---|---|---|---|\n"
        )
        for s in fleet:
            for row in s.containers:
                detail = (
                    f"held by {row['held_by']}"
                    if row["held_by"]
                    else row["message"]
                    if row["outcome"] != "succeeded"
                    else ""
                )
                w(
                    f"| {md(s.step_id)} | {md(row['host'])} | {md_code(row['container_id'][:12])} | {md(row['container_name'])} | "
                    f"{md(row['outcome'])} | {md(detail)} |\n"
                )

    w("\n## Containment decisions and approvals\n\n")
    if not summary.decisions:
        w("No approval gates were reached.\n")
    for d in summary.decisions:
        reason = f": {md(d['reason'])}" if d.get("reason") else ""
        w(f"- {md(d['ts'])}: step {md(d['step'])} **{md(d['decision'])}** by {md(d['actor'])}{reason}\n")

    w("\n## Evidence and chain of custody\n\n")
    if not summary.evidence:
        w("No evidence was collected.\n")
    else:
        w(
            "| Kind | Host | Container | Collected | By | Size (bytes) | SHA-256 at source | SHA-256 on controller | "
            "Method | Stored at |\n|---|---|---|---|---|---|---|---|---|---|\n"
        )
        for e in summary.evidence:
            match = "" if e.sha256_source == e.sha256_controller else " **MISMATCH**"
            w(
                f"| {md(e.kind)} | {md(e.host)} | {md_code(e.container_id or '')} | {md(e.collected_at)} | "
                f"{md(e.collector)} | {e.size} | {md_code(e.sha256_source)} | {md_code(e.sha256_controller)}{match} | "
                f"{md(e.method)} | {md(e.path)} (source {md(e.source_path)}) |\n"
            )

    w("\n## Secrets rotated\n\n")
    if not summary.secrets_rotated:
        w("None.\n")
    for r in summary.secrets_rotated:
        w(
            f"- {md(r.get('name'))} -> version {md(r.get('version'))} ({md(r.get('backend'))} on {md(r.get('host'))})\n"
        )

    w("\n## Notifications\n\n")
    if not summary.notifications:
        w("None sent.\n")
    for status, count in sorted(summary.notifications.items()):
        w(f"- {md(status)}: {count}\n")

    w(
        "\n## Timeline\n\n| # | Time (UTC) | Kind | Step | Host | Actor | Event |\n|---|---|---|---|---|---|---|\n"
    )
    for seq, ts, kind, step, host, actor, message, _data in timeline.raw_events(inc.id):
        w(
            f"| {seq} | {ts} | {md(kind)} | {md(step or '')} | {md(host or '')} | {md(actor)} | {md(message)} |\n"
        )

    w("\n## What remains open\n\n")
    items = summary.open_items
    if not items:
        w("Nothing: every step completed and nothing it changed is still in place.\n")
    for item in items:
        w(f"- {md(item)}\n")
