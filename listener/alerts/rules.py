"""Alert rules: decide, right after a source poll is saved, which alerts fire.

Rules run inside the poll's transaction, so an alert is written to the outbox together with the
mentions that caused it, or not at all. Firing is idempotent: each alert has a key
(rule:subject:level) that is unique in the `alerts` table, so a re-run or a restart after a crash
cannot fire the same alert twice. Rules read corrected labels and skip mentions a user marked not
relevant.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import RulesModel
from ..store import Store, iso
from ..units import parse_iso
from .message import AlertMessage, Evidence, message_to_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alerting:
    """What the rules need from the config."""

    rules: RulesModel
    channels: tuple[str, ...]  # names of the configured channels
    influential_sources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PollOutcome:
    """What one saved source poll changed, as the rules see it."""

    source: str
    failed: bool
    threads: tuple[str, ...]
    new_mention_ids: tuple[int, ...]


def evaluate(store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime) -> list[int]:
    """Fire the alerts this poll warrants; returns the ids of alerts created."""
    rules = alerting.rules
    fired: list[int] = []
    if rules.negative_thread.enabled:
        for key in outcome.threads:
            fired += _negative_thread(store, alerting, key, now)
    if rules.very_negative_mention.enabled and outcome.new_mention_ids:
        fired += _very_negative(store, alerting, outcome, now)
    if rules.spike.enabled and outcome.new_mention_ids:
        fired += _spikes(store, alerting, outcome, now)
    if rules.churn_risk.enabled and outcome.new_mention_ids:
        fired += _churn_risk(store, alerting, outcome, now)
    if rules.source_health.enabled and outcome.failed:
        fired += _source_health(store, alerting, outcome.source, now)
    if rules.source_health.enabled and rules.source_health.stale_factor and not outcome.failed:
        fired += _stale_source(store, alerting, outcome.source, now)
    return fired


def _fire(
    store: Store,
    alerting: Alerting,
    now: datetime,
    *,
    rule: str,
    subject: str,
    level: int,
    message: AlertMessage,
    thread_key: str | None = None,
    channels: tuple[str, ...] | None = None,
) -> list[int]:
    key = f"{rule}:{subject}:{level}"
    created = iso(now)
    message = AlertMessage(
        alert_id=key,
        rule=rule,
        level=level,
        brand=message.brand,
        title=message.title,
        url=message.url,
        why=message.why,
        evidence=message.evidence,
        counts=message.counts,
        source=message.source,
        created_at=created or "",
    )
    cur = store.conn.execute(
        "INSERT INTO alerts(key, created_at, rule, level, brand, subject, thread_key, title, url, why, "
        "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
        (
            key,
            created,
            rule,
            level,
            message.brand,
            subject,
            thread_key,
            message.title,
            message.url,
            message.why,
            json.dumps(message_to_dict(message), ensure_ascii=False),
        ),
    )
    if not cur.rowcount:
        return []
    alert_id = int(cur.lastrowid or 0)
    store.conn.executemany(
        "INSERT OR IGNORE INTO outbox(alert_id, channel, next_attempt_at) VALUES (?, ?, ?)",
        [
            (alert_id, channel, created)
            for channel in (alerting.channels if channels is None else channels)
        ],
    )
    log.info("alert fired: %s (%s)", key, message.why)
    return [alert_id]


def _last_alert(store: Store, rule: str, subject: str) -> tuple[int, str] | None:
    row = store.conn.execute(
        "SELECT level, created_at FROM alerts WHERE rule = ? AND subject = ? "
        "ORDER BY level DESC, created_at DESC LIMIT 1",
        (rule, subject),
    ).fetchone()
    return (row[0], row[1]) if row else None


def _within(created_at: str, now: datetime, seconds: float) -> bool:
    then = parse_iso(created_at)
    return then is not None and now - then < timedelta(seconds=seconds)


def thread_evidence(store: Store, key: str, limit: int = 5) -> tuple[Evidence, ...]:
    rows = store.conn.execute(
        """
        SELECT coalesce(m.snippet, substr(i.text, 1, 300), i.title) AS text,
               coalesce(m.compound, i.compound) AS compound, i.url, i.author, i.published_at,
               coalesce(m.explanation, i.explanation)
        FROM items i LEFT JOIN mentions m ON m.item_id = i.id AND m.not_relevant = 0
        WHERE i.thread_key = ? AND i.relevant = 1 AND i.compound IS NOT NULL
          AND i.label = 'negative'
          AND NOT EXISTS (SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1)
        GROUP BY i.id ORDER BY compound ASC LIMIT ?
        """,
        (key, limit),
    ).fetchall()
    return tuple(
        Evidence(text or "", float(c), url, author, pub, _explain(expl))
        for text, c, url, author, pub, expl in rows
    )


def _explain(explanation_json: str | None) -> str | None:
    """The stored explanation of a score, as one line a person reads in an alert."""
    if not explanation_json:
        return None
    from ..sentiment import describe_explanation

    return describe_explanation(json.loads(explanation_json)) or None


def _negative_thread(store: Store, alerting: Alerting, key: str, now: datetime) -> list[int]:
    rule = alerting.rules.negative_thread
    row = store.conn.execute(
        "SELECT title, url, source, brands, posts, negative_posts, mean_compound, worst_compound "
        "FROM threads WHERE key = ? AND brands IS NOT NULL",
        (key,),
    ).fetchone()
    if row is None:
        return []
    title, url, source, brands, posts, negative, mean, worst = row
    by_mean = posts >= rule.min_posts and mean is not None and mean <= rule.mean_at_most
    if negative < rule.min_negative and not by_mean:
        return []  # the windowed count can only be lower: no need to count
    since = iso(now - timedelta(seconds=rule.window))
    (recent_negative,) = store.conn.execute(
        """
        SELECT count(*) FROM items i
        WHERE i.thread_key = ? AND i.relevant = 1 AND i.label = 'negative'
          AND coalesce(i.published_at, i.first_seen_at) >= ?
          AND NOT EXISTS (SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1)
        """,
        (key, since),
    ).fetchone()
    by_count = recent_negative >= rule.min_negative
    if not (by_count or by_mean):
        return []
    level = 1 + (recent_negative - rule.min_negative) // rule.escalate_every if by_count else 1
    last = _last_alert(store, "negative_thread", key)
    if last is not None:
        last_level, last_at = last
        if level <= last_level or _within(last_at, now, rule.cooldown):
            return []
    window = _human_duration(rule.window)
    if by_count:
        why = f"{recent_negative} negative posts in the last {window}"
    else:
        why = f"mean sentiment {mean:+.2f} over {posts} posts"
    if level > 1:
        why += f" (worse again: level {level})"
    message = AlertMessage(
        alert_id="",
        rule="negative_thread",
        level=level,
        brand=brands,
        title=title or key,
        url=url,
        why=why,
        evidence=thread_evidence(store, key),
        counts={
            "posts": posts,
            "negative posts": negative,
            "mean compound": round(mean or 0.0, 3),
            "worst compound": round(worst or 0.0, 3),
        },
        source=source,
    )
    return _fire(
        store,
        alerting,
        now,
        rule="negative_thread",
        subject=key,
        level=level,
        message=message,
        thread_key=key,
    )


def _very_negative(
    store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime
) -> list[int]:
    rule = alerting.rules.very_negative_mention
    watched = alerting.influential_sources | set(rule.sources)
    if outcome.source not in watched:
        return []
    fired: list[int] = []
    for mid in outcome.new_mention_ids:
        row = store.conn.execute(
            "SELECT brand, title, url, snippet, compound, author, published_at, source, thread_key, "
            "explanation "
            "FROM mentions WHERE id = ? AND not_relevant = 0 AND label = 'negative' AND compound <= ?",
            (mid, rule.compound_at_most),
        ).fetchone()
        if row is None:
            continue
        brand, title, url, snippet, compound, author, published, source, thread_key, expl = row
        message = AlertMessage(
            alert_id="",
            rule="very_negative_mention",
            level=1,
            brand=brand,
            title=title or url or "",
            url=url,
            why=f"a very negative mention (compound {compound:+.2f}) on {source}",
            evidence=(Evidence(snippet or "", compound, url, author, published, _explain(expl)),),
            counts={"compound": round(compound, 3)},
            source=source,
        )
        fired += _fire(
            store,
            alerting,
            now,
            rule="very_negative_mention",
            subject=f"{brand}:{url or mid}",
            level=1,
            message=message,
            thread_key=thread_key,
        )
    return fired


def _churn_risk(store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime) -> list[int]:
    """A customer says they are leaving a brand: one alert per conversation (per brand), naming
    the words that showed it, on the rule's own channels."""
    from ..sentiment import describe_intents

    rule = alerting.rules.churn_risk
    channels = tuple(rule.channels) if rule.channels is not None else None
    fired: list[int] = []
    marks = ",".join("?" * len(outcome.new_mention_ids))
    rows = store.conn.execute(
        "SELECT id, brand, title, url, snippet, compound, author, published_at, source, "
        "thread_key, explanation FROM mentions "
        f"WHERE id IN ({marks}) AND not_relevant = 0 AND intents LIKE '%\"churn\"%' ORDER BY id",
        outcome.new_mention_ids,
    ).fetchall()
    for mid, brand, title, url, snippet, compound, author, pub, source, thread, expl in rows:
        words = describe_intents(json.loads(expl or "[]"), "churn").replace("<brand>", brand)
        message = AlertMessage(
            alert_id="",
            rule="churn_risk",
            level=1,
            brand=brand,
            title=title or url or "",
            url=url,
            why=f"a customer says they are leaving {brand} ({words or 'churn'}) on {source}",
            evidence=(Evidence(snippet or "", compound, url, author, pub, _explain(expl)),),
            counts={"compound": round(compound, 3)},
            source=source,
        )
        fired += _fire(
            store,
            alerting,
            now,
            rule="churn_risk",
            subject=f"{brand}:{thread or url or mid}",
            level=1,
            message=message,
            thread_key=thread,
            channels=channels,
        )
    return fired


