"""A step's `with:` checked by Ansible's own `ArgumentSpecValidator`, against the role's
`meta/argument_specs.yml`: the same code, the same conversions (path, float, bool words) and the
same constraints (`mutually_exclusive`, `required_if`, `required_together`, `required_one_of`,
`required_by` of the entry point) whether a playbook is being loaded or a step is about to run.

At load time a templated value cannot be checked yet: it counts as present (for `required` and
`mutually_exclusive`) with its type left open. At run time every value is rendered and the
validator's converted values are what the role receives, so what was checked is what runs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from responder.catalog import Action
from responder.errors import Problem

ProblemAt = Callable[..., Problem]  # (path, message, hint="", key=False) -> a located Problem

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class ArgumentCheck:
    """What the validator said: located problems, and the values as Ansible converts them."""

    problems: list[Problem] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


def check_arguments(
    action: Action,
    values: Mapping[str, Any],
    problem_at: ProblemAt,
    is_template: Callable[[Any], bool],
    path: tuple[str | int, ...],
    opaque: Collection[str] = (),
) -> ArgumentCheck:
    """Validate `values` (a step's `with:`) for `action`.

    `is_template(v)` tells a value that is rendered later; `opaque` names arguments that are
    present but not shown here (a secret routed by name). Both count as given, type unchecked.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # 70 ms: only when checking

    check = ArgumentCheck()
    known: dict[str, Any] = {}
    for key, value in values.items():
        if key in action.options:
            known[key] = value
            continue
        close = difflib.get_close_matches(key, list(action.options), n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"{action.name} takes: {', '.join(action.options) or 'nothing'}"
        )
        check.problems.append(
            problem_at((*path, key), f"action {action.name!r} has no argument {key!r}", hint, key=True)
        )
    unchecked = {k for k, v in known.items() if is_template(v) or _holds_template(v, is_template)}
    unchecked |= set(opaque) & set(action.argument_spec)
    spec = {
        name: ({"type": "raw"} if name in unchecked else dict(option))
        for name, option in action.argument_spec.items()
    }
    given = dict(known) | {name: "(secret)" for name in opaque if name in spec and name not in known}
    validator = ArgumentSpecValidator(spec, **{k: v for k, v in action.constraints.items() if v})
    result = validator.validate(given)
    for error in result.errors:
        message, kind = str(error), type(error).__name__
        if kind == "RequiredError":  # one problem per missing argument, each with what it is for
            for name in (n for n in _NAME.findall(message) if n in action.options):
                check.problems.append(
                    problem_at(
                        path,
                        f"action {action.name!r} needs argument {name!r}",
                        action.options[name].description[:120],
                    )
                )
            continue
        name = _named_option(message, spec, given)
        where = (*path, name) if name and kind in _ABOUT_ONE_VALUE else path
        check.problems.append(problem_at(where, f"{action.name}: {message}", _hint(kind, action, name)))
    validated = result.validated_parameters
    check.values = {k: validated[k] for k in known if k not in unchecked}
    check.values |= {k: known[k] for k in known if k in unchecked}
    return check


# Errors about one argument's value point at it; the others are about the set of arguments.
_ABOUT_ONE_VALUE = {"ArgumentTypeError", "ArgumentValueError", "ElementError", "SubParameterTypeError"}


def _holds_template(value: Any, is_template: Callable[[Any], bool]) -> bool:
    if isinstance(value, list):
        return any(is_template(v) or _holds_template(v, is_template) for v in value)
    if isinstance(value, dict):
        return any(is_template(v) or _holds_template(v, is_template) for v in value.values())
    return False


def _named_option(message: str, spec: Mapping[str, Any], given: Mapping[str, Any]) -> str | None:
    for token in _NAME.findall(message):
        if token in spec and token in given:
            return str(token)
    return None


def _hint(kind: str, action: Action, name: str | None) -> str:
    option = action.options.get(name) if name else None
    if kind in ("ArgumentTypeError", "ElementError") and option is not None:
        wanted = str(option.elements if kind == "ElementError" else option.type)
        examples = {"bool": "true or false", "int": "a whole number", "float": "a number"}
        return f"{name} takes {examples.get(wanted, 'a ' + wanted)} (see: responder actions {action.name})"
    if kind == "MutuallyExclusiveError":
        return "give only one of them"
    return ""
