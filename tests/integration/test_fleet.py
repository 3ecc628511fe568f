"""#13: one incident over many containers, on the real dockerd through Ansible: selectors resolve
per host, the cap refuses before anything changes, one container's failure or claim is its
own, and release can give back one container of a fleet."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Docker, SSHTarget, incident_id, require, run_cli
from tests.extra_dockerd import ExtraDockerd

pytestmark = pytest.mark.integration


def _networks(docker: Docker, ref: str) -> list[str]:
    return sorted(docker.inspect(ref)["NetworkSettings"]["Networks"])


def _events(data_dir: Path, incident: str, kind: str) -> list[tuple[str, dict]]:
    db = sqlite3.connect(data_dir / "timeline.db")
    rows = db.execute(
        "SELECT message, data FROM events WHERE incident_id=? AND kind=? ORDER BY seq", (incident, kind)
    )
    return [(m, json.loads(d or "{}")) for m, d in rows]


def _step(data_dir: Path, incident: str, step: str) -> tuple[str, dict]:
    """The step's ledger status and its last step_finished data."""
    db = sqlite3.connect(data_dir / "timeline.db")
    (status,) = db.execute(
        "SELECT status FROM steps WHERE incident_id=? AND step_id=?", (incident, step)
    ).fetchone()
    finished = [d for m, d in _events(data_dir, incident, "step_finished") if m.startswith(f"step {step}:")]
    return status, finished[-1]


def _own_image(docker: Docker, base: str) -> str:
    """An image of its own (a distinct image ID), made by committing a container."""
    seed = docker.container(f"{base}-seed", command=("true",))
    tag = f"responder-test/fleet-{uuid.uuid4().hex[:8]}:v1"
    docker("wait", seed)
    docker("commit", seed, tag)
    return tag


def test_an_image_selector_isolates_every_container_of_that_image_and_no_other(
    docker: Docker, data_dir: Path
) -> None:
    image = _own_image(docker, "img")
    try:
        net = docker.network("imgnet")
        bystanders = [docker.container(f"other{i}", "--network", net) for i in range(2)]
        from_image = []
        for i in range(3):
            name = docker.name(f"img{i}")
            docker("run", "-d", "--name", name, "--network", net, image, "sleep", "3600")
            docker.containers.append(name)
            from_image.append(name)
        dry = run_cli(
            "run", "isolate-container", "-p", f"container=image:{image}", "--dry-run", data_dir=data_dir
        )
        assert dry.returncode == 0, dry.output
        for name in from_image:
            assert name in dry.stdout, dry.stdout  # the blast radius, per host, before anything changes
        assert all(_networks(docker, n) == [net] for n in from_image)
        result = run_cli("run", "isolate-container", "-p", f"container=image:{image}", data_dir=data_dir)
        assert result.returncode == 0, result.output
        assert all(_networks(docker, n) == [] for n in from_image)
        assert all(_networks(docker, n) == [net] for n in bystanders)
        incident = incident_id(result.stdout)
        status, data = _step(data_dir, incident, "isolate")
        assert status == "succeeded"
        per_container = data["outputs"]["localhost"]["targets"]
        names = {t["container_name"] for t in per_container.values()}
        assert names == set(from_image) and all(t["outcome"] == "succeeded" for t in per_container.values())
        assert len(_events(data_dir, incident, "evidence_recorded")) >= 2 * len(
            from_image
        )  # logs + inspect each
    finally:
        docker("rm", "-f", *[c for c in docker.containers], check=False)
        docker.containers.clear()
        docker("image", "rm", "-f", image, check=False)


def test_a_label_selector_over_the_cap_is_refused_before_anything_changes_unless_confirmed(
    docker: Docker, data_dir: Path
) -> None:
    label = f"fleet={uuid.uuid4().hex[:8]}"
    net = docker.network("capnet")
    members = [docker.container(f"cap{i}", "--network", net, "--label", label) for i in range(3)]
    other = docker.container("capother", "--network", net)
    refused = run_cli(
        "run", "isolate-container", "-p", f"container=label:{label}", "--max-targets", "2", data_dir=data_dir
    )
    assert refused.returncode != 0
    assert "more than max_targets 2" in refused.output and "--max-targets 3" in refused.output
    assert all(_networks(docker, m) == [net] for m in members)  # nothing changed
    confirmed = run_cli(
        "run", "isolate-container", "-p", f"container=label:{label}", "--max-targets", "3", data_dir=data_dir
    )
    assert confirmed.returncode == 0, confirmed.output
    assert all(_networks(docker, m) == [] for m in members)
    assert _networks(docker, other) == [net]


