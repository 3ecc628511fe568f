"""Approval gates, dry runs and host targeting through the real CLI, Ansible and dockerd."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, Docker, SSHTarget, incident_id, run_cli

pytestmark = pytest.mark.integration
FIXTURE_ARGS = ("--runbooks-dir", str(FIXTURES / "runbooks"))


def test_approval_gate_then_approve(docker: Docker, data_dir: Path) -> None:
    victim = docker.container("gated", "--network", docker.network("g"))
    first = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "gated.yml"),
        *FIXTURE_ARGS,
        "-p",
        f"container={victim}",
        data_dir=data_dir,
    )
    assert first.returncode == 10, first.output
    incident = incident_id(first.stdout)
    assert f"responder approve {incident} isolate" in first.stdout
    assert docker.inspect(victim)["NetworkSettings"]["Networks"]  # still connected: nothing past the gate ran
    listed = run_cli("incidents", data_dir=data_dir).stdout
    assert "awaiting_approval" in listed and "(next: isolate)" in listed
    wrong = run_cli("approve", incident, "after", *FIXTURE_ARGS, data_dir=data_dir)
    assert wrong.returncode == 2 and "not waiting for approval" in wrong.stderr
    # #14: whoever started the incident (here the default user@host) cannot approve its gates
    selfish = run_cli("approve", incident, "isolate", *FIXTURE_ARGS, data_dir=data_dir)
    assert selfish.returncode == 2 and "cannot approve its gates" in selfish.stderr, selfish.output
    assert docker.inspect(victim)["NetworkSettings"]["Networks"]  # still connected
    approved = run_cli(
        "approve",
        incident,
        "isolate",
        "--as",
        "alice@oncall",
        "--reason",
        "exfil confirmed",
        *FIXTURE_ARGS,
        data_dir=data_dir,
    )
    assert approved.returncode == 0, approved.output
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    db = sqlite3.connect(data_dir / "timeline.db")
    actor, ts, message = db.execute(
        "SELECT actor, ts, message FROM events WHERE incident_id=? AND kind='approval_granted'", (incident,)
    ).fetchone()
    assert actor == "alice@oncall" and "exfil confirmed" in message and ts.endswith("Z")
    full_id = docker.inspect(victim)["Id"]
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='after'", (incident,)
    ).fetchone()
    assert full_id in outputs  # the step after the gate read the gated step's output
    again = run_cli("approve", incident, "--all", *FIXTURE_ARGS, data_dir=data_dir)
    assert again.returncode == 2 and "not awaiting approval" in again.stderr
    shown = run_cli("show", incident, data_dir=data_dir).stdout
    # #15 bug 7: steps in the order they ran, not alphabetically
    assert "steps:    logs=succeeded, isolate=succeeded, after=succeeded" in shown, shown
    assert "outcome:  done logs, isolate, after\n" in shown, shown


def test_approval_gate_then_deny(docker: Docker, data_dir: Path) -> None:
    victim = docker.container("denied", "--network", docker.network("d"))
    first = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "gated.yml"),
        *FIXTURE_ARGS,
        "-p",
        f"container={victim}",
        data_dir=data_dir,
    )
    incident = incident_id(first.stdout)
    denied = run_cli(
        "deny", incident, "--as", "bob", "--reason", "false positive", *FIXTURE_ARGS, data_dir=data_dir
    )
    assert denied.returncode == 11, denied.output
    shown = run_cli("show", incident, data_dir=data_dir).stdout
    assert "denied" in shown and "bob" in shown and "isolate=not_run" in shown
    assert docker.inspect(victim)["NetworkSettings"]["Networks"]


def test_dry_run_changes_nothing_and_shows_the_plan(docker: Docker, data_dir: Path) -> None:
    net = docker.network("dry")
    victim = docker.container("dry", "--network", net, "--restart", "unless-stopped")
    info = docker.inspect(victim)
    result = run_cli("run", "isolate-container", "--dry-run", "-p", f"container={victim}", data_dir=data_dir)
    assert result.returncode == 0, result.output
    out = result.stdout
    assert "DRY RUN" in out and info["Id"] in out and net in out
    assert "restart policy: unless-stopped" in out and "--rm: False" in out
    assert f"would: disconnect from {net}" in out
    assert "image: responder-test/busybox" in out and info["Image"] in out
    assert '"container": "' + victim + '"' in out  # rendered arguments
    assert "None" not in out  # #15 bug 8: preserve_logs printed `image: None [None]`
    assert docker.inspect(victim)["NetworkSettings"]["Networks"].keys() == {net}
    assert run_cli("incidents", data_dir=data_dir).stdout.strip() == "no incidents yet"
    assert not list((data_dir / "runs").iterdir())


def test_limit_and_per_step_hosts(sshd: SSHTarget, data_dir: Path, tmp_path: Path) -> None:
    inventory = sshd.inventory(tmp_path / "inv.yml", hosts={"hosta": {}, "hostb": {}})
    result = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "hosts.yml"),
        *FIXTURE_ARGS,
        "-i",
        str(inventory),
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.output
    db = sqlite3.connect(data_dir / "timeline.db")
    incident = incident_id(result.stdout)

    def hosts(step: str) -> set[str]:
        rows = db.execute(
            "SELECT DISTINCT host FROM events WHERE incident_id=? AND step=? AND host IS NOT NULL",
            (incident, step),
        ).fetchall()
        return {r[0] for r in rows}

    assert hosts("everywhere") == {"hosta", "hostb"} and hosts("only_b") == {"hostb"}
    limited = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "hosts.yml"),
        *FIXTURE_ARGS,
        "-i",
        str(inventory),
        "--limit",
        "hosta",
        data_dir=data_dir,
    )
    incident = incident_id(limited.stdout)
    assert hosts("everywhere") == {"hosta"}
    assert limited.returncode == 3 and "no hosts matched" in limited.stdout  # only_b has nobody left


def test_one_container_reached_by_name_and_by_id_is_handled_once(docker: Docker, data_dir: Path) -> None:
    """Fault #44 from both sources: one incident reaches the container by name (an Alertmanager
    label), another by its ID (Falco). The start-up lock cannot see they are the same; the claim
    on the resolved ID does, and the second run stops after its first step."""
    victim = docker.container("twice", "--network", docker.network("tw"))
    full_id = docker.inspect(victim)["Id"]
    first = run_cli("run", "contain-container", "-p", f"container={victim}", data_dir=data_dir)
    assert first.returncode == 10, first.output  # isolated, evidence taken, waiting at `stop`
    holder = incident_id(first.stdout)
    second = run_cli("run", "contain-container", "-p", f"container={full_id[:12]}", data_dir=data_dir)
    assert second.returncode == 3, second.output
    other = incident_id(second.stdout)
    assert f"already handled by incident {holder}" in second.stdout
    assert f"incident failed (the container is already handled by incident {holder})" in second.stdout
    db = sqlite3.connect(data_dir / "timeline.db")
    statuses = dict(db.execute("SELECT id, status FROM incidents").fetchall())
    assert statuses == {holder: "awaiting_approval", other: "failed"}
    ledger = dict(db.execute("SELECT step_id, status FROM steps WHERE incident_id=?", (other,)).fetchall())
    # the host's claim stopped it before it changed anything (it used to isolate first, then stop)
    assert ledger["isolate"] != "succeeded" and ledger["stop"] == "not_run"
    (note,) = db.execute(
        "SELECT message FROM events WHERE incident_id=? AND kind='duplicate_incident'", (holder,)
    ).fetchone()
    assert other in note and full_id[:12] in note
    assert docker.inspect(victim)["State"]["Running"]  # nobody stopped it behind the holder's gate
    # once the holder is closed, the container is free again
    assert (
        run_cli("deny", holder, "--reason", "handled by hand", data_dir=data_dir).returncode == 11
    )  # denied
    third = run_cli("run", "contain-container", "-p", f"container={full_id[:12]}", data_dir=data_dir)
    assert third.returncode == 10, third.output


def test_incidents_filters_and_json_documents(docker: Docker, data_dir: Path) -> None:
    """#15 scripting: --json on incidents, show, playbooks, actions, validate and evidence verify;
    incidents by status, playbook, container and time, with their hosts and containers."""
    victim = docker.container("listed", "--network", docker.network("listed"))
    full_id = docker.inspect(victim)["Id"]
    ok = run_cli("run", "isolate-container", "-p", f"container={victim}", data_dir=data_dir)
    assert ok.returncode == 0, ok.output
    good = incident_id(ok.stdout)
    typo = run_cli("run", "isolate-container", "-p", "container=not-a-container-here", data_dir=data_dir)
    bad = incident_id(typo.stdout)

    def listed(*args: str) -> list[dict]:
        result = run_cli("incidents", "--json", *args, data_dir=data_dir)
        assert result.returncode == 0, result.output
        return json.loads(result.stdout)["incidents"]

    rows = {r["id"]: r for r in listed()}
    assert set(rows) == {good, bad}
    assert rows[good]["hosts"] == ["localhost"] and rows[good]["status"] == "succeeded"
    assert {"id": full_id, "name": victim} in rows[good]["containers"]
    assert [r["id"] for r in listed("--status", "failed")] == [bad]
    assert [r["id"] for r in listed("--container", victim)] == [good]
    assert [r["id"] for r in listed("--container", full_id[:12])] == [good]
    assert {r["id"] for r in listed("--playbook", "isolate-container")} == {good, bad}
    assert listed("--since", "2999-01-01") == [] and len(listed("--until", "2999-01-01")) == 2
    text = run_cli("incidents", "--container", victim, data_dir=data_dir).stdout
    assert good in text and bad not in text and f"containers {victim}" in text and "hosts localhost" in text
    assert "no incidents match" in run_cli("incidents", "--since", "2999-01-01", data_dir=data_dir).stdout
    wrong = run_cli("incidents", "--since", "yesterday", data_dir=data_dir)
    assert wrong.returncode == 2 and "--since 'yesterday' is not a time" in wrong.stderr

    shown = json.loads(run_cli("show", good, "--json", data_dir=data_dir).stdout)
    assert shown["incident"]["id"] == good and shown["evidence"]
    verified = run_cli("evidence", "verify", good, "--json", data_dir=data_dir)
    doc = json.loads(verified.stdout)
    assert verified.returncode == 0 and doc["bad"] == 0 and doc["ok"] == len(doc["results"]) > 0
    names = [
        p["name"] for p in json.loads(run_cli("playbooks", "--json", data_dir=data_dir).stdout)["playbooks"]
    ]
    assert {"contain-container", "isolate-container"} <= set(names)
    actions = json.loads(run_cli("actions", "--json", data_dir=data_dir).stdout)["actions"]
    assert any(a["name"] == "isolate_network" and a["containment"] for a in actions)
    checked = json.loads(run_cli("validate", "--json", data_dir=data_dir).stdout)
    assert checked["invalid"] == 0 and checked["valid"] == len(checked["files"]) >= 2


def test_evidence_prune_is_a_dry_run_by_default_never_touches_an_open_incident_and_stays_on_record(
    docker: Docker, data_dir: Path
) -> None:
    """#15 housekeeping: `responder evidence prune`."""
    closed_victim = docker.container("pruned", "--network", docker.network("pruned"))
    done = run_cli("run", "isolate-container", "-p", f"container={closed_victim}", data_dir=data_dir)
    assert done.returncode == 0, done.output
    closed = incident_id(done.stdout)
    open_victim = docker.container("kept", "--network", docker.network("kept"))
    waiting = run_cli("run", "contain-container", "-p", f"container={open_victim}", data_dir=data_dir)
    assert waiting.returncode == 10, waiting.output  # at its approval gate: open
    still_open = incident_id(waiting.stdout)
    files = sorted((data_dir / "evidence" / closed).rglob("*-logs.txt"))
    assert files

    dry = run_cli("evidence", "prune", "--older-than", "0", data_dir=data_dir)
    assert dry.returncode == 0 and f"{closed}:" in dry.stdout and still_open not in dry.stdout, dry.output
    assert "dry run" in dry.stdout and all(f.exists() for f in files)
    refused = run_cli("evidence", "prune", still_open, "--yes", data_dir=data_dir)
    assert refused.returncode == 2 and "still open" in refused.stderr
    assert list((data_dir / "evidence" / still_open).rglob("*.txt"))

    pruned = run_cli("evidence", "prune", closed, "--yes", "--reason", "retention 90 days", data_dir=data_dir)
    assert pruned.returncode == 0 and "deleted" in pruned.stdout, pruned.output
    assert not any(f.exists() for f in files)
    db = sqlite3.connect(data_dir / "timeline.db")
    (message,) = db.execute(
        "SELECT message FROM events WHERE incident_id=? AND kind='evidence_pruned'", (closed,)
    ).fetchone()
    assert "retention 90 days" in message and "records and their hashes stay" in message
    assert db.execute("SELECT COUNT(*) FROM evidence WHERE incident_id=?", (closed,)).fetchone()[0] > 0
    verified = run_cli("evidence", "verify", closed, data_dir=data_dir)
    assert verified.returncode == 0 and "PRUNED" in verified.stdout and "0 missing" in verified.stdout
    assert "nothing to prune" in run_cli("evidence", "prune", closed, data_dir=data_dir).stdout


