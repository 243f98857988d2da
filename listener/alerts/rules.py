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
from dataclasses import replace as _replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from ..models import NegativeThreadRule, Rules
from ..store import Store, ThreadSummary, ThreadTally, iso
from ..units import parse_iso
from .message import AlertMessage, Evidence, message_to_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alerting:
    """What the rules need from the config."""

    rules: Rules
    channels: tuple[str, ...]  # names of the configured channels
    influential_sources: frozenset[str] = frozenset()
    serve_url: str | None = None  # where `listener serve` is: alerts link to thread pages there
    # Brands with `accounts:`: only for them can listener tell whether anyone answered.
    answering_brands: frozenset[str] = frozenset()


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
        # A first poll touches thousands of conversations: their stored counts, read at once,
        # rule out most before any is summarised.
        tallies = store.thread_tallies(outcome.threads)
        for key in outcome.threads:
            tally = tallies.get(key)
            if tally is not None and _may_turn_negative(alerting, tally):
                fired += _negative_thread(store, alerting, key, now)
    if rules.unanswered_negative.enabled:
        fired += _unanswered_negative(store, alerting, now)
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
    message = _replace(message, alert_id=key, rule=rule, level=level, created_at=created or "")
    if channels is None:
        configured = getattr(alerting.rules, rule, None)
        wanted = getattr(configured, "channels", None)
        channels = tuple(wanted) if wanted is not None else alerting.channels
    if thread_key is not None:
        # One message per conversation per poll: a channel already told about this thread in
        # this poll (its conversation alert carries the rest) is not told again.
        told = store.channels_told(thread_key, created or "")
        if channels and told.issuperset(channels):
            log.debug("%s:%s joins this poll's alert about thread %s", rule, subject, thread_key)
            return []
        channels = tuple(c for c in channels if c not in told)
    alert_id = store.queue_alert(
        key=key,
        created_at=created or "",
        rule=rule,
        level=level,
        brand=message.brand,
        subject=subject,
        thread_key=thread_key,
        title=message.title,
        url=message.url,
        why=message.why,
        payload=json.dumps(message_to_dict(message), ensure_ascii=False),
        channels=channels,
    )
    if alert_id is None:
        return []
    log.info("alert fired: %s (%s)", key, message.why)
    return [alert_id]


def _last_alert(store: Store, rule: str, subject: str) -> tuple[int, str] | None:
    return store.last_alert(rule, subject)


def _within(created_at: str, now: datetime, seconds: float) -> bool:
    then = parse_iso(created_at)
    return then is not None and now - then < timedelta(seconds=seconds)


def thread_evidence(store: Store, key: str, limit: int = 5) -> tuple[Evidence, ...]:
    """The conversation's worst customer posts, as `thread_summary` reads them."""
    summary = store.thread_summary(key, limit)
    return _evidence(summary) if summary else ()


def _evidence(summary: ThreadSummary) -> tuple[Evidence, ...]:
    brand = summary.brand or "the brand"
    return tuple(
        Evidence(
            p.text,
            p.compound,
            p.url,
            p.author,
            p.published_at,
            _explain(p.explanation, brand),
        )
        for p in summary.worst
    )


def _explain(explanation_json: str | None, brand: str | None = None) -> str | None:
    """The stored explanation of a score, as one line a person reads in an alert."""
    if not explanation_json:
        return None
    from ..sentiment import describe_explanation

    return _named(describe_explanation(json.loads(explanation_json)), brand) or None


def _named(words: str, brand: str | None) -> str:
    """Explanation words with the masked names spelled out ("<brand>", "<other>")."""
    return words.replace("<brand>", brand or "the brand").replace("<other>", "another brand")


# Conversations the team chose to ignore never alert; resolved ones only once a new post
# reopens them (the store sets them back to 'new').
_QUIET_STATUSES = ("ignored",)


def _status(store: Store, key: str | None) -> str:
    if key is None:
        return "new"
    return store.thread_status(key)


def _conversation_alerted(store: Store, key: str) -> bool:
    """Whether this conversation already alerted as a conversation (any rule about it)."""
    return store.conversation_alerted(key)


def page_url(serve_url: str | None, key: str) -> str | None:
    """The conversation's page in `listener serve`."""
    if not serve_url:
        return None
    return f"{serve_url.rstrip('/')}/-/thread?key={quote(key, safe='')}"


