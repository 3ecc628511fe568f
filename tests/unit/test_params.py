from __future__ import annotations

from pathlib import Path

import pytest

from responder.errors import UsageError
from responder.params import ParamValueError, coerce, parse_assignments, resolve
from responder.playbook.model import ParamSpec, ParamType, Playbook, Severity, Step


def playbook(*params: ParamSpec) -> Playbook:
    return Playbook("p", "d", Severity.LOW, params, (Step("s", "isolate_network"),), Path("p.yml"), "0" * 64)


def test_coercion_by_type() -> None:
    assert coerce(ParamSpec("n", ParamType.INT), "42") == 42
    assert coerce(ParamSpec("b", ParamType.BOOL), "false") is False
    assert coerce(ParamSpec("l", ParamType.LIST), "a, b,c") == ["a", "b", "c"]
    assert coerce(ParamSpec("l", ParamType.LIST), '["a,b", "c"]') == ["a,b", "c"]
    assert coerce(ParamSpec("s", ParamType.STRING), "{{ x }}") == "{{ x }}"  # data, not a template


@pytest.mark.parametrize(
    ("spec", "raw"),
    [
        (ParamSpec("n", ParamType.INT), "4x"),
        (ParamSpec("n", ParamType.INT), True),
        (ParamSpec("b", ParamType.BOOL), "yes"),
        (ParamSpec("s", ParamType.STRING, pattern=r"[a-z]+"), "ABC"),
        (ParamSpec("l", ParamType.LIST, pattern=r"[a-z]+"), "ok,NOT"),
        (ParamSpec("s", ParamType.STRING), "\ud800"),
        (ParamSpec("s", ParamType.STRING), "a\x00b"),
        (ParamSpec("s", ParamType.STRING), "x" * 5000),
    ],
)
def test_bad_values_refused(spec: ParamSpec, raw: object) -> None:
    with pytest.raises(ParamValueError):
        coerce(spec, raw)


def test_resolve_reports_every_problem() -> None:
    pb = playbook(ParamSpec("a", ParamType.STRING, required=True), ParamSpec("n", ParamType.INT))
    with pytest.raises(UsageError) as info:
        resolve(pb, {"n": "x", "zzz": "1"}, environ={})
    text = str(info.value)
    assert "unknown param 'zzz'" in text and "'n'" in text and "'a' is required" in text


def test_defaults_and_secrets() -> None:
    pb = playbook(
        ParamSpec("a", ParamType.STRING, default="d"), ParamSpec("tok", ParamType.STRING, secret=True)
    )
    values, secrets = resolve(pb, {}, environ={"RESPONDER_SECRET_TOK": "s3cr3t-value"})
    assert values == {"a": "d"}
    assert secrets.values == {"tok": "s3cr3t-value"}
    assert "s3cr3t" not in repr(secrets)


def test_secret_from_file(tmp_path: Path) -> None:
    pb = playbook(ParamSpec("tok", ParamType.STRING, secret=True, required=True))
    secret_file = tmp_path / "tok"
    secret_file.write_text("from-file\n")
    _, secrets = resolve(pb, {}, environ={"RESPONDER_SECRET_TOK_FILE": str(secret_file)})
    assert secrets.values == {"tok": "from-file"}


def test_secret_on_command_line_refused() -> None:
    pb = playbook(ParamSpec("tok", ParamType.STRING, secret=True))
    with pytest.raises(UsageError, match="RESPONDER_SECRET_TOK"):
        resolve(pb, {"tok": "x"}, environ={})


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError):
        parse_assignments(["novalue"])
    with pytest.raises(UsageError):
        parse_assignments(["a=1", "a=2"])
