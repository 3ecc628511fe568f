"""`responder serve`: the alert webhook, wired from the command line and the config."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from responder.cli.common import catalog_for, inventory_for, settings_from


def cmd_serve(args: argparse.Namespace) -> int:
    """`responder serve`: the alert webhook and incident API, wired from flags and config."""
    from responder.server.auth import load_auth
    from responder.server.main import ServeOptions, serve
    from responder.server.tls import server_context

    settings = settings_from(args)
    catalog = catalog_for(settings)
    config = settings.server
    auth = load_auth(
        os.environ, config.get("token_file"), config.get("hmac_secret_file"), config.get("clients", ())
    )
    inventory = inventory_for(args, settings)
    options = ServeOptions(
        host=args.host or config.get("host", "127.0.0.1"),
        port=args.port or int(config.get("port", 8080)),
        workers=args.workers if args.workers is not None else int(config.get("workers", 2)),
        grace=args.grace if args.grace is not None else float(config.get("grace", 30)),
        body_timeout=args.body_timeout
        if args.body_timeout is not None
        else float(config.get("body_timeout", 10)),
        group_wait=args.group_wait if args.group_wait is not None else float(config.get("group_wait", 0)),
        insecure_no_auth=args.insecure_no_auth,
        tls=server_context(args.tls_cert or config.get("tls_cert"), args.tls_key or config.get("tls_key")),
        inventory=inventory,
        job_base={
            "settings": {
                "data_dir": str(settings.data_dir),
                "playbooks_dirs": [
                    str(Path(d).resolve()) for d in getattr(args, "playbooks_dir", None) or []
                ],
                "runbooks_dirs": [str(Path(d).resolve()) for d in getattr(args, "runbooks_dir", None) or []],
                "config": str(Path(args.config).resolve()) if getattr(args, "config", None) else None,
            },
            "inventory": inventory,
        },
    )
    return serve(settings, catalog, auth, options)
