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
import json
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
from datasette.utils import tilde_encode, to_css_class
from datasette.utils.asgi import Response, asgi_static
from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader
from markupsafe import Markup

from .alerts.render import safe_url
from .models import THREAD_STATUSES
from .web import DASHBOARD_PATH, PLUGIN_NAME, READING_ORDER, THREAD_PATH

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
# (every column is one click away in Datasette's column menu), in reading order.
MENTION_COLUMNS = (*READING_ORDER["mentions"], "product", "thread_key")
ITEM_COLUMNS = READING_ORDER["items"][:8]
SENTIMENT_LABELS = (*LABELS, "unscored")
URL_SHOWN = 60  # characters of a link shown in a table cell (the whole URL is its tooltip)
# The largest value (text or blob) a query on Datasette's connections may make. SQLite's own
# limit is 1 GB, and one `hex(zeroblob(400000000))` made Datasette allocate gigabytes. 16 MiB is
# far above anything listener stores (item text is cut at 100,000 characters; fetched bodies,
# up to 20 MB, are never stored) and keeps even several such queries at once within a few
# hundred MB. A bigger value ends the query with "string or blob too big".
VALUE_CAP_BYTES = 16 * 1024 * 1024
MAX_DAYS = 366
SOV_WEEKS = 8
THREADS_SHOWN = 10

# --------------------------------------------------------------------------------------- hooks


@hookimpl
def register_routes() -> list[tuple[str, Any]]:
    # The plugin serves its own page and stylesheet, so it works however Datasette was started.
    return [
        (r"^/-/dashboard$", dashboard),
        (rf"^{THREAD_PATH}$", thread_page),
        (r"^/-/listener/(?P<path>.*)$", asgi_static(str(STATIC_DIR))),
    ]


