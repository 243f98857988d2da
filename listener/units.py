"""Times and waits, read and written one way for the whole package.

- `format_iso` / `parse_iso`: the UTC ISO-8601 text every table, cursor and message carries
  ("2026-12-07T21:30:00Z"). Written at second precision with a `Z`; read with `Z` or any offset,
  a naive time taken as UTC, anything unreadable as None.
- `parse_retry_after`: an HTTP `Retry-After` value (delta-seconds or an HTTP-date) as seconds to
  wait, finite and at most a bound (`clamp_wait`), or None when it says nothing usable, so the
  caller falls back to its own backoff. Sources (`fetch`) and alert channels read it alike.

Stdlib only: every layer may import it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import overload

# The longest wait a receiver may ask for: a longer one (or an infinite one) is cut to this.
RETRY_AFTER_MAX_S = 3600.0


@overload
def format_iso(dt: datetime) -> str: ...
@overload
def format_iso(dt: None) -> None: ...
@overload
def format_iso(dt: datetime | None) -> str | None: ...
def format_iso(dt: datetime | None) -> str | None:
    """UTC ISO 8601 text, second precision, as stored everywhere; a naive time is taken as UTC."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 time (`Z` or an offset; naive means UTC) from the database, a cursor or an API
    field; None for anything else (None, not text, empty, unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def clamp_wait(seconds: object, max_s: float = RETRY_AFTER_MAX_S) -> float | None:
    """The one rule for a wait a receiver asked for: seconds in [0, `max_s`] (longer, infinite
    included, is cut to `max_s`), or None when there is nothing usable in it (missing, not a
    number, negative, NaN), so the caller falls back to its own backoff."""
    if seconds is None or isinstance(seconds, bool):
        return None
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isnan(value) or value < 0:
        return None
    return min(value, max_s)


def parse_retry_after(
    value: str | None,
    *,
    now: datetime | None = None,
    date: str | None = None,
    max_s: float = RETRY_AFTER_MAX_S,
) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP-date, through
    `clamp_wait` (so finite and at most `max_s`); None when it is missing or unusable.

    An HTTP-date is measured against `date` (the response's own Date header) when it is readable,
    so a server whose clock is off still gets the wait it meant; else against `now` (default: the
    current time). A date in the past means "now": 0."""
    value = (value or "").strip()
    if not value:
        return None
    if "_" not in value:  # float() would read "1_0" as 10: not an HTTP number
        try:
            return clamp_wait(float(value), max_s)
        except ValueError:
            pass
    when = _http_date(value)
    if when is None:
        return None
    since = (_http_date(date) if date else None) or now or datetime.now(UTC)
    return clamp_wait(max(0.0, (when - since).total_seconds()), max_s)


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
