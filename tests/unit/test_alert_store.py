"""The durable alert queue: dedup inside group commits, resolved alerts, claims, the container lock,
crash recovery and a busy database. Each test runs on a real SQLite file and on a real PostgreSQL
database (tests/postgres.py), no server."""

from __future__ import annotations

import contextlib
import copy
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from responder import db
from responder.catalog import load_catalog
from responder.intake import alerts as alerts_mod
from responder.intake import records as records_mod
from responder.intake import store as store_mod
from responder.intake.records import AlertClaimLost, Intake, mark_started
from responder.intake.routing import Router
from responder.intake.store import AlertStore, StoreUnavailable
from responder.playbook.parse import load_playbook
from responder.settings import shipped_dir
from responder.store_location import DatabaseLocation
from responder.timeline import ContainerBusy, Incident, Timeline
from responder.vocabulary import IncidentStatus
from tests.conftest import FIXTURES
from tests.unit.test_alert_intake import AM, FALCO


@pytest.fixture(scope="module")
def router() -> Router:
    catalog = load_catalog([FIXTURES / "runbooks", shipped_dir("runbooks")])
    return Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted((FIXTURES / "webhook").glob("*.yml"))]
    )


@pytest.fixture
def store(database: DatabaseLocation) -> Iterator[AlertStore]:
    store = AlertStore(database)
    yield store
    store.close()


@contextlib.contextmanager
def write_lock_held(location: DatabaseLocation) -> Iterator[None]:
    """Another writer holds the store's write lock (SQLite's, or the advisory lock every
    PostgreSQL writer takes) until the block ends."""
    blocker = db.connect(location)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def stored_bytes(location: DatabaseLocation) -> bytes:
    """Everything the store holds: the SQLite file, or every row of every table as text."""
    if isinstance(location, Path):  # with what the write-ahead log holds, not yet checkpointed
        wal = location.with_name(location.name + "-wal")
        return location.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    tables = ("incidents", "events", "steps", "evidence", "alerts", "claims")
    return "\n".join(
        str(row[0])
        for table in tables
        for row in rows(location, f"SELECT row_to_json(t)::text FROM {table} t")
    ).encode()


def rows(location: DatabaseLocation, sql: str) -> list[tuple[Any, ...]]:
    conn = db.connect(location)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def burst_alert(n: int, status: str = "firing", starts: str = "2026-11-29T03:00:00Z") -> dict[str, Any]:
    payload = copy.deepcopy(AM)
    alert = payload["alerts"][0]
    alert["labels"] = {"alertname": "WhBurst", "value": f"v{n}"}
    alert["fingerprint"] = f"{n:016x}"
    alert["startsAt"] = starts
    alert["status"] = status
    return payload


def intake(router: Router, payload: dict[str, Any], parser: Any = alerts_mod.parse_alertmanager) -> Intake:
    (alert,) = parser(payload)
    route = router.route(alert)
    if route is None or alert.status != "firing":
        return Intake(alert, route)
    params, limit = route.run_inputs(alert)
    return Intake(alert, route, params=params, limit=limit)


def opened(timeline: Timeline, inc: Incident) -> None:
    """Create an incident the way a worker does: its alert goes from claimed to started with it."""
    alert_id = inc.alert_id
    timeline.create_incident(
        inc, None if alert_id is None else lambda conn: mark_started(conn, alert_id, inc.id)
    )


def decide(store: AlertStore, item: Intake) -> Any:
    return store.submit([item])[0]


def incident(alert_id: int | None, lock: str | None, number: int = 1) -> Incident:
    return Incident(
        id=f"INC-20261129-000000-{number:04x}",
        created_at="2026-11-29T00:00:00Z",
        updated_at="2026-11-29T00:00:00Z",
        status=IncidentStatus.RUNNING,
        playbook="wh-burst",
        playbook_path="/x.yml",
        playbook_sha256="0" * 64,
        severity="info",
        params={},
        secret_params=(),
        trigger={},
        inventory=None,
        host_limit=None,
        next_step=None,
        actor="test",
        lock_key=lock,
        alert_id=alert_id,
    )


