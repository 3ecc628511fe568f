"""One self-contained HTML file (inline CSS and SVG, no scripts, no external assets) with the
review content and a visual timeline: one lane per step, bars for durations, marks for decisions."""

from __future__ import annotations

import json
from typing import IO

from responder.export.json_export import _epoch_micros
from responder.export.summary import Summary
from responder.export.text import h
from responder.timeline import Timeline

_COLORS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "host_unreachable": "#ef6c00",
    "config_error": "#6a1b9a",
    "timed_out": "#ad1457",
    "interrupted": "#5d4037",
    "skipped": "#9e9e9e",
    "not_run": "#bdbdbd",
}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1a1a1a;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{border:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f4f4f4}code{font-size:.8rem;word-break:break-all}
.outcome-failed,.mismatch{color:#c62828;font-weight:bold}.open li{color:#c62828}
svg text{font-size:12px;font-family:inherit}
"""


def _svg(summary: Summary) -> str:
    spans = [s for s in summary.steps.values() if s.started]
    if not spans or not summary.first_ts:
        return "<p>No step ran, so there is no timeline to draw.</p>"
    start = _epoch_micros(summary.first_ts)
    end = max(_epoch_micros(summary.last_ts), start + 1)
    label_w, width, lane_h = 180, 1000, 28
    scale = (width - label_w - 160) / (end - start)  # room on the right for the duration label
    height = lane_h * (len(spans) + 1) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="incident timeline" '
        f'class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for i, span in enumerate(spans):
        y = 20 + i * lane_h
        x0 = label_w + (_epoch_micros(span.started or summary.first_ts) - start) * scale
        x1 = label_w + (_epoch_micros(span.finished or summary.last_ts) - start) * scale
        seconds = (_epoch_micros(span.finished or summary.last_ts) - _epoch_micros(span.started or "")) / 1e6
        color = _COLORS.get(span.outcome, "#757575")
        parts.append(
            f'<g class="lane" data-step="{h(span.step_id)}"><text x="4" y="{y + 15}">{h(span.step_id)}</text>'
            f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 2):.1f}" height="{lane_h - 8}" fill="{color}">'
            f"<title>{h(span.step_id)} ({h(span.action)}): {h(span.outcome)}, {seconds:.2f} s</title></rect>"
            f'<text x="{max(x1, x0 + 2) + 4:.1f}" y="{y + 15}">{seconds:.2f} s {h(span.outcome)}</text></g>'
        )
    for decision in summary.decisions:
        x = label_w + (_epoch_micros(decision["ts"]) - start) * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 20}" stroke="#1565c0" '
            f'stroke-dasharray="4 3"><title>{h(decision["message"])}</title></line>'
        )
    total = (end - start) / 1e6
    parts.append(
        f'<text x="{label_w}" y="{height - 4}">{h(summary.first_ts)}</text>'
        f'<text x="{width - 220}" y="{height - 4}">+{total:.2f} s</text></svg>'
    )
    return "".join(parts)


def write(timeline: Timeline, summary: Summary, out: IO[str]) -> None:
    """The review report as one offline HTML file, with a visual timeline."""
    inc = summary.incident
    w = out.write
    w(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Incident {h(inc.id)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>\n'
    )
    w(
        f"<h1>Incident {h(inc.id)}: {h(inc.playbook)}</h1><p>All times are UTC.</p>\n<h2>Summary</h2><ul>"
        f"<li>Status: <b>{h(inc.status)}</b></li><li>Severity: {h(inc.severity)}</li>"
        f"<li>Playbook: {h(inc.playbook_path)} (sha256 <code>{h(inc.playbook_sha256)}</code>)</li>"
        f"<li>Opened {h(inc.created_at)} by {h(inc.actor)}; last update {h(inc.updated_at)}</li>"
        f"<li>{summary.event_count} events from {h(summary.first_ts)} to {h(summary.last_ts)}</li>"
    )
    tally = summary.tally
    w(
        f"<li>Steps done: {h(', '.join(tally.done) or 'none')}</li>"
        f'<li class="outcome-failed">Steps failed: {h(", ".join(tally.failed) or "none")}</li>'
        + (f"<li>Steps skipped: {h(', '.join(tally.skipped))}</li>" if tally.skipped else "")
        + f"<li>Steps not done: {h(', '.join(tally.not_done) or 'none')}</li></ul>\n"
    )
    w("<h2>Trigger</h2><ul>")
    for key, value in sorted(dict(inc.trigger).items()):
        w(f"<li>{h(key)}: {h(value if isinstance(value, str) else json.dumps(value, sort_keys=True))}</li>")
    w(f"<li>params: <code>{h(json.dumps(dict(inc.params), sort_keys=True))}</code></li></ul>\n")
    w(f"<h2>Scope</h2><p>Hosts: {h(', '.join(sorted(summary.hosts)) or 'none')}</p>")
    if summary.containers:
        w(
            "<table><tr><th>Host</th><th>Container ID</th><th>Name</th><th>Image</th><th>Image ID / digests</th></tr>"
        )
        for c in summary.containers.values():
            w(
                f"<tr><td>{h(c.host)}</td><td><code>{h(c.container_id)}</code></td><td>{h(c.name)}</td>"
                f"<td>{h(c.image)}</td><td><code>{h(' '.join([c.image_id, *c.digests]))}</code></td></tr>"
            )
        w("</table>")
    w(f"\n<h2>Visual timeline</h2>{_svg(summary)}\n")
    w(
        "<h2>Steps</h2><table><tr><th>Step</th><th>Action</th><th>Started</th><th>Finished</th><th>Outcome</th>"
        "<th>Hosts</th></tr>"
    )
    for s in summary.steps.values():
        hosts = ", ".join(f"{k}: {v}" for k, v in sorted(s.hosts.items()))
        w(
            f"<tr><td>{h(s.step_id)}</td><td>{h(s.action)}</td><td>{h(s.started or '')}</td><td>{h(s.finished or '')}"
            f'</td><td class="outcome-{h(s.outcome)}">{h(s.outcome)}</td><td>{h(hosts)}</td></tr>'
        )
    w("</table>\n")
    fleet = [s for s in summary.steps.values() if s.containers]
    if fleet:
        w(
            "<h3>Per container</h3><table><tr><th>Step</th><th>Host</th><th>Container</th><th>Name</th>"
            "<th>Outcome</th><th>Detail</th></tr>"
        )
        for s in fleet:
            for row in s.containers:
                detail = (
                    f"held by {row['held_by']}"
                    if row["held_by"]
                    else (row["message"] if row["outcome"] != "succeeded" else "")
                )
                w(
                    f"<tr><td>{h(s.step_id)}</td><td>{h(row['host'])}</td><td><code>{h(row['container_id'][:12])}</code></td>"
                    f'<td>{h(row["container_name"])}</td><td class="outcome-{h(row["outcome"])}">{h(row["outcome"])}</td>'
                    f"<td>{h(detail)}</td></tr>"
                )
        w("</table>\n")
    w("<h2>Containment decisions and approvals</h2><ul>")
    for d in summary.decisions:
        w(
            f"<li>{h(d['ts'])}: step {h(d['step'])} <b>{h(d['decision'])}</b> by {h(d['actor'])}"
            f"{': ' + h(d['reason']) if d.get('reason') else ''}</li>"
        )
    w("</ul>" if summary.decisions else "<li>No approval gates were reached.</li></ul>")
    w("\n<h2>Evidence and chain of custody</h2>")
    if summary.evidence:
        w(
            "<table><tr><th>Kind</th><th>Host</th><th>Container</th><th>Collected</th><th>By</th><th>Bytes</th>"
            "<th>SHA-256 at source</th><th>SHA-256 on controller</th><th>Method</th><th>Stored at</th></tr>"
        )
        for e in summary.evidence:
            cls = "" if e.sha256_source == e.sha256_controller else ' class="mismatch"'
            w(
                f"<tr{cls}><td>{h(e.kind)}</td><td>{h(e.host)}</td><td><code>{h(e.container_id)}</code></td>"
                f"<td>{h(e.collected_at)}</td><td>{h(e.collector)}</td><td>{e.size}</td>"
                f"<td><code>{h(e.sha256_source)}</code></td><td><code>{h(e.sha256_controller)}</code></td>"
                f"<td>{h(e.method)}</td><td>{h(e.path)}</td></tr>"
            )
        w("</table>")
    else:
        w("<p>No evidence was collected.</p>")
    w("\n<h2>Secrets rotated</h2><ul>")
    for r in summary.secrets_rotated:
        w(f"<li>{h(r.get('name'))} to version {h(r.get('version'))} ({h(r.get('backend'))})</li>")
    w("</ul>" if summary.secrets_rotated else "<li>None.</li></ul>")
    w("\n<h2>Notifications</h2><ul>")
    for status, count in sorted(summary.notifications.items()):
        w(f"<li>{h(status)}: {count}</li>")
    w("</ul>" if summary.notifications else "<li>None sent.</li></ul>")
    w(
        '\n<h2>Timeline</h2><table id="timeline"><tr><th>#</th><th>Time (UTC)</th><th>Kind</th><th>Step</th>'
        "<th>Host</th><th>Actor</th><th>Event</th></tr>\n"
    )
    for seq, ts, kind, step, host, actor, message, _data in timeline.raw_events(inc.id):
        w(
            f'<tr class="event" data-seq="{seq}"><td>{seq}</td><td>{ts}</td><td>{h(kind)}</td><td>{h(step)}</td>'
            f"<td>{h(host)}</td><td>{h(actor)}</td><td>{h(message)}</td></tr>\n"
        )
    w('</table>\n<h2>What remains open</h2><ul class="open">')
    items = summary.open_items
    for item in items:
        w(f"<li>{h(item)}</li>")
    w(
        "</ul>"
        if items
        else "<li>Nothing: every step completed and nothing it changed is still in place.</li></ul>"
    )
    w("\n</body></html>\n")
