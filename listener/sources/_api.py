"""What the source kinds share: option types, pacing, JSON decoding, cursor times and order.

Plain functions and pydantic field types, so each kind module keeps only what is its service's
own. Error texts take the service's name and hints as arguments, so a failure still names GitHub,
Stack Exchange or the Lemmy instance and says what to do about it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from ..models import SourcePoll

if TYPE_CHECKING:
    from ..models import Item, Response
    from . import PollContext

log = logging.getLogger(__name__)

JSON_ACCEPT = "application/json"

_Options = TypeVar("_Options", bound=BaseModel)
_NO_DATE = datetime.max.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def parse_seconds(value: Any) -> float:
    """A number of seconds (0 allowed) or a duration as sources.yaml writes it (`6s`, `500ms`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a number of seconds: it must be finite")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    from ..config import parse_duration  # lazy: config imports the kinds

    return parse_duration(value)


def blank_to_none(value: str | None) -> str | None:
    """A secret given as an empty `${VAR}` counts as not given."""
    return value.strip() or None if value is not None else None


# A number of seconds (at least 0) or a duration like those of `every:` ("500ms", "6s", "2d").
Seconds = Annotated[float, BeforeValidator(parse_seconds)]
Interval = Seconds
# An http(s) address: `base_url` and the like.
WebUrl = Annotated[str, Field(pattern=r"^https?://\S+$")]
# A token or key from the environment; blank means none.
OptionalSecret = Annotated[str | None, AfterValidator(blank_to_none)]


def load_options(model: type[_Options], ctx: PollContext) -> _Options:
    """The source's options as its kind's model; None (a field left out) takes the default."""
    return model.model_validate({k: v for k, v in ctx.spec.options.items() if v is not None})


def pace(ctx: PollContext, url: str, seconds: float) -> None:
    """Space requests to `url`'s host `seconds` apart (the service's documented rate limit)."""
    host = urlsplit(url).hostname
    if host:
        ctx.fetcher.set_host_interval(host, seconds)


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


def parse_iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a cursor or an API field; naive times are UTC (older Lemmy wrote
    them so); anything else is None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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


def oldest_first(items: list[Item]) -> list[Item]:
    """Items in the order they were written, so a thread's root is processed before its replies
    (a reply seen before its thread is known to be about a brand would not count as context)."""
    return sorted(items, key=lambda it: it.published_at or _NO_DATE)
