"""The schema: migrations, oldest first, and opening a database migrated to the current one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .views import ensure_views

if TYPE_CHECKING:  # sqlite-utils is imported when a migration is pending (see `migrate`)
    import sqlite_utils

MIGRATION_SET = "listener"


# The schema's history, oldest first: sqlite-utils migrations, recorded in `_sqlite_migrations`.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def _migration(
    fn: Callable[[sqlite_utils.Database], None],
) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(fn)
    return fn


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