def _spikes(store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime) -> list[int]:
    rule = alerting.rules.spike
    marks = ",".join("?" * len(outcome.new_mention_ids))
    brands = [
        b
        for (b,) in store.conn.execute(
            f"SELECT DISTINCT brand FROM mentions WHERE id IN ({marks}) AND label = 'negative'",
            outcome.new_mention_ids,
        )
    ]
    fired: list[int] = []
    for brand in brands:
        # The database's first mention (an index lookup): without at least one window of history
        # every first poll would look like a spike.
        (first_seen,) = store.conn.execute("SELECT min(first_seen_at) FROM mentions").fetchone()
        if first_seen is None or _within(first_seen, now, rule.window):
            continue
        counts = spike_counts(store, brand, now, rule.window, rule.baseline)
        current, baseline = counts[-1], counts[:-1]
        mean = sum(baseline) / len(baseline) if baseline else 0.0
        sd = math.sqrt(sum((c - mean) ** 2 for c in baseline) / len(baseline)) if baseline else 0.0
        threshold = mean + rule.k * sd
        if current < rule.min_count or current <= threshold:
            continue
        last = _last_alert(store, "spike", brand)
        if last is not None and _within(last[1], now, rule.cooldown):
            continue
        bucket = int(now.timestamp() // rule.window)
        window = _human_duration(rule.window)
        message = AlertMessage(
            alert_id="",
            rule="spike",
            level=1,
            brand=brand,
            title=f"{brand}: negative mentions spiking",
            url=None,
            why=(
                f"{current} negative mentions in the last {window}, against a usual "
                f"{mean:.1f} ± {sd:.1f}"
            ),
            evidence=_recent_negative_evidence(store, brand, now, rule.window),
            counts={"negative mentions": current, "baseline mean": round(mean, 2)},
        )
        fired += _fire(
            store,
            alerting,
            now,
            rule="spike",
            subject=f"{brand}:{bucket}",
            level=1,
            message=message,
        )
    return fired


def spike_counts(
    store: Store, brand: str, now: datetime, window: float, baseline: float
) -> list[int]:
    """Negative mentions of a brand per window, oldest first; the last entry is the current window."""
    n = max(1, int(baseline // window))
    start = now - timedelta(seconds=window * (n + 1))
    counts = [0] * (n + 1)
    for (when,) in store.conn.execute(
        "SELECT coalesce(published_at, first_seen_at) FROM mentions WHERE brand = ? "
        "AND label = 'negative' AND not_relevant = 0 AND coalesce(published_at, first_seen_at) > ?",
        (brand, iso(start)),
    ):
        t = parse_iso(when)
        if t is None:
            continue
        index = int((t - start).total_seconds() // window)
        if 0 <= index <= n:
            counts[index] += 1
    return counts


def _recent_negative_evidence(
    store: Store, brand: str, now: datetime, window: float
) -> tuple[Evidence, ...]:
    rows = store.conn.execute(
        "SELECT snippet, compound, url, author, published_at, explanation FROM mentions WHERE brand = ? "
        "AND label = 'negative' AND not_relevant = 0 AND coalesce(published_at, first_seen_at) >= ? "
        "ORDER BY compound LIMIT 5",
        (brand, iso(now - timedelta(seconds=window))),
    ).fetchall()
    return tuple(Evidence(s or "", c, u, a, p, _explain(e)) for s, c, u, a, p, e in rows)


def _source_health(store: Store, alerting: Alerting, source: str, now: datetime) -> list[int]:
    rule = alerting.rules.source_health
    row = store.conn.execute(
        "SELECT consecutive_failures, last_error, last_success_at, url, kind FROM sources WHERE name = ?",
        (source,),
    ).fetchone()
    if row is None or row[0] < rule.failures:
        return []
    failures, error, last_success, url, _kind = row
    message = AlertMessage(
        alert_id="",
        rule="source_health",
        level=1,
        brand=None,
        title=f"source {source} is failing",
        url=url,
        why=(
            f"{failures} failed polls in a row; last error: {error}. "
            f"Last success: {last_success or 'never'}. Check the URL or the service."
        ),
        counts={"failures in a row": failures},
        source=source,
    )
    # One alert per failure streak: the streak is named by the last success before it.
    return _fire(
        store,
        alerting,
        now,
        rule="source_health",
        subject=f"{source}:{last_success or 'never'}",
        level=1,
        message=message,
    )


# How a source's service is named in a staleness alert ("Hacker News search has returned ...").
_SERVICE_NAMES = {
    "hackernews": "Hacker News search",
    "reddit": "Reddit search",
    "stackexchange": "Stack Exchange search",
    "mastodon": "Mastodon",
    "bluesky": "Bluesky search",
    "github": "GitHub search",
    "lemmy": "Lemmy",
    "discourse": "the Discourse forum",
    "youtube": "the YouTube feed",
    "google_alerts": "the Google Alerts feed",
    "gdelt": "GDELT news search",
    "feed": "the feed",
}
# Productive polls looked at to learn a source's usual gap, and the fewest gaps that teach it.
STALE_HISTORY = 50
STALE_MIN_GAPS = 3


def usual_gap(store: Store, source: str) -> tuple[datetime, float] | None:
    """(when the source last brought something new, the median gap between such polls in
    seconds), or None while there is too little history to know what is usual."""
    read = [
        parse_iso(t)
        for (t,) in store.conn.execute(
            "SELECT DISTINCT started_at FROM fetches WHERE source = ? AND new_items > 0 "
            "ORDER BY started_at DESC LIMIT ?",
            (source, STALE_HISTORY + 1),
        )
    ]
    times = [t for t in read if t is not None]
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
    if len(gaps) < STALE_MIN_GAPS:
        return None
    return times[0], max(statistics.median(gaps), 1.0)


def _stale_source(store: Store, alerting: Alerting, source: str, now: datetime) -> list[int]:
    """A source that answers but has returned nothing new for far longer than usual."""
    rule = alerting.rules.source_health
    known = usual_gap(store, source)
    if known is None:
        return []
    last_new, gap = known
    silence = (now - last_new).total_seconds()
    if silence < max(rule.stale_factor * gap, rule.stale_min):
        return []
    row = store.conn.execute("SELECT kind, url FROM sources WHERE name = ?", (source,)).fetchone()
    kind, url = row if row else ("", None)
    service = _SERVICE_NAMES.get(kind, f"the {kind} source")
    said = f"{service[0].upper()}{service[1:]}"
    message = AlertMessage(
        alert_id="",
        rule="source_health",
        level=1,
        brand=None,
        title=f"source {source} has gone quiet",
        url=url,
        why=(
            f"{said} has returned nothing new for {_age(silence)}; it usually has something "
            f"every {_age(gap)}. It still answers without errors, so the service may be serving "
            f"old data (source {source}, last new item seen {iso(last_new)}): compare with the "
            "site itself, and check the source's query."
        ),
        counts={"hours quiet": round(silence / 3600, 1), "usual gap (min)": round(gap / 60, 1)},
        source=source,
    )
    # One alert per quiet spell: the spell is named by the last poll that brought something.
    return _fire(
        store,
        alerting,
        now,
        rule="source_health",
        subject=f"{source}:stale:{iso(last_new)}",
        level=1,
        message=message,
    )


def _age(seconds: float) -> str:
    """`36 h`, `20 min`: a span as people say it."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _human_duration(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}" if n != 1 else unit
    return f"{seconds:g} s"
