"""One clear alert per conversation, that says what to do (issue 11, engineer C).

Driven through real polls of a loopback forum feed, delivered to a loopback Slack webhook and a
real SMTP server (aiosmtpd), with a clock the test moves. The brand's own voice (`by_brand`,
`threads.answered_at`) and the triage state (`threads.status`) are filled by other parts of the
store; where a test needs them it writes them as those parts do, in SQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from helpers import BASE_TIME, write_config
from httpd import LoopbackServer, RequestInfo
from smtp_peer import messages

from listener.alerts.message import AlertMessage
from listener.alerts.outbox import Backoff, build_channels, deliver_pending, message_from_payload
from listener.alerts.render import render_html, render_slack, render_text
from listener.config import ConfigError, load_config
from listener.pipeline import poll_sources
from listener.runtime import open_runtime
from listener.store import Store
from listener.text import thread_key_for_url
from listener.views import post_negative, post_score

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOPIC = "https://forum.example.com/t/kettle-owners/881"
SERVE = "http://127.0.0.1:8001"
BRANDS = """\
  - name: Acme
    terms: [Acme]
    accounts: ["Acme Support"]
  - name: Globex
    terms: [Globex]
"""
VERY_ANGRY = [
    "Acme support is a disaster. Broken, awful, horrible, I hate it.",
    "Worst purchase ever, the Acme kettle exploded. Terrible, disgusting, furious.",
    "Awful. Horrible. The Acme app crashed and lost everything, I am furious and disgusted.",
    "Terrible Acme service, a horrible scam, awful and broken again. Hate it. Globex works.",
    "Disgusting Acme support, the worst, everything failed, horrible and awful.",
]
LEAVING = "We are leaving Acme for Globex next month, the outage was awful."
APOLOGY = (
    "Acme Support here: we are so sorry for the terrible outage, an awful experience. "
    "We are fixing it."
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class Slack:
    """A loopback Slack incoming webhook."""

    def __init__(self) -> None:
        self.got: list[dict] = []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        self.got.append(json.loads(request.body))
        return 200, {"content-type": "text/plain"}, b"ok"


def post(
    i: int,
    body: str,
    *,
    author: str | None = None,
    hours_ago: float = 0.5,
    title: str = "Re: Acme kettle owners",
) -> dict:
    entry = {
        # A reply's title is the topic's "Re:": the alert quotes the body, never this.
        "title": title,
        "link": f"{TOPIC}#comment-{i}",
        "guid": f"c{i}",
        "body": body,
        "hours_ago": str(hours_ago),
    }
    if author:
        entry["author"] = author
    return entry


def rss(entries: list[dict], *, title: str = "Forum") -> str:
    """An RSS 2.0 forum feed; entries as `helpers.rss` takes them, plus `author` (dc:creator)."""
    items = []
    for e in entries:
        published = BASE_TIME - timedelta(hours=float(e.get("hours_ago", 0)))
        author = f"<dc:creator>{escape(e['author'])}</dc:creator>" if e.get("author") else ""
        items.append(
            f"<item><title>{escape(e['title'])}</title><link>{escape(e['link'])}</link>"
            f'<guid isPermaLink="false">{escape(e["guid"])}</guid>{author}'
            f"<pubDate>{format_datetime(published)}</pubDate>"
            f"<description><![CDATA[{e.get('body', '')}]]></description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>{escape(title)}</title><link>https://forum.example.com/</link>"
        "<description>d</description>" + "".join(items) + "</channel></rss>"
    )


def topic(*replies: dict) -> str:
    root = {
        "title": "Acme kettle owners",
        "link": TOPIC,
        "guid": "root",
        "body": "Bought an Acme kettle last month. How is yours?",
        "hours_ago": "6",
    }
    return rss([root, *replies], title="Forum")


def setup(tmp_path: Path, httpd: LoopbackServer, smtp_port: int, rules: str) -> Path:
    extra = f"""\
