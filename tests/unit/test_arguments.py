"""A step's `with:` is checked by Ansible's own ArgumentSpecValidator, at load and at run alike:
path, float and bool conversions, and the entry point's mutually_exclusive / required_if."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from responder.catalog import Catalog, load_catalog
from responder.errors import PlaybookError
from responder.params import SecretValues
from responder.planning import plan_step, step_context
from responder.playbook.model import Playbook, Severity, Step
from responder.playbook.parse import load_playbook

SPEC = """\
argument_specs:
  main:
    short_description: A role with every kind of check the validator does.
    options:
      container: {type: raw, required: true, description: the container}
      dest: {type: path, description: where it goes}
      ratio: {type: float, description: how much}
      compress: {type: bool, default: false, description: squeeze it}
      method: {type: str, choices: [copy, stream], description: how}
      url: {type: str, description: where to stream}
      token: {type: str, no_log: true, description: a credential}
    mutually_exclusive:
      - [dest, url]
    required_if:
      - [method, stream, [url]]
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    role = tmp_path / "runbooks" / "ship_evidence"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(SPEC)
    (role / "tasks" / "main.yml").write_text("- ansible.builtin.debug: {msg: hi}\n")
    return load_catalog([tmp_path / "runbooks"])


def playbook_file(tmp_path: Path, with_: str) -> Path:
    path = tmp_path / "pb.yml"
    path.write_text(
        "version: 1\nname: pb\ndescription: d\nseverity: low\n"
        "params:\n  container: {type: string, required: true}\n  where: {type: string}\n"
        "  secret_token: {type: string, secret: true}\n"
        f"steps:\n  - id: ship\n    action: ship_evidence\n    with: {with_}\n"
    )
    return path


def problems(tmp_path: Path, catalog: Catalog, with_: str) -> list[str]:
    try:
        load_playbook(playbook_file(tmp_path, with_), catalog)
    except PlaybookError as exc:
        return [p.render() for p in exc.problems]
    return []


def test_load_time_uses_ansibles_conversions_and_constraints(tmp_path: Path, catalog: Catalog) -> None:
    ok = '{container: "{{ params.container }}", dest: "~/ev", ratio: 3, compress: "yes"}'
    assert problems(tmp_path, catalog, ok) == []
    both = problems(tmp_path, catalog, '{container: x, dest: /tmp/a, url: "http://e"}')
    assert any("parameters are mutually exclusive: dest|url" in p for p in both), both
    assert any("give only one of them" in p for p in both)
    stream = problems(tmp_path, catalog, "{container: x, method: stream}")
    assert any("method is stream but all of the following are missing: url" in p for p in stream), stream
    bad_float = problems(tmp_path, catalog, "{container: x, ratio: lots}")
    assert any("pb.yml:12:33:" in p and "unable to convert to float" in p for p in bad_float), bad_float
    assert any("ratio takes a number" in p for p in bad_float)
    bad_choice = problems(tmp_path, catalog, "{container: x, method: carrier-pigeon}")
    assert any("value of method must be one of: copy, stream" in p for p in bad_choice), bad_choice
    missing = problems(tmp_path, catalog, "{dest: /tmp/a}")
    assert any("needs argument 'container'" in p for p in missing), missing


def test_a_templated_value_counts_as_given_at_load_and_is_checked_when_rendered(
    tmp_path: Path, catalog: Catalog
) -> None:
    # at load time the template's value is unknown: present (so exclusive with dest), type open
    templated = '{container: x, url: "{{ params.where }}", dest: /tmp/a}'
    assert any("mutually exclusive" in p for p in problems(tmp_path, catalog, templated))
    loaded = load_playbook(
        playbook_file(tmp_path, '{container: "{{ params.container }}", ratio: "{{ params.where }}"}'),
        catalog,
    )
    step = loaded.steps[0]
    context = step_context("INC-1", loaded, {"container": "c1", "where": "half"}, {})
    with pytest.raises(PlaybookError, match="unable to convert to float"):
        plan_step(step, context, SecretValues({}), catalog)  # rendered, the run checks the same way


def test_the_role_receives_what_the_validator_converted(catalog: Catalog) -> None:
    step = Step("ship", "ship_evidence", {"container": "c1", "dest": "~/ev", "ratio": 3, "compress": "yes"})
    pb = Playbook("pb", "d", Severity("low"), (), (step,), Path("pb.yml"), "0" * 64)
    planned = plan_step(step, step_context("INC-1", pb, {}, {}), SecretValues({}), catalog)
    assert planned.args["dest"] == os.path.expanduser("~/ev")
    assert planned.args["ratio"] == 3.0 and isinstance(planned.args["ratio"], float)
    assert planned.args["compress"] is True  # Ansible's bool words, not a truthy string
    assert "url" not in planned.args and "method" not in planned.args  # unset stays unset


def test_a_secret_routed_by_name_is_given_but_never_shown_to_the_validator(catalog: Catalog) -> None:
    step = Step("ship", "ship_evidence", {"container": "c1", "token": "{{ params.secret_token }}"})
    pb = Playbook("pb", "d", Severity("low"), (), (step,), Path("pb.yml"), "0" * 64)
    planned = plan_step(
        step, step_context("INC-1", pb, {}, {}), SecretValues({"secret_token": "s3cr3t"}), catalog
    )
    assert planned.secret_args == {"token": "secret_token"} and "token" not in planned.args
    assert "s3cr3t" not in repr(planned.args)
