"""`kind: gdelt` against the GDELT DOC 2.0 API's response shapes and plain-text errors, on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Clock, kind_source, poll_once, rows, source_cursor, write_config
from helpers import query_params as query_of
from httpd import RequestInfo

from listener.cli import cli

FIXTURES = Path(__file__).parent / "fixtures" / "gdelt"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DOC = "/api/v2/doc/doc"
RECALL_URL = "https://www.dailynews.example.com/business/acme-recall-rocket-skates-2026"
RATE_LIMIT_TEXT = (
    "Please limit requests to one every 5 seconds or contact kalev.leetaru5@gmail.com for "
    "larger queries."
)

poll = partial(poll_once, now=lambda: NOW)


def articles() -> list[dict]:
    # The fixture has a raw tab inside a title, as GDELT's JSON sometimes does.
    return json.loads((FIXTURES / "artlist.json").read_text(), strict=False)["articles"]


def gdelt_source(base_url: str, extra: str = "", **options: object) -> str:
    return kind_source("news", "gdelt", extra, query="acme", base_url=base_url, **options)


def serve_artlist(httpd, arts: list[dict], raw: bytes | None = None) -> None:
    """Answer like GDELT: articles seen since `startdatetime`, newest first, `maxrecords` of them."""

    def handler(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        q = query_of(request)
        since = q["startdatetime"]
        found = [a for a in arts if a.get("seendate", "").replace("T", "").rstrip("Z") >= since]
        found.sort(key=lambda a: a.get("seendate", ""), reverse=True)
        body = json.dumps({"articles": found[: int(q["maxrecords"])]}) if found else "{}"
        if raw is not None:  # the fixture's own bytes (with its raw control character)
            body = raw.decode()
        return 200, {"Content-Type": "application/json; charset=utf-8"}, body.encode()

    httpd.add(DOC, handler=handler)


def plain_text(httpd, text: str, status: int = 200) -> None:
    """GDELT's way of saying no: a line of text, with text/html and (usually) 200 OK."""
    httpd.add(DOC, text + "\n", status=status, content_type="text/html; charset=utf-8")


def test_articles_land_as_items_under_their_canonical_urls(tmp_path, httpd):
    serve_artlist(httpd, articles(), raw=(FIXTURES / "artlist.json").read_bytes())
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2")))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]

    (request,) = httpd.requests_for(DOC)
    assert query_of(request) == {
        "query": "acme",
        "mode": "ArtList",
        "format": "json",
        "sort": "DateDesc",
        "maxrecords": "250",
        "startdatetime": "20261119120000",  # the first poll reaches back a day
    }

    items = {
        r[0]: r[1:]
        for r in rows(tmp_path, "SELECT url, title, author, published_at, thread_key FROM items")
    }
    # The tracking-parameter copy is the same article; the article without a seendate is skipped.
    assert set(items) == {
        "https://www.diario.example.es/economia/acme-abre-oficina-madrid",
        RECALL_URL,
        "https://markets.example.co.uk/globex-acme-rivalry",
    }
    title, author, published, thread = items[RECALL_URL]
    assert title == "Acme recalls Rocket Skates after dozens of injuries, customers furious"
    assert author == "dailynews.example.com"  # the site
    # Seen twice: the earlier sighting is the closer to when it was published.
    assert datetime.fromisoformat(published) == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    assert thread == rows(tmp_path, "SELECT thread_key FROM items WHERE url = ?", RECALL_URL)[0][0]
    assert items["https://markets.example.co.uk/globex-acme-rivalry"][0] == (
        "Globex and Acme: a rivalry that shapes the market"
    )

    labels = dict(rows(tmp_path, "SELECT url, label FROM mentions WHERE brand = 'Acme'"))
    assert labels[RECALL_URL] == "negative"
    assert len(labels) == 3

    # The newest seendate is the cursor.
    assert source_cursor(tmp_path, "news")["seendate"] == "2026-11-20T11:45:00+00:00"


def test_language_filter_and_the_brand_rules_lang_scope(tmp_path, httpd):
    serve_artlist(httpd, articles())
    brands = """\
    - name: Acme
      query: 'Acme AND lang:es'
    """
    cfg = write_config(
        tmp_path,
        [],
        brands=brands,
        extra=gdelt_source(httpd.url("/api/v2"), language="[spanish, French]"),
    )
    assert poll(cfg).failed == 0
    (request,) = httpd.requests_for(DOC)
    assert query_of(request)["query"] == "acme (sourcelang:spanish OR sourcelang:french)"
    # GDELT's "Spanish" is the `es` a brand rule's `lang:` scope speaks of.
    assert rows(tmp_path, "SELECT url FROM mentions") == [
        ("https://www.diario.example.es/economia/acme-abre-oficina-madrid",)
    ]


