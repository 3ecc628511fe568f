from __future__ import annotations

import pytest

from responder.strict_yaml import load


def data(text: str):
    doc, problems = load(text, "t.yml")
    assert problems == [], [p.render() for p in problems]
    return doc.data


def messages(text: str) -> list[str]:
    return [p.message for p in load(text, "t.yml")[1]]


def test_yaml_12_core_scalars() -> None:
    assert data(
        "a: true\nb: false\nc: null\nd: ~\ne: 12\nf: -3\ng: 1.5\nh: text\ni: '0755'\nj: \"no\"\n"
    ) == {
        "a": True,
        "b": False,
        "c": None,
        "d": None,
        "e": 12,
        "f": -3,
        "g": 1.5,
        "h": "text",
        "i": "0755",
        "j": "no",
    }


def test_dates_stay_text() -> None:
    assert data("when: 2026-11-29\n") == {"when": "2026-11-29"}


def test_explicit_str_tag_keeps_text() -> None:
    assert data("mode: !!str 0755\n") == {"mode": "0755"}


@pytest.mark.parametrize("value", ["yes", "no", "on", "off", "Y", "N", "NO", "Off"])
def test_yaml11_booleans_refused(value: str) -> None:
    assert any("ambiguous" in m for m in messages(f"a: {value}\n"))


@pytest.mark.parametrize("value", ["0755", "0x1f", "0o17", "1:20", "1_000", ".inf", ".NaN"])
def test_yaml11_numbers_refused(value: str) -> None:
    assert any("ambiguous" in m for m in messages(f"a: {value}\n"))


def test_duplicate_keys_name_both_lines() -> None:
    _doc, problems = load("a: 1\nb: 2\na: 3\n", "t.yml")
    assert problems[0].line == 3
    assert "first defined on line 1" in problems[0].message


def test_nested_duplicates_found() -> None:
    assert any("duplicate key 'x'" in m for m in messages("top:\n  x: 1\n  x: 2\n"))


def test_alias_bomb_refused_before_expansion() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"
    assert any("aliases" in m for m in messages(bomb))


def test_merge_key_refused() -> None:
    assert any("merge keys" in m for m in messages("base: &b {x: 1}\nother:\n  <<: {y: 2}\n"))


def test_empty_document() -> None:
    assert any("empty" in m for m in messages(""))


def test_oversized_file() -> None:
    assert any("larger than" in m for m in messages("a: " + "x" * (1024 * 1024 + 1)))


def test_marks_point_at_values() -> None:
    doc, _ = load("steps:\n  - id: a\n    with: {c: d}\n", "t.yml")
    assert doc.marks[("steps", 0, "with", "c")] == (3, 15)
