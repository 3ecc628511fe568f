"""#16: a Podman host reached over SSH, with nothing in the inventory saying it is Podman: the
shipped contain-container playbook end to end on a container that a systemd unit runs (journald
logs, a `podman secret`, a Podman network), and every other shipped action on containers with
the k8s-file log driver, chosen by a label selector. The host is tests/podman_host.py's box:
systemd, journald, rootful podman with podman.socket, sshd, and no dockerd."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IMAGE, incident_id, require, run_cli
from tests.podman_host import IMAGE as HOST_IMAGE
from tests.podman_host import PodmanHost, start_podman_host

pytestmark = pytest.mark.integration
ULIMITS = "--ulimit nofile=1024:1024 --ulimit nproc=1000:1000"


@pytest.fixture(scope="module")
def podman_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanHost]:
    have_image = shutil.which("docker") is not None and (
        subprocess.run(["docker", "image", "inspect", HOST_IMAGE], capture_output=True).returncode == 0
    )
    require(
        have_image, f"{HOST_IMAGE} is not built (RESPONDER_WITH_IMAGE=1 scripts/prepare-host.sh builds it)"
    )
    host = start_podman_host(tmp_path_factory.mktemp("podman-host"), IMAGE)
    yield host
    host.stop()


def events(data_dir: Path, incident: str, kind: str) -> list[str]:
    db = sqlite3.connect(data_dir / "timeline.db")
    return [
        m
        for (m,) in db.execute("SELECT message FROM events WHERE incident_id=? AND kind=?", (incident, kind))
    ]


def step_outputs(data_dir: Path, incident: str, step: str) -> dict:
    db = sqlite3.connect(data_dir / "timeline.db")
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id=?", (incident, step)
    ).fetchone()
    return json.loads(outputs)


def test_contain_a_systemd_run_podman_container_over_ssh_and_release_it(
    podman_host: PodmanHost, data_dir: Path, tmp_path: Path
) -> None:
    host = podman_host
    tag = uuid.uuid4().hex[:6]
    network, name, secret = f"net-{tag}", f"web-{tag}", f"dbpass_{tag}"
    unit = f"container-{name}.service"
    host.podman("network", "create", network)
    host.sh(f"printf 'first-value' | podman secret create {secret} -")
    # What `podman generate systemd --new` writes (Quadlet's units behave alike): the unit runs
    # the container with --rm --replace and Restart=always, and labels it PODMAN_SYSTEMD_UNIT.
    host.sh(
        f"podman create --name {name} --network {network} --secret {secret} {ULIMITS} {IMAGE} "
        "sh -c 'while true; do echo beacon-$(cat /run/secrets/*); sleep 0.3; done' >/dev/null && "
        f"cd /etc/systemd/system && podman generate systemd --new --name {name} --files >/dev/null && "
        f"podman rm {name} >/dev/null && systemctl daemon-reload && systemctl enable --now {unit}"
    )
    time.sleep(1.5)
    suspect = host.inspect(name)
    assert suspect["Config"]["Labels"]["PODMAN_SYSTEMD_UNIT"] == unit
    assert suspect["HostConfig"]["LogConfig"]["Type"] == "journald"
    old_secret = json.loads(host.podman("secret", "inspect", secret))[0]["ID"]
    inventory = host.inventory(tmp_path / "podman.yml")

    planned = run_cli(
        "run", "contain-container", "-i", str(inventory), "-p", f"container={name}",
        "-p", f"podman_secrets={secret}", "--dry-run", data_dir=data_dir, timeout=600,
    )  # fmt: skip
    assert planned.returncode == 0, planned.output
    assert f"systemd unit {unit}" in planned.stdout  # the owner, named in the plan

    result = run_cli(
        "run", "contain-container", "-i", str(inventory), "-p", f"container={name}",
        "-p", f"podman_secrets={secret}", "--approve", "all", "--as", "lead@oncall",
        data_dir=data_dir, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    incident = incident_id(result.stdout)

    # Stopped through its unit, which is held: no replacement, not even after Restart= had time
    time.sleep(4)
    assert host.sh(f"systemctl show -p ActiveState --value {unit}") in ("inactive", "failed")
    running = host.podman("ps", "-q", "--filter", f"label=PODMAN_SYSTEMD_UNIT={unit}")
    assert running == "", "systemd started a replacement of the suspect"
    start = host.sh(f"systemctl start {unit}; systemctl show -p ActiveState --value {unit}", check=False)
    assert start.splitlines()[-1] in ("inactive", "failed")  # even a start by hand is held off
    assert "50-responder-hold.conf" in host.sh(f"systemctl cat {unit}")
    held = step_outputs(data_dir, incident, "stop")["held_service"]
    assert held["kind"] == "systemd" and held["service_name"] == unit and held["verified"] is True
    (said,) = events(data_dir, incident, "service_held")
    assert f"systemd unit {unit} stopped and held" in said

    # Evidence: journald logs read back through Podman, the runtime detected and recorded
    db = sqlite3.connect(data_dir / "timeline.db")
    rows = db.execute("SELECT kind, path, details FROM evidence WHERE incident_id=?", (incident,)).fetchall()
    logs = [Path(path).read_text() for kind, path, _ in rows if kind == "logs"]
    assert any("beacon-first-value" in text for text in logs), logs
    versions = [json.loads(details).get("tool_versions", {}).get("docker", {}) for _, _, details in rows]
    assert any(v.get("runtime") == "podman" and "podman.sock" in str(v.get("via")) for v in versions), (
        versions
    )
    assert run_cli("evidence", "verify", incident, data_dir=data_dir).returncode == 0

    # The secret has a new value under the same name, and the incident's label
    new = json.loads(host.podman("secret", "inspect", secret))[0]
    assert new["ID"] != old_secret and new["Spec"]["Labels"]["responder.incident"] == incident
    (rotated,) = events(data_dir, incident, "secret_rotated")
    assert secret in rotated and "first-value" not in json.dumps(
        step_outputs(data_dir, incident, "rotate_podman")
    )

    released = run_cli("release", incident, "--reason", "image rebuilt", data_dir=data_dir, timeout=900)
    assert released.returncode == 0, released.output
    assert host.sh(f"systemctl show -p ActiveState --value {unit}") == "active"
    assert "50-responder-hold.conf" not in host.sh(f"systemctl cat {unit}")
    deadline = time.monotonic() + 30
    while not (
        fresh := host.podman("ps", "-q", "--no-trunc", "--filter", f"label=PODMAN_SYSTEMD_UNIT={unit}")
    ):
        assert time.monotonic() < deadline, "the unit runs no container after release"
        time.sleep(0.5)
    assert fresh != suspect["Id"]
    (restored,) = events(data_dir, incident, "service_restored")
    assert f"systemd unit {unit} started again" in restored and fresh[:12] in restored
    # the new container was created after the rotation: it reads the new value
    time.sleep(1)
    assert "beacon-first-value" not in host.sh(f"podman logs --tail 2 {fresh}")
    host.sh(
        f"systemctl disable --now {unit}; rm -f /etc/systemd/system/{unit}; podman network rm -f {network}"
    )


def test_every_other_action_on_podman_over_ssh_k8s_file_logs_and_a_label_selector(
    podman_host: PodmanHost, data_dir: Path, tmp_path: Path
) -> None:
    host = podman_host
    tag = uuid.uuid4().hex[:6]
    network = f"net-{tag}"
    host.podman("network", "create", network)
    names = [f"k8s-{tag}-{i}" for i in range(2)]
    networks = {names[0]: network, names[1]: "podman"}  # a network of its own, and Podman's default
    for name in names:
        host.sh(
            f"podman run -d --name {name} --network {networks[name]} --label incident-test={tag} "
            f"--log-driver k8s-file --restart always {ULIMITS} {IMAGE} "
            "sh -c 'while true; do echo k8s-beacon; sleep 0.3; done' >/dev/null"
        )
    time.sleep(1.5)
    playbook = tmp_path / "podman-actions.yml"
    playbook.write_text(
        "version: 1\nname: podman-actions\nseverity: high\n"
        "description: the actions contain-container does not run, and those it does, on Podman\n"
        "params:\n  container: {type: targets, required: true}\n"
        "steps:\n"
        "  - {id: logs, action: preserve_logs, with: {container: '{{ params.container }}'}}\n"
        "  - {id: pause, action: pause_container, with: {container: '{{ params.container }}'}}\n"
        "  - {id: unpause, action: unpause_container, with: {container: '{{ params.container }}'}}\n"
        "  - {id: isolate, action: isolate_network, with: {container: '{{ params.container }}'}}\n"
        "  - id: snapshot\n    action: snapshot_filesystem\n    with: {container: '{{ params.container }}'}\n"
    )
    inventory = host.inventory(tmp_path / "podman.yml")
    result = run_cli(
        "run", str(playbook), "-i", str(inventory), "-p", f"container=label:incident-test={tag}",
        data_dir=data_dir, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    incident = incident_id(result.stdout)
    db = sqlite3.connect(data_dir / "timeline.db")
    for name in names:
        info = host.inspect(name)
        assert info["State"]["Status"] == "running" and not info["State"]["Paused"]
        assert not info["NetworkSettings"].get("Networks")
        cid = info["Id"]
        kinds = {
            kind
            for (kind,) in db.execute(
                "SELECT kind FROM evidence WHERE incident_id=? AND path LIKE ?", (incident, f"%{cid[:12]}%")
            )
        }
        assert {"logs", "inspect", "filesystem"} <= kinds, kinds
        (logs,) = db.execute(
            "SELECT path FROM evidence WHERE incident_id=? AND kind='logs' AND path LIKE ?",
            (incident, f"%{cid[:12]}%"),
        ).fetchone()
        assert "k8s-beacon" in Path(logs).read_text()
    released = run_cli("release", incident, "--reason", "false positive", data_dir=data_dir, timeout=900)
    assert released.returncode == 0, released.output
    for name in names:
        assert networks[name] in (host.inspect(name)["NetworkSettings"].get("Networks") or {})
        host.podman("rm", "-f", name)
    host.podman("network", "rm", "-f", network)