@hookimpl
def prepare_connection(conn: sqlite3.Connection) -> None:
    """Cap the size of any one value on Datasette's connections (see VALUE_CAP_BYTES)."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_CAP_BYTES)


@hookimpl
def prepare_jinja2_environment(env: Any, datasette: Any) -> None:
    """Find the dashboard's template after Datasette's own (ours never shadow them), and put
    the columns of our tables in reading order (see `reading_order`)."""
    env.loader = ChoiceLoader(
        [env.loader, FileSystemLoader(str(TEMPLATES_DIR)), _reading_order_templates(datasette)]
    )
    env.globals["listener_reading_order"] = reading_order


@hookimpl
def extra_template_vars(datasette: Any, database: str | None, table: str | None) -> dict[str, Any]:
    if not table or database != database_name(datasette):
        return {}
    order = _reading_orders(datasette).get(table)
    return {"listener_column_order": list(order)} if order else {}


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
    """Links from counts and thread keys to the rows behind them, in our database's pages;
    links from the web (url columns) only where `safe_url` allows; sentiment labels in colour."""
    # Table pages pass foreign keys as {"value", "label"}: Datasette links those itself.
    if value in (None, "") or isinstance(value, dict) or database != database_name(datasette):
        return None
    if isinstance(value, str) and (column == "url" or column.endswith("_url")):
        return url_cell(value, datasette.setting("truncate_cells_html"))
    if column in ("label", "auto_label", "label_override") and value in SENTIMENT_LABELS:
        return Markup(f'<span class="sentiment {value}">{value}</span>')
    if column == "explanation" and isinstance(value, str):
        return explanation_cell(value)
    try:
        keys = set(row.keys())
    except AttributeError:
        return None
    links = Links(datasette, database)
    href = _cell_href(links, row, keys, column, value, table)
    if href is None:
        return None
    return Markup(f'<a href="{_attr(href)}">{html.escape(str(value))}</a>')


def url_cell(value: str, truncate: int | None = None) -> Markup:
    """A URL from the web as a table cell: a link, shown without its scheme, when `safe_url`
    allows it (http or https); anything else (`javascript:`, `data:`, …) as plain text."""
    href = safe_url(value)
    if href is None:
        text = value if not truncate or len(value) <= truncate else value[:truncate] + "…"
        return Markup('<span class="unsafe-url">{}</span>').format(text)
    shown = href.split("://", 1)[1]
    if len(shown) > URL_SHOWN:
        shown = shown[: URL_SHOWN - 1] + "…"
    return Markup('<a href="{}" title="{}">{}</a>').format(href, href, shown)


def explanation_cell(value: str) -> Markup | None:
    """A score's explanation (JSON: words, phrases and rules) as one short line a person reads:
    'frustrating −1.9, useless +1.3 (negation: nothing)'."""
    try:
        parts = json.loads(value)
    except ValueError:
        return None
    if not isinstance(parts, list):
        return None
    shown = []
    for p in parts:
        if not isinstance(p, dict):
            return None
        what = p.get("word") or p.get("phrase")
        if "rule" in p:
            shown.append(f"({p['rule']}{': ' + str(what) if what else ''})")
        elif what is not None and isinstance(p.get("valence"), int | float):
            shown.append(f"{what} " + f"{p['valence']:+.1f}".replace("-", "−"))
    if not shown:
        return Markup("&nbsp;")
    return Markup('<span class="explanation">{}</span>').format(", ".join(shown))


def reading_order(
    columns: list[Any], rows: list[Any], order: Sequence[str]
) -> tuple[list[Any], list[Any]]:
    """Datasette's table columns and rows with `order`'s columns first (after the row link),
    the others after them as they were: what a person reads comes first, whatever the schema's
    order. Columns `order` names that the page does not show are skipped."""
    names = [c["name"] for c in columns]
    pinned = [i for i, c in enumerate(columns) if c.get("is_pk") or c["name"] == "Link"][:1]
    first = [names.index(n) for n in order if n in names and names.index(n) not in pinned]
    rest = [i for i in range(len(names)) if i not in pinned and i not in first]
    index = pinned + first + rest
    new_rows = []
    for row in rows:
        cells = list(row)
        by_name = {c["column"]: c for c in cells}
        if len(cells) != len(names) or set(by_name) != set(names):
            return columns, rows  # not the shape we know: leave the page as Datasette made it
        new_rows.append([by_name[names[i]] for i in index])
    return [columns[i] for i in index], new_rows


def _reading_orders(datasette: Any) -> Mapping[str, Sequence[str]]:
    config = datasette.plugin_config(PLUGIN_NAME) or {}
    orders: Mapping[str, Sequence[str]] = config.get("reading_order") or READING_ORDER
    return orders


def _reading_order_templates(datasette: Any) -> DictLoader:
    """Datasette includes `_table-<database>-<table>.html` in a table page when it exists: for
    each table with a reading order, one that reorders the columns, then draws Datasette's own
    `_table.html`."""
    database = to_css_class(database_name(datasette))
    body = (
        "{% set display_columns, display_rows = listener_reading_order("
        "display_columns, display_rows, listener_column_order or []) %}"
        '{% include "_table.html" %}'
    )
    return DictLoader(
        {f"_table-{database}-{to_css_class(t)}.html": body for t in _reading_orders(datasette)}
    )


def _cell_href(
    links: Links, row: Any, keys: set[str], column: str, value: Any, table: str | None
) -> str | None:
    if column == "thread_key" and table != "threads":
        return links.thread(value)
    if column == "title" and table == "threads" and "key" in keys:
        return links.thread(row["key"])  # a conversation's title opens its page
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

    def thread(self, key: Any) -> str:
        """The conversation's page: `/-/thread?key=<urlencoded thread key>` (alerts link here)."""
        return thread_path(self.datasette, str(key))

    def query(self, name: str, **params: Any) -> str:
        base = self.datasette.urls.query(self.database, name)
        return f"{base}?{urlencode(params)}" if params else base

    @staticmethod
    def period(start: date, end: date) -> dict[str, str]:
        """Table filters for mentions published in [start, end): UTC days, or hours."""
        return {"published_at__gte": bound(start), "published_at__lt": bound(end)}


def thread_path(datasette: Any, key: str) -> str:
    """The path of a conversation's page in this Datasette (its base URL included)."""
    return f"{datasette.urls.path(THREAD_PATH)}?{urlencode({'key': key})}"


def _parse_day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


# --------------------------------------------------------------------------------------- data

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


def bound(t: date) -> str:
    """A window bound as the text `published_at` is compared with: the day alone at midnight
    ('2026-12-07', what links have always carried), else the stored form ('…T13:00:00Z')."""
    if not isinstance(t, datetime):
        return t.isoformat()
    t = t.astimezone(UTC)
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return t.date().isoformat()
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


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
        if b is None or r["label"] not in LABELS:
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
        if r["label"] not in LABELS:
            continue
        data.previous[(r["brand"], r["label"])] = r["n"]
        data.previous_compound[r["brand"]] = data.previous_compound.get(r["brand"], 0.0) + (
            r["compound_sum"] or 0.0
        )
    all_brands = [r[0] for r in await db.execute("SELECT DISTINCT brand FROM mentions")]
    data.brands = sorted(all_brands, key=lambda b: (-data.total(b), b))

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
        w = _parse_day(r["week"])
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


