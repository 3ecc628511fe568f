"""Planning: what to run, decided without running anything.

Pure functions over a playbook, its params, the catalog and what earlier steps output: render a
step's arguments and check them against the role's argument spec, tell whether a step depends
on one in the same batch, and work out the undo plan that `responder release` runs. Nothing here
touches the timeline, Ansible or Docker, so all of it is unit-tested directly."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from responder import db, targets
from responder.arguments import check_arguments
from responder.catalog import Catalog
from responder.errors import PlaybookError, Problem, StateError
from responder.execution.ansible_input import StepInvocation
from responder.execution.events import StepOutcome, StepResult
from responder.ids import INCIDENT_ID, incident_time_now
from responder.params import SecretValues
from responder.playbook import templating
from responder.playbook.model import OnFailure, Playbook, Step
from responder.playbook.parse import secret_param_name
from responder.settings import Settings

# One inventory host, never a pattern: an undo step targets exactly the host it recorded (a
# recorded "h1,all" or "web*" would otherwise reach every host the pattern matches).
_ONE_HOST = re.compile(r"[A-Za-z0-9_.\-]{1,253}")
# A well-formed stand-in: modules validate the incident ID even in check mode.
DRY_RUN_INCIDENT = "INC-00000000-000000-0000"


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to open an incident: the playbook, resolved params, who asks and where."""

    playbook: Playbook
    params: Mapping[str, Any]
    secrets: SecretValues
    actor: str
    inventory: str | None = None
    limit: str | None = None
    trigger: Mapping[str, Any] = field(default_factory=lambda: {"source": "cli"})
    pre_approved: tuple[str, ...] = ()  # gated steps the requester approves up front ("all": every gate)
    lock_key: str | None = None  # the container this incident holds while open (see intake.routing.lock_key)
    alert_id: int | None = None  # the queued alert this run answers (server workers)
    # run inside the transaction that creates the incident (the intake marks its alert started)
    on_open: Callable[[db.Connection, str], None] | None = None
    max_targets: int | None = None  # the operator's explicit override of the playbook's cap


@dataclass(frozen=True)
class PlannedStep:
    """A step with its arguments rendered; what the dry run prints and the executor runs."""

    step: Step
    args: Mapping[str, Any]
    secret_args: Mapping[str, str]
    skipped: str | None = None
    # In a fleet incident: the argument that names the container; each host fills it with its
    # own resolved containers (see responder.targets).
    target_arg: str | None = None

    def invocation(self) -> StepInvocation:
        """What the executor runs for this step."""
        return StepInvocation(
            step_id=self.step.id,
            role=self.step.action,
            args=self.args,
            secret_args=self.secret_args,
            hosts=self.step.hosts or "all",
            on_failure=self.step.on_failure,
            timeout=self.step.timeout,
            target_arg=self.target_arg,
        )


@dataclass
class DryRunStep:
    """One step of a dry run: its plan and what check mode said (None: not reached)."""

    planned: PlannedStep
    result: StepResult | None = None
    note: str = ""


def step_context(
    incident_id: str, playbook: Playbook, params: Mapping[str, Any], outputs: Mapping[str, Any]
) -> dict[str, Any]:
    """What a step's `with:` and `when:` templates may read."""
    return {
        "params": dict(params),
        "steps": {sid: {"outputs": out} for sid, out in outputs.items()},
        "incident": {"id": incident_id, "playbook": playbook.name},
    }


def depends_on(step: Step, batch_ids: set[str]) -> bool:
    """Whether `step` reads the outputs of a step in `batch_ids` (then it needs a batch of its own)."""
    refs: set[str] = set()
    stack: list[Any] = [dict(step.with_)]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif templating.is_template(value):
            refs |= templating.references(value).steps
    return bool(refs & batch_ids)


def plan_step(
    step: Step,
    context: Mapping[str, Any],
    secrets: SecretValues,
    catalog: Catalog,
    target_arg: str | None = None,
) -> PlannedStep:
    """Render a step's arguments and check them against its role; PlaybookError if they do not
    fit. `target_arg`: in a fleet, the argument each host fills with its own containers."""
    if step.when is not None and not templating.evaluate(step.when, context):
        return PlannedStep(step, {}, {}, skipped=f"`when: {step.when}` is false")
    action = catalog.get(step.action)
    problems: list[Problem] = []
    file = str(context["incident"]["playbook"])

    def problem_at(path: tuple[Any, ...], message: str, hint: str = "", key: bool = False) -> Problem:
        return Problem(file, step.line, None, message, ".".join(str(p) for p in path), hint)

    if action is None:
        raise PlaybookError([problem_at(("steps", step.id), f"unknown action {step.action!r}")])
    args: dict[str, Any] = {}
    secret_args: dict[str, str] = {}
    for key, value in step.with_.items():
        name = secret_param_name(value)
        if name is not None and name in secrets.values:
            secret_args[key] = name
            continue
        try:
            args[key] = templating.render_value(value, context)
        except Exception as exc:  # jinja raises many types; all mean "this value cannot be built"
            problems.append(problem_at(("steps", step.id, "with", key), f"cannot render: {exc}"))
    for name, option in action.options.items():  # argument_specs defaults are documentation to Ansible
        if name not in args and name not in secret_args and option.default is not None:
            args[name] = option.default
    checked = check_arguments(
        action, args, problem_at, lambda v: False, ("steps", step.id, "with"), opaque=secret_args
    )
    problems += checked.problems
    if problems:
        raise PlaybookError(problems)
    # the role gets the values as Ansible's validator converted them (a path expanded, 3 -> 3.0)
    return PlannedStep(step, checked.values, secret_args, target_arg=target_arg)


