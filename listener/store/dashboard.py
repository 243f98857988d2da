"""The dashboard's reads: every SQL statement the dashboard runs, as plain synchronous functions
over a `sqlite3.Connection` (the web layer runs them through Datasette's `execute_fn`), into
plain rows (`DashboardRows`) that listener/web/dashboard.py turns into what the page shows; and
the two connection helpers the Datasette side needs (`tables_at`, `cap_value_length`).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .views import existing_tables

log = logging.getLogger(__name__)

THREADS_SHOWN = 10
VOICE_SHOWN = 8  # churn risks and open questions listed on the dashboard
REQUESTS_SHOWN = 3  # newest requests shown per brand
TOP_SHOWN = 5  # worst posts, top sources and top authors on the dashboard
# A mention's intents are a JSON list (`["churn", "complaint"]`): the same test as the canned
# queries and the dashboard's links (`intents__contains="churn"`), so their counts agree.
HAS_INTENT = "m.intents LIKE '%\"' || :intent || '\"%'"
IN_WINDOW = "not_relevant = 0 AND published_at >= :start AND published_at < :end"


@dataclass
class DashboardRows:
    """The rows behind the dashboard, each a dict of column -> value."""

    buckets: list[dict[str, Any]] = field(default_factory=list)  # bucket, brand, label, n, …
    previous: list[dict[str, Any]] = field(default_factory=list)  # brand, label, n, compound_sum
    brands: list[str] = field(default_factory=list)  # every brand with a mention
    weekly: list[dict[str, Any]] = field(default_factory=list)  # week, brand, n
    worst_posts: list[dict[str, Any]] = field(default_factory=list)
    top_sources: list[dict[str, Any]] = field(default_factory=list)
    top_authors: list[dict[str, Any]] = field(default_factory=list)
    undated: int = 0
    churn: list[dict[str, Any]] = field(default_factory=list)
    churn_count: int = 0
    questions: list[dict[str, Any]] = field(default_factory=list)
    questions_count: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)  # ≤ REQUESTS_SHOWN per brand
    threads: list[dict[str, Any]] = field(default_factory=list)
    negative_threads: int = 0
    sources: tuple[int, int] = (0, 0)  # (sources, failing)
    alerts: dict[str, int] | None = None


def _rows(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """The rows as dicts, whatever the connection's row factory; a column name that repeats
    keeps its first value (as `dict(sqlite3.Row)` does)."""
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        d: dict[str, Any] = {}
        for name, value in zip(names, tuple(row), strict=True):
            d.setdefault(name, value)
        out.append(d)
    return out


def _one(conn: sqlite3.Connection, sql: str, params: Any = ()) -> Any:
    return conn.execute(sql, params).fetchone()[0]


def load_dashboard_rows(
    conn: sqlite3.Connection,
    *,
    hourly: bool,
    window: dict[str, str],
    before: dict[str, str],
    weeks: dict[str, str],
) -> DashboardRows:
    """Everything the dashboard reads: mentions per bucket (hour or day) in `window` (start,
    end), the same per brand in the period `before`, per week in `weeks`, the worst posts, top
    sources and authors, what customers mean, negative threads, sources and alerts."""
    out = DashboardRows()
    out.buckets = _rows(
        conn,
        f"SELECT substr(published_at, 1, {13 if hourly else 10}) AS bucket, brand, label, "
        f"count(*) AS n, sum(compound) AS compound_sum FROM mentions WHERE {IN_WINDOW} "
        "GROUP BY bucket, brand, label",
        window,
    )
    out.previous = _rows(
        conn,
        "SELECT brand, label, count(*) AS n, sum(compound) AS compound_sum FROM mentions "
        f"WHERE {IN_WINDOW} GROUP BY brand, label",
        before,
    )
    out.brands = [r["brand"] for r in _rows(conn, "SELECT DISTINCT brand FROM mentions")]
    out.weekly = _rows(
        conn,
        "SELECT date(published_at, 'weekday 0', '-6 days') AS week, brand, count(*) AS n "
        "FROM mentions WHERE not_relevant = 0 AND published_at >= :start AND published_at < :end "
        "GROUP BY week, brand",
        weeks,
    )
    # The most negative posts, then where mentions come from and who writes them.
    out.worst_posts = _rows(
        conn,
        "SELECT id, brand, product, label, compound, title, snippet, author, source, url, "
        f"published_at, thread_key FROM mentions WHERE {IN_WINDOW} AND label = 'negative' "
        "AND by_brand = 0 "
        "ORDER BY compound, published_at DESC, id LIMIT :limit",
        {**window, "limit": TOP_SHOWN},
    )
    out.top_sources = _top(conn, ["source"], IN_WINDOW, window, before)
    out.top_authors = _top(
        conn, ["author", "source"], f"{IN_WINDOW} AND coalesce(author, '') != ''", window, before
    )
    out.undated = _one(
        conn,
        "SELECT count(*) FROM mentions WHERE not_relevant = 0 AND published_at IS NULL "
        "AND first_seen_at >= :start AND first_seen_at < :end",
        window,
    )
    _load_voice(conn, out, window)
    tables = existing_tables(conn)
    if "negative_threads" in tables:
        out.threads = _rows(
            conn,
            "SELECT * FROM negative_threads WHERE last_negative_at >= :start "
            "ORDER BY negative_posts DESC, worst_compound LIMIT :limit",
            {"start": window["start"], "limit": THREADS_SHOWN},
        )
        out.negative_threads = _one(
            conn,
            "SELECT count(*) FROM negative_threads WHERE last_negative_at >= :start",
            {"start": window["start"]},
        )
    row = conn.execute(
        "SELECT count(*), coalesce(sum(consecutive_failures > 0), 0) FROM sources"
    ).fetchone()
    out.sources = (row[0], row[1])
    if "alert_outbox" in tables:
        try:
            rows = _rows(conn, "SELECT status, count(*) AS n FROM alert_outbox GROUP BY status")
            out.alerts = {r["status"]: r["n"] for r in rows}
            out.alerts["fired"] = _one(
                conn,
                "SELECT count(*) FROM alerts WHERE created_at >= :start",
                {"start": window["start"]},
            )
        except sqlite3.DatabaseError as exc:
            log.warning("alerts not shown on the dashboard: %s", exc)
    return out


def _load_voice(conn: sqlite3.Connection, out: DashboardRows, window: dict[str, str]) -> None:
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
    out.churn = _rows(
        conn,
        f"SELECT {mention} FROM mentions m WHERE {customers} "
        "ORDER BY m.published_at DESC, m.id DESC LIMIT :limit",
        {**churn, "limit": VOICE_SHOWN},
    )
    out.churn_count = _one(conn, f"SELECT count(*) FROM mentions m WHERE {customers}", churn)
    # A question is open while its conversation has no answer from the brand's accounts and
    # the team has not closed it (resolved or ignored).
    open_question = (
        f"{customers} AND t.answered_at IS NULL "
        "AND coalesce(t.status, 'new') NOT IN ('resolved', 'ignored')"
    )
    asked = {**window, "intent": "question"}
    # One row per post: a question naming three brands is listed once, with the three brands
    # (SQLite takes the other columns from the row of min(m.id)).
    out.questions = _rows(
        conn,
        f"SELECT min(m.id) AS id, group_concat(m.brand, ', ') AS brands, {mention}, "
        "t.title AS thread_title, t.status FROM mentions m "
        f"LEFT JOIN threads t ON t.key = m.thread_key WHERE {open_question} "
        "GROUP BY m.item_id ORDER BY m.published_at DESC, m.id DESC LIMIT :limit",
        {**asked, "limit": VOICE_SHOWN},
    )
    out.questions_count = _one(
        conn,
        "SELECT count(DISTINCT m.item_id) FROM mentions m "
        f"LEFT JOIN threads t ON t.key = m.thread_key WHERE {open_question}",
        asked,
    )
    out.requests = _rows(
        conn,
        f"WITH r AS (SELECT {mention}, count(*) OVER (PARTITION BY m.brand) AS requests, "
        "row_number() OVER (PARTITION BY m.brand ORDER BY m.published_at DESC, m.id DESC) "
        f"AS n FROM mentions m WHERE {customers}) "
        "SELECT * FROM r WHERE n <= :per_brand ORDER BY requests DESC, brand, n",
        {**window, "intent": "request", "per_brand": REQUESTS_SHOWN},
    )


def _top(
    conn: sqlite3.Connection,
    keys: list[str],
    where: str,
    window: dict[str, str],
    before: dict[str, str],
) -> list[dict[str, Any]]:
    """The TOP_SHOWN groups by `keys` with most mentions in the window, with their negative
    count and mean, and their mentions in the period before (`previous`)."""
    cols = ", ".join(keys)
    top = _rows(
        conn,
        f"SELECT {cols}, count(*) AS mentions, sum(label = 'negative') AS negative, "
        f"avg(compound) AS mean FROM mentions WHERE {where} GROUP BY {cols} "
        f"ORDER BY mentions DESC, negative DESC, {cols} LIMIT :limit",
        {**window, "limit": TOP_SHOWN},
    )
    if not top:
        return top
    earlier = _rows(
        conn,
        f"SELECT {cols}, count(*) AS mentions FROM mentions WHERE {where} GROUP BY {cols}",
        before,
    )
    counts = {tuple(r[k] for k in keys): r["mentions"] for r in earlier}
    for t in top:
        t["previous"] = counts.get(tuple(t[k] for k in keys), 0)
    return top


def tables_at(db_path: Path) -> set[str]:
    """The tables and views of the database at `db_path`, read through a read-only connection."""
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return existing_tables(conn)
    finally:
        conn.close()


def cap_value_length(conn: sqlite3.Connection, cap_bytes: int) -> None:
    """Cap the size of any one value (text or blob) a query on `conn` may make."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, cap_bytes)
