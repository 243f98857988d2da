"""listener's Datasette plugin: the hooks. Routes to the dashboard and thread pages and the
stylesheet; `render_cell` adds links inside Datasette's own pages (counts in the views and canned
queries link to their mentions, thread keys to the conversation's page); the columns of our
tables in reading order.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from datasette.utils import to_css_class
from datasette.utils.asgi import asgi_static
from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader
from markupsafe import Markup

from ..alerts.render import safe_url
from ..store.dashboard import cap_value_length
from . import DASHBOARD_PATH, PLUGIN_NAME, THREAD_PATH
from .links import SENTIMENT_LABELS, Links, attr, database_name, parse_day
from .metadata import READING_ORDER
from .pages import dashboard
from .thread import thread_page

if TYPE_CHECKING:
    from ..store import Connection

log = logging.getLogger(__name__)


# Datasette's own marker (`datasette.hookimpl`), made here where type checkers can see it.
hookimpl = pluggy.HookimplMarker("datasette")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_PATH = "/-/listener"
CSS_PATH = f"{STATIC_PATH}/listener.css"
URL_SHOWN = 60  # characters of a link shown in a table cell (the whole URL is its tooltip)
# The largest value (text or blob) a query on Datasette's connections may make. SQLite's own
# limit is 1 GB, and one `hex(zeroblob(400000000))` made Datasette allocate gigabytes. 16 MiB is
# far above anything listener stores (item text is cut at 100,000 characters; fetched bodies,
# up to 20 MB, are never stored) and keeps even several such queries at once within a few
# hundred MB. A bigger value ends the query with "string or blob too big".
VALUE_CAP_BYTES = 16 * 1024 * 1024

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
def prepare_connection(conn: Connection) -> None:
    """Cap the size of any one value on Datasette's connections (see VALUE_CAP_BYTES)."""
    cap_value_length(conn, VALUE_CAP_BYTES)


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
    return Markup(f'<a href="{attr(href)}">{html.escape(str(value))}</a>')


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
    if not isinstance(value, int) or column not in ("mentions", *SENTIMENT_LABELS):
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
        start = parse_day(row["day"])
        if start is None:
            return None
        filters.update(links.period(start, start + timedelta(days=1)))
    elif "week" in keys and row["week"]:
        start = parse_day(row["week"])
        if start is None:
            return None
        filters.update(links.period(start, start + timedelta(days=7)))
    else:
        return None  # no period we can reproduce with table filters
    if column in SENTIMENT_LABELS:
        filters["label"] = column
    return links.mentions(**filters)
