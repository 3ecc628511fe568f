"""One ansible-runner invocation for a batch of steps.

ansible-runner copies the process environment into its `command` artifact and into the
ansible-playbook process, so the environment is cut down to an allow-list after the config is
prepared. Secrets go through a 0600 file outside the private data dir that is deleted when the
run ends. Cancellation (SIGINT/SIGTERM, a step timeout) goes through cancel_callback, which makes
ansible-runner kill ansible-playbook's whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from responder.errors import RunnerError
from responder.execution import module_cache
from responder.execution.ansible_input import (
    StepInvocation,
    build_playbook,
    default_inventory,
    dump_extravars,
)
from responder.execution.events import Classifier, RunnerEvent, StepResult, from_runner

_ENV_ALLOW = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSH_AUTH_SOCK", "TERM"}
# Where the docker CLI finds the daemon on a local-connection host (rootless Docker, contexts, TLS).
_ENV_ALLOW |= {"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"}
_ENV_DENY_ANSIBLE = re.compile(r"PASS|TOKEN|SECRET|VAULT|CRED", re.I)


def allowed_env(name: str) -> bool:
    """Which inherited variables may reach Ansible (and its `command` artifact)."""
    if name in _ENV_ALLOW or name.startswith("LC_"):
        return True
    return name.startswith("ANSIBLE_") and not _ENV_DENY_ANSIBLE.search(name)


class CancelToken:
    """Set from a signal handler or a watchdog; polled by ansible-runner's cancel_callback."""

    def __init__(self) -> None:
        self._reason: str | None = None
        self._event = threading.Event()

    def cancel(self, reason: str) -> None:
        """Ask the run to stop, saying why (interrupted, timeout, a held container)."""
        if self._reason is None:
            self._reason = reason
        self._event.set()

    @property
    def reason(self) -> str | None:
        """Why the run was asked to stop, or None."""
        return self._reason

    def is_set(self) -> bool:
        """Whether the run was asked to stop."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as the run is cancelled."""
        return self._event.wait(seconds)


@dataclass(frozen=True)
class Batch:
    """Consecutive steps with no approval gate between them: one ansible-runner invocation."""

    incident_id: str
    name: str
    steps: Sequence[StepInvocation]
    private_data_dir: Path
    runbook_dirs: Sequence[Path]
    context: Mapping[str, Any]  # non-secret values under `responder` in extravars
    secret_values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # step -> arg -> value
    inventory: str | None = None
    limit: str | None = None
    check_mode: bool = False
    # Ansible's local temp dir, which holds its AnsiballZ module cache: kept across runs, so a
    # module is zipped once rather than on every incident.
    ansible_local_tmp: Path | None = None
    # Set for the modules on the targets through each play's `environment` (never secrets: a
    # process environment is readable in /proc by the same user).
    target_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """What one Ansible run came to: a result per step and ansible-runner's own status."""

    steps: list[StepResult]
    runner_status: str
    rc: int | None
    canceled: str | None
    artifacts: Path


class Executor(Protocol):
    """Runs a batch of steps; the engine's tests use a fake."""

    def run(self, batch: Batch, on_event: Callable[[RunnerEvent], None], cancel: CancelToken) -> BatchResult:
        """Run the batch, feeding events to `on_event`; stop when `cancel` is set."""
        ...


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _secret_dir() -> str:
    """tmpfs when there is one: secrets should not touch a disk that outlives the run."""
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return tempfile.gettempdir()


