"""`kind: reddit`: posts and comment threads from Reddit's Atom feeds (or its API, with OAuth).

Anonymous clients only get the Atom feeds on www.reddit.com now: the `.json` API answers 403 and
old.reddit.com redirects logged-out users to a login page. So a source reads one of

- `/search.rss?q=…&sort=new` (`query:`),
- `/r/{sub}/new/.rss` (`subreddit:`),
- `/r/{sub}/search.rss?q=…&restrict_sr=on&sort=new` (both),

and a matching post's thread through `/comments/{id}/.rss`.

Since June 2026 Reddit serves anonymous clients about one request a minute per IP (it used to be
ten), announces what is left in `x-ratelimit-remaining` / `x-ratelimit-reset`, answers 429,
sometimes without `Retry-After`, and shows some networks an HTML page "You've been blocked by
network security" (NetNewsWire #5328, FreshRSS #8928, QuiteRSS #1626). So every Reddit source of
the process spends one shared budget per host (`requests_per_minute`, default 1; the lowest of
the sources sharing a host wins): the search first, always, then the brand threads with the
freshest activity while a whole request is left; the rest wait for a later poll. What Reddit's
headers say overrides our count, a 429 blocks the host for its Retry-After or a doubling backoff,
and `listener status` shows how far behind the budget is (see `_api`'s request budgets).
`listener check` warns when the configured searches alone need more requests an hour than the
budget allows. Requests are also spaced `request_interval` (6 s) apart.

The feeds are parsed by the shared feed parser (`fetch_feed_items`); this module only adds what
is Reddit's own: a link post is stored under the article it links (so the same article from HN,
Reddit and a blog is one item), the "submitted by /u/… [link] [comments]" trailer is cut from the
text, comments lose the "/u/x on <post title>" title that would make every comment "mention" what
the post names, and a login page or a 403 becomes a failure that says what happened.

With OAuth credentials of a Reddit app (https://www.reddit.com/prefs/apps), the source reads the
API on oauth.reddit.com instead (`/search`, `/r/{sub}/new`, `/comments/{id}`, JSON Listings): a
"script" app with `username` + `password` (grant `password`), a `refresh_token` (grant
`refresh_token`), or `client_id` + `client_secret` alone (app-only grant `client_credentials`).
The bearer token is fetched from `/api/v1/access_token` and kept in memory only, renewed when it
expires or is refused. OAuth clients may make 100 requests a minute. Items have the same ids
(`t3_…`, `t1_…`), URLs and thread keys either way, so switching a source to OAuth adds nothing
twice.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from pydantic import Field, field_validator, model_validator

from ..models import Item, Response, SourcePoll, SourceSpec
from ..text import canonical_url, html_to_text, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import (
    JSON_ACCEPT,
    Budget,
    http_problem,
    known_code,
    load_options,
    make_budget,
    oldest_first,
    pace,
    parse_json_body,
    record_budget_response,
    spend_follow,
    spend_search,
)
from .base import THREAD_TITLE, Duration, KindOptions, Secret, WebUrl, spec_options
from .feed import fetch_feed_items

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://www.reddit.com"
OAUTH_BASE_URL = "https://oauth.reddit.com"
# Requests to the same host are at least this far apart.
DEFAULT_INTERVAL_S = 6.0
# "About one request a minute per IP" for anonymous clients since June 2026.
DEFAULT_PER_MINUTE = 1.0
_BLOCKED_PAGE = re.compile(rb"blocked by network security", re.I)
# 100 requests a minute per OAuth client.
OAUTH_INTERVAL_S = 0.6
# Tokens are renewed this long before Reddit says they expire.
TOKEN_MARGIN = timedelta(seconds=60)
_SUBREDDIT = re.compile(r"^[A-Za-z0-9_]{2,21}(?:\+[A-Za-z0-9_]{2,21})*$")
_OAUTH_KEYS = ("client_id", "client_secret", "username", "password", "refresh_token")
_REDDIT_HOSTS = re.compile(r"(?:^|\.)(?:reddit\.com|redd\.it|reddit\.app\.link)$")

# What the Atom content of a post ends with: "submitted by /u/x [to r/sub] [link] [comments]".
_TRAILER = re.compile(
    r"\s*submitted by\s+/u/[\w-]+(?:\s+to\s+r/\w+)?(?:\s*\[link\])?(?:\s*\[comments\])?\s*$"
)
_ENTRY = re.compile(rb"<entry\b.*?</entry>", re.S)
_ENTRY_ID = re.compile(rb"<id>\s*([^<\s]+)\s*</id>")
_CONTENT = re.compile(rb"<content\b[^>]*>(.*?)</content>", re.S)
_LINK_ANCHOR = re.compile(r"""<a\s+href=["']([^"']+)["'][^>]*>\s*\[link\]\s*</a>""", re.I)


class RedditOptions(KindOptions):
    query: str | None = None
    subreddit: str | None = None
    base_url: WebUrl = DEFAULT_BASE_URL
    # Seconds between two requests to Reddit's host (all Reddit sources share it).
    request_interval: Duration = DEFAULT_INTERVAL_S
    # Requests a minute Reddit allows this IP without OAuth, shared by every Reddit source.
    requests_per_minute: float = Field(DEFAULT_PER_MINUTE, gt=0, le=100)
    limit: int = Field(100, ge=1, le=100)
    # OAuth: the app's id and secret, plus a user's username/password or a refresh token.
    oauth_base_url: WebUrl = OAUTH_BASE_URL
    client_id: str | None = None
    client_secret: Annotated[str | None, Secret] = None
    username: str | None = None
    password: Annotated[str | None, Secret] = None
    refresh_token: Annotated[str | None, Secret] = None

    @field_validator("subreddit", mode="before")
    @classmethod
    def _subreddit(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().removeprefix("/").removeprefix("r/").strip("/")
            if not _SUBREDDIT.match(v):
                raise ValueError(
                    f"{v!r} is not a subreddit name: use the name without r/, e.g. `subreddit: "
                    "acme` (several: `acme+acmesupport`)"
                )
        return v

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("query must not be blank")
        return v.strip() if v else v

    @model_validator(mode="after")
    def _check(self) -> RedditOptions:
        if not self.query and not self.subreddit:
            raise ValueError("a reddit source needs `query:`, `subreddit:` or both")
        given = [k for k in _OAUTH_KEYS if getattr(self, k)]
        if given and not (self.client_id and self.client_secret):
            raise ValueError(
                "Reddit OAuth needs client_id and client_secret (from the app on "
                "https://www.reddit.com/prefs/apps); without them, leave all OAuth keys out to "
                "read the public feeds"
            )
        if bool(self.username) != bool(self.password):
            raise ValueError('username and password go together (a Reddit "script" app)')
        if self.refresh_token and self.username:
            raise ValueError("give either username/password or refresh_token, not both")
        return self

    @property
    def uses_oauth(self) -> bool:
        return bool(self.client_id and self.client_secret)


def feed_url(opts: RedditOptions) -> str:
    base = opts.base_url.rstrip("/")
    limit = str(opts.limit)
    if opts.subreddit and opts.query:
        params = {"q": opts.query, "restrict_sr": "on", "sort": "new", "limit": limit}
        return f"{base}/r/{opts.subreddit}/search.rss?{urlencode(params)}"
    if opts.subreddit:
        return f"{base}/r/{opts.subreddit}/new/.rss?{urlencode({'limit': limit})}"
    params = {"q": opts.query or "", "sort": "new", "limit": limit}
    return f"{base}/search.rss?{urlencode(params)}"


def comments_url(opts: RedditOptions, post_id: str) -> str:
    return f"{opts.base_url.rstrip('/')}/comments/{quote(post_id)}/.rss"


def _pace(ctx: PollContext, opts: RedditOptions) -> None:
    pace(ctx, opts.base_url, opts.request_interval)


def _pace_oauth(ctx: PollContext, opts: RedditOptions) -> None:
    _pace(ctx, opts)  # the token endpoint is on www.reddit.com
    pace(ctx, opts.oauth_base_url, min(opts.request_interval, OAUTH_INTERVAL_S))


def _entry_links(body: bytes) -> dict[str, str]:
    """Entry id -> the `[link]` target in its content: what a link post points at."""
    out: dict[str, str] = {}
    for entry in _ENTRY.finditer(body):
        chunk = entry.group(0)
        m_id, m_content = _ENTRY_ID.search(chunk), _CONTENT.search(chunk)
        if not (m_id and m_content):
            continue
        # The content is HTML escaped once more for the XML: unescape that layer, then the href.
        markup = html.unescape(m_content.group(1).decode("utf-8", "replace"))
        anchor = _LINK_ANCHOR.search(markup)
        if anchor:
            out[m_id.group(1).decode("utf-8", "replace")] = html.unescape(anchor.group(1)).strip()
    return out


def _is_external(link: str) -> bool:
    try:
        host = (urlsplit(link).hostname or "").lower()
    except ValueError:
        return False
    return (
        link.startswith(("http://", "https://")) and bool(host) and not _REDDIT_HOSTS.search(host)
    )


def normalise_items(items: list[Item], body: bytes, opts: RedditOptions) -> list[Item]:
    """Reddit's own touches on the parsed Atom entries (see the module docstring)."""
    links = _entry_links(body) if body else {}
    out = []
    for item in items:
        native = item.native_id or ""
        text = _TRAILER.sub("", item.text)
        changes: dict[str, Any] = {"text": text}
        extra = dict(item.extra)
        if native.startswith("t3_"):
            post_id = native[3:]
            changes["thread_url"] = comments_url(opts, post_id)
            changes["thread_key"] = f"reddit:{post_id.lower()}"
            link = links.get(native, "")
            if _is_external(link):
                # A link post is the article: the Reddit permalink stays the sighting's URL.
                extra["link"] = link
                extra["permalink"] = item.raw_url or item.url
                changes["url"] = canonical_url(link)
                changes["raw_url"] = item.raw_url or item.url
        elif native.startswith("t1_"):
            if item.title:
                extra[THREAD_TITLE] = item.title.partition(" on ")[2] or item.title
            changes["title"] = ""
            changes["is_reply"] = True
        changes["extra"] = extra
        out.append(replace(item, **changes))
    return out


