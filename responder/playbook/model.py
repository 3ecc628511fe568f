"""The playbook format, v1: field tables (one source for validation and the JSON Schema) and
the immutable model a validated playbook becomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

IDENT = r"^[a-z][a-z0-9_]{0,63}$"
# Ansible host patterns, restricted to characters that cannot start a Jinja template.
HOST_PATTERN = r"^[A-Za-z0-9_.:*!&,\-\[\]]{1,256}$"


class Severity(StrEnum):
    """How bad the playbook's incident is."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class ParamType(StrEnum):
    """The types a playbook param may have."""

    STRING = "string"
    INT = "int"
    BOOL = "bool"
    LIST = "list"
    # The containers a playbook acts on: one name or ID, or several, or selectors (label:K=V,
    # image:REF) resolved on each host at run time. See responder.targets.
    TARGETS = "targets"


class OnFailure(StrEnum):
    """What a failed step does to the run: stop it or carry on."""

    ABORT = "abort"
    CONTINUE = "continue"


class Approval(StrEnum):
    """Whether a step waits for a person."""

    NONE = "none"
    REQUIRED = "required"


@dataclass(frozen=True)
class FieldSpec:
    """One key of a playbook mapping: its JSON type and constraints."""

    type: str  # JSON Schema type name, or "any"
    description: str
    required: bool = False
    enum: tuple[Any, ...] = ()
    pattern: str = ""
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None


TOP_FIELDS: dict[str, FieldSpec] = {
    "version": FieldSpec("integer", "Format version; only 1 exists.", enum=(1,), default=1),
    "name": FieldSpec(
        "string", "Short identifier of the playbook.", required=True, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$"
    ),
    "description": FieldSpec(
        "string", "What the playbook is for, shown by `responder playbooks`.", required=True
    ),
    "severity": FieldSpec(
        "string", "Severity of the incidents it answers.", required=True, enum=tuple(Severity)
    ),
    "params": FieldSpec("object", "Typed inputs, given with -p key=value or mapped from an alert."),
    "steps": FieldSpec("array", "The ordered response steps.", required=True),
    "match": FieldSpec(
        "any",
        "Which alerts start this playbook from `responder serve` and how their fields become params: "
        "one rule, or a list of rules (one per alert source).",
    ),
    "notify": FieldSpec(
        "object", "Who hears about incidents from this playbook: {slack_channel: '#incidents'}."
    ),
    "max_targets": FieldSpec(
        "integer",
        "Most containers a label: or image: selector may pick; a run whose selectors resolve to "
        "more is refused before anything changes (override with `responder run --max-targets N`). "
        "Containers named one by one are not capped.",
        minimum=1,
        maximum=10000,
        default=50,
    ),
}

NOTIFY_FIELDS: dict[str, FieldSpec] = {
    "slack_channel": FieldSpec(
        "string",
        "Slack channel name or ID; overrides the config file.",
        pattern=r"^#?[a-z0-9._-]{1,80}$|^[CGD][A-Z0-9]{6,20}$",
    ),
}


class AlertSource(StrEnum):
    """Where an alert came from."""

    ALERTMANAGER = "alertmanager"
    FALCO = "falco"
    GENERIC = "generic"


# Falco's priorities, most severe first (falco `falco_common.h`).
FALCO_PRIORITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")
JSON_POINTER = r"^(/([^~/]|~[01])*)+$"

MATCH_FIELDS: dict[str, FieldSpec] = {
    "source": FieldSpec(
        "string",
        "The intake endpoint whose alerts this playbook answers.",
        required=True,
        enum=tuple(AlertSource),
    ),
    "alertname": FieldSpec("any", "Alertmanager: alert name (label alertname), a string or a list of them."),
    "severity": FieldSpec("any", "Alertmanager/generic: value(s) of the severity label, a string or a list."),
    "rule": FieldSpec("any", "Falco rule name, or the generic alert's name; a string or a list."),
    "priority": FieldSpec(
        "string",
        "Falco: the least severe priority that triggers (warning also takes error, critical...).",
        enum=FALCO_PRIORITIES,
    ),
    "labels": FieldSpec(
        "object", "Labels (Falco: output fields) that must equal the given strings, e.g. {namespace: prod}."
    ),
    "labels_regex": FieldSpec(
        "object", "Labels (Falco: output fields) that must fully match the given regular expressions."
    ),
    "params": FieldSpec(
        "object",
        "Playbook param -> JSON Pointer (RFC 6901) into the alert, e.g. container: /labels/container. "
        "Values are copied as data, never rendered.",
        required=True,
    ),
    "limit": FieldSpec(
        "string",
        "JSON Pointer to the alert field that names the target host (Ansible --limit), e.g. /hostname.",
        pattern=JSON_POINTER,
    ),
    "dedup_window": FieldSpec(
        "integer",
        "Falco/generic: seconds during which repeats (same host, container and rule) join the open incident.",
        minimum=1,
        maximum=86400,
        default=600,
    ),
}

