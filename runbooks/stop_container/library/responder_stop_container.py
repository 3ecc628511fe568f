#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Stop a container while preserving its logs, with restarts disabled first."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: responder_stop_container
short_description: Evidence-preserving stop of a container
options:
  container: {description: Container name or ID prefix., type: str, required: true}
  timeout: {description: Seconds before SIGKILL., type: int, default: 10}
  kill: {description: SIGKILL at once., type: bool, default: false}
  hold_orchestrator: {description: Hold a Swarm task's service (placed on no node) first., type: bool, default: false}
  # A container run by a systemd unit (Podman's PODMAN_SYSTEMD_UNIT label) is always stopped through its unit.
  evidence_root: {description: Absolute evidence directory on this host., type: str, required: true}
  incident: {description: Incident ID., type: str, required: true}
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.responder_docker import (
    Docker,
    DockerError,
    capture_logs_and_inspect,
    claim_for_run,
    evidence_dir,
    exit_cleanly_on_termination,
    summary,
)
from ansible.module_utils.responder_swarm import hold as swarm_hold
from ansible.module_utils.responder_systemd import hold as unit_hold
from ansible.module_utils.responder_targets import run_for_targets


def captured(directory, cid, suffix):
    return bool(glob.glob(os.path.join(directory, "%s-*-%s" % (cid[:12], suffix))))


def keep_restart_off(docker, cid, output):
    """Set the restart policy to no. Podman's Docker-compatible API cannot change it on an
    existing container (no POST /containers/{id}/update before Podman 5): there, a stop asked
    through the API is a user stop, which Podman does not undo, and only its boot-time
    podman-restart.service would start it again; the step says so instead of failing.
    Returns True when the policy was left as it is on purpose."""
    try:
        docker.disable_restart(cid)
        return False
    except DockerError as exc:
        if "not found" not in str(exc).lower() or (docker.version() or {}).get("runtime") != "podman":
            raise
    output.setdefault("warnings", []).append(
        "Podman cannot change the restart policy of an existing container through its Docker API; "
        "it stays %s. Podman does not restart a container stopped on request, but at boot "
        "podman-restart.service starts containers whose policy is always: run `podman update "
        "--restart no %s` where Podman supports it, or keep that service from starting it"
        % (output.get("restart_policy"), cid[:12])
    )
    output["restart_policy_kept"] = True
    return True


def act(module, docker, ref):
    """Act on one container (`ref`); ends with module.exit_json or module.fail_json."""
    p = module.params
    try:
        data = docker.resolve(ref)
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    cid = data["Id"]
    facts = summary(data)
    claimed_from = claim_for_run(module, data)
    # A paused container is Running too. One that has already exited (a retried step, or it died
    # on its own) is not stopped again: `docker kill` would fail on it.
    running = bool((data.get("State") or {}).get("Running"))
    output = dict(
        facts,
        previous_restart_policy=facts["restart_policy"],
        captured_now=[],
        evidence=[],
        already_stopped=not running,
    )
    if claimed_from:
        output["claimed_from"] = claimed_from
    try:  # check mode only looks at what was captured; a real run walks (and creates) the directory
        directory = (
            os.path.join(os.path.normpath(p["evidence_root"]), p["incident"])
            if module.check_mode
            else evidence_dir(p["evidence_root"], p["incident"])
        )
    except DockerError as exc:
        module.fail_json(msg=str(exc), reason=exc.reason)
    # With log driver `none` there are no logs to lose (nor to capture).
    no_logs = facts["log_driver"] == "none"
    have_logs = (no_logs or captured(directory, cid, "logs.txt")) and captured(directory, cid, "inspect.json")
    have_fs = captured(directory, cid, "rootfs.tar")
    missing = " and ".join(x for x, ok in (("its filesystem", have_fs), ("its logs", have_logs)) if not ok)
    if facts["auto_remove"] and missing and module.check_mode:
        # A dry run has captured nothing yet; the real run checks again, after the steps before it.
        output.setdefault("warnings", []).append(
            "started with --rm: stopping it deletes it, so the real run refuses this step unless %s "
            "were captured by then (snapshot_filesystem and preserve_logs earlier in the playbook)" % missing
        )
    elif facts["auto_remove"] and missing:
        module.fail_json(
            msg="container %s (%s) was started with --rm: stopping it deletes it with its logs and filesystem, and "
            "this incident has not captured %s. Run snapshot_filesystem and preserve_logs first, or pause "
            "and isolate it instead of stopping it." % (facts["container_name"], cid[:12], missing),
            reason="refused_autoremove",
            output=output,
        )
    owner = facts.get("owner") or {}
    swarm = owner.get("kind") == "swarm"
    unit = owner.get("unit") if owner.get("kind") == "systemd" else None
    if module.check_mode:
        steps = [] if have_logs else ["capture logs and inspect"]
        if swarm and p["hold_orchestrator"]:
            steps.append(
                "hold Swarm service %s first (placed on no node), so it starts no replacement"
                % owner["service"]
            )
        if unit:
            steps.append(
                "stop systemd unit %s, held by a start condition so that systemd starts no replacement%s"
                % (unit, " (the unit removes the container: --rm)" if facts["auto_remove"] else "")
            )
        if facts["restart_policy"] != "no":
            steps.append("set restart policy %s -> no" % facts["restart_policy"])
        if running:
            steps.append("kill" if p["kill"] else "stop (timeout %ss)" % p["timeout"])
        output["would_change"] = ", ".join(steps) or "nothing: already stopped, restarts already off"
        module.exit_json(changed=bool(steps), output=output, ansible_facts={"responder_output": output})

    policy_kept = False
    try:
        if not have_logs:
            warnings = output.setdefault("warnings", [])
            directory = evidence_dir(p["evidence_root"], p["incident"], warnings)
            output["evidence"] = capture_logs_and_inspect(
                docker,
                directory,
                cid,
                facts["log_driver"],
                warnings,
                tty=bool((data.get("Config") or {}).get("Tty")),
                note=", before stop",
            )
            output["captured_now"] = [item["kind"] for item in output["evidence"]]
            no_logs = "logs" not in output["captured_now"]
        if swarm and p["hold_orchestrator"]:
            # before the stop: a stopped task is replaced by a new one, from the same image, not isolated
            output["held_service"] = swarm_hold(docker, owner["service_id"], p["incident"])
            if not output["held_service"]["verified"]:
                module.fail_json(
                    msg="Swarm service %s is held but tasks still run: %s"
                    % (owner["service"], ", ".join(c[:12] for c in output["held_service"]["still_running"])),
                    reason="verification_failed",
                    output=output,
                )
            running = bool((docker.inspect(cid).get("State") or {}).get("Running"))
        elif swarm:
            output.setdefault("warnings", []).append(
                "Swarm service %s will start a replacement task for this one (hold_orchestrator is off)"
                % owner["service"]
            )
        if unit:
            # Through the unit, whatever hold_orchestrator says: a container stopped under a
            # running unit is replaced by systemd (Restart=, `--replace`), and removed with it.
            output["held_service"] = unit_hold(unit, p["incident"], facts["container_name"])
            if not output["held_service"]["verified"]:
                module.fail_json(
                    msg="systemd unit %s is still %s after stop"
                    % (unit, output["held_service"]["active_state"]),
                    reason="verification_failed",
                    output=output,
                )
            try:
                running = bool((docker.inspect(cid).get("State") or {}).get("Running"))
            except DockerError as exc:
                if "no such" not in str(exc).lower() and "not found" not in str(exc).lower():
                    raise
                output["verified"] = (
                    "removed by its systemd unit %s on stop; logs and filesystem were captured in this "
                    "incident, and the unit is held" % unit
                )
                module.exit_json(changed=True, output=output, ansible_facts={"responder_output": output})
        if facts["restart_policy"] != "no":
            # before the stop: with `always`, a daemon restart would bring it back
            policy_kept = keep_restart_off(docker, cid, output)
        if running and p["kill"]:
            docker.kill(cid)
        elif running:
            docker.stop(cid, p["timeout"])
    except DockerError as exc:
        module.fail_json(msg="stop failed: %s" % exc, reason=exc.reason, output=output)

    changed = running or facts["restart_policy"] != "no" or bool(output["captured_now"])
    if facts["auto_remove"]:
        output["verified"] = (
            "removed by the daemon (--rm); logs and filesystem were captured in this incident"
        )
        module.exit_json(changed=changed, output=output, ansible_facts={"responder_output": output})
    try:
        after = docker.inspect(cid)
        if not no_logs:  # what could be read before the stop still can
            docker.check_logs_readable(cid)
    except DockerError as exc:
        module.fail_json(msg="stop not verified: %s" % exc, reason="verification_failed", output=output)
    state = after.get("State") or {}
    restart = ((after.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    output["status"] = state.get("Status")
    output["restart_policy"] = restart
    # `created`: it never ran, and was not started by us either
    stopped = state.get("Status") == "exited" or (not running and state.get("Status") == "created")
    if not stopped or (restart != "no" and not policy_kept):
        module.fail_json(
            msg="stop not verified: status %s, restart policy %s" % (state.get("Status"), restart),
            reason="verification_failed",
            output=output,
        )
    output["verified"] = "exists, %s, restart policy %s, %s" % (
        state.get("Status"),
        "no" if restart == "no" else "%s (Podman: see warnings)" % restart,
        "no logs to read (log driver %s)" % facts["log_driver"] if no_logs else "logs readable",
    )
    module.exit_json(changed=changed, output=output, ansible_facts={"responder_output": output})


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="raw", required=True),
            timeout=dict(type="int", default=10),
            kill=dict(type="bool", default=False),
            hold_orchestrator=dict(type="bool", default=False),
            evidence_root=dict(type="str", required=True),
            incident=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    exit_cleanly_on_termination()
    run_for_targets(module, Docker(), act, workers=8)


if __name__ == "__main__":
    main()
