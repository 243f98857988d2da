"""The channel contract: what every alert channel kind follows, and the registry that finds it.

A channel kind is ONE module (`slack.py`, `email.py`, `webhook.py` here, or a module of your
own): an options model (a `ChannelOptions`, validated once by `listener.config` at the edge), a
builder that turns validated options into the plain frozen channel object the outbox keeps (its
`name`, `kind` and `digest`), and the coroutine that sends one message on such a channel. It
calls `register_channel` on import.

`send_alert` never raises for a delivery problem: it answers a `Delivery` that tells the outbox
whether the alert went out, and if not whether trying again can help (`permanent`) and when
(`retry_after_s`). Error texts name the channel, never its secrets (webhook URLs carry a token,
and errors end up in the outbox table that Datasette shows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict

from ...fetch import default_user_agent
from ..message import AlertMessage, Digest
from ..render import clean_text, truncate

log = logging.getLogger(__name__)

ERROR_BODY_MAX = 200


class Channel(Protocol):
    """What every channel object is (whatever its kind's builder returns): a name, the kind it
    was registered under, and its digest setting (None: send at once, "hourly", "daily")."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def digest(self) -> str | None: ...


@dataclass(frozen=True)
class Delivery:
    ok: bool
    error: str | None = None
    retry_after_s: float | None = None  # what the receiver asked for (429 Retry-After)
    # Retrying the same message will not help (bad credentials, webhook gone, address rejected):
    # the outbox should stop and a person must fix the channel.
    permanent: bool = False


# ------------------------------------------------------------------------------ rate limiting


# Slack documents "1 per second, short bursts >1 allowed" for posting messages, incoming webhooks
# included (https://api.slack.com/docs/rate-limits). A burst this size goes out at once; past it,
# messages are spaced one a second, so a sustained stream stays within the documented rate.
SLACK_BURST = 5


class SlackRateLimiter:
    """A token bucket per webhook URL: up to `burst` messages at once, refilled one every
    `interval_s` (Slack allows about 1/s with short bursts). `burst=1` is strict pacing.

    Each caller reserves its slot before it sleeps (the bucket is kept as the time its next
    token is "paid off", as in GCRA), so concurrent senders queue up in order without a lock and
    the limiter is not tied to one event loop. `hold` empties a bucket until a time the receiver
    asked for (a 429's Retry-After). `clock` and `sleep` are injectable so tests need not wait.
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        *,
        burst: int = SLACK_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        # Per key: when the bucket would be full again if nothing more were sent.
        self._full_at: dict[str, float] = {}

    def _slot(self, key: str, now: float) -> tuple[float, float]:
        """(when `key`'s next message may go, the bucket's "full again" time after it)."""
        full_at = max(now, self._full_at.get(key, now))
        # A message may go once at most `burst - 1` earlier ones are still being paid off.
        slot = max(now, full_at - (self.burst - 1) * self.interval_s)
        return slot, full_at + self.interval_s

    def delay(self, key: str) -> float:
        """Seconds until `key` may send (0 when a message could go now); reserves nothing."""
        now = self._clock()
        return self._slot(key, now)[0] - now

    async def wait(self, key: str) -> float:
        """Wait for `key`'s next slot; returns the seconds waited (0 when the slot was free)."""
        now = self._clock()
        slot, self._full_at[key] = self._slot(key, now)
        delay = slot - now
        if delay > 0:
            await self._sleep(delay)
        return delay

    def hold(self, key: str, seconds: float) -> None:
        """Send nothing more on `key` for `seconds` (what a 429 asked for), and then no burst:
        one message per `interval_s` until the bucket has refilled."""
        until = self._clock() + max(seconds, 0.0)
        full_at = until + (self.burst - 1) * self.interval_s
        self._full_at[key] = max(self._full_at.get(key, full_at), full_at)


# Used when the caller does not pass one, so the limit holds across calls in one process.
DEFAULT_SLACK_LIMITER = SlackRateLimiter()


# ---------------------------------------------------------------------------------- send_alert


async def send_alert(
    channel: Channel,
    message: AlertMessage | Digest,
    *,
    http: httpx.AsyncClient,
    limiter: SlackRateLimiter | None = None,
    user_agent: str | None = None,
) -> Delivery:
    """Deliver `message` on `channel`. Never raises for delivery problems.

    `http` is used for Slack and webhooks (redirects are never followed: a POST must not turn into
    a GET elsewhere); email goes through stdlib smtplib in a worker thread. `limiter` spaces Slack
    messages per webhook URL (default: one shared process-wide limiter). `user_agent` is the one
    the fetcher sends (default: listener's own), on HTTP posts and as the email's User-Agent.
    """
    if isinstance(message, Digest) and not message.messages:
        log.debug("channel %s: empty digest, nothing to send", channel.name)
        return Delivery(ok=True)
    user_agent = user_agent or default_user_agent()
    kind = _CHANNEL_KINDS.get(channel.kind)
    if kind is None:
        return Delivery(False, f"unknown channel kind {channel.kind!r}", permanent=True)
    try:
        result = await kind.send(
            channel,
            message,
            http=http,
            limiter=limiter or DEFAULT_SLACK_LIMITER,
            user_agent=user_agent,
        )
    except Exception as exc:
        # A bug in rendering or an unexpected library error: keep the outbox loop alive and the
        # alert pending (a fixed version can deliver it), and leave the traceback in the log.
        log.exception("channel %s: unexpected error while sending", channel.name)
        return Delivery(False, f"{channel.name}: unexpected {type(exc).__name__} (see log)")
    if result.ok:
        log.debug("channel %s: delivered %s", channel.name, _message_key(message))
    else:
        log.log(
            logging.WARNING if result.permanent else logging.INFO,
            "channel %s: not delivered (%s): %s",
            channel.name,
            "permanent" if result.permanent else "will retry",
            result.error,
        )
    return result


def _message_key(message: AlertMessage | Digest) -> str:
    return message.digest_id if isinstance(message, Digest) else message.alert_id


def _short(text: str | bytes | None, limit: int = ERROR_BODY_MAX) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return truncate(clean_text(text), limit)


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<url>")
    return text


# ------------------------------------------------------------------------------ channel kinds


class ChannelSender(Protocol):
    def __call__(
        self,
        channel: Any,
        message: AlertMessage | Digest,
        *,
        http: httpx.AsyncClient,
        limiter: SlackRateLimiter,
        user_agent: str,
    ) -> Awaitable[Delivery]: ...


@dataclass(frozen=True)
class ChannelKind:
    kind: str
    options_model: type[BaseModel]
    build: Callable[[Any], Channel]
    send: ChannelSender


_CHANNEL_KINDS: dict[str, ChannelKind] = {}


def register_channel(
    kind: str,
    options_model: type[BaseModel],
    builder: Callable[[Any], Channel],
    send: ChannelSender,
) -> ChannelKind:
    """Make `kind: <kind>` usable under `alerts.channels` in sources.yaml."""
    registered = _CHANNEL_KINDS[kind] = ChannelKind(kind, options_model, builder, send)
    return registered


def unregister_channel(kind: str) -> None:
    """Forget the channel kind `kind` (a test's own kind, once the test is done)."""
    _CHANNEL_KINDS.pop(kind, None)


def channel_kind(kind: str) -> ChannelKind | None:
    return _CHANNEL_KINDS.get(kind)


def channel_kind_names() -> list[str]:
    """The registered channel kinds, in the order they were registered."""
    return list(_CHANNEL_KINDS)


Digest_ = Literal["hourly", "daily"] | None


class ChannelOptions(BaseModel):
    """The base of every channel kind's options: unknown keys are an error, the options are
    frozen; `name:` and `kind:` are every channel's."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    name: str
    kind: str
