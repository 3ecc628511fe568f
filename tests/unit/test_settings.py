from __future__ import annotations

from pathlib import Path

import pytest

from responder.errors import ConfigError
from responder.private_dirs import ensure_private_dir
from responder.settings import load_settings, shipped_dir


def test_precedence_flag_env_config_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "from-config"}"\nplaybooks_dirs = ["{tmp_path / "pb"}"]\n'
        f'host_evidence_root = "/srv/evidence"\ninventory = "inv.yml"\n'
    )
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    assert load_settings(environ=env).data_dir == tmp_path / "state" / "responder"
    assert load_settings(config=str(cfg), environ=env).data_dir == tmp_path / "from-config"
    env_dir = {**env, "RESPONDER_DATA_DIR": str(tmp_path / "from-env")}
    assert load_settings(config=str(cfg), environ=env_dir).data_dir == tmp_path / "from-env"
    flag = load_settings(data_dir=str(tmp_path / "from-flag"), config=str(cfg), environ=env_dir)
    assert flag.data_dir == tmp_path / "from-flag"
    assert flag.playbook_dirs[0] == tmp_path / "pb" and flag.playbook_dirs[-1] == shipped_dir("playbooks")
    assert flag.host_evidence_root == "/srv/evidence" and flag.inventory == "inv.yml"


def test_config_from_environment_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("runbooks_dirs = ['/x']\n")
    assert load_settings(environ={"RESPONDER_CONFIG": str(cfg)}).runbook_dirs[0] == Path("/x")
    cfg.write_text("data_dir = \n")
    with pytest.raises(ConfigError, match=str(cfg)):
        load_settings(config=str(cfg), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config=str(tmp_path / "missing.toml"), environ={})


def test_private_dirs_are_0700_all_the_way_down(tmp_path: Path) -> None:
    leaf = ensure_private_dir(tmp_path / "a" / "b" / "c", tmp_path / "a")
    for path in (tmp_path / "a", tmp_path / "a" / "b", leaf):
        assert path.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[server]\nport = 'eighty'\n", "port must be a number from 1 to 65535"),
        ("[server]\nport = 70000\n", "port must be a number"),
        ("[server]\nworkers = -1\n", "workers must be a number from 0 to 64"),
        ("[server]\ngrace = true\n", "grace must be a number"),
        ("[server]\ntoken = 'abc'\n", r"\[server\] takes only"),
        ("[server]\nhost = 8080\n", "host must be a string"),
    ],
)
def test_server_section_is_checked(tmp_path: Path, body: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_settings(config=str(cfg), environ={})


def test_server_section_is_read(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[server]\nhost = '0.0.0.0'\nport = 9000\nworkers = 4\ngrace = 12.5\ntoken_file = '/etc/t'\n"
    )
    assert load_settings(config=str(cfg), environ={}).server == {
        "host": "0.0.0.0",
        "port": 9000,
        "workers": 4,
        "grace": 12.5,
        "token_file": "/etc/t",
    }


@pytest.mark.parametrize("value", ["0", "0.5", "7200", "true", '"60"'])
def test_docker_call_timeout_is_checked(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"docker_call_timeout = {value}\n")
    with pytest.raises(ConfigError, match="docker_call_timeout must be seconds from 1 to 3600"):
        load_settings(config=str(config), environ={})


def test_docker_call_timeout_is_read(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("docker_call_timeout = 15\n")
    assert load_settings(config=str(config), environ={}).docker_call_timeout == 15.0
    assert load_settings(environ={"RESPONDER_DATA_DIR": str(tmp_path)}).docker_call_timeout == 60.0


def test_a_daemon_finds_the_system_config_without_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import responder.settings as settings_mod

    system = tmp_path / "etc" / "config.toml"
    system.parent.mkdir()
    system.write_text('data_dir = "/var/lib/responder"\n')
    monkeypatch.setattr(settings_mod, "SYSTEM_CONFIG", system)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "user-config")}
    assert load_settings(environ=env).data_dir == Path("/var/lib/responder")
    user = tmp_path / "user-config" / "responder" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(f'data_dir = "{tmp_path / "mine"}"\n')
    assert load_settings(environ=env).data_dir == tmp_path / "mine"  # the user's own comes first


@pytest.mark.parametrize("value", ["0", "true", '"30"', "9999"])
def test_progress_interval_is_checked(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"progress_interval = {value}\n")
    with pytest.raises(ConfigError, match="progress_interval must be seconds from 1 to 3600"):
        load_settings(config=str(config), environ={})


def test_progress_interval_is_read(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("progress_interval = 5\n")
    assert load_settings(config=str(config), environ={}).progress_interval == 5.0
    assert load_settings(environ={"RESPONDER_DATA_DIR": str(tmp_path)}).progress_interval == 30.0
