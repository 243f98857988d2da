"""`kind: reddit` against Reddit's real Atom feed shapes, served on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import Clock, poll_once, rows, write_config
from httpd import RequestInfo

from listener.config import ConfigError, load_config
from listener.fetch import Fetcher
from listener.models import SourceSpec
from listener.sources import PollContext, SourceState
from listener.sources import reddit as reddit_module
from listener.sources.reddit import RedditOptions, feed_url, fetch_thread
from listener.sources.reddit import poll as reddit_poll

FIXTURES = Path(__file__).parent / "fixtures" / "reddit"
ATOM = "application/atom+xml; charset=UTF-8"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


poll = partial(poll_once, now=lambda: NOW)


def reddit_source(base_url: str, keys: str = "    query: acme\n") -> str:
    return (
        f"  - name: reddit\n    kind: reddit\n{keys}    base_url: {base_url}\n"
        "    request_interval: 0\n"
    )


@pytest.fixture
def reddit(httpd):
    httpd.add("/search.rss", (FIXTURES / "search_link_post.atom").read_bytes(), content_type=ATOM)
    httpd.add(
        "/comments/1gx1abc/.rss",
        (FIXTURES / "comments_1gx1abc.atom").read_bytes(),
        content_type=ATOM,
    )
    return httpd


def test_search_feed_posts_and_followed_comments_land_in_the_database(tmp_path, reddit):
    cfg = write_config(tmp_path, [], extra=reddit_source(reddit.base_url))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]

    (search,) = reddit.requests_for("/search.rss")
    assert parse_qs(urlsplit(search.path).query) == {
        "q": ["acme"],
        "sort": ["new"],
        "limit": ["100"],
    }

    items = {
        r[0]: r[1:]
        for r in rows(
            tmp_path, "SELECT native_id, url, thread_key, is_reply, title, text, author FROM items"
        )
    }
    # A link post is the article it links, under the article's canonical URL.
    link_post = items["t3_1gx2k9a"]
    assert link_post[:2] == ("https://news.example.com/2026/11/acme-recall", "reddit:1gx2k9a")
    # A self post keeps its permalink; the "submitted by ... [link] [comments]" trailer is cut.
    self_post = items["t3_1gx1abc"]
    assert (
        self_post[0]
        == "https://www.reddit.com/r/acme/comments/1gx1abc/rocket_skates_broke_on_day_one"
    )
    assert self_post[4].endswith("Acme support is terrible and I want a refund.")
    assert "submitted by" not in self_post[4] and "[comments]" not in self_post[4]
    assert self_post[5] == "/u/road_runner"

    # The matching self post's comments feed was read; its comments are replies in its thread,
    # without the "/u/x on <post title>" title that would make them all mention Acme.
    assert reddit.hits["/comments/1gx1abc/.rss"] == 1
    assert items["t1_lz3q8k1"][1:4] == ("reddit:1gx1abc", 1, "")
    assert items["t1_lz3r0aa"][1:4] == ("reddit:1gx1abc", 1, "")
    assert rows(tmp_path, "SELECT replies_url FROM threads WHERE key = 'reddit:1gx1abc'") == [
        (reddit.url("/comments/1gx1abc/.rss"),)
    ]
    labels = dict(
        rows(
            tmp_path, "SELECT i.native_id, m.label FROM mentions m JOIN items i ON i.id = m.item_id"
        )
    )
    assert labels == {"t3_1gx2k9a": labels["t3_1gx2k9a"], "t3_1gx1abc": "negative"}
    # The negative reply that does not name Acme counts in the thread's mood.
    assert rows(tmp_path, "SELECT label FROM items WHERE native_id = 't1_lz3q8k1'") == [
        ("negative",)
    ]


def test_a_restart_adds_nothing_and_a_new_post_is_added_once(tmp_path, reddit):
    cfg = write_config(tmp_path, [], extra=reddit_source(reddit.base_url))
    poll(cfg)
    before = rows(tmp_path, "SELECT count(*) FROM items")[0][0]
    again = poll(cfg)  # a new runtime on the same database
    assert again.new_items == 0 and again.reports[0].not_modified
    assert rows(tmp_path, "SELECT count(*) FROM items")[0][0] == before

    body = (FIXTURES / "search_link_post.atom").read_text()
    first_entry = body.index("<entry>")
    new_entry = (
        '<entry><author><name>/u/bugs</name></author><content type="html">&lt;div class=&quot;md'
        "&quot;&gt;&lt;p&gt;Acme Rocket Skates are great now, the new brakes work.&lt;/p&gt;&lt;/div"
        '&gt;</content><id>t3_1gx9zzz</id><link href="https://www.reddit.com/r/acme/comments/'
        '1gx9zzz/new_brakes/" /><updated>2026-11-20T09:00:00+00:00</updated><published>'
        "2026-11-20T09:00:00+00:00</published><title>New brakes</title></entry>"
    )
    reddit.add(
        "/search.rss", body[:first_entry] + new_entry + body[first_entry:], content_type=ATOM
    )
    third = poll(cfg)
    assert third.reports[0].new_items == 1
    assert rows(tmp_path, "SELECT count(*) FROM items")[0][0] == before + 1
    assert rows(tmp_path, "SELECT count(*) FROM items GROUP BY native_id HAVING count(*) > 1") == []


def test_subreddit_and_query_read_the_subreddit_search_feed(tmp_path, httpd):
    httpd.add(
        "/r/acme/search.rss", (FIXTURES / "search_link_post.atom").read_bytes(), content_type=ATOM
    )
    keys = "    query: rocket skates\n    subreddit: r/acme\n    follow_threads: false\n"
    cfg = write_config(tmp_path, [], extra=reddit_source(httpd.base_url, keys))
    summary = poll(cfg)
    assert summary.failed == 0
    (request,) = httpd.requests_for("/r/acme/search.rss")
    assert parse_qs(urlsplit(request.path).query) == {
        "q": ["rocket skates"],
        "restrict_sr": ["on"],
        "sort": ["new"],
        "limit": ["100"],
    }


def test_feed_urls():
    assert (
        feed_url(RedditOptions(subreddit="acme"))
        == "https://www.reddit.com/r/acme/new/.rss?limit=100"
    )
    assert feed_url(RedditOptions(query="acme corp", limit=25)) == (
        "https://www.reddit.com/search.rss?q=acme+corp&sort=new&limit=25"
    )
    assert feed_url(RedditOptions(subreddit="acme+acmesupport", query="x")).startswith(
        "https://www.reddit.com/r/acme+acmesupport/search.rss?q=x&restrict_sr=on"
    )


def test_login_page_is_a_source_failure_that_says_so(tmp_path, httpd):
    httpd.add(
        "/search.rss",
        status=302,
        redirect_to="/login/?dest=https%3A%2F%2Fwww.reddit.com%2Fsearch.rss",
    )
    httpd.add(
        "/login/", (FIXTURES / "login.html").read_bytes(), content_type="text/html; charset=utf-8"
    )
    cfg = write_config(tmp_path, [], extra=reddit_source(httpd.base_url))
    (report,) = poll(cfg).reports
    assert not report.ok
    assert "login page" in report.error
    assert "reddit.com: Log in" not in report.error  # the page is described, never quoted
    assert rows(tmp_path, "SELECT consecutive_failures FROM sources") == [(1,)]
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(0,)]


def test_403_is_a_source_failure_that_says_so(tmp_path, httpd):
    httpd.add(
        "/search.rss",
        '{"message": "Forbidden", "error": 403}',
        status=403,
        content_type="application/json",
    )
    cfg = write_config(tmp_path, [], extra=reddit_source(httpd.base_url))
    (report,) = poll(cfg).reports
    assert not report.ok and "HTTP 403" in report.error and "anonymous access" in report.error
    (error,) = rows(tmp_path, "SELECT last_error FROM sources")[0]
    assert "403" in error


@pytest.fixture
def oauth(httpd):
    """Reddit's token endpoint and OAuth API on loopback; tokens are `tok-1`, `tok-2`, ..."""
    reddit_module._tokens.clear()
    issued: list[str] = []
    basic = "Basic " + base64.b64encode(b"app-id:app-secret").decode()
    unauthorized = b'{"message": "Unauthorized", "error": 401}'

    def token(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("authorization") != basic:
            return 401, {"Content-Type": "application/json"}, unauthorized
        form = parse_qs(request.body.decode())
        if form.get("password") == ["wrong"]:
            return 200, {"Content-Type": "application/json"}, b'{"error": "invalid_grant"}'
        issued.append(f"tok-{len(issued) + 1}")
        body = {
            "access_token": issued[-1],
            "token_type": "bearer",
            "expires_in": 86400,
            "scope": "*",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def api(name: str):
        def handler(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
            if not issued or request.headers.get("authorization") != f"bearer {issued[-1]}":
                return 401, {"Content-Type": "application/json"}, unauthorized
            body = (FIXTURES / name).read_bytes()
            return 200, {"Content-Type": "application/json; charset=UTF-8"}, body

        return handler

    httpd.add("/api/v1/access_token", handler=token)
    httpd.add("/search", handler=api("oauth_search.json"))
    httpd.add("/comments/1gx1abc", handler=api("oauth_comments_1gx1abc.json"))
    yield httpd
    reddit_module._tokens.clear()


def oauth_source(base_url: str, extra: str = "") -> str:
    keys = (
        "    query: acme\n    client_id: app-id\n    client_secret: ${REDDIT_SECRET}\n"
        f"    oauth_base_url: {base_url}\n{extra}"
    )
    return reddit_source(base_url, keys)


def test_oauth_reads_the_api_with_the_same_items_as_the_feeds(tmp_path, oauth):
    extra = "    username: bot\n    password: ${REDDIT_PASSWORD}\n"
    cfg = write_config(tmp_path, [], extra=oauth_source(oauth.base_url, extra))
    summary = poll(cfg, env={"REDDIT_SECRET": "app-secret", "REDDIT_PASSWORD": "hunter2"})
    assert summary.failed == 0, [r.error for r in summary.reports]
    # One token for the poll and the thread it followed, from a password grant.
    (token_request,) = oauth.requests_for("/api/v1/access_token")
    assert token_request.method == "POST"
    assert parse_qs(token_request.body.decode()) == {
        "grant_type": ["password"],
        "username": ["bot"],
        "password": ["hunter2"],
    }
    (search,) = oauth.requests_for("/search")
    assert search.headers["authorization"] == "bearer tok-1"
    assert parse_qs(urlsplit(search.path).query) == {
        "q": ["acme"],
        "sort": ["new"],
        "type": ["link"],
        "limit": ["100"],
        "raw_json": ["1"],
    }
    items = {
        r[0]: r[1:]
        for r in rows(
            tmp_path, "SELECT native_id, url, thread_key, is_reply, author, text FROM items"
        )
    }
    # Same ids, URLs and thread keys as the Atom feeds give.
    assert items["t3_1gx2k9a"][:2] == (
        "https://news.example.com/2026/11/acme-recall",
        "reddit:1gx2k9a",
    )
    assert items["t3_1gx1abc"][0] == (
        "https://www.reddit.com/r/acme/comments/1gx1abc/rocket_skates_broke_on_day_one"
    )
    assert items["t3_1gx1abc"][3] == "/u/road_runner"
    assert items["t3_1gx1abc"][4].endswith("Acme support is terrible and I want a refund.")
    # The thread: nested replies flattened; "more" stubs and deleted comments skipped.
    assert oauth.hits["/comments/1gx1abc"] == 1
    assert oauth.requests_for("/comments/1gx1abc")[0].headers["authorization"] == "bearer tok-1"
    assert items["t1_lz3q8k1"][1:3] == ("reddit:1gx1abc", 1)
    assert items["t1_lz3r0aa"][1:3] == ("reddit:1gx1abc", 1)
    assert "t1_lz3r9zz" not in items and "t1_lz3s111" not in items
    assert rows(tmp_path, "SELECT parent_key FROM items WHERE native_id = 't1_lz3r0aa'") == [
        ("t1_lz3q8k1",)
    ]
    # Secrets stay out of the database.
    stored = rows(tmp_path, "SELECT * FROM fetches") + rows(tmp_path, "SELECT * FROM sources")
    dump = "\n".join(str(r) for r in stored)
    assert "hunter2" not in dump and "app-secret" not in dump and "tok-1" not in dump


def test_an_expired_token_is_renewed_once(tmp_path, oauth):
    reddit_module._tokens[(oauth.base_url, "app-id", "", "")] = (
        "stale-token",
        datetime(2030, 1, 1, tzinfo=UTC),
    )
    cfg = write_config(
        tmp_path, [], extra=oauth_source(oauth.base_url, "    follow_threads: false\n")
    )
    (report,) = poll(cfg, env={"REDDIT_SECRET": "app-secret"}).reports
    assert report.ok and report.new_items == 2
    # The stale token got a 401; a new one (app-only grant: no user) was fetched and used.
    assert [r.headers["authorization"] for r in oauth.requests_for("/search")] == [
        "bearer stale-token",
        "bearer tok-1",
    ]
    (token_request,) = oauth.requests_for("/api/v1/access_token")
    assert parse_qs(token_request.body.decode()) == {"grant_type": ["client_credentials"]}


def test_refused_credentials_are_a_source_failure_with_the_remedy(tmp_path, oauth):
    extra = "    username: bot\n    password: wrong\n"
    cfg = write_config(tmp_path, [], extra=oauth_source(oauth.base_url, extra))
    (report,) = poll(cfg, env={"REDDIT_SECRET": "app-secret"}).reports
    assert not report.ok and "refused the OAuth credentials (invalid_grant)" in report.error
    assert oauth.hits["/search"] == 0
    bad_secret = write_config(tmp_path, [], extra=oauth_source(oauth.base_url))
    (report,) = poll(bad_secret, env={"REDDIT_SECRET": "nope"}).reports
    assert not report.ok and "refused the OAuth credentials (HTTP 401)" in report.error
    assert "nope" not in report.error


def test_oauth_options_are_checked(tmp_path):
    both = "    query: acme\n    client_id: a\n    client_secret: b\n    username: u\n"
    for keys, message in [
        ("    query: acme\n    client_id: abc\n", "needs client_id and client_secret"),
        (both, "go together"),
        (both + "    password: p\n    refresh_token: r\n", "not both"),
    ]:
        cfg = write_config(tmp_path, [], extra=reddit_source("https://www.reddit.com", keys))
        with pytest.raises(ConfigError, match=message):
            load_config(cfg, env={})


def test_a_source_needs_a_query_or_a_subreddit(tmp_path):
    cfg = write_config(tmp_path, [], extra="  - name: r\n    kind: reddit\n")
    with pytest.raises(ConfigError, match="needs `query:`, `subreddit:` or both"):
        load_config(cfg, env={})
    bad = write_config(
        tmp_path, [], extra="  - name: r\n    kind: reddit\n    subreddit: 'acme corp'\n"
    )
    with pytest.raises(ConfigError, match="not a subreddit name"):
        load_config(bad, env={})


def test_requests_to_reddit_are_spaced_by_the_request_interval(httpd):
    """Two requests in a row (poll, then a thread) wait the interval between them."""
    httpd.add("/search.rss", (FIXTURES / "search_link_post.atom").read_bytes(), content_type=ATOM)
    httpd.add(
        "/comments/1gx1abc/.rss",
        (FIXTURES / "comments_1gx1abc.atom").read_bytes(),
        content_type=ATOM,
    )
    waits: list[float] = []
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    spec = SourceSpec(
        name="reddit",
        kind="reddit",
        every_s=600,
        options={"query": "acme", "base_url": httpd.base_url},  # default interval: 6 s
    )

    async def main() -> None:
        async with Fetcher(sleep=sleep, clock=lambda: clock[0], transport="httpx") as fetcher:
            ctx = PollContext(spec=spec, fetcher=fetcher, state=SourceState(), now=lambda: NOW)
            first = await reddit_poll(ctx)
            assert first.error is None and len(first.items) == 2
            post = next(it for it in first.items if it.native_id == "t3_1gx1abc")
            thread = await fetch_thread(ctx, "reddit:1gx1abc", post.thread_url or "")
            assert thread.error is None and len(thread.items) == 3

    asyncio.run(main())
    assert waits == [6.0]


def test_worker_processes_analyse_reddit_items_as_the_polling_process_does(tmp_path, reddit):
    """Big polls parse and score in workers; Reddit reorders and rewrites the parsed items after,
    so what a worker found must not be paired with the wrong post."""
    from listener.pipeline import poll_sources
    from listener.runtime import open_runtime

    found = {}
    for workers in (0, 1):
        run_dir = tmp_path / f"w{workers}"
        run_dir.mkdir()
        config = load_config(
            write_config(run_dir, [], extra=reddit_source(reddit.base_url)), env={}
        )

        async def main(config=config, workers=workers) -> None:
            async with open_runtime(config, workers=workers, now=lambda: NOW) as rt:
                summary = await poll_sources(list(config.sources), rt)
                assert summary.failed == 0, [r.error for r in summary.reports]

        asyncio.run(main())
        found[workers] = rows(
            run_dir, "SELECT url, brand, label, compound, snippet FROM mentions ORDER BY url, brand"
        )
    assert found[0] == found[1]
    labels = {url.rstrip("/").rsplit("/", 1)[-1]: label for url, _, label, _, _ in found[0]}
    assert labels["rocket_skates_broke_on_day_one"] == "negative"


# ---------------------------------------------------------------------------------------------
# The host budget (Reddit since June 2026: about one request a minute per IP)
# ---------------------------------------------------------------------------------------------

SEARCH_FEED = (FIXTURES / "search_link_post.atom").read_bytes()
EMPTY_FEED = (
    b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>'
)


def search_with(*post_ids: str) -> bytes:
    """The search fixture with only the entries of `post_ids`."""
    head, _, rest = SEARCH_FEED.partition(b"<entry>")
    entries = [b"<entry>" + e for e in rest.split(b"<entry>")]
    kept = [e for e in entries if any(f"<id>t3_{p}</id>".encode() in e for p in post_ids)]
    tail = b"" if kept and kept[-1].endswith(b"</feed>") else b"</feed>"
    return head + b"".join(kept) + tail


def budget_source(base_url: str, per_minute: float, name: str = "reddit") -> str:
    return (
        f"  - name: {name}\n    kind: reddit\n    query: acme\n    base_url: {base_url}\n"
        f"    request_interval: 0\n    requests_per_minute: {per_minute}\n"
    )


def status_of(cfg: Path) -> str:
    from click.testing import CliRunner

    from listener.cli import cli

    result = CliRunner().invoke(cli, ["-c", str(cfg), "status"])
    assert result.exit_code == 0, result.output
    return result.output


def test_budget_is_spent_on_the_search_first_then_on_the_freshest_thread(tmp_path, httpd):
    feed = {"body": search_with("1gx2k9a")}
    httpd.add("/search.rss", handler=lambda info: (200, {"Content-Type": ATOM}, feed["body"]))
    httpd.add("/comments/1gx2k9a/.rss", EMPTY_FEED, content_type=ATOM)
    httpd.add(
        "/comments/1gx1abc/.rss",
        (FIXTURES / "comments_1gx1abc.atom").read_bytes(),
        content_type=ATOM,
    )
    # 0.2 a minute: at most two requests saved up (ten minutes' worth).
    cfg = write_config(tmp_path, [], extra=budget_source(httpd.base_url, 0.2))
    clock = Clock(NOW)

    # A fresh budget: the search, then the brand thread it found.
    assert poll_once(cfg, now=clock).failed == 0
    assert len(httpd.requests_for("/search.rss")) == 1
    assert len(httpd.requests_for("/comments/1gx2k9a/.rss")) == 1

    # Polled again at once (cron, a restart): the budget is spent. The search still goes, the
    # thread read waits: search first.
    assert poll_once(cfg, now=clock).failed == 0
    assert len(httpd.requests_for("/search.rss")) == 2
    assert len(httpd.requests_for("/comments/1gx2k9a/.rss")) == 1
    assert "behind by" in status_of(cfg)

    # An hour on, a second post arrives; room for the search and one thread: the thread with
    # the freshest activity gets it, the older one waits.
    feed["body"] = search_with("1gx2k9a", "1gx1abc")
    clock.now = NOW + timedelta(hours=1)
    assert poll_once(cfg, now=clock).failed == 0
    assert len(httpd.requests_for("/search.rss")) == 3
    assert len(httpd.requests_for("/comments/1gx1abc/.rss")) == 1
    assert len(httpd.requests_for("/comments/1gx2k9a/.rss")) == 1
    (budget,) = rows(tmp_path, "SELECT host, spent, deferred FROM host_budgets")
    assert budget == ("127.0.0.1", 2, 1)  # this hour: the search and one thread; one deferred
    out = status_of(cfg)
    assert "127.0.0.1: 0.2 request(s)/min; 2 spent, 1 deferred this hour; behind by" in out


def test_budget_is_shared_by_every_reddit_source_on_the_host(tmp_path, httpd):
    httpd.add("/search.rss", search_with("1gx2k9a"), content_type=ATOM)
    httpd.add("/comments/1gx2k9a/.rss", EMPTY_FEED, content_type=ATOM)
    extra = budget_source(httpd.base_url, 0.1, "reddit-a") + budget_source(
        httpd.base_url, 0.1, "reddit-b"
    )
    cfg = write_config(tmp_path, [], extra=extra)
    assert poll_once(cfg, now=Clock(NOW)).failed == 0
    # One request saved up: both searches go (search first), the thread read waits.
    assert len(httpd.requests_for("/search.rss")) == 2
    assert httpd.requests_for("/comments/1gx2k9a/.rss") == []
    assert rows(tmp_path, "SELECT count(*), sum(spent), sum(deferred) FROM host_budgets") == [
        (1, 2, 2)
    ]


def test_ratelimit_headers_stop_thread_reads_and_hold_the_next_poll(tmp_path, httpd):
    httpd.add(
        "/search.rss",
        SEARCH_FEED,
        content_type=ATOM,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-used": "1", "x-ratelimit-reset": "300"},
    )
    httpd.add("/comments/1gx1abc/.rss", EMPTY_FEED, content_type=ATOM)
    httpd.add("/comments/1gx2k9a/.rss", EMPTY_FEED, content_type=ATOM)
    cfg = write_config(tmp_path, [], extra=budget_source(httpd.base_url, 1))
    # `status` reads the wall clock: this test runs on it.
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)
    assert poll_once(cfg, now=clock).failed == 0
    # Our own count would allow ten; Reddit said none are left: no thread is read.
    assert httpd.requests_for("/comments/1gx1abc/.rss") == []
    assert httpd.requests_for("/comments/1gx2k9a/.rss") == []
    reset = start + timedelta(seconds=300)
    assert f"blocked until {reset:%H:%M:%S} UTC (x-ratelimit-remaining: 0)" in status_of(cfg)

    # Two minutes later Reddit's window has not reset: the poll asks nothing, and is no failure.
    clock.now = start + timedelta(minutes=2)
    summary = poll_once(cfg, now=clock)
    assert summary.failed == 0 and summary.reports[0].not_modified
    assert len(httpd.requests_for("/search.rss")) == 1

    # After the reset, it polls again.
    clock.now = start + timedelta(minutes=6)
    assert poll_once(cfg, now=clock).failed == 0
    assert len(httpd.requests_for("/search.rss")) == 2


def test_429_without_retry_after_backs_off_and_doubles(tmp_path, httpd):
    httpd.add("/search.rss", b"Too Many Requests", status=429, content_type="text/plain")
    cfg = write_config(tmp_path, [], extra=budget_source(httpd.base_url, 1))
    clock = Clock(NOW)
    report = poll_once(cfg, now=clock).reports[0]
    assert report.error and "rate limiting" in report.error
    # One request: no retry inside the poll, which would only spend more of the budget.
    assert len(httpd.requests_for("/search.rss")) == 1
    assert rows(tmp_path, "SELECT blocked_until FROM host_budgets") == [
        ((NOW + timedelta(minutes=1)).isoformat(),)
    ]
    # Inside the backoff: no request at all (a poll now would only earn another 429).
    clock.now = NOW + timedelta(seconds=30)
    poll_once(cfg, now=clock)
    assert len(httpd.requests_for("/search.rss")) == 1
    # After it: asked again; another 429 doubles the backoff.
    clock.now = NOW + timedelta(minutes=3)
    poll_once(cfg, now=clock)
    assert len(httpd.requests_for("/search.rss")) == 2
    assert rows(tmp_path, "SELECT blocked_until, throttled FROM host_budgets") == [
        ((NOW + timedelta(minutes=5)).isoformat(), 2)
    ]


BLOCKED_HTML = (
    b"<!DOCTYPE html><html><head><title>Blocked</title></head><body><h1>whoa there, pardner!"
    b"</h1><p>You've been blocked by network security.</p><p>To continue, log in to your "
    b"Reddit account or use your developer token</p></body></html>"
)


@pytest.mark.parametrize("status", [403, 200])
def test_network_security_page_is_a_clear_source_error(tmp_path, httpd, status):
    httpd.add("/search.rss", BLOCKED_HTML, status=status, content_type="text/html; charset=utf-8")
    cfg = write_config(tmp_path, [], extra=budget_source(httpd.base_url, 1))
    report = poll_once(cfg, now=Clock(NOW)).reports[0]
    assert report.error is not None and "blocked this network" in report.error
    assert "OAuth" in report.error
    (error,) = rows(tmp_path, "SELECT last_error FROM sources WHERE name = 'reddit'")[0]
    assert "network security" in error


def test_check_warns_when_reddit_searches_need_more_than_the_budget(tmp_path):
    from click.testing import CliRunner

    from listener.cli import cli

    def sources(every: str) -> str:
        return "".join(
            f"  - name: r{i}\n    kind: reddit\n    query: acme{i}\n    every: {every}\n"
            for i in range(3)
        )

    busy = write_config(tmp_path, [], extra=sources("2m"))
    result = CliRunner().invoke(cli, ["-c", str(busy), "check"])
    assert result.exit_code == 0, result.output
    assert "warning: Reddit sources on www.reddit.com (r0, r1, r2) need 90 requests an hour" in (
        result.output
    )
    assert "allows about 60 an hour" in result.output and "every: 3m" in result.output

    calm = write_config(tmp_path, [], extra=sources("10m"))
    result = CliRunner().invoke(cli, ["-c", str(calm), "check"])
    assert result.exit_code == 0 and "warning" not in result.output