serve_url: {SERVE}
alerts:
  channels:
    - name: marketing-slack
      kind: slack
      webhook_url: {httpd.url("/hooks/slack")}
    - name: marketing-email
      kind: email
      host: 127.0.0.1
      port: {smtp_port}
      from: listener@example.com
      to: [marketing@example.com]
  rules:
{rules}"""
    return write_config(tmp_path, [("forum", httpd.url("/forum"))], brands=BRANDS, extra=extra)


def poll(cfg: Path, clock: Clock) -> None:
    config = load_config(cfg, env={})

    async def main() -> None:
        async with open_runtime(config, now=clock) as rt:
            await poll_sources(list(config.sources), rt)

    asyncio.run(main())


def flush(cfg: Path, clock: Clock) -> None:
    config = load_config(cfg, env={})
    store = Store.open(config.database)

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            await deliver_pending(
                store,
                build_channels(config.alerts.channels),
                http=http,
                now=clock,
                backoff=Backoff(60, 3600),
            )

    try:
        asyncio.run(main())
    finally:
        store.close()


def sql(tmp_path: Path, query: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(tmp_path / "mentions.db")
    try:
        with conn:
            return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def stored_messages(tmp_path: Path) -> list[AlertMessage]:
    return [message_from_payload(p) for (p,) in sql(tmp_path, "SELECT payload FROM alerts")]


def slack_text(payload: dict) -> str:
    """What a person reads in Slack: the blocks' text, top to bottom."""
    out = []
    for block in payload["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", ()):
            out.append(element["text"])
    return "\n".join(out)


VERY_NEGATIVE_RULES = """\
    negative_thread: {min_negative: 3, min_posts: 50, window: 1d, escalate_every: 3, cooldown: 1h}
    very_negative_mention: {sources: [forum]}
    unanswered_negative: {enabled: false}
"""


def test_five_very_negative_posts_of_one_thread_are_one_message_per_channel(
    tmp_path, httpd, smtp_server
):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    cfg = setup(tmp_path, httpd, port, VERY_NEGATIVE_RULES)
    replies = [post(i, t) for i, t in enumerate(VERY_ANGRY, 1)]
    # A forum whose replies carry a renamed topic's title: its words are nobody's post.
    replies[1] = post(2, VERY_ANGRY[1], title="Re: My Acme kettle died")
    httpd.add("/forum", topic(*replies))
    clock = Clock()
    poll(cfg, clock)
    flush(cfg, clock)

    assert len(slack.got) == 1, [p["text"] for p in slack.got]
    assert len(smtp.envelopes) == 1
    (mail,) = messages(smtp)
    said = slack_text(slack.got[0])
    text = mail.get_body(("plain",)).get_content()
    for shown in (said, text):
        # The headline names our brand only, with a severity word, no level number.
        headline = shown.splitlines()[0]
        assert re.search(
            r"Acme: a conversation turned negative \((worrying|serious|critical)\)", headline
        )
        assert "Globex" not in headline and "level" not in shown
        # Who is talking, whether anyone answered, what to do next.
        assert "6 customers" in shown and "also names Globex" in shown
        assert "Nobody from Acme has answered" in shown and "Reply on the thread" in shown
        # Every post links to itself, and the thread to its page in `serve`.
        for i in range(1, 6):
            assert f"{TOPIC}#comment-{i}" in shown
        assert f"{SERVE}/-/thread?key={quote(thread_key_for_url(TOPIC), safe='')}" in shown
        # The why quotes what the customer wrote, not the reply's "Re:" title.
        assert "the Acme kettle exploded" in shown and "Re: Acme kettle owners" not in shown
        assert "died -" not in shown  # no score word from the title
    assert "Acme" in mail["Subject"] and "Globex" not in mail["Subject"]
    # The numbers are the ones the dashboard's views show, for the thread and for each post.
    (alert,) = stored_messages(tmp_path)
    ((worst, negative, posts),) = sql(
        tmp_path, "SELECT worst_compound, negative_posts, posts FROM negative_threads"
    )
    assert alert.counts["worst compound"] == round(worst, 3) == round(alert.evidence[0].compound, 3)
    assert (alert.counts["negative posts"], alert.counts["posts"]) == (negative, posts)
    shown_scores = {round(e.compound, 4) for e in alert.evidence}
    # Each post's score is its score in the conversation (toward the brand it names), as the
    # thread page and the canned queries show it.
    stored = {
        round(c, 4)
        for (c,) in sql(
            tmp_path,
            f"SELECT {post_score()} FROM items i WHERE {post_negative()} AND i.by_brand = 0",
        )
    }
    assert shown_scores == stored
    toward = {
        round(c, 4)
        for (c,) in sql(tmp_path, "SELECT compound FROM mentions WHERE label = 'negative'")
    }
    assert shown_scores <= toward


