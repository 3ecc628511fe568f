"""Commands about incidents: list, show, approve, deny, export, evidence verify, release, resume."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from responder.cli.common import report, settings_from, timeline_for
from responder.exit_codes import STATUS_EXIT


def cmd_incidents(args: argparse.Namespace) -> int:
    """`responder incidents`: the newest incidents and where each stands."""
    timeline = timeline_for(settings_from(args))
    rows = timeline.incidents(args.limit)
    if not rows:
        print("no incidents yet")
    for inc in rows:
        waiting = f" (next: {inc.next_step})" if inc.next_step else ""
        print(f"{inc.id}  {inc.status:18} {inc.severity:8} {inc.playbook}{waiting}  by {inc.actor}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """`responder show ID`: one incident's timeline, steps and evidence."""
    from responder.progress import print_incident

    timeline = timeline_for(settings_from(args))
    print_incident(sys.stdout, timeline, args.incident)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """`responder approve ID STEP|--all`: approve gated steps and carry the run on."""
    from responder.errors import UsageError
    from responder.service import Service, resolve_actor

    if bool(args.step) == bool(args.all):
        raise UsageError("name one step to approve, or give --all")
    service = Service.for_incident(settings_from(args), args.incident, quiet=args.quiet)
    try:
        service.approve(
            args.incident, None if args.all else [args.step], resolve_actor(args.actor), args.reason
        )
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

    service = Service(settings_from(args), slack=False)
    results = service.verify(args.incident, resolve_actor(args.actor))
    if not results:
        print(f"{args.incident}: no evidence recorded")
        return 0
    bad = [r for r in results if r.status != "ok"]
    for r in results:
        print(
            f"{r.status.upper():8} {r.record.kind:<10} {r.record.host:<12} sha256 {r.sha256_now or '-'}  {r.record.path}"
        )
        if r.status == "mismatch":
            print(f"         recorded at collection: {r.record.sha256_controller}")
    print(f"{len(results) - len(bad)} ok, {len(bad)} missing, altered or reached through a link")
    return 7 if bad else 0


def cmd_release(args: argparse.Namespace) -> int:
    """`responder release ID --reason ...`: reverse containment."""
    from responder.service import Service, resolve_actor

    service = Service.for_incident(settings_from(args), args.incident, quiet=args.quiet)
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

    service = Service.for_incident(settings_from(args), args.incident, quiet=args.quiet)
    try:
        return report(service.resume(args.incident, resolve_actor(args.actor)))
    finally:
        service.finish()
