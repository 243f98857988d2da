"""The SQLite mention database: schema, migrations and the reads and writes the rest needs.

The database is the state: per-source progress (validators, cursors, failures, next poll), every
item seen (deduplicated through `item_keys`), where each was seen (`sightings`), the mentions,
the threads with their sentiment aggregates, the fetch log and the alert outbox. WAL mode keeps
it readable by Datasette while a poll writes. Each source poll is saved in one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import Item, Mention, Response, Score, Validators, thread_title
from .sources import SourceState
from .views import ensure_views

if TYPE_CHECKING:  # sqlite-utils is imported when a migration is pending (see `migrate`)
    import sqlite_utils

log = logging.getLogger(__name__)

MIGRATION_SET = "listener"
# The schema's history, oldest first: sqlite-utils migrations, recorded in `_sqlite_migrations`.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def _migration(
    fn: Callable[[sqlite_utils.Database], None],
) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(fn)
    return fn


def iso(dt: datetime | None) -> str | None:
    """UTC ISO 8601 text, second precision, as stored everywhere."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@_migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            url TEXT,
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            cursor TEXT,                      -- JSON: kind-specific resume point
            last_attempt_at TEXT,
            last_success_at TEXT,
            last_status INTEGER,
            last_error TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_poll_at TEXT,
            items_seen INTEGER NOT NULL DEFAULT 0,
            mentions_found INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE fetches (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL REFERENCES sources(name),
            url TEXT,
            started_at TEXT NOT NULL,
            status INTEGER,
            duration_ms REAL,
            bytes INTEGER,
            attempts INTEGER,
            items INTEGER,
            new_items INTEGER,
            error TEXT
        );
        CREATE INDEX fetches_source_started ON fetches(source, started_at);

        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            url TEXT,
            title TEXT,
            text TEXT,                        -- kept for items that mention a brand or sit in a brand thread
            author TEXT,
            published_at TEXT,
            updated_at TEXT,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            source TEXT NOT NULL,             -- where it was first seen
            native_id TEXT,
            thread_key TEXT,
            parent_key TEXT,
            is_reply INTEGER NOT NULL DEFAULT 0,
            content_hash TEXT NOT NULL,
            fingerprint TEXT,
            relevant INTEGER NOT NULL DEFAULT 0,
            compound REAL,                    -- the whole item's VADER compound (relevant items)
            label TEXT,
            sightings INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX items_thread ON items(thread_key);
        CREATE INDEX items_published ON items(published_at);

        -- Every identity an item is known by: id:<source>:<native id>, url:<identity>, fp:<hash>.
        CREATE TABLE item_keys (
            key TEXT PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items(id)
        ) WITHOUT ROWID;
        CREATE INDEX item_keys_item ON item_keys(item_id);

        CREATE TABLE sightings (
            item_id INTEGER NOT NULL REFERENCES items(id),
            source TEXT NOT NULL,
            url TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            PRIMARY KEY (item_id, source, url)
        ) WITHOUT ROWID;

        CREATE TABLE mentions (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items(id),
            brand TEXT NOT NULL,
            product TEXT,
            url TEXT,
            title TEXT,
            source TEXT NOT NULL,
            kind TEXT,
            author TEXT,
            published_at TEXT,
            first_seen_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            thread_key TEXT,
            terms TEXT,
            snippet TEXT,
            compound REAL NOT NULL,
            pos REAL,
            neu REAL,
            neg REAL,
            label TEXT NOT NULL,              -- what alerts and views use: the correction if any
            auto_label TEXT NOT NULL,         -- what the scorer said
            label_override TEXT,
            not_relevant INTEGER NOT NULL DEFAULT 0,
            item_compound REAL,
            explanation TEXT,                 -- JSON: the words and rules behind the score
            lexicon_version TEXT,
            UNIQUE (item_id, brand)
        );
        CREATE INDEX mentions_brand ON mentions(brand, published_at);
        CREATE INDEX mentions_label ON mentions(label, published_at);
        CREATE INDEX mentions_source ON mentions(source);
        CREATE INDEX mentions_published ON mentions(published_at);
        CREATE INDEX mentions_first_seen ON mentions(first_seen_at);
        CREATE INDEX mentions_thread ON mentions(thread_key);
        CREATE INDEX mentions_product ON mentions(product);

        CREATE TABLE threads (
            key TEXT PRIMARY KEY,
            title TEXT,
            url TEXT,
            source TEXT,
            brands TEXT,                      -- comma-separated brands named in the thread
            replies_url TEXT,
            posts INTEGER NOT NULL DEFAULT 0,
            negative_posts INTEGER NOT NULL DEFAULT 0,
            mean_compound REAL,
            worst_compound REAL,
            first_seen_at TEXT,
            last_seen_at TEXT,
            last_followed_at TEXT
        );
        CREATE INDEX threads_last_seen ON threads(last_seen_at);
        """
    )
    db["items"].enable_fts(["title", "text"], create_triggers=True, tokenize="porter")
    db["mentions"].enable_fts(["title", "snippet"], create_triggers=True, tokenize="porter")


@_migration
def m002_alerts(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- One row per alert that fired: a thread turning negative (again, at a higher level),
        -- a very negative mention, a spike, a failing source. `key` makes firing idempotent.
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,          -- rule:subject:level
            created_at TEXT NOT NULL,
            rule TEXT NOT NULL,
            level INTEGER NOT NULL,
            brand TEXT,
            subject TEXT NOT NULL,             -- thread key, mention id, brand or source
            thread_key TEXT,
            title TEXT,
            url TEXT,
            why TEXT,
            payload TEXT NOT NULL              -- JSON AlertMessage, rendered the same on every retry
        );
        CREATE INDEX alerts_rule_subject ON alerts(rule, subject, created_at);
        CREATE INDEX alerts_created ON alerts(created_at);

        -- One row per (alert, channel): delivery state, retried with backoff until sent.
        CREATE TABLE outbox (
            alert_id INTEGER NOT NULL REFERENCES alerts(id),
            channel TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            sent_at TEXT,
            last_error TEXT,
            PRIMARY KEY (alert_id, channel)
        ) WITHOUT ROWID;
        CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
        """
    )


