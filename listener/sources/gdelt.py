"""`kind: gdelt`: news articles from the GDELT DOC 2.0 API (free, no key, some 65 languages).

One request a poll: `doc/doc?mode=ArtList&format=json&sort=DateDesc&maxrecords=250` with
`startdatetime` at the newest `seendate` seen so far (kept as the cursor) less a small overlap,
as GDELT adds articles in batches every 15 minutes and a batch may be indexed late; the store
drops what was already seen. An article is stored under its canonical URL, so the same story
found on HN, Reddit or a blog feed is one item.

GDELT gives a title, the URL, `seendate` (when GDELT saw it, UTC), `domain`, `language` (a name:
"English") and `sourcecountry`, but no text: brand rules see the title only.

GDELT's own rules (https://blog.gdeltproject.org/gdelt-doc-2-0-api-debuts/): one request every
5 seconds per IP, at most 250 articles a request, a rolling window of the last 3 months. It
answers problems as plain text, often with HTTP 200: "Your query was too short or too long",
"Please limit requests to one every 5 seconds ...". The first is the source's error; the second
(also as HTTP 429) makes the source wait, doubling the wait while it lasts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from pydantic import Field, field_validator

from ..models import Item, Response, SourcePoll, SourceSpec
from ..text import canonical_url, normalise_text, thread_key_for_url
from . import PollContext, SourceKind, register
from ._api import (
    JSON_ACCEPT,
    WebUrl,
    cursor_with_wait,
    held_back,
    load_options,
    oldest_first,
    pace,
    parse_iso_time,
)
from .base import Duration, KindOptions

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.gdeltproject.org/api/v2"
# "Please limit requests to one every 5 seconds": a little more, to be safe.
DEFAULT_INTERVAL_S = 6.0
MAX_RECORDS = 250
# GDELT searches a rolling window of the last three months.
MAX_BACKFILL_S = 90 * 86400.0
# GDELT adds articles every 15 minutes: asking more often than this finds nothing new.
MIN_GAP_S = 5 * 60.0
# After a rate-limit answer: wait this long, doubled for each one in a row, up to the cap.
RATE_LIMIT_WAIT_S = MIN_GAP_S
RATE_LIMIT_MAX_WAIT_S = 3600.0
SEENDATE_FORMAT = "%Y%m%dT%H%M%SZ"
GDELT_TIME_FORMAT = "%Y%m%d%H%M%S"

# GDELT names languages in English; the brand rules' `lang:` scope takes ISO 639-1 codes.
LANGUAGE_CODES = {
    "afrikaans": "af",
    "albanian": "sq",
    "arabic": "ar",
    "armenian": "hy",
    "azerbaijani": "az",
    "basque": "eu",
    "belarusian": "be",
    "bengali": "bn",
    "bosnian": "bs",
    "bulgarian": "bg",
    "catalan": "ca",
    "chinese": "zh",
    "croatian": "hr",
    "czech": "cs",
    "danish": "da",
    "dutch": "nl",
    "english": "en",
    "estonian": "et",
    "finnish": "fi",
    "french": "fr",
    "galician": "gl",
    "georgian": "ka",
    "german": "de",
    "greek": "el",
    "gujarati": "gu",
    "hebrew": "he",
    "hindi": "hi",
    "hungarian": "hu",
    "icelandic": "is",
    "indonesian": "id",
    "italian": "it",
    "japanese": "ja",
    "kannada": "kn",
    "kazakh": "kk",
    "korean": "ko",
    "latvian": "lv",
    "lithuanian": "lt",
    "macedonian": "mk",
    "malay": "ms",
    "malayalam": "ml",
    "marathi": "mr",
    "mongolian": "mn",
    "nepali": "ne",
    "norwegian": "no",
    "persian": "fa",
    "polish": "pl",
    "portuguese": "pt",
    "punjabi": "pa",
    "romanian": "ro",
    "russian": "ru",
    "serbian": "sr",
    "sinhala": "si",
    "slovak": "sk",
    "slovenian": "sl",
    "somali": "so",
    "spanish": "es",
    "swahili": "sw",
    "swedish": "sv",
    "tamil": "ta",
    "telugu": "te",
    "thai": "th",
    "turkish": "tr",
    "ukrainian": "uk",
    "urdu": "ur",
    "vietnamese": "vi",
}


class GdeltOptions(KindOptions):
    query: str = Field(
        min_length=1,
        description='GDELT query: words, "phrases", (a OR b), -word, domain:, sourcecountry:',
    )
    # The API root; the client adds /doc/doc.
    base_url: WebUrl = DEFAULT_BASE_URL
    # Only articles in these languages (GDELT's names, "english", or codes, "eng").
    language: list[str] = Field(default_factory=list)
    # How far back the very first poll reaches; later polls continue from the cursor.
    backfill: Duration = Field(86400.0, gt=0, le=MAX_BACKFILL_S)
    # How far before the newest article seen the next poll starts (late batches).
    overlap: Duration = Field(15 * 60.0, le=86400.0)
    max_records: int = Field(MAX_RECORDS, ge=1, le=MAX_RECORDS)
    request_interval: Duration = DEFAULT_INTERVAL_S

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v.strip()

    @field_validator("language", mode="before")
    @classmethod
    def _languages(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            return v
        out = []
        for lang in v:
            if not isinstance(lang, str) or not lang.strip().isalpha():
                raise ValueError(f"{lang!r} is not a language name (english) or code (eng)")
            out.append(lang.strip().lower())
        return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# Articles to Items
# ---------------------------------------------------------------------------------------------


def parse_seendate(value: Any) -> datetime | None:
    """GDELT's `seendate` ("20261120T114500Z") as a UTC datetime, else None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value.strip(), SEENDATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def item_from_article(article: dict[str, Any], source: str) -> Item | None:
    """One ArtList article as an Item, or None without a usable URL or seendate."""
    link = _str(article.get("url"))
    seen = parse_seendate(article.get("seendate"))
    if not link.startswith(("http://", "https://")) or seen is None:
        return None
    url = canonical_url(link)
    language = _str(article.get("language"))
    extra: dict[str, Any] = {
        "domain": _str(article.get("domain")) or None,
        "sourcecountry": _str(article.get("sourcecountry")) or None,
        "language": language or None,
        "lang": LANGUAGE_CODES.get(language.lower()) if language else None,
        "socialimage": _str(article.get("socialimage")) or None,
    }
    return Item(
        source=source,
        native_id=link,
        url=url,
        title=normalise_text(_str(article.get("title"))),
        text="",
        author=extra["domain"],
        published_at=seen,
        thread_key=thread_key_for_url(url),
        raw_url=link,
        extra={k: v for k, v in extra.items() if v is not None},
    )