def test_a_thread_that_gets_worse_is_one_update_that_says_what_changed(
    tmp_path, httpd, smtp_server
):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    cfg = setup(tmp_path, httpd, port, VERY_NEGATIVE_RULES)
    first = [post(i, t) for i, t in enumerate(VERY_ANGRY[:3], 1)]
    httpd.add("/forum", topic(*first))
    clock = Clock()
    poll(cfg, clock)
    flush(cfg, clock)
    assert len(slack.got) == 1 and len(smtp.envelopes) == 1

    # A very negative reply ten minutes later joins the conversation: no message of its own.
    httpd.add("/forum", topic(*first, post(4, VERY_ANGRY[3])))
    clock.now += timedelta(minutes=10)
    poll(cfg, clock)
    flush(cfg, clock)
    assert len(slack.got) == 1 and len(smtp.envelopes) == 1

    # Two hours on, two more angry replies and a customer leaving: one update per channel that
    # counts all three, not a storm of very-negative-post and churn alerts.
    more = [post(4, VERY_ANGRY[3]), post(5, VERY_ANGRY[4]), post(6, LEAVING)]
    httpd.add("/forum", topic(*first, *more))
    clock.now += timedelta(hours=2)
    poll(cfg, clock)
    flush(cfg, clock)
    assert len(slack.got) == 2, [p["text"] for p in slack.got]
    assert len(smtp.envelopes) == 2
    update = slack_text(slack.got[1])
    assert update.startswith("🔻 Acme: a conversation got worse (")
    assert "3 more negative posts since the last alert, 1 customer says they are leaving" in update
    assert "level" not in update
    mail = messages(smtp)[1]
    assert "3 more negative posts since the last alert" in mail.get_body(("plain",)).get_content()


def test_the_brands_own_reply_is_never_a_worst_post_and_marks_the_thread_answered(
    tmp_path, httpd, smtp_server
):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    cfg = setup(
        tmp_path, httpd, port, VERY_NEGATIVE_RULES.replace("{sources: [forum]}", "{enabled: false}")
    )
    replies = [post(1, VERY_ANGRY[0]), post(2, APOLOGY, author="Acme Support")]
    httpd.add("/forum", topic(*replies))
    clock = Clock()
    poll(cfg, clock)
    # The brand's voice, as the store records it when it saves (mentions.by_brand,
    # threads.answered_at).
    sql(tmp_path, "UPDATE mentions SET by_brand = 1 WHERE author = 'Acme Support'")
    sql(
        tmp_path,
        "UPDATE threads SET answered_at = (SELECT published_at FROM mentions "
        "WHERE author = 'Acme Support') WHERE key = (SELECT thread_key FROM mentions "
        "WHERE author = 'Acme Support')",
    )
    replies.append(post(3, VERY_ANGRY[1]))
    httpd.add("/forum", topic(*replies))
    clock.now += timedelta(minutes=10)
    poll(cfg, clock)
    # Two customers' negative posts and the brand's apology: not three negative posts.
    assert stored_messages(tmp_path) == []

    httpd.add("/forum", topic(*replies, post(4, VERY_ANGRY[2])))
    clock.now += timedelta(minutes=10)
    poll(cfg, clock)
    flush(cfg, clock)
    (alert,) = stored_messages(tmp_path)
    assert [e.author for e in alert.evidence if e.author == "Acme Support"] == []
    assert "so sorry" not in json.dumps(slack.got)
    (mail,) = messages(smtp)
    assert "so sorry" not in mail.get_body(("plain",)).get_content()
    said = slack_text(slack.got[0])
    assert "Acme replied once" in said and "Acme answered" in said
    assert "4 customers" in said and "Nobody from Acme" not in said


UNANSWERED_RULES = """\
    negative_thread: {enabled: false}
    very_negative_mention: {enabled: false}
    churn_risk: {enabled: false}
    unanswered_negative: {after: 4h, channels: [marketing-email]}
"""


