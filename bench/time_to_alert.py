"""Time to alert: from a post appearing to its alert arriving at Slack, polled and streamed.

Runs a real `listener run` against loopback peers: a feed (polled every `--every`), a Jetstream
(the stream), and a Slack webhook receiver. Publishes `--posts` very negative posts on each, one
every `--gap` seconds, notes when each appeared (the feed entry became visible / the stream event
was sent), and when the Slack message naming its URL arrived. Prints p50/p95 per kind:

    .venv/bin/python bench/time_to_alert.py                      # 10 posts each, feed every 10s
    .venv/bin/python bench/time_to_alert.py --posts 20 --every 30s

Goals (issue 14): polled <= its interval + 10 s; streamed p95 <= 5 s. Slack takes about one
message a second per webhook with short bursts (listener paces itself: a burst of 5, then 1/s),
so keep `--gap` at 2 s or more for a sustained rate Slack accepts.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from httpd import LoopbackServer, RequestInfo  # noqa: E402 (tests/httpd.py)
from wsd import Jetstream, post  # noqa: E402 (tests/wsd.py)

from listener.config import parse_duration  # noqa: E402

ANGRY = (
    "Acme lost all my data and support ignored me for weeks. Terrible, awful, worst service ever."
)


class Slack:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.arrivals.append((time.time(), request.body.decode("utf-8", "replace")))
        return 200, {"content-type": "text/plain"}, b"ok"

    def arrived(self, token: str) -> float | None:
        with self.lock:
            return next((t for t, body in self.arrivals if token in body), None)


class Feed:
    def __init__(self) -> None:
        self.entries: list[tuple[str, datetime]] = []
        self.lock = threading.Lock()

    def add(self, slug: str) -> None:
        with self.lock:
            self.entries.append((slug, datetime.now(UTC)))

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            items = "".join(
                f"<item><title>Acme keeps failing ({slug})</title>"
                f"<link>https://blog.example.com/posts/{slug}</link><guid>{slug}</guid>"
                f"<pubDate>{format_datetime(when)}</pubDate>"
                f"<description>{ANGRY}</description></item>"
                for slug, when in self.entries
            )
        body = (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
            f"<link>https://blog.example.com/</link><description>d</description>{items}"
            "</channel></rss>"
        )
        return 200, {"content-type": "application/rss+xml"}, body.encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=10)
    ap.add_argument("--gap", type=float, default=3.0, help="seconds between posts")
    ap.add_argument("--every", default="10s", help="the feed's polling interval")
    ap.add_argument("--out", type=Path, help="keep sources.yaml, the database and the log here")
    args = ap.parse_args()
    every_s = parse_duration(args.every)

    work = args.out or Path(tempfile.mkdtemp(prefix="listener-tta-"))
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("mentions.db*"):  # a fresh database: every post is new
        old.unlink()
    slack, feed = Slack(), Feed()
    with LoopbackServer() as http, Jetstream() as js:
        http.add("/slack", handler=slack)
        http.add("/feed", handler=feed)
        cfg = work / "sources.yaml"
        cfg.write_text(
            f"""database: mentions.db
brands:
  - name: Acme
    terms: [Acme]
sources:
  - name: blog
    kind: feed
    url: {http.url("/feed")}
    every: {args.every}
  - name: bsky-live
    kind: jetstream
    base_url: {js.url}
alerts:
  channels:
    - name: slack
      kind: slack
      webhook_url: {http.url("/slack")}
  rules:
    very_negative_mention: {{compound_at_most: -0.5, sources: [blog, bsky-live]}}
    negative_thread: {{enabled: false}}
    spike: {{enabled: false}}
"""
        )
        log = (work / "listener.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            js.wait_connections(1, timeout=60)
            deadline = time.monotonic() + 60
            while not http.requests_for("/feed") and time.monotonic() < deadline:
                time.sleep(0.05)
            published: dict[str, tuple[str, float]] = {}  # token -> (kind, time)
            for i in range(args.posts):
                rkey = f"3ktta{i:04d}"
                js.publish(post("did:plc:ttabench", rkey, f"{ANGRY} ({i})"))
                published[f"/post/{rkey}"] = ("streamed", time.time())
                slug = f"tta-{i:04d}"
                feed.add(slug)
                published[f"/posts/{slug}"] = ("polled", time.time())
                time.sleep(args.gap)
            deadline = time.monotonic() + every_s * 1.2 + 60
            while time.monotonic() < deadline:
                if all(slack.arrived(token) for token in published):
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()

    print(f"time to alert, {args.posts} posts each, feed every {args.every} ({work})\n")
    print("| source | posts | alerted | p50 | p95 | max | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, goal, limit in (
        ("polled", f"<= {every_s + 10:.0f} s", every_s + 10),
        ("streamed", "p95 <= 5 s", 5.0),
    ):
        delays = [
            arrived - at
            for token, (k, at) in published.items()
            if k == kind and (arrived := slack.arrived(token)) is not None
        ]
        sent = sum(1 for k, _ in published.values() if k == kind)
        if not delays:
            print(f"| {kind} | {sent} | 0 | - | - | - | {goal}: no alert arrived |")
            continue
        p50, p95, worst = percentile(delays, 0.5), percentile(delays, 0.95), max(delays)
        met = (worst if kind == "polled" else p95) <= limit and len(delays) == sent
        print(
            f"| {kind} | {sent} | {len(delays)} | {p50:.1f} s | {p95:.1f} s | {worst:.1f} s "
            f"| {goal}: {'met' if met else 'NOT met'} |"
        )


if __name__ == "__main__":
    main()
