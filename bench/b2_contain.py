"""B2: the whole contain-container playbook (approvals granted up front with --approve all)
against a bare one-task ansible_runner.run (`docker network disconnect`), alternating in one
run. Goal: median ratio <= 2.0.

The victim handles SIGTERM (so `docker stop` does not sit out its timeout) and has a restart
policy of always and a named volume. No swarm secret is passed, so the rotation step is skipped:
a swarm service update waits for tasks to be redeployed, which no bare one-task run does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.b1_isolate import BASELINE
from bench.common import IMAGE, REPO, clean_env, docker, report, summary, timed


def main(rounds: int = 6) -> None:
    import compileall

    compileall.compile_dir(REPO / "responder", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="responder-b2-"))
    (work / "c.toml").write_text(f'host_evidence_root = "{work / "host"}"\n')
    net = f"b2-{uuid.uuid4().hex[:6]}"
    docker("network", "create", net)
    ours, bare = [], []
    try:
        for i in range(rounds):
            for side in ("ours", "bare") if i % 2 == 0 else ("bare", "ours"):
                volume = f"b2v-{uuid.uuid4().hex[:6]}"
                cid = docker(
                    "run",
                    "-d",
                    "--network",
                    net,
                    "--restart",
                    "always",
                    "-v",
                    f"{volume}:/data",
                    IMAGE,
                    "sh",
                    "-c",
                    "trap 'exit 0' TERM; echo up > /data/x; while true; do sleep 0.2; done",
                )
                try:
                    if side == "ours":
                        cmd = [
                            sys.executable,
                            "-m",
                            "responder",
                            "--config",
                            str(work / "c.toml"),
                            "run",
                            "contain-container",
                            "--quiet",
                            "--approve",
                            "all",
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
                    (ours if side == "ours" else bare).append(elapsed)
                    if side == "ours":
                        assert docker("inspect", "-f", "{{.State.Status}}", cid) == "exited"
                finally:
                    docker("rm", "-f", "-v", cid)
                    docker("volume", "rm", "-f", volume)
    finally:
        docker("network", "rm", net)
    o, b = summary(ours), summary(bare)
    ratio = o["median"] / b["median"]
    report(
        "b2_contain",
        {
            "contain_container_s": o,
            "bare_ansible_runner_s": b,
            "median_ratio": round(ratio, 3),
            "goal_ratio": 2.0,
            "met": ratio <= 2.0,
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
