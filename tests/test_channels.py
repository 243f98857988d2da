"""Alert delivery against real peers: aiosmtpd on loopback for email, the loopback HTTP server
standing in for Slack and for a webhook receiver."""

from __future__ import annotations

import asyncio
import email
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from helpers import write_config
from httpd import LoopbackServer, RequestInfo, unused_port_url
from smtp_peer import free_port

from listener.alerts.channels import (
    SLACK_BURST,
    Delivery,
    EmailChannel,
    SlackChannel,
    SlackRateLimiter,
    WebhookChannel,
    send_alert,
)
from listener.alerts.message import AlertMessage, Digest, Evidence, message_to_dict
from listener.alerts.outbox import deliver_pending
from listener.alerts.render import (
    SLACK_HEADER_MAX,
    SLACK_MAX_BLOCKS,
    SLACK_SECTION_MAX,
    escape_slack,
    render_slack,
    slack_link,
)
from listener.cli import cli
from listener.fetch import default_user_agent
from listener.store import Store, iso

HOSTILE = (
    "Acme support is a joke <!channel> <!here> <!everyone> ping <@U123ABC> "
    "<http://evil.example|click here> *bold* `code`"
)


def make_message(**changes: Any) -> AlertMessage:
    message = AlertMessage(
        alert_id="thread-42:1",
        rule="negative_thread",
        level=1,
        brand="Acme",
        title="Rocket Skates exploded on first use",
        url="https://forum.example.com/t/rocket-skates/42",
        why="4 negative posts in 6 h (mean compound -0.62)",
        evidence=(
            Evidence(
                text="These skates are dangerous, worst purchase ever",
                compound=-0.91,
                url="https://forum.example.com/t/rocket-skates/42#post-3",
                author="wile",
                published_at="2026-11-20T08:15:00+00:00",
            ),
            Evidence(
                text="Support never answered me",
                compound=-0.55,
                url=None,
                author=None,
                published_at=None,
            ),
        ),
        counts={"posts": 9, "negative_posts": 4, "mean_compound": -0.6234},
        source="acme-forum",
        created_at="2026-11-20T09:00:00+00:00",
    )
    return replace(message, **changes)


def send(channel: Any, message: AlertMessage | Digest, **kwargs: Any) -> Delivery:
    async def go() -> Delivery:
        async with httpx.AsyncClient(trust_env=False, timeout=kwargs.pop("timeout", 5)) as http:
            return await send_alert(channel, message, http=http, **kwargs)

    if isinstance(channel, SlackChannel):
        # No pacing between sends unless a test is about pacing.
        kwargs.setdefault("limiter", SlackRateLimiter(0))
    return asyncio.run(go())


# ------------------------------------------------------------------------------------ SMTP peer


def email_channel(port: int, **changes: Any) -> EmailChannel:
    channel = EmailChannel(
        name="marketing-email",
        host="127.0.0.1",
        port=port,
        from_addr="Listener <listener@example.com>",
        to=("marketing@example.com", "cs@example.com"),
        timeout_s=5,
    )
    return replace(channel, **changes)


# ---------------------------------------------------------------------------------------- email


def test_email_arrives_as_text_and_html_with_brand_and_title_in_subject(smtp_server) -> None:
    recorder, port = smtp_server
    result = send(email_channel(port), make_message())
    assert result == Delivery(ok=True)

    envelope = recorder.envelopes[0]
    assert envelope.mail_from == "listener@example.com"
    assert sorted(envelope.rcpt_tos) == ["cs@example.com", "marketing@example.com"]

    msg = recorder.received()
    assert msg["Subject"] == (
        "[listener] Acme: a conversation turned negative — Rocket Skates exploded on first use"
    )
    assert msg["From"] == "Listener <listener@example.com>"
    assert msg["To"] == "marketing@example.com, cs@example.com"
    assert msg["Date"] is not None
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    plain = text.get_content()
    assert "Rocket Skates exploded on first use" in plain
    assert "https://forum.example.com/t/rocket-skates/42" in plain
    assert "4 negative posts in 6 h" in plain
    assert "-0.91" in plain and "These skates are dangerous" in plain
    assert '<a href="https://forum.example.com/t/rocket-skates/42">' in html.get_content()


