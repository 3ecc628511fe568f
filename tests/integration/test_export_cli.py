"""Export of a real incident (Ansible, dockerd) through the CLI, and the HTML in a real browser."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from tests import browser as browser_tools
from tests.conftest import FIXTURES, Docker, require, run_cli

pytestmark = pytest.mark.integration
FIXTURE_ARGS = ("--runbooks-dir", str(FIXTURES / "runbooks"))


@pytest.fixture
def approved_incident(docker: Docker, data_dir: Path) -> str:
    victim = docker.container("exported", "--network", docker.network("x"))
    first = run_cli(
        "run",
        str(FIXTURES / "playbooks" / "gated.yml"),
        *FIXTURE_ARGS,
        "-p",
        f"container={victim}",
        data_dir=data_dir,
    )
    incident = next(w for w in first.stdout.split() if w.startswith("INC-"))
    done = run_cli(
        "approve",
        incident,
        "--all",
        "--as",
        "carol",
        "--reason",
        "<b>confirmed</b>",
        *FIXTURE_ARGS,
        data_dir=data_dir,
    )
    assert done.returncode == 0, done.output
    return incident


def test_every_format_from_the_cli(approved_incident: str, data_dir: Path, tmp_path: Path) -> None:
    outputs = {}
    for fmt in ("md", "html", "json", "jsonl", "csv"):
        target = tmp_path / f"report.{fmt}"
        result = run_cli("export", approved_incident, "--format", fmt, "-o", str(target), data_dir=data_dir)
        assert result.returncode == 0, result.output
        outputs[fmt] = target.read_text()
    data = json.loads(outputs["json"])
    kinds = [e["kind"] for e in data["events"]]
    assert "approval_granted" in kinds and "evidence_recorded" in kinds
    assert data["summary"]["decisions"][-1]["actor"] == "carol"
    assert len(outputs["jsonl"].splitlines()) == len(kinds)
    assert len(list(csv.reader(outputs["csv"].splitlines()))) == len(kinds) + 1
    md = outputs["md"]
    assert "**approved** by carol" in md and "&lt;b&gt;confirmed&lt;/b&gt;" in md
    assert data["evidence"][0]["sha256_source"] in md
    # #15 bug 7: the container is still isolated; the report says so and how to release it
    assert "Nothing:" not in md
    assert "isolate" in md and "is still in effect: Disconnects the container" in md, md
    assert f"responder release {approved_incident}" in md
    stdout = run_cli("export", approved_incident, "-f", "jsonl", data_dir=data_dir)
    assert stdout.stdout == outputs["jsonl"]
    missing = run_cli(
        "export", "INC-20200101-000000-0000", "-o", str(tmp_path / "none.md"), data_dir=data_dir
    )
    assert missing.returncode == 2 and not (tmp_path / "none.md").exists()
    released = run_cli(
        "release", approved_incident, "--reason", "review done", *FIXTURE_ARGS, data_dir=data_dir
    )
    assert released.returncode == 0, released.output
    after = run_cli("export", approved_incident, "-f", "md", data_dir=data_dir).stdout
    assert "Nothing: every step completed and nothing it changed is still in place." in after


def test_html_renders_in_headless_chromium_and_reads_well_at_1400_px(
    approved_incident: str, data_dir: Path, tmp_path: Path
) -> None:
    browser = shutil.which("chromium")
    require(browser is not None, "chromium is not installed (scripts/test.sh installs it)")
    assert browser is not None
    target = tmp_path / "report.html"
    assert (
        run_cli("export", approved_incident, "-f", "html", "-o", str(target), data_dir=data_dir).returncode
        == 0
    )
    document = json.loads(run_cli("export", approved_incident, "-f", "json", data_dir=data_dir).stdout)
    events = document["events"]
    profile = tmp_path / "profile"
    dom = browser_tools.dump_dom(browser, profile, target)
    assert dom.count('<tr class="event"') == len(events)
    for event in events:
        assert f'data-seq="{event["seq"]}"' in dom
    assert "<svg" in dom and dom.count('class="lane"') == 3  # logs, isolate, after
    assert "approved" in dom
    # laid out at 1400 px: nothing scrolls sideways; hashes and IDs are clipped on screen but whole
    # in the page (hover title, copy); sizes read in human units
    layout = browser_tools.measure(
        browser,
        profile,
        target,
        """{page: document.documentElement.scrollWidth, viewport: window.innerWidth,
            evidence: document.getElementById('evidence').getBoundingClientRect().right,
            short: [...document.querySelectorAll('#evidence code.short')].map(c => ({
                shown: c.getBoundingClientRect().width, whole: c.scrollWidth,
                text: c.textContent, title: c.title})),
            size: document.querySelector('#evidence td.num').innerText}""",
    )
    assert layout["viewport"] == 1400 and layout["page"] <= 1400, layout
    assert layout["evidence"] <= 1400, layout
    evidence = document["evidence"]
    assert evidence and len(layout["short"]) == 3 * len(evidence)  # container, two hashes
    for code in layout["short"]:
        assert code["shown"] < code["whole"] / 2, code  # clipped on screen
        assert code["text"] == code["title"] and len(code["text"]) >= 64  # whole in the page
    assert {code["text"] for code in layout["short"]} >= {evidence[0]["sha256_source"]}
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB)", layout["size"]), layout["size"]
    # and it is drawn, not only parsed: a real screenshot with ink on it
    shot = tmp_path / "report.png"
    browser_tools.screenshot(browser, profile, target, shot)
    width, _height, ink = browser_tools.png_ink(shot)
    assert width == 1400 and ink > 0.01, ink
