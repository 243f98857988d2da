"""The Slack channel kind: Block Kit messages posted to an incoming webhook, spaced by the
shared `SlackRateLimiter` (Slack allows about one message a second per webhook)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import httpx
from pydantic import Field

from ..message import AlertMessage, Digest
from ..render import render_slack
from .base import (
    ChannelOptions,
    Delivery,
    Digest_,
    SlackRateLimiter,
    _message_key,
    register_channel,
)
from .http import _post


@dataclass(frozen=True)
class SlackChannel:
    kind: ClassVar[str] = "slack"
    name: str
    webhook_url: str = field(repr=False)  # the URL is the credential
    digest: str | None = None  # None (send at once) | "hourly" | "daily"


class SlackOptions(ChannelOptions):
    webhook_url: str = Field(pattern=r"^https?://\S+$", repr=False)
    digest: Digest_ = None


# What Slack's incoming webhooks answer, and what a person should do about it.
_SLACK_HINTS = {
    "invalid_token": "authentication failed: the webhook's token is invalid or was revoked; "
    "create a new incoming webhook and update webhook_url",
    "no_service": "the webhook was removed or disabled; create a new one and update webhook_url",
    "no_team": "the Slack workspace no longer exists or the app was removed",
    "team_disabled": "the Slack workspace is disabled",
    "channel_not_found": "the webhook's channel no longer exists",
    "channel_is_archived": "the webhook's channel is archived",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_payload": "Slack rejected the message format (a listener bug: please report it)",
    "user_not_found": "the webhook's user no longer exists",
}


async def _slack(
    channel: SlackChannel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    payload = render_slack(message)
    await limiter.wait(channel.webhook_url)
    # Slack's incoming webhooks ignore Idempotency-Key today; a relay or proxy in front may not.
    headers = {"Idempotency-Key": _message_key(message)}
    result = await _post(
        "Slack", channel.name, http, channel.webhook_url, payload, headers, user_agent, _SLACK_HINTS
    )
    if not result.ok and result.retry_after_s is not None:
        # Slack asked for a pause (429 Retry-After): the other alerts waiting for this webhook
        # keep it too, not just the one that was refused (Slack disables apps that push on).
        limiter.hold(channel.webhook_url, result.retry_after_s)
    return result


def _build_slack(o: SlackOptions) -> SlackChannel:
    return SlackChannel(name=o.name, webhook_url=o.webhook_url, digest=o.digest)


register_channel("slack", SlackOptions, _build_slack, _slack)
