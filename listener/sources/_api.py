"""What the API kinds share beyond the contract: JSON decoding, rate-limit waits, host budgets.

The public rules and option types are in `listener.sources.base` (re-exported here, so older
imports from `_api` keep working).

Plain functions and pydantic field types, so each kind module keeps only what is its service's
own. Error texts take the service's name and hints as arguments, so a failure still names GitHub,
Stack Exchange or the Lemmy instance and says what to do about it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..models import SourcePoll
from .base import (
    JSON_ACCEPT,
    Duration,
    OptionalSecret,
    WebUrl,
    blank_to_none,
    load_options,
    oldest_first,
    pace,
    parse_iso_time,
    parse_seconds,
)

if TYPE_CHECKING:
    from ..models import Response
    from . import PollContext

log = logging.getLogger(__name__)

# Its own helpers, and the contract's names (`listener.sources.base`), importable as before.
__all__ = [
    "BUDGET_BACKOFF_MAX_S",
    "BUDGET_BACKOFF_S",
    "JSON_ACCEPT",
    "Budget",
    "Duration",
    "Interval",
    "OptionalSecret",
    "Seconds",
    "WebUrl",
    "blank_to_none",
    "cursor_with_wait",
    "decode_json",
    "describe_budget",
    "fetch_json",
    "format_age",
    "held_back",
    "http_problem",
    "json_dict",
    "load_options",
    "load_session",
    "make_budget",
    "oldest_first",
    "pace",
    "parse_iso_time",
    "parse_json_body",
    "parse_seconds",
    "record_budget_response",
    "save_session",
    "sessions_file",
    "spend_follow",
    "spend_search",
    "waiting_until",
]

# The kinds' one duration type (`base.Duration`), under the two names the kinds used before.
Seconds = Duration
Interval = Duration


# ---------------------------------------------------------------------------------------------
# JSON answers
# ---------------------------------------------------------------------------------------------


def json_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: API fields are never trusted."""
    return value if isinstance(value, dict) else {}


def decode_json(
    response: Response,
    *,
    service: str,
    unreachable: str,
    html_hint: str,
    error_hint: str = "without a JSON error (not the API: check base_url)",
    not_object: str | None = None,
) -> tuple[Any, str | None]:
    """(document, None), or (None, what came back instead of JSON, with the likely cause).

    `service` names who answered ("GitHub"), `unreachable` who could not be reached
    ("GitHub API"), `html_hint` why an HTML page may come back, `error_hint` what a non-2xx
    answer without JSON means. Any JSON value is returned (error answers carry details too)
    unless `not_object` names the object expected ("the API's wrapper object").
    """
    if response.status == 0 or (response.error and not response.body):
        return None, f"{unreachable} unreachable: {response.error}"
    body = response.body.lstrip()
    if body[:1] == b"<":
        return None, (
            f"{service} answered HTTP {response.status} with an HTML page instead of JSON "
            f"({html_hint})"
        )
    try:
        data = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        if not 200 <= response.status < 300:
            return None, f"{service} answered HTTP {response.status} {error_hint}"
        return None, (
            f"{service} answered HTTP {response.status} with a body that is not valid JSON "
            f"(truncated or not the API): {exc}"
        )
    if not_object is not None and not isinstance(data, dict):
        return None, f"{service} answered with JSON that is not {not_object}"
    return data, None


def known_code(value: Any, vocabulary: Collection[str]) -> str | None:
    """`value` when it is one of `vocabulary`, else None.

    An error message never quotes text a remote server chose: an API's error code may be
    named only when it is one we know (the text is then ours), never its free-text message.
    """
    return value if isinstance(value, str) and value in vocabulary else None


def http_problem(response: Response, what: str) -> str:
    """`what: <network error or HTTP status>` for a failed request."""
    return f"{what}: {response.error or f'HTTP {response.status}'}"


def parse_json_body(response: Response, what: str) -> tuple[Any, str | None]:
    """(document, None), or (None, an error saying `what` answered with broken JSON)."""
    try:
        return json.loads(response.body), None
    except ValueError as exc:  # UnicodeDecodeError included
        return None, f"{what} answered with broken JSON (truncated?): {exc}"


async def fetch_json(
    ctx: PollContext,
    url: str,
    what: str,
    *,
    headers: Mapping[str, str] | None = None,
    problem: Callable[[Response, str], str] = http_problem,
) -> tuple[Any, Response, str | None]:
    """(document, response, error) for a GET of `url`; never raises for HTTP or JSON problems.

    A failed request is described by `problem(response, what)`, which a kind replaces to give
    the remedy (a refused token, a forum that needs a login).
    """
    response = await ctx.fetcher.get(url, headers=headers, accept=JSON_ACCEPT)
    if response.error or not response.ok:
        return None, response, problem(response, what)
    doc, error = parse_json_body(response, what)
    return doc, response, error


# ---------------------------------------------------------------------------------------------
# Times and order
# ---------------------------------------------------------------------------------------------