# --------------------------------------------------------------------------------------- page


def _int_arg(request: Any, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.args.get(name, default))))
    except (TypeError, ValueError):
        return default


def utc_now() -> datetime:
    return datetime.now(UTC)


def period_name(days: int) -> str:
    """'24 hours', '2 days', '7 days': how the page names its window."""
    return "24 hours" if days == 1 else f"{days} days"


async def dashboard(datasette: Any, request: Any) -> Response:
    name = database_name(datasette)
    await datasette.ensure_permissions(request.actor, [("view-database", name), "view-instance"])
    days = _int_arg(request, "days", 7, 1, MAX_DAYS)
    data = await load_dashboard(datasette.get_database(name), days, utc_now())
    links = Links(datasette, name)
    colors = brand_colors(data.brands)
    period = links.period(data.start, data.end)
    before = links.period(data.previous_start, data.start)
    total, negative = data.total(), data.total(label="negative")
    context = {
        "database": name,
        "days": days,
        "period_name": period_name(days),
        "period_text": period_text(data),
        "day_choices": [1, 7, 30, 90],
        "data": data,
        "summary": summary_rows(data, links),
        "window_links": {
            "all": links.mentions(**period),
            "negative": links.mentions(label="negative", **period),
        },
        "total": total,
        "negative": negative,
        "total_change": change(total, data.previous_total(), links.mentions(**before)),
        "negative_change": change(
            negative,
            data.previous_total(label="negative"),
            links.mentions(label="negative", **before),
            good="down",
        ),
        "undated_link": links.mentions(
            published_at__isnull=1,
            first_seen_at__gte=bound(data.start),
            first_seen_at__lt=bound(data.end),
        ),
        "volume_charts": [
            (brand, colors[brand], Markup(volume_chart(data, brand, links)))
            for brand in data.brands
        ],
        "sentiment_chart": Markup(sentiment_chart(data, links, colors)),
        "share_chart": Markup(share_chart(data, links, colors)),
        "weekly_share_chart": Markup(weekly_share_chart(data, links, colors)),
        "threads": thread_rows(data, links),
        "worst_posts": worst_post_rows(data, links),
        "worst_posts_link": links.mentions(label="negative", _sort="compound", **period),
        "top_sources": top_rows(data, data.top_sources, links, ["source"]),
        "top_authors": top_rows(data, data.top_authors, links, ["author", "source"]),
        "negative_threads_link": links.query("negative_threads", days=days),
        "negative_sources_link": links.query("negative_sources", days=days),
        "negative_authors_link": links.query("negative_authors", days=days),
        "sources_link": links.query("source_health"),
        "alerts_link": links.query("alerts") if data.alerts is not None else None,
        "queries": [
            (links.query(q), query.get("title") or q)
            for q, query in (await datasette.get_canned_queries(name, request.actor)).items()
        ],
    }
    page = await datasette.render_template("listener_dashboard.html", context, request=request)
    return Response.html(page)


# --------------------------------------------------------------------------------------- thread

NOTE_MAX = 1000  # characters of a triage note kept
INTENT_WORDS = {
    "churn": "says they are leaving",
    "complaint": "complaint",
    "question": "question",
    "request": "request",
    "praise": "praise",
}
STATUS_WORDS = {
    "new": "New: nobody has taken it on yet",
    "acknowledged": "Acknowledged: someone is on it",
    "resolved": "Resolved (a new negative post opens it again)",
    "ignored": "Ignored: it never alerts",
}


def when_text(stamp: str | None) -> str:
    """'7 Dec 2026, 18:26 UTC' from a stored time; '' when there is none."""
    if not stamp:
        return ""
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return stamp
    return f"{t.day} {t.strftime('%b %Y, %H:%M')} UTC"


def score_text(compound: float | None) -> str:
    """'−0.62', '+0.30': a score as the dashboard and alerts print it, with a real minus."""
    return "" if compound is None else f"{compound:+.2f}".replace("-", "−")


