"""The wheel carries the shipped playbooks and runbooks, and an installed copy finds them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, require

pytestmark = pytest.mark.integration


def test_wheel_ships_playbooks_and_runbooks(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("responder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "responder/_data/playbooks/isolate-container.yml" in names
    assert "responder/_data/runbooks/isolate_network/meta/argument_specs.yml" in names
    assert "responder/_data/runbooks/module_utils/responder_docker.py" in names
    assert {"responder/export/templates/report.html.j2", "responder/export/templates/report.md.j2"} <= set(
        names
    )
    assert "responder/schema/playbook-v1.schema.json" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import responder.settings as s, responder.catalog as c; "
        "print(s.shipped_dir('playbooks')); print(sorted(c.load_catalog([s.shipped_dir('runbooks')]).actions))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    ).stdout
    assert str(target / "responder" / "_data" / "playbooks") in out
    # #15 bug 6: an editor following an installed playbook's $schema modeline finds the schema
    installed = sorted((target / "responder" / "_data" / "playbooks").glob("*.yml"))
    assert installed
    for playbook in installed:
        (modeline,) = re.findall(r"\$schema=(\S+)", playbook.read_text())
        assert (playbook.parent / modeline).resolve().is_file(), (playbook.name, modeline)
    assert "isolate_network" in out and "preserve_logs" in out


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """#15: a hardened unit for `responder serve`. verify checks every directive and value (it only
    warns on a bad one, so any output fails the test) and that ExecStart is executable: the shipped
    path (/usr/local/bin, where `pip install` puts it) is swapped for this checkout's."""
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is missing")
    shipped = (REPO / "scripts" / "systemd" / "responder.service").read_text()
    assert "ExecStart=/usr/local/bin/responder serve" in shipped
    for hardening in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=responder",
        "User=responder",
    ):
        assert hardening in shipped
    unit = tmp_path / "responder.service"
    responder = Path(sys.executable).parent / "responder"
    unit.write_text(shipped.replace("/usr/local/bin/responder", str(responder)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )
