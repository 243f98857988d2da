"""The webhook channel kind: each alert (or digest) as JSON POSTed to a URL of your own, with
an `Idempotency-Key` so a receiver can drop the retry of a send that had already arrived."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import httpx
from pydantic import Field

from ..message import AlertMessage, Digest, digest_to_dict, message_to_dict
from .base import (
    ChannelOptions,
    Delivery,
    Digest_,
    SlackRateLimiter,
    _message_key,
    _short,
    register_channel,
)
from .http import _post


@dataclass(frozen=True)
class WebhookChannel:
    kind: ClassVar[str] = "webhook"
    name: str
    url: str = field(repr=False)  # may carry a token in its query
    headers: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)
    digest: str | None = None


class WebhookOptions(ChannelOptions):
    url: str = Field(pattern=r"^https?://\S+$", repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    digest: Digest_ = None


def _bad_header(name: str, value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in name + value) or not name.strip()


async def _send_webhook(
    channel: WebhookChannel,
    message: AlertMessage | Digest,
    http: httpx.AsyncClient,
    user_agent: str,
) -> Delivery:
    if isinstance(message, Digest):
        body = {"type": "listener.digest", **digest_to_dict(message)}
    else:
        body = {"type": "listener.alert", **message_to_dict(message)}
    ours = {"content-type", "idempotency-key"}
    headers = {k: v for k, v in channel.headers.items() if k.lower() not in ours}
    bad = [k for k, v in headers.items() if _bad_header(k, v)]
    if bad:
        return Delivery(
            False,
            f"webhook {channel.name}: header {_short(bad[0], 60)!r} has control characters",
            permanent=True,
        )
    # Same key on every attempt: a receiver that honours it ignores the retry of a send that
    # timed out after it had already arrived.
    headers["Idempotency-Key"] = _message_key(message)
    return await _post("webhook", channel.name, http, channel.url, body, headers, user_agent)


async def _webhook(
    channel: WebhookChannel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter,
    user_agent: str,
) -> Delivery:
    return await _send_webhook(channel, message, http, user_agent)


def _build_webhook(o: WebhookOptions) -> WebhookChannel:
    return WebhookChannel(name=o.name, url=o.url, headers=dict(o.headers), digest=o.digest)


register_channel("webhook", WebhookOptions, _build_webhook, _webhook)
