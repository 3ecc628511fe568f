"""B7: export of an incident with 100,000 events: rows per second and peak memory, per format.

Goal: >= 100k rows/s, memory flat (peak RSS with 100k events ~ peak RSS with 10k events).
Each export runs in a fresh process so its peak RSS is its own. Output goes to a real file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import report

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from responder.export import export
from responder.timeline import Timeline
db, fmt, out = sys.argv[1:4]
tl = Timeline(Path(db))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with open(out, "w", encoding="utf-8", newline="") as handle:
    export(tl, "INC-20261129-000000-b7b7", fmt, handle)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import tracemalloc  # a second, untimed pass: the Python heap's high-water mark during the export
tracemalloc.start()
with open(out, "w", encoding="utf-8", newline="") as handle:
    export(tl, "INC-20261129-000000-b7b7", fmt, handle)
heap_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": elapsed, "rss_before_kib": before, "rss_peak_kib": peak, "heap_peak_kib": heap_peak // 1024}))
"""


def build(path: Path, n: int) -> None:
    from responder.timeline import Incident, IncidentStatus, Timeline

    tl = Timeline(path)
    iid = "INC-20261129-000000-b7b7"
    tl.create_incident(
        Incident(
            iid,
            "2026-11-29T00:00:00.000000Z",
            "2026-11-29T00:00:00.000000Z",
            IncidentStatus.SUCCEEDED,
            "bench",
            "/bench.yml",
            "0" * 64,
            "high",
            {"container": "web"},
            (),
            {"source": "bench"},
            None,
            None,
            None,
            "bench",
        )
    )
    rows = []
    for i in range(n):
        second = i // 1000
        ts = f"2026-11-29T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.{i % 1000 * 1000:06d}Z"
        kind, step = ("task_result", f"step{i % 5}")
        rows.append(
            (
                iid,
                i + 1,
                ts,
                kind,
                step,
                f"host{i % 7}",
                "responder",
                f"Disconnect the container from every network: changed ({i})",
                json.dumps({"task": "Disconnect", "status": "changed", "changed": True, "i": i}),
            )
        )
    with tl._write() as db:
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", rows)
    tl.close()


def run(db: Path, fmt: str, out: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), fmt, str(out)], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="responder-b7-"))
    small, large = work / "small.db", work / "large.db"
    build(small, 10_000)
    build(large, 100_000)
    results: dict[str, object] = {}
    met = True
    for fmt in ("jsonl", "csv", "json", "md", "html"):
        big = run(large, fmt, work / f"out.{fmt}")
        little = run(small, fmt, work / f"small.{fmt}")
        rate = 100_000 / big["seconds"]
        growth_big = big["rss_peak_kib"] - big["rss_before_kib"]
        growth_small = little["rss_peak_kib"] - little["rss_before_kib"]
        # flat: ten times the events may not cost more than 1 MiB of extra Python heap or 8 MiB of RSS
        flat = (
            big["heap_peak_kib"] <= little["heap_peak_kib"] + 1024 and growth_big <= growth_small + 8 * 1024
        )
        met = met and rate >= 100_000 and flat
        results[fmt] = {
            "rows_per_s": round(rate),
            "seconds": round(big["seconds"], 3),
            "rss_growth_kib_100k": growth_big,
            "rss_growth_kib_10k": growth_small,
            "heap_peak_kib_100k": big["heap_peak_kib"],
            "heap_peak_kib_10k": little["heap_peak_kib"],
            "peak_rss_mib_100k": round(big["rss_peak_kib"] / 1024, 1),
            "flat": flat,
            "output_mib": round((work / f"out.{fmt}").stat().st_size / 2**20, 1),
        }
    report("b7_export", {"events": 100_000, "formats": results, "goal_rows_per_s": 100_000, "met": met})


if __name__ == "__main__":
    main()
