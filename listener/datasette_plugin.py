"""listener's Datasette plugin: the `/-/dashboard` page and links from every number to its rows.

The charts are inline SVG drawn here, on the server: no script, nothing from a CDN, the page works
offline and in any browser, and tests read the bars straight from the HTML. Every bar, point and
number is an `<a>` to Datasette's table view filtered to exactly the rows it counts, so a count on
the dashboard and the row count behind its link always agree (both use `published_at`, both leave
out mentions marked not relevant).

`render_cell` adds the same kind of links inside Datasette's own pages: counts in the views and
canned queries link to their mentions, thread keys to the posts of the conversation.
"""

from __future__ import annotations

import html
import logging
import math
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pluggy
from datasette.utils import tilde_encode
from datasette.utils.asgi import Response, asgi_static
from jinja2 import ChoiceLoader, FileSystemLoader
from markupsafe import Markup

from .web import DASHBOARD_PATH, PLUGIN_NAME

log = logging.getLogger(__name__)

# Datasette's own marker (`datasette.hookimpl`), made here where type checkers can see it.
hookimpl = pluggy.HookimplMarker("datasette")

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_PATH = "/-/listener"
CSS_PATH = f"{STATIC_PATH}/listener.css"
LABELS = ("negative", "neutral", "positive")
LABEL_COLORS = {"negative": "#d1495b", "neutral": "#a7b1bc", "positive": "#2e9e5b"}
BRAND_COLORS = (
    "#3465a4",
    "#e08a1e",
    "#75507b",
    "#1b998b",
    "#8f5902",
    "#c2185b",
    "#4e9a06",
    "#5c6bc0",
)
# The columns a link to the rows behind a number shows: what a person reads, not the plumbing
# (every column is one click away in Datasette's column menu).
MENTION_COLUMNS = (
    "published_at",
    "brand",
    "product",
    "label",
    "compound",
    "title",
    "snippet",
    "author",
    "source",
    "url",
    "thread_key",
)
ITEM_COLUMNS = ("published_at", "author", "label", "compound", "title", "text", "url", "source")
MAX_DAYS = 366
SOV_WEEKS = 8
THREADS_SHOWN = 10

# --------------------------------------------------------------------------------------- hooks


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    # The plugin serves its own page and stylesheet, so it works however Datasette was started.
    return [
        (r"^/-/dashboard$", dashboard),
        (r"^/-/listener/(?P<path>.*)$", asgi_static(str(STATIC_DIR))),
    ]


@hookimpl
def prepare_jinja2_environment(env: Any, datasette: Any) -> None:
    """Find the dashboard's template after Datasette's own (ours never shadow them)."""
    env.loader = ChoiceLoader([env.loader, FileSystemLoader(str(TEMPLATES_DIR))])


@hookimpl
def extra_css_urls(datasette: Any) -> list[str]:
    return [datasette.urls.path(CSS_PATH)]


@hookimpl
def menu_links(datasette: Any, actor: Any, request: Any) -> list[dict[str, str]]:
    return [{"href": datasette.urls.path(DASHBOARD_PATH), "label": "Dashboard"}]


@hookimpl
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> Markup | None:
    """Links from counts and thread keys to the rows behind them, in our database's pages."""
    # Table pages pass foreign keys as {"value", "label"}: Datasette links those itself.
    if value in (None, "") or isinstance(value, dict) or database != database_name(datasette):
        return None
    try:
        keys = set(row.keys())
    except AttributeError:
        return None
    links = Links(datasette, database)
    href = _cell_href(links, row, keys, column, value, table)
    if href is None:
        return None
    return Markup(f'<a href="{_attr(href)}">{html.escape(str(value))}</a>')


