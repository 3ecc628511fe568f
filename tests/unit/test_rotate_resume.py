"""Swarm rotation retried within one incident (rotate_secrets' module logic, against a scripted
docker): it finishes with the version the first attempt created instead of making another.

The whole rotation against a real swarm is covered by the end-to-end test; a failure between
`secret create` and `secret rm` cannot be produced on cue there.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from typing import Any

from tests.conftest import REPO
from tests.unit.conftest import load_module_utils

INCIDENT = "INC-20261129-000000-abcd"


def _load_rotate_module() -> types.ModuleType:
    sys.modules["ansible.module_utils.responder_docker"] = load_module_utils()
    spec = importlib.util.spec_from_file_location(
        "responder_rotate_under_test",
        REPO / "runbooks" / "rotate_secrets" / "library" / "responder_rotate_secrets.py",
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rotate = _load_rotate_module()


class ScriptedDocker:
    """Answers the docker CLI calls rotate_swarm makes from a small model of the swarm."""

    binary = "/nonexistent/docker"  # `secret create` must not be reached on a resumed rotation

    def __init__(self, secrets: dict[str, dict[str, str]], services: dict[str, list[str]]) -> None:
        self.secrets = secrets  # name -> labels
        self.services = services  # service -> secret names it mounts
        self.calls: list[list[str]] = []

    def run(self, args: list[str], timeout: float | None = None) -> str:
        self.calls.append(list(args))
        if args[:2] == ["secret", "ls"] and "--filter" in args:
            wanted = [a.split("=", 1)[1] for a in args if a.startswith("label=")]
            return "\n".join(
                n
                for n, labels in self.secrets.items()
                if all(f"{k}={v}" in wanted for k, v in labels.items()) and labels
            )
        if args[:2] == ["secret", "ls"]:
            return "\n".join(self.secrets)
        if args[:2] == ["secret", "inspect"]:
            name = args[-1]
            if name not in self.secrets:
                raise rotate.DockerError("Error: no such secret: " + name)
            return json.dumps([{"ID": "id-" + name, "Spec": {"Name": name}}])
        if args[:2] == ["service", "ls"]:
            return "\n".join(self.services)
        if args[:2] == ["service", "inspect"]:
            return json.dumps(
                [
                    {
                        "ID": s,
                        "Spec": {
                            "Name": s,
                            "TaskTemplate": {
                                "ContainerSpec": {
                                    "Secrets": [
                                        {
                                            "SecretID": "id-" + n,
                                            "SecretName": n,
                                            "File": {"Name": "db_password"},
                                        }
                                        for n in self.services[s]
                                    ]
                                }
                            },
                        },
                    }
                    for s in args[2:]
                    if s != "--"
                ]
            )
        if args[:2] == ["service", "update"]:
            service = args[-1]
            removed = args[args.index("--secret-rm") + 1]
            added = args[args.index("--secret-add") + 1].split(",")[0].split("=", 1)[1]
            self.services[service] = [n for n in self.services[service] if n != removed] + [added]
            return ""
        if args[:2] == ["secret", "rm"]:
            del self.secrets[args[-1]]
            return ""
        raise AssertionError(f"unexpected docker call {args}")


def _labels(rotated_from: str, incident: str = INCIDENT) -> dict[str, str]:
    return {"responder.incident": incident, "responder.rotated_from": rotated_from}


def test_a_retry_moves_services_onto_the_version_already_created() -> None:
    docker = ScriptedDocker(
        secrets={"db": {}, "db_v2": _labels("db")},  # the first attempt stopped after creating db_v2
        services={"app": ["db"]},
    )
    (result,) = rotate.rotate_swarm(docker, ["db"], 32, INCIDENT)
    assert result["new_name"] == "db_v2" and result["version"] == 2 and result["resumed"] is True
    assert docker.services == {"app": ["db_v2"]} and set(docker.secrets) == {"db_v2"}
    assert not [c for c in docker.calls if c[:2] == ["secret", "create"]]


def test_a_retry_after_the_old_secret_was_removed_has_nothing_left_to_do() -> None:
    docker = ScriptedDocker(secrets={"db_v2": _labels("db")}, services={"app": ["db_v2"]})
    (result,) = rotate.rotate_swarm(docker, ["db"], 32, INCIDENT)
    assert result["new_name"] == "db_v2" and result["resumed"] is True and result["old_removed"] is True
    assert [c[:2] for c in docker.calls if c[0] == "service" and c[1] == "update"] == []


def test_another_incidents_version_is_not_taken_over() -> None:
    """db_v2 was made by another incident: this one makes db_v3 (with a fresh value)."""
    docker = ScriptedDocker(
        secrets={"db": {}, "db_v2": _labels("db", "INC-20261128-000000-ffff")}, services={"app": ["db"]}
    )
    created: list[Any] = []

    def fake_create(argv: list[str], value: str, timeout: float = 60) -> tuple[int, str]:
        created.append(argv[argv.index("--") + 1])
        docker.secrets[argv[argv.index("--") + 1]] = _labels("db")
        return 0, ""

    original = rotate.run_with_stdin
    rotate.run_with_stdin = fake_create
    try:
        (result,) = rotate.rotate_swarm(docker, ["db"], 32, INCIDENT)
    finally:
        rotate.run_with_stdin = original
    assert created == ["db_v3"] and result["resumed"] is False
    assert docker.services == {"app": ["db_v3"]}