def why_text(explanation: Sequence[Mapping[str, Any]], brand: str | None = None) -> str:
    """The words behind a score, as alerts quote them: 'frustrating −1.9, "no answer" +1.3',
    with the scorer's placeholders for brand names read back as names."""
    from .sentiment import describe_explanation

    try:
        text = describe_explanation(explanation, limit=5).replace("-", "−")
    except (KeyError, TypeError, ValueError):
        return ""
    return text.replace("<brand>", brand or "the brand").replace("<other>", "another brand")


def _assessments(post: Mapping[str, Any]) -> list[dict[str, Any]]:
    """How a post reads toward each brand it names (its mentions), or, for a reply that names
    none, the post's own score: label, score, why and intents."""
    out = []
    for m in post["mentions"]:
        if m.get("not_relevant"):
            continue
        out.append(
            {
                "brand": m["brand"],
                "product": m.get("product"),
                "label": m.get("label"),
                "score": score_text(m.get("compound")),
                "why": why_text(m.get("explanation") or [], m["brand"]),
                "intents": [INTENT_WORDS.get(i, str(i)) for i in m.get("intents") or []],
            }
        )
    if not out and post.get("label"):
        out.append(
            {
                "brand": None,
                "product": None,
                "label": post["label"],
                "score": score_text(post.get("compound")),
                "why": why_text(post.get("explanation") or []),
                "intents": [],
            }
        )
    return out


def _post_row(post: Mapping[str, Any]) -> dict[str, Any]:
    assessments = _assessments(post)
    text = (post.get("text") or "").strip()
    snippet = next((m.get("snippet") for m in post["mentions"] if m.get("snippet")), None)
    return {
        "id": post["id"],
        "author": post.get("author") or "someone",
        "when": when_text(post.get("published_at") or post.get("first_seen_at")),
        "title": None if post.get("is_reply") else post.get("title"),
        "text": text or snippet or post.get("title") or "",
        "href": safe_url(post.get("link")) or safe_url(post.get("url")),
        "source": post.get("source"),
        "by_brand": bool(post.get("by_brand")),
        "reply": bool(post.get("is_reply")),
        "assessments": assessments,
        # The post's edge colour: negative toward any brand it names wins.
        "tone": next((lab for lab in LABELS if any(a["label"] == lab for a in assessments)), None),
    }


