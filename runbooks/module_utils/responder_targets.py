# -*- coding: utf-8 -*-
"""Fleet targets on one host: resolve selectors to full container IDs, and run one acting
module over many containers in a single invocation, with a result per container.

An acting module's `container` argument is either one reference (a string: the module acts on
that container and exits as it always has) or a list of full container IDs (the host's share of
a fleet incident, resolved by the resolve_targets role). For a list, run_for_targets calls the
module's `act` once per container, in a few threads, with a stand-in module whose fail_json and
exit_json end that one container's work instead of the process; one container failing (gone,
refused, timed out, held by another incident) fails that container only.

The host's result then carries every container's outcome; the module fails as a whole only when
no container succeeded and some failed. Containers that are gone or held by another incident are
dropped from `responder_targets` (the host fact the following steps act on); others stay, so a
later step (a snapshot after a failed isolation) still gets its chance.

Runs on the target host under whatever Python Ansible finds there, so it sticks to the stdlib.
"""

from __future__ import absolute_import, division, print_function

import json
import re
import threading

try:
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 targets are not supported
    ThreadPoolExecutor = None

from ansible.module_utils.responder_docker import FULL_ID, DockerError, RejectedInput, validate_reference

__metaclass__ = type

CONTAINER_REF = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
LABEL_SELECTOR = re.compile(r"^label:([a-zA-Z0-9][a-zA-Z0-9._/-]{0,127})=([^\x00-\x1f,\x7f]{0,256})$")
IMAGE_SELECTOR = re.compile(r"^image:([a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,255})$")
# Why a container left the set the next steps act on.
DROPPED_REASONS = ("target_gone", "container_held")


def parse_selector(text):
    """(kind, value, extra) for a selector: ("ref", ref, None), ("label", key, value) or
    ("image", ref, None); RejectedInput for anything else (the controller checked too)."""
    if not isinstance(text, str):
        raise RejectedInput("selector %r is not a string" % (text,))
    match = LABEL_SELECTOR.match(text)
    if match:
        return "label", match.group(1), match.group(2)
    match = IMAGE_SELECTOR.match(text)
    if match:
        return "image", match.group(1), None
    if CONTAINER_REF.match(text):
        validate_reference(text)
        return "ref", text, None
    raise RejectedInput("%r is not a container reference, label:KEY=VALUE or image:REF" % text)


def list_containers(docker, label=None):
    """Every container on this host (running or not) as (full ID, name, image ID, labels)."""
    if docker.use_api:
        path = "/containers/json?all=1"
        if label is not None:
            path += "&filters=" + quote(json.dumps({"label": ["%s=%s" % label]}), safe="")
        rows = docker.api_get(path)
        return [
            (
                row.get("Id", ""),
                ((row.get("Names") or ["/"])[0] or "/").lstrip("/"),
                row.get("ImageID", ""),
            )
            for row in rows
        ]
    argv = ["ps", "--all", "--no-trunc", "--format", "{{.ID}}\t{{.Names}}"]
    if label is not None:
        argv[1:1] = ["--filter", "label=%s=%s" % label]
    out = []
    for line in docker.run(argv).splitlines():
        cid, _, name = line.partition("\t")
        image = (docker.inspect(cid).get("Image") or "") if FULL_ID.match(cid) else ""
        out.append((cid, name.split(",")[0], image))
    return out


def image_id(docker, ref):
    """The full image ID (sha256:...) that `ref` names on this host, or None if it names none."""
    try:
        data = (
            docker.inspect(ref, kind="image")
            if not docker.use_api
            else docker.api_get("/images/%s/json" % quote(ref, safe=""))
        )
    except DockerError as exc:
        if "no such" in str(exc).lower():
            return None
        raise
    image = data.get("Id") or ""
    return image if image.startswith("sha256:") else None


def resolve_selectors(docker, selectors):
    """(targets, unmatched): targets maps full ID -> {name, image_id, matched_by: [selectors]}
    in the order found; unmatched lists the selectors that matched nothing on this host."""
    targets = {}
    unmatched = []
    parsed = [(selector, parse_selector(selector)) for selector in selectors]
    refs = [p for p in parsed if p[1][0] == "ref"]
    # One listing answers many references (a storm names every container): one API call
    # instead of an inspect each. A single reference is inspected as the acting modules do.
    everything = list_containers(docker) if len(refs) > 1 or len(refs) < len(parsed) else None
    for selector, (kind, value, extra) in parsed:
        found = []
        if kind == "ref" and everything is not None:
            found = _match_reference(everything, value)
        elif kind == "ref":
            try:
                data = docker.resolve(value)
                found.append((data["Id"], (data.get("Name") or "").lstrip("/"), data.get("Image") or ""))
            except DockerError as exc:
                if exc.reason != "target_gone":
                    raise
        elif kind == "label":
            found = list_containers(docker, label=(value, extra))
        else:
            wanted = image_id(docker, value)
            if wanted is not None:
                found = [row for row in everything or [] if row[2] == wanted]
        if not found:
            unmatched.append(selector)
        for cid, name, image in found:
            if not FULL_ID.match(cid):
                raise DockerError("docker listed a malformed container ID %r" % cid)
            entry = targets.setdefault(cid, {"container_name": name, "image_id": image, "matched_by": []})
            entry["matched_by"].append(selector)
    return targets, unmatched


