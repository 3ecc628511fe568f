"""Untrusted values stay data and secrets stay out of everything responder writes."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, CmdlineWatcher, Docker, SSHTarget, run_cli, start_cli

pytestmark = pytest.mark.integration


def _grep_tree(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(path)
            except PermissionError:
                pass
    return hits


@pytest.mark.parametrize("connection", ["local", "ssh"])
def test_template_injection_canary_never_fires(
    connection: str, docker: Docker, sshd: SSHTarget, data_dir: Path, tmp_path: Path, canary_path: Path
) -> None:
    payload = f"{{{{ lookup('pipe','touch {canary_path}') }}}}"
    extra = ["-i", str(sshd.inventory(tmp_path / "inv.yml"))] if connection == "ssh" else []
    for args in (["run"], ["run", "--dry-run"]):
        result = run_cli(
            *args,
            str(FIXTURES / "playbooks" / "canary.yml"),
            "--runbooks-dir",
            str(FIXTURES / "runbooks"),
            *extra,
            "-p",
            f"value={payload} $HOME ~",
            data_dir=data_dir,
        )
        assert not canary_path.exists(), f"template in a param was rendered ({args})"
        assert "not a container ID or name" in result.stdout, result.output
    # the value made the round trip through Ansible, a command's argv and a later step literally
    shown = run_cli(
        "show",
        run_cli("incidents", data_dir=data_dir).stdout.split()[0],  # the newest: the dry run opened none
        data_dir=data_dir,
    )
    assert shown.returncode == 0
    rows = (
        sqlite3.connect(data_dir / "timeline.db")
        .execute("SELECT step_id, outputs FROM steps WHERE step_id IN ('echo', 'echo_again')")
        .fetchall()
    )
    assert rows and all(f"{payload} $HOME ~" in out for _, out in rows)


def test_template_injection_through_a_container_name_label(
    docker: Docker, data_dir: Path, canary_path: Path
) -> None:
    # Labels are attacker-controlled; the inspect evidence carries them, nothing renders them.
    victim = docker.container(
        "labelled",
        "--label",
        f"evil={{{{ lookup('pipe','touch {canary_path}') }}}}",
        "--network",
        docker.network("l"),
    )
    result = run_cli("run", "isolate-container", "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 0, result.output
    assert not canary_path.exists()


def test_secrets_never_land_in_data_dir_artifacts_or_cmdlines(data_dir: Path, tmp_path: Path) -> None:
    env_canary = "canary-env-5f1e2d3c4b5a"
    secret_canary = "canary-secret-9a8b7c6d5e4f"
    out_file = tmp_path / "hash"
    env = {"SLACK_BOT_TOKEN": env_canary, "RESPONDER_SECRET_TOKEN": secret_canary}
    proc = start_cli(
        "run",
        str(FIXTURES / "playbooks" / "secret.yml"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "-p",
        f"out_file={out_file}",
        data_dir=data_dir,
        env=env,
    )
    watcher = CmdlineWatcher(proc, interval=0.05)
    output = watcher.communicate()
    assert proc.returncode == 0, output
    assert out_file.read_text() == hashlib.sha256(secret_canary.encode()).hexdigest()  # the role got it
    assert any("ansible" in c for c in watcher.cmdlines), "the watcher never saw ansible-playbook running"
    assert not [c for c in watcher.cmdlines if env_canary in c or secret_canary in c]
    for needle in (env_canary, secret_canary):
        assert needle not in output
        assert not _grep_tree(data_dir, needle.encode()), f"{needle} found in the data dir"
    leftovers = [
        p
        for d in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent")
        if Path(d).is_dir()
        for p in Path(d).glob("responder-*.json")
    ]
    assert not leftovers, "the secrets file outlived the run"


def test_interrupt_stops_the_process_group_and_says_what_was_done(data_dir: Path) -> None:
    seconds = random.randint(1000, 9999)  # a duration no other process on the machine sleeps for
    proc = start_cli(
        "run",
        str(FIXTURES / "playbooks" / "slow.yml"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "-p",
        f"seconds={seconds}",
        data_dir=data_dir,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _sleepers(seconds):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the sleep step never started")
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    time.sleep(0.5)
    assert not _sleepers(seconds), "the runner's children survived the interrupt"
    incident = next(w for w in output.split() if w.startswith("INC-"))
    shown = run_cli("show", incident, data_dir=data_dir).stdout
    assert "interrupted" in shown
    assert "first=succeeded" in shown and "wait=interrupted" in shown and "later=not_run" in shown
    assert "done first; not done wait, later" in shown


def _sleepers(seconds: int) -> list[str]:
    found = []
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                if (pid_dir / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", str(seconds).encode()]:
                    found.append(pid_dir.name)
            except OSError:
                pass
    return found


def test_step_timeout(data_dir: Path) -> None:
    seconds = random.randint(1000, 9999)
    result = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "timeout.yml"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "-p",
        f"seconds={seconds}",
        data_dir=data_dir,
    )
    assert result.returncode == 6, result.output
    assert "wait: timed_out" in result.stdout and "later: not_run" in result.stdout
    time.sleep(0.5)
    assert not _sleepers(seconds)


def test_unreachable_host_is_not_a_playbook_error(sshd: SSHTarget, data_dir: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    inventory = sshd.inventory(tmp_path / "inv.yml", hosts={"deadhost": {"ansible_port": dead_port}})
    result = run_cli(
        "run", "isolate-container", "-i", str(inventory), "-p", "container=web", data_dir=data_dir
    )
    assert result.returncode == 4, result.output
    assert "host_unreachable" in result.stdout
    # #15 bug 4: the dry run exits as the real run does, and every line says why
    dry = run_cli(
        "run",
        "isolate-container",
        "-i",
        str(inventory),
        "-p",
        "container=web",
        "--dry-run",
        data_dir=data_dir,
    )
    assert dry.returncode == 4, dry.output
    assert "host deadhost: host_unreachable -- " in dry.stdout and "not reached" in dry.stdout, dry.stdout
    assert not [line for line in dry.stdout.splitlines() if line.rstrip().endswith(":")], dry.stdout


def test_unknown_module_is_a_configuration_error(data_dir: Path) -> None:
    result = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "broken.yml"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        data_dir=data_dir,
    )
    assert result.returncode == 5, result.output
    assert "config_error" in result.stdout
