"""When a source is polled next: its interval, spread by jitter, and pushed out after failures.

What a user sees in `listener status` ("next poll") and in `sources.next_poll_at`: a failing
source is not hammered every interval, and many sources with the same interval do not all fire
in the same second."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from helpers import BASE_TIME, Clock, poll_once, rows, rss, write_config

FEED = rss([{"title": "Acme news", "link": "https://blog.example.com/a", "body": "Acme shipped."}])


def next_poll(tmp_path: Path, name: str = "blog") -> tuple[int, datetime]:
    ((failures, at),) = rows(
        tmp_path,
        "SELECT consecutive_failures, next_poll_at FROM sources WHERE name = ?",
        name,
    )
    return failures, datetime.fromisoformat(at.replace("Z", "+00:00"))


def test_a_failing_source_backs_off_doubling_then_returns_to_its_interval(
    tmp_path: Path, httpd
) -> None:
    httpd.add("/feed", "gone", status=404, content_type="text/plain")
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])  # every: 15m
    clock = Clock(BASE_TIME)
    waits = []
    for _ in range(3):
        poll_once(cfg, now=clock)
        failures, at = next_poll(tmp_path)
        waits.append((failures, at - clock.now))
        clock.now = at
    # 15 min doubled per failure in a row (plus at most a minute of jitter): 30 min, 1 h, 2 h.
    for n, ((failures, wait), minutes) in enumerate(zip(waits, (30, 60, 120), strict=True), 1):
        assert failures == n
        assert timedelta(minutes=minutes) <= wait <= timedelta(minutes=minutes + 1), waits

    # It answers again: failures reset, back to every 15 minutes.
    httpd.add("/feed", FEED)
    poll_once(cfg, now=clock)
    failures, at = next_poll(tmp_path)
    assert failures == 0
    assert timedelta(minutes=15) <= at - clock.now <= timedelta(minutes=16)


def test_the_backoff_is_capped_at_six_hours(tmp_path: Path, httpd) -> None:
    httpd.add("/feed", "gone", status=404, content_type="text/plain")
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    clock = Clock(BASE_TIME)
    poll_once(cfg, now=clock)
    conn = sqlite3.connect(tmp_path / "mentions.db")
    with conn:
        conn.execute("UPDATE sources SET consecutive_failures = 20")
    conn.close()
    poll_once(cfg, now=clock)
    failures, at = next_poll(tmp_path)
    assert failures == 21
    # 15 min x 2^6 would be 16 h: a source that was down all night is tried again within 6 h.
    assert timedelta(hours=6) <= at - clock.now <= timedelta(hours=6, minutes=1)


def test_sources_with_one_interval_are_spread_over_up_to_a_minute(tmp_path: Path, httpd) -> None:
    httpd.add("/feed", FEED)
    names = [f"blog{i}" for i in range(12)]
    cfg = write_config(tmp_path, [(n, httpd.url("/feed")) for n in names])
    clock = Clock(BASE_TIME)
    poll_once(cfg, now=clock)
    waits = [next_poll(tmp_path, n)[1] - clock.now for n in names]
    # Each within its interval plus at most 10% of it, capped at a minute...
    assert all(timedelta(minutes=15) <= w <= timedelta(minutes=16) for w in waits), waits
    # ...and not all at once (twelve draws in one second out of sixty: never, in practice).
    assert len(set(waits)) > 1, waits
