"""`kind: mastodon`: hashtag timelines on one or more instances, plus full-text search with a token.

Per instance and tag, `GET /api/v1/timelines/tag/{tag}?min_id={cursor}&limit=40` returns the
statuses immediately newer than the cursor, newest first; when a page is full, the `Link`
header's `rel="prev"` URL (whose `min_id` is the newest id of the page) gives the next newer
page, while `rel="next"` (`max_id`) would go back in time. The cursor per instance and tag is
the `min_id` of the last `prev` link, i.e. the newest status seen. The first poll only reads the
latest page: a new source does not backfill the whole hashtag history.

With a `token` (an access token of an account on the first instance, scope `read:search`),
`GET /api/v2/search?q=…&type=statuses&resolve=false` is polled on the first instance too; the
token is never sent to any other instance.

A status seen on two instances has two local ids but one `uri` (its ActivityPub id): the `uri` is
its native id and its `url` (the page on its home server) its URL, so both copies are one item.
Content is HTML. Threads: `in_reply_to_id` names the parent, not the root, so a reply's thread
key is `mastodon:{instance host}:{in_reply_to_id}`; `/api/v1/statuses/{id}/context` gives the
ancestors and descendants of a status when its thread is followed.

Since Mastodon 4.5 an instance chooses, per kind of timeline, whether it is public, for logged-in
users only or off: `configuration.timelines_access.hashtag_feeds.{local,remote}` is `public`,
`authenticated` or `disabled` in the instance info (`GET /api/v2/instance`), and a tag timeline
can answer 401. The instance info is read once per instance (again after a week) and kept in the
cursor; a timeline that needs a login is not asked without a token, and `listener check` and
`listener status` say plainly that `token:` is needed.

Documented at https://docs.joinmastodon.org/methods/timelines/#tag, /methods/search/#v2,
/methods/statuses/#context, /entities/Status/.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from pydantic import Field, field_validator, model_validator

from ..models import Item, Response, SourcePoll, SourceSpec
from ..text import canonical_url, html_to_text, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import JSON_ACCEPT as JSON_ACCEPT  # still importable from this module
from ._api import fetch_json, load_options, oldest_first, pace, parse_iso_time
from .base import Duration, KindOptions, Secret, spec_options

log = logging.getLogger(__name__)

PAGE_LIMIT = 40  # the documented maximum per page
# The instance's timeline access is read again after this long.
ACCESS_MAX_AGE = timedelta(days=7)
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_REL = re.compile(r"""rel\s*=\s*"?([^";,]+)"?""", re.I)
_TAG = re.compile(r"^[^\s#/?&]+$")


class MastodonOptions(KindOptions):
    instances: list[str] = Field(default_factory=lambda: ["https://mastodon.social"], min_length=1)
    tags: list[str] = Field(default_factory=list)
    query: str | None = None
    # Access token for the FIRST instance (needed for search; sent nowhere else).
    token: Annotated[str | None, Secret] = None
    max_pages: int = Field(5, ge=1, le=100)
    # Mastodon allows 300 requests per 5 minutes per IP by default: one a second.
    request_interval: Duration = 1.0

    @field_validator("instances")
    @classmethod
    def _instances(cls, v: list[str]) -> list[str]:
        out = []
        for url in v:
            url = url.strip().rstrip("/")
            if not url.startswith(("http://", "https://")):
                url = "https://" + url  # "mastodon.social" is how people name an instance
            if not urlsplit(url).hostname:
                raise ValueError(f"{url!r} is not an instance address like https://mastodon.social")
            out.append(url)
        return list(dict.fromkeys(out))

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        out = []
        for tag in v:
            tag = tag.strip().removeprefix("#")
            if not _TAG.match(tag):
                raise ValueError(f"{tag!r} is not a hashtag: write it without spaces, e.g. acme")
            out.append(tag)
        return list(dict.fromkeys(out))

    @model_validator(mode="after")
    def _check(self) -> MastodonOptions:
        if not self.tags and not self.query:
            raise ValueError("a mastodon source needs `tags:` (hashtag timelines) or `query:`")
        if self.query and not self.token:
            raise ValueError(
                "full-text search (`query:`) needs `token:`, an access token with the read:search "
                "scope from the first instance (Preferences > Development), e.g. "
                "token: ${MASTODON_TOKEN}; or follow hashtags with `tags:` instead"
            )
        return self


def _host(instance: str) -> str:
    """The instance's address as used in thread keys and cursors (host, and port if any)."""
    return (urlsplit(instance).netloc or instance).lower()


