"""Items and mentions: identity keys, sightings, one poll's save, corrections, and the stored
items a backtest reads again."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..models import Mention, Response, Score, Validators, thread_title
from ..secrets import mask, mask_url
from ..units import parse_iso
from .core import _in_chunks, _insert_many, iso
from .records import KnownItem, ProcessedItem, SaveResult
from .threads import ThreadsStore

log = logging.getLogger(__name__)


class ItemsStore(ThreadsStore):
    """`items`, `item_keys`, `sightings`, `mentions` (and their full-text indexes)."""

    def lookup_keys(self, keys: Sequence[str]) -> dict[str, KnownItem]:
        """Which of these identity keys belong to stored items."""
        found: dict[str, KnownItem] = {}
        for chunk, marks in _in_chunks(keys):
            for key, item_id, content_hash, source, relevant in self.conn.execute(
                "SELECT k.key, i.id, i.content_hash, i.source, i.relevant FROM item_keys k "
                f"JOIN items i ON i.id = k.item_id WHERE k.key IN ({marks})",
                chunk,
            ):
                found[key] = KnownItem(item_id, content_hash, source, bool(relevant))
        return found

    def seen_hashes(self, source: str, since: datetime) -> set[str]:
        """Content hashes of the items a source has shown since `since`: a worker need not
        match and score those again."""
        return {
            h
            for (h,) in self.conn.execute(
                "SELECT i.content_hash FROM sightings s JOIN items i ON i.id = s.item_id "
                "WHERE s.source = ? AND s.last_seen_at >= ?",
                (source, iso(since)),
            )
        }

    def save_poll(
        self,
        source: str,
        kind: str,
        processed: Sequence[ProcessedItem],
        responses: Sequence[Response],
        *,
        now: datetime,
        error: str | None,
        validators: Validators | None = None,
        body_hash: str | None = None,
        cursor: Mapping[str, Any] | None = None,
        next_poll_at: datetime | None = None,
        thread_replies_url: Mapping[str, str] | None = None,
        update_source: bool = True,
        note: str | None = None,
    ) -> SaveResult:
        """Everything one source poll learnt, in one transaction.

        `note` replaces the source's `last_note` ("" clears it); None leaves it as it is.

        Rows are written in batches (`executemany`); new items and mentions get their ids here,
        which is safe because this runs in a transaction that holds the write lock from its
        start (`BEGIN IMMEDIATE`): no other writer can take an id in between.
        """
        now_s = iso(now)
        c = self.conn
        with self.transaction():
            saved = (
                self._save_items(source, kind, processed, now_s)
                if processed
                else SaveResult(0, 0, (), (), ())
            )
            new_items = saved.new_items
            c.executemany(
                "INSERT INTO fetches(source, url, started_at, status, duration_ms, bytes, attempts, "
                "items, new_items, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        source,
                        mask_url(response.url, self.secrets),
                        now_s,
                        response.status,
                        round(response.duration_ms, 1),
                        len(response.body),
                        response.attempts,
                        len(processed),
                        new_items,
                        response.error and mask(response.error, self.secrets),
                    )
                    for response in responses
                ],
            )
            if saved.threads_touched:
                self._update_threads(
                    dict.fromkeys(saved.threads_touched), processed, thread_replies_url or {}, now_s
                )
            if update_source:  # False for a thread's replies: the source's own poll is elsewhere
                self._update_source(
                    source,
                    now_s,
                    error=error and mask(error, self.secrets),
                    status=responses[-1].status if responses else None,
                    validators=validators,
                    body_hash=body_hash,
                    cursor=cursor,
                    next_poll_at=iso(next_poll_at),
                    items=new_items,
                    mentions=len(saved.new_mentions),
                    note=note,
                )
        return saved

    def _save_items(
        self, source: str, kind: str, processed: Sequence[ProcessedItem], now_s: str
    ) -> SaveResult:
        """The items of one poll, their keys, sightings and mentions (inside `save_poll`)."""
        new_items = updated = 0
        new_mentions: list[Mention] = []
        new_ids: list[int] = []
        threads: dict[str, None] = {}
        c = self.conn
        processed = self._recheck_new(processed)
        (next_item_id,) = c.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()
        (next_mention_id,) = c.execute("SELECT coalesce(max(id), 0) + 1 FROM mentions").fetchone()
        batch_keys: dict[str, int] = {}
        inserts: list[dict[str, Any]] = []
        edits: list[tuple[int, ProcessedItem]] = []
        seen_again: list[int] = []
        key_rows: list[tuple[str, int]] = []
        sighting_rows: list[tuple[Any, ...]] = []
        mention_rows: list[dict[str, Any]] = []
        voices: list[tuple[int]] = []
        for p in processed:
            it = p.item
            twin = (
                next((batch_keys[k] for k in p.keys if k in batch_keys), None)
                if p.known is None
                else None
            )
            if twin is not None:
                # An earlier item of this same poll already is this story (a feed listing
                # it twice, or a copy under another URL): one more sighting of it.
                item_id = twin
                p = replace(p, changed=False)
                seen_again.append(item_id)
            elif p.known is None:
                item_id = next_item_id
                next_item_id += 1
                values = self._item_values(p)
                values.update(id=item_id, first_seen_at=now_s, last_seen_at=now_s, source=it.source)
                inserts.append(values)
                new_items += 1
            elif p.changed:
                item_id = p.known.item_id
                edits.append((item_id, p))
                updated += 1
            else:
                item_id = p.known.item_id
                seen_again.append(item_id)
            for key in p.keys:
                batch_keys.setdefault(key, item_id)
                key_rows.append((key, item_id))
            sighting_rows.append((item_id, source, it.raw_url or it.url, now_s, now_s))
            if p.changed:
                for row, mention in self._mention_rows(item_id, p, kind, now_s):
                    if row is None:
                        continue  # an existing mention, updated in place
                    row["id"] = next_mention_id
                    next_mention_id += 1
                    mention_rows.append(row)
                    new_ids.append(row["id"])
                    new_mentions.append(mention)
            if p.relevant and it.thread_key:
                threads[it.thread_key] = None
            if p.by_brand is not None and not p.changed:
                voices.append((item_id,))
        _insert_many(c, "items", inserts)
        c.executemany(
            "INSERT INTO items_fts(rowid, title, text) VALUES (?, ?, ?)",
            [(r["id"], r["title"], r["text"]) for r in inserts if r["relevant"]],
        )
        for item_id, p in edits:
            self._update_item(item_id, p, now_s)
        c.executemany("INSERT OR IGNORE INTO item_keys(key, item_id) VALUES (?, ?)", key_rows)
        c.executemany(
            "INSERT INTO sightings(item_id, source, url, first_seen_at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET last_seen_at = excluded.last_seen_at",
            sighting_rows,
        )
        if voices:
            # An account added to `accounts:` later marks the posts seen again.
            c.executemany("UPDATE items SET by_brand = 1 WHERE id = ? AND by_brand = 0", voices)
            c.executemany(
                "UPDATE mentions SET by_brand = 1, intents = '[]' WHERE item_id = ? AND by_brand = 0",
                voices,
            )
        if seen_again:
            c.executemany(
                "UPDATE items SET last_seen_at = ?, "
                "sightings = (SELECT count(*) FROM sightings WHERE item_id = items.id) "
                "WHERE id = ?",
                [(now_s, item_id) for item_id in dict.fromkeys(seen_again)],
            )
        _insert_many(c, "mentions", mention_rows)
        c.executemany(
            "INSERT INTO mentions_fts(rowid, title, snippet) VALUES (?, ?, ?)",
            [(r["id"], r["title"], r["snippet"]) for r in mention_rows],
        )
        return SaveResult(new_items, updated, tuple(new_mentions), tuple(threads), tuple(new_ids))

    def _recheck_new(self, processed: Sequence[ProcessedItem]) -> Sequence[ProcessedItem]:
        """Items looked up as new before the write lock was taken may have been stored since by
        another writer (`listener run` and a `listener poll` of the same feed): those are one
        more sighting of the stored item, never a second copy of it."""
        keys = [k for p in processed if p.known is None for k in p.keys]
        if not keys:
            return processed
        now_known = self.lookup_keys(keys)
        if not now_known:
            return processed
        out: list[ProcessedItem] = []
        for p in processed:
            found = next((now_known[k] for k in p.keys if k in now_known), None)
            if p.known is None and found is not None:
                log.debug("%s: stored meanwhile by another writer", p.item.url)
                p = replace(p, known=found, changed=False, relevant=found.relevant, mentions=())
            out.append(p)
        return out

    def _item_values(self, p: ProcessedItem) -> dict[str, Any]:
        it = p.item
        return {
            "url": it.url,
            "title": it.title,
            "text": it.text if p.relevant else None,
            "author": it.author,
            "published_at": iso(it.published_at),
            "updated_at": iso(it.updated_at),
            "native_id": it.native_id,
            "thread_key": it.thread_key,
            "parent_key": it.parent_key,
            "is_reply": int(it.is_reply),
            "content_hash": p.content_hash,
            "fingerprint": p.fingerprint,
            "relevant": int(p.relevant),
            "lang": it.extra.get("lang") if p.relevant else None,
            "by_brand": int(p.by_brand is not None),
            "compound": p.score.compound if p.score else None,
            "label": self._item_label(p),
            "explanation": (
                json.dumps(list(p.score.explanation), ensure_ascii=False) if p.score else None
            ),
        }

    @staticmethod
    def _item_label(p: ProcessedItem) -> str | None:
        if p.mentions:
            return min(p.mentions, key=lambda m: m.score.compound).score.label
        return p.score.label if p.score else None

    def _update_item(self, item_id: int, p: ProcessedItem, now_s: str | None) -> None:
        values = self._item_values(p)
        values["last_seen_at"] = now_s
        sets = ",".join(f"{k} = ?" for k in values)
        self.conn.execute(f"UPDATE items SET {sets} WHERE id = ?", [*values.values(), item_id])

    def _mention_rows(
        self, item_id: int, p: ProcessedItem, kind: str, now_s: str | None
    ) -> list[tuple[dict[str, Any] | None, Mention]]:
        """An item's mentions as rows to insert; mentions already stored are updated in place
        (their row is None). Corrections stay as they were."""
        c = self.conn
        existing: dict[str, int] = {}
        if p.known is not None:
            existing = {
                brand: mid
                for mid, brand in c.execute(
                    "SELECT id, brand FROM mentions WHERE item_id = ?", (item_id,)
                )
            }
        out: list[tuple[dict[str, Any] | None, Mention]] = []
        for m in p.mentions:
            it = m.item
            row = {
                "item_id": item_id,
                "brand": m.brand,
                "product": m.product,
                "url": it.url,
                "title": thread_title(it) or self._stored_thread_title(it.thread_key),
                "source": it.source,
                "kind": kind,
                "author": it.author,
                "published_at": iso(it.published_at),
                "updated_at": now_s,
                "thread_key": it.thread_key,
                "terms": ", ".join(m.terms),
                "snippet": m.snippet,
                "compound": m.score.compound,
                "pos": m.score.pos,
                "neu": m.score.neu,
                "neg": m.score.neg,
                "auto_label": m.score.label,
                "item_compound": m.item_score.compound if m.item_score else None,
                "explanation": json.dumps(list(m.score.explanation), ensure_ascii=False),
                "lexicon_version": m.lexicon_version,
                "intents": json.dumps(list(m.score.intents)),
                "lang": it.extra.get("lang"),
                "by_brand": int(p.by_brand is not None),
            }
            if m.brand in existing:
                sets = ",".join(f"{k} = ?" for k in row)
                c.execute(
                    f"UPDATE mentions SET {sets}, label = coalesce(label_override, ?) WHERE id = ?",
                    [*row.values(), m.score.label, existing.pop(m.brand)],
                )
                out.append((None, m))
            else:
                row.update(first_seen_at=now_s, label=m.score.label)
                out.append((row, m))
        # An edit that no longer names a brand leaves its old mention: the brand was named once,
        # and a correction may hang on it.
        return out

    def set_label(
        self, mention_id: int, label: str | None, *, not_relevant: bool | None = None
    ) -> bool:
        row = self.conn.execute(
            "SELECT thread_key, item_id FROM mentions WHERE id = ?", (mention_id,)
        ).fetchone()
        if row is None:
            return False
        thread_key, item_id = row
        with self.transaction():
            if label is not None:
                self.conn.execute(
                    "UPDATE mentions SET label_override = ?, label = ? WHERE id = ?",
                    (label, label, mention_id),
                )
            if not_relevant is not None:
                self.conn.execute(
                    "UPDATE mentions SET not_relevant = ? WHERE id = ?",
                    (int(not_relevant), mention_id),
                )
            self.conn.execute(
                "UPDATE items SET label = (SELECT label FROM mentions WHERE item_id = :i "
                "AND not_relevant = 0 ORDER BY compound LIMIT 1) WHERE id = :i "
                "AND EXISTS (SELECT 1 FROM mentions WHERE item_id = :i AND not_relevant = 0)",
                {"i": item_id},
            )
            if thread_key:
                self.refresh_thread(thread_key)
        return True

    def mention(self, mention_id: int) -> dict[str, Any] | None:
        """A mention's row (`mentions`), None when there is no such mention."""
        cursor = self.conn.execute("SELECT * FROM mentions WHERE id = ?", (mention_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def clear_label(self, mention_id: int) -> bool:
        """Drop a user's corrections: the scorer's label applies again, and the mention counts."""
        row = self.conn.execute(
            "SELECT thread_key, item_id FROM mentions WHERE id = ?", (mention_id,)
        ).fetchone()
        if row is None:
            return False
        with self.transaction():
            self.conn.execute(
                "UPDATE mentions SET label_override = NULL, label = auto_label, not_relevant = 0 "
                "WHERE id = ?",
                (mention_id,),
            )
        return self.set_label(mention_id, None)

    # --- re-scoring (`listener rescore`) ------------------------------------------------------

    def stale_mentions(self, lexicon_version: str | None) -> int:
        """Mentions scored with another lexicon than `lexicon_version`."""
        (n,) = self.conn.execute(
            "SELECT count(*) FROM mentions WHERE lexicon_version IS NOT ?", (lexicon_version,)
        ).fetchone()
        return int(n)

    def relevant_texts(self) -> list[tuple[Any, ...]]:
        """(id, source, title, text, thread_key, url, author, lang) of every relevant item
        whose text is kept."""
        return self.conn.execute(
            "SELECT id, source, title, text, thread_key, url, author, lang FROM items "
            "WHERE relevant = 1 AND text IS NOT NULL"
        ).fetchall()

    def item_mentions(self, item_id: int) -> list[tuple[int, str, str, str | None, int]]:
        """(id, brand, label, label_override, by_brand) of an item's mentions."""
        return self.conn.execute(
            "SELECT id, brand, label, label_override, by_brand FROM mentions WHERE item_id = ?",
            (item_id,),
        ).fetchall()

    def rescore_mention(
        self,
        mention_id: int,
        score: Score,
        *,
        label: str,
        item_compound: float | None,
        lexicon_version: str | None,
        lang: str | None,
    ) -> None:
        """A mention's new score (`label`: the effective one, a correction kept as set)."""
        self.conn.execute(
            "UPDATE mentions SET compound = ?, pos = ?, neu = ?, neg = ?, auto_label = ?, "
            "label = ?, item_compound = ?, explanation = ?, lexicon_version = ?, "
            "intents = ?, lang = ? WHERE id = ?",
            (
                score.compound,
                score.pos,
                score.neu,
                score.neg,
                score.label,
                label,
                item_compound,
                json.dumps(list(score.explanation), ensure_ascii=False),
                lexicon_version,
                json.dumps(list(score.intents)),
                lang,
                mention_id,
            ),
        )

    def rescore_item(self, item_id: int, score: Score, lang: str | None) -> None:
        """An item's new score; its label is its worst relevant mention's, else the score's."""
        self.conn.execute(
            "UPDATE items SET compound = :compound, explanation = :explanation, lang = :lang, "
            "label = coalesce((SELECT label FROM mentions WHERE item_id = :id "
            "AND not_relevant = 0 ORDER BY compound LIMIT 1), :label) WHERE id = :id",
            {
                "compound": score.compound,
                "explanation": json.dumps(list(score.explanation), ensure_ascii=False),
                "label": score.label,
                "lang": lang,
                "id": item_id,
            },
        )

    def relevant_items(self) -> int:
        """How many stored items name a brand (or sit in a brand's thread)."""
        (n,) = self.conn.execute("SELECT count(*) FROM items WHERE relevant = 1").fetchone()
        return int(n)

    def counts(self) -> dict[str, list[tuple[Any, ...]]]:
        q = self.conn.execute
        return {
            "by_brand": q(
                "SELECT brand, count(*), sum(label='positive'), sum(label='neutral'), "
                "sum(label='negative'), sum(label='unscored') FROM mentions WHERE not_relevant = 0 "
                "GROUP BY brand ORDER BY count(*) DESC"
            ).fetchall(),
            "by_source": q(
                "SELECT source, count(*), sum(label='negative') FROM mentions WHERE not_relevant = 0 "
                "GROUP BY source ORDER BY count(*) DESC"
            ).fetchall(),
            "by_label": q(
                "SELECT label, count(*) FROM mentions WHERE not_relevant = 0 GROUP BY label "
                "ORDER BY count(*) DESC"
            ).fetchall(),
        }

    def apply_rules(
        self,
        item_id: int,
        p: ProcessedItem,
        kind: str,
        drop: Sequence[str],
        now: datetime,
    ) -> None:
        """`match --stored --apply` for one stored item: insert the mentions the rules now make
        (`p.mentions`, scored as a poll scores them) and mark the brands in `drop` not relevant
        (a user's corrections stay as set). Call inside `transaction()`."""
        now_s = iso(now)
        c = self.conn
        rows = [row for row, _ in self._mention_rows(item_id, p, kind, now_s) if row is not None]
        _insert_many(c, "mentions", rows)
        if drop:
            marks = ",".join("?" * len(drop))
            c.execute(
                f"UPDATE mentions SET not_relevant = 1 WHERE item_id = ? AND brand IN ({marks})",
                (item_id, *drop),
            )
        if rows and p.score is not None:
            c.execute(
                "UPDATE items SET relevant = 1, lang = coalesce(lang, ?), "
                "compound = coalesce(compound, ?), explanation = coalesce(explanation, ?) "
                "WHERE id = ?",
                (
                    p.item.extra.get("lang"),
                    p.score.compound,
                    json.dumps(list(p.score.explanation), ensure_ascii=False),
                    item_id,
                ),
            )
        c.execute(
            "UPDATE items SET label = (SELECT label FROM mentions WHERE item_id = :i "
            "AND not_relevant = 0 ORDER BY compound LIMIT 1) WHERE id = :i "
            "AND EXISTS (SELECT 1 FROM mentions WHERE item_id = :i AND not_relevant = 0)",
            {"i": item_id},
        )
        if p.item.thread_key:
            self._update_threads({p.item.thread_key: None}, [p], {}, now_s)

    def stored_items(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Items first seen since `since` (all when None), oldest first, with their stored
        mentions as `mentions`: {brand: not_relevant}. `text` is None where it was not kept (an
        item that named no brand when it was polled): only its title can be matched again."""
        rows = self.conn.execute(
            "SELECT i.id, i.source, i.url, i.title, i.text, i.author, i.first_seen_at, "
            "(SELECT json_group_object(m.brand, m.not_relevant) FROM mentions m "
            "WHERE m.item_id = i.id), i.lang, i.thread_key, i.published_at, i.is_reply, "
            "i.parent_key FROM items i WHERE i.first_seen_at >= ? ORDER BY i.id",
            (iso(since) if since else "",),
        )
        for item_id, source, url, title, text, author, seen, mentions, *more in rows:
            lang, thread_key, published, is_reply, parent_key = more
            yield {
                "lang": lang,
                "thread_key": thread_key or "",
                "published_at": parse_iso(published),
                "is_reply": bool(is_reply),
                "parent_key": parent_key,
                "id": item_id,
                "source": source,
                "url": url or "",
                "title": title or "",
                "text": text,
                "author": author,
                "first_seen_at": seen,
                "mentions": {b: bool(nr) for b, nr in json.loads(mentions or "{}").items()},
            }
