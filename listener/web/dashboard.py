"""The dashboard's data: the store's dashboard reads (listener/store/dashboard.py), run on a
Datasette `Database`, into plain data (`DashboardData`) the page and the charts read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

from ..store.dashboard import load_dashboard_rows
from .links import LABELS, bound, parse_day

SOV_WEEKS = 8
UNSCORED = "unscored"  # a language the scorer does not read: counted, never as a sentiment
HOURLY_UP_TO_DAYS = 2  # windows this short are drawn hour by hour


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
    threads: list[dict[str, Any]] = field(default_factory=list)  # the worst few
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
    before = {"start": bound(data.previous_start), "end": bound(data.start)}
    data.weeks = [monday(data.today) - timedelta(weeks=SOV_WEEKS - 1 - i) for i in range(SOV_WEEKS)]
    weeks = {
        "start": data.weeks[0].isoformat(),
        "end": (data.weeks[-1] + timedelta(days=7)).isoformat(),
    }
    rows = await db.execute_fn(
        lambda conn: load_dashboard_rows(
            conn, hourly=hourly, window=window, before=before, weeks=weeks
        )
    )
    for r in rows.buckets:
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
    for r in rows.previous:
        if r["label"] == UNSCORED:
            data.previous_unscored[r["brand"]] = r["n"]
        if r["label"] not in LABELS:
            continue
        data.previous[(r["brand"], r["label"])] = r["n"]
        data.previous_compound[r["brand"]] = data.previous_compound.get(r["brand"], 0.0) + (
            r["compound_sum"] or 0.0
        )
    data.brands = sorted(rows.brands, key=lambda b: (-data.all_total(b), b))
    for r in rows.weekly:
        w = parse_day(r["week"])
        if w is not None:
            data.weekly[(r["brand"], w)] = r["n"]
    data.worst_posts = rows.worst_posts
    data.top_sources = rows.top_sources
    data.top_authors = rows.top_authors
    data.undated = rows.undated
    data.churn = rows.churn
    data.churn_count = rows.churn_count
    data.questions = [{**r, "brand": r["brands"]} for r in rows.questions]
    data.questions_count = rows.questions_count
    by_brand: dict[str, dict[str, Any]] = {}
    for r in rows.requests:
        group = by_brand.setdefault(
            r["brand"], {"brand": r["brand"], "count": r["requests"], "posts": []}
        )
        group["posts"].append(r)
    data.requests = list(by_brand.values())
    data.threads = rows.threads
    data.negative_threads = rows.negative_threads
    data.sources = rows.sources
    data.alerts = rows.alerts
    return data