def test_retried_email_keeps_its_message_id(smtp_server) -> None:
    recorder, port = smtp_server
    channel = email_channel(port)
    assert send(channel, make_message()).ok
    assert send(channel, make_message()).ok
    other = send(channel, make_message(alert_id="thread-43:1"))
    assert other.ok
    ids = [
        email.message_from_bytes(e.content, policy=default_policy)["Message-ID"]
        for e in recorder.envelopes
    ]
    assert ids[0] == ids[1]  # receivers can drop the duplicate of a retried send
    assert ids[2] != ids[0]


def test_hostile_title_cannot_inject_email_headers(smtp_server) -> None:
    recorder, port = smtp_server
    message = make_message(
        title="Acme outage\r\nBcc: victim@example.com\r\n\r\n<script>alert(1)</script>",
        brand="Acme\nX-Evil: 1",
        why="bad\rnews",
    )
    assert send(email_channel(port), message).ok

    envelope = recorder.envelopes[0]
    assert sorted(envelope.rcpt_tos) == ["cs@example.com", "marketing@example.com"]
    raw = envelope.original_content or envelope.content
    assert isinstance(raw, bytes)
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0].lower() for line in head.split(b"\r\n") if line[:1] not in b" \t"
    ]
    assert b"bcc" not in names and b"x-evil" not in names
    msg = recorder.received()
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert "Acme outage Bcc: victim@example.com" in msg["Subject"]
    html = msg.get_body(preferencelist=("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()


@pytest.mark.parametrize(("mechanism", "other"), [("PLAIN", "LOGIN"), ("LOGIN", "PLAIN")])
def test_email_authenticates(start_smtp, mechanism: str, other: str) -> None:
    recorder, port = start_smtp(auth=True, exclude=(other,))
    result = send(email_channel(port, username="alerts", password="s3cret"), make_message())
    assert result.ok, result.error
    assert recorder.logins == [(mechanism, "alerts")]
    assert len(recorder.envelopes) == 1


def test_wrong_smtp_password_is_a_permanent_clear_error(start_smtp) -> None:
    recorder, port = start_smtp(auth=True)
    result = send(email_channel(port, username="alerts", password="wrong-pw"), make_message())
    assert not result.ok
    assert result.permanent
    assert result.error is not None
    assert "authentication failed" in result.error and "'alerts'" in result.error
    assert "check username and password" in result.error
    assert "wrong-pw" not in result.error
    assert recorder.envelopes == []


def test_smtp_connection_refused_is_retryable() -> None:
    port = free_port()  # nothing listens there any more
    result = send(email_channel(port), make_message())
    assert not result.ok
    assert not result.permanent
    assert result.error is not None and "ConnectionRefusedError" in result.error
    assert f"127.0.0.1:{port}" in result.error


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 <x>: no such user", True), ("451 4.3.0 try again later", False)],
)
def test_smtp_recipient_refusal_5xx_is_permanent_4xx_is_not(smtp_server, reply, permanent) -> None:
    recorder, port = smtp_server
    recorder.refuse_rcpt = reply
    result = send(email_channel(port), make_message())
    assert not result.ok
    assert result.permanent is permanent
    assert result.error is not None and reply.split()[0] in result.error
    # The codes are named (a fixed vocabulary); the server's own words are never quoted.
    code, enhanced, words = reply.split(maxsplit=2)
    assert f"{code} {enhanced}" in result.error and words not in result.error
    assert recorder.envelopes == []


def test_email_digest_lists_every_alert(smtp_server) -> None:
    recorder, port = smtp_server
    digest = Digest(
        channel="marketing-email",
        period="daily",
        messages=(
            make_message(),
            make_message(alert_id="t-2", brand="Globex", title="Globex billing is broken"),
        ),
    )
    assert send(email_channel(port), digest).ok
    msg = recorder.received()
    assert msg["Subject"] == "[listener] 2 alerts (daily digest) — Acme, Globex"
    text = msg.get_body(preferencelist=("plain",))
    assert text is not None
    body = text.get_content()
    assert "Rocket Skates exploded on first use" in body and "Globex billing is broken" in body


# ---------------------------------------------------------------------------------------- slack


def slack_ok(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "text/plain"}, b"ok"


def slack_channel(httpd: LoopbackServer, path: str = "/services/T000/B000/XXXX") -> SlackChannel:
    return SlackChannel(name="marketing-slack", webhook_url=httpd.url(path))


def test_slack_message_has_text_and_blocks(httpd: LoopbackServer) -> None:
    httpd.add("/services/T000/B000/XXXX", handler=slack_ok)
    assert send(slack_channel(httpd), make_message()) == Delivery(ok=True)

    (request,) = httpd.requests
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    payload = json.loads(request.body)
    assert "Acme: a conversation turned negative" in payload["text"]
    assert "Rocket Skates exploded on first use" in payload["text"]
    types = [b["type"] for b in payload["blocks"]]
    assert types == ["header", "section", "section", "context"]
    assert payload["blocks"][0]["text"]["text"] == "🔻 Acme: a conversation turned negative"
    main = payload["blocks"][1]["text"]["text"]
    assert (
        "<https://forum.example.com/t/rocket-skates/42|Rocket Skates exploded on first use>" in main
    )
    assert "4 negative posts in 6 h (mean compound -0.62)" in main
    evidence = payload["blocks"][2]["text"]["text"]
    assert "-0.91" in evidence and "These skates are dangerous" in evidence
    context = " ".join(e["text"] for e in payload["blocks"][3]["elements"])
    assert "negative posts 4" in context and "acme-forum" in context
    assert payload["unfurl_links"] is False


def test_slack_hostile_text_arrives_escaped(httpd: LoopbackServer) -> None:
    httpd.add("/services/T000/B000/XXXX", handler=slack_ok)
    message = make_message(
        title=HOSTILE,
        why=HOSTILE,
        brand="Acme <!channel>",
        url="javascript:alert(1)",
        evidence=(Evidence(HOSTILE, -0.8, "https://x.example/p|<!channel>", "<!here>", None),),
        source="<!everyone>",
    )
    assert send(slack_channel(httpd), message).ok
    body = httpd.requests[0].body.decode()
    for forbidden in ("<!channel>", "<!here>", "<!everyone>", "<@U123ABC>", "<http://evil"):
        assert forbidden not in body
    assert "<javascript" not in body
    # The words are still there for a person to read, just inert.
    assert "&lt;!channel&gt;" in body and "&lt;http://evil.example|click here&gt;" in body
    payload = json.loads(body)
    texts = [payload["text"]] + [b.get("text", {}).get("text", "") for b in payload["blocks"]]
    # Every "<" left is the start of a link listener built itself, to an http(s) URL.
    for text in texts:
        for chunk in text.split("<")[1:]:
            assert chunk.startswith(("http://", "https://")), chunk
    assert "<https://x.example/p%7C%3C!channel%3E|open post>" in body


def test_slack_429_reports_retry_after(httpd: LoopbackServer) -> None:
    httpd.add("/hook", body="rate_limited", status=429, retry_after="7", content_type="text/plain")
    result = send(slack_channel(httpd, "/hook"), make_message())
    assert not result.ok and not result.permanent
    assert result.retry_after_s == 7


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", 120.0),
        ("1e20", 3600.0),  # cut to the longest wait listener accepts
        ("inf", 3600.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # in the past: now
        ("nan", None),  # nothing usable: the outbox's own backoff applies
        ("-5", None),
        ("1_0", None),
        ("soon, maybe", None),
    ],
)
def test_slack_429_retry_after_is_finite_and_bounded(
    httpd: LoopbackServer, header: str, wait: float | None
) -> None:
    httpd.add(
        "/hook", body="rate_limited", status=429, retry_after=header, content_type="text/plain"
    )
    result = send(slack_channel(httpd, "/hook"), make_message())
    assert not result.ok and not result.permanent and "429" in (result.error or "")
    assert result.retry_after_s == wait


