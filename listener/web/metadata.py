"""Datasette metadata for the mention database: descriptions, facets, sort orders, labels for
foreign keys, full-text search, internal tables hidden, the reading order of columns, and the
canned queries from `views.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store.dashboard import tables_at
from ..views import available_queries
from . import DASHBOARD_PATH, PLUGIN_NAME

# Marketing pages aggregate a week or more of mentions: Datasette's 1 s query and 200 ms facet
# limits are made for public instances on shared hosts, not a team's own database.
SETTINGS = {
    "sql_time_limit_ms": 5000,
    "facet_time_limit_ms": 1000,
    "default_page_size": 50,
    "truncate_cells_html": 300,
    # Facets list their top values and "…" for the rest: the rows stay near the top of a page.
    "default_facet_size": 8,
}

# The columns a person reads first, first: the words and how they feel, then whose, where and
# when. Table pages (and search results) show these columns in this order, the others after
# them; the schema's own order is left alone (plugin setting `reading_order`).
READING_ORDER: dict[str, tuple[str, ...]] = {
    "mentions": (
        "snippet",
        "label",
        "compound",
        "brand",
        "source",
        "published_at",
        "url",
        "title",
        "author",
    ),
    "items": (
        "text",
        "label",
        "compound",
        "title",
        "source",
        "published_at",
        "url",
        "author",
        "thread_key",
    ),
}

_MENTION_COLUMNS = {
    "compound": "Sentiment: VADER compound, -1 very negative .. +1 very positive",
    "label": "positive, neutral or negative; a person's correction (`listener label`) wins",
    "thread_key": "The conversation it belongs to: click it to read the whole thread",
    "published_at": "When it was posted (UTC); first_seen_at: when listener found it",
    "not_relevant": "1 when a person marked it not about the brand: left out of every count",
}


def datasette_metadata(db_path: str | Path) -> dict[str, Any]:
    """Datasette metadata for the mention database at `db_path`: descriptions, facets, sort
    orders, foreign-key labels, hidden internal tables, search, and the canned queries whose
    tables exist in it."""
    db_path = Path(db_path)
    name = db_path.stem
    tables = tables_at(db_path)
    table_meta: dict[str, Any] = {
        "mentions": {
            "description": (
                "One row per post and brand it names, with its sentiment. Search the text, "
                "filter with the facets, click a thread key for the whole conversation."
            ),
            "label_column": "title",
            "sort_desc": "published_at",
            # Four short facets in one row above the rows; the day facet (a long list sorted
            # by count) and kind are a click away under "Suggested facets", and the
            # dashboard shows mentions over time.
            "facets": ["brand", "label", "source", "product"],
            "fts_table": "mentions_fts",
            "fts_pk": "id",
            "columns": _MENTION_COLUMNS,
        },
        "items": {
            "description": (
                "Every post kept (deduplicated: a story seen under several links or in several "
                "sources is one row). Replies in a brand's conversation are kept even when they "
                "do not name the brand."
            ),
            "label_column": "title",
            "sort_desc": "published_at",
            "facets": ["source", "label", "is_reply"],
            "fts_table": "items_fts",
            "fts_pk": "id",
            "columns": {
                "thread_key": "The conversation it belongs to",
                "relevant": "1 when it names a brand or sits in a brand's conversation",
                "compound": "Sentiment of the whole post, -1 .. +1",
                "sightings": "How many places it was seen (syndicated copies, several sources)",
            },
        },
        "threads": {
            "description": (
                "Conversations: a post and its comments, a forum topic, copies of one story. "
                "Click posts or negative_posts for the posts themselves."
            ),
            "label_column": "title",
            "sort_desc": "last_seen_at",
            "facets": ["brands", "source"],
            "columns": {
                "brands": "Brands named in the conversation",
                "posts": "Posts scored (the brand's posts and their replies)",
                "negative_posts": "Posts scored negative",
                "mean_compound": "Mean sentiment of the posts, -1 .. +1",
                "worst_compound": "Sentiment of the worst post",
            },
        },
        "sources": {
            "description": "Each source's state: validators, last success and error, next poll.",
            "label_column": "name",
            "sort": "name",
            "facets": ["kind", "consecutive_failures"],
        },
        "fetches": {
            "description": "Every HTTP fetch: status, time, size, retries and error.",
            "sort_desc": "started_at",
            "facets": ["source", "status", {"date": "started_at"}],
        },
        "sightings": {
            "description": "Where each post was seen: one row per source and link it appeared under.",
            "sort_desc": "last_seen_at",
            "facets": ["source"],
        },
        "item_keys": {"hidden": True},
        "_sqlite_migrations": {"hidden": True},
        "daily_sentiment": {
            "description": "Mentions per brand per day, by sentiment (click a count for its mentions).",
            "sort_desc": "day",
            "facets": ["brand"],
        },
        "weekly_share_of_voice": {
            "description": "Each brand's share of all mentions, per week starting Monday.",
            "sort_desc": "week",
            "facets": ["brand"],
        },
        "negative_threads": {
            "description": (
                "Conversations with a negative mood or three or more negative posts, with the "
                "worst post of each."
            ),
            "sort_desc": "last_negative_at",
            "facets": ["brands", "source"],
        },
        "source_health": {
            "description": "Is each source working? Failing ones show their last error.",
            "facets": ["health", "kind"],
        },
        "alert_outbox": {
            "description": "Every alert and, per channel, whether it was sent, is pending or failed.",
            "sort_desc": "created_at",
            "facets": ["status", "rule", "channel", "brand"],
        },
        "alerts": {
            "description": "Every alert that fired (a thread turning negative, a spike, …).",
            "label_column": "title",
            "sort_desc": "created_at",
            "facets": ["rule", "brand", "level"],
        },
        "outbox": {
            "description": "Delivery of each alert to each channel, retried with backoff.",
            "sort_desc": "next_attempt_at",
            "facets": ["status", "channel"],
        },
    }
    return {
        "title": "listener: brand mentions",
        "description_html": (
            f'<p><a href="{DASHBOARD_PATH}"><strong>Open the dashboard</strong></a>: this week\'s '
            "conversations, sentiment over time and share of voice. Or search "
            f'<a href="/{name}/mentions">every mention</a>, and find the canned questions '
            f'(negative mentions, share of voice, source health, …) on the <a href="/{name}">'
            "database page</a>.</p>"
        ),
        "databases": {
            name: {
                "description": (
                    "Mentions of your brands found by listener, with their sentiment and "
                    "conversations. The queries below answer the usual questions without SQL."
                ),
                "tables": {t: m for t, m in table_meta.items() if t in tables},
                "queries": available_queries(tables),
            }
        },
        "plugins": {
            PLUGIN_NAME: {
                "database": name,
                "reading_order": {t: list(c) for t, c in READING_ORDER.items() if t in tables},
            }
        },
    }
