"""`kind: discourse`: a Discourse forum's latest posts and/or its search, with topics followed.

- `GET /posts.json` lists the latest posts of the whole forum (50, newest first, `cooked` HTML);
  `?before={post_id}` pages back. A poll reads back to the last post id seen (the cursor).
- `GET /search.json?q={query} order:latest` (`&page=N`) finds matching posts; search posts carry
  a `blurb` (an excerpt) instead of `cooked`, and the topics they belong to come alongside. A
  matching topic is then followed, which stores its posts in full.
- `GET /t/{topic_id}.json` is a topic with the first posts of its `post_stream` and the ids of
  all of them (`stream`); the rest are read with `/t/{topic_id}/posts.json?post_ids[]=…`.

Thread key `discourse:{host}:{topic_id}`. A post's URL is `/t/{slug}/{topic_id}/{post_number}`,
except the first post, whose URL is the topic's own `/t/{slug}/{topic_id}`: that is the address
people share, so a blog or HN story linking the topic is the same item.

Private forums: `api_key` and `api_username` (a user API key) are sent as `Api-Key` /
`Api-Username` headers. Documented at https://docs.discourse.org/.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from pydantic import Field, model_validator

from ..models import Item, Response, SourcePoll
from ..text import canonical_url, html_to_text, normalise_text, parse_datetime, url_identity
from . import PollContext, SourceKind, register
from ._api import JSON_ACCEPT as JSON_ACCEPT  # still importable from this module
from ._api import fetch_json, load_options, oldest_first, pace
from .base import THREAD_TITLE, Duration, KindOptions, Secret, WebUrl

log = logging.getLogger(__name__)

# Regular posts and moderator posts; "small actions" (closed, pinned, ...) and whispers are not
# things people said in public.
_SPOKEN_POST_TYPES = frozenset({1, 2})
# Quotes repeat someone else's words: a quoted mention is not a new mention.
_QUOTE = re.compile(r"<aside\b[^>]*\bclass=\"[^\"]*\bquote\b[^\"]*\"[^>]*>.*?</aside>", re.S | re.I)
_IDS_PER_REQUEST = 20  # what Discourse returns per post_stream chunk


class DiscourseOptions(KindOptions):
    # The forum's address, e.g. https://forum.example.com (there is no global Discourse API).
    base_url: WebUrl
    query: str | None = None
    # Read every new post of the forum (`/posts.json`). Default: on when there is no query.
    latest_posts: bool | None = None
    api_key: Annotated[str | None, Secret] = None
    api_username: str | None = None
    max_pages: int = Field(5, ge=1, le=50)
    # Posts read when a topic is followed (the most recent ones).
    max_thread_posts: int = Field(200, ge=1, le=5000)
    # Discourse's default limits: 200 requests a minute and 50 per 10 seconds per IP.
    request_interval: Duration = 0.5

    @model_validator(mode="after")
    def _check(self) -> DiscourseOptions:
        if self.query is not None and not self.query.strip():
            raise ValueError("query must not be blank")
        if not self.query and self.latest_posts is False:
            raise ValueError("nothing to read: give `query:` or set `latest_posts: true`")
        if bool(self.api_key) != bool(self.api_username):
            raise ValueError("api_key and api_username go together (a user API key and its user)")
        return self

    @property
    def reads_latest(self) -> bool:
        return self.latest_posts if self.latest_posts is not None else not self.query


def _host(opts: DiscourseOptions) -> str:
    return (urlsplit(opts.base_url).netloc or opts.base_url).lower()


def _headers(opts: DiscourseOptions) -> dict[str, str] | None:
    if opts.api_key and opts.api_username:
        return {"Api-Key": opts.api_key, "Api-Username": opts.api_username}
    return None


def _problem(response: Response, what: str, opts: DiscourseOptions) -> str:
    detail = response.error or f"HTTP {response.status}"
    if response.status in (401, 403):
        if opts.api_key:
            return (
                f"{what}: the forum refused the API key ({detail}): it may have been revoked or "
                "lack read access; create a new one and update api_key"
            )
        return (
            f"{what}: the forum needs a login ({detail}); set api_key and api_username "
            "(a user API key) for private forums"
        )
    if response.status == 404:
        return f"{what}: not found ({detail}); is base_url a Discourse forum?"
    return f"{what}: {detail}"


async def _get_json(
    ctx: PollContext, opts: DiscourseOptions, url: str, what: str
) -> tuple[Any, Response, str | None]:
    return await fetch_json(
        ctx, url, what, headers=_headers(opts), problem=lambda r, w: _problem(r, w, opts)
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------------------------
# Posts to Items
# ---------------------------------------------------------------------------------------------


def post_url(base: str, slug: str, topic_id: int, post_number: int) -> str:
    slug = slug or "topic"
    if post_number <= 1:
        return f"{base}/t/{slug}/{topic_id}"
    return f"{base}/t/{slug}/{topic_id}/{post_number}"


def item_from_post(
    post: dict[str, Any],
    opts: DiscourseOptions,
    source: str,
    *,
    topic_title: str = "",
    topic_slug: str = "",
) -> Item | None:
    """One post (from posts.json, search.json or a topic's post_stream) as an Item."""
    post_id, topic_id = _int(post.get("id")), _int(post.get("topic_id"))
    number = _int(post.get("post_number")) or 1
    if post_id is None or topic_id is None:
        return None
    post_type = _int(post.get("post_type"))
    if post_type is not None and post_type not in _SPOKEN_POST_TYPES:
        return None
    if post.get("deleted_at") or post.get("hidden"):
        return None
    cooked = post.get("cooked")
    if isinstance(cooked, str):
        text = html_to_text(_QUOTE.sub("", cooked))
    else:
        # Search results carry an excerpt only; following the topic stores the full post.
        text = html_to_text(post.get("blurb") or "")
    if not text:
        return None
    base = opts.base_url
    slug = post.get("topic_slug") or topic_slug or ""
    title = post.get("topic_title") or topic_title or ""
    link = post_url(base, slug, topic_id, number)
    reply_to = _int(post.get("reply_to_post_number"))
    parent = None
    if number > 1:
        parent = url_identity(post_url(base, slug, topic_id, reply_to or 1))
    author = post.get("username")
    return Item(
        source=source,
        native_id=str(post_id),
        url=canonical_url(link),
        # Replies get no title: the topic's title would make every reply "mention" what it names.
        title=normalise_text(title) if number <= 1 else "",
        text=text,
        author=author if isinstance(author, str) and author else None,
        published_at=parse_datetime(post.get("created_at")),
        updated_at=parse_datetime(post.get("updated_at")),
        thread_key=f"discourse:{_host(opts)}:{topic_id}",
        parent_key=parent,
        is_reply=number > 1,
        thread_url=f"{base}/t/{topic_id}.json",
        raw_url=link,
        extra={
            "topic_id": topic_id,
            "post_number": number,
            THREAD_TITLE: normalise_text(title),
            "category_id": post.get("category_id"),
        },
    )


# ---------------------------------------------------------------------------------------------
# Poll
# ---------------------------------------------------------------------------------------------


async def _latest(
    ctx: PollContext, opts: DiscourseOptions, since: int | None, responses: list[Response]
) -> tuple[list[Item], int | None, str | None]:
    """New posts from /posts.json back to `since`; (items, newest id, error)."""
    items: list[Item] = []
    newest = since
    before: int | None = None
    for _ in range(opts.max_pages):
        url = f"{opts.base_url}/posts.json" + (
            f"?{urlencode({'before': before})}" if before else ""
        )
        doc, response, error = await _get_json(ctx, opts, url, "latest posts")
        responses.append(response)
        posts = doc.get("latest_posts") if isinstance(doc, dict) else None
        if error or not isinstance(posts, list):
            return items, None, error or "latest posts: no `latest_posts` list (not Discourse?)"
        ids = []
        for post in posts:
            if not isinstance(post, dict) or (pid := _int(post.get("id"))) is None:
                continue
            ids.append(pid)
            if since is not None and pid <= since:
                continue
            item = item_from_post(post, opts, ctx.spec.name)
            if item is not None:
                items.append(item)
        if ids:
            newest = max(newest or 0, *ids)
        # The first poll reads one page; later ones go back until they reach the cursor.
        if since is None or not ids or min(ids) <= since:
            break
        before = min(ids)
    else:
        log.warning(
            "%s: more new posts than %d pages: older ones were skipped",
            ctx.spec.name,
            opts.max_pages,
        )
    return items, newest, None


async def _search(
    ctx: PollContext, opts: DiscourseOptions, since: int | None, responses: list[Response]
) -> tuple[list[Item], int | None, str | None]:
    """Matching posts, newest first, back to `since`; (items, newest id, error)."""
    items: list[Item] = []
    newest = since
    query = f"{opts.query} order:latest"
    for page in range(1, opts.max_pages + 1):
        params = {"q": query} if page == 1 else {"q": query, "page": str(page)}
        url = f"{opts.base_url}/search.json?{urlencode(params)}"
        doc, response, error = await _get_json(ctx, opts, url, f"search for {opts.query!r}")
        responses.append(response)
        if error or not isinstance(doc, dict):
            return items, None, error or "search: not a JSON object"
        topics = {
            t["id"]: t for t in doc.get("topics") or [] if isinstance(t, dict) and _int(t.get("id"))
        }
        ids = []
        for post in doc.get("posts") or []:
            if not isinstance(post, dict) or (pid := _int(post.get("id"))) is None:
                continue
            ids.append(pid)
            if since is not None and pid <= since:
                continue
            topic = topics.get(post.get("topic_id"), {})
            item = item_from_post(
                post,
                opts,
                ctx.spec.name,
                topic_title=topic.get("title") or "",
                topic_slug=topic.get("slug") or "",
            )
            if item is not None:
                items.append(item)
        if ids:
            newest = max(newest or 0, *ids)
        grouped = doc.get("grouped_search_result") or {}
        more = isinstance(grouped, dict) and bool(grouped.get("more_full_page_results"))
        if since is None or not ids or min(ids) <= since or not more:
            break
    return items, newest, None


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(DiscourseOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    cursor = dict(ctx.state.cursor)
    responses: list[Response] = []
    items: dict[str, Item] = {}
    errors: list[str] = []
    parts = []
    if opts.reads_latest:
        parts.append(("latest_post_id", _latest))
    if opts.query:
        parts.append(("search_post_id", _search))
    for name, read in parts:
        since = _int(cursor.get(name))
        found, newest, error = await read(ctx, opts, since, responses)
        for item in found:
            items.setdefault(item.native_id or item.url, item)
        if error:
            errors.append(error)
        elif newest is not None:
            cursor[name] = newest
    found_items = oldest_first(list(items.values()))
    if errors:
        return SourcePoll(items=found_items, responses=responses, error="; ".join(errors))
    return SourcePoll(items=found_items, responses=responses, cursor=cursor)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """A topic's posts: `/t/{id}.json`, then the rest of its stream, most recent first."""
    opts = load_options(DiscourseOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    responses: list[Response] = []
    doc, response, error = await _get_json(ctx, opts, thread_url, "topic")
    responses.append(response)
    stream_doc = doc.get("post_stream") if isinstance(doc, dict) else None
    if error or not isinstance(stream_doc, dict):
        return SourcePoll(
            items=[], responses=responses, error=error or "topic: no post_stream (not Discourse?)"
        )
    topic_id, title, slug = _int(doc.get("id")), doc.get("title") or "", doc.get("slug") or ""
    posts = [p for p in stream_doc.get("posts") or [] if isinstance(p, dict)]
    have = {_int(p.get("id")) for p in posts}
    stream = [i for i in stream_doc.get("stream") or [] if _int(i) is not None]
    wanted = [i for i in stream[-opts.max_thread_posts :] if i not in have]
    for start in range(0, len(wanted), _IDS_PER_REQUEST):
        chunk = wanted[start : start + _IDS_PER_REQUEST]
        query = urlencode([("post_ids[]", str(i)) for i in chunk])
        url = f"{opts.base_url}/t/{topic_id}/posts.json?{query}"
        more, response, error = await _get_json(ctx, opts, url, "topic posts")
        responses.append(response)
        extra = (more.get("post_stream") or {}).get("posts") if isinstance(more, dict) else None
        if error or not isinstance(extra, list):
            log.warning(
                "%s: could not read more posts of topic %s: %s", ctx.spec.name, topic_id, error
            )
            break
        posts.extend(p for p in extra if isinstance(p, dict))
    items = []
    for post in posts:
        item = item_from_post(post, opts, ctx.spec.name, topic_title=title, topic_slug=slug)
        if item is not None:
            items.append(item)
    return SourcePoll(items=oldest_first(items), responses=responses)


KIND = register(
    SourceKind(
        name="discourse",
        options_model=DiscourseOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="Discourse forum: latest posts and search, topics followed",
    )
)