def test_any_permutation_of_a_duplicated_stream_queues_each_alert_once(
    store: AlertStore, router: Router
) -> None:
    """1,000 deliveries: 100 unique alerts, each sent 10 times, shuffled, from 16 threads at once
    (what two Alertmanager replicas and their retries look like)."""
    deliveries = [n for n in range(100) for _ in range(10)]
    random.Random(7).shuffle(deliveries)
    items = [intake(router, burst_alert(n)) for n in deliveries]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: decide(store, i), items))
    queued = [r for r in results if r.result == "queued"]
    assert len(queued) == 100
    assert len({r.dedup_key for r in queued}) == 100
    assert sum(r.result == "duplicate" for r in results) == 900
    by_key = {r.dedup_key: r.alert_id for r in queued}
    assert all(by_key[r.dedup_key] == r.alert_id for r in results)  # duplicates point at the first
    assert store.counts() == {"queued": 100}
    assert rows(store.path, "SELECT SUM(repeats) FROM alerts")[0][0] == 900


def test_same_alert_twice_in_one_batch(store: AlertStore, router: Router) -> None:
    item = intake(router, burst_alert(1))
    first, second = store.submit([item, item])
    assert (first.result, second.result) == ("queued", "duplicate")


def test_a_new_startsat_is_a_new_occurrence(store: AlertStore, router: Router) -> None:
    assert decide(store, intake(router, burst_alert(1))).result == "queued"
    assert decide(store, intake(router, burst_alert(1, starts="2026-11-29T05:00:00Z"))).result == "queued"


def test_falco_repeats_fold_within_the_window_only(store: AlertStore, router: Router) -> None:
    first = decide(store, intake(router, FALCO, alerts_mod.parse_falco))
    assert first.result == "queued"
    again = copy.deepcopy(FALCO)
    again["uuid"] = "another-delivery"
    assert decide(store, intake(router, again, alerts_mod.parse_falco)).result == "duplicate"
    conn = db.connect(store.path)
    conn.execute("UPDATE alerts SET expires_at=0")  # the window has passed
    conn.close()
    assert decide(store, intake(router, again, alerts_mod.parse_falco)).result == "queued"


def test_unmatched_rejected_and_no_action_are_recorded(store: AlertStore, router: Router) -> None:
    other = burst_alert(1)
    other["alerts"][0]["labels"]["alertname"] = "Unrouted"
    assert decide(store, intake(router, other)).result == "unmatched"
    (alert,) = alerts_mod.parse_alertmanager(burst_alert(2))
    rejected = decide(store, Intake(alert, router.route(alert), rejected="rejected_input: bad"))
    assert (rejected.result, rejected.reason) == ("rejected", "rejected_input: bad")
    (host,) = alerts_mod.parse_falco({**FALCO, "output_fields": {"container.id": "host"}})
    assert decide(store, Intake(host, None, no_action="host event")).result == "no_action"
    assert store.counts() == {"unmatched": 1, "rejected": 1, "no_action": 1}


def test_an_unmatched_event_never_swallows_a_matching_one_for_the_same_container(
    store: AlertStore, router: Router
) -> None:
    # #15 bug 2: Falco's dedup key is host, container and rule; the priority decides the route.
    notice = {**FALCO, "priority": "Notice"}
    first = decide(store, intake(router, notice, alerts_mod.parse_falco))
    assert first.result == "unmatched"
    repeat = decide(store, intake(router, notice, alerts_mod.parse_falco))
    assert (repeat.result, repeat.alert_id) == ("duplicate", first.alert_id)  # no row per delivery
    # the server's in-memory fast path does not answer for it either: it must be routed again
    assert store.known_duplicates(alerts_mod.parse_falco(FALCO)) is None
    warning = decide(store, intake(router, FALCO, alerts_mod.parse_falco))
    assert warning.result == "queued"
    again = decide(store, intake(router, FALCO, alerts_mod.parse_falco))
    assert (again.result, again.alert_id) == ("duplicate", warning.alert_id)
    assert store.counts() == {"unmatched": 1, "queued": 1}


