"""Sandboxed Jinja for `with:` values and `when:` conditions.

Only operator-authored strings from the playbook are ever compiled as templates; params, alert
fields and step outputs enter as variables, so text inside them is data. Rendering happens here,
in Python, never in Ansible: what reaches Ansible is the finished value, marked !unsafe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.exceptions import TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


@dataclass(frozen=True)
class References:
    params: frozenset[str]
    steps: frozenset[str]
    other: frozenset[str]


def check(source: str, expression: bool = False) -> str | None:
    """Compile a template (or a bare expression); returns the error text, or None if it parses."""
    try:
        if expression:
            _ENV.compile_expression(source)
        else:
            _ENV.parse(source)
    except TemplateError as exc:
        return str(exc)
    return None


def references(source: str, expression: bool = False) -> References:
    """Names a template reads: params.X, steps.Y, and any other top-level variable."""
    try:
        tree = _ENV.parse("{{ " + source + " }}" if expression else source)
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
        if (
            isinstance(node, nodes.Name)
            and node.ctx == "load"
            and node.name not in ("params", "steps", "incident")
        ):
            other.add(node.name)
    return References(frozenset(params), frozenset(steps), frozenset(other))


def _const(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string inside `value`; a lone `{{ expr }}` keeps its native type."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        single = _SINGLE_EXPR.match(value)
        if single:
            result = _ENV.compile_expression(single.group("expr"), undefined_to_none=False)(**context)
            if isinstance(result, Undefined):
                raise UndefinedError(f"{single.group('expr').strip()} is undefined")
            return result
        return _ENV.from_string(value).render(**context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a `when:` expression to a boolean."""
    return bool(_ENV.compile_expression(expression, undefined_to_none=False)(**context))