# ---------------------------------------------------------------------------------------------
# Poll
# ---------------------------------------------------------------------------------------------


def _query(opts: GdeltOptions) -> str:
    if not opts.language:
        return opts.query
    langs = [f"sourcelang:{lang}" for lang in opts.language]
    # GDELT wants OR'ed terms in parentheses; a lone operator stands on its own.
    where = langs[0] if len(langs) == 1 else "(" + " OR ".join(langs) + ")"
    return f"{opts.query} {where}"


def search_url(opts: GdeltOptions, since: datetime) -> str:
    params = {
        "query": _query(opts),
        "mode": "ArtList",
        "format": "json",
        "sort": "DateDesc",
        "maxrecords": str(opts.max_records),
        "startdatetime": since.astimezone(UTC).strftime(GDELT_TIME_FORMAT),
    }
    return f"{opts.base_url.rstrip('/')}/doc/doc?{urlencode(params)}"


# GDELT's plain-text refusals we recognise, each put in our own words (its text is never quoted).
_KNOWN_REFUSALS = (
    (b"too short or too long", "the query is too short or too long for GDELT: check `query:`"),
    (b"too short", "a keyword or phrase of the query is too short for GDELT: check `query:`"),
    (b"too long", "the query is too long for GDELT: check `query:`"),
    (b"too common", "a keyword of the query is too common for GDELT: check `query:`"),
    (b"invalid", "GDELT found the query or its options invalid: check `query:`"),
)


def _refusal(response: Response) -> str:
    """What a plain-text answer means, in our words: GDELT's text itself is never quoted."""
    head = response.body[:2000].lower()
    for needle, meaning in _KNOWN_REFUSALS:
        if needle in head:
            return meaning
    return "an answer in plain text instead of results: check `query:`"


def _rate_limited(response: Response) -> bool:
    """A 429, or GDELT's plain-text "Please limit requests to one every 5 seconds"."""
    if response.status == 429:
        return True
    body = response.body.lstrip()
    if not response.status or body[:1] in (b"{", b"[", b"<"):
        return False
    head = body[:500].lower()
    return b"limit requests" in head or b"rate limit" in head


def _decode(response: Response) -> tuple[dict[str, Any] | None, str | None]:
    """(the answer's JSON object, None) or (None, what GDELT said instead)."""
    if response.status == 0 or (response.error and not response.body):
        return None, f"GDELT API unreachable: {response.error}"
    body = response.body.strip()
    if not body:
        if response.ok:
            return {}, None  # nothing found: GDELT may answer with an empty body
        return None, f"GDELT answered {response.error}"
    if body[:1] == b"<":
        return None, (
            f"GDELT answered HTTP {response.status} with an HTML page instead of JSON (a proxy, "
            "an outage page or the wrong base_url)"
        )
    if body[:1] not in (b"{", b"["):
        # GDELT's errors are plain text, usually with HTTP 200.
        if response.ok:
            return None, f"GDELT refused the search: {_refusal(response)}"
        return None, f"GDELT answered HTTP {response.status} with plain text instead of JSON"
    try:
        # strict=False: titles sometimes carry raw control characters.
        data = json.loads(body.decode("utf-8", "replace"), strict=False)
    except ValueError as exc:
        return None, f"GDELT answered with broken JSON (truncated?): {exc}"
    if not response.ok:
        return None, f"GDELT answered {response.error}"
    if not isinstance(data, dict):
        return None, "GDELT answered with JSON that is not an object: not the DOC API?"
    return data, None