def test_an_unanswered_negative_thread_alerts_once_after_its_time_on_its_channels(
    tmp_path, httpd, smtp_server
):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    cfg = setup(tmp_path, httpd, port, UNANSWERED_RULES)
    threads = {
        name: [
            {
                "title": f"Acme kettle question {name}",
                "link": f"https://forum.example.com/t/{name}",
                "guid": name,
                "body": "Anyone using the Acme kettle?",
                "hours_ago": "1",
            },
            {
                "title": "Re: kettle",
                "link": f"https://forum.example.com/t/{name}#comment-1",
                "guid": f"{name}-1",
                "body": "The Acme kettle stopped heating after a week. Disappointing.",
                "hours_ago": "0.5",
            },
        ]
        for name in ("open", "ignored", "answered")
    }
    httpd.add("/forum", rss([e for entries in threads.values() for e in entries]))
    clock = Clock()
    poll(cfg, clock)
    key = "forum.example.com/t/{}"
    sql(tmp_path, "UPDATE threads SET status = 'ignored' WHERE key = ?", key.format("ignored"))
    sql(
        tmp_path,
        "UPDATE threads SET answered_at = ? WHERE key = ?",
        "2026-01-01T00:00:00Z",
        key.format("answered"),
    )
    assert stored_messages(tmp_path) == []  # the complaint is half an hour old

    clock.now += timedelta(hours=3, minutes=20)
    poll(cfg, clock)
    assert stored_messages(tmp_path) == []  # 3 h 50 min: not yet

    clock.now += timedelta(minutes=20)
    poll(cfg, clock)
    clock.now += timedelta(hours=1)
    poll(cfg, clock)  # once per thread
    flush(cfg, clock)
    (alert,) = stored_messages(tmp_path)
    assert alert.rule == "unanswered_negative" and alert.title == "Acme kettle question open"
    assert not slack.got  # the rule's own channels only
    (mail,) = messages(smtp)
    assert "Acme: a complaint is still unanswered" in mail["Subject"]
    body = mail.get_body(("plain",)).get_content()
    assert "Nobody from Acme has answered; the first complaint came 4 h ago" in body
    assert "Reply on the thread: nobody from Acme has answered in 4 h." in body


