"""What an incident's steps came to, decided in one place.

The CLI, the closing timeline event, Slack, every export and the API all summarise an incident;
they must never disagree, and none may call a failed, skipped or unrun step "done". So each asks
`tally_steps` and prints what it returns, rather than sorting outcomes itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from responder.execution.events import StepOutcome

# Only a step that succeeded did what it says. Everything else is one of three kinds of "not":
# it went wrong, it was deliberately not needed, or it never got (fully) to run.
_NOT_DONE = {StepOutcome.NOT_RUN, StepOutcome.INTERRUPTED}


@dataclass(frozen=True)
class StepTally:
    """Step IDs by what became of them, each list in the order given to `tally_steps`."""

    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    not_done: tuple[str, ...] = ()
    partly_done: tuple[str, ...] = ()  # fleet steps that failed on some of their containers

    def as_dict(self) -> dict[str, list[str]]:
        """The lists as JSON-ready lists."""
        return {
            "done": list(self.done),
            "partly_done": list(self.partly_done),
            "failed": list(self.failed),
            "skipped": list(self.skipped),
            "not_done": list(self.not_done),
        }

    def line(self) -> str:
        """One line for people: `done a, b; failed c; not done d`, naming only the kinds that
        have steps (never "done nothing" or "not done nothing")."""
        kinds = (
            ("done", self.done),
            ("partly done", self.partly_done),
            ("failed", self.failed),
            ("skipped", self.skipped),
            ("not done", self.not_done),
        )
        parts = [f"{kind} {', '.join(steps)}" for kind, steps in kinds if steps]
        if not self.done and not self.partly_done and parts:
            parts.insert(0, "nothing done")
        return "; ".join(parts) or "no steps"


def tally_steps(outcomes: Iterable[tuple[str, str]]) -> StepTally:
    """Sort (step ID, outcome) pairs. A step still `running` (a crash cut it short) is not done;
    an outcome this version does not know is counted as failed, never as done."""
    done: list[str] = []
    failed: list[str] = []
    skipped: list[str] = []
    not_done: list[str] = []
    partly: list[str] = []
    for step_id, outcome in outcomes:
        if outcome == StepOutcome.SUCCEEDED:
            done.append(step_id)
        elif outcome == StepOutcome.PARTIAL:
            partly.append(step_id)
        elif outcome == StepOutcome.SKIPPED:
            skipped.append(step_id)
        elif outcome in _NOT_DONE or outcome == "running":
            not_done.append(step_id)
        else:
            failed.append(step_id)
    return StepTally(tuple(done), tuple(failed), tuple(skipped), tuple(not_done), tuple(partly))


def tally_mapping(outcomes: Mapping[str, str], order: Iterable[str] = ()) -> StepTally:
    """`tally_steps` over a step -> outcome mapping, in `order` first (the playbook's), then the rest."""
    pairs = dict(outcomes)
    first = [s for s in order if s in pairs]
    ordered = first + [s for s in pairs if s not in set(first)]
    return tally_steps((s, pairs[s]) for s in ordered)


__all__ = ["StepTally", "tally_mapping", "tally_steps"]
