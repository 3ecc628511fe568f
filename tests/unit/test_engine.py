"""The engine's planning and bookkeeping against a fake executor (no Ansible)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from responder.catalog import load_catalog
from responder.engine import Engine, RunRequest
from responder.errors import PlaybookError, StateError
from responder.execution.events import HostResult, RunnerEvent, StepOutcome, StepResult
from responder.execution.runner import Batch, BatchResult, CancelToken
from responder.params import SecretValues, resolve
from responder.playbook.parse import load_playbook
from responder.settings import Settings, shipped_dir
from responder.timeline import Timeline
from responder.vocabulary import IncidentStatus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class FakeExecutor:
    """Succeeds every step unless told otherwise; records what it was asked to run."""

    def __init__(self, outcomes: dict[str, StepOutcome] | None = None) -> None:
        self.batches: list[Batch] = []
        self.outcomes = outcomes or {}

    def run(self, batch: Batch, on_event: Callable[[RunnerEvent], None], cancel: CancelToken) -> BatchResult:
        self.batches.append(batch)
        results = []
        stop = False
        for inv in batch.steps:
            if stop:
                results.append(StepResult(inv.step_id))
                continue
            outcome = self.outcomes.get(inv.step_id, StepOutcome.SUCCEEDED)
            host = HostResult(outcome=outcome, outputs={"container_id": "c" * 64, "printed": "p"})
            result = StepResult(inv.step_id, started=True, hosts={"localhost": host})
            result.finish()
            results.append(result)
            stop = outcome is not StepOutcome.SUCCEEDED and inv.on_failure.value == "abort"
        return BatchResult(results, "successful", 0, None, batch.private_data_dir)


def setup(tmp_path: Path, outcomes: dict[str, StepOutcome] | None = None) -> tuple[Engine, FakeExecutor, Any]:
    settings = Settings(
        tmp_path / "data", (FIXTURES / "playbooks",), (FIXTURES / "runbooks", shipped_dir("runbooks"))
    )
    catalog = load_catalog(settings.runbook_dirs)
    executor = FakeExecutor(outcomes)
    engine = Engine(settings, catalog, Timeline(settings.database), executor)
    return engine, executor, catalog


def request(catalog: Any, name: str, **params: Any) -> RunRequest:
    pb = load_playbook(FIXTURES / "playbooks" / f"{name}.yml", catalog)
    values, secrets = resolve(pb, params, environ={})
    return RunRequest(pb, values, secrets, actor="tester")


def test_consecutive_steps_share_one_runner_invocation(tmp_path: Path) -> None:
    engine, executor, catalog = setup(tmp_path)
    outcome = engine.start(request(catalog, "hosts"))
    assert outcome.status is IncidentStatus.SUCCEEDED
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [["everywhere", "only_b"]]
    assert executor.batches[0].steps[1].hosts == "hostb"


def test_dependency_on_a_step_in_the_batch_splits_it(tmp_path: Path) -> None:
    engine, executor, catalog = setup(tmp_path)
    engine.start(request(catalog, "canary", value="v"))
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [
        ["echo"],
        ["echo_again", "isolate", "logs"],
    ]
    # the second batch saw the first batch's output rendered into its arguments
    assert executor.batches[1].steps[0].args == {"value": "p"}


def test_approval_gate_pauses_then_resumes(tmp_path: Path) -> None:
    engine, executor, catalog = setup(tmp_path)
    outcome = engine.start(request(catalog, "gated", container="web"))
    assert outcome.status is IncidentStatus.AWAITING_APPROVAL and outcome.awaiting_step == "isolate"
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [["logs"]]
    with pytest.raises(StateError):
        engine.approve(outcome.incident_id, ["after"], "boss")
    engine.approve(outcome.incident_id, ["isolate"], "boss", "confirmed exfiltration")
    final = engine.resume(outcome.incident_id, SecretValues({}))
    assert final.status is IncidentStatus.SUCCEEDED
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [["logs"], ["isolate"], ["after"]]
    assert executor.batches[2].steps[0].args == {"value": "c" * 64}
    events = list(engine.timeline.events(outcome.incident_id))
    granted = [e for e in events if e.kind == "approval_granted"]
    assert granted[0].actor == "boss" and granted[0].step == "isolate"
    assert "confirmed exfiltration" in granted[0].message


def test_deny_ends_the_incident(tmp_path: Path) -> None:
    engine, _executor, catalog = setup(tmp_path)
    outcome = engine.start(request(catalog, "gated", container="web"))
    engine.deny(outcome.incident_id, "boss", "false positive")
    incident = engine.timeline.incident(outcome.incident_id)
    assert incident.status is IncidentStatus.DENIED
    steps = engine.timeline.steps(outcome.incident_id)
    assert steps["isolate"][0] == "not_run" and steps["logs"][0] == "succeeded"
    with pytest.raises(StateError):
        engine.resume(outcome.incident_id, SecretValues({}))


def test_abort_stops_and_records_what_was_not_done(tmp_path: Path) -> None:
    engine, _executor, catalog = setup(tmp_path, {"first": StepOutcome.FAILED})
    outcome = engine.start(request(catalog, "slow"))
    assert outcome.status is IncidentStatus.FAILED
    assert outcome.steps == {"first": "failed", "wait": "not_run", "later": "not_run"}
    closed = next(e for e in engine.timeline.events(outcome.incident_id) if e.kind == "incident_closed")
    assert closed.data["not_done"] == ["wait", "later"]
    assert closed.data["done"] == [] and closed.data["failed"] == ["first"]
    assert "nothing done; failed first" in closed.message


def test_no_summary_calls_a_failed_step_done(tmp_path: Path) -> None:
    """The closing event, Slack, the CLI line, every export and the API say the same thing, and
    the failed step is in none of their "done" lists (it used to be in the closing event's)."""
    import io
    import json

    from responder.export import markdown_export
    from responder.export.html_export import write as write_html
    from responder.export.json_export import summary_json
    from responder.export.summary import summarize
    from responder.notify.messages import closing_message
    from responder.outcomes import tally_mapping

    engine, _executor, catalog = setup(tmp_path, {"isolate": StepOutcome.FAILED})
    outcome = engine.start(request(catalog, "canary", value="v"))
    iid = outcome.incident_id
    timeline = engine.timeline
    closed = next(e for e in timeline.events(iid) if e.kind == "incident_closed")
    assert "isolate" not in closed.data["done"] and closed.data["failed"] == ["isolate"]
    assert "done echo, echo_again, logs; failed isolate" in closed.message
    slack = json.dumps(closing_message(timeline.incident(iid), closed, []).blocks)
    assert "Done: echo, echo_again, logs" in slack and "Failed: isolate" in slack
    assert "Contained" not in slack
    summary = summarize(timeline, iid)
    assert summary.tally.done == ("echo", "echo_again", "logs") and summary.tally.failed == ("isolate",)
    assert summary_json(summary)["step_tally"]["failed"] == ["isolate"]
    md = io.StringIO()
    markdown_export.write(timeline, summary, md)
    assert "**Steps done:** echo, echo\\_again, logs" in md.getvalue()
    assert "**Steps failed:** isolate" in md.getvalue()
    html = io.StringIO()
    write_html(timeline, summary, html)
    assert "Steps failed: isolate" in html.getvalue()
    assert tally_mapping(outcome.steps).failed == ("isolate",)


def test_continue_keeps_going(tmp_path: Path) -> None:
    engine, _executor, catalog = setup(tmp_path, {"isolate": StepOutcome.FAILED})
    outcome = engine.start(request(catalog, "canary", value="v"))
    assert outcome.steps["logs"] == "succeeded" and outcome.steps["isolate"] == "failed"
    assert outcome.status is IncidentStatus.FAILED


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (StepOutcome.UNREACHABLE, IncidentStatus.HOST_UNREACHABLE),
        (StepOutcome.CONFIG_ERROR, IncidentStatus.CONFIG_ERROR),
        (StepOutcome.TIMED_OUT, IncidentStatus.TIMED_OUT),
        (StepOutcome.INTERRUPTED, IncidentStatus.INTERRUPTED),
    ],
)
def test_outcomes_map_to_incident_status(
    tmp_path: Path, outcome: StepOutcome, status: IncidentStatus
) -> None:
    engine, _, catalog = setup(tmp_path, {"echo": outcome})
    assert engine.start(request(catalog, "canary", value="v")).status is status


