"""B5: snapshot throughput against `docker export C | sha256sum` of the same container (a
writable layer of a few hundred MB), alternating in one run. Goal: >= 0.9x the baseline's rate.

The snapshot side is the module's own export collection on the host (stream, hash, fsync,
rename, read-only), timed from its started_at to collected_at; the end-to-end CLI time
(which also fetches the file to the controller and re-hashes it there) is reported beside it.
Each side starts after a sync; evidence is kept until the end (deleting it between rounds made
the next run pay for the disk's trims and the VM's page reclaim).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import IMAGE, clean_env, docker, report, summary, timed

PLAYBOOK = """name: b5
description: B5 snapshot
severity: low
params:
  container: {type: string}
steps:
  - id: snapshot
    action: snapshot_filesystem
    with: {container: "{{ params.container }}"}
"""


def _seconds(start: str, end: str) -> float:
    parse = lambda ts: datetime.fromisoformat(ts.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def main(rounds: int = 5, megabytes: int = 300) -> None:
    work = Path(tempfile.mkdtemp(prefix="responder-b5-"))
    (work / "b5.yml").write_text(PLAYBOOK)
    (work / "c.toml").write_text(f'host_evidence_root = "{work / "host"}"\n')
    cid = docker(
        "run",
        "-d",
        IMAGE,
        "sh",
        "-c",
        f"dd if=/dev/urandom of=/layer.bin bs=1M count={megabytes} 2>/dev/null; touch /ready; sleep 3600",
    )
    try:
        while subprocess.run(["docker", "exec", cid, "test", "-e", "/ready"]).returncode != 0:
            time.sleep(0.5)
        size = 0
        baseline, collect, end_to_end = [], [], []
        for i in range(rounds):
            for side in ("base", "ours") if i % 2 == 0 else ("ours", "base"):
                os.sync()  # each side starts with nothing of the other's left to write back
                if side == "base":
                    baseline.append(
                        timed(
                            lambda: subprocess.run(
                                f"docker export {cid} | sha256sum",
                                shell=True,
                                check=True,
                                capture_output=True,
                            )
                        )
                    )
                    continue
                data = work / f"data{i}"
                (work / "c.toml").write_text(f'host_evidence_root = "{work / f"host{i}"}"\n')
                elapsed = timed(
                    lambda data=data: subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "responder",
                            "--config",
                            str(work / "c.toml"),
                            "run",
                            str(work / "b5.yml"),
                            "--quiet",
                            "-p",
                            f"container={cid}",
                        ],
                        check=True,
                        capture_output=True,
                        env=clean_env(RESPONDER_DATA_DIR=str(data)),
                    )
                )
                (details, size) = (
                    sqlite3.connect(data / "timeline.db")
                    .execute("SELECT details, size FROM evidence WHERE kind='filesystem'")
                    .fetchone()
                )
                row = (
                    sqlite3.connect(data / "timeline.db")
                    .execute("SELECT collected_at FROM evidence WHERE kind='filesystem'")
                    .fetchone()
                )
                collect.append(_seconds(json.loads(details)["started_at"], row[0]))
                end_to_end.append(elapsed)
    finally:
        docker("rm", "-f", cid)
        # Evidence is deleted only now: on a disk mounted with `discard`, deleting 600 MB between
        # rounds makes the device trim it during whichever write-heavy run comes next.
        subprocess.run(["rm", "-rf", str(work)], check=False)
    b, c, e = summary(baseline), summary(collect), summary(end_to_end)
    mb = size / 1e6
    ratio = b["median"] / c["median"]
    report(
        "b5_snapshot",
        {
            "tar_mb": round(mb, 1),
            "baseline_export_sha256sum_s": b,
            "snapshot_collection_s": c,
            "collection_samples_s": [round(x, 3) for x in collect],
            "baseline_samples_s": [round(x, 3) for x in baseline],
            "snapshot_cli_end_to_end_s": e,
            "baseline_mb_per_s": round(mb / b["median"], 1),
            "snapshot_mb_per_s": round(mb / c["median"], 1),
            "ratio": round(ratio, 3),
            "goal_ratio": 0.9,
            "met": ratio >= 0.9,
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