def _rate_limit_wait(in_a_row: int) -> timedelta:
    """How long to wait after the `in_a_row`-th rate-limit answer in a row (1, 2, ...)."""
    doublings = min(max(in_a_row - 1, 0), 8)
    return timedelta(seconds=min(RATE_LIMIT_WAIT_S * 2**doublings, RATE_LIMIT_MAX_WAIT_S))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def poll(ctx: PollContext) -> SourcePoll:
    opts = load_options(GdeltOptions, ctx)
    pace(ctx, opts.base_url, opts.request_interval)
    if (waiting := held_back(ctx, "GDELT")) is not None:
        return waiting
    now = ctx.now()
    cursor = dict(ctx.state.cursor)
    asked = parse_iso_time(cursor.get("asked_at"))
    if asked is not None and timedelta(0) <= now - asked < timedelta(seconds=MIN_GAP_S):
        log.info(
            "%s: GDELT was asked at %s; it adds articles every 15 min, so the next request is "
            "after %s",
            ctx.spec.name,
            asked.isoformat(timespec="seconds"),
            (asked + timedelta(seconds=MIN_GAP_S)).isoformat(timespec="seconds"),
        )
        return SourcePoll(items=[], responses=[], not_modified=True)

    newest = known = parse_iso_time(cursor.get("seendate"))
    oldest_allowed = now - timedelta(seconds=MAX_BACKFILL_S) + timedelta(hours=1)
    if newest is not None:
        since = max(newest - timedelta(seconds=opts.overlap), oldest_allowed)
    else:
        since = now - timedelta(seconds=opts.backfill)

    # One attempt: a retry a second later would break GDELT's one-every-5-seconds rule; a
    # failed poll is tried again at the next one, later after each failure.
    response = await ctx.fetcher.request(
        "GET", search_url(opts, since), accept=JSON_ACCEPT, retry=False
    )
    if _rate_limited(response):
        in_a_row = _count(cursor.get("rate_limited")) + 1
        until = now + _rate_limit_wait(in_a_row)
        return SourcePoll(
            items=[],
            responses=[response],
            error=(
                "GDELT asks for fewer requests (at most one every 5 seconds): another program on this "
                "IP address may be asking too; next request after "
                f"{until.isoformat(timespec='seconds')}"
            ),
            cursor=cursor_with_wait({**cursor, "rate_limited": in_a_row}, until),
        )
    data, error = _decode(response)
    if error is not None:
        return SourcePoll(items=[], responses=[response], error=error)
    articles = (data or {}).get("articles", [])
    if not isinstance(articles, list):
        return SourcePoll(
            items=[],
            responses=[response],
            error="GDELT answered without a list of articles: not the DOC API?",
        )
    items: dict[str, Item] = {}
    oldest: datetime | None = None
    for article in articles:
        if not isinstance(article, dict):
            continue
        item = item_from_article(article, ctx.spec.name)
        if item is None or item.published_at is None:
            continue
        seen = items.get(item.url)
        # An article seen twice (under two URLs of one page): the earlier sighting is the
        # closer to when it was published.
        if seen is None or (seen.published_at and item.published_at < seen.published_at):
            items[item.url] = item
        if newest is None or item.published_at > newest:
            newest = item.published_at
        if oldest is None or item.published_at < oldest:
            oldest = item.published_at
    note = None
    if len(articles) >= opts.max_records and oldest is not None and oldest > (known or since):
        # Newest first: what did not fit is older than the page, newer than what was known
        # (a full page that reaches back to known articles skipped nothing new).
        note = (
            f"older articles skipped: GDELT gives {opts.max_records} at most and had that many "
            f"since {since.isoformat(timespec='seconds')}; poll more often or narrow the query"
        )
        log.warning("%s: %s", ctx.spec.name, note)
    # When GDELT last answered a search: the next is asked no sooner than MIN_GAP_S after it.
    new_cursor = {k: v for k, v in cursor.items() if k not in ("not_before", "rate_limited")}
    new_cursor["asked_at"] = now.isoformat(timespec="seconds")
    if newest is not None:
        new_cursor["seendate"] = newest.isoformat(timespec="seconds")
    return SourcePoll(
        items=oldest_first(list(items.values())),
        responses=[response],
        cursor=new_cursor,
        note=note,
    )


def check_sources(specs: Sequence[SourceSpec]) -> list[str]:
    """A warning for each GDELT source asked to poll more often than GDELT has news."""
    from ..units import format_duration

    warnings = []
    for spec in specs:
        if not spec.enabled or spec.every_s >= MIN_GAP_S:
            continue
        warnings.append(
            f"{spec.name}: GDELT adds articles every 15 min, so this source asks it at most "
            f"every {format_duration(MIN_GAP_S)}, not every {format_duration(spec.every_s)} "
            "(every: 15m is enough)"
        )
    return warnings


KIND = register(
    SourceKind(
        name="gdelt",
        options_model=GdeltOptions,
        poll=poll,
        check_sources=check_sources,
        description="news articles worldwide (GDELT DOC 2.0 article search, no key)",
    )
)
