"""`responder db status` and `responder db migrate`: which store this controller uses (the SQLite
file, or the shared PostgreSQL database), its schema version against the one this responder
needs, and what it holds; migrate applies the schema in one transaction (every other command
does it too when it opens an older database, so migrate is for doing it on purpose, first)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from responder.cli.common import settings_from


def cmd_db(args: argparse.Namespace) -> int:
    """Print the store's status, or migrate it; exit 1 from status when it needs a migration."""
    from responder import db
    from responder.store_location import describe

    settings = settings_from(args)
    location = settings.database
    if args.action == "migrate":
        before, wanted = db.schema_status(location)
        db.open_database(location).close()
        after, _ = db.schema_status(location)
        changed = "already at" if before == after else f"migrated from {before or 'nothing'} to"
        print(f"{describe(location)}: {changed} schema version {after} (this responder needs {wanted})")
        return 0
    have, wanted = db.schema_status(location)
    doc: dict[str, Any] = {"store": describe(location), "schema_version": have, "needs": wanted}
    if have:
        conn = db.connect(location)
        try:
            doc["incidents"] = {str(s): int(n) for s, n in conn.execute(
                "SELECT status, COUNT(*) FROM incidents GROUP BY status ORDER BY status"
            )}  # fmt: skip
            doc["alerts"] = {str(s): int(n) for s, n in conn.execute(
                "SELECT state, COUNT(*) FROM alerts GROUP BY state ORDER BY state"
            )}  # fmt: skip
            if have >= 5:
                doc["evidence_by_controller"] = {str(c or "this controller"): int(n) for c, n in conn.execute(
                    "SELECT controller, COUNT(*) FROM evidence GROUP BY controller ORDER BY controller"
                )}  # fmt: skip
        finally:
            conn.close()
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        state = "up to date" if have == wanted else "empty" if not have else "needs `responder db migrate`"
        print(f"store: {doc['store']}")
        print(f"schema: version {have} of {wanted} ({state})")
        for key in ("incidents", "alerts", "evidence_by_controller"):
            if key in doc:
                counts = ", ".join(f"{k} {v}" for k, v in doc[key].items()) or "none"
                print(f"{key.replace('_', ' ')}: {counts}")
    return 0 if have == wanted else 1