def _explain_failure(result: SourcePoll) -> str:
    """A failure a marketer can act on: a login page or a 403 is Reddit refusing anonymous use."""
    response = result.responses[-1] if result.responses else None
    error = result.error or ""
    if response is not None and _BLOCKED_PAGE.search(response.body[:20000]):
        return (
            f"Reddit blocked this network (HTTP {response.status}, an HTML page saying "
            '"You\'ve been blocked by network security"): it serves no feed to this address. '
            "Give the source OAuth credentials (client_id, client_secret), or poll from another "
            "network"
        )
    if response is not None and response.status == 403:
        return (
            "Reddit refused the request (HTTP 403): it blocks anonymous access from some "
            "addresses and clients. Check that base_url is https://www.reddit.com, try again "
            "later, or give the source OAuth credentials (client_id, client_secret)"
        )
    final = (response.final_url if response is not None else "") or ""
    if "HTML page" in error or "/login" in final:
        return (
            f"Reddit sent a login page instead of the feed ({error}): anonymous access was refused. "
            "Use base_url https://www.reddit.com (old.reddit.com redirects logged-out users to "
            "a login page), try again later, or give the source OAuth credentials"
        )
    if response is not None and response.status == 429:
        return (
            f"Reddit is rate limiting this address ({error}); no requests to it until the "
            "backoff ends: poll less often, lower requests_per_minute, or use OAuth"
        )
    return f"Reddit feed: {error}"


