"""Claims seen from the controller: what the modules said about the containers they claimed.

Each acting module claims its container on its host before changing anything
(runbooks/module_utils, claim_for_run). The controller learns the outcome from the run's
events and writes it down: a container another open incident holds (the run stops, or in a
fleet that container is skipped and the rest go on; both timelines say so), and a claim taken
over from a closed incident (named, with how to undo what that one changed)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from responder.catalog import Catalog
from responder.execution.events import RunnerEvent
from responder.execution.runner import CancelToken
from responder.ids import INCIDENT_ID
from responder.planning import PlannedStep
from responder.recording import Recorder
from responder.vocabulary import EventKind

_FULL_ID = re.compile(r"[0-9a-f]{64}")


def fleet_output(event: RunnerEvent) -> Mapping[str, Any] | None:
    """The per-container output of a fleet step's module result, if this event carries one."""
    output = event.result.get("output")
    if isinstance(output, dict) and output.get("fleet") and isinstance(output.get("targets"), dict):
        return output
    return None


class ClaimWatch:
    """Follows one engine's runs for claim outcomes."""

    def __init__(self, record: Recorder, catalog: Catalog, cancel: CancelToken) -> None:
        self.record = record
        self.catalog = catalog
        self.cancel = cancel
        # (holder, host, container ID) once a single-container claim failed in the current batch.
        self.held: list[tuple[str, str, str]] = []
        # The open incident that already held the container when this run reached it by another
        # reference; the webhook worker then attaches its alert there.
        self.held_by: str | None = None
        self._fleet_held: set[tuple[str, str, str]] = set()

    def watch(self, incident_id: str, event: RunnerEvent, planned: Mapping[str, PlannedStep]) -> None:
        """Take one runner event. A module that refused because another incident claimed the
        container first (container_held) stops a single-container run, naming the holder; in
        a fleet, each such container is named and skipped. A claim taken over from a finished
        incident is said, with the container's full ID."""
        if not event.host or self.held:
            return
        if event.kind == "runner_on_failed" and event.result.get("reason") == EventKind.CONTAINER_HELD:
            holder = event.result.get("held_by")
            output = event.result.get("output")
            cid = output.get("container_id") if isinstance(output, dict) else None
            if isinstance(holder, str) and INCIDENT_ID.match(holder) and isinstance(cid, str):
                self.held.append((holder, event.host, cid))
                self.held_by = holder
                self.cancel.cancel(f"container {cid[:12]} on {event.host} is held by incident {holder}")
            return
        if event.kind not in ("runner_on_ok", "runner_on_failed") or event.step_id not in planned:
            return
        fleet = fleet_output(event)
        if fleet is not None:
            self._fleet(incident_id, event.host, fleet)
            return
        if event.kind != "runner_on_ok" or event.step_id is None:
            return
        action = self.catalog.get(planned[event.step_id].step.action)
        if action is None or action.target_output is None:  # the role acts on no container
            return
        facts = event.result.get("ansible_facts")
        output = facts.get("responder_output") if isinstance(facts, dict) else None
        cid = output.get(action.target_output) if isinstance(output, dict) else None
        if not isinstance(cid, str) or not _FULL_ID.fullmatch(cid):
            return
        previous = output.get("claimed_from") if isinstance(output, dict) else None
        if isinstance(previous, str) and INCIDENT_ID.match(previous):
            self.record.claimed_from(incident_id, previous, event.host, cid)

    def fleet_holders(self) -> dict[str, str]:
        """Container ID -> the open incident that held it, for every fleet container skipped so far."""
        return {cid: holder for holder, _host, cid in self._fleet_held}

    def _fleet(self, incident_id: str, host: str, output: Mapping[str, Any]) -> None:
        for cid, entry in (output.get("targets") or {}).items():
            if not isinstance(entry, dict) or not _FULL_ID.fullmatch(str(cid)):
                continue
            name = str(entry.get("container_name") or "")
            holder = entry.get("held_by")
            held = entry.get("outcome") == "held" and isinstance(holder, str) and INCIDENT_ID.match(holder)
            if held and (str(holder), host, cid) not in self._fleet_held:
                self._fleet_held.add((str(holder), host, cid))
                self.record.held(incident_id, str(holder), host, cid, fleet=True, name=name)
            previous = (entry.get("output") or {}).get("claimed_from")
            if isinstance(previous, str) and INCIDENT_ID.match(previous):
                self.record.claimed_from(incident_id, previous, host, cid)
