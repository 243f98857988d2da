"""`kind: bluesky` against a loopback server speaking XRPC: app-password session, search, threads."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from helpers import kind_source, poll_kind, poll_once, rows, write_config
from helpers import query_params as q
from httpd import LoopbackServer, RequestInfo

from listener.config import ConfigError, load_config
from listener.models import FetchLimits, SourceSpec
from listener.pipeline import PollSummary, poll_sources
from listener.runtime import open_runtime
from listener.sources import SourceState
from listener.sources.bluesky import forget_sessions

FIXTURES = Path(__file__).parent / "fixtures" / "bluesky"
X = "/xrpc/"
LOGIN = X + "com.atproto.server.createSession"
REFRESH = X + "com.atproto.server.refreshSession"
SEARCH = X + "app.bsky.feed.searchPosts"
THREAD = X + "app.bsky.feed.getPostThread"
ROOT = "at://did:plc:w4xbfzo7kqfes5zb7r6qv3rw/app.bsky.feed.post/3lk7r2qkxwc2a"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ENV = {"BSKY_HANDLE": "listener-bot.bsky.social", "BSKY_APP_PASSWORD": "abcd-efgh-ijkl-mnop"}
Answer = tuple[int, dict[str, str], bytes]
JSON = {"Content-Type": "application/json; charset=utf-8"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FakePds:
    """Routes of a PDS on the loopback server; `valid` is the access token it accepts now."""

    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.valid = {"ACCESS-JWT-1"}
        self.accept_refreshed = True
        self.refresh_ok = True
        self.logins = 0
        self.search_body = "search_latest.json"
        server.add(LOGIN, handler=self.login)
        server.add(REFRESH, handler=self.refresh)
        server.add(SEARCH, handler=self.authed(lambda info: fixture(self.search_body)))
        server.add(THREAD, handler=self.authed(self.thread))

    def thread(self, info: RequestInfo) -> bytes:
        uri = q(info)["uri"]
        if uri == ROOT:
            return fixture("post_thread.json")
        posts = json.loads(fixture("search_latest.json"))["posts"]
        (post,) = [p for p in posts if p["uri"] == uri]
        view = {"$type": "app.bsky.feed.defs#threadViewPost", "post": post, "replies": []}
        return json.dumps({"thread": view}).encode()

    def login(self, info: RequestInfo) -> Answer:
        body = json.loads(info.body)
        if body != {"identifier": ENV["BSKY_HANDLE"], "password": ENV["BSKY_APP_PASSWORD"]}:
            return 401, JSON, fixture("bad_login.json")
        self.logins += 1
        # Each login hands out new tokens: ACCESS-JWT-1, then ACCESS-JWT-3, ...
        token = f"ACCESS-JWT-{2 * self.logins - 1}".encode()
        return 200, JSON, fixture("create_session.json").replace(b"ACCESS-JWT-1", token)

    def refresh(self, info: RequestInfo) -> Answer:
        if not self.refresh_ok or info.headers.get("authorization") != "Bearer REFRESH-JWT-1":
            return 400, JSON, fixture("expired_token.json")
        if self.accept_refreshed:
            self.valid.add("ACCESS-JWT-2")
        return 200, JSON, fixture("refresh_session.json")

    def authed(self, body: Callable[[RequestInfo], bytes]) -> Callable[[RequestInfo], Answer]:
        def handle(info: RequestInfo) -> Answer:
            token = info.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.valid:
                return 400, JSON, fixture("expired_token.json")
            return 200, JSON, body(info)

        return handle


@pytest.fixture(autouse=True)
def no_cached_sessions() -> Iterator[None]:
    forget_sessions()
    yield
    forget_sessions()


@pytest.fixture
def pds(httpd) -> FakePds:
    return FakePds(httpd)


def config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    source = kind_source(
        "bsky",
        "bluesky",
        extra,
        query="acme",
        identifier="${BSKY_HANDLE}",
        app_password="${BSKY_APP_PASSWORD}",
        base_url=f"{base_url}/xrpc",
        request_interval=0,
        every="10m",
    )
    return write_config(tmp_path, [], extra=source)


run_poll = partial(poll_once, now=lambda: NOW, env=ENV)


def database_text(tmp_path: Path) -> str:
    conn = sqlite3.connect(tmp_path / "mentions.db")
    try:
        return "\n".join(str(r) for line in conn.iterdump() for r in [line])
    finally:
        conn.close()


def test_signed_in_search_lands_posts_and_threads_in_the_database(tmp_path, pds, caplog):
    cfg = config(tmp_path, pds.server.base_url)
    with caplog.at_level(logging.DEBUG):
        summary = run_poll(cfg)
    assert summary.failed == 0, summary.reports[0].error

    mentions = {
        r[0]: r[1:]
        for r in rows(tmp_path, "SELECT url, label, thread_key, author, product FROM mentions")
    }
    root = mentions["https://bsky.app/profile/jane.bsky.social/post/3lk7r2qkxwc2a"]
    assert root[:3] == ("negative", f"bsky:{ROOT}", "jane.bsky.social")
    reply = mentions["https://bsky.app/profile/omar.example.com/post/3lk7r5dmd7s2b"]
    assert reply[:3] == ("negative", f"bsky:{ROOT}", "omar.example.com")  # the reply root's thread
    review = mentions["https://bsky.app/profile/pat.bsky.social/post/3lk7rbb3wmk2c"]
    assert review[0] == "positive" and review[3] == "Rocket Skates"

    # One login with the app password, then bearer-authenticated search, newest first.
    (login,) = pds.server.requests_for(LOGIN)
    assert login.method == "POST"
    (search,) = pds.server.requests_for(SEARCH)
    assert search.headers["authorization"] == "Bearer ACCESS-JWT-1"
    assert q(search) == {"q": "acme", "sort": "latest", "limit": "50"}

    # The brand thread was read: the nested reply that never names Acme joins the conversation;
    # not-found and blocked replies are skipped.
    followed = sorted(q(r)["uri"] for r in pds.server.requests_for(THREAD))
    assert followed == [
        ROOT,
        "at://did:plc:z72i7hdynmk6r22z27h6tvur/app.bsky.feed.post/3lk7rbb3wmk2c",
    ]
    nested = rows(
        tmp_path,
        "SELECT author, is_reply, relevant, thread_key FROM items WHERE url LIKE '%3lk7r6o2nhc2e'",
    )
    assert nested == [("jane.bsky.social", 1, 1, f"bsky:{ROOT}")]
    assert rows(tmp_path, "SELECT posts FROM threads WHERE key = ?", f"bsky:{ROOT}") == [(3,)]

    # Tokens and the password live in memory only: not in the database, not in the logs.
    stored = database_text(tmp_path)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("ACCESS-JWT", "REFRESH-JWT", ENV["BSKY_APP_PASSWORD"]):
        assert secret not in stored and secret not in logged


def test_cursor_resumes_after_restart_and_the_session_is_reused(tmp_path, pds):
    cfg = config(tmp_path, pds.server.base_url, "    follow_threads: false\n")
    run_poll(cfg)
    (value,) = rows(tmp_path, "SELECT cursor FROM sources")[0]
    assert json.loads(value) == {"since": "2026-03-10T10:00:00+00:00"}
    pds.search_body = "search_resume.json"
    pds.server.reset()
    summary = run_poll(cfg)  # a new runtime on the same database: a restart of the poll
    assert summary.failed == 0, summary.reports[0].error

    assert pds.server.requests_for(LOGIN) == []  # the session of this process is reused
    (search,) = pds.server.requests_for(SEARCH)
    assert q(search)["since"] == "2026-03-10T10:00:00.001Z"  # just after the newest seen
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(4,)]  # the review came back: no copy
    (value,) = rows(tmp_path, "SELECT cursor FROM sources")[0]
    assert json.loads(value) == {"since": "2026-03-10T11:00:00+00:00"}


def test_expired_token_is_refreshed_once_and_the_search_retried(tmp_path, pds):
    cfg = config(tmp_path, pds.server.base_url, "    follow_threads: false\n")
    run_poll(cfg)
    pds.valid = set()  # the access token expires; the refresh token still works
    pds.search_body = "search_resume.json"
    pds.server.reset()
    summary = run_poll(cfg)
    assert summary.failed == 0, summary.reports[0].error

    (refresh,) = pds.server.requests_for(REFRESH)
    assert refresh.method == "POST" and refresh.headers["authorization"] == "Bearer REFRESH-JWT-1"
    searches = pds.server.requests_for(SEARCH)
    assert [s.headers["authorization"] for s in searches] == [
        "Bearer ACCESS-JWT-1",
        "Bearer ACCESS-JWT-2",
    ]
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(4,)]


def test_expired_refresh_token_signs_in_again(tmp_path, pds):
    cfg = config(tmp_path, pds.server.base_url, "    follow_threads: false\n")
    run_poll(cfg)
    pds.valid = {"ACCESS-JWT-3"}  # the first session is over, refresh token included
    pds.refresh_ok = False
    pds.search_body = "search_resume.json"
    pds.server.reset()
    summary = run_poll(cfg)
    assert summary.failed == 0, summary.reports[0].error
    assert len(pds.server.requests_for(REFRESH)) == 1
    assert len(pds.server.requests_for(LOGIN)) == 1
    assert [s.headers["authorization"] for s in pds.server.requests_for(SEARCH)] == [
        "Bearer ACCESS-JWT-1",
        "Bearer ACCESS-JWT-3",
    ]


def test_token_rejected_after_renewal_is_a_clear_error(tmp_path, pds):
    cfg = config(tmp_path, pds.server.base_url)
    pds.valid = set()  # no access token is ever accepted, not even a renewed one
    pds.accept_refreshed = False
    report = run_poll(cfg).reports[0]
    assert not report.ok
    assert "keeps rejecting the session token" in report.error and "ExpiredToken" in report.error
    # login, search, refresh, search again: then give up rather than loop.
    assert len(pds.server.requests_for(SEARCH)) == 2
    assert len(pds.server.requests_for(REFRESH)) == 1


def test_wrong_app_password_is_a_clear_error(tmp_path, pds):
    cfg = config(tmp_path, pds.server.base_url)
    conf = load_config(cfg, env={**ENV, "BSKY_APP_PASSWORD": "wrong-wrong-wrong-wrong"})

    async def main() -> PollSummary:
        async with open_runtime(conf, now=lambda: NOW) as rt:
            return await poll_sources(conf.sources, rt)

    report = asyncio.run(main()).reports[0]
    assert not report.ok
    assert "login failed for listener-bot.bsky.social" in report.error
    assert "App passwords" in report.error and "wrong-wrong" not in report.error
    assert pds.server.requests_for(SEARCH) == []


def test_missing_credentials_are_a_config_error_about_anonymous_search(tmp_path, httpd):
    source = f"  - name: bsky\n    kind: bluesky\n    query: acme\n    base_url: {httpd.base_url}\n"
    cfg = write_config(tmp_path, [], extra=source)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    message = str(info.value)
    assert "sources[0]" in message and "closed post search to anonymous clients" in message
    assert "app_password" in message


def test_rate_limit_keeps_a_not_before_time(httpd):
    pds = FakePds(httpd)
    reset = NOW + timedelta(minutes=3)
    httpd.add(
        SEARCH,
        handler=lambda info: (
            429,
            {
                **JSON,
                "RateLimit-Limit": "3000",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(int(reset.timestamp())),
                "RateLimit-Policy": "3000;w=300",
            },
            fixture("rate_limited.json"),
        ),
    )
    spec = SourceSpec(
        name="bsky",
        kind="bluesky",
        every_s=600,
        options={
            "query": "acme",
            "identifier": ENV["BSKY_HANDLE"],
            "app_password": ENV["BSKY_APP_PASSWORD"],
            "base_url": pds.server.base_url + "/xrpc",
            "request_interval": 0,
        },
    )
    state = SourceState(cursor={"since": "2026-03-10T08:00:00+00:00"})
    result = poll_kind(spec, state, now=lambda: NOW, limits=FetchLimits(retries=0))
    assert result.error and "rate limit" in result.error and "RateLimitExceeded" in result.error
    assert result.cursor == {
        "since": "2026-03-10T08:00:00+00:00",
        "not_before": "2026-03-10T12:03:00+00:00",
    }


@pytest.mark.parametrize(
    "body",
    [fixture("search_latest.json")[:2000], b"<html><body>Bad Gateway</body></html>"],
    ids=["truncated", "html"],
)
def test_malformed_search_answer_is_a_source_error_not_a_crash(tmp_path, pds, body):
    pds.server.add(SEARCH, handler=lambda info: (200, JSON, body))
    report = run_poll(config(tmp_path, pds.server.base_url)).reports[0]
    assert not report.ok
    assert "not valid JSON" in report.error or "HTML page" in report.error
    assert "internal error" not in report.error


def test_paging_stops_at_posts_already_seen(tmp_path, pds):
    cfg = config(tmp_path, pds.server.base_url, "    follow_threads: false\n")
    run_poll(cfg)
    pds.server.reset()
    # The same page again, still offering a next-page cursor: nothing in it is newer.
    report = run_poll(cfg).reports[0]
    assert report.ok and report.new_items == 0
    assert len(pds.server.requests_for(SEARCH)) == 1


class LimitedPds:
    """A PDS as strict as Bluesky's: a second createSession for the account is refused (the
    login rate limit), refresh tokens rotate (each works once), access tokens expire when told."""

    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.logins = self.refreshes = 0
        self.access: str | None = None
        self.refresh_token: str | None = None
        server.add(LOGIN, handler=self.login)
        server.add(REFRESH, handler=self.refresh)
        server.add(SEARCH, handler=self.search)

    def _issue(self, n: int) -> bytes:
        self.access, self.refresh_token = f"access-{n}", f"refresh-{n}"
        session = {"did": "did:plc:bot", "handle": "listener-bot.bsky.social"}
        return json.dumps(
            {**session, "accessJwt": self.access, "refreshJwt": self.refresh_token}
        ).encode()

    def login(self, info: RequestInfo) -> Answer:
        self.logins += 1
        if self.logins > 1:
            body = b'{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}'
            return 429, {**JSON, "ratelimit-reset": "1900000000"}, body
        return 200, JSON, self._issue(1)

    def refresh(self, info: RequestInfo) -> Answer:
        if info.headers.get("authorization") != f"Bearer {self.refresh_token}":
            return 400, JSON, fixture("expired_token.json")
        self.refreshes += 1
        return 200, JSON, self._issue(100 + self.refreshes)

    def search(self, info: RequestInfo) -> Answer:
        if info.headers.get("authorization") != f"Bearer {self.access}":
            return 400, JSON, fixture("expired_token.json")
        return 200, JSON, fixture("search_latest.json")

    def expire(self) -> None:
        self.access = None


def test_one_login_serves_many_polls_and_restarts(tmp_path, httpd):
    pds = LimitedPds(httpd)
    cfg = config(tmp_path, httpd.base_url, "    follow_threads: false\n")
    for poll_number in range(8):
        forget_sessions()  # a new process each time: nothing kept in memory
        if poll_number == 4:
            pds.expire()  # the access token runs out; the refresh token renews it
        summary = run_poll(cfg)
        assert summary.failed == 0, summary.reports[0].error
    assert pds.logins == 1
    assert pds.refreshes == 1
    # After the renewal, later processes use the renewed session, not the spent refresh token.
    searches = httpd.requests_for(SEARCH)
    assert searches[-1].headers["authorization"] == "Bearer access-101"

    # The tokens live in a file only this user can read, never in the database Datasette shows.
    sessions = tmp_path / "mentions.db.sessions.json"
    assert sessions.stat().st_mode & 0o777 == 0o600
    assert "refresh-101" in sessions.read_text()
    for path in tmp_path.glob("mentions.db*"):
        if path != sessions:
            assert b"access-" not in path.read_bytes() and b"refresh-" not in path.read_bytes()


def test_a_refused_login_is_not_retried_every_poll(tmp_path, httpd):
    pds = LimitedPds(httpd)
    pds.logins = 1  # the account already signed in too often elsewhere
    cfg = config(tmp_path, httpd.base_url, "    follow_threads: false\n")
    (report,) = run_poll(cfg).reports
    assert "limits logins" in report.error
    forget_sessions()
    run_poll(cfg)  # within the wait the service named: no new login attempt
    assert pds.logins == 2
