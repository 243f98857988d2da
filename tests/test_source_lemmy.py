"""`kind: lemmy` against loopback servers answering like Lemmy instances (API v3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from helpers import kind_source, poll_once, rows, write_config
from helpers import query_params as q
from httpd import LoopbackServer, RequestInfo

from listener.sources.lemmy import LemmyOptions, parse_post_view

FIXTURES = Path(__file__).parent / "fixtures" / "lemmy"
SEARCH = "/api/v3/search"
COMMENTS = "/api/v3/comment/list"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
JSON = "application/json"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def source(name: str, base_url: str, extra: str = "") -> str:
    return kind_source(
        name, "lemmy", extra, query="acme", base_url=base_url, request_interval=0, every="10m"
    )


run_poll = partial(poll_once, now=lambda: NOW)


def comment_lists(info: RequestInfo) -> tuple[int, dict[str, str], bytes]:
    name = "comment_list_9001.json" if q(info)["post_id"] == "9001" else "comment_list_empty.json"
    return 200, {"Content-Type": JSON}, fixture(name)


@pytest.fixture
def instance(httpd):
    httpd.add(SEARCH, fixture("search_newest.json"), content_type=JSON)
    httpd.add(COMMENTS, handler=comment_lists)
    return httpd


def test_posts_comments_and_threads_land_in_the_database(tmp_path, instance):
    cfg = write_config(tmp_path, [], extra=source("lemmy", instance.base_url))
    summary = run_poll(cfg)
    assert summary.failed == 0, summary.reports[0].error

    mentions = {
        r[0]: r[1:]
        for r in rows(tmp_path, "SELECT url, label, thread_key, author, product FROM mentions")
    }
    text_post = mentions["https://lemmy.world/post/9001"]
    assert text_post[:3] == ("negative", "lemmy:lemmy.world:9001", "alice@lemmy.world")
    # A link post is the article it links (tracking parameters dropped), in the thread of the
    # post's home instance.
    link_post = mentions["https://www.acme.example/blog/rocket-skates-2"]
    assert link_post[1:] == ("lemmy:programming.dev:4242", "bob@programming.dev", "Rocket Skates")
    comment = mentions["https://lemmy.world/comment/70001"]
    assert comment[1:3] == ("lemmy:lemmy.world:9001", "carol@lemmy.world")

    (search,) = instance.requests_for(SEARCH)
    assert q(search) == {
        "q": "acme",
        "type_": "All",
        "sort": "New",
        "listing_type": "All",
        "limit": "50",
        "page": "1",
    }
    # Both brand threads were followed; the reply that does not name Acme is part of the
    # conversation; the deleted comment is not.
    followed = sorted(q(r)["post_id"] for r in instance.requests_for(COMMENTS))
    assert followed == ["9001", "9050"]
    thread = rows(
        tmp_path,
        "SELECT author, relevant, parent_key FROM items WHERE url = 'https://lemmy.world/comment/70002'",
    )
    assert thread == [("alice@lemmy.world", 1, "lemmy:127.0.0.1:comment:70001")]
    assert rows(tmp_path, "SELECT count(*) FROM items WHERE url LIKE '%70003'") == [(0,)]
    assert rows(tmp_path, "SELECT posts FROM threads WHERE key = 'lemmy:lemmy.world:9001'") == [
        (3,)
    ]


def test_cursor_resumes_after_restart_without_duplicates(tmp_path, httpd):
    httpd.add(SEARCH, fixture("search_newest.json"), content_type=JSON)
    cfg = write_config(
        tmp_path,
        [],
        extra=source("lemmy", httpd.base_url, "    limit: 2\n    follow_threads: false\n"),
    )
    run_poll(cfg)
    (value,) = rows(tmp_path, "SELECT cursor FROM sources")[0]
    assert json.loads(value) == {"newest": "2026-03-10T10:00:00+00:00"}
    before = rows(tmp_path, "SELECT count(*) FROM items")[0][0]

    def pages(info: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": JSON}, fixture(f"search_resume_page{q(info)['page']}.json")

    httpd.add(SEARCH, handler=pages)
    httpd.reset()
    summary = run_poll(cfg)  # a new runtime on the same database: a restart
    assert summary.failed == 0, summary.reports[0].error
    # Page 1 was full of new results; page 2 reached what the first poll had seen: stop there.
    assert [q(r)["page"] for r in httpd.requests_for(SEARCH)] == ["1", "2"]
    assert rows(tmp_path, "SELECT count(*) FROM items")[0][0] == before + 3
    assert rows(tmp_path, "SELECT count(*) FROM items WHERE url LIKE '%9001'") == [(1,)]
    (value,) = rows(tmp_path, "SELECT cursor FROM sources")[0]
    assert json.loads(value) == {"newest": "2026-03-10T11:45:00+00:00"}


def test_same_post_through_two_instances_is_one_item_with_two_sightings(tmp_path, httpd):
    httpd.add(SEARCH, fixture("search_newest.json"), content_type=JSON)
    with LoopbackServer() as home:
        home.add(SEARCH, fixture("search_other_instance.json"), content_type=JSON)
        cfg = write_config(
            tmp_path,
            [],
            extra=source("world", httpd.base_url, "    follow_threads: false\n")
            + source("progdev", home.base_url, "    follow_threads: false\n"),
        )
        summary = run_poll(cfg)
    assert summary.failed == 0
    link = rows(
        tmp_path,
        "SELECT id, thread_key, sightings FROM items WHERE url = 'https://www.acme.example/blog/rocket-skates-2'",
    )
    assert len(link) == 1 and link[0][1:] == ("lemmy:programming.dev:4242", 2)
    sightings = rows(tmp_path, "SELECT source, url FROM sightings WHERE item_id = ?", link[0][0])
    assert sorted(sightings) == [
        ("progdev", "https://programming.dev/post/4242"),
        ("world", "https://programming.dev/post/4242"),
    ]
    assert rows(tmp_path, "SELECT count(*) FROM mentions WHERE product = 'Rocket Skates'") == [(1,)]


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (fixture("search_newest.json")[:1500], 200, "not valid JSON"),
        (b'{"error":"rate_limit_error"}', 400, "rate-limited"),
        (b"<html><head><title>502 Bad Gateway</title></head></html>", 502, "HTML page"),
    ],
    ids=["truncated", "rate-limited", "html"],
)
def test_bad_answers_are_source_errors_not_crashes(tmp_path, httpd, body, status, expected):
    httpd.add(SEARCH, body, status=status, content_type=JSON)
    cfg = write_config(tmp_path, [], extra=source("lemmy", httpd.base_url))
    report = run_poll(cfg).reports[0]
    assert not report.ok and expected in report.error
    assert "internal error" not in report.error


def test_pre_019_naive_times_are_utc():
    view = json.loads(fixture("search_newest.json"))["posts"][1]
    view["post"]["published"] = "2026-03-10T09:00:00.123456"  # Lemmy 0.18 wrote no offset
    item = parse_post_view(view, opts=LemmyOptions(query="acme"), source="lemmy", now=NOW)
    assert item is not None and item.published_at == datetime(
        2026, 3, 10, 9, 0, 0, 123456, tzinfo=UTC
    )