def test_every_rule_takes_channels_and_a_wrong_name_is_reported(tmp_path, httpd, smtp_server):
    _, port = smtp_server
    cfg = setup(tmp_path, httpd, port, "    spike: {channels: [marketing-slak]}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    assert "alerts.rules.spike.channels[0]" in str(err.value)
    assert "no alert channel named 'marketing-slak'" in str(err.value)
    cfg = setup(
        tmp_path, httpd, port, "    unanswered_negative: {after: 2h, channels: [marketing-slack]}\n"
    )
    rules = load_config(cfg, env={}).alerts.rules
    assert rules.unanswered_negative.after == 7200 and rules.unanswered_negative.channels == (
        "marketing-slack",
    )
    assert load_config(cfg, env={}).serve_url == SERVE


def test_the_alert_email_as_a_marketer_sees_it(tmp_path, httpd, smtp_server):
    """Renders a real alert's HTML part in headless Chromium: tests/artifacts/alert-email.png
    (and the Slack message's text, alert-slack.txt), for a person to look at."""
    chromium = pytest.importorskip("test_browser")
    if chromium.CHROMIUM is None:
        pytest.skip("headless Chromium not installed")
    _smtp, port = smtp_server
    httpd.add("/hooks/slack", handler=Slack())
    cfg = setup(tmp_path, httpd, port, VERY_NEGATIVE_RULES)
    replies = [post(i, t, author=f"customer{i}") for i, t in enumerate(VERY_ANGRY[:4], 1)]
    replies.append(post(5, LEAVING, author="customer5"))
    httpd.add("/forum", topic(*replies))
    clock = Clock()
    poll(cfg, clock)
    (alert,) = [m for m in stored_messages(tmp_path) if m.rule == "negative_thread"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "alert-email.html"
    page.write_text(render_html(alert))
    (ARTIFACTS / "alert-email.txt").write_text(render_text(alert))
    (ARTIFACTS / "alert-slack.txt").write_text(slack_text(render_slack(alert)))
    dom = chromium.chromium(page.as_uri(), ARTIFACTS / "alert-email.png", tmp_path, "800,1100")
    assert "Open the conversation in listener" in dom and "Nobody from Acme has answered" in dom
    assert 'why: churn: "leaving Acme"' in render_text(alert)  # not "<brand>"


def ready(db: Path) -> bool:
    """Whether `listener run` has polled once (its database may not exist yet)."""
    if not db.exists():
        return False
    conn = sqlite3.connect(db, timeout=10)
    try:
        return bool(
            conn.execute("SELECT 1 FROM sources WHERE last_success_at IS NOT NULL").fetchone()
        )
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_listener_run_alerts_a_topic_that_turns_negative_once_on_its_channels(
    tmp_path, httpd, smtp_server
):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    rules = """\
    negative_thread: {min_negative: 3, window: 1d, channels: [marketing-slack]}
    very_negative_mention: {sources: [forum], channels: [marketing-slack]}
    unanswered_negative: {enabled: false}
  flush_every: 0.5s
  retry_first: 0.5s
"""
    cfg = setup(tmp_path, httpd, port, rules)
    cfg.write_text(cfg.read_text().replace("every: 15m", "every: 1s"))
    httpd.add("/forum", topic(post(1, "Is the Acme kettle any good?")), etag='"t1"')
    db = tmp_path / "mentions.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 20
        while not ready(db):
            assert time.monotonic() < deadline, "no poll"
            time.sleep(0.1)
        # The topic turns: five very negative replies in one poll.
        replies = [post(i, t) for i, t in enumerate(VERY_ANGRY, 2)]
        httpd.add("/forum", topic(post(1, "Is the Acme kettle any good?"), *replies), etag='"t2"')
        deadline = time.monotonic() + 20
        while not slack.got:
            assert time.monotonic() < deadline, "no alert"
            time.sleep(0.1)
        polled = len(httpd.requests_for("/forum"))
        while len(httpd.requests_for("/forum")) < polled + 3:  # a few more polls and flushes
            assert time.monotonic() < deadline + 20, "no more polls"
            time.sleep(0.1)
        time.sleep(1)
        assert len(slack.got) == 1, [p["text"] for p in slack.got]
        assert smtp.envelopes == []  # not a channel of these rules
        assert slack_text(slack.got[0]).startswith("🔻 Acme: a conversation turned negative (")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
            assert code == 0, proc.stdout.read() if proc.stdout else ""
        finally:
            if proc.poll() is None:
                proc.kill()


def test_churn_goes_to_its_own_channel_told_as_the_conversation(tmp_path, httpd, smtp_server):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    rules = """\
    negative_thread: {min_negative: 3, min_posts: 50, channels: [marketing-slack]}
    churn_risk: {channels: [marketing-email]}
    very_negative_mention: {enabled: false}
    unanswered_negative: {enabled: false}
"""
    cfg = setup(tmp_path, httpd, port, rules)
    httpd.add("/forum", topic(post(1, LEAVING, author="dana")))
    clock = Clock()
    poll(cfg, clock)
    flush(cfg, clock)
    assert slack.got == []  # one unhappy post is not a negative conversation
    (mail,) = messages(smtp)
    assert mail["Subject"].startswith("[listener] Acme: a customer says they are leaving (")
    body = mail.get_body(("plain",)).get_content()
    assert "a customer says they are leaving Acme" in body
    assert "Nobody from Acme has answered" in body
    assert "Reach the 1 customer who says they are leaving." in body
    assert f"“{LEAVING}” — dana" in body and f"{TOPIC}#comment-1" in body
    assert f"{SERVE}/-/thread?key=" in body


def test_an_ignored_conversation_never_alerts(tmp_path, httpd, smtp_server):
    smtp, port = smtp_server
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    cfg = setup(tmp_path, httpd, port, VERY_NEGATIVE_RULES)
    replies = [post(1, "The Acme kettle stopped heating after a week. Disappointing.")]
    httpd.add("/forum", topic(*replies))
    clock = Clock()
    poll(cfg, clock)
    assert stored_messages(tmp_path) == []  # one unhappy post
    # The team ignores the conversation (a spam war, say): its worse posts stay quiet.
    sql(tmp_path, "UPDATE threads SET status = 'ignored'")
    more = [post(i, t) for i, t in enumerate(VERY_ANGRY[:3], 2)]
    httpd.add("/forum", topic(*replies, *more, post(5, LEAVING)))
    clock.now += timedelta(minutes=10)
    poll(cfg, clock)
    flush(cfg, clock)
    assert stored_messages(tmp_path) == [] and slack.got == [] and smtp.envelopes == []


def test_a_digest_channel_gathers_conversation_alerts_with_their_next_step(tmp_path, httpd):
    slack = Slack()
    httpd.add("/hooks/slack", handler=slack)
    extra = f"""\
serve_url: {SERVE}
alerts:
  channels:
    - name: marketing-slack
      kind: slack
      webhook_url: {httpd.url("/hooks/slack")}
      digest: hourly
  rules:
{VERY_NEGATIVE_RULES}"""
    cfg = write_config(tmp_path, [("forum", httpd.url("/forum"))], brands=BRANDS, extra=extra)
    httpd.add("/forum", topic(*(post(i, t) for i, t in enumerate(VERY_ANGRY, 1))))
    clock = Clock()
    poll(cfg, clock)
    flush(cfg, clock)
    assert slack.got == []  # the hour has not passed
    clock.now += timedelta(minutes=61)
    flush(cfg, clock)
    (digest,) = slack.got
    said = slack_text(digest)
    assert said.startswith("📋 listener: 1 alert (hourly digest)")
    assert "Acme: a conversation turned negative (" in said
    assert "*Next:* Reply on the thread" in said and f"<{SERVE}/-/thread?key=" in said
