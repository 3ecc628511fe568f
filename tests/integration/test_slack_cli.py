"""Slack from the real CLI: a thread per incident while Ansible contains a real container, and
containment that does not wait for a Slack that hangs."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import Docker, run_cli
from tests.slack_server import SlackServer, SlackState

pytestmark = pytest.mark.integration
TOKEN = "xoxb-canary-token-7d1e9f"


def _config(tmp_path: Path, slack: SlackServer, flush: int = 10) -> Path:
    cfg = tmp_path / "responder.toml"
    cfg.write_text(
        f'[slack]\nchannel = "#incidents"\nbase_url = "{slack.base_url}"\ntimeout = 1\n'
        f"flush_timeout = {flush}\n"
    )
    return cfg


def _containment_seconds(data_dir: Path, incident: str) -> float:
    db = sqlite3.connect(data_dir / "timeline.db")
    rows = dict(
        db.execute(
            "SELECT kind || ':' || COALESCE(step, ''), ts FROM events WHERE incident_id=? AND "
            "kind IN ('incident_opened', 'step_finished')",
            (incident,),
        ).fetchall()
    )
    from datetime import datetime

    def parse(ts: str) -> float:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

    return parse(rows["step_finished:isolate"]) - parse(rows["incident_opened:"])


def _run(docker: Docker, data_dir: Path, cfg: Path) -> tuple[str, float, str]:
    victim = docker.container("slack", "--network", docker.network("s"))
    start = time.monotonic()
    result = run_cli(
        "--config",
        str(cfg),
        "run",
        "isolate-container",
        "-p",
        f"container={victim}",
        "-p",
        "preserve_logs=false",
        data_dir=data_dir,
        env={"SLACK_BOT_TOKEN": TOKEN},
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.output
    assert docker.inspect(victim)["NetworkSettings"]["Networks"] == {}
    return next(w for w in result.stdout.split() if w.startswith("INC-")), elapsed, result.stderr


def test_incident_thread_from_a_real_run(docker: Docker, data_dir: Path, tmp_path: Path) -> None:
    with SlackServer(SlackState(token=TOKEN)) as slack:
        incident, _, stderr = _run(docker, data_dir, _config(tmp_path, slack))
    assert "slack: " in stderr and "0 failed" in stderr
    root, *replies = slack.state.messages
    assert incident in root.text and root.channel == "#incidents"
    victim = json.loads(run_cli("show", incident, "--json", data_dir=data_dir).stdout)["incident"]["params"]
    # the root names the container (it said "n/a": the trigger never carried the targets)
    assert "*Container*\\n" + victim["container"] in json.dumps(root.blocks), root.blocks
    assert replies and all(r.thread_ts == root.ts for r in replies)
    assert any("isolate" in r.text for r in replies)
    assert slack.state.updates  # the root followed the status to the end
    shown = run_cli("show", incident, data_dir=data_dir).stdout
    assert "notification_sent" in shown and root.ts in shown
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_containment_does_not_wait_for_a_hanging_slack(
    docker: Docker, data_dir: Path, tmp_path: Path
) -> None:
    with SlackServer(SlackState(token=TOKEN)) as slack:
        normal, _, _ = _run(docker, data_dir, _config(tmp_path, slack))
    with SlackServer(SlackState(token=TOKEN, script=["hang"] * 50, hang_seconds=60)) as slack:
        hung, elapsed, stderr = _run(docker, data_dir, _config(tmp_path, slack, flush=2))
    baseline = _containment_seconds(data_dir, normal)
    with_hang = _containment_seconds(data_dir, hung)
    assert with_hang < baseline * 1.5 + 0.5, (baseline, with_hang)
    assert elapsed < with_hang + 2 + 5  # the CLI waited at most flush_timeout for Slack after containment
    assert "not delivered before exit" in stderr
    failed = (
        sqlite3.connect(data_dir / "timeline.db")
        .execute("SELECT COUNT(*) FROM events WHERE incident_id=? AND kind='notification_failed'", (hung,))
        .fetchone()[0]
    )
    assert failed >= 1
