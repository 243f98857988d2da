"""One poll of one source, end to end: fetch, parse, dedupe, match, score, store.

`poll_sources` runs many sources concurrently over one shared `Fetcher`; everything after the
fetch (lookup of known items, matching, scoring, the save) runs without yielding to the event
loop, so two sources never race on the same story. One broken source is recorded on that source
and the rest go on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from .alerts.rules import Alerting, PollOutcome, evaluate
from .fetch import Fetcher
from .match import Matcher, scoring_text, snippet_around
from .models import Item, Match, Mention, Score, SourcePoll, SourceSpec
from .sentiment import Scorer
from .sources import PollContext, get_kind
from .store import KnownItem, ProcessedItem, Store, iso
from .text import content_fingerprint, content_hash, url_identity

log = logging.getLogger(__name__)

# Whole-item scores read at most this much text: a long article's tone is set early, and
# VADER's cost grows with length.
ITEM_SCORE_CHARS = 4000
# Texts shorter than this are too generic ("Thanks!", "+1") to identify a story by content.
FINGERPRINT_MIN_CHARS = 200


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """What a poll needs, built once per process and injected (tests control each part)."""

    store: Store
    fetcher: Fetcher
    matcher: Matcher
    # The scorer is built on first use: compiling its phrase lexicon takes about a second, which
    # a poll where nothing changed never needs to spend.
    scorer_factory: Callable[[], Scorer]
    now: Callable[[], datetime] = utc_now
    alerting: Alerting | None = None  # None: no rules run (e.g. a one-off poll without alerts)
    _scorer: Scorer | None = field(default=None, init=False, repr=False)

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = self.scorer_factory()
        return self._scorer


@dataclass(frozen=True)
class SourceReport:
    source: str
    error: str | None
    items: int
    new_items: int
    updated_items: int
    new_mentions: tuple[Mention, ...]
    not_modified: bool
    duration_s: float
    threads_touched: tuple[str, ...] = ()
    thread_items: int = 0
    alerts: tuple[int, ...] = ()  # ids of alerts this poll fired

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PollSummary:
    reports: list[SourceReport] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.reports)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.reports)

    @property
    def items(self) -> int:
        return sum(r.items for r in self.reports)

    @property
    def new_items(self) -> int:
        return sum(r.new_items for r in self.reports)

    def new_mentions_by_label(self) -> dict[str, int]:
        out = {"positive": 0, "neutral": 0, "negative": 0}
        for r in self.reports:
            for m in r.new_mentions:
                out[m.score.label] += 1
        return out


def identity_keys(item: Item) -> tuple[str, ...]:
    """Every identity an item is known by, strongest first."""
    keys = []
    if item.native_id:
        keys.append(f"id:{item.source}:{item.native_id}")
    # A link with an anchor names a place in a page (a comment); where the item has its own id,
    # that id identifies it and the page URL does not.
    fragment = item.raw_url.partition("#")[2] if item.raw_url else ""
    if item.url and not fragment:
        keys.append(f"url:{url_identity(item.url)}")
    elif item.url and not item.native_id:
        # A comment known only by its link: the anchor is what tells it from its post.
        keys.append(f"url:{url_identity(item.url)}#{fragment}")
    if len(item.text) >= FINGERPRINT_MIN_CHARS:
        keys.append(f"fp:{content_fingerprint(item.title, item.text)}")
    return tuple(keys)


def _matched_known(
    item: Item, keys: Sequence[str], known: dict[str, KnownItem]
) -> tuple[KnownItem | None, bool]:
    """The stored item this one is, and whether it is the same entry (so an edit updates it)."""
    for key in keys:
        k = known.get(key)
        if k is not None:
            same_entry = k.source == item.source and not key.startswith("fp:")
            return k, same_entry
    return None, False


def process_items(
    items: Sequence[Item],
    rt: Runtime,
    *,
    context_threads: set[str] | None = None,
    lexicon_version: str = "",
) -> list[ProcessedItem]:
    """Dedupe against the store, then match and score only what is new or edited.

    A reply that does not name a brand is kept and scored as context when its conversation is
    about a brand: known from the store, or named by any item of this batch (a reply can come
    before its root). A reply stored earlier as irrelevant is taken up again once its thread
    becomes a brand thread.
    """
    all_keys = [identity_keys(it) for it in items]
    known = rt.store.lookup_keys([k for keys in all_keys for k in keys])
    brand_threads = rt.store.brand_threads(it.thread_key for it in items)
    if context_threads:
        brand_threads |= context_threads

    todo: list[tuple[Item, tuple[str, ...], str, str | None, KnownItem | None, list[Match]]] = []
    out: dict[int, ProcessedItem] = {}
    for index, (item, keys) in enumerate(zip(items, all_keys, strict=True)):
        chash = content_hash(item.title, item.text)
        fp = next((k[3:] for k in keys if k.startswith("fp:")), None)
        found, same_entry = _matched_known(item, keys, known)
        if found is not None and (found.content_hash == chash or not same_entry):
            newly_context = not found.relevant and item.thread_key in brand_threads
            if not newly_context:
                out[index] = ProcessedItem(
                    item, keys, chash, fp, found, False, found.relevant, None, ()
                )
                continue
        matches = rt.matcher.match(item_text(item))
        if matches and item.thread_key:
            brand_threads.add(item.thread_key)
        todo.append((item, keys, chash, fp, found, matches))
        out[index] = None  # type: ignore[assignment]  # filled below, in order

    pending = iter(todo)
    for index in sorted(i for i, p in out.items() if p is None):
        item, keys, chash, fp, found, matches = next(pending)
        if lexicon_version:
            item = replace(item, extra={**item.extra, "lexicon_version": lexicon_version})
        in_thread = item.thread_key in brand_threads
        mentions, score = score_item(item, rt, matches, in_brand_thread=in_thread)
        relevant = bool(mentions) or in_thread
        out[index] = ProcessedItem(
            item, keys, chash, fp, found, True, relevant, score, tuple(mentions)
        )
    return [out[i] for i in range(len(items))]


def item_text(item: Item) -> str:
    return f"{item.title}\n{item.text}" if item.title else item.text


def score_item(
    item: Item, rt: Runtime, matches: Sequence[Match], *, in_brand_thread: bool
) -> tuple[list[Mention], Score | None]:
    """Score each brand an item names on the sentences around it, and the item as a whole."""
    if not matches and not in_brand_thread:
        return [], None
    text = item_text(item)
    all_terms = [t for m in matches for t in rt.matcher.neutral_terms(m.brand)]
    item_score = rt.scorer.score(text[:ITEM_SCORE_CHARS], neutralise=all_terms)
    mentions = []
    for m in matches:
        neutral = rt.matcher.neutral_terms(m.brand)
        snippet = snippet_around(text, m.spans)
        score = rt.scorer.score(scoring_text(text, m.spans), neutralise=neutral)
        mentions.append(
            Mention(
                item=item,
                brand=m.brand,
                product=m.product,
                terms=m.terms,
                snippet=snippet,
                score=score,
                item_score=item_score,
            )
        )
    return mentions, item_score


def next_poll_time(spec: SourceSpec, now: datetime, failures: int) -> datetime:
    """The interval, with jitter so sources spread out, and capped backoff after failures."""
    interval = spec.every_s
    if failures:
        interval = min(interval * 2 ** min(failures, 6), max(spec.every_s, 6 * 3600.0))
    jitter = random.uniform(0, min(0.1 * interval, 60.0))
    return now + timedelta(seconds=interval + jitter)


async def poll_source(spec: SourceSpec, rt: Runtime) -> SourceReport:
    started = time.perf_counter()
    kind = get_kind(spec.kind)
    state = rt.store.load_source_state(spec.name)
    ctx = PollContext(spec=spec, fetcher=rt.fetcher, state=state, now=rt.now)
    try:
        result = await kind.poll(ctx)
    except Exception as exc:  # a bug in one kind must not stop the others
        log.exception("%s: poll failed with an internal error", spec.name)
        result = SourcePoll(items=[], responses=[], error=f"internal error: {exc!r}")
    report = save_result(spec, rt, result, started)
    if report.ok and spec.follow_threads and kind.fetch_thread is not None:
        report = await follow_threads(spec, rt, ctx, report)
    return report


def save_result(
    spec: SourceSpec,
    rt: Runtime,
    result: SourcePoll,
    started: float,
    *,
    context_threads: set[str] | None = None,
    save_state: bool = True,
) -> SourceReport:
    now = rt.now()
    processed: list[ProcessedItem] = []
    error = result.error
    try:
        processed = process_items(
            result.items,
            rt,
            context_threads=context_threads,
            lexicon_version=rt.scorer.lexicon_version if result.items else "",
        )
    except Exception as exc:
        log.exception("%s: processing items failed", spec.name)
        error, processed = f"internal error: {exc!r}", []
    failures = rt.store.load_source_state(spec.name).consecutive_failures + 1 if error else 0
    alerts: list[int] = []
    # The mentions and the alerts they cause are committed together, or not at all.
    with rt.store.transaction():
        saved = rt.store.save_poll(
            spec.name,
            spec.kind,
            processed,
            result.responses,
            now=now,
            error=error if save_state else None,
            validators=result.validators if save_state and not error else None,
            body_hash=result.body_hash if save_state and not error else None,
            # A kind may hand back its cursor with a failure (a rate limit's 'not before').
            cursor=result.cursor if save_state else None,
            next_poll_at=next_poll_time(spec, now, failures) if save_state else None,
        )
        if rt.alerting is not None:
            outcome = PollOutcome(
                source=spec.name,
                failed=bool(error) and save_state,
                threads=saved.threads_touched,
                new_mention_ids=saved.new_mention_ids,
            )
            alerts = evaluate(rt.store, rt.alerting, outcome, now)
    return SourceReport(
        source=spec.name,
        error=error,
        items=len(result.items),
        new_items=saved.new_items,
        updated_items=saved.updated_items,
        new_mentions=saved.new_mentions,
        not_modified=result.not_modified,
        duration_s=time.perf_counter() - started,
        threads_touched=saved.threads_touched,
        alerts=tuple(alerts),
    )


# Conversations stay open for replies this long after their last post; at most this many are
# re-read per poll of a source, newest first.
FOLLOW_WINDOW = timedelta(days=7)
FOLLOW_MAX_THREADS = 25


async def follow_threads(
    spec: SourceSpec, rt: Runtime, ctx: PollContext, report: SourceReport
) -> SourceReport:
    """Read the replies of this source's brand threads: the ones this poll touched, and the recent
    ones whose replies may have grown while the source's own feed stayed the same."""
    kind = get_kind(spec.kind)
    if kind.fetch_thread is None:
        return report
    since = iso(rt.now() - FOLLOW_WINDOW)
    rows = rt.store.followable_threads(
        spec.name, report.threads_touched, since, FOLLOW_MAX_THREADS
    )
    extra_items = 0
    mentions = list(report.new_mentions)
    alerts = list(report.alerts)
    for key, replies_url in rows:
        started = time.perf_counter()
        try:
            result = await kind.fetch_thread(ctx, key, replies_url)
        except Exception as exc:
            log.exception("%s: reading thread %s failed", spec.name, key)
            result = SourcePoll(items=[], responses=[], error=f"internal error: {exc!r}")
        if result.error:
            log.warning(
                "%s: could not read the replies of %s: %s", spec.name, replies_url, result.error
            )
            continue
        items = [it if it.thread_key else replace(it, thread_key=key) for it in result.items]
        items = [
            replace(it, thread_key=key, is_reply=True) if it.thread_key != key else it
            for it in items
        ]
        sub = save_result(
            spec,
            rt,
            SourcePoll(items=items, responses=result.responses),
            started,
            context_threads={key},
            save_state=False,
        )
        rt.store.conn.execute(
            "UPDATE threads SET last_followed_at = ? WHERE key = ?",
            (iso(rt.now()), key),
        )
        extra_items += sub.new_items
        mentions.extend(sub.new_mentions)
        alerts.extend(sub.alerts)
    return replace(
        report, thread_items=extra_items, new_mentions=tuple(mentions), alerts=tuple(alerts)
    )


async def poll_sources(
    specs: Sequence[SourceSpec],
    rt: Runtime,
    *,
    on_done: Callable[[SourceReport], None] | None = None,
) -> PollSummary:
    """Poll each source once, concurrently; `on_done` is called as each finishes."""
    rt.store.ensure_sources(specs)
    summary = PollSummary()

    async def one(spec: SourceSpec) -> None:
        report = await poll_source(spec, rt)
        log_report(report)
        summary.reports.append(report)
        if on_done is not None:
            on_done(report)

    await asyncio.gather(*(one(s) for s in specs))
    return summary


def log_report(r: SourceReport) -> None:
    if r.error:
        log.warning("%s: failed: %s", r.source, r.error)
    elif r.not_modified:
        log.info("%s: unchanged (%.2f s)", r.source, r.duration_s)
    else:
        log.info(
            "%s: %d items, %d new, %d updated, %d new mentions (%.2f s)",
            r.source,
            r.items,
            r.new_items,
            r.updated_items,
            len(r.new_mentions),
            r.duration_s,
        )
