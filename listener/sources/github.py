"""`kind: github`: issues and pull requests that match a search, through the REST API
`GET /search/issues`, with their comments followed for brand threads.

How the API behaves (docs.github.com, "Search" and "Rate limits for the REST API"):

- Search has its own rate limit: 30 requests a minute with a token, 10 without. Every answer
  carries `x-ratelimit-remaining` and `x-ratelimit-reset` (UTC epoch seconds); when remaining
  is 0 we store the reset time in the cursor and skip polls until then.
- Exceeding a limit answers 403 or 429. A secondary limit may send `retry-after` (seconds);
  otherwise the reset header says when, or one waits at least a minute.
- A bad token answers 401 `Bad credentials`: reported with the remedy, never retried.
- Search returns at most 1,000 results per query, 100 a page. GitHub moved `/search/issues`
  to its "advanced search" syntax in 2025 (`advanced_search=true`, sent explicitly) and wants
  a query to say whether it wants issues or pull requests: we send one query per type
  (`is:issue`, `is:pull-request`), each with its own cursor, which both syntaxes accept.
- The first poll reads the newest page; later polls ask for `created:>=` (or `updated:>=`)
  the newest time seen, oldest first, so stopping at `max_pages` leaves no gap.

Thread key `github:{owner}/{repo}#{number}`; a brand issue's comments are read from its
`comments_url`, following `Link: rel="next"`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import Field, field_validator

from ..models import Item, Response, SourcePoll
from ..text import canonical_url, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import (
    OptionalSecret,
    cursor_with_wait,
    decode_json,
    held_back,
    json_dict,
    load_options,
    pace,
    parse_iso_time,
)
from .base import Duration, KindOptions, WebUrl

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
# Comment pages read per thread: 1,000 comments is more context than any alert needs.
MAX_COMMENT_PAGES = 10
# Without a reset time or retry-after, GitHub asks for at least a minute.
DEFAULT_WAIT = timedelta(seconds=60)

Kind = Literal["issue", "pr"]
_QUALIFIER = {"issue": "is:issue", "pr": "is:pull-request"}
_ALL_KINDS: tuple[Kind, ...] = ("issue", "pr")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_REPO = re.compile(r"/repos/([^/]+)/([^/]+)(?:/|$)")


class GitHubOptions(KindOptions):
    # Search syntax, qualifiers welcome: `acme repo:acme/sdk`, `"acme corp" -author:acme-bot`.
    query: str = Field(min_length=1)
    types: list[Kind] = Field(default_factory=lambda: list(_ALL_KINDS), min_length=1)
    token: OptionalSecret = None
    base_url: WebUrl = DEFAULT_BASE_URL
    # created: new issues and PRs; updated: also old ones that were edited or commented on.
    sort: Literal["created", "updated"] = "created"
    per_page: int = Field(50, ge=1, le=100)
    max_pages: int = Field(5, ge=1, le=10)
    # 30 searches a minute with a token: one every 2 s keeps a poll of several pages inside it.
    request_interval: Duration = 2.0

    @field_validator("types", mode="before")
    @classmethod
    def _one_type(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            return ["pr" if t in ("pull_request", "pull-request", "pull") else t for t in v]
        return v


def thread_key(owner: str, repo: str, number: object) -> str:
    return f"github:{owner.lower()}/{repo.lower()}#{number}"


def _headers(opts: GitHubOptions) -> dict[str, str]:
    headers = {"X-GitHub-Api-Version": API_VERSION}
    if opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    return headers


def _epoch(value: str | None) -> datetime | None:
    if value is None or not value.strip().isdigit():
        return None
    return datetime.fromtimestamp(int(value.strip()), UTC)


def _decode(response: Response) -> tuple[Any, str | None]:
    return decode_json(
        response,
        service="GitHub",
        unreachable="GitHub API",
        html_hint="a proxy, a login page or the wrong base_url",
    )


def _message(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    message = str(data.get("message") or "")
    details = [
        str(e.get("message"))
        for e in data.get("errors") or []
        if isinstance(e, dict) and e.get("message")
    ]
    return "; ".join([message, *details]) if details else message


def _rate_limited(response: Response, data: Any, now: datetime) -> datetime | None:
    """When a 403/429 is a rate limit, the time after which we may ask again."""
    if response.status not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return now + timedelta(seconds=int(retry_after))
    if headers.get("x-ratelimit-remaining") == "0":
        return _epoch(headers.get("x-ratelimit-reset")) or now + DEFAULT_WAIT
    if "rate limit" in _message(data).lower():
        return now + DEFAULT_WAIT
    return None


def _failure(
    response: Response, data: Any, now: datetime, opts: GitHubOptions
) -> tuple[str, datetime | None]:
    """An error message with the remedy, and the not-before time for rate limits.

    GitHub's own `message` is never quoted (it is the server's text): each known case gets
    words of ours, anything else the status alone.
    """
    status = f"HTTP {response.status}" if response.status else (response.error or "no answer")
    if response.status == 401:
        return (
            f"GitHub rejected the token ({status}, bad credentials): the `token:` of this source "
            "(e.g. token: ${GITHUB_TOKEN}) is wrong, expired or revoked. Create a new token "
            "(a fine-grained token with read access to public repositories is enough) or "
            "remove `token:` to search without one (10 searches a minute)",
            None,
        )
    until = _rate_limited(response, data, now)
    if until is not None:
        hint = "" if opts.token else "; a token raises the search limit from 10 to 30 a minute"
        which = "secondary rate limit" if "secondary" in _message(data).lower() else "rate limit"
        return (
            f"GitHub {which} reached ({status}); no requests until "
            f"{until:%Y-%m-%d %H:%M:%S} UTC{hint}",
            until,
        )
    if response.status == 422:
        why = ""
        if "cannot be searched" in _message(data):
            why = ": a user or repository it names does not exist or is not visible to the token"
        return f"GitHub did not accept the search query ({status}{why}): check `query:`", None
    if response.status == 403:
        return f"GitHub refused the request ({status}): check the token's permissions", None
    return f"GitHub API error ({status})", None


def _markdown_text(body: Any) -> str:
    """Markdown is read as text; template comments (`<!-- ... -->`) are not the author's words."""
    if not isinstance(body, str):
        return ""
    return normalise_text(_HTML_COMMENT.sub("", body))


