"""`kind: mastodon` against Mastodon's real Status / Context / Search shapes, served on loopback.

The tag timeline handler behaves like Mastodon's `paginate_by_id`: without `min_id` it answers the
newest `limit` statuses; with `min_id` the `limit` statuses immediately newer than it, newest
first; the `Link` header carries `rel="next"` (`max_id` = oldest of the page) and `rel="prev"`
(`min_id` = newest of the page).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from helpers import kind_source, poll_once, rows, write_config
from helpers import query_params as query_of
from httpd import LoopbackServer, RequestInfo

from listener.config import ConfigError, load_config
from listener.sources.mastodon import item_from_status, parse_links

FIXTURES = Path(__file__).parent / "fixtures" / "mastodon"
JSON = "application/json; charset=utf-8"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


poll = partial(poll_once, now=lambda: NOW)


def tag_cursor(tmp_path: Path) -> dict[str, str]:
    """The timeline positions in the source's cursor (without the instances' access info)."""
    (cursor,) = rows(tmp_path, "SELECT cursor FROM sources")[0]
    return {k: v for k, v in json.loads(cursor).items() if k.startswith("tag:")}


def key(status_id: str) -> tuple[int, str]:
    return (len(status_id), status_id)


def serve_timeline(server: LoopbackServer, tag: str, statuses: list[dict]) -> None:
    def handler(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        q = query_of(request)
        limit = min(int(q.get("limit", "20")), 40)
        ordered = sorted(statuses, key=lambda s: key(s["id"]), reverse=True)
        if "min_id" in q:
            newer = [s for s in reversed(ordered) if key(s["id"]) > key(q["min_id"])]
            page = list(reversed(newer[:limit]))
        else:
            page = ordered[:limit]
        headers = {"Content-Type": JSON}
        if page:
            path = f"{server.base_url}/api/v1/timelines/tag/{tag}"
            headers["Link"] = (
                f'<{path}?limit={limit}&max_id={page[-1]["id"]}>; rel="next", '
                f'<{path}?limit={limit}&min_id={page[0]["id"]}>; rel="prev"'
            )
        return 200, headers, json.dumps(page).encode()

    server.add(f"/api/v1/timelines/tag/{tag}", handler=handler)


def source(instances: list[str], extra: str = "") -> str:
    return kind_source(
        "masto",
        "mastodon",
        extra,
        instances=f"[{', '.join(instances)}]",
        tags="['#acme']",
        request_interval=0,
    )


@pytest.fixture
def second():
    with LoopbackServer() as server:
        yield server


def test_tag_timelines_on_two_instances_land_in_the_database_once(tmp_path, httpd, second):
    serve_timeline(httpd, "acme", fixture("tag_acme_instance_a.json"))
    serve_timeline(second, "acme", fixture("tag_acme_instance_b.json"))
    httpd.add(
        "/api/v1/statuses/113500000000000010/context",
        json.dumps(fixture("context_113500000000000010.json")),
        content_type=JSON,
    )
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url, second.base_url]))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]

    # The first poll reads the latest page only, with the documented maximum page size.
    (first,) = httpd.requests_for("/api/v1/timelines/tag/acme")
    assert query_of(first) == {"limit": "40"}

    items = {
        r[0]: r[1:]
        for r in rows(
            tmp_path,
            "SELECT native_id, url, author, thread_key, is_reply, parent_key, text FROM items",
        )
    }
    # runner's status came from both instances (two local ids): one item, keyed by its uri,
    # under its page on its home server.
    runner = "https://fosstodon.org/users/runner/statuses/113499990000000001"
    assert list(items).count(runner) == 1
    assert items[runner][0] == "https://fosstodon.org/@runner/113499990000000001"
    assert items[runner][1] == "runner@fosstodon.org"

    coyote = items["https://mastodon.social/users/coyote/statuses/113500000000000010"]
    a = httpd.base_url.removeprefix("http://")
    b = second.base_url.removeprefix("http://")
    assert coyote[1] == f"coyote@{a}"  # a local account gets its instance's domain
    assert coyote[2] == f"mastodon:{a}:113500000000000010"
    assert coyote[5] == "My new #Acme Rocket Skates failed on the first hill, awful!"

    # A reply's thread is keyed by the status it answers, on the instance that served it.
    meep = items["https://fosstodon.org/users/meep/statuses/113499990000000020"]
    assert meep[2:5] == (f"mastodon:{b}:113499990000000001", 1, "113499990000000001")
    assert meep[5].startswith("@runner The #acme support line")

    # The negative status's thread was followed through its context: the reply that does not
    # name Acme is stored as part of that conversation.
    assert httpd.hits["/api/v1/statuses/113500000000000010/context"] == 1
    bugs = items["https://mastodon.social/users/bugs/statuses/113500000000000042"]
    assert bugs[2:4] == (f"mastodon:{a}:113500000000000010", 1)
    labels = dict(rows(tmp_path, "SELECT author, label FROM mentions"))
    assert labels[f"coyote@{a}"] == "negative"

    cursor = tag_cursor(tmp_path)
    assert cursor == {f"tag:{a}:acme": "113500000000000010", f"tag:{b}:acme": "113499990000000020"}


def make_status(template: dict, status_id: int, text: str) -> dict:
    status = copy.deepcopy(template)
    sid = str(status_id)
    status.update(
        id=sid,
        uri=f"https://mastodon.social/users/coyote/statuses/{sid}",
        url=f"https://mastodon.social/@coyote/{sid}",
        content=f"<p>{text}</p>",
    )
    return status


def test_restart_resumes_from_the_cursor_and_follows_prev_links(tmp_path, httpd):
    template = fixture("tag_acme_instance_a.json")[0]
    base = 113500000000000000
    statuses = [make_status(template, base + i, f"Acme status number {i}") for i in range(1, 4)]
    serve_timeline(httpd, "acme", statuses)
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url], "    follow_threads: false\n"))
    poll(cfg)
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(3,)]

    # 45 new statuses while the service was down: more than one page of 40.
    statuses += [make_status(template, base + i, f"Acme status number {i}") for i in range(4, 49)]
    httpd.reset()
    summary = poll(cfg)  # a new runtime on the same database
    assert summary.failed == 0 and summary.new_items == 45
    requests = [query_of(r) for r in httpd.requests_for("/api/v1/timelines/tag/acme")]
    # Resumed from the stored cursor, then newer through rel="prev" (min_id = newest of page).
    assert requests == [
        {"limit": "40", "min_id": str(base + 3)},
        {"limit": "40", "min_id": str(base + 43)},
    ]
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(48,)]
    assert rows(tmp_path, "SELECT count(*) FROM items GROUP BY native_id HAVING count(*) > 1") == []
    assert tag_cursor(tmp_path) == {
        f"tag:{httpd.base_url.removeprefix('http://')}:acme": str(base + 48)
    }

    httpd.reset()
    quiet = poll(cfg)
    assert quiet.new_items == 0
    assert [query_of(r)["min_id"] for r in httpd.requests_for("/api/v1/timelines/tag/acme")] == [
        str(base + 48)
    ]


def test_search_with_a_token_goes_to_the_first_instance_only(tmp_path, httpd, second):
    serve_timeline(httpd, "acme", [])
    serve_timeline(second, "acme", [])
    httpd.add("/api/v2/search", json.dumps(fixture("search_acme.json")), content_type=JSON)
    extra = "    query: acme anvil\n    token: ${MASTODON_TOKEN}\n    follow_threads: false\n"
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url, second.base_url], extra))
    summary = poll(cfg, env={"MASTODON_TOKEN": "tok-123"})
    assert summary.failed == 0, [r.error for r in summary.reports]
    (search,) = httpd.requests_for("/api/v2/search")
    assert search.headers["authorization"] == "Bearer tok-123"
    assert query_of(search) == {
        "q": "acme anvil",
        "type": "statuses",
        "resolve": "false",
        "limit": "40",
    }
    assert all("authorization" not in r.headers for r in second.requests)
    assert second.hits["/api/v2/search"] == 0
    assert rows(tmp_path, "SELECT title, label FROM mentions") == [("product review", "positive")]


def test_an_expired_token_is_a_source_failure_with_the_remedy(tmp_path, httpd):
    serve_timeline(httpd, "acme", [])
    httpd.add(
        "/api/v2/search",
        '{"error":"The access token is invalid"}',
        status=401,
        content_type=JSON,
    )
    extra = "    query: acme\n    token: ${MASTODON_TOKEN}\n"
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url], extra))
    (report,) = poll(cfg, env={"MASTODON_TOKEN": "expired"}).reports
    assert not report.ok
    assert "access token was refused" in report.error and "create a new one" in report.error
    assert "expired" not in report.error.replace("may have expired", "")  # the token is not echoed


def test_search_without_a_token_is_a_config_error(tmp_path):
    cfg = write_config(tmp_path, [], extra="  - name: m\n    kind: mastodon\n    query: acme\n")
    with pytest.raises(ConfigError, match="needs `token:`"):
        load_config(cfg, env={})
    nothing = write_config(tmp_path, [], extra="  - name: m\n    kind: mastodon\n")
    with pytest.raises(ConfigError, match="needs `tags:`"):
        load_config(nothing, env={})


def test_broken_json_from_one_instance_is_a_source_error_and_keeps_the_cursor(
    tmp_path, httpd, second
):
    serve_timeline(httpd, "acme", fixture("tag_acme_instance_a.json"))
    second.add("/api/v1/timelines/tag/acme", '[{"id": "1", "content": "<p>Acme', content_type=JSON)
    cfg = write_config(
        tmp_path, [], extra=source([httpd.base_url, second.base_url], "    follow_threads: false\n")
    )
    (report,) = poll(cfg).reports
    assert not report.ok and "broken JSON" in report.error
    assert second.base_url.removeprefix("http://") in report.error
    # What the healthy instance sent is kept with its position; the broken one's is not moved.
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(2,)]
    assert tag_cursor(tmp_path) == {
        f"tag:{httpd.base_url.removeprefix('http://')}:acme": "113500000000000010"
    }


def test_link_header_and_boosts():
    links = parse_links(
        '<https://m.example/api/v1/timelines/tag/a?max_id=7>; rel="next", '
        '<https://m.example/api/v1/timelines/tag/a?min_id=9>; rel="prev"'
    )
    assert links == {
        "next": "https://m.example/api/v1/timelines/tag/a?max_id=7",
        "prev": "https://m.example/api/v1/timelines/tag/a?min_id=9",
    }
    original = fixture("tag_acme_instance_a.json")[0]
    boost = {"id": "999", "reblog": original, "content": "", "account": {"acct": "booster"}}
    item = item_from_status(boost, "m", "https://mastodon.social")
    assert (
        item is not None
        and item.native_id == original["uri"]
        and item.author == "coyote@mastodon.social"
    )


def instance_info(hashtag_local: str, hashtag_remote: str) -> bytes:
    """`GET /api/v2/instance` of a Mastodon 4.5 instance (the parts that matter here)."""
    return json.dumps(
        {
            "domain": "social.example",
            "version": "4.5.0",
            "configuration": {
                "timelines_access": {
                    "live_feeds": {"local": "authenticated", "remote": "disabled"},
                    "hashtag_feeds": {"local": hashtag_local, "remote": hashtag_remote},
                    "trending_link_feeds": {"local": "public", "remote": "public"},
                }
            },
        }
    ).encode()


def cli_output(cfg: Path, verb: str) -> str:
    from click.testing import CliRunner

    from listener.cli import cli

    result = CliRunner().invoke(cli, ["-c", str(cfg), verb])
    assert result.exit_code == 0, result.output
    return result.output


def test_tag_timeline_behind_a_login_says_a_token_is_needed(tmp_path, httpd):
    httpd.add(
        "/api/v2/instance", instance_info("authenticated", "authenticated"), content_type=JSON
    )
    httpd.add(
        "/api/v1/timelines/tag/acme",
        b'{"error":"This API requires an authenticated user"}',
        status=401,
        content_type=JSON,
    )
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url]))
    host = httpd.base_url.removeprefix("http://")

    for _ in range(3):
        (report,) = poll(cfg).reports
        assert not report.ok
        assert f"{host} shows hashtag timelines to logged-in users only: a token is needed" in (
            report.error
        )
    # The instance info was read once; knowing a login is needed, the timeline is not asked
    # again and again without one.
    assert len(httpd.requests_for("/api/v2/instance")) == 1
    assert httpd.requests_for("/api/v1/timelines/tag/acme") == []

    for verb in ("check", "status"):
        out = cli_output(cfg, verb)
        assert f"{host} shows hashtag timelines to logged-in users only: a token is needed" in out
        assert "Set `token:`" in out


def test_a_401_on_an_instance_that_says_public_is_remembered(tmp_path, httpd):
    # An instance before 4.5 says nothing about access, yet its tag timeline wants a login.
    httpd.add(
        "/api/v2/instance", b'{"domain": "old.example", "configuration": {}}', content_type=JSON
    )
    httpd.add("/api/v1/timelines/tag/acme", b'{"error":"401"}', status=401, content_type=JSON)
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url]))
    (report,) = poll(cfg).reports
    assert "a token is needed" in report.error
    assert len(httpd.requests_for("/api/v1/timelines/tag/acme")) == 1
    assert "a token is needed" in cli_output(cfg, "status")


def test_public_hashtag_timelines_read_the_instance_info_once(tmp_path, httpd):
    httpd.add("/api/v2/instance", instance_info("public", "authenticated"), content_type=JSON)
    serve_timeline(httpd, "acme", fixture("tag_acme_instance_a.json"))
    cfg = write_config(tmp_path, [], extra=source([httpd.base_url], "    follow_threads: false\n"))
    for _ in range(2):
        (report,) = poll(cfg).reports
        assert report.ok, report.error
    assert len(httpd.requests_for("/api/v2/instance")) == 1
    assert len(httpd.requests_for("/api/v1/timelines/tag/acme")) == 2
    assert "token" not in cli_output(cfg, "check")
