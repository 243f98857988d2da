"""The SQLite mention database: schema, migrations and the reads and writes the rest needs.

The database is the state: per-source progress (validators, cursors, failures, next poll), every
item seen (deduplicated through `item_keys`), where each was seen (`sightings`), the mentions,
the threads with their sentiment aggregates, the fetch log and the alert outbox. WAL mode keeps
it readable by Datasette while a poll writes. Each source poll is saved in one transaction.

Two writers on one database (a `listener poll` beside `listener run`): every write transaction
takes the write lock when it starts (`BEGIN IMMEDIATE`), so it never fails half-way because the
other process wrote first, and it never stays open across a network wait. Code on an event loop
waits for the lock with `Store.writing()`, which sleeps on the loop between short tries instead
of blocking it; after `patience_s` a write gives up with `DatabaseBusy`, which says so plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import THREAD_STATUSES, Item, Mention, Response, Score, Validators, thread_title
from .secrets import mask, mask_url
from .sources import SourceState
from .units import format_iso
from .units import parse_iso as parse_iso  # re-exported: its old home
from .views import ensure_views

if TYPE_CHECKING:  # sqlite-utils is imported when a migration is pending (see `migrate`)
    import sqlite_utils

# The names the package has always used for `units.format_iso` / `units.parse_iso`.
iso = format_iso

log = logging.getLogger(__name__)

MIGRATION_SET = "listener"
# The schema's history, oldest first: sqlite-utils migrations, recorded in `_sqlite_migrations`.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def _migration(
    fn: Callable[[sqlite_utils.Database], None],
) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(fn)
    return fn


# Who reopens a resolved conversation when a new negative post arrives, and what the history
# says about it (`thread_triage`).
REOPEN_ACTOR = "listener"
REOPEN_NOTE = "reopened: a new negative post"


def _json_list(text: str | None) -> list[Any]:
    """A stored JSON list (explanations, intents); [] when missing or not a list."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


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
    db.table("items").enable_fts(["title", "text"], create_triggers=True, tokenize="porter")
    db.table("mentions").enable_fts(["title", "snippet"], create_triggers=True, tokenize="porter")


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
def m008_source_notes(db: sqlite_utils.Database) -> None:
    # What the last poll that read a source noticed though it worked (a feed cut to its first
    # entries): shown by `status` beside the last error.
    db.execute("ALTER TABLE sources ADD COLUMN last_note TEXT")


@_migration
def m009_fetches_by_time(db: sqlite_utils.Database) -> None:
    # The fetch log is trimmed by age (see `Store.prune_fetches`): without this index, finding
    # the old rows reads the whole table.
    db.execute("CREATE INDEX IF NOT EXISTS fetches_started ON fetches(started_at)")


