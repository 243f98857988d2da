"""Deliver what the outbox holds: at once for instant channels, gathered for digest channels.

An outbox row stays `pending` until its channel accepts it. A channel that is down (Slack 5xx,
SMTP refused, a timeout) gets the row back with a later `next_attempt_at` (exponential backoff, or
what the receiver asked for with Retry-After); a restart simply finds the pending rows again. A
permanent refusal (bad credentials, a webhook that no longer exists) marks the row `failed` with
the reason, shown by `listener status`, instead of retrying forever.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from ..config import ChannelModel
from ..store import Store, iso
from .channels import (
    Channel,
    Delivery,
    EmailChannel,
    SlackChannel,
    SlackRateLimiter,
    WebhookChannel,
    send_alert,
)
from .message import AlertMessage, Digest, Evidence

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 30.0
BACKOFF_MAX_S = 3600.0
DIGEST_PERIOD_S = {"hourly": 3600.0, "daily": 86400.0}


def build_channels(models: Sequence[ChannelModel]) -> dict[str, Channel]:
    """Config models -> the channel objects `send_alert` takes."""
    out: dict[str, Channel] = {}
    for m in models:
        if m.kind == "slack":
            out[m.name] = SlackChannel(name=m.name, webhook_url=m.webhook_url, digest=m.digest)
        elif m.kind == "email":
            out[m.name] = EmailChannel(
                name=m.name,
                host=m.host,
                port=m.port,
                from_addr=m.from_,
                to=tuple(m.to),
                starttls=m.starttls,
                ssl=m.ssl,
                username=m.username or None,
                password=m.password or None,
                digest=m.digest,
            )
        else:
            out[m.name] = WebhookChannel(
                name=m.name, url=m.url, headers=dict(m.headers), digest=m.digest
            )
    return out


def message_from_payload(payload: str) -> AlertMessage:
    d: dict[str, Any] = json.loads(payload)
    return AlertMessage(
        alert_id=d["alert_id"],
        rule=d["rule"],
        level=int(d["level"]),
        brand=d.get("brand"),
        title=d.get("title") or "",
        url=d.get("url"),
        why=d.get("why") or "",
        evidence=tuple(Evidence(**e) for e in d.get("evidence") or ()),
        counts=d.get("counts") or {},
        source=d.get("source"),
        created_at=d.get("created_at") or "",
    )


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
        delay = min(self.first_s * 2 ** max(attempts - 1, 0), self.max_s)
        return max(delay, retry_after or 0.0)


def _pending(store: Store, channel: str, now: datetime, force: bool) -> list[tuple[int, int, str]]:
    sql = (
        "SELECT o.alert_id, o.attempts, a.payload FROM outbox o JOIN alerts a ON a.id = o.alert_id "
        "WHERE o.channel = ? AND o.status = 'pending'"
    )
    args: list[Any] = [channel]
    if not force:
        sql += " AND o.next_attempt_at <= ?"
        args.append(iso(now))
    return store.conn.execute(sql + " ORDER BY a.id", args).fetchall()


def _record(
    store: Store,
    alert_ids: Sequence[int],
    channel: str,
    d: Delivery,
    attempts: Sequence[int],
    now: datetime,
    backoff: Backoff,
) -> str:
    with store.transaction():
        for alert_id, tried in zip(alert_ids, attempts, strict=True):
            if d.ok:
                store.conn.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = ?, last_error = ? "
                    "WHERE alert_id = ? AND channel = ?",
                    (iso(now), tried + 1, d.error, alert_id, channel),
                )
            elif d.permanent:
                store.conn.execute(
                    "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ? "
                    "WHERE alert_id = ? AND channel = ?",
                    (tried + 1, d.error, alert_id, channel),
                )
            else:
                later = now + timedelta(seconds=backoff.delay(tried + 1, d.retry_after_s))
                store.conn.execute(
                    "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ? "
                    "WHERE alert_id = ? AND channel = ?",
                    (tried + 1, d.error, iso(later), alert_id, channel),
                )
    return "sent" if d.ok else ("failed" if d.permanent else "retrying")


def _digest_due(store: Store, channel: Channel, now: datetime) -> bool:
    period = DIGEST_PERIOD_S.get(channel.digest or "", 0.0)
    (last,) = store.conn.execute(
        "SELECT max(sent_at) FROM outbox WHERE channel = ? AND status = 'sent'", (channel.name,)
    ).fetchone()
    if last is None:
        (first_pending,) = store.conn.execute(
            "SELECT min(a.created_at) FROM outbox o JOIN alerts a ON a.id = o.alert_id "
            "WHERE o.channel = ? AND o.status = 'pending'",
            (channel.name,),
        ).fetchone()
        if first_pending is None:
            return False
        last = first_pending
    then = datetime.fromisoformat(last.replace("Z", "+00:00"))
    return now - then >= timedelta(seconds=period)


async def deliver_pending(
    store: Store,
    channels: Mapping[str, Channel],
    *,
    http: httpx.AsyncClient,
    now: Callable[[], datetime],
    force: bool = False,
    limiter: SlackRateLimiter | None = None,
    backoff: Backoff | None = None,
) -> FlushReport:
    """Send what is due; `force` sends everything pending now (digests included)."""
    report = FlushReport()
    backoff = backoff or Backoff()
    for name, channel in channels.items():
        rows = _pending(store, name, now(), force)
        if not rows:
            continue
        batches: list[tuple[AlertMessage | Digest, list[int], list[int]]]
        if channel.digest and not force and not _digest_due(store, channel, now()):
            continue
        if channel.digest:
            digest = Digest(
                channel=name,
                period=channel.digest,
                messages=tuple(message_from_payload(p) for _, _, p in rows),
            )
            batches = [(digest, [r[0] for r in rows], [r[1] for r in rows])]
        else:
            batches = [(message_from_payload(p), [aid], [tried]) for aid, tried, p in rows]
        for message, ids, attempts in batches:
            delivery = await send_alert(channel, message, http=http, limiter=limiter)
            outcome = _record(store, ids, name, delivery, attempts, now(), backoff)
            if outcome == "sent":
                report.sent += len(ids)
            elif outcome == "failed":
                report.failed += len(ids)
                report.errors.append(f"{name}: {delivery.error}")
            else:
                report.retrying += len(ids)
                report.errors.append(f"{name}: {delivery.error}")
            if not delivery.ok and not delivery.permanent:
                break  # the channel is down: the rest waits for the next attempt
    return report


def outbox_counts(store: Store) -> dict[str, int]:
    return {
        status: n
        for status, n in store.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status")
    }
