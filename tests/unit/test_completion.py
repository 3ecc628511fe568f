"""Shell completion, driven the way bash drives it: the generated script is sourced into a real
bash, COMP_WORDS is set and the completion function is called."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from responder.cli.completion import script
from responder.cli.parser import build_parser
from responder.settings import shipped_dir
from responder.timeline import Incident, Timeline
from responder.vocabulary import IncidentStatus

INCIDENT = "INC-20261203-010203-abcd"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    timeline = Timeline(data / "timeline.db")
    timeline.create_incident(
        Incident(
            id=INCIDENT,
            created_at="2026-12-03T01:02:03Z",
            updated_at="2026-12-03T01:02:03Z",
            status=IncidentStatus.AWAITING_APPROVAL,
            playbook="contain-container",
            playbook_path=str(shipped_dir("playbooks") / "contain-container.yml"),
            playbook_sha256="0" * 64,
            severity="critical",
            params={},
            secret_params=(),
            trigger={},
            inventory=None,
            host_limit=None,
            next_step="stop",
            actor="test",
        )
    )
    timeline.close()
    return data


def complete(data_dir: Path, *words: str) -> list[str]:
    """What bash would offer for the command line `words` (the last one being completed)."""
    shim = f'responder() {{ {shlex.quote(sys.executable)} -m responder "$@"; }}'
    words_array = " ".join(shlex.quote(w) for w in ("responder", *words))
    program = (
        f"{shim}\nsource <({shlex.quote(sys.executable)} -m responder completion bash)\n"
        f"COMP_WORDS=({words_array}); COMP_CWORD={len(words)}; _responder; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    env = {**os.environ, "RESPONDER_DATA_DIR": str(data_dir)}
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_commands_options_playbooks_incidents_and_steps_complete(data_dir: Path) -> None:
    assert complete(data_dir, "ap") == ["approve"]
    assert "completion" in complete(data_dir, "") and "__complete" not in complete(data_dir, "")
    assert complete(data_dir, "run", "--dry") == ["--dry-run"]
    assert complete(data_dir, "run", "") == ["contain-container", "isolate-container"]
    assert complete(data_dir, "show", "INC") == [INCIDENT]
    assert complete(data_dir, "evidence", "verify", "") == [INCIDENT]
    steps = complete(data_dir, "approve", INCIDENT, "")
    assert steps[0] == "stop" and {"isolate", "snapshot", "rotate"} <= set(steps)  # waiting step first
    assert complete(data_dir, "approve", "INC-20990101-000000-0000", "") == []  # unknown: nothing


def test_zsh_script_uses_bashcompinit_and_every_command_is_offered() -> None:
    parser = build_parser()
    zsh = script(parser, "zsh")
    assert zsh.startswith("autoload -U +X compinit") and "bashcompinit" in zsh
    for command in ("run", "approve", "release", "evidence", "serve", "completion"):
        assert f" {command}) COMPREPLY" in zsh
