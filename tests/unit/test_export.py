"""Every export format parsed back, with hostile text in every field, and memory that stays flat."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

import pytest

from responder.export import FORMATS, export
from responder.export.csv_export import HEADER
from responder.timeline import EvidenceRecord, Incident, Timeline
from responder.vocabulary import IncidentStatus

EVIL = "<script>alert(1)</script> | **bold** `tick` [x](http://e) =cmd|' /C calc'!A0\nnext line"
IID = "INC-20261129-010203-abcd"
CID = "c" * 64


def build(tmp_path: Path, extra_events: int = 0) -> Timeline:
    tl = Timeline(tmp_path / "t.db")
    tl.create_incident(
        Incident(
            IID,
            "2026-11-29T01:02:03.000000Z",
            "2026-11-29T01:02:09.000000Z",
            IncidentStatus.AWAITING_APPROVAL,
            "contain",
            "/p/contain.yml",
            "a" * 64,
            "critical",
            {"container": EVIL},
            ("token",),
            {"source": "alertmanager", "alertname": EVIL},
            None,
            None,
            "stop",
            "alice",
        )
    )
    tl.append(IID, "incident_opened", f"opened for {EVIL}", actor="alice")
    tl.append(IID, "step_started", "step isolate started", step="isolate", data={"action": "isolate_network"})
    tl.append(
        IID,
        "task_result",
        f"task: failed: {EVIL}",
        step="isolate",
        host="=HYPERLINK(evil)",
        data={"status": "failed"},
    )
    for i in range(extra_events):
        tl.append(IID, "task_result", f"filler {i}", step="isolate", host="h1", data={"i": i})
    tl.append(
        IID,
        "step_finished",
        "step isolate: succeeded",
        step="isolate",
        data={
            "outcome": "succeeded",
            "hosts": {"h1": {"outcome": "succeeded"}},
            "outputs": {
                "h1": {
                    "container_id": CID,
                    "container_name": EVIL,
                    "image": "busybox",
                    "image_id": "sha256:" + "d" * 64,
                }
            },
        },
    )
    tl.append(IID, "approval_requested", "stop needs approval", step="stop", data={})
    tl.add_evidence(
        EvidenceRecord(
            IID,
            "logs",
            "h1",
            CID,
            "logs",
            "/e/x-logs.txt",
            "/var/x-logs.txt",
            "b" * 64,
            "b" * 64,
            123,
            "docker logs --timestamps",
            "alice@vm",
            "2026-11-29T01:02:05Z",
        )
    )
    return tl


def render(tl: Timeline, fmt: str) -> str:
    out = io.StringIO()
    export(tl, IID, fmt, out)
    return out.getvalue()


def test_json_round_trip(tmp_path: Path) -> None:
    data = json.loads(render(build(tmp_path), "json"))
    assert data["incident"]["id"] == IID and data["incident"]["params"]["container"] == EVIL
    assert [e["seq"] for e in data["events"]] == [1, 2, 3, 4, 5]
    assert data["events"][3]["data"]["outputs"]["h1"]["container_id"] == CID
    assert data["evidence"][0]["sha256_controller"] == "b" * 64
    assert data["summary"]["containers"][0]["container_id"] == CID
    assert "step stop is waiting for approval" in data["summary"]["open_items"]


def test_jsonl_is_timesketch_shaped(tmp_path: Path) -> None:
    lines = render(build(tmp_path), "jsonl").splitlines()
    assert len(lines) == 5
    for line in lines:
        row = json.loads(line)
        assert {"message", "datetime", "timestamp_desc", "timestamp"} <= row.keys()
        assert row["datetime"].endswith("+00:00")
        assert row["incident_id"] == IID
    first = json.loads(lines[0])
    assert first["message"] == f"opened for {EVIL}" and first["timestamp_desc"] == "responder incident_opened"
    from datetime import datetime

    assert datetime.fromisoformat(first["datetime"]).timestamp() * 1e6 == pytest.approx(
        first["timestamp"], abs=1
    )


def test_csv_header_and_formula_injection(tmp_path: Path) -> None:
    rows = list(csv.reader(io.StringIO(render(build(tmp_path), "csv"))))
    assert rows[0] == HEADER
    assert len(rows) == 6
    failed = rows[3]
    assert failed[5] == "'=HYPERLINK(evil)"  # host column defused
    assert failed[7].startswith("task: failed: <script>")  # text kept, merely not a formula
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@"))


def test_markdown_escapes_and_sections(tmp_path: Path) -> None:
    text = render(build(tmp_path), "md")
    for section in (
        "## Summary",
        "## Trigger",
        "## Scope",
        "## Containment decisions",
        "## Evidence and chain",
        "## Secrets rotated",
        "## Notifications",
        "## Timeline",
        "## What remains open",
    ):
        assert section in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    timeline_rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(timeline_rows) == 5
    for row in timeline_rows:  # escaped pipes never add columns
        assert len(re.split(r"(?<!\\)\|", row)) == 9
    assert CID in text and "b" * 64 in text and "alice" in text


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.event_rows = 0
        self.lanes = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "tr" and attributes.get("class") == "event":
            self.event_rows += 1
        if tag == "g" and attributes.get("class") == "lane":
            self.lanes += 1
        for name in ("src", "href"):
            if attributes.get(name):
                self.external.append(str(attributes[name]))


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    text = render(build(tmp_path), "html")
    parser = _Collector()
    parser.feed(text)
    assert "script" not in parser.tags and not parser.external
    assert parser.event_rows == 5 and parser.lanes == 1
    assert "svg" in parser.tags and "&lt;script&gt;" in text


def test_every_format_registered() -> None:
    assert set(FORMATS) == {"md", "html", "json", "jsonl", "csv"}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_memory_stays_flat_as_the_timeline_grows(tmp_path: Path, fmt: str) -> None:
    peaks = []
    for n in (1_000, 20_000):
        tl = build(tmp_path / str(n), extra_events=0)
        with tl._write() as db:  # bulk insert: this test is about the exporter, not about append()
            db.executemany(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        IID,
                        100 + i,
                        "2026-11-29T01:02:04.000000Z",
                        "task_result",
                        "isolate",
                        "h1",
                        "responder",
                        f"filler {i} " + "x" * 100,
                        json.dumps({"i": i}),
                    )
                    for i in range(n)
                ],
            )
        sink = _CountingSink()
        tracemalloc.start()
        export(tl, IID, fmt, sink)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert sink.lines > n
    assert peaks[1] < peaks[0] * 1.5 + 256 * 1024, peaks


class _CountingSink(io.TextIOBase):
    """Discards output (so the test measures the exporter, not a growing buffer)."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