def test_a_held_container_is_skipped_and_named_the_others_are_contained(
    docker: Docker, data_dir: Path
) -> None:
    label = f"fleet={uuid.uuid4().hex[:8]}"
    net = docker.network("heldnet")
    held, *free = [docker.container(f"held{i}", "--network", net, "--label", label) for i in range(3)]
    first = run_cli("run", "contain-container", "-p", f"container={held}", data_dir=data_dir)
    assert first.returncode == 10, first.output  # paused at its approval gate: still open, still holding
    holder = incident_id(first.stdout)
    fleet = run_cli("run", "isolate-container", "-p", f"container=label:{label}", data_dir=data_dir)
    incident = incident_id(fleet.stdout)
    assert all(_networks(docker, c) == [] for c in free)
    # The first acting step (preserve_logs) finds it held: skipped there and dropped from the
    # steps after it; held is not a failure.
    status, data = _step(data_dir, incident, "preserve_logs")
    assert status == "succeeded", data
    entries = {t["container_name"]: t for t in data["outputs"]["localhost"]["targets"].values()}
    assert entries[held]["outcome"] == "held" and entries[held]["held_by"] == holder
    assert all(entries[c]["outcome"] == "succeeded" for c in free)
    status, data = _step(data_dir, incident, "isolate")
    isolated = {t["container_name"] for t in data["outputs"]["localhost"]["targets"].values()}
    assert status == "succeeded" and isolated == set(free)
    assert held in docker.inspect(held)["Name"] and _networks(docker, held) == []  # isolated by its holder
    assert any(held[:12] in m or holder in m for m, _ in _events(data_dir, incident, "container_held"))
    assert any(incident in m for m, _ in _events(data_dir, holder, "duplicate_incident"))


def test_a_container_gone_mid_incident_fails_only_itself_and_one_container_can_be_released(
    docker: Docker, data_dir: Path
) -> None:
    net = docker.network("gonenet")
    a, b, c = (docker.container(f"gone{i}", "--network", net) for i in range(3))
    started = run_cli("run", "contain-container", "-p", f"container={a},{b},{c}", data_dir=data_dir)
    assert started.returncode == 10, started.output  # at the stop gate, everything isolated
    incident = incident_id(started.stdout)
    assert all(_networks(docker, x) == [] for x in (a, b, c))
    docker("rm", "-f", c)
    approved = run_cli("approve", incident, "--all", "--as", "lead@oncall", data_dir=data_dir)
    status, data = _step(data_dir, incident, "stop")
    assert status == "partial", approved.output
    entries = {t["container_name"] or cid: t for cid, t in data["outputs"]["localhost"]["targets"].items()}
    assert sum(1 for t in entries.values() if t["outcome"] == "succeeded") == 2
    gone = [t for t in entries.values() if t["outcome"] == "failed"]
    assert len(gone) == 1 and gone[0]["reason"] == "target_gone"
    assert re.search(r"partly done [^;]*\bstop\b", approved.output), approved.output
    for x in (a, b):
        assert docker.inspect(x)["State"]["Running"] is False
    shown = run_cli("show", incident, data_dir=data_dir)
    assert "stop: partial: 2 of 3 containers on 1 host; failed:" in shown.stdout, shown.stdout
    released = run_cli("release", incident, "--container", a, "--reason", "false positive", data_dir=data_dir)
    assert released.returncode == 0, released.output
    assert _networks(docker, a) == [net]
    assert _networks(docker, b) == []  # the rest of the fleet stays contained
    assert _events(data_dir, incident, "container_released")


@pytest.fixture
def second_host(docker_ready: None) -> Iterator[ExtraDockerd]:
    """Another Docker host: a dockerd of its own (own netns, own socket, own containers)."""
    require(
        os.geteuid() == 0 and shutil.which("nsenter") is not None, "a second dockerd needs root and nsenter"
    )
    daemon = ExtraDockerd(f"fleet{uuid.uuid4().hex[:6]}")
    try:
        daemon.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield daemon
    daemon.stop()


def test_a_fleet_over_two_ssh_hosts_acts_on_each_hosts_own_containers_and_release_gives_all_back(
    docker: Docker, sshd: SSHTarget, second_host: ExtraDockerd, data_dir: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    net = docker.network("two")
    here = [docker.container(f"alpha{i}", "--network", net, "--label", f"fleet={tag}") for i in range(2)]
    bystander = docker.container("alpha-other", "--network", net)
    second_host.docker("network", "create", "beta-net")
    there = [f"beta{i}-{tag}" for i in range(3)]
    for name in there:
        second_host.docker(
            "run", "-d", "--name", name, "--network", "beta-net", "--label", f"fleet={tag}",
            "responder-test/busybox", "sleep", "3600",
        )  # fmt: skip

    def beta_networks(name: str) -> list[str]:
        return sorted(json.loads(second_host.docker("inspect", name))[0]["NetworkSettings"]["Networks"])

    inventory = sshd.inventory(
        tmp_path / "inventory.yml",
        {"alpha": {}, "beta": {"responder_docker_host": second_host.docker_host}},
    )
    args = ("run", "isolate-container", "-p", f"container=label:fleet={tag}", "-i", str(inventory))
    dry = run_cli(*args, "--dry-run", data_dir=data_dir)
    assert dry.returncode == 0, dry.output
    assert all(n in dry.stdout for n in [*here, *there]), dry.stdout  # the blast radius, both hosts
    result = run_cli(*args, data_dir=data_dir)
    assert result.returncode == 0, result.output
    assert [_networks(docker, n) for n in here] == [[], []]
    assert _networks(docker, bystander) == [net]
    assert [beta_networks(n) for n in there] == [[], [], []]
    incident = incident_id(result.stdout)
    status, data = _step(data_dir, incident, "isolate")
    assert status == "succeeded"
    per_host = {
        host: sorted(t["container_name"] for t in out["targets"].values())
        for host, out in data["outputs"].items()
    }
    assert per_host == {"alpha": sorted(here), "beta": sorted(there)}
    released = run_cli("release", incident, "--reason", "drill over", data_dir=data_dir)
    assert released.returncode == 0, released.output
    assert [_networks(docker, n) for n in here] == [[net], [net]]
    assert [beta_networks(n) for n in there] == [["beta-net"]] * 3
