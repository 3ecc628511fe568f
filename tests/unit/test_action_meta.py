"""meta/responder.yml is validated like a playbook, and what a role declares there is all the
engine needs: a new role's declared output reaches the timeline with no Python change."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.action_meta import fill, load_meta
from responder.catalog import load_catalog
from responder.errors import ConfigError
from responder.settings import shipped_dir


def _meta(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "responder.yml"
    path.write_text(text)
    return path


def test_every_shipped_role_validates() -> None:
    catalog = load_catalog([shipped_dir("runbooks")])
    actions = catalog.actions
    assert actions["isolate_network"].target_output == "container_id"
    assert [t.kind for t in actions["rotate_secrets"].timeline] == ["secret_rotated"]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("changes: x\nundoo: words\n", ":2:1", "unknown key 'undoo'"),
        ("undo:\n  action: a\n  whith: {}\n", ":3:3", "unknown key 'whith'"),
        ("outputs: {a: x}\ntarget_output: b\n", ":2:", "target_output must name one of this role's outputs"),
        (
            "outputs: {a: x}\ntimeline:\n  b: {kind: k_k, fields: [f]}\n",
            ":3:3",
            "not one of the role's outputs",
        ),
        (
            "outputs: {a: x}\ntimeline:\n  a: {kind: step_finished, fields: [f]}\n",
            ":3:",
            "snake_case event name of the role's own",
        ),
        (
            "outputs: {a: x}\ntimeline:\n  a: {kind: a_thing, fields: [f], message: '{g}'}\n",
            ":3:",
            "which fields does not list",
        ),
        ("outputs: {a: x}\ntimeline:\n  a: {kind: a_thing, field: [f]}\n", ":3:", "did you mean 'fields'"),
    ],
)
def test_problems_are_located(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = _meta(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_meta(path)
    assert f"{path}{where}" in str(caught.value) and message in str(caught.value)


def test_fill_replaces_fields_and_drops_optional_parts() -> None:
    message = "{backend} secret {name} rotated[ to {new_name}] (version {version})"
    assert (
        fill(message, {"backend": "file", "name": "p", "version": 3}) == "file secret p rotated (version 3)"
    )
    assert fill(message, {"backend": "swarm", "name": "s", "new_name": "s_v2", "version": 2}).endswith(
        "rotated to s_v2 (version 2)"
    )
    assert fill("{a.__class__} {a}", {"a": "x"}) == "{a.__class__} x"  # no attribute access, ever


def test_a_new_roles_declared_output_lands_on_the_timeline(tmp_path: Path) -> None:
    """A role written from scratch in a temporary runbooks directory, run by the real engine
    through Ansible: its declared `found` items become `ioc_found` events, with only the listed
    fields (the `secret` field it also reports stays off the timeline)."""
    from responder.engine import Engine, RunRequest
    from responder.execution.runner import AnsibleRunnerExecutor
    from responder.params import resolve
    from responder.playbook.parse import load_playbook
    from responder.settings import Settings
    from responder.timeline import IncidentStatus, Timeline

    role = tmp_path / "runbooks" / "scan_for_iocs"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: Report indicators.\n"
        "    options:\n      pattern: {type: str, required: true, description: What to look for.}\n"
    )
    (role / "meta" / "responder.yml").write_text(
        "changes: nothing\nundo: ''\nrequires: []\n"
        "outputs:\n  found: Indicators found, each with path and rule.\n"
        "timeline:\n  found:\n    kind: ioc_found\n"
        "    message: 'indicator {rule} at {path}'\n    fields: [rule, path]\n"
    )
    (role / "tasks" / "main.yml").write_text(
        "- name: Publish what was found\n  ansible.builtin.set_fact:\n    responder_output:\n"
        "      found:\n        - {rule: '{{ pattern }}', path: /tmp/dropper, secret: hunter2}\n"
        "        - {rule: miner, path: /usr/bin/xmrig, secret: hunter2}\n"
    )
    playbook = tmp_path / "scan.yml"
    playbook.write_text(
        "name: scan\ndescription: test\nseverity: low\nsteps:\n"
        "  - id: scan\n    action: scan_for_iocs\n    with: {pattern: webshell}\n"
    )
    settings = Settings(tmp_path / "data", (tmp_path,), (tmp_path / "runbooks", shipped_dir("runbooks")))
    catalog = load_catalog(settings.runbook_dirs)
    pb = load_playbook(playbook, catalog)
    values, secrets = resolve(pb, {}, environ={})
    engine = Engine(settings, catalog, Timeline(settings.database), AnsibleRunnerExecutor())
    outcome = engine.start(RunRequest(pb, values, secrets, actor="tester"))
    assert outcome.status is IncidentStatus.SUCCEEDED
    found = [e for e in engine.timeline.events(outcome.incident_id) if e.kind == "ioc_found"]
    assert [e.message for e in found] == [
        "indicator webshell at /tmp/dropper",
        "indicator miner at /usr/bin/xmrig",
    ]
    assert all("secret" not in e.data and e.data["host"] == "localhost" for e in found)


def test_undo_when_output_must_name_an_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from responder.action_meta import load_meta
    from responder.errors import ConfigError

    path = tmp_path / "responder.yml"
    path.write_text(
        "changes: it holds\nundo:\n  description: gives back\n  action: restore_service\n  when_output: held\n"
        "outputs:\n  container_id: the container\n"
    )
    with pytest.raises(
        ConfigError, match=r"undo\.when_output must name one of this role's outputs, got 'held'"
    ):
        load_meta(path)
