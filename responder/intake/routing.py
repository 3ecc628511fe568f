"""From an alert to a playbook run: the playbooks' `match:` sections, compiled once at start-up.

Alert fields reach params by JSON Pointer (RFC 6901) and are then typed and checked by the same
code as `-p key=value`: they are copied as data and never rendered, here or later in Ansible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from responder import params as params_mod
from responder.errors import InputError, UsageError
from responder.intake.alerts import Alert, falco_at_least
from responder.playbook.model import AlertSource, Playbook

# A host name taken from an alert becomes an Ansible --limit: letters, digits, dots and dashes
# only, so it can never be a pattern (`all`, `web*`, `!db`, `~regex`) or reach a template.
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_RESERVED_HOSTS = {"all", "ungrouped"}


class RejectedInput(InputError, ValueError):
    """An alert matched a playbook but its fields do not make valid params (recorded, 422)."""


@dataclass(frozen=True)
class Route:
    """One playbook's `match:` rule: which alerts it takes and how their fields fill its params."""

    playbook: Playbook
    source: AlertSource
    names: frozenset[str] | None
    severities: frozenset[str] | None
    priority: str | None
    labels: Mapping[str, str]
    labels_regex: Mapping[str, re.Pattern[str]]
    params: Mapping[str, str]
    limit: str | None
    window: int

    @classmethod
    def from_playbook(cls, playbook: Playbook) -> list[Route]:
        """Every route a playbook's `match:` section declares."""
        rules = playbook.match
        if not rules:
            return []
        return [cls.from_rule(playbook, rule) for rule in (rules if isinstance(rules, list) else [rules])]

    @classmethod
    def from_rule(cls, playbook: Playbook, match: Mapping[str, Any]) -> Route:
        """The route for one rule of a `match:` section."""
        source = AlertSource(match["source"])
        names = match.get("alertname") if source is AlertSource.ALERTMANAGER else match.get("rule")
        return cls(
            playbook=playbook,
            source=source,
            names=_set(names),
            severities=_set(match.get("severity")),
            priority=match.get("priority"),
            labels=dict(match.get("labels") or {}),
            labels_regex={k: re.compile(v) for k, v in (match.get("labels_regex") or {}).items()},
            params=dict(match["params"]),
            limit=match.get("limit"),
            window=int(match.get("dedup_window", 600)),
        )

    def matches(self, alert: Alert) -> bool:
        """Whether this route takes the alert."""
        if alert.source is not self.source:
            return False
        if self.names is not None and alert.name not in self.names:
            return False
        if self.severities is not None and alert.severity not in self.severities:
            return False
        if self.priority is not None and not falco_at_least(alert.severity, self.priority):
            return False
        for key, expected in self.labels.items():
            if alert.labels.get(key) != expected:
                return False
        for key, pattern in self.labels_regex.items():
            value = alert.labels.get(key)
            if value is None or not pattern.fullmatch(value):
                return False
        return True

    def run_inputs(self, alert: Alert) -> tuple[dict[str, Any], str | None]:
        """Typed params and the host limit for this alert; RejectedInput says why not."""
        given: dict[str, Any] = {}
        problems: list[str] = []
        for name, pointer in self.params.items():
            found, value = resolve_pointer(alert.document, pointer)
            if not found:
                continue  # the param's default (or its `required` check) decides
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            given[name] = value
        try:
            values, _ = params_mod.resolve(self.playbook, given, environ={})
        except UsageError as exc:
            problems.extend(str(exc).splitlines())
        else:
            spec = self.playbook.target_param
            if spec is not None and spec.name in given and not isinstance(values.get(spec.name), str):
                # An alert names the one container it is about. A selector (label:, image:) or a
                # list taken from attacker-influenced alert text could widen the blast radius to
                # every matching container; those come from an operator (`responder run`).
                problems.append(
                    f"param {spec.name!r} from the alert must name one container (a name or ID), "
                    f"not {str(given[spec.name])[:80]!r}; selectors and lists come only from `responder run`"
                )
        limit = None
        if self.limit is not None:
            found, host = resolve_pointer(alert.document, self.limit)
            if not found or not isinstance(host, str):
                problems.append(f"no host name at {self.limit}")
            elif not HOST_NAME.match(host) or host.lower() in _RESERVED_HOSTS:
                problems.append(f"host name {host[:80]!r} at {self.limit} is not a plain host name")
            else:
                limit = host
        if problems:
            raise RejectedInput("; ".join(problems))
        return values, limit


def _set(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


def resolve_pointer(document: Any, pointer: str) -> tuple[bool, Any]:
    """RFC 6901 lookup. Falco's output field names contain dots (`container.id`), which is why
    params are addressed by pointer and not by dotted path."""
    current = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return False, None
    return True, current


class Router:
    """The routes of every loaded playbook, tried in order."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)

    @classmethod
    def from_playbooks(cls, playbooks: Sequence[Playbook]) -> Router:
        """Routes for every playbook that has a `match:` section."""
        ordered = sorted(playbooks, key=lambda p: p.name)
        return cls([route for p in ordered for route in Route.from_playbook(p)])

    def route(self, alert: Alert) -> Route | None:
        """The first playbook (in name order) whose `match:` takes the alert."""
        return next((r for r in self.routes if r.matches(alert)), None)
