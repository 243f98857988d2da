"""The store's transactions: a source's save is all or nothing, alone or inside a grouped poll."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from listener.store import MIGRATIONS, Store


class Boom(Exception):
    pass


def names(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute("SELECT name FROM sources ORDER BY name")]
    finally:
        conn.close()


def add(store: Store, name: str) -> None:
    store.conn.execute("INSERT INTO sources(name, kind, url) VALUES (?, 'feed', NULL)", (name,))


def test_a_failed_transaction_leaves_nothing_and_a_failed_inner_one_only_undoes_itself(tmp_path):
    path = tmp_path / "m.db"
    store = Store.open(path)
    with pytest.raises(Boom), store.transaction():
        add(store, "lost")
        raise Boom
    with store.transaction():
        add(store, "kept")
        with pytest.raises(Boom), store.transaction():
            add(store, "inner-lost")
            raise Boom
        add(store, "kept-too")
    store.close()
    assert names(path) == ["kept", "kept-too"]


def test_in_a_grouped_poll_each_source_stays_all_or_nothing_and_the_rest_is_committed(tmp_path):
    path = tmp_path / "m.db"
    store = Store.open(path)
    with store.grouped(every_s=3600):
        with store.transaction():
            add(store, "a")
        with pytest.raises(Boom), store.transaction():
            add(store, "b")
            raise Boom
        with store.transaction():
            add(store, "c")
        assert names(path) == []  # not committed yet: another reader sees nothing
    assert not store.conn.in_transaction
    store.close()
    assert names(path) == ["a", "c"]


def test_in_a_grouped_session_an_alert_claimed_for_sending_is_committed_before_the_send(tmp_path):
    """The service groups its saves into one commit every quarter second; an outbox row marked
    `sending` must be on disk before the request leaves (a crash then is noticed and repeated
    once), so the claim commits the group at once, with the saves before it."""
    path = tmp_path / "m.db"
    store = Store.open(path)
    store.conn.execute(
        "INSERT INTO alerts(id, key, created_at, rule, level, subject, payload) "
        "VALUES (1, 'k', '2026-12-08T00:00:00Z', 'churn_risk', 'warning', 's', '{}')"
    )
    store.conn.execute(
        "INSERT INTO outbox(alert_id, channel, status, attempts, next_attempt_at) "
        "VALUES (1, 'slack', 'pending', 0, '2026-12-08T00:00:00Z')"
    )
    other = sqlite3.connect(path)
    try:
        with store.grouped(every_s=3600):
            with store.transaction():
                add(store, "saved-before")
            assert names(path) == []  # an ordinary save waits for the group's commit
            got, _ = store.claim_deliveries([1], "slack", datetime(2026, 12, 8, tzinfo=UTC))
            assert got == [1]
            # Another process sees the claim, and the save before it, while still grouped.
            assert other.execute("SELECT status FROM outbox").fetchall() == [("sending",)]
            assert names(path) == ["saved-before"]
    finally:
        other.close()
        store.close()


def test_reopening_keeps_the_schema_and_records_every_migration_once(tmp_path):
    path = tmp_path / "m.db"
    Store.open(path).close()
    store = Store.open(path)
    add(store, "x")
    applied = [
        n for (n,) in store.conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")
    ]
    store.close()
    assert applied == [fn.__name__ for fn in MIGRATIONS]
    assert names(path) == ["x"]


def test_with_store_open_saves_the_block_and_closes_the_database_even_on_an_error(tmp_path):
    path = tmp_path / "m.db"
    with Store.open(path) as store:
        store.ensure_sources([type("Spec", (), {"name": "a", "kind": "feed", "url": None})()])
    with pytest.raises(sqlite3.ProgrammingError):  # closed on the way out
        store.conn.execute("SELECT 1")
    with pytest.raises(Boom), Store.open(path) as again:
        raise Boom
    with pytest.raises(sqlite3.ProgrammingError):
        again.conn.execute("SELECT 1")
    assert names(path) == ["a"]
