"""#18 section 2: a symbolic link where responder keeps evidence never sends evidence elsewhere,
on the controller or on the target, and `evidence verify` never vouches for such a run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Docker, run_cli

pytestmark = pytest.mark.integration

SNAPSHOT = (
    "name: snap\ndescription: test\nseverity: low\nparams:\n  container: {type: string}\nsteps:\n"
    "  - id: snapshot\n    action: snapshot_filesystem\n"
    "    with: {container: '{{ params.container }}', export: false}\n"
)


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    playbook = tmp_path / "snap.yml"
    playbook.write_text(SNAPSHOT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    return playbook, elsewhere, tmp_path / "config.toml"


def _evidence_rows(data_dir: Path) -> list[tuple[str]]:
    db = data_dir / "timeline.db"
    if not db.exists():
        return []
    return sqlite3.connect(db).execute("SELECT path FROM evidence").fetchall()


def test_controller_evidence_link_refuses_the_run(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    playbook, elsewhere, config = _setup(tmp_path)
    victim = docker.container("linkc")
    (data_dir / "evidence").symlink_to(elsewhere)
    config.write_text(f'host_evidence_root = "{tmp_path / "host-evidence"}"\n')
    result = run_cli(
        "run", str(playbook), "-p", f"container={victim}", "--config", str(config), data_dir=data_dir
    )
    assert result.returncode == 2, result.output
    assert f"{data_dir / 'evidence'} is a symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == [] and _evidence_rows(data_dir) == []
    incidents = sqlite3.connect(data_dir / "timeline.db").execute("SELECT id FROM incidents").fetchall()
    assert incidents == []  # refused before an incident was opened, not left `running`


def test_target_evidence_root_link_fails_the_step_and_writes_nothing(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    playbook, elsewhere, config = _setup(tmp_path)
    victim = docker.container("linkt")
    host_root = tmp_path / "host-evidence"
    host_root.symlink_to(elsewhere)
    config.write_text(f'host_evidence_root = "{host_root}"\n')
    result = run_cli(
        "run", str(playbook), "-p", f"container={victim}", "--config", str(config), data_dir=data_dir
    )
    assert result.returncode != 0, result.output
    assert "is a symbolic link" in result.output and "nothing done" in result.output
    assert list(elsewhere.iterdir()) == [] and _evidence_rows(data_dir) == []


def test_target_incident_dir_link_is_refused(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    """A link planted one level down (the quarantine, where strays are moved) is refused too."""
    playbook, elsewhere, config = _setup(tmp_path)
    victim = docker.container("linkq")
    host_root = tmp_path / "host-evidence"
    host_root.mkdir(mode=0o700)
    (host_root / "quarantine").symlink_to(elsewhere)
    stray = host_root / "INC-20000101-000000-abcd"
    stray.mkdir(mode=0o700)
    (stray / "0123456789ab-20000101T000000Z-logs.txt.partial").write_text("cut short")
    config.write_text(f'host_evidence_root = "{host_root}"\n')
    result = run_cli(
        "run", str(playbook), "-p", f"container={victim}", "--config", str(config), data_dir=data_dir
    )
    assert result.returncode != 0, result.output
    assert "quarantine is a symbolic link" in result.output
    assert list(elsewhere.iterdir()) == []


def test_verify_never_vouches_for_evidence_behind_a_link(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    """Swap the incident's evidence directory for a link to a faithful copy: the hashes would
    match, but what is behind a link is not what was recorded there."""
    import shutil

    playbook, elsewhere, config = _setup(tmp_path)
    victim = docker.container("linkv")
    config.write_text(f'host_evidence_root = "{tmp_path / "host-evidence"}"\n')
    result = run_cli(
        "run", str(playbook), "-p", f"container={victim}", "--config", str(config), data_dir=data_dir
    )
    assert result.returncode == 0, result.output
    incident = next(w for w in result.stdout.split() if w.startswith("INC-")).rstrip(":")
    assert run_cli("evidence", "verify", incident, data_dir=data_dir).returncode == 0
    original = data_dir / "evidence" / incident
    copy = elsewhere / incident
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    original.symlink_to(copy)
    verified = run_cli("evidence", "verify", incident, data_dir=data_dir)
    assert verified.returncode != 0, verified.output
    assert "UNSAFE" in verified.stdout and "OK " not in verified.stdout
