"""B6: 200 notifications to one channel while the local Slack answers 30% of calls with 429
(Retry-After: 1) and 5% with 500. Reports the delivered rate against Slack's limit of one message
per second per channel (goal >= 0.9 of it), messages lost (goal 0) and duplicated (goal 0).

Uses the real notifier, slack-sdk and an HTTP server on loopback; takes a little over 3 minutes.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

from bench.common import report
from responder.notify.dispatcher import SlackNotifier
from responder.notify.slack import BotTransport
from responder.timeline import Incident, Timeline
from responder.vocabulary import IncidentStatus
from tests.slack_server import SlackServer, SlackState

IID = "INC-20261129-000000-b6b6"


def main(count: int = 200) -> None:
    db = Path(tempfile.mkdtemp(prefix="responder-b6-")) / "t.db"
    tl = Timeline(db)
    tl.create_incident(
        Incident(
            IID,
            "t",
            "t",
            IncidentStatus.RUNNING,
            "bench",
            "/b.yml",
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
    state = SlackState(rate_429=0.30, rate_500=0.05, retry_after=1, seed=20261129)
    with SlackServer(state) as slack:
        notifier = SlackNotifier(BotTransport(state.token, slack.base_url, 5), "#bench", db, state.token)
        start = time.monotonic()
        notifier.observe(tl.append(IID, "incident_opened", "opened"))
        for i in range(count - 1):
            notifier.observe(
                tl.append(
                    IID,
                    "step_finished",
                    f"step s{i}: succeeded",
                    step=f"s{i}",
                    data={"outcome": "succeeded", "hosts": {}},
                )
            )
        left = notifier.close(count * 5)
        last = max(
            t for t, method, behaviour in state.calls if method == "chat.postMessage" and behaviour == "ok"
        )
        elapsed = last - start
    keys = collections.Counter(m.key for m in state.messages)
    delivered = len(keys)
    behaviours = collections.Counter(b for _, m, b in state.calls if m == "chat.postMessage")
    rate = delivered / elapsed
    report(
        "b6_slack",
        {
            "notifications": count,
            "delivered": delivered,
            "lost": count - delivered,
            "duplicated": sum(n - 1 for n in keys.values()),
            "undelivered_at_exit": left,
            "seconds": round(elapsed, 1),
            "delivered_per_s": round(rate, 3),
            "ratio_to_limit": round(rate / 1.0, 3),
            "server_answers": dict(behaviours),
            "goal_ratio": 0.9,
            "met": rate >= 0.9 and delivered == count and all(n == 1 for n in keys.values()),
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
