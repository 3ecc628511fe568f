"""What ansible-runner is handed: a generated playbook, extravars, and a default inventory.

The generated playbook is trusted text that responder writes from validated identifiers only
(step IDs, role names, host patterns). Every value — params, alert fields, rendered `with:`
arguments — travels in `env/extravars` as YAML tagged `!unsafe`: ansible-core 2.19 loads
`-e @file` as trusted templates, and !unsafe is what keeps `{{ lookup('pipe', ...) }}` inside a
value a literal string (see security reference §2.2, approach a). Secrets never go there at all.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from responder.execution.events import STEP_PLAY_PREFIX
from responder.playbook.model import OnFailure


@dataclass(frozen=True)
class StepInvocation:
    """One step as Ansible will run it."""

    step_id: str
    role: str
    args: Mapping[str, Any]
    secret_args: Mapping[str, str] = field(default_factory=dict)  # argument -> secret param name
    hosts: str = "all"
    on_failure: OnFailure = OnFailure.ABORT
    timeout: int = 600
    target_arg: str | None = None  # fleet: filled per host with that host's containers


class _UnsafeDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # No anchors: PyYAML tracks objects by id(), and the temporary key nodes built in
        # _plain_keys free ids that a later value may reuse, turning that value into an alias
        # of a key (a fleet's selectors came out as the string "targets"). Every value is
        # written out in full instead.
        return True


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("!unsafe", value)


def _plain_keys(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.MappingNode:
    # Keys are variable names, never templated: keep them plain so the file reads naturally.
    pairs = [
        (dumper.represent_scalar("tag:yaml.org,2002:str", str(k)), dumper.represent_data(v))
        for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
    ]
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs)


_UnsafeDumper.add_representer(str, _unsafe_str)
_UnsafeDumper.add_representer(dict, _plain_keys)


def dump_extravars(values: Mapping[str, Any]) -> str:
    """YAML in which every string value is `!unsafe` (keys are never templated)."""
    return yaml.dump(dict(values), Dumper=_UnsafeDumper, sort_keys=True, allow_unicode=True, width=1 << 20)


def _secret_expr(step_id: str, arg: str) -> str:
    # Trusted template written by responder; it reads only responder's own keys. Lookup results
    # are untrusted data in Ansible, so the secret value itself is never templated.
    return (
        "{{ (lookup('ansible.builtin.file', responder.secrets_file) | from_json)"
        f"['{step_id}']['{arg}'] }}}}"
    )


# Set for every module on every target, under responder's own settings. With pipelining, Python
# reads the module (a ~170 kB AnsiballZ script) from stdin, and where PYTHONUNBUFFERED is set in
# the target's environment (/etc/environment on some hosts, images built for Python services) it
# reads that script one byte per read(2): 60-70 ms of system time per task, paid by every step.
# CPython treats an empty value as unset. (The controller's own copy never gets this far: the
# runner's environment allow-list drops it.)
MODULE_ENV: Mapping[str, str] = {"PYTHONUNBUFFERED": ""}

# Where a host's Docker API is not the default socket (several daemons on one machine, rootless
# Docker, Podman's Docker-compatible socket), the inventory says so per host with
# `responder_docker_host: unix:///path/docker.sock`; modules get it as DOCKER_HOST. Unset, the
# key is omitted and the host's own DOCKER_HOST (if any) stands. Trusted text; it reads a host var.
DOCKER_HOST_EXPR = "{{ responder_docker_host | default(omit) }}"


# A fleet step's containers on this host: what the resolve_targets step (or an earlier step of
# this run, having dropped containers that are gone or held) left in the host fact, else what
# the engine pinned for the host from earlier runs of this incident. Trusted text; it reads data.
_TARGETS_EXPR = (
    "{{ responder_targets if responder_targets is defined "
    "else (responder.targets | default({}))[inventory_hostname] | default([]) }}"
)


def build_playbook(
    steps: Sequence[StepInvocation], environment: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One play per step, so events name their step and a failed host drops out of later steps.

    `environment` comes from responder's own settings (never from params or alerts) and is set,
    over MODULE_ENV and the host's `responder_docker_host`, for every module of every play, over
    SSH as on the local connection."""
    environment = {**MODULE_ENV, "DOCKER_HOST": DOCKER_HOST_EXPR, **(environment or {})}
    plays: list[dict[str, Any]] = []
    for step in steps:
        role_vars: dict[str, str] = {
            arg: f"{{{{ responder.steps.{step.step_id}.{arg} }}}}" for arg in step.args
        }
        for arg in step.secret_args:
            role_vars[arg] = _secret_expr(step.step_id, arg)
        if step.target_arg:
            role_vars[step.target_arg] = _TARGETS_EXPR
        include: dict[str, Any] = {
            "name": f"{STEP_PLAY_PREFIX}{step.step_id}",
            # responder has already checked the arguments against this role's argument_specs, before
            # and after rendering; a second check in Ansible would cost a task per step.
            "ansible.builtin.import_role": {"name": step.role, "rolespec_validate": False},
            "vars": role_vars,
        }
        if step.secret_args:
            include["no_log"] = True
        # No Ansible `timeout:` here: on expiry it abandons the module process instead of killing it.
        # The step timeout is enforced by the runner's watchdog, which stops the whole process tree.
        block: dict[str, Any] = {"block": [include]}
        if step.on_failure is OnFailure.CONTINUE:
            block["rescue"] = [
                {
                    "name": f"{STEP_PLAY_PREFIX}{step.step_id} failed; on_failure is continue",
                    "ansible.builtin.meta": "clear_host_errors",
                }
            ]
        play: dict[str, Any] = {
            "name": f"{STEP_PLAY_PREFIX}{step.step_id}",
            "hosts": step.hosts,
            "gather_facts": False,
        }
        play["environment"] = dict(environment)
        play["tasks"] = [block]
        plays.append(play)
    return plays


def default_inventory() -> dict[str, Any]:
    """localhost over the local connection, with the controller's own Python."""
    return {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                }
            }
        }
    }
