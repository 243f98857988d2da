"""Small builders shared by tests: feed documents and configs written like a user would."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

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
