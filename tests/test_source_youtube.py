"""`kind: youtube` against YouTube's real channel feed shape, served on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import kind_source, poll_once, rows, write_config

from listener.config import ConfigError, load_config

FIXTURES = Path(__file__).parent / "fixtures" / "youtube"
CHANNEL = "UCq2VqkZsHv7Fz8nXW4J0aQw"
ATOM = "text/xml; charset=UTF-8"  # what YouTube sends for videos.xml
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


poll = partial(poll_once, now=lambda: NOW)


def source(base_url: str, extra: str = "") -> str:
    return kind_source("yt", "youtube", extra, channel_id=CHANNEL, base_url=base_url)


def test_channel_videos_land_in_the_database(tmp_path, httpd):
    httpd.add(
        "/feeds/videos.xml", (FIXTURES / "videos.xml").read_bytes(), content_type=ATOM, etag='"yt1"'
    )
    cfg = write_config(tmp_path, [], extra=source(httpd.base_url))
    summary = poll(cfg)
    assert summary.failed == 0, [r.error for r in summary.reports]
    (request,) = httpd.requests_for("/feeds/videos.xml")
    assert parse_qs(urlsplit(request.path).query) == {"channel_id": [CHANNEL]}

    items = {
        r[0]: r[1:]
        for r in rows(
            tmp_path,
            "SELECT native_id, url, thread_key, title, text, author, published_at FROM items",
        )
    }
    video = items["yt:video:Xq3fT9kLw2E"]
    assert video[:3] == (
        "https://www.youtube.com/watch?v=Xq3fT9kLw2E",
        "youtube:Xq3fT9kLw2E",
        "Acme Rocket Skates: 30 days later (brutally honest review)",
    )
    # media:description is the video's text, entities decoded, line breaks kept.
    assert video[3].startswith("The Acme Rocket Skates broke twice in a month")
    assert "4:12 The crash & what went wrong" in video[3]
    assert video[4] == "Gadget Garage" and video[5].startswith("2026-11-18T15:00:06")
    assert rows(tmp_path, "SELECT label FROM mentions WHERE brand = 'Acme'") == [("negative",)]

    # A restart: a conditional GET, nothing added.
    again = poll(cfg)
    assert again.reports[0].not_modified and again.new_items == 0
    assert httpd.requests_for("/feeds/videos.xml")[-1].headers["if-none-match"] == '"yt1"'
    assert rows(tmp_path, "SELECT count(*) FROM items") == [(2,)]


def test_404_is_transient_until_it_repeats(tmp_path, httpd):
    httpd.add(
        "/feeds/videos.xml",
        "<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>",
        status=404,
        content_type="text/html",
    )
    cfg = write_config(tmp_path, [], extra=source(httpd.base_url, "    not_found_grace: 2\n"))

    for n in (1, 2):
        (report,) = poll(cfg).reports
        assert report.ok and report.not_modified
        assert rows(tmp_path, "SELECT consecutive_failures, cursor FROM sources") == [
            (0, json.dumps({"not_found_in_a_row": n}))
        ]
    (report,) = poll(cfg).reports
    assert not report.ok and "404 for more than 2 polls in a row" in report.error
    assert "channel_id" in report.error
    assert rows(tmp_path, "SELECT consecutive_failures FROM sources") == [(1,)]

    # The feed is back: items arrive and the count starts again from zero.
    httpd.add("/feeds/videos.xml", (FIXTURES / "videos.xml").read_bytes(), content_type=ATOM)
    (report,) = poll(cfg).reports
    assert report.ok and report.new_items == 2
    assert rows(tmp_path, "SELECT consecutive_failures, cursor FROM sources") == [
        (0, json.dumps({"not_found_in_a_row": 0}))
    ]


def test_other_errors_are_failures_at_once(tmp_path, httpd):
    httpd.add(
        "/feeds/videos.xml",
        "<html><head><title>Before you continue to YouTube</title></head></html>",
        content_type="text/html",
    )
    cfg = write_config(tmp_path, [], extra=source(httpd.base_url))
    (report,) = poll(cfg).reports
    assert not report.ok and report.error.startswith("YouTube feed: got an HTML page")


def test_playlist_feed_and_option_checks(tmp_path):
    ok = write_config(
        tmp_path,
        [],
        extra="  - name: y\n    kind: youtube\n    playlist_id: PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf\n",
    )
    (spec,) = load_config(ok, env={}).sources
    from listener.sources.youtube import feed_url

    assert feed_url(spec.options) == (
        "https://www.youtube.com/feeds/videos.xml?playlist_id=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf"
    )
    both = write_config(
        tmp_path,
        [],
        extra=f"  - name: y\n    kind: youtube\n    channel_id: {CHANNEL}\n    playlist_id: PLrAXtmErZgOeiKm4sgNOk\n",
    )
    with pytest.raises(ConfigError, match="exactly one of channel_id"):
        load_config(both, env={})
    bad = write_config(
        tmp_path, [], extra="  - name: y\n    kind: youtube\n    channel_id: '@gadgetgarage'\n"
    )
    with pytest.raises(ConfigError, match=r"sources\[0\]\.channel_id"):
        load_config(bad, env={})
