"""What a `responder serve` replica does for the others when several share one PostgreSQL store:
it renews the lease on the alerts it runs, takes over what replicas whose lease expired left
behind, and wakes its idle workers when any replica queues an alert (LISTEN/NOTIFY), instead of
each worker polling the database.

A replica that dies (kill -9, its machine gone) stops renewing. Once its lease has expired
(`[store] lease`, 30 s by default), the first replica to look:
- queues again the alerts it had claimed but not started (nothing ran for them);
- wins, by a conditional update, each incident its runs had opened and not finished, marks it
  interrupted if its worker did not (a worker gets SIGTERM when its server dies and does it
  itself), and resumes it: steps that finished stay done, every role checks before it acts.
So every alert a replica acknowledged runs once: on it, or on the one that took it over."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from responder.intake.store import AlertStore
from responder.store_location import PostgresLocation
from responder.timeline import Timeline
from responder.vocabulary import IncidentStatus

log = logging.getLogger("responder.server")


class ReplicaDuties:
    """The lease-and-takeover thread and the LISTEN thread of one replica."""

    def __init__(
        self,
        location: PostgresLocation,
        store: AlertStore,
        wake: Callable[[], None],
        abandon: Callable[[str, str], None],
        run_job: Callable[[dict[str, Any]], None],
    ) -> None:
        self.location = location
        self.store = store
        self.wake = wake
        self.abandon = abandon  # (incident, reason): mark it interrupted
        self.run_job = run_job
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start both threads (daemon: they never hold the process up)."""
        for name, target in (("leases", self._leases), ("listen", self._listen)):
            thread = threading.Thread(target=target, name=f"replica-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop renewing (a replica that drains lets its lease run out only after its runs end)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def tick(self) -> None:
        """One round: renew this replica's leases, then take over what expired leases left."""
        self.store.renew_leases()
        requeued, won = self.store.take_over()
        if requeued:
            log.warning("took over %d queued alert(s) from a replica whose lease expired", requeued)
            self.wake()
        for alert_id, incident_id in won:
            self._resume(alert_id, incident_id)

    def _resume(self, alert_id: int, incident_id: str) -> None:
        timeline = Timeline(self.location)
        try:
            status = timeline.incident(incident_id).status
        finally:
            timeline.close()
        if status in (IncidentStatus.RUNNING, IncidentStatus.BLOCKED):
            self.abandon(
                incident_id,
                f"the replica running alert {alert_id} stopped renewing its lease; "
                f"{self.location.controller} takes the run over",
            )
        log.warning("incident %s (alert %d): taken over from a dead replica; resuming", incident_id, alert_id)
        self.run_job(
            {"job": "resume", "incident": incident_id, "actor": f"responder@{self.location.controller}"}
        )

    def _leases(self) -> None:
        interval = max(1.0, self.location.lease / 3)
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # the database is away: the lease runs on, readiness says so
                log.exception("lease renewal and takeover failed; trying again in %.0f s", interval)

    def _listen(self) -> None:
        from responder.postgres import listen

        while not self._stop.is_set():
            try:
                for notified in listen(self.location, timeout=1.0):
                    if self._stop.is_set():
                        return
                    if notified:
                        self.wake()
            except Exception:  # the database went away: listen again once it is back
                log.warning("LISTEN for queued alerts lost its connection; retrying")
                self._stop.wait(2.0)