def test_resolved_is_recorded_on_the_incident_and_queues_nothing(store: AlertStore, router: Router) -> None:
    queued = decide(store, intake(router, burst_alert(1)))
    assert store.claim_next() == [queued.alert_id]
    timeline = Timeline(store.path)
    opened(timeline, incident(queued.alert_id, None))
    resolved = decide(store, intake(router, burst_alert(1, status="resolved")))
    assert (resolved.result, resolved.incident_id) == ("resolved", "INC-20261129-000000-0001")
    assert decide(store, intake(router, burst_alert(1, status="resolved"))).result == "duplicate"
    assert decide(store, intake(router, burst_alert(1))).result == "duplicate"
    kinds = [e.kind for e in timeline.events("INC-20261129-000000-0001")]
    assert kinds == ["alert_resolved", "alert_repeated"]
    assert store.claim_next() == []  # neither the resolved alert nor the repeat queued a run


def test_an_alert_opens_at_most_one_incident(store: AlertStore, router: Router) -> None:
    queued = decide(store, intake(router, burst_alert(1)))
    timeline = Timeline(store.path)
    with pytest.raises(AlertClaimLost):  # not claimed yet
        opened(timeline, incident(queued.alert_id, None))
    assert store.claim_next() == [queued.alert_id]
    opened(timeline, incident(queued.alert_id, None))
    with pytest.raises(AlertClaimLost):
        opened(timeline, incident(queued.alert_id, None, number=2))
    assert store.load(queued.alert_id).summary["alert_id"] == queued.alert_id


def test_container_lock_is_held_while_the_incident_is_open(database: DatabaseLocation) -> None:
    timeline = Timeline(database)
    opened(timeline, incident(None, "local|all|web-1", number=1))
    with pytest.raises(ContainerBusy) as caught:
        opened(timeline, incident(None, "local|all|web-1", number=2))
    assert caught.value.holder == "INC-20261129-000000-0001"
    assert "responder show INC-20261129-000000-0001" in str(caught.value)
    opened(timeline, incident(None, "local|all|web-2", number=3))  # another container
    timeline.set_status("INC-20261129-000000-0001", IncidentStatus.SUCCEEDED)
    opened(timeline, incident(None, "local|all|web-1", number=4))
    with pytest.raises(ContainerBusy):  # reopening the first would take the lock twice
        timeline.set_status("INC-20261129-000000-0001", IncidentStatus.RUNNING)


def test_recover_requeues_claims_that_never_started(store: AlertStore, router: Router) -> None:
    first = decide(store, intake(router, burst_alert(1)))
    second = decide(store, intake(router, burst_alert(2)))
    assert store.claim_next() == [first.alert_id]
    assert store.claim_next() == [second.alert_id]
    opened(Timeline(store.path), incident(second.alert_id, None))
    store.set_worker(second.alert_id, 999_999_999)
    requeued, running = store.recover()
    assert requeued == 1
    assert running == [(second.alert_id, "INC-20261129-000000-0001", 999_999_999)]
    assert store.claim_next() == [first.alert_id]


def test_busy_database_is_unavailable_not_an_error_of_the_sender(
    database: DatabaseLocation, router: Router
) -> None:
    store = AlertStore(database, busy_timeout=0.2)
    with write_lock_held(database), pytest.raises(StoreUnavailable, match="locked"):
        store.submit([intake(router, burst_alert(1))])
    assert decide(store, intake(router, burst_alert(1))).result == "queued"  # nothing half-written
    store.close()


