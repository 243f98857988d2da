"""`kind: discourse` against Discourse's real posts.json / search.json / topic shapes, on loopback."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import kind_source, poll_once, rows, write_config
from httpd import RequestInfo

from listener.config import ConfigError, load_config

FIXTURES = Path(__file__).parent / "fixtures" / "discourse"
JSON = "application/json; charset=utf-8"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


poll = partial(poll_once, now=lambda: NOW)


def query_of(request: RequestInfo) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.path).query)


def source(base_url: str, extra: str = "") -> str:
    return kind_source("forum", "discourse", extra, base_url=f"{base_url}/", request_interval=0)


def serve_latest(httpd, posts: list[dict], page_size: int = 50) -> None:
    """posts.json as Discourse answers it: newest first, `before` pages back."""

    def handler(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        before = query_of(request).get("before")
        ordered = sorted(posts, key=lambda p: p["id"], reverse=True)
        if before:
            ordered = [p for p in ordered if p["id"] < int(before[0])]
        body = {"latest_posts": ordered[:page_size]}
        return 200, {"Content-Type": JSON}, json.dumps(body).encode()

    httpd.add("/posts.json", handler=handler)


@pytest.fixture
def forum(httpd):
    serve_latest(httpd, fixture("posts.json")["latest_posts"])
    httpd.add("/search.json", json.dumps(fixture("search.json")), content_type=JSON)
    httpd.add("/t/812.json", json.dumps(fixture("t_812.json")), content_type=JSON)
    httpd.add("/t/812/posts.json", json.dumps(fixture("t_812_posts.json")), content_type=JSON)
    return httpd


def test_latest_posts_and_the_followed_topic_land_in_the_database(tmp_path, forum):
    cfg = write_config(tmp_path, [], extra=source(forum.base_url))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]
    host = forum.base_url.removeprefix("http://")
    items = {
        r[0]: r[1:]
        for r in rows(
            tmp_path, "SELECT native_id, url, thread_key, is_reply, title, text, author FROM items"
        )
    }
    # The first post is the topic itself, under the topic's own address.
    assert items["9010"][:5] == (
        f"{forum.base_url}/t/rocket-skates-recall-megathread/812",
        f"discourse:{host}:812",
        0,
        "Rocket Skates recall megathread",
        "Acme says the refund takes 14 days. Two of my pairs caught fire; this is dangerous and awful.",
    )
    # A reply: its own post URL, no borrowed title, and the quote of the first post left out.
    assert items["9013"][:5] == (
        f"{forum.base_url}/t/rocket-skates-recall-megathread/812/3",
        f"discourse:{host}:812",
        1,
        "",
        "Mine arrived in three days, no complaints.",
    )
    assert "9011" not in items  # "automatically closed" is a small action, not a post
    assert items["9012"][5] == "smithy"

    labels = dict(
        rows(
            tmp_path, "SELECT i.native_id, m.label FROM mentions m JOIN items i ON i.id = m.item_id"
        )
    )
    assert labels == {"9010": "negative", "9012": "positive"}  # the quote in 9013 is no mention

    # The brand topic was followed: the post beyond the topic's first chunk was asked for by id.
    assert forum.hits["/t/812.json"] == 1
    (more,) = forum.requests_for("/t/812/posts.json")
    assert query_of(more) == {"post_ids[]": ["9020"]}
    assert items["9020"][1:3] == (f"discourse:{host}:812", 1)
    assert rows(
        tmp_path, "SELECT replies_url FROM threads WHERE key = ?", f"discourse:{host}:812"
    ) == [(f"{forum.base_url}/t/812.json",)]
    assert json.loads(rows(tmp_path, "SELECT cursor FROM sources")[0][0]) == {
        "latest_post_id": 9013
    }


def test_search_reads_matching_posts_and_follows_their_topics(tmp_path, forum):
    cfg = write_config(tmp_path, [], extra=source(forum.base_url, "    query: acme\n"))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]
    (search,) = forum.requests_for("/search.json")
    assert query_of(search) == {"q": ["acme order:latest"]}
    assert forum.hits["/posts.json"] == 0  # with a query, the whole forum is not read
    titles = dict(rows(tmp_path, "SELECT native_id, title FROM items"))
    assert titles["9010"] == "Rocket Skates recall megathread"
    # The topic's replies came with it, as part of the conversation.
    assert {"9013", "9020"} <= set(titles)
    assert json.loads(rows(tmp_path, "SELECT cursor FROM sources")[0][0]) == {
        "search_post_id": 9010
    }


def test_restart_reads_back_to_the_cursor_with_before(tmp_path, httpd):
    posts = fixture("posts.json")["latest_posts"]
    serve_latest(httpd, posts, page_size=2)
    cfg = write_config(tmp_path, [], extra=source(httpd.base_url, "    follow_threads: false\n"))
    poll(cfg)
    assert json.loads(rows(tmp_path, "SELECT cursor FROM sources")[0][0]) == {
        "latest_post_id": 9013
    }
    before = rows(tmp_path, "SELECT count(*) FROM items")[0][0]

    new = []
    for i, text in enumerate(
        ["Acme shipped the replacement.", "Acme is fine now.", "Thanks Acme!"]
    ):
        p = copy.deepcopy(posts[1])
        p.update(
            id=9100 + i,
            post_number=1,
            topic_id=900 + i,
            topic_slug=f"t{i}",
            cooked=f"<p>{text}</p>",
        )
        new.append(p)
    serve_latest(httpd, posts + new, page_size=2)
    httpd.reset()
    summary = poll(cfg)  # a new runtime on the same database
    assert summary.new_items == 3
    pages = [query_of(r).get("before") for r in httpd.requests_for("/posts.json")]
    assert pages == [None, ["9101"]]  # the second page reached post 9013: done
    assert rows(tmp_path, "SELECT count(*) FROM items")[0][0] == before + 3
    assert rows(tmp_path, "SELECT count(*) FROM items GROUP BY native_id HAVING count(*) > 1") == []
    assert json.loads(rows(tmp_path, "SELECT cursor FROM sources")[0][0]) == {
        "latest_post_id": 9102
    }


def test_private_forum_needs_an_api_key_and_gets_it(tmp_path, httpd):
    def handler(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        if (
            request.headers.get("api-key") != "k-123"
            or request.headers.get("api-username") != "bot"
        ):
            return (
                403,
                {"Content-Type": JSON},
                b'{"errors":["You are not permitted to view the requested resource."],"error_type":"invalid_access"}',
            )
        return 200, {"Content-Type": JSON}, json.dumps(fixture("posts.json")).encode()

    httpd.add("/posts.json", handler=handler)
    anonymous = write_config(tmp_path, [], extra=source(httpd.base_url))
    (report,) = poll(anonymous).reports
    assert not report.ok and "needs a login" in report.error and "api_key" in report.error

    keyed = write_config(
        tmp_path,
        [],
        extra=source(
            httpd.base_url,
            "    api_key: ${FORUM_KEY}\n    api_username: bot\n    follow_threads: false\n",
        ),
    )
    (report,) = poll(keyed, env={"FORUM_KEY": "k-123"}).reports
    assert report.ok and report.new_items == 3

    revoked = write_config(
        tmp_path, [], extra=source(httpd.base_url, "    api_key: old\n    api_username: bot\n")
    )
    (report,) = poll(revoked).reports
    assert not report.ok and "refused the API key" in report.error


def test_broken_json_is_a_source_error(tmp_path, httpd):
    httpd.add("/posts.json", '{"latest_posts": [{"id": 1, "cooked": "<p>Acme', content_type=JSON)
    cfg = write_config(tmp_path, [], extra=source(httpd.base_url))
    (report,) = poll(cfg).reports
    assert not report.ok and "broken JSON" in report.error
    assert rows(tmp_path, "SELECT count(*), max(cursor) FROM sources") == [(1, None)]


def test_options_are_checked(tmp_path):
    for extra, message in [
        ("    latest_posts: false\n", "nothing to read"),
        ("    api_key: x\n", "go together"),
    ]:
        cfg = write_config(tmp_path, [], extra=source("https://forum.example.com", extra))
        with pytest.raises(ConfigError, match=message):
            load_config(cfg, env={})
    missing = write_config(tmp_path, [], extra="  - name: f\n    kind: discourse\n")
    with pytest.raises(ConfigError, match=r"base_url: required key is missing"):
        load_config(missing, env={})
