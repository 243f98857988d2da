"""Speed work that users notice: workers started when a poll needs them and only then, each
sentence read once for every score of an item, lean summaries and indexes."""

from __future__ import annotations

import asyncio
import sqlite3

from click.testing import CliRunner
from helpers import rss, write_config

from listener import pipeline, sentiment
from listener.cli import cli
from listener.config import load_config
from listener.models import Item
from listener.pipeline import PollSummary, poll_sources
from listener.runtime import open_runtime
from listener.sentiment import Scorer, _TracingAnalyzer
from listener.store import Store

NEGATIVE = "Acme support never answered and the app keeps crashing. I want a refund."
POSITIVE = "I love my new Rocket Skates, Acme did a fantastic job. Great product!"


def _feeds(httpd, n: int, *, started: list[bool] | None = None, rt_box: list | None = None):
    """n loopback feeds, each with one negative and one positive Acme post."""
    sources = []
    for k in range(n):
        body = rss(
            [
                {
                    "title": f"Acme {k}",
                    "link": f"https://f{k}.example/a",
                    "guid": "a",
                    "body": NEGATIVE,
                },
                {
                    "title": f"Skates {k}",
                    "link": f"https://f{k}.example/b",
                    "guid": "b",
                    "body": POSITIVE,
                },
            ]
        )

        def handler(_request, body=body):
            if started is not None and rt_box:
                started.append(rt_box[0].cpu.started)
            return 200, {"content-type": "application/rss+xml", "etag": '"v1"'}, body.encode()

        httpd.add(f"/f{k}", handler=handler)
        sources.append((f"f{k}", httpd.url(f"/f{k}")))
    return sources


def test_a_first_poll_of_many_sources_starts_its_workers_before_the_first_body(
    tmp_path, httpd, monkeypatch
):
    """The workers' start-up (imports, the scorer's lexicon) overlaps the first fetches."""
    monkeypatch.setattr(pipeline, "EARLY_START_SOURCES", 3)
    started: list[bool] = []
    rt_box: list = []
    config = load_config(
        write_config(tmp_path, _feeds(httpd, 3, started=started, rt_box=rt_box)), env={}
    )

    async def main() -> PollSummary:
        async with open_runtime(config, workers=1, worker_min_bytes=10**9) as rt:
            rt_box.append(rt)
            return await poll_sources(list(config.sources), rt)

    summary = asyncio.run(main())
    assert summary.ok == 3 and sum(summary.new_mentions_by_label().values()) == 6
    assert started and all(started)  # already running when the first feed was asked for


def test_a_small_poll_does_not_start_workers_it_does_not_need(tmp_path, httpd):
    """Below the byte threshold, the poll parses and scores inline: same mentions, no processes;
    and a poll of sources already read does not start them early."""
    config = load_config(write_config(tmp_path, _feeds(httpd, 3)), env={})

    async def main() -> tuple[PollSummary, bool]:
        async with open_runtime(config, workers=2, worker_min_bytes=10**9) as rt:
            summary = await poll_sources(list(config.sources), rt)
            return summary, rt.cpu.started

    summary, started = asyncio.run(main())
    assert not started
    assert summary.new_mentions_by_label() == {"positive": 3, "neutral": 0, "negative": 3}
    conn = sqlite3.connect(tmp_path / "mentions.db")
    labels = conn.execute(
        "SELECT label, count(*) FROM mentions GROUP BY label ORDER BY label"
    ).fetchall()
    conn.close()
    assert labels == [("negative", 3), ("positive", 3)]


def test_past_the_byte_threshold_the_workers_take_over(tmp_path, httpd):
    config = load_config(write_config(tmp_path, _feeds(httpd, 3)), env={})

    async def main() -> bool:
        async with open_runtime(config, workers=1, worker_min_bytes=1) as rt:
            await poll_sources(list(config.sources), rt)
            return rt.cpu.started

    assert asyncio.run(main())


def test_poll_summary_counts_new_mentions_without_keeping_them(tmp_path, httpd):
    """`listener poll` of many feeds must not hold every new mention (and its text) until the
    summary: it keeps counts by label."""
    config = load_config(write_config(tmp_path, _feeds(httpd, 2)), env={})

    async def main() -> PollSummary:
        async with open_runtime(config) as rt:
            return await poll_sources(list(config.sources), rt, keep_mentions=False)

    summary = asyncio.run(main())
    assert summary.new_mentions_by_label() == {"positive": 2, "neutral": 0, "negative": 2}
    assert all(r.new_mentions == () for r in summary.reports)


def test_listener_poll_prints_the_new_mentions_by_label(tmp_path, httpd):
    cfg = write_config(tmp_path, _feeds(httpd, 2))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
    assert result.exit_code == 0, result.output
    assert "new mentions: 4 (2 negative, 0 neutral, 2 positive)" in result.output


def test_each_sentence_of_an_item_is_read_once_for_all_its_scores(monkeypatch):
    """The item's score and each brand's mention score share the sentences they read; the
    scores are the same as scoring each snippet on its own."""
    from listener.analyse import score_matches
    from listener.match import Matcher
    from listener.models import Brand

    text = (
        "Acme support never answered and the app keeps crashing. Globex was great though. "
        "The weather was awful all week. I want a refund from Acme."
    )
    item = Item(
        source="s", native_id="1", url="https://x.example/1", title="Acme vs Globex", text=text
    )
    matcher = Matcher.from_brands(
        [Brand(name="Acme", terms=("Acme",)), Brand(name="Globex", terms=("Globex",))]
    )
    scorer = Scorer()
    matches = matcher.match_item(item)
    assert {m.brand for m in matches} == {"Acme", "Globex"}

    reads: list[tuple[str, bool]] = []  # (sentence, VADER's whole-text ALL-CAPS flag)
    original = _TracingAnalyzer._sentence

    def counting(self, sentence, cap_diff):
        reads.append((sentence, cap_diff))
        return original(self, sentence, cap_diff)

    cues: list[str] = []
    original_cues = sentiment._sentence_cues

    def counting_cues(s):
        cues.append(s)
        return original_cues(s)

    monkeypatch.setattr(_TracingAnalyzer, "_sentence", counting)
    monkeypatch.setattr(sentiment, "_sentence_cues", counting_cues)
    shared = score_matches(item, matches, matcher, scorer, in_brand_thread=False)
    assert len(reads) == len(set(reads))  # no sentence read twice by VADER's rules
    assert len(cues) == len(set(cues))  # nor for what it says (intents, facts)

    reads.clear()
    cues.clear()
    monkeypatch.setattr(Scorer, "sharing", _no_sharing)
    alone = score_matches(item, matches, matcher, scorer, in_brand_thread=False)
    assert len(reads) > len(set(reads))  # without sharing, the same sentences are re-read
    assert len(cues) > len(set(cues))
    assert shared == alone


class _NoSharing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_sharing(self):
    return _NoSharing()


def test_the_database_has_no_index_nothing_reads(tmp_path):
    store = Store.open(tmp_path / "m.db")
    try:
        names = {
            n for (n,) in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    finally:
        store.close()
    assert "item_keys_item" not in names and "mentions_product" not in names
    assert {"items_published", "mentions_first_seen", "items_thread"} <= names  # these are read
