"""`responder` command line. The only place that prints for people and maps errors to exit codes.

Imports are lazy on purpose: `responder --help` must answer in well under 150 ms, and Ansible
alone costs ~0.45 s to import.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from responder.vocabulary import EventKind

if TYPE_CHECKING:
    from responder.catalog import Catalog
    from responder.engine import RunOutcome
    from responder.settings import Settings

EXIT_CODES = {
    0: "success (validate: all files valid; run: every step succeeded or was skipped)",
    1: "internal error (a bug: please report it with the traceback)",
    2: "invalid input: playbook, params, config, command line, or a request the incident's state refuses",
    3: "a step failed (or its target container disappeared: status target_gone)",
    4: "a host was unreachable",
    5: "Ansible configuration error (unknown module, broken role) or ansible-runner could not start",
    6: "a step timed out",
    7: "evidence verification found a missing or altered file",
    10: "paused: a step awaits `responder approve`",
    11: "denied: an approver refused a step",
    130: "interrupted (SIGINT/SIGTERM); the timeline says what was and was not done",
}

STATUS_EXIT = {
    "succeeded": 0,
    "failed": 3,
    "host_unreachable": 4,
    "config_error": 5,
    "timed_out": 6,
    "awaiting_approval": 10,
    "denied": 11,
    "released": 0,
    "target_gone": 3,
    "interrupted": 130,
}


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("locations")
    group.add_argument(
        "--data-dir", default=default, help="timeline, runs and evidence (env RESPONDER_DATA_DIR)"
    )
    group.add_argument(
        "--playbooks-dir",
        action="append",
        default=argparse.SUPPRESS if suppress else [],
        help="extra playbook directory (repeatable)",
    )
    group.add_argument(
        "--runbooks-dir",
        action="append",
        default=argparse.SUPPRESS if suppress else [],
        help="extra runbooks (roles) directory (repeatable)",
    )
    group.add_argument("--config", default=default, help="config file (TOML; env RESPONDER_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="responder",
        description="Run incident-response playbooks against Docker hosts through Ansible, "
        "with every step on an incident timeline.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from responder import __version__

    parser.add_argument("--version", action="version", version=f"responder {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, suppress=True)
        return p

    run = command("run", "run a playbook: open an incident and execute its steps")
    run.add_argument("playbook", help="playbook file, or the name of a playbook in a playbooks directory")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="param value (repeatable); secret params come from RESPONDER_SECRET_<NAME>",
    )
    run.add_argument("-i", "--inventory", help="Ansible inventory (default: localhost, local connection)")
    run.add_argument("-l", "--limit", help="limit to these hosts (Ansible pattern)")
    run.add_argument("--dry-run", action="store_true", help="change nothing; print the resolved plan")
    run.add_argument(
        "--approve",
        action="append",
        default=[],
        metavar="STEP",
        help="approve a gated step up front (repeatable; 'all' for every gate); recorded as yours",
    )
    run.add_argument("--as", dest="actor", help="who is running this (default: user@host)")
    run.add_argument("--quiet", action="store_true", help="no live progress")

    validate = command("validate", "check playbooks; exit 0 if all are valid, 2 otherwise")
    validate.add_argument("paths", nargs="*", help="files or directories (default: all known playbooks)")

    command("playbooks", "list known playbooks")
    command("actions", "list actions (runbook roles) and their arguments")

    incidents = command("incidents", "list incidents, newest first")
    incidents.add_argument("--limit", type=int, default=50)

    show = command("show", "show an incident's status and timeline")
    show.add_argument("incident")

    approve = command("approve", "approve a paused step and continue the incident")
    approve.add_argument("incident")
    approve.add_argument("step", nargs="?", help="the gated step to approve")
    approve.add_argument("--all", action="store_true", help="approve every remaining gated step")
    approve.add_argument("--as", dest="actor", help="approver (default: user@host)")
    approve.add_argument("--reason", default="", help="why, for the timeline")
    approve.add_argument("--quiet", action="store_true")

    release = command("release", "reverse an incident's containment (reconnect networks, unpause)")
    release.add_argument("incident")
    release.add_argument("--reason", required=True, help="why; recorded on the timeline")
    release.add_argument("--as", dest="actor", help="who releases (default: user@host)")
    release.add_argument("--quiet", action="store_true")

    evidence = command("evidence", "evidence of an incident: verify")
    evidence.add_argument("action", choices=["verify"], help="verify: re-hash every artifact")
    evidence.add_argument("incident")
    evidence.add_argument(
        "--as", dest="actor", help="who verifies (default: user@host), for the custody record"
    )

    export = command("export", "write an incident's timeline for the post-incident review")
    export.add_argument("incident")
    export.add_argument(
        "--format",
        "-f",
        default="md",
        choices=["md", "html", "json", "jsonl", "csv"],
        help="md (review), html (self-contained, visual timeline), json, jsonl (Timesketch), csv",
    )
    export.add_argument("-o", "--output", help="file to write (default: standard output)")

    resume = command("resume", "continue an interrupted incident: re-run the steps that did not finish")
    resume.add_argument("incident")
    resume.add_argument("--as", dest="actor", help="who resumes (default: user@host)")
    resume.add_argument("--quiet", action="store_true")

    serve = command("serve", "serve the alert webhook and incident API (Alertmanager, Falco, generic JSON)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--workers", type=int, help="playbooks run at once (default 2)")
    serve.add_argument("-i", "--inventory", help="Ansible inventory for alert-triggered runs")
    serve.add_argument("--grace", type=float, help="seconds running playbooks get to finish on shutdown (30)")
    serve.add_argument(
        "--body-timeout",
        type=float,
        help="seconds a client has to send a request body once its headers are in (10)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback address without a token or HMAC secret (only behind an authenticating proxy)",
    )

    run_alert = sub.add_parser("_run-alert")  # internal: one worker process of `serve`
    _common(run_alert, suppress=True)
    run_alert.add_argument("alert_id", type=int)
    run_alert.add_argument("-i", "--inventory")

    deny = command("deny", "refuse a paused step; the incident ends")
    deny.add_argument("incident")
    deny.add_argument("--as", dest="actor", help="who refuses (default: user@host)")
    deny.add_argument("--reason", default="", help="why, for the timeline")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Start-up allocates many long-lived objects (imports, parsed YAML) and no garbage cycles worth
    # collecting; the collector is switched back on before any Ansible run (see _Run).
    gc.disable()
    parser = build_parser()
    args = parser.parse_args(argv)
    from responder.errors import PlaybookError, ResponderError

    try:
        handler = globals()["cmd_" + args.command.replace("-", "_")]
        return int(handler(args))
    except PlaybookError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing was run.", file=sys.stderr)
        return exc.exit_code
    except ResponderError as exc:
        print(f"responder: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("responder: interrupted", file=sys.stderr)
        return 130


# helpers -------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    from responder.settings import load_settings

    return load_settings(
        data_dir=getattr(args, "data_dir", None),
        playbooks_dirs=getattr(args, "playbooks_dir", None) or [],
        runbooks_dirs=getattr(args, "runbooks_dir", None) or [],
        config=getattr(args, "config", None),
    )


def _catalog(settings: Settings) -> Catalog:
    from responder.catalog import load_catalog

    return load_catalog(settings.runbook_dirs)


def _playbook_files(settings: Settings) -> list[Path]:
    files: list[Path] = []
    for directory in settings.playbook_dirs:
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    return files


def _find_playbook(ref: str, settings: Settings) -> Path:
    from responder.errors import UsageError

    path = Path(ref)
    if path.is_file():
        return path.resolve()
    for candidate in _playbook_files(settings):
        if candidate.stem == ref:
            return candidate
    known = ", ".join(p.stem for p in _playbook_files(settings)) or "none"
    raise UsageError(f"no playbook file or name {ref!r} (known: {known})")


def _timeline(settings: Settings) -> Any:
    from responder.timeline import Timeline

    settings.private_dir()
    return Timeline(settings.database)


class _Run:
    """An engine wired to the terminal and, when configured, to Slack."""

    def __init__(self, settings: Settings, catalog: Catalog, quiet: bool, notify: Any = None) -> None:
        from responder.engine import Engine
        from responder.errors import ConfigError
        from responder.execution.runner import AnsibleRunnerExecutor, CancelToken
        from responder.notify.setup import build_notifier
        from responder.progress import Progress

        self.settings = settings
        self.progress = Progress(sys.stdout, quiet=quiet)
        self.cancel = CancelToken()
        timeline = _timeline(settings)  # before the notifier's thread opens its own connection
        try:
            self.notifier = build_notifier(settings, notify)
        except ConfigError as exc:
            # A Slack misconfiguration must not stand between on-call and containment.
            print(f"responder: Slack disabled for this run: {exc}", file=sys.stderr)
            self.notifier = None
        if self.notifier is not None:
            timeline.redactor.add(self.notifier.secret)
        self.engine = Engine(
            settings,
            catalog,
            timeline,
            AnsibleRunnerExecutor(),
            on_timeline=self._on_timeline,
            on_runner_event=self.progress.runner_event,
            cancel=self.cancel,
        )

        gc.enable()

    def _on_timeline(self, event: Any) -> None:
        self.progress.timeline_event(event)
        if self.notifier is not None:
            self.notifier.observe(event)  # a queue put: Slack never sits on the containment path

    def finish(self) -> None:
        """After containment: give Slack a bounded time to catch up, then say what happened."""
        if self.notifier is None:
            return
        from responder.notify.setup import flush_timeout

        left = self.notifier.close(flush_timeout(self.settings))
        text = f"slack: {self.notifier.sent} sent, {self.notifier.failed} failed"
        if left:
            text += f", {left} not delivered before exit (recorded on the timeline)"
        print(text, file=sys.stderr)


class _Signals:
    """SIGINT/SIGTERM cancel the run (ansible-runner then kills ansible-playbook's group)."""

    def __init__(self, cancel: Any) -> None:
        self.cancel = cancel
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        import signal

        def handler(signum: int, frame: Any) -> None:
            if self.cancel.is_set():
                raise KeyboardInterrupt
            print(
                f"\nresponder: {signal.Signals(signum).name} received, stopping the run...", file=sys.stderr
            )
            self.cancel.cancel("interrupted")

        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, old in self.previous.items():
            signal.signal(sig, old)


def _finish(outcome: RunOutcome) -> int:
    from responder.outcomes import tally_mapping

    if outcome.awaiting_step:
        print(
            f"\n{outcome.incident_id} is paused before step {outcome.awaiting_step}.\n"
            f"  approve: responder approve {outcome.incident_id} {outcome.awaiting_step}\n"
            f"  deny:    responder deny {outcome.incident_id}"
        )
    else:
        print(
            f"\n{outcome.incident_id}: {outcome.status} ({tally_mapping(outcome.steps).line()}). "
            f"Timeline: responder show {outcome.incident_id}"
        )
    return STATUS_EXIT.get(outcome.status, 1)


# commands ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from responder import params as params_mod
    from responder.engine import RunRequest, default_actor
    from responder.locks import lock_key
    from responder.playbook.parse import load_playbook

    settings = _settings(args)
    catalog = _catalog(settings)
    playbook = load_playbook(_find_playbook(args.playbook, settings), catalog)
    values, secrets = params_mod.resolve(playbook, params_mod.parse_assignments(args.param))
    inventory = _inventory(args, settings)
    request = RunRequest(
        playbook=playbook,
        params=values,
        secrets=secrets,
        actor=args.actor or os.environ.get("RESPONDER_ACTOR") or default_actor(),
        inventory=inventory,
        limit=args.limit,
        trigger={"source": "cli", "command": "run"},
        pre_approved=tuple(args.approve),
        lock_key=None if args.dry_run else lock_key(values, args.limit, inventory),
    )
    if args.dry_run:
        from responder.progress import print_dry_run

        run = _Run(settings, catalog, args.quiet, notify=None)
        with _Signals(run.cancel):
            report = run.engine.dry_run(request)
        return print_dry_run(sys.stdout, playbook, request, report, catalog)
    run = _Run(settings, catalog, args.quiet, notify=playbook.notify)
    try:
        with _Signals(run.cancel):
            return _finish(run.engine.start(request))
    finally:
        run.finish()


def cmd_validate(args: argparse.Namespace) -> int:
    from responder.errors import PlaybookError
    from responder.playbook.parse import load_playbook

    settings = _settings(args)
    catalog = _catalog(settings)
    files: list[Path] = []
    for raw in args.paths or []:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml"))
        else:
            files.append(path)
    if not args.paths:
        files = _playbook_files(settings)
    bad = 0
    for file in files:
        try:
            playbook = load_playbook(file, catalog)
            print(f"ok      {file}  ({playbook.name}: {len(playbook.steps)} steps)")
        except PlaybookError as exc:
            bad += 1
            print(f"invalid {file}", file=sys.stderr)
            for problem in exc.problems:
                print("  " + problem.render().replace("\n", "\n  "), file=sys.stderr)
    print(f"{len(files) - bad} valid, {bad} invalid")
    return 2 if bad else 0


def cmd_playbooks(args: argparse.Namespace) -> int:
    from responder.errors import PlaybookError
    from responder.playbook.parse import load_playbook

    settings = _settings(args)
    catalog = _catalog(settings)
    for file in _playbook_files(settings):
        try:
            pb = load_playbook(file, catalog)
        except PlaybookError as exc:
            print(f"{file.stem:24} INVALID ({len(exc.problems)} problems: responder validate {file})")
            continue
        params = ", ".join(
            f"{p.name}{'*' if p.required else ''}{' (secret)' if p.secret else ''}" for p in pb.params
        )
        print(f"{pb.name:24} {pb.severity:8} {pb.description}")
        print(f"{'':24} file: {file}")
        print(f"{'':24} params: {params or 'none'}   steps: {' -> '.join(s.id for s in pb.steps)}")
    return 0


def cmd_actions(args: argparse.Namespace) -> int:
    import yaml

    catalog = _catalog(_settings(args))
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


def cmd_incidents(args: argparse.Namespace) -> int:
    timeline = _timeline(_settings(args))
    rows = timeline.incidents(args.limit)
    if not rows:
        print("no incidents yet")
    for inc in rows:
        waiting = f" (next: {inc.next_step})" if inc.next_step else ""
        print(f"{inc.id}  {inc.status:18} {inc.severity:8} {inc.playbook}{waiting}  by {inc.actor}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from responder.progress import print_incident

    timeline = _timeline(_settings(args))
    print_incident(sys.stdout, timeline, args.incident)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from responder.engine import default_actor
    from responder.errors import UsageError

    if bool(args.step) == bool(args.all):
        raise UsageError("name one step to approve, or give --all")
    settings = _settings(args)
    catalog = _catalog(settings)
    run = _Run(settings, catalog, args.quiet, notify=_playbook_notify(settings, catalog, args.incident))
    try:
        actor = args.actor or os.environ.get("RESPONDER_ACTOR") or default_actor()
        run.engine.approve(args.incident, None if args.all else [args.step], actor, args.reason)
        incident = run.engine.timeline.incident(args.incident)
        with _Signals(run.cancel):
            return _finish(run.engine.resume(args.incident, _env_secrets(incident.secret_params)))
    finally:
        run.finish()


def cmd_deny(args: argparse.Namespace) -> int:
    from responder.engine import default_actor

    settings = _settings(args)
    catalog = _catalog(settings)
    run = _Run(settings, catalog, quiet=False, notify=_playbook_notify(settings, catalog, args.incident))
    try:
        actor = args.actor or os.environ.get("RESPONDER_ACTOR") or default_actor()
        run.engine.deny(args.incident, actor, args.reason)
    finally:
        run.finish()
    print(f"{args.incident}: denied")
    return STATUS_EXIT["denied"]


def _playbook_notify(settings: Settings, catalog: Catalog, incident_id: str) -> Any:
    """The incident's playbook `notify:` section, if the playbook still loads."""
    from responder.errors import PlaybookError
    from responder.playbook.parse import load_playbook

    incident = _timeline(settings).incident(incident_id)
    try:
        return load_playbook(Path(incident.playbook_path), catalog).notify
    except PlaybookError:
        return None


def cmd_export(args: argparse.Namespace) -> int:
    from responder.export import export

    timeline = _timeline(_settings(args))
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
    from responder.engine import default_actor
    from responder.evidence import verify

    settings = _settings(args)
    timeline = _timeline(settings)
    timeline.incident(args.incident)
    results = verify(timeline, args.incident, settings.evidence_dir)
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
    actor = args.actor or os.environ.get("RESPONDER_ACTOR") or default_actor()
    # each verification is an access to the evidence: it belongs on the chain of custody
    timeline.append(
        args.incident,
        EventKind.EVIDENCE_VERIFIED,
        f"evidence verified by {actor}: {len(results) - len(bad)} ok, {len(bad)} missing or altered",
        actor=actor,
        data={
            "ok": len(results) - len(bad),
            "problems": [{"path": r.record.path, "status": r.status} for r in bad],
        },
    )
    print(f"{len(results) - len(bad)} ok, {len(bad)} missing, altered or reached through a link")
    return 7 if bad else 0


def cmd_release(args: argparse.Namespace) -> int:
    from responder.engine import default_actor

    settings = _settings(args)
    catalog = _catalog(settings)
    run = _Run(settings, catalog, args.quiet, notify=_playbook_notify(settings, catalog, args.incident))
    try:
        actor = args.actor or os.environ.get("RESPONDER_ACTOR") or default_actor()
        with _Signals(run.cancel):
            outcome = run.engine.release(args.incident, actor, args.reason)
    finally:
        run.finish()
    print(f"{args.incident}: {outcome.status}")
    return 0 if outcome.status == "released" else 3


def _env_secrets(secret_params: tuple[str, ...]) -> Any:
    from responder import params as params_mod

    return params_mod.SecretValues(
        {
            n: os.environ[params_mod.secret_env_name(n)]
            for n in secret_params
            if params_mod.secret_env_name(n) in os.environ
        }
    )


def cmd_resume(args: argparse.Namespace) -> int:
    from responder.engine import default_actor

    settings = _settings(args)
    catalog = _catalog(settings)
    run = _Run(settings, catalog, args.quiet, notify=_playbook_notify(settings, catalog, args.incident))
    try:
        actor = args.actor or os.environ.get("RESPONDER_ACTOR") or default_actor()
        incident = run.engine.timeline.incident(args.incident)
        with _Signals(run.cancel):
            return _finish(
                run.engine.resume_interrupted(args.incident, _env_secrets(incident.secret_params), actor)
            )
    finally:
        run.finish()


def _inventory(args: argparse.Namespace, settings: Settings) -> str | None:
    inventory = getattr(args, "inventory", None) or settings.inventory
    return str(Path(inventory).resolve()) if inventory else None


def _location_args(args: argparse.Namespace) -> list[str]:
    """The location flags this process was given, for the worker processes it starts."""
    out: list[str] = []
    if getattr(args, "data_dir", None):
        out += ["--data-dir", str(Path(args.data_dir).resolve())]
    for flag, attr in (("--playbooks-dir", "playbooks_dir"), ("--runbooks-dir", "runbooks_dir")):
        for value in getattr(args, attr, None) or []:
            out += [flag, str(Path(value).resolve())]
    if getattr(args, "config", None):
        out += ["--config", str(Path(args.config).resolve())]
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from responder.server.auth import load_auth
    from responder.server.main import ServeOptions, serve

    settings = _settings(args)
    catalog = _catalog(settings)
    config = settings.server
    auth = load_auth(os.environ, config.get("token_file"), config.get("hmac_secret_file"))
    inventory = _inventory(args, settings)
    data_dir_args = [] if getattr(args, "data_dir", None) else ["--data-dir", str(settings.data_dir)]
    inventory_args = ["--inventory", inventory] if inventory else []
    options = ServeOptions(
        host=args.host or config.get("host", "127.0.0.1"),
        port=args.port or int(config.get("port", 8080)),
        workers=args.workers if args.workers is not None else int(config.get("workers", 2)),
        grace=args.grace if args.grace is not None else float(config.get("grace", 30)),
        body_timeout=args.body_timeout
        if args.body_timeout is not None
        else float(config.get("body_timeout", 10)),
        insecure_no_auth=args.insecure_no_auth,
        inventory=inventory,
        cli_args=[*_location_args(args), *data_dir_args, *inventory_args],
    )
    return serve(settings, catalog, auth, options)


def cmd__run_alert(args: argparse.Namespace) -> int:
    """One alert-triggered run, in a worker process of `responder serve`."""
    from responder import params as params_mod
    from responder.engine import RunRequest
    from responder.intake.store import load_alert
    from responder.playbook.parse import load_playbook
    from responder.server.workers import die_with_parent
    from responder.timeline import ContainerBusy

    die_with_parent()
    settings = _settings(args)
    catalog = _catalog(settings)
    alert = load_alert(settings.database, args.alert_id)
    playbook = load_playbook(Path(alert.playbook_path), catalog)
    values, secrets = params_mod.resolve(playbook, alert.params)
    request = RunRequest(
        playbook=playbook,
        params=values,
        secrets=secrets,
        actor=f"webhook:{alert.source}",
        inventory=_inventory(args, settings),
        limit=alert.host_limit,
        trigger={**alert.summary, "repeats_before_run": alert.repeats},
        lock_key=alert.lock_key,
        alert_id=alert.id,
    )
    run = _Run(settings, catalog, quiet=True, notify=playbook.notify)
    try:
        with _Signals(run.cancel):
            try:
                code = _finish(run.engine.start(request))
            except BaseException as exc:
                # A second signal (KeyboardInterrupt), or a crash: the incident must not stay
                # `running` with nobody left to finish it.
                orphan = run.engine.timeline.open_incident_for_alert(alert.id)
                if orphan is not None:
                    run.engine.abandon(
                        orphan,
                        f"the worker stopped mid-run ({type(exc).__name__}); resume with `responder resume {orphan}`",
                    )
                raise
        if run.engine.held_by:  # the same container, reached by another reference: join its holder
            run.engine.timeline.attach_alert(alert.id, run.engine.held_by, alert.summary)
            print(
                f"alert {alert.id}: container already handled by {run.engine.held_by}; alert added to its timeline"
            )
        return code
    except ContainerBusy as exc:
        run.engine.timeline.attach_alert(alert.id, exc.holder, alert.summary)
        print(f"alert {alert.id}: container already handled by {exc.holder}; alert added to its timeline")
        return 0
    finally:
        run.finish()
