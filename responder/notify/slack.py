"""Slack delivery through slack-sdk: bot-token mode (WebClient: threads, updates, dedup lookup)
and incoming-webhook mode (WebhookClient: same content, no threads).

slack-sdk's own retry handlers are switched off: a retried post whose first attempt reached Slack
would be posted twice, and Slack has no idempotency key. Retries happen in the dispatcher, which
first looks for the message (by a key kept in its metadata) before posting it again.
"""

from __future__ import annotations

import logging
import urllib.error
from dataclasses import dataclass
from typing import Any, Protocol

from responder.errors import Unavailable
from responder.notify.messages import Message

# Errors that no retry will fix: https://api.slack.com/methods/chat.postMessage#errors
PERMANENT = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "restricted_action",
    "ekm_access_denied",
    "team_access_not_granted",
    "invalid_arguments",
    "no_text",
    "invalid_token",
    "no_service",
    "channel_is_archived",
    "action_prohibited",
    "posting_to_general_channel_denied",
}
TOO_LONG = {"msg_too_long", "invalid_blocks", "invalid_blocks_format", "too_many_attachments"}
METADATA_EVENT = "responder_notification"


class DeliveryError(Unavailable):
    """`kind` is retry_after, transient, permanent or too_long; `ambiguous` means Slack may have
    posted it anyway (a timeout or a 5xx after the request was sent)."""

    def __init__(self, kind: str, message: str, retry_after: float = 0.0, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class Transport(Protocol):
    """How a message reaches Slack: the Web API (threads) or an incoming webhook (no threads)."""

    threads: bool

    def post(self, channel: str, message: Message, thread_ts: str | None) -> tuple[str | None, str]:
        """Post a message; returns its ts (if known) and channel."""
        ...

    def update(self, channel: str, ts: str, message: Message) -> None:
        """Replace a posted message."""
        ...

    def find(self, channel: str, key: str, thread_ts: str | None) -> str | None:
        """The ts of a message already posted with this key, if any (dedup after an ambiguous failure)."""
        ...


class RedactFilter(logging.Filter):
    """Keeps a secret out of log records, whatever level the application logs at."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        """Remove the token from a log record of slack-sdk's."""
        if self.secret and self.secret in record.getMessage():
            record.msg = record.getMessage().replace(self.secret, "********")
            record.args = ()
        return True


def _retry_after(headers: Any) -> float:
    try:
        value = headers.get("Retry-After") or headers.get("retry-after") or 1
        return max(float(value), 0.0)
    except (TypeError, ValueError, AttributeError):
        return 1.0


def _connection_error(exc: BaseException) -> DeliveryError:
    return DeliveryError("transient", f"connection error: {type(exc).__name__}: {exc}", ambiguous=True)


@dataclass
class BotTransport:
    """The Slack Web API with a bot token, through slack-sdk."""

    token: str
    base_url: str = "https://slack.com/api/"
    timeout: float = 10.0
    threads: bool = True

    def __post_init__(self) -> None:
        from slack_sdk import WebClient

        logger = logging.getLogger("responder.slack")
        logger.addFilter(RedactFilter(self.token))
        self.client = WebClient(
            token=self.token,
            base_url=self.base_url,
            timeout=int(max(self.timeout, 1)),
            retry_handlers=[],
            logger=logger,
        )

    def _call(self, method: str, **kwargs: Any) -> Any:
        from slack_sdk.errors import SlackApiError

        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
            if status == 429 or error == "ratelimited":
                raise DeliveryError(
                    "retry_after", "rate limited", _retry_after(exc.response.headers)
                ) from None
            if error in PERMANENT:
                raise DeliveryError("permanent", error) from None
            if error in TOO_LONG:
                raise DeliveryError("too_long", error) from None
            raise DeliveryError(
                "transient", f"HTTP {status} {error}".strip(), ambiguous=status >= 500
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _connection_error(exc) from None

    def post(self, channel: str, message: Message, thread_ts: str | None) -> tuple[str | None, str]:
        """chat.postMessage, with the dedup key in the message metadata."""
        payload = message.payload()
        response = self._call(
            "chat_postMessage",
            channel=channel,
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": message.key}},
            **payload,
        )
        return str(response["ts"]), str(response.get("channel") or channel)

    def update(self, channel: str, ts: str, message: Message) -> None:
        """chat.update of the thread's root message."""
        self._call("chat_update", channel=channel, ts=ts, **message.payload())

    def find(self, channel: str, key: str, thread_ts: str | None) -> str | None:
        """Look the dedup key up in the channel's recent history."""
        if thread_ts:
            response = self._call(
                "conversations_replies", channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
            )
        else:
            response = self._call(
                "conversations_history", channel=channel, include_all_metadata=True, limit=100
            )
        for item in response.get("messages") or []:
            meta = item.get("metadata") or {}
            if (
                meta.get("event_type") == METADATA_EVENT
                and (meta.get("event_payload") or {}).get("key") == key
            ):
                return str(item.get("ts"))
        return None


@dataclass
class WebhookTransport:
    """An incoming webhook: no threads, no updates, no lookups."""

    url: str
    timeout: float = 10.0
    threads: bool = False

    def __post_init__(self) -> None:
        from slack_sdk.webhook import WebhookClient

        logger = logging.getLogger("responder.slack")
        logger.addFilter(RedactFilter(self.url))
        self.client = WebhookClient(
            self.url, timeout=int(max(self.timeout, 1)), retry_handlers=[], logger=logger
        )

    def post(self, channel: str, message: Message, thread_ts: str | None) -> tuple[str | None, str]:
        """POST the message to the webhook URL."""
        try:
            response = self.client.send(**message.payload())
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise _connection_error(exc) from None
        body = (response.body or "").strip()
        if response.status_code == 200:
            return None, channel
        if response.status_code == 429:
            raise DeliveryError("retry_after", "rate limited", _retry_after(response.headers))
        if body in TOO_LONG or body == "invalid_payload":
            raise DeliveryError("too_long", body)
        if response.status_code >= 500:
            raise DeliveryError("transient", f"HTTP {response.status_code}", ambiguous=True)
        raise DeliveryError("permanent", body or f"HTTP {response.status_code}")

    def update(self, channel: str, ts: str, message: Message) -> None:
        """Webhooks cannot edit a message: a status change is posted as a new one."""
        self.post(channel, message, None)

    def find(self, channel: str, key: str, thread_ts: str | None) -> str | None:
        """Webhooks cannot look messages up: always None."""
        return None  # webhooks cannot read the channel; ambiguous failures are retried
