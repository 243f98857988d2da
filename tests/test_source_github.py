"""`kind: github` against a loopback server answering like the REST API's issue search."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from helpers import Clock, kind_source, poll_kind, poll_once, rows, source_cursor, write_config
from helpers import query_params as q
from httpd import LoopbackServer, RequestInfo

from listener.models import SourceSpec
from listener.sources import SourceState

FIXTURES = Path(__file__).parent / "fixtures" / "github"
SEARCH = "/search/issues"
COMMENTS = "/repos/octo-org/skate-park/issues/42/comments"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
Answer = tuple[int, dict[str, str], bytes]


def rate_headers(
    remaining: int = 29, reset: datetime = NOW + timedelta(minutes=1)
) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-RateLimit-Limit": "30",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int(reset.timestamp())),
        "X-RateLimit-Used": str(30 - remaining),
        "X-RateLimit-Resource": "search",
    }


def answer(
    server: LoopbackServer, name: str, status: int = 200, headers: dict[str, str] | None = None
) -> Answer:
    # The API's own links point at the API host: a mirror answers with its own.
    body = (
        (FIXTURES / name).read_bytes().replace(b"https://api.github.com", server.base_url.encode())
    )
    return status, headers or rate_headers(), body


def search_route(
    server: LoopbackServer, issues: str, prs: str, **kw
) -> Callable[[RequestInfo], Answer]:
    def handle(info: RequestInfo) -> Answer:
        return answer(server, issues if "is:issue" in q(info)["q"] else prs, **kw)

    return handle


def config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    source = kind_source(
        "gh", "github", extra, query="acme", base_url=base_url, request_interval=0, every="10m"
    )
    return write_config(tmp_path, [], extra=source)


# A poll through the pipeline, at NOW unless a test moves its own clock.
run_poll = partial(poll_once, now=Clock(NOW))


def cursor(tmp_path: Path) -> dict:
    return source_cursor(tmp_path, "gh")


@pytest.fixture
def api(httpd):
    httpd.add(
        SEARCH, handler=search_route(httpd, "search_issues_newest.json", "search_prs_newest.json")
    )

    def comments(info: RequestInfo) -> Answer:
        if q(info).get("page") == "2":
            return answer(httpd, "comments_page2.json")
        status, headers, body = answer(httpd, "comments_page1.json")
        next_url = httpd.url(COMMENTS + "?per_page=100&page=2")
        last_url = httpd.url(COMMENTS + "?per_page=100&page=2")
        headers = {**headers, "Link": f'<{next_url}>; rel="next", <{last_url}>; rel="last"'}
        return status, headers, body

    httpd.add(COMMENTS, handler=comments)
    httpd.add(
        "/repos/Octo-Org/Skate-Park/issues/43/comments",
        "[]",
        content_type="application/json; charset=utf-8",
    )
    return httpd


def test_issues_prs_and_comments_land_in_the_database(tmp_path, api):
    cfg = config(tmp_path, api.base_url, "    token: ${GITHUB_TOKEN}\n")
    summary = run_poll(cfg, env={"GITHUB_TOKEN": "ghp_secret123"})
    assert summary.failed == 0, summary.reports[0].error

    mentions = dict(
        (r[0], r[1:])
        for r in rows(tmp_path, "SELECT thread_key, url, label, author, title FROM mentions")
    )
    issue = mentions["github:octo-org/skate-park#42"]
    assert issue[:3] == (
        "https://github.com/octo-org/skate-park/issues/42",
        "negative",
        "skater-jane",
    )
    assert issue[3] == "Acme Rocket Skates SDK crashes on upload"
    # The PR's repository is spelled with capitals by the API; its thread key is stable anyway.
    pr = mentions["github:octo-org/skate-park#43"]
    assert pr[0] == "https://github.com/Octo-Org/Skate-Park/pull/43" and pr[1] == "positive"
    # Issue-template comments are not part of the text.
    (text,) = rows(tmp_path, "SELECT text FROM items WHERE author = 'skater-jane'")[0]
    assert "Please fill in the template" not in text and "crashes every time" in text

    # One search per type, with the token and API version; newest first on a first poll.
    searches = api.requests_for(SEARCH)
    assert sorted(q(r)["q"] for r in searches) == [
        "acme in:title,body is:issue",
        "acme in:title,body is:pull-request",
    ]
    for r in searches:
        assert r.headers["authorization"] == "Bearer ghp_secret123"
        assert r.headers["x-github-api-version"] == "2022-11-28"
        assert r.headers["accept"] == "application/vnd.github+json"
        assert q(r)["sort"] == "created" and q(r)["order"] == "desc"

    # The brand issue's comments were followed through both pages of its Link header.
    assert [q(r).get("page") for r in api.requests_for(COMMENTS)] == [None, "2"]
    replies = rows(
        tmp_path,
        "SELECT author, is_reply, relevant, url FROM items WHERE thread_key = ? AND is_reply = 1 "
        "ORDER BY published_at",
        "github:octo-org/skate-park#42",
    )
    assert [r[:3] for r in replies] == [("dev-bob", 1, 1), ("maintainer-max", 1, 1)]
    assert replies[0][3] == "https://github.com/octo-org/skate-park/issues/42"
    thread = rows(
        tmp_path,
        "SELECT posts, negative_posts FROM threads WHERE key = ?",
        "github:octo-org/skate-park#42",
    )
    assert thread == [(3, 2)]
    assert cursor(tmp_path)["rate"]["remaining"] == 29
    assert "ghp_secret123" not in json.dumps(rows(tmp_path, "SELECT * FROM fetches"))


def test_cursor_resumes_after_restart_without_duplicates(tmp_path, api):
    cfg = config(tmp_path, api.base_url, "    follow_threads: false\n")
    run_poll(cfg)
    assert cursor(tmp_path)["since"] == {
        "issue": "2026-03-10T09:00:01+00:00",
        "pr": "2026-03-10T10:00:01+00:00",
    }
    api.add(SEARCH, handler=search_route(api, "search_issues_resume.json", "search_empty.json"))
    api.reset()
    summary = run_poll(cfg)  # a new runtime on the same database: a restart
    assert summary.failed == 0, summary.reports[0].error

    sent = sorted(q(r)["q"] for r in api.requests_for(SEARCH))
    assert sent == [
        "acme in:title,body is:issue created:>=2026-03-10T09:00:01+00:00",
        "acme in:title,body is:pull-request created:>=2026-03-10T10:00:01+00:00",
    ]
    assert {q(r)["order"] for r in api.requests_for(SEARCH)} == {"asc"}
    # Issue 42 came back anyway (a server may round times): still one item.
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(3,)]
    assert cursor(tmp_path)["since"]["issue"] == "2026-03-10T11:00:01+00:00"


def test_bad_token_is_a_clear_error_with_the_remedy(tmp_path, httpd):
    httpd.add(
        SEARCH,
        handler=lambda info: answer(
            httpd, "bad_credentials.json", 401, {"Content-Type": "application/json; charset=utf-8"}
        ),
    )
    cfg = config(tmp_path, httpd.base_url, "    token: ${GITHUB_TOKEN}\n")
    report = run_poll(cfg, env={"GITHUB_TOKEN": "ghp_expired"}).reports[0]
    assert not report.ok
    assert "rejected the token (HTTP 401, bad credentials)" in report.error
    assert "GITHUB_TOKEN" in report.error and "ghp_expired" not in report.error
    assert len(httpd.requests_for(SEARCH)) == 1  # a 401 is not retried
    assert rows(tmp_path, "SELECT consecutive_failures FROM sources") == [(1,)]


def test_used_up_search_limit_skips_polls_until_the_reset(tmp_path, httpd):
    reset = NOW + timedelta(seconds=45)
    httpd.add(
        SEARCH,
        handler=search_route(
            httpd,
            "search_issues_newest.json",
            "search_prs_newest.json",
            headers=rate_headers(remaining=0, reset=reset),
        ),
    )
    cfg = config(tmp_path, httpd.base_url, "    follow_threads: false\n")
    clock = Clock(NOW)
    report = run_poll(cfg, now=clock).reports[0]
    assert report.ok and report.new_items == 1
    assert len(httpd.requests_for(SEARCH)) == 1  # the PR search waits for the reset
    assert cursor(tmp_path)["not_before"] == reset.isoformat()

    clock.now = NOW + timedelta(seconds=30)
    report = run_poll(cfg, now=clock).reports[0]
    assert report.ok and report.not_modified
    assert len(httpd.requests_for(SEARCH)) == 1

    clock.now = NOW + timedelta(seconds=46)
    run_poll(cfg, now=clock)
    assert len(httpd.requests_for(SEARCH)) == 2


def test_secondary_rate_limit_reports_and_keeps_the_retry_after(httpd):
    headers = {"Content-Type": "application/json; charset=utf-8", "Retry-After": "600"}
    httpd.add(SEARCH, handler=lambda info: answer(httpd, "secondary_rate_limit.json", 403, headers))
    spec = SourceSpec(
        name="gh",
        kind="github",
        every_s=600,
        options={"query": "acme", "base_url": httpd.base_url, "request_interval": 0},
    )
    state = SourceState(cursor={"since": {"issue": "2026-03-01T00:00:00+00:00"}})
    result = poll_kind(spec, state, now=Clock(NOW))
    assert result.error is not None
    assert "secondary rate limit" in result.error and "2026-03-10 12:10:00 UTC" in result.error
    assert "a token raises the search limit" in result.error
    assert result.cursor is not None
    assert result.cursor["since"] == {"issue": "2026-03-01T00:00:00+00:00"}
    assert result.cursor["not_before"] == "2026-03-10T12:10:00+00:00"


def test_rejected_query_names_the_query(tmp_path, httpd):
    httpd.add(
        SEARCH,
        handler=lambda info: answer(
            httpd, "validation_failed.json", 422, {"Content-Type": "application/json"}
        ),
    )
    report = run_poll(config(tmp_path, httpd.base_url)).reports[0]
    assert not report.ok and "check `query:`" in report.error
    # In our words, not GitHub's ("cannot be searched either because ...").
    assert "does not exist or is not visible to the token" in report.error
    assert "cannot be searched" not in report.error


@pytest.mark.parametrize(
    "body",
    [
        (FIXTURES / "search_issues_newest.json").read_bytes()[:900],
        b"<html><body><h1>Unicorn! This page is taking too long to load.</h1></body></html>",
    ],
    ids=["truncated", "html"],
)
def test_malformed_body_is_a_source_error_not_a_crash(tmp_path, httpd, body):
    httpd.add(SEARCH, body, content_type="application/json")
    report = run_poll(config(tmp_path, httpd.base_url)).reports[0]
    assert not report.ok
    assert "not valid JSON" in report.error or "HTML page" in report.error
    assert "internal error" not in report.error
