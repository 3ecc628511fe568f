"""Outcome classification from runner events, not exit codes."""

from __future__ import annotations

from typing import Any

import pytest

from responder.execution.events import Classifier, StepOutcome, from_runner

_counter = iter(range(1, 10_000))


def ev(kind: str, play: str | None = "responder:a", host: str | None = "h1", **res: Any) -> Any:
    n = next(_counter)
    return from_runner(
        {
            "event": kind,
            "counter": n,
            "uuid": f"u{n}",
            "created": "t",
            "event_data": {"play": play, "task": "t", "host": host, "res": res},
        }
    )


def classify(events: list[Any], steps=("a",), canceled=None, rc=0):
    c = Classifier(list(steps))
    for e in events:
        c.feed(e)
    return {r.step_id: r for r in c.result(canceled=canceled, rc=rc)}


def test_success_and_outputs() -> None:
    r = classify(
        [
            ev("playbook_on_play_start", host=None),
            ev("runner_on_ok", changed=True),
            ev("runner_on_ok", ansible_facts={"responder_output": {"x": 1}}),
        ]
    )["a"]
    assert r.outcome is StepOutcome.SUCCEEDED
    assert r.hosts["h1"].outputs == {"x": 1} and r.hosts["h1"].changed


def test_unreachable_is_not_a_failure() -> None:
    r = classify(
        [ev("playbook_on_play_start", host=None), ev("runner_on_unreachable", msg="ssh: refused")], rc=4
    )
    assert r["a"].outcome is StepOutcome.UNREACHABLE


def test_unknown_module_is_a_config_error() -> None:
    r = classify(
        [
            ev("playbook_on_play_start", host=None),
            ev("runner_on_failed", msg="couldn't resolve module/action 'nope'"),
        ],
        rc=4,
    )
    assert r["a"].outcome is StepOutcome.CONFIG_ERROR


def test_playbook_that_never_starts_is_a_config_error() -> None:
    r = classify([], steps=("a", "b"), rc=4)
    assert {s.outcome for s in r.values()} == {StepOutcome.CONFIG_ERROR}


@pytest.mark.parametrize("rc", [-15, -9, 1, 4, None])
def test_a_stop_before_any_play_started_is_an_interruption_not_a_config_error(rc: int | None) -> None:
    """SIGTERM (or the server's drain) landing while ansible-playbook is still starting."""
    r = classify([], steps=("a", "b"), canceled="interrupted", rc=rc)
    assert r["a"].outcome is StepOutcome.INTERRUPTED and "interrupted" in r["a"].message
    assert r["b"].outcome is StepOutcome.NOT_RUN
    r = classify([], steps=("a", "b"), canceled="timeout", rc=rc)
    assert r["a"].outcome is StepOutcome.TIMED_OUT


def test_worst_host_decides_and_others_are_kept() -> None:
    r = classify(
        [
            ev("playbook_on_play_start", host=None),
            ev("runner_on_ok", host="h1"),
            ev("runner_on_failed", host="h2", msg="boom"),
        ],
        rc=2,
    )["a"]
    assert r.outcome is StepOutcome.FAILED and r.message == "boom"
    assert r.hosts["h1"].outcome is StepOutcome.SUCCEEDED


def test_cancel_marks_the_running_step() -> None:
    r = classify(
        [ev("playbook_on_play_start", host=None), ev("runner_on_ok")],
        steps=("a", "b"),
        canceled="interrupted",
        rc=-9,
    )
    assert r["a"].outcome is StepOutcome.INTERRUPTED
    assert r["b"].outcome is StepOutcome.NOT_RUN
    r = classify([ev("playbook_on_play_start", host=None)], canceled="timeout", rc=-9)
    assert r["a"].outcome is StepOutcome.TIMED_OUT


def test_ignored_failures_do_not_count() -> None:
    e = from_runner(
        {
            "event": "runner_on_failed",
            "counter": 1,
            "uuid": "x",
            "event_data": {"play": "responder:a", "host": "h1", "ignore_errors": True, "res": {}},
        }
    )
    r = classify([ev("playbook_on_play_start", host=None), ev("runner_on_ok"), e])["a"]
    assert r.outcome is StepOutcome.SUCCEEDED


def test_no_hosts_matched_fails_the_step() -> None:
    r = classify([ev("playbook_on_play_start", host=None), ev("playbook_on_no_hosts_matched", host=None)])[
        "a"
    ]
    assert r.outcome is StepOutcome.FAILED and "no hosts matched" in r.message


def test_error_without_failed_task_blames_the_playbook() -> None:
    error = from_runner(
        {
            "event": "verbose",
            "counter": 99,
            "uuid": "e",
            "stdout": "[ERROR]: couldn't resolve module",
            "event_data": {},
        }
    )
    r = classify([ev("playbook_on_play_start", host=None), ev("runner_on_ok"), error], steps=("a", "b"), rc=4)
    assert r["a"].outcome is StepOutcome.CONFIG_ERROR and "couldn't resolve" in r["a"].message
    assert r["b"].outcome is StepOutcome.NOT_RUN