def test_when_false_skips_without_running(tmp_path: Path) -> None:
    engine, executor, _ = setup(tmp_path)
    catalog = load_catalog([shipped_dir("runbooks")])
    pb = load_playbook(shipped_dir("playbooks") / "isolate-container.yml", catalog)
    outcome = engine.start(
        RunRequest(pb, {"container": "web", "preserve_logs": False}, SecretValues({}), "me")
    )
    assert outcome.steps["preserve_logs"] == "skipped"
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [["isolate"]]


def test_playbook_edited_while_paused_is_refused(tmp_path: Path) -> None:
    engine, _, catalog = setup(tmp_path)
    copy = tmp_path / "gated.yml"
    copy.write_text((FIXTURES / "playbooks" / "gated.yml").read_text())
    pb = load_playbook(copy, catalog)
    outcome = engine.start(RunRequest(pb, {"container": "web"}, SecretValues({}), "me"))
    copy.write_text(copy.read_text().replace("high", "critical"))
    with pytest.raises(StateError, match="changed since"):
        engine.approve(outcome.incident_id, None, "boss")


def test_secret_params_never_reach_args_or_timeline(tmp_path: Path) -> None:
    engine, executor, catalog = setup(tmp_path)
    pb = load_playbook(FIXTURES / "playbooks" / "secret.yml", catalog)
    secret = "canary-secret-0d9f8a7b"
    outcome = engine.start(RunRequest(pb, {"out_file": "/tmp/x"}, SecretValues({"token": secret}), "me"))
    batch = executor.batches[0]
    assert batch.steps[0].secret_args == {"token": "token"}
    assert secret not in repr(batch.steps[0].args) and secret not in repr(batch.context)
    assert batch.secret_values == {"use": {"token": secret}}
    assert secret not in (tmp_path / "data" / "timeline.db").read_bytes().decode("latin-1")
    assert outcome.status is IncidentStatus.SUCCEEDED