def _cell_href(
    links: Links, row: Any, keys: set[str], column: str, value: Any, table: str | None
) -> str | None:
    if column == "thread_key" and table != "threads":
        return links.items(thread_key=value, relevant=1, _sort="published_at")
    if column == "alert_id" and table in (None, "alert_outbox"):
        return links.row("alerts", value)
    if column == "mention_id":
        return links.row("mentions", value)
    if column in ("item_id", "worst_item_id") and table in (None, "negative_threads"):
        return links.row("items", value)
    if table == "threads" and column in ("posts", "negative_posts") and "key" in keys:
        extra = {"label": "negative"} if column == "negative_posts" else {}
        return links.items(thread_key=row["key"], relevant=1, _sort="published_at", **extra)
    if column in ("posts", "negative_posts") and "thread_key" in keys:
        extra = {"label": "negative"} if column == "negative_posts" else {}
        return links.items(thread_key=row["thread_key"], relevant=1, _sort="published_at", **extra)
    if not isinstance(value, int) or column not in ("mentions", *LABELS):
        return None
    # A count in a view or canned query: filter by whatever the row is grouped by.
    filters: dict[str, Any] = {}
    if "brand" in keys and row["brand"]:
        filters["brand"] = row["brand"]
    if "source" in keys and row["source"] and table != "source_health":
        filters["source"] = row["source"]
    if "author" in keys and row["author"]:
        filters["author"] = row["author"]
    if "day" in keys and row["day"]:
        start = _parse_day(row["day"])
        if start is None:
            return None
        filters.update(links.period(start, start + timedelta(days=1)))
    elif "week" in keys and row["week"]:
        start = _parse_day(row["week"])
        if start is None:
            return None
        filters.update(links.period(start, start + timedelta(days=7)))
    else:
        return None  # no period we can reproduce with table filters
    if column in LABELS:
        filters["label"] = column
    return links.mentions(**filters)


# --------------------------------------------------------------------------------------- links


def database_name(datasette: Any) -> str:
    """The mention database: the plugin's `database` setting, else the first one attached."""
    config = datasette.plugin_config(PLUGIN_NAME) or {}
    name = config.get("database")
    if name:
        return str(name)
    return str(datasette.get_database().name)


@dataclass(frozen=True)
class Links:
    datasette: Any
    database: str

    def table(self, table: str, **params: Any) -> str:
        base = self.datasette.urls.table(self.database, table)
        params = {k: v for k, v in params.items() if v is not None}
        return f"{base}?{urlencode(params, doseq=True)}" if params else base

    def mentions(self, **params: Any) -> str:
        # Counts everywhere leave out mentions a person marked not relevant; so do the links.
        return self.table("mentions", **params, not_relevant=0, _col=MENTION_COLUMNS)

    def items(self, **params: Any) -> str:
        return self.table("items", **params, _col=ITEM_COLUMNS)

    def row(self, table: str, pk: Any) -> str:
        # Datasette's row URLs tilde-encode the key ("a/b.c" -> "a~2Fb~2Ec").
        return f"{self.datasette.urls.table(self.database, table)}/{tilde_encode(str(pk))}"

    def query(self, name: str, **params: Any) -> str:
        base = self.datasette.urls.query(self.database, name)
        return f"{base}?{urlencode(params)}" if params else base

    @staticmethod
    def period(start: date, end: date) -> dict[str, str]:
        """Table filters for mentions published on [start, end) (UTC days)."""
        return {"published_at__gte": start.isoformat(), "published_at__lt": end.isoformat()}


def _parse_day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


# --------------------------------------------------------------------------------------- data