def waiting_until(cursor: Mapping[str, Any], now: datetime) -> datetime | None:
    """The cursor's `not_before` (a rate-limit wait) while it is still ahead of `now`."""
    not_before = parse_iso_time(cursor.get("not_before"))
    return not_before if not_before is not None and now < not_before else None


def held_back(ctx: PollContext, service: str | None = None) -> SourcePoll | None:
    """The poll to return instead of asking while the service's wait (`not_before`) runs, else
    None. With `service`, the wait is logged under that name (a source poll; its thread reads
    stay quiet)."""
    not_before = waiting_until(ctx.state.cursor, ctx.now())
    if not_before is None:
        return None
    if service is not None:
        log.info(
            "%s: %s asked us to wait; next request after %s",
            ctx.spec.name,
            service,
            not_before.isoformat(timespec="seconds"),
        )
    return SourcePoll(items=[], responses=[], not_modified=True)


def cursor_with_wait(cursor: Mapping[str, Any], until: datetime | None) -> dict[str, Any]:
    """`cursor` whose `not_before` is `until`, or has none when the service asked for no wait."""
    out = {k: v for k, v in cursor.items() if k != "not_before"}
    if until is not None:
        out["not_before"] = until.isoformat(timespec="seconds")
    return out


# ---------------------------------------------------------------------------------------------
# Request budgets per host
# ---------------------------------------------------------------------------------------------
#
# A budget is a token bucket per host, shared by every source that asks that host: `per_minute`
# tokens a minute, at most `burst` saved up. A source's own poll (its search) always spends, even
# into debt, so a search is never starved by thread reads; a thread read spends only a whole
# token that is there, and is otherwise deferred to a later poll. The service's own accounting
# wins over ours: `x-ratelimit-remaining` caps the tokens and, at zero, blocks the host until
# `x-ratelimit-reset`; a 429 blocks it for its Retry-After, or, without one, for a backoff that
# doubles with each 429 in a row (1 min, 2, 4 … 1 h). The state is kept in the database (table
# `host_budgets`), so `listener poll` from cron, the daemon and `listener status` agree.

BUDGET_BACKOFF_S = 60.0
BUDGET_BACKOFF_MAX_S = 3600.0


@dataclass(frozen=True)
class Budget:
    host: str
    per_minute: float
    burst: float


def make_budget(url: str, per_minute: float, burst_minutes: float = 10.0) -> Budget:
    host = (urlsplit(url).hostname or url).lower()
    return Budget(host, per_minute, max(1.0, per_minute * burst_minutes))


# Budgets of contexts without a database (a kind's poll outside the pipeline), per fetcher.
_MEMORY_BUDGETS: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _load_budget(ctx: PollContext, budget: Budget) -> dict[str, Any]:
    now = ctx.now()
    if ctx.store is not None:
        row = ctx.store.load_host_budget(budget.host)
    else:
        row = _MEMORY_BUDGETS.setdefault(ctx.fetcher, {}).get(budget.host)
    row = dict(row or {})
    if not row:
        row = {"host": budget.host, "tokens": budget.burst, "updated_at": now.isoformat()}
    updated = parse_iso_time(row.get("updated_at")) or now
    elapsed_min = max(0.0, (now - updated).total_seconds() / 60)
    tokens = float(row.get("tokens") or 0.0) + elapsed_min * budget.per_minute
    row.update(
        tokens=min(budget.burst, tokens),
        updated_at=now.isoformat(),
        per_minute=budget.per_minute,
    )
    # Counts over the current hour, for `listener status`.
    window = parse_iso_time(row.get("window_start"))
    if window is None or (now - window).total_seconds() >= 3600:
        row.update(window_start=now.isoformat(), spent=0, deferred=0)
    return row


def _save_budget(ctx: PollContext, row: dict[str, Any]) -> None:
    if ctx.store is not None:
        ctx.store.save_host_budget(row)
    else:
        _MEMORY_BUDGETS.setdefault(ctx.fetcher, {})[row["host"]] = row


def _defer(row: dict[str, Any], now: datetime) -> None:
    row["deferred"] = int(row.get("deferred") or 0) + 1
    row["deferred_this_round"] = 1
    row["behind_since"] = row.get("behind_since") or now.isoformat()


def spend_search(ctx: PollContext, budget: Budget) -> str | None:
    """Spend one request of `budget` on a source's own poll: None to go ahead, or why it is
    skipped this time (the host asked for a pause that has not ended)."""
    row = _load_budget(ctx, budget)
    now = ctx.now()
    # A new round: thread reads deferred in the last one that were not deferred again are done.
    if not row.get("deferred_this_round"):
        row["behind_since"] = None
    row["deferred_this_round"] = 0
    blocked = parse_iso_time(row.get("blocked_until"))
    if blocked is not None and blocked > now:
        _defer(row, now)
        _save_budget(ctx, row)
        return (
            f"{budget.host} asked us to wait until {blocked:%Y-%m-%d %H:%M:%S} UTC "
            f"({row.get('blocked_why') or 'rate limit'})"
        )
    row["tokens"] = float(row["tokens"]) - 1
    row["spent"] = int(row.get("spent") or 0) + 1
    _save_budget(ctx, row)
    return None


