"""Creating the declared views (`listener.views.VIEWS`) on a connection: the SQL that keeps the
database's views as declared, run after the migrations on every connect."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Protocol

from ..views import VIEW_REQUIRES, VIEWS

log = logging.getLogger(__name__)


class _HasConn(Protocol):
    conn: sqlite3.Connection


def _conn(db: _HasConn | sqlite3.Connection) -> sqlite3.Connection:
    """The sqlite3 connection of a sqlite_utils Database (or the connection itself)."""
    return db if isinstance(db, sqlite3.Connection) else db.conn


def existing_tables(conn: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
        )
    }


def _normalise(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _create_sql(name: str, sql: str) -> str:
    return f"CREATE VIEW {name} AS {sql.strip()}"


def ensure_views(
    db: _HasConn | sqlite3.Connection,
    views: Mapping[str, str] = VIEWS,
    requires: Mapping[str, tuple[str, ...]] = VIEW_REQUIRES,
) -> list[str]:
    """Create or update the views; return the names (re)created. Idempotent, and writes nothing
    when every view is already as declared, so calling it on every connect is cheap."""
    conn = _conn(db)
    current = {
        name: sql
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
    }
    tables = existing_tables(conn)
    changed: list[str] = []
    todo: list[tuple[str, str | None]] = []
    for name, sql in views.items():
        wanted = _create_sql(name, sql)
        if not set(requires.get(name, ())) <= tables:
            if name in current:
                todo.append((name, None))  # its table went away: a view on nothing only errors
            continue
        if _normalise(current.get(name)) != _normalise(wanted):
            todo.append((name, wanted))
    if not todo:
        return changed
    # One transaction: a reader sees the old views or the new ones, never none.
    in_tx = conn.in_transaction
    if not in_tx:
        conn.execute("BEGIN IMMEDIATE")
    try:
        for name, create in todo:
            conn.execute(f"DROP VIEW IF EXISTS {name}")
            if create is not None:
                conn.execute(create)
                changed.append(name)
        if not in_tx:
            conn.execute("COMMIT")
    except BaseException:
        if not in_tx:
            conn.execute("ROLLBACK")
        raise
    if changed:
        log.info("views created or updated: %s", ", ".join(changed))
    return changed


def drop_views(db: _HasConn | sqlite3.Connection) -> None:
    """Drop our views, so a migration that rebuilds a table they read cannot trip over them
    (SQLite checks every view when a table is renamed); `ensure_views` puts them back."""
    conn = _conn(db)
    for name in VIEWS:
        conn.execute(f"DROP VIEW IF EXISTS {name}")
