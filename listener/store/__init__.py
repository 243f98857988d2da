"""The SQLite mention database: the only place in listener that executes SQL.

The database is the state: per-source progress (validators, cursors, failures, next poll), every
item seen (deduplicated through `item_keys`), where each was seen (`sightings`), the mentions,
the threads with their sentiment aggregates, the fetch log and the alert outbox. WAL mode keeps
it readable by Datasette while a poll writes. Each source poll is saved in one transaction.

One module per table family, each a layer of `Store`:

- `schema`: migrations, oldest first, and opening a migrated connection;
- `core`: the connection and its transactions (`transaction`, `writing`, `grouped`);
- `sources`: sources' polling state, the fetch log and its retention, host budgets;
- `threads`: threads, their aggregates and triage, `thread_summary`;
- `items`: items, identity keys, sightings, mentions, corrections;
- `alerts`: the alerts table and the outbox.

Two writers on one database (a `listener poll` beside `listener run`): every write transaction
takes the write lock when it starts (`BEGIN IMMEDIATE`), so it never fails half-way because the
other process wrote first, and it never stays open across a network wait. Code on an event loop
waits for the lock with `Store.writing()`, which sleeps on the loop between short tries instead
of blocking it; after `patience_s` a write gives up with `DatabaseBusy`, which says so plainly.

Open it as a context manager: `with Store.open(path) as store: ...` closes it on the way out.
"""

from __future__ import annotations

from ..units import parse_iso
from .alerts import AlertsStore
from .core import (
    _LOOP_BACKOFF_MAX_S,
    _LOOP_TRY_MS,
    PATIENCE_ENV,
    WRITE_PATIENCE_S,
    Connection,
    DatabaseBusy,
    is_busy,
    iso,
    write_patience,
)
from .records import KnownItem, ProcessedItem, SaveResult
from .schema import MIGRATION_SET, MIGRATIONS, connect, migrate, open_connection
from .sources import PRUNE_BATCH
from .threads import (
    REOPEN_ACTOR,
    REOPEN_NOTE,
    ThreadPost,
    ThreadSummary,
    ThreadTally,
    thread_post,
    thread_summary,
)

__all__ = [
    "MIGRATIONS",
    "MIGRATION_SET",
    "PATIENCE_ENV",
    "PRUNE_BATCH",
    "REOPEN_ACTOR",
    "REOPEN_NOTE",
    "WRITE_PATIENCE_S",
    "_LOOP_BACKOFF_MAX_S",
    "_LOOP_TRY_MS",
    "Connection",
    "DatabaseBusy",
    "KnownItem",
    "ProcessedItem",
    "SaveResult",
    "Store",
    "ThreadPost",
    "ThreadSummary",
    "ThreadTally",
    "connect",
    "is_busy",
    "iso",
    "migrate",
    "open_connection",
    "parse_iso",
    "thread_post",
    "thread_summary",
    "write_patience",
]


class Store(AlertsStore):
    """All database reads and writes, over one connection: `with Store.open(path) as store:`."""
