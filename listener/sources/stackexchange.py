"""`kind: stackexchange`: questions and answers that match a search on Stack Overflow and the
other Stack Exchange sites, through the public API v2.3 `/search/excerpts`.

How the API behaves (https://api.stackexchange.com/docs):

- Every answer is the "common wrapper object": `items`, `has_more`, `quota_max`,
  `quota_remaining`, and sometimes `backoff` (seconds to wait before calling the same method
  again) or `error_id` / `error_name` / `error_message` (with HTTP 400). Bodies are always gzipped;
  the shared Fetcher decodes them.
- Quota: 300 requests a day per IP without a key, 10,000 with one (a key from stackapps.com is
  not a secret, but we still read it from the environment like every credential).
- Since June 2026 a key or an access token passed as a `key=`/`access_token=` query parameter is
  rejected ("We're changing the authentication scheme for Stack Exchange API v2.x", Meta Stack
  Exchange 417382): it goes in the `Authorization: Bearer …` request header, one of the two. An
  access token (`access_token:`) is sent when given, else the key; neither is ever in a URL.
- The quota is kept in the cursor so `listener status` can show it, and a warning is logged
  when it runs low.
- `backoff` is obeyed by storing a "not before" time in the cursor and skipping polls until then;
  ignoring it gets the IP banned (`throttle_violation`, error 502).
- `fromdate` is inclusive and filters on `creation_date`. The first poll reads only the newest
  page; later polls read in ascending creation order from just after the newest creation date
  seen, so a poll that stops at `max_pages` leaves no gap: the next one goes on from where it
  stopped.

Thread key `stackexchange:{site}:{question_id}`; a brand question's answers are read through
`/questions/{id}/answers`.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import Field, field_validator

from ..models import Item, Response, SourcePoll
from ..text import canonical_url, html_to_text, normalise_text, parse_datetime
from . import PollContext, SourceKind, register
from ._api import (
    JSON_ACCEPT,
    OptionalSecret,
    cursor_with_wait,
    decode_json,
    held_back,
    json_dict,
    known_code,
    load_options,
    pace,
)
from .base import THREAD_TITLE, Duration, KindOptions, WebUrl

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.stackexchange.com"
API_VERSION = "2.3"
# A quota below this share of the daily maximum gets a warning in the log.
QUOTA_WARNING_SHARE = 0.1
# Sites with their own domain; every other site lives under stackexchange.com.
_OWN_DOMAINS = {
    "stackoverflow": "stackoverflow.com",
    "superuser": "superuser.com",
    "serverfault": "serverfault.com",
    "askubuntu": "askubuntu.com",
    "stackapps": "stackapps.com",
    "mathoverflow": "mathoverflow.net",
}
# "too many requests from this IP, more requests available in 3600 seconds"
_AVAILABLE_IN = re.compile(r"available in (\d+) seconds?")
# The API's documented error names (api.stackexchange.com/docs/error-handling): these, and
# only these, may be named in an error message.
_ERROR_NAMES = frozenset(
    {
        "bad_parameter",
        "access_token_required",
        "invalid_access_token",
        "access_denied",
        "no_method",
        "key_required",
        "access_token_compromised",
        "write_failed",
        "duplicate_request",
        "internal_error",
        "throttle_violation",
        "temporarily_unavailable",
    }
)


class StackExchangeOptions(KindOptions):
    query: str = Field(min_length=1)
    # API site parameters ("stackoverflow", "superuser", "unix", ...) or domains.
    sites: list[str] = Field(default_factory=lambda: ["stackoverflow"], min_length=1)
    key: OptionalSecret = None
    # An OAuth access token (stackapps.com): sent instead of the key when given.
    access_token: OptionalSecret = None
    base_url: WebUrl = DEFAULT_BASE_URL
    # A filter created on api.stackexchange.com/docs/filters, e.g. one that adds the owner.
    filter: str | None = None
    pagesize: int = Field(50, ge=1, le=100)
    max_pages: int = Field(5, ge=1, le=50)
    # The API treats more than 30 requests a second from one IP as abuse; we stay far below.
    request_interval: Duration = 0.2

    @field_validator("sites", mode="before")
    @classmethod
    def _one_site(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("sites")
    @classmethod
    def _site_names(cls, v: list[str]) -> list[str]:
        for site in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", site.strip().lower()):
                raise ValueError(
                    f"{site!r} is not a Stack Exchange site: use its API name, e.g. "
                    "stackoverflow, superuser, serverfault or unix"
                )
        return [s.strip().lower() for s in v]


def site_host(site: str) -> str:
    """The web host of a site given by its API name: `unix` -> `unix.stackexchange.com`."""
    name = site.strip().lower()
    if name.endswith((".com", ".net")):
        return name
    parts = name.split(".")
    if parts[-1] in _OWN_DOMAINS:  # stackoverflow, meta.stackoverflow, es.stackoverflow
        return ".".join([*parts[:-1], _OWN_DOMAINS[parts[-1]]])
    if name == "meta":
        return "meta.stackexchange.com"
    if len(parts) == 2 and parts[0] == "meta":
        return f"{parts[1]}.meta.stackexchange.com"
    return f"{name}.stackexchange.com"


def thread_key(site: str, question_id: object) -> str:
    return f"stackexchange:{site}:{question_id}"


def _api_url(base_url: str, path: str, params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v is not None}
    return f"{base_url.rstrip('/')}/{API_VERSION}/{path.lstrip('/')}?{urlencode(clean)}"


def _decode(response: Response) -> tuple[dict[str, Any] | None, str | None]:
    """The wrapper object, or an error that says what came back instead."""
    return decode_json(
        response,
        service="Stack Exchange",
        unreachable="Stack Exchange API",
        html_hint="a proxy, a block page or the wrong base_url",
        not_object="the API's wrapper object",
    )


def _api_error(data: dict[str, Any], status: int, now: datetime) -> tuple[str, datetime | None]:
    """A message with the remedy for an `error_id` wrapper, and when to try again if throttled."""
    error_id = data.get("error_id")
    name = str(data.get("error_name") or "error")
    # Read to choose the remedy, never quoted: the API's own words stay out of the message.
    message = normalise_text(html.unescape(str(data.get("error_message") or "")))
    known = known_code(name, _ERROR_NAMES)
    number = error_id if isinstance(error_id, int) and not isinstance(error_id, bool) else None
    what = " ".join(p for p in (known, str(number) if known and number else None) if p)
    what = f"HTTP {status}, {what}" if what else f"HTTP {status}"
    if error_id == 502 or name == "throttle_violation":
        m = _AVAILABLE_IN.search(message)
        wait = int(m.group(1)) if m else 600
        resume = now + timedelta(seconds=wait)
        return (
            f"Stack Exchange is throttling this IP ({what}); no requests until "
            f"{resume:%Y-%m-%d %H:%M} UTC. Poll less often, use fewer sites or pages, or add a key",
            resume,
        )
    if name == "bad_parameter" and message.strip().lower() == "key":
        return (
            f"Stack Exchange rejected the API key ({what}): check the `key:` of this source "
            "(e.g. key: ${SE_KEY}); keys come from registering an app on stackapps.com",
            None,
        )
    if name == "bad_parameter" and "site" in message.lower():
        return f"Stack Exchange does not know a site of this source ({what}): check `sites:`", None
    if name in ("key_required", "access_denied", "access_token_required", "invalid_access_token"):
        return (
            f"Stack Exchange refused the request ({what}): set a valid `key:` or "
            "`access_token:` (sent as an Authorization: Bearer header)",
            None,
        )
    if name in ("temporarily_unavailable", "internal_error"):
        return f"Stack Exchange is having problems ({what}); will retry next poll", None
    return f"Stack Exchange refused the request ({what})", None


def _epoch(value: Any, now: datetime) -> datetime | None:
    return parse_datetime(value, now=now) if isinstance(value, int | float) else None


def parse_excerpt(raw: Any, *, site: str, source: str, base_url: str, now: datetime) -> Item | None:
    """An `Item` from one `search_excerpt` (a question or an answer), or None if unusable."""
    if not isinstance(raw, dict):
        return None
    kind = raw.get("item_type")
    qid = raw.get("question_id")
    aid = raw.get("answer_id")
    if not isinstance(qid, int) or kind not in ("question", "answer"):
        return None
    if kind == "answer" and not isinstance(aid, int):
        return None
    host = site_host(site)
    question_title = normalise_text(html.unescape(str(raw.get("title") or "")))
    text = html_to_text(str(raw.get("body") or raw.get("excerpt") or ""))
    owner = json_dict(raw.get("owner"))
    author = owner.get("display_name")
    key = thread_key(site, qid)
    link = f"https://{host}/questions/{qid}" if kind == "question" else f"https://{host}/a/{aid}"
    return Item(
        source=source,
        native_id=f"{site}:q{qid}" if kind == "question" else f"{site}:a{aid}",
        url=canonical_url(link),
        # An answer's `title` is its question's: kept in extra, so the question's words do not
        # count as the answer's own mention of a brand.
        title=question_title if kind == "question" else "",
        text=text,
        author=normalise_text(html.unescape(author)) if isinstance(author, str) else None,
        published_at=_epoch(raw.get("creation_date"), now),
        updated_at=_epoch(raw.get("last_activity_date"), now),
        thread_key=key,
        parent_key=key if kind == "answer" else None,
        is_reply=kind == "answer",
        thread_url=answers_url(base_url, site, qid),
        raw_url=link,
        extra={
            "site": site,
            "item_type": kind,
            "question_id": qid,
            "answer_id": aid,
            THREAD_TITLE: question_title,
            "score": raw.get("score"),
            "tags": raw.get("tags") or [],
            "is_accepted": raw.get("is_accepted"),
        },
    )


def answers_url(base_url: str, site: str, question_id: object) -> str:
    """Where a question's answers are read (the key goes in a header, never in the URL)."""
    return _api_url(
        base_url,
        f"questions/{question_id}/answers",
        {"site": site, "order": "asc", "sort": "creation", "filter": "withbody", "pagesize": 100},
    )