def _load_thread(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    from .store import Store

    store = Store(conn)
    thread = store.thread(key)
    if thread is None:
        return None
    return {
        "thread": thread,
        "posts": store.thread_posts(key),
        "history": store.thread_history(key),
    }


def _set_status(
    conn: sqlite3.Connection, key: str, status: str, note: str | None, actor: str
) -> str | None:
    from .store import Store

    return Store(conn).set_thread_status(key, status, note, actor)


def actor_name(actor: Mapping[str, Any] | None) -> str | None:
    """Who changed a state in `serve`, as the history keeps it: 'serve:root'."""
    if not actor:
        return None
    return f"serve:{actor.get('id') or actor.get('username') or 'signed-in'}"


async def thread_page(datasette: Any, request: Any) -> Response:
    """A conversation, top to bottom: each post's text, author, time, label, score and why,
    the brand's replies marked, intents, the triage state and its history. A signed-in actor
    may change the state (POST, with Datasette's CSRF token); anyone else only reads."""
    name = database_name(datasette)
    await datasette.ensure_permissions(request.actor, [("view-database", name), "view-instance"])
    db = datasette.get_database(name)
    if request.method == "POST":
        return await _change_status(datasette, request, db)
    key = request.args.get("key") or ""
    loaded = await db.execute_fn(lambda conn: _load_thread(conn, key)) if key else None
    if loaded is None:
        page = await datasette.render_template(
            "listener_thread.html",
            {"database": name, "missing": key, "dashboard": datasette.urls.path(DASHBOARD_PATH)},
            request=request,
        )
        return Response.html(page, status=404)
    links = Links(datasette, name)
    t = loaded["thread"]
    posts = [_post_row(p) for p in loaded["posts"]]
    customers = [p for p in posts if not p["by_brand"]]
    context = {
        "database": name,
        "key": key,
        "thread": t,
        "title": t.get("title") or t.get("url") or key,
        "href": safe_url(t.get("url")),
        "posts": posts,
        "customers": len(customers),
        "negative": sum(
            1 for p in customers if any(a["label"] == "negative" for a in p["assessments"])
        ),
        "brand_replies": len(posts) - len(customers),
        "answered": when_text(t.get("answered_at")),
        "first_negative": when_text(t.get("first_negative_at")),
        "status": t.get("status") or "new",
        "status_words": STATUS_WORDS,
        "status_at": when_text(t.get("status_at")),
        "history": [{**h, "when": when_text(h["at"])} for h in loaded["history"]],
        "triage_actor": actor_name(request.actor),
        "statuses": THREAD_STATUSES,
        "note_max": NOTE_MAX,
        "thread_path": datasette.urls.path(THREAD_PATH),
        "dashboard": datasette.urls.path(DASHBOARD_PATH),
        "posts_link": links.items(thread_key=key, relevant=1, _sort="published_at"),
        "row_link": links.row("threads", key),
        "negative_threads_link": links.query("negative_threads"),
    }
    page = await datasette.render_template("listener_thread.html", context, request=request)
    return Response.html(page)


async def _change_status(datasette: Any, request: Any, db: Any) -> Response:
    actor = actor_name(request.actor)
    if actor is None:
        # Datasette is read-only for everyone who has not signed in (`serve --root`).
        return Response.text(
            "Forbidden: sign in to change a conversation's status "
            "(start `listener serve --root` and open the login link it prints).",
            status=403,
        )
    form = await request.post_vars()
    key = (form.get("key") or "").strip()
    status = form.get("status") or ""
    note = (form.get("note") or "").strip()[:NOTE_MAX] or None
    if status not in THREAD_STATUSES:
        return Response.text(
            f"Bad request: status must be one of {', '.join(THREAD_STATUSES)}", status=400
        )
    was = await db.execute_write_fn(lambda conn: _set_status(conn, key, status, note, actor))
    if was is None:
        return Response.text(f"No conversation {key!r}", status=404)
    log.info("thread %s: %s -> %s by %s", key, was, status, actor)
    datasette.add_message(request, f"Status: {status} (was {was}).", datasette.INFO)
    return Response.redirect(thread_path(datasette, key))


def brand_colors(brands: Iterable[str]) -> dict[str, str]:
    """A stable colour per brand: by name, so a brand keeps its colour as volumes change."""
    return {b: BRAND_COLORS[i % len(BRAND_COLORS)] for i, b in enumerate(sorted(brands))}


def period_text(data: DashboardData) -> str:
    if data.hourly:
        fmt = "%Y-%m-%d %H:%M"
        return (
            f"{data.start.strftime(fmt)} to {data.end.strftime(fmt)} UTC, hour by hour, "
            "by time posted"
        )
    return f"{data.start.date().isoformat()} to {data.today.isoformat()} (UTC, by date posted)"


def change(
    now: int | None, before: int | None, href: str | None = None, *, good: str = ""
) -> dict[str, Any] | None:
    """How a count moved against the previous period: text ('▲ 6 (+75%)'), the count before (and
    a link to its rows), and a tone for colour: 'better' or 'worse' when `good` says which way
    ('up' or 'down') is good, '' for plain volume."""
    if now is None or before is None:
        return None
    diff = now - before
    if diff == 0:
        text = "no change"
    else:
        text = f"{'▲' if diff > 0 else '▼'} {abs(diff):,}"
        if before:
            text += f" ({diff / before:+.0%})".replace("-", "−")
    tone = ""
    if diff and good:
        tone = "better" if (diff > 0) == (good == "up") else "worse"
    return {"text": text, "before": before, "href": href, "tone": tone}


def summary_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    period = links.period(data.start, data.end)
    before = links.period(data.previous_start, data.start)
    out = []
    for brand in data.brands:
        total = data.total(brand)
        negative = data.total(brand, "negative")
        prev_total = data.previous_total(brand)
        prev_negative = data.previous_total(brand, "negative")
        row: dict[str, Any] = {
            "brand": brand,
            "total": (total, links.mentions(brand=brand, **period)),
            "total_change": change(total, prev_total, links.mentions(brand=brand, **before)),
            "negative_change": change(
                negative,
                prev_negative,
                links.mentions(brand=brand, label="negative", **before),
                good="down",
            ),
            "mean": data.mean(brand),
            "previous_mean": data.previous_mean(brand),
            "negative_pct": round(100 * negative / total) if total else None,
            "previous_negative_pct": (
                round(100 * prev_negative / prev_total) if prev_total else None
            ),
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
                # Links from web data go through the one safe-URL rule: http(s) or no link.
                "href": safe_url(t.get("url")),
                "worst_href": safe_url(t.get("worst_url")),
                "posts_link": links.items(thread_key=key, relevant=1, _sort="published_at"),
                "negative_link": links.items(
                    thread_key=key, relevant=1, label="negative", _sort="compound"
                ),
                "thread_link": links.thread(key),
            }
        )
    return out


