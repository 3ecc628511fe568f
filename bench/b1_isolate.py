"""B1: isolate one container from the CLI vs a bare ansible_runner.run of an equivalent one-task
playbook (`docker network disconnect`), alternating in one run. Goal: median ratio <= 1.10.

Both sides start a fresh Python process, as an on-call engineer's command would.
"""

from __future__ import annotations

import compileall
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import IMAGE, REPO, clean_env, docker, report, summary, timed

BASELINE = """
import sys, ansible_runner
import os
net, cid, pdd = sys.argv[1:4]
os.makedirs(pdd, exist_ok=True)
play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
    {"ansible.builtin.command": {"argv": ["docker", "network", "disconnect", "--", net, cid],
                                 "expand_argument_vars": False}}]}]
r = ansible_runner.run(private_data_dir=pdd, playbook=play, quiet=True,
                       inventory={"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                                  "ansible_python_interpreter": sys.executable}}}})
assert r.status == "successful", r.status
"""

PLAYBOOK = """
name: bench-isolate
description: B1 benchmark, isolation only.
severity: high
params:
  container: {type: string, required: true}
steps:
  - id: isolate
    action: isolate_network
    with: {container: "{{ params.container }}"}
"""


def main(rounds: int = 10) -> None:
    # pip byte-compiles an installed wheel; an editable checkout under PYTHONDONTWRITEBYTECODE=1
    # would recompile every module on every start. Compare like with like.
    compileall.compile_dir(REPO / "responder", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="responder-b1-"))
    playbook = work / "bench-isolate.yml"
    playbook.write_text(PLAYBOOK)
    net = f"b1-{uuid.uuid4().hex[:6]}"
    docker("network", "create", net)
    ours, bare = [], []
    try:
        for i in range(rounds):
            for side in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):
                cid = docker("run", "-d", "--network", net, IMAGE, "sleep", "600")
                try:
                    if side == "ours":
                        cmd = [
                            sys.executable,
                            "-m",
                            "responder",
                            "run",
                            str(playbook),
                            "--quiet",
                            "-p",
                            f"container={cid[:12]}",
                        ]
                        env = clean_env(RESPONDER_DATA_DIR=str(work / "data"))
                    else:
                        cmd = [sys.executable, "-c", BASELINE, net, cid, str(work / f"pdd-{i}")]
                        env = clean_env()
                    elapsed = timed(
                        lambda cmd=cmd, env=env: subprocess.run(cmd, check=True, env=env, capture_output=True)
                    )
                    assert docker("inspect", "-f", "{{len .NetworkSettings.Networks}}", cid) == "0"
                    (ours if side == "ours" else bare).append(elapsed)
                finally:
                    docker("rm", "-f", cid)
    finally:
        docker("network", "rm", net)
    o, b = summary(ours), summary(bare)
    ratio = o["median"] / b["median"]
    report(
        "b1_isolate",
        {
            "responder_cli_s": o,
            "bare_ansible_runner_s": b,
            "median_ratio": round(ratio, 3),
            "goal_ratio": 1.10,
            "met": ratio <= 1.10,
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