@_migration
def m003_item_explanation(db: sqlite_utils.Database) -> None:
    # Replies kept as thread context have no mention row: their own score is explained here.
    db.execute("ALTER TABLE items ADD COLUMN explanation TEXT")


@_migration
def m004_followable_threads(db: sqlite_utils.Database) -> None:
    # Every poll asks which of its source's conversations to re-read: only a few threads have a
    # replies URL, so a partial index keeps that question cheap however many threads there are.
    db.execute(
        "CREATE INDEX threads_followable ON threads(source, last_seen_at) "
        "WHERE replies_url IS NOT NULL AND brands IS NOT NULL"
    )


@_migration
def m005_index_relevant_items_only(db: sqlite_utils.Database) -> None:
    # Full-text search is for what listener found: items that name a brand or sit in a brand
    # thread. The rest are kept only to be recognised, and indexing their titles on every insert
    # (and re-indexing on every `last_seen_at` touch) cost more than the rest of their save.
    db.executescript(
        """
        DROP TRIGGER IF EXISTS items_ai;
        DROP TRIGGER IF EXISTS items_ad;
        DROP TRIGGER IF EXISTS items_au;
        CREATE TRIGGER IF NOT EXISTS items_ai AFTER INSERT ON items WHEN new.relevant = 1 BEGIN
          INSERT INTO items_fts(rowid, title, text) VALUES (new.rowid, new.title, new.text);
        END;
        CREATE TRIGGER IF NOT EXISTS items_ad AFTER DELETE ON items WHEN old.relevant = 1 BEGIN
          INSERT INTO items_fts(items_fts, rowid, title, text)
            VALUES ('delete', old.rowid, old.title, old.text);
        END;
        CREATE TRIGGER IF NOT EXISTS items_au AFTER UPDATE OF title, text, relevant ON items BEGIN
          INSERT INTO items_fts(items_fts, rowid, title, text)
            SELECT 'delete', old.rowid, old.title, old.text WHERE old.relevant = 1;
          INSERT INTO items_fts(rowid, title, text)
            SELECT new.rowid, new.title, new.text WHERE new.relevant = 1;
        END;
        INSERT INTO items_fts(items_fts) VALUES ('delete-all');
        INSERT INTO items_fts(rowid, title, text) SELECT id, title, text FROM items WHERE relevant = 1;
        """
    )


