"""`kind: lemmy`: posts and comments that match a search on a Lemmy instance (and, through it,
on the communities it federates with), via `GET /api/v3/search`.

How the API behaves (join-lemmy.org/api, lemmy-js-client types):

- `/api/v3/search?q=&type_=All|Posts|Comments&sort=New&listing_type=All&limit=&page=` answers
  `{type_, posts: [PostView], comments: [CommentView], communities, users}`; `limit` is at most
  50 and applies to each list. There is no "since" parameter: we page through newest-first
  results until we reach the newest `published` time seen before (kept in the cursor).
- Lemmy 1.0 (beta since May 2026) brings API v4 but keeps a v3 compatibility layer for
  browsing, search and comment listing, so v3 serves both 0.19 and 1.0 instances.
- Anonymous reads are allowed; instances rate-limit search per IP (60 per 10 minutes by
  default), so requests to an instance are spaced out.
- Posts and comments carry `ap_id`, their ActivityPub id on the instance where they were
  written. The same post seen through two instances has two local ids but one `ap_id`: we
  use `ap_id` as the item's id and its URL, and derive the thread key from it when it has
  Lemmy's `https://{host}/post/{id}` form, so copies collapse into one item and one thread.

Thread key `lemmy:{host}:{post id}` (the post's home instance and id there); a matching
post's comments are read from `/api/v3/comment/list?post_id=`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import Field, field_validator

from ..models import Item, Response, SourcePoll
from ..text import canonical_url, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import (
    JSON_ACCEPT,
    decode_json,
    json_dict,
    known_code,
    load_options,
    pace,
    parse_iso_time,
)
from .base import THREAD_TITLE, Duration, KindOptions, WebUrl

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://lemmy.world"
# Depth of the comment tree read when following a thread (lemmy-ui's own default).
COMMENT_DEPTH = 8
_POST_AP_ID = re.compile(r"^https?://([^/]+)/post/(\d+)/?$")


class LemmyOptions(KindOptions):
    query: str = Field(min_length=1)
    # The instance to search through, e.g. https://lemmy.world or https://programming.dev.
    base_url: WebUrl = DEFAULT_BASE_URL
    type: Literal["All", "Posts", "Comments"] = "All"
    # Only this community (`name` or `name@instance`).
    community: str | None = None
    limit: int = Field(50, ge=1, le=50)
    max_pages: int = Field(5, ge=1, le=20)
    request_interval: Duration = 1.0

    @field_validator("base_url")
    @classmethod
    def _no_api_path(cls, v: str) -> str:
        v = v.rstrip("/")
        if v.endswith("/api/v3"):
            v = v[: -len("/api/v3")]
        return v


def _instance(opts: LemmyOptions) -> str:
    return (urlsplit(opts.base_url).hostname or "").lower()


def thread_key_for(post: dict[str, Any], instance: str) -> str:
    """`lemmy:{home host}:{id there}` from the post's ap_id, else this instance's id."""
    ap_id = post.get("ap_id")
    if isinstance(ap_id, str):
        m = _POST_AP_ID.match(ap_id)
        if m:
            return f"lemmy:{m.group(1).lower()}:{m.group(2)}"
    return f"lemmy:{instance}:{post.get('id')}"


def comments_url(opts: LemmyOptions, post_id: object) -> str:
    params = {"post_id": post_id, "type_": "All", "sort": "New", "max_depth": COMMENT_DEPTH}
    return f"{opts.base_url}/api/v3/comment/list?{urlencode(params)}"


def _author(creator: Any) -> str | None:
    """`name@home-instance`, the handle people use across the fediverse."""
    if not isinstance(creator, dict) or not isinstance(creator.get("name"), str):
        return None
    actor = creator.get("actor_id")
    host = urlsplit(actor).hostname if isinstance(actor, str) else None
    return f"{creator['name']}@{host}" if host else creator["name"]


def _gone(thing: dict[str, Any]) -> bool:
    return bool(thing.get("deleted") or thing.get("removed"))


def parse_post_view(view: Any, *, opts: LemmyOptions, source: str, now: datetime) -> Item | None:
    if not isinstance(view, dict) or not isinstance(view.get("post"), dict):
        return None
    post = view["post"]
    if _gone(post) or not isinstance(post.get("id"), int):
        return None
    instance = _instance(opts)
    permalink = post.get("ap_id") if isinstance(post.get("ap_id"), str) else None
    permalink = permalink or f"{opts.base_url}/post/{post['id']}"
    link = post.get("url") if isinstance(post.get("url"), str) and post.get("url") else None
    community = json_dict(view.get("community"))
    counts = json_dict(view.get("counts"))
    extra: dict[str, Any] = {
        "ap_id": permalink,
        "instance": instance,
        "local_id": post["id"],
        "community": community.get("name"),
        "community_url": community.get("actor_id"),
        "score": counts.get("score"),
        "comments": counts.get("comments"),
    }
    if link:
        extra["link"] = link
    return Item(
        source=source,
        native_id=permalink,
        # A link post is about the article it links: one item with the article's other
        # sightings (a blog's feed, Hacker News, Reddit).
        url=canonical_url(link or permalink),
        title=normalise_text(str(post.get("name") or "")),
        text=normalise_text(str(post.get("body") or "")),
        author=_author(view.get("creator")),
        published_at=parse_datetime(post.get("published"), now=now),
        updated_at=parse_datetime(post.get("updated"), now=now),
        thread_key=thread_key_for(post, instance),
        thread_url=comments_url(opts, post["id"]),
        raw_url=permalink,
        extra=extra,
    )


def parse_comment_view(view: Any, *, opts: LemmyOptions, source: str, now: datetime) -> Item | None:
    if not isinstance(view, dict) or not isinstance(view.get("comment"), dict):
        return None
    comment = view["comment"]
    post = json_dict(view.get("post"))
    if _gone(comment) or not isinstance(comment.get("id"), int):
        return None
    instance = _instance(opts)
    permalink = comment.get("ap_id") if isinstance(comment.get("ap_id"), str) else None
    permalink = permalink or f"{opts.base_url}/comment/{comment['id']}"
    key = thread_key_for(post, instance) if post.get("id") is not None else ""
    # `path` is "0.<ancestor ids>.<own id>": a top-level comment answers the post itself.
    path = [p for p in str(comment.get("path") or "").split(".") if p and p != "0"]
    parent = f"lemmy:{instance}:comment:{path[-2]}" if len(path) >= 2 else key or None
    return Item(
        source=source,
        native_id=permalink,
        url=canonical_url(permalink),
        title="",
        text=normalise_text(str(comment.get("content") or "")),
        author=_author(view.get("creator")),
        published_at=parse_datetime(comment.get("published"), now=now),
        updated_at=parse_datetime(comment.get("updated"), now=now),
        thread_key=key,
        parent_key=parent,
        is_reply=True,
        thread_url=comments_url(opts, post["id"]) if isinstance(post.get("id"), int) else None,
        raw_url=permalink,
        extra={
            "ap_id": permalink,
            "instance": instance,
            "local_id": comment["id"],
            THREAD_TITLE: normalise_text(str(post.get("name") or "")),
        },
    )


# Lemmy's error codes an error message may name (any other is the server's text).
_ERROR_CODES = frozenset(
    {
        "rate_limit_error",
        "not_logged_in",
        "incorrect_login",
        "instance_is_private",
        "couldnt_find_community",
        "couldnt_find_post",
        "couldnt_find_comment",
        "couldnt_find_person",
        "no_id_given",
        "unknown",
    }
)


def _decode(response: Response) -> tuple[dict[str, Any] | None, str | None]:
    data, problem = decode_json(
        response,
        service="the Lemmy instance",
        unreachable="Lemmy instance",
        html_hint="not a Lemmy instance, a block page, or the wrong base_url",
        not_object="an API response",
    )
    if problem is not None:
        return None, problem
    if not 200 <= response.status < 300 or "error" in data:
        code = str(data.get("error") or "")
        # Lemmy's `error` is matched against codes we know, never quoted as it came.
        known = known_code(code, _ERROR_CODES)
        what = f"HTTP {response.status}, {known}" if known else f"HTTP {response.status}"
        if "rate_limit" in code or response.status == 429:
            return None, (
                f"the Lemmy instance rate-limited this IP ({what}); poll less often or use "
                "fewer pages (max_pages)"
            )
        return None, f"the Lemmy instance refused the request ({what})"
    return data, None


def _published(view: dict[str, Any], field: str) -> datetime | None:
    return parse_iso_time(json_dict(view.get(field)).get("published"))


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(LemmyOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    cursor = dict(ctx.state.cursor)
    since = parse_iso_time(cursor.get("newest"))
    newest = since
    items: list[Item] = []
    responses: list[Response] = []
    seen_ap_ids: set[str] = set()
    pages = opts.max_pages if since else 1
    for page in range(1, pages + 1):
        params: dict[str, Any] = {
            "q": opts.query,
            "type_": opts.type,
            "sort": "New",
            "listing_type": "All",
            "limit": opts.limit,
            "page": page,
        }
        if opts.community:
            params["community_name"] = opts.community
        url = f"{opts.base_url}/api/v3/search?{urlencode(params)}"
        response = await ctx.fetcher.get(url, accept=JSON_ACCEPT)
        responses.append(response)
        data, problem = _decode(response)
        if problem is not None:
            return SourcePoll(items=items, responses=responses, error=problem)
        assert data is not None
        done = True
        for field, views, parse in (
            ("post", data.get("posts"), parse_post_view),
            ("comment", data.get("comments"), parse_comment_view),
        ):
            if not isinstance(views, list):
                continue
            reached_old = False
            for view in views:
                when = _published(view, field) if isinstance(view, dict) else None
                if since is not None and when is not None and when <= since:
                    reached_old = True
                    continue
                item = parse(view, opts=opts, source=ctx.spec.name, now=now)
                if item is None or item.native_id in seen_ap_ids:
                    continue
                seen_ap_ids.add(item.native_id or "")
                items.append(item)
                if when is not None and (newest is None or when > newest):
                    newest = when
            if len(views) >= opts.limit and not reached_old:
                done = False
        if done:
            break
    else:
        if since is not None:
            log.warning(
                "%s: more than %d pages of new results; older ones are skipped: raise "
                "max_pages or poll more often",
                ctx.spec.name,
                opts.max_pages,
            )
    new_cursor = dict(cursor)
    if newest is not None:
        new_cursor["newest"] = newest.isoformat()
    return SourcePoll(items=items, responses=responses, cursor=new_cursor)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """A post's comments (the tree to COMMENT_DEPTH), newest first."""
    opts = load_options(LemmyOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    response = await ctx.fetcher.get(thread_url, accept=JSON_ACCEPT)
    data, problem = _decode(response)
    if problem is not None:
        return SourcePoll(items=[], responses=[response], error=problem)
    assert data is not None
    items = []
    for view in data.get("comments") or []:
        item = parse_comment_view(view, opts=opts, source=ctx.spec.name, now=now)
        if item is not None:
            items.append(item)
    return SourcePoll(items=items, responses=[response])


KIND = register(
    SourceKind(
        name="lemmy",
        options_model=LemmyOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="Lemmy search (API v3) on one instance",
    )
)