@dataclass
class DashboardData:
    today: date
    days: list[date]
    brands: list[str]  # most mentioned first
    # (brand, day, label) -> count; (brand, day) -> sum of compounds
    counts: dict[tuple[str, date, str], int] = field(default_factory=dict)
    compound_sums: dict[tuple[str, date], float] = field(default_factory=dict)
    weeks: list[date] = field(default_factory=list)
    weekly: dict[tuple[str, date], int] = field(default_factory=dict)
    threads: list[dict[str, Any]] = field(default_factory=list)  # the worst THREADS_SHOWN
    negative_threads: int = 0  # how many turned negative in the period
    undated: int = 0
    sources: tuple[int, int] = (0, 0)  # (sources, failing)
    # Deliveries by status ("fired": alerts created in the period); None without alert tables.
    alerts: dict[str, int] | None = None

    @property
    def start(self) -> date:
        return self.days[0]

    @property
    def end(self) -> date:
        return self.days[-1] + timedelta(days=1)

    @cached_property
    def _totals(self) -> dict[tuple[str | None, str | None, date | None], int]:
        """Counts summed over every combination of brand, label and day (None: all), built
        once after loading so that charts over a year of days stay cheap."""
        out: dict[tuple[str | None, str | None, date | None], int] = defaultdict(int)
        for (brand, day, label), n in self.counts.items():
            for b in (brand, None):
                for lab in (label, None):
                    for d in (day, None):
                        out[(b, lab, d)] += n
        return dict(out)

    def total(
        self, brand: str | None = None, label: str | None = None, day: date | None = None
    ) -> int:
        return self._totals.get((brand, label, day), 0)

    @cached_property
    def _compound_by_brand(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (brand, _day), v in self.compound_sums.items():
            out[brand] += v
        return dict(out)

    def mean(self, brand: str, day: date | None = None) -> float | None:
        """Mean compound of the brand's mentions (that day, or over the period)."""
        n = self.total(brand, day=day)
        if not n:
            return None
        if day is None:
            return self._compound_by_brand.get(brand, 0.0) / n
        return self.compound_sums.get((brand, day), 0.0) / n


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


async def load_dashboard(db: Any, days: int, today: date) -> DashboardData:
    """Everything the dashboard shows, from a Datasette `Database`, for the `days` up to today."""
    window = [today - timedelta(days=days - 1 - i) for i in range(days)]
    data = DashboardData(today=today, days=window, brands=[])
    start, end = window[0].isoformat(), (today + timedelta(days=1)).isoformat()
    rows = await db.execute(
        "SELECT substr(published_at, 1, 10) AS day, brand, label, count(*) AS n, "
        "sum(compound) AS compound_sum FROM mentions "
        "WHERE not_relevant = 0 AND published_at >= :start AND published_at < :end "
        "GROUP BY day, brand, label",
        {"start": start, "end": end},
    )
    for r in rows:
        d = _parse_day(r["day"])
        if d is None or r["label"] not in LABELS:
            continue
        data.counts[(r["brand"], d, r["label"])] = r["n"]
        key = (r["brand"], d)
        data.compound_sums[key] = data.compound_sums.get(key, 0.0) + (r["compound_sum"] or 0.0)
    all_brands = [r[0] for r in await db.execute("SELECT DISTINCT brand FROM mentions")]
    data.brands = sorted(all_brands, key=lambda b: (-data.total(b), b))

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
        w = _parse_day(r["week"])
        if w is not None:
            data.weekly[(r["brand"], w)] = r["n"]

    data.undated = (
        await db.execute(
            "SELECT count(*) FROM mentions WHERE not_relevant = 0 AND published_at IS NULL "
            "AND first_seen_at >= :start",
            {"start": start},
        )
    ).first()[0]
    tables = set(await db.table_names()) | set(await db.view_names())
    if "negative_threads" in tables:
        rows = await db.execute(
            "SELECT * FROM negative_threads WHERE last_negative_at >= :start "
            "ORDER BY negative_posts DESC, worst_compound LIMIT :limit",
            {"start": start, "limit": THREADS_SHOWN},
        )
        data.threads = [dict(r) for r in rows]
        data.negative_threads = (
            await db.execute(
                "SELECT count(*) FROM negative_threads WHERE last_negative_at >= :start",
                {"start": start},
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
                    "SELECT count(*) FROM alerts WHERE created_at >= :start", {"start": start}
                )
            ).first()[0]
        except sqlite3.DatabaseError as exc:
            log.warning("alerts not shown on the dashboard: %s", exc)
    return data


# --------------------------------------------------------------------------------------- page


def _int_arg(request: Any, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.args.get(name, default))))
    except (TypeError, ValueError):
        return default