def fleet_playbook(playbook: Playbook, params: Mapping[str, Any], max_targets: int | None = None) -> Playbook:
    """The playbook as a fleet incident runs it: with a first `targets` step that resolves the
    target selectors on every host and refuses more than the cap. Unchanged for one container."""
    spec = playbook.target_param
    if spec is None or not targets.is_fleet(params.get(spec.name)):
        return playbook
    resolve = Step(
        id=targets.TARGETS_STEP,
        action=targets.RESOLVE_ROLE,
        with_={
            "selectors": f"{{{{ params.{spec.name} }}}}",
            # The cap is for selectors (label:, image:), which can match more than anyone sees;
            # named containers (typed by the operator, or one per alert of a storm) are not
            # capped. 0: no cap.
            "max_targets": max_targets
            or (playbook.max_targets if targets.is_selection(params[spec.name]) else 0),
        },
        timeout=120,
        description="resolve the targets to containers on every host (the blast radius)",
    )
    return replace(playbook, steps=(resolve, *playbook.steps))


def target_argument(step: Step, playbook: Playbook) -> str | None:
    """The argument of `step` that passes the playbook's targets param straight through
    (`container: "{{ params.container }}"`): in a fleet it becomes each host's containers."""
    spec = playbook.target_param
    if spec is None or step.id == targets.TARGETS_STEP:
        return None
    exact = re.compile(r"\{\{\s*params\." + re.escape(spec.name) + r"\s*\}\}")
    return next((k for k, v in step.with_.items() if isinstance(v, str) and exact.fullmatch(v.strip())), None)


def pinned_targets(finished: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, list[str]]:
    """Each host's containers for steps after the first batch, from the recorded step results
    in order ((step ID, outputs by host)): what `targets` resolved, less what later steps
    dropped (containers gone, or held by another incident)."""
    pinned: dict[str, list[str]] = {}
    for step_id, by_host in finished:
        for host, out in by_host.items():
            if not isinstance(out, dict):
                continue
            if step_id == targets.TARGETS_STEP and isinstance(out.get("targets"), list):
                pinned[host] = [str(t.get("container_id")) for t in out["targets"] if isinstance(t, dict)]
            elif out.get("fleet") and isinstance(out.get("remaining"), list) and host in pinned:
                pinned[host] = [str(c) for c in out["remaining"]]
    return pinned


def merge_outputs(result: StepResult) -> dict[str, Any]:
    """steps.<id>.outputs: the single host's outputs, or the first host's plus a per-host map."""
    if not result.hosts:
        return {}
    hosts = sorted(result.hosts)
    merged = dict(result.hosts[hosts[0]].outputs)
    if len(hosts) > 1:
        merged["by_host"] = {h: result.hosts[h].outputs for h in hosts}
    return merged


def merge_attempts(attempts: list[dict[str, Any]], gather: Mapping[str, str]) -> dict[str, Any]:
    """Per host, the last attempt's outputs; for each list output named in `gather`, the entries of
    every attempt, the earliest record of each key first (it saw the state before anything changed)."""
    merged: dict[str, Any] = {}
    for outputs in attempts:
        for host, recorded in outputs.items():
            if isinstance(recorded, dict):
                merged[host] = dict(recorded)
    for name, key in gather.items():
        for host in merged:
            seen: dict[Any, Any] = {}
            for outputs in attempts:
                items = (outputs.get(host) or {}).get(name) if isinstance(outputs.get(host), dict) else None
                for item in items if isinstance(items, list) else []:
                    ident = item.get(key) if isinstance(item, dict) else None
                    if ident is not None and ident not in seen:
                        seen[ident] = item
            if seen:
                merged[host][name] = list(seen.values())
    return merged


@dataclass(frozen=True)
class ReleaseTarget:
    """What release needs to know of an incident: its params and identity for the undo templates."""

    incident_id: str
    playbook_name: str
    playbook_path: str
    params: Mapping[str, Any]