def _headers(opts: MastodonOptions, instance: str) -> dict[str, str] | None:
    if opts.token and instance == opts.instances[0]:
        return {"Authorization": f"Bearer {opts.token}"}
    return None


def _pace(ctx: PollContext, opts: MastodonOptions) -> None:
    for instance in opts.instances:
        pace(ctx, instance, opts.request_interval)


def _problem(response: Response, what: str, authenticated: bool) -> str:
    status = response.status
    detail = response.error or f"HTTP {status}"
    if status == 401:
        if authenticated:
            return (
                f"{what}: the access token was refused ({detail}); it may have expired or been "
                "revoked: create a new one (Preferences > Development) and update `token:`"
            )
        return f"{what}: this instance needs a login for it ({detail}); set `token:`"
    if status == 403:
        return f"{what}: refused ({detail}); the token may lack the read:search scope"
    if status == 404:
        return f"{what}: not found ({detail}); is this a Mastodon instance?"
    return f"{what}: {detail}"


async def _get_json(
    ctx: PollContext, url: str, what: str, headers: dict[str, str] | None
) -> tuple[Any, Response, str | None]:
    authenticated = headers is not None
    return await fetch_json(
        ctx, url, what, headers=headers, problem=lambda r, w: _problem(r, w, authenticated)
    )


def parse_links(header: str) -> dict[str, str]:
    """`Link: <url>; rel="next", <url>; rel="prev"` -> {"next": url, "prev": url}."""
    out: dict[str, str] = {}
    for m in _LINK.finditer(header or ""):
        rel = _REL.search(m.group(2))
        if rel:
            for name in rel.group(1).split():
                out.setdefault(name.lower(), m.group(1))
    return out


def _query_param(url: str, name: str) -> str | None:
    try:
        values = parse_qs(urlsplit(url).query).get(name)
    except ValueError:
        return None
    return values[0] if values else None


def _id_key(status_id: str) -> tuple[int, str]:
    # Ids are "cast from an integer but not guaranteed to be a number": numeric ones compare
    # by length first so "99" < "100"; others compare as strings.
    return (len(status_id), status_id) if status_id.isdigit() else (0, status_id)


# ---------------------------------------------------------------------------------------------
# Statuses to Items
# ---------------------------------------------------------------------------------------------


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def item_from_status(status: dict[str, Any], source: str, instance: str) -> Item | None:
    """One Status entity (as served by `instance`) as an Item; a boost becomes what it boosts."""
    if isinstance(status.get("reblog"), dict):
        status = status["reblog"]
    local_id = status.get("id")
    if not isinstance(local_id, str | int) or isinstance(local_id, bool):
        return None
    local_id = str(local_id)
    uri = _str(status.get("uri")) or None
    link = _str(status.get("url")) or uri or f"{instance}/statuses/{local_id}"
    account = status.get("account")
    acct = _str(account.get("acct")) if isinstance(account, dict) else ""
    host = _host(instance)
    if acct and "@" not in acct:
        acct = f"{acct}@{host}"  # local accounts come without their domain
    parent_id = status.get("in_reply_to_id")
    parent = (
        str(parent_id)
        if isinstance(parent_id, str | int) and not isinstance(parent_id, bool)
        else None
    )
    # `text` (the plain source) is what a deleted status carries instead of `content`.
    content = _str(status.get("content")) or _str(status.get("text"))
    tags = [t.get("name") for t in status.get("tags") or [] if isinstance(t, dict)]
    return Item(
        source=source,
        native_id=uri or f"{host}:{local_id}",
        url=canonical_url(link),
        # A content warning is the closest thing a status has to a title.
        title=normalise_text(_str(status.get("spoiler_text"))),
        text=html_to_text(content),
        author=acct or None,
        published_at=parse_datetime(status.get("created_at")),
        updated_at=parse_datetime(status.get("edited_at")),
        thread_key=f"mastodon:{host}:{parent or local_id}",
        parent_key=parent,
        is_reply=parent is not None,
        thread_url=f"{instance}/api/v1/statuses/{quote(local_id)}/context",
        raw_url=link,
        extra={
            "instance": host,
            "local_id": local_id,
            "tags": [t for t in tags if t],
            "language": status.get("language"),
            "replies_count": status.get("replies_count"),
        },
    )


# ---------------------------------------------------------------------------------------------
# Poll
# ---------------------------------------------------------------------------------------------


