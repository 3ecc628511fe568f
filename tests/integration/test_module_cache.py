"""The AnsiballZ module cache that responder keeps across runs: reused, private, never stale.

Real ansible-playbook runs through the CLI. A probe role's module reads a constant from its own
module_utils; the test edits that constant between runs and checks that the new value reaches
the host (a stale cache would ship the old zip).
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.conftest import incident_id, run_cli

pytestmark = pytest.mark.integration

MODULE = """
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_cache_probe_value import VALUE


def main():
    module = AnsibleModule(argument_spec=dict(label=dict(type="str", required=True)))
    output = {"value": VALUE, "label": module.params["label"]}
    module.exit_json(changed=False, output=output, ansible_facts={"responder_output": output})


if __name__ == "__main__":
    main()
"""


def _runbooks(root: Path) -> Path:
    role = root / "runbooks" / "cache_probe"
    (role / "tasks").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "library").mkdir()
    (role / "module_utils").mkdir()
    (role / "tasks" / "main.yml").write_text(
        "- name: Report the module_utils constant\n  responder_cache_probe:\n    label: '{{ label }}'\n"
    )
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: Test action reporting a module_utils constant.\n"
        "    options:\n      label: {type: str, required: true, description: Any text.}\n"
    )
    (role / "library" / "responder_cache_probe.py").write_text(MODULE)
    (role / "module_utils" / "responder_cache_probe_value.py").write_text('VALUE = "first"\n')
    playbook = root / "probe.yml"
    playbook.write_text(
        "name: cache-probe\ndescription: Reports a module_utils constant.\nseverity: info\n"
        "steps:\n  - id: probe\n    action: cache_probe\n    with: {label: probe}\n"
    )
    return role


def _probe(tmp_path: Path, data_dir: Path) -> str:
    result = run_cli(
        "run", str(tmp_path / "probe.yml"), "--runbooks-dir", str(tmp_path / "runbooks"), data_dir=data_dir
    )
    assert result.returncode == 0, result.output
    db = sqlite3.connect(data_dir / "timeline.db")
    (outputs,) = db.execute(
        "SELECT outputs FROM steps WHERE incident_id=? AND step_id='probe'", (incident_id(result.stdout),)
    ).fetchone()
    value: str = json.loads(outputs)["value"]
    return value


def test_module_cache_is_reused_private_and_follows_edits(tmp_path: Path, data_dir: Path) -> None:
    role = _runbooks(tmp_path)
    local = data_dir / "ansible-local"

    assert _probe(tmp_path, data_dir) == "first"
    (cache,) = local.glob("module-cache-*")
    entry = cache / "ansible.legacy.responder_cache_probe-ZIP_DEFLATED-none"
    assert entry.is_file()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    # Ansible's own per-process temp dir is gone; the cache it pointed at is not
    assert not list(local.glob("ansible-local-*"))
    built = entry.stat().st_mtime_ns

    assert _probe(tmp_path, data_dir) == "first"
    assert entry.stat().st_mtime_ns == built  # reused, not rebuilt

    (role / "module_utils" / "responder_cache_probe_value.py").write_text('VALUE = "second"\n')
    assert _probe(tmp_path, data_dir) == "second"
    assert len(list(local.glob("module-cache-*"))) == 2  # a new digest, a new cache

    (role / "library" / "responder_cache_probe.py").write_text(
        MODULE.replace('"value": VALUE', '"value": "edited"')
    )
    assert _probe(tmp_path, data_dir) == "edited"


def test_a_damaged_cache_entry_is_dropped_not_loaded(tmp_path: Path, data_dir: Path) -> None:
    """A power cut after Ansible's rename can leave an empty or cut-short pickle; loading it would
    fail every later run's task, containment included."""
    _runbooks(tmp_path)
    assert _probe(tmp_path, data_dir) == "first"
    (cache,) = (data_dir / "ansible-local").glob("module-cache-*")
    entry = cache / "ansible.legacy.responder_cache_probe-ZIP_DEFLATED-none"
    whole = entry.read_bytes()
    for damaged in (b"", whole[: len(whole) // 2]):
        entry.write_bytes(damaged)
        assert _probe(tmp_path, data_dir) == "first"
        assert entry.read_bytes()[-1:] == b"."  # rebuilt whole