class AnsibleRunnerExecutor:
    """The real executor: ansible-runner in this process, ansible-playbook in a child group."""

    def prepare(self, batch: Batch, secrets_file: str | None) -> None:
        """The private data directory: playbook, inventory, extravars (all values `!unsafe`)."""
        root = batch.private_data_dir
        for sub in ("project", "env", "inventory"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        playbook = build_playbook(batch.steps, batch.target_env)
        _write(root / "project" / "main.yml", yaml.safe_dump(playbook, sort_keys=False, width=1 << 20))
        responder_vars: dict[str, Any] = dict(batch.context)
        responder_vars["steps"] = {s.step_id: dict(s.args) for s in batch.steps}
        if secrets_file:
            responder_vars["secrets_file"] = secrets_file
        _write(root / "env" / "extravars", dump_extravars({"responder": responder_vars}))
        if batch.inventory is None:
            _write(root / "inventory" / "hosts.yml", yaml.safe_dump(default_inventory()))

    def _secrets_file(self, batch: Batch) -> str | None:
        if not batch.secret_values:
            return None
        fd, path = tempfile.mkstemp(prefix="responder-", suffix=".json", dir=_secret_dir())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({k: dict(v) for k, v in batch.secret_values.items()}, handle)
        os.chmod(path, 0o600)
        return path

    def run(self, batch: Batch, on_event: Callable[[RunnerEvent], None], cancel: CancelToken) -> BatchResult:
        # Imported here so that `responder --help` and validation never pay for Ansible.
        """Run the batch through ansible-runner."""
        from ansible_runner.config.runner import RunnerConfig
        from ansible_runner.runner import Runner

        secrets_file = self._secrets_file(batch)
        try:
            self.prepare(batch, secrets_file)
            return self._run(batch, on_event, cancel, RunnerConfig, Runner)
        finally:
            if secrets_file:
                os.unlink(secrets_file)

    def _run(
        self,
        batch: Batch,
        on_event: Callable[[RunnerEvent], None],
        cancel: CancelToken,
        config_cls: Any,
        runner_cls: Any,
    ) -> BatchResult:
        root = batch.private_data_dir
        # Shared code of a runbooks directory: module_utils/ for modules, library/ for modules that
        # several roles use (a role's own modules live in its library/).
        module_utils = [str(d / "module_utils") for d in batch.runbook_dirs if (d / "module_utils").is_dir()]
        libraries = [str(d / "library") for d in batch.runbook_dirs if (d / "library").is_dir()]
        actions = [str(d / "action_plugins") for d in batch.runbook_dirs if (d / "action_plugins").is_dir()]
        envvars = {
            # ansible-runner turns host key checking off unless told otherwise; a responder
            # talking to possibly compromised infrastructure keeps it on by default.
            "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
            "ANSIBLE_ROLES_PATH": os.pathsep.join(str(d) for d in batch.runbook_dirs),
            "ANSIBLE_MODULE_UTILS": os.pathsep.join(module_utils),
            "ANSIBLE_LIBRARY": os.pathsep.join(libraries),
            "ANSIBLE_ACTION_PLUGINS": os.pathsep.join(actions),
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_SYSTEM_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_LOCAL_TEMP": str(batch.ansible_local_tmp or root / "tmp"),
            "ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "False",
        }
        if batch.ansible_local_tmp is not None:
            envvars.update(
                module_cache.ansible_env(
                    module_cache.module_cache_dir(batch.ansible_local_tmp, batch.runbook_dirs), os.environ
                )
            )
        if batch.inventory is None:
            # Our own inventory is YAML: skip the host_list, script and auto plugins Ansible would
            # try on it first.
            envvars["ANSIBLE_INVENTORY_ENABLED"] = "yaml"
        config = config_cls(
            private_data_dir=str(root),
            playbook="main.yml",
            inventory=batch.inventory or str(root / "inventory" / "hosts.yml"),
            limit=batch.limit,
            envvars=envvars,
            cmdline="--check" if batch.check_mode else None,
            quiet=True,
            suppress_env_files=True,
            ident="run",
        )
        config.prepare()
        # cancel_callback is polled only when pexpect's expect() returns: on output, or after this
        # many seconds of silence. The default (5 s) would delay Ctrl-C and step timeouts.
        config.pexpect_timeout = 0.5
        inherited = os.environ
        config.env = {
            k: v
            for k, v in config.env.items()
            if not (k in inherited and inherited[k] == v and not allowed_env(k))
        }
        # ansible-playbook lives next to this interpreter (a venv's bin/), which may not be on PATH.
        bin_dir = str(Path(sys.executable).parent)
        path = config.env.get("PATH", os.defpath)
        if bin_dir not in path.split(os.pathsep):
            config.env["PATH"] = bin_dir + os.pathsep + path
        classifier = Classifier([s.step_id for s in batch.steps])
        timeouts = {s.step_id: s.timeout for s in batch.steps}
        step_started: dict[str, float] = {}
        current: list[str] = []
        seen: set[str] = set()

        def handle(raw: dict[str, Any]) -> bool:
            event = from_runner(raw)
            if event.uuid in seen:  # ansible-runner can repeat events (ansible-runner#1071)
                return True
            seen.add(event.uuid)
            if event.kind == "playbook_on_play_start" and event.step_id:
                step_started[event.step_id] = time.monotonic()
                current[:] = [event.step_id]
            classifier.feed(event)
            on_event(event)
            return True

        stopped: list[bool] = []

        def should_cancel() -> bool:
            if current:
                sid = current[0]
                if time.monotonic() - step_started[sid] > timeouts[sid]:
                    cancel.cancel("timeout")
            if cancel.is_set() and not stopped:
                stopped.append(True)
                # ansible-runner only kills ansible-playbook's process group; modules on the local
                # connection run in groups of their own and would outlive it.
                stop_descendants()
            return cancel.is_set()

        runner = runner_cls(config, event_handler=handle, cancel_callback=should_cancel)
        try:
            status, rc = runner.run()
        except Exception as exc:  # ansible-runner raises plain exceptions for setup failures
            raise RunnerError(f"ansible-runner could not run: {exc}") from exc
        canceled = cancel.reason if status in ("canceled", "timeout") or cancel.is_set() else None
        if classifier.plays_started == 0 and not classifier.playbook_error:
            classifier.playbook_error = _tail(root / "artifacts" / "run" / "stdout")
        return BatchResult(
            steps=classifier.result(canceled=canceled, rc=rc),
            runner_status=status,
            rc=rc,
            canceled=canceled,
            artifacts=root / "artifacts" / "run",
        )


def _tail(path: Path, limit: int = 2000) -> str:
    """The end of ansible-playbook's output: where a playbook-level error is explained."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: the ppid follows the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def stop_descendants(grace: float = 3.0) -> list[int]:
    """SIGTERM every process below this one, then SIGKILL whatever is left after `grace` seconds."""
    children = _children_map()
    pending = list(children.get(os.getpid(), []))
    tree: list[int] = []
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in reversed(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 0)
        while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
            time.sleep(0.05)
    return tree


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
