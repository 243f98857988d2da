"""`listener demo --no-serve`: bundled sample feeds, polled over loopback, reported with the alert."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from listener.cli import demo
from listener.demo import DATA_DIR, render_sample, sample_files


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_demo_finds_the_angry_thread_and_prints_its_alert(tmp_path: Path) -> None:
    result = CliRunner().invoke(demo, ["--dir", str(tmp_path), "--no-serve"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 sample sources (4 ok, 0 failed)" in out
    # The conversation that turned angry, with its worst post...
    assert "Conversations that turned negative:" in out
    section = out.split("Conversations that turned negative:")[1].split("The alert")[0]
    assert '"Firmware 3.2 for the Brewly Kettle is rolling out" (brewly-blog)' in section
    assert "Rosa Delgado" in section
    # ...and the alert the rules fired for it, as the Slack/email text would say it.
    alert = out.split("The alert listener would send to Slack and email")[1]
    assert "a conversation turned negative" in alert and "Firmware 3.2" in alert
    assert "negative posts in the last day" in alert and "Worst posts:" in alert
    assert f"Database: {tmp_path / 'demo.db'}" in out
    # Every brand was found, and the other brands' posts are not in the angry thread's list.
    for brand in ("Brewly", "Steamline", "Kettlewise"):
        assert f"  {brand} " in out
    db = tmp_path / "demo.db"
    assert count(db, "SELECT count(*) FROM mentions WHERE label = 'negative'") >= 5
    assert count(db, "SELECT count(*) FROM threads WHERE negative_posts >= 3") == 1
    # Brewly Support's apology is the brand answering: it marks the thread answered and is not
    # one of its negative posts.
    assert count(db, "SELECT count(*) FROM items WHERE author = 'Brewly Support' AND by_brand = 1")
    assert (
        count(
            db, "SELECT count(*) FROM threads WHERE negative_posts >= 3 AND answered_at IS NOT NULL"
        )
        == 1
    )
    assert "Brewly Support" not in section


def test_demo_again_adds_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(demo, ["--dir", str(tmp_path), "--no-serve"]).exit_code == 0
    db = tmp_path / "demo.db"
    before = count(db, "SELECT count(*) FROM mentions"), count(db, "SELECT count(*) FROM alerts")
    again = runner.invoke(demo, ["--dir", str(tmp_path), "--no-serve"])
    assert again.exit_code == 0 and "Firmware 3.2" in again.output
    assert (
        count(db, "SELECT count(*) FROM mentions"),
        count(db, "SELECT count(*) FROM alerts"),
    ) == before


def test_sample_feeds_get_recent_dates_and_the_server_address() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    text = render_sample(
        "<a>{base}/x</a><b>{rfc822:1.5}</b><c>{iso:48}</c>", base="http://h:1", now=now
    )
    assert (
        text
        == "<a>http://h:1/x</a><b>Fri, 20 Nov 2026 10:30:00 +0000</b><c>2026-11-18T12:00:00Z</c>"
    )
    files = sample_files()
    assert "/comments/firmware-3-2.rss" in files and "/kitchen-tech-news.json" in files
    assert (DATA_DIR / "README.md").exists()
