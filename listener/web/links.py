"""The URLs behind every number on listener's pages: Datasette table views filtered to exactly the
rows a number counts (both use `published_at`, both leave out mentions marked not relevant),
rows, canned queries, and a conversation's page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from datasette.utils import tilde_encode

from . import PLUGIN_NAME, THREAD_PATH
from .metadata import READING_ORDER

LABELS = ("negative", "neutral", "positive")
SENTIMENT_LABELS = (*LABELS, "unscored")
# The columns a link to the rows behind a number shows: what a person reads, not the plumbing
# (every column is one click away in Datasette's column menu), in reading order.
MENTION_COLUMNS = (*READING_ORDER["mentions"], "product", "thread_key")
ITEM_COLUMNS = READING_ORDER["items"][:8]


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


def parse_day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def attr(text: str) -> str:
    return html.escape(text, quote=True)


def bound(t: date) -> str:
    """A window bound as the text `published_at` is compared with: the day alone at midnight
    ('2026-12-07', what links have always carried), else the stored form ('…T13:00:00Z')."""
    if not isinstance(t, datetime):
        return t.isoformat()
    t = t.astimezone(UTC)
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return t.date().isoformat()
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
