"""B0: wall time of `responder --help` (goal: under 150 ms). Baseline: `python -c pass`."""

from __future__ import annotations

import compileall
import subprocess
import sys

from bench.common import REPO, report, summary, timed


def main(rounds: int = 30) -> None:
    compileall.compile_dir(REPO / "responder", quiet=1)  # as pip does for an installed wheel
    help_times, bare = [], []
    for _ in range(rounds):
        help_times.append(
            timed(
                lambda: subprocess.run(
                    [sys.executable, "-m", "responder", "--help"], check=True, capture_output=True
                )
            )
        )
        bare.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)))
    h, b = summary(help_times), summary(bare)
    report(
        "b0_help", {"responder_help_s": h, "python_pass_s": b, "goal_s": 0.150, "met": h["median"] < 0.150}
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
