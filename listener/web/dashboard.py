"""The dashboard's data: every SQL statement the dashboard runs, over a Datasette `Database`, into
plain data (`DashboardData`) the page and the charts read.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

from .links import LABELS, bound, parse_day

log = logging.getLogger(__name__)

SOV_WEEKS = 8
THREADS_SHOWN = 10
VOICE_SHOWN = 8  # churn risks and open questions listed on the dashboard
REQUESTS_SHOWN = 3  # newest requests shown per brand
UNSCORED = "unscored"  # a language the scorer does not read: counted, never as a sentiment
# A mention's intents are a JSON list (`["churn", "complaint"]`): the same test as the canned
# queries and the dashboard's links (`intents__contains="churn"`), so their counts agree.
HAS_INTENT = "m.intents LIKE '%\"' || :intent || '\"%'"
HOURLY_UP_TO_DAYS = 2  # windows this short are drawn hour by hour
TOP_SHOWN = 5  # worst posts, top sources and top authors on the dashboard


def window_buckets(days: int, now: datetime) -> tuple[list[datetime], timedelta]:
    """The chart buckets of the last `days` (UTC starts, oldest first) and their length: whole
    calendar days up to today, or, for windows of up to two days, the last `days` × 24 hours up
    to the current one (a one-day view by the day would be a single bar)."""
    now = now.astimezone(UTC)
    if days <= HOURLY_UP_TO_DAYS:
        hour = now.replace(minute=0, second=0, microsecond=0)
        n = days * 24
        return [hour - timedelta(hours=n - 1 - i) for i in range(n)], timedelta(hours=1)
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return [today - timedelta(days=days - 1 - i) for i in range(days)], timedelta(days=1)


def _parse_bucket(text: Any, hourly: bool) -> datetime | None:
    try:
        if hourly:
            return datetime.strptime(str(text)[:13], "%Y-%m-%dT%H").replace(tzinfo=UTC)
        return datetime.strptime(str(text)[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class DashboardData:
    buckets: list[datetime]  # chart buckets: UTC starts, oldest first
    step: timedelta  # a day, or an hour for short windows
    brands: list[str]  # most mentioned first
    # (brand, bucket, label) -> count; (brand, bucket) -> sum of compounds
    counts: dict[tuple[str, datetime, str], int] = field(default_factory=dict)
    compound_sums: dict[tuple[str, datetime], float] = field(default_factory=dict)
    # The period of the same length just before: (brand, label) -> count; brand -> compound sum
    previous: dict[tuple[str, str], int] = field(default_factory=dict)
    previous_compound: dict[str, float] = field(default_factory=dict)
    weeks: list[date] = field(default_factory=list)
    weekly: dict[tuple[str, date], int] = field(default_factory=dict)
    threads: list[dict[str, Any]] = field(default_factory=list)  # the worst THREADS_SHOWN
    negative_threads: int = 0  # how many turned negative in the period
    worst_posts: list[dict[str, Any]] = field(default_factory=list)  # most negative mentions
    top_sources: list[dict[str, Any]] = field(default_factory=list)  # with previous counts
    top_authors: list[dict[str, Any]] = field(default_factory=list)
    undated: int = 0
    # Mentions in a language the scorer does not read, per brand: in the period and before.
    unscored: dict[str, int] = field(default_factory=dict)
    previous_unscored: dict[str, int] = field(default_factory=dict)
    # What customers mean (mentions' intents), customers only (never the brand's own posts):
    churn: list[dict[str, Any]] = field(default_factory=list)  # newest first
    churn_count: int = 0
    questions: list[dict[str, Any]] = field(default_factory=list)  # unanswered, newest first
    questions_count: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)  # per brand: count, newest
    sources: tuple[int, int] = (0, 0)  # (sources, failing)
    # Deliveries by status ("fired": alerts created in the period); None without alert tables.
    alerts: dict[str, int] | None = None

    @property
    def start(self) -> datetime:
        return self.buckets[0]

    @property
    def end(self) -> datetime:
        return self.buckets[-1] + self.step

    @property
    def previous_start(self) -> datetime:
        return self.start - (self.end - self.start)

    @property
    def hourly(self) -> bool:
        return self.step < timedelta(days=1)

    @property
    def today(self) -> date:
        """The last day the window touches (today, UTC)."""
        return (self.end - timedelta(microseconds=1)).date()

    @cached_property
    def _totals(self) -> dict[tuple[str | None, str | None, datetime | None], int]:
        """Counts summed over every combination of brand, label and bucket (None: all), built
        once after loading so that charts over a year of days stay cheap."""
        out: dict[tuple[str | None, str | None, datetime | None], int] = defaultdict(int)
        for (brand, bucket, label), n in self.counts.items():
            for b in (brand, None):
                for lab in (label, None):
                    for d in (bucket, None):
                        out[(b, lab, d)] += n
        return dict(out)

    def total(
        self, brand: str | None = None, label: str | None = None, bucket: datetime | None = None
    ) -> int:
        return self._totals.get((brand, label, bucket), 0)

    @cached_property
    def _compound_by_brand(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (brand, _bucket), v in self.compound_sums.items():
            out[brand] += v
        return dict(out)

    def mean(self, brand: str, bucket: datetime | None = None) -> float | None:
        """Mean compound of the brand's mentions (in that bucket, or over the period)."""
        n = self.total(brand, bucket=bucket)
        if not n:
            return None
        if bucket is None:
            return self._compound_by_brand.get(brand, 0.0) / n
        return self.compound_sums.get((brand, bucket), 0.0) / n

    def all_total(self, brand: str | None = None) -> int:
        """Every mention of the period (of `brand`): scored ones and those not scored."""
        unscored = sum(self.unscored.values()) if brand is None else self.unscored.get(brand, 0)
        return self.total(brand) + unscored

    def previous_all_total(self, brand: str | None = None) -> int:
        if brand is None:
            unscored = sum(self.previous_unscored.values())
        else:
            unscored = self.previous_unscored.get(brand, 0)
        return self.previous_total(brand) + unscored

    def previous_total(self, brand: str | None = None, label: str | None = None) -> int:
        return sum(
            n
            for (b, lab), n in self.previous.items()
            if brand in (None, b) and label in (None, lab)
        )

    def previous_mean(self, brand: str) -> float | None:
        n = self.previous_total(brand)
        return self.previous_compound.get(brand, 0.0) / n if n else None


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