def test_a_two_person_step_on_the_cli_waits_for_a_second_person(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    victim = docker.container("twoperson", "--network", docker.network("tp"))
    playbook = tmp_path / "two-person.yml"
    playbook.write_text(
        (FIXTURES / "playbooks" / "gated.yml")
        .read_text()
        .replace("name: gated", "name: two-person")
        .replace("    approval: required\n", "    approval: required\n    approvals: 2\n")
    )
    first = run_cli("run", str(playbook), *FIXTURE_ARGS, "-p", f"container={victim}", data_dir=data_dir)
    assert first.returncode == 10, first.output
    incident = incident_id(first.stdout)
    one = run_cli("approve", incident, "isolate", "--as", "alice", *FIXTURE_ARGS, data_dir=data_dir)
    assert one.returncode == 10 and "1 of 2 approvals (alice); waiting for 1 more person" in one.stdout, (
        one.output
    )
    assert docker.inspect(victim)["NetworkSettings"]["Networks"]  # one person is not enough
    twice = run_cli("approve", incident, "isolate", "--as", "alice", *FIXTURE_ARGS, data_dir=data_dir)
    assert twice.returncode == 2 and "alice already approved step isolate" in twice.stderr, twice.output
    two = run_cli("approve", incident, "isolate", "--as", "bob", *FIXTURE_ARGS, data_dir=data_dir)
    assert two.returncode == 0, two.output
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    db = sqlite3.connect(data_dir / "timeline.db")
    granted = db.execute(
        "SELECT actor FROM events WHERE incident_id=? AND kind='approval_granted' ORDER BY seq", (incident,)
    ).fetchall()
    assert [g[0] for g in granted] == ["alice", "bob"]