def tag_url(instance: str, tag: str, min_id: str | None) -> str:
    params = {"limit": str(PAGE_LIMIT)}
    if min_id:
        params["min_id"] = min_id
    return f"{instance}/api/v1/timelines/tag/{quote(tag, safe='')}?{urlencode(params)}"


def search_url(instance: str, query: str, min_id: str | None, offset: int) -> str:
    params = {
        "q": query,
        "type": "statuses",
        "resolve": "false",
        "limit": str(PAGE_LIMIT),
    }
    if min_id:
        params["min_id"] = min_id
    if offset:
        params["offset"] = str(offset)
    return f"{instance}/api/v2/search?{urlencode(params)}"


class _Run:
    """One poll's shared state: responses, items, the cursor being built, errors."""

    def __init__(self, ctx: PollContext, opts: MastodonOptions) -> None:
        self.ctx = ctx
        self.opts = opts
        self.responses: list[Response] = []
        self.items: dict[str, Item] = {}
        self.cursor: dict[str, Any] = {
            k: v
            for k, v in ctx.state.cursor.items()
            if isinstance(v, str) or (k.startswith("access:") and isinstance(v, dict))
        }
        self.errors: list[str] = []

    def add(self, statuses: list[Any], instance: str) -> None:
        for status in statuses:
            if isinstance(status, dict):
                item = item_from_status(status, self.ctx.spec.name, instance)
                if item is not None:
                    self.items.setdefault(item.native_id or item.url, item)

    async def hashtag_access(self, instance: str) -> dict[str, Any]:
        """The instance's `timelines_access.hashtag_feeds`, read once and kept in the cursor."""
        key = f"access:{_host(instance)}"
        known = self.cursor.get(key)
        now = self.ctx.now()
        if isinstance(known, dict):
            checked = parse_iso_time(known.get("checked_at"))
            if checked is not None and now - checked < ACCESS_MAX_AGE:
                return known
        doc, response, error = await _get_json(
            self.ctx, f"{instance}/api/v2/instance", f"instance info of {_host(instance)}", None
        )
        self.responses.append(response)
        configuration = doc.get("configuration") if isinstance(doc, dict) else None
        access = configuration.get("timelines_access") if isinstance(configuration, dict) else None
        feeds = access.get("hashtag_feeds") if isinstance(access, dict) else None
        info: dict[str, Any] = {"checked_at": now.isoformat(timespec="seconds")}
        if isinstance(feeds, dict):
            # Older instances (before 4.5) say nothing: their tag timelines are public.
            info.update(
                {k: feeds.get(k) for k in ("local", "remote") if isinstance(feeds.get(k), str)}
            )
        elif error:
            log.info("%s: %s", self.ctx.spec.name, error)
        self.cursor[key] = info
        return info

    async def tag(self, instance: str, tag: str) -> None:
        key = f"tag:{_host(instance)}:{tag.lower()}"
        access = await self.hashtag_access(instance)
        levels = {access.get("local"), access.get("remote")}
        what = f"#{tag} on {_host(instance)}"
        if levels == {"disabled"}:
            self.errors.append(
                f"{what}: this instance has turned hashtag timelines off "
                "(timelines_access.hashtag_feeds: disabled); remove it from `instances:`"
            )
            return
        if levels <= {"authenticated", "disabled"} and _headers(self.opts, instance) is None:
            self.errors.append(f"{what}: {login_needed(instance, self.opts)}")
            return
        min_id = self.cursor.get(key)
        newest = min_id
        url = tag_url(instance, tag, min_id)
        for _ in range(self.opts.max_pages):
            doc, response, error = await _get_json(
                self.ctx, url, what, _headers(self.opts, instance)
            )
            self.responses.append(response)
            if response.status == 401 and _headers(self.opts, instance) is None:
                self.cursor[f"access:{_host(instance)}"] = {
                    **access,
                    "login_needed_at": self.ctx.now().isoformat(timespec="seconds"),
                }
                self.errors.append(f"{what}: {login_needed(instance, self.opts)}")
                return
            if error or not isinstance(doc, list):
                self.errors.append(error or f"{what}: expected a list of statuses")
                return
            self.add(doc, instance)
            ids = [str(s["id"]) for s in doc if isinstance(s, dict) and "id" in s]
            prev = parse_links(response.headers.get("link", "")).get("prev")
            prev_min = _query_param(prev, "min_id") if prev else None
            page_newest = prev_min or (max(ids, key=_id_key) if ids else None)
            if page_newest and (newest is None or _id_key(page_newest) > _id_key(newest)):
                newest = page_newest
            # A short page is the end; so is the first poll, which only takes the latest page.
            if min_id is None or len(doc) < PAGE_LIMIT or not page_newest:
                break
            url = tag_url(instance, tag, page_newest)
        else:
            log.warning(
                "%s: %s has more new statuses than %d pages: the rest comes next poll",
                self.ctx.spec.name,
                what,
                self.opts.max_pages,
            )
        if newest:
            self.cursor[key] = newest

    async def search(self, instance: str, query: str) -> None:
        key = f"search:{_host(instance)}"
        min_id = self.cursor.get(key)
        newest = min_id
        what = f"search for {query!r} on {_host(instance)}"
        for page in range(self.opts.max_pages):
            url = search_url(instance, query, min_id, page * PAGE_LIMIT)
            doc, response, error = await _get_json(
                self.ctx, url, what, _headers(self.opts, instance)
            )
            self.responses.append(response)
            statuses = doc.get("statuses") if isinstance(doc, dict) else None
            if error or not isinstance(statuses, list):
                self.errors.append(error or f"{what}: expected a search result with statuses")
                return
            fresh = [
                s
                for s in statuses
                if isinstance(s, dict)
                and isinstance(s.get("id"), str)
                and (min_id is None or _id_key(s["id"]) > _id_key(min_id))
            ]
            self.add(fresh, instance)
            for s in fresh:
                if newest is None or _id_key(s["id"]) > _id_key(newest):
                    newest = s["id"]
            if min_id is None or len(statuses) < PAGE_LIMIT:
                break
        if newest:
            self.cursor[key] = newest


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(MastodonOptions, ctx)
    _pace(ctx, opts)
    run = _Run(ctx, opts)
    for instance in opts.instances:
        for tag in opts.tags:
            await run.tag(instance, tag)
    if opts.query:
        await run.search(opts.instances[0], opts.query)
    items = oldest_first(list(run.items.values()))
    if run.errors:
        # Items that did arrive are kept with the cursor of the timelines that gave them; a
        # failed timeline's position is unchanged, so it is asked again from where it was.
        return SourcePoll(
            items=items, responses=run.responses, error="; ".join(run.errors), cursor=run.cursor
        )
    return SourcePoll(items=items, responses=run.responses, cursor=run.cursor)