@_migration
def m010_host_budgets(db: sqlite_utils.Database) -> None:
    # Request budgets per host, shared by every source asking it (see `sources._api`); the
    # rate-limit state the host reported, and how far behind the budget is, for `status`.
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS host_budgets (
            host TEXT PRIMARY KEY,
            per_minute REAL,
            tokens REAL,
            updated_at TEXT,
            remaining REAL,                   -- x-ratelimit-remaining, as last reported
            blocked_until TEXT,               -- no requests before (rate limit, 429 backoff)
            blocked_why TEXT,
            throttled INTEGER NOT NULL DEFAULT 0,  -- 429s in a row
            window_start TEXT,
            spent INTEGER NOT NULL DEFAULT 0,      -- requests since window_start (an hour)
            deferred INTEGER NOT NULL DEFAULT 0,   -- thread reads and polls put off
            deferred_this_round INTEGER NOT NULL DEFAULT 0,
            behind_since TEXT                 -- the oldest work put off and not yet caught up
        );
        """
    )


@_migration
def m011_mention_intents(db: sqlite_utils.Database) -> None:
    # What the author means toward the brand: a JSON list, most important first, from churn,
    # complaint, request, question, praise (listener.intent). NULL for mentions scored before.
    db.execute("ALTER TABLE mentions ADD COLUMN intents TEXT")


@_migration
def m012_conversations(db: sqlite_utils.Database) -> None:
    # Conversations a team acts on (DESIGN.md "Conversations"): a post by one of the brand's
    # `accounts` is its own voice, and marks the thread answered; the team's triage state and
    # its history.
    db.executescript(
        """
        ALTER TABLE mentions ADD COLUMN by_brand INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE threads ADD COLUMN answered_at TEXT;       -- the brand's first reply
        ALTER TABLE threads ADD COLUMN first_negative_at TEXT; -- the first negative customer post
        ALTER TABLE threads ADD COLUMN status TEXT NOT NULL DEFAULT 'new';
        ALTER TABLE threads ADD COLUMN status_at TEXT;
        CREATE TABLE IF NOT EXISTS thread_triage (
            id INTEGER PRIMARY KEY,
            thread_key TEXT NOT NULL,
            status TEXT NOT NULL,          -- new | acknowledged | resolved | ignored
            note TEXT,
            actor TEXT,                    -- who set it: a CLI user, a signed-in serve actor, or
                                           -- "listener" when a new post reopened the thread
            at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS thread_triage_thread ON thread_triage(thread_key, at);
        CREATE INDEX IF NOT EXISTS threads_status ON threads(status);
        """
    )


@_migration
def m013_language(db: sqlite_utils.Database) -> None:
    # The language an item is written in (the source's, else detected; NULL: not looked at or
    # too short to tell), on items and on their mentions for filtering. Mentions in a language
    # the scorer does not read are stored with label 'unscored' and compound 0.
    db.executescript(
        """
        ALTER TABLE items ADD COLUMN lang TEXT;
        ALTER TABLE mentions ADD COLUMN lang TEXT;
        """
    )


@_migration
def m014_brand_voice(db: sqlite_utils.Database) -> None:
    # A post by one of a brand's `accounts:` (DESIGN.md "Conversations"), also one that only
    # sits in the brand's thread and has no mention row: kept out of the thread's customer
    # sentiment, and what marks the thread answered.
    db.execute("ALTER TABLE items ADD COLUMN by_brand INTEGER NOT NULL DEFAULT 0")


@_migration
def m015_speed(db: sqlite_utils.Database) -> None:
    # Indexes nothing reads, each written for every stored row: item_keys is only ever looked up
    # by key (its primary key), never by item; mentions.product only feeds a facet, which counts
    # every row whatever the index. Two B-tree inserts fewer per identity key and per mention.
    db.executescript(
        """
        DROP INDEX IF EXISTS item_keys_item;
        DROP INDEX IF EXISTS mentions_product;
        """
    )


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
    # The brand whose own account wrote it (`brands[].accounts`), None for anyone else.
    by_brand: str | None = None


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


# How long a write waits for another process's write lock before giving up (`DatabaseBusy`).
# Another listener never holds it for long (one source's save), so this is only reached when
# something else keeps a write transaction open: a sqlite3 shell, a stuck process.
WRITE_PATIENCE_S = 30.0
PATIENCE_ENV = "LISTENER_WRITE_PATIENCE"
# `Store.writing()` on an event loop: each try may block the loop this long inside SQLite's own
# busy handler; between tries the loop runs, sleeping up to `_LOOP_BACKOFF_MAX_S`.
_LOOP_TRY_MS = 10
_LOOP_BACKOFF_MAX_S = 0.1


# Fetch-log rows deleted per transaction when trimming (see `Store.prune_fetches`).
PRUNE_BATCH = 2000


class DatabaseBusy(Exception):
    """Another process held the database's write lock for longer than this one would wait."""

    def __init__(self, path: str | Path | None, waited_s: float) -> None:
        self.path = path
        self.waited_s = waited_s
        super().__init__(
            f"the database{f' {path}' if path else ''} is busy: another process kept it locked "
            f"for writing for {waited_s:.0f} s"
        )


def is_busy(exc: BaseException) -> bool:
    """An SQLite 'database is locked' (SQLITE_BUSY / SQLITE_LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def write_patience() -> float:
    """`WRITE_PATIENCE_S`, or the seconds in $LISTENER_WRITE_PATIENCE."""
    text = os.environ.get(PATIENCE_ENV, "").strip()
    try:
        value = float(text) if text else WRITE_PATIENCE_S
    except ValueError:
        log.warning(
            "%s=%r is not a number of seconds; using %s", PATIENCE_ENV, text, WRITE_PATIENCE_S
        )
        return WRITE_PATIENCE_S
    return value if 0 <= value < 86400 else WRITE_PATIENCE_S


class Store:
    """All database reads and writes, over one connection."""

    def __init__(
        self, db: sqlite_utils.Database | sqlite3.Connection, *, patience_s: float | None = None
    ) -> None:
        if isinstance(db, sqlite3.Connection):
            self.conn, self._db = db, None
        else:
            self.conn, self._db = db.conn, db
        self._depth = 0
        # Values from the environment (`Config.secrets`): never written to the database.
        self.secrets: frozenset[str] = frozenset()
        self._group_every: float | None = None
        self._group_started = 0.0
        self._group_commit_due = False
        self.patience_s = write_patience() if patience_s is None else patience_s
        self._busy_ms = int(self.patience_s * 1000)
        self.conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        row = self.conn.execute("PRAGMA database_list").fetchone()
        # The database file (None for an in-memory database).
        self.path: Path | None = Path(row[2]) if row and row[2] else None

    @classmethod
    def open(cls, path: str | Path, *, patience_s: float | None = None) -> Store:
        return cls(open_connection(path), patience_s=patience_s)

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a sqlite-utils Database, for the less travelled paths."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def _begin(self) -> None:
        """BEGIN IMMEDIATE: the write lock now, waiting up to `patience_s` for another writer.

        Never a plain (deferred) BEGIN: a transaction that reads first and writes later fails
        at its first write, without waiting, if another process committed in between."""
        started = time.monotonic()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise DatabaseBusy(self.path, time.monotonic() - started) from None
            raise
        self._group_started = time.monotonic()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All of the block or none of it (a savepoint when nested). Inside `grouped()`, a
        savepoint in a shared transaction that commits soon after (see `grouped`).

        The block must not wait on the network: the write lock is held throughout. On an event
        loop, enter it through `writing()`, which waits for the lock without blocking the loop."""
        c = self.conn
        if self._group_every is not None and not c.in_transaction:
            self._begin()
        outermost = not c.in_transaction
        savepoint = None if outermost else f"listener_{self._depth + 1}"
        if savepoint:
            c.execute(f"SAVEPOINT {savepoint}")
        else:
            self._begin()
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
                self._commit()
        finally:
            self._depth -= 1
            if self._depth == 0 and self._group_every is not None and c.in_transaction:
                self._end_group_soon()

    def _commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """`transaction()` for code on an event loop: while another process holds the write lock,
        the loop goes on (other polls, signals, alerts) and this waits its turn, for up to
        `patience_s`, then raises `DatabaseBusy`. The block itself must not await."""
        c = self.conn
        began = False
        if not c.in_transaction:
            await self._acquire()
            began = self._group_every is None  # in a group, the group's commit ends it
        try:
            with self.transaction():
                yield
        except BaseException:
            if began and c.in_transaction:
                c.execute("ROLLBACK")
            raise
        if began and c.in_transaction:
            self._commit()

    async def _acquire(self) -> None:
        """BEGIN IMMEDIATE in short tries, the loop running between them."""
        c = self.conn
        started = time.monotonic()
        delay = 0.002
        c.execute(f"PRAGMA busy_timeout = {_LOOP_TRY_MS}")
        try:
            while True:
                try:
                    c.execute("BEGIN IMMEDIATE")
                    self._group_started = time.monotonic()
                    return
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                waited = time.monotonic() - started
                if waited >= self.patience_s:
                    raise DatabaseBusy(self.path, waited)
                log.debug("database locked by another process; waiting (%.1f s so far)", waited)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LOOP_BACKOFF_MAX_S)
        finally:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed while waiting
                c.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    def _end_group_soon(self) -> None:
        """In a grouped poll, after a source's save: commit once the event loop has run what is
        ready now (other sources' saves join the same commit), so the lock is never held while
        the poll waits on a server. Without a running loop, commit every `every_s`."""
        if self._group_every is None:
            return
        if time.monotonic() - self._group_started >= self._group_every:
            self._commit()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._group_commit_due:
            self._group_commit_due = True
            loop.call_soon(self._commit_group)

    def _commit_group(self) -> None:
        self._group_commit_due = False
        if self._depth == 0 and self._group_every is not None and self.conn.in_transaction:
            self._commit()

    @contextmanager
    def grouped(self, every_s: float = 0.5) -> Iterator[None]:
        """Commit the transactions made in this block together: those that end within one turn
        of the event loop (or, off a loop, within `every_s`).

        For a one-off poll of many sources: a commit per source costs more than the source's
        own writes. Each source's writes stay all-or-nothing (a savepoint each). The shared
        transaction is committed as soon as the loop is about to wait again, never held across
        a fetch: another process (`listener run`) gets the lock between. A crash loses at most
        the saves of that turn, which the next poll fetches again (their state, such as the
        ETag, was not committed either). Never used by the service, which delivers alerts and
        so must commit them first.
        """
        self._group_every = every_s
        try:
            yield
        finally:
            self._group_every = None
            self._group_commit_due = False
            if self.conn.in_transaction and self._depth == 0:
                self._commit()

    # --- sources ---------------------------------------------------------------------------

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
                "lexicon_version": m.item.extra.get("lexicon_version"),
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
        `accounts:` (`items.by_brand`) is the brand's reply, and marks the thread answered
        (`answered_at`: the earliest such reply ever seen, kept).
        """
        for start in range(0, len(keys), 500):
            self.conn.execute(
                """
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
                  SELECT k.value AS key,
                         count(i.id) AS posts,
                         coalesce(sum(i.label = 'negative' AND i.by_brand = 0), 0)
                           AS negative_posts,
                         round(avg(CASE WHEN i.by_brand = 0 THEN i.compound END), 4)
                           AS mean_compound,
                         min(CASE WHEN i.by_brand = 0 THEN i.compound END) AS worst_compound,
                         min(CASE WHEN i.by_brand = 0 AND i.label = 'negative'
                             THEN coalesce(i.published_at, i.first_seen_at) END)
                           AS first_negative,
                         min(CASE WHEN i.by_brand = 1
                             THEN coalesce(i.published_at, i.first_seen_at) END) AS answered,
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
                    f"AND brands IS NOT NULL AND key IN ({','.join('?' * len(chunk))}) "
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

    # --- retention -------------------------------------------------------------------------

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

    # --- triage ----------------------------------------------------------------------------

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
            post["by_brand"] = any(m["by_brand"] for m in mentions)
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

    def source_kinds(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, kind FROM sources"))

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


# --- conversations, as people are told about them ---------------------------------------------


@dataclass(frozen=True)
class ThreadPost:
    """One customer post of a conversation, with the score every view shows for it."""

    item_id: int
    text: str  # what the customer wrote (the post's text; its title only when it has none)
    compound: float  # the post's own compound: `items.compound`, as in the threads views
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
_POST_COLUMNS = """
    i.id, coalesce(nullif(trim(i.text), ''), i.title, ''), i.compound,
    coalesce((SELECT s.url FROM sightings s WHERE s.item_id = i.id AND s.url LIKE '%#%'
              ORDER BY s.first_seen_at LIMIT 1), i.url),
    i.author, i.published_at, i.explanation,
    (SELECT m.intents FROM mentions m WHERE m.item_id = i.id AND m.brand = ?)
"""
_BY_BRAND = "EXISTS (SELECT 1 FROM mentions b WHERE b.item_id = i.id AND b.by_brand = 1)"
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
               min(CASE WHEN NOT {_BY_BRAND} AND i.label = 'negative'
                        THEN coalesce(i.published_at, i.first_seen_at) END),
               coalesce(sum({_BY_BRAND}), 0),
               min(CASE WHEN {_BY_BRAND} THEN coalesce(i.published_at, i.first_seen_at) END)
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
          AND i.label = 'negative' AND NOT {_EXCLUDED} AND NOT {_BY_BRAND}
        ORDER BY i.compound, i.id LIMIT ?
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