async def load_dashboard(db: Any, days: int, now: datetime) -> DashboardData:
    """Everything the dashboard shows, from a Datasette `Database`, for the last `days`, and
    the same counts for the period of the same length just before (the comparison)."""
    buckets, step = window_buckets(days, now)
    data = DashboardData(buckets=buckets, step=step, brands=[])
    hourly = data.hourly
    window = {"start": bound(data.start), "end": bound(data.end)}
    in_window = "not_relevant = 0 AND published_at >= :start AND published_at < :end"
    rows = await db.execute(
        f"SELECT substr(published_at, 1, {13 if hourly else 10}) AS bucket, brand, label, "
        f"count(*) AS n, sum(compound) AS compound_sum FROM mentions WHERE {in_window} "
        "GROUP BY bucket, brand, label",
        window,
    )
    for r in rows:
        b = _parse_bucket(r["bucket"], hourly)
        if b is None:
            continue
        if r["label"] == UNSCORED:
            data.unscored[r["brand"]] = data.unscored.get(r["brand"], 0) + r["n"]
            continue
        if r["label"] not in LABELS:
            continue
        data.counts[(r["brand"], b, r["label"])] = r["n"]
        key = (r["brand"], b)
        data.compound_sums[key] = data.compound_sums.get(key, 0.0) + (r["compound_sum"] or 0.0)
    before = {"start": bound(data.previous_start), "end": bound(data.start)}
    rows = await db.execute(
        "SELECT brand, label, count(*) AS n, sum(compound) AS compound_sum FROM mentions "
        f"WHERE {in_window} GROUP BY brand, label",
        before,
    )
    for r in rows:
        if r["label"] == UNSCORED:
            data.previous_unscored[r["brand"]] = r["n"]
        if r["label"] not in LABELS:
            continue
        data.previous[(r["brand"], r["label"])] = r["n"]
        data.previous_compound[r["brand"]] = data.previous_compound.get(r["brand"], 0.0) + (
            r["compound_sum"] or 0.0
        )
    all_brands = [r[0] for r in await db.execute("SELECT DISTINCT brand FROM mentions")]
    data.brands = sorted(all_brands, key=lambda b: (-data.all_total(b), b))

    today = data.today
    data.weeks = [monday(today) - timedelta(weeks=SOV_WEEKS - 1 - i) for i in range(SOV_WEEKS)]
    rows = await db.execute(
        "SELECT date(published_at, 'weekday 0', '-6 days') AS week, brand, count(*) AS n "
        "FROM mentions WHERE not_relevant = 0 AND published_at >= :start AND published_at < :end "
        "GROUP BY week, brand",
        {
            "start": data.weeks[0].isoformat(),
            "end": (data.weeks[-1] + timedelta(days=7)).isoformat(),
        },
    )
    for r in rows:
        w = parse_day(r["week"])
        if w is not None:
            data.weekly[(r["brand"], w)] = r["n"]

    # The most negative posts, then where mentions come from and who writes them.
    rows = await db.execute(
        "SELECT id, brand, product, label, compound, title, snippet, author, source, url, "
        f"published_at, thread_key FROM mentions WHERE {in_window} AND label = 'negative' "
        "AND by_brand = 0 "
        "ORDER BY compound, published_at DESC, id LIMIT :limit",
        {**window, "limit": TOP_SHOWN},
    )
    data.worst_posts = [dict(r) for r in rows]
    data.top_sources = await _top(db, ["source"], in_window, window, before)
    data.top_authors = await _top(
        db, ["author", "source"], f"{in_window} AND coalesce(author, '') != ''", window, before
    )

    data.undated = (
        await db.execute(
            "SELECT count(*) FROM mentions WHERE not_relevant = 0 AND published_at IS NULL "
            "AND first_seen_at >= :start AND first_seen_at < :end",
            window,
        )
    ).first()[0]
    await _load_voice(db, data, window)
    tables = set(await db.table_names()) | set(await db.view_names())
    if "negative_threads" in tables:
        rows = await db.execute(
            "SELECT * FROM negative_threads WHERE last_negative_at >= :start "
            "ORDER BY negative_posts DESC, worst_compound LIMIT :limit",
            {"start": window["start"], "limit": THREADS_SHOWN},
        )
        data.threads = [dict(r) for r in rows]
        data.negative_threads = (
            await db.execute(
                "SELECT count(*) FROM negative_threads WHERE last_negative_at >= :start",
                {"start": window["start"]},
            )
        ).first()[0]
    row = (
        await db.execute("SELECT count(*), coalesce(sum(consecutive_failures > 0), 0) FROM sources")
    ).first()
    data.sources = (row[0], row[1])
    if "alert_outbox" in tables:
        try:
            rows = await db.execute(
                "SELECT status, count(*) AS n FROM alert_outbox GROUP BY status"
            )
            data.alerts = {r["status"]: r["n"] for r in rows}
            data.alerts["fired"] = (
                await db.execute(
                    "SELECT count(*) FROM alerts WHERE created_at >= :start",
                    {"start": window["start"]},
                )
            ).first()[0]
        except sqlite3.DatabaseError as exc:
            log.warning("alerts not shown on the dashboard: %s", exc)
    return data


