"""Sources: their polling state, the fetch log and its retention, and per-host budgets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ..models import SourceState, Validators
from ..secrets import mask_url
from ..units import parse_iso
from .core import StoreCore, iso

_BUDGET_COLUMNS = (
    "host",
    "per_minute",
    "tokens",
    "updated_at",
    "remaining",
    "blocked_until",
    "blocked_why",
    "throttled",
    "window_start",
    "spent",
    "deferred",
    "deferred_this_round",
    "behind_since",
)


# Fetch-log rows deleted per transaction when trimming (see `Store.prune_fetches`).
PRUNE_BATCH = 2000


class SourcesStore(StoreCore):
    """`sources`, `fetches` and `host_budgets`."""

    def ensure_sources(self, specs: Iterable[Any]) -> None:
        with self.transaction():
            for spec in specs:
                self.conn.execute(
                    "INSERT INTO sources(name, kind, url) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, url = excluded.url",
                    (spec.name, spec.kind, spec.url and mask_url(spec.url, self.secrets)),
                )

    def load_source_state(self, name: str) -> SourceState:
        row = self.conn.execute(
            "SELECT etag, last_modified, body_hash, cursor, consecutive_failures FROM sources "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return SourceState()
        etag, last_modified, body_hash, cursor, failures = row
        return SourceState(
            validators=Validators(etag=etag, last_modified=last_modified),
            body_hash=body_hash,
            cursor=json.loads(cursor) if cursor else {},
            consecutive_failures=failures or 0,
        )

    def source_rows(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM sources ORDER BY name"))

    def source_kinds(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, kind FROM sources"))

    def source_row(self, name: str) -> dict[str, Any] | None:
        """A source's row (`sources`), None when unknown."""
        cursor = self.conn.execute("SELECT * FROM sources WHERE name = ?", (name,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def productive_polls(self, name: str, limit: int) -> list[str]:
        """When the source's latest `limit` polls that brought new items started, newest first."""
        return [
            str(t)
            for (t,) in self.conn.execute(
                "SELECT DISTINCT started_at FROM fetches WHERE source = ? AND new_items > 0 "
                "ORDER BY started_at DESC LIMIT ?",
                (name, limit),
            )
        ]

    def next_poll_at(self, name: str) -> datetime | None:
        """When the source is due next, as stored; None when unknown or never set."""
        row = self.conn.execute(
            "SELECT next_poll_at FROM sources WHERE name = ?", (name,)
        ).fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    def set_next_poll(self, name: str, when: datetime) -> None:
        """Record when the source is polled next (inside `transaction()`/`writing()`)."""
        self.conn.execute("UPDATE sources SET next_poll_at = ? WHERE name = ?", (iso(when), name))

    def load_host_budget(self, host: str) -> dict[str, Any] | None:
        cursor = self.conn.execute("SELECT * FROM host_budgets WHERE host = ?", (host,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def save_host_budget(self, row: Mapping[str, Any]) -> None:
        values = {k: row.get(k) for k in _BUDGET_COLUMNS}
        for k in ("throttled", "spent", "deferred", "deferred_this_round"):
            values[k] = int(values[k] or 0)
        cols = ", ".join(_BUDGET_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _BUDGET_COLUMNS[1:])
        self.conn.execute(
            f"INSERT INTO host_budgets({cols}) VALUES ({', '.join('?' * len(values))}) "
            f"ON CONFLICT(host) DO UPDATE SET {updates}",
            list(values.values()),
        )

    def host_budgets(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM host_budgets ORDER BY host")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def _update_source(
        self,
        name: str,
        now_s: str | None,
        *,
        error: str | None,
        status: int | None,
        validators: Validators | None,
        body_hash: str | None,
        cursor: Mapping[str, Any] | None,
        next_poll_at: str | None,
        items: int,
        mentions: int,
        note: str | None = None,
    ) -> None:
        sets = [
            "last_attempt_at = :now",
            "last_status = :status",
            "next_poll_at = :next",
            "items_seen = items_seen + :items",
            "mentions_found = mentions_found + :mentions",
        ]
        if error:
            sets += ["last_error = :error", "consecutive_failures = consecutive_failures + 1"]
        else:
            sets += ["last_success_at = :now", "consecutive_failures = 0", "last_error = NULL"]
        if validators is not None:
            sets += ["etag = :etag", "last_modified = :last_modified"]
        if body_hash is not None:
            sets.append("body_hash = :body_hash")
        if cursor is not None:
            sets.append("cursor = :cursor")
        if note is not None:
            sets.append("last_note = nullif(:note, '')")
        self.conn.execute(
            f"UPDATE sources SET {', '.join(sets)} WHERE name = :name",
            {
                "now": now_s,
                "status": status,
                "next": next_poll_at,
                "items": items,
                "mentions": mentions,
                "error": error,
                "etag": validators.etag if validators else None,
                "last_modified": validators.last_modified if validators else None,
                "body_hash": body_hash,
                "cursor": json.dumps(cursor) if cursor is not None else None,
                "note": note,
                "name": name,
            },
        )

    async def prune_fetches(
        self,
        now: datetime,
        *,
        max_age_s: float,
        per_source: int,
        sources: Iterable[str] | None = None,
        batch: int = PRUNE_BATCH,
    ) -> int:
        """Trim the fetch log; return the rows deleted.

        Rows started more than `max_age_s` before `now` go (0: none by age), and each source
        keeps only its newest `per_source` rows (0: no cap; `sources`: only these are looked
        at). Each batch of at most `batch` rows is its own short write transaction, and the
        event loop runs between batches: polls are never held up for long.
        """
        deleted = 0
        c = self.conn
        if max_age_s > 0:
            cutoff = iso(now - timedelta(seconds=max_age_s))
            while True:
                async with self.writing():
                    n = c.execute(
                        "DELETE FROM fetches WHERE id IN "
                        "(SELECT id FROM fetches WHERE started_at < ? LIMIT ?)",
                        (cutoff, batch),
                    ).rowcount
                deleted += n
                if n < batch:
                    break
                await asyncio.sleep(0)
        if per_source > 0:
            if sources is None:
                sources = [name for (name,) in c.execute("SELECT name FROM sources")]
            for i, name in enumerate(sources):
                if i % 100 == 99:
                    await asyncio.sleep(0)
                # Read first, outside the lock: most sources are under their cap.
                over = c.execute(
                    "SELECT 1 FROM fetches WHERE source = ? "
                    "ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?",
                    (name, per_source),
                ).fetchone()
                while over:
                    async with self.writing():
                        n = c.execute(
                            "DELETE FROM fetches WHERE id IN (SELECT id FROM fetches "
                            "WHERE source = ? ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?)",
                            (name, batch, per_source),
                        ).rowcount
                    deleted += n
                    if n < batch:
                        break
                    await asyncio.sleep(0)
        return deleted
