"""The package's one ISO-8601 reader/writer and its one Retry-After reader (`listener.units`):
what every table, cursor and alert carries, and what a rate-limited host or channel is obeyed
with."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from listener.units import RETRY_AFTER_MAX_S, format_iso, parse_iso, parse_retry_after

NOW = datetime(2026, 12, 7, 21, 30, 15, 123456, tzinfo=UTC)


def test_times_are_written_in_utc_to_the_second_with_a_z() -> None:
    assert format_iso(NOW) == "2026-12-07T21:30:15Z"
    assert format_iso(NOW.astimezone(timezone(timedelta(hours=2)))) == "2026-12-07T21:30:15Z"
    assert format_iso(NOW.replace(tzinfo=None)) == "2026-12-07T21:30:15Z"  # naive: UTC
    assert format_iso(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-07T21:30:15Z",
        "2026-12-07T21:30:15+00:00",
        "2026-12-07T23:30:15+02:00",
        "2026-12-07T21:30:15",  # naive, as older Lemmy writes: UTC
        "2026-12-07T21:30:15.000Z",
    ],
)
def test_times_are_read_with_z_an_offset_or_none(text: str) -> None:
    assert parse_iso(text) == NOW.replace(microsecond=0)
    assert parse_iso(format_iso(parse_iso(text))) == parse_iso(text)


@pytest.mark.parametrize("value", [None, "", "yesterday", "2026-13-01T00:00:00Z", 1733607015, b""])
def test_anything_else_reads_as_no_time(value: object) -> None:
    assert parse_iso(value) is None


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    in_a_minute = format_datetime(NOW + timedelta(seconds=60), usegmt=True)
    assert parse_retry_after(in_a_minute, now=NOW) == pytest.approx(60, abs=1)
    # Measured against the response's own Date: a server whose clock is an hour off still
    # gets the minute it meant.
    their_now = format_datetime(NOW + timedelta(hours=1), usegmt=True)
    their_later = format_datetime(NOW + timedelta(hours=1, seconds=60), usegmt=True)
    assert parse_retry_after(their_later, now=NOW, date=their_now) == pytest.approx(60, abs=1)
    a_minute_ago = format_datetime(NOW - timedelta(seconds=60), usegmt=True)
    assert parse_retry_after(a_minute_ago, now=NOW) == 0.0  # past: now


def test_retry_after_is_finite_and_bounded() -> None:
    assert parse_retry_after("1e20") == RETRY_AFTER_MAX_S
    assert parse_retry_after("inf") == RETRY_AFTER_MAX_S
    next_year = format_datetime(NOW + timedelta(days=365), usegmt=True)
    assert parse_retry_after(next_year, now=NOW) == RETRY_AFTER_MAX_S
    assert parse_retry_after("600", max_s=120) == 120
    # A caller that refuses long waits itself (the Fetcher gives up above its own limit).
    assert parse_retry_after("1e20", max_s=math.inf) == 1e20


@pytest.mark.parametrize("value", [None, "", "-5", "nan", "1_0", "soon", "Mon, 99 Foo 2026"])
def test_retry_after_that_says_nothing_usable_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None
