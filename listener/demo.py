"""`listener demo`: the whole product on bundled sample data, offline, in one command.

It serves the sample feeds in `demo_data/` (a fictional kettle maker, Brewly, its competitors, and
a firmware update that goes badly) from a small HTTP server on 127.0.0.1, writes a config that
points at them, polls them with the real pipeline (fetch, parse, dedupe, match, score, follow the
comment threads, store), prints what it found and the alert it would send, then serves the
database with `listener serve`'s Datasette.

The sample dates are written relative to now when served, so the dashboard's "last 7 days" is
always full.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .alerts.message import AlertMessage, Evidence
from .alerts.render import render_text

if TYPE_CHECKING:
    from .pipeline import PollSummary
    from .store import Store

# The pipeline, the store and Datasette are imported where used, so that registering this
# command costs `listener --help` nothing.

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("demo_data")
CONFIG_NAME = "sources.yaml"
DATABASE_NAME = "demo.db"
CONTENT_TYPES = {
    ".rss": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
}
# (source name, file): the feeds a user would list in sources.yaml. The comment feeds are not
# sources: the pipeline finds them through the blog posts' wfw:commentRss links.
SOURCES = (
    ("brewly-blog", "brewly-blog.rss"),
    ("bean-counter-forum", "bean-counter-forum.atom"),
    ("homebarista", "homebarista.rss"),
    ("kitchen-tech-news", "kitchen-tech-news.json"),
)

CONFIG_TEMPLATE = """\
# listener demo: sample feeds about Brewly, a fictional kettle maker, and its competitors.
# The feed URLs below live only while `listener demo` runs; the database stays.
# Explore it again with: listener -c {config} serve
database: {database}
every: 15m
fetch:
  retries: 0
  connect_timeout: 5s
  read_timeout: 10s
  total_timeout: 20s
brands:
  - name: Brewly
    terms: [Brewly, "@brewly", brewly.example]
    # The brand's own voices: their posts are its replies, not customers' mentions.
    accounts: ["Brewly Support", "Maya Lindqvist, Brewly product team"]
    products:
      - name: Brewly Kettle
        terms: ["Brewly Kettle"]
      - name: Brewly Grinder
        terms: ["Brewly Grinder"]
  - name: Steamline
    terms: [Steamline, "@steamline"]
  - name: Kettlewise
    terms: [Kettlewise, "@kettlewise"]
sources:
{sources}
alerts:
  channels: []
"""

_TOKEN = re.compile(r"\{(base|rfc822:[0-9.]+|iso:[0-9.]+)\}")


def render_sample(text: str, *, base: str, now: datetime) -> str:
    """Fill a sample file's `{base}`, `{rfc822:H}` and `{iso:H}` (H hours before `now`)."""
    from .store import iso

    def fill(m: re.Match[str]) -> str:
        token = m.group(1)
        if token == "base":
            return base
        kind, hours = token.split(":")
        when = now - timedelta(hours=float(hours))
        return format_datetime(when) if kind == "rfc822" else iso(when) or ""

    return _TOKEN.sub(fill, text)


def sample_files() -> dict[str, Path]:
    """URL path -> file, for every sample feed (comment feeds included)."""
    return {
        "/" + p.relative_to(DATA_DIR).as_posix(): p
        for p in sorted(DATA_DIR.rglob("*"))
        if p.is_file() and p.suffix in CONTENT_TYPES
    }


class _SampleHandler(BaseHTTPRequestHandler):
    server: _SampleServer

    def do_GET(self) -> None:
        body = self.server.pages.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_error(404)
            return
        content, content_type = body
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("demo feeds: " + format, *args)


class _SampleServer(ThreadingHTTPServer):
    daemon_threads = True
    pages: dict[str, tuple[bytes, str]]