def utc_today() -> date:
    return datetime.now(UTC).date()


async def dashboard(datasette: Any, request: Any) -> Response:
    name = database_name(datasette)
    await datasette.ensure_permissions(request.actor, [("view-database", name), "view-instance"])
    days = _int_arg(request, "days", 7, 1, MAX_DAYS)
    data = await load_dashboard(datasette.get_database(name), days, utc_today())
    links = Links(datasette, name)
    colors = brand_colors(data.brands)
    context = {
        "database": name,
        "days": days,
        "day_choices": [1, 7, 30, 90],
        "data": data,
        "summary": summary_rows(data, links),
        "window_links": {
            "all": links.mentions(**links.period(data.start, data.end)),
            "negative": links.mentions(label="negative", **links.period(data.start, data.end)),
        },
        "total": data.total(),
        "negative": data.total(label="negative"),
        "undated_link": links.mentions(
            published_at__isnull=1, first_seen_at__gte=data.start.isoformat()
        ),
        "volume_charts": [
            (brand, colors[brand], Markup(volume_chart(data, brand, links)))
            for brand in data.brands
        ],
        "sentiment_chart": Markup(sentiment_chart(data, links, colors)),
        "share_chart": Markup(share_chart(data, links, colors)),
        "weekly_share_chart": Markup(weekly_share_chart(data, links, colors)),
        "threads": thread_rows(data, links),
        "negative_threads_link": links.query("negative_threads", days=days),
        "sources_link": links.query("source_health"),
        "alerts_link": links.query("alerts") if data.alerts is not None else None,
        "queries": [
            (links.query(q), query.get("title") or q)
            for q, query in (await datasette.get_canned_queries(name, request.actor)).items()
        ],
    }
    page = await datasette.render_template("listener_dashboard.html", context, request=request)
    return Response.html(page)


def brand_colors(brands: Iterable[str]) -> dict[str, str]:
    """A stable colour per brand: by name, so a brand keeps its colour as volumes change."""
    return {b: BRAND_COLORS[i % len(BRAND_COLORS)] for i, b in enumerate(sorted(brands))}


def summary_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    period = links.period(data.start, data.end)
    out = []
    for brand in data.brands:
        total = data.total(brand)
        row: dict[str, Any] = {
            "brand": brand,
            "total": (total, links.mentions(brand=brand, **period)),
            "mean": data.mean(brand),
            "negative_pct": round(100 * data.total(brand, "negative") / total) if total else None,
        }
        for label in LABELS:
            row[label] = (
                data.total(brand, label),
                links.mentions(brand=brand, label=label, **period),
            )
        out.append(row)
    return out


def thread_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    out = []
    for t in data.threads:
        key = t["thread_key"]
        out.append(
            {
                **t,
                "posts_link": links.items(thread_key=key, relevant=1, _sort="published_at"),
                "negative_link": links.items(
                    thread_key=key, relevant=1, label="negative", _sort="compound"
                ),
                "thread_link": links.row("threads", key),
            }
        )
    return out


# --------------------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Frame:
    """A chart's canvas: the viewBox size and the plot area inside its margins."""

    width: int = 600
    height: int = 190
    left: int = 40
    right: int = 12
    top: int = 12
    bottom: int = 30

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom


