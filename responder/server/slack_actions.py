"""What a press of a Slack button (or a submitted modal) becomes: a decision through the Service,
under the same rules as the CLI and the API, by a Slack user who may make it.

Both ways Slack reaches responder end here: the Interactivity request URL
(responder.server.slack_interactions) and Socket Mode (responder.server.slack_socket). Each
hands over the interaction payload after Slack's own checks; this module parses it, decides who
may act (`[approvals]` in the config: Slack user IDs and user groups, optionally per severity),
and acts in a background thread, so the answer to Slack goes out within its 3-second limit.

Everything is recorded: a decision carries the Slack user ID and display name, the channel and
the message it came from (`via`); so does a refusal (`approval_refused`). The person pressing a
button they may not use gets an ephemeral message (only they see it) and nothing changes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from responder.catalog import Catalog
from responder.errors import ApprovalRefused, ConfigError, StateError, UsageError
from responder.intake.alerts import ShapeError
from responder.notify.messages import APPROVE, APPROVE_ALL, DENY, RELEASE
from responder.settings import Settings
from responder.timeline import Event, Timeline
from responder.vocabulary import EventKind

log = logging.getLogger("responder.slack")
_ACTIONS = {APPROVE, APPROVE_ALL, DENY, RELEASE}
_MODALS = {DENY: "Deny", RELEASE: "Release"}
REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
GROUP_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Press:
    """One interaction, reduced to what responder acts on."""

    action: str  # one of the root message's action_ids
    incident: str
    step: str | None
    user_id: str
    user_name: str
    channel: str
    message_ts: str
    trigger_id: str = ""
    reason: str = ""
    submitted: bool = False  # from a modal (deny, release) rather than a button

    @property
    def actor(self) -> str:
        """How the timeline names a Slack user: by the ID, which never changes."""
        return f"slack:{self.user_id}"

    @property
    def via(self) -> dict[str, str]:
        """Where the decision came from, for the timeline and the exports."""
        return {
            "slack_user_id": self.user_id,
            "slack_user_name": self.user_name,
            "slack_channel": self.channel,
            "slack_message_ts": self.message_ts,
        }


def parse(payload: Mapping[str, Any]) -> Press | None:
    """A block_actions press of one of our buttons, or a view_submission of one of our modals;
    None for anything else Slack sends (other apps' actions, view_closed). Raises ShapeError when
    the payload claims to be ours and is malformed."""
    kind = payload.get("type")
    raw_user = payload.get("user")
    user: Mapping[str, Any] = raw_user if isinstance(raw_user, dict) else {}
    user_id = str(user.get("id") or "")
    user_name = str(user.get("username") or user.get("name") or user_id)
    if kind == "block_actions":
        actions = payload.get("actions") or []
        action = actions[0] if actions and isinstance(actions[0], dict) else {}
        if action.get("action_id") not in _ACTIONS:
            return None
        target = _value(action.get("value"))
        channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get(
            "channel_id"
        )
        message = (payload.get("message") or {}).get("ts") or (payload.get("container") or {}).get(
            "message_ts"
        )
        return _checked(
            Press(
                str(action["action_id"]),
                target["incident"],
                target["step"],
                user_id,
                user_name,
                str(channel or ""),
                str(message or ""),
                str(payload.get("trigger_id") or ""),
            )
        )
    if kind == "view_submission":
        view = payload.get("view") or {}
        if view.get("callback_id") not in (DENY, RELEASE):
            return None
        meta = _value(view.get("private_metadata"))
        values = ((view.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
        reason = str((values.get(REASON_INPUT) or {}).get("value") or "")
        return _checked(
            Press(
                str(view["callback_id"]),
                meta["incident"],
                meta["step"],
                user_id,
                user_name,
                str(meta.get("channel") or ""),
                str(meta.get("message_ts") or ""),
                reason=reason.strip(),
                submitted=True,
            )
        )
    return None


def answer(press: Press | None) -> dict[str, Any] | None:
    """What Slack gets back at once: a modal without a reason is sent back with an error; else nothing."""
    if press is not None and press.submitted and not press.reason:
        return {"response_action": "errors", "errors": {REASON_BLOCK: "A reason is required."}}
    return None


def _value(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(str(text))
    except ValueError:
        raise ShapeError("button value or modal metadata is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("incident"), str):
        raise ShapeError("button value or modal metadata names no incident")
    step = value.get("step")
    return {**value, "step": step if isinstance(step, str) else None}


def _checked(press: Press) -> Press:
    if not press.user_id.isalnum() or not 0 < len(press.user_id) <= 32:
        raise ShapeError("interaction without a Slack user ID")
    if len(press.incident) > 64 or len(press.reason) > 2000:
        raise ShapeError("interaction fields too long")
    return press


@dataclass
class ApproverPolicy:
    """Who may decide from Slack: `[approvals]` slack_users and slack_groups, and per severity
    `[approvals.severity.<level>]` lists that replace them for incidents of that severity."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    by_severity: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> ApproverPolicy:
        """From the config file's `[approvals]` table (checked: lists of Slack IDs)."""

        def ids(table: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
            value = table.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.isalnum() for v in value):
                raise ConfigError(f'{where}.{key} must be a list of Slack IDs, e.g. ["U012AB3CD"]')
            return frozenset(value)

        levels = section.get("severity", {})
        if not isinstance(levels, dict):
            raise ConfigError(
                "[approvals.severity] must be tables named by severity, e.g. [approvals.severity.critical]"
            )
        return cls(
            ids(section, "slack_users", "[approvals]"),
            ids(section, "slack_groups", "[approvals]"),
            {
                str(level): (
                    ids(t, "slack_users", f"[approvals.severity.{level}]"),
                    ids(t, "slack_groups", f"[approvals.severity.{level}]"),
                )
                for level, t in levels.items()
            },
        )

    def lists_for(self, severity: str) -> tuple[frozenset[str], frozenset[str]]:
        """The user and group lists that apply to an incident of `severity`."""
        return self.by_severity.get(severity, (self.users, self.groups))


class SlackDecider:
    """Acts on presses: checks the person, then approves, opens a reason modal, denies or releases."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        policy: ApproverPolicy,
        client: Any,  # slack_sdk.WebClient with the bot token
        run_job: Callable[[Mapping[str, Any]], None],
        observe: Callable[[Event], None] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.policy = policy
        self.client = client
        self.run_job = run_job
        self.observe = observe
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack-decision")
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_lock = threading.Lock()

    def submit(self, press: Press) -> None:
        """Decide in the background: Slack has its answer already."""
        future = self._pool.submit(self.decide, press)

        def logged(done: Any) -> None:
            if done.exception() is not None:
                log.error("slack decision on %s failed: %s", press.incident, done.exception())

        future.add_done_callback(logged)

    def close(self) -> None:
        """Let decisions in flight finish."""
        self._pool.shutdown(wait=True)

    def decide(self, press: Press) -> None:
        """The decision itself (in a worker thread)."""
        timeline = Timeline(self.settings.database)
        try:
            try:
                incident = timeline.incident(press.incident)
            except UsageError:
                self._ephemeral(press, f"There is no incident {press.incident}.")
                return
            allowed, why = self._may_decide(press.user_id, incident.severity)
            if not allowed:
                self._refuse(timeline, press, why)
                return
            if press.action in _MODALS and not press.submitted:
                self._open_modal(press)
                return
            self._act(timeline, press)
        finally:
            timeline.close()

    # who may decide -----------------------------------------------------------------------------

    def _may_decide(self, user_id: str, severity: str) -> tuple[bool, str]:
        users, groups = self.policy.lists_for(severity)
        if not users and not groups:
            return (
                False,
                "no Slack approvers are configured for this severity ([approvals] slack_users / slack_groups)",
            )
        if user_id in users or any(user_id in self._members(g) for g in sorted(groups)):
            return True, ""
        return False, f"you are not an approver for {severity} incidents"

    def _members(self, group: str) -> frozenset[str]:
        with self._groups_lock:
            cached = self._groups.get(group)
            if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        try:
            members = frozenset(self.client.usergroups_users_list(usergroup=group).get("users") or [])
        except Exception as exc:  # Slack unreachable: nobody gets in through this group meanwhile
            log.warning("could not read the members of Slack user group %s: %s", group, exc)
            return frozenset()
        with self._groups_lock:
            self._groups[group] = (time.monotonic(), members)
        return members

    def _refuse(self, timeline: Timeline, press: Press, why: str) -> None:
        what = {APPROVE: "approve", APPROVE_ALL: "approve", DENY: "deny", RELEASE: "release"}[press.action]
        event = timeline.append(
            press.incident,
            EventKind.APPROVAL_REFUSED,
            f"{press.actor} ({press.user_name}) may not {what} from Slack: {why}",
            step=press.step,
            actor=press.actor,
            data={"decision": "refused", "reason": why, "wanted": what, "via": press.via},
        )
        if self.observe:
            self.observe(event)
        self._ephemeral(press, f"Not done: {why}. Nothing was changed.")

    # acting -----------------------------------------------------------------------------------------

    def _service(self) -> Any:
        from responder.service import Service

        return Service(self.settings, self.catalog, slack=False, on_event=self.observe)

    def _act(self, timeline: Timeline, press: Press) -> None:
        from responder import approvals

        if press.action == RELEASE:
            if not press.reason:
                self._ephemeral(press, "A release needs a reason.")
                return
            self.run_job(
                {
                    "job": "release",
                    "incident": press.incident,
                    "actor": press.actor,
                    "reason": press.reason,
                    "via": press.via,
                }
            )
            self._ephemeral(press, f"Releasing {press.incident}; its thread will say how it went.")
            return
        service = self._service()
        try:
            if press.action == DENY:
                service.deny(press.incident, press.actor, press.reason, press.via)
                return
            steps = None if press.action == APPROVE_ALL else [str(press.step)]
            service.approve(press.incident, steps, press.actor, "", press.via)
            gate = service.gate_waiting(press.incident)
        except ApprovalRefused as exc:
            self._refuse(timeline, press, str(exc))
            return
        except StateError as exc:  # decided already (a double click, someone faster): say so
            self._ephemeral(press, f"Nothing to do: {exc}.")
            return
        finally:
            service.timeline.close()
        if gate is not None:
            self._ephemeral(press, f"Approval recorded. Step {gate.step}: {approvals.describe(gate)}.")
            return
        self.run_job({"job": "continue", "incident": press.incident})

    def _open_modal(self, press: Press) -> None:
        title = _MODALS[press.action]
        what = (
            f"step {press.step} of {press.incident}"
            if press.action == DENY
            else f"the containment of {press.incident}"
        )
        meta = {
            "incident": press.incident,
            "step": press.step,
            "channel": press.channel,
            "message_ts": press.message_ts,
        }
        view = {
            "type": "modal",
            "callback_id": press.action,
            "private_metadata": json.dumps(meta),
            "title": {"type": "plain_text", "text": f"{title} {press.incident}"[:24]},
            "submit": {"type": "plain_text", "text": title},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": REASON_BLOCK,
                    "label": {"type": "plain_text", "text": f"Why {title.lower()} {what}?"[:2000]},
                    "element": {
                        "type": "plain_text_input",
                        "action_id": REASON_INPUT,
                        "multiline": True,
                        "max_length": 2000,
                    },
                }
            ],
        }
        try:
            self.client.views_open(trigger_id=press.trigger_id, view=view)
        except Exception as exc:
            log.warning("could not open the %s dialog for %s: %s", title.lower(), press.incident, exc)
            self._ephemeral(
                press, f"Could not open the dialog ({exc}); use `responder {title.lower()}` instead."
            )

    def _ephemeral(self, press: Press, text: str) -> None:
        try:
            self.client.chat_postEphemeral(channel=press.channel, user=press.user_id, text=text)
        except Exception as exc:  # the decision (or refusal) is on the timeline whatever Slack says
            log.warning("could not tell %s in Slack: %s", press.user_id, exc)
