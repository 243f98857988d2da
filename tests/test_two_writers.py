"""Two writers on one database: a `listener poll` beside `listener run` (issue 15, point 7).

A write transaction never spans a network wait, a save waits for another process's write lock
without blocking the event loop, what two writers both took for new is stored once, and a
second writer that cannot get in says so plainly instead of dying with a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from helpers import rss, wait_for, write_config

from listener.config import load_config
from listener.daemon import instance_lock
from listener.pipeline import poll_source
from listener.runtime import open_runtime
from listener.store import _LOOP_TRY_MS, Store

BODY = "<p>Acme lost my order and support never answered. Terrible.</p>"
ENTRIES = [
    {"title": f"Acme order {i}", "link": f"https://f.example/{i}", "guid": f"g{i}", "body": BODY}
    for i in range(3)
]


def scalar(db: Path, sql: str, *args: object) -> object:
    conn = sqlite3.connect(db, timeout=5)
    try:
        row = conn.execute(sql, args).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def waiting_for_lock(store: Store) -> bool:
    (ms,) = store.conn.execute("PRAGMA busy_timeout").fetchone()
    return ms == _LOOP_TRY_MS


def listener(cfg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cfg.parent,
        env={**os.environ, **(env or {})},
    )


def test_a_poll_waiting_on_a_slow_server_holds_no_write_lock(tmp_path, httpd):
    """The grouped-commit `poll` used to keep its transaction open across a slow fetch, so
    `listener run` (or anything else) could not write until the slowest feed answered."""
    release = threading.Event()

    def slow(_request):
        release.wait(60)
        return 200, {"content-type": "application/rss+xml"}, rss([]).encode()

    httpd.add("/fast", rss(ENTRIES))
    httpd.add("/slow", handler=slow)
    cfg = write_config(tmp_path, [("fast", httpd.url("/fast")), ("slow", httpd.url("/slow"))])
    cfg.write_text(
        cfg.read_text()
        .replace("read_timeout: 5s", "read_timeout: 60s")
        .replace("total_timeout: 10s", "total_timeout: 60s")
    )
    db = tmp_path / "mentions.db"
    proc = listener(cfg, "poll")
    try:
        wait_for(lambda: httpd.requests_for("/slow"), "the poll to wait on the slow server")
        wait_for(
            lambda: scalar(db, "SELECT last_success_at FROM sources WHERE name = 'fast'"),
            "the fast source's save to be committed while the slow one is still fetching",
        )
        assert not release.is_set() and proc.poll() is None
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the poll held the lock
            other.execute("UPDATE sources SET next_poll_at = NULL WHERE name = 'fast'")
            other.execute("COMMIT")
        finally:
            other.close()
    finally:
        release.set()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "sources: 2 ok, 0 failed" in out
    assert scalar(db, "SELECT count(*) FROM mentions") == 3


def test_a_save_waits_for_the_lock_without_freezing_the_event_loop(tmp_path, httpd):
    """`listener run` saving while another process holds the write lock: its event loop goes on
    (other polls, signals, alerts) and the save lands once the lock is free."""
    httpd.add("/feed", rss(ENTRIES))
    cfg = write_config(tmp_path, [("feed", httpd.url("/feed"))])
    config = load_config(cfg, env={})
    db = tmp_path / "mentions.db"

    async def main() -> tuple[int, bool, object]:
        async with open_runtime(config) as rt:
            rt.store.ensure_sources(config.sources)
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            task = asyncio.create_task(poll_source(config.sources[0], rt))
            while not httpd.requests_for("/feed"):
                await asyncio.sleep(0.01)
            ticks = 0
            for _ in range(10):  # the loop turns while the save waits
                await asyncio.sleep(0.02)
                ticks += 1
            waiting = not task.done()
            holder.execute("COMMIT")
            holder.close()
            report = await task
            return ticks, waiting, report

    ticks, waiting, report = asyncio.run(main())
    assert ticks == 10 and waiting
    assert report.ok and len(report.new_mentions) == 3
    assert scalar(db, "SELECT count(*) FROM items") == 3


def test_two_writers_saving_the_same_new_story_store_it_once(tmp_path, httpd):
    """`run` and a `poll` of the same feed both find the same new posts; whichever saves second
    sees them stored (inside its own write transaction) and adds a sighting, not a copy."""
    httpd.add("/feed", rss(ENTRIES))
    cfg = write_config(tmp_path, [("feed", httpd.url("/feed"))])
    config = load_config(cfg, env={})
    db = tmp_path / "mentions.db"

    async def main() -> None:
        async with open_runtime(config) as one, open_runtime(config) as two:
            one.store.ensure_sources(config.sources)
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # both look the posts up as new, then wait
            tasks = [asyncio.create_task(poll_source(config.sources[0], rt)) for rt in (one, two)]
            # Both have fetched and looked the posts up, and wait for the lock (their short
            # in-SQLite busy wait is on while they do).
            while not all(waiting_for_lock(rt.store) for rt in (one, two)):
                await asyncio.sleep(0.01)
            holder.execute("COMMIT")
            holder.close()
            reports = await asyncio.gather(*tasks)
            assert all(r.ok for r in reports)
            assert sorted(r.new_items for r in reports) == [0, 3]

    asyncio.run(main())
    assert scalar(db, "SELECT count(*) FROM items") == 3
    assert scalar(db, "SELECT count(*) FROM mentions") == 3
    assert (
        scalar(
            db,
            "SELECT count(*) FROM item_keys k LEFT JOIN items i ON i.id = k.item_id "
            "WHERE i.id IS NULL",
        )
        == 0
    )


def test_a_poll_that_cannot_get_the_lock_says_run_owns_the_database(tmp_path, httpd):
    """No traceback and no bare "database is locked": who holds it, and what to do."""
    httpd.add("/feed", rss(ENTRIES))
    cfg = write_config(tmp_path, [("feed", httpd.url("/feed"))])
    db = tmp_path / "mentions.db"
    Store.open(db).close()
    with instance_lock(db):  # as `listener run` holds it (this process's pid)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            proc = listener(cfg, "poll", env={"LISTENER_WRITE_PATIENCE": "0.5"})
            out, err = proc.communicate(timeout=60)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert (
        f"the database is busy: `listener run` (pid {os.getpid()}) is writing to it; "
        "try again or stop it" in err
    )


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (its descriptors come and go as we look)."""
    target = str(path.resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue  # closed between the listing and the look
    return False


def test_a_poll_waits_politely_for_a_short_lock(tmp_path, httpd):
    """A lock that is released within the patience: the poll goes through."""
    httpd.add("/feed", rss(ENTRIES))
    cfg = write_config(tmp_path, [("feed", httpd.url("/feed"))])
    db = tmp_path / "mentions.db"
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    proc = listener(cfg, "poll")
    try:
        # The poll has the database open, so it is waiting for the lock (or about to).
        wait_for(lambda: has_open(proc.pid, db), "the poll to open the database")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "sources: 1 ok, 0 failed" in out
    assert scalar(db, "SELECT count(*) FROM mentions") == 3