def auth_headers(opts: StackExchangeOptions) -> dict[str, str]:
    """`Authorization: Bearer` with the access token, else the key; none without either."""
    credential = opts.access_token or opts.key
    return {"Authorization": f"Bearer {credential}"} if credential else {}


async def _get(ctx: PollContext, opts: StackExchangeOptions, url: str) -> Response:
    return await ctx.fetcher.get(url, headers=auth_headers(opts), accept=JSON_ACCEPT)


def _track_quota(
    ctx: PollContext, data: dict[str, Any], quota: dict[str, Any], warned: list[bool]
) -> None:
    remaining, maximum = data.get("quota_remaining"), data.get("quota_max")
    if isinstance(remaining, int):
        quota["quota_remaining"] = remaining
    if isinstance(maximum, int):
        quota["quota_max"] = maximum
    if (
        isinstance(remaining, int)
        and isinstance(maximum, int)
        and remaining < maximum * QUOTA_WARNING_SHARE
        and not warned[0]
    ):
        warned[0] = True
        log.warning(
            "%s: Stack Exchange quota low: %d of %d requests left today for this IP; "
            "add a key (10,000 a day), poll less often or use fewer sites",
            ctx.spec.name,
            remaining,
            maximum,
        )


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(StackExchangeOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    cursor = dict(ctx.state.cursor)
    if (waiting := held_back(ctx, "Stack Exchange")) is not None:
        return waiting

    sites: dict[str, Any] = dict(cursor.get("sites") or {})
    quota: dict[str, Any] = {k: cursor[k] for k in ("quota_remaining", "quota_max") if k in cursor}
    warned = [False]
    items: list[Item] = []
    responses: list[Response] = []
    wait_until: datetime | None = None
    error: str | None = None

    for site in opts.sites:
        since = (sites.get(site) or {}).get("fromdate")
        resuming = isinstance(since, int)
        newest = since if resuming else None
        complete = False
        for page in range(1, (opts.max_pages if resuming else 1) + 1):
            url = _api_url(
                opts.base_url,
                "search/excerpts",
                {
                    # Ascending from the cursor: stopping at max_pages leaves no gap.
                    "order": "asc" if resuming else "desc",
                    "sort": "creation",
                    "q": opts.query,
                    "site": site,
                    "fromdate": since if resuming else None,
                    "filter": opts.filter,
                    "pagesize": opts.pagesize,
                    "page": page,
                },
            )
            response = await _get(ctx, opts, url)
            responses.append(response)
            data, problem = _decode(response)
            if data is not None and "error_id" in data:
                problem, wait_until = _api_error(data, response.status, now)
            elif data is not None and not isinstance(data.get("items"), list):
                problem = f"Stack Exchange answered HTTP {response.status} without `items`" + (
                    f" ({response.error})" if response.error else ""
                )
            if problem is not None:
                error = problem
                break
            assert data is not None
            _track_quota(ctx, data, quota, warned)
            for raw in data["items"]:
                item = parse_excerpt(
                    raw, site=site, source=ctx.spec.name, base_url=opts.base_url, now=now
                )
                if item is None:
                    continue
                items.append(item)
                created = raw.get("creation_date")
                if isinstance(created, int) and (newest is None or created > newest):
                    newest = created
            backoff = data.get("backoff")
            if isinstance(backoff, int | float) and backoff > 0:
                wait_until = now + timedelta(seconds=float(backoff))
                log.info("%s: Stack Exchange asked for a %gs backoff", ctx.spec.name, backoff)
                break
            if not data.get("has_more"):
                complete = True
                break
        else:
            if resuming:
                log.warning(
                    "%s: more than %d pages of new results on %s; the rest is read next poll",
                    ctx.spec.name,
                    opts.max_pages,
                    site,
                )
        if newest is not None:
            # Past the newest once everything was read; at it when a poll was cut short, as
            # more posts of that second may follow on the next page.
            sites[site] = {"fromdate": newest + 1 if complete else newest}
        if error or wait_until:
            break

    new_cursor = cursor_with_wait({**cursor, "sites": sites, **quota}, wait_until)
    if error:
        # The pipeline keeps the old cursor on errors; the not-before time rides along for
        # pipelines that save it, so a throttled IP is not hit again before it may be.
        return SourcePoll(items=items, responses=responses, error=error, cursor=new_cursor)
    return SourcePoll(items=items, responses=responses, cursor=new_cursor)


async def fetch_thread(ctx: PollContext, thread_key: str, thread_url: str) -> SourcePoll:
    """A question's answers, oldest first (one page of up to 100, which covers nearly all)."""
    opts = load_options(StackExchangeOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    now = ctx.now()
    if (waiting := held_back(ctx)) is not None:
        return waiting
    site = dict(parse_qsl(urlsplit(thread_url).query)).get("site", "")
    response = await _get(ctx, opts, thread_url)
    responses = [response]
    data, problem = _decode(response)
    if data is not None and "error_id" in data:
        problem, _ = _api_error(data, response.status, now)
    elif data is not None and not isinstance(data.get("items"), list):
        problem = f"Stack Exchange answered HTTP {response.status} without `items`"
    if problem is not None:
        return SourcePoll(items=[], responses=responses, error=problem)
    assert data is not None
    items = []
    for raw in data["items"]:
        if isinstance(raw, dict):
            raw = {**raw, "item_type": "answer"}
        item = parse_excerpt(raw, site=site, source=ctx.spec.name, base_url=opts.base_url, now=now)
        if item is not None:
            items.append(replace(item, thread_key=thread_key, parent_key=thread_key))
    return SourcePoll(items=items, responses=responses)


KIND = register(
    SourceKind(
        name="stackexchange",
        options_model=StackExchangeOptions,
        poll=poll,
        fetch_thread=fetch_thread,
        description="Stack Overflow / Stack Exchange search (API v2.3)",
    )
)
