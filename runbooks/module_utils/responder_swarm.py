# -*- coding: utf-8 -*-
"""Holding a Swarm service so that it does not replace the task responder stops, and giving it
back on release.

A stopped task is replaced within seconds by a new task from the same image, on the service's
networks and not isolated: containment undone by the orchestrator. Scaling the service to 0
would prevent that, but Swarm then removes the tasks' containers, the suspect's included. So the
service is held by placement instead: a constraint no node satisfies
(`node.labels.responder_hold==<incident>`), applied to every task at once (update parallelism
0). Swarm stops its tasks and keeps their containers (task history), and the replacement tasks
stay pending ("no suitable node"). This works for replicated and global services alike.
Release removes that constraint and puts the update parallelism back, on the service's current
spec (a secret rotated meanwhile stays rotated); Swarm then starts the service's tasks again.
"""

from __future__ import absolute_import, division, print_function

import json
import re
import time
from urllib.parse import quote

from ansible.module_utils.responder_docker import DockerError

__metaclass__ = type

SERVICE_ID = re.compile(r"^[a-z0-9]{25}$")
HOLD_LABEL = "node.labels.responder_hold=="


def _service(docker, service_id):
    if not SERVICE_ID.match(service_id or ""):
        raise DockerError("%r is not a Swarm service ID" % service_id, "rejected_input")
    return docker.api_get("/services/%s" % service_id)


def _update(docker, service, spec):
    docker.api(
        "POST", "/services/%s/update?version=%d" % (service["ID"], service["Version"]["Index"]), body=spec
    )


def _constraints(spec):
    return spec.setdefault("TaskTemplate", {}).setdefault("Placement", {}).setdefault("Constraints", [])


def running_tasks(docker, service_id):
    """IDs of the service's containers running on this node."""
    filters = json.dumps({"label": ["com.docker.swarm.service.id=%s" % service_id], "status": ["running"]})
    return [c["Id"] for c in docker.api_get("/containers/json?filters=%s" % quote(filters)) or []]


def hold(docker, service_id, incident, wait=60.0):
    """Pin the service to no node and wait until none of its tasks runs here; the record release
    needs to give it back."""
    service = _service(docker, service_id)
    spec = service["Spec"]
    name = spec.get("Name") or service_id
    constraint = HOLD_LABEL + re.sub(r"[^A-Za-z0-9_]", "_", incident or "manual")
    update = spec.setdefault("UpdateConfig", {})
    record = {
        "kind": "swarm",
        "service_id": service["ID"],
        "service_name": name,
        "mode": "replicated" if "Replicated" in (spec.get("Mode") or {}) else "global",
        "replicas": ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas"),
        "constraint": constraint,
        "update_parallelism": update.get("Parallelism"),
    }
    if constraint not in _constraints(spec):
        _constraints(spec).append(constraint)
        update["Parallelism"] = 0  # every task at once: a held rollout would leave the rest running
        _update(docker, service, spec)
    deadline = time.time() + wait
    while running_tasks(docker, service["ID"]) and time.time() < deadline:
        time.sleep(0.5)
    record["still_running"] = running_tasks(docker, service["ID"])
    record["verified"] = not record["still_running"]
    record["summary"] = (
        "Swarm service %s held (%s): none of its tasks runs until release, and their containers are kept"
        % (name, constraint)
    )
    return record


def restore(docker, record):
    """Take the hold off (the constraint responder added, the update parallelism it changed)."""
    try:
        service = _service(docker, str(record.get("service_id") or ""))
    except DockerError as exc:
        if "not found" in str(exc).lower() or "no such service" in str(exc).lower():
            return {"restored": False, "note": "the service no longer exists"}
        raise
    constraint = str(record.get("constraint") or "")
    if not constraint.startswith(HOLD_LABEL):
        raise DockerError("recorded hold %r is not one responder makes" % constraint, "rejected_input")
    spec = service["Spec"]
    constraints = _constraints(spec)
    if constraint not in constraints:
        return {"restored": False, "note": "the hold was already taken off; the service is left as it is"}
    constraints.remove(constraint)
    update = spec.setdefault("UpdateConfig", {})
    if record.get("update_parallelism") is None:
        update.pop("Parallelism", None)
    else:
        update["Parallelism"] = int(record["update_parallelism"])
    _update(docker, service, spec)
    after = _service(docker, service["ID"])
    return {"restored": constraint not in _constraints(after["Spec"]), "replicas": record.get("replicas")}