PARAM_FIELDS: dict[str, FieldSpec] = {
    "type": FieldSpec("string", "Value type.", enum=tuple(ParamType), default="string"),
    "required": FieldSpec("boolean", "Whether the run refuses to start without it.", default=False),
    "default": FieldSpec("any", "Value used when none is given (data, never a template)."),
    "description": FieldSpec("string", "Shown in `responder playbooks` and errors."),
    "pattern": FieldSpec("string", "Regular expression a string value (or each list item) must match fully."),
    "secret": FieldSpec(
        "boolean",
        "Secret value: read from RESPONDER_SECRET_<NAME>, never stored, logged or put in extravars.",
        default=False,
    ),
}

STEP_FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec(
        "string",
        "Unique step identifier; later steps refer to it as steps.<id>.",
        required=True,
        pattern=IDENT,
    ),
    "action": FieldSpec(
        "string", "The action: a role in a runbooks directory.", required=True, pattern=IDENT
    ),
    "with": FieldSpec("object", "Arguments for the action, checked against its meta/argument_specs.yml."),
    "on_failure": FieldSpec(
        "string", "What a failure of this step does to the run.", enum=tuple(OnFailure), default="abort"
    ),
    "timeout": FieldSpec(
        "integer", "Seconds the step may take before it is cancelled.", minimum=1, maximum=86400, default=600
    ),
    "approval": FieldSpec(
        "string",
        "`required` pauses the incident until `responder approve`.",
        enum=tuple(Approval),
        default="none",
    ),
    "approvals": FieldSpec(
        "integer",
        "With `approval: required`: how many different people must approve the step (two-person rule).",
        minimum=1,
        maximum=5,
        default=1,
    ),
    "when": FieldSpec("string", "Jinja expression over params; the step is skipped when it is false."),
    "hosts": FieldSpec(
        "string", "Ansible host pattern for this step (default: all targeted hosts).", pattern=HOST_PATTERN
    ),
    "description": FieldSpec("string", "Why this step is here, for the people reading the timeline."),
}


@dataclass(frozen=True)
class ParamSpec:
    """One declared param of a playbook."""

    name: str
    type: ParamType
    required: bool = False
    default: Any = None
    description: str = ""
    pattern: str = ""
    secret: bool = False


@dataclass(frozen=True)
class Step:
    """One step of a playbook: an action with its arguments, gate, condition and hosts."""

    id: str
    action: str
    with_: Mapping[str, Any] = field(default_factory=dict)
    on_failure: OnFailure = OnFailure.ABORT
    timeout: int = 600
    approval: Approval = Approval.NONE
    approvals: int = 1  # distinct people who must approve a gated step
    when: str | None = None
    hosts: str | None = None
    description: str = ""
    line: int | None = None


@dataclass(frozen=True)
class Playbook:
    """A loaded, validated playbook."""

    name: str
    description: str
    severity: Severity
    params: tuple[ParamSpec, ...]
    steps: tuple[Step, ...]
    source: Path
    sha256: str
    match: Mapping[str, Any] | list[Mapping[str, Any]] | None = None
    version: int = 1
    notify: Mapping[str, Any] = field(default_factory=dict)
    max_targets: int = 50

    @property
    def target_param(self) -> ParamSpec | None:
        """The param of type `targets` (at most one): the containers the playbook acts on."""
        return next((p for p in self.params if p.type is ParamType.TARGETS), None)

    def param(self, name: str) -> ParamSpec | None:
        """A declared param by name."""
        return next((p for p in self.params if p.name == name), None)

    def step(self, step_id: str) -> Step:
        """A step by ID."""
        return next(s for s in self.steps if s.id == step_id)
