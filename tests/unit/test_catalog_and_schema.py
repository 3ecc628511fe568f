from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from responder.catalog import load_catalog
from responder.errors import ConfigError
from responder.playbook.parse import load_playbook
from responder.playbook.schema import render
from responder.settings import shipped_dir

REPO = Path(__file__).resolve().parents[2]


def test_committed_schema_is_current() -> None:
    committed = (REPO / "responder" / "schema" / "playbook-v1.schema.json").read_text()
    assert committed == render(), (
        "run: python -m responder.playbook.schema > responder/schema/playbook-v1.schema.json"
    )


def test_schema_is_valid_json_with_every_field() -> None:
    schema = json.loads(render())
    assert set(schema["properties"]) >= {"name", "params", "steps", "match"}
    assert set(schema["$defs"]["step"]["properties"]) >= {
        "id",
        "action",
        "with",
        "on_failure",
        "timeout",
        "approval",
        "when",
        "hosts",
    }


def test_every_action_example_validates(tmp_path: Path) -> None:
    catalog = load_catalog([shipped_dir("runbooks")])
    assert {
        "isolate_network",
        "preserve_logs",
        "snapshot_filesystem",
        "stop_container",
        "reconnect_networks",
        "pause_container",
        "unpause_container",
    } <= set(catalog.actions)
    for action in catalog.actions.values():
        assert action.example, f"{action.name} has no example in meta/responder.yml"
        assert action.summary and action.changes
        steps = [dict(action.example)]
        if "steps.isolate" in str(action.example):  # examples may read an earlier isolate step
            steps.insert(0, {"id": "isolate", "action": "isolate_network", "with": {"container": "x"}})
        pb = {
            "name": "ex",
            "description": "d",
            "severity": "low",
            "params": {"container": {"type": "string"}},
            "steps": steps,
        }
        path = tmp_path / f"{action.name}.yml"
        path.write_text(yaml.safe_dump(pb))
        load_playbook(path, catalog)


def test_shipped_playbooks_validate() -> None:
    catalog = load_catalog([shipped_dir("runbooks")])
    files = sorted(shipped_dir("playbooks").glob("*.yml"))
    assert files
    for path in files:
        load_playbook(path, catalog)


def test_shipped_playbooks_schema_modeline_resolves_in_the_checkout() -> None:
    for playbook in sorted(shipped_dir("playbooks").glob("*.yml")):
        (modeline,) = re.findall(r"\$schema=(\S+)", playbook.read_text())
        assert (playbook.parent / modeline).resolve().is_file(), (playbook.name, modeline)


def test_duplicate_action_names_fail_loudly(tmp_path: Path) -> None:
    other = tmp_path / "runbooks" / "isolate_network" / "meta"
    other.mkdir(parents=True)
    (other / "argument_specs.yml").write_text("argument_specs:\n  main:\n    options: {}\n")
    with pytest.raises(ConfigError, match="defined twice"):
        load_catalog([tmp_path / "runbooks", shipped_dir("runbooks")])


def test_undo_gather_must_name_an_item_key(tmp_path: Path) -> None:
    meta = tmp_path / "runbooks" / "cut_thing" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text("argument_specs:\n  main:\n    options: {}\n")
    (meta / "responder.yml").write_text("undo:\n  action: cut_thing\n  gather: [networks]\n")
    catalog = load_catalog([tmp_path / "runbooks"])
    with pytest.raises(ConfigError, match=r"undo.gather maps a list output to the item field"):
        catalog.get("cut_thing")
    (meta / "responder.yml").write_text("undo:\n  action: cut_thing\n  gather: {networks: name}\n")
    action = load_catalog([tmp_path / "runbooks"]).get("cut_thing")
    assert action is not None and dict(action.undo_gather) == {"networks": "name"}


def test_release_gathers_records_from_every_attempt() -> None:
    from responder.planning import merge_attempts as _merge_attempts

    a = {"name": "a", "aliases": ["web-a"]}
    b = {"name": "b", "aliases": ["web-b"]}
    b_later = {"name": "b", "aliases": ["changed"]}
    attempts = [
        {"h1": {"container_id": "x", "networks": [a, b]}},  # failed after cutting a
        {"h1": {"container_id": "x", "networks": [b_later], "verified": True}, "h2": {"networks": []}},
    ]
    merged = _merge_attempts(attempts, {"networks": "name"})
    assert merged["h1"]["networks"] == [a, b]  # the earliest record of each network
    assert merged["h1"]["verified"] is True  # everything else from the last attempt
    assert merged["h2"] == {"networks": []}
    assert _merge_attempts(attempts, {})["h1"]["networks"] == [b_later]


def test_no_role_argument_uses_a_name_ansible_reserves() -> None:
    """A role variable named like a task keyword (`timeout`, `name`, `environment`...) draws an
    Ansible warning on every run and can be mistaken for the keyword; arguments avoid them."""
    import yaml
    from ansible.vars.reserved import get_reserved_names

    reserved = get_reserved_names()
    for spec in sorted((REPO / "runbooks").glob("*/meta/argument_specs.yml")):
        options = yaml.safe_load(spec.read_text())["argument_specs"]["main"].get("options") or {}
        clashes = sorted(set(options) & reserved)
        assert not clashes, f"{spec.relative_to(REPO)}: {clashes} are reserved by Ansible"
