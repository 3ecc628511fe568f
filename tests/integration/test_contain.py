"""isolate_network and preserve_logs against a real dockerd, over SSH and the local connection,
through the real CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, Docker, SSHTarget, incident_id, run_cli

pytestmark = pytest.mark.integration


def _victim(docker: Docker) -> tuple[str, str, list[str]]:
    net_a, net_b = docker.network("a"), docker.network("b")
    victim = docker.container(
        "victim",
        "--network",
        net_a,
        "--restart",
        "always",
        "-p",
        "127.0.0.1::8080",
        command=(
            "sh",
            "-c",
            "i=0; while true; do echo victim-line-$i; echo err-$i >&2; i=$((i+1)); sleep 0.2; done",
        ),
    )
    docker("network", "connect", "--alias", "victim-alias", net_b, victim)
    peer = docker.container("peer", "--network", net_a)
    docker("network", "connect", net_b, peer)
    time.sleep(1.0)  # let it print a few lines
    return victim, peer, [net_a, net_b]


def _check_contained(
    docker: Docker,
    victim: str,
    peer: str,
    nets: list[str],
    peer_ips: list[str],
    data_dir: Path,
    result_output: str,
) -> str:
    info = docker.inspect(victim)
    assert info["NetworkSettings"]["Networks"] == {}
    assert not any(info["NetworkSettings"]["Ports"].values()) if info["NetworkSettings"]["Ports"] else True
    assert docker("port", victim) == ""
    for ip in peer_ips:  # real traffic: the victim can no longer reach the peer on either network
        assert not docker.can_ping(victim, ip)
    incident = incident_id(result_output)
    db = sqlite3.connect(data_dir / "timeline.db")
    status = db.execute("SELECT status FROM incidents WHERE id=?", (incident,)).fetchone()[0]
    assert status == "succeeded"
    # the networks were recorded with aliases and addresses, so they can be reconnected
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='isolate'", (incident,)
    ).fetchone()
    recorded = {n["name"]: n for n in json.loads(outputs)["networks"]}
    assert set(recorded) == set(nets)
    assert "victim-alias" in recorded[nets[1]]["aliases"]
    assert all(n["ipv4_address"] for n in recorded.values())
    # evidence: the log file holds what the container printed, and both hashes match
    rows = db.execute(
        "SELECT kind, path, sha256_source, sha256_controller, container_id, size FROM evidence WHERE incident_id=?",
        (incident,),
    ).fetchall()
    kinds = {r[0]: r for r in rows}
    assert set(kinds) == {"logs", "inspect"}
    full_id = info["Id"]
    for _kind, path, source_hash, controller_hash, container_id, size in rows:
        content = Path(path).read_bytes()
        assert hashlib.sha256(content).hexdigest() == source_hash == controller_hash
        assert container_id == full_id and size == len(content)
        assert Path(path).stat().st_mode & 0o777 == 0o400
        assert Path(path).is_relative_to(data_dir / "evidence" / incident)
    logs = Path(kinds["logs"][1]).read_text()
    assert "victim-line-0" in logs and "err-0" in logs
    assert logs.splitlines()[0][:4].isdigit()  # --timestamps
    # dockerd's own answer, one object (through the Engine API socket, as no DOCKER_HOST is set)
    assert json.loads(Path(kinds["inspect"][1]).read_text())["Id"] == full_id
    events = [
        r[0] for r in db.execute("SELECT kind FROM events WHERE incident_id=? ORDER BY seq", (incident,))
    ]
    assert events[0] == "incident_opened" and events[-1] == "incident_closed"
    assert events.count("evidence_recorded") == 2 and "task_result" in events
    # both steps ran in ONE ansible-runner invocation, and the first was recorded live, before the
    # second started
    assert [p.name for p in (data_dir / "runs" / incident).iterdir()] == ["01-preserve_logs"]
    for private in (
        data_dir / "runs",
        data_dir / "runs" / incident / "01-preserve_logs",
        data_dir / "evidence",
        data_dir / "evidence" / incident,
        Path(kinds["logs"][1]).parent,
    ):
        assert private.stat().st_mode & 0o777 == 0o700, private
    order = db.execute(
        "SELECT kind || ':' || step FROM events WHERE incident_id=? AND kind IN ('step_started', 'step_finished') "
        "ORDER BY seq",
        (incident,),
    ).fetchall()
    assert [r[0] for r in order] == [
        "step_started:preserve_logs",
        "step_finished:preserve_logs",
        "step_started:isolate",
        "step_finished:isolate",
    ]
    return incident


def test_isolate_over_local_connection(docker: Docker, data_dir: Path) -> None:
    victim, peer, nets = _victim(docker)
    peer_ips = [docker.ip(peer, n) for n in nets]
    assert all(docker.can_ping(victim, ip) for ip in peer_ips)
    result = run_cli("run", "isolate-container", "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 0, result.output
    _check_contained(docker, victim, peer, nets, peer_ips, data_dir, result.stdout)
    assert docker.inspect(victim)["State"]["Running"]  # isolated, not stopped


def test_isolate_over_ssh(docker: Docker, sshd: SSHTarget, data_dir: Path, tmp_path: Path) -> None:
    victim, peer, nets = _victim(docker)
    peer_ips = [docker.ip(peer, n) for n in nets]
    inventory = sshd.inventory(tmp_path / "inventory.yml")
    short_id = docker.inspect(victim)["Id"][:12]  # an ID prefix, resolved on the target host
    result = run_cli(
        "run", "isolate-container", "-i", str(inventory), "-p", f"container={short_id}", data_dir=data_dir
    )
    assert result.returncode == 0, result.output
    assert "dockerhost" in result.stdout
    incident = _check_contained(docker, victim, peer, nets, peer_ips, data_dir, result.stdout)
    assert (data_dir / "evidence" / incident / "dockerhost").is_dir()


def test_isolating_twice_is_a_noop(docker: Docker, data_dir: Path) -> None:
    victim, _, _ = _victim(docker)
    assert (
        run_cli(
            "run",
            "isolate-container",
            "-p",
            f"container={victim}",
            "-p",
            "preserve_logs=false",
            data_dir=data_dir,
        ).returncode
        == 0
    )
    again = run_cli(
        "run",
        "isolate-container",
        "-p",
        f"container={victim}",
        "-p",
        "preserve_logs=false",
        data_dir=data_dir,
    )
    assert again.returncode == 0, again.output
    db = sqlite3.connect(data_dir / "timeline.db")
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='isolate'", (incident_id(again.stdout),)
    ).fetchone()
    assert json.loads(outputs)["already_isolated"] is True


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("host", "'host' is not a container"),
        ("-f", "starts with '-'"),
        ("web;rm -rf /", "is not a container ID or name"),
        ("$(id)", "is not a container ID or name"),
        ("nosuchcontainer-zz", "no such container"),
    ],
)
def test_bad_references_are_refused_on_the_host(
    ref: str, expected: str, docker: Docker, data_dir: Path
) -> None:
    result = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "canary.yml"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "-p",
        f"value={ref}",
        data_dir=data_dir,
    )
    assert expected in result.stdout, result.output


def test_ambiguous_prefix_is_refused(docker: Docker, data_dir: Path) -> None:
    # 17 containers: by pigeonhole at least two share a first hex digit.
    ids = []
    for i in range(17):
        name = docker.name(f"amb{i}")
        ids.append(docker("create", "--name", name, "responder-test/busybox:latest", "true"))
        docker.containers.append(name)
    prefix = next(a[0] for a in ids for b in ids if a != b and a[0] == b[0])
    result = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "canary.yml"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "-p",
        f"value={prefix}",
        data_dir=data_dir,
    )
    assert "is ambiguous" in result.stdout, result.output
    assert result.returncode == 3


def test_a_misspelt_container_is_a_plain_failure_not_a_vanished_one(
    docker_ready: None, data_dir: Path
) -> None:
    # #15 bug 5: it was recorded as target_gone ("disappeared mid-run") and summarised as done
    result = run_cli("run", "contain-container", "-p", "container=no-such-container-typo", data_dir=data_dir)
    assert result.returncode == 3, result.output
    out = result.stdout
    assert "no such container 'no-such-container-typo'" in out
    assert (
        "incident failed: nothing done; failed isolate; not done snapshot, preserve_logs, stop, rotate" in out
    )
    assert "target_gone" not in out and "not_run: not run" not in out
    assert "failed" in run_cli("incidents", data_dir=data_dir).stdout
