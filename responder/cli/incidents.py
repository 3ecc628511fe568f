"""Commands about incidents: list, show, approve, deny, export, evidence verify, release, resume."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from responder.cli.common import report, settings_from, timeline_for
from responder.exit_codes import STATUS_EXIT


def cmd_incidents(args: argparse.Namespace) -> int:
    """`responder incidents`: the newest incidents, where each stands, on which hosts and containers."""
    from responder.cli.listing import incident_row, matches_container

    timeline = timeline_for(settings_from(args))
    found = timeline.incidents(
        None if args.container else args.limit,  # the container filter reads each incident's steps
        statuses=args.status or (),
        playbook=args.playbook,
        since=_utc_time(args.since, "--since"),
        until=_utc_time(args.until, "--until"),
    )
    rows = [incident_row(timeline, inc) for inc in found]
    if args.container:
        rows = [r for r in rows if matches_container(r, args.container)][: args.limit]
    if args.json:
        json.dump({"incidents": rows}, sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        filtered = args.status or args.playbook or args.container or args.since or args.until
        print("no incidents match" if filtered else "no incidents yet")
    for row in rows:
        waiting = f" (next: {row['next_step']})" if row["next_step"] else ""
        hosts = ",".join(row["hosts"]) or row["host_limit"] or "-"
        names = [c["name"] or c["id"][:12] for c in row["containers"]]
        shown = ",".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "") if names else "-"
        print(
            f"{row['id']}  {row['status']:18} {row['severity']:8} {row['playbook']}{waiting}  "
            f"hosts {hosts}  containers {shown}  by {row['actor']}"
        )
    return 0


def _utc_time(text: str | None, flag: str) -> str | None:
    """`2026-12-03` or `2026-12-03T04:00[:00][Z]` as the timeline's UTC ISO form; UsageError otherwise."""
    from datetime import UTC, datetime

    from responder.errors import UsageError

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{flag} {text!r} is not a time: write 2026-12-03 or 2026-12-03T04:00 (UTC)"
        ) from exc
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def cmd_show(args: argparse.Namespace) -> int:
    """`responder show ID`: one incident's timeline, steps and evidence."""
    from responder.progress import print_incident

    timeline = timeline_for(settings_from(args))
    if args.json:
        from responder.export import export

        timeline.incident(args.incident)  # "no incident" before any output
        export(timeline, args.incident, "json", sys.stdout)
        return 0
    print_incident(sys.stdout, timeline, args.incident)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """`responder approve ID STEP|--all`: approve gated steps and carry the run on."""
    from responder.errors import UsageError
    from responder.service import Service, resolve_actor

    if bool(args.step) == bool(args.all):
        raise UsageError("name one step to approve, or give --all")
    service = Service.for_incident(settings_from(args), args.incident, quiet=args.quiet, verbose=args.verbose)
    try:
        service.approve(
            args.incident, None if args.all else [args.step], resolve_actor(args.actor), args.reason
        )
        gate = service.gate_waiting(args.incident)
        if gate is not None:  # a two-person step: recorded, and waiting for someone else
            from responder.approvals import describe

            print(f"{args.incident}: step {gate.step}: {describe(gate)}")
            return STATUS_EXIT["awaiting_approval"]
        return report(service.continue_after_approval(args.incident))
    finally:
        service.finish()


def cmd_deny(args: argparse.Namespace) -> int:
    """`responder deny ID`: refuse the waiting step; the incident ends."""
    from responder.service import Service, resolve_actor

    service = Service.for_incident(settings_from(args), args.incident, quiet=False)
    try:
        service.deny(args.incident, resolve_actor(args.actor), args.reason)
    finally:
        service.finish()
    print(f"{args.incident}: denied")
    return STATUS_EXIT["denied"]


