"""#17: several `responder serve` replicas sharing one real PostgreSQL (tests/postgres.py), each
with its own data directory (its own disk), as behind a load balancer: a burst with duplicates
spread over both runs every unique alert exactly once; a replica killed with -9 mid-burst loses
nothing it acknowledged and nothing runs twice; the per-container lock holds between the CLI
on one controller and an alert on another; the store's status and readiness tell the truth."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from responder.store_location import PostgresLocation
from tests.conftest import Docker, incident_id, run_cli
from tests.integration.test_webhook import AM_PATH, FIXTURE_ARGS, am_alert
from tests.postgres import PostgresServer
from tests.webhook_client import Server

pytestmark = pytest.mark.integration


class Replicas:
    """Replicas (and CLI environments) on one fresh database, each its own controller."""

    def __init__(self, root: Path, location: PostgresLocation) -> None:
        self.root = root
        self.location = location
        self.password_file = root / "db-password"
        self.password_file.write_text(f"{location.password}\n")
        self.password_file.chmod(0o600)
        self.servers: list[Server] = []

    def env(self, controller: str, lease: float = 30) -> dict[str, str]:
        """Where the store is; the password only by file, never on a command line."""
        return {
            "RESPONDER_STORE_URL": self.location.url,
            "RESPONDER_STORE_PASSWORD_FILE": str(self.password_file),
            "RESPONDER_STORE_CONTROLLER": controller,
            "RESPONDER_STORE_LEASE": str(lease),
        }

    def start(self, controller: str, *args: str, lease: float = 30, workers: int = 2) -> Server:
        home = self.root / controller
        (home / "data").mkdir(parents=True, mode=0o700, exist_ok=True)
        secrets = home / "secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        server = Server(
            home / "data",
            *FIXTURE_ARGS,
            "--workers",
            str(workers),
            *args,
            secrets_dir=secrets,
            env=self.env(controller, lease),
            store=self.location,
        )
        self.servers.append(server.start())
        return server

    def stop(self) -> None:
        for server in self.servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()


@pytest.fixture
def replicas(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Replicas]:
    group = Replicas(tmp_path, postgres_server.fresh_database())
    yield group
    group.stop()


def drained(server: Server) -> bool:
    return server.query("SELECT COUNT(*) FROM alerts WHERE state IN ('queued', 'claimed')") == [
        (0,)
    ] and server.query("SELECT COUNT(*) FROM incidents WHERE status IN ('running', 'interrupted')") == [(0,)]


def test_two_replicas_take_a_burst_with_duplicates_and_run_each_alert_once(replicas: Replicas) -> None:
    a, b = replicas.start("ctl-a", workers=4), replicas.start("ctl-b", workers=4)
    unique = 100
    deliveries = [n for n in range(unique) for _ in range(5)]  # 500, each alert five times
    random.Random(17).shuffle(deliveries)
    tag = uuid.uuid4().hex[:6]

    def send(index_and_n: tuple[int, int]) -> int:
        index, n = index_and_n
        target = (a, b)[index % 2]  # a round-robin load balancer: duplicates land on both
        return target.post(AM_PATH, am_alert("WhBurst", {"value": f"r{n}"}, key=f"{tag}-{n}")).status

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, enumerate(deliveries)))
    assert statuses.count(202) == unique and statuses.count(200) == len(deliveries) - unique
    a.wait_for(lambda: drained(a), timeout=420, what="both replicas to run the burst")
    assert a.query("SELECT COUNT(*), COUNT(DISTINCT alert_id) FROM incidents") == [(unique, unique)]
    assert a.query("SELECT status, COUNT(*) FROM incidents GROUP BY status") == [("succeeded", unique)]
    assert a.query("SELECT SUM(repeats) FROM alerts") == [(len(deliveries) - unique,)]
    ran_on = dict(a.query("SELECT replica, COUNT(*) FROM alerts WHERE state='started' GROUP BY replica"))
    assert set(ran_on) == {"ctl-a", "ctl-b"}, ran_on  # both took work from the shared queue


def test_a_replica_killed_mid_burst_loses_nothing_and_runs_nothing_twice(replicas: Replicas) -> None:
    a, b = replicas.start("ctl-a", lease=5, workers=1), replicas.start("ctl-b", lease=5, workers=2)
    unique = 60
    deliveries = [n for n in range(unique) for _ in range(2)]
    random.Random(23).shuffle(deliveries)
    acknowledged: set[int] = set()
    lock = threading.Lock()
    killed = threading.Event()

    def send(index_and_n: tuple[int, int]) -> None:
        index, n = index_and_n
        target = a if index % 2 == 0 and not killed.is_set() else b
        try:
            reply = target.post(AM_PATH, am_alert("WhBurst", {"value": f"k{n}"}, key=f"kill-{n}"))
        except OSError:
            reply = b.post(
                AM_PATH, am_alert("WhBurst", {"value": f"k{n}"}, key=f"kill-{n}")
            )  # the balancer retries
        if reply.status in (200, 202):
            with lock:
                acknowledged.add(n)

    def killer() -> None:
        while len(acknowledged) < unique // 3:
            time.sleep(0.005)
        a.kill9()
        killed.set()

    watcher = threading.Thread(target=killer)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, enumerate(deliveries)))
    watcher.join(timeout=60)
    assert killed.is_set() and len(acknowledged) == unique
    b.wait_for(lambda: drained(b), timeout=420, what="the survivor to run everything, after the lease")
    rows = b.query("SELECT dedup_key, state, incident_id, replica FROM alerts WHERE status='firing'")
    assert len(rows) == unique  # every acknowledged alert is on record, once
    assert all(state in ("started", "attached") and incident for _, state, incident, _ in rows), rows
    assert b.query("SELECT COUNT(*), COUNT(DISTINCT alert_id) FROM incidents") == [(unique, unique)]
    assert b.query("SELECT status, COUNT(*) FROM incidents GROUP BY status") == [("succeeded", unique)]
    # each incident's steps ran once: one echo step result per incident
    assert b.query("SELECT COUNT(*) FROM steps WHERE step_id='echo' AND status='succeeded'") == [(unique,)]
    assert b.query("SELECT COUNT(*) FROM alerts WHERE replica='ctl-b'")[0][0] > 0
    # what ctl-a held when it died (a claim, or a run it had started) went to ctl-b after the lease
    assert "took over" in b.log() or "taken over" in b.log(), b.log()[-3000:]


def test_the_container_lock_holds_between_the_cli_on_one_controller_and_an_alert_on_another(
    replicas: Replicas, docker: Docker, tmp_path: Path
) -> None:
    victim = docker.container("victim", "--network", docker.network("replicas"))
    server = replicas.start("ctl-b")  # the shipped playbooks, contain-container among them
    cli_data = tmp_path / "ctl-a-data"
    cli_data.mkdir(mode=0o700)
    held = run_cli(
        "run", "contain-container", "-p", f"container={victim}", data_dir=cli_data, env=replicas.env("ctl-a"),
        timeout=600,
    )  # fmt: skip
    assert held.returncode == 10, held.output  # contained, waiting at the stop gate: the lock is held
    holder = incident_id(held.stdout)
    reply = server.post(
        AM_PATH,
        am_alert("ContainerCompromised", {"container": victim, "severity": "critical"}),
    )
    assert reply.status == 202, reply.body
    alert_id = reply.json()["alerts"][0]["alert_id"]
    server.wait_for(
        lambda: (
            server.query("SELECT state, incident_id FROM alerts WHERE id=?", alert_id)
            == [("attached", holder)]
        ),
        timeout=180,
        what="the alert on ctl-b to join the CLI's incident on ctl-a",
    )
    assert server.query("SELECT COUNT(*) FROM incidents") == [(1,)]
    # the CLI on ctl-a sees the alert on the shared timeline
    shown = run_cli("show", holder, data_dir=cli_data, env=replicas.env("ctl-a"))
    assert "alert" in shown.stdout.lower() and holder in shown.stdout
    # evidence stays on the controller that collected it; another says where, not "missing"
    elsewhere = tmp_path / "ctl-b-cli"
    elsewhere.mkdir(mode=0o700)
    verified = run_cli("evidence", "verify", holder, data_dir=elsewhere, env=replicas.env("ctl-b"))
    assert verified.returncode == 0, verified.output
    assert "held by controller ctl-a" in verified.stdout and "MISSING" not in verified.stdout
    assert run_cli("evidence", "verify", holder, data_dir=cli_data, env=replicas.env("ctl-a")).returncode == 0
    # every other command works the same on the shared store, from either controller
    approved = run_cli(
        "approve",
        holder,
        "--all",
        "--as",
        "lead@oncall",
        data_dir=cli_data,
        env=replicas.env("ctl-a"),
        timeout=600,
    )
    assert approved.returncode == 0, approved.output
    released = run_cli(
        "release", holder, "--reason", "cleared", data_dir=cli_data, env=replicas.env("ctl-a"), timeout=600
    )
    assert released.returncode == 0, released.output
    listed = run_cli("incidents", data_dir=elsewhere, env=replicas.env("ctl-b"))
    assert holder in listed.stdout, listed.output
    exported = run_cli("export", holder, "-f", "json", data_dir=elsewhere, env=replicas.env("ctl-b"))
    assert exported.returncode == 0 and '"incident_released"' in exported.stdout, exported.output[-2000:]


def test_store_status_migrate_and_readiness_follow_the_database(
    replicas: Replicas, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    data = tmp_path / "cli"
    data.mkdir(mode=0o700)
    env = replicas.env("ctl-a")
    status = run_cli("db", "status", data_dir=data, env=env)
    assert status.returncode == 1 and "version 0 of" in status.stdout  # empty: needs migrate
    assert replicas.location.url in status.stdout and replicas.location.password not in status.output
    migrated = run_cli("db", "migrate", data_dir=data, env=env)
    assert migrated.returncode == 0 and "migrated from nothing to schema version" in migrated.stdout
    again = run_cli("db", "migrate", data_dir=data, env=env)
    assert "already at schema version" in again.stdout
    assert run_cli("db", "status", data_dir=data, env=env).returncode == 0
    # readiness follows the database: 503 while it is unreachable, ready again after
    server = replicas.start("ctl-b")
    assert server.get("/readyz", token=None).status == 200
    postgres_server.pause()
    try:
        assert server.get("/readyz", token=None).status == 503
        refused = server.post(AM_PATH, am_alert("WhBurst", {"value": "down"}))
        assert refused.status == 503  # never acknowledged: Alertmanager retries
    finally:
        postgres_server.unpause()
    server.wait_for(lambda: server.get("/readyz", token=None).status == 200, timeout=60, what="readiness")
    accepted = server.post(AM_PATH, am_alert("WhBurst", {"value": "back"}))
    assert accepted.status == 202
