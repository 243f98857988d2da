"""Triage: a conversation's state (`threads.status`) set with `listener triage`, kept in its
history (`thread_triage`), and a resolved conversation reopened by a new negative post.

The database is built as a user builds it: a blog post and its comment feed served on loopback,
polled through the real pipeline, with a clock the test moves.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
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
    # The conversation's URL names it as well as its key, and so does a comment's own link.
    done = triage(cfg, POST, "resolved")
    assert done.exit_code == 0, done.output
    assert "acknowledged → resolved" in done.output
    done = triage(cfg, f"{POST}/#comment-2", "resolved")
    assert done.exit_code == 0, done.output
    assert "resolved (unchanged)" in done.output
    assert status(cfg) == "resolved"
    (status_at,) = db_rows(cfg, "SELECT status_at FROM threads WHERE key = ?", KEY)[0]
    assert status_at and status_at.endswith("Z")
    me = f"cli:{getpass.getuser()}"
    assert history(cfg) == [
        ("acknowledged", "support is on it", me),
        ("resolved", None, me),
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


# --- the conversation's page in a real `listener serve` ------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(cfg: Path, *args: str) -> Iterator[tuple[str, list[str]]]:
    """`listener serve` as its own process on the config's database: its base URL and the lines
    it printed before it listened."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not any("Press Ctrl+C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, f"serve exited: {''.join(lines)}"
            lines.append(line)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def csrf_field(page: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', page)
    assert found, "the page offers the form, with Datasette's CSRF token"
    return found.group(1)


def test_the_page_changes_the_state_only_for_a_signed_in_actor_with_a_csrf_token(
    site: tuple,
) -> None:
    cfg, _server, _clock = site
    page_path = f"/-/thread?{urlencode({'key': KEY})}"
    change = {"key": KEY, "status": "acknowledged", "note": "on it"}
    with serving(cfg, "--root") as (base, lines):
        login = next(line.split(": ", 1)[1].strip() for line in lines if "sign in" in line)
        assert login.startswith(f"{base}/-/auth-token?token=")
        with httpx.Client(base_url=base) as anonymous:
            page = anonymous.get(page_path)
            assert page.status_code == 200 and "Acme outage again" in page.text
            assert "<form" not in page.text and "listener serve --root" in page.text
            # A request to change it, without signing in: refused, with or without a token.
            assert anonymous.post("/-/thread", data=change).status_code == 403
            anonymous.cookies.set("ds_csrftoken", page.cookies.get("ds_csrftoken") or "x")
            forged = {**change, "csrftoken": anonymous.cookies["ds_csrftoken"]}
            assert anonymous.post("/-/thread", data=forged).status_code == 403
            # SQL stays read-only.
            sql = anonymous.get("/mentions.json", params={"sql": "UPDATE threads SET status = 'x'"})
            assert sql.status_code == 400
        assert history(cfg) == [] and status(cfg) == "new"

        with httpx.Client(base_url=base) as marketer:
            signed_in = marketer.get(login)
            assert signed_in.status_code == 302 and "ds_actor" in marketer.cookies
            page = marketer.get(page_path)
            token = csrf_field(page.text)
            # Signed in, but a cross-site form (no token of ours): refused by the CSRF check.
            assert marketer.post("/-/thread", data=change).status_code == 403
            assert history(cfg) == []
            done = marketer.post("/-/thread", data={**change, "csrftoken": token})
            assert done.status_code == 302 and done.headers["location"] == page_path
            after = marketer.get(page_path).text
            assert 'Status: <span class="triage acknowledged">' in after
            assert "Status: acknowledged (was new)." in after  # Datasette's message
            assert re.search(r"<td>serve:root</td><td>on it</td>", after)
        # The one-time login link does not sign in a second person.
        with httpx.Client(base_url=base) as other:
            assert "ds_actor" not in other.get(login).cookies
    assert status(cfg) == "acknowledged"
    assert history(cfg) == [("acknowledged", "on it", "serve:root")]


def test_serve_without_root_offers_no_login(site: tuple) -> None:
    cfg, _server, _clock = site
    with serving(cfg) as (base, lines):
        assert not any("sign in" in line for line in lines)
        with httpx.Client(base_url=base) as client:
            page = client.get(f"/-/thread?{urlencode({'key': KEY})}")
            assert "<form" not in page.text
            assert (
                client.post("/-/thread", data={"key": KEY, "status": "ignored"}).status_code == 403
            )
    assert status(cfg) == "new"
