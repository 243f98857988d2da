"""Deliver what the outbox holds: at once for instant channels, gathered for digest channels.

An outbox row stays `pending` until its channel accepts it. A channel that is down (Slack 5xx,
SMTP refused, a timeout) gets the row back with a later `next_attempt_at` (exponential backoff, or
what the receiver asked for with Retry-After, at most `Backoff.max_s`); a restart simply finds the
pending rows again. A permanent refusal (bad credentials, a webhook that no longer exists) marks
the row `failed` with the reason, shown by `listener status`, instead of retrying forever.

Each send is claimed first: the row becomes `sending` (attempt counted, committed) before the
network call, and its result is recorded right after. Only one row is in flight at a time, so a
process killed mid-send leaves at most one `sending` row; it is sent once more (at-least-once: the
receiver may show it twice, webhooks and mail can deduplicate by Idempotency-Key / Message-ID) when
`run` starts again (`recover_interrupted`), or by any flush once its lease has run out. A second
process flushing at the same time cannot claim a row that is already in flight.

Alerts for a channel go out oldest first while the channel can take them at once (Slack: a short
burst); once it must pace them, the newest due alert goes first, so a fresh alert is never held
behind a backlog. Each alert is still claimed, sent and recorded on its own row.

One alert or channel failing never stops the others: every batch is delivered and recorded on its
own, and an unexpected error is logged and recorded on the row it concerns.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from ..store import Store
from ..units import clamp_wait, parse_iso
from .channels import (
    DEFAULT_SLACK_LIMITER,
    Channel,
    Delivery,
    SlackChannel,
    SlackRateLimiter,
    send_alert,
)
from .message import AlertMessage, Digest, message_from_dict

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 30.0
BACKOFF_MAX_S = 3600.0
DIGEST_PERIOD_S = {"hourly": 3600.0, "daily": 86400.0}
# How long a claimed (`sending`) row belongs to the process that claimed it. A send is bounded by
# the HTTP / SMTP timeouts (20 s per step), so a row still `sending` after this was abandoned by a
# process that died mid-send; `run` also takes them back at once when it starts.
SEND_LEASE_S = 300.0
# A channel whose receiver asked for a longer pause than this is left for a later flush rather
# than waited for (a flush delivers every channel in turn).
HOLD_MAX_S = 10.0
INTERRUPTED = (
    "interrupted mid-send (the process stopped before the receiver answered); sent once more, "
    "so the receiver may show it twice"
)


def build_channels(channels: Sequence[Channel]) -> dict[str, Channel]:
    """The configured channels (`Config.alerts.channels`, built by the channel registry) by name,
    as `deliver_pending` takes them."""
    return {c.name: c for c in channels}


def message_from_payload(payload: str) -> AlertMessage:
    return message_from_dict(json.loads(payload))


@dataclass
class FlushReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Backoff:
    first_s: float = BACKOFF_FIRST_S
    max_s: float = BACKOFF_MAX_S

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: doubling from `first_s` up to `max_s`, or longer when
        the receiver asked for it, never beyond `max_s` (nor non-finite)."""
        delay = min(self.first_s * 2.0 ** min(max(attempts - 1, 0), 64), self.max_s)
        asked = clamp_wait(retry_after, max(self.max_s, 0.0))
        delay = max(delay, asked or 0.0)
        return delay if math.isfinite(delay) and delay >= 0 else BACKOFF_MAX_S


def _later(now: datetime, seconds: float) -> datetime:
    try:
        return now + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return now + timedelta(seconds=BACKOFF_MAX_S)


def _pending(store: Store, channel: str, now: datetime, force: bool) -> list[tuple[int, int, str]]:
    return store.pending_deliveries(channel, None if force else now)


def recover_interrupted(store: Store, now: datetime, *, everything: bool = False) -> int:
    """Rows left `sending` by a process that died mid-send go back to `pending`, due now.

    Without `everything`, only rows whose lease has run out (another live process may still be
    sending the others); with it, all of them (`run` at start: it is the only service on the
    database, and a forced flush)."""
    n = store.recover_sending(now, INTERRUPTED, everything=everything)
    if n:
        log.warning("outbox: %d alert delivery(s) %s", n, INTERRUPTED)
    return n


def _claim(
    store: Store, alert_ids: Sequence[int], channel: str, now: datetime
) -> tuple[list[int], list[int]]:
    """Mark the rows `sending` (one more attempt) and commit, before any network call.
    Returns the ids this process got, with their attempts before this one."""
    return store.claim_deliveries(alert_ids, channel, _later(now, SEND_LEASE_S))


def _record(
    store: Store,
    alert_ids: Sequence[int],
    channel: str,
    d: Delivery,
    attempts: Sequence[int],
    now: datetime,
    backoff: Backoff,
) -> str:
    # Committed at once: a send that went out must not be sent again after a crash.
    with store.transaction(durable=True):
        for alert_id, tried in zip(alert_ids, attempts, strict=True):
            if d.ok:
                store.mark_sent(alert_id, channel, now, d.error)
            elif d.permanent:
                store.mark_failed(alert_id, channel, d.error)
            else:
                later = _later(now, backoff.delay(tried + 1, d.retry_after_s))
                store.mark_retry(alert_id, channel, d.error, later)
    return "sent" if d.ok else ("failed" if d.permanent else "retrying")


