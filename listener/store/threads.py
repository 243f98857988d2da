"""Conversations: `threads` and their aggregates, triage (`thread_triage`), and a thread as a
person is told about it (`thread_summary`)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..models import THREAD_STATUSES, Item, thread_title
from ..views import post_negative, post_score, post_why
from .core import _in_chunks, _json_list, iso
from .records import ProcessedItem
from .sources import SourcesStore

log = logging.getLogger(__name__)

# Who reopens a resolved conversation when a new negative post arrives, and what the history
# says about it (`thread_triage`).
REOPEN_ACTOR = "listener"


REOPEN_NOTE = "reopened: a new negative post"


class ThreadsStore(SourcesStore):
    """`threads` and `thread_triage`."""

    def brand_threads(self, keys: Iterable[str]) -> set[str]:
        """Which of these thread keys are conversations known to be about a brand."""
        keys = list(dict.fromkeys(k for k in keys if k))
        out: set[str] = set()
        for chunk, marks in _in_chunks(keys):
            out.update(
                k
                for (k,) in self.conn.execute(
                    f"SELECT key FROM threads WHERE key IN ({marks}) AND brands IS NOT NULL", chunk
                )
            )
        return out

    def thread_tallies(self, keys: Iterable[str]) -> dict[str, ThreadTally]:
        """The stored counts of these conversations (those about a brand), read in one go:
        what a rule checks before it asks for a conversation's full `thread_summary`."""
        keys = list(dict.fromkeys(k for k in keys if k))
        out: dict[str, ThreadTally] = {}
        for chunk, marks in _in_chunks(keys):
            for key, status, posts, negative, mean in self.conn.execute(
                "SELECT key, status, posts, negative_posts, mean_compound FROM threads "
                f"WHERE key IN ({marks}) AND brands IS NOT NULL",
                chunk,
            ):
                out[key] = ThreadTally(status or "new", posts or 0, negative or 0, mean)
        return out

    def _stored_thread_title(self, key: str) -> str:
        """A reply without a title of its own is shown under its conversation's title."""
        row = self.conn.execute("SELECT title FROM threads WHERE key = ?", (key,)).fetchone()
        return row[0] or "" if row else ""

    def _update_threads(
        self,
        keys: Mapping[str, None],
        processed: Sequence[ProcessedItem],
        replies_urls: Mapping[str, str],
        now_s: str | None,
    ) -> None:
        c = self.conn
        roots: dict[str, Item] = {}
        for p in processed:
            if p.item.thread_key in keys and (
                not p.item.is_reply or p.item.thread_key not in roots
            ):
                roots.setdefault(p.item.thread_key, p.item)
        c.executemany(
            "INSERT INTO threads(key, title, url, source, replies_url, first_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "title = coalesce(nullif(threads.title, ''), excluded.title), "
            "url = coalesce(threads.url, excluded.url), "
            "replies_url = coalesce(excluded.replies_url, threads.replies_url)",
            [
                (
                    key,
                    thread_title(root) if (root := roots.get(key)) else None,
                    root.url if root else None,
                    root.source if root else None,
                    replies_urls.get(key) or (root.thread_url if root else None),
                    now_s,
                )
                for key in keys
            ],
        )
        self.refresh_threads(list(keys))
        self._reopen_resolved(list(keys), now_s)

    def _reopen_resolved(self, keys: Sequence[str], now_s: str | None) -> None:
        """A resolved conversation opens again (status `new`, a history row by `listener`) when
        a negative customer post is found in it after it was resolved: the brand's own posts
        (`by_brand`) never reopen it. Inside the save's transaction."""
        if not now_s:
            return
        for start in range(0, len(keys), 500):
            reopened = [
                key
                for (key,) in self.conn.execute(
                    """
                    SELECT t.key FROM threads t JOIN json_each(?) k ON k.value = t.key
                    WHERE t.status = 'resolved' AND EXISTS (
                      SELECT 1 FROM items i
                      WHERE i.thread_key = t.key AND i.relevant = 1 AND i.label = 'negative'
                        AND i.first_seen_at > coalesce(t.status_at, '')
                        AND NOT EXISTS (
                          SELECT 1 FROM mentions m
                          WHERE m.item_id = i.id AND (m.by_brand = 1 OR m.not_relevant = 1)
                        )
                    )
                    """,
                    (json.dumps(list(keys[start : start + 500])),),
                )
            ]
            for key in reopened:
                self._write_status(key, "new", REOPEN_NOTE, REOPEN_ACTOR, now_s)
                log.info("thread %s reopened: a new negative post", key)

    def _write_status(
        self, key: str, status: str, note: str | None, actor: str | None, at: str
    ) -> None:
        self.conn.execute(
            "UPDATE threads SET status = ?, status_at = ? WHERE key = ?", (status, at, key)
        )
        self.conn.execute(
            "INSERT INTO thread_triage(thread_key, status, note, actor, at) VALUES (?, ?, ?, ?, ?)",
            (key, status, note, actor, at),
        )

    def refresh_thread(self, key: str) -> None:
        self.refresh_threads([key])

    def refresh_threads(self, keys: Sequence[str]) -> None:
        """Recompute threads' aggregates from their stored items and (corrected) mention labels.

        `posts` counts every scored post; the sentiment (`negative_posts`, `mean_compound`,
        `worst_compound`, `first_negative_at`) is the customers': a post by one of a brand's
        `accounts:` (`items.by_brand`) is the brand's voice; a reply of the brand's (not the
        brand's own opening post) marks the thread answered (`answered_at`: the earliest such
        reply ever seen, kept).
        """
        score, negative = post_score(), post_negative()
        for start in range(0, len(keys), 500):
            # Each post's score and negativity are worked out once (MATERIALIZED), then summed
            # up per thread: the same numbers as reading them in every aggregate.
            self.conn.execute(
                f"""
                WITH k(key) AS (SELECT value FROM json_each(?)),
                p AS MATERIALIZED (
                  SELECT i.thread_key, i.by_brand, i.is_reply, i.first_seen_at,
                         coalesce(i.published_at, i.first_seen_at) AS at,
                         {score} AS score, {negative} AS negative
                  FROM items i
                  WHERE i.thread_key IN (SELECT key FROM k) AND i.relevant = 1
                    AND i.compound IS NOT NULL
                    AND NOT EXISTS (
                      SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1
                    )
                )
                UPDATE threads SET
                  posts = agg.posts, negative_posts = agg.negative_posts,
                  mean_compound = agg.mean_compound, worst_compound = agg.worst_compound,
                  first_seen_at = coalesce(agg.first_seen, threads.first_seen_at),
                  last_seen_at = agg.last_seen, brands = agg.brands,
                  first_negative_at = agg.first_negative,
                  answered_at = CASE
                    WHEN threads.answered_at IS NULL OR agg.answered < threads.answered_at
                    THEN coalesce(agg.answered, threads.answered_at)
                    ELSE threads.answered_at END
                FROM (
                  SELECT k.key AS key,
                         count(p.thread_key) AS posts,
                         coalesce(sum(p.by_brand = 0 AND p.negative), 0) AS negative_posts,
                         round(avg(CASE WHEN p.by_brand = 0 THEN p.score END), 4)
                           AS mean_compound,
                         min(CASE WHEN p.by_brand = 0 THEN p.score END) AS worst_compound,
                         min(CASE WHEN p.by_brand = 0 AND p.negative THEN p.at END)
                           AS first_negative,
                         min(CASE WHEN p.by_brand = 1 AND p.is_reply = 1 THEN p.at END)
                           AS answered,
                         min(p.first_seen_at) AS first_seen,
                         max(p.first_seen_at) AS last_seen,
                         (SELECT group_concat(DISTINCT m.brand) FROM mentions m
                           WHERE m.thread_key = k.key AND m.not_relevant = 0) AS brands
                  FROM k LEFT JOIN p ON p.thread_key = k.key
                  GROUP BY k.key
                ) AS agg
                WHERE threads.key = agg.key
                """,
                (json.dumps(list(keys[start : start + 500])),),
            )

    def followable_threads(
        self, source: str, touched: Sequence[str], since: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """Brand threads with a replies URL: those this poll touched, and the source's recent ones."""
        found: dict[str, str] = {}
        for chunk, marks in _in_chunks(touched):
            found.update(
                self.conn.execute(
                    "SELECT key, replies_url FROM threads WHERE replies_url IS NOT NULL "
                    f"AND brands IS NOT NULL AND key IN ({marks}) "
                    "ORDER BY last_seen_at DESC",
                    chunk,
                ).fetchall()
            )
        found.update(
            self.conn.execute(
                "SELECT key, replies_url FROM threads WHERE replies_url IS NOT NULL "
                "AND brands IS NOT NULL AND source = ? AND last_seen_at >= ? "
                "ORDER BY last_seen_at DESC LIMIT ?",
                (source, since, limit),
            ).fetchall()
        )
        return list(found.items())[:limit]

    def negative_threads(self, limit: int) -> list[tuple[Any, ...]]:
        """(key, title, url, source, brands, posts, negative_posts, mean_compound) of the most
        negative conversations (the `negative_threads` view), worst first."""
        return self.conn.execute(
            "SELECT thread_key, title, url, source, brands, posts, negative_posts, mean_compound "
            "FROM negative_threads ORDER BY negative_posts DESC, worst_compound LIMIT ?",
            (limit,),
        ).fetchall()

    def thread_status(self, key: str) -> str:
        """A conversation's triage state; `new` for one not stored."""
        row = self.conn.execute("SELECT status FROM threads WHERE key = ?", (key,)).fetchone()
        return str(row[0] or "new") if row else "new"

    def thread_summary(self, key: str, limit: int = 5) -> ThreadSummary | None:
        """`thread_summary` of this database."""
        return thread_summary(self.conn, key, limit)

    def thread_post(self, mention_id: int, brand: str) -> ThreadPost | None:
        """`thread_post` of this database."""
        return thread_post(self.conn, mention_id, brand)

    def mark_followed(self, key: str, at: datetime) -> None:
        """The thread's replies were just read (inside `transaction()`/`writing()`)."""
        self.conn.execute("UPDATE threads SET last_followed_at = ? WHERE key = ?", (iso(at), key))

    def set_thread_status(
        self,
        key: str,
        status: str,
        note: str | None = None,
        actor: str | None = None,
        at: datetime | None = None,
    ) -> str | None:
        """Set a conversation's triage state (`models.THREAD_STATUSES`) and add it to its
        history (`thread_triage`). Returns the status it had, or None when there is no such
        thread. A note is kept as written (trimmed; blank is no note)."""
        if status not in THREAD_STATUSES:
            raise ValueError(f"unknown status {status!r}: one of {', '.join(THREAD_STATUSES)}")
        note = (note or "").strip() or None
        with self.transaction():
            row = self.conn.execute("SELECT status FROM threads WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            self._write_status(key, status, note, actor, iso(at or datetime.now(UTC)) or "")
        return str(row[0])

    def find_thread(self, ref: str) -> str | None:
        """The key of the thread `ref` names: its key, its URL, or the link of a post in it
        (a comment's own `#comment-N` link too)."""
        ref = ref.strip()
        for sql in (
            "SELECT key FROM threads WHERE key = ?",
            "SELECT key FROM threads WHERE url = ? ORDER BY last_seen_at DESC LIMIT 1",
            "SELECT thread_key FROM items WHERE url = ? AND thread_key IS NOT NULL "
            "ORDER BY relevant DESC, id LIMIT 1",
            "SELECT i.thread_key FROM sightings s JOIN items i ON i.id = s.item_id "
            "WHERE s.url = ? AND i.thread_key IS NOT NULL LIMIT 1",
        ):
            row = self.conn.execute(sql, (ref,)).fetchone()
            if row:
                return str(row[0])
        return None

    def thread(self, key: str) -> dict[str, Any] | None:
        """A conversation's row (`threads`), None when unknown."""
        cursor = self.conn.execute("SELECT * FROM threads WHERE key = ?", (key,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def thread_posts(self, key: str, limit: int = 2000) -> list[dict[str, Any]]:
        """A conversation's posts, oldest first: each item kept in it (text, author, times, its
        own score, `link`: the address it was first seen under, a comment's own anchor) with
        its mentions (`mentions`: brand, label, compound, explanation and
        intents as lists, by_brand, not_relevant), and `by_brand` when any of them is the
        brand's own voice. At most `limit` posts, the first ones."""
        cursor = self.conn.execute(
            """
            SELECT i.id, i.url, i.title, i.text, i.author, i.published_at, i.first_seen_at,
                   i.source, i.is_reply, i.compound, i.label, i.explanation,
                   i.by_brand AS item_by_brand,
                   (SELECT s.url FROM sightings s WHERE s.item_id = i.id
                     ORDER BY s.first_seen_at, s.url LIMIT 1) AS link,
                   (SELECT json_group_array(json_object(
                      'id', m.id, 'brand', m.brand, 'product', m.product, 'label', m.label,
                      'compound', m.compound, 'explanation', m.explanation,
                      'intents', m.intents, 'by_brand', m.by_brand,
                      'not_relevant', m.not_relevant, 'snippet', m.snippet))
                    FROM mentions m WHERE m.item_id = i.id) AS mentions
            FROM items i
            WHERE i.thread_key = ? AND i.relevant = 1
            ORDER BY coalesce(i.published_at, i.first_seen_at), i.id
            LIMIT ?
            """,
            (key, limit),
        )
        names = [d[0] for d in cursor.description]
        posts = []
        for row in cursor:
            post = dict(zip(names, row, strict=True))
            post["explanation"] = _json_list(post["explanation"])
            mentions = json.loads(post["mentions"] or "[]")
            for m in mentions:
                m["explanation"] = _json_list(m["explanation"])
                m["intents"] = _json_list(m["intents"])
            post["mentions"] = mentions
            # A brand reply that names no brand has no mention row: the item says so.
            post["by_brand"] = bool(post.pop("item_by_brand")) or any(
                m["by_brand"] for m in mentions
            )
            posts.append(post)
        return posts

    def thread_history(self, key: str) -> list[dict[str, Any]]:
        """A conversation's triage history, oldest first."""
        cursor = self.conn.execute(
            "SELECT status, note, actor, at FROM thread_triage WHERE thread_key = ? "
            "ORDER BY at, id",
            (key,),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]


# --- conversations, as people are told about them ---------------------------------------------


@dataclass(frozen=True)
class ThreadTally:
    """A conversation's stored counts: its triage state, posts, negative posts, mean score."""

    status: str
    posts: int
    negative_posts: int
    mean_compound: float | None


@dataclass(frozen=True)
class ThreadPost:
    """One customer post of a conversation, with the score every view shows for it."""

    item_id: int
    text: str  # what the customer wrote (the post's text; its title only when it has none)
    compound: float  # its score in the conversation (`views.post_score`), as every view shows
    url: str | None  # the post's own URL (a comment's anchor, not its page's)
    author: str | None
    published_at: str | None
    explanation: str | None  # JSON: the words behind `compound`
    intents: tuple[str, ...] = ()


@dataclass(frozen=True)
class ThreadSummary:
    """A conversation's numbers, computed once, for the rules, their messages and the views.

    `posts`, `negative_posts`, `mean_compound` and `worst_compound` are the thread's stored
    aggregates (what the dashboard and the canned queries show); the rest is read from its posts.
    The brand's own posts (`mentions.by_brand`) are replies: never customers, never worst posts.
    """

    key: str
    title: str
    url: str | None
    source: str | None
    status: str
    brand: str | None  # the brand the conversation is about: most negative customer mentions
    others: tuple[str, ...]  # other brands named alongside (competitors)
    posts: int
    negative_posts: int
    mean_compound: float | None
    worst_compound: float | None
    customers: int  # distinct customer authors
    brand_replies: int
    churn_customers: int  # distinct customers saying they are leaving `brand`
    first_negative_at: str | None
    answered_at: str | None
    worst: tuple[ThreadPost, ...]  # negative customer posts, worst first


# A post as every view shows it: its text (a reply's own words, not its "Re:" title), its own
# score, and its own link: a comment's anchor (#comment-N), which the canonical URL drops to
# keep one item per page, else the canonical URL. Takes the brand (for intents) as a parameter.
# A post as alerts show it: its score and why in the conversation (`views.post_score`), the
# same numbers as the thread's aggregates, the thread page and the canned queries.
_POST_COLUMNS = f"""
    i.id, coalesce(nullif(trim(i.text), ''), i.title, ''), {post_score()},
    coalesce((SELECT s.url FROM sightings s WHERE s.item_id = i.id AND s.url LIKE '%#%'
              ORDER BY s.first_seen_at LIMIT 1), i.url),
    i.author, i.published_at, {post_why()},
    (SELECT m.intents FROM mentions m WHERE m.item_id = i.id AND m.brand = ?)
"""


# The brand's own voice: the item (also a reply that names no brand) or one of its mentions.
_BY_BRAND = "(i.by_brand = 1 OR EXISTS (SELECT 1 FROM mentions b WHERE b.item_id = i.id AND b.by_brand = 1))"


_EXCLUDED = "EXISTS (SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1)"


def thread_summary(conn: sqlite3.Connection, key: str, limit: int = 5) -> ThreadSummary | None:
    """The conversation `key` as a person is told about it; None when it names no brand."""
    row = conn.execute(
        "SELECT title, url, source, status, posts, negative_posts, mean_compound, "
        "worst_compound, first_negative_at, answered_at FROM threads "
        "WHERE key = ? AND brands IS NOT NULL",
        (key,),
    ).fetchone()
    if row is None:
        return None
    title, url, source, status, posts, negative, mean, worst, first_negative, answered = row
    brands = [
        b
        for (b,) in conn.execute(
            "SELECT brand FROM mentions WHERE thread_key = ? AND not_relevant = 0 AND by_brand = 0 "
            "GROUP BY brand ORDER BY sum(label = 'negative') DESC, count(*) DESC, min(id)",
            (key,),
        )
    ]
    brand = brands[0] if brands else None
    customers, negative_at, replies, answered_first = conn.execute(
        f"""
        SELECT count(DISTINCT CASE WHEN NOT {_BY_BRAND} THEN coalesce(i.author, i.id) END),
               min(CASE WHEN NOT {_BY_BRAND} AND {post_negative()}
                        THEN coalesce(i.published_at, i.first_seen_at) END),
               coalesce(sum({_BY_BRAND}), 0),
               min(CASE WHEN {_BY_BRAND} AND i.is_reply = 1
                        THEN coalesce(i.published_at, i.first_seen_at) END)
        FROM items i WHERE i.thread_key = ? AND i.relevant = 1 AND NOT {_EXCLUDED}
        """,
        (key,),
    ).fetchone()
    (churn,) = conn.execute(
        "SELECT count(DISTINCT coalesce(m.author, m.item_id)) FROM mentions m "
        "WHERE m.thread_key = ? AND m.brand = ? AND m.not_relevant = 0 AND m.by_brand = 0 "
        "AND m.intents LIKE '%\"churn\"%'",
        (key, brand),
    ).fetchone()
    worst_posts = conn.execute(
        f"""
        SELECT {_POST_COLUMNS}
        FROM items i
        WHERE i.thread_key = ? AND i.relevant = 1 AND i.compound IS NOT NULL
          AND {post_negative()} AND NOT {_EXCLUDED} AND NOT {_BY_BRAND}
        ORDER BY {post_score()}, i.id LIMIT ?
        """,
        (brand, key, limit),
    ).fetchall()
    return ThreadSummary(
        key=key,
        title=title or "",
        url=url,
        source=source,
        status=status or "new",
        brand=brand,
        others=tuple(brands[1:]),
        posts=posts,
        negative_posts=negative,
        mean_compound=mean,
        worst_compound=worst,
        customers=customers or 0,
        brand_replies=replies or 0,
        churn_customers=churn or 0,
        first_negative_at=first_negative or negative_at,
        answered_at=answered or answered_first,
        worst=tuple(_thread_post(row) for row in worst_posts),
    )


def _thread_post(row: Sequence[Any]) -> ThreadPost:
    pid, text, compound, url, author, published, explanation, intents = row
    return ThreadPost(
        pid, text, compound, url, author, published, explanation, tuple(json.loads(intents or "[]"))
    )


def thread_post(conn: sqlite3.Connection, mention_id: int, brand: str) -> ThreadPost | None:
    """The post of a mention of `brand`, as `thread_summary` shows its posts."""
    row = conn.execute(
        f"SELECT {_POST_COLUMNS} FROM mentions x JOIN items i ON i.id = x.item_id "
        "WHERE x.id = ? AND i.compound IS NOT NULL",
        (brand, mention_id),
    ).fetchone()
    return _thread_post(row) if row else None