def test_next_poll_asks_from_the_newest_seen_article_less_the_overlap(tmp_path, httpd):
    arts = articles()
    serve_artlist(httpd, arts)
    clock = Clock(NOW)
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2")))
    assert poll_once(cfg, now=clock).new_items == 3

    later = {
        **arts[1],
        "url": "https://www.diario.example.es/economia/acme-cierra-fabrica",
        "title": "Acme cierra su fábrica de Valencia",
        "seendate": "20261120T121500Z",
    }
    serve_artlist(httpd, [*arts, later])
    httpd.reset()
    clock.now = NOW + timedelta(minutes=30)
    summary = poll_once(cfg, now=clock)  # a new process: the cursor comes from the database
    assert summary.failed == 0 and summary.new_items == 1
    (request,) = httpd.requests_for(DOC)
    # From 11:45 (the newest seen) less 15 minutes: a late batch is not missed.
    assert query_of(request)["startdatetime"] == "20261120113000"
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(4,)]
    assert source_cursor(tmp_path, "news")["seendate"] == "2026-11-20T12:15:00+00:00"


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        (
            "Your query was too short or too long.",
            "the query is too short or too long for GDELT: check `query:`",
        ),
        (
            "The specified phrase is too short.",
            "a keyword or phrase of the query is too short for GDELT: check `query:`",
        ),
        (
            "Denied: <script>SECRET-BODY-TEXT",
            "an answer in plain text instead of results: check `query:`",
        ),
    ],
)
def test_a_plain_text_answer_is_a_source_error_not_an_empty_result(tmp_path, httpd, text, meaning):
    plain_text(httpd, text)
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2")))
    summary = poll(cfg)
    assert summary.failed == 1
    (error, failures) = rows(tmp_path, "SELECT last_error, consecutive_failures FROM sources")[0]
    # In our words: GDELT's own text is never quoted.
    assert error == f"GDELT refused the search: {meaning}"
    assert failures == 1
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(0,)]


@pytest.mark.parametrize("status", [200, 429])
def test_rate_limit_text_makes_the_source_wait(tmp_path, httpd, status):
    plain_text(httpd, RATE_LIMIT_TEXT, status=status)
    clock = Clock(NOW)
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2")))
    summary = poll_once(cfg, now=clock)
    assert summary.failed == 1
    # One request: asking again at once would break the rule GDELT just stated.
    assert httpd.hits[DOC] == 1
    (error,) = rows(tmp_path, "SELECT last_error FROM sources")[0]
    assert error.startswith("GDELT asks for fewer requests (at most one every 5 seconds)")
    assert "kalev" not in error
    assert error.endswith("next request after 2026-11-20T12:05:00+00:00")
    assert source_cursor(tmp_path, "news")["not_before"] == "2026-11-20T12:05:00+00:00"

    # While the wait runs, a poll asks nothing.
    clock.now = NOW + timedelta(minutes=3)
    assert poll_once(cfg, now=clock).new_items == 0
    assert httpd.hits[DOC] == 1

    # Asked too often again: the wait doubles.
    clock.now = NOW + timedelta(minutes=6)
    assert poll_once(cfg, now=clock).failed == 1
    assert httpd.hits[DOC] == 2
    assert source_cursor(tmp_path, "news")["not_before"] == "2026-11-20T12:16:00+00:00"

    # After it, the search goes on, from the first poll's window.
    serve_artlist(httpd, articles())
    httpd.reset()
    clock.now = NOW + timedelta(minutes=16)
    summary = poll_once(cfg, now=clock)
    assert summary.failed == 0 and summary.new_items == 3
    (request,) = httpd.requests_for(DOC)
    assert query_of(request)["startdatetime"] == "20261119121600"
    cursor = source_cursor(tmp_path, "news")
    assert "not_before" not in cursor and "rate_limited" not in cursor


@pytest.mark.parametrize("body", ["{}", '{"articles": []}', ""])
def test_an_empty_result_is_no_news_not_an_error(tmp_path, httpd, body):
    httpd.add(DOC, body, content_type="application/json; charset=utf-8")
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2")))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]
    assert rows(tmp_path, "SELECT last_error, consecutive_failures FROM sources") == [(None, 0)]
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(0,)]
    assert "seendate" not in source_cursor(tmp_path, "news")


def test_gdelt_is_asked_at_most_every_5_minutes(tmp_path, httpd):
    serve_artlist(httpd, articles())
    clock = Clock(NOW)
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2"), every="1m"))
    poll_once(cfg, now=clock)
    clock.now = NOW + timedelta(minutes=2)
    assert poll_once(cfg, now=clock).failed == 0
    assert httpd.hits[DOC] == 1
    clock.now = NOW + timedelta(minutes=5)
    poll_once(cfg, now=clock)
    assert httpd.hits[DOC] == 2

    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: news: GDELT adds articles every 15 min, so this source asks it at most every "
        "5m, not every 1m (every: 15m is enough)"
    ) in result.output


def test_options_are_checked(tmp_path, httpd):
    cfg = write_config(
        tmp_path, [], extra=gdelt_source(httpd.url("/api/v2"), max_records=1000, language="'e n'")
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 2
    assert "max_records" in result.output and "250" in result.output
    assert "'e n' is not a language name (english) or code (eng)" in result.output


def test_a_full_page_says_older_articles_were_skipped(tmp_path, httpd):
    serve_artlist(httpd, articles())
    clock = Clock(NOW)
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2"), max_records=2))
    poll_once(cfg, now=clock)
    (note,) = rows(tmp_path, "SELECT last_note FROM sources")[0]
    assert note == (
        "older articles skipped: GDELT gives 2 at most and had that many since "
        "2026-11-19T12:00:00+00:00; poll more often or narrow the query"
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "status"])
    assert "note: older articles skipped" in result.output

    # A later poll that gets everything clears it.
    clock.now = NOW + timedelta(minutes=15)
    poll_once(cfg, now=clock)
    assert rows(tmp_path, "SELECT last_note FROM sources") == [(None,)]


def test_a_server_error_names_its_status_not_what_gdelt_said(tmp_path, httpd):
    plain_text(httpd, "Service temporarily unavailable", status=503)
    cfg = write_config(tmp_path, [], extra=gdelt_source(httpd.url("/api/v2")))
    assert poll(cfg).failed == 1
    (error,) = rows(tmp_path, "SELECT last_error FROM sources")[0]
    assert error == "GDELT answered HTTP 503 with plain text instead of JSON"
    assert httpd.hits[DOC] == 1  # not retried at once