def nice_max(value: float) -> int:
    """A round axis maximum at or above `value` (1, 2, 5, 10, 20, 50, ...)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return int(step * power)
    return int(10 * power)


def _svg_open(frame: Frame, label: str, css_class: str) -> str:
    return (
        f'<svg class="chart {css_class}" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="100%" role="img" aria-label="{_attr(label)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">'
        f"<title>{html.escape(label)}</title>"
    )


def _link(href: str, inner: str, tip: str) -> str:
    return f'<a href="{_attr(href)}"><title>{html.escape(tip)}</title>{inner}</a>'


def _day_label(d: date, n_days: int) -> str:
    return d.strftime("%b %d") if n_days <= 14 else d.strftime("%m-%d")


def _x_axis(frame: Frame, labels: Sequence[str], centres: Sequence[float]) -> list[str]:
    out = [
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{frame.top + frame.plot_h}" y2="{frame.top + frame.plot_h}"/>'
    ]
    every = max(1, math.ceil(len(labels) / 12))
    for i, (text, x) in enumerate(zip(labels, centres, strict=True)):
        if i % every and i != len(labels) - 1:
            continue
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{frame.height - 10}" text-anchor="middle">'
            f"{html.escape(text)}</text>"
        )
    return out


def _y_axis(
    frame: Frame, top_value: float, fmt: Callable[[float], str], ticks: Sequence[float]
) -> list[str]:
    out = []
    lo = min(ticks)
    span = (top_value - lo) or 1
    for t in ticks:
        y = frame.top + frame.plot_h * (1 - (t - lo) / span)
        out.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>'
        )
    return out


def volume_chart(data: DashboardData, brand: str, links: Links, frame: Frame = Frame()) -> str:
    """Mentions of `brand` per day, stacked by sentiment; each segment links to its mentions.

    All brands share one scale (the busiest day of any brand), so the charts compare at a glance.
    """
    busiest = max((data.total(b, day=d) for b in data.brands for d in data.days), default=0)
    top = nice_max(busiest)
    n = len(data.days)
    slot = frame.plot_w / n
    bar = max(1.0, slot * 0.7)
    parts = [_svg_open(frame, f"{brand}: mentions per day by sentiment", "volume")]
    parts += _y_axis(frame, top, lambda v: f"{v:g}", [0, top / 2, top] if top > 1 else [0, 1])
    centres = []
    for i, d in enumerate(data.days):
        x = frame.left + slot * i + (slot - bar) / 2
        centres.append(x + bar / 2)
        y = frame.top + frame.plot_h
        for label in LABELS:
            count = data.counts.get((brand, d, label), 0)
            if not count:
                continue
            h = frame.plot_h * count / top
            y -= h
            rect = (
                f'<rect class="bar {label}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{LABEL_COLORS[label]}"/>'
            )
            href = links.mentions(
                brand=brand, label=label, **links.period(d, d + timedelta(days=1))
            )
            parts.append(_link(href, rect, f"{brand}, {d.isoformat()}: {count} {label}"))
    parts += _x_axis(frame, [_day_label(d, n) for d in data.days], centres)
    if not data.total(brand):
        parts.append(
            f'<text class="empty" x="{frame.left + frame.plot_w / 2}" y="{frame.top + frame.plot_h / 2}" '
            'text-anchor="middle">no mentions in this period</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sentiment_chart(
    data: DashboardData, links: Links, colors: Mapping[str, str], frame: Frame = Frame(height=220)
) -> str:
    """Mean VADER compound per brand per day (-1..1), one line per brand; each point links to
    that day's mentions of the brand, most negative first."""
    n = len(data.days)
    slot = frame.plot_w / n
    parts = [_svg_open(frame, "Mean sentiment per day, by brand", "sentiment")]
    parts += _y_axis(frame, 1, lambda v: f"{v:+.1f}" if v else "0", [-1, -0.5, 0, 0.5, 1])

    def y_of(v: float) -> float:
        return frame.top + frame.plot_h * (1 - (v + 1) / 2)

    parts.append(
        f'<line class="zero" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{y_of(0):.1f}" y2="{y_of(0):.1f}"/>'
    )
    centres = [frame.left + slot * (i + 0.5) for i in range(n)]
    for brand in data.brands:
        color = colors[brand]
        points = [(centres[i], data.mean(brand, d), d) for i, d in enumerate(data.days)]
        # A day without mentions breaks the line rather than pretending to be neutral.
        runs: list[list[tuple[float, float]]] = [[]]
        for x, v, _d in points:
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x, y_of(v)))
        for run in runs:
            if len(run) > 1:
                path = " ".join(
                    f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(run)
                )
                parts.append(f'<path class="line" d="{path}" stroke="{color}" fill="none"/>')
        for x, v, d in points:
            if v is None:
                continue
            dot = f'<circle class="point" cx="{x:.1f}" cy="{y_of(v):.1f}" r="4" fill="{color}"/>'
            href = links.mentions(
                brand=brand, _sort="compound", **links.period(d, d + timedelta(days=1))
            )
            tip = (
                f"{brand}, {d.isoformat()}: mean {v:+.2f} over {data.total(brand, day=d)} mentions"
            )
            parts.append(_link(href, dot, tip))
    parts += _x_axis(frame, [_day_label(d, n) for d in data.days], centres)
    parts.append("</svg>")
    return "".join(parts)


