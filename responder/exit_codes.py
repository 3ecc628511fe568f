"""What responder's exit codes mean, shared by the CLI and the server's worker processes."""

from __future__ import annotations

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


# What a dry run exits with when a step would end this way: what the real run would exit with.
_STEP_EXIT = {
    "failed": 3,
    "partial": 3,
    "host_unreachable": 4,
    "config_error": 5,
    "timed_out": 6,
    "interrupted": 130,
}


def step_exit_code(outcome: str) -> int:
    """The exit code a run ending on a step with this outcome gives (0: it would go on)."""
    return _STEP_EXIT.get(str(outcome), 0)
