"""`kind: stackexchange` against a loopback server speaking the API v2.3 wrapper object (gzipped)."""

from __future__ import annotations

import gzip
import logging
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from helpers import Clock, kind_source, poll_kind, poll_once, rows, source_cursor, write_config
from helpers import query_params as query
from httpd import RequestInfo

from listener.config import ConfigError, load_config
from listener.models import SourceSpec
from listener.sources import SourceState
from listener.sources.stackexchange import site_host

FIXTURES = Path(__file__).parent / "fixtures" / "stackexchange"
SEARCH = "/2.3/search/excerpts"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def gzipped(name: str, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    """What the real API sends: always gzip, whatever the request asked for."""
    return (
        status,
        {"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"},
        gzip.compress(fixture(name), mtime=0),
    )


def config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    source = kind_source(
        "so",
        "stackexchange",
        extra,
        query="acme",
        base_url=base_url,
        request_interval=0,
        every="10m",
    )
    return write_config(tmp_path, [], extra=source)


# A poll through the pipeline, at NOW unless a test moves its own clock.
run_poll = partial(poll_once, now=Clock(NOW))


def cursor(tmp_path: Path) -> dict:
    return source_cursor(tmp_path, "so")


def refusing_query_keys(name: str):
    """A handler that behaves like the API since June 2026: a `key=` or `access_token=` in the
    query string is refused with an explanatory error; credentials go in `Authorization`."""

    def handle(info: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        sent = query(info)
        if "key" in sent or "access_token" in sent:
            body = (
                b'{"error_id":400,"error_name":"bad_parameter","error_message":'
                b'"key and access_token are no longer accepted as query parameters; use the '
                b'Authorization header"}'
            )
            return 400, {"Content-Type": "application/json"}, body
        return gzipped(name)

    return handle


@pytest.fixture
def api(httpd):
    httpd.add(SEARCH, handler=refusing_query_keys("search_newest.json"))
    httpd.add("/2.3/questions/79500101/answers", handler=refusing_query_keys("answers.json"))
    return httpd


def test_gzipped_search_lands_questions_answers_and_thread_in_the_database(tmp_path, api):
    cfg = config(tmp_path, api.base_url, "    key: ${SE_KEY}\n")
    summary = run_poll(cfg, env={"SE_KEY": "k3y(("})
    assert summary.failed == 0, summary.reports[0].error

    mentions = rows(
        tmp_path,
        "SELECT url, title, label, thread_key, published_at FROM mentions ORDER BY published_at",
    )
    question, answer = mentions
    # HTML entities in titles decoded; canonical links on the site's own domain.
    assert question[:2] == (
        "https://stackoverflow.com/questions/79500101",
        "Acme SDK keeps timing out – what's wrong?",
    )
    assert question[2] == "negative"
    assert question[3] == answer[3] == "stackexchange:stackoverflow:79500101"
    assert question[4].startswith("2026-03-10T09:00:00")
    assert answer[0] == "https://stackoverflow.com/a/79500112" and answer[2] == "positive"

    # The brand question's answers were followed: the reply that never names Acme is kept as
    # part of the conversation, with its author.
    replies = rows(
        tmp_path,
        "SELECT author, is_reply, relevant FROM items WHERE native_id = 'stackoverflow:a79500190'",
    )
    assert replies == [("frustrated_dev", 1, 1)]
    assert rows(tmp_path, "SELECT posts FROM threads")[0][0] == 3

    (search,) = api.requests_for(SEARCH)
    sent = query(search)
    assert sent["q"] == "acme" and sent["site"] == "stackoverflow"
    assert sent["sort"] == "creation" and sent["order"] == "desc"
    assert "fromdate" not in sent  # nothing to resume from on the first poll
    # The key travels as announced for June 2026: in the Authorization header, never the URL
    # (the server above refuses query-string keys), on the search and on the thread read.
    answers = api.requests_for("/2.3/questions/79500101/answers")
    for request in (search, *answers):
        assert "key" not in query(request)
        assert request.headers["authorization"] == "Bearer k3y(("
    # The key is not written to the fetch log.
    logged = [u for (u,) in rows(tmp_path, "SELECT url FROM fetches")]
    assert logged and not any("k3y" in u for u in logged)
    # Quota as of the search (thread reads cannot update the cursor).
    assert cursor(tmp_path)["quota_remaining"] == 287


def test_cursor_resumes_after_restart_without_duplicates(tmp_path, httpd):
    httpd.add(SEARCH, handler=lambda info: gzipped("search_newest.json"))
    httpd.add("/2.3/questions/79500101/answers", handler=lambda info: gzipped("answers.json"))
    cfg = config(tmp_path, httpd.base_url)
    run_poll(cfg)
    assert cursor(tmp_path)["sites"] == {"stackoverflow": {"fromdate": 1773136800}}
    items_before = rows(tmp_path, "SELECT count(*) FROM items")[0][0]

    def pages(info: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        return gzipped(f"search_resume_page{query(info)['page']}.json")

    httpd.add(SEARCH, handler=pages)
    httpd.add("/2.3/questions/79500230/answers", handler=lambda info: gzipped("answers.json"))
    httpd.reset()
    summary = run_poll(cfg)  # a new runtime on the same database: a restart
    assert summary.failed == 0, summary.reports[0].error

    searches = [query(r) for r in httpd.requests_for(SEARCH)]
    assert [(q["page"], q["fromdate"], q["order"]) for q in searches] == [
        ("1", "1773136800", "asc"),
        ("2", "1773136800", "asc"),
    ]
    # The boundary answer came back on page 1 and is still one item; two new ones arrived.
    assert rows(tmp_path, "SELECT count(*) FROM items")[0][0] == items_before + 2
    assert rows(
        tmp_path, "SELECT count(*) FROM items WHERE native_id = 'stackoverflow:a79500112'"
    ) == [(1,)]
    # Everything was read: the next poll starts just after the newest post.
    assert cursor(tmp_path)["sites"]["stackoverflow"]["fromdate"] == 1773142201
    products = rows(tmp_path, "SELECT product FROM mentions WHERE product IS NOT NULL")
    assert products == [("Rocket Skates",)]


def test_backoff_is_obeyed_across_polls_and_low_quota_is_logged(tmp_path, httpd, caplog):
    httpd.add(SEARCH, handler=lambda info: gzipped("search_backoff.json"))
    cfg = config(tmp_path, httpd.base_url, "    max_pages: 3\n")
    clock = Clock(NOW)
    with caplog.at_level(logging.WARNING, logger="listener.sources.stackexchange"):
        run_poll(cfg, now=clock)
    assert any("quota low: 20 of 300" in r.getMessage() for r in caplog.records)
    state = cursor(tmp_path)
    assert state["not_before"] == (NOW + timedelta(seconds=120)).isoformat()
    assert state["quota_remaining"] == 20 and state["quota_max"] == 300
    assert len(httpd.requests_for(SEARCH)) == 1  # has_more, but the backoff stops paging

    clock.now = NOW + timedelta(seconds=60)
    summary = run_poll(cfg, now=clock)
    assert summary.reports[0].ok and summary.reports[0].not_modified
    assert len(httpd.requests_for(SEARCH)) == 1  # still waiting: nothing sent

    clock.now = NOW + timedelta(seconds=121)
    run_poll(cfg, now=clock)
    assert len(httpd.requests_for(SEARCH)) == 2
    assert (
        "not_before" not in cursor(tmp_path)
        or cursor(tmp_path)["not_before"] > clock.now.isoformat()
    )


def test_throttle_violation_is_a_source_error_with_a_resume_time(tmp_path, httpd):
    httpd.add(SEARCH, handler=lambda info: gzipped("error_throttle.json", status=400))
    cfg = config(tmp_path, httpd.base_url)
    report = run_poll(cfg).reports[0]
    assert not report.ok
    assert "throttling this IP" in report.error and "2026-03-10 13:00 UTC" in report.error
    assert rows(tmp_path, "SELECT consecutive_failures FROM sources") == [(1,)]


def test_throttle_violation_asks_to_keep_a_not_before_time(httpd):
    httpd.add(SEARCH, handler=lambda info: gzipped("error_throttle.json", status=400))
    spec = SourceSpec(
        name="so",
        kind="stackexchange",
        every_s=600,
        options={"query": "acme", "base_url": httpd.base_url, "request_interval": 0},
    )
    state = SourceState(cursor={"sites": {"stackoverflow": {"fromdate": 1773000000}}})
    result = poll_kind(spec, state, now=Clock(NOW))
    assert result.error and result.cursor is not None
    # The old position is kept; the wait is added.
    assert result.cursor["sites"] == {"stackoverflow": {"fromdate": 1773000000}}
    assert result.cursor["not_before"] == "2026-03-10T13:00:00+00:00"


def test_access_token_goes_in_the_header_instead_of_the_key(tmp_path, api):
    cfg = config(tmp_path, api.base_url, "    key: ${SE_KEY}\n    access_token: ${SE_TOKEN}\n")
    summary = run_poll(cfg, env={"SE_KEY": "k3y", "SE_TOKEN": "t0ken"})
    assert summary.failed == 0, summary.reports[0].error
    (search,) = api.requests_for(SEARCH)
    assert search.headers["authorization"] == "Bearer t0ken"
    assert "access_token" not in query(search)


def test_no_key_sends_no_authorization(tmp_path, api):
    summary = run_poll(config(tmp_path, api.base_url))
    assert summary.failed == 0, summary.reports[0].error
    (search,) = api.requests_for(SEARCH)
    assert "authorization" not in search.headers


def test_rejected_key_names_the_remedy(tmp_path, httpd):
    httpd.add(SEARCH, handler=lambda info: gzipped("error_bad_key.json", status=400))
    cfg = config(tmp_path, httpd.base_url, "    key: nope\n")
    report = run_poll(cfg).reports[0]
    assert not report.ok
    assert "rejected the API key" in report.error and "stackapps.com" in report.error


@pytest.mark.parametrize(
    "body",
    [
        fixture("search_newest.json")[:700],  # cut off mid-stream
        b"<!DOCTYPE html><html><body>Service Unavailable</body></html>",
    ],
    ids=["truncated", "html"],
)
def test_malformed_body_is_a_source_error_not_a_crash(tmp_path, httpd, body):
    httpd.add(SEARCH, body, content_type="application/json", gzip=True)
    cfg = config(tmp_path, httpd.base_url)
    report = run_poll(cfg).reports[0]
    assert not report.ok
    assert "not valid JSON" in report.error or "HTML page" in report.error
    assert "internal error" not in report.error
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(0,)]


def test_several_sites_are_searched_each_with_its_own_cursor(tmp_path, httpd):
    httpd.add(SEARCH, handler=lambda info: gzipped("search_newest.json"))
    httpd.add("/2.3/questions/79500101/answers", handler=lambda info: gzipped("answers.json"))
    cfg = config(tmp_path, httpd.base_url, "    sites: [stackoverflow, superuser]\n")
    run_poll(cfg)
    assert sorted(query(r)["site"] for r in httpd.requests_for(SEARCH)) == [
        "stackoverflow",
        "superuser",
    ]
    assert set(cursor(tmp_path)["sites"]) == {"stackoverflow", "superuser"}
    urls = {u for (u,) in rows(tmp_path, "SELECT url FROM items")}
    assert "https://superuser.com/questions/79500101" in urls


def test_unknown_option_is_a_config_error(tmp_path, httpd):
    cfg = config(tmp_path, httpd.base_url, "    tags: [python]\n")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.tags: unknown key"):
        load_config(cfg, env={})


@pytest.mark.parametrize(
    ("site", "host"),
    [
        ("stackoverflow", "stackoverflow.com"),
        ("superuser", "superuser.com"),
        ("mathoverflow.net", "mathoverflow.net"),
        ("unix", "unix.stackexchange.com"),
        ("meta", "meta.stackexchange.com"),
        ("meta.stackoverflow", "meta.stackoverflow.com"),
        ("es.stackoverflow", "es.stackoverflow.com"),
        ("meta.unix", "unix.meta.stackexchange.com"),
    ],
)
def test_site_hosts(site, host):
    assert site_host(site) == host
