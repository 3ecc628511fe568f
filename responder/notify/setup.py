"""Which notifier, if any, a run gets: from the config file's [slack] table and the environment.

The bot token comes from SLACK_BOT_TOKEN or [slack].token_file; the webhook URL (a secret too)
from SLACK_WEBHOOK_URL or [slack].webhook_url_file. Neither is ever accepted on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from responder.errors import ConfigError
from responder.settings import Settings

if TYPE_CHECKING:  # the notifier (threads, slack-sdk) is imported only when Slack is configured
    from responder.notify.dispatcher import SlackNotifier


def read_secret(
    env_name: str, file_key: str, slack: Mapping[str, object], environ: Mapping[str, str]
) -> str | None:
    """A Slack secret from the environment (`NAME`, or a file named by `NAME_FILE`) or from the
    file `[slack].<file_key>` names; None when none is set. Never from the command line."""
    if environ.get(env_name):
        return environ[env_name].strip()
    for where, path in (
        (f"${env_name}_FILE", environ.get(env_name + "_FILE")),
        (f"[slack].{file_key}", slack.get(file_key)),
    ):
        if path:
            try:
                return Path(str(path)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{where} {path}: {exc.strerror}") from exc
    return None


def build_notifier(
    settings: Settings,
    playbook_notify: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SlackNotifier | None:
    """The Slack notifier the settings and the playbook's `notify:` ask for, or None."""
    env = os.environ if environ is None else environ
    slack = settings.slack
    mode = str(slack.get("mode", "webhook" if env.get("SLACK_WEBHOOK_URL") else "bot"))
    channel = str(
        (playbook_notify or {}).get("slack_channel")
        or slack.get("channel")
        or env.get("RESPONDER_SLACK_CHANNEL", "")
    )
    timeout = float(str(slack.get("timeout", 10)))
    if mode == "bot":
        token = read_secret("SLACK_BOT_TOKEN", "token_file", slack, env)
        if not token:
            return None
        if not channel:
            raise ConfigError(
                "Slack is configured but no channel is: set [slack].channel or the playbook's notify.slack_channel"
            )
        from responder.notify.dispatcher import SlackNotifier
        from responder.notify.slack import BotTransport

        transport = BotTransport(token, str(slack.get("base_url", "https://slack.com/api/")), timeout)
        # [slack] interactive: the root message carries decision buttons (the server handles them)
        interactive = slack.get("interactive") is True
        return SlackNotifier(transport, channel, settings.database, token, interactive=interactive)
    if mode == "webhook":
        url = read_secret("SLACK_WEBHOOK_URL", "webhook_url_file", slack, env)
        if not url:
            return None
        from responder.notify.dispatcher import SlackNotifier
        from responder.notify.slack import WebhookTransport

        return SlackNotifier(WebhookTransport(url, timeout), channel or "webhook", settings.database, url)
    raise ConfigError(f"[slack].mode must be bot or webhook, not {mode!r}")


def flush_timeout(settings: Settings) -> float:
    """Seconds the CLI waits for Slack at exit before giving up on what is queued."""
    return float(str(settings.slack.get("flush_timeout", 15)))
