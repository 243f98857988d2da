"""Alerts: the `alerts` table (what each rule has said about a thread) and the outbox rows the
channels deliver. The rules themselves (listener/alerts/rules.py) are functions over the rows
these methods hand them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from .core import iso
from .items import ItemsStore

# The columns of a mention as the per-post rules read it (`very_negative_mentions`,
# `churn_mentions`).
_POST_ROW = (
    "id, brand, title, url, snippet, compound, author, published_at, source, thread_key, "
    "explanation"
)


class AlertsStore(ItemsStore):
    """`alerts` and `outbox`."""

    # --- outbox: one row per (alert, channel) ------------------------------------------------

    def pending_deliveries(
        self, channel: str, due_by: datetime | None
    ) -> list[tuple[int, int, str]]:
        """(alert id, attempts so far, payload) of the channel's pending rows, oldest alert
        first: those due by `due_by`, or all of them when it is None (a forced flush)."""
        sql = (
            "SELECT o.alert_id, o.attempts, a.payload FROM outbox o "
            "JOIN alerts a ON a.id = o.alert_id WHERE o.channel = ? AND o.status = 'pending'"
        )
        args: list[Any] = [channel]
        if due_by is not None:
            sql += " AND o.next_attempt_at <= ?"
            args.append(iso(due_by))
        return self.conn.execute(sql + " ORDER BY a.id", args).fetchall()

    def recover_sending(self, now: datetime, why: str, *, everything: bool = False) -> int:
        """Rows left `sending` go back to `pending`, due `now`, with `why` as their last error:
        those whose lease ran out, or all of them with `everything`. Returns how many."""
        sql = "UPDATE outbox SET status = 'pending', next_attempt_at = ?, last_error = ? "
        sql += "WHERE status = 'sending'"
        args: list[Any] = [iso(now), why]
        if not everything:
            sql += " AND next_attempt_at <= ?"
            args.append(iso(now))
        with self.transaction():
            return int(self.conn.execute(sql, args).rowcount)

    def claim_deliveries(
        self, alert_ids: Sequence[int], channel: str, lease_until: datetime
    ) -> tuple[list[int], list[int]]:
        """Mark the pending rows `sending` (one more attempt, leased until `lease_until`) and
        commit. Returns the ids this process got, with their attempts before this one."""
        got: list[int] = []
        attempts: list[int] = []
        lease = iso(lease_until)
        with self.transaction(durable=True):
            for alert_id in alert_ids:
                claimed = self.conn.execute(
                    "UPDATE outbox SET status = 'sending', attempts = attempts + 1, "
                    "next_attempt_at = ? WHERE alert_id = ? AND channel = ? AND status = 'pending'",
                    (lease, alert_id, channel),
                ).rowcount
                if claimed:
                    (tried,) = self.conn.execute(
                        "SELECT attempts FROM outbox WHERE alert_id = ? AND channel = ?",
                        (alert_id, channel),
                    ).fetchone()
                    got.append(alert_id)
                    attempts.append(int(tried) - 1)
        return got, attempts

    def mark_sent(self, alert_id: int, channel: str, at: datetime, note: str | None) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = ? "
            "WHERE alert_id = ? AND channel = ?",
            (iso(at), note, alert_id, channel),
        )

    def mark_failed(self, alert_id: int, channel: str, error: str | None) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'failed', last_error = ? "
            "WHERE alert_id = ? AND channel = ? AND status = 'sending'",
            (error, alert_id, channel),
        )

    def mark_retry(
        self, alert_id: int, channel: str, error: str | None, next_attempt: datetime
    ) -> None:
        self.conn.execute(
            "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ? "
            "WHERE alert_id = ? AND channel = ? AND status = 'sending'",
            (error, iso(next_attempt), alert_id, channel),
        )

    def last_sent_at(self, channel: str) -> str | None:
        (last,) = self.conn.execute(
            "SELECT max(sent_at) FROM outbox WHERE channel = ? AND status = 'sent'", (channel,)
        ).fetchone()
        return str(last) if last is not None else None

    def first_pending_at(self, channel: str) -> str | None:
        """When the oldest alert still pending on the channel was raised."""
        (first,) = self.conn.execute(
            "SELECT min(a.created_at) FROM outbox o JOIN alerts a ON a.id = o.alert_id "
            "WHERE o.channel = ? AND o.status = 'pending'",
            (channel,),
        ).fetchone()
        return str(first) if first is not None else None

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by status."""
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"))

    def undelivered_errors(self) -> list[tuple[str, str, int]]:
        """(channel, last error, rows) of what is not delivered and why."""
        return self.conn.execute(
            "SELECT channel, last_error, count(*) FROM outbox WHERE status != 'sent' "
            "AND last_error IS NOT NULL GROUP BY channel, last_error"
        ).fetchall()

    # --- alerts: what the rules read and write -----------------------------------------------

    def queue_alert(
        self,
        *,
        key: str,
        created_at: str,
        rule: str,
        level: int,
        brand: str | None,
        subject: str,
        thread_key: str | None,
        title: str | None,
        url: str | None,
        why: str | None,
        payload: str,
        channels: Sequence[str],
    ) -> int | None:
        """Add an alert and its outbox rows (one per channel), due now. Returns its id, or None
        when an alert with this key exists already (firing is idempotent)."""
        cur = self.conn.execute(
            "INSERT INTO alerts(key, created_at, rule, level, brand, subject, thread_key, title, "
            "url, why, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO NOTHING",
            (key, created_at, rule, level, brand, subject, thread_key, title, url, why, payload),
        )
        if not cur.rowcount:
            return None
        alert_id = int(cur.lastrowid or 0)
        self.conn.executemany(
            "INSERT OR IGNORE INTO outbox(alert_id, channel, next_attempt_at) VALUES (?, ?, ?)",
            [(alert_id, channel, created_at) for channel in channels],
        )
        return alert_id

    def channels_told(self, thread_key: str, created_at: str) -> set[str]:
        """The channels an alert about this thread raised at `created_at` (this poll) goes to."""
        return {
            c
            for (c,) in self.conn.execute(
                "SELECT o.channel FROM outbox o JOIN alerts a ON a.id = o.alert_id "
                "WHERE a.thread_key = ? AND a.created_at = ?",
                (thread_key, created_at),
            )
        }

    def last_alert(self, rule: str, subject: str) -> tuple[int, str] | None:
        """(level, created_at) of the highest, latest alert of `rule` about `subject`."""
        row = self.conn.execute(
            "SELECT level, created_at FROM alerts WHERE rule = ? AND subject = ? "
            "ORDER BY level DESC, created_at DESC LIMIT 1",
            (rule, subject),
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def conversation_alerted(self, thread_key: str) -> bool:
        """Whether this conversation already alerted as a conversation (any rule about it)."""
        row = self.conn.execute(
            "SELECT 1 FROM alerts WHERE thread_key = ? AND rule IN "
            "('negative_thread', 'unanswered_negative', 'very_negative_mention') LIMIT 1",
            (thread_key,),
        ).fetchone()
        return row is not None

    def negative_since(self, thread_key: str, after: str) -> tuple[int, int]:
        """(negative customer posts, customers saying they are leaving) first seen after
        `after` in the thread."""
        negative, churn = self.conn.execute(
            """
            SELECT count(DISTINCT i.id),
                   count(DISTINCT CASE WHEN m.intents LIKE '%"churn"%'
                                       THEN coalesce(i.author, i.id) END)
            FROM items i LEFT JOIN mentions m ON m.item_id = i.id AND m.not_relevant = 0
            WHERE i.thread_key = ? AND i.relevant = 1 AND i.label = 'negative'
              AND i.first_seen_at > ?
              AND NOT EXISTS (SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1)
              AND NOT EXISTS (SELECT 1 FROM mentions b WHERE b.item_id = i.id AND b.by_brand = 1)
            """,
            (thread_key, after),
        ).fetchone()
        return negative or 0, churn or 0

    def recent_negative_posts(self, thread_key: str, since: datetime) -> int:
        """Negative customer posts in the thread published (else first seen) since `since`."""
        (n,) = self.conn.execute(
            """
            SELECT count(*) FROM items i
            WHERE i.thread_key = ? AND i.relevant = 1 AND i.label = 'negative'
              AND coalesce(i.published_at, i.first_seen_at) >= ?
              AND NOT EXISTS (SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1)
              AND NOT EXISTS (SELECT 1 FROM mentions b WHERE b.item_id = i.id AND b.by_brand = 1)
            """,
            (thread_key, iso(since)),
        ).fetchone()
        return int(n)

    def unanswered_threads(
        self,
        min_negative: int,
        seen_since: datetime,
        negative_from: datetime,
        negative_by: datetime,
        brands: Collection[str],
    ) -> list[str]:
        """Threads of these `brands` nobody from the brand answered, open, with at least
        `min_negative` negative posts, a post since `seen_since`, the first negative one between
        `negative_from` and `negative_by`, and no `unanswered_negative` alert yet."""
        if not brands:
            return []
        named = " OR ".join("(',' || t.brands || ',') LIKE ?" for _ in brands)
        return [
            k
            for (k,) in self.conn.execute(
                "SELECT key FROM threads t WHERE brands IS NOT NULL AND answered_at IS NULL "
                "AND status NOT IN ('ignored', 'resolved') AND negative_posts >= ? "
                "AND last_seen_at >= ? AND first_negative_at >= ? AND first_negative_at <= ? "
                f"AND ({named}) "
                "AND NOT EXISTS (SELECT 1 FROM alerts a "
                "WHERE a.rule = 'unanswered_negative' AND a.subject = t.key)",
                (
                    min_negative,
                    iso(seen_since),
                    iso(negative_from),
                    iso(negative_by),
                    *(f"%,{b},%" for b in sorted(brands)),
                ),
            )
        ]

    def very_negative_mentions(
        self, mention_ids: Sequence[int], compound_at_most: float
    ) -> list[tuple[Any, ...]]:
        """Of these mentions, the customers' negative ones at or below `compound_at_most`,
        worst first (columns: `_POST_ROW`)."""
        marks = ",".join("?" * len(mention_ids))
        return self.conn.execute(
            f"SELECT {_POST_ROW} FROM mentions WHERE id IN ({marks}) AND not_relevant = 0 "
            "AND by_brand = 0 AND +label = 'negative' AND compound <= ? ORDER BY compound, id",
            (*mention_ids, compound_at_most),
        ).fetchall()

    def churn_mentions(self, mention_ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """Of these mentions, the customers' ones whose intents include churn, in id order
        (columns: `_POST_ROW`)."""
        marks = ",".join("?" * len(mention_ids))
        return self.conn.execute(
            f"SELECT {_POST_ROW} FROM mentions WHERE id IN ({marks}) AND not_relevant = 0 "
            "AND by_brand = 0 AND intents LIKE '%\"churn\"%' ORDER BY id",
            tuple(mention_ids),
        ).fetchall()

    def negative_brands(self, mention_ids: Sequence[int]) -> list[str]:
        """The brands of the negative ones among these mentions (`+label`, here and above: by
        id, never by scanning the label index's every negative mention)."""
        marks = ",".join("?" * len(mention_ids))
        return [
            b
            for (b,) in self.conn.execute(
                f"SELECT DISTINCT brand FROM mentions WHERE id IN ({marks}) AND +label = 'negative'",
                tuple(mention_ids),
            )
        ]

    def first_mention_at(self) -> str | None:
        """When the database's first mention was seen."""
        (first,) = self.conn.execute("SELECT min(first_seen_at) FROM mentions").fetchone()
        return str(first) if first is not None else None

    def negative_mention_times(self, brand: str, after: datetime) -> list[str]:
        """When (published, else first seen) each relevant negative mention of `brand` after
        `after` was made."""
        return [
            str(when)
            for (when,) in self.conn.execute(
                "SELECT coalesce(published_at, first_seen_at) FROM mentions WHERE brand = ? "
                "AND label = 'negative' AND not_relevant = 0 "
                "AND coalesce(published_at, first_seen_at) > ?",
                (brand, iso(after)),
            )
            if when is not None
        ]

    def worst_recent_mentions(
        self, brand: str, since: datetime, limit: int = 5
    ) -> list[tuple[Any, ...]]:
        """(snippet, compound, url, author, published_at, explanation) of the brand's worst
        relevant negative mentions since `since`."""
        return self.conn.execute(
            "SELECT snippet, compound, url, author, published_at, explanation FROM mentions "
            "WHERE brand = ? AND label = 'negative' AND not_relevant = 0 "
            "AND coalesce(published_at, first_seen_at) >= ? ORDER BY compound LIMIT ?",
            (brand, iso(since), limit),
        ).fetchall()

    def alert_payloads(self) -> list[str]:
        """Every alert's payload (`alerts.message`), highest level and newest first."""
        return [
            str(p)
            for (p,) in self.conn.execute(
                "SELECT payload FROM alerts ORDER BY level DESC, created_at DESC, id DESC"
            )
        ]
