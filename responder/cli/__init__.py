"""`responder` command line: the only place that prints for people and maps errors to exit codes.

Layout: `parser` (the grammar), `common` (settings, playbook lookup, how outcomes print),
`playbooks`, `incidents` and `serve` (the commands, grouped by what they act on), and `main`
below with the explicit table from command name to function. Every operation goes through
`responder.service.Service`, the door the server uses too.

Imports are lazy on purpose: `responder --help` must answer in well under 150 ms, and Ansible
alone costs ~0.45 s to import.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    from responder.cli import completion, database, incidents, playbooks, serve

    return {
        "completion": completion.cmd_completion,
        "__complete": completion.complete,
        "run": playbooks.cmd_run,
        "validate": playbooks.cmd_validate,
        "playbooks": playbooks.cmd_playbooks,
        "actions": playbooks.cmd_actions,
        "incidents": incidents.cmd_incidents,
        "show": incidents.cmd_show,
        "approve": incidents.cmd_approve,
        "deny": incidents.cmd_deny,
        "export": incidents.cmd_export,
        "evidence": incidents.cmd_evidence,
        "db": database.cmd_db,
        "release": incidents.cmd_release,
        "resume": incidents.cmd_resume,
        "serve": serve.cmd_serve,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the command, map errors to exit codes (responder.exit_codes)."""
    from responder.cli.parser import build_parser

    # Start-up allocates many long-lived objects (imports, parsed YAML) and no garbage cycles worth
    # collecting; the collector is switched back on before any Ansible run (see service.Service).
    gc.disable()
    args = build_parser().parse_args(argv)
    from responder.errors import PlaybookError, ResponderError

    try:
        code = int(_commands()[args.command](args))
        sys.stdout.flush()  # here, not at exit: a reader gone by then is the BrokenPipeError below
        return code
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
    except BrokenPipeError:
        # The reader went away (`responder show ID | head`): what it wanted was printed. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again, and stop
        # quietly, as other Unix tools do.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


__all__ = ["main"]