def login_needed(instance: str, opts: MastodonOptions) -> str:
    where = _host(instance)
    first = instance == opts.instances[0]
    return (
        f"{where} shows hashtag timelines to logged-in users only: a token is needed. Set "
        f"`token:` to an access token of an account on {where} (Preferences > Development, "
        "scope read)"
        + ("" if first else f", and list {where} first in `instances:` (the token goes there only)")
    )


def notes(spec: SourceSpec, cursor: Mapping[str, Any]) -> list[str]:
    """What the stored instance info says the user must do (for `check` and `status`)."""
    try:
        opts = spec_options(MastodonOptions, spec)
    except ValueError:
        return []
    out = []
    for instance in opts.instances:
        access = cursor.get(f"access:{_host(instance)}")
        if not isinstance(access, dict) or not opts.tags:
            continue
        levels = {access.get("local"), access.get("remote")}
        if levels == {"disabled"}:
            out.append(f"{_host(instance)} has turned hashtag timelines off")
        elif _headers(opts, instance) is None and (
            access.get("login_needed_at") or levels <= {"authenticated", "disabled"}
        ):
            out.append(login_needed(instance, opts))
    return out


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """Ancestors and descendants of a status, from `/api/v1/statuses/{id}/context`."""
    opts = load_options(MastodonOptions, ctx)
    _pace(ctx, opts)
    parts = urlsplit(thread_url)
    instance = f"{parts.scheme}://{parts.netloc}"
    match = next((i for i in opts.instances if _host(i) == _host(instance)), instance)
    doc, response, error = await _get_json(
        ctx, thread_url, f"thread on {_host(instance)}", _headers(opts, match)
    )
    if error or not isinstance(doc, dict):
        return SourcePoll(
            items=[], responses=[response], error=error or "thread context is not an object"
        )
    items = []
    for status in [*(doc.get("ancestors") or []), *(doc.get("descendants") or [])]:
        if isinstance(status, dict):
            item = item_from_status(status, ctx.spec.name, match)
            if item is not None:
                items.append(item)
    return SourcePoll(items=oldest_first(items), responses=[response])


KIND = register(
    SourceKind(
        name="mastodon",
        options_model=MastodonOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        notes=notes,
        description="Mastodon hashtag timelines and (with a token) full-text search",
    )
)
