"""`listener run` as a user runs it: a subprocess polling loopback feeds, alerting a real SMTP
server and a loopback Slack webhook, surviving kill -9, stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import db_count, rss, wait_for, write_config
from httpd import LoopbackServer, RequestInfo
from smtp_peer import SmtpRecorder, messages

ROOT_BODY = "<p>We moved our team to Acme last month. Thoughts so far?</p>"
ANGRY = [
    "Support never answered my ticket and the app keeps crashing. Terrible.",
    "Same here, the outage lasted two days and nobody replied. Awful experience.",
    "I requested a refund after the data loss. Worst service I have used, I hate it.",
    "Cancelled today. Horrible, slow and broken.",
]


class Slack:
    """A loopback Slack incoming webhook that fails `fail` times before accepting."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.accepted: list[dict[str, object]] = []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        if self.fail > 0:
            self.fail -= 1
            return 500, {"content-type": "text/plain"}, b"internal_error"
        self.accepted.append(json.loads(request.body))
        return 200, {"content-type": "text/plain"}, b"ok"


def comments(n_angry: int) -> str:
    entries = [
        {
            "title": "Comment by sam",
            "link": "https://blog.example.com/2026/moving-to-acme#comment-1",
            "guid": "c1",
            "body": "Curious too, we are evaluating it.",
            "hours_ago": "3",
        }
    ]
    for i, text in enumerate(ANGRY[:n_angry], start=2):
        entries.append(
            {
                "title": f"Comment by user{i}",
                "link": f"https://blog.example.com/2026/moving-to-acme#comment-{i}",
                "guid": f"c{i}",
                "body": text,
                "hours_ago": str(1 / i),
            }
        )
    return rss(entries, title="Comments on: Moving to Acme")


@pytest.fixture
def world(tmp_path: Path, httpd: LoopbackServer, smtp_server: tuple[SmtpRecorder, int]):
    recorder, smtp_port = smtp_server
    slack = Slack(fail=2)
    httpd.add("/hooks/slack", handler=slack)
    httpd.add("/comments", comments(0), etag='"c0"')
    httpd.add(
        "/feed",
        rss(
            [
                {
                    "title": "Moving to Acme",
                    "link": "https://blog.example.com/2026/moving-to-acme",
                    "guid": "post-1",
                    "body": ROOT_BODY,
                    "comments": httpd.url("/comments"),
                    "hours_ago": "5",
                }
            ]
        ),
        etag='"f1"',
    )
    extra = f"""\
alerts:
  channels:
    - name: slack
      kind: slack
      webhook_url: {httpd.url("/hooks/slack")}
    - name: email
      kind: email
      host: 127.0.0.1
      port: {smtp_port}
      from: listener@example.com
      to: [marketing@example.com]
  rules:
    negative_thread:
      min_negative: 3
      window: 1d
  flush_every: 0.5s
  retry_first: 0.5s
"""
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))], extra=extra)
    cfg.write_text(cfg.read_text().replace("every: 15m", "every: 1s"))
    return cfg, httpd, slack, recorder