def test_workers_are_woken_after_the_commit(database: DatabaseLocation, router: Router) -> None:
    woken = threading.Event()
    store = AlertStore(database, on_queued=woken.set)
    decide(store, intake(router, burst_alert(1)))
    assert woken.wait(5)
    store.close()


def test_server_path_answers_known_repeats_from_memory_and_writes_them_soon(
    database: DatabaseLocation, router: Router
) -> None:
    import asyncio

    store = AlertStore(database)
    first, second = intake(router, burst_alert(1)), intake(router, burst_alert(2))

    async def scenario() -> None:
        assert store.known_duplicates([first.alert]) is None  # never seen: must go to the database
        (queued,) = await store.submit_async([first])
        assert queued.result == "queued"
        for _ in range(5):
            (dup,) = store.known_duplicates([first.alert]) or []
            assert (dup.result, dup.alert_id) == ("duplicate", queued.alert_id)
        # a request with one known and one new alert is decided by the database, counted once
        assert store.known_duplicates([first.alert, second.alert]) is None
        mixed = await store.submit_async([first, second])
        assert [d.result for d in mixed] == ["duplicate", "queued"]
        await asyncio.sleep(store_mod.REPEAT_FLUSH + 0.3)

    asyncio.run(scenario())
    assert rows(database, "SELECT dedup_key, repeats FROM alerts ORDER BY id") == [
        (first.alert.dedup_key, 6),
        (second.alert.dedup_key, 0),
    ]
    store.close()


def test_memory_repeats_survive_a_busy_database_and_close(database: DatabaseLocation, router: Router) -> None:
    import asyncio

    store = AlertStore(database)
    first = intake(router, burst_alert(1))

    async def scenario() -> None:
        await store.submit_async([first])
        with write_lock_held(database):
            for _ in range(3):
                assert store.known_duplicates([first.alert]) is not None
            await asyncio.sleep(store_mod.REPEAT_FLUSH + 0.2)  # the write fails: database locked

    asyncio.run(scenario())
    # SQLite's loop gives up at once and keeps them in memory; PostgreSQL's writer thread (off the
    # loop) may wait for the lock and write them when it is released. Never lost, never doubled.
    expected = [[(0,)]] if isinstance(database, Path) else [[(0,)], [(3,)]]
    assert rows(database, "SELECT repeats FROM alerts") in expected
    store.close()  # writes what is still counted
    assert rows(database, "SELECT repeats FROM alerts") == [(3,)]


def test_windowed_repeats_expire_in_memory_too(database: DatabaseLocation, router: Router) -> None:
    import asyncio

    store = AlertStore(database)
    falco = intake(router, FALCO, alerts_mod.parse_falco)

    async def scenario() -> None:
        await store.submit_async([falco])
        assert store.known_duplicates([falco.alert]) is not None
        for seen in store._recent.values():
            seen.expires_at = 0.0  # the window has passed
        assert store.known_duplicates([falco.alert]) is None

    asyncio.run(scenario())
    store.close()


def test_events_the_store_writes_pass_the_redacting_path(store: AlertStore, router: Router) -> None:
    """The store writes events in its own transactions; a secret it knows (the server gives it
    its webhook credentials) never reaches the timeline, in the message or the data."""
    secret = "whsec-0123456789abcdef"
    store.redactor.add(secret)
    payload = burst_alert(7)
    payload["alerts"][0]["labels"]["alertname"] = "WhBurst"
    queued = decide(store, intake(router, payload))
    assert store.claim_next() == [queued.alert_id]
    timeline = Timeline(store.path)
    opened(timeline, incident(queued.alert_id, None, number=7))
    leaky = burst_alert(7, status="resolved")
    leaky["alerts"][0]["labels"]["alertname"] = "WhBurst"
    alert = intake(router, leaky).alert
    forged = alerts_mod.Alert(**{**alert.__dict__, "name": f"WhBurst {secret}", "dedup_key": alert.dedup_key})
    decide(store, Intake(forged, None))
    (event,) = list(timeline.events("INC-20261129-000000-0007"))
    assert event.kind == "alert_resolved" and secret not in event.message and "********" in event.message
    assert secret.encode() not in stored_bytes(store.path)


