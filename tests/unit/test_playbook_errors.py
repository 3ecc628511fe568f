"""One invalid playbook per error case; each names its expected location and message in a
`# expect: LINE:COL message | more` header, and the error must carry both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from responder.catalog import load_catalog
from responder.errors import PlaybookError
from responder.playbook.parse import load_playbook
from responder.settings import shipped_dir

INVALID = Path(__file__).resolve().parent.parent / "fixtures" / "invalid"
CASES = sorted(INVALID.glob("*.yml"))


@pytest.fixture(scope="module")
def catalog():
    return load_catalog([shipped_dir("runbooks")])


def test_there_is_a_fixture_per_case() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_playbook_is_refused_with_location(path: Path, catalog) -> None:
    header = path.read_text().splitlines()[0]
    match = re.match(r"# expect: (\d+):(\d+) (.*)", header)
    assert match, f"{path.name} lacks an expect header"
    line, col, expected = int(match.group(1)), int(match.group(2)), match.group(3)
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, catalog)
    rendered = [p.render() for p in info.value.problems]
    hits = [p for p in info.value.problems if all(part.strip() in p.render() for part in expected.split("|"))]
    assert hits, f"expected {expected!r} in {rendered}"
    problem = hits[0]
    assert (problem.line, problem.column) == (line, col), rendered
    assert problem.file == str(path)
    assert problem.render().startswith(f"{path}:{line}:{col}: ")
    assert "^" in problem.snippet  # a caret under the offending spot


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path, catalog) -> None:
    path = tmp_path / "many.yml"
    path.write_text(
        "name: x\ndescription: d\nseverity: urgent\nsteps:\n"
        "  - id: a\n    action: isolate_networkx\n    with: {container: no}\n"
        "  - id: a\n    action: isolate_network\n    with: {containr: b}\n"
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, catalog)
    messages = " ".join(p.message for p in info.value.problems)
    for expected in ("urgent", "isolate_networkx", "'no' is ambiguous", "already used", "containr"):
        assert expected in messages
    assert len(info.value.problems) >= 6  # includes 'needs argument container'


def test_python_tag_never_executes(tmp_path: Path, catalog) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yml"
    path.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(PlaybookError):
        load_playbook(path, catalog)
    assert not marker.exists()


def test_unreadable_and_non_utf8_files(tmp_path: Path, catalog) -> None:
    with pytest.raises(PlaybookError, match="cannot read playbook"):
        load_playbook(tmp_path / "missing.yml", catalog)
    bad = tmp_path / "latin1.yml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(PlaybookError, match="not valid UTF-8"):
        load_playbook(bad, catalog)


@pytest.mark.parametrize(("written", "meant"), [("no", "false"), ("yes", "true"), ('"off"', "false")])
def test_a_yes_no_bool_default_is_one_problem_with_the_right_hint(
    tmp_path: Path, catalog, written: str, meant: str
) -> None:
    # #15 bug 7: reported twice, and the generic hint said to quote it (text) where a bool is wanted
    path = tmp_path / "yn.yml"
    path.write_text(
        "version: 1\nname: yn\ndescription: d\nseverity: low\nparams:\n"
        "  container: {type: string, required: true}\n"
        f"  include_volumes:\n    type: bool\n    default: {written}\n"
        "steps:\n  - id: isolate\n    action: isolate_network\n"
        '    with: {container: "{{ params.container }}"}\n'
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, catalog)
    (problem,) = info.value.problems
    assert problem.line == 9 and "not a boolean" in problem.message
    assert problem.hint == f"write `default: {meant}`"


@pytest.mark.parametrize(
    ("value", "gated", "refused"),
    [
        ("whole", True, False),
        ("suspect", False, False),
        ("'{{ params.scope }}'", False, True),  # might render to whole: gate it or fix it
        ("'{{ params.scope }}'", True, False),
    ],
)
def test_a_value_that_reaches_beyond_the_suspect_needs_a_gate(
    tmp_path: Path, catalog, value: str, gated: bool, refused: bool
) -> None:
    """#16: meta/responder.yml approval_for. isolate_network's `shared_namespace: whole` cuts
    every container sharing the namespace, so a step that sets it (or may) must be gated."""
    path = tmp_path / "p.yml"
    path.write_text(
        "version: 1\nname: p\ndescription: d\nseverity: high\n"
        "params:\n  container: {type: string, required: true}\n  scope: {type: string, default: suspect}\n"
        "steps:\n  - id: isolate\n    action: isolate_network\n"
        + ("    approval: required\n" if gated else "")
        + f"    with:\n      container: '{{{{ params.container }}}}'\n      shared_namespace: {value}\n"
    )
    if not refused:
        assert load_playbook(path, catalog).steps[0].id == "isolate"
        return
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, catalog)
    assert "needs `approval: required`" in info.value.problems[0].message