@_migration
def m006_sightings_by_source(db: sqlite_utils.Database) -> None:
    # What a source has shown recently: read before each big poll (see Store.seen_hashes).
    db.execute("CREATE INDEX IF NOT EXISTS sightings_source ON sightings(source, last_seen_at)")


@_migration
def m007_fts_rows_written_in_batches(db: sqlite_utils.Database) -> None:
    # FTS5 rows added by an AFTER INSERT trigger cost four times what the same rows cost in one
    # batched INSERT, so new rows are indexed by `Store.save_poll` itself. Edits and deletes, which
    # are rare, keep their triggers (an edit re-indexes only when the indexed text changes).
    db.executescript(
        """
        DROP TRIGGER IF EXISTS items_ai;
        DROP TRIGGER IF EXISTS mentions_ai;
        DROP TRIGGER IF EXISTS mentions_au;
        CREATE TRIGGER IF NOT EXISTS mentions_au AFTER UPDATE OF title, snippet ON mentions BEGIN
          INSERT INTO mentions_fts(mentions_fts, rowid, title, snippet)
            VALUES ('delete', old.rowid, old.title, old.snippet);
          INSERT INTO mentions_fts(rowid, title, snippet) VALUES (new.rowid, new.title, new.snippet);
        END;
        """
    )


@_migration
def m008_mention_intents(db: sqlite_utils.Database) -> None:
    # What the author means toward the brand: a JSON list, most important first, from churn,
    # complaint, request, question, praise (listener.intent). NULL for mentions scored before.
    db.execute("ALTER TABLE mentions ADD COLUMN intents TEXT")


def open_connection(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the database, in WAL mode, migrated to the current schema."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path),
        timeout=30,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=1024,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # A poll commits once per source; identity keys land all over their index, so each commit
    # writes many pages to the WAL. Checkpointing less often copies each page once, not once per
    # commit; a bigger page cache keeps the indexes' hot pages in memory.
    conn.execute("PRAGMA wal_autocheckpoint=10000")
    conn.execute("PRAGMA cache_size=-32000")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn)
    ensure_views(conn)
    return conn