async def _load_voice(db: Any, data: DashboardData, window: dict[str, str]) -> None:
    """What customers mean, posted in the window: churn risks and questions nobody from the
    brand answered (newest first), and requests per brand (most first, newest requests)."""
    customers = (
        "m.not_relevant = 0 AND m.published_at >= :start AND m.published_at < :end "
        f"AND m.by_brand = 0 AND {HAS_INTENT}"
    )
    mention = (
        "m.id, m.brand, m.product, m.label, m.compound, m.title, m.snippet, m.author, "
        "m.source, m.url, m.published_at, m.thread_key, m.intents"
    )
    churn = {**window, "intent": "churn"}
    rows = await db.execute(
        f"SELECT {mention} FROM mentions m WHERE {customers} "
        "ORDER BY m.published_at DESC, m.id DESC LIMIT :limit",
        {**churn, "limit": VOICE_SHOWN},
    )
    data.churn = [dict(r) for r in rows]
    data.churn_count = (
        await db.execute(f"SELECT count(*) FROM mentions m WHERE {customers}", churn)
    ).first()[0]
    # A question is open while its conversation has no answer from the brand's accounts and
    # the team has not closed it (resolved or ignored).
    open_question = (
        f"{customers} AND t.answered_at IS NULL "
        "AND coalesce(t.status, 'new') NOT IN ('resolved', 'ignored')"
    )
    asked = {**window, "intent": "question"}
    # One row per post: a question naming three brands is listed once, with the three brands
    # (SQLite takes the other columns from the row of min(m.id)).
    rows = await db.execute(
        f"SELECT min(m.id) AS id, group_concat(m.brand, ', ') AS brands, {mention}, "
        "t.title AS thread_title, t.status FROM mentions m "
        f"LEFT JOIN threads t ON t.key = m.thread_key WHERE {open_question} "
        "GROUP BY m.item_id ORDER BY m.published_at DESC, m.id DESC LIMIT :limit",
        {**asked, "limit": VOICE_SHOWN},
    )
    data.questions = [{**dict(r), "brand": r["brands"]} for r in rows]
    data.questions_count = (
        await db.execute(
            "SELECT count(DISTINCT m.item_id) FROM mentions m "
            f"LEFT JOIN threads t ON t.key = m.thread_key WHERE {open_question}",
            asked,
        )
    ).first()[0]
    rows = await db.execute(
        f"WITH r AS (SELECT {mention}, count(*) OVER (PARTITION BY m.brand) AS requests, "
        "row_number() OVER (PARTITION BY m.brand ORDER BY m.published_at DESC, m.id DESC) "
        f"AS n FROM mentions m WHERE {customers}) "
        "SELECT * FROM r WHERE n <= :per_brand ORDER BY requests DESC, brand, n",
        {**window, "intent": "request", "per_brand": REQUESTS_SHOWN},
    )
    by_brand: dict[str, dict[str, Any]] = {}
    for r in rows:
        group = by_brand.setdefault(
            r["brand"], {"brand": r["brand"], "count": r["requests"], "posts": []}
        )
        group["posts"].append(dict(r))
    data.requests = list(by_brand.values())


async def _top(
    db: Any,
    keys: list[str],
    where: str,
    window: dict[str, str],
    before: dict[str, str],
) -> list[dict[str, Any]]:
    """The TOP_SHOWN groups by `keys` with most mentions in the window, with their negative
    count and mean, and their mentions in the period before (`previous`)."""
    cols = ", ".join(keys)
    rows = await db.execute(
        f"SELECT {cols}, count(*) AS mentions, sum(label = 'negative') AS negative, "
        f"avg(compound) AS mean FROM mentions WHERE {where} GROUP BY {cols} "
        f"ORDER BY mentions DESC, negative DESC, {cols} LIMIT :limit",
        {**window, "limit": TOP_SHOWN},
    )
    top = [dict(r) for r in rows]
    if not top:
        return top
    earlier = await db.execute(
        f"SELECT {cols}, count(*) AS mentions FROM mentions WHERE {where} GROUP BY {cols}", before
    )
    counts = {tuple(r[k] for k in keys): r["mentions"] for r in earlier}
    for t in top:
        t["previous"] = counts.get(tuple(t[k] for k in keys), 0)
    return top