def _digest_due(store: Store, channel: Channel, now: datetime) -> bool:
    period = DIGEST_PERIOD_S.get(channel.digest or "", 0.0)
    last = store.last_sent_at(channel.name)
    if last is None:
        first_pending = store.first_pending_at(channel.name)
        if first_pending is None:
            return False
        last = first_pending
    then = parse_iso(last)
    return then is None or now - then >= timedelta(seconds=period)


async def deliver_pending(
    store: Store,
    channels: Mapping[str, Channel],
    *,
    http: httpx.AsyncClient,
    now: Callable[[], datetime],
    force: bool = False,
    limiter: SlackRateLimiter | None = None,
    backoff: Backoff | None = None,
    user_agent: str | None = None,
) -> FlushReport:
    """Send what is due; `force` sends everything pending now (digests included, and sends a
    process interrupted). One channel or alert failing never stops the others."""
    report = FlushReport()
    backoff = backoff or Backoff()
    try:
        recover_interrupted(store, now(), everything=force)
    except Exception:
        log.exception("outbox: could not take back interrupted sends; trying again next flush")
    for name, channel in channels.items():
        try:
            await _deliver_channel(
                store, name, channel, report, http, now, force, limiter, backoff, user_agent
            )
        except Exception as exc:
            # A bug or a database error: this channel waits for the next flush, the others go on.
            log.exception("outbox: delivering on channel %s failed", name)
            report.errors.append(f"{name}: unexpected {type(exc).__name__} (see log)")
    return report


async def _deliver_channel(
    store: Store,
    name: str,
    channel: Channel,
    report: FlushReport,
    http: httpx.AsyncClient,
    now: Callable[[], datetime],
    force: bool,
    limiter: SlackRateLimiter | None,
    backoff: Backoff,
    user_agent: str | None,
) -> None:
    rows = _pending(store, name, now(), force)
    if not rows:
        return
    if channel.digest:
        if force or _digest_due(store, channel, now()):
            # A digest channel sends everything due as one message.
            ids = [aid for aid, _, _ in rows]
            await _send(
                store, name, channel, ids, rows, report, http, now, limiter, backoff, user_agent
            )
        return
    limiter = limiter or DEFAULT_SLACK_LIMITER
    key = _rate_key(channel)
    tried: set[int] = set()
    # As many sends as were due when this channel's turn began: alerts queued meanwhile may take
    # some of them, but a steady stream on one channel never keeps the next channel waiting.
    turns = len(rows)
    while turns > 0 and (rows := [row for row in rows if row[0] not in tried]):
        turns -= 1
        wait = limiter.delay(key) if key is not None else 0.0
        if wait > HOLD_MAX_S:
            # The receiver asked for a long pause (429 Retry-After): the rows stay pending for a
            # later flush instead of holding up the other channels.
            log.info("outbox: channel %s paused for %.0f s more (rate limited)", name, wait)
            return
        # In order while the channel can take them at once; once it must wait, the newest alert
        # first, so a fresh alert is never held behind a backlog (the older ones follow, none is
        # dropped).
        aid = rows[0][0] if wait <= 0 else rows[-1][0]
        tried.add(aid)
        if not await _send(
            store, name, channel, [aid], rows, report, http, now, limiter, backoff, user_agent
        ):
            return  # the channel is down: the rest waits for the next attempt
        # Read again: alerts queued while this one was paced or sent are due too.
        rows = _pending(store, name, now(), force)


def _rate_key(channel: Channel) -> str | None:
    """What `SlackRateLimiter` paces this channel by (its webhook URL), None if it is not paced."""
    return channel.webhook_url if isinstance(channel, SlackChannel) else None


async def _send(
    store: Store,
    name: str,
    channel: Channel,
    batch: Sequence[int],
    rows: Sequence[tuple[int, int, str]],
    report: FlushReport,
    http: httpx.AsyncClient,
    now: Callable[[], datetime],
    limiter: SlackRateLimiter | None,
    backoff: Backoff,
    user_agent: str | None,
) -> bool:
    """Claim, send and record one message (one alert, or a digest of `batch`); False when the
    channel is down for now (a failure worth retrying later)."""
    ids, attempts = _claim(store, batch, name, now())
    if not ids:
        return True  # another process is sending these
    payloads = {aid: payload for aid, _, payload in rows}
    try:
        messages = [message_from_payload(payloads[aid]) for aid in ids]
        message: AlertMessage | Digest = (
            Digest(channel=name, period=channel.digest, messages=tuple(messages))
            if channel.digest
            else messages[0]
        )
    except Exception as exc:
        log.exception("outbox: alert(s) %s cannot be read for channel %s", ids, name)
        delivery = Delivery(
            False, f"{name}: the stored alert cannot be read ({type(exc).__name__})", None, True
        )
    else:
        try:
            delivery = await send_alert(
                channel, message, http=http, limiter=limiter, user_agent=user_agent
            )
        except Exception as exc:  # send_alert answers Delivery; this is a bug
            log.exception("outbox: sending on channel %s failed", name)
            delivery = Delivery(False, f"{name}: unexpected {type(exc).__name__} (see log)")
    outcome = _record(store, ids, name, delivery, attempts, now(), backoff)
    if outcome == "sent":
        report.sent += len(ids)
    elif outcome == "failed":
        report.failed += len(ids)
        report.errors.append(f"{name}: {delivery.error}")
    else:
        report.retrying += len(ids)
        report.errors.append(f"{name}: {delivery.error}")
    return delivery.ok or delivery.permanent


def outbox_counts(store: Store) -> dict[str, int]:
    return store.outbox_counts()