def budget(opts: RedditOptions) -> Budget:
    """The request budget of the feeds' host (shared by every source that reads it)."""
    return make_budget(opts.base_url, opts.requests_per_minute)


async def _read_feed(ctx: PollContext, url: str, *, conditional: bool) -> SourcePoll:
    opts = load_options(RedditOptions, ctx)
    _pace(ctx, opts)
    # No retry inside one poll: a retry would spend the budget on a host that said no.
    result = await fetch_feed_items(ctx, url, conditional=conditional, retry=False)
    for response in result.responses:
        record_budget_response(ctx, budget(opts), response)
    if not result.error and not result.items and _looks_blocked(result):
        result = replace(result, error="an HTML page instead of the feed")
    if result.error:
        return replace(result, error=_explain_failure(result))
    body = result.responses[-1].body if result.responses else b""
    return replace(result, items=oldest_first(normalise_items(result.items, body, opts)))


def _looks_blocked(result: SourcePoll) -> bool:
    """A 200 answer that is the network-security page, not a feed that happens to be empty."""
    response = result.responses[-1] if result.responses else None
    return response is not None and bool(_BLOCKED_PAGE.search(response.body[:20000]))


# ---------------------------------------------------------------------------------------------
# OAuth: oauth.reddit.com JSON Listings
# ---------------------------------------------------------------------------------------------

