"""What a poll may reach and how long it may take, end to end: sources.yaml -> loopback servers ->
the database and `listener status`.

"Internal" here is a second loopback server on 127.0.0.2: the config's sources live on 127.0.0.1,
so 127.0.0.2 is an internal address the config does not use, as 169.254.169.254 or 10.0.0.5 would
be for a config of public feeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Clock, poll_once, rows, rss, write_config
from httpd import LoopbackServer

from listener.cli import cli
from listener.parse import MAX_ITEMS
from listener.pipeline import PollSummary

SECRET = "TOP-SECRET-instance-credentials"
SECRET_PAGE = f"<html><head><title>{SECRET}</title></head><body>{SECRET}</body></html>"


@pytest.fixture
def internal() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.2") as server:
        server.add("/latest/meta-data", SECRET_PAGE, content_type="text/html")
        server.add(
            "/comments",
            rss([{"title": "By: ops", "link": "https://blog.example.com/p#c", "body": SECRET}]),
        )
        yield server


def poll(cfg: Path) -> PollSummary:
    return poll_once(cfg, now=Clock(datetime.now(UTC)))


def status(cfg: Path) -> str:
    result = CliRunner().invoke(cli, ["-c", str(cfg), "status"])
    assert result.exit_code == 0, result.output
    return result.output


def post(guid: str, comments: str) -> dict[str, str]:
    return {
        "title": f"Acme post {guid}",
        "link": f"https://blog.example.com/{guid}",
        "guid": guid,
        "body": "Our first week with Acme: it keeps crashing.",
        "comments": comments,
    }


# -- 15.4: feed-supplied URLs never reach internal addresses the config does not use ------------


def test_a_comment_feed_on_an_internal_address_is_never_fetched(
    tmp_path: Path, httpd: LoopbackServer, internal: LoopbackServer, caplog
) -> None:
    # Two brand posts: one's wfw:commentRss points at the internal server, the other's at the
    # config's own server (127.0.0.1), which is followed as before.
    httpd.add(
        "/comments",
        rss(
            [
                {
                    "title": "By: sam",
                    "link": "https://blog.example.com/q#comment-1",
                    "guid": "c1",
                    "body": "Awful.",
                }
            ]
        ),
    )
    httpd.add(
        "/feed",
        rss([post("p", internal.url("/comments")), post("q", httpd.url("/comments"))]),
    )
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    with caplog.at_level(logging.WARNING):
        (report,) = poll(cfg).reports
    assert report.ok
    assert sum(internal.hits.values()) == 0  # not one request reached it
    assert httpd.hits["/comments"] == 1  # the config's own address: followed
    assert rows(tmp_path, "SELECT count(*) FROM items WHERE is_reply = 1") == [(1,)]
    assert rows(tmp_path, "SELECT count(*) FROM items WHERE text LIKE ?", f"%{SECRET}%") == [(0,)]
    assert "internal address" in caplog.text


def test_a_redirect_to_an_internal_host_is_refused_and_shows_nothing_of_it(
    tmp_path: Path, httpd: LoopbackServer, internal: LoopbackServer
) -> None:
    httpd.add("/feed", redirect_to=internal.url("/latest/meta-data"))
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    (report,) = poll(cfg).reports
    assert sum(internal.hits.values()) == 0
    assert report.error == (
        "not fetched: 127.0.0.2 is an internal address that no configured source uses "
        "(a link or redirect from a feed may not reach it)"
    )
    ((last_error,),) = rows(tmp_path, "SELECT last_error FROM sources")
    assert last_error == report.error
    shown = status(cfg)
    assert "127.0.0.2 is an internal address" in shown and SECRET not in shown


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (SECRET_PAGE, "text/html", "got an HTML page (a login, error or home page?), not a feed"),
        (f"{SECRET} is the answer", "text/plain", "not a feed: neither XML nor JSON"),
    ],
)
def test_an_error_describes_the_answer_without_quoting_it(
    tmp_path: Path, httpd: LoopbackServer, body: str, content_type: str, expected: str
) -> None:
    # Even from an address the config names: what is stored and shown never repeats the body.
    httpd.add("/feed", body, content_type=content_type)
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    (report,) = poll(cfg).reports
    assert report.error == expected
    assert rows(tmp_path, "SELECT last_error FROM sources") == [(expected,)]
    assert rows(tmp_path, "SELECT count(*) FROM fetches WHERE error LIKE ?", f"%{SECRET}%") == [
        (0,)
    ]
    assert SECRET not in status(cfg)


# -- 15.11: one time budget per source poll ------------------------------------------------------


def test_thread_reads_share_the_polls_time_budget(
    tmp_path: Path, httpd: LoopbackServer, caplog
) -> None:
    # Three brand threads whose comment feeds trickle: each read would take the whole total
    # timeout (1 s) three times over (two retries): 9 s. The poll's budget is 1.6 s: the
    # feed itself is read, then the reads stop after two requests, one of which the budget cut.
    for n in (1, 2, 3):
        httpd.add(f"/c{n}", "x" * 4000, chunk_delay=0.1, chunk_size=100)
    httpd.add("/feed", rss([post(f"p{n}", httpd.url(f"/c{n}")) for n in (1, 2, 3)]))
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    cfg.write_text(
        cfg.read_text().replace(
            "  retries: 1\n  read_timeout: 5s\n  total_timeout: 10s\n",
            "  retries: 2\n  read_timeout: 5s\n  total_timeout: 1s\n  poll_budget: 1600ms\n",
        )
    )
    with caplog.at_level(logging.WARNING):
        (report,) = poll(cfg).reports
    assert report.ok and report.new_items == 3  # the feed's own poll counts as done
    assert sum(httpd.hits[f"/c{n}"] for n in (1, 2, 3)) == 2
    assert "not re-read this poll: the poll's time budget of 1.6 s is used up" in caplog.text


def test_poll_budget_is_a_duration_setting(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [("blog", "http://127.0.0.1:9/feed")])
    cfg.write_text(cfg.read_text().replace("  retries: 1\n", "  retries: 1\n  poll_budget: 0s\n"))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 2 and "poll_budget" in result.output


# -- 15.11: a feed cut to its first entries says so --------------------------------------------


def test_a_feed_cut_to_its_first_entries_says_so(
    tmp_path: Path, httpd: LoopbackServer, caplog
) -> None:
    many = [
        {"title": f"n{i}", "link": f"https://blog.example.com/{i}", "guid": f"g{i}"}
        for i in range(MAX_ITEMS + 50)
    ]
    httpd.add("/feed", rss(many))
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    note = "feed cut: it has 2,050 entries, only the first 2,000 were read"
    with caplog.at_level(logging.WARNING):
        (report,) = poll(cfg).reports
    assert report.ok and report.items == MAX_ITEMS
    assert f"blog: {note}" in caplog.text
    assert rows(tmp_path, "SELECT last_note FROM sources") == [(note,)]
    assert f"note: {note}" in status(cfg)
    # The same feed again (unchanged, not parsed): still cut, still said.
    (report,) = poll(cfg).reports
    assert report.not_modified and rows(tmp_path, "SELECT last_note FROM sources") == [(note,)]
    # A feed back within the cap: the note goes.
    httpd.add("/feed", rss(many[:3]))
    (report,) = poll(cfg).reports
    assert report.ok and rows(tmp_path, "SELECT last_note FROM sources") == [(None,)]
    assert "note:" not in status(cfg)
