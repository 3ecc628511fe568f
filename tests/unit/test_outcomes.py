"""The one function that decides what an incident's steps came to."""

from __future__ import annotations

import pytest

from responder.execution.events import StepOutcome
from responder.outcomes import tally_mapping, tally_steps


@pytest.mark.parametrize("outcome", [o.value for o in StepOutcome if o is not StepOutcome.SUCCEEDED])
def test_only_success_is_done(outcome: str) -> None:
    tally = tally_steps([("a", "succeeded"), ("b", outcome)])
    assert tally.done == ("a",)
    assert "b" in tally.failed + tally.skipped + tally.not_done + tally.partly_done


def test_a_fleet_step_that_failed_on_some_containers_is_partly_done_never_done() -> None:
    tally = tally_steps([("targets", "succeeded"), ("isolate", "partial"), ("stop", "not_run")])
    assert tally.done == ("targets",) and tally.partly_done == ("isolate",)
    assert tally.line() == "done targets; partly done isolate; not done stop"
    assert tally.as_dict()["partly_done"] == ["isolate"]


def test_kinds_of_not_done() -> None:
    tally = tally_steps(
        [
            ("fail", "failed"),
            ("down", "host_unreachable"),
            ("bad", "config_error"),
            ("slow", "timed_out"),
            ("cut", "interrupted"),
            ("never", "not_run"),
            ("crashed", "running"),
            ("skip", "skipped"),
            ("future", "some_new_outcome"),
        ]
    )
    assert tally.done == ()
    assert tally.failed == ("fail", "down", "bad", "slow", "future")
    assert tally.not_done == ("cut", "never", "crashed")
    assert tally.skipped == ("skip",)
    assert tally.line() == (
        "nothing done; failed fail, down, bad, slow, future; skipped skip; not done cut, never, crashed"
    )


def test_mapping_follows_the_given_order_then_the_rest() -> None:
    tally = tally_mapping({"c": "succeeded", "a": "succeeded", "b": "failed"}, ["a", "b", "missing"])
    assert tally.done == ("a", "c") and tally.failed == ("b",)
    assert tally_mapping({}).line() == "no steps"
    # #15 bug 7: no "not done nothing" when everything was done
    assert tally_mapping({"a": "succeeded", "b": "succeeded"}).line() == "done a, b"