# Bearer tokens by app and user, for this process only: never written to the database or logs.
_tokens: dict[tuple[str, ...], tuple[str, datetime]] = {}


def _token_key(opts: RedditOptions) -> tuple[str, ...]:
    return (
        opts.base_url,
        opts.client_id or "",
        opts.username or "",
        opts.refresh_token or "",
    )


def api_url(opts: RedditOptions) -> str:
    base = opts.oauth_base_url.rstrip("/")
    common = {"limit": str(opts.limit), "raw_json": "1"}
    if opts.subreddit and opts.query:
        params = {"q": opts.query, "restrict_sr": "1", "sort": "new", "type": "link", **common}
        return f"{base}/r/{opts.subreddit}/search?{urlencode(params)}"
    if opts.subreddit:
        return f"{base}/r/{opts.subreddit}/new?{urlencode(common)}"
    params = {"q": opts.query or "", "sort": "new", "type": "link", **common}
    return f"{base}/search?{urlencode(params)}"


def api_comments_url(opts: RedditOptions, post_id: str) -> str:
    params = {"sort": "new", "limit": "500", "raw_json": "1"}
    return f"{opts.oauth_base_url.rstrip('/')}/comments/{quote(post_id)}?{urlencode(params)}"


# OAuth 2 error codes (RFC 6749 5.2) an error message may name; any other is Reddit's text.
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
    }
)


def _credentials_problem(detail: str) -> str:
    return (
        f"Reddit refused the OAuth credentials ({detail}): check client_id and client_secret, "
        "and username/password (accounts with two-factor login cannot use a password) or the "
        "refresh token, which may have been revoked"
    )


