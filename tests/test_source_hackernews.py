"""`kind: hackernews` against the Algolia HN API's real response shapes, served on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from helpers import Clock, kind_source, poll_once, rows, rss, write_config
from helpers import query_params as query_of
from httpd import RequestInfo

from listener.config import ConfigError, load_config
from listener.sources.hackernews import item_from_hit

FIXTURES = Path(__file__).parent / "fixtures" / "hackernews"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NEWEST = 1795089600  # created_at_i of the newest hit in search_page0.json


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


poll = partial(poll_once, now=lambda: NOW)


def hn_source(base_url: str, name: str = "hn", extra: str = "") -> str:
    return kind_source(
        name,
        "hackernews",
        extra,
        query="acme",
        base_url=base_url,
        hits_per_page=3,
        request_interval=0,
    )


def serve_search(httpd, pages: list[dict]) -> None:
    """Answer like Algolia: the page asked for, only hits newer than the numericFilters bound."""

    def handler(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        q = query_of(request)
        since = int(q["numericFilters"].split(">")[1])
        hits = [h for page in pages for h in page["hits"] if h["created_at_i"] > since]
        per_page = int(q["hitsPerPage"])
        page = int(q.get("page", "0"))
        nb_pages = max(1, -(-len(hits) // per_page))
        body = {
            **pages[0],
            "hits": hits[page * per_page : (page + 1) * per_page],
            "nbHits": len(hits),
            "nbPages": nb_pages,
            "page": page,
            "hitsPerPage": per_page,
        }
        return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()

    httpd.add("/api/v1/search_by_date", handler=handler)


@pytest.fixture
def hn(httpd):
    serve_search(httpd, [fixture("search_page0.json"), fixture("search_page1.json")])
    httpd.add(
        "/api/v1/items/46001003",
        json.dumps(fixture("item_46001003.json")),
        content_type="application/json; charset=utf-8",
    )
    return httpd


def test_stories_comments_and_threads_land_in_the_database(tmp_path, hn):
    cfg = write_config(tmp_path, [], extra=hn_source(hn.url("/api/v1")))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]

    # Both pages of the search were read, bounded by the backfill window before the first poll.
    searches = [query_of(r) for r in hn.requests_for("/api/v1/search_by_date")]
    assert [s["page"] for s in searches] == ["0", "1"]
    assert {s["tags"] for s in searches} == {"(story,comment)"}
    assert searches[0]["numericFilters"] == f"created_at_i>{int(NOW.timestamp()) - 2 * 86400}"
    assert searches[0]["query"] == "acme"

    items = {
        r[0]: r[1:]
        for r in rows(
            tmp_path, "SELECT native_id, url, thread_key, is_reply, author, title FROM items"
        )
    }
    # A link story is stored under the article's canonical URL (tracking parameter gone).
    assert items["46001003"][:2] == (
        "https://news.example.com/2026/11/acme-recall",
        "hn:46001003",
    )
    # Ask HN has no link: its HN permalink is its URL.
    assert items["46000900"][0] == "https://news.ycombinator.com/item?id=46000900"
    # A comment belongs to its story's thread and has no borrowed title.
    assert items["46001010"][1:] == ("hn:46000900", 1, "rrunner", "")
    assert items["45999120"][1] == "hn:45999000"

    text = rows(tmp_path, "SELECT text FROM items WHERE native_id = '46001010'")[0][0]
    assert "I'm switching to Globex." in text and "<p>" not in text and "&#x27;" not in text

    labels = dict(
        rows(
            tmp_path,
            "SELECT i.native_id, m.label FROM mentions m JOIN items i ON i.id = m.item_id "
            "WHERE m.brand = 'Acme'",
        )
    )
    assert labels["46001010"] == "negative"  # "never answered my ticket"
    assert labels["45999120"] == "positive"  # "great value"

    # The matching story's thread was read from items/{id}: the reply that does not repeat the
    # brand is kept as context of the thread; the deleted comment is skipped.
    assert hn.hits["/api/v1/items/46001003"] == 1
    thread = rows(
        tmp_path,
        "SELECT native_id, parent_key, is_reply FROM items WHERE thread_key = 'hn:46001003' "
        "ORDER BY native_id",
    )
    assert thread == [
        ("46001003", None, 0),
        ("46001020", "46001003", 1),
        ("46001025", "46001020", 1),
    ]
    assert rows(tmp_path, "SELECT count(*) FROM items WHERE native_id = '46001027'") == [(0,)]
    (replies_url,) = rows(tmp_path, "SELECT replies_url FROM threads WHERE key = 'hn:46001003'")[0]
    assert replies_url == hn.url("/api/v1/items/46001003")


def test_cursor_is_kept_in_the_database_and_resumes_after_a_restart(tmp_path, hn):
    cfg = write_config(
        tmp_path, [], extra=hn_source(hn.url("/api/v1"), extra="    follow_threads: false\n")
    )
    poll(cfg)
    assert json.loads(rows(tmp_path, "SELECT cursor FROM sources")[0][0]) == {
        "created_at_i": NEWEST
    }
    before = rows(tmp_path, "SELECT count(*) FROM items")[0][0]

    # A new comment appears; a new process (new runtime, same database) asks only for what is
    # newer than the cursor and stores only the new comment.
    newer = {
        **fixture("search_page1.json")["hits"][0],
        "objectID": "46002000",
        "comment_text": "Acme finally replied to me today.",
        "created_at_i": NEWEST + 3600,
        "story_id": 46000900,
        "parent_id": 46001010,
    }
    serve_search(
        hn, [{**fixture("search_page0.json"), "hits": [newer]}, fixture("search_page0.json")]
    )
    hn.reset()
    summary = poll(cfg)
    assert summary.new_items == 1
    (request,) = hn.requests_for("/api/v1/search_by_date")
    assert query_of(request)["numericFilters"] == f"created_at_i>{NEWEST}"
    assert rows(tmp_path, "SELECT count(*) FROM items")[0][0] == before + 1
    assert rows(tmp_path, "SELECT count(*) FROM items GROUP BY native_id HAVING count(*) > 1") == []
    assert json.loads(rows(tmp_path, "SELECT cursor FROM sources")[0][0]) == {
        "created_at_i": NEWEST + 3600
    }


def test_429_with_retry_after_is_waited_out_by_the_fetcher(tmp_path, httpd):
    serve_search(httpd, [fixture("search_page0.json")])
    page = json.dumps({**fixture("search_page0.json"), "nbPages": 1}).encode()
    httpd.add(
        "/api/v1/search_by_date",
        page,
        content_type="application/json",
        fail_times=1,
        fail_status=429,
        retry_after="0",
    )
    cfg = write_config(
        tmp_path, [], extra=hn_source(httpd.url("/api/v1"), extra="    follow_threads: false\n")
    )
    summary = poll(cfg)
    assert summary.failed == 0 and summary.new_items == 3
    assert httpd.hits["/api/v1/search_by_date"] == 2
    assert rows(tmp_path, "SELECT status FROM fetches") == [(200,)]


def test_retry_after_beyond_the_limit_is_a_source_failure(tmp_path, httpd):
    httpd.add(
        "/api/v1/search_by_date",
        '{"message": "rate limited"}',
        status=429,
        content_type="application/json",
        retry_after="3600",
    )
    cfg = write_config(tmp_path, [], extra=hn_source(httpd.url("/api/v1")))
    summary = poll(cfg)
    (report,) = summary.reports
    assert not report.ok and "429" in report.error and "Retry-After" in report.error
    assert httpd.hits["/api/v1/search_by_date"] == 1  # not hammered
    assert rows(tmp_path, "SELECT consecutive_failures, cursor FROM sources") == [(1, None)]


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b'{"hits": [{"objectID": "1", "title": "Acme', {}, "broken JSON"),
        (b"<html><body>Service unavailable</body></html>", {}, "broken JSON"),
        (b'{"message": "oops"}', {}, "without a list of hits"),
        # The server promises more bytes than it sends: the connection ends mid-body.
        (b'{"hits": [', {"Content-Length": "4000", "Connection": "close"}, "whole body"),
    ],
)
def test_malformed_or_truncated_answer_is_a_source_error(tmp_path, httpd, body, headers, expected):
    httpd.add(
        "/api/v1/search_by_date",
        handler=lambda r: (200, {"Content-Type": "application/json", **headers}, body),
    )
    cfg = write_config(tmp_path, [], extra=hn_source(httpd.url("/api/v1")))
    summary = poll(cfg)
    (report,) = summary.reports
    assert not report.ok and expected in report.error
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(0,)]
    (failures, error) = rows(tmp_path, "SELECT consecutive_failures, last_error FROM sources")[0]
    assert failures == 1 and expected in error


def test_only_stories_when_asked(tmp_path, hn):
    cfg = write_config(
        tmp_path,
        [],
        extra=hn_source(hn.url("/api/v1"), extra="    types: [story]\n    follow_threads: false\n"),
    )
    poll(cfg)
    assert {query_of(r)["tags"] for r in hn.requests_for("/api/v1/search_by_date")} == {"story"}


def test_bad_options_are_config_errors_that_name_the_key(tmp_path):
    cfg = write_config(
        tmp_path,
        [],
        extra="  - name: hn\n    kind: hackernews\n    query: acme\n    types: [poll]\n    qeury: x\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    text = str(err.value)
    assert "sources[0].types" in text and "story, comment" in text
    assert "sources[0].qeury: unknown key" in text
    missing = write_config(tmp_path, [], extra="  - name: hn\n    kind: hackernews\n")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.query: required key is missing"):
        load_config(missing, env={})


def test_ask_hn_story_and_comment_hits():
    ask = fixture("search_page0.json")["hits"][2]
    item = item_from_hit(ask, "hn", "https://hn.algolia.com/api/v1")
    assert item is not None
    assert item.url == "https://news.ycombinator.com/item?id=46000900"
    assert (
        item.text
        == "I opened a ticket with Acme three weeks ago and nobody has replied.\nIs this normal?"
    )
    assert item.thread_url == "https://hn.algolia.com/api/v1/items/46000900"
    assert "link" not in item.extra
    story = item_from_hit(fixture("search_page0.json")["hits"][0], "hn", "https://x/api/v1")
    assert story is not None and story.extra["link"].startswith("https://news.example.com/")
    assert story.raw_url == "https://news.ycombinator.com/item?id=46001003"
    assert story.published_at == datetime(2026, 11, 19, 12, 0, tzinfo=UTC)
    assert item_from_hit({"objectID": "x"}, "hn", "b") is None


def test_same_article_from_hn_reddit_and_a_blog_is_one_mention_with_three_sightings(
    tmp_path, httpd
):
    article = "https://news.example.com/2026/11/acme-recall"
    story = {**fixture("search_page0.json")["hits"][0], "url": article + "?utm_source=hackernews"}
    serve_search(httpd, [{**fixture("search_page0.json"), "hits": [story]}])
    httpd.add(
        "/blog/feed",
        rss(
            [
                {
                    "title": "Acme recalls rocket skates after brake failures",
                    "link": "http://www.news.example.com/2026/11/acme-recall/?utm_medium=rss",
                    "guid": "recall-1",
                    "body": "<p>Acme recalls its rocket skates. The brakes failed on steep hills.</p>",
                }
            ]
        ),
    )
    reddit = (FIXTURES.parent / "reddit" / "search_link_post.atom").read_text()
    # Only the link post: the fixture's second entry is a self post about something else.
    reddit = reddit[: reddit.rindex("<entry>")] + "</feed>"
    httpd.add("/search.rss", reddit, content_type="application/atom+xml; charset=UTF-8")
    extra = (
        hn_source(httpd.url("/api/v1"), extra="    follow_threads: false\n")
        + "  - name: reddit\n    kind: reddit\n    query: acme\n"
        + f"    base_url: {httpd.base_url}\n    request_interval: 0\n    follow_threads: false\n"
    )
    cfg = write_config(tmp_path, [("blog", httpd.url("/blog/feed"))], extra=extra)
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]
    assert rows(tmp_path, "SELECT count(*) FROM mentions") == [(1,)]
    assert sorted(r[0] for r in rows(tmp_path, "SELECT source FROM sightings")) == [
        "blog",
        "hn",
        "reddit",
    ]
    # Whichever source was read first spelled the URL (the blog's is http://www.); one item.
    ((url, sightings),) = rows(tmp_path, "SELECT url, sightings FROM items")
    assert url.endswith("news.example.com/2026/11/acme-recall") and sightings == 3
    # Each sighting keeps where it was seen.
    seen = dict(rows(tmp_path, "SELECT source, url FROM sightings"))
    assert seen["hn"] == "https://news.ycombinator.com/item?id=46001003"
    assert "reddit.com/r/" in seen["reddit"]


def test_stale_search_raises_a_source_health_alert(tmp_path, httpd):
    """Algolia can answer 200 OK with the same old hits for a day and more: a source that has
    been quiet for far longer than its usual gap is reported, once."""
    start = NOW - timedelta(hours=40)
    hits: list[dict] = []

    def hit(n: int, at: datetime) -> dict:
        return {
            "objectID": str(46000000 + n),
            "_tags": ["story", f"story_{46000000 + n}"],
            "title": f"Acme launch number {n}",
            "url": f"https://news.example.com/acme-{n}",
            "author": "pg",
            "created_at_i": int(at.timestamp()),
            "created_at": at.isoformat(),
            "points": 1,
            "num_comments": 0,
        }

    def search(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        body = {"hits": hits, "nbHits": len(hits), "nbPages": 1, "page": 0, "hitsPerPage": 100}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    httpd.add("/search_by_date", handler=search)
    cfg = write_config(tmp_path, [], extra=hn_source(httpd.base_url, extra="    every: 20m\n"))
    clock = Clock(start)
    # Four hours of a lively search: something new every 20 minutes.
    for n in range(12):
        clock.now = start + timedelta(minutes=20 * n)
        hits.insert(0, hit(n, clock.now - timedelta(minutes=1)))
        assert poll_once(cfg, now=clock).failed == 0
    stale_alerts = "SELECT why FROM alerts WHERE rule = 'source_health'"
    # Then the same old hits, with 200 OK. Two hours of that is not yet news.
    clock.now += timedelta(hours=2)
    assert poll_once(cfg, now=clock).failed == 0
    assert rows(tmp_path, stale_alerts) == []
    # 36 hours of it is.
    clock.now = start + timedelta(minutes=20 * 11, hours=36)
    assert poll_once(cfg, now=clock).failed == 0
    (why,) = rows(tmp_path, stale_alerts)[0]
    assert why.startswith(
        "Hacker News search has returned nothing new for 36 h; it usually has something every "
        "20 min."
    )
    # One alert for the quiet spell, not one per poll.
    clock.now += timedelta(hours=1)
    poll_once(cfg, now=clock)
    assert len(rows(tmp_path, stale_alerts)) == 1
