"""#18 1b: two incidents that reach one container by different references (name and ID) never
both act on it, whatever the interleaving, and releasing the one that holds it restores all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Docker, incident_id, run_cli, start_cli

pytestmark = pytest.mark.integration


def _statuses(data_dir: Path) -> dict[str, str]:
    return dict(
        sqlite3.connect(data_dir / "timeline.db").execute("SELECT id, status FROM incidents").fetchall()
    )


def _events(data_dir: Path, incident: str, kind: str) -> list[str]:
    db = sqlite3.connect(data_dir / "timeline.db")
    return [
        r[0]
        for r in db.execute("SELECT message FROM events WHERE incident_id=? AND kind=?", (incident, kind))
    ]


@pytest.mark.parametrize("round_", range(3))
def test_by_name_and_by_id_at_once_one_acts_and_its_release_restores_everything(
    docker: Docker, data_dir: Path, round_: int
) -> None:
    first_net, second_net = docker.network(f"cl{round_}a"), docker.network(f"cl{round_}b")
    victim = docker.container(f"claim{round_}", "--network", first_net)
    docker("network", "connect", second_net, victim)
    full_id = docker.inspect(victim)["Id"]
    # started together: which one resolves and claims first is up to the scheduler
    by_name = start_cli("run", "isolate-container", "-p", f"container={victim}", data_dir=data_dir)
    by_id = start_cli("run", "isolate-container", "-p", f"container={full_id[:12]}", data_dir=data_dir)
    outputs = [proc.communicate(timeout=120)[0] for proc in (by_name, by_id)]
    statuses = _statuses(data_dir)
    assert sorted(statuses.values()) == ["failed", "succeeded"], (statuses, outputs)
    holder = next(i for i, s in statuses.items() if s == "succeeded")
    other = next(i for i, s in statuses.items() if s == "failed")
    loser_output = next(o for o in outputs if other in o)
    assert f"already being handled by incident {holder}" in loser_output
    assert _events(data_dir, other, "container_held") and _events(data_dir, holder, "duplicate_incident")
    db = sqlite3.connect(data_dir / "timeline.db")
    loser_steps = dict(
        db.execute("SELECT step_id, status FROM steps WHERE incident_id=?", (other,)).fetchall()
    )
    assert "succeeded" not in loser_steps.values(), loser_steps  # it changed nothing
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    released = run_cli("release", holder, "--reason", "test", data_dir=data_dir)
    assert released.returncode == 0, released.output
    assert sorted(docker.inspect(victim)["NetworkSettings"]["Networks"]) == sorted([first_net, second_net])


def test_a_later_incident_names_the_one_whose_changes_it_found(docker: Docker, data_dir: Path) -> None:
    network = docker.network("later")
    victim = docker.container("later", "--network", network)
    full_id = docker.inspect(victim)["Id"]
    first = run_cli("run", "isolate-container", "-p", f"container={victim}", data_dir=data_dir)
    assert first.returncode == 0, first.output
    a = incident_id(first.stdout)
    second = run_cli("run", "isolate-container", "-p", f"container={full_id}", data_dir=data_dir)
    assert second.returncode == 0, second.output  # already isolated: nothing left to cut
    b = incident_id(second.stdout)
    assert any(a in m for m in _events(data_dir, b, "container_claimed"))
    released = run_cli("release", b, "--reason", "test", data_dir=data_dir)
    assert f"responder release {a}" in released.output
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    assert run_cli("release", a, "--reason", "test", data_dir=data_dir).returncode == 0
    assert list(docker.inspect(victim)["NetworkSettings"]["Networks"]) == [network]
