"""Times and waits, read and written one way for the whole package.

- `format_iso` / `parse_iso`: the UTC ISO-8601 text every table, cursor and message carries
  ("2026-12-07T21:30:00Z"). Written at second precision with a `Z`; read with `Z` or any offset,
  a naive time taken as UTC, anything unreadable as None.
- `parse_duration` / `format_duration`: `15m`, `1h30m`, `500ms` or a number of seconds, as
  sources.yaml writes durations (config, the kinds' options and the CLI read them alike).
- `parse_retry_after`: an HTTP `Retry-After` value (delta-seconds or an HTTP-date) as seconds to
  wait, finite and at most a bound (`clamp_wait`), or None when it says nothing usable, so the
  caller falls back to its own backoff. Sources (`fetch`) and alert channels read it alike.

Stdlib only: every layer may import it.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, overload

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


# --- durations ------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|[smhdw]))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|[smhdw])")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# No duration is longer than this: longer ones overflow date arithmetic, and are mistakes.
MAX_DURATION_S = 3650 * 86400.0


def parse_duration(value: Any) -> float:
    """`15m`, `1h30m`, `90s`, `2d`, `500ms`, or a number of seconds -> seconds.

    Always finite, greater than zero and at most ten years (`.inf`, `.nan` and `0` are errors).
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15m, 1h or 90s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"{value!r} is not a duration: use e.g. 30s, 15m, 1h30m, 2d")
    if not math.isfinite(seconds):
        shown = value if isinstance(value, str) else (".nan" if math.isnan(seconds) else ".inf")
        raise ValueError(f"{shown} is not a duration: use e.g. 30s, 15m, 1h30m, 2d")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is too long: at most {format_duration(MAX_DURATION_S)}")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
