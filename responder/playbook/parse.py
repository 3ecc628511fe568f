"""Two passes over a playbook: the field tables (types, enums, unknown keys), then meaning
(actions exist, arguments fit the role, templates compile and read only what they may).
Every problem is collected; nothing is printed and nothing runs."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from responder import strict_yaml
from responder.action_meta import GatedValues
from responder.arguments import check_arguments
from responder.catalog import Catalog
from responder.errors import PlaybookError, Problem
from responder.playbook import templating
from responder.playbook.model import (
    IDENT,
    JSON_POINTER,
    MATCH_FIELDS,
    NOTIFY_FIELDS,
    PARAM_FIELDS,
    STEP_FIELDS,
    TOP_FIELDS,
    AlertSource,
    Approval,
    FieldSpec,
    OnFailure,
    ParamSpec,
    ParamType,
    Playbook,
    Severity,
    Step,
)
from responder.playbook.param_values import ParamValueError, coerce
from responder.strict_yaml import YAML11_BOOL, Document, Path_

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def load_playbook(path: Path, catalog: Catalog) -> Playbook:
    """Load and fully validate one playbook file; raises PlaybookError with every problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlaybookError(
            [Problem(str(path), None, None, f"cannot read playbook: {exc.strerror}")]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlaybookError([Problem(str(path), None, None, "playbook is not valid UTF-8")]) from exc
    doc, problems = strict_yaml.load(text, str(path))
    if doc.data is None and problems:
        raise PlaybookError(problems)
    validator = _Validator(doc, catalog)
    playbook = validator.run(path, hashlib.sha256(raw).hexdigest())
    # Where the validator, which knows what the field is for, has something to say, the generic
    # "ambiguous in YAML 1.1" warning at the same spot would repeat it with a vaguer hint.
    checked = {(p.line, p.column) for p in validator.problems if p.line is not None}
    problems = [
        p
        for p in problems
        if not (p.message.endswith(strict_yaml.AMBIGUOUS) and (p.line, p.column) in checked)
    ] + validator.problems
    if problems or playbook is None:
        raise PlaybookError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    return playbook


class _Validator:
    def __init__(self, doc: Document, catalog: Catalog) -> None:
        self.doc = doc
        self.catalog = catalog
        self.problems: list[Problem] = []

    def add(self, path: Path_, message: str, hint: str = "", key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, hint, key))

    def fields(self, data: Any, table: dict[str, FieldSpec], path: Path_, what: str) -> bool:
        if not isinstance(data, dict):
            self.add(path, f"{what} must be a mapping, got {_kind(data)}")
            return False
        for key, value in data.items():
            spec = table.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(table)}"
                self.add((*path, key), f"unknown key {key!r} in {what}", hint, key=True)
                continue
            self.value(value, spec, (*path, key))
        for key, spec in table.items():
            if spec.required and key not in data:
                self.add(path, f"{what} is missing required key {key!r}", spec.description)
        return True

    def value(self, value: Any, spec: FieldSpec, path: Path_) -> None:
        if spec.type != "any":
            expected = _JSON_TYPES[spec.type]
            if not isinstance(value, expected) or (spec.type == "integer" and isinstance(value, bool)):
                self.add(path, f"expected {spec.type}, got {_kind(value)}", _quote_hint(value, spec))
                return
        if spec.enum and value not in spec.enum:
            self.add(
                path,
                f"{value!r} is not one of {', '.join(map(str, spec.enum))}",
                _did_you_mean(value, spec.enum),
            )
        if spec.pattern and isinstance(value, str) and not re.fullmatch(spec.pattern, value):
            self.add(path, f"{value!r} does not match {spec.pattern}")
        if isinstance(value, int) and spec.minimum is not None and value < spec.minimum:
            self.add(path, f"must be at least {spec.minimum}")
        if isinstance(value, int) and spec.maximum is not None and value > spec.maximum:
            self.add(path, f"must be at most {spec.maximum}")

    def run(self, path: Path, sha256: str) -> Playbook | None:
        data = self.doc.data
        if not self.fields(data, TOP_FIELDS, (), "the playbook"):
            return None
        if "notify" in data:
            self.fields(data["notify"], NOTIFY_FIELDS, ("notify",), "notify")
        params = self.params(data.get("params") or {})
        if "match" in data:
            rules = data["match"]
            if isinstance(rules, list):
                if not rules:
                    self.add(("match",), "match needs at least one rule")
                for index, rule in enumerate(rules):
                    self.match(rule, params, ("match", index))
            else:
                self.match(rules, params, ("match",))
        steps = self.steps(data.get("steps"), params)
        if self.problems or steps is None:
            return None
        return Playbook(
            name=data["name"],
            description=data["description"],
            severity=Severity(data["severity"]),
            params=tuple(params.values()),
            steps=tuple(steps),
            source=path,
            sha256=sha256,
            match=data.get("match"),
            version=data.get("version", 1),
            notify=data.get("notify") or {},
            max_targets=data.get("max_targets", 50),
        )

    def params(self, raw: Any) -> dict[str, ParamSpec]:
        out: dict[str, ParamSpec] = {}
        if not isinstance(raw, dict):
            return out
        for name, body in raw.items():
            path: Path_ = ("params", name)
            if not re.fullmatch(IDENT, name):
                self.add(path, f"param name {name!r} must match {IDENT}", key=True)
            if not self.fields(body, PARAM_FIELDS, path, f"param {name!r}"):
                continue
            ptype = (
                ParamType(body.get("type", "string"))
                if body.get("type", "string") in tuple(ParamType)
                else None
            )
            if ptype is None:
                continue
            pattern = body.get("pattern", "")
            if pattern:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    self.add((*path, "pattern"), f"invalid regular expression: {exc}")
            secret = bool(body.get("secret", False))
            if secret and ptype is not ParamType.STRING:
                self.add((*path, "secret"), "only string params can be secret")
            if secret and "default" in body:
                self.add((*path, "default"), "a secret param cannot have a default in the playbook")
            spec = ParamSpec(
                name=name,
                type=ptype,
                required=bool(body.get("required", False)),
                default=body.get("default"),
                description=body.get("description", ""),
                pattern=pattern,
                secret=secret,
            )
            if ptype is ParamType.BOOL and isinstance(spec.default, str) and YAML11_BOOL.match(spec.default):
                meant = "true" if spec.default.lower() in ("y", "yes", "on") else "false"
                self.add(
                    (*path, "default"),
                    f"default {spec.default!r} is text here, not a boolean: responder reads YAML 1.2, "
                    "where only true and false are booleans",
                    f"write `default: {meant}`",
                )
            elif "default" in body and spec.default is not None:
                try:
                    coerce(spec, spec.default)
                except ParamValueError as exc:
                    self.add((*path, "default"), f"default does not fit the param: {exc}")
            out[name] = spec
        targets = [n for n, p in out.items() if p.type is ParamType.TARGETS]
        for extra in targets[1:]:
            self.add(
                ("params", extra, "type"),
                f"only one param may be of type targets (already {targets[0]!r})",
                "make the others `list` params",
            )
        return out

    def match(self, raw: Any, params: dict[str, ParamSpec], path: Path_) -> None:
        """Alert routing: what must hold for an alert to start this playbook, and which alert
        field (by JSON Pointer, never by template) fills each param."""
        if not self.fields(raw, MATCH_FIELDS, path, "a match rule"):
            return
        source = raw.get("source")
        for key, only in (("alertname", AlertSource.ALERTMANAGER), ("priority", AlertSource.FALCO)):
            if key in raw and source in tuple(AlertSource) and source != only:
                self.add((*path, key), f"{key!r} applies only to source {only}", key=True)
        for key in ("alertname", "severity", "rule"):
            value = raw.get(key)
            if key in raw and not (
                isinstance(value, str)
                or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))
            ):
                self.add(
                    (*path, key), f"expected a string or a non-empty list of strings, got {_kind(value)}"
                )
        for key in ("labels", "labels_regex"):
            table = raw.get(key)
            if not isinstance(table, dict):
                continue
            for name, value in table.items():
                if not isinstance(value, str):
                    self.add(
                        (*path, key, name),
                        f"expected string, got {_kind(value)}",
                        "quote the value to make it text",
                    )
                elif key == "labels_regex":
                    try:
                        re.compile(value)
                    except re.error as exc:
                        self.add((*path, key, name), f"invalid regular expression: {exc}")
        mapping = raw.get("params")
        if not isinstance(mapping, dict):
            return
        for name, pointer in mapping.items():
            spec = params.get(name)
            if spec is None:
                self.add(
                    (*path, "params", name),
                    f"unknown param {name!r}",
                    _did_you_mean(name, tuple(params)),
                    key=True,
                )
            elif spec.secret:
                self.add(
                    (*path, "params", name), f"secret param {name!r} cannot come from an alert", key=True
                )
            if not isinstance(pointer, str) or not re.fullmatch(JSON_POINTER, pointer):
                self.add(
                    (*path, "params", name),
                    f"{pointer!r} is not a JSON Pointer",
                    "write e.g. /labels/container (RFC 6901: ~1 stands for /, ~0 for ~)",
                )
        for spec in params.values():
            if spec.required and spec.default is None and not spec.secret and spec.name not in mapping:
                self.add(
                    (*path, "params"),
                    f"required param {spec.name!r} is not mapped from the alert",
                    f"add e.g. {spec.name}: /labels/{spec.name}",
                )

    def steps(self, raw: Any, params: dict[str, ParamSpec]) -> list[Step] | None:
        if not isinstance(raw, list):
            return None
        if not raw:
            self.add(("steps",), "a playbook needs at least one step")
        seen: dict[str, int] = {}
        out: list[Step] = []
        for index, body in enumerate(raw):
            path: Path_ = ("steps", index)
            if not self.fields(body, STEP_FIELDS, path, f"step {index + 1}"):
                continue
            step_id = body.get("id")
            if isinstance(step_id, str):
                if step_id in seen:
                    self.add(
                        (*path, "id"), f"step id {step_id!r} is already used by step {seen[step_id] + 1}"
                    )
                seen[step_id] = index
            action_name = body.get("action")
            action = self.catalog.get(action_name) if isinstance(action_name, str) else None
            if isinstance(action_name, str) and action is None:
                self.add(
                    (*path, "action"), f"unknown action {action_name!r}", self.catalog.suggest(action_name)
                )
            with_ = body.get("with") or {}
            if isinstance(with_, dict):
                self.templates(with_, (*path, "with"), params, seen, step_id)
                if action is not None:
                    self.problems.extend(
                        check_arguments(
                            action, with_, self.doc.problem, templating.is_template, (*path, "with")
                        ).problems
                    )
                    self.secret_routing(with_, action, params, (*path, "with"))
            when = body.get("when")
            if isinstance(when, str):
                self.expression(when, (*path, "when"), params)
            if action is not None and isinstance(with_, dict) and body.get("approval") != "required":
                self.ungated(action_name, action.approval_for, with_, (*path, "with"))
            if body.get("approvals", 1) != 1 and body.get("approval") != "required":
                self.add(
                    (*path, "approvals"),
                    "approvals counts the people who must approve a gated step, and this step has no gate",
                    "add `approval: required`, or remove `approvals`",
                )
            line = self.doc.marks.get(path, (None, None))[0]
            if isinstance(step_id, str) and isinstance(action_name, str):
                out.append(
                    Step(
                        id=step_id,
                        action=action_name,
                        with_=with_ if isinstance(with_, dict) else {},
                        on_failure=OnFailure(body.get("on_failure", "abort"))
                        if body.get("on_failure", "abort") in tuple(OnFailure)
                        else OnFailure.ABORT,
                        timeout=body.get("timeout", 600)
                        if isinstance(body.get("timeout", 600), int)
                        else 600,
                        approval=Approval(body.get("approval", "none"))
                        if body.get("approval", "none") in tuple(Approval)
                        else Approval.NONE,
                        approvals=body.get("approvals", 1)
                        if isinstance(body.get("approvals", 1), int)
                        else 1,
                        when=when if isinstance(when, str) else None,
                        hosts=body.get("hosts"),
                        description=body.get("description", ""),
                        line=line,
                    )
                )
        return out

    def ungated(
        self, action: str, gated: Mapping[str, GatedValues], with_: dict[str, Any], path: Path_
    ) -> None:
        """A value the role says reaches beyond the suspect (meta approval_for), or a template that
        might render to one, on a step nobody has to approve."""
        for option, spec in gated.items():
            value = with_.get(option)
            if value in spec.values or templating.is_template(value):
                self.add(
                    (*path, option),
                    f"{action} with {option}: {value} needs `approval: required` on the step: {spec.why}",
                    "add `approval: required`, or use another value of " + option,
                )

    def templates(
        self, value: Any, path: Path_, params: dict[str, ParamSpec], seen: dict[str, int], step_id: Any
    ) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self.templates(v, (*path, k), params, seen, step_id)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.templates(v, (*path, i), params, seen, step_id)
        elif templating.is_template(value):
            error = templating.check(value)
            if error:
                self.add(path, f"template does not compile: {error}")
                return
            refs = templating.references(value)
            self.check_refs(refs, path, params, seen, step_id)

    def expression(self, source: str, path: Path_, params: dict[str, ParamSpec]) -> None:
        error = templating.check(source, expression=True)
        if error:
            self.add(
                path, f"`when` is not a valid expression: {error}", "write e.g. params.stop_after_isolation"
            )
            return
        refs = templating.references(source, expression=True)
        if refs.steps:
            self.add(path, "`when` may only read params", "steps are decided before anything runs")
        self.check_refs(refs, path, params, {}, None)
        for name in refs.params:
            if name in params and params[name].secret:
                self.add(path, f"`when` may not read the secret param {name!r}")

    def check_refs(
        self,
        refs: templating.References,
        path: Path_,
        params: dict[str, ParamSpec],
        seen: dict[str, int],
        step_id: Any,
    ) -> None:
        for name in sorted(refs.params - params.keys()):
            self.add(path, f"unknown param {name!r}", _did_you_mean(name, tuple(params)))
        for name in sorted(refs.steps):
            if name == step_id or name not in seen:
                self.add(
                    path,
                    f"step {name!r} is not an earlier step",
                    "templates may read only earlier steps' outputs",
                )
        for name in sorted(refs.other):
            self.add(path, f"unknown variable {name!r}", "templates see params, steps and incident only")

    def secret_routing(
        self, with_: dict[str, Any], action: Any, params: dict[str, ParamSpec], path: Path_
    ) -> None:
        """A secret param may reach an action only whole, and only through a no_log argument."""
        for key, value in with_.items():
            if not templating.is_template(value) or not isinstance(value, str):
                continue
            secret_refs = {n for n in templating.references(value).params if n in params and params[n].secret}
            if not secret_refs:
                continue
            option = action.options.get(key)
            if option is None or not option.no_log:
                self.add(
                    (*path, key),
                    f"secret param {sorted(secret_refs)[0]!r} may only be passed to an argument marked no_log",
                    "secret values never go into extravars, the timeline or logs",
                )
            elif secret_param_name(value) is None:
                self.add((*path, key), 'a secret param must be passed whole: "{{ params.NAME }}"')


_WHOLE_PARAM = re.compile(r"^\{\{\s*params\.([a-z][a-z0-9_]*)\s*\}\}$")


def secret_param_name(value: Any) -> str | None:
    """The param name if `value` is exactly `{{ params.NAME }}`."""
    match = _WHOLE_PARAM.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)


def _did_you_mean(value: Any, options: tuple[Any, ...]) -> str:
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _quote_hint(value: Any, spec: FieldSpec) -> str:
    if spec.type == "string" and isinstance(value, bool | int | float):
        return "quote the value to make it text"
    return spec.description