def connect(path: str | Path) -> sqlite_utils.Database:
    """`open_connection` as a sqlite-utils Database."""
    import sqlite_utils

    return sqlite_utils.Database(open_connection(path))


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the pending migrations. sqlite-utils is imported only when there is one: a process
    that opens an up-to-date database (every poll but the first) does not pay for importing it."""
    try:
        applied = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,)
            )
        }
    except sqlite3.OperationalError:  # no migrations table yet: a new database
        applied = set()
    if all(fn.__name__ in applied for fn in MIGRATIONS):
        return
    import sqlite_utils
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)
    for fn in MIGRATIONS:
        migrations()(fn)
    migrations.apply(sqlite_utils.Database(conn))


@dataclass(frozen=True)
class KnownItem:
    item_id: int
    content_hash: str
    source: str
    relevant: bool


@dataclass(frozen=True)
class ProcessedItem:
    """An item after dedupe lookup, matching and scoring, ready to save."""

    item: Item
    keys: tuple[str, ...]
    content_hash: str
    fingerprint: str | None
    known: KnownItem | None  # the stored item it is (None: new)
    changed: bool  # new, or edited since stored
    relevant: bool  # names a brand, or sits in a brand thread
    score: Score | None  # the whole item's score (relevant items)
    mentions: tuple[Mention, ...]


@dataclass(frozen=True)
class SaveResult:
    new_items: int
    updated_items: int
    new_mentions: tuple[Mention, ...]
    threads_touched: tuple[str, ...]
    new_mention_ids: tuple[int, ...] = ()


def _insert_many(conn: sqlite3.Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    conn.executemany(
        f"INSERT INTO {table}({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
        [[row[k] for k in cols] for row in rows],
    )


class Store:
    """All database reads and writes, over one connection."""

    def __init__(self, db: sqlite_utils.Database | sqlite3.Connection) -> None:
        if isinstance(db, sqlite3.Connection):
            self.conn, self._db = db, None
        else:
            self.conn, self._db = db.conn, db
        self._depth = 0
        self._group_every: float | None = None
        self._group_started = 0.0

    @classmethod
    def open(cls, path: str | Path) -> Store:
        return cls(open_connection(path))

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a sqlite-utils Database, for the less travelled paths."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All of the block or none of it (a savepoint when nested). Inside `grouped()`, a
        savepoint in a shared transaction that commits every so often."""
        c = self.conn
        if self._group_every is not None and not c.in_transaction:
            c.execute("BEGIN")
            self._group_started = time.monotonic()
        savepoint = f"listener_{self._depth + 1}" if c.in_transaction else None
        c.execute(f"SAVEPOINT {savepoint}" if savepoint else "BEGIN")
        self._depth += 1
        try:
            yield
        except BaseException:
            # An error can already have ended the transaction (a RAISE(ROLLBACK) trigger).
            if c.in_transaction:
                c.execute(f"ROLLBACK TO {savepoint}" if savepoint else "ROLLBACK")
                if savepoint:
                    c.execute(f"RELEASE {savepoint}")
            raise
        else:
            if savepoint:
                c.execute(f"RELEASE {savepoint}")
            else:
                try:
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
        finally:
            self._depth -= 1
        if (
            self._depth == 0
            and self._group_every is not None
            and c.in_transaction
            and time.monotonic() - self._group_started >= self._group_every
        ):
            c.execute("COMMIT")

    @contextmanager
    def grouped(self, every_s: float = 0.5) -> Iterator[None]:
        """Commit the transactions made in this block together, at most every `every_s`.

        For a one-off poll of many sources: a commit per source costs more than the source's
        own writes. Each source's writes stay all-or-nothing (a savepoint each); a crash loses at
        most the last `every_s` of work, which the next poll fetches again (its state, such as
        the ETag, was not committed either). Never used by the service, which delivers alerts
        and so must commit them first.
        """
        self._group_every = every_s
        try:
            yield
        finally:
            self._group_every = None
            if self.conn.in_transaction and self._depth == 0:
                self.conn.execute("COMMIT")

    # --- sources ---------------------------------------------------------------------------

    def ensure_sources(self, specs: Iterable[Any]) -> None:
        with self.transaction():
            for spec in specs:
                self.conn.execute(
                    "INSERT INTO sources(name, kind, url) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, url = excluded.url",
                    (spec.name, spec.kind, spec.url),
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

    # --- items -----------------------------------------------------------------------------

    def lookup_keys(self, keys: Sequence[str]) -> dict[str, KnownItem]:
        """Which of these identity keys belong to stored items."""
        found: dict[str, KnownItem] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
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

    def brand_threads(self, keys: Iterable[str]) -> set[str]:
        """Which of these thread keys are conversations known to be about a brand."""
        keys = list(dict.fromkeys(k for k in keys if k))
        out: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                k
                for (k,) in self.conn.execute(
                    f"SELECT key FROM threads WHERE key IN ({marks}) AND brands IS NOT NULL", chunk
                )
            )
        return out

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
    ) -> SaveResult:
        """Everything one source poll learnt, in one transaction.

        Rows are written in batches (`executemany`); new items and mentions get their ids here,
        which is safe because the database has one writer and this runs in its transaction.
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
                        response.url,
                        now_s,
                        response.status,
                        round(response.duration_ms, 1),
                        len(response.body),
                        response.attempts,
                        len(processed),
                        new_items,
                        response.error,
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
                    error=error,
                    status=responses[-1].status if responses else None,
                    validators=validators,
                    body_hash=body_hash,
                    cursor=cursor,
                    next_poll_at=iso(next_poll_at),
                    items=new_items,
                    mentions=len(saved.new_mentions),
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
        (next_item_id,) = c.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()
        (next_mention_id,) = c.execute("SELECT coalesce(max(id), 0) + 1 FROM mentions").fetchone()
        batch_keys: dict[str, int] = {}
        inserts: list[dict[str, Any]] = []
        edits: list[tuple[int, ProcessedItem]] = []
        seen_again: list[int] = []
        key_rows: list[tuple[str, int]] = []
        sighting_rows: list[tuple[Any, ...]] = []
        mention_rows: list[dict[str, Any]] = []
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
                "lexicon_version": m.item.extra.get("lexicon_version"),
                "intents": json.dumps(list(m.score.intents)),
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

    def refresh_thread(self, key: str) -> None:
        self.refresh_threads([key])

    def refresh_threads(self, keys: Sequence[str]) -> None:
        """Recompute threads' aggregates from their stored items and (corrected) mention labels."""
        for start in range(0, len(keys), 500):
            self.conn.execute(
                """
                UPDATE threads SET
                  posts = agg.posts, negative_posts = agg.negative_posts,
                  mean_compound = agg.mean_compound, worst_compound = agg.worst_compound,
                  first_seen_at = coalesce(agg.first_seen, threads.first_seen_at),
                  last_seen_at = agg.last_seen, brands = agg.brands
                FROM (
                  SELECT k.value AS key,
                         count(i.id) AS posts,
                         coalesce(sum(i.label = 'negative'), 0) AS negative_posts,
                         round(avg(i.compound), 4) AS mean_compound,
                         min(i.compound) AS worst_compound,
                         min(i.first_seen_at) AS first_seen,
                         max(i.first_seen_at) AS last_seen,
                         (SELECT group_concat(DISTINCT m.brand) FROM mentions m
                           WHERE m.thread_key = k.value AND m.not_relevant = 0) AS brands
                  FROM json_each(?) AS k
                  LEFT JOIN items i ON i.thread_key = k.value AND i.relevant = 1
                    AND i.compound IS NOT NULL
                    AND NOT EXISTS (
                      SELECT 1 FROM mentions x WHERE x.item_id = i.id AND x.not_relevant = 1
                    )
                  GROUP BY k.value
                ) AS agg
                WHERE threads.key = agg.key
                """,
                (json.dumps(list(keys[start : start + 500])),),
            )

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
                "name": name,
            },
        )

    def followable_threads(
        self, source: str, touched: Sequence[str], since: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """Brand threads with a replies URL: those this poll touched, and the source's recent ones."""
        found: dict[str, str] = {}
        for start in range(0, len(touched), 500):
            chunk = list(touched[start : start + 500])
            found.update(
                self.conn.execute(
                    "SELECT key, replies_url FROM threads WHERE replies_url IS NOT NULL "
                    f"AND brands IS NOT NULL AND key IN ({','.join('?' * len(chunk))})",
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

    # --- corrections -----------------------------------------------------------------------

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

    # --- reads -----------------------------------------------------------------------------

    def counts(self) -> dict[str, list[tuple[Any, ...]]]:
        q = self.conn.execute
        return {
            "by_brand": q(
                "SELECT brand, count(*), sum(label='positive'), sum(label='neutral'), "
                "sum(label='negative') FROM mentions WHERE not_relevant = 0 "
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