def cmd_export(args: argparse.Namespace) -> int:
    """`responder export ID -f FORMAT`: the timeline for the review (written atomically with -o)."""
    from responder.export import export

    timeline = timeline_for(settings_from(args))
    timeline.incident(args.incident)  # fail with "no incident" before creating any file
    if not args.output:
        export(timeline, args.incident, args.format, sys.stdout)
        return 0
    target = Path(args.output)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            export(timeline, args.incident, args.format, handle)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def cmd_evidence(args: argparse.Namespace) -> int:
    """`responder evidence verify ID`: re-hash every artifact; exit 7 if any is missing or altered."""
    from responder.service import Service, resolve_actor

    if args.action == "prune":
        return _prune(args)
    if len(args.incident) != 1:
        from responder.errors import UsageError

        raise UsageError("evidence verify takes exactly one incident ID")
    incident_id = args.incident[0]
    service = Service(settings_from(args), slack=False)
    results = service.verify(incident_id, resolve_actor(args.actor))
    if args.json:
        from responder.cli.listing import verification_doc

        doc = verification_doc(incident_id, results)
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 7 if doc["bad"] else 0
    if not results:
        print(f"{incident_id}: no evidence recorded")
        return 0
    bad = [r for r in results if r.status not in ("ok", "pruned", "elsewhere")]
    for r in results:
        print(
            f"{r.status.upper():9} {r.record.kind:<10} {r.record.host:<12} sha256 {r.sha256_now or '-'}  {r.record.path}"
        )
        if r.status == "mismatch":
            print(f"          recorded at collection: {r.record.sha256_controller}")
        if r.status == "elsewhere":
            print(f"          held by controller {r.record.controller}: verify it there")
    pruned = sum(1 for r in results if r.status == "pruned")
    away = sum(1 for r in results if r.status == "elsewhere")
    print(
        f"{len(results) - len(bad) - pruned - away} ok, {pruned} pruned on purpose, "
        + (f"{away} on other controllers, " if away else "")
        + f"{len(bad)} missing, altered or reached through a link"
    )
    return 7 if bad else 0


def _prune(args: argparse.Namespace) -> int:
    """`responder evidence prune`: list (or with --yes, delete) closed incidents' evidence files."""
    from responder.evidence_prune import execute, plan
    from responder.service import resolve_actor

    timeline = timeline_for(settings_from(args))
    plans = plan(timeline, args.incident, args.older_than)
    total = sum(p.size for p in plans)
    for item in plans:
        print(f"{item.incident_id}: {len(item.records)} file(s), {item.size} bytes")
    if not plans:
        print("nothing to prune")
        return 0
    if not args.yes:
        print(f"dry run: {total} bytes would be deleted; run again with --yes to delete them")
        return 0
    freed = execute(timeline, plans, resolve_actor(args.actor), args.reason)
    print(f"deleted {freed} bytes; the evidence records and their hashes stay on the timeline")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """`responder release ID --reason ...`: reverse containment."""
    from responder.service import Service, resolve_actor

    service = Service.for_incident(settings_from(args), args.incident, quiet=args.quiet, verbose=args.verbose)
    try:
        outcome = service.release(args.incident, resolve_actor(args.actor), args.reason, args.container)
    finally:
        service.finish()
    if args.container:
        failed = [s for s, status in outcome.steps.items() if s.startswith("undo_") and status != "succeeded"]
        print(
            f"{args.incident}: container {args.container} " + ("not fully released" if failed else "released")
        )
        return 3 if failed else 0
    print(f"{args.incident}: {outcome.status}")
    return 0 if outcome.status == "released" else 3


def cmd_resume(args: argparse.Namespace) -> int:
    """`responder resume ID`: continue an interrupted incident."""
    from responder.service import Service, resolve_actor

    service = Service.for_incident(settings_from(args), args.incident, quiet=args.quiet, verbose=args.verbose)
    try:
        return report(service.resume(args.incident, resolve_actor(args.actor)))
    finally:
        service.finish()
