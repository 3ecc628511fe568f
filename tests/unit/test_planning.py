"""Planning without Ansible: arguments, dependencies between steps, and the undo plan release runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.catalog import load_catalog
from responder.errors import PlaybookError, StateError
from responder.params import SecretValues
from responder.planning import (
    ReleaseTarget,
    depends_on,
    earlier_incidents,
    plan_step,
    step_context,
    undo_plan,
)
from responder.playbook.model import Playbook, Severity, Step
from responder.settings import shipped_dir

CATALOG = load_catalog([shipped_dir("runbooks")])
CID = "c" * 64


def playbook(*steps: Step) -> Playbook:
    return Playbook("pb", "test", Severity("high"), (), steps, Path("pb.yml"), "0" * 64)


def test_arguments_are_rendered_defaulted_and_checked() -> None:
    step = Step("stop", "stop_container", {"container": "{{ steps.isolate.outputs.container_id }}"})
    context = step_context("INC-1", playbook(step), {}, {"isolate": {"container_id": CID}})
    planned = plan_step(step, context, SecretValues({}), CATALOG)
    assert planned.args["container"] == CID
    assert "stop_timeout" in planned.args  # the role's argument_specs default, made explicit
    with pytest.raises(PlaybookError, match="has no argument 'containr'"):
        plan_step(Step("x", "stop_container", {"containr": "a"}), context, SecretValues({}), CATALOG)
    with pytest.raises(PlaybookError, match="unknown action"):
        plan_step(Step("x", "no_such_action", {}), context, SecretValues({}), CATALOG)


def test_a_false_when_skips_without_rendering() -> None:
    step = Step(
        "rotate", "rotate_secrets", {"secrets": "{{ params.missing }}"}, when="params.swarm | length > 0"
    )
    planned = plan_step(
        step, step_context("INC-1", playbook(step), {"swarm": []}, {}), SecretValues({}), CATALOG
    )
    assert planned.skipped and "is false" in planned.skipped


def test_dependencies_between_steps() -> None:
    reads = Step("b", "stop_container", {"container": "{{ steps.a.outputs.container_id }}"})
    nested = Step("c", "rotate_secrets", {"secrets": ["{{ steps.a.outputs.x }}"]})
    independent = Step("d", "stop_container", {"container": "{{ params.container }}"})
    assert depends_on(reads, {"a"}) and depends_on(nested, {"a", "z"})
    assert not depends_on(independent, {"a"}) and not depends_on(reads, {"z"})


def _attempts(*networks_by_attempt: list[str], host: str = "h1") -> list[dict[str, object]]:
    return [
        {host: {"container_id": CID, "networks": [{"name": n, "network_id": "ab" * 6} for n in nets]}}
        for nets in networks_by_attempt
    ]


def test_undo_plan_reverses_only_succeeded_steps_host_by_host() -> None:
    isolate = Step("isolate", "isolate_network", {"container": "x"})
    pause = Step("pause", "pause_container", {"container": "x"})
    stop = Step("stop", "stop_container", {"container": "x"})
    pb = playbook(isolate, pause, stop)
    attempts = {
        "isolate": _attempts(["front", "back"], ["back"]) + _attempts(["db"], host="h2"),
        "pause": [{"h1": {"container_id": CID}}],
    }
    ledger = {"isolate": "succeeded", "pause": "succeeded", "stop": "failed"}
    target = ReleaseTarget("INC-20261201-000000-abcd", "pb", "pb.yml", {})
    plan = undo_plan(target, pb, ledger, attempts, CATALOG)
    assert [(p.step.id, p.step.action, p.step.hosts) for p in plan] == [
        ("undo_pause_0", "unpause_container", "h1"),
        ("undo_isolate_0", "reconnect_networks", "h1"),
        ("undo_isolate_1", "reconnect_networks", "h2"),
    ]
    # gathered over both attempts on h1: the retry saw only `back`, the first attempt cut `front` too
    assert [n["name"] for n in plan[1].args["networks"]] == ["front", "back"]
    assert plan[1].args["container"] == CID
    assert undo_plan(target, pb, {"isolate": "failed"}, attempts, CATALOG) == []


def test_undo_plan_refuses_a_recorded_host_it_cannot_target() -> None:
    isolate = Step("isolate", "isolate_network", {"container": "x"})
    attempts = {"isolate": _attempts(["front"], host="h1,all")}
    with pytest.raises(StateError, match="cannot be targeted"):
        undo_plan(
            ReleaseTarget("INC-1", "pb", "pb.yml", {}),
            playbook(isolate),
            {"isolate": "succeeded"},
            attempts,
            CATALOG,
        )


def test_earlier_incidents_are_those_whose_claims_were_taken_over() -> None:
    attempts = {
        "isolate": [{"h1": {"claimed_from": "INC-20261201-000000-aaaa"}, "h2": {"claimed_from": "nonsense"}}],
        "stop": [{"h1": {"claimed_from": "INC-20261201-000000-aaaa"}}],
    }
    assert earlier_incidents(attempts) == ["INC-20261201-000000-aaaa"]


def test_an_undo_with_when_output_applies_only_where_that_output_was_recorded() -> None:
    """stop_container is undone only where it held a Swarm service (undo.when_output)."""
    isolate = Step("isolate", "isolate_network", {"container": "x"})
    stop = Step("stop", "stop_container", {"container": "x"})
    held = {"service_id": "s" * 25, "service_name": "web", "replicas": 3}
    attempts = {
        "isolate": _attempts(["front"]),
        "stop": [{"h1": {"container_id": CID, "held_service": held}, "h2": {"container_id": "d" * 64}}],
    }
    target = ReleaseTarget("INC-20261201-000000-abcd", "pb", "pb.yml", {})
    plan = undo_plan(
        target, playbook(isolate, stop), {"isolate": "succeeded", "stop": "succeeded"}, attempts, CATALOG
    )
    assert [(p.step.id, p.step.action, p.step.hosts) for p in plan] == [
        ("undo_stop_0", "restore_service", "h1"),  # h2 held nothing: nothing to give back there
        ("undo_isolate_0", "reconnect_networks", "h1"),
    ]
    assert plan[0].args == {"held_service": held}