def worst_post_rows(data: DashboardData, links: Links) -> list[dict[str, Any]]:
    return [
        {
            **p,
            "href": safe_url(p.get("url")),
            "row_link": links.row("mentions", p["id"]),
            "thread_link": links.thread(p["thread_key"]) if p.get("thread_key") else None,
            "posted": (p.get("published_at") or "")[:16].replace("T", " "),
        }
        for p in data.worst_posts
    ]


def top_rows(
    data: DashboardData, top: list[dict[str, Any]], links: Links, keys: list[str]
) -> list[dict[str, Any]]:
    period = links.period(data.start, data.end)
    before = links.period(data.previous_start, data.start)
    out = []
    for t in top:
        filters = {k: t[k] for k in keys}
        out.append(
            {
                **t,
                "link": links.mentions(**filters, **period),
                "negative_link": links.mentions(**filters, label="negative", **period),
                "change": change(t["mentions"], t["previous"], links.mentions(**filters, **before)),
                "negative_pct": round(100 * t["negative"] / t["mentions"]),
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


def _bucket_label(data: DashboardData, b: datetime) -> str:
    """An x-axis label: the hour ('14:00', the date at midnight) or the day."""
    if data.hourly:
        return b.strftime("%b %d") if b.hour == 0 else b.strftime("%H:%M")
    return b.strftime("%b %d") if len(data.buckets) <= 14 else b.strftime("%m-%d")


def _bucket_tip(data: DashboardData, b: datetime) -> str:
    """A bucket in a tooltip: '2026-12-07', or '2026-12-07 14:00 UTC' for an hour."""
    return b.strftime("%Y-%m-%d %H:00 UTC") if data.hourly else b.date().isoformat()


def _x_axis(frame: Frame, labels: Sequence[str], centres: Sequence[float]) -> list[str]:
    out = [
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{frame.top + frame.plot_h}" y2="{frame.top + frame.plot_h}"/>'
    ]
    # At most 12 labels, counted back from the last (today, this hour) so that it is always
    # labelled and never crowds its neighbour.
    every = max(1, math.ceil(len(labels) / 12))
    for i, (text, x) in enumerate(zip(labels, centres, strict=True)):
        if (len(labels) - 1 - i) % every:
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
    """Mentions of `brand` per day (per hour in short windows), stacked by sentiment; each
    segment links to its mentions.

    All brands share one scale (the busiest bucket of any brand), so the charts compare at a
    glance.
    """
    busiest = max((data.total(b, bucket=d) for b in data.brands for d in data.buckets), default=0)
    top = nice_max(busiest)
    n = len(data.buckets)
    slot = frame.plot_w / n
    bar = max(1.0, slot * 0.7)
    per = "hour" if data.hourly else "day"
    parts = [_svg_open(frame, f"{brand}: mentions per {per} by sentiment", "volume")]
    parts += _y_axis(frame, top, lambda v: f"{v:g}", [0, top / 2, top] if top > 1 else [0, 1])
    centres = []
    for i, d in enumerate(data.buckets):
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
            href = links.mentions(brand=brand, label=label, **links.period(d, d + data.step))
            parts.append(_link(href, rect, f"{brand}, {_bucket_tip(data, d)}: {count} {label}"))
    parts += _x_axis(frame, [_bucket_label(data, d) for d in data.buckets], centres)
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
    """Mean VADER compound per brand per day or hour (-1..1), one line per brand; each point
    links to that bucket's mentions of the brand, most negative first."""
    n = len(data.buckets)
    slot = frame.plot_w / n
    per = "hour" if data.hourly else "day"
    parts = [_svg_open(frame, f"Mean sentiment per {per}, by brand", "sentiment")]
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
        points = [(centres[i], data.mean(brand, d), d) for i, d in enumerate(data.buckets)]
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
            href = links.mentions(brand=brand, _sort="compound", **links.period(d, d + data.step))
            tip = (
                f"{brand}, {_bucket_tip(data, d)}: mean {v:+.2f} over "
                f"{data.total(brand, bucket=d)} mentions"
            )
            parts.append(_link(href, dot, tip))
    parts += _x_axis(frame, [_bucket_label(data, d) for d in data.buckets], centres)
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