def _per_target(attempt: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt's outputs keyed `host` (one container) or `host/<full ID>` (each container of
    a fleet step that succeeded on it): the unit release undoes."""
    out: dict[str, Any] = {}
    for host, recorded in attempt.items():
        if isinstance(recorded, dict) and recorded.get("fleet") and isinstance(recorded.get("targets"), dict):
            for cid, entry in recorded["targets"].items():
                if (
                    isinstance(entry, dict)
                    and entry.get("outcome") == "succeeded"
                    and isinstance(entry.get("output"), dict)
                ):
                    out[f"{host}/{cid}"] = entry["output"]
        else:
            out[host] = recorded
    return out


def undo_plan(
    target: ReleaseTarget,
    playbook: Playbook,
    ledger: Mapping[str, str],
    attempts: Mapping[str, list[dict[str, Any]]],
    catalog: Catalog,
    only_container: str | None = None,
) -> list[PlannedStep]:
    """The undo steps for release: in reverse order, host by host (and in a fleet, container by
    container), the undo action each succeeded step's role declares, its arguments rendered over
    what that step recorded. `only_container` (a full ID, ID prefix or name) limits it to one."""
    planned: list[PlannedStep] = []
    for step in reversed(playbook.steps):
        action = catalog.get(step.action)
        if (
            ledger.get(step.id) not in (StepOutcome.SUCCEEDED, StepOutcome.PARTIAL)
            or action is None
            or not action.undo_action
        ):
            continue
        undo = catalog.get(action.undo_action)
        assert undo is not None  # load_catalog refuses unknown undo actions
        merged = merge_attempts([_per_target(a) for a in attempts.get(step.id, [])], action.undo_gather)
        for index, (key, recorded) in enumerate(sorted(merged.items())):
            host = key.partition("/")[0]
            if not _ONE_HOST.fullmatch(host):
                raise StateError(f"host name {host!r} recorded for step {step.id} cannot be targeted")
            if only_container and not _names_container(recorded, only_container):
                continue
            if action.undo_when and not recorded.get(action.undo_when):
                continue  # this one changed nothing that release gives back
            context = {
                "outputs": recorded,
                "params": dict(target.params),
                "incident": {"id": target.incident_id, "playbook": target.playbook_name},
            }
            args = {k: templating.render_value(v, context) for k, v in action.undo_with.items()}
            checked = check_arguments(
                undo,
                args,
                lambda path, msg, hint="", key=False: Problem(
                    target.playbook_path, None, None, msg, ".".join(map(str, path)), hint
                ),
                lambda v: False,
                (),
            )
            if checked.problems:
                raise PlaybookError(checked.problems)
            args = checked.values
            label = str(recorded.get("container_name") or "") or str(recorded.get("container_id", ""))[:12]
            undo_step = Step(
                id=f"undo_{step.id}_{index}",
                action=undo.name,
                on_failure=OnFailure.CONTINUE,
                timeout=300,
                hosts=host,
                description=f"undo {step.id} on {host}" + (f" for {label}" if "/" in key else ""),
            )
            planned.append(PlannedStep(undo_step, args, {}))
    return planned


def _names_container(recorded: Mapping[str, Any], wanted: str) -> bool:
    cid = str(recorded.get("container_id") or "")
    return bool(cid) and (cid.startswith(wanted) or recorded.get("container_name") == wanted)


def earlier_incidents(attempts: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """Incidents whose host claims this one took over (`claimed_from`): what they changed on the
    container is theirs to undo, and release says which to release."""
    return sorted(
        {
            str(out["claimed_from"])
            for tries in attempts.values()
            for by_host in tries
            for out in _per_target(by_host).values()
            if isinstance(out, dict) and INCIDENT_ID.match(str(out.get("claimed_from", "")))
        }
    )


def ansible_context(settings: Settings, incident_id: str) -> dict[str, Any]:
    """The `responder` variable every role sees: the incident and where evidence goes."""
    return {
        "incident": incident_id,
        "evidence_dir": str(settings.evidence_dir / incident_id),
        "host_evidence_root": settings.host_evidence_root,
    }


def target_env(settings: Settings, incident_id: str, open_incidents: list[str]) -> dict[str, str]:
    """Environment for the modules on each target (read by runbooks/module_utils).

    The claim variables let a module claim the container it resolved, on its host and before
    changing anything (module_utils claim_for_run): which incident this is, the other incidents
    open now (their claims hold), and now, in incident-ID form (a claim by an incident newer than
    that also holds: this run cannot know whether it is still open)."""
    return {
        "RESPONDER_DOCKER_TIMEOUT": f"{settings.docker_call_timeout:g}",
        "RESPONDER_INCIDENT": incident_id,
        "RESPONDER_CLAIMS_ROOT": settings.host_evidence_root,
        "RESPONDER_OPEN_INCIDENTS": ",".join(i for i in open_incidents if i != incident_id),
        "RESPONDER_CLAIM_SINCE": incident_time_now(),
    }


def found_before(outputs: Mapping[str, Mapping[str, Any]], this_step: str) -> bool:
    """Whether a step before `this_step` resolved a container (a single one, or a fleet's): a
    container missing after that vanished mid-run; missing before, it was never there."""
    return any(
        out.get("container_id") or out.get("targets")
        for step_id, out in outputs.items()
        if step_id != this_step and isinstance(out, Mapping)
    )