def _repo_of(raw: dict[str, Any]) -> tuple[str, str] | None:
    for field in ("repository_url", "url", "issue_url"):
        value = raw.get(field)
        if isinstance(value, str):
            m = _REPO.search(urlsplit(value).path)
            if m:
                return m.group(1), m.group(2)
    return None


def parse_issue(raw: Any, *, source: str, now: datetime) -> Item | None:
    """An `Item` from one search result (an issue or a pull request), or None if unusable."""
    if not isinstance(raw, dict) or not isinstance(raw.get("number"), int):
        return None
    repo = _repo_of(raw)
    link = raw.get("html_url")
    if repo is None or not isinstance(link, str):
        return None
    owner, name = repo
    user = json_dict(raw.get("user"))
    is_pr = isinstance(raw.get("pull_request"), dict)
    labels = [lb.get("name") for lb in raw.get("labels") or [] if isinstance(lb, dict)]
    comments_url = raw.get("comments_url")
    return Item(
        source=source,
        native_id=str(raw.get("id") or f"{owner}/{name}#{raw['number']}"),
        url=canonical_url(link),
        title=normalise_text(str(raw.get("title") or "")),
        text=_markdown_text(raw.get("body")),
        author=user.get("login"),
        published_at=parse_datetime(raw.get("created_at"), now=now),
        updated_at=parse_datetime(raw.get("updated_at"), now=now),
        thread_key=thread_key(owner, name, raw["number"]),
        thread_url=comments_url if isinstance(comments_url, str) else None,
        raw_url=link,
        extra={
            "type": "pr" if is_pr else "issue",
            "repository": f"{owner}/{name}",
            "number": raw["number"],
            "state": raw.get("state"),
            "comments": raw.get("comments"),
            "labels": labels,
        },
    )


def parse_comment(raw: Any, *, source: str, key: str, now: datetime) -> Item | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("html_url"), str):
        return None
    user = json_dict(raw.get("user"))
    return Item(
        source=source,
        native_id=f"comment:{raw.get('id')}",
        url=canonical_url(raw["html_url"]),
        title="",
        text=_markdown_text(raw.get("body")),
        author=user.get("login"),
        published_at=parse_datetime(raw.get("created_at"), now=now),
        updated_at=parse_datetime(raw.get("updated_at"), now=now),
        thread_key=key,
        parent_key=key,
        is_reply=True,
        # The `#issuecomment-N` anchor names the comment; with native_id set, the pipeline
        # does not take the issue page's URL for this comment's identity.
        raw_url=raw["html_url"],
    )


def _search_url(opts: GitHubOptions, kind: Kind, since: str | None, page: int) -> str:
    q = opts.query
    if "in:" not in q:
        q += " in:title,body"
    q += f" {_QUALIFIER[kind]}"
    if since:
        q += f" {opts.sort}:>={since}"
    params = {
        "q": q,
        "sort": opts.sort,
        # Oldest first from the cursor, so a poll cut short by max_pages leaves no gap.
        "order": "asc" if since else "desc",
        "per_page": opts.per_page,
        "page": page,
        "advanced_search": "true",
    }
    return f"{opts.base_url.rstrip('/')}/search/issues?{urlencode(params)}"


