"""Sandboxed Jinja for `with:` values and `when:` conditions.

Only operator-authored strings from the playbook are ever compiled as templates; params, alert
fields and step outputs enter as variables, so text inside them is data. Rendering happens here,
in Python, never in Ansible: what reaches Ansible is the finished value, marked !unsafe.

Most `with:` values are a bare reference such as `{{ params.container }}`; those are resolved by
a plain dictionary walk, and Jinja (about 12 ms to import) is loaded only for real templates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from responder.errors import InputError

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)
_REFERENCE = re.compile(r"^\{\{\s*(?P<path>(?:params|steps|incident)(?:\.[A-Za-z][A-Za-z0-9_]*)+)\s*\}\}$")
_TOP_LEVEL = ("params", "steps", "incident")


class UndefinedValue(InputError, LookupError):
    """A template read a name that has no value."""


@functools.cache
def _env() -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def is_template(value: object) -> bool:
    """Whether a value is a `{{ ... }}` template (operator-written, rendered sandboxed)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


def _reference(value: str) -> list[str] | None:
    match = _REFERENCE.match(value)
    return match.group("path").split(".") if match else None


@dataclass(frozen=True)
class References:
    """What a template reads: params and step outputs."""

    params: frozenset[str]
    steps: frozenset[str]
    other: frozenset[str]


def check(source: str, expression: bool = False) -> str | None:
    """Compile a template (or a bare expression); returns the error text, or None if it parses."""
    if not expression and _reference(source):
        return None
    from jinja2.exceptions import TemplateError

    try:
        if expression:
            _env().compile_expression(source)
        else:
            _env().parse(source)
    except TemplateError as exc:
        return str(exc)
    return None


def references(source: str, expression: bool = False) -> References:
    """Names a template reads: params.X, steps.Y, and any other top-level variable."""
    path = None if expression else _reference(source)
    if path is not None:
        head, name = path[0], path[1]
        return References(
            frozenset([name]) if head == "params" else frozenset(),
            frozenset([name]) if head == "steps" else frozenset(),
            frozenset(),
        )
    from jinja2 import nodes
    from jinja2.exceptions import TemplateError

    try:
        tree = _env().parse("{{ " + source + " }}" if expression else source)
    except TemplateError:
        return References(frozenset(), frozenset(), frozenset())
    params: set[str] = set()
    steps: set[str] = set()
    other: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name):
            attr = node.attr if isinstance(node, nodes.Getattr) else _const(node.arg)
            if node.node.name == "params" and attr is not None:
                params.add(attr)
            elif node.node.name == "steps" and attr is not None:
                steps.add(attr)
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in _TOP_LEVEL:
            other.add(node.name)
    return References(frozenset(params), frozenset(steps), frozenset(other))


def _const(node: nodes.Node) -> str | None:
    from jinja2 import nodes

    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _lookup(path: list[str], context: Mapping[str, Any]) -> Any:
    value: Any = context
    for depth, key in enumerate(path):
        if not isinstance(value, Mapping) or key not in value:
            raise UndefinedValue(f"{'.'.join(path[: depth + 1])} is undefined")
        value = value[key]
    return value


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string inside `value`; a lone `{{ expr }}` keeps its native type."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        path = _reference(value)
        if path is not None:
            return _lookup(path, context)
        from jinja2 import Undefined

        single = _SINGLE_EXPR.match(value)
        if single:
            result = _env().compile_expression(single.group("expr"), undefined_to_none=False)(**context)
            if isinstance(result, Undefined):
                raise UndefinedValue(f"{single.group('expr').strip()} is undefined")
            return result
        return _env().from_string(value).render(**context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a `when:` expression to a boolean."""
    return bool(_env().compile_expression(expression, undefined_to_none=False)(**context))
