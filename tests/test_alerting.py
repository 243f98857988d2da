"""Alert rules and the outbox, driven through real polls of loopback feeds with a controlled clock."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from helpers import BASE_TIME, rss, write_config
from httpd import LoopbackServer, RequestInfo

from listener.alerts.outbox import Backoff, build_channels, deliver_pending
from listener.config import load_config
from listener.pipeline import PollSummary, poll_sources
from listener.runtime import open_runtime
from listener.store import Store

ANGRY = [
    "Support never answered and the app keeps crashing. Terrible.",
    "The outage lasted two days. Awful, I hate this.",
    "Requested a refund after data loss. Worst service ever.",
    "Cancelled. Horrible and broken.",
    "Still broken, still no answer. Disgusting.",
    "This is a disaster, everything failed again.",
    "Lost all my files. Furious and angry.",
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def thread_feed(httpd: LoopbackServer, n_angry: int, *, calm_replies: int = 0) -> None:
    post = {
        "title": "Switching to Acme?",
        "link": "https://forum.example.com/t/acme",
        "guid": "root",
        "body": "Has anyone switched to Acme? Looking for opinions.",
        "hours_ago": "2",
    }
    replies = [
        {
            "title": f"Re: reply {i}",
            "link": f"https://forum.example.com/t/acme#comment-{i}",
            "guid": f"reply-{i}",
            "body": text,
            "hours_ago": str(1 / (i + 2)),
        }
        for i, text in enumerate(ANGRY[:n_angry])
    ]
    replies += [
        {
            "title": f"Re: calm {i}",
            "link": f"https://forum.example.com/t/acme#comment-calm-{i}",
            "guid": f"calm-{i}",
            "body": "It works for us.",
            "hours_ago": "0.1",
        }
        for i in range(calm_replies)
    ]
    httpd.add("/forum", rss([post, *replies], title="Forum"))


def setup(tmp_path: Path, httpd: LoopbackServer, rules: str = "", channels: str = "") -> Path:
    extra = "alerts:\n" + (channels or "  channels: []\n") + (rules or "")
    return write_config(tmp_path, [("forum", httpd.url("/forum"))], extra=extra)


def poll(cfg: Path, clock: Clock) -> PollSummary:
    config = load_config(cfg, env={})

    async def main() -> PollSummary:
        async with open_runtime(config, now=clock) as rt:
            return await poll_sources(list(config.sources), rt)

    return asyncio.run(main())


def alerts(tmp_path: Path) -> list[tuple[str, int, str]]:
    store = Store.open(tmp_path / "mentions.db")
    try:
        return store.conn.execute("SELECT rule, level, why FROM alerts ORDER BY id").fetchall()
    finally:
        store.close()


RULES = """\
  rules:
    negative_thread:
      min_negative: 3
      min_posts: 50          # the count rule alone in these tests
      escalate_every: 2
      window: 1d
      cooldown: 1h
