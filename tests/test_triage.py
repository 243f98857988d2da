"""Triage: a conversation's state (`threads.status`) set with `listener triage`, kept in its
history (`thread_triage`), and a resolved conversation reopened by a new negative post.

The database is built as a user builds it: a blog post and its comment feed served on loopback,
polled through the real pipeline, with a clock the test moves.
"""

from __future__ import annotations

import getpass
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import BASE_TIME, Clock, poll_once, rss, write_config
from httpd import LoopbackServer

from listener.cli import cli
from listener.store import Store

POST = "https://blog.example.com/2026/acme-outage"
KEY = "blog.example.com/2026/acme-outage"

ANGRY = [
    ("Pat", "Same here, Acme is broken and useless. Awful."),
    ("Sam", "This is ridiculous, the worst service I have ever had from Acme. Terrible."),
]


def comments(server: LoopbackServer, people: list[tuple[str, str]]) -> None:
    server.add(
        "/comments",
        rss(
            [
                {"title": f"By: {who}", "link": f"{POST}/#comment-{i}", "body": body}
                for i, (who, body) in enumerate(people, 1)
            ]
        ),
    )


@pytest.fixture
def site(tmp_path: Path, httpd: LoopbackServer) -> tuple[Path, LoopbackServer, Clock]:
    """The blog and its comments polled once; returns the config, the server and the clock."""
    httpd.add(
        "/blog",
        rss(
            [
                {
                    "title": "Acme outage again",
                    "link": POST,
                    "comments": httpd.url("/comments"),
                    "body": "Acme is down again and support never answered. Terrible.",
                }
            ]
        ),
    )
    comments(httpd, ANGRY)
    cfg = write_config(tmp_path, [("blog", httpd.url("/blog"))])
    clock = Clock(BASE_TIME)
    poll_once(cfg, now=clock)
    return cfg, httpd, clock


def db_rows(cfg: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(cfg.parent / "mentions.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def status(cfg: Path) -> str:
    return db_rows(cfg, "SELECT status FROM threads WHERE key = ?", KEY)[0][0]


def history(cfg: Path) -> list[tuple]:
    return db_rows(
        cfg, "SELECT status, note, actor FROM thread_triage WHERE thread_key = ? ORDER BY id", KEY
    )


def triage(cfg: Path, *args: str) -> object:
    return CliRunner().invoke(cli, ["-c", str(cfg), "triage", *args])


def test_triage_sets_the_state_and_keeps_its_history(site: tuple) -> None:
    cfg, _server, _clock = site
    assert status(cfg) == "new"
    done = triage(cfg, KEY, "acknowledged", "--note", "support is on it")
    assert done.exit_code == 0, done.output
    assert "Acme outage again: new → acknowledged (support is on it)" in done.output
    # The conversation's URL names it as well as its key.
    done = triage(cfg, POST, "resolved")
    assert done.exit_code == 0, done.output
    assert "acknowledged → resolved" in done.output
    assert status(cfg) == "resolved"
    (status_at,) = db_rows(cfg, "SELECT status_at FROM threads WHERE key = ?", KEY)[0]
    assert status_at and status_at.endswith("Z")
    me = f"cli:{getpass.getuser()}"
    assert history(cfg) == [
        ("acknowledged", "support is on it", me),
        ("resolved", None, me),
    ]


def test_triage_of_an_unknown_thread_fails_and_changes_nothing(site: tuple) -> None:
    cfg, _server, _clock = site
    done = triage(cfg, "forum.example.com/t/nothing/1", "resolved")
    assert done.exit_code == 1
    assert "no conversation 'forum.example.com/t/nothing/1'" in done.output
    assert history(cfg) == [] and status(cfg) == "new"


def test_triage_with_a_bad_status_names_the_choices(site: tuple) -> None:
    cfg, _server, _clock = site
    done = triage(cfg, KEY, "closed")
    assert done.exit_code == 2
    assert "'closed' is not one of 'new', 'acknowledged', 'resolved', 'ignored'" in done.output
    assert history(cfg) == []


def test_a_resolved_thread_reopens_on_a_new_negative_post(site: tuple) -> None:
    cfg, server, clock = site
    store = Store.open(cfg.parent / "mentions.db")
    try:
        assert (
            store.set_thread_status(
                KEY, "resolved", "refunds sent", "cli:dana", clock.now + timedelta(hours=1)
            )
            == "new"
        )
    finally:
        store.close()
    # Seen again, and a kind word: still resolved.
    clock.now += timedelta(hours=2)
    comments(server, [*ANGRY, ("Alex", "Thanks Acme, works fine for me now, I love it.")])
    poll_once(cfg, now=clock)
    assert status(cfg) == "resolved"
    # A new angry customer: open again, and the history says why.
    clock.now += timedelta(hours=1)
    comments(
        server,
        [
            *ANGRY,
            ("Alex", "Thanks Acme, works fine for me now, I love it."),
            ("Kim", "Acme broke again tonight. Awful, useless, I am furious."),
        ],
    )
    poll_once(cfg, now=clock)
    assert status(cfg) == "new"
    assert history(cfg) == [
        ("resolved", "refunds sent", "cli:dana"),
        ("new", "reopened: a new negative post", "listener"),
    ]


def test_an_acknowledged_or_ignored_thread_stays_as_set(site: tuple) -> None:
    cfg, server, clock = site
    assert triage(cfg, KEY, "ignored").exit_code == 0
    clock.now += timedelta(days=1)
    comments(server, [*ANGRY, ("Kim", "Acme broke again tonight. Awful, useless, I am furious.")])
    poll_once(cfg, now=clock)
    assert status(cfg) == "ignored"
