"""`kind: bluesky`: posts that match a search, through `app.bsky.feed.searchPosts`, signed in
with an app password.

How the service behaves (docs.bsky.app, "API Hosts and Auth"; atproto issues #3423, #2838):

- Post search is closed to anonymous clients since January 2025 (`public.api.bsky.app`
  answers 403), so a source needs an account: `identifier` (handle or email) and an app
  password, both from the environment.
- Authenticated requests go to the account's PDS, which proxies `app.bsky.*` calls to the
  Bluesky AppView. For accounts hosted by Bluesky that is the entryway `https://bsky.social`
  (the default `base_url`); a self-hosted account uses its own PDS.
- `com.atproto.server.createSession` gives an `accessJwt` (short-lived) and a `refreshJwt`;
  an expired access token answers HTTP 400 `{"error": "ExpiredToken"}` and is renewed with
  `com.atproto.server.refreshSession`. Logins are rate-limited (30 per 5 minutes, 300 a day per
  account): a poller that signs in per poll, or per restart, locks itself out. So there is one
  session per account, reused by every source that uses the account and across polls and
  restarts: kept in memory and in `<database>.sessions.json` beside the database (mode 0600;
  never in the database, which `serve` shows, nor in the logs), and renewed with its refreshJwt.
  A new login happens only when the refresh token is refused too.
- XRPC errors are JSON `{"error": name, "message": text}`; rate limits answer 429 with
  `ratelimit-reset` (UTC epoch seconds).
- `searchPosts?sort=latest&since=` is newest first and `since` is inclusive on the post's
  `sortAt` (the earlier of `createdAt` and `indexedAt`): the cursor keeps the newest `sortAt`.

Thread key `bsky:{root post uri}`; a brand thread is read with `app.bsky.feed.getPostThread`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import Field, field_validator, model_validator

from ..models import Item, Response, SourcePoll
from ..text import canonical_url, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import (
    JSON_ACCEPT,
    decode_json,
    held_back,
    json_dict,
    known_code,
    load_options,
    load_session,
    pace,
    parse_iso_time,
    save_session,
)
from .base import Duration, KindOptions, Secret, WebUrl

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://bsky.social/xrpc"
# Replies read below a brand post when following its thread.
THREAD_DEPTH = 10
_TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
# XRPC error names an error message may name (any other is the server's text, not quoted).
_XRPC_ERRORS = _TOKEN_ERRORS | {
    "AuthenticationRequired",
    "AuthFactorTokenRequired",
    "AccountTakedown",
    "AccountDeactivated",
    "InvalidRequest",
    "BadQueryString",
    "RateLimitExceeded",
    "InternalServerError",
    "MethodNotImplemented",
    "UpstreamFailure",
    "NotEnoughResources",
}
_POST_URI = re.compile(r"^at://([^/]+)/app\.bsky\.feed\.post/([^/]+)$")

CREDENTIALS_HELP = (
    "Bluesky closed post search to anonymous clients: set `identifier:` (your handle, e.g. "
    "acme.bsky.social) and `app_password:` (create one in the Bluesky app under Settings > "
    "Privacy and security > App passwords), e.g. app_password: ${BSKY_APP_PASSWORD}"
)


class BlueskyOptions(KindOptions):
    # Bluesky's search syntax: words, "phrases", from:handle, #tag, domain:, lang:.
    query: str = Field(min_length=1)
    identifier: str | None = None
    app_password: Annotated[str | None, Secret] = None
    base_url: WebUrl = DEFAULT_BASE_URL
    lang: str | None = None
    limit: int = Field(50, ge=1, le=100)
    max_pages: int = Field(5, ge=1, le=20)
    request_interval: Duration = 0.5

    @field_validator("base_url")
    @classmethod
    def _xrpc_path(cls, v: str) -> str:
        v = v.rstrip("/")
        return v if v.endswith("/xrpc") else v + "/xrpc"

    @model_validator(mode="after")
    def _credentials(self) -> BlueskyOptions:
        if not (self.identifier or "").strip() or not (self.app_password or "").strip():
            raise ValueError(CREDENTIALS_HELP)
        return self


@dataclass
class _Session:
    access: str
    refresh: str
    did: str
    handle: str


# Sessions by (base_url, identifier), shared by sources using one account; also kept in the
# sessions file beside the database (see `_api.save_session`) for the next process.
_SESSIONS: dict[tuple[str, str], _Session] = {}


def _session_key(opts: BlueskyOptions) -> str:
    return f"bluesky {opts.base_url} {opts.identifier}"


def _remember(ctx: PollContext, opts: BlueskyOptions, session: _Session | None) -> None:
    assert opts.identifier
    if session is None:
        _SESSIONS.pop((opts.base_url, opts.identifier), None)
        save_session(ctx, _session_key(opts), None)
    else:
        _SESSIONS[(opts.base_url, opts.identifier)] = session
        save_session(ctx, _session_key(opts), asdict(session))


def _recall(ctx: PollContext, opts: BlueskyOptions) -> _Session | None:
    """The account's session: this process's, else the one a previous process saved."""
    assert opts.identifier
    session = _SESSIONS.get((opts.base_url, opts.identifier))
    if session is not None:
        return session
    saved = load_session(ctx, _session_key(opts))
    if saved is None:
        return None
    session = _session_from(
        {
            k: saved.get(n)
            for k, n in (
                ("accessJwt", "access"),
                ("refreshJwt", "refresh"),
                ("did", "did"),
                ("handle", "handle"),
            )
        }
    )
    if session is not None:
        _SESSIONS[(opts.base_url, opts.identifier)] = session
        log.debug("%s: reusing the saved Bluesky session", ctx.spec.name)
    return session


def forget_sessions() -> None:
    """Drop every cached session (tests; or after the account's password changed)."""
    _SESSIONS.clear()


class _Failure(Exception):
    """A call that cannot succeed this poll; `not_before` when the service asked us to wait."""

    def __init__(self, message: str, not_before: datetime | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.not_before = not_before


def _xrpc_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _decode(response: Response) -> tuple[Any, str | None, str | None]:
    """(JSON body, XRPC error name, problem) for one response."""
    data, problem = decode_json(
        response,
        service="Bluesky",
        unreachable="Bluesky",
        html_hint="a block page or the wrong base_url",
        error_hint="(not XRPC: check base_url)",
    )
    if problem is not None:
        return None, None, problem
    if 200 <= response.status < 300:
        if not isinstance(data, dict):
            return None, None, "Bluesky answered with JSON that is not an XRPC response"
        return data, None, None
    name = str(data.get("error") or "") if isinstance(data, dict) else ""
    # The XRPC `message` is the server's text and is never quoted; a known error name is ours.
    known = known_code(name, _XRPC_ERRORS)
    what = f"HTTP {response.status}, {known}" if known else f"HTTP {response.status}"
    return data, name or None, f"Bluesky refused the request ({what})"


def _rate_limit(response: Response, now: datetime) -> datetime | None:
    if response.status != 429:
        return None
    reset = response.headers.get("ratelimit-reset", "").strip()
    if reset.isdigit():
        return datetime.fromtimestamp(int(reset), UTC)
    return now + timedelta(minutes=5)


async def _create_session(
    ctx: PollContext, opts: BlueskyOptions, responses: list[Response]
) -> _Session:
    assert opts.identifier and opts.app_password  # the options model requires both
    response = await ctx.fetcher.request(
        "POST",
        f"{opts.base_url}/com.atproto.server.createSession",
        json={"identifier": opts.identifier.strip(), "password": opts.app_password.strip()},
        accept=JSON_ACCEPT,
    )
    responses.append(response)
    data, name, problem = _decode(response)
    if problem is None:
        session = _session_from(data)
        if session is not None:
            _remember(ctx, opts, session)
            log.info("%s: signed in to Bluesky as %s", ctx.spec.name, session.handle)
            return session
        problem = "Bluesky's login answer has no session tokens"
    until = _rate_limit(response, ctx.now())
    if until is not None:
        raise _Failure(
            f"Bluesky limits logins (30 per 5 minutes, 300 a day): {problem}; next try after "
            f"{until:%Y-%m-%d %H:%M} UTC",
            until,
        )
    if name == "AuthFactorTokenRequired":
        raise _Failure(
            f"Bluesky login for {opts.identifier} needs an email code: use an app password "
            "(Settings > Privacy and security > App passwords), which does not"
        )
    if response.status in (400, 401) and name in ("AuthenticationRequired", "InvalidRequest", None):
        raise _Failure(
            f"Bluesky login failed for {opts.identifier} ({problem}): check `identifier:` and "
            "`app_password:`; use an app password from Settings > Privacy and security > "
            "App passwords, not the account password"
        )
    if name in ("AccountTakedown", "AccountDeactivated"):
        raise _Failure(f"Bluesky refused the login for {opts.identifier}: {problem}")
    raise _Failure(f"Bluesky login failed: {problem}")


def _session_from(data: Any) -> _Session | None:
    if not isinstance(data, dict):
        return None
    access, refresh = data.get("accessJwt"), data.get("refreshJwt")
    if not isinstance(access, str) or not isinstance(refresh, str):
        return None
    return _Session(access, refresh, str(data.get("did") or ""), str(data.get("handle") or ""))


async def _refresh_session(
    ctx: PollContext, opts: BlueskyOptions, session: _Session, responses: list[Response]
) -> _Session:
    """A renewed session; a new login when the refresh token itself is no longer accepted."""
    assert opts.identifier
    response = await ctx.fetcher.request(
        "POST",
        f"{opts.base_url}/com.atproto.server.refreshSession",
        headers={"Authorization": f"Bearer {session.refresh}"},
        accept=JSON_ACCEPT,
    )
    responses.append(response)
    data, name, problem = _decode(response)
    renewed = _session_from(data) if problem is None else None
    if renewed is not None:
        _remember(ctx, opts, renewed)
        log.info("%s: Bluesky session renewed", ctx.spec.name)
        return renewed
    _remember(ctx, opts, None)
    until = _rate_limit(response, ctx.now())
    if until is not None:
        raise _Failure(f"Bluesky rate limit while renewing the session ({problem})", until)
    log.info("%s: Bluesky refresh token not accepted (%s); signing in again", ctx.spec.name, name)
    return await _create_session(ctx, opts, responses)


async def _xrpc_get(
    ctx: PollContext,
    opts: BlueskyOptions,
    method: str,
    params: dict[str, Any],
    responses: list[Response],
) -> dict[str, Any]:
    """One authenticated query; an expired or invalid token is renewed once, then it fails."""
    assert opts.identifier
    session = _recall(ctx, opts)
    if session is None:
        session = await _create_session(ctx, opts, responses)
    url = (
        f"{opts.base_url}/{method}?{urlencode({k: v for k, v in params.items() if v is not None})}"
    )
    for attempt in (1, 2):
        response = await ctx.fetcher.get(
            url, headers={"Authorization": f"Bearer {session.access}"}, accept=JSON_ACCEPT
        )
        responses.append(response)
        data, name, problem = _decode(response)
        if problem is None:
            return json_dict(data)
        token_problem = name in _TOKEN_ERRORS or response.status == 401
        if token_problem and attempt == 1:
            session = await _refresh_session(ctx, opts, session, responses)
            continue
        if token_problem:
            _remember(ctx, opts, None)
            raise _Failure(
                f"Bluesky keeps rejecting the session token ({problem}) even after renewing it; "
                "check that the app password is still valid and that base_url is the account's "
                "PDS (https://bsky.social/xrpc for accounts hosted by Bluesky)"
            )
        until = _rate_limit(response, ctx.now())
        if until is not None:
            raise _Failure(
                f"Bluesky rate limit reached ({problem}); no requests until "
                f"{until:%Y-%m-%d %H:%M:%S} UTC",
                until,
            )
        if name == "BadQueryString" or (
            name == "InvalidRequest" and method.endswith("searchPosts")
        ):
            raise _Failure(f"Bluesky did not accept the search ({problem}): check `query:`")
        raise _Failure(problem)
    raise AssertionError("unreachable")


def post_url(uri: str, handle: str | None) -> str | None:
    """`https://bsky.app/profile/{handle}/post/{rkey}` for an `at://` post URI."""
    m = _POST_URI.match(uri)
    if not m:
        return None
    who = handle if handle and handle != "handle.invalid" else m.group(1)
    return f"https://bsky.app/profile/{who}/post/{m.group(2)}"


def thread_url(opts: BlueskyOptions, root_uri: str) -> str:
    params = {"uri": root_uri, "depth": THREAD_DEPTH, "parentHeight": 0}
    return f"{opts.base_url}/app.bsky.feed.getPostThread?{urlencode(params)}"


def _sort_at(post: dict[str, Any]) -> datetime | None:
    record = json_dict(post.get("record"))
    times = [
        t
        for t in (parse_iso_time(record.get("createdAt")), parse_iso_time(post.get("indexedAt")))
        if t
    ]
    return min(times) if times else None


def _links(post: dict[str, Any]) -> tuple[list[str], str | None]:
    record = json_dict(post.get("record"))
    links = []
    for facet in record.get("facets") or []:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else []:
            if isinstance(feature, dict) and isinstance(feature.get("uri"), str):
                links.append(feature["uri"])
    embed = json_dict(record.get("embed"))
    external = json_dict(embed.get("external"))
    card = external.get("uri") if isinstance(external.get("uri"), str) else None
    return links, card


def parse_post(post: Any, *, opts: BlueskyOptions, source: str, now: datetime) -> Item | None:
    """An `Item` from one `app.bsky.feed.defs#postView`, or None if unusable."""
    if not isinstance(post, dict) or not isinstance(post.get("uri"), str):
        return None
    record = post.get("record")
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    author = json_dict(post.get("author"))
    handle = author.get("handle") if isinstance(author.get("handle"), str) else None
    link = post_url(post["uri"], handle)
    if link is None:
        return None
    reply = record.get("reply") if isinstance(record.get("reply"), dict) else None
    root = json_dict(json_dict(reply).get("root")).get("uri")
    parent = json_dict(json_dict(reply).get("parent")).get("uri")
    root_uri = root if isinstance(root, str) else post["uri"]
    links, card = _links(post)
    extra: dict[str, Any] = {
        "uri": post["uri"],
        "cid": post.get("cid"),
        "did": author.get("did"),
        "display_name": author.get("displayName"),
        "likes": post.get("likeCount"),
        "replies": post.get("replyCount"),
        "reposts": post.get("repostCount"),
        "langs": record.get("langs") or [],
        "links": links,
    }
    if card:
        extra["link"] = card
    return Item(
        source=source,
        native_id=post["uri"],
        url=canonical_url(link),
        title="",
        text=normalise_text(record["text"]),
        author=handle,
        published_at=parse_datetime(record.get("createdAt"), now=now)
        or parse_datetime(post.get("indexedAt"), now=now),
        thread_key=f"bsky:{root_uri}",
        parent_key=f"bsky:{parent}" if isinstance(parent, str) else None,
        is_reply=reply is not None,
        thread_url=thread_url(opts, root_uri),
        raw_url=link,
        extra=extra,
    )


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(BlueskyOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    cursor = dict(ctx.state.cursor)
    if (waiting := held_back(ctx, "Bluesky")) is not None:
        return waiting
    since = parse_iso_time(cursor.get("since"))
    newest = since
    items: list[Item] = []
    responses: list[Response] = []
    page_cursor: str | None = None
    try:
        for _page in range(opts.max_pages if since else 1):
            data = await _xrpc_get(
                ctx,
                opts,
                "app.bsky.feed.searchPosts",
                {
                    "q": opts.query,
                    "sort": "latest",
                    "limit": opts.limit,
                    # `since` is inclusive: one millisecond on, the newest post seen last
                    # time is not fetched again.
                    "since": _xrpc_time(since + timedelta(milliseconds=1)) if since else None,
                    "lang": opts.lang,
                    "cursor": page_cursor,
                },
                responses,
            )
            posts = data.get("posts")
            if not isinstance(posts, list):
                return SourcePoll(
                    items=items, responses=responses, error="Bluesky answered without `posts`"
                )
            fresh = False
            for raw in posts:
                item = parse_post(raw, opts=opts, source=ctx.spec.name, now=now)
                if item is None:
                    continue
                items.append(item)
                when = _sort_at(raw)
                fresh = fresh or since is None or when is None or when > since
                if when is not None and (newest is None or when > newest):
                    newest = when
            page_cursor = data.get("cursor") if isinstance(data.get("cursor"), str) else None
            # A page of nothing newer than the cursor ends it, even from a server that
            # ignored `since`.
            if not posts or not page_cursor or not fresh:
                break
        else:
            if since is not None:
                log.warning(
                    "%s: more than %d pages of new posts; older ones are skipped: raise "
                    "max_pages or poll more often",
                    ctx.spec.name,
                    opts.max_pages,
                )
    except _Failure as failure:
        kept = dict(cursor)
        if failure.not_before is not None:
            kept["not_before"] = failure.not_before.isoformat(timespec="seconds")
        # The old position rides along unchanged; only the wait is new.
        return SourcePoll(items=items, responses=responses, error=failure.message, cursor=kept)
    new_cursor = {k: v for k, v in cursor.items() if k != "not_before"}
    if newest is not None:
        new_cursor["since"] = newest.isoformat()
    return SourcePoll(items=items, responses=responses, cursor=new_cursor)


def _walk(node: Any, out: list[Any]) -> None:
    """Posts of a `threadViewPost` tree; not-found and blocked replies are skipped."""
    if not isinstance(node, dict) or not str(node.get("$type", "")).endswith("#threadViewPost"):
        return
    out.append(node.get("post"))
    for reply in node.get("replies") or []:
        _walk(reply, out)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """The root post and its replies, through `app.bsky.feed.getPostThread`."""
    opts = load_options(BlueskyOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    if (waiting := held_back(ctx)) is not None:
        return waiting
    parts = urlsplit(thread_url)
    method = parts.path.rsplit("/", 1)[-1]
    responses: list[Response] = []
    try:
        data = await _xrpc_get(ctx, opts, method, dict(parse_qsl(parts.query)), responses)
    except _Failure as failure:
        return SourcePoll(items=[], responses=responses, error=failure.message)
    posts: list[Any] = []
    _walk(data.get("thread"), posts)
    items = []
    for raw in posts:
        item = parse_post(raw, opts=opts, source=ctx.spec.name, now=now)
        if item is not None:
            items.append(item)
    return SourcePoll(items=items, responses=responses)


KIND = register(
    SourceKind(
        name="bluesky",
        options_model=BlueskyOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="Bluesky post search (app password session)",
    )
)
