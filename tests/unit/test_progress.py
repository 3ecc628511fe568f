"""Live progress: a long step shows its elapsed time (a rewritten status line on a terminal,
periodic lines otherwise), and -v shows Ansible's own output."""

from __future__ import annotations

import io
import time

from responder.execution.events import RunnerEvent
from responder.progress import Progress
from responder.timeline import Event
from responder.vocabulary import EventKind


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _event(kind: str, step: str, message: str = "", **data: object) -> Event:
    return Event("INC-1", 1, "2026-12-03T00:00:00Z", kind, step, None, "responder", message, data)


def _wait_for(out: io.StringIO, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while text not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    return out.getvalue()


def test_a_long_step_shows_its_elapsed_time_on_a_terminal() -> None:
    out = _Terminal()
    progress = Progress(out)
    progress.TICK = 0.05
    progress.timeline_event(_event(EventKind.STEP_STARTED, "snapshot", action="snapshot_filesystem"))
    shown = _wait_for(out, "... running: snapshot")
    assert "\r\x1b[K  ... running: snapshot 0 s" in shown
    progress.timeline_event(
        _event(EventKind.STEP_FINISHED, "snapshot", "step snapshot: succeeded", outcome="succeeded")
    )
    tail = out.getvalue().rsplit("[ok  ] step snapshot: succeeded", 1)
    assert tail[0].endswith("\r\x1b[K")  # the status line was cleared before the event printed
    time.sleep(0.2)
    assert "running" not in tail[1]  # nothing runs: the status line stays gone


def test_without_a_terminal_a_long_step_prints_periodic_lines() -> None:
    out = io.StringIO()
    progress = Progress(out)
    progress.TICK, progress.QUIET_TICK = 0.02, 0.1
    progress.timeline_event(_event(EventKind.STEP_STARTED, "snapshot", action="snapshot_filesystem"))
    shown = _wait_for(out, "  ... still running: snapshot")
    assert "\r" not in shown and "\x1b" not in shown  # plain lines for a log file


def test_verbose_shows_ansibles_own_output_and_quiet_shows_nothing() -> None:
    event = RunnerEvent(
        "runner_on_ok", 3, "u", "t", "responder step: isolate", "Disconnect", "x", "localhost", "r",
        stdout="ok: [localhost]\nchanged: 1",
    )  # fmt: skip
    loud, plain, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    Progress(loud, verbose=True).runner_event(event)
    Progress(plain).runner_event(event)
    Progress(quiet, quiet=True, verbose=True).runner_event(event)
    assert loud.getvalue() == "    | ok: [localhost]\n    | changed: 1\n"
    assert plain.getvalue() == "" and quiet.getvalue() == ""


def test_a_long_export_shows_bytes_written_and_the_rate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The evidence being written (a growing .partial under the incident's directory, on the host
    root or the controller's per-host directory) shows in the status line with its rate."""
    from responder.evidence_watch import EvidenceWatch

    host_root, controller = tmp_path / "host", tmp_path / "evidence"
    (host_root / "INC-1").mkdir(parents=True)
    (controller / "INC-1" / "dockerhost").mkdir(parents=True)
    out = _Terminal()
    progress = Progress(out, watch=EvidenceWatch((host_root, controller)))
    progress.TICK = 0.2
    progress.timeline_event(_event(EventKind.STEP_STARTED, "snapshot", action="snapshot_filesystem"))
    partial = host_root / "INC-1" / "abc-rootfs.tar.partial"
    with partial.open("wb") as growing:
        for _ in range(12):
            growing.write(b"\0" * (4 << 20))
            growing.flush()
            time.sleep(0.05)
        shown = _wait_for(out, "MiB/s)")
    assert "... running: snapshot" in shown and "MiB written, " in shown, shown
    partial.rename(partial.with_suffix(""))  # collected: the host file is evidence now
    fetched = controller / "INC-1" / "dockerhost" / "abc-rootfs.tar.partial"
    fetched.write_bytes(b"\0" * (3 << 20))
    assert "3.0 MiB written" in _wait_for(out, "3.0 MiB written")  # the controller's copy arriving
    fetched.unlink()
    time.sleep(0.5)
    assert not out.getvalue().rsplit("\r", 1)[-1].count("written")  # nothing in flight: no bytes shown
    progress.timeline_event(
        _event(EventKind.STEP_FINISHED, "snapshot", "step snapshot: succeeded", outcome="succeeded")
    )


def test_without_a_terminal_the_interval_between_lines_is_configurable() -> None:
    out = io.StringIO()
    progress = Progress(out, quiet_tick=0.1)
    progress.TICK = 0.02
    progress.timeline_event(_event(EventKind.STEP_STARTED, "snapshot", action="snapshot_filesystem"))
    assert "  ... still running: snapshot" in _wait_for(out, "  ... still running: snapshot")