async def _token(
    ctx: PollContext, opts: RedditOptions, responses: list[Response]
) -> tuple[str | None, str | None]:
    """(bearer token, error): from the cache, or a new one from /api/v1/access_token."""
    key = _token_key(opts)
    cached = _tokens.get(key)
    if cached and cached[1] > ctx.now():
        return cached[0], None
    if opts.username and opts.password:
        form = {"grant_type": "password", "username": opts.username, "password": opts.password}
    elif opts.refresh_token:
        form = {"grant_type": "refresh_token", "refresh_token": opts.refresh_token}
    else:
        form = {"grant_type": "client_credentials"}
    basic = base64.b64encode(f"{opts.client_id}:{opts.client_secret}".encode()).decode("ascii")
    response = await ctx.fetcher.request(
        "POST",
        f"{opts.base_url.rstrip('/')}/api/v1/access_token",
        data=form,
        headers={"Authorization": f"Basic {basic}"},
        accept=JSON_ACCEPT,
        retry=True,  # asking for a token twice is harmless
    )
    responses.append(response)
    if response.status in (400, 401, 403):
        return None, _credentials_problem(f"HTTP {response.status}")
    if response.error or not response.ok:
        return None, f"Reddit token request: {response.error or f'HTTP {response.status}'}"
    try:
        doc = json.loads(response.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"Reddit token request answered with broken JSON: {exc}"
    if not isinstance(doc, dict):
        return None, "Reddit token request answered with something other than a JSON object"
    if doc.get("error"):
        # A wrong password is a 200 with {"error": "invalid_grant"}.
        code = known_code(doc["error"], _OAUTH_ERRORS)  # the server's own text is never quoted
        return None, _credentials_problem(code or f"HTTP {response.status}, an unknown error")
    token = doc.get("access_token")
    if not isinstance(token, str) or not token:
        return None, "Reddit token request answered without an access_token"
    lifetime = doc.get("expires_in")
    seconds = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else 3600
    _tokens[key] = (token, ctx.now() + timedelta(seconds=seconds) - TOKEN_MARGIN)
    return token, None


async def _api_get(
    ctx: PollContext, opts: RedditOptions, url: str, what: str, responses: list[Response]
) -> tuple[Any, str | None]:
    """A JSON document from oauth.reddit.com; a refused (expired) token is renewed once."""
    for attempt in (1, 2):
        token, error = await _token(ctx, opts, responses)
        if error:
            return None, error
        response = await ctx.fetcher.get(
            url, headers={"Authorization": f"bearer {token}"}, accept=JSON_ACCEPT
        )
        responses.append(response)
        if response.status == 401:
            _tokens.pop(_token_key(opts), None)
            if attempt == 1:
                continue
            return None, _credentials_problem("a new token was refused too")
        if response.status == 403:
            return None, (
                f"{what}: Reddit refused the request (HTTP 403): the app may lack the `read` "
                "scope, or the subreddit is private or banned"
            )
        if response.error or not response.ok:
            return None, http_problem(response, what)
        return parse_json_body(response, what)
    return None, f"{what}: no answer"  # not reached: the loop returns


def _listing_children(doc: Any) -> list[dict[str, Any]] | None:
    data = doc.get("data") if isinstance(doc, dict) else None
    children = data.get("children") if isinstance(data, dict) else None
    if not isinstance(children, list):
        return None
    return [c for c in children if isinstance(c, dict) and isinstance(c.get("data"), dict)]


def _permalink(path: object) -> str:
    # Permalinks are paths on www.reddit.com whichever host served the API.
    path = path if isinstance(path, str) else ""
    return f"{DEFAULT_BASE_URL}{path}" if path.startswith("/") else path


def post_from_api(data: dict[str, Any], opts: RedditOptions, source: str) -> Item | None:
    """A `t3` thing from a Listing as an Item, like its Atom entry would give."""
    post_id = data.get("id")
    if not isinstance(post_id, str) or not post_id:
        return None
    permalink = _permalink(data.get("permalink"))
    link = data["url"] if isinstance(data.get("url"), str) else ""
    extra: dict[str, Any] = {"subreddit": data.get("subreddit"), "score": data.get("score")}
    url = canonical_url(permalink)
    if not data.get("is_self") and _is_external(link):
        extra["link"] = link
        extra["permalink"] = permalink
        url = canonical_url(link)
    body = data.get("selftext_html") or data.get("selftext") or ""
    author = data.get("author")
    return Item(
        source=source,
        native_id=f"t3_{post_id}",
        url=url,
        title=normalise_text(data.get("title") or ""),
        text=html_to_text(body) if isinstance(body, str) else "",
        author=f"/u/{author}" if isinstance(author, str) and author else None,
        published_at=parse_datetime(data.get("created_utc")),
        thread_key=f"reddit:{post_id.lower()}",
        thread_url=api_comments_url(opts, post_id),
        raw_url=permalink or None,
        extra=extra,
    )


def comments_from_api(listing: Any, post_id: str, source: str) -> list[Item]:
    """Every `t1` comment under a comments Listing, flattened (`more` stubs are skipped)."""
    items: list[Item] = []
    stack = list(reversed(_listing_children(listing) or []))
    while stack:
        child = stack.pop()
        data = child["data"]
        if child.get("kind") != "t1":
            continue
        replies = data.get("replies")
        if isinstance(replies, dict):
            stack.extend(reversed(_listing_children(replies) or []))
        comment_id = data.get("id")
        body = data.get("body_html") or data.get("body")
        author = data.get("author")
        if not isinstance(comment_id, str) or not isinstance(body, str) or author == "[deleted]":
            continue
        permalink = _permalink(data.get("permalink"))
        parent = data.get("parent_id")
        items.append(
            Item(
                source=source,
                native_id=f"t1_{comment_id}",
                url=canonical_url(permalink),
                title="",
                text=html_to_text(body),
                author=f"/u/{author}" if isinstance(author, str) and author else None,
                published_at=parse_datetime(data.get("created_utc")),
                thread_key=f"reddit:{post_id.lower()}",
                parent_key=parent if isinstance(parent, str) else f"reddit:{post_id.lower()}",
                is_reply=True,
                raw_url=permalink or None,
            )
        )
    return items


async def _poll_api(ctx: PollContext, opts: RedditOptions) -> SourcePoll:
    responses: list[Response] = []
    doc, error = await _api_get(ctx, opts, api_url(opts), "Reddit search", responses)
    if error:
        return SourcePoll(items=[], responses=responses, error=error)
    children = _listing_children(doc)
    if children is None:
        return SourcePoll(
            items=[], responses=responses, error="Reddit answered without a Listing of posts"
        )
    items = [
        item
        for child in children
        if child.get("kind") == "t3"
        and (item := post_from_api(child["data"], opts, ctx.spec.name)) is not None
    ]
    return SourcePoll(items=oldest_first(items), responses=responses)


async def _thread_api(ctx: PollContext, opts: RedditOptions, thread_url: str) -> SourcePoll:
    responses: list[Response] = []
    doc, error = await _api_get(ctx, opts, thread_url, "Reddit comments", responses)
    if error:
        return SourcePoll(items=[], responses=responses, error=error)
    # [the post as a Listing, the comments as a Listing]
    if not (isinstance(doc, list) and len(doc) == 2):
        return SourcePoll(
            items=[], responses=responses, error="Reddit comments: not a [post, comments] pair"
        )
    posts = [
        item
        for child in _listing_children(doc[0]) or []
        if (item := post_from_api(child["data"], opts, ctx.spec.name)) is not None
    ]
    if not posts:
        return SourcePoll(items=[], responses=responses, error="Reddit comments: no post")
    post_id = (posts[0].native_id or "t3_").removeprefix("t3_")
    items = posts + comments_from_api(doc[1], post_id, ctx.spec.name)
    return SourcePoll(items=oldest_first(items), responses=responses)


# ---------------------------------------------------------------------------------------------
# The kind
# ---------------------------------------------------------------------------------------------


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(RedditOptions, ctx)
    if opts.uses_oauth:
        _pace_oauth(ctx, opts)
        return await _poll_api(ctx, opts)
    skipped = spend_search(ctx, budget(opts))
    if skipped is not None:
        log.info("%s: not polled this time: %s", ctx.spec.name, skipped)
        return SourcePoll(items=[], responses=[], not_modified=True)
    return await _read_feed(ctx, feed_url(opts), conditional=True)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """The post and its comments: `/comments/{id}/.rss`, or `/comments/{id}` with OAuth."""
    opts = load_options(RedditOptions, ctx)
    if urlsplit(thread_url).path.endswith(".rss"):
        if not spend_follow(ctx, budget(opts)):
            log.debug("%s: %s deferred: no Reddit budget left", ctx.spec.name, thread_key)
            return SourcePoll(items=[], responses=[], not_modified=True)
        return await _read_feed(ctx, thread_url, conditional=False)
    if not opts.uses_oauth:
        return SourcePoll(
            items=[], responses=[], error="this thread is read through OAuth, which is not set up"
        )
    _pace_oauth(ctx, opts)
    return await _thread_api(ctx, opts, thread_url)


def check_sources(specs: Sequence[SourceSpec]) -> list[str]:
    """A warning per Reddit host whose budget the configured searches alone overspend."""
    by_host: dict[str, list[tuple[SourceSpec, RedditOptions]]] = {}
    for spec in specs:
        if not spec.enabled:
            continue
        try:
            opts = spec_options(RedditOptions, spec)
        except ValueError:
            continue  # `check` has reported it already
        if not opts.uses_oauth:
            by_host.setdefault(budget(opts).host, []).append((spec, opts))
    warnings = []
    for host, sources in sorted(by_host.items()):
        per_hour = min(opts.requests_per_minute for _, opts in sources) * 60
        need = sum(3600 / max(spec.every_s, 1.0) for spec, _ in sources)
        if need > per_hour:
            names = ", ".join(spec.name for spec, _ in sources)
            warnings.append(
                f"Reddit sources on {host} ({names}) need {need:.0f} requests an hour for their "
                f"searches alone, before any thread is followed, but Reddit allows about "
                f"{per_hour:g} an hour without OAuth (requests_per_minute: "
                f"{per_hour / 60:g}): polls will fall behind. Poll less often (every: "
                f"{_every_for(len(sources), per_hour)} or more), use fewer Reddit sources, or "
                "give them OAuth credentials"
            )
    return warnings


def _every_for(sources: int, per_hour: float) -> str:
    minutes = math.ceil(sources * 60 / per_hour)
    return f"{minutes}m"


KIND = register(
    SourceKind(
        name="reddit",
        options_model=RedditOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        check_sources=check_sources,
        description="Reddit search or subreddit (public Atom feeds, or the API with OAuth)",
    )
)
