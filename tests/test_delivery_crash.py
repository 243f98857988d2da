"""`listener run` killed with SIGKILL while Slack holds its request: after a restart the alert is
sent once more (at-least-once, at most one repeat per channel per crash), nothing is lost, and the
email channel that had not been tried yet gets exactly one copy."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import rss, wait_for, write_config
from httpd import LoopbackServer, RequestInfo
from smtp_peer import SmtpRecorder

ANGRY = [
    "Support never answered and the app keeps crashing. Terrible.",
    "The outage lasted two days. Awful, I hate this.",
    "Requested a refund after data loss. Worst service ever.",
]


def outbox(db: Path) -> dict[str, tuple[str, int, str | None]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return {
            channel: (status, attempts, error)
            for channel, status, attempts, error in conn.execute(
                "SELECT channel, status, attempts, last_error FROM outbox"
            )
        }
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


class HoldingSlack:
    """A Slack webhook that holds the first request until released (the sender is killed
    meanwhile), then accepts everything."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.posts: list[RequestInfo] = []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        self.posts.append(request)
        if len(self.posts) == 1:
            self.arrived.set()
            self.release.wait(30)
        return 200, {"content-type": "text/plain"}, b"ok"


@pytest.fixture
def processes() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(cfg: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_kill_9_mid_slack_send_repeats_it_once_and_loses_nothing(
    tmp_path: Path,
    httpd: LoopbackServer,
    smtp_server: tuple[SmtpRecorder, int],
    processes: Callable[[Path], subprocess.Popen[str]],
) -> None:
    recorder, smtp_port = smtp_server
    slack = HoldingSlack()
    httpd.add("/slack", handler=slack)
    entries = [
        {"title": "Moving to Acme?", "link": "https://forum.example.com/t/acme", "guid": "root"}
    ] + [
        {
            "title": f"Re: {i}",
            "link": f"https://forum.example.com/t/acme#comment-{i}",
            "guid": f"r{i}",
            "body": text,
            "hours_ago": str(1 / (i + 2)),
        }
        for i, text in enumerate(ANGRY)
    ]
    httpd.add("/forum", rss(entries, title="Forum"))
    extra = f"""\
alerts:
  channels:
    - name: slack
      kind: slack
      webhook_url: {httpd.url("/slack")}
    - name: email
      kind: email
      host: 127.0.0.1
      port: {smtp_port}
      from: listener@example.com
      to: [marketing@example.com]
  rules:
    negative_thread: {{min_negative: 3, min_posts: 50, window: 1d}}
  flush_every: 0.5s
"""
    cfg = write_config(tmp_path, [("forum", httpd.url("/forum"))], extra=extra)
    db = tmp_path / "mentions.db"

    first = processes(cfg)
    assert slack.arrived.wait(60), "the alert never reached Slack"
    # The send is on record before the request left: a crash now cannot go unnoticed.
    assert outbox(db) == {"slack": ("sending", 1, None), "email": ("pending", 0, None)}
    first.kill()  # SIGKILL mid-send: Slack has the message, listener never hears back
    first.wait(10)
    slack.release.set()

    second = processes(cfg)
    wait_for(lambda: {s for s, _, _ in outbox(db).values()} == {"sent"}, "both channels delivered")
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
    log = second.stdout.read() if second.stdout else ""
    assert "Traceback" not in log
    assert "interrupted mid-send" in log

    assert len(slack.posts) == 2  # the one in flight, sent once more: never more
    assert len(recorder.envelopes) == 1  # the channel not yet tried: exactly once
    rows = outbox(db)
    assert rows["slack"][:2] == ("sent", 2) and rows["email"][:2] == ("sent", 1)
    # Both posts carry the same key, and the same message, for a receiver that deduplicates.
    assert len({p.headers["idempotency-key"] for p in slack.posts}) == 1
    assert json.loads(slack.posts[0].body) == json.loads(slack.posts[1].body)
