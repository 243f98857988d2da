"""One connection and its transactions: the write lock taken up front (`BEGIN IMMEDIATE`),
savepoints when nested, grouped commits, and waiting for another writer on an event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..units import format_iso
from .schema import open_connection

if TYPE_CHECKING:
    import sqlite_utils

# The names the package has always used for `units.format_iso` / `units.parse_iso`.
iso = format_iso

log = logging.getLogger(__name__)

# The connection type, for code the store hands a connection to (Datasette hooks, pages).
Connection = sqlite3.Connection


def _json_list(text: str | None) -> list[Any]:
    """A stored JSON list (explanations, intents); [] when missing or not a list."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


# At most this many values in one `IN (...)`: SQLite's default limit on parameters is 999.
IN_CHUNK = 500


def _in_chunks(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """`values` in pieces for `... IN ({marks})`: (the piece, its "?,?,..." placeholders)."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start : start + IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


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


class StoreCore:
    """A database connection and its transactions; the table families build on it."""

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
    def open(cls, path: str | Path, *, patience_s: float | None = None) -> Self:
        """The database at `path`, created and migrated as needed: `with Store.open(p) as s:`."""
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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
    def transaction(self, *, durable: bool = False) -> Iterator[None]:
        """All of the block or none of it (a savepoint when nested). Inside `grouped()`, a
        savepoint in a shared transaction that commits soon after (see `grouped`); with
        `durable`, that shared transaction is committed as the block ends, for what must be on
        disk before the next step (an alert marked `sending` before it is sent).

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
                if durable:
                    self._commit()
                else:
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
        """In a grouped poll, after a source's save: commit once the group is `every_s` old
        (the saves of other sources that end before then join the same commit). On an event
        loop, a timer commits it then even if no other save comes, so the write lock is never
        held longer than that while the poll waits on a server. Off a loop, the next save past
        `every_s` commits, and leaving `grouped()` commits the rest."""
        if self._group_every is None:
            return
        age = time.monotonic() - self._group_started
        if age >= self._group_every:
            self._commit()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._group_commit_due:
            self._group_commit_due = True
            loop.call_later(self._group_every - age, self._commit_group)

    def _commit_group(self) -> None:
        self._group_commit_due = False
        if self._depth == 0 and self._group_every is not None and self.conn.in_transaction:
            self._commit()

    @contextmanager
    def grouped(self, every_s: float = 0.25) -> Iterator[None]:
        """Commit the transactions made in this block together: those that end within
        `every_s` of the first.

        For polls of many sources, one-off or a service's: a commit per source costs more than
        the source's own writes, and a commit writes every page it touched, so fewer, larger
        commits write the shared index pages once instead of once per source. Each source's
        writes stay all-or-nothing (a savepoint each). The write lock is held at most `every_s`
        at a time, fetches or not: another process gets it between. A crash loses at most the
        saves of those `every_s`, which the next poll fetches again (their state, such as the
        ETag, was not committed either). What must be committed before the next step, such as
        an alert marked `sending` before it is sent, uses `transaction(durable=True)`.
        """
        self._group_every = every_s
        try:
            yield
        finally:
            self._group_every = None
            self._group_commit_due = False
            if self.conn.in_transaction and self._depth == 0:
                self._commit()
