"""One exception tree for the whole package; only the CLI turns these into exit codes.

ResponderError
├── UsageError            bad command-line input (unknown incident, malformed -p)
├── PlaybookError         a playbook failed to load or validate; carries every Problem
├── ConfigError           the configuration file or a runbooks directory is broken
├── StateError            the request does not fit the incident's state (approve a finished run)
└── RunnerError           ansible-runner could not be started at all
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
    exit_code = 2


class ConfigError(ResponderError):
    exit_code = 2


class StateError(ResponderError):
    exit_code = 2


class RunnerError(ResponderError):
    exit_code = 5


class PlaybookError(ResponderError):
    """Raised with the complete list of problems, never just the first one."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))
