"""The CLI as users call it, in a subprocess; none of these need Docker or Ansible."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FIXTURES, REPO, run_cli


def test_help_lists_commands_and_exit_codes(data_dir: Path) -> None:
    result = run_cli("--help", data_dir=data_dir)
    assert result.returncode == 0
    for word in ("run", "validate", "playbooks", "actions", "incidents", "show", "approve", "deny"):
        assert word in result.stdout
    assert "130" in result.stdout and "awaits" in result.stdout


def test_help_does_not_import_ansible() -> None:
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.argv=['responder','--help']\n"
        "try: runpy.run_module('responder', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "assert not [m for m in sys.modules if m.startswith(('ansible', 'jinja2', 'yaml'))], 'heavy import'"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO).returncode == 0


def test_validate_ok_and_invalid(data_dir: Path) -> None:
    ok = run_cli("validate", data_dir=data_dir)
    assert ok.returncode == 0, ok.output
    assert "isolate-container" in ok.stdout
    bad = run_cli("validate", str(FIXTURES / "invalid"), data_dir=data_dir)
    assert bad.returncode == 2
    assert "duplicate key 'action'" in bad.stderr and "did you mean 'isolate_network'" in bad.stderr
    assert bad.stdout.strip().endswith("invalid")


def test_run_with_invalid_playbook_exits_2_and_runs_nothing(data_dir: Path) -> None:
    result = run_cli("run", str(FIXTURES / "invalid" / "unknown_action.yml"), data_dir=data_dir)
    assert result.returncode == 2
    assert "unknown_action.yml:7:13" in result.stderr and "nothing was run" in result.stderr
    assert not (data_dir / "runs").exists()


def test_run_with_bad_params_exits_2(data_dir: Path) -> None:
    result = run_cli("run", "isolate-container", "-p", "container=-rf", "-p", "bogus=1", data_dir=data_dir)
    assert result.returncode == 2
    assert (
        "is not a container name or ID prefix" in result.stderr and "unknown param 'bogus'" in result.stderr
    )


def test_actions_and_playbooks_lists(data_dir: Path) -> None:
    actions = run_cli("actions", data_dir=data_dir)
    assert "isolate_network" in actions.stdout and "container (str, required)" in actions.stdout
    playbooks = run_cli("playbooks", data_dir=data_dir)
    assert "isolate-container" in playbooks.stdout and "container*" in playbooks.stdout


def test_unknown_incident(data_dir: Path) -> None:
    result = run_cli("show", "INC-20200101-000000-0000", data_dir=data_dir)
    assert result.returncode == 2 and "no incident" in result.stderr
    assert run_cli("incidents", data_dir=data_dir).stdout.strip() == "no incidents yet"


def test_bad_config_file(tmp_path: Path, data_dir: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("data_dirr = 'x'\n")
    result = run_cli("--config", str(cfg), "playbooks", data_dir=data_dir)
    assert result.returncode == 2 and "unknown keys" in result.stderr


def test_user_directories_extend_the_shipped_ones(data_dir: Path) -> None:
    result = run_cli(
        "--playbooks-dir",
        str(FIXTURES / "playbooks"),
        "--runbooks-dir",
        str(FIXTURES / "runbooks"),
        "playbooks",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.output
    assert "canary" in result.stdout and "isolate-container" in result.stdout  # user's and shipped
    actions = run_cli("actions", "--runbooks-dir", str(FIXTURES / "runbooks"), data_dir=data_dir).stdout
    assert "echo_value" in actions and "isolate_network" in actions