def severity(summary: ThreadSummary, min_negative: int, now: datetime) -> str:
    """How bad, in the word a marketer would use: worrying, serious or critical."""
    points = 0
    if summary.negative_posts >= 2 * min_negative:
        points += 1
    if summary.worst_compound is not None and summary.worst_compound <= -0.75:
        points += 1
    if summary.churn_customers:
        points += 1
    first = parse_iso(summary.first_negative_at)
    if summary.answered_at is None and first is not None and now - first >= timedelta(hours=4):
        points += 1
    return "critical" if points >= 3 else "serious" if points >= 1 else "worrying"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _says(n: int) -> str:
    return "1 customer says" if n == 1 else f"{n} customers say"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _ago(since: str | None, now: datetime) -> str | None:
    then = parse_iso(since)
    return _age(max((now - then).total_seconds(), 0)) if then else None


def conversation_message(
    summary: ThreadSummary,
    alerting: Alerting,
    now: datetime,
    *,
    rule: str,
    why: str,
    min_negative: int = 1,
    update: str = "",
) -> AlertMessage:
    """A conversation alert a marketer acts on: what happened, where, how bad, who is talking,
    whether the brand answered, what to do next, a link to each post and to its page."""
    brand = summary.brand or "the brand"
    people = [_plural(summary.customers, "customer")]
    if summary.brand_replies:
        people.append(f"{brand} replied {_times(summary.brand_replies)}")
    if summary.churn_customers:
        people.append(f"{_says(summary.churn_customers)} they are leaving")
    if summary.others:
        people.append(f"also names {', '.join(summary.others)}")
    first_ago = _ago(summary.first_negative_at, now)
    page = page_url(alerting.serve_url, summary.key)
    if summary.brand not in alerting.answering_brands and not summary.answered_at:
        answered = (
            f"listener cannot tell whether {brand} answered: list {brand}'s accounts in "
            "sources.yaml (brands: accounts:)"
        )
        if first_ago:
            answered += f"; the first complaint came {first_ago} ago"
        step = "Read the thread and reply where it helps."
    elif summary.answered_at:
        answered = f"{brand} answered {_ago(summary.answered_at, now)} ago"
        if first_ago:
            answered += f"; the first complaint came {first_ago} ago"
        later = sum(
            1 for p in summary.worst if (p.published_at or "") > (summary.answered_at or "")
        )
        step = (
            f"Follow up on the thread: {_plural(later, 'negative post')} came after "
            f"{brand}'s reply."
            if later
            else f"Check that {brand}'s reply settled it."
        )
    else:
        answered = f"Nobody from {brand} has answered"
        if first_ago:
            answered += f"; the first complaint came {first_ago} ago"
        step = "Reply on the thread" + (
            f": nobody from {brand} has answered in {first_ago}." if first_ago else "."
        )
    if summary.churn_customers:
        n = summary.churn_customers
        step += f" Reach the {_plural(n, 'customer')} who {'says' if n == 1 else 'say'} they are leaving."
    if page:
        step += " Mark it acknowledged on its page once someone owns it."
    counts: dict[str, Any] = {
        "posts": summary.posts,
        "negative posts": summary.negative_posts,
        "mean compound": round(summary.mean_compound or 0.0, 3),
        "worst compound": round(summary.worst_compound or 0.0, 3),
    }
    return AlertMessage(
        alert_id="",
        rule=rule,
        level=1,
        brand=summary.brand,
        title=summary.title or summary.key,
        url=summary.url,
        why=why,
        evidence=_evidence(summary),
        counts=counts,
        source=summary.source,
        severity=severity(summary, min_negative, now),
        update=update,
        people="; ".join(people),
        answered=answered + ".",
        next_step=step,
        page_url=page,
    )


def _since_last_alert(store: Store, key: str, last_at: str) -> tuple[int, int]:
    """(negative customer posts, customers saying they are leaving) first seen after `last_at`."""
    return store.negative_since(key, last_at)


def _may_turn_negative(alerting: Alerting, tally: ThreadTally) -> bool:
    """Whether the conversation's counts could meet the rule (the windowed count can only be
    lower than the whole count: no need to count when the whole falls short)."""
    rule = alerting.rules.negative_thread
    if tally.status in _QUIET_STATUSES:
        return False
    return tally.negative_posts >= rule.min_negative or _negative_on_average(rule, tally)


