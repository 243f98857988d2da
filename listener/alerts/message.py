"""What an alert says, independent of where it goes.

The rules build `AlertMessage`s (one per thread that turned negative, spike, ...) and the outbox
stores them; `render` turns one into Slack blocks, an email or plain text, and `channels` delivers
it. Everything here is plain data so the same message renders the same way on every retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Evidence:
    """One post that made the conversation negative, as shown to a person."""

    text: str  # the snippet, untrusted text from the web
    compound: float  # VADER compound, -1..1
    url: str | None = None
    author: str | None = None
    published_at: str | None = None  # ISO 8601 UTC
    explanation: str | None = None  # what drove the score: '"never answered" -2.2, "crashing" -2.0'


@dataclass(frozen=True)
class AlertMessage:
    alert_id: str  # stable id (the outbox key): retries of one alert carry the same id
    rule: str  # "negative_thread" | "very_negative_mention" | "spike" | "source_health" | "test"
    level: int  # escalation level: 1 on first alert, 2+ when the thread got materially worse
    brand: str | None
    title: str  # thread title / headline, untrusted
    url: str | None  # link to the thread, untrusted
    why: str  # one human sentence: "4 negative posts in 6 h (mean compound -0.62)"
    evidence: tuple[Evidence, ...] = ()  # worst snippets, worst first
    counts: Mapping[str, int | float] = field(default_factory=dict, hash=False)
    source: str | None = None
    created_at: str = ""  # ISO 8601 UTC
    # What a person needs to act (conversation alerts; empty for the others):
    severity: str = ""  # "worrying" | "serious" | "critical"
    update: str = ""  # what changed since this conversation's last alert
    people: str = ""  # who is talking: customers, the brand's replies, competitors named
    answered: str = ""  # whether the brand has answered, and how long ago the first complaint came
    next_step: str = (
        ""  # what to do now: "Reply on the thread: nobody from Acme has answered in 5 h"
    )
    page_url: str | None = None  # the conversation's page in `listener serve`


@dataclass(frozen=True)
class Digest:
    """Several alerts for one channel gathered into a single message (hourly / daily)."""

    channel: str
    period: str  # "hourly" | "daily" (shown as given)
    messages: tuple[AlertMessage, ...]

    @property
    def digest_id(self) -> str:
        """A stable id for this exact set of alerts, so a retried digest can be deduplicated."""
        ids = "\n".join(sorted(m.alert_id for m in self.messages))
        raw = f"{self.channel}\n{self.period}\n{ids}".encode()
        return "digest-" + hashlib.sha256(raw).hexdigest()[:24]


def evidence_to_dict(evidence: Evidence) -> dict[str, Any]:
    return {
        "text": evidence.text,
        "compound": evidence.compound,
        "url": evidence.url,
        "author": evidence.author,
        "published_at": evidence.published_at,
        "explanation": evidence.explanation,
    }


def message_to_dict(message: AlertMessage) -> dict[str, Any]:
    """JSON-ready dict of a message (tuples become lists, `counts` a plain dict)."""
    return {
        "alert_id": message.alert_id,
        "rule": message.rule,
        "level": message.level,
        "brand": message.brand,
        "title": message.title,
        "url": message.url,
        "why": message.why,
        "evidence": [evidence_to_dict(e) for e in message.evidence],
        "counts": dict(message.counts),
        "source": message.source,
        "created_at": message.created_at,
        "severity": message.severity,
        "update": message.update,
        "people": message.people,
        "answered": message.answered,
        "next_step": message.next_step,
        "page_url": message.page_url,
    }


def message_from_dict(d: Mapping[str, Any]) -> AlertMessage:
    """The inverse of `message_to_dict` (a stored payload; fields it lacks take their defaults)."""
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
        severity=d.get("severity") or "",
        update=d.get("update") or "",
        people=d.get("people") or "",
        answered=d.get("answered") or "",
        next_step=d.get("next_step") or "",
        page_url=d.get("page_url"),
    )


def digest_to_dict(digest: Digest) -> dict[str, Any]:
    return {
        "digest_id": digest.digest_id,
        "channel": digest.channel,
        "period": digest.period,
        "messages": [message_to_dict(m) for m in digest.messages],
    }
