"""One exception tree for the whole package; only the CLI turns these into exit codes.

ResponderError
├── UsageError            bad command-line input (unknown incident, malformed -p)
│   └── ParamValueError       a param value of the wrong type or pattern (params)
├── PlaybookError         a playbook failed to load or validate; carries every Problem
│   (UndefinedValue, a template reading a name with no value, is caught and reported as one)
├── ConfigError           the configuration file or a runbooks directory is broken
│   └── UnsafePath            a directory responder writes under is a link or not its own
├── StateError            the request does not fit the incident's state (approve a finished run)
│   ├── AlertClaimLost        the alert a run was started for is no longer claimed by it
│   └── ApprovalRefused       this person may not decide this gate (self-approval, twice)
├── RunnerError           ansible-runner could not be started at all
├── InputError            attacker-controlled input refused (answered 4xx, never a crash)
│   ├── BadJSON               not JSON we accept (400)
│   ├── ShapeError            JSON of the wrong shape (422)
│   ├── RejectedInput         alert fields that make no valid params (recorded, 422)
│   └── UndefinedValue        a template read a name that has no value
├── EvidenceProblem       an evidence item a role reported cannot be recorded
└── Unavailable           an outside service cannot answer now; the caller retries
    ├── StoreUnavailable      the database is busy, locked or full (503)
    └── DeliveryError         Slack did not take a message

Errors that also behave like a built-in (BadJSON is a ValueError, UndefinedValue a LookupError)
inherit from both, so code that catches the built-in keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One validation finding, located as precisely as the input allows."""

    file: str
    line: int | None
    column: int | None
    message: str
    path: str = ""
    hint: str = ""
    snippet: str = ""

    def render(self) -> str:
        """`file:line:col: message (at path)`, a hint, and the line with a caret."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.message}"
        if self.path:
            text += f" (at {self.path})"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        if self.snippet:
            text += "\n" + self.snippet
        return text


class ResponderError(Exception):
    """Root of every error responder raises on purpose."""

    exit_code = 1


class UsageError(ResponderError):
    """Bad input on the command line or in a request."""

    exit_code = 2


class ConfigError(ResponderError):
    """The configuration, a runbooks directory or a role's metadata is broken."""

    exit_code = 2


class StateError(ResponderError):
    """The request does not fit the incident's state."""

    exit_code = 2


class ApprovalRefused(StateError):
    """This person may not decide this gate: they started the incident, or already approved it."""


class RunnerError(ResponderError):
    """ansible-runner could not be started at all."""

    exit_code = 5


class InputError(ResponderError):
    """Untrusted input refused; the server answers 4xx, the CLI exits 2."""

    exit_code = 2


class Unavailable(ResponderError):
    """A service responder depends on cannot answer now; trying again later may succeed."""

    exit_code = 1


class PlaybookError(ResponderError):
    """Raised with the complete list of problems, never just the first one."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))
