"""The background side of notifications: a queue the engine drops timeline events into (O(1),
never blocking containment) and one worker thread that renders and delivers them in order.

Retries: 429 waits for Retry-After; 5xx and connection errors back off with jitter, up to a
budget; permanent errors (invalid_auth, channel_not_found, ...) are not retried. Before posting
again after an ambiguous failure, the worker looks the message up by its key, so a post that
did reach Slack is not posted twice. Every outcome lands on the timeline: sent with the Slack
ts, or failed with the error.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from responder.notify.messages import (
    Message,
    closing_message,
    notice_message,
    plain_reply,
    root_message,
    step_message,
)
from responder.notify.slack import DeliveryError, Transport
from responder.store_location import DatabaseLocation
from responder.timeline import Event, Redactor, Timeline
from responder.vocabulary import EventKind, IncidentStatus

log = logging.getLogger("responder.notify")

_WATCHED = {
    EventKind.INCIDENT_OPENED,
    EventKind.STEP_FINISHED,
    EventKind.APPROVAL_REQUESTED,
    EventKind.APPROVAL_GRANTED,
    EventKind.APPROVAL_DENIED,
    EventKind.INCIDENT_RESUMED,
    EventKind.INCIDENT_CLOSED,
    EventKind.INCIDENT_INTERRUPTED,
    EventKind.ALERT_RESOLVED,
    EventKind.INTAKE_WARNING,
    EventKind.INCIDENT_RELEASED,
    EventKind.APPROVAL_REFUSED,
}
_STATUS_CHANGES = {
    EventKind.APPROVAL_REQUESTED,
    EventKind.APPROVAL_GRANTED,
    EventKind.APPROVAL_DENIED,
    EventKind.INCIDENT_RESUMED,
    EventKind.INCIDENT_CLOSED,
    EventKind.INCIDENT_INTERRUPTED,
    EventKind.INCIDENT_RELEASED,
}
_DECISIONS = (EventKind.APPROVAL_GRANTED, EventKind.APPROVAL_DENIED, EventKind.INCIDENT_RELEASED)
_STOP = object()


@dataclass(frozen=True)
class Notice:
    """A message for the channel that no incident owns."""

    key: str
    text: str


@dataclass
class RetryPolicy:
    """How often and how long a Slack message is retried."""

    attempts: int = 6  # for transient errors; 429 waits do not count against it
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_rate_limit_waits: int = 60


class ChannelPacer:
    """Token bucket per channel: Slack allows about one message per second per channel, with bursts."""

    def __init__(self, rate: float = 1.0, burst: float = 3.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens: dict[str, tuple[float, float]] = {}

    def wait(self, channel: str) -> None:
        """Wait for the channel's next slot (Slack allows about one message a second)."""
        now = time.monotonic()
        tokens, stamp = self.tokens.get(channel, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            time.sleep((1 - tokens) / self.rate)
            now, tokens = time.monotonic(), 1.0
        self.tokens[channel] = (tokens - 1, now)

    def refund(self, channel: str) -> None:
        """An attempt Slack refused (429, or an error that certainly posted nothing) used no budget."""
        tokens, stamp = self.tokens.get(channel, (self.burst, time.monotonic()))
        self.tokens[channel] = (min(self.burst, tokens + 1), stamp)


class SlackNotifier:
    """Posts an incident's thread from a background queue: a slow Slack never delays containment."""

    def __init__(
        self,
        transport: Transport,
        channel: str,
        database: DatabaseLocation,
        secret: str,
        policy: RetryPolicy | None = None,
        pacer: ChannelPacer | None = None,
        interactive: bool = False,
    ) -> None:
        self.transport = transport
        self.interactive = interactive and transport.threads  # buttons need chat.update
        self.channel = channel
        self.database = database
        self.secret = secret
        self.policy = policy or RetryPolicy()
        self.pacer = pacer or ChannelPacer()
        self.queue: queue.Queue[Any] = queue.Queue()
        self.sent = 0
        self.failed = 0
        self._roots: dict[str, tuple[str, str]] = {}  # incident -> (channel id, root ts)
        # Set when close() gives up waiting: the worker then makes no further attempt, so a
        # hanging Slack costs at most the request in flight, not a retry schedule after exit.
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._work, name="responder-slack", daemon=True)
        self._thread.start()

    # the containment side: O(1), never blocks, never raises -------------------------------

    def observe(self, event: Event) -> None:
        """Queue an event for Slack if it is one Slack is told about (never blocks)."""
        if event.kind in _WATCHED or event.data.get("declared_by"):
            self.queue.put_nowait(event)

    def notice(self, key: str, text: str) -> None:
        """A channel message that belongs to no incident (Alertmanager said it dropped alerts,
        and none of the notification opened an incident). Delivered like the rest; since no
        timeline owns it, its delivery is logged rather than recorded."""
        self.queue.put_nowait(Notice(key, text))

    def close(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for queued messages; returns how many were left undelivered,
        each recorded on the timeline as failed."""
        self.queue.put(_STOP)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return 0
        self._abandoned.set()
        left: list[Event | Notice] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                left.append(item)
        self.queue.put(_STOP)  # drained with the rest: the worker must still find it
        timeline = Timeline(self.database, Redactor([self.secret]))
        for event in left:
            self.failed += 1
            if isinstance(event, Notice):
                log.warning("slack notice not delivered at exit: %s", event.text[:200])
                continue
            timeline.append(
                event.incident_id,
                EventKind.NOTIFICATION_FAILED,
                f"slack message for {event.kind} not delivered: gave up after waiting {timeout:.0f}s at exit",
                actor="slack",
                data={"status": "failed", "error": "abandoned at exit", "for": event.kind},
            )
        timeline.close()
        return len(left) + 1  # the message in flight is unaccounted for too

    # the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        self._timeline = Timeline(self.database, Redactor([self.secret]))
        while True:
            item = self.queue.get()
            if item is _STOP or self._abandoned.is_set():
                return
            try:
                if isinstance(item, Notice):
                    self._deliver(None, notice_message(item.key, item.text))
                else:
                    self._handle(item)
            except Exception:  # a notifier bug must not take the worker down; it is logged
                log.exception("slack notification for %s failed", getattr(item, "incident_id", "a notice"))

    def _handle(self, event: Event) -> None:
        incident = self._timeline.incident(event.incident_id)
        iid = incident.id
        if event.kind == EventKind.INCIDENT_OPENED:
            self._deliver(iid, self._root(incident, f"{iid}:root"), root=True)
            return
        if event.kind == EventKind.STEP_FINISHED:
            self._deliver(iid, step_message(iid, event))
        elif event.kind in (
            EventKind.APPROVAL_REQUESTED,
            EventKind.APPROVAL_GRANTED,
            EventKind.APPROVAL_DENIED,
            EventKind.APPROVAL_REFUSED,
            EventKind.INCIDENT_RESUMED,
            EventKind.INCIDENT_RELEASED,
        ) or event.data.get("declared_by"):  # a role's own events: a secret rotated, a service held
            self._deliver(iid, plain_reply(iid, event))
        elif event.kind == EventKind.INTAKE_WARNING:
            self._deliver(iid, plain_reply(iid, event, prefix=":warning: "))
        elif event.kind == EventKind.ALERT_RESOLVED:
            still = (
                "still contained" if incident.status is not IncidentStatus.RELEASED else "already released"
            )
            self._deliver(iid, plain_reply(iid, event, prefix=f"Alert resolved; container {still}. "))
        elif event.kind in (EventKind.INCIDENT_CLOSED, EventKind.INCIDENT_INTERRUPTED):
            self._deliver(iid, closing_message(incident, event, self._timeline.evidence(iid)))
        if event.kind in _STATUS_CHANGES:
            self._update_root(incident, event)

    def _root(self, incident: Any, key: str) -> Message:
        scope = incident.trigger.get("targets")
        container = scope if isinstance(scope, str) else None
        hosts: set[str] = set()
        decision = None
        for event in self._timeline.events(incident.id):
            if event.host:
                hosts.add(event.host)
            if event.kind in _DECISIONS:
                decision = event
        return root_message(incident, key, sorted(hosts), container, self.interactive, decision)

    def _root_ref(self, incident_id: str) -> tuple[str, str] | None:
        if incident_id not in self._roots:
            for event in self._timeline.events(incident_id):  # a resumed incident, in a new process
                if (
                    event.kind == EventKind.NOTIFICATION_SENT
                    and event.data.get("role") == "root"
                    and event.data.get("ts")
                ):
                    self._roots[incident_id] = (str(event.data["channel"]), str(event.data["ts"]))
        return self._roots.get(incident_id)

    def _update_root(self, incident: Any, event: Event) -> None:
        ref = self._root_ref(incident.id)
        message = self._root(incident, f"{incident.id}:root:{event.seq}")
        if not self.transport.threads:
            self._deliver(incident.id, message)
            return
        if ref is None:
            return
        channel, ts = ref

        def update() -> tuple[str, str]:
            self.transport.update(channel, ts, message)
            return ts, channel

        self._attempt(incident.id, message, update, lookup=None, role="root_update")

    def _deliver(self, incident_id: str | None, message: Message, root: bool = False) -> None:
        ref = None if root or incident_id is None else self._root_ref(incident_id)
        thread_ts = ref[1] if ref and self.transport.threads else None
        channel = ref[0] if ref and self.transport.threads else self.channel

        def post() -> tuple[str | None, str]:
            return self.transport.post(channel, message, thread_ts)

        def lookup() -> str | None:
            return self.transport.find(channel, message.key, thread_ts)

        result = self._attempt(incident_id, message, post, lookup, role=message.role)
        if root and incident_id is not None and result and result[0]:
            self._roots[incident_id] = (result[1], result[0])

    def _attempt(self, incident_id: str | None, message: Message, send: Any, lookup: Any, role: str) -> Any:
        attempts = rate_waits = 0
        ambiguous = False
        current = message
        while not self._abandoned.is_set():
            try:
                if ambiguous and lookup is not None:
                    found = lookup()
                    if found:
                        return self._record_sent(
                            incident_id, current, role, found, attempts, deduplicated=True
                        )
                self.pacer.wait(self.channel)
                attempts += 1
                ts, channel = send()
                return self._record_sent(incident_id, current, role, ts, attempts, channel=channel)
            except DeliveryError as exc:
                if not exc.ambiguous:
                    self.pacer.refund(self.channel)
                if exc.kind == "retry_after" and rate_waits < self.policy.max_rate_limit_waits:
                    rate_waits += 1
                    attempts -= 1  # honouring a rate limit is not a failed attempt
                    if self._abandoned.wait(exc.retry_after):
                        return None
                    continue
                if exc.kind == "too_long" and current is message:
                    current = Message(
                        message.key,
                        message.role,
                        message.text[:1000] + "\u2026",
                        [b for b in message.blocks[:3]],
                    )
                    continue
                ambiguous = ambiguous or exc.ambiguous
                if exc.kind in ("permanent", "too_long") or attempts >= self.policy.attempts:
                    return self._record_failed(
                        incident_id, current, role, str(exc), attempts, exc.kind == "permanent"
                    )
                delay = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempts - 1))
                if self._abandoned.wait(delay * (0.5 + random.random() / 2)):
                    return None  # close() gave up on us and recorded this message as not delivered

    def _record_sent(
        self,
        incident_id: str | None,
        message: Message,
        role: str,
        ts: str | None,
        attempts: int,
        channel: str | None = None,
        deduplicated: bool = False,
    ) -> tuple[str | None, str]:
        self.sent += 1
        channel = channel or self.channel
        note = " (found after an ambiguous failure; not posted again)" if deduplicated else ""
        if incident_id is None:
            log.info("slack %s sent to %s%s", role, channel, note)
            return ts, channel
        self._timeline.append(
            incident_id,
            EventKind.NOTIFICATION_SENT,
            f"slack {role} sent to {channel}" + (f" ts {ts}" if ts else "") + note,
            actor="slack",
            data={
                "status": "sent",
                "role": role,
                "channel": channel,
                "ts": ts,
                "key": message.key,
                "attempts": attempts,
                "deduplicated": deduplicated,
            },
        )
        return ts, channel

    def _record_failed(
        self, incident_id: str | None, message: Message, role: str, error: str, attempts: int, permanent: bool
    ) -> None:
        self.failed += 1
        if permanent:
            log.critical("slack notification refused permanently: %s", error)
        if incident_id is None:
            log.warning("slack %s not delivered: %s", role, error)
            return
        self._timeline.append(
            incident_id,
            EventKind.NOTIFICATION_FAILED,
            f"slack {role} not delivered: {error}",
            actor="slack",
            data={
                "status": "failed",
                "role": role,
                "key": message.key,
                "error": error,
                "attempts": attempts,
                "permanent": permanent,
            },
        )
