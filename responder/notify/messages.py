"""Slack messages rendered from timeline events, as data: untrusted text is escaped for mrkdwn
and nothing here is a template. Sizes are cut to Slack's documented limits rather than rejected."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from responder.outcomes import tally_mapping
from responder.timeline import Event, EvidenceRecord, Incident

# https://api.slack.com/reference/block-kit/blocks: header text 150, section text 3000,
# section fields 10 x 2000, 50 blocks per message; `text` is truncated by Slack past 40,000,
# and 4,000 is the recommended fallback length.
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
BLOCKS_MAX = 50
TEXT_MAX = 4000

_EMOJI = {
    "running": ":rotating_light:",
    "awaiting_approval": ":raised_hand:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "host_unreachable": ":electric_plug:",
    "config_error": ":warning:",
    "timed_out": ":hourglass:",
    "interrupted": ":octagonal_sign:",
    "denied": ":no_entry:",
    "skipped": ":fast_forward:",
    "not_run": ":white_circle:",
}


def escape(text: object) -> str:
    """mrkdwn control characters: &, < and > (the rest of the text stays as it is)."""
    return str("" if text is None else text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """The text cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass(frozen=True)
class Message:
    """One Slack message: `role` is root (the incident's thread parent), reply or update."""

    key: str  # stable per incident and event: the dedup key kept in message metadata
    role: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """The Slack API arguments: text and blocks, within Slack's limits."""
        blocks = self.blocks[:BLOCKS_MAX]
        return {"text": truncate(self.text, TEXT_MAX), "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_MAX)}}


# action_ids of the root message's buttons; responder.server.slack_actions acts on them.
APPROVE, APPROVE_ALL, DENY, RELEASE = (
    "responder_approve",
    "responder_approve_all",
    "responder_deny",
    "responder_release",
)
_CLOSED = {"succeeded", "failed", "host_unreachable", "config_error", "timed_out", "interrupted", "denied"}


def actor_mention(actor: str) -> str:
    """A Slack actor as a mention Slack renders with the person's name; anyone else as text."""
    user = actor.removeprefix("slack:")
    if actor.startswith("slack:") and user.isalnum() and user[:1] in ("U", "W"):
        return f"<@{user}>"
    return escape(actor)


def buttons(incident: Incident) -> list[dict[str, Any]]:
    """What can be decided from Slack now: approve (the step, or every gate) and deny at a gate;
    release once the run is over and containment may still be in place. None otherwise."""
    status = str(incident.status)

    def value(step: str | None) -> str:
        return json.dumps({"incident": incident.id, "step": step})

    if status == "awaiting_approval" and incident.next_step:
        step = incident.next_step
        return [
            _button(APPROVE, f"Approve {step}", value(step), "primary"),
            _button(APPROVE_ALL, "Approve all remaining", value(None)),
            _button(DENY, "Deny", value(step), "danger"),
        ]
    if status in _CLOSED:
        return [_button(RELEASE, "Release containment", value(None), "danger")]
    return []


def _button(action_id: str, label: str, value: str, style: str | None = None) -> dict[str, Any]:
    button = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label[:75]},
        "value": value,
    }
    return button | ({"style": style} if style else {})


