"""Each forensic action's less travelled paths on the real daemon."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, CmdlineWatcher, Docker, incident_id, run_cli, start_cli

pytestmark = pytest.mark.integration


def _playbook(tmp_path: Path, name: str, steps: str, params: str = "  container: {type: string}\n") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(f"name: {name}\ndescription: test\nseverity: low\nparams:\n{params}steps:\n{steps}")
    return path


def test_stop_captures_logs_first_and_can_kill(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    victim = docker.container(
        "tostop",
        "--restart",
        "always",
        command=("sh", "-c", "trap '' TERM; while true; do echo alive; sleep 0.2; done"),
    )
    time.sleep(1)
    playbook = _playbook(
        tmp_path,
        "stop",
        "  - id: stop\n    action: stop_container\n"
        "    with: {container: '{{ params.container }}', kill: true}\n",
    )
    started = time.monotonic()
    result = run_cli("run", str(playbook), "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 0, result.output
    assert time.monotonic() - started < 10  # killed at once: the TERM trap did not hold it for the timeout
    info = docker.inspect(victim)
    assert info["State"]["Status"] == "exited" and info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    rows = (
        sqlite3.connect(data_dir / "timeline.db")
        .execute("SELECT kind, path FROM evidence WHERE incident_id=?", (incident_id(result.stdout),))
        .fetchall()
    )
    kinds = {k: Path(p) for k, p in rows}
    assert set(kinds) == {"logs", "inspect"} and "alive" in kinds["logs"].read_text()


def test_stopping_a_container_that_already_exited_is_not_a_failure(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    """A retried stop step, or a container that died on its own: `docker kill` would refuse it, so
    it is not stopped again; restarts are still turned off and its logs still captured."""
    victim = docker.container("exited", "--restart", "on-failure", command=("sh", "-c", "echo last words"))
    deadline = time.monotonic() + 30
    while docker.inspect(victim)["State"]["Status"] != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    playbook = _playbook(
        tmp_path,
        "stop-exited",
        "  - id: stop\n    action: stop_container\n"
        "    with: {container: '{{ params.container }}', kill: true}\n",
    )
    result = run_cli("run", str(playbook), "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 0, result.output
    info = docker.inspect(victim)
    assert info["State"]["Status"] == "exited" and info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    db = sqlite3.connect(data_dir / "timeline.db")
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='stop'", (incident_id(result.stdout),)
    ).fetchone()
    assert json.loads(outputs)["already_stopped"] is True
    (logs,) = db.execute(
        "SELECT path FROM evidence WHERE incident_id=? AND kind='logs'", (incident_id(result.stdout),)
    ).fetchone()
    assert "last words" in Path(logs).read_text()


def test_a_container_without_readable_logs_is_still_contained(docker: Docker, data_dir: Path) -> None:
    """Log driver `none`: there are no logs to keep, which must not hold up containment. The logs
    step and the stop say so on the timeline, keep the inspect JSON, and the container is stopped."""
    victim = docker.container(
        "nologs",
        "--log-driver",
        "none",
        "--restart",
        "always",
        command=("sh", "-c", "trap 'exit 0' TERM; while true; do echo unseen; sleep 0.2; done"),
    )
    result = run_cli(
        "run", "contain-container", "--approve", "all", "-p", f"container={victim}", data_dir=data_dir
    )
    assert result.returncode == 0, result.output
    info = docker.inspect(victim)
    assert info["State"]["Status"] == "exited" and info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    incident = incident_id(result.stdout)
    db = sqlite3.connect(data_dir / "timeline.db")
    kinds = [k for (k,) in db.execute("SELECT kind FROM evidence WHERE incident_id=?", (incident,))]
    assert "logs" not in kinds and "inspect" in kinds and "filesystem" in kinds
    warnings = [
        (step, message)
        for step, message in db.execute(
            "SELECT step, message FROM events WHERE incident_id=? AND kind='step_warning'", (incident,)
        )
    ]
    assert (
        "preserve_logs",
        "no logs captured: log driver none keeps nothing docker can read back",
    ) in warnings
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='stop'", (incident,)
    ).fetchone()
    assert (
        json.loads(outputs)["verified"]
        == "exists, exited, restart policy no, no logs to read (log driver none)"
    )


def test_through_the_docker_cli_when_docker_host_is_set(docker: Docker, data_dir: Path) -> None:
    """With another CLI context (or a DOCKER_HOST that is not a Unix socket) the modules call the
    docker CLI, not a socket: the whole contain playbook still works and its evidence says how it
    was collected. (DOCKER_HOST=unix://PATH is spoken to through the API: test_engine_api.)"""
    docker("context", "rm", "-f", "rt-viacli", check=False)
    docker("context", "create", "rt-viacli", "--docker", "host=unix:///var/run/docker.sock")
    net = docker.network("cli")
    victim = docker.container(
        "viacli",
        "--restart",
        "always",
        "--network",
        net,
        command=("sh", "-c", "echo planted > /tmp/implant; while true; do echo alive; sleep 0.2; done"),
    )
    time.sleep(1)
    result = run_cli(
        "run",
        "contain-container",
        "--approve",
        "all",
        "-p",
        f"container={victim}",
        data_dir=data_dir,
        env={"DOCKER_CONTEXT": "rt-viacli"},
    )
    docker("context", "rm", "-f", "rt-viacli", check=False)
    assert result.returncode == 0, result.output
    info = docker.inspect(victim)
    assert info["State"]["Status"] == "exited" and info["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert not info["NetworkSettings"]["Networks"]
    rows = (
        sqlite3.connect(data_dir / "timeline.db")
        .execute("SELECT kind, path, method FROM evidence WHERE incident_id=?", (incident_id(result.stdout),))
        .fetchall()
    )
    by_kind = {kind: (Path(path), method) for kind, path, method in rows}
    assert {"inspect", "processes", "diff", "image", "filesystem", "logs"} <= set(by_kind)
    assert all("Engine API" not in method for _, method in by_kind.values())
    assert by_kind["processes"][0].suffix == ".txt" and "PID" in by_kind["processes"][0].read_text()
    assert "A /tmp/implant" in by_kind["diff"][0].read_text().splitlines()
    assert "alive" in by_kind["logs"][0].read_text()


def test_pause_then_release_unpauses(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    victim = docker.container("topause")
    playbook = _playbook(
        tmp_path,
        "pause",
        "  - id: pause\n    action: pause_container\n    with: {container: '{{ params.container }}'}\n",
    )
    result = run_cli("run", str(playbook), "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 0, result.output
    assert docker.inspect(victim)["State"]["Paused"] is True
    released = run_cli("release", incident_id(result.stdout), "--reason", "done", data_dir=data_dir)
    assert released.returncode == 0, released.output
    assert docker.inspect(victim)["State"]["Paused"] is False


def test_file_rotation_keeps_owner_and_mode_and_restarts_consumers(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secrets" / "api_key"
    secret_file.parent.mkdir()
    secret_file.write_text("old-value")
    os.chown(secret_file, 1234, 2345)
    secret_file.chmod(0o640)
    consumer = docker.container("consumer", "-v", f"{secret_file.parent}:/run/secrets:ro")
    before = docker.inspect(consumer)["State"]["StartedAt"]
    playbook = _playbook(
        tmp_path,
        "rotate-file",
        "  - id: rotate\n    action: rotate_secrets\n    with:\n      backend: file\n"
        "      files: ['{{ params.file }}']\n      consumers: ['{{ params.container }}']\n",
        params="  container: {type: string}\n  file: {type: string}\n",
    )
    result = run_cli(
        "run", str(playbook), "-p", f"container={consumer}", "-p", f"file={secret_file}", data_dir=data_dir
    )
    assert result.returncode == 0, result.output
    new_value = secret_file.read_text()
    assert new_value != "old-value" and len(new_value) >= 40
    st = secret_file.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 2345, 0o640)
    assert docker.inspect(consumer)["State"]["StartedAt"] != before
    assert docker("exec", consumer, "cat", "/run/secrets/api_key") == new_value
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert new_value.encode() not in path.read_bytes(), path
    assert "secret_rotated" in run_cli("show", incident_id(result.stdout), data_dir=data_dir).stdout


def test_command_rotation_gets_the_value_on_stdin_only(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rotated"
    playbook = _playbook(
        tmp_path,
        "rotate-cmd",
        "  - id: rotate\n    action: rotate_secrets\n    with:\n      backend: command\n      secret_name: vault-db\n"
        f"      command: ['{FIXTURES / 'bin' / 'record-rotation'}', '{{{{ params.out }}}}']\n",
        params="  out: {type: string}\n",
    )
    proc = start_cli("run", str(playbook), "-p", f"out={out}", data_dir=data_dir)

    watcher = CmdlineWatcher(proc)
    output = watcher.communicate()
    assert proc.returncode == 0, output
    value = out.read_text()
    assert len(value) >= 40
    assert value not in Path(str(out) + ".argv").read_text()
    assert not [c for c in watcher.cmdlines if value in c]
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
    assert "vault-db" in run_cli("show", incident_id(output), data_dir=data_dir).stdout


def test_interrupted_snapshot_leaves_no_final_file_and_unpauses(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    victim = docker.container(
        "big",
        command=(
            "sh",
            "-c",
            # big enough that the export is still running when Ctrl-C lands (it streams at
            # several hundred MB/s)
            "dd if=/dev/zero of=/big bs=1M count=1500 2>/dev/null; touch /ready; sleep 3600",
        ),
    )
    deadline = time.monotonic() + 120
    while subprocess.run(["docker", "exec", victim, "test", "-e", "/ready"]).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    host_root = tmp_path / "host-evidence"
    config = tmp_path / "c.toml"
    config.write_text(f'host_evidence_root = "{host_root}"\n')
    playbook = _playbook(
        tmp_path,
        "snap",
        "  - id: snapshot\n    action: snapshot_filesystem\n"
        "    with: {container: '{{ params.container }}'}\n",
    )
    proc = start_cli(
        "--config", str(config), "run", str(playbook), "-p", f"container={victim}", data_dir=data_dir
    )
    deadline = time.monotonic() + 120
    while not list(host_root.rglob("*-rootfs.tar.partial")):
        assert time.monotonic() < deadline and proc.poll() is None, "the export never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    time.sleep(1)
    assert not list(host_root.rglob("*-rootfs.tar")), "an interrupted export left a file under the final name"
    assert not list(host_root.rglob("*.partial")), "the half-written file was not removed"
    assert docker.inspect(victim)["State"]["Paused"] is False, "the container was left paused"
    shown = run_cli("show", incident_id(output), data_dir=data_dir).stdout
    assert "snapshot=interrupted" in shown


def test_disk_full_during_snapshot(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    """ENOSPC mid-export: the partial file is removed, the step fails saying so, earlier steps stay done."""
    victim = docker.container(
        "full",
        "--network",
        docker.network("f"),
        command=("sh", "-c", "dd if=/dev/zero of=/big bs=1M count=64 2>/dev/null; sleep 3600"),
    )
    time.sleep(2)
    host_root = tmp_path / "tiny"
    host_root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(host_root)], check=True)
    try:
        config = tmp_path / "c.toml"
        config.write_text(f'host_evidence_root = "{host_root}"\n')
        playbook = _playbook(
            tmp_path,
            "full",
            "  - id: isolate\n    action: isolate_network\n"
            "    with: {container: '{{ params.container }}'}\n"
            "  - id: snapshot\n    action: snapshot_filesystem\n"
            "    with: {container: '{{ params.container }}'}\n",
        )
        result = run_cli(
            "--config", str(config), "run", str(playbook), "-p", f"container={victim}", data_dir=data_dir
        )
        assert result.returncode == 3, result.output
        assert "No space left on device after" in result.stdout and "partial file removed" in result.stdout
        assert not list(host_root.rglob("*.partial")) and not list(host_root.rglob("*-rootfs.tar"))
        assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}  # containment stays done
        assert docker.inspect(victim)["State"]["Paused"] is False
        shown = run_cli("show", incident_id(result.stdout), data_dir=data_dir).stdout
        assert "isolate=succeeded" in shown and "snapshot=failed" in shown
    finally:
        subprocess.run(["umount", str(host_root)], check=False)


def test_target_gone_mid_playbook(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    victim = docker.container("vanishing")
    playbook = _playbook(
        tmp_path,
        "gone",
        # a step finds the container first: after that, its absence is `target_gone` (a name
        # that no step ever found is a wrong name: `failed`, see test_contain)
        "  - id: logs\n    action: preserve_logs\n    with: {container: '{{ params.container }}'}\n"
        "  - id: wait\n    action: sleep_for\n    with: {seconds: 4}\n"
        "  - id: isolate\n    action: isolate_network\n"
        "    with: {container: '{{ params.container }}'}\n",
    )
    proc = start_cli(
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "run",
        str(playbook),
        "-p",
        f"container={victim}",
        data_dir=data_dir,
    )

    def logs_done() -> bool:
        if not (data_dir / "timeline.db").exists():
            return False
        with contextlib.closing(sqlite3.connect(data_dir / "timeline.db", timeout=10)) as db:
            try:
                return bool(
                    db.execute("SELECT 1 FROM steps WHERE step_id='logs' AND status='succeeded'").fetchone()
                )
            except sqlite3.OperationalError:  # the file is there, its schema not yet: keep waiting
                return False

    deadline = time.monotonic() + 60
    while not logs_done() and time.monotonic() < deadline:
        time.sleep(0.1)
    docker("rm", "-f", victim)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, output
    assert "no such container" in output
    listed = run_cli("incidents", data_dir=data_dir).stdout
    assert "target_gone" in listed


def test_stray_partial_files_are_quarantined_not_left_beside_evidence(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    """A collection or fetch cut short (cancel over SSH, crash) can leave `.partial` files. The next
    collection moves the unlocked ones into quarantine/ and says so; one still being written
    (its writer holds the lock) is left alone."""
    import fcntl

    victim = docker.container("strays")
    host_root = tmp_path / "host-evidence"
    config = tmp_path / "c.toml"
    config.write_text(f'host_evidence_root = "{host_root}"\n')
    playbook = _playbook(
        tmp_path,
        "logs",
        "  - id: logs\n    action: preserve_logs\n    with: {container: '{{ params.container }}'}\n",
    )
    first = run_cli(
        "--config", str(config), "run", str(playbook), "-p", f"container={victim}", data_dir=data_dir
    )
    assert first.returncode == 0, first.output
    owner = incident_id(first.stdout)
    # host side: a stray from that incident, and a live one held by a writer
    stray = host_root / owner / "0123456789ab-20261129T000000Z-export.tar.partial"
    stray.write_bytes(b"x" * 1000)
    live = host_root / owner / "0123456789ab-20261129T000001Z-export.tar.partial"
    live.write_bytes(b"y" * 10)
    # controller side: a fetch cut short
    fetched = data_dir / "evidence" / owner / "localhost" / "0123456789ab-20261129T000000Z-logs.txt.partial"
    fetched.write_bytes(b"z" * 500)
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        second = run_cli(
            "--config", str(config), "run", str(playbook), "-p", f"container={victim}", data_dir=data_dir
        )
    assert second.returncode == 0, second.output
    assert not stray.exists() and live.exists() and not fetched.exists()
    quarantined = sorted(p.name for p in (host_root / "quarantine").iterdir())
    assert quarantined == [f"{owner}-{stray.name}"]
    assert (host_root / "quarantine" / quarantined[0]).stat().st_mode & 0o777 == 0o400
    assert (
        data_dir / "evidence" / "quarantine" / f"{owner}-localhost-{fetched.name}"
    ).read_bytes() == b"z" * 500
    db = sqlite3.connect(data_dir / "timeline.db")
    warnings = [m for (m,) in db.execute("SELECT message FROM events WHERE kind='step_warning'")]
    assert any("quarantined" in m and stray.name in m and "1000 bytes" in m for m in warnings), warnings
    moved = db.execute(
        "SELECT message FROM events WHERE incident_id=? AND kind='evidence_quarantined'", (owner,)
    )
    assert "500 bytes" in moved.fetchone()[0]
    assert (
        run_cli("evidence", "verify", owner, data_dir=data_dir).returncode == 0
    )  # recorded evidence untouched


@pytest.mark.parametrize("host_root_on", ["same filesystem", "another filesystem"])
def test_on_the_local_connection_evidence_is_kept_once_not_twice(
    docker: Docker, data_dir: Path, tmp_path: Path, host_root_on: str
) -> None:
    """#15: the host and the controller are one machine, so the export is moved into the
    controller's store (a rename, or a copy and removal across filesystems), not copied beside it."""
    victim = docker.container(
        "once",
        command=("sh", "-c", "dd if=/dev/urandom of=/blob bs=1M count=24 2>/dev/null; sleep 3600"),
    )
    time.sleep(2)
    host_root = tmp_path / "host-evidence"
    host_root.mkdir(mode=0o700)
    if host_root_on == "another filesystem":
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", str(host_root)], check=True
        )
    try:
        config = tmp_path / "c.toml"
        config.write_text(f'host_evidence_root = "{host_root}"\n')
        playbook = _playbook(
            tmp_path,
            "once",
            "  - id: snapshot\n    action: snapshot_filesystem\n"
            "    with: {container: '{{ params.container }}'}\n",
        )
        result = run_cli(
            "--config", str(config), "run", str(playbook), "-p", f"container={victim}", data_dir=data_dir
        )
        assert result.returncode == 0, result.output
        incident = incident_id(result.stdout)
        db = sqlite3.connect(data_dir / "timeline.db")
        rows = db.execute(
            "SELECT kind, path, source_path, sha256_source, sha256_controller, size FROM evidence "
            "WHERE incident_id=?",
            (incident,),
        ).fetchall()
        kinds = {row[0] for row in rows}
        assert "filesystem" in kinds or any("rootfs" in row[1] for row in rows), rows
        for _kind, path, source_path, source_hash, controller_hash, size in rows:
            stored = Path(path)
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == source_hash == controller_hash
            assert stored.is_relative_to(data_dir / "evidence" / incident)
            assert stored.stat().st_nlink == 1 and stored.stat().st_size == size
            assert stored.stat().st_mode & 0o777 == 0o400
            assert Path(source_path).is_relative_to(host_root)
            assert not Path(source_path).exists(), f"{source_path} is still on the host: two copies"
        export = next(Path(row[1]) for row in rows if "rootfs" in row[1])
        assert export.stat().st_size > 24 << 20
        left = [p for p in host_root.rglob("*") if p.is_file() and "claims" not in p.parts]
        assert left == [], left  # nothing of this incident's evidence stays on the host side
        verified = run_cli("evidence", "verify", incident, data_dir=data_dir)
        assert verified.returncode == 0, verified.output
    finally:
        if host_root_on == "another filesystem":
            subprocess.run(["umount", str(host_root)], check=False)