def test_slack_429_retry_after_from_json_body(httpd: LoopbackServer) -> None:
    httpd.add(
        "/hook", body='{"ok": false, "retry_after": 3}', status=429, content_type="application/json"
    )
    result = send(slack_channel(httpd, "/hook"), make_message())
    assert not result.ok and result.retry_after_s == 3


def test_slack_500_is_retryable(httpd: LoopbackServer) -> None:
    httpd.add("/hook", body="rollup_error", status=500, content_type="text/plain")
    result = send(slack_channel(httpd, "/hook"), make_message())
    assert not result.ok
    assert not result.permanent
    assert result.error is not None and "500" in result.error


@pytest.mark.parametrize(
    ("status", "body", "hint"),
    [
        (404, "no_service", "removed or disabled"),
        (403, "invalid_token", "authentication failed"),
        (410, "channel_is_archived", "archived"),
    ],
)
def test_slack_4xx_is_permanent_and_says_why(httpd: LoopbackServer, status, body, hint) -> None:
    httpd.add("/services/T000/B000/XXXX", body=body, status=status, content_type="text/plain")
    channel = slack_channel(httpd)
    result = send(channel, make_message())
    assert not result.ok and result.permanent
    assert result.error is not None
    assert str(status) in result.error and body in result.error and hint in result.error
    assert "marketing-slack" in result.error
    assert "XXXX" not in result.error  # the webhook URL is a secret: never in errors


