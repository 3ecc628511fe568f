"""The CLI called in-process through `main(argv)`: the dispatch table, printing and exit codes,
without a subprocess (tests/unit/test_cli.py covers the same as users call it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from responder.cli import main
from tests.conftest import FIXTURES, REPO


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RESPONDER_CONFIG", "RESPONDER_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESPONDER_DATA_DIR", str(tmp_path / "data"))


def test_every_parser_command_has_a_handler() -> None:
    from responder.cli import _commands
    from responder.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(_commands())  # type: ignore[union-attr]


def test_validate_and_actions_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "playbooks" / "isolate-container.yml")]) == 0
    assert "1 valid, 0 invalid" in capsys.readouterr().out
    assert main(["actions"]) == 0
    out = capsys.readouterr().out
    assert "isolate_network:" in out and "rotate_secrets:" in out


def test_errors_map_to_exit_codes_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "INC-20000101-000000-0000"]) == 2
    assert "no incident" in capsys.readouterr().err.lower()
    assert main(["validate", str(FIXTURES / "invalid")]) != 0


@pytest.mark.parametrize("command", [["actions"], ["playbooks"], ["--help"]])
def test_a_reader_that_closes_early_is_not_an_error(command: list[str], tmp_path: Path) -> None:
    """`responder actions | head -1`: no BrokenPipeError traceback, no "internal error" exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "responder", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "RESPONDER_DATA_DIR": str(tmp_path / "d")},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