def _negative_on_average(rule: NegativeThreadRule, tally: ThreadTally | ThreadSummary) -> bool:
    mean = tally.mean_compound
    return tally.posts >= rule.min_posts and mean is not None and mean <= rule.mean_at_most


def _negative_thread(store: Store, alerting: Alerting, key: str, now: datetime) -> list[int]:
    rule = alerting.rules.negative_thread
    summary = store.thread_summary(key)
    if summary is None or summary.status in _QUIET_STATUSES:
        return []
    posts, mean = summary.posts, summary.mean_compound
    by_mean = _negative_on_average(rule, summary)
    if summary.negative_posts < rule.min_negative and not by_mean:
        return []
    recent_negative = store.recent_negative_posts(key, now - timedelta(seconds=rule.window))
    by_count = recent_negative >= rule.min_negative
    if not (by_count or by_mean):
        return []
    level = 1 + (recent_negative - rule.min_negative) // rule.escalate_every if by_count else 1
    last = _last_alert(store, "negative_thread", key)
    update = ""
    if last is not None:
        last_level, last_at = last
        if level <= last_level or _within(last_at, now, rule.cooldown):
            return []
        more, leaving = _since_last_alert(store, key, last_at)
        update = f"{_plural(more, 'more negative post')} since the last alert"
        if leaving:
            update += f", {_says(leaving)} they are leaving"
    window = _human_duration(rule.window)
    about = f" about {summary.brand}" if summary.brand else ""
    if by_count:
        why = f"{recent_negative} negative posts in the last {window}{about}"
    else:
        why = f"mean sentiment {mean:+.2f} over {posts} posts{about}"
    if summary.source:
        why += f" on {summary.source}"
    message = conversation_message(
        summary,
        alerting,
        now,
        rule="negative_thread",
        why=why,
        min_negative=rule.min_negative,
        update=update,
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


# Unanswered conversations are looked for among those with a post in this long.
UNANSWERED_LOOKBACK = timedelta(days=7)


def _unanswered_negative(store: Store, alerting: Alerting, now: datetime) -> list[int]:
    """A conversation with a negative customer post that nobody from the brand answered in
    `after`: once per conversation (an answer, or the team ignoring or resolving it, stops it)."""
    rule = alerting.rules.unanswered_negative
    if not alerting.answering_brands:
        return []  # without the brands' accounts, nobody can tell whether anyone answered
    due = now - timedelta(seconds=rule.after)
    # Asked on every save: only the conversations that can fire now are read.
    keys = store.unanswered_threads(
        rule.min_negative,
        now - UNANSWERED_LOOKBACK - timedelta(seconds=rule.after),
        due - UNANSWERED_LOOKBACK,
        due,
        alerting.answering_brands,
    )
    fired: list[int] = []
    for key in keys:
        summary = store.thread_summary(key)
        if summary is None or summary.brand not in alerting.answering_brands:
            continue  # without the brand's accounts, nobody can tell whether it answered
        if summary.answered_at or len(summary.worst) < min(rule.min_negative, 5):
            continue
        first = parse_iso(summary.first_negative_at)
        if first is None or first > due or first < due - UNANSWERED_LOOKBACK:
            continue
        brand = summary.brand or "the brand"
        why = (
            f"A customer complained about {brand} {_age((now - first).total_seconds())} ago"
            + (f" on {summary.source}" if summary.source else "")
            + f" and nobody from {brand} has answered"
        )
        message = conversation_message(
            summary, alerting, now, rule="unanswered_negative", why=why, min_negative=1
        )
        fired += _fire(
            store,
            alerting,
            now,
            rule="unanswered_negative",
            subject=key,
            level=1,
            message=message,
            thread_key=key,
        )
    return fired


def _very_negative(
    store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime
) -> list[int]:
    """Very negative posts from a watched source: one alert per conversation. A conversation
    that already alerted is not alerted again for them: they count toward its escalation."""
    rule = alerting.rules.very_negative_mention
    watched = alerting.influential_sources | set(rule.sources)
    if outcome.source not in watched:
        return []
    rows = store.very_negative_mentions(outcome.new_mention_ids, rule.compound_at_most)
    by_thread: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_thread.setdefault(row[9] or f"url:{row[3] or row[0]}", []).append(row)
    fired: list[int] = []
    for thread, posts in by_thread.items():
        brand, title, url, compound, source, key = (posts[0][i] for i in (1, 2, 3, 5, 8, 9))
        if key is not None and (
            _status(store, key) in _QUIET_STATUSES or _conversation_alerted(store, key)
        ):
            continue
        summary = store.thread_summary(key) if key is not None else None
        n = len(posts)
        what = "a very negative post" if n == 1 else f"{n} very negative posts"
        if summary is not None:
            message = conversation_message(
                summary,
                alerting,
                now,
                rule="very_negative_mention",
                why=f"{what} about {summary.brand or brand} on {source}",
            )
        else:
            message = AlertMessage(
                alert_id="",
                rule="very_negative_mention",
                level=1,
                brand=brand,
                title=title or url or "",
                url=url,
                why=f"{what} (compound {compound:+.2f}) on {source}",
                evidence=tuple(
                    Evidence(p[4] or "", p[5], p[3], p[6], p[7], _explain(p[10])) for p in posts
                ),
                counts={"compound": round(compound, 3)},
                source=source,
            )
        fired += _fire(
            store,
            alerting,
            now,
            rule="very_negative_mention",
            subject=f"{brand}:{thread}",
            level=1,
            message=message,
            thread_key=key,
        )
    return fired


def _churn_risk(store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime) -> list[int]:
    """A customer says they are leaving a brand: one alert per conversation (per brand), naming
    the words that showed it, on the rule's own channels."""
    from ..sentiment import describe_intents

    rule = alerting.rules.churn_risk
    channels = tuple(rule.channels) if rule.channels is not None else None
    fired: list[int] = []
    rows = store.churn_mentions(outcome.new_mention_ids)
    for mid, brand, title, url, snippet, compound, author, pub, source, thread, expl in rows:
        if _status(store, thread) in _QUIET_STATUSES:
            continue
        words = _named(describe_intents(json.loads(expl or "[]"), "churn"), brand)
        why = f"a customer says they are leaving {brand} ({words or 'churn'}) on {source}"
        summary = store.thread_summary(thread) if thread else None
        if summary is not None:
            # The conversation as every other alert tells it, with the leaving post as evidence.
            message = conversation_message(summary, alerting, now, rule="churn_risk", why=why)
            message = _replace(message, brand=brand, evidence=_post_evidence(store, mid, brand))
        else:
            message = AlertMessage(
                alert_id="",
                rule="churn_risk",
                level=1,
                brand=brand,
                title=title or url or "",
                url=url,
                why=why,
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


def _post_evidence(store: Store, mention_id: int, brand: str) -> tuple[Evidence, ...]:
    """One post, shown as the conversation shows it: its text, its own score and link."""
    post = store.thread_post(mention_id, brand)
    if post is None:
        return ()
    why = _explain(post.explanation, brand)
    return (Evidence(post.text, post.compound, post.url, post.author, post.published_at, why),)


def _spikes(store: Store, alerting: Alerting, outcome: PollOutcome, now: datetime) -> list[int]:
    rule = alerting.rules.spike
    brands = store.negative_brands(outcome.new_mention_ids)
    fired: list[int] = []
    for brand in brands:
        # The database's first mention (an index lookup): without at least one window of history
        # every first poll would look like a spike.
        first_seen = store.first_mention_at()
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
    for when in store.negative_mention_times(brand, start):
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
    rows = store.worst_recent_mentions(brand, now - timedelta(seconds=window), 5)
    return tuple(Evidence(s or "", c, u, a, p, _explain(e)) for s, c, u, a, p, e in rows)


def _source_health(store: Store, alerting: Alerting, source: str, now: datetime) -> list[int]:
    rule = alerting.rules.source_health
    row = store.source_row(source)
    if row is None or (row["consecutive_failures"] or 0) < rule.failures:
        return []
    failures, error = row["consecutive_failures"], row["last_error"]
    last_success, url = row["last_success_at"], row["url"]
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
    read = [parse_iso(t) for t in store.productive_polls(source, STALE_HISTORY + 1)]
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
    row = store.source_row(source)
    kind, url = (row["kind"], row["url"]) if row else ("", None)
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