def root_message(
    incident: Incident,
    key: str,
    hosts: list[str],
    container: str | None,
    interactive: bool = False,
    decision: Event | None = None,
) -> Message:
    """The incident's thread parent: severity, status, playbook, host, container, trigger; with
    `interactive`, the buttons for what can be decided now, and the last decision (who, when,
    what happened next) in place of the buttons it answered."""
    status = str(incident.status)
    trigger = dict(incident.trigger)
    header = truncate(
        f"{_EMOJI.get(status, '')} Incident {incident.id}: {incident.playbook}".strip(), HEADER_MAX
    )
    fields = [
        f"*Severity*\n{escape(incident.severity)}",
        f"*Status*\n{escape(status)}"
        + (f" (next: {escape(incident.next_step)})" if incident.next_step else ""),
        f"*Playbook*\n{escape(incident.playbook)}",
        f"*Host*\n{escape(', '.join(hosts) or incident.host_limit or 'localhost')}",
        f"*Container*\n{escape(container or 'n/a')}",
        f"*Trigger*\n{escape(trigger.get('source', 'unknown'))} by {escape(incident.actor)}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": truncate(f, FIELD_MAX)} for f in fields]},
    ]
    if decision is not None:
        verb = {"approval_granted": "Approved", "approval_denied": "Denied", "incident_released": "Released"}
        what = verb.get(str(decision.kind), str(decision.kind))
        step = f" {escape(decision.step)}" if decision.step else ""
        reason = str(decision.data.get("reason") or "")
        line = (
            f"{what}{step} by {actor_mention(decision.actor)} at {escape(decision.ts)}"
            + (f": {escape(truncate(reason, 300))}" if reason else "")
            + f". Now {escape(status)}"
            + (f" (next: {escape(incident.next_step)})" if incident.next_step else "")
            + "."
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(line, FIELD_MAX)}]}
        )
    if interactive and (actions := buttons(incident)):
        blocks.append({"type": "actions", "block_id": "responder_decisions", "elements": actions})
    text = f"Incident {incident.id} ({incident.severity}): {incident.playbook}, status {status}"
    return Message(key=key, role="root", text=escape(text), blocks=blocks)


def step_message(incident_id: str, event: Event) -> Message:
    """A reply for one step's outcome, host by host."""
    outcome = str(event.data.get("outcome", ""))
    hosts: Mapping[str, Any] = event.data.get("hosts") or {}
    lines = [f"{_EMOJI.get(outcome, ':grey_question:')} *{escape(event.message)}*"]
    for host, detail in sorted(hosts.items()):
        text = f"• `{escape(host)}`: {escape(detail.get('outcome', ''))}"
        if detail.get("message"):
            text += f": {escape(detail['message'])}"
        lines.append(text)
    body = "\n".join(lines)
    return Message(
        key=f"{incident_id}:{event.seq}", role="reply", text=escape(event.message), blocks=[_section(body)]
    )


def plain_reply(incident_id: str, event: Event, prefix: str = "") -> Message:
    """A reply with the event's message as it is (escaped)."""
    text = f"{prefix}{escape(event.message)}"
    return Message(key=f"{incident_id}:{event.seq}", role="reply", text=text, blocks=[_section(text)])


def notice_message(key: str, text: str) -> Message:
    """A channel message no incident owns (not threaded): untrusted text, escaped."""
    body = f":warning: {escape(text)}"
    return Message(key=key, role="notice", text=body, blocks=[_section(body)])


def closing_message(incident: Incident, event: Event, evidence: list[EvidenceRecord]) -> Message:
    """The closing summary: done, failed, not done, evidence, how to export."""
    steps = event.data.get("steps")
    tally = tally_mapping(steps if isinstance(steps, dict) else {})
    mismatches = sum(1 for e in evidence if e.sha256_source != e.sha256_controller)
    lines = [
        f"{_EMOJI.get(str(incident.status), '')} *Incident {escape(incident.id)} {escape(incident.status)}*",
        f"Done: {escape(', '.join(tally.done) or 'nothing')}",
        f"Failed: {escape(', '.join(tally.failed) or 'nothing')}",
        *([f"Skipped: {escape(', '.join(tally.skipped))}"] if tally.skipped else []),
        f"Not done: {escape(', '.join(tally.not_done) or 'nothing')}",
        f"Evidence: {len(evidence)} file(s), SHA-256 verified on the controller"
        + (f", *{mismatches} mismatch(es)*" if mismatches else ""),
        f"Timeline: `responder show {escape(incident.id)}`; review: `responder export {escape(incident.id)} -f md`",
    ]
    text = "\n".join(lines)
    return Message(
        key=f"{incident.id}:{event.seq}",
        role="reply",
        text=escape(f"Incident {incident.id} {incident.status}"),
        blocks=[_section(text)],
    )
