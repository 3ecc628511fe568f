"""The dry run: every step planned and its modules run in check mode; nothing changes, nothing
is recorded, no incident is opened. What it prints is the plan and what each host would do."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from responder.catalog import Catalog
from responder.execution.events import RunnerEvent
from responder.execution.runner import Batch, CancelToken, Executor
from responder.ids import new_incident_id
from responder.planning import (
    DRY_RUN_INCIDENT,
    DryRunStep,
    PlannedStep,
    RunRequest,
    ansible_context,
    depends_on,
    fleet_playbook,
    merge_outputs,
    plan_step,
    step_context,
    target_argument,
    target_env,
)
from responder.private_dirs import ensure_private_dir
from responder.settings import Settings


def dry_run(
    request: RunRequest,
    settings: Settings,
    catalog: Catalog,
    executor: Executor,
    open_incidents: list[str],
    on_runner_event: Callable[[RunnerEvent], None],
    cancel: CancelToken,
) -> list[DryRunStep]:
    """Resolve everything, run the modules in check mode, change nothing, record nothing. Steps
    that read an earlier step's outputs go in a later check-mode batch, which sees them."""
    playbook = fleet_playbook(request.playbook, request.params, request.max_targets)
    fleet = playbook is not request.playbook
    report: list[DryRunStep] = []
    outputs: dict[str, dict[str, Any]] = {}
    scratch = settings.private_dir("runs", f"dry-run-{new_incident_id()}")

    def run(pending: list[PlannedStep]) -> None:
        _check_batch(
            request,
            pending,
            report,
            outputs,
            scratch,
            settings,
            executor,
            open_incidents,
            on_runner_event,
            cancel,
        )

    try:
        pending: list[PlannedStep] = []
        for step in playbook.steps:
            if pending and depends_on(step, {p.step.id for p in pending}):
                run(pending)
                pending = []
            context = step_context("DRY-RUN", playbook, request.params, outputs)
            planned = plan_step(
                step, context, request.secrets, catalog, target_argument(step, playbook) if fleet else None
            )
            if planned.skipped:
                report.append(DryRunStep(planned, note=planned.skipped))
                continue
            pending.append(planned)
        if pending:
            run(pending)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    order = {s.id: i for i, s in enumerate(playbook.steps)}
    return sorted(report, key=lambda r: order[r.planned.step.id])


def _check_batch(
    request: RunRequest,
    pending: list[PlannedStep],
    report: list[DryRunStep],
    outputs: dict[str, dict[str, Any]],
    scratch: Path,
    settings: Settings,
    executor: Executor,
    open_incidents: list[str],
    on_runner_event: Callable[[RunnerEvent], None],
    cancel: CancelToken,
) -> None:
    run_dir = ensure_private_dir(scratch / f"{len(report):02d}", settings.data_dir)
    context = ansible_context(settings, DRY_RUN_INCIDENT)
    context["evidence_dir"] = str(scratch / "evidence")
    result = executor.run(
        Batch(
            incident_id="DRY-RUN",
            name="dry-run",
            steps=[p.invocation() for p in pending],
            private_data_dir=run_dir,
            runbook_dirs=settings.runbook_dirs,
            context=context,
            secret_values={
                p.step.id: {a: request.secrets.values[n] for a, n in p.secret_args.items()}
                for p in pending
                if p.secret_args
            },
            inventory=request.inventory,
            limit=request.limit,
            check_mode=True,
            ansible_local_tmp=settings.private_dir("ansible-local"),
            target_env=target_env(settings, DRY_RUN_INCIDENT, open_incidents),
        ),
        on_runner_event,
        cancel,
    )
    by_id = {r.step_id: r for r in result.steps}
    for p in pending:
        step_result = by_id.get(p.step.id)
        outputs[p.step.id] = merge_outputs(step_result) if step_result else {}
        report.append(DryRunStep(p, step_result))