# storms (#13) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_router() -> Router:
    catalog = load_catalog([shipped_dir("runbooks")])
    return Router.from_playbooks(
        [load_playbook(p, catalog) for p in sorted(shipped_dir("playbooks").glob("*.yml"))]
    )


def compromised(container: str, severity: str = "critical") -> dict[str, Any]:
    payload = copy.deepcopy(AM)
    alert = payload["alerts"][0]
    alert["labels"] = {"alertname": "ContainerCompromised", "severity": severity, "container": container}
    alert["fingerprint"] = f"{abs(hash((container, severity))):016x}"[:16]
    return payload


def test_alerts_queued_together_for_one_playbook_are_claimed_as_one_group(
    store: AlertStore, shipped_router: Router
) -> None:
    ids = [decide(store, intake(shipped_router, compromised(f"web-{i}"))).alert_id for i in range(5)]
    other = decide(store, intake(shipped_router, compromised("db-1", severity="warning"))).alert_id
    assert store.claim_next() == ids  # same playbook, same params but the container: one incident
    assert store.claim_next() == [other]  # another playbook (isolate-container): its own
    assert store.claim_next() == []


def test_a_storm_is_one_group_past_max_targets_and_split_only_at_the_storm_limit(
    store: AlertStore, shipped_router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each alert names its own container: max_targets (a cap on selectors) does not slice them.
    ids = [decide(store, intake(shipped_router, compromised(f"web-{i}"))).alert_id for i in range(53)]
    assert store.claim_next() == ids  # contain-container's max_targets is 50
    monkeypatch.setattr(records_mod, "STORM_GROUP_LIMIT", 20)
    more = [decide(store, intake(shipped_router, compromised(f"app-{i}"))).alert_id for i in range(23)]
    assert store.claim_next() == more[:20] and store.claim_next() == more[20:]


def test_group_wait_holds_a_lone_alert_until_it_has_waited(store: AlertStore, shipped_router: Router) -> None:
    alert_id = decide(store, intake(shipped_router, compromised("web-1"))).alert_id
    assert store.claim_next(group_wait=30) == []  # too young: others may still come
    assert store.claim_next(group_wait=0.0) == [alert_id]


def test_alerts_of_a_playbook_without_a_targets_param_are_never_grouped(
    store: AlertStore, router: Router
) -> None:
    first = decide(store, intake(router, burst_alert(1)))
    second = decide(store, intake(router, burst_alert(2)))
    assert store.claim_next() == [first.alert_id]
    assert store.claim_next() == [second.alert_id]


def test_a_queued_alert_is_announced_to_every_replica_on_commit(postgres_server: Any, router: Router) -> None:
    """PostgreSQL: idle workers of every replica LISTEN; a commit that queues an alert NOTIFYs
    them (and one that queues nothing, a repeat, does not)."""
    import threading as threads

    from responder.postgres import listen

    location = postgres_server.fresh_database()
    store = AlertStore(location)
    heard: list[bool] = []
    listener = listen(location, timeout=3.0)
    ready = threads.Event()

    def wait_once() -> None:
        ready.set()
        heard.append(next(listener))

    first = threads.Thread(target=wait_once)
    first.start()
    ready.wait()
    time.sleep(0.5)  # LISTEN is registered by the first next()
    decide(store, intake(router, burst_alert(1)))
    first.join()
    assert heard == [True]
    again = threads.Thread(target=wait_once)
    again.start()
    decide(store, intake(router, burst_alert(1)))  # a repeat: nothing new to take
    again.join()
    assert heard == [True, False]
    listener.close()
    store.close()