def test_slack_unreachable_is_retryable() -> None:
    channel = SlackChannel(name="marketing-slack", webhook_url=unused_port_url("/services/x"))
    result = send(channel, make_message())
    assert not result.ok and not result.permanent
    assert result.error is not None and "ConnectError" in result.error


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_slack_limiter_sends_a_burst_at_once_then_one_a_second(httpd: LoopbackServer) -> None:
    """Slack allows about one message a second per webhook with short bursts: a burst goes out
    at once, more than that is paced at 1/s, each webhook has its own bucket, and an idle
    bucket refills."""
    clock = FakeClock()
    arrived: list[tuple[str, float]] = []

    def record(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        arrived.append((request.route, clock.now))
        return 200, {}, b"ok"

    httpd.add("/hook-a", handler=record)
    httpd.add("/hook-b", handler=record)
    limiter = SlackRateLimiter(1.0, clock=clock, sleep=clock.sleep)  # the default burst
    a, b = slack_channel(httpd, "/hook-a"), slack_channel(httpd, "/hook-b")

    async def sends(channels: list[SlackChannel]) -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            for channel in channels:
                result = await send_alert(channel, make_message(), http=http, limiter=limiter)
                assert result.ok

    asyncio.run(sends([a] * (SLACK_BURST + 2) + [b]))
    times_a = [t for route, t in arrived if route == "/hook-a"]
    assert SLACK_BURST > 1
    assert times_a == [1000.0] * SLACK_BURST + [1001.0, 1002.0]
    # Another webhook has its own budget: it did not wait behind /hook-a.
    assert [t for route, t in arrived if route == "/hook-b"] == [1002.0]
    assert clock.sleeps == [1.0, 1.0]

    clock.now += 60  # a quiet minute: the bucket is full again
    arrived.clear()
    asyncio.run(sends([a] * SLACK_BURST))
    assert [t for _, t in arrived] == [1062.0] * SLACK_BURST
    assert clock.sleeps == [1.0, 1.0]


def test_slack_limiter_queues_concurrent_senders() -> None:
    clock = FakeClock()
    limiter = SlackRateLimiter(1.0, burst=2, clock=clock, sleep=clock.sleep)

    async def send_one() -> float:
        await limiter.wait("https://hooks.example/a")
        return clock.now  # when this sender got its slot

    async def four_at_once() -> list[float]:
        return list(await asyncio.gather(*(send_one() for _ in range(4))))

    # Two at once (the burst), then one a second, in the order they asked.
    assert asyncio.run(four_at_once()) == [1000.0, 1000.0, 1001.0, 1002.0]


def test_slack_429_retry_after_pauses_the_webhook_for_every_message(
    httpd: LoopbackServer,
) -> None:
    """After a 429 with Retry-After, nothing more goes to that webhook before the time Slack
    named (not only the refused message: the next one too), and then no burst."""
    clock = FakeClock()
    arrived: list[float] = []

    def limited_once(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        arrived.append(clock.now)
        if len(arrived) == 2:
            return 429, {"retry-after": "7"}, b"rate_limited"
        return 200, {}, b"ok"

    httpd.add("/hook", handler=limited_once)
    limiter = SlackRateLimiter(1.0, clock=clock, sleep=clock.sleep)
    channel = slack_channel(httpd, "/hook")

    async def sends(n: int) -> list[Delivery]:
        async with httpx.AsyncClient(trust_env=False) as http:
            return [
                await send_alert(channel, make_message(), http=http, limiter=limiter)
                for _ in range(n)
            ]

    results = asyncio.run(sends(4))
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].retry_after_s == 7
    assert arrived == [1000.0, 1000.0, 1007.0, 1008.0]


def queue_test_alert(store: Store, n: int, now: datetime) -> None:
    """Alert number `n` (its URL ends in /post/n) queued for the channel "slack", due `now`."""
    message = make_message(alert_id=f"a{n}", url=f"https://example.com/post/{n}")
    with store.transaction():
        store.queue_alert(
            key=f"a{n}",
            created_at=iso(now),
            rule="very_negative_mention",
            level=1,
            brand="Acme",
            subject=f"post {n}",
            thread_key=None,
            title=None,
            url=None,
            why=None,
            payload=json.dumps(message_to_dict(message)),
            channels=["slack"],
        )


def test_outbox_sends_the_freshest_alert_first_when_slack_is_backlogged(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    """More alerts than the burst wait for one Slack webhook: the burst goes in order, then the
    newest alert first, including one queued while the backlog drains (a stream's alert is not
    held behind a poll's). None is lost: the rest follows, every outbox row is `sent` once."""
    clock = FakeClock()
    got: list[str] = []

    def record(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        got.append(re.findall(r"example\.com/post/(\d+)", request.body.decode())[0])
        return 200, {}, b"ok"

    httpd.add("/hook", handler=record)
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    store = Store.open(tmp_path / "mentions.db")

    def queue(n: int) -> None:
        queue_test_alert(store, n, now)

    for n in range(1, 7):
        queue(n)

    async def sleep_then_a_fresh_alert(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            queue(7)  # arrives while the backlog is being paced

    limiter = SlackRateLimiter(1.0, burst=2, clock=clock, sleep=sleep_then_a_fresh_alert)
    channels = {"slack": SlackChannel(name="slack", webhook_url=httpd.url("/hook"))}

    async def flush() -> int:
        async with httpx.AsyncClient(trust_env=False) as http:
            report = await deliver_pending(
                store, channels, http=http, now=lambda: now, limiter=limiter
            )
        assert not report.errors
        return report.sent

    try:
        # One turn per alert due when the flush began (6): the seventh, queued meanwhile, takes
        # one of them, so the oldest is left for the next flush rather than holding it up.
        assert asyncio.run(flush()) == 6
        assert got == ["1", "2", "6", "7", "5", "4"]
        assert asyncio.run(flush()) == 1
        assert got[-1] == "3"
        rows = store.conn.execute("SELECT status, attempts FROM outbox").fetchall()
        assert sorted(rows) == [("sent", 1)] * 7
    finally:
        store.close()


def test_outbox_leaves_a_paused_slack_webhook_for_a_later_flush(
    tmp_path: Path, httpd: LoopbackServer
) -> None:
    """Slack answered 429 "retry after 60 s": the next flush neither posts to that webhook nor
    sits out the minute (it would hold up every other channel); the alert stays pending."""
    clock = FakeClock()
    httpd.add("/hook", body="rate_limited", status=429, retry_after="60", content_type="text/plain")
    store = Store.open(tmp_path / "mentions.db")
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    for n in (1, 2):
        queue_test_alert(store, n, now)
    limiter = SlackRateLimiter(1.0, clock=clock, sleep=clock.sleep)
    channels = {"slack": SlackChannel(name="slack", webhook_url=httpd.url("/hook"))}

    async def flush() -> tuple[int, int]:
        async with httpx.AsyncClient(trust_env=False) as http:
            report = await deliver_pending(
                store, channels, http=http, now=lambda: now, limiter=limiter
            )
        return report.sent, report.retrying

    try:
        assert asyncio.run(flush()) == (0, 1)  # the first alert was refused, the second waits
        clock.now += 1
        assert asyncio.run(flush()) == (0, 0)
        assert httpd.hits["/hook"] == 1 and clock.sleeps == []
        rows = store.conn.execute("SELECT status, attempts FROM outbox ORDER BY alert_id")
        assert rows.fetchall() == [("pending", 1), ("pending", 0)]
    finally:
        store.close()


def test_slack_respects_block_kit_limits() -> None:
    huge = "&<>" * 3000 + "x" * 10_000
    message = make_message(
        brand="B" * 500,
        title=huge,
        why=huge,
        url="https://example.com/" + "a" * 900,
        evidence=tuple(
            Evidence(huge, -0.9, "https://example.com/" + "&" * 150, "a" * 500, None)
            for _ in range(20)
        ),
    )
    payload = render_slack(message)
    assert len(payload["blocks"]) <= SLACK_MAX_BLOCKS
    assert len(payload["blocks"][0]["text"]["text"]) <= SLACK_HEADER_MAX
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert all(len(s) <= SLACK_SECTION_MAX for s in sections)
    assert 1 <= sections[1].count("\n> ") <= 5  # at most five snippets
    assert "&amp;&lt;&gt;" in sections[1]  # a long snippet is cut, not dropped
    # A cut never leaves half an entity or an unclosed link behind.
    for text in sections:
        unquoted = text.replace("\n> ", "\n")
        assert unquoted.count("<") == unquoted.count(">")
        assert "&am…" not in text and "&l…" not in text

    digest = Digest("marketing-slack", "hourly", tuple(make_message() for _ in range(120)))
    blocks = render_slack(digest)["blocks"]
    assert len(blocks) <= SLACK_MAX_BLOCKS
    assert "and 72 more alerts" in blocks[-1]["elements"][0]["text"]


def test_escape_slack_and_links() -> None:
    assert escape_slack("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert "*" not in escape_slack("*bold* and ~gone~ and `code`")
    assert "`" not in escape_slack("*bold* and ~gone~ and `code`")
    assert escape_slack("snake_case a*b") == "snake_case a*b"  # nothing to format there
    assert escape_slack("line\nbreak\u202eevil") == "line breakevil"
    assert escape_slack("x" * 50, 10) == "x" * 9 + "…"
    assert slack_link("javascript:alert(1)", "<b>") == "&lt;b&gt;"
    assert slack_link("https://a.example/?q=1&r=2|x", "A|B") == (
        "<https://a.example/?q=1&amp;r=2%7Cx|A|B>"
    )


# -------------------------------------------------------------------------------------- webhook


def test_webhook_posts_json_with_the_same_idempotency_key_on_retry(
    httpd: LoopbackServer,
) -> None:
    httpd.add("/alerts", body="{}", content_type="application/json", fail_times=1, fail_status=503)
    channel = WebhookChannel(
        name="ops-webhook", url=httpd.url("/alerts"), headers={"Authorization": "Bearer t0k"}
    )
    message = make_message(counts={"posts": 3, "mean_compound": float("nan")})

    first = send(channel, message)
    assert not first.ok and not first.permanent
    assert first.error is not None and "503" in first.error
    second = send(channel, message)
    assert second.ok

    requests = httpd.requests_for("/alerts")
    assert [r.headers["idempotency-key"] for r in requests] == ["thread-42:1", "thread-42:1"]
    assert requests[0].body == requests[1].body
    assert all(r.headers["authorization"] == "Bearer t0k" for r in requests)
    body = json.loads(requests[1].body)
    assert body["type"] == "listener.alert"
    assert body["alert_id"] == "thread-42:1"
    assert body["brand"] == "Acme" and body["rule"] == "negative_thread"
    assert body["evidence"][0]["compound"] == -0.91
    assert body["counts"] == {"posts": 3, "mean_compound": None}


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (404, True), (429, False)])
def test_webhook_status_classes(httpd: LoopbackServer, status: int, permanent: bool) -> None:
    httpd.add("/alerts", body="nope", status=status, content_type="text/plain")
    result = send(WebhookChannel(name="ops", url=httpd.url("/alerts")), make_message())
    assert not result.ok and result.permanent is permanent


def test_webhook_does_not_follow_redirects(httpd: LoopbackServer) -> None:
    httpd.add("/old", redirect_to=httpd.url("/new"), status=302)
    httpd.add("/new", body="{}")
    result = send(WebhookChannel(name="ops", url=httpd.url("/old")), make_message())
    assert not result.ok and result.permanent
    assert result.error is not None and "redirect" in result.error
    assert httpd.requests_for("/new") == []


def test_webhook_timeout_is_retryable(httpd: LoopbackServer) -> None:
    httpd.add("/slow", body="{}", delay=2)
    result = send(WebhookChannel(name="ops", url=httpd.url("/slow")), make_message(), timeout=0.2)
    assert not result.ok and not result.permanent
    assert result.error is not None and "timed out" in result.error


def test_webhook_digest_carries_every_alert(httpd: LoopbackServer) -> None:
    httpd.add("/alerts", body="{}")
    digest = Digest("ops", "hourly", (make_message(), make_message(alert_id="t-2")))
    assert send(WebhookChannel(name="ops", url=httpd.url("/alerts")), digest).ok
    request = httpd.requests[0]
    body = json.loads(request.body)
    assert body["type"] == "listener.digest"
    assert [m["alert_id"] for m in body["messages"]] == ["thread-42:1", "t-2"]
    assert request.headers["idempotency-key"] == body["digest_id"]


# ----------------------------------------------------------------------------------- User-Agent


def test_slack_webhook_and_email_identify_as_listener(httpd: LoopbackServer, smtp_server) -> None:
    recorder, port = smtp_server
    httpd.add("/services/T000/B000/XXXX", handler=slack_ok)
    httpd.add("/alerts", body="{}", content_type="application/json")
    assert send(slack_channel(httpd), make_message()).ok
    assert send(WebhookChannel(name="ops", url=httpd.url("/alerts")), make_message()).ok
    assert send(email_channel(port), make_message()).ok

    ours = default_user_agent()
    assert ours.startswith("listener/")
    assert [r.headers["user-agent"] for r in httpd.requests] == [ours, ours]
    assert recorder.received()["User-Agent"] == ours


def test_alert_channels_use_the_configured_user_agent(tmp_path, httpd: LoopbackServer) -> None:
    httpd.add("/slack", handler=slack_ok)
    cfg = write_config(
        tmp_path,
        [("blog", httpd.url("/feed"))],
        extra=f"alerts:\n  channels:\n    - name: s\n      kind: slack\n"
        f"      webhook_url: {httpd.url('/slack')}\n",
    )
    cfg.write_text(cfg.read_text().replace("fetch:\n", "fetch:\n  user_agent: AcmeWatch/2.0\n"))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert httpd.requests_for("/slack")[0].headers["user-agent"] == "AcmeWatch/2.0"