"""


def test_thread_alerts_once_then_again_only_when_materially_worse(tmp_path, httpd):
    clock = Clock()
    cfg = setup(tmp_path, httpd, RULES)
    thread_feed(httpd, 2)
    poll(cfg, clock)
    assert alerts(tmp_path) == []  # two negative replies: not yet

    thread_feed(httpd, 3)
    clock.advance(minutes=5)
    poll(cfg, clock)
    fired = alerts(tmp_path)
    assert [(r, lvl) for r, lvl, _ in fired] == [("negative_thread", 1)]
    assert "3 negative posts" in fired[0][2]

    thread_feed(httpd, 4)  # one more: not materially worse
    clock.advance(minutes=5)
    poll(cfg, clock)
    assert len(alerts(tmp_path)) == 1

    thread_feed(httpd, 6)  # level 2, but within the cooldown: held back ...
    clock.advance(minutes=5)
    poll(cfg, clock)
    assert len(alerts(tmp_path)) == 1

    thread_feed(httpd, 7)  # ... and sent once the cooldown is over
    clock.advance(hours=1)
    poll(cfg, clock)
    assert [(r, lvl) for r, lvl, _ in alerts(tmp_path)] == [
        ("negative_thread", 1),
        ("negative_thread", 3),
    ]


def test_corrected_labels_are_what_rules_use(tmp_path, httpd):
    clock = Clock()
    cfg = setup(tmp_path, httpd, RULES)
    thread_feed(httpd, 2)
    poll(cfg, clock)
    assert alerts(tmp_path) == []
    store = Store.open(tmp_path / "mentions.db")
    try:
        (root_mention,) = store.conn.execute("SELECT id FROM mentions").fetchone()
        # The analyst reads the question that opened the thread as negative; the scorer did not.
        store.set_label(root_mention, "negative")
        assert store.conn.execute("SELECT negative_posts FROM threads").fetchone()[0] == 3
    finally:
        store.close()
    thread_feed(httpd, 2, calm_replies=1)
    clock.advance(minutes=5)
    poll(cfg, clock)  # the thread changed: rules run on the corrected labels
    assert [r for r, _, _ in alerts(tmp_path)] == ["negative_thread"]


def test_not_relevant_mentions_do_not_count(tmp_path, httpd):
    clock = Clock()
    cfg = setup(tmp_path, httpd, RULES.replace("min_negative: 3", "min_negative: 1"))
    httpd.add(
        "/forum",
        rss(
            [
                {
                    "title": "Acme Looney cartoon",
                    "link": "https://x.example/1",
                    "guid": "1",
                    "body": "Wile E. Coyote's Acme anvil failed horribly again, terrible luck.",
                    "hours_ago": "1",
                }
            ]
        ),
    )
    poll(cfg, clock)
    assert [r for r, _, _ in alerts(tmp_path)] == ["negative_thread"]
    # Marking it not relevant keeps it out of the counts and of the thread's aggregates.
    store = Store.open(tmp_path / "mentions.db")
    try:
        (mid,) = store.conn.execute("SELECT id FROM mentions").fetchone()
        store.set_label(mid, None, not_relevant=True)
        posts, negative = store.conn.execute("SELECT posts, negative_posts FROM threads").fetchone()
        assert (posts, negative) == (0, 0)
        assert store.counts()["by_brand"] == []
    finally:
        store.close()


def test_source_health_alerts_once_per_failure_streak(tmp_path, httpd):
    clock = Clock()
    rules = "  rules:\n    source_health:\n      failures: 3\n"
    cfg = setup(tmp_path, httpd, rules)
    httpd.add("/forum", "<html><title>Sign in</title></html>", content_type="text/html")
    for _ in range(5):
        poll(cfg, clock)
        clock.advance(minutes=20)
    fired = alerts(tmp_path)
    assert [r for r, _, _ in fired] == ["source_health"]
    assert "3 failed polls in a row" in fired[0][2] and "HTML" in fired[0][2]


def test_very_negative_mention_from_an_influential_source(tmp_path, httpd):
    clock = Clock()
    cfg = setup(tmp_path, httpd)
    cfg.write_text(
        cfg.read_text().replace("    every: 15m\n", "    every: 15m\n    influential: true\n", 1)
    )
    httpd.add(
        "/forum",
        rss(
            [
                {
                    "title": "Review",
                    "link": "https://press.example/acme",
                    "guid": "1",
                    "body": "Acme is a horrible, awful, disgusting scam. Terrible!",
                    "hours_ago": "1",
                }
            ]
        ),
    )
    poll(cfg, clock)
    assert "very_negative_mention" in [r for r, _, _ in alerts(tmp_path)]


def test_spike_against_the_trailing_baseline(tmp_path, httpd):
    clock = Clock()
    clock.now = BASE_TIME - timedelta(hours=2)  # feed dates are relative to BASE_TIME
    rules = "  rules:\n    negative_thread:\n      enabled: false\n    spike:\n      window: 1h\n      baseline: 1d\n      min_count: 4\n"
    cfg = setup(tmp_path, httpd, rules)
    # A quiet history: one negative mention, a day ago.
    httpd.add(
        "/forum",
        rss(
            [
                {
                    "title": "meh",
                    "link": "https://b.example/0",
                    "guid": "0",
                    "body": "Acme was bad once.",
                    "hours_ago": "20",
                }
            ]
        ),
    )
    poll(cfg, clock)
    clock.advance(hours=2)
    entries = [
        {
            "title": f"Acme down {i}",
            "link": f"https://b.example/{i}",
            "guid": str(i),
            "body": "Acme is down again, terrible outage.",
            "hours_ago": "0.1",
        }
        for i in range(1, 6)
    ]
    httpd.add("/forum", rss(entries))
    poll(cfg, clock)
    fired = alerts(tmp_path)
    assert [r for r, _, _ in fired] == ["spike"]
    assert "5 negative mentions in the last hour" in fired[0][2]


class Receiver:
    def __init__(self, fail: int, status: int = 500) -> None:
        self.fail, self.status, self.got = fail, status, []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        if self.fail:
            self.fail -= 1
            return self.status, {}, b"down"
        self.got.append(json.loads(request.body))
        return 200, {}, b"ok"


def flush(cfg: Path, clock: Clock, **kw) -> object:
    config = load_config(cfg, env={})
    store = Store.open(config.database)

    async def main() -> object:
        async with httpx.AsyncClient() as http:
            return await deliver_pending(
                store,
                build_channels(config.alerts.channels),
                http=http,
                now=clock,
                backoff=Backoff(60, 3600),
                **kw,
            )

    try:
        return asyncio.run(main())
    finally:
        store.close()


def test_down_channel_keeps_alerts_pending_with_backoff_then_delivers_once(tmp_path, httpd):
    clock = Clock()
    hook = Receiver(fail=2)
    httpd.add("/hook", handler=hook)
    channels = (
        f"  channels:\n    - name: ops\n      kind: webhook\n      url: {httpd.url('/hook')}\n"
    )
    cfg = setup(tmp_path, httpd, RULES, channels)
    thread_feed(httpd, 3)
    poll(cfg, clock)
    assert flush(cfg, clock).retrying == 1  # 500: pending
    assert flush(cfg, clock).retrying == 0 and not hook.got  # not due yet: backoff
    clock.advance(seconds=61)
    assert flush(cfg, clock).retrying == 1  # second failure, backoff doubles
    clock.advance(seconds=61)
    assert flush(cfg, clock).sent == 0
    clock.advance(seconds=60)
    assert flush(cfg, clock).sent == 1
    clock.advance(hours=2)
    assert flush(cfg, clock).sent == 0
    assert len(hook.got) == 1 and hook.got[0]["rule"] == "negative_thread"
    keys = {r.headers.get("idempotency-key") for r in httpd.requests_for("/hook")}
    assert len(keys) == 1  # every attempt carried the same key


def test_gone_webhook_is_marked_failed_not_retried_forever(tmp_path, httpd):
    clock = Clock()
    httpd.add("/hook", handler=Receiver(fail=99, status=404))
    channels = (
        f"  channels:\n    - name: ops\n      kind: webhook\n      url: {httpd.url('/hook')}\n"
    )
    cfg = setup(tmp_path, httpd, RULES, channels)
    thread_feed(httpd, 3)
    poll(cfg, clock)
    report = flush(cfg, clock)
    assert report.failed == 1 and "404" in report.errors[0]
    clock.advance(hours=3)
    assert flush(cfg, clock).failed == 0
    assert httpd.hits["/hook"] == 1


def test_digest_channel_gathers_alerts(tmp_path, httpd):
    clock = Clock()
    hook = Receiver(fail=0)
    httpd.add("/hook", handler=hook)
    channels = f"  channels:\n    - name: ops\n      kind: webhook\n      url: {httpd.url('/hook')}\n      digest: hourly\n"
    cfg = setup(tmp_path, httpd, RULES + "    source_health:\n      failures: 1\n", channels)
    thread_feed(httpd, 3)
    poll(cfg, clock)
    assert flush(cfg, clock).sent == 0  # the hour has not passed
    clock.advance(minutes=61)
    assert flush(cfg, clock).sent == 1
    assert hook.got[0]["type"] == "listener.digest"
