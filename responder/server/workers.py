"""The worker pool: threads that take queued alerts and run each in its own process
(`responder.server.job`, which goes through the same Service as the CLI).

A process per run, not a thread: ansible-runner is not thread-safe, a crashing run cannot take
the server down, and the process runs with the same code, signals and timeline bookkeeping as
`responder run`. Each worker process asks the kernel for SIGTERM if the server dies
(PR_SET_PDEATHSIG), and on SIGTERM it stops its Ansible process tree and marks the incident
interrupted. The server itself keeps the webhook secrets; worker processes never see them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from responder.intake.store import AlertStore

log = logging.getLogger("responder.server")
# How many runs may be past their containment step, collecting evidence, per worker slot.
EVIDENCE_FACTOR = 3


class WorkerPool:
    """Threads that each take a queued alert and run it in a job process of its own."""

    def __init__(
        self,
        store: AlertStore,
        size: int,
        job_base: Mapping[str, Any],
        env: dict[str, str],
        log_dir: Path,
        on_orphan: Callable[[int, str, int], None] | None = None,
        group_wait: float = 0.0,
    ) -> None:
        self.store = store
        # Called with (alert, incident, exit code) when a worker exits leaving its incident open
        # (killed, crashed): the server marks it interrupted at once, not at its next start.
        self.on_orphan = on_orphan
        self.size = size
        # how long a lone alert waits for others to share its incident (0: only those queued together)
        self.group_wait = group_wait
        # where things are (settings locations, inventory): part of every job a worker is given
        self.job_base = dict(job_base)
        self.env = env
        self.log_dir = log_dir
        self._wake = threading.Condition()
        # Runs in their containment phase (from the claim to their first containment step's end).
        self._slots = threading.BoundedSemaphore(max(size, 1))
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._warm: dict[int, subprocess.Popen[bytes]] = {}  # started, waiting for a job
        self._procs_lock = threading.Lock()
        self.started = 0

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads: `size` may contain at once, and up to EVIDENCE_FACTOR times
        as many runs may be collecting evidence after their containment step."""
        for number in range(self.size * EVIDENCE_FACTOR):
            thread = threading.Thread(target=self._loop, name=f"worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Tell idle workers that an alert was queued."""
        with self._wake:
            self._wake.notify_all()

    def alive(self) -> bool:
        """Whether every worker thread still runs (readiness)."""
        return all(t.is_alive() for t in self._threads)

    @property
    def busy(self) -> int:
        """Job processes running now."""
        with self._procs_lock:
            return len(self._procs)

    def stop(self, grace: float) -> None:
        """Stop taking alerts; let running playbooks finish for `grace` seconds, then SIGTERM them
        (they record what was and was not done), then SIGKILL what is left."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        with self._procs_lock:
            waiting = list(self._warm.values())
            self._warm.clear()
        for proc in waiting:  # no job yet: nothing to drain
            with contextlib.suppress(OSError):
                proc.kill()
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.1)
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with self._procs_lock:
                procs = list(self._procs.values())
            if not procs:
                break
            for proc in procs:
                log.warning("stopping worker process %d (%s)", proc.pid, sig.name)
                proc.send_signal(sig)
            end = time.monotonic() + wait
            while self.busy and time.monotonic() < end:
                time.sleep(0.1)
        for thread in self._threads:
            thread.join(timeout=5)

    # work ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        """Take a containment slot, claim alerts, hand them to a process; the slot is given back
        once the run's containment step is done (or the process ends), so the next alert is
        contained while this run still collects evidence."""
        warm: _Warm | None = None
        while True:
            with self._wake:
                if self._stopping:
                    if warm is not None:
                        warm.discard()
                    return
            if not self._slots.acquire(timeout=1.0):
                continue
            released = False
            try:
                if warm is not None and warm.proc.poll() is not None:
                    warm.discard()  # it died waiting (its log says why): start another
                    warm = None
                if warm is None:
                    warm = self._start_warm()
                try:
                    group = self.store.claim_next(self.group_wait)
                except Exception:  # database busy: try again shortly
                    log.exception("could not claim the next alert")
                    group = []
                if not group:
                    self._slots.release()
                    released = True
                    with self._wake:
                        if not self._stopping:
                            # with group_wait, a queued alert becomes ready by itself: look again then
                            self._wake.wait(timeout=min(2.0, self.group_wait) if self.group_wait > 0 else 2.0)
                    continue
                released = True  # _run gives the slot back once containment is done
                self._run(group, warm, self._slots.release)
                warm = None
            finally:
                if not released:
                    self._slots.release()

    def _popen(self, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
        """`python -m responder.server.job`, its output to `log_path`, its stdin a pipe; with the
        read end of the pipe on which it says that its containment step is done."""
        phase_read, phase_write = os.pipe()
        env = {**self.env, "RESPONDER_SERVER_PID": str(os.getpid()), "RESPONDER_PHASE_FD": str(phase_write)}
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # own session: a Ctrl-C at the server's terminal drains the server (grace, then SIGTERM)
            # instead of reaching every running playbook at once
            proc = subprocess.Popen(
                [sys.executable, "-m", "responder.server.job"],
                stdin=subprocess.PIPE,
                stdout=fd,
                stderr=fd,
                env=env,
                start_new_session=True,
                pass_fds=(phase_write,),
            )
        except BaseException:
            os.close(phase_read)
            raise
        finally:
            os.close(fd)
            os.close(phase_write)
        return proc, phase_read

    def _spawn(self, job: Mapping[str, Any], log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
        """Start a job process with `job` (plus where things are) on stdin, all at once."""
        proc, phase = self._popen(log_path)
        _send(proc, json.dumps({**self.job_base, **job}) + "\n", close=True)
        return proc, phase

    def _start_warm(self) -> _Warm | None:
        """A job process started before there is a job: it imports what a run needs and waits
        for its job on stdin, so an alert does not wait for Python to start (about 0.25 s)."""
        path = self.log_dir / f"warm-{threading.current_thread().name}.log"
        try:
            proc, phase = self._popen(path)
        except OSError as exc:
            log.warning("could not start a warm worker process: %s", exc)
            return None
        _send(proc, json.dumps(dict(self.job_base)) + "\n", close=False)
        with self._procs_lock:
            self._warm[proc.pid] = proc
        return _Warm(proc, path, self, phase)

    def _hand_over(
        self, warm: _Warm | None, job: Mapping[str, Any], log_path: Path
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Give `job` to the warm process if it is still alive (its log becomes the alert's),
        else start a process for it now."""
        if warm is not None and warm.proc.poll() is None:
            with self._procs_lock:
                self._warm.pop(warm.proc.pid, None)
            with contextlib.suppress(OSError):
                warm.path.replace(log_path)
            if _send(warm.proc, json.dumps(dict(job)) + "\n", close=True):
                return warm.proc, warm.phase
            warm.discard()
        elif warm is not None:
            warm.discard()
        return self._spawn(job, log_path)

    def _run(
        self, group: list[int], warm: _Warm | None = None, contained: Callable[[], None] = lambda: None
    ) -> None:
        """One job process for a claimed alert, or for a storm's alerts that share one incident
        (the first is the lead: its log file, its incident). `contained` is called once, when
        the run says its containment step is done or when the process ends."""
        alert_id = group[0]
        log_path = self.log_dir / f"alert-{alert_id}.log"
        job: dict[str, Any] = {"job": "alert", "alert_id": alert_id}
        if len(group) > 1:
            job["group"] = group
        try:
            proc, phase = self._hand_over(warm, job, log_path)
        except OSError as exc:
            for member in group:
                self.store.finish_claim(member, f"could not start the worker process: {exc}")
            contained()
            return
        with self._procs_lock:
            self._procs[proc.pid] = proc
        self.started += 1
        try:
            for member in group:
                self.store.set_worker(member, proc.pid)
            try:
                os.read(phase, 64)  # "contained", or end of file once the process is gone
            finally:
                os.close(phase)
                contained()
            code = proc.wait()
        finally:
            with self._procs_lock:
                self._procs.pop(proc.pid, None)
        log.info("alert %s: worker process %d exited with %d", ",".join(map(str, group)), proc.pid, code)
        orphan = self.store.open_incident_of(alert_id)
        if orphan is not None and self.on_orphan is not None:
            self.on_orphan(alert_id, orphan, code)
        for member in group:
            self.store.finish_claim(
                member, f"worker exited with {code} before opening an incident: {_tail(log_path)}"
            )

    def run_job(self, job: Mapping[str, Any]) -> None:
        """A one-off job in the background (an approval from the API: carry the run on)."""

        def target() -> None:
            try:
                proc, phase = self._spawn(job, self.log_dir / "api-jobs.log")
                os.close(phase)  # a carried-on run takes no containment slot
            except OSError as exc:
                log.error("could not start the job %s: %s", job.get("job"), exc)
                return
            with self._procs_lock:
                self._procs[proc.pid] = proc
            try:
                proc.wait()
            finally:
                with self._procs_lock:
                    self._procs.pop(proc.pid, None)

        threading.Thread(target=target, name="api-job", daemon=True).start()


class _Warm:
    """A warm job process and the log it writes until it has a job."""

    def __init__(self, proc: subprocess.Popen[bytes], path: Path, pool: WorkerPool, phase: int) -> None:
        self.proc = proc
        self.path = path
        self.pool = pool
        self.phase = phase  # read end of its "containment done" pipe

    def discard(self) -> None:
        """Stop it (no job will come) and forget it."""
        with self.pool._procs_lock:
            self.pool._warm.pop(self.proc.pid, None)
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.phase)


def _send(proc: subprocess.Popen[bytes], text: str, close: bool) -> bool:
    """Write to a job process's stdin; False if it is already gone (its log says why)."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(text.encode())
        proc.stdin.flush()
        if close:
            proc.stdin.close()
        return True
    except OSError:
        return False


def _tail(path: Path, size: int = 600) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def die_with_parent() -> None:
    """In a worker process: get SIGTERM when the server goes (even by SIGKILL), and exit at once
    if it is already gone."""
    parent = os.environ.get("RESPONDER_SERVER_PID")
    if not parent:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(parent):
        raise SystemExit(130)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this ID exists (one of another user's counts as alive)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
