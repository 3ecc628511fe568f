"""The shipped contain-container playbook end to end over SSH against a container with a restart
policy of always, a named volume and a swarm secret; then release, and evidence verification."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Docker, SSHTarget, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True
    ).stdout.strip()
    if state != "active":
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True, capture_output=True
        )
    yield
    if state != "active":
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)


def _service_secret_value(docker: Docker, service: str, target: str) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").split()
        for cid in ids:
            result = subprocess.run(
                ["docker", "exec", cid, "cat", f"/run/secrets/{target}"], capture_output=True, text=True
            )
            if result.returncode == 0:
                return result.stdout
        time.sleep(0.5)
    raise AssertionError(f"no running task of {service} exposes /run/secrets/{target}")


def test_contain_container_end_to_end_over_ssh(
    swarm: None, docker: Docker, sshd: SSHTarget, data_dir: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    secret, service, volume = f"db_password_{tag}", f"app-{tag}", f"vol-{tag}"
    subprocess.run(
        ["docker", "secret", "create", secret, "-"],
        input=b"initial-secret-value",
        check=True,
        capture_output=True,
    )
    docker(
        "service",
        "create",
        "--detach=false",
        "--quiet",
        "--no-resolve-image",
        "--name",
        service,
        "--secret",
        f"source={secret},target=db_password",
        "responder-test/busybox:latest",
        "sleep",
        "3600",
    )
    docker("volume", "create", volume)
    try:
        # "back" has a configured subnet, so release can ask for the very same address there
        back = docker.name("back")
        docker(
            "network",
            "create",
            "--subnet",
            f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}.0/24",
            back,
        )
        docker.networks.append(back)
        nets = [docker.network("front"), back]
        victim = docker.container(
            "victim",
            "--restart",
            "always",
            "-v",
            f"{volume}:/data",
            "--network",
            nets[0],
            command=(
                "sh",
                "-c",
                "echo exfil > /data/stolen.txt; echo planted > /tmp/implant; "
                "nc -l -p 4444 & while true; do echo beacon; sleep 0.5; done",
            ),
        )
        docker("network", "connect", "--alias", "db-alias", nets[1], victim)
        time.sleep(1.5)
        before = docker.inspect(victim)["NetworkSettings"]["Networks"]
        inventory = sshd.inventory(tmp_path / "inv.yml")
        first = run_cli(
            "run",
            "contain-container",
            "-i",
            str(inventory),
            "-p",
            f"container={victim}",
            "-p",
            f"swarm_secrets={secret}",
            data_dir=data_dir,
            timeout=600,
        )
        assert first.returncode == 10, first.output
        incident = next(w for w in first.stdout.split() if w.startswith("INC-"))
        info = docker.inspect(victim)
        assert (
            info["NetworkSettings"]["Networks"] == {} and info["State"]["Running"]
        )  # isolated, not yet stopped
        assert info["State"]["Paused"] is False  # unpaused after the export
        done = run_cli(
            "approve",
            incident,
            "--all",
            "--as",
            "lead@oncall",
            "--reason",
            "confirmed",
            data_dir=data_dir,
            timeout=600,
        )
        assert done.returncode == 0, done.output

        # stop: still there, exited, restart policy no, logs readable
        info = docker.inspect(victim)
        assert info["State"]["Status"] == "exited"
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"
        assert "beacon" in docker("logs", victim)

        # evidence: every kind, hashes equal at both ends, manifest, volume and filesystem content
        db = sqlite3.connect(data_dir / "timeline.db")
        rows = db.execute(
            "SELECT kind, path, sha256_source, sha256_controller, host FROM evidence WHERE incident_id=?",
            (incident,),
        ).fetchall()
        kinds = {r[0] for r in rows}
        assert {"inspect", "processes", "sockets", "diff", "image", "filesystem", "volume", "logs"} <= kinds
        assert all(r[2] == r[3] and r[4] == "dockerhost" for r in rows)
        by_kind = {r[0]: Path(r[1]) for r in rows}
        assert "4444" in by_kind["sockets"].read_text()  # the listener, seen by the host's own ss
        assert "/tmp/implant" in by_kind["diff"].read_text()
        # reached through the Engine API socket (no DOCKER_HOST on the target): dockerd's own JSON
        processes = json.loads(by_kind["processes"].read_text())
        assert processes["Titles"][:2] == ["PID", "PPID"] and any(
            "nc" in " ".join(p) for p in processes["Processes"]
        )
        assert {"Path": "/tmp/implant", "Kind": 1} in json.loads(by_kind["diff"].read_text())
        assert "beacon" in by_kind["logs"].read_text().splitlines()[0]  # unframed text, with a timestamp
        with tarfile.open(by_kind["filesystem"]) as tar:
            assert "./tmp/implant" in tar.getnames() or "tmp/implant" in tar.getnames()
        with tarfile.open(by_kind["volume"]) as tar:
            assert tar.extractfile("./stolen.txt").read() == b"exfil\n"
        manifest = json.loads((data_dir / "evidence" / incident / "manifest.json").read_text())
        assert len(manifest["artifacts"]) == len(rows)
        assert all(
            a["sha256_source"] and a["collected_at_utc"] and a["collector"] for a in manifest["artifacts"]
        )
        driver = docker("info", "--format", "{{.Driver}}")
        assert any(a.get("tool_versions", {}).get("storage_driver") == driver for a in manifest["artifacts"])
        assert run_cli("evidence", "verify", incident, data_dir=data_dir).returncode == 0

        # rotation: a new version at the same target, the old secret gone, no value anywhere of ours
        secrets = docker("secret", "ls", "--format", "{{.Name}}").split()
        assert secret not in secrets and f"{secret}_v2" in secrets
        spec = json.loads(docker("service", "inspect", service))[0]["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert [(s["SecretName"], s["File"]["Name"]) for s in spec["Secrets"]] == [
            (f"{secret}_v2", "db_password")
        ]
        new_value = _service_secret_value(docker, service, "db_password")
        assert new_value and new_value != "initial-secret-value" and len(new_value) >= 32
        for path in data_dir.rglob("*"):
            if path.is_file():
                assert new_value.encode() not in path.read_bytes(), f"rotated value found in {path}"
        rotated = db.execute(
            "SELECT message FROM events WHERE incident_id=? AND kind='secret_rotated'", (incident,)
        ).fetchall()
        assert rotated and f"{secret}_v2" in rotated[0][0]

        # release: the networks come back with their aliases
        released = run_cli("release", incident, "--reason", "host rebuilt", data_dir=data_dir)
        assert released.returncode == 0, released.output
        after = docker.inspect(victim)["NetworkSettings"]["Networks"]
        assert set(after) == set(nets)
        assert "db-alias" in after[nets[1]]["Aliases"]
        assert after[back]["IPAMConfig"]["IPv4Address"] == before[back]["IPAddress"]  # same address
        assert "released" in run_cli("incidents", data_dir=data_dir).stdout

        # tampering is caught
        altered = by_kind["diff"]
        altered.chmod(0o600)
        altered.write_text("nothing to see here\n")
        bad = run_cli("evidence", "verify", incident, data_dir=data_dir)
        assert bad.returncode == 7 and "MISMATCH" in bad.stdout
    finally:
        docker("service", "rm", service, check=False)
        time.sleep(1)
        for name in docker("secret", "ls", "--format", "{{.Name}}").split():
            if name.startswith(secret):
                docker("secret", "rm", name, check=False)
        docker.cleanup()
        docker("volume", "rm", "-f", volume, check=False)


def test_rm_containers_are_not_stopped_without_evidence(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    victim = docker.container("autorm", "--rm", "--network", docker.network("r"))
    playbook = tmp_path / "stop-only.yml"
    playbook.write_text(
        "name: stop-only\ndescription: d\nseverity: low\nparams:\n  container: {type: string}\n"
        "steps:\n  - id: stop\n    action: stop_container\n    with: {container: '{{ params.container }}'}\n"
    )
    result = run_cli("run", str(playbook), "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 3, result.output
    assert "--rm" in result.stdout and "pause and isolate" in result.stdout
    assert docker.inspect(victim)["State"]["Running"]


def test_the_dry_run_names_the_owner_that_would_bring_a_container_back(
    swarm: None, docker: Docker, data_dir: Path
) -> None:
    """#16: a Swarm task and a Compose service container: the plan says who owns each and what
    that owner does after each step (Swarm replaces a stopped task; Compose recreates)."""
    service = f"owned-{uuid.uuid4().hex[:6]}"
    docker("service", "create", "--detach=false", "--quiet", "--no-resolve-image", "--name", service,
           "responder-test/busybox:latest", "sleep", "3600")  # fmt: skip
    try:
        (task,) = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").split()
        planned = run_cli(
            "run", "contain-container", "-p", f"container={task}", "--dry-run", data_dir=data_dir
        )
        assert planned.returncode == 0, planned.output
        text = planned.stdout
        assert f"owner: Swarm service {service} (task {service}.1." in text
        assert "after this step, the task keeps running, isolated; Swarm does not replace it" in text
        assert "after this step, Swarm starts a replacement task from the same image" in text
    finally:
        docker("service", "rm", service, check=False)
    shop = docker.container(
        "shop", "--restart", "always", "--label", "com.docker.compose.project=shop",
        "--label", "com.docker.compose.service=web",
    )  # fmt: skip
    planned = run_cli("run", "contain-container", "-p", f"container={shop}", "--dry-run", data_dir=data_dir)
    assert planned.returncode == 0, planned.output
    assert (
        "owner: Compose project shop, service web: after this step, dockerd no longer restarts it"
        in planned.stdout
    )


def _replicas(docker: Docker, service: str) -> int:
    return int(docker("service", "inspect", service, "--format", "{{.Spec.Mode.Replicated.Replicas}}"))


def _running_tasks(docker: Docker, service: str) -> list[str]:
    return docker(
        "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.swarm.service.name={service}"
    ).split()


def test_a_swarm_task_is_stopped_with_no_replacement_and_release_gives_the_service_back(
    swarm: None, docker: Docker, data_dir: Path
) -> None:
    """#16: stopping a Swarm task would make Swarm start a replacement from the same image, on
    the service's networks, not isolated. contain-container holds the service (placed on no
    node) behind the stop gate; the task's container stays for evidence; release lets it run."""
    tag = uuid.uuid4().hex[:6]
    secret, service = f"svc_secret_{tag}", f"held-{tag}"
    subprocess.run(["docker", "secret", "create", secret, "-"], input=b"v1", check=True, capture_output=True)
    docker("service", "create", "--detach=false", "--quiet", "--no-resolve-image", "--name", service,
           "--replicas", "2", "--secret", f"source={secret},target=app_secret",
           "responder-test/busybox:latest", "sleep", "3600")  # fmt: skip
    try:
        task = _running_tasks(docker, service)[0]
        result = run_cli(
            "run", "contain-container", "-p", f"container={task}", "--approve", "all",
            "--as", "lead@oncall", data_dir=data_dir, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.output
        incident = next(w for w in result.stdout.split() if w.startswith("INC-"))
        constraints = docker(
            "service", "inspect", service, "--format", "{{json .Spec.TaskTemplate.Placement.Constraints}}"
        )
        assert f"node.labels.responder_hold=={incident.replace('-', '_')}" in constraints
        time.sleep(12)  # Swarm replaces a stopped task within seconds: nothing may appear
        assert _running_tasks(docker, service) == [], "a replacement task is running uncontained"
        kept = docker.inspect(task)
        assert (
            kept["State"]["Status"] == "exited" and kept["NetworkSettings"]["Networks"] == {}
        )  # kept, cut off
        db = sqlite3.connect(data_dir / "timeline.db")
        (outputs,) = db.execute(
            "SELECT outputs FROM steps WHERE incident_id=? AND step_id='stop'", (incident,)
        ).fetchone()
        held = json.loads(outputs)["held_service"]
        assert held["service_name"] == service and held["replicas"] == 2 and held["verified"] is True
        (said,) = db.execute(
            "SELECT message FROM events WHERE incident_id=? AND kind='service_held'", (incident,)
        ).fetchone()  # the timeline (and Slack, with its thread) says what now runs: nothing of it
        assert f"Swarm service {service} held" in said and "none of its tasks runs until release" in said
        review = run_cli("export", incident, "-f", "md", data_dir=data_dir).stdout
        assert "Take the hold off the Swarm service it held" in review  # what release will give back
        released = run_cli(
            "release", incident, "--reason", "image rebuilt and scanned", data_dir=data_dir, timeout=600
        )
        assert released.returncode == 0, released.output
        assert _replicas(docker, service) == 2
        assert "responder_hold" not in docker(
            "service", "inspect", service, "--format", "{{json .Spec.TaskTemplate.Placement.Constraints}}"
        )
        deadline = time.monotonic() + 90
        while len([t for t in _running_tasks(docker, service) if t != task]) < 2:
            assert time.monotonic() < deadline, "the service did not come back to 2 running tasks"
            time.sleep(1)
    finally:
        docker("service", "rm", service, check=False)
        time.sleep(2)
        subprocess.run(["docker", "secret", "rm", secret], capture_output=True)


def test_a_compose_container_with_a_restart_policy_stays_down(docker: Docker, data_dir: Path) -> None:
    """#16: dockerd would restart it (restart policy always); the plan says Compose owns it; after
    containment it stays stopped, restarts off, and nothing starts in its place."""
    shop = docker.container(
        "shopweb", "--restart", "always", "--label", "com.docker.compose.project=shop",
        "--label", "com.docker.compose.service=web",
    )  # fmt: skip
    result = run_cli(
        "run", "contain-container", "-p", f"container={shop}", "--approve", "all", "--as", "lead@oncall",
        data_dir=data_dir, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    time.sleep(3)
    info = docker.inspect(shop)
    assert info["State"]["Status"] == "exited" and info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    running = docker("ps", "-q", "--filter", "label=com.docker.compose.project=shop").split()
    assert running == []