@pytest.fixture
def start_service() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(cfg: Path) -> subprocess.Popen[str]:
        env = dict(os.environ)
        proc = subprocess.Popen(
            [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_negative_thread_alerts_once_on_both_channels_and_sigterm_exits_0(world, start_service):
    cfg, httpd, slack, smtp = world
    db = cfg.parent / "mentions.db"
    proc = start_service(cfg)
    wait_for(
        lambda: db_count(db, "SELECT count(*) FROM threads WHERE brands = 'Acme'"), what="thread"
    )
    assert not slack.accepted and not smtp.envelopes

    # The conversation turns: angry replies that do not repeat the brand's name.
    httpd.add("/comments", comments(4), etag='"c4"')
    wait_for(lambda: smtp.envelopes and slack.accepted, what="alerts on both channels")
    time.sleep(3)  # several more polls and flushes: nothing may be sent again
    assert len(slack.accepted) == 1, slack.accepted
    assert len(smtp.envelopes) == 1
    (mail,) = messages(smtp)
    assert "Acme" in mail["Subject"] and "Moving to Acme" in mail["Subject"]
    text = json.dumps(slack.accepted[0])
    assert "Moving to Acme" in text and "negative" in text
    body = mail.get_body(("plain",)).get_content()
    assert "data loss" in body
    assert "why:" in body  # the words that drove each score are shown with the evidence
    assert db_count(db, "SELECT count(*) FROM outbox WHERE status = 'sent'") == 2

    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(proc.communicate()[0][-3000:]) from None
    assert code == 0
    assert "Traceback" not in (proc.stdout.read() if proc.stdout else "")


def test_second_instance_on_the_same_database_says_so(world, start_service):
    cfg, *_ = world
    db = cfg.parent / "mentions.db"
    first = start_service(cfg)
    wait_for(lambda: db_count(db, "SELECT count(*) FROM sources WHERE last_success_at IS NOT NULL"))
    second = start_service(cfg)
    assert second.wait(timeout=20) == 1
    assert "already" in (second.stdout.read() if second.stdout else "")
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=10) == 0


def test_kill_9_mid_poll_then_restart_loses_and_doubles_nothing(world, start_service, httpd):
    cfg, httpd, slack, smtp = world
    db = cfg.parent / "mentions.db"
    # A second, slow source: the kill lands while its fetch is in flight.
    slow_entries = [
        {
            "title": f"Acme review {i}",
            "link": f"https://reviews.example.com/{i}",
            "guid": f"r{i}",
            "body": "Acme broke again, awful and useless." if i % 2 else "Acme works fine for us.",
        }
        for i in range(6)
    ]
    httpd.add("/slow", rss(slow_entries), delay=1.5, etag='"s1"')
    text = cfg.read_text().replace(
        "sources:\n",
        f"sources:\n  - name: slow\n    kind: feed\n    url: {httpd.url('/slow')}\n    every: 1s\n",
        1,
    )
    cfg.write_text(text)
    httpd.add("/comments", comments(4), etag='"c4"')
    # Both channels are down while the first process runs, so the alert is still pending when
    # it dies: delivery happens after the restart, exactly once.
    slack.fail = 10**6
    smtp.refuse_rcpt = "451 4.3.0 try again later"

    proc = start_service(cfg)
    wait_for(lambda: httpd.hits["/slow"] >= 1, what="the slow poll to start")
    wait_for(lambda: db_count(db, "SELECT count(*) FROM alerts"), what="the thread alert")
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait(10)
    # Not delivered: pending, or `sending` when the kill landed mid-send (sent again at restart).
    assert db_count(db, "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')") == 2
    slack.fail = 0
    smtp.refuse_rcpt = None

    restarted = start_service(cfg)
    wait_for(
        lambda: db_count(db, "SELECT count(*) FROM mentions WHERE source = 'slow'") == 6,
        what="slow mentions",
    )
    wait_for(lambda: len(slack.accepted) >= 1 and len(smtp.envelopes) >= 1, what="alert delivery")
    time.sleep(3)
    assert db_count(db, "SELECT count(*) FROM mentions WHERE source = 'slow'") == 6
    assert db_count(db, "SELECT count(*) FROM items") == db_count(
        db, "SELECT count(DISTINCT content_hash) FROM items"
    )
    assert db_count(db, "SELECT count(*) FROM alerts") == 1
    assert len(slack.accepted) == 1 and len(smtp.envelopes) == 1
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=10) == 0


def test_each_source_is_polled_again_at_its_interval_for_as_long_as_it_runs(world, start_service):
    # Every poll schedules the source's next one (one job per source, moved each time): a
    # source polled every second is polled again and again, not once.
    cfg, httpd, _slack, _smtp = world
    proc = start_service(cfg)
    wait_for(lambda: httpd.hits["/feed"] >= 4, timeout=30, what="four polls of the feed")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    db = cfg.parent / "mentions.db"
    assert db_count(db, "SELECT count(*) FROM fetches WHERE source = 'blog'") >= 4
