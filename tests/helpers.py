"""Small builders shared by tests: feed documents and configs written like a user would, and
ways to poll them through the real pipeline and read what landed in the database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from listener.config import load_config
from listener.fetch import Fetcher
from listener.pipeline import PollSummary, poll_sources
from listener.runtime import open_runtime
from listener.sources import PollContext, SourceState, get_kind

if TYPE_CHECKING:
    from httpd import RequestInfo

    from listener.models import FetchLimits, SourcePoll, SourceSpec

# Entries are dated relative to now, so rules with time windows see them as recent.
BASE_TIME = datetime.now(UTC).replace(second=0, microsecond=0)


def rss(
    entries: Sequence[dict[str, str]],
    *,
    title: str = "Example blog",
    link: str = "https://blog.example.com/",
) -> str:
    """An RSS 2.0 document; each entry: title, link, guid (optional), body (HTML), date offset hours."""
    items = []
    for i, e in enumerate(entries):
        published = BASE_TIME - timedelta(hours=float(e.get("hours_ago", i)))
        guid = f'<guid isPermaLink="false">{escape(e["guid"])}</guid>' if e.get("guid") else ""
        comments = (
            f"<wfw:commentRss>{escape(e['comments'])}</wfw:commentRss>" if e.get("comments") else ""
        )
        items.append(
            f"""<item><title>{escape(e["title"])}</title><link>{escape(e["link"])}</link>{guid}
            <pubDate>{format_datetime(published)}</pubDate>{comments}
            <description><![CDATA[{e.get("body", "")}]]></description></item>"""
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:wfw="http://wellformedweb.org/CommentAPI/"><channel>'
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>d</description>"
        + "".join(items)
        + "</channel></rss>"
    )


def write_config(
    tmp_path: Path,
    sources: Sequence[tuple[str, str]],
    *,
    brands: str | None = None,
    extra: str = "",
) -> Path:
    brands = (
        brands
        or """\
      - name: Acme
        terms: [Acme, "Acme Corp", "@acme"]
        exclude: ["Acme Brick"]
        products:
          - name: Rocket Skates
            terms: ["Rocket Skates"]
      - name: Globex
        terms: [Globex]
    """
    )
    src = "".join(
        f"  - name: {name}\n    kind: feed\n    url: {url}\n    every: 15m\n"
        for name, url in sources
    )
    text = (
        "database: mentions.db\nfetch:\n  retries: 1\n  read_timeout: 5s\n  total_timeout: 10s\n"
        "brands:\n" + textwrap.indent(textwrap.dedent(brands), "  ") + "sources:\n" + src + extra
    )
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


class Clock:
    """A clock a test can move: `clock.now = later`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def poll_once(
    config_path: Path, *, now: Callable[[], datetime], env: Mapping[str, str] | None = None
) -> PollSummary:
    """One `listener poll` of every source: a new runtime (store, fetcher) each time, as after
    a restart."""
    config = load_config(config_path, env=env or {})

    async def main() -> PollSummary:
        async with open_runtime(config, now=now) as rt:
            return await poll_sources(list(config.sources), rt)

    return asyncio.run(main())


def poll_kind(
    spec: SourceSpec,
    state: SourceState,
    *,
    now: Callable[[], datetime],
    limits: FetchLimits | None = None,
) -> SourcePoll:
    """One `poll` of the spec's kind outside the pipeline: what it returns (cursor, error)."""

    async def main() -> SourcePoll:
        async with Fetcher(limits) as fetcher:
            ctx = PollContext(spec=spec, fetcher=fetcher, state=state, now=now)
            return await get_kind(spec.kind).poll(ctx)

    return asyncio.run(main())


def rows(tmp_path: Path, sql: str, *args: object) -> list[tuple]:
    """The rows of `sql` on the database of a config written by `write_config`."""
    conn = sqlite3.connect(tmp_path / "mentions.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def source_cursor(tmp_path: Path, name: str) -> dict[str, Any]:
    """The cursor the database keeps for source `name` ({} before its first one)."""
    (value,) = rows(tmp_path, "SELECT cursor FROM sources WHERE name = ?", name)[0]
    return json.loads(value) if value else {}


def query_params(info: RequestInfo) -> dict[str, str]:
    """The query string of a request the loopback server saw, first value of each name."""
    return {k: v[0] for k, v in parse_qs(urlsplit(info.path).query).items()}


def kind_source(name: str, kind: str, extra: str = "", **options: object) -> str:
    """A `sources:` entry for `write_config(..., extra=...)`: one `key: value` line per option,
    in order, then `extra` (more lines, already indented)."""
    lines = "".join(f"    {key}: {value}\n" for key, value in options.items())
    return f"  - name: {name}\n    kind: {kind}\n{lines}{extra}"


def wait_for(check: Callable[[], Any], what: str = "condition", timeout: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy (returned), for a process or a server
    in another thread; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def db_count(db: Path, sql: str) -> int:
    """A `SELECT count(*)` on a database another process writes: 0 while the file or its
    tables do not exist yet."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