def share_chart(
    data: DashboardData, links: Links, colors: Mapping[str, str], frame: Frame | None = None
) -> str:
    """Each brand's share of all mentions in the period, as horizontal bars."""
    rows = max(1, len(data.brands))
    frame = frame or Frame(height=24 * rows + 16, left=110, right=90, top=8, bottom=8)
    total = data.total()
    parts = [_svg_open(frame, "Share of voice in this period", "share")]
    period = links.period(data.start, data.end)
    for i, brand in enumerate(data.brands):
        count = data.total(brand)
        share = count / total if total else 0.0
        y = frame.top + 24 * i
        w = max(frame.plot_w * share, 1.0 if count else 0.0)
        parts.append(
            f'<text class="label" x="{frame.left - 8}" y="{y + 15}" text-anchor="end">'
            f"{html.escape(brand)}</text>"
        )
        rect = (
            f'<rect class="bar" x="{frame.left}" y="{y + 2}" width="{w:.1f}" height="18" '
            f'fill="{colors[brand]}"/>'
        )
        tip = f"{brand}: {count} of {total} mentions ({share:.0%})"
        parts.append(_link(links.mentions(brand=brand, **period), rect, tip))
        parts.append(
            f'<text class="value" x="{frame.left + w + 6:.1f}" y="{y + 15}">'
            f"{share:.0%} ({count})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def weekly_share_chart(
    data: DashboardData, links: Links, colors: Mapping[str, str], frame: Frame = Frame(height=200)
) -> str:
    """Share of voice week by week: one 100% column per week, a segment per brand."""
    n = len(data.weeks)
    slot = frame.plot_w / n
    bar = slot * 0.7
    parts = [_svg_open(frame, "Share of voice by week", "weekly-share")]
    parts += _y_axis(frame, 1, lambda v: f"{v:.0%}", [0, 0.5, 1])
    centres = []
    for i, week in enumerate(data.weeks):
        x = frame.left + slot * i + (slot - bar) / 2
        centres.append(x + bar / 2)
        total = sum(data.weekly.get((b, week), 0) for b in data.brands)
        y = frame.top + frame.plot_h
        for brand in reversed(data.brands):
            count = data.weekly.get((brand, week), 0)
            if not count:
                continue
            h = frame.plot_h * count / total
            y -= h
            rect = (
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colors[brand]}"/>'
            )
            href = links.mentions(brand=brand, **links.period(week, week + timedelta(days=7)))
            tip = f"{brand}, week of {week.isoformat()}: {count} of {total} mentions ({count / total:.0%})"
            parts.append(_link(href, rect, tip))
    parts += _x_axis(frame, [w.strftime("%b %d") for w in data.weeks], centres)
    parts.append("</svg>")
    return "".join(parts)
