"""`kind: hackernews`: stories and comments from the Algolia Hacker News search API.

`search_by_date` returns hits newest first; we ask for everything created after the newest
`created_at_i` seen so far (kept as the cursor in the database) and page through `page=0..`
until the pages run out. A story that links an article is stored under the article's canonical
URL, so the same article seen on HN, Reddit and a blog is one item with three sightings; Ask HN
posts (no link) and comments use their news.ycombinator.com permalink. Threads are read in one
request from `items/{story_id}`, which returns the story with its whole comment tree.

Documented at https://hn.algolia.com/api: 10,000 requests per hour per IP, 1,000 hits per query
at most, tags ANDed by comma and ORed inside parentheses, `numericFilters=created_at_i>N`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from pydantic import Field, field_validator

from ..models import Item, Response, SourcePoll
from ..text import canonical_url, html_to_text, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import JSON_ACCEPT as JSON_ACCEPT  # still importable from this module
from ._api import fetch_json, load_options, oldest_first, pace
from .base import THREAD_TITLE, Duration, KindOptions, WebUrl

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://hn.algolia.com/api/v1"
HN_ITEM_URL = "https://news.ycombinator.com/item?id={id}"
# 10,000 requests an hour per IP is one every 0.36 s.
DEFAULT_INTERVAL_S = 0.4
# Algolia serves at most 1,000 hits per query, whatever the page size.
MAX_HITS = 1000
# A comment tree is flattened into at most this many items.
MAX_THREAD_ITEMS = 2000


class HackerNewsOptions(KindOptions):
    query: str = Field(min_length=1, description="words to search for, as typed on hn.algolia.com")
    base_url: WebUrl = DEFAULT_BASE_URL
    # Which kinds of item to search: stories, comments or both.
    types: list[str] = Field(default_factory=lambda: ["story", "comment"])
    hits_per_page: int = Field(100, ge=1, le=1000)
    max_pages: int = Field(10, ge=1, le=100)
    # How far back the very first poll reaches; later polls continue from the cursor.
    backfill: Duration = 2 * 86400.0
    request_interval: Duration = DEFAULT_INTERVAL_S

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v.strip()

    @field_validator("types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in ("story", "comment")]
        if unknown or not v:
            raise ValueError("types must list story, comment or both")
        return list(dict.fromkeys(v))


def _base(opts: HackerNewsOptions) -> str:
    return opts.base_url.rstrip("/")


# ---------------------------------------------------------------------------------------------
# Hits and items to Items
# ---------------------------------------------------------------------------------------------


def _permalink(item_id: object) -> str:
    return HN_ITEM_URL.format(id=item_id)


def _story_item(
    source: str,
    base: str,
    item_id: str,
    *,
    title: str,
    link: str | None,
    text_html: str | None,
    author: str | None,
    created: object,
    extra: dict[str, Any],
) -> Item:
    permalink = _permalink(item_id)
    link = (link or "").strip() or None
    extra = {**extra, "permalink": permalink}
    if link:
        # The article is the story: stored under its URL so other sources linking it collide.
        extra["link"] = link
    return Item(
        source=source,
        native_id=item_id,
        url=canonical_url(link or permalink),
        title=normalise_text(title or ""),
        text=html_to_text(text_html or ""),
        author=author or None,
        published_at=parse_datetime(created),
        thread_key=f"hn:{item_id}",
        thread_url=f"{base}/items/{item_id}",
        raw_url=permalink,
        extra=extra,
    )


def _comment_item(
    source: str,
    base: str,
    item_id: str,
    *,
    story_id: str,
    parent_id: str | None,
    text_html: str,
    author: str | None,
    created: object,
    extra: dict[str, Any],
) -> Item:
    permalink = _permalink(item_id)
    return Item(
        source=source,
        native_id=item_id,
        url=canonical_url(permalink),
        # No title: the story's title would make every comment "mention" what the story names.
        title="",
        text=html_to_text(text_html),
        author=author or None,
        published_at=parse_datetime(created),
        thread_key=f"hn:{story_id}",
        parent_key=parent_id or story_id,
        is_reply=True,
        thread_url=f"{base}/items/{story_id}",
        raw_url=permalink,
        extra=extra,
    )


def _id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def item_from_hit(hit: dict[str, Any], source: str, base: str) -> Item | None:
    """One `search_by_date` hit as an Item, or None for hits without the fields we need."""
    item_id = _id(hit.get("objectID"))
    if item_id is None:
        return None
    tags = hit.get("_tags") or []
    created = hit.get("created_at_i") or hit.get("created_at")
    if "comment" in tags or hit.get("comment_text"):
        story_id = _id(hit.get("story_id"))
        text = hit.get("comment_text")
        if story_id is None or not isinstance(text, str):
            return None
        return _comment_item(
            source,
            base,
            item_id,
            story_id=story_id,
            parent_id=_id(hit.get("parent_id")),
            text_html=text,
            author=hit.get("author"),
            created=created,
            extra={
                THREAD_TITLE: hit.get("story_title") or "",
                "story_url": hit.get("story_url") or None,
            },
        )
    return _story_item(
        source,
        base,
        item_id,
        title=hit.get("title") or "",
        link=hit.get("url"),
        text_html=hit.get("story_text"),
        author=hit.get("author"),
        created=created,
        extra={"points": hit.get("points"), "num_comments": hit.get("num_comments")},
    )


def items_from_tree(root: dict[str, Any], source: str, base: str) -> list[Item]:
    """The story of an `items/{id}` document and every comment under it, flattened."""
    story_id = _id(root.get("id"))
    if story_id is None:
        return []
    items: list[Item] = []
    if root.get("type") == "story" or root.get("title"):
        items.append(
            _story_item(
                source,
                base,
                story_id,
                title=root.get("title") or "",
                link=root.get("url"),
                text_html=root.get("text"),
                author=root.get("author"),
                created=root.get("created_at_i") or root.get("created_at"),
                extra={"points": root.get("points")},
            )
        )
    # Iterative walk: a deep thread must not hit the recursion limit.
    stack = list(reversed(root.get("children") or []))
    while stack and len(items) < MAX_THREAD_ITEMS:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        stack.extend(reversed(node.get("children") or []))
        item_id = _id(node.get("id"))
        text = node.get("text")
        if item_id is None or not isinstance(text, str) or not text.strip():
            continue  # deleted or flagged comments have neither author nor text
        items.append(
            _comment_item(
                source,
                base,
                item_id,
                story_id=story_id,
                parent_id=_id(node.get("parent_id")),
                text_html=text,
                author=node.get("author"),
                created=node.get("created_at_i") or node.get("created_at"),
                extra={THREAD_TITLE: root.get("title") or ""},
            )
        )
    return items


# ---------------------------------------------------------------------------------------------
# Poll and thread
# ---------------------------------------------------------------------------------------------


def search_url(opts: HackerNewsOptions, since: int, page: int) -> str:
    types = opts.types
    tags = types[0] if len(types) == 1 else "(" + ",".join(types) + ")"
    params = {
        "query": opts.query,
        "tags": tags,
        "numericFilters": f"created_at_i>{since}",
        "hitsPerPage": str(opts.hits_per_page),
        "page": str(page),
    }
    return f"{_base(opts)}/search_by_date?{urlencode(params)}"


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(HackerNewsOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    base = _base(opts)
    cursor = ctx.state.cursor.get("created_at_i")
    if isinstance(cursor, int) and not isinstance(cursor, bool):
        since = cursor
    else:
        since = int((ctx.now() - timedelta(seconds=opts.backfill)).timestamp())
    responses: list[Response] = []
    items: dict[str, Item] = {}
    newest = since
    page, pages = 0, 1
    max_pages = min(opts.max_pages, -(-MAX_HITS // opts.hits_per_page))
    while page < pages and page < max_pages:
        doc, response, error = await fetch_json(
            ctx, search_url(opts, since, page), "Hacker News search"
        )
        responses.append(response)
        if error:
            return SourcePoll(items=[], responses=responses, error=error)
        hits = doc.get("hits") if isinstance(doc, dict) else None
        if not isinstance(hits, list):
            return SourcePoll(
                items=[],
                responses=responses,
                error="Hacker News search answered without a list of hits: not the Algolia API?",
            )
        for hit in hits:
            if not isinstance(hit, dict):
                continue
            item = item_from_hit(hit, ctx.spec.name, base)
            created = hit.get("created_at_i")
            if item is None or not isinstance(created, int) or created <= since:
                continue
            # New hits arriving while we page shift the pages: the same hit may come twice.
            items.setdefault(item.native_id or "", item)
            newest = max(newest, created)
        nb_pages = doc.get("nbPages")
        pages = nb_pages if isinstance(nb_pages, int) else page + 1
        page += 1
    if page < pages:
        log.warning(
            "%s: more hits since the last poll than %d pages of %d: the oldest were skipped; "
            "poll more often or raise max_pages",
            ctx.spec.name,
            max_pages,
            opts.hits_per_page,
        )
    return SourcePoll(
        items=oldest_first(list(items.values())),
        responses=responses,
        cursor={"created_at_i": newest},
    )


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """The story and all its comments, from one `items/{story_id}` request."""
    opts = load_options(HackerNewsOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    doc, response, error = await fetch_json(ctx, thread_url, "Hacker News thread")
    if error:
        return SourcePoll(items=[], responses=[response], error=error)
    if not isinstance(doc, dict):
        return SourcePoll(
            items=[], responses=[response], error="Hacker News thread is not a JSON object"
        )
    return SourcePoll(items=items_from_tree(doc, ctx.spec.name, _base(opts)), responses=[response])


KIND = register(
    SourceKind(
        name="hackernews",
        options_model=HackerNewsOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="Hacker News stories and comments (Algolia search API)",
    )
)
