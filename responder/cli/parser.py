"""The command line's grammar: every command, its arguments and its help text (argparse)."""

from __future__ import annotations

import argparse

from responder.exit_codes import EXIT_CODES
from responder.vocabulary import IncidentStatus


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
    """The whole command line: every command, its arguments and help, and the exit codes."""
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
    run.add_argument(
        "--max-targets",
        type=_positive_int,
        metavar="N",
        help="act on up to N containers (overrides the playbook's max_targets, after --dry-run showed them)",
    )
    run.add_argument("--as", dest="actor", help="who is running this (default: user@host)")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    run.add_argument("-v", "--verbose", action="store_true", help="also Ansible's own output, per task")

    validate = command("validate", "check playbooks; exit 0 if all are valid, 2 otherwise")
    validate.add_argument("paths", nargs="*", help="files or directories (default: all known playbooks)")
    validate.add_argument("--json", action="store_true", help="one JSON document (every problem, located)")

    command("playbooks", "list known playbooks").add_argument(
        "--json", action="store_true", help="one JSON document"
    )
    command("actions", "list actions (runbook roles) and their arguments").add_argument(
        "--json", action="store_true", help="one JSON document"
    )

    incidents = command("incidents", "list incidents, newest first")
    incidents.add_argument("--limit", type=int, default=50)
    incidents.add_argument(
        "--status", action="append", choices=[str(s) for s in IncidentStatus], help="only these (repeatable)"
    )
    incidents.add_argument("--playbook", help="only incidents of this playbook (its name)")
    incidents.add_argument(
        "--container", metavar="REF", help="only incidents that acted on this container (name or ID)"
    )
    incidents.add_argument(
        "--since", metavar="TIME", help="opened at or after (UTC, e.g. 2026-12-03 or 2026-12-03T04:00)"
    )
    incidents.add_argument("--until", metavar="TIME", help="opened before (UTC)")
    incidents.add_argument("--json", action="store_true", help="one JSON document")

    show = command("show", "show an incident's status and timeline")
    show.add_argument("incident")
    show.add_argument("--json", action="store_true", help="one JSON document (as `export -f json`)")

    approve = command("approve", "approve a paused step and continue the incident")
    approve.add_argument("incident")
    approve.add_argument("step", nargs="?", help="the gated step to approve")
    approve.add_argument("--all", action="store_true", help="approve every remaining gated step")
    approve.add_argument("--as", dest="actor", help="approver (default: user@host)")
    approve.add_argument("--reason", default="", help="why, for the timeline")
    approve.add_argument("--quiet", action="store_true")
    approve.add_argument("-v", "--verbose", action="store_true", help="also Ansible's own output, per task")

    release = command("release", "reverse an incident's containment (reconnect networks, unpause)")
    release.add_argument("incident")
    release.add_argument("--reason", required=True, help="why; recorded on the timeline")
    release.add_argument(
        "--container",
        metavar="REF",
        help="release only this container of a fleet incident (full ID, ID prefix or name)",
    )
    release.add_argument("--as", dest="actor", help="who releases (default: user@host)")
    release.add_argument("--quiet", action="store_true")
    release.add_argument("-v", "--verbose", action="store_true", help="also Ansible's own output, per task")

    evidence = command("evidence", "evidence: verify one incident's, or prune closed incidents' files")
    evidence.add_argument(
        "action",
        choices=["verify", "prune"],
        help="verify ID: re-hash every artifact; prune [ID...] [--older-than DAYS]: delete files of "
        "closed incidents (a dry run without --yes)",
    )
    evidence.add_argument("incident", nargs="*", help="incident ID (verify: exactly one)")
    evidence.add_argument(
        "--older-than", type=float, metavar="DAYS", help="prune: incidents opened before this"
    )
    evidence.add_argument("--yes", action="store_true", help="prune: really delete (default: only list)")
    evidence.add_argument("--reason", default="", help="prune: why, for the timeline")
    evidence.add_argument(
        "--as", dest="actor", help="who verifies (default: user@host), for the custody record"
    )
    evidence.add_argument("--json", action="store_true", help="one JSON document")

    database = command("db", "the timeline's store: status (version, counts) or migrate (apply the schema)")
    database.add_argument("action", choices=["status", "migrate"])
    database.add_argument("--json", action="store_true", help="status: one JSON document")

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
    resume.add_argument("-v", "--verbose", action="store_true", help="also Ansible's own output, per task")

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
        "--group-wait",
        type=float,
        metavar="SECONDS",
        help="hold a lone alert this long so that alerts for other containers (same playbook and "
        "params) share its incident; those of one Alertmanager notification always do "
        "(default: [server] group_wait or 0)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM, chain)")
    serve.add_argument("--tls-key", metavar="FILE", help="its private key (PEM, mode 600)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback address without a token or HMAC secret (only behind an authenticating proxy)",
    )

    deny = command("deny", "refuse a paused step; the incident ends")
    deny.add_argument("incident")
    deny.add_argument("--as", dest="actor", help="who refuses (default: user@host)")
    deny.add_argument("--reason", default="", help="why, for the timeline")

    completion = command("completion", 'shell completion: eval "$(responder completion bash)" (or zsh)')
    completion.add_argument("shell", choices=["bash", "zsh"])
    helper = sub.add_parser("__complete")  # the completion script's helper: no help, not listed
    _common(helper, suppress=True)
    helper.add_argument("what", choices=["playbooks", "incidents", "steps"])
    helper.add_argument("incident", nargs="?")
    return parser


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
