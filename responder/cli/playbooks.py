"""Commands about playbooks and actions: run (and its dry run), validate, playbooks, actions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from responder.cli.common import (
    catalog_for,
    find_playbook,
    inventory_for,
    playbook_files,
    report,
    settings_from,
)


def cmd_run(args: argparse.Namespace) -> int:
    """`responder run PLAYBOOK`: open an incident and run it (or, with --dry-run, only check)."""
    from responder import params as params_mod
    from responder.engine import RunRequest
    from responder.locks import lock_key
    from responder.playbook.parse import load_playbook
    from responder.service import Service, resolve_actor

    settings = settings_from(args)
    catalog = catalog_for(settings)
    playbook = load_playbook(find_playbook(args.playbook, settings), catalog)
    values, secrets = params_mod.resolve(playbook, params_mod.parse_assignments(args.param))
    inventory = inventory_for(args, settings)
    request = RunRequest(
        playbook=playbook,
        params=values,
        secrets=secrets,
        actor=resolve_actor(args.actor),
        inventory=inventory,
        limit=args.limit,
        trigger={"source": "cli", "command": "run"},
        pre_approved=tuple(args.approve),
        lock_key=None if args.dry_run else lock_key(playbook, values, args.limit, inventory),
        max_targets=args.max_targets,
    )
    if args.dry_run:
        from responder.progress import print_dry_run

        dry = Service(settings, catalog, quiet=args.quiet, verbose=args.verbose, slack=False)
        return print_dry_run(sys.stdout, playbook, request, dry.dry_run(request), catalog)
    service = Service(settings, catalog, quiet=args.quiet, verbose=args.verbose, notify=playbook.notify)
    try:
        return report(service.start(request))
    finally:
        service.finish()


def cmd_validate(args: argparse.Namespace) -> int:
    """`responder validate [PATH...]`: load every playbook, report every problem, run nothing."""
    from responder.cli.listing import problems_doc
    from responder.errors import PlaybookError
    from responder.playbook.parse import load_playbook

    settings = settings_from(args)
    catalog = catalog_for(settings)
    files: list[Path] = []
    for raw in args.paths or []:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
        else:
            files.append(path)
    if not args.paths:
        files = playbook_files(settings)
    bad = 0
    docs: list[dict[str, Any]] = []
    for file in files:
        try:
            playbook = load_playbook(file, catalog)
            docs.append(
                {"file": str(file), "valid": True, "name": playbook.name, "steps": len(playbook.steps)}
            )
            if not args.json:
                print(f"ok      {file}  ({playbook.name}: {len(playbook.steps)} steps)")
        except PlaybookError as exc:
            bad += 1
            docs.append({"file": str(file), "valid": False, "problems": problems_doc(exc.problems)})
            if not args.json:
                print(f"invalid {file}", file=sys.stderr)
                for problem in exc.problems:
                    print("  " + problem.render().replace("\n", "\n  "), file=sys.stderr)
    if args.json:
        _dump({"files": docs, "valid": len(files) - bad, "invalid": bad})
    else:
        print(f"{len(files) - bad} valid, {bad} invalid")
    return 2 if bad else 0


def cmd_playbooks(args: argparse.Namespace) -> int:
    """`responder playbooks`: the playbooks found, their params and steps."""
    from responder.cli.listing import playbook_doc, problems_doc
    from responder.errors import PlaybookError
    from responder.playbook.parse import load_playbook

    settings = settings_from(args)
    catalog = catalog_for(settings)
    docs: list[dict[str, Any]] = []
    for file in playbook_files(settings):
        try:
            pb = load_playbook(file, catalog)
        except PlaybookError as exc:
            docs.append({"file": str(file), "valid": False, "problems": problems_doc(exc.problems)})
            if not args.json:
                print(f"{file.stem:24} INVALID ({len(exc.problems)} problems: responder validate {file})")
            continue
        docs.append(playbook_doc(pb, str(file)))
        if args.json:
            continue
        params = ", ".join(
            f"{p.name}{'*' if p.required else ''}{' (secret)' if p.secret else ''}" for p in pb.params
        )
        print(f"{pb.name:24} {pb.severity:8} {pb.description}")
        print(f"{'':24} file: {file}")
        print(f"{'':24} params: {params or 'none'}   steps: {' -> '.join(s.id for s in pb.steps)}")
    if args.json:
        _dump({"playbooks": docs})
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    """`responder actions`: every role, its arguments, what it changes, its undo and an example."""
    import yaml

    from responder.cli.listing import action_doc

    catalog = catalog_for(settings_from(args))
    if args.json:
        _dump({"actions": [action_doc(a) for _, a in sorted(catalog.actions.items())]})
        return 0
    for name, action in sorted(catalog.actions.items()):
        print(f"{name}: {action.summary}")
        print(f"  role: {action.path}")
        for opt in action.options.values():
            flags = "required" if opt.required else f"default {opt.default!r}"
            print(
                f"  - {opt.name} ({opt.type}, {flags}){' [secret]' if opt.no_log else ''}: {opt.description}"
            )
        if action.changes:
            print(f"  changes: {action.changes}")
        undo = action.undo or "not reversible"
        if action.undo_action:
            undo += f" [responder release runs {action.undo_action}]"
        print(f"  undo: {undo}")
        if action.example:
            example = yaml.safe_dump([dict(action.example)], sort_keys=False).rstrip()
            print("  example:\n" + "\n".join("    " + line for line in example.splitlines()))
        print()
    return 0


def _dump(document: dict[str, Any]) -> None:
    json.dump(document, sys.stdout, indent=2, default=str)
    print()
