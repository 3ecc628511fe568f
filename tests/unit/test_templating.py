from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from responder.playbook.templating import UndefinedValue, evaluate, references, render_value

CTX = {"params": {"c": "{{ 7 * 7 }}", "ports": ["80", "443"], "n": 3}, "steps": {}, "incident": {"id": "INC"}}


def test_param_values_are_data_not_templates() -> None:
    assert render_value("{{ params.c }}", CTX) == "{{ 7 * 7 }}"
    assert render_value("x-{{ params.c }}", CTX) == "x-{{ 7 * 7 }}"


def test_single_expression_keeps_native_type() -> None:
    assert render_value("{{ params.ports }}", CTX) == ["80", "443"]
    assert render_value("{{ params.n }}", CTX) == 3
    assert render_value({"a": ["{{ params.n + 1 }}"]}, CTX) == {"a": [4]}


def test_sandbox_blocks_attribute_escapes() -> None:
    # The sandbox either refuses outright or hands back an undefined that StrictUndefined refuses.
    with pytest.raises((SecurityError, UndefinedError, UndefinedValue)):
        render_value("{{ ''.__class__.__mro__[1].__subclasses__() }}", CTX)
    with pytest.raises((SecurityError, UndefinedError, UndefinedValue)):
        render_value("{{ params.c.format.__globals__ }}", CTX)
    with pytest.raises((SecurityError, UndefinedError, UndefinedValue)):
        render_value("{{ ('{0.__class__.__mro__}' | attr('format'))(params.c) }}", CTX)


def test_undefined_is_an_error() -> None:
    with pytest.raises(UndefinedValue):
        render_value("{{ params.missing }}", CTX)  # the plain-reference fast path
    with pytest.raises((UndefinedValue, UndefinedError)):
        render_value("{{ params.missing | upper }}", CTX)  # through Jinja
    with pytest.raises(UndefinedValue):
        render_value("{{ params.c.deeper }}", CTX)


def test_references() -> None:
    refs = references("{{ params.a }}{{ steps.b.outputs.x }}{{ steps['c'].outputs }}{{ other }}")
    assert refs.params == {"a"} and refs.steps == {"b", "c"} and refs.other == {"other"}


def test_when_expressions() -> None:
    assert evaluate("params.n > 2", CTX) is True
    assert evaluate("'443' in params.ports and params.n == 4", CTX) is False
