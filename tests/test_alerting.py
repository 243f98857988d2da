"""Alert rules and the outbox, driven through real polls of loopback feeds with a controlled clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from helpers import BASE_TIME, rss, write_config
from httpd import LoopbackServer, RequestInfo

from listener.alerts.channels import SlackRateLimiter
from listener.alerts.outbox import SEND_LEASE_S, Backoff, build_channels, deliver_pending
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


# --------------------------------------------------------------- one bad channel, not all of them


def three_channels(httpd: LoopbackServer) -> str:
    """A Slack webhook that answers 429 (first, so a crash there would stop the others), then a
    JSON webhook and a second Slack webhook that accept."""
    return (
        "  channels:\n"
        f"    - name: slack-limited\n      kind: slack\n      webhook_url: {httpd.url('/limited')}\n"
        f"    - name: ops\n      kind: webhook\n      url: {httpd.url('/ops')}\n"
        f"    - name: slack-ok\n      kind: slack\n      webhook_url: {httpd.url('/slack-ok')}\n"
    )


def outbox_rows(tmp_path: Path) -> dict[str, tuple[str, int, str, str | None]]:
    store = Store.open(tmp_path / "mentions.db")
    try:
        return {
            channel: (status, attempts, next_at, error)
            for channel, status, attempts, next_at, error in store.conn.execute(
                "SELECT channel, status, attempts, next_attempt_at, last_error FROM outbox"
            )
        }
    finally:
        store.close()


@pytest.mark.parametrize(
    "retry_after",
    ["1e20", "inf", "99999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"],
)
def test_a_bad_retry_after_on_one_channel_never_stops_the_others(
    tmp_path, httpd, caplog, retry_after
):
    clock = Clock()
    httpd.add("/limited", body="rate_limited", status=429, retry_after=retry_after)
    httpd.add("/ops", body="{}", content_type="application/json")
    httpd.add("/slack-ok", body="ok", content_type="text/plain")
    cfg = setup(tmp_path, httpd, RULES, three_channels(httpd))
    thread_feed(httpd, 3)
    poll(cfg, clock)

    with caplog.at_level(logging.DEBUG):
        report = flush(cfg, clock, limiter=SlackRateLimiter(0))
    assert (report.sent, report.retrying, report.failed) == (2, 1, 0)
    assert "429" in report.errors[0]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert httpd.hits["/ops"] == 1 and httpd.hits["/slack-ok"] == 1

    rows = outbox_rows(tmp_path)
    assert rows["ops"][0] == "sent" and rows["slack-ok"][0] == "sent"
    status, attempts, next_at, error = rows["slack-limited"]
    assert (status, attempts) == ("pending", 1)
    assert error is not None and "rate limited" in error
    # Asked to wait "forever": it waits the outbox's longest backoff (1 h here), no more.
    wait = datetime.fromisoformat(next_at.replace("Z", "+00:00")) - clock.now
    assert timedelta(minutes=59) <= wait <= timedelta(hours=1)

    # Nothing is due now; an hour later the limited channel is tried again, the others are done.
    assert flush(cfg, clock, limiter=SlackRateLimiter(0)).errors == []
    clock.advance(hours=1, seconds=1)
    httpd.add("/limited", body="ok", content_type="text/plain")
    assert flush(cfg, clock, limiter=SlackRateLimiter(0)).sent == 1
    assert httpd.hits["/limited"] == 2 and httpd.hits["/ops"] == 1
    assert outbox_rows(tmp_path)["slack-limited"][:2] == ("sent", 2)


def test_bad_retry_after_through_alerts_flush_exits_cleanly(tmp_path, httpd):
    """What a user sees: `listener alerts flush` reports the limited channel and delivers the
    others, without a traceback."""
    httpd.add("/limited", body="rate_limited", status=429, retry_after="1e20")
    httpd.add("/ops", body="{}", content_type="application/json")
    httpd.add("/slack-ok", body="ok", content_type="text/plain")
    cfg = setup(tmp_path, httpd, RULES, three_channels(httpd))
    thread_feed(httpd, 3)
    poll(cfg, Clock())

    done = subprocess.run(
        [sys.executable, "-m", "listener", "-c", str(cfg), "alerts", "flush"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # 1: something is still undelivered (documented)
    assert "Traceback" not in out
    assert "alerts: 2 sent, 1 still pending, 0 failed" in out
    assert "slack-limited: Slack slack-limited: rate limited, HTTP 429 (retry after 3600 s)" in out


def test_an_unreadable_alert_is_marked_failed_and_the_rest_are_delivered(tmp_path, httpd):
    clock = Clock()
    ops, other = Receiver(fail=0), Receiver(fail=0)
    httpd.add("/ops", handler=ops)
    httpd.add("/other", handler=other)
    channels = (
        "  channels:\n"
        f"    - name: ops\n      kind: webhook\n      url: {httpd.url('/ops')}\n"
        f"    - name: other\n      kind: webhook\n      url: {httpd.url('/other')}\n"
    )
    cfg = setup(tmp_path, httpd, RULES, channels)
    thread_feed(httpd, 3)
    poll(cfg, clock)
    # A second alert, then the first one's stored payload is damaged (a hand edit, a bug).
    store = Store.open(tmp_path / "mentions.db")
    try:
        with store.transaction():
            store.conn.execute(
                "INSERT INTO alerts(key, created_at, rule, level, brand, subject, title, why, "
                "payload) SELECT 'second', created_at, rule, level, brand, 'second', title, why, "
                "payload FROM alerts WHERE id = 1"
            )
            store.conn.execute(
                "INSERT INTO outbox(alert_id, channel, next_attempt_at) "
                "SELECT 2, channel, next_attempt_at FROM outbox WHERE alert_id = 1"
            )
            store.conn.execute("UPDATE alerts SET payload = '{\"alert_id\": ' WHERE id = 1")
    finally:
        store.close()

    report = flush(cfg, clock)
    assert (report.sent, report.failed) == (2, 2)
    assert len(ops.got) == 1 and len(other.got) == 1
    store = Store.open(tmp_path / "mentions.db")
    try:
        states = store.conn.execute(
            "SELECT alert_id, channel, status, last_error FROM outbox ORDER BY alert_id, channel"
        ).fetchall()
    finally:
        store.close()
    assert [(a, c, s) for a, c, s, _ in states] == [
        (1, "ops", "failed"),
        (1, "other", "failed"),
        (2, "ops", "sent"),
        (2, "other", "sent"),
    ]
    assert "cannot be read" in states[0][3]


# ----------------------------------------------------------------- a send cut off in the middle


def test_a_send_is_claimed_before_the_network_call_and_retried_once_after_its_lease(
    tmp_path, httpd
):
    """The row says `sending` (committed) while the receiver holds the request; a flush that was
    cut off there leaves it so, and it is sent exactly once more when its lease runs out."""
    clock = Clock()
    arrived, release = threading.Event(), threading.Event()

    def slow_receiver(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        arrived.set()
        release.wait(20)
        return 200, {}, b"{}"

    httpd.add("/ops", handler=slow_receiver)
    channels = (
        f"  channels:\n    - name: ops\n      kind: webhook\n      url: {httpd.url('/ops')}\n"
    )
    cfg = setup(tmp_path, httpd, RULES, channels)
    thread_feed(httpd, 3)
    poll(cfg, clock)
    config = load_config(cfg, env={})
    store = Store.open(config.database)
    seen: list[tuple[str, int]] = []

    async def cut_off() -> None:
        async with httpx.AsyncClient() as http:
            task = asyncio.create_task(
                deliver_pending(store, build_channels(config.alerts.channels), http=http, now=clock)
            )
            await asyncio.to_thread(arrived.wait, 20)
            # What another process (or the same one after a crash) reads while the request is out.
            reader = Store.open(config.database)
            try:
                seen.append(reader.conn.execute("SELECT status, attempts FROM outbox").fetchone())
            finally:
                reader.close()
            task.cancel()  # the process dies here: no answer is recorded
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(cut_off())
    finally:
        release.set()
        store.close()
    assert seen == [("sending", 1)]
    assert outbox_rows(tmp_path)["ops"][:2] == ("sending", 1)

    # Within the lease another flush leaves it alone: the first sender may still be at it.
    assert flush(cfg, clock).sent == 0
    assert httpd.hits["/ops"] == 1
    clock.advance(seconds=SEND_LEASE_S + 1)
    assert flush(cfg, clock).sent == 1
    clock.advance(hours=2)
    assert flush(cfg, clock).sent == 0
    assert httpd.hits["/ops"] == 2  # once more, never more
    status, attempts, _, _ = outbox_rows(tmp_path)["ops"]
    assert (status, attempts) == ("sent", 2)
    keys = {r.headers["idempotency-key"] for r in httpd.requests_for("/ops")}
    assert len(keys) == 1  # so a receiver that honours it shows it once