def _search_time(value: datetime) -> str:
    # The search syntax takes ISO 8601 with an explicit offset.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _remember_rate(response: Response, rate: dict[str, Any]) -> None:
    remaining = response.headers.get("x-ratelimit-remaining", "")
    if remaining.isdigit():
        rate["remaining"] = int(remaining)
        reset = _epoch(response.headers.get("x-ratelimit-reset"))
        if reset is not None:
            rate["reset"] = reset.isoformat(timespec="seconds")


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(GitHubOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    cursor = dict(ctx.state.cursor)
    if (waiting := held_back(ctx, "GitHub")) is not None:
        return waiting

    since_by_kind: dict[str, Any] = dict(cursor.get("since") or {})
    rate: dict[str, Any] = dict(cursor.get("rate") or {})
    items: list[Item] = []
    responses: list[Response] = []
    wait_until: datetime | None = None
    error: str | None = None
    field = "created_at" if opts.sort == "created" else "updated_at"

    for kind in opts.types:
        since = since_by_kind.get(kind) if isinstance(since_by_kind.get(kind), str) else None
        newest = parse_iso_time(since)
        complete = False
        for page in range(1, (opts.max_pages if since else 1) + 1):
            url = _search_url(opts, kind, since, page)
            response = await ctx.fetcher.get(url, headers=_headers(opts), accept=ACCEPT)
            responses.append(response)
            _remember_rate(response, rate)
            data, problem = _decode(response)
            if problem is None and not (200 <= response.status < 300):
                problem, wait_until = _failure(response, data, now, opts)
            elif problem is None and not (
                isinstance(data, dict) and isinstance(data.get("items"), list)
            ):
                problem = f"GitHub answered HTTP {response.status} without search `items`"
            if problem is not None:
                error = problem
                break
            for raw in data["items"]:
                item = parse_issue(raw, source=ctx.spec.name, now=now)
                if item is None:
                    continue
                items.append(item)
                when = parse_iso_time(raw.get(field))
                if when is not None and (newest is None or when > newest):
                    newest = when
            if response.headers.get("x-ratelimit-remaining") == "0":
                wait_until = _epoch(response.headers.get("x-ratelimit-reset")) or now + DEFAULT_WAIT
                log.info(
                    "%s: GitHub search limit used up; next request after %s",
                    ctx.spec.name,
                    wait_until.isoformat(timespec="seconds"),
                )
                break
            if len(data["items"]) < opts.per_page:
                complete = True
                break
            if page * opts.per_page >= 1000:  # the most a search returns
                break
        else:
            if since:
                log.warning(
                    "%s: more than %d pages of new %ss; the rest is read next poll",
                    ctx.spec.name,
                    opts.max_pages,
                    kind,
                )
        if newest is not None:
            # Past the newest once everything was read (so it is not fetched again); at it
            # when the poll was cut short, as more of that second may follow.
            since_by_kind[kind] = _search_time(
                newest + timedelta(seconds=1) if complete else newest
            )
        if error or wait_until:
            break

    new_cursor = cursor_with_wait({**cursor, "since": since_by_kind, "rate": rate}, wait_until)
    if error:
        # The old position rides along unchanged; only the wait is new (see stackexchange).
        return SourcePoll(items=items, responses=responses, error=error, cursor=new_cursor)
    return SourcePoll(items=items, responses=responses, cursor=new_cursor)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """An issue's comments, oldest first, following `Link: rel="next"`."""
    opts = load_options(GitHubOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    if (waiting := held_back(ctx)) is not None:
        return waiting
    items: list[Item] = []
    responses: list[Response] = []
    url: str | None = f"{thread_url}{'&' if '?' in thread_url else '?'}per_page=100"
    for _ in range(MAX_COMMENT_PAGES):
        if url is None:
            break
        response = await ctx.fetcher.get(url, headers=_headers(opts), accept=ACCEPT)
        responses.append(response)
        data, problem = _decode(response)
        if problem is None and not (200 <= response.status < 300):
            problem, _ = _failure(response, data, now, opts)
        elif problem is None and not isinstance(data, list):
            problem = f"GitHub answered HTTP {response.status} without a list of comments"
        if problem is not None:
            return SourcePoll(items=items, responses=responses, error=problem)
        for raw in data:
            item = parse_comment(raw, source=ctx.spec.name, key=thread_key, now=now)
            if item is not None:
                items.append(item)
        m = _LINK_NEXT.search(response.headers.get("link", ""))
        url = m.group(1) if m else None
    return SourcePoll(items=items, responses=responses)


KIND = register(
    SourceKind(
        name="github",
        options_model=GitHubOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="GitHub issue and pull-request search",
    )
)