@contextmanager
def serve_samples(now: datetime | None = None) -> Iterator[str]:
    """Serve the sample feeds on 127.0.0.1:<free port>; yields the base URL."""
    now = now or datetime.now(UTC)
    server = _SampleServer(("127.0.0.1", 0), _SampleHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.pages = {
        path: (
            render_sample(file.read_text(encoding="utf-8"), base=base, now=now).encode("utf-8"),
            CONTENT_TYPES[file.suffix],
        )
        for path, file in sample_files().items()
    }
    thread = threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write_demo_config(directory: Path, base: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_NAME
    sources = "".join(
        f"  - name: {name}\n    kind: feed\n    url: {base}/{file}\n" for name, file in SOURCES
    )
    path.write_text(
        CONFIG_TEMPLATE.format(config=path, database=DATABASE_NAME, sources=sources.rstrip("\n")),
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DemoThread:
    key: str
    title: str | None
    url: str | None
    source: str | None
    brands: str | None
    posts: int
    negative_posts: int
    mean_compound: float | None
    worst: tuple[Evidence, ...]


@dataclass(frozen=True)
class DemoResult:
    config_path: Path
    database: Path
    summary: PollSummary
    by_label: dict[str, int]
    by_brand: list[tuple[str, int, int]]  # brand, mentions, negative
    items: int
    threads: list[DemoThread]  # negative conversations, worst first
    alerts: list[AlertMessage]  # every alert the rules fired, highest level first
    alert: AlertMessage | None  # the one to show


def load_negative_threads(store: Store, limit: int = 5) -> list[DemoThread]:
    out = []
    for key, title, url, source, brands, posts, negative, mean in store.negative_threads(limit):
        # The worst posts as the alert and the thread page show them (`thread_summary`).
        summary = store.thread_summary(key, 3)
        worst = summary.worst if summary is not None else ()
        out.append(
            DemoThread(
                key=key,
                title=title,
                url=url,
                source=source,
                brands=brands,
                posts=posts,
                negative_posts=negative,
                mean_compound=mean,
                worst=tuple(
                    Evidence(
                        text=w.text,
                        compound=w.compound,
                        url=w.url,
                        author=w.author,
                        published_at=w.published_at,
                    )
                    for w in worst
                ),
            )
        )
    return out


def load_fired_alerts(store: Store) -> list[AlertMessage]:
    """The alerts the rules fired into the database, highest level and newest first."""
    from .alerts.outbox import message_from_payload

    out = []
    for payload in store.alert_payloads():
        try:
            out.append(message_from_payload(payload))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("an alert in the database could not be read: %s", exc)
    return out


def alert_for_thread(thread: DemoThread, *, now: datetime) -> AlertMessage:
    """The negative-thread alert for `thread`, as the alert rules would word it."""
    from .store import iso

    mean = f"{thread.mean_compound:+.2f}" if thread.mean_compound is not None else "n/a"
    brand = (thread.brands or "").split(",")[0] or None
    return AlertMessage(
        alert_id="demo-" + hashlib.sha256(thread.key.encode()).hexdigest()[:16],
        rule="negative_thread",
        level=1,
        brand=brand,
        title=thread.title or thread.key,
        url=thread.url,
        why=(
            f"{thread.negative_posts} of {thread.posts} posts in this conversation are negative "
            f"(mean sentiment {mean})"
        ),
        evidence=thread.worst,
        counts={
            "posts": thread.posts,
            "negative_posts": thread.negative_posts,
            "mean_compound": thread.mean_compound if thread.mean_compound is not None else 0.0,
        },
        source=thread.source,
        created_at=iso(now) or "",
    )


def run_demo(directory: Path, *, now: datetime | None = None) -> DemoResult:
    """Serve the samples, poll them into `directory`/demo.db, and report what was found."""
    from .config import load_config
    from .pipeline import poll_sources
    from .runtime import open_runtime
    from .store import Store

    now = now or datetime.now(UTC)
    with serve_samples(now) as base:
        config_path = write_demo_config(directory, base)
        config = load_config(config_path, env={})

        async def poll() -> PollSummary:
            async with open_runtime(config) as rt:
                return await poll_sources([s for s in config.sources if s.enabled], rt)

        summary = asyncio.run(poll())
    with Store.open(config.database) as store:
        counts = store.counts()
        by_label = dict.fromkeys(("negative", "neutral", "positive"), 0)
        by_label.update(dict(counts["by_label"]))
        by_brand = [(b, n, neg or 0) for b, n, _pos, _neu, neg, _other in counts["by_brand"]]
        items = store.relevant_items()
        threads = load_negative_threads(store)
        fired = load_fired_alerts(store)
    # The alert rules ran inside the poll (as in `listener run`); with no channel configured the
    # alerts wait in the database. Show the worst conversation's, or word one the same way if the
    # rules were switched off.
    alert = next((a for a in fired if a.rule == "negative_thread"), None)
    if alert is None and threads:
        alert = alert_for_thread(threads[0], now=now)
    return DemoResult(
        config_path=config_path,
        database=config.database,
        summary=summary,
        by_label=by_label,
        by_brand=by_brand,
        items=items,
        threads=threads,
        alerts=fired,
        alert=alert,
    )


def format_report(result: DemoResult, *, temporary: bool = False) -> str:
    """What the demo found; `temporary`: the folder goes when the demo ends (no --dir)."""
    s = result.summary
    lines = [
        f"Polled {len(s.reports)} sample sources ({s.ok} ok, {s.failed} failed) and the comment "
        f"threads they link to: {result.items} posts about the brands.",
        "Mentions: "
        + ", ".join(
            f"{result.by_label[label]} {label}" for label in ("negative", "neutral", "positive")
        ),
    ]
    for brand, n, neg in result.by_brand:
        lines.append(f"  {brand:<12} {n:>3} mentions, {neg} negative")
    for r in sorted(s.reports, key=lambda r: r.source):
        if r.error:
            lines.append(f"  failed: {r.source}: {r.error}")
    lines.append("")
    if result.threads:
        lines.append("Conversations that turned negative:")
        for t in result.threads:
            mean = f"{t.mean_compound:+.2f}" if t.mean_compound is not None else "n/a"
            lines.append(
                f'  "{t.title or t.key}" ({t.source}): {t.negative_posts} of {t.posts} posts '
                f"negative, mean sentiment {mean}"
            )
            for ev in t.worst[:2]:
                text = " ".join(ev.text.split())
                text = text if len(text) <= 110 else text[:109] + "…"
                lines.append(f"      {ev.compound:+.2f} {ev.author or 'anonymous'}: {text}")
    else:
        lines.append("No conversation turned negative.")
    if result.alert is not None:
        more = len(result.alerts) - 1 if result.alert in result.alerts else len(result.alerts)
        also = f" ({more} more alert{'s' if more != 1 else ''} in the database)" if more > 0 else ""
        lines += ["", f"The alert listener would send to Slack and email{also}:", ""]
        lines += ["    " + line if line else "" for line in render_text(result.alert).splitlines()]
    lines += [
        "",
        f"Config:   {result.config_path}",
        f"Database: {result.database}",
    ]
    if temporary:
        lines.append("(a temporary folder, removed when the demo stops: keep it with --dir DIR)")
    return "\n".join(lines)
