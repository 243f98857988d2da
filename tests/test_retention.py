"""The fetch log does not grow for ever (issue 15, point 11): `retention:` in sources.yaml.

One row per request adds up (~0.9 GB a day at 5,000 feeds a minute). `run` trims it at start and
every 10 minutes, `poll` after each poll: rows older than `retention.fetches` go, and a source
keeps its newest `retention.fetches_per_source` rows.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import rss, wait_for, write_config

from listener.config import ConfigError, load_config
from listener.store import Store, iso

NOW = datetime.now(UTC).replace(microsecond=0)
BODY = "<p>Acme lost my order and support never answered. Terrible.</p>"
ENTRIES = [{"title": f"Acme {i}", "link": f"https://f.example/{i}", "body": BODY} for i in range(3)]
RETENTION = "retention:\n  fetches: 30d\n  fetches_per_source: 10\n"


def seed(db: Path, source: str, *, recent: int, old: int) -> None:
    """Fetch-log rows of `source`: `recent` from the last hours, `old` from 40+ days ago."""
    store = Store.open(db)
    try:
        with store.transaction():
            store.conn.execute(
                "INSERT OR IGNORE INTO sources(name, kind, url) VALUES (?, 'feed', NULL)", (source,)
            )
            store.conn.executemany(
                "INSERT INTO fetches(source, url, started_at, status) VALUES (?, ?, ?, 200)",
                [
                    (
                        source,
                        f"old-{i}",
                        iso(NOW - timedelta(days=40 + i)),
                    )
                    for i in range(old)
                ]
                + [
                    (source, f"new-{i}", iso(NOW - timedelta(hours=recent - i)))
                    for i in range(recent)
                ],
            )
    finally:
        store.close()


def fetch_log(db: Path, source: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [
            u
            for (u,) in conn.execute(
                "SELECT url FROM fetches WHERE source = ? ORDER BY started_at, id", (source,)
            )
        ]
    finally:
        conn.close()


def test_run_trims_old_rows_and_caps_each_source_keeping_the_newest(tmp_path, httpd):
    httpd.add("/feed", rss(ENTRIES))
    cfg = write_config(tmp_path, [("feed", httpd.url("/feed"))], extra=RETENTION)
    db = tmp_path / "mentions.db"
    seed(db, "retired", recent=30, old=5)  # a source no longer in the config
    seed(db, "quiet", recent=3, old=2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: len(fetch_log(db, "retired")) == 10, "run to trim the fetch log")
        assert fetch_log(db, "retired") == [f"new-{i}" for i in range(20, 30)]
        assert fetch_log(db, "quiet") == ["new-0", "new-1", "new-2"]  # under its cap: kept
        wait_for(lambda: fetch_log(db, "feed"), "the service's own poll")
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    # 7 past 30 days, 20 past the newest 10 of "retired"
    assert "fetch log: 27 rows deleted (older than 30d, or past a source's newest 10)" in out


def test_poll_trims_after_polling_and_keeps_its_own_fetch(tmp_path, httpd):
    httpd.add("/feed", rss(ENTRIES))
    cfg = write_config(tmp_path, [("feed", httpd.url("/feed"))], extra=RETENTION)
    db = tmp_path / "mentions.db"
    seed(db, "feed", recent=15, old=3)
    seed(db, "retired", recent=12, old=1)
    done = subprocess.run(
        [sys.executable, "-m", "listener", "-c", str(cfg), "poll"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kept = fetch_log(db, "feed")
    assert len(kept) == 10
    assert kept[:-1] == [f"new-{i}" for i in range(6, 15)]  # the newest of the old log ...
    assert kept[-1] == httpd.url("/feed")  # ... and this poll's own fetch
    # A source this poll did not touch loses its rows past 30 days, and keeps the rest.
    assert fetch_log(db, "retired") == [f"new-{i}" for i in range(12)]


def test_defaults_and_limits_of_the_retention_keys(tmp_path):
    cfg = write_config(tmp_path, [("feed", "http://127.0.0.1:9/feed")])
    keep = load_config(cfg, env={}).retention
    assert (keep.fetches, keep.fetches_per_source) == (30 * 86400.0, 2000)
    cfg = write_config(
        tmp_path,
        [("feed", "http://127.0.0.1:9/feed")],
        extra="retention:\n  fetches: 0\n  fetches_per_source: 0\n",
    )
    keep = load_config(cfg, env={}).retention
    assert (keep.fetches, keep.fetches_per_source) == (0.0, 0)
    cfg = write_config(
        tmp_path, [("feed", "http://127.0.0.1:9/feed")], extra="retention:\n  fetches: 5m\n"
    )
    with pytest.raises(ConfigError, match=r"retention\.fetches"):
        load_config(cfg, env={})