def spend_follow(ctx: PollContext, budget: Budget) -> bool:
    """Spend one request of `budget` on reading a thread, if a whole one is there; else the read
    is deferred (counted, and shown by `listener status`)."""
    row = _load_budget(ctx, budget)
    now = ctx.now()
    blocked = parse_iso_time(row.get("blocked_until"))
    if (blocked is not None and blocked > now) or float(row["tokens"]) < 1:
        _defer(row, now)
        _save_budget(ctx, row)
        return False
    row["tokens"] = float(row["tokens"]) - 1
    row["spent"] = int(row.get("spent") or 0) + 1
    _save_budget(ctx, row)
    return True


def _header_number(response: Response, name: str) -> float | None:
    value = response.headers.get(name, "").strip()
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def record_budget_response(ctx: PollContext, budget: Budget, response: Response) -> None:
    """What the host said about our rate: `x-ratelimit-*` headers, a 429 (with or without
    Retry-After)."""
    row = _load_budget(ctx, budget)
    now = ctx.now()
    remaining = _header_number(response, "x-ratelimit-remaining")
    reset = _header_number(response, "x-ratelimit-reset")
    if remaining is not None:
        row["tokens"] = min(float(row["tokens"]), remaining)
        row["remaining"] = remaining
    if response.status == 429:
        throttled = int(row.get("throttled") or 0) + 1
        retry_after = _header_number(response, "retry-after")
        if retry_after is not None:
            wait, why = retry_after, "HTTP 429 with Retry-After"
        elif reset is not None and reset > 0:
            wait, why = reset, "HTTP 429, x-ratelimit-reset"
        else:
            wait = min(BUDGET_BACKOFF_S * 2 ** (throttled - 1), BUDGET_BACKOFF_MAX_S)
            why = f"HTTP 429 without Retry-After, 429 number {throttled} in a row"
        row.update(
            throttled=throttled,
            blocked_until=(now + timedelta(seconds=wait)).isoformat(),
            blocked_why=why,
            tokens=min(float(row["tokens"]), 0.0),
        )
    elif response.status:
        row["throttled"] = 0
        if remaining is not None and remaining < 1 and reset is not None:
            row.update(
                blocked_until=(now + timedelta(seconds=reset)).isoformat(),
                blocked_why="x-ratelimit-remaining: 0",
            )
    _save_budget(ctx, row)


def describe_budget(row: Mapping[str, Any], now: datetime) -> str:
    """One line for `listener status`: the rate, this hour's use, and how far behind it is."""
    per_minute = float(row.get("per_minute") or 0)
    parts = [
        f"{row['host']}: {per_minute:g} request(s)/min",
        f"{int(row.get('spent') or 0)} spent, {int(row.get('deferred') or 0)} deferred this hour",
    ]
    behind = parse_iso_time(row.get("behind_since"))
    tokens = float(row.get("tokens") or 0)
    if behind is not None:
        parts.append(f"behind by {format_age(now - behind)} (deferred thread reads or polls)")
    elif tokens < 0 and per_minute > 0:
        debt = timedelta(minutes=-tokens / per_minute)
        parts.append(f"behind by {format_age(debt)} (searches alone spend more than the budget)")
    else:
        parts.append("up to date")
    blocked = parse_iso_time(row.get("blocked_until"))
    if blocked is not None and blocked > now:
        parts.append(f"blocked until {blocked:%H:%M:%S} UTC ({row.get('blocked_why')})")
    return "; ".join(parts)


def format_age(delta: timedelta) -> str:
    """`36 h`, `20 min`, `45 s`: a duration as people say it."""
    seconds = max(0.0, delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


# ---------------------------------------------------------------------------------------------
# Sessions kept across restarts
# ---------------------------------------------------------------------------------------------
#
# Login sessions (tokens) live in a file beside the database, `<database>.sessions.json`, mode
# 0600: never in the database, which `listener serve` shows to anyone with the URL and lets them
# query with SQL. Datasette is only given the database file, and SQLite's SQL has no way to read
# another file, so Datasette can never show a token. Without a database (a kind's poll outside
# the pipeline) sessions stay in memory.


def sessions_file(ctx: PollContext) -> Path | None:
    path = ctx.store.path if ctx.store is not None else None
    return path.with_name(path.name + ".sessions.json") if path is not None else None


def _read_sessions(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): signing in again", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def load_session(ctx: PollContext, key: str) -> dict[str, Any] | None:
    """The session saved under `key` (e.g. "bluesky https://bsky.social/xrpc acme.bsky.social")."""
    path = sessions_file(ctx)
    if path is None:
        return None
    session = _read_sessions(path).get(key)
    return session if isinstance(session, dict) else None


def save_session(ctx: PollContext, key: str, session: Mapping[str, Any] | None) -> None:
    """Keep (or with None, forget) the session under `key`: written to a new file, readable by
    this user only, then moved into place, so a crash never leaves half a file."""
    path = sessions_file(ctx)
    if path is None:
        return
    sessions = _read_sessions(path)
    if session is None:
        if sessions.pop(key, None) is None:
            return
    else:
        sessions[key] = dict(session)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(sessions, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
