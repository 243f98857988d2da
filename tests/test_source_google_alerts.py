"""`kind: google_alerts` against a real Google Alerts Atom feed shape, served on loopback."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from helpers import kind_source, poll_once, rows, rss, write_config

from listener.parse import parse_feed
from listener.sources.google_alerts import normalise_item

FIXTURES = Path(__file__).parent / "fixtures" / "google_alerts"
ATOM = "application/atom+xml; charset=utf-8"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ARTICLE = "https://news.example.com/2026/11/acme-recall"


poll = partial(poll_once, now=lambda: NOW)


def source(url: str) -> str:
    return kind_source("alert", "google_alerts", url=url)


def test_alerts_land_unwrapped_and_without_bold_markup(tmp_path, httpd):
    httpd.add("/alerts/feeds/0673/1458", (FIXTURES / "acme.atom").read_bytes(), content_type=ATOM)
    cfg = write_config(tmp_path, [], extra=source(httpd.url("/alerts/feeds/0673/1458")))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]
    items = {r[0]: r[1:] for r in rows(tmp_path, "SELECT url, title, text, thread_key FROM items")}
    # The google.com/url redirect is unwrapped to the article, tracking parameters dropped.
    assert set(items) == {ARTICLE, "https://www.reviews.example.org/tools/acme-anvil"}
    title, text, thread = items[ARTICLE]
    assert title == "Acme recalls rocket skates after brake failures"
    assert "<b>" not in text and not text.endswith("...")
    assert text.endswith("a dangerous and awful")
    assert thread == "news.example.com/2026/11/acme-recall"
    # The sighting keeps the article's address, not Google's tracking redirect.
    assert sorted(u for (u,) in rows(tmp_path, "SELECT url FROM sightings")) == [
        ARTICLE,
        "https://www.reviews.example.org/tools/acme-anvil",
    ]
    labels = dict(rows(tmp_path, "SELECT url, label FROM mentions"))
    assert labels == {
        ARTICLE: "negative",
        "https://www.reviews.example.org/tools/acme-anvil": "positive",
    }


def test_the_article_from_an_alert_and_a_blog_is_one_item(tmp_path, httpd):
    httpd.add("/alerts/feeds/0673/1458", (FIXTURES / "acme.atom").read_bytes(), content_type=ATOM)
    httpd.add(
        "/blog/feed",
        rss(
            [
                {
                    "title": "Acme recall",
                    "link": "http://news.example.com/2026/11/acme-recall/",
                    "guid": "r1",
                    "body": "<p>Acme recalls its skates.</p>",
                }
            ]
        ),
    )
    cfg = write_config(
        tmp_path,
        [("blog", httpd.url("/blog/feed"))],
        extra=source(httpd.url("/alerts/feeds/0673/1458")),
    )
    poll(cfg)
    # Whichever source came first gave the item its URL (http or https): one item either way.
    same = "SELECT id FROM items WHERE url LIKE '%://news.example.com/2026/11/acme-recall'"
    assert len(rows(tmp_path, same)) == 1
    assert sorted(
        s for (s,) in rows(tmp_path, f"SELECT source FROM sightings WHERE item_id IN ({same})")
    ) == ["alert", "blog"]
    # Polling again (a restart) adds nothing.
    poll(cfg)
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(2,)]


def test_parser_unwraps_google_redirects_and_strips_bold():
    parsed = parse_feed(
        (FIXTURES / "acme.atom").read_bytes(),
        source="a",
        url="https://www.google.com/alerts/feeds/1/2",
    )
    first = normalise_item(parsed.items[0])
    assert first.url == ARTICLE
    assert first.raw_url == ARTICLE
    assert first.extra["alert_link"].startswith("https://www.google.com/url?rct=j&sa=t&url=")
    assert first.title == "Acme recalls rocket skates after brake failures"
    assert first.native_id == "tag:google.com,2013:googlealerts/feed:9781626514377802117"
    assert first.author is None