def test_two_approvers_at_once_resume_it_only_once(tmp_path: Path) -> None:
    """The API and the CLI (or two people) approve the same paused step at the same moment: both
    approvals are recorded, one resume wins, the other is told, and nothing runs twice."""
    import threading

    engine, executor, catalog = setup(tmp_path)
    outcome = engine.start(request(catalog, "gated", container="web"))
    other = Engine(engine.settings, catalog, Timeline(engine.settings.database), executor)
    engine.approve(outcome.incident_id, ["isolate"], "alice")
    with pytest.raises(StateError, match="already approved by alice"):  # one decision, not two
        other.approve(outcome.incident_id, ["isolate"], "bob")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def resume(which: Engine) -> None:
        barrier.wait()
        try:
            results.append(which.resume(outcome.incident_id, SecretValues({})).status)
        except StateError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=resume, args=(e,)) for e in (engine, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert IncidentStatus.SUCCEEDED in results
    assert any(isinstance(r, str) and "someone else" in r for r in results), results
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [["logs"], ["isolate"], ["after"]]


def test_deny_and_approve_at_once_cannot_both_happen(tmp_path: Path) -> None:
    engine, _executor, catalog = setup(tmp_path)
    outcome = engine.start(request(catalog, "gated", container="web"))
    engine.approve(outcome.incident_id, ["isolate"], "alice")
    assert engine.timeline.transition(
        outcome.incident_id, IncidentStatus.AWAITING_APPROVAL, IncidentStatus.RUNNING
    )  # a resume elsewhere won the race
    with pytest.raises(StateError, match=r"running, not awaiting approval|someone else"):
        engine.deny(outcome.incident_id, "bob", "no")
    assert engine.timeline.incident(outcome.incident_id).status is IncidentStatus.RUNNING  # not denied


def test_nobody_approves_a_gate_of_an_incident_they_started(tmp_path: Path) -> None:
    from responder.errors import ApprovalRefused

    engine, _executor, catalog = setup(tmp_path)
    outcome = engine.start(request(catalog, "gated", container="web"))  # started by "tester"
    with pytest.raises(ApprovalRefused, match=r"tester started incident .* someone else must approve"):
        engine.approve(outcome.incident_id, ["isolate"], "tester")
    assert not [e for e in engine.timeline.events(outcome.incident_id) if e.kind == "approval_granted"]
    engine.approve(outcome.incident_id, ["isolate"], "boss")
    assert engine.resume(outcome.incident_id, SecretValues({})).status is IncidentStatus.SUCCEEDED


def _waiting(engine: Engine, incident_id: str) -> Any:
    from responder.approvals import waiting

    incident = engine.timeline.incident(incident_id)
    return waiting(engine.timeline, incident, engine.playbook_for(incident))


def test_a_two_person_gate_needs_two_different_people(tmp_path: Path) -> None:
    from dataclasses import replace

    from responder.errors import ApprovalRefused
    from responder.playbook.model import Approval

    engine, executor, catalog = setup(tmp_path)
    base = request(catalog, "gated", container="web")
    steps = tuple(
        replace(s, approvals=2) if s.approval is Approval.REQUIRED else s for s in base.playbook.steps
    )
    outcome = engine.start(replace(base, playbook=replace(base.playbook, steps=steps)))
    engine.playbook_for = lambda incident, check_hash=True: replace(base.playbook, steps=steps)  # type: ignore[method-assign]
    engine.approve(outcome.incident_id, ["isolate"], "alice", "seen it")
    gate = _waiting(engine, outcome.incident_id)
    assert gate is not None and (gate.approvers, gate.needed, gate.missing) == (("alice",), 2, 1)
    with pytest.raises(ApprovalRefused, match="alice already approved step isolate"):
        engine.approve(outcome.incident_id, ["isolate"], "alice")
    engine.approve(outcome.incident_id, ["isolate"], "bob")
    assert _waiting(engine, outcome.incident_id) is None
    granted = [e for e in engine.timeline.events(outcome.incident_id) if e.kind == "approval_granted"]
    assert [(e.actor, e.data["approval"], e.data["of"]) for e in granted] == [("alice", 1, 2), ("bob", 2, 2)]
    assert "(1 of 2)" in granted[0].message
    assert engine.resume(outcome.incident_id, SecretValues({})).status is IncidentStatus.SUCCEEDED
    assert [[s.step_id for s in b.steps] for b in executor.batches] == [["logs"], ["isolate"], ["after"]]


def test_approvals_without_a_gate_is_a_clear_playbook_error(tmp_path: Path) -> None:
    _engine, _executor, catalog = setup(tmp_path)
    path = tmp_path / "p.yml"
    path.write_text(
        "name: p\ndescription: d\nseverity: low\nparams:\n  container: {type: string}\nsteps:\n"
        "  - id: isolate\n    action: isolate_network\n    approvals: 2\n"
        "    with: {container: '{{ params.container }}'}\n"
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, catalog)
    (problem,) = info.value.problems
    assert problem.line == 9 and "this step has no gate" in problem.message
    assert "add `approval: required`" in problem.hint