def test_report_environments_escape_what_a_template_forgets_to() -> None:
    """A template that prints a field plainly is still inert: escaping is the environments' default."""
    from responder.export.render import _ENVIRONMENTS, md_code

    html_out = _ENVIRONMENTS["html"].from_string("<td>{{ v }}</td>").render(v=EVIL)
    assert "<script>" not in html_out and "&lt;script&gt;alert(1)&lt;/script&gt;" in html_out
    md_out = _ENVIRONMENTS["md"].from_string("| {{ v }} | {{ c }} |").render(v=EVIL, c=md_code("a`b"))
    assert "<script>" not in md_out and "\n" not in md_out
    assert len(re.split(r"(?<!\\)\|", md_out)) == 4  # the hostile pipes add no column
    assert md_out.endswith("| `a'b` |")  # a code span made on purpose passes through as built


def test_report_shortens_hashes_on_screen_but_keeps_them_whole_and_sizes_read_as_people_read(
    tmp_path: Path,
) -> None:
    from responder.export.render import size_text
    from responder.sizes import human_size

    assert [human_size(n) for n in (0, 1023, 1024, 1536, 5 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 GiB",
    ]
    assert size_text(123) == "123 B" and size_text(2**20) == "1.0 MiB (1048576 bytes)"
    timeline = build(tmp_path)
    text = render(timeline, "html")
    whole = "b" * 64
    # the full hash is the code element's text (copy takes it) and its title (hover shows it)
    assert text.count(f'title="{whole}">{whole}</code>') == 2
    assert '<span title="123 bytes">123 B</span>' in text
    assert "123 B" in render(timeline, "md")