def _match_reference(rows, ref):
    """What `docker inspect REF` would pick, from a listing: the full ID, else the exact name,
    else the one ID that starts with REF; several such IDs make REF ambiguous."""
    exact = [row for row in rows if row[0] == ref] or [row for row in rows if row[1] == ref]
    if exact:
        return exact[:1]
    prefixed = [row for row in rows if row[0].startswith(ref)]
    if len(prefixed) > 1:
        raise RejectedInput(
            "container reference %r is ambiguous: several containers match; give more of the ID or the exact name"
            % ref
        )
    return prefixed


class _Finished(Exception):
    """One container's work ended (exit_json or fail_json on the stand-in module)."""

    def __init__(self, failed, result):
        Exception.__init__(self, result.get("msg", ""))
        self.failed = failed
        self.result = result


class _OneTarget(object):
    """What `act` sees for one container of a fleet: the real module, except that `params`
    name this container and exit_json/fail_json end this container's work only."""

    def __init__(self, module, cid):
        self._module = module
        self.params = dict(module.params, container=cid)
        self.check_mode = module.check_mode

    def exit_json(self, **result):
        raise _Finished(False, result)

    def fail_json(self, msg="", **result):
        result["msg"] = msg
        raise _Finished(True, result)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _act_on(module, docker, act, cid):
    try:
        act(_OneTarget(module, cid), docker, cid)
        return {"outcome": "failed", "message": "the action ended without a result", "reason": "no_result"}
    except _Finished as done:
        result = done.result
        output = result.get("output") if isinstance(result.get("output"), dict) else {}
        entry = {
            "outcome": "failed" if done.failed else "succeeded",
            "message": str(result.get("msg") or ""),
            "reason": str(result.get("reason") or ""),
            "changed": bool(result.get("changed")),
            "output": output,
        }
        if result.get("reason") == "container_held":
            entry["outcome"] = "held"
            entry["held_by"] = result.get("held_by")
        return entry
    except DockerError as exc:
        return {"outcome": "failed", "message": str(exc), "reason": exc.reason, "output": {}}
    except Exception as exc:  # one container's bug must not cost the others their containment
        return {
            "outcome": "failed",
            "message": "%s: %s" % (type(exc).__name__, exc),
            "reason": "module_error",
        }


def run_for_targets(module, docker, act, workers=8):
    """Run `act(module, docker, ref)` on the module's `container` argument: one reference as
    before, or each container of a fleet list; exits the module with every container's result."""
    container = module.params["container"]
    if isinstance(container, int) and not isinstance(container, bool):
        container = str(container)  # a reference of digits only ("9") reaches the module as a number
    if isinstance(container, str):
        act(module, docker, container)
        return
    if not isinstance(container, list) or not all(isinstance(c, str) and FULL_ID.match(c) for c in container):
        module.fail_json(
            msg="container must be one reference or a list of full container IDs", reason="rejected_input"
        )
    ids = list(dict.fromkeys(container))
    results = {}
    lock = threading.Lock()

    def one(cid):
        entry = _act_on(module, docker, act, cid)
        entry["container_name"] = (entry.get("output") or {}).get("container_name") or ""
        with lock:
            results[cid] = entry

    if ids and ThreadPoolExecutor is not None and workers > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(ids))) as pool:
            list(pool.map(one, ids))
    else:
        for cid in ids:
            one(cid)
    targets = dict((cid, results[cid]) for cid in ids)
    failed = [cid for cid in ids if targets[cid]["outcome"] == "failed"]
    held = dict((cid, targets[cid].get("held_by")) for cid in ids if targets[cid]["outcome"] == "held")
    succeeded = [cid for cid in ids if targets[cid]["outcome"] == "succeeded"]
    remaining = [
        cid
        for cid in ids
        if targets[cid]["outcome"] != "held" and targets[cid].get("reason") not in DROPPED_REASONS
    ]
    output = {
        "fleet": True,
        "targets": targets,
        "succeeded": succeeded,
        "failed": failed,
        "held": held,
        "remaining": remaining,
        # Every container's evidence, for the role's one fetch task (recorded per container).
        "evidence": [
            item for cid in ids for item in (targets[cid].get("output") or {}).get("evidence") or []
        ],
    }
    changed = any(t.get("changed") for t in targets.values())
    if failed and not succeeded:
        reasons = set(targets[cid].get("reason") for cid in failed)
        module.fail_json(
            msg="failed on all %d container(s) acted on: %s" % (len(failed), _failures(targets, failed)),
            reason=reasons.pop() if len(reasons) == 1 else "targets_failed",
            output=output,
            changed=changed,
        )
    module.exit_json(
        changed=changed,
        output=output,
        ansible_facts={"responder_output": output, "responder_targets": remaining},
    )


def _failures(targets, failed):
    shown = [
        "%s (%s): %s" % (targets[cid].get("container_name") or cid[:12], cid[:12], targets[cid]["message"])
        for cid in failed[:5]
    ]
    return "; ".join(shown) + ("; and %d more" % (len(failed) - 5) if len(failed) > 5 else "")
